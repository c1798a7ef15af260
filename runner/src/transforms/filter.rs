//! `filter`: keep the rows where a `where:` expression holds (see `crate::expr`).

use arrow_array::RecordBatch;
use serde::Deserialize;

use super::{BuildContext, BuildTransform, MapTransform, PerValue, Stage, StageKind};
use crate::error::Result;
use crate::expr::{compile, Predicate};

/// Keeps the rows where the expression is true: `count >= 60 and word not in ["thou",
/// "thy"]`, `length(word) > 3`. A comparison with null is null, and the row is dropped. Type
/// errors are reported when the pipeline is validated, at their position. The expression
/// language and its functions: [Records](../../records.md#expressions).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The condition, e.g. `count >= 60 and word not in ["thou", "thy"]`.
    #[serde(
        rename = "where",
        deserialize_with = "crate::settings::env::spanned_string"
    )]
    #[schemars(with = "String")]
    pub condition: serde_saphyr::Spanned<String>,
}

impl BuildTransform for FilterConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        let predicate =
            compile(&self.condition.value, ctx.input).map_err(|e| format!("where: {e}"))?;
        Ok(Stage {
            output: ctx.input.clone(),
            kind: StageKind::Map(Box::new(Filter { predicate })),
        })
    }

    fn error_location(&self, _message: &str) -> Option<serde_saphyr::Location> {
        Some(self.condition.referenced)
    }
}

/// The built `filter` transform: keeps the rows where its `where:` predicate holds.
pub struct Filter {
    predicate: Predicate,
}

impl MapTransform for Filter {
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let keep = self
            .predicate
            .evaluate(batch)
            .map_err(|e| crate::error::Error::runtime(e.to_string()))?;
        // A null predicate drops the row, as in SQL.
        let keep = match arrow_array::Array::null_count(&keep) {
            0 => keep,
            _ => arrow_select::filter::prep_null_mask_filter(&keep),
        };
        if keep.true_count() == batch.num_rows() {
            return Ok(batch.clone());
        }
        crate::data::filter_batch(batch, keep.values()).map_err(crate::error::Error::runtime)
    }

    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> Result<crate::spark::frame::Frame, String> {
        let condition = self.predicate.to_spark(input.columns())?;
        Ok(input.filter(condition))
    }

    /// Rows where the condition is true (null is not).
    fn keep_mask(&self, batch: &RecordBatch) -> Option<Result<arrow_array::BooleanArray>> {
        Some(
            self.predicate
                .evaluate(batch)
                .map(|keep| match arrow_array::Array::null_count(&keep) {
                    0 => keep,
                    _ => arrow_select::filter::prep_null_mask_filter(&keep),
                })
                .map_err(|e| crate::error::Error::runtime(e.to_string())),
        )
    }

    /// An expression of one column (and literals) decides each row by that column's value.
    fn per_value(&self) -> Option<PerValue> {
        match self.predicate.columns().as_slice() {
            [column] => Some(PerValue::Keeps { column: *column }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{text_batch, text_schema};
    use crate::transforms::compliance::{run, texts};

    #[test]
    fn keeps_matching_rows_and_rejects_bad_expressions() {
        let schema = text_schema("word");
        let ctx = BuildContext {
            input: &schema,
            base_dir: std::path::Path::new("."),
        };
        let config: FilterConfig = serde_saphyr::from_str("where: word != 'b'").unwrap();
        let out = run(
            &config.build(&ctx).unwrap(),
            text_batch("word", ["a", "b", "c"]),
        );
        assert_eq!(texts(&out, "word"), ["a", "c"]);
        let bad: FilterConfig = serde_saphyr::from_str("where: count >= 60").unwrap();
        let err = bad.build(&ctx).err().unwrap();
        assert!(err.contains("no column `count`"), "{err}");
    }
}
