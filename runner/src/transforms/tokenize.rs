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
        let mut words = TextColumnBuilder::with_capacity(lines.len() * 8, lines.value_data().len());
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
