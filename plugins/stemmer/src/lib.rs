//! A runner plugin: replaces each value of a text column by its Snowball stem
//! (`config: {column: word, language: english}`), so "loved", "loving" and "loves" all count
//! as "love". Uses the rust-stemmers crate (the Snowball algorithms).

use std::sync::Arc;

use runner_plugin::arrow_array::cast::AsArray;
use runner_plugin::arrow_array::{ArrayRef, RecordBatch, StringArray};
use runner_plugin::{export_transform, serde_json, Transform};
use rust_stemmers::{Algorithm, Stemmer};

pub struct Stem {
    column: String,
    stemmer: Stemmer,
}

fn algorithm(language: &str) -> Result<Algorithm, String> {
    Ok(match language {
        "arabic" => Algorithm::Arabic,
        "danish" => Algorithm::Danish,
        "dutch" => Algorithm::Dutch,
        "english" => Algorithm::English,
        "finnish" => Algorithm::Finnish,
        "french" => Algorithm::French,
        "german" => Algorithm::German,
        "greek" => Algorithm::Greek,
        "hungarian" => Algorithm::Hungarian,
        "italian" => Algorithm::Italian,
        "norwegian" => Algorithm::Norwegian,
        "portuguese" => Algorithm::Portuguese,
        "romanian" => Algorithm::Romanian,
        "russian" => Algorithm::Russian,
        "spanish" => Algorithm::Spanish,
        "swedish" => Algorithm::Swedish,
        "tamil" => Algorithm::Tamil,
        "turkish" => Algorithm::Turkish,
        other => {
            return Err(format!(
                "no Snowball stemmer for `{other}` (try english, french, german, spanish, ...)"
            ))
        }
    })
}

impl Transform for Stem {
    fn new(config: &serde_json::Value, _threads: usize) -> Result<Self, String> {
        let object = config.as_object().ok_or("config must be a map")?;
        if let Some(key) = object.keys().find(|k| *k != "column" && *k != "language") {
            return Err(format!(
                "unknown config key `{key}` (expected `column` and `language`)"
            ));
        }
        let text = |key: &str, default: &str| match object.get(key) {
            None => Ok(default.to_owned()),
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("`{key}` must be text, got {other}")),
        };
        Ok(Stem {
            column: text("column", "word")?,
            stemmer: Stemmer::create(algorithm(&text("language", "english")?)?),
        })
    }

    fn transform(&self, input: RecordBatch) -> Result<RecordBatch, String> {
        let index = input
            .schema()
            .index_of(&self.column)
            .map_err(|_| format!("there is no column `{}`", self.column))?;
        let words = input
            .column(index)
            .as_string_opt::<i32>()
            .ok_or_else(|| format!("`{}` is not text", self.column))?;
        let stems: StringArray = words
            .iter()
            .map(|w| w.map(|w| self.stemmer.stem(w).into_owned()))
            .collect();
        let mut columns: Vec<ArrayRef> = input.columns().to_vec();
        columns[index] = Arc::new(stems);
        RecordBatch::try_new(input.schema(), columns).map_err(|e| e.to_string())
    }
}

export_transform!(Stem, name = "stemmer");

#[cfg(test)]
mod tests {
    use super::*;
    use runner_plugin::arrow_schema::{DataType, Field, Schema};

    #[test]
    fn forms_of_a_word_share_a_stem() {
        let plugin = Stem::new(&serde_json::json!({}), 1).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("word", DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![
                "loved", "loving", "loves", "love",
            ]))],
        )
        .unwrap();
        let out = plugin.transform(batch).unwrap();
        let stems: Vec<&str> = out.column(0).as_string::<i32>().iter().flatten().collect();
        assert_eq!(stems, ["love", "love", "love", "love"]);
    }

    #[test]
    fn unknown_languages_and_keys_are_errors() {
        assert!(Stem::new(&serde_json::json!({"language": "klingon"}), 1)
            .err()
            .unwrap()
            .contains("no Snowball stemmer"));
        assert!(Stem::new(&serde_json::json!({"lang": "english"}), 1)
            .err()
            .unwrap()
            .contains("unknown config key"));
    }
}
