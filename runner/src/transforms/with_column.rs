//! `with_column`: add a column computed by an expression (or replace one of the same name).

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use serde::Deserialize;

use super::{BuildContext, BuildTransform, MapTransform, Stage, StageKind};
use crate::error::{Error, Result};
use crate::expr::{compile_expr, Expr};

/// Adds a column computed by an expression; a column of the same name is replaced in
/// place. Expressions: [Records](../../records.md#expressions).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WithColumnConfig {
    /// The column's name; an existing column of this name is replaced in place.
    pub name: String,
    /// The expression computing it, e.g. `length(word)` or `round(amount * 1.2, 2)`.
    #[serde(deserialize_with = "crate::settings::env::spanned_string")]
    #[schemars(with = "String")]
    pub expr: serde_saphyr::Spanned<String>,
}

impl BuildTransform for WithColumnConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        if self.name.is_empty() {
            return Err("`name` is empty".into());
        }
        let expr = compile_expr(&self.expr.value, ctx.input).map_err(|e| format!("expr: {e}"))?;
        let field = expr.field(&self.name, ctx.input);
        let mut fields: Vec<_> = ctx
            .input
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let position = ctx.input.index_of(&self.name).ok();
        match position {
            Some(i) => fields[i] = field,
            None => fields.push(field),
        }
        let output: SchemaRef = Arc::new(Schema::new(fields));
        Ok(Stage {
            output: output.clone(),
            kind: StageKind::Map(Box::new(WithColumn {
                expr,
                position,
                output,
            })),
        })
    }

    fn error_location(&self, message: &str) -> Option<serde_saphyr::Location> {
        message
            .starts_with("expr: ")
            .then_some(self.expr.referenced)
    }
}

/// The built `with_column` transform: adds a computed column, or replaces the one of the same name.
pub struct WithColumn {
    expr: Expr,
    /// The column it replaces; `None`: it is added last.
    position: Option<usize>,
    output: SchemaRef,
}

impl MapTransform for WithColumn {
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let value = self
            .expr
            .evaluate(batch)
            .map_err(|e| Error::runtime(e.to_string()))?;
        let mut columns = batch.columns().to_vec();
        match self.position {
            Some(i) => columns[i] = value,
            None => columns.push(value),
        }
        RecordBatch::try_new(self.output.clone(), columns)
            .map_err(|e| Error::runtime(e.to_string()))
    }

    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> Result<crate::spark::frame::Frame, String> {
        let value = self.expr.to_spark(input.columns())?;
        let name = self
            .output
            .field(self.position.unwrap_or(self.output.fields().len() - 1))
            .name()
            .clone();
        Ok(match self.position {
            Some(i) => input.replacing(i, value, &name),
            None => {
                let mut names = input.columns().to_vec();
                let mut columns: Vec<_> =
                    names.iter().map(|n| crate::spark::frame::col(n)).collect();
                columns.push(value.alias(&name));
                names.push(name);
                input.select(columns, names)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::compliance::{run, texts};

    fn build(yaml: &str) -> Result<Stage, String> {
        crate::transforms::compliance::build_on_word_counts::<WithColumnConfig>(yaml)
    }

    #[test]
    fn adds_or_replaces() {
        let input = crate::data::word_counts(&["romeo", "thou"], &[3, 2]);
        let out = run(
            &build("{name: len, expr: length(word)}").unwrap(),
            input.clone(),
        );
        assert_eq!(texts(&out, "len"), ["5", "4"]);
        assert_eq!(out.num_columns(), 3);
        let out = run(&build("{name: count, expr: count * 10}").unwrap(), input);
        assert_eq!(texts(&out, "count"), ["30", "20"]);
        assert_eq!(out.num_columns(), 2);
        assert!(build("{name: x, expr: 'lenght(word)'}")
            .err()
            .unwrap()
            .contains("did you mean `length`?"));
    }
}
