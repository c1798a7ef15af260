//! A runner plugin: keeps the rows whose text column has at least `min` characters
//! (`config: {column: word, min: 4}`), e.g. to drop short words before counting.

use runner_plugin::arrow_array::cast::AsArray;
use runner_plugin::arrow_array::{Array, BooleanArray, RecordBatch};
use runner_plugin::{export_transform, serde_json, Transform};

pub struct MinLength {
    column: String,
    min: usize,
}

impl Transform for MinLength {
    fn new(config: &serde_json::Value, _threads: usize) -> Result<Self, String> {
        let object = config.as_object().ok_or("config must be a map")?;
        for key in object.keys() {
            if key != "column" && key != "min" {
                return Err(format!(
                    "unknown config key `{key}` (expected `column` and `min`)"
                ));
            }
        }
        let column = match object.get("column") {
            None => "word".to_owned(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => return Err(format!("`column` must be text, got {other}")),
        };
        let min = match object.get("min") {
            Some(serde_json::Value::Number(n)) if n.as_u64().is_some() => {
                n.as_u64().unwrap_or(0) as usize
            }
            Some(other) => return Err(format!("`min` must be a whole number, got {other}")),
            None => return Err("`min` is required, e.g. `min: 4`".into()),
        };
        Ok(MinLength { column, min })
    }

    fn transform(&self, input: RecordBatch) -> Result<RecordBatch, String> {
        let index = input
            .schema()
            .index_of(&self.column)
            .map_err(|_| format!("there is no column `{}`", self.column))?;
        let Some(texts) = input.column(index).as_string_opt::<i32>() else {
            return Err(format!("column `{}` is not text", self.column));
        };
        let keep: BooleanArray = (0..texts.len())
            .map(|i| Some(!texts.is_null(i) && texts.value(i).chars().count() >= self.min))
            .collect();
        runner_plugin::arrow_select_filter(&input, &keep)
    }
}

export_transform!(MinLength, name = "min_length");

#[cfg(test)]
mod tests {
    use super::*;
    use runner_plugin::arrow_array::StringArray;
    use std::sync::Arc;

    #[test]
    fn keeps_long_enough_words() {
        let plugin = MinLength::new(&serde_json::json!({"column": "word", "min": 4}), 1).unwrap();
        let schema = Arc::new(runner_plugin::arrow_schema::Schema::new(vec![
            runner_plugin::arrow_schema::Field::new(
                "word",
                runner_plugin::arrow_schema::DataType::Utf8,
                false,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![
                "thou", "art", "romeo", "été",
            ]))],
        )
        .unwrap();
        let out = plugin.transform(batch).unwrap();
        let words: Vec<&str> = out.column(0).as_string::<i32>().iter().flatten().collect();
        assert_eq!(words, ["thou", "romeo"]);
    }

    #[test]
    fn bad_config_is_explained() {
        assert!(MinLength::new(&serde_json::json!({"min": "four"}), 1)
            .err()
            .unwrap()
            .contains("whole number"));
        assert!(MinLength::new(&serde_json::json!({"mni": 4}), 1)
            .err()
            .unwrap()
            .contains("unknown config key"));
    }
}
