//! runner's word semantics as Spark expressions, exactly: Python's `str.split()` (the
//! characters Python's `str.isspace` accepts, runs of them, no empty pieces), `str.lower()`
//! (Spark's `lower` is Java's `toLowerCase(Locale.ROOT)`: the same mapping, final sigma
//! included), and TextBlob's ASCII punctuation stripping, anywhere or at the edges.

use super::frame::{call, col, lit_i32, lit_str, Column, Frame};
use crate::tokenizer::{StripPunctuation, Tokenizer};

/// A run of Python whitespace, as a Java regular expression: Unicode White_Space plus the
/// ASCII separators U+001C..U+001F (`crate::tokenizer::is_python_whitespace`).
pub const PYTHON_WHITESPACE: &str = r"[\x{9}-\x{D}\x{1C}-\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+";

/// Python's `string.punctuation` (ASCII), as a Java character class.
const PUNCTUATION: &str = r"[\x{21}-\x{2F}\x{3A}-\x{40}\x{5B}-\x{60}\x{7B}-\x{7E}]";

fn not_empty(column: Column) -> Column {
    call("not", vec![call("==", vec![column, lit_str("")])])
}

/// `input` with the column at `index` split into words, one row per word in `output` (the
/// other columns repeated), as `tokenize` does.
pub fn tokenize(input: Frame, index: usize, output: &str, tokenizer: &Tokenizer) -> Frame {
    let columns = input.columns().to_vec();
    let mut names = columns.clone();
    names[index] = output.to_owned();
    // Each column as is but the one at `index`, which becomes `replaced`.
    let with = |replaced: Column| -> Vec<Column> {
        let mut replaced = Some(replaced);
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                if i == index {
                    replaced.take().expect("one column is replaced")
                } else {
                    col(name)
                }
            })
            .collect()
    };
    let text = col(&columns[index]);
    let text = if tokenizer.lowercase() {
        call("lower", vec![text])
    } else {
        text
    };
    let pieces = call(
        "explode",
        vec![call(
            "split",
            vec![text, lit_str(PYTHON_WHITESPACE), lit_i32(-1)],
        )],
    )
    .alias(output);
    // Leading or trailing whitespace leaves an empty piece, which `str.split()` does not give.
    let frame = input
        .select(with(pieces), names.clone())
        .filter(not_empty(col(output)));
    let pattern = match tokenizer.strip() {
        StripPunctuation::None => return frame,
        StripPunctuation::All => PUNCTUATION.to_owned(),
        StripPunctuation::Edges => format!(r"\A{PUNCTUATION}+|{PUNCTUATION}+\z"),
    };
    let stripped = call(
        "regexp_replace",
        vec![col(output), lit_str(&pattern), lit_str("")],
    )
    .alias(output);
    let frame = frame.select(with(stripped), names.clone());
    if tokenizer.drop_empty() {
        frame.filter(not_empty(col(output)))
    } else {
        frame
    }
}

/// `input` with the text column at `index` split at `separator` (taken literally), one row
/// per piece in `output`, as `explode` of a text column does.
pub fn split_at(
    input: Frame,
    index: usize,
    output: &str,
    separator: Option<&str>,
    drop_empty: bool,
) -> Frame {
    let columns = input.columns().to_vec();
    let mut names = columns.clone();
    names[index] = output.to_owned();
    let list = match separator {
        Some(separator) => call(
            "split",
            vec![
                col(&columns[index]),
                lit_str(&super::frame::java_quote(separator)),
                lit_i32(-1),
            ],
        ),
        None => col(&columns[index]),
    };
    let pieces = call("explode", vec![list]).alias(output);
    let mut pieces = Some(pieces);
    let selected = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if i == index {
                pieces.take().expect("one column is replaced")
            } else {
                col(name)
            }
        })
        .collect();
    let frame = input.select(selected, names);
    if drop_empty {
        frame.filter(not_empty(col(output)))
    } else {
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whitespace class names exactly the characters runner splits at.
    #[test]
    fn the_whitespace_class_is_pythons() {
        // The ranges, read back from the pattern's text (`\x{a}-\x{b}` or `\x{a}`).
        let mut ranges = Vec::new();
        let body = PYTHON_WHITESPACE
            .trim_start_matches('[')
            .trim_end_matches("]+");
        for part in body.split(r"\x{").filter(|s| !s.is_empty()) {
            let (hex, rest) = part.split_once('}').unwrap();
            let value = u32::from_str_radix(hex, 16).unwrap();
            if rest == "-" {
                ranges.push((value, u32::MAX));
            } else if let Some(last) = ranges
                .last_mut()
                .filter(|r: &&mut (u32, u32)| r.1 == u32::MAX)
            {
                last.1 = value;
            } else {
                ranges.push((value, value));
            }
        }
        assert_eq!(ranges.len(), 11);
        let in_class = |c: u32| ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
        for c in 0..=0x10FFFF_u32 {
            if let Some(ch) = char::from_u32(c) {
                assert_eq!(
                    in_class(c),
                    crate::tokenizer::is_python_whitespace(ch),
                    "U+{c:04X}"
                );
            }
        }
    }

    #[test]
    fn tokenize_is_split_filter_strip_filter() {
        let frame = Frame::read_text(vec!["file:///p".into()]);
        let frame = frame.select(vec![col("value").alias("line")], vec!["line".into()]);
        let tokenizer = Tokenizer::new(true, StripPunctuation::All, true);
        let frame = tokenize(frame, 0, "word", &tokenizer);
        assert_eq!(frame.columns(), ["word"]);
        let text = frame.text();
        assert!(
            text.contains("explode(split(lower(col(\"line\"))"),
            "{text}"
        );
        assert!(text.contains("regexp_replace(col(\"word\")"), "{text}");
        assert_eq!(text.matches(".filter(").count(), 2, "{text}");
    }
}
