//! `rename`: give columns new names.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use serde::Deserialize;

use super::{BuildContext, BuildTransform, MapTransform, Stage, StageKind};
use crate::data::column_index;
use crate::error::{Error, Result};

/// Renames columns, `{old: new}`; every column keeps its place.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    /// Old name to new name, e.g. `{word: token, count: n}`.
    #[schemars(with = "BTreeMap<String, String>")]
    pub columns: indexmap::IndexMap<serde_saphyr::Spanned<String>, serde_saphyr::Spanned<String>>,
}

impl BuildTransform for RenameConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        let mut fields: Vec<_> = ctx
            .input
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for (old, new) in &self.columns {
            let index = column_index(ctx.input, &old.value).map_err(|e| format!("columns: {e}"))?;
            fields[index] = fields[index].clone().with_name(&new.value);
        }
        let mut names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!(
                "columns: two columns would be called `{}`",
                twice[0]
            ));
        }
        let output: SchemaRef = Arc::new(Schema::new(fields));
        Ok(Stage {
            output: output.clone(),
            kind: StageKind::Map(Box::new(Rename { output })),
        })
    }

    fn error_location(&self, message: &str) -> Option<serde_saphyr::Location> {
        // "there is no column `old`" points at the old name; "two columns would be called
        // `new`" at the new one.
        let quoted = |text: &str| message.contains(&format!("`{text}`"));
        self.columns.iter().find_map(|(old, new)| {
            if message.contains("there is no column") && quoted(&old.value) {
                Some(old.referenced)
            } else if message.contains("would be called") && quoted(&new.value) {
                Some(new.referenced)
            } else {
                None
            }
        })
    }
}

/// The built `rename` transform: the same columns under new names.
pub struct Rename {
    output: SchemaRef,
}

impl MapTransform for Rename {
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        RecordBatch::try_new(self.output.clone(), batch.columns().to_vec())
            .map_err(|e| Error::runtime(format!("rename: {e}")))
    }

    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> Result<crate::spark::frame::Frame, String> {
        let names = crate::data::columns_names(&self.output);
        let columns = input
            .columns()
            .iter()
            .zip(&names)
            .map(|(old, new)| crate::spark::frame::col(old).alias(new))
            .collect();
        Ok(input.select(columns, names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::compliance::run;

    fn build(yaml: &str) -> Result<Stage, String> {
        crate::transforms::compliance::build_on_word_counts::<RenameConfig>(yaml)
    }

    #[test]
    fn renames_and_refuses_clashes() {
        let out = run(
            &build("columns: {word: token}").unwrap(),
            crate::data::word_counts(&["a"], &[1]),
        );
        assert_eq!(out.schema().field(0).name(), "token");
        assert!(build("columns: {word: count}")
            .err()
            .unwrap()
            .contains("two columns would be called `count`"));
        assert!(build("columns: {wrod: x}")
            .err()
            .unwrap()
            .contains("did you mean `word`?"));
    }
}
