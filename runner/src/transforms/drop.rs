//! `drop`: leave columns out.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use serde::Deserialize;

use super::{BuildContext, BuildTransform, MapTransform, Stage, StageKind};
use crate::data::column_index;
use crate::error::{Error, Result};

/// Removes the columns named; the others keep their order.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropConfig {
    /// The columns to remove.
    #[serde(deserialize_with = "crate::settings::env::spanned_strings")]
    #[schemars(with = "Vec<String>")]
    pub columns: Vec<serde_saphyr::Spanned<String>>,
}

impl BuildTransform for DropConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        let mut dropped = Vec::new();
        for name in &self.columns {
            dropped
                .push(column_index(ctx.input, &name.value).map_err(|e| format!("columns: {e}"))?);
        }
        let kept: Vec<usize> = (0..ctx.input.fields().len())
            .filter(|i| !dropped.contains(i))
            .collect();
        if kept.is_empty() {
            return Err("columns: this drops every column".into());
        }
        let output: SchemaRef = Arc::new(Schema::new(
            kept.iter()
                .map(|&i| ctx.input.field(i).clone())
                .collect::<Vec<_>>(),
        ));
        Ok(Stage {
            output: output.clone(),
            kind: StageKind::Map(Box::new(Drop { kept, output })),
        })
    }

    fn error_location(&self, message: &str) -> Option<serde_saphyr::Location> {
        // "there is no column `x`": the item naming it.
        self.columns
            .iter()
            .find(|item| message.contains(&format!("`{}`", item.value)))
            .map(|item| item.referenced)
    }
}

/// The built `drop` transform: the input columns it keeps, in order.
pub struct Drop {
    kept: Vec<usize>,
    output: SchemaRef,
}

impl MapTransform for Drop {
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = self.kept.iter().map(|&i| batch.column(i).clone()).collect();
        RecordBatch::try_new(self.output.clone(), columns)
            .map_err(|e| Error::runtime(format!("drop: {e}")))
    }

    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> Result<crate::spark::frame::Frame, String> {
        let names: Vec<String> = self
            .kept
            .iter()
            .map(|&i| input.columns()[i].clone())
            .collect();
        let columns = names.iter().map(|n| crate::spark::frame::col(n)).collect();
        Ok(input.select(columns, names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::compliance::run;

    fn build(yaml: &str) -> Result<Stage, String> {
        crate::transforms::compliance::build_on_word_counts::<DropConfig>(yaml)
    }

    #[test]
    fn drops_named_columns() {
        let out = run(
            &build("columns: [count]").unwrap(),
            crate::data::word_counts(&["a"], &[1]),
        );
        assert_eq!(out.num_columns(), 1);
        assert!(build("columns: [word, count]")
            .err()
            .unwrap()
            .contains("drops every column"));
        assert!(build("columns: [cuont]")
            .err()
            .unwrap()
            .contains("did you mean `count`?"));
    }
}
