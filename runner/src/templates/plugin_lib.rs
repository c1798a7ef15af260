//! {name}: a runner transform plugin.
//!
//! Build it with `cargo build --release -p {name}` and use it in a pipeline:
//!
//! ```yaml
//! transforms:
//!   - type: tokenize
//!   - type: plugin
//!     path: ../target/release/lib{name}.so   # relative to the pipeline file
//!     config:
//!       column: word
//!       suffix: "!"
//! ```

use std::sync::Arc;

use runner_plugin::arrow_array::cast::AsArray;
use runner_plugin::arrow_array::{ArrayRef, RecordBatch, StringArray};
use runner_plugin::{export_transform, serde_json, Transform};

/// The plugin's settings and anything it prepares once. `transform` may run on several
/// threads at once, so keep shared state behind a Mutex or atomics.
pub struct Plugin {
    column: String,
    suffix: String,
}

impl Transform for Plugin {
    fn new(config: &serde_json::Value, _threads: usize) -> Result<Self, String> {
        let text = |key: &str, default: &str| match config.get(key) {
            None => Ok(default.to_owned()),
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("`{key}` must be text, got {other}")),
        };
        Ok(Plugin { column: text("column", "word")?, suffix: text("suffix", "!")? })
    }

    /// Appends `suffix` to every value of `column`; other columns pass through unchanged.
    fn transform(&self, input: RecordBatch) -> Result<RecordBatch, String> {
        let index = input.schema().index_of(&self.column).map_err(|_| format!("there is no column `{}`", self.column))?;
        let values = input.column(index).as_string_opt::<i32>().ok_or_else(|| format!("`{}` is not text", self.column))?;
        let changed: StringArray = values.iter().map(|v| v.map(|v| format!("{v}{}", self.suffix))).collect();
        let mut columns: Vec<ArrayRef> = input.columns().to_vec();
        columns[index] = Arc::new(changed);
        RecordBatch::try_new(input.schema(), columns).map_err(|e| e.to_string())
    }
}

export_transform!(Plugin, name = "{name}");

#[cfg(test)]
mod tests {
    use super::*;
    use runner_plugin::arrow_schema::{DataType, Field, Schema};

    #[test]
    fn appends_the_suffix() {
        let plugin = Plugin::new(&serde_json::json!({"suffix": "?"}), 1).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("word", DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["romeo", "juliet"]))]).unwrap();
        let out = plugin.transform(batch).unwrap();
        let words: Vec<&str> = out.column(0).as_string::<i32>().iter().flatten().collect();
        assert_eq!(words, ["romeo?", "juliet?"]);
    }

    #[test]
    fn rejects_bad_config() {
        assert!(Plugin::new(&serde_json::json!({"suffix": 3}), 1).is_err());
    }
}
