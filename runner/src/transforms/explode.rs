//! `explode`: one row per piece of a string column split on a separator (`"rust spark ai"`), or
//! per element of a list column (Mastodon's tags). Other columns repeat on every row.

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde::Deserialize;

use super::{
    replace_column, schema_replacing, BuildContext, BuildTransform, MapTransform, Stage, StageKind,
    TextSplit,
};
use crate::data::{column_index, type_label};
use crate::error::Result;

/// One row per piece of a text column split on `separator`, or per element of a list column;
/// other columns repeat. The input column is replaced by the output column (`as`). In a stream,
/// `explode` straight into `group_count` is counted from the socket's bytes without building
/// rows.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplodeConfig {
    /// The column to explode: text (with `separator`) or a list of text.
    #[serde(deserialize_with = "crate::settings::env::string")]
    pub column: String,
    /// For a text column: the separator between pieces (for example `" "`).
    #[serde(default, deserialize_with = "crate::settings::env::opt_string")]
    pub separator: Option<String>,
    /// The output column name; defaults to `column`.
    #[serde(
        default,
        rename = "as",
        deserialize_with = "crate::settings::env::opt_string"
    )]
    pub output: Option<String>,
    /// Drop empty pieces (two separators in a row, a trailing separator) and a list's empty and
    /// null items; `false` keeps them (a null item as a null row, as Spark's `explode`).
    #[serde(default = "yes")]
    pub drop_empty: bool,
}

fn yes() -> bool {
    true
}

impl BuildTransform for ExplodeConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        let index = column_index(ctx.input, &self.column)?;
        let data_type = ctx.input.field(index).data_type().clone();
        match (&data_type, &self.separator) {
            (DataType::Utf8, Some(sep)) if sep.is_empty() => {
                return Err("`separator` must not be empty".into())
            }
            (DataType::Utf8, Some(_)) => {}
            (DataType::Utf8, None) => {
                return Err(format!(
                    "column `{}` is text: give a `separator` to split it on (for example \" \")",
                    self.column
                ))
            }
            (DataType::List(item), None) if item.data_type() == &DataType::Utf8 => {}
            (DataType::List(_), Some(_)) => {
                return Err(format!(
                    "column `{}` is already a list; remove `separator`",
                    self.column
                ))
            }
            (other, _) => {
                return Err(format!(
                    "column `{}` holds {}; explode needs text or a list of text",
                    self.column,
                    type_label(other)
                ))
            }
        }
        let name = self.output.clone().unwrap_or_else(|| self.column.clone());
        let mut output = schema_replacing(ctx.input, index, &name, DataType::Utf8)?;
        if matches!(data_type, DataType::List(_)) && !self.drop_empty {
            // A list's null items are kept as null rows.
            let mut fields: Vec<arrow_schema::Field> =
                output.fields().iter().map(|f| f.as_ref().clone()).collect();
            fields[index] = fields[index].clone().with_nullable(true);
            output = Arc::new(arrow_schema::Schema::new(fields));
        }
        Ok(Stage {
            output: output.clone(),
            kind: StageKind::Map(Box::new(Explode {
                config: self.clone(),
                index,
                output,
            })),
        })
    }
}

impl Explode {
    /// The separator, when it splits a text column (rather than exploding a list).
    pub fn separator(&self) -> Option<&str> {
        self.config.separator.as_deref()
    }

    /// Whether empty pieces are left out.
    pub fn drop_empty(&self) -> bool {
        self.config.drop_empty
    }

    /// The column it reads.
    pub fn input_column(&self) -> usize {
        self.index
    }
}

/// The built `explode` transform: one row per piece of its column, other columns repeated.
pub struct Explode {
    config: ExplodeConfig,
    index: usize,
    output: arrow_schema::SchemaRef,
}

impl MapTransform for Explode {
    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> Result<crate::spark::frame::Frame, String> {
        Ok(crate::spark::words::split_at(
            input,
            self.index,
            self.output.field(self.index).name(),
            self.config.separator.as_deref(),
            self.config.drop_empty,
        ))
    }

    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let column = batch.column(self.index);
        let mut pieces = StringBuilder::new();
        let mut parents = Vec::new();
        // A piece, or a list's null item (`None`).
        let mut push = |row: usize, piece: Option<&str>| {
            if !(self.config.drop_empty && piece.is_none_or(str::is_empty)) {
                pieces.append_option(piece);
                parents.push(row as u32);
            }
        };
        match &self.config.separator {
            Some(separator) => {
                for (row, value) in column.as_string::<i32>().iter().enumerate() {
                    for piece in value.into_iter().flat_map(|v| v.split(separator.as_str())) {
                        push(row, Some(piece));
                    }
                }
            }
            None => {
                let lists = column.as_list::<i32>();
                let items = lists.values().as_string::<i32>();
                for row in 0..lists.len() {
                    if lists.is_null(row) {
                        continue;
                    }
                    let offsets = lists.value_offsets();
                    for i in offsets[row] as usize..offsets[row + 1] as usize {
                        push(row, (!items.is_null(i)).then(|| items.value(i)));
                    }
                }
            }
        }
        Ok(replace_column(
            &self.output,
            batch,
            self.index,
            parents,
            Arc::new(pieces.finish()),
        ))
    }

    fn splits_text(&self) -> Option<TextSplit<'_>> {
        Some(TextSplit::Separator {
            column: self.index,
            separator: self.config.separator.as_deref()?,
            drop_empty: self.config.drop_empty,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{text_batch, text_schema};
    use crate::transforms::compliance::{run, texts};
    use arrow_array::builder::ListBuilder;
    use arrow_schema::{Field, Schema};

    fn build(yaml: &str, schema: &arrow_schema::SchemaRef) -> Result<Stage, String> {
        let config: ExplodeConfig = serde_saphyr::from_str(yaml).unwrap();
        config.build(&BuildContext {
            input: schema,
            base_dir: std::path::Path::new("."),
        })
    }

    #[test]
    fn splits_text_on_the_separator() {
        let stage = build(
            "{column: line, separator: ' ', as: hashtag}",
            &text_schema("line"),
        )
        .unwrap();
        let out = run(&stage, text_batch("line", ["rust spark  ai", "", "solo"]));
        assert_eq!(texts(&out, "hashtag"), ["rust", "spark", "ai", "solo"]);
    }

    #[test]
    fn explodes_lists_and_repeats_other_columns() {
        let mut tags = ListBuilder::new(StringBuilder::new());
        tags.values().append_value("rust");
        tags.values().append_value("ai");
        tags.append(true);
        tags.append(true);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
                true,
            ),
        ]));
        let ids = Arc::new(arrow_array::StringArray::from(vec!["1", "2"]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![ids, Arc::new(tags.finish())]).unwrap();
        let stage = build("{column: tags, as: hashtag}", &schema).unwrap();
        let out = run(&stage, batch);
        assert_eq!(texts(&out, "hashtag"), ["rust", "ai"]);
        assert_eq!(texts(&out, "id"), ["1", "1"]);
    }

    #[test]
    fn a_row_of_many_items_explodes_in_memory_linear_in_them() {
        // 200,000 tags in one row: the list itself was repeated for each tag (n² bytes,
        // 160 GB here), which failed the allocation.
        let mut tags = ListBuilder::new(StringBuilder::new());
        for i in 0..200_000 {
            tags.values().append_value(format!("t{i}"));
        }
        tags.append(true);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
                true,
            ),
        ]));
        let ids = Arc::new(arrow_array::StringArray::from(vec!["1"]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![ids, Arc::new(tags.finish())]).unwrap();
        let stage = build("{column: tags, as: hashtag}", &schema).unwrap();
        let out = run(&stage, batch);
        assert_eq!(out.num_rows(), 200_000);
        assert!(out.get_array_memory_size() < 64 << 20);
        assert_eq!(texts(&out, "hashtag")[199_999], "t199999");
    }

    #[test]
    fn a_lists_null_and_empty_items_are_kept_with_drop_empty_false_as_spark_keeps_them() {
        let mut tags = ListBuilder::new(StringBuilder::new());
        tags.values().append_value("a");
        tags.values().append_null();
        tags.values().append_value("");
        tags.append(true);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "tags",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            true,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(tags.finish())]).unwrap();
        let kept = build("{column: tags, drop_empty: false}", &schema).unwrap();
        let out = run(&kept, batch.clone());
        let column = out.column(0).as_string::<i32>();
        let values: Vec<Option<&str>> = column.iter().collect();
        assert_eq!(values, [Some("a"), None, Some("")]);
        assert!(kept.output.field(0).is_nullable());
        let dropped = build("{column: tags}", &schema).unwrap();
        assert_eq!(texts(&run(&dropped, batch), "tags"), ["a"]);
    }

    #[test]
    fn text_without_separator_is_an_error() {
        let err = build("column: line", &text_schema("line")).err().unwrap();
        assert!(err.contains("give a `separator`"), "{err}");
    }
}
