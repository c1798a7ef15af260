//! `parse_json`: read a text column of JSON objects (a socket's lines, say) into typed columns,
//! as the `file` source's `format: jsonl` does: `columns:` with types and dotted paths, and
//! `on_error` for a value that does not parse or lacks a required field.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, BooleanArray, RecordBatch};
use arrow_schema::{Schema, SchemaRef};
use serde::Deserialize;

use super::{BuildContext, BuildTransform, MapTransform, Stage, StageKind};
use crate::data::text_column_index;
use crate::error::{Error, Result};
use crate::sources::records::{ColumnSpec, Format, OnError, RecordDecoder};

/// Reads a text column of JSON objects (a socket's lines, say) into typed columns, as the file
/// source's `format: jsonl` does; the text column is replaced by them. Nested fields by dotted
/// path (`account.acct`). A null value gives null columns (as Spark's `from_json`), a bad row
/// when one of them is required.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParseJsonConfig {
    /// The text column holding one JSON object per row; it is replaced by the parsed columns.
    #[serde(default = "default_column")]
    pub column: String,
    /// The fields to read and their types, e.g. `{created_at: timestamp, tag: text,
    /// account.acct: text?}` (`?`: may be missing).
    #[schemars(with = "std::collections::BTreeMap<String, String>")]
    pub columns: indexmap::IndexMap<String, String>,
    /// A value that does not parse or lacks a required field: `fail` the run, or `skip` the
    /// row (counted in the run's warnings).
    #[serde(default)]
    pub on_error: OnError,
}

fn default_column() -> String {
    "line".into()
}

impl BuildTransform for ParseJsonConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        let column =
            text_column_index(ctx.input, &self.column).map_err(|e| format!("column: {e}"))?;
        if self.columns.is_empty() {
            return Err("columns: name at least one field".into());
        }
        let specs = self
            .columns
            .iter()
            .map(|(n, t)| ColumnSpec::parse(n, t))
            .collect::<Result<Vec<_>, _>>()?;
        let decoder = RecordDecoder::new(Format::Jsonl, specs, b',')?;
        let mut fields: Vec<_> = ctx
            .input
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != column)
            .map(|(_, f)| f.as_ref().clone())
            .collect();
        for field in decoder.schema().fields() {
            if fields.iter().any(|f| f.name() == field.name()) {
                return Err(format!("columns: `{}` is already a column", field.name()));
            }
            fields.push(field.as_ref().clone());
        }
        let output: SchemaRef = Arc::new(Schema::new(fields));
        Ok(Stage {
            output: output.clone(),
            kind: StageKind::Map(Box::new(ParseJson {
                column,
                decoder,
                on_error: self.on_error,
                output,
                column_name: self.column.clone(),
                skipped: AtomicU64::new(0),
                first_skipped: std::sync::Mutex::new(None),
            })),
        })
    }
}

/// The built `parse_json` transform: reads a text column of JSON objects into typed columns.
pub struct ParseJson {
    column: usize,
    decoder: RecordDecoder,
    on_error: OnError,
    output: SchemaRef,
    column_name: String,
    skipped: AtomicU64,
    /// Why the first row skipped was (in the order batches were read).
    first_skipped: std::sync::Mutex<Option<String>>,
}

impl MapTransform for ParseJson {
    fn warnings(&self) -> Vec<String> {
        let skipped = self.skipped.load(Ordering::Relaxed);
        if skipped == 0 {
            return Vec::new();
        }
        let first = self
            .first_skipped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .unwrap_or_default();
        vec![format!(
            "{} row(s) whose `{}` could not be read were skipped (the first: {first})",
            crate::data::group_digits(skipped),
            self.column_name
        )]
    }

    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let text = batch.column(self.column).as_string::<i32>();
        // One object per line for the reader: line breaks in a value become spaces (JSON's
        // whitespace between tokens). A null is an object without fields (its columns null,
        // as Spark's `from_json(null)` gives; a required one makes the row bad); a blank value
        // is given as `!`, a bad record at its row, told as what it is.
        let mut bytes = Vec::with_capacity(text.value_data().len() + text.len());
        for value in text.iter() {
            match value {
                Some(v) if !v.trim().is_empty() => {
                    bytes.extend(
                        v.bytes()
                            .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
                    )
                }
                None => bytes.extend_from_slice(b"{}"),
                Some(_) => bytes.push(b'!'),
            }
            bytes.push(b'\n');
        }
        let (batches, bad) = self.decoder.decode(&bytes).map_err(Error::runtime)?;
        if let Some(first) = bad.first() {
            let said = match text.is_valid(first.line).then(|| text.value(first.line)) {
                None => format!("the value is null ({})", first.reason),
                Some(v) if v.trim().is_empty() => "the value is blank".to_owned(),
                Some(v) => format!("{} in \"{}\"", first.reason, crate::error::shortened(v)),
            };
            if self.on_error == OnError::Fail {
                return Err(Error::runtime(format!(
                    "parse_json: a value of `{}` cannot be read: {said} (`on_error: skip` leaves such rows out)",
                    self.column_name
                )));
            }
            self.skipped.fetch_add(bad.len() as u64, Ordering::Relaxed);
            let mut first_skipped = self
                .first_skipped
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if first_skipped.is_none() {
                // Said once as it happens (a stream runs long); the count comes at the end.
                tracing::warn!("parse_json: a row was skipped: {said}");
                *first_skipped = Some(said);
            }
        }
        let parsed = arrow_select::concat::concat_batches(&self.decoder.schema(), &batches)
            .map_err(|e| Error::runtime(e.to_string()))?;
        let others: Vec<usize> = (0..batch.num_columns())
            .filter(|&i| i != self.column)
            .collect();
        let kept = if bad.is_empty() {
            batch.project(&others)
        } else {
            let keep: BooleanArray = {
                let mut keep = vec![true; batch.num_rows()];
                for record in &bad {
                    keep[record.line] = false;
                }
                keep.into_iter().map(Some).collect()
            };
            arrow_select::filter::filter_record_batch(
                &batch
                    .project(&others)
                    .map_err(|e| Error::runtime(e.to_string()))?,
                &keep,
            )
        }
        .map_err(|e| Error::runtime(e.to_string()))?;
        let mut columns = kept.columns().to_vec();
        columns.extend(parsed.columns().iter().cloned());
        RecordBatch::try_new_with_options(
            self.output.clone(),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(parsed.num_rows())),
        )
        .map_err(|e| Error::runtime(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::compliance::{run, texts};

    fn build(yaml: &str) -> Result<Stage, String> {
        crate::transforms::compliance::build::<ParseJsonConfig>(
            yaml,
            &crate::data::text_schema("line"),
        )
    }

    #[test]
    fn parses_typed_fields_and_skips_or_fails_on_bad_rows() {
        let input = crate::data::text_batch(
            "line",
            [
                r#"{"tag":"rust","n":2,"at":"2024-05-01T12:00:00Z","account":{"acct":"ana"}}"#,
                "not json",
                "",
                r#"{"tag":"go","at":1714564800,"account":{"acct":"bo"}}"#,
            ],
        );
        let columns = "{tag: text, n: integer?, at: timestamp, account.acct: text}";
        let out = run(
            &build(&format!("{{columns: {columns}, on_error: skip}}")).unwrap(),
            input.clone(),
        );
        assert_eq!(texts(&out, "tag"), ["rust", "go"]);
        assert_eq!(texts(&out, "n"), ["2", ""]);
        assert_eq!(texts(&out, "account.acct"), ["ana", "bo"]);
        assert_eq!(out.num_columns(), 4);
        let stage = build(&format!("{{columns: {columns}}}")).unwrap();
        let StageKind::Map(map) = &stage.kind else {
            panic!()
        };
        let err = map.apply(&input).unwrap_err().to_string();
        assert!(
            err.contains("the line is not a JSON object")
                && err.contains(" in \"not json\"")
                && err.contains("on_error: skip"),
            "{err}"
        );
        let blank = crate::data::text_batch("line", ["  "]);
        let err = map.apply(&blank).unwrap_err().to_string();
        assert!(err.contains("the value is blank"), "{err}");
        // Skipped rows are counted in the run's warnings, with the first reason.
        let skipping = build(&format!("{{columns: {columns}, on_error: skip}}")).unwrap();
        let StageKind::Map(skipping) = &skipping.kind else {
            panic!()
        };
        skipping.apply(&input).unwrap();
        assert_eq!(
            skipping.warnings(),
            ["2 row(s) whose `line` could not be read were skipped (the first: the line is not a JSON object (JSON lines hold one object per line) in \"not json\")"]
        );
        // A null is read as an object without fields: null columns, when they may be.
        let nulls: RecordBatch = RecordBatch::try_from_iter([(
            "line",
            Arc::new(arrow_array::StringArray::from(vec![
                None,
                Some(r#"{"x":"a"}"#),
            ])) as arrow_array::ArrayRef,
        )])
        .unwrap();
        let optional = build("{columns: {x: text?}}").unwrap();
        assert_eq!(texts(&run(&optional, nulls.clone()), "x"), ["", "a"]);
        let required = build("{columns: {x: text}}").unwrap();
        let StageKind::Map(required) = &required.kind else {
            panic!()
        };
        let err = required.apply(&nulls).unwrap_err().to_string();
        assert!(
            err.contains("parse_json: a value of `line` cannot be read: the value is null (the required field `x` is missing"),
            "{err}"
        );
        // Pretty-printed JSON is JSON: its line breaks are whitespace.
        let pretty = crate::data::text_batch(
            "line",
            ["{\n  \"tag\": \"zig\",\n  \"at\": 0,\r\n  \"account\": {\"acct\": \"cy\"}\n}"],
        );
        assert_eq!(texts(&run(&stage, pretty), "tag"), ["zig"]);
        assert!(build("{column: nope, columns: {a: text}}")
            .err()
            .unwrap()
            .contains("no column `nope`"));
    }
}
