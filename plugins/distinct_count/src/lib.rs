//! A runner plugin that keeps state across batches: it remembers every distinct value of a
//! column (`config: {column: word}`) and, after the last batch, emits one row
//! `column, distinct` (e.g. `word, 3752`). Its batches in between are empty. `transform` runs
//! on several threads at once, so the set sits behind a Mutex.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use runner_plugin::arrow_array::cast::AsArray;
use runner_plugin::arrow_array::{Int64Array, RecordBatch, StringArray};
use runner_plugin::arrow_schema::{DataType, Field, Schema, SchemaRef};
use runner_plugin::{export_transform, serde_json, Transform};

pub struct DistinctCount {
    column: String,
    seen: Mutex<HashSet<String>>,
    schema: SchemaRef,
}

impl Transform for DistinctCount {
    fn new(config: &serde_json::Value, _threads: usize) -> Result<Self, String> {
        let column = match config.get("column") {
            None => "word".to_owned(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => return Err(format!("`column` must be text, got {other}")),
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("column", DataType::Utf8, false),
            Field::new("distinct", DataType::Int64, false),
        ]));
        Ok(DistinctCount {
            column,
            seen: Mutex::new(HashSet::new()),
            schema,
        })
    }

    fn transform(&self, input: RecordBatch) -> Result<RecordBatch, String> {
        let index = input
            .schema()
            .index_of(&self.column)
            .map_err(|_| format!("there is no column `{}`", self.column))?;
        let values = input
            .column(index)
            .as_string_opt::<i32>()
            .ok_or_else(|| format!("`{}` is not text", self.column))?;
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| "the set was poisoned by an earlier panic")?;
        for value in values.iter().flatten() {
            if !seen.contains(value) {
                seen.insert(value.to_owned());
            }
        }
        Ok(RecordBatch::new_empty(self.schema.clone()))
    }

    fn finish(&self) -> Result<Option<RecordBatch>, String> {
        let distinct = self
            .seen
            .lock()
            .map_err(|_| "the set was poisoned by an earlier panic")?
            .len() as i64;
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![self.column.clone()])),
                Arc::new(Int64Array::from(vec![distinct])),
            ],
        )
        .map_err(|e| e.to_string())?;
        Ok(Some(batch))
    }
}

export_transform!(DistinctCount, name = "distinct_count");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_across_batches_and_reports_at_the_end() {
        let plugin = DistinctCount::new(&serde_json::json!({}), 1).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("word", DataType::Utf8, false)]));
        for words in [vec!["a", "b"], vec!["b", "c", "a"]] {
            let batch =
                RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(words))])
                    .unwrap();
            assert_eq!(plugin.transform(batch).unwrap().num_rows(), 0);
        }
        let last = plugin.finish().unwrap().unwrap();
        assert_eq!(
            last.column(1)
                .as_primitive::<runner_plugin::arrow_array::types::Int64Type>()
                .value(0),
            3
        );
    }
}
