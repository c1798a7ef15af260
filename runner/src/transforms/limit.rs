//! `limit`: keep the first `n` rows (after any sort, the top `n`).

use arrow_array::RecordBatch;
use serde::Deserialize;

use super::{BuildContext, BuildTransform, GlobalTransform, Stage, StageKind};
use crate::error::Result;

/// Keeps the first `n` rows. In a batch pipeline without an aggregation or a sort, a reached
/// limit stops the reading of the input.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// How many rows to keep.
    pub n: usize,
}

impl BuildTransform for LimitConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        Ok(Stage {
            output: ctx.input.clone(),
            kind: StageKind::Global(Box::new(Limit { n: self.n })),
        })
    }
}

/// The built `limit` transform: keeps the first `n` rows.
pub struct Limit {
    n: usize,
}

impl GlobalTransform for Limit {
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        Ok(batch.slice(0, self.n.min(batch.num_rows())))
    }

    fn first_rows(&self) -> Option<usize> {
        Some(self.n)
    }

    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> Result<crate::spark::frame::Frame, String> {
        let rows = i32::try_from(self.n)
            .map_err(|_| format!("Spark's limit takes at most {} rows", i32::MAX))?;
        Ok(input.limit(rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{text_batch, text_schema};
    use crate::transforms::compliance::{run, texts};

    #[test]
    fn keeps_the_first_rows() {
        let schema = text_schema("w");
        let ctx = BuildContext {
            input: &schema,
            base_dir: std::path::Path::new("."),
        };
        let stage = LimitConfig { n: 2 }.build(&ctx).unwrap();
        assert_eq!(
            texts(&run(&stage, text_batch("w", ["a", "b", "c"])), "w"),
            ["a", "b"]
        );
        let stage = LimitConfig { n: 9 }.build(&ctx).unwrap();
        assert_eq!(run(&stage, text_batch("w", ["a"])).num_rows(), 1);
    }
}
