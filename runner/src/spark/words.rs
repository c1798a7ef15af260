//! runner's word semantics as Spark expressions, exactly: Python's `str.split()` (the
//! characters Python's `str.isspace` accepts, runs of them, no empty pieces), `str.lower()`
//! (Spark's `lower` is Java's `toLowerCase(Locale.ROOT)`: the same mapping, final sigma
//! included), and TextBlob's ASCII punctuation stripping, anywhere or at the edges.

use super::frame::{call, col, lit_i32, lit_str, Column, Frame};
use crate::tokenizer::{StripPunctuation, Tokenizer};

/// A run of Python whitespace, as a Java regular expression: Unicode White_Space (Java's
/// `\p{IsWhite_Space}`) plus the ASCII separators U+001C..U+001F
/// (`crate::tokenizer::is_python_whitespace`). Java tests the single ASCII characters with one
/// bit lookup, then the property (measured on Spark: a list of every range made the word count
/// about 40% slower than `\s+`, which is not exact; this, about 15%).
pub const PYTHON_WHITESPACE: &str = r"[\t\n\x0B\f\r\x1C\x1D\x1E\x1F \p{IsWhite_Space}]+";

/// Python's `string.punctuation` (ASCII), as a Java character class of single characters
/// (Java tests those with one bit lookup; written as `\x{..}` ranges the word count took about
/// 10% longer on Spark).
const PUNCTUATION: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]"##;

fn not_empty(column: Column) -> Column {
    call("not", vec![call("==", vec![column, lit_str("")])])
}

/// `input` with the column at `index` split into words, one row per word in `output` (the
/// other columns repeated), as `tokenize` does.
pub fn tokenize(input: Frame, index: usize, output: &str, tokenizer: &Tokenizer) -> Frame {
    let text = col(&input.columns()[index]);
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
    );
    // Leading or trailing whitespace leaves an empty piece, which `str.split()` does not give.
    let frame = input
        .replacing(index, pieces, output)
        .filter(not_empty(col(output)));
    let pattern = match tokenizer.strip() {
        StripPunctuation::None => return frame,
        StripPunctuation::All => PUNCTUATION.to_owned(),
        StripPunctuation::Edges => format!(r"\A{PUNCTUATION}+|{PUNCTUATION}+\z"),
    };
    let stripped = call(
        "regexp_replace",
        vec![col(output), lit_str(&pattern), lit_str("")],
    );
    let frame = frame.replacing(index, stripped, output);
    if tokenizer.drop_empty() {
        frame.filter(not_empty(col(output)))
    } else {
        frame
    }
}

/// `input` with the text column at `index` split at `separator` (taken literally), or the
/// list column at `index` exploded, one row per piece in `output`, as `explode` does.
pub fn split_at(
    input: Frame,
    index: usize,
    output: &str,
    separator: Option<&str>,
    drop_empty: bool,
) -> Frame {
    let column = col(&input.columns()[index]);
    let list = match separator {
        Some(separator) => call(
            "split",
            vec![
                column,
                lit_str(&super::frame::java_quote(separator)),
                lit_i32(-1),
            ],
        ),
        None => column,
    };
    let frame = input.replacing(index, call("explode", vec![list]), output);
    if drop_empty {
        frame.filter(not_empty(col(output)))
    } else {
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The punctuation class is Python's `string.punctuation`, every ASCII punctuation mark.
    #[test]
    fn the_punctuation_class_is_pythons() {
        let body = &PUNCTUATION[1..PUNCTUATION.len() - 1];
        let mut marks = Vec::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            marks.push(if c == '\\' { chars.next().unwrap() } else { c });
        }
        let ascii: Vec<char> = (0u8..128)
            .map(char::from)
            .filter(char::is_ascii_punctuation)
            .collect();
        assert_eq!(marks, ascii);
    }

    /// The whitespace class names exactly the characters runner splits at: its ASCII ranges
    /// plus Unicode White_Space (Rust's `char::is_whitespace` is that property, as Java's
    /// `\p{IsWhite_Space}` is).
    #[test]
    fn the_whitespace_class_is_pythons() {
        assert_eq!(
            PYTHON_WHITESPACE,
            r"[\t\n\x0B\f\r\x1C\x1D\x1E\x1F \p{IsWhite_Space}]+"
        );
        let in_class = |c: char| {
            ('\t'..='\r').contains(&c) || ('\u{1c}'..=' ').contains(&c) || c.is_whitespace()
        };
        for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
            assert_eq!(
                in_class(c),
                crate::tokenizer::is_python_whitespace(c),
                "U+{:04X}",
                c as u32
            );
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
