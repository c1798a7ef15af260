//! `lowercase`: lowercase a text column, or every element of a list-of-text column, in place
//! (Unicode-aware, like Python's `str.lower`).

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::DataType;
use serde::Deserialize;

use super::{BuildContext, BuildTransform, MapTransform, PerValue, Stage, StageKind};
use crate::data::{column_index, type_label};
use crate::error::Result;

/// Lowercases a text column, or every element of a list-of-text column, in place, with
/// Unicode's case mapping (as Python's `str.lower()`, final sigma included).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LowercaseConfig {
    /// The column to lowercase: text, or a list of text (each element).
    #[serde(deserialize_with = "crate::settings::env::string")]
    pub column: String,
}

impl BuildTransform for LowercaseConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        let index = column_index(ctx.input, &self.column)?;
        let list = match ctx.input.field(index).data_type() {
            DataType::Utf8 => false,
            DataType::List(item) if item.data_type() == &DataType::Utf8 => true,
            other => {
                return Err(format!(
                    "column `{}` holds {}; lowercase needs text or a list of text",
                    self.column,
                    type_label(other)
                ))
            }
        };
        Ok(Stage {
            output: ctx.input.clone(),
            kind: StageKind::Map(Box::new(Lowercase { index, list })),
        })
    }
}

/// The built `lowercase` transform: lowercases a text column, or each element of a list column, in
/// place.
pub struct Lowercase {
    index: usize,
    list: bool,
}

impl MapTransform for Lowercase {
    /// Spark's `lower` is Java's `toLowerCase(Locale.ROOT)`: the same Unicode mapping as
    /// Rust's `to_lowercase` (final sigma included).
    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> Result<crate::spark::frame::Frame, String> {
        use crate::spark::frame::{call, col};
        if self.list {
            return Err("lowercasing a list column has no Spark translation yet".into());
        }
        let name = input.columns()[self.index].clone();
        Ok(input.replacing(self.index, call("lower", vec![col(&name)]), &name))
    }

    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let column = batch.column(self.index);
        let lowered: ArrayRef = if self.list {
            let lists = column.as_list::<i32>();
            let items = lists.values().as_string::<i32>();
            let mut out = ListBuilder::new(StringBuilder::new()).with_field(
                match batch.schema().field(self.index).data_type() {
                    DataType::List(item) => item.clone(),
                    _ => unreachable!("checked at build"),
                },
            );
            for row in 0..lists.len() {
                if lists.is_null(row) {
                    out.append(false);
                    continue;
                }
                let offsets = lists.value_offsets();
                for i in offsets[row] as usize..offsets[row + 1] as usize {
                    out.values()
                        .append_option((!items.is_null(i)).then(|| items.value(i).to_lowercase()));
                }
                out.append(true);
            }
            Arc::new(out.finish())
        } else {
            Arc::new(
                column
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(str::to_lowercase))
                    .collect::<StringArray>(),
            )
        };
        let mut columns = batch.columns().to_vec();
        columns[self.index] = lowered;
        Ok(RecordBatch::try_new(batch.schema(), columns).expect("same schema, same column type"))
    }

    fn per_value(&self) -> Option<PerValue> {
        (!self.list).then_some(PerValue::Maps { column: self.index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{text_batch, text_schema};
    use crate::transforms::compliance::{run, texts};
    use arrow_schema::{Field, Schema};

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

    #[test]
    fn lowercases_every_element_of_a_list() {
        let mut tags = ListBuilder::new(StringBuilder::new());
        tags.values().append_value("Rust");
        tags.values().append_value("AI");
        tags.append(true);
        tags.append(true);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "tags",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            true,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(tags.finish())]).unwrap();
        let config: LowercaseConfig = serde_saphyr::from_str("column: tags").unwrap();
        let stage = config
            .build(&BuildContext {
                input: &schema,
                base_dir: std::path::Path::new("."),
            })
            .unwrap();
        let out = run(&stage, batch);
        assert_eq!(texts(&out, "tags"), ["rust ai", ""]);
    }
}
