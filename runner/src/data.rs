//! The record-batch model: Arrow `RecordBatch`es with named, typed columns, and the few helpers
//! every component needs to look columns up and read cells.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

pub use arrow_array;
pub use arrow_schema;

/// Rows per batch handed between transforms: small enough to stay in cache.
pub const BATCH_ROWS: usize = 8192;

/// A schema with one non-null UTF-8 column.
pub fn text_schema(column: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(column, DataType::Utf8, false)]))
}

/// The closest candidate to `word` by edit distance, if it is close enough to be a likely typo
/// (a column name; the loader uses it for keys and types too).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The index of column `name`, or an error listing the columns there are.
pub fn column_index(schema: &Schema, name: &str) -> Result<usize, String> {
    schema.index_of(name).map_err(|_| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        format!(
            "there is no column `{name}`{} (columns here: {})",
            closest(name, names.iter().copied())
                .map_or(String::new(), |best| format!(", did you mean `{best}`?")),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )
    })
}

/// The index of column `name`, which must hold text.
pub fn text_column_index(schema: &Schema, name: &str) -> Result<usize, String> {
    let index = column_index(schema, name)?;
    match schema.field(index).data_type() {
        DataType::Utf8 => Ok(index),
        other => Err(format!(
            "column `{name}` holds {}, but text is needed here",
            type_label(other)
        )),
    }
}

/// How a column type is called in messages.
pub fn type_label(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 => "text".into(),
        DataType::Int64 | DataType::UInt64 | DataType::Int32 => "integers".into(),
        DataType::Float64 => "numbers".into(),
        DataType::Boolean => "booleans".into(),
        DataType::List(inner) => format!("lists of {}", type_label(inner.data_type())),
        other => format!("{other}"),
    }
}

/// Column `index` of `batch` as text. Only call with an index checked by `text_column_index`.
pub fn text(batch: &RecordBatch, index: usize) -> &StringArray {
    batch.column(index).as_string::<i32>()
}

/// One cell, borrowed from a batch, for sinks and sorting.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Text(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Cell<'a>>),
}

impl Cell<'_> {
    /// The cell as plain text (lists joined with spaces, null as empty).
    pub fn to_text(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Text(s) => (*s).to_owned(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Bool(b) => b.to_string(),
            Cell::List(items) => items
                .iter()
                .map(Cell::to_text)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Cell::Null => serde_json::Value::Null,
            Cell::Text(s) => (*s).into(),
            Cell::Int(i) => (*i).into(),
            Cell::Float(f) => (*f).into(),
            Cell::Bool(b) => (*b).into(),
            Cell::List(items) => items.iter().map(Cell::to_json).collect(),
        }
    }
}

/// Reads row `row` of `array`.
pub fn cell(array: &dyn Array, row: usize) -> Cell<'_> {
    if array.is_null(row) {
        return Cell::Null;
    }
    match array.data_type() {
        DataType::Utf8 => Cell::Text(array.as_string::<i32>().value(row)),
        DataType::Int64 => Cell::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => Cell::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Boolean => Cell::Bool(array.as_boolean().value(row)),
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            let offsets = list.value_offsets();
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            let values: &dyn Array = list.values().as_ref();
            Cell::List((start..end).map(|i| cell(values, i)).collect())
        }
        _ => Cell::Null,
    }
}

/// A batch with one text column, for tests and sources.
pub fn text_batch(column: &str, values: impl IntoIterator<Item = impl AsRef<str>>) -> RecordBatch {
    let array: ArrayRef = Arc::new(StringArray::from_iter_values(values));
    RecordBatch::try_new(text_schema(column), vec![array])
        .expect("one text column matches its schema")
}

/// A `word`, `count` batch, the shape of a word count's result (for tests).
#[cfg(test)]
pub(crate) fn word_counts(words: &[&str], counts: &[i64]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("word", DataType::Utf8, false),
        Field::new("count", DataType::Int64, false),
    ]));
    let words: ArrayRef = Arc::new(StringArray::from(words.to_vec()));
    let counts: ArrayRef = Arc::new(arrow_array::Int64Array::from(counts.to_vec()));
    RecordBatch::try_new(schema, vec![words, counts]).expect("two columns matching the schema")
}

/// `name: type` for each column, as plans and checkpoints show them.
pub fn columns(schema: &SchemaRef) -> Vec<String> {
    schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), type_name(f.data_type())))
        .collect()
}

/// A column type in the words plans use (`text`, `integer`, `list of text`).
fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Int64 => "integer".into(),
        DataType::Float64 => "number".into(),
        DataType::Boolean => "boolean".into(),
        DataType::List(item) | DataType::LargeList(item) => {
            format!("list of {}", type_name(item.data_type()))
        }
        other => other.to_string(),
    }
}

/// `17452585` as `17,452,585`.
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Concatenates batches of one schema (an empty list gives an empty batch).
pub fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> RecordBatch {
    match batches {
        [] => RecordBatch::new_empty(schema.clone()),
        [one] => one.clone(),
        many => arrow_select::concat::concat_batches(schema, many)
            .expect("batches of one pipeline stage share its schema"),
    }
}

/// Builds a text column from pieces of bytes known to be UTF-8 (cut from valid text at
/// character boundaries): the bytes are copied without a check per piece, and the whole column
/// is validated once at the end (`finish`), far cheaper than a check per row.
pub struct TextColumnBuilder {
    values: Vec<u8>,
    offsets: Vec<i32>,
}

impl TextColumnBuilder {
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        TextColumnBuilder {
            values: Vec::with_capacity(bytes),
            offsets,
        }
    }

    /// Appends one value.
    #[inline]
    pub fn push(&mut self, piece: &[u8]) {
        self.values.extend_from_slice(piece);
        // Past i32 offsets the column is refused by `finish` (checked there once).
        self.offsets.push(self.values.len() as i32);
    }

    pub fn rows(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The column; an error when the pieces were not UTF-8 or exceed 2 GiB.
    pub fn finish(&mut self) -> Result<arrow_array::StringArray, String> {
        if self.values.len() > i32::MAX as usize {
            return Err("a text column of more than 2 GiB in one batch".into());
        }
        let values = std::mem::take(&mut self.values);
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        arrow_array::StringArray::try_new(
            arrow_buffer::OffsetBuffer::new(arrow_buffer::ScalarBuffer::from(offsets)),
            arrow_buffer::Buffer::from_vec(values),
            None,
        )
        .map_err(|e| e.to_string())
    }
}

/// Bytes as lowercase hexadecimal (digests in summaries, checksums, checkpoints).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_lookup_suggests_close_names() {
        let schema = Schema::new(vec![
            Field::new("word", DataType::Utf8, false),
            Field::new("count", DataType::Int64, false),
        ]);
        assert_eq!(column_index(&schema, "count").unwrap(), 1);
        let err = column_index(&schema, "cuont").unwrap_err();
        assert!(
            err.contains("did you mean `count`?") && err.contains("word, count"),
            "{err}"
        );
        assert!(text_column_index(&schema, "count")
            .unwrap_err()
            .contains("holds integers"));
    }

    #[test]
    fn cells_read_back_as_text_and_json() {
        let batch = text_batch("w", ["a", "b"]);
        assert_eq!(cell(batch.column(0).as_ref(), 1), Cell::Text("b"));
        assert_eq!(Cell::Int(3).to_json(), serde_json::json!(3));
        assert_eq!(
            concat(&batch.schema(), &[batch.clone(), batch.clone()]).num_rows(),
            4
        );
    }
}
