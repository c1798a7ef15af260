//! `select`: the output columns, each a column or an expression (`"length(word) as len"`).

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use serde::Deserialize;

use super::{BuildContext, BuildTransform, MapTransform, Stage, StageKind};
use crate::error::{Error, Result};
use crate::expr::{compile_named, Expr};

/// The item that stands for every input column, in order.
const EVERY_COLUMN: &str = "*";

/// The output columns in order, each a column or `expression as name`: `[word, "length(word)
/// as len"]`; `*` stands for every input column. Expressions:
/// [Records](../../records.md#expressions).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectConfig {
    /// The output columns in order: a column name, or an expression with `as name`, e.g.
    /// `[word, "length(word) as len", "count * 2 as double"]` (without `as`, an expression's
    /// column is named by its text: `count * 2`). `"*"` is every input column in order:
    /// `["*", "length(word) as len"]` adds a column after them.
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
        // Which item gave each output column so far.
        let mut given_by: Vec<&str> = Vec::with_capacity(self.columns.len());
        for item in &self.columns {
            let items = if item.value.trim() == EVERY_COLUMN {
                every_column(ctx.input)?
            } else {
                vec![compile_named(&item.value, ctx.input).map_err(|e| format!("columns: {e}"))?]
            };
            for (expr, name) in items {
                if let Some(at) = fields
                    .iter()
                    .position(|f: &arrow_schema::Field| f.name() == &name)
                {
                    let star = [given_by[at], item.value.trim()].contains(&EVERY_COLUMN);
                    return Err(match star {
                        true => format!(
                            "columns: `{name}` is selected twice (`*` selects it too); name the \
                             other one with `as`, or replace the column with `with_column`"
                        ),
                        false => format!(
                            "columns: `{name}` is selected twice; name one of them with `as`"
                        ),
                    });
                }
                fields.push(expr.field(&name, ctx.input));
                exprs.push(expr);
                given_by.push(item.value.trim());
            }
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
                || (name == EVERY_COLUMN && message.contains("(`*` selects it too)"))
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

/// `*`: every input column as it is, under its name.
fn every_column(input: &arrow_schema::Schema) -> Result<Vec<(Expr, String)>, String> {
    (0..input.fields().len())
        .map(|index| {
            let field = input.field(index);
            let expr = crate::expr::column(index, input).ok_or_else(|| {
                format!(
                    "columns: `*` takes every column, and `{}` holds a type select cannot \
                     pass on; list the columns to keep instead",
                    field.name()
                )
            })?;
            Ok((expr, field.name().clone()))
        })
        .collect()
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

    #[test]
    fn a_star_is_every_input_column_in_order() {
        let stage = build("columns: ['*', 'count * 2 as double']").unwrap();
        let out = run(
            &stage,
            crate::data::word_counts(&["romeo", "thou"], &[3, 2]),
        );
        let names: Vec<String> = out
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["word", "count", "double"]);
        assert_eq!(texts(&out, "word"), ["romeo", "thou"]);
        assert_eq!(texts(&out, "double"), ["6", "4"]);
        // A column the star selects too is refused, saying how to replace it.
        for yaml in [
            "columns: ['*', 'upper(word) as word']",
            "columns: [count, '*']",
            "columns: ['*', '*']",
        ] {
            let error = build(yaml).err().unwrap();
            assert!(error.contains("(`*` selects it too)"), "{yaml}: {error}");
            assert!(error.contains("with_column"), "{yaml}: {error}");
        }
        // Not an expression anywhere else.
        assert!(build("columns: ['* 2']").is_err());
    }
}
