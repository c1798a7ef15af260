//! `csv`: the result as a CSV file (quoting by the csv crate), replaced atomically.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use serde::Deserialize;

use super::{atomic, BuildSink, Sink, SinkContext};
use crate::data::cell;
use crate::error::{Error, Result};

/// Write a CSV file.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvSinkConfig {
    /// The file to write, relative to the pipeline file; its directory is created if needed.
    #[serde(deserialize_with = "crate::config::env::path")]
    pub path: PathBuf,
    /// Write the column names as the first row.
    #[serde(default = "yes")]
    pub header: bool,
}

fn yes() -> bool {
    true
}

impl BuildSink for CsvSinkConfig {
    fn output_path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn build(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, String> {
        if self.path.as_os_str().is_empty() || self.path.to_string_lossy().ends_with('/') {
            return Err(format!(
                "`path` must name a file (got `{}`)",
                self.path.display()
            ));
        }
        Ok(Box::new(CsvSink {
            path: crate::config::resolve_against(ctx.base_dir, &self.path),
            header: self.header,
        }))
    }
}

pub struct CsvSink {
    path: PathBuf,
    header: bool,
}

impl Sink for CsvSink {
    fn write(&mut self, result: &RecordBatch, _epoch: u64) -> Result<()> {
        let temp = atomic::temp_beside(&self.path)?;
        let fail = |e: csv::Error| Error::Output {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        };
        let mut writer = csv::Writer::from_writer(std::io::BufWriter::with_capacity(1 << 16, temp));
        write_records(&mut writer, result, self.header).map_err(fail)?;
        let buffered = writer.into_inner().map_err(|e| Error::Output {
            path: self.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let temp = buffered.into_inner().map_err(|e| Error::Output {
            path: self.path.clone(),
            source: e.into_error(),
        })?;
        atomic::persist(temp, &self.path)
    }
}

/// Writes `result` (after its column names, with `header`) as CSV records: every cell as its
/// text, quoted by the csv crate where needed. The fuzz target checks that the csv crate's
/// reader gives every field back.
pub fn write_records<W: std::io::Write>(
    writer: &mut csv::Writer<W>,
    result: &RecordBatch,
    header: bool,
) -> csv::Result<()> {
    if header {
        writer.write_record(result.schema().fields().iter().map(|f| f.name()))?;
    }
    let mut record = csv::ByteRecord::new();
    for row in 0..result.num_rows() {
        record.clear();
        for column in result.columns() {
            record.push_field(cell(column.as_ref(), row).to_text().as_bytes());
        }
        writer.write_byte_record(&record)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::text_batch;

    #[test]
    fn quotes_fields_and_writes_a_header() {
        let dir = tempfile::tempdir().unwrap();
        let batch = text_batch("word", ["plain", "with,comma", "say \"hi\"", "i’ll"]);
        let config = CsvSinkConfig {
            path: "out/x.csv".into(),
            header: true,
        };
        let mut sink = config
            .build(&SinkContext {
                input: &batch.schema(),
                base_dir: dir.path(),
                streaming: false,
            })
            .unwrap();
        sink.write(&batch, 0).unwrap();
        let text = std::fs::read_to_string(dir.path().join("out/x.csv")).unwrap();
        assert_eq!(
            text,
            "word\nplain\n\"with,comma\"\n\"say \"\"hi\"\"\"\ni’ll\n"
        );
        let mut reader = csv::Reader::from_path(dir.path().join("out/x.csv")).unwrap();
        let back: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
        assert_eq!(back, ["plain", "with,comma", "say \"hi\"", "i’ll"]);
    }

    #[test]
    fn unwritable_directory_is_an_output_error() {
        let batch = text_batch("word", ["a"]);
        let config = CsvSinkConfig {
            path: "/proc/no/such/dir/x.csv".into(),
            header: false,
        };
        let mut sink = config
            .build(&SinkContext {
                input: &batch.schema(),
                base_dir: std::path::Path::new("."),
                streaming: false,
            })
            .unwrap();
        let err = sink.write(&batch, 0).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(
            err.to_string()
                .contains("cannot write output /proc/no/such/dir/x.csv"),
            "{err}"
        );
    }
}
