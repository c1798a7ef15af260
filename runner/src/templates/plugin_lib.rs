//! {name}: a runner transform plugin.
//!
//! Build it with `cargo build --release` and use it in a pipeline:
//!
//! ```yaml
//! transforms:
//!   - type: tokenize
//!   - type: plugin
//!     path: ../target/release/lib{name}.so # relative to the pipeline file
//!     config:
//!       column: word
//!       suffix: "!"
//! ```

use std::sync::Arc;

use runner_plugin::arrow_array::cast::AsArray;
use runner_plugin::arrow_array::{ArrayRef, RecordBatch, StringArray};
use runner_plugin::{export_transform, serde_json, Transform};
use serde::Deserialize;

/// The plugin's `config:`. Unknown keys are errors, as in runner's own components.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The text column to change.
    #[serde(default = "default_column")]
    column: String,
    /// What to append to every value.
    #[serde(default = "default_suffix")]
    suffix: String,
}

fn default_column() -> String {
    "word".into()
}

fn default_suffix() -> String {
    "!".into()
}

/// The plugin's settings and anything it prepares once. `transform` may run on several
/// threads at once, so keep shared state behind a Mutex or atomics.
pub struct Plugin {
    config: Config,
}

impl Transform for Plugin {
    fn new(config: &serde_json::Value, _threads: usize) -> Result<Self, String> {
        let config = Config::deserialize(config).map_err(|e| e.to_string())?;
        Ok(Plugin { config })
    }

    /// Appends `suffix` to every value of `column`; other columns pass through unchanged.
    fn transform(&self, input: RecordBatch) -> Result<RecordBatch, String> {
        let Config { column, suffix } = &self.config;
        let index = input
            .schema()
            .index_of(column)
            .map_err(|_| format!("there is no column `{column}`"))?;
        let values = input
            .column(index)
            .as_string_opt::<i32>()
            .ok_or_else(|| format!("`{column}` is not text"))?;
        let changed: StringArray = values
            .iter()
            .map(|v| v.map(|v| format!("{v}{suffix}")))
            .collect();
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
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec!["romeo", "juliet"]))],
        )
        .unwrap();
        let out = plugin.transform(batch).unwrap();
        let words: Vec<&str> = out.column(0).as_string::<i32>().iter().flatten().collect();
        assert_eq!(words, ["romeo?", "juliet?"]);
    }

    #[test]
    fn rejects_bad_config() {
        assert!(Plugin::new(&serde_json::json!({"suffix": 3}), 1).is_err());
        let unknown = Plugin::new(&serde_json::json!({"sufix": "?"}), 1)
            .err()
            .unwrap();
        assert!(unknown.contains("unknown field `sufix`"), "{unknown}");
    }
}
