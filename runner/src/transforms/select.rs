//! `select`: the output columns, each a column or an expression (`"length(word) as len"`).

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use serde::Deserialize;

use super::{BuildContext, BuildTransform, MapTransform, Stage, StageKind};
use crate::error::{Error, Result};
use crate::expr::{compile_named, Expr};

/// The output columns in order, each a column or `expression as name`: `[word, "length(word)
/// as len"]`. Expressions: [Records](../../records.md#expressions).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectConfig {
    /// The output columns in order: a column name, or an expression with `as name`, e.g.
    /// `[word, "length(word) as len", "count * 2 as double"]` (without `as`, an expression's
    /// column is named by its text: `count * 2`).
    #[serde(deserialize_with = "crate::settings::env::spanned_strings")]
    #[schemars(with = "Vec<String>", length(min = 1))]
    pub columns: Vec<serde_saphyr::Spanned<String>>,
}

impl BuildTransform for SelectConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        if self.columns.is_empty() {
            return Err("`columns` is empty: select at least one column".into());
        }
        let mut exprs = Vec::with_capacity(self.columns.len());
        let mut fields = Vec::with_capacity(self.columns.len());
        for item in &self.columns {
            let (expr, name) =
                compile_named(&item.value, ctx.input).map_err(|e| format!("columns: {e}"))?;
            if fields
                .iter()
                .any(|f: &arrow_schema::Field| f.name() == &name)
            {
                return Err(format!(
                    "columns: `{name}` is selected twice; name one of them with `as`"
                ));
            }
            fields.push(expr.field(&name, ctx.input));
            exprs.push(expr);
        }
        let output = Arc::new(Schema::new(fields));
        Ok(Stage {
            output: output.clone(),
            kind: StageKind::Map(Box::new(Select { exprs, output })),
        })
    }

    fn error_location(&self, message: &str) -> Option<serde_saphyr::Location> {
        // The expression's message quotes the item: "in `ITEM` at character N"; a name selected
        // twice: the later item giving it.
        let named = |item: &serde_saphyr::Spanned<String>| {
            let name = match item.value.rsplit_once(" as ") {
                Some((_, alias)) => alias.trim(),
                None => item.value.trim(),
            };
            message.contains(&format!("`{name}` is selected twice"))
        };
        self.columns
            .iter()
            .find(|item| {
                let shown = item.value.replace(['\n', '\r', '\t'], " ");
                message.contains(&format!("in `{shown}` at character"))
            })
            .or_else(|| self.columns.iter().rev().find(|item| named(item)))
            .map(|item| item.referenced)
    }
}

/// The built `select` transform: one expression per output column.
pub struct Select {
    exprs: Vec<Expr>,
    output: arrow_schema::SchemaRef,
}

impl MapTransform for Select {
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = self
            .exprs
            .iter()
            .map(|e| e.evaluate(batch))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| Error::runtime(e.to_string()))?;
        RecordBatch::try_new_with_options(
            self.output.clone(),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .map_err(|e| Error::runtime(e.to_string()))
    }

    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> Result<crate::spark::frame::Frame, String> {
        let names = crate::data::columns_names(&self.output);
        let columns = self
            .exprs
            .iter()
            .zip(&names)
            .map(|(expr, name)| Ok(expr.to_spark(input.columns())?.alias(name)))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(input.select(columns, names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::compliance::{run, texts};

    fn build(yaml: &str) -> Result<Stage, String> {
        crate::transforms::compliance::build_on_word_counts::<SelectConfig>(yaml)
    }

    #[test]
    fn computes_renames_and_reorders() {
        let stage = build("columns: [count, \"upper(word) as shout\", \"count * 2\"]").unwrap();
        let out = run(
            &stage,
            crate::data::word_counts(&["romeo", "thou"], &[3, 2]),
        );
        assert_eq!(texts(&out, "shout"), ["ROMEO", "THOU"]);
        assert_eq!(texts(&out, "count * 2"), ["6", "4"]);
        assert_eq!(out.schema().field(0).name(), "count");
    }

    #[test]
    fn mistakes_are_found_at_validation() {
        assert!(build("columns: [wrod]")
            .err()
            .unwrap()
            .contains("did you mean `word`?"));
        assert!(build("columns: [word, word]")
            .err()
            .unwrap()
            .contains("selected twice"));
        assert!(build("columns: []").err().unwrap().contains("is empty"));
    }
}
