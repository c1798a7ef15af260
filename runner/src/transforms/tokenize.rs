//! `tokenize`: one row per word of a text column, the way the chapter's PySpark job does it:
//! `line.lower().split()` then TextBlob's `strip_punc`.

use std::sync::Arc;

use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde::Deserialize;

use super::{
    replace_column, schema_replacing, BuildContext, BuildTransform, MapTransform, Stage, StageKind,
    TextSplit,
};
use crate::data::{text, text_column_index, TextColumnBuilder};
use crate::error::Result;
// The splitter's settings type is this transform's too; `is_python_whitespace` for references.
pub use crate::tokenizer::{is_python_whitespace, StripPunctuation, Tokenizer};

/// One row per token of a text column: splits on Unicode whitespace like Python's
/// `str.split()`, lowercases like `str.lower()`, and removes ASCII punctuation (Python's
/// `string.punctuation`) anywhere in the word or at its edges. Curly apostrophes (`i’ll`) are not
/// ASCII and stay. The text column is replaced by the word column; other columns repeat. Before
/// a `group_count` by the word it runs inside the fused word-count kernel (`runner plan` shows
/// it).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeConfig {
    /// The text column to split.
    #[serde(
        default = "default_column",
        deserialize_with = "crate::settings::env::string"
    )]
    pub column: String,
    /// The output column, one word per row; it replaces `column`.
    #[serde(
        default = "default_as",
        rename = "as",
        deserialize_with = "crate::settings::env::string"
    )]
    pub output: String,
    /// Lowercase words, Unicode-aware like Python's `str.lower`.
    #[serde(default = "yes")]
    pub lowercase: bool,
    /// Remove ASCII punctuation (Python's `string.punctuation`): anywhere in the word, at its
    /// edges, or not at all. Non-ASCII marks such as the curly apostrophe in `i’ll` stay.
    #[serde(default)]
    pub strip_punctuation: StripPunctuation,
    /// Drop words that end up empty (a token that was only punctuation).
    #[serde(default = "yes")]
    pub drop_empty: bool,
}

fn default_column() -> String {
    "line".into()
}
fn default_as() -> String {
    "word".into()
}
fn yes() -> bool {
    true
}

impl TokenizeConfig {
    /// The splitter with these settings.
    pub fn tokenizer(&self) -> Tokenizer {
        Tokenizer::new(self.lowercase, self.strip_punctuation, self.drop_empty)
    }
}

impl BuildTransform for TokenizeConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        let index = text_column_index(ctx.input, &self.column)?;
        let output = schema_replacing(ctx.input, index, &self.output, DataType::Utf8)?;
        Ok(Stage {
            output: output.clone(),
            kind: StageKind::Map(Box::new(Tokenize {
                tokenizer: self.tokenizer(),
                index,
                output,
            })),
        })
    }
}

/// The built `tokenize` transform: one row per word of its column.
pub struct Tokenize {
    tokenizer: Tokenizer,
    index: usize,
    output: arrow_schema::SchemaRef,
}

impl Tokenize {
    /// The splitter, with the step's settings.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The column it reads.
    pub fn input_column(&self) -> usize {
        self.index
    }
}

impl MapTransform for Tokenize {
    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> Result<crate::spark::frame::Frame, String> {
        let output = self.output.field(self.index).name();
        Ok(crate::spark::words::tokenize(
            input,
            self.index,
            output,
            &self.tokenizer,
        ))
    }

    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let lines = text(batch, self.index);
        if lines.null_count() == 0 {
            let (words, parents) =
                WordWriter::split_column(&self.tokenizer, lines, batch.num_columns() > 1, true)?;
            return Ok(replace_column(
                &self.output,
                batch,
                self.index,
                parents,
                Arc::new(words),
            ));
        }
        // The bytes of these rows only: a slice of a batch shares its parent's buffer.
        let offsets = lines.value_offsets();
        let bytes = (offsets[lines.len()] - offsets[0]) as usize;
        let mut words = TextColumnBuilder::with_capacity(lines.len() * 8, bytes);
        // Which line each word came from, to repeat the other columns (there are none when
        // the line is the only column, as from a file).
        let others = batch.num_columns() > 1;
        let mut parents = Vec::new();
        let mut scratch = Vec::new();
        for (row, line) in lines.iter().enumerate() {
            let Some(line) = line else { continue };
            self.tokenizer.words(line, &mut scratch, |word| {
                // Cut at character boundaries of valid UTF-8: `finish` checks the column once.
                words.push(word);
                if others {
                    parents.push(row as u32);
                }
            });
        }
        let words = words.finish().map_err(crate::error::Error::runtime)?;
        Ok(replace_column(
            &self.output,
            batch,
            self.index,
            parents,
            Arc::new(words),
        ))
    }

    fn splits_text(&self) -> Option<TextSplit<'_>> {
        Some(TextSplit::Words {
            column: self.index,
            tokenizer: &self.tokenizer,
        })
    }
}

/// Bytes a short word is written with (one fixed-size copy), and the slack the output keeps
/// past its end for it.
const WORD_COPY: usize = 16;

/// Writes the words of a whole column of lines into a new text column: the short-word kernel
/// of the fused count (`short_words`) runs over the column's buffer in one pass, with the
/// lines' starts as breaks, and each short word arrives in two registers, stored with one
/// 16-byte copy. Measured on the romeo ×1000 word count without fusion: a call of the splitter
/// per line (a padded partial block each) and a `memcpy` per word had made this step a third
/// of the run and four times slower than now.
struct WordWriter<'a> {
    /// The words' bytes (a short word is stored with a 16-byte copy, then cut to its length:
    /// no zeroed buffer, no `memcpy` call).
    values: Vec<u8>,
    offsets: Vec<i32>,
    /// Where each line starts in the text, then its end; and the line of each word, kept
    /// when other columns repeat.
    line_starts: &'a [usize],
    parents: Option<Vec<u32>>,
    line: usize,
}

impl WordWriter<'_> {
    /// The words of `lines` (no nulls) and, when `parents`, the line each came from; with
    /// the fastest kernel the CPU runs, or (`fastest` false, for tests) the register kernel.
    fn split_column(
        tokenizer: &Tokenizer,
        lines: &arrow_array::StringArray,
        parents: bool,
        fastest: bool,
    ) -> Result<(arrow_array::StringArray, Vec<u32>)> {
        let offsets = lines.value_offsets();
        let (first, last) = (offsets[0] as usize, offsets[lines.len()] as usize);
        // SAFETY: a `StringArray`'s values are UTF-8 and its offsets sit at character
        // boundaries (its constructors check, or make the caller promise, as `value()` relies
        // on); values laid end to end, from the first offset to the last, are UTF-8 too.
        let text = unsafe { std::str::from_utf8_unchecked(&lines.value_data()[first..last]) };
        let line_starts: Vec<usize> = offsets.iter().map(|&o| o as usize - first).collect();
        let mut writer = WordWriter {
            values: Vec::with_capacity(text.len() + WORD_COPY),
            offsets: Vec::with_capacity(text.len() / 4 + 1),
            line_starts: &line_starts,
            parents: parents.then(Vec::new),
            line: 0,
        };
        writer.offsets.push(0);
        let rows = lines.len();
        let mut next_line = 1;
        let breaks = |base: usize| {
            let mut bits = 0u64;
            while next_line < rows && line_starts[next_line] < base + 64 {
                bits |= 1u64 << (line_starts[next_line] - base);
                next_line += 1;
            }
            bits
        };
        let mut scratch = Vec::new();
        if fastest {
            crate::short_words::split_words_fastest(
                tokenizer,
                text,
                &mut scratch,
                &mut writer,
                breaks,
            );
        } else {
            crate::short_words::split_words(
                tokenizer,
                text,
                &mut scratch,
                &mut writer,
                true,
                breaks,
            );
        }
        let WordWriter {
            values,
            offsets,
            parents,
            ..
        } = writer;
        let words = crate::data::text_column_from_parts(values, offsets)
            .map_err(crate::error::Error::runtime)?;
        Ok((words, parents.unwrap_or_default()))
    }

    /// Ends the word written last: its offset, and its line when other columns repeat.
    #[inline(always)]
    fn end_word(&mut self, start: usize) {
        // Past i32 offsets the column is refused by `text_column_from_parts` (checked there).
        self.offsets.push(self.values.len() as i32);
        if let Some(parents) = &mut self.parents {
            while self.line_starts[self.line + 1] <= start {
                self.line += 1;
            }
            parents.push(self.line as u32);
        }
    }
}

impl crate::short_words::WordOut for WordWriter<'_> {
    #[inline(always)]
    fn short(&mut self, start: usize, head: [u64; 2], len: usize) {
        let word = (u128::from(head[0]) | (u128::from(head[1]) << 64)).to_le_bytes();
        // All 16 bytes, then the length cut back to the word's (`truncate` only sets it).
        let end = self.values.len() + len;
        self.values.extend_from_slice(&word);
        self.values.truncate(end);
        self.end_word(start);
    }

    #[inline(always)]
    fn other(&mut self, start: usize, word: &[u8]) {
        self.values.extend_from_slice(word);
        self.end_word(start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{text_batch, text_schema};
    use crate::transforms::compliance::{run, texts};

    fn tokenize(yaml: &str, lines: &[&str]) -> Vec<String> {
        let config: TokenizeConfig = serde_saphyr::from_str(yaml).unwrap();
        let schema = text_schema("line");
        let stage = config
            .build(&BuildContext {
                input: &schema,
                base_dir: std::path::Path::new("."),
            })
            .unwrap();
        texts(&run(&stage, text_batch("line", lines)), "word")
    }

    #[test]
    fn matches_python_lower_split_strip_punc() {
        let words = tokenize(
            "{}",
            &[
                "  Romeo, Romeo! wherefore art\tthou\u{3000}ROMEO?\r",
                "--",
                "I’ll o'er",
            ],
        );
        assert_eq!(
            words,
            [
                "romeo",
                "romeo",
                "wherefore",
                "art",
                "thou",
                "romeo",
                "i’ll",
                "oer"
            ]
        );
    }

    #[test]
    fn unicode_lowercase_and_python_whitespace() {
        assert_eq!(
            tokenize("{}", &["ÉTÉ ΟΔΟΣ a\u{1c}b"]),
            ["été", "οδος", "a", "b"]
        );
    }

    #[test]
    fn edges_none_and_keep_empty() {
        assert_eq!(
            tokenize("strip_punctuation: edges", &["'tis o'er--"]),
            ["tis", "o'er"]
        );
        assert_eq!(
            tokenize("{strip_punctuation: none, lowercase: false}", &["A-b, C"]),
            ["A-b,", "C"]
        );
        assert_eq!(tokenize("drop_empty: false", &["a -- b"]), ["a", "", "b"]);
    }

    #[test]
    fn empty_input_gives_no_rows_and_other_columns_repeat() {
        assert!(tokenize("{}", &[]).is_empty());
        assert!(tokenize("{}", &["", "   "]).is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
        /// The column kernel gives, line by line, the words the tokenizer's own path gives,
        /// each with its line's other columns: lines that end without a space, empty lines,
        /// Unicode, long words, and a batch that is a slice of a larger one.
        #[test]
        fn column_kernel_agrees_with_the_tokenizer_line_by_line(
            lines in proptest::collection::vec(
                "([a-zA-Z0-9'’—,.!? \t]|ΣΟΔσİÉé日K\u{212a}\u{a0}\u{2003}|[a-z]{14,20}){0,12}",
                0..40,
            ),
            skip in 0usize..3,
            lowercase: bool,
            strip in 0usize..3,
            drop_empty: bool,
        ) {
            let strip = ["none", "edges", "all"][strip];
            let config: TokenizeConfig = serde_saphyr::from_str(&format!(
                "{{lowercase: {lowercase}, strip_punctuation: {strip}, drop_empty: {drop_empty}}}"
            ))
            .unwrap();
            let ids: Vec<i64> = (0..lines.len() as i64).collect();
            let batch = RecordBatch::try_from_iter([
                (
                    "line",
                    Arc::new(arrow_array::StringArray::from(lines.clone())) as arrow_array::ArrayRef,
                ),
                ("id", Arc::new(arrow_array::Int64Array::from(ids))),
            ])
            .unwrap();
            let skip = skip.min(lines.len());
            let batch = batch.slice(skip, lines.len() - skip);
            let stage = config
                .build(&BuildContext {
                    input: &batch.schema(),
                    base_dir: std::path::Path::new("."),
                })
                .unwrap();
            let crate::transforms::StageKind::Map(map) = &stage.kind else {
                panic!("tokenize is row-wise")
            };
            let out = map.apply(&batch).unwrap();
            let words = out.column(0).as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
            let ids = out.column(1).as_any().downcast_ref::<arrow_array::Int64Array>().unwrap();
            let got: Vec<(String, i64)> = (0..out.num_rows())
                .map(|i| (words.value(i).to_string(), ids.value(i)))
                .collect();
            let tokenizer = config.tokenizer();
            let mut want = Vec::new();
            for (id, line) in lines.iter().enumerate().skip(skip) {
                tokenizer.words(line, &mut Vec::new(), |w| {
                    want.push((String::from_utf8(w.to_vec()).unwrap(), id as i64))
                });
            }
            proptest::prop_assert_eq!(&got, &want);
            // Both kernels, whichever `apply` ran on this CPU.
            let column = batch.column(0).as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
            for fastest in [true, false] {
                let (words, parents) =
                    WordWriter::split_column(&tokenizer, column, true, fastest).unwrap();
                let got: Vec<(String, i64)> = (0..words.len())
                    .map(|i| (words.value(i).to_string(), (parents[i] as usize + skip) as i64))
                    .collect();
                proptest::prop_assert_eq!(&got, &want, "fastest kernel: {}", fastest);
            }
        }
    }

    #[test]
    fn missing_or_non_text_column_is_a_build_error() {
        let config: TokenizeConfig = serde_saphyr::from_str("column: text").unwrap();
        let schema = text_schema("line");
        let err = config
            .build(&BuildContext {
                input: &schema,
                base_dir: std::path::Path::new("."),
            })
            .err()
            .unwrap();
        assert!(err.contains("no column `text`"), "{err}");
    }
}
