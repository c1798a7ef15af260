//! `lowercase`: lowercase a text column in place (Unicode-aware, like Python's `str.lower`).

use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use serde::Deserialize;

use super::{BuildContext, BuildTransform, MapTransform, Stage, StageKind};
use crate::data::{text, text_column_index};
use crate::error::Result;

/// Lowercase a column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LowercaseConfig {
    /// The text column to lowercase.
    #[serde(deserialize_with = "crate::config::env::string")]
    pub column: String,
}

impl BuildTransform for LowercaseConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        let index = text_column_index(ctx.input, &self.column)?;
        Ok(Stage {
            output: ctx.input.clone(),
            kind: StageKind::Map(Box::new(Lowercase { index })),
        })
    }
}

pub struct Lowercase {
    index: usize,
}

impl MapTransform for Lowercase {
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let lowered: StringArray = text(batch, self.index)
            .iter()
            .map(|v| v.map(str::to_lowercase))
            .collect();
        let mut columns = batch.columns().to_vec();
        columns[self.index] = Arc::new(lowered);
        Ok(RecordBatch::try_new(batch.schema(), columns).expect("same schema, same column type"))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{text_batch, text_schema};
    use crate::transforms::compliance::{run, texts};

    #[test]
    fn lowercases_unicode() {
        let config: LowercaseConfig = serde_saphyr::from_str("column: hashtag").unwrap();
        let schema = text_schema("hashtag");
        let stage = config
            .build(&BuildContext {
                input: &schema,
                base_dir: std::path::Path::new("."),
            })
            .unwrap();
        let out = run(&stage, text_batch("hashtag", ["RustLang", "ÉTÉ"]));
        assert_eq!(texts(&out, "hashtag"), ["rustlang", "été"]);
    }
}
