//! `file`: the result as JSON lines, Parquet or CSV (the `csv` sink's writer). A batch run's
//! file is replaced atomically. In a stream, `complete` epochs replace the file likewise
//! (`update` is refused); `append` epochs add lines to a JSON-lines or CSV file (cut back to
//! whole epochs after a crash) or, for Parquet (which cannot be appended to), write one part
//! file per epoch into the directory `path` (`part-00000042.parquet`), so a redone epoch
//! rewrites its own part and nothing twice.

use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use serde::Deserialize;

use super::{BuildSink, Flow, Sink, SinkContext};
use crate::error::{Error, Result};
use crate::io::atomic;

/// JSON lines (one object per row: numbers unquoted, timestamps RFC 3339, lists as arrays),
/// Parquet (the model's types, zstd) or CSV (as the `csv` sink writes it, with a header row),
/// replaced atomically. In a stream's `append` output mode, JSON lines and CSV rows are
/// added to the file (cut back to whole epochs after a crash, a whole last line without a line
/// end kept and ended; a file whose first line is not a JSON object is refused, untouched;
/// with a checkpoint, the ledger
/// `.NAME.epoch` beside the file keeps an epoch redone after a restart from being added
/// twice); Parquet writes one
/// part file per epoch into the directory `path` (`part-00000042.parquet`): with a checkpoint
/// the part is named by the epoch, so a redone epoch rewrites its own part; without one, a
/// run's parts are numbered after the parts already there, so nothing earlier is overwritten;
/// the parts there must hold the same columns.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to write (for Parquet in a stream's `append` mode: the directory of part
    /// files), relative to the pipeline file; directories are created if needed.
    #[serde(deserialize_with = "crate::settings::env::path")]
    pub path: PathBuf,
    /// `jsonl` (one JSON object per row: numbers unquoted, timestamps RFC 3339, lists as
    /// arrays), `parquet` (the model's types, zstd-compressed) or `csv` (with a header row;
    /// the `csv` sink is the same writer with its own settings).
    pub format: FileFormat,
}

/// How the `file` sink encodes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// One JSON object per row: numbers unquoted, timestamps RFC 3339, lists as arrays.
    Jsonl,
    /// Parquet with the model's types, zstd-compressed.
    Parquet,
    /// CSV with a header row, written as the `csv` sink writes it.
    Csv,
}

/// The encodings the `file` sink writes itself (CSV goes to the `csv` sink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Jsonl,
    Parquet,
}

impl BuildSink for FileSinkConfig {
    fn output_path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    /// Parquet appended in a stream: a part file per epoch in the folder `path`.
    fn writes_a_folder(&self, stream_appends: bool) -> bool {
        stream_appends && self.format == FileFormat::Parquet
    }

    fn build(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, String> {
        if self.path.as_os_str().is_empty() {
            return Err("`path` is empty".into());
        }
        super::refuse_update_mode(ctx)?;
        let format = match self.format {
            FileFormat::Jsonl => Encoding::Jsonl,
            FileFormat::Parquet => Encoding::Parquet,
            FileFormat::Csv => {
                let csv = super::csv::CsvSinkConfig {
                    path: self.path.clone(),
                    header: true,
                };
                return csv.build(ctx);
            }
        };
        Ok(Box::new(FileSink {
            path: crate::settings::resolve_against(ctx.base_dir, &self.path),
            format,
            appending: ctx.appending,
            checkpointed: ctx.checkpointed,
            fresh_stream: ctx.fresh_stream,
            stream_id: ctx.stream_id.clone(),
            ledger: (format == Encoding::Jsonl)
                .then(|| {
                    super::epoch_ledger::for_appends(
                        ctx,
                        &crate::settings::resolve_against(ctx.base_dir, &self.path),
                    )
                })
                .flatten(),
            part_offset: None,
            schema: ctx.input.clone(),
            open: None,
            epoch: 0,
            repaired: false,
            held: None,
        }))
    }
}

/// The `file` sink at run time: writes each result as JSON lines or Parquet (CSV is the `csv`
/// sink's).
pub struct FileSink {
    path: PathBuf,
    format: Encoding,
    appending: bool,
    /// Whether epochs are redone after a restart (parts are then named by epoch alone).
    checkpointed: bool,
    /// See `SinkContext::fresh_stream`.
    fresh_stream: bool,
    /// See `SinkContext::stream_id`.
    stream_id: super::StreamId,
    /// A checkpointed stream's JSON lines appends: which epochs the file holds.
    ledger: Option<super::epoch_ledger::EpochLedger>,
    /// What this run adds to an epoch's number to name its Parquet part (decided at the first
    /// part: past the parts already in the directory when there is no checkpoint).
    part_offset: Option<u64>,
    schema: arrow_schema::SchemaRef,
    open: Option<Open>,
    epoch: u64,
    /// Whether an appended JSON-lines file was checked for a partial last line this run.
    repaired: bool,
    /// The file appended to, held for the run (see `epoch_ledger::hold_for_appends`).
    held: Option<std::fs::File>,
}

enum Open {
    /// JSON lines into a temporary file renamed over the target at commit.
    Lines(std::io::BufWriter<tempfile::NamedTempFile>),
    /// JSON lines added to the target; `length`: where this epoch's start, to cut back.
    Appended {
        file: std::io::BufWriter<std::fs::File>,
        length: u64,
    },
    /// A redone epoch the file holds already (see `EpochLedger`): not written again.
    Skip,
    /// Parquet into a temporary file renamed over `target` at commit.
    Parquet {
        writer: Box<parquet::arrow::ArrowWriter<tempfile::NamedTempFile>>,
        target: PathBuf,
    },
}

impl FileSink {
    fn output(&self, source: std::io::Error) -> Error {
        Error::Output {
            path: self.path.clone(),
            source,
        }
    }

    fn parquet_writer(&self, target: &Path) -> Result<Open> {
        let temp = atomic::temp_beside(target)?;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
            .build();
        let writer = parquet::arrow::ArrowWriter::try_new(temp, self.schema.clone(), Some(props))
            .map_err(|e| self.output(std::io::Error::other(e)))?;
        Ok(Open::Parquet {
            writer: Box::new(writer),
            target: target.to_path_buf(),
        })
    }

    /// Refuses to add parts whose columns differ from the `part` already there: readers of
    /// the directory would mix them up (DuckDB matches columns by position).
    fn check_columns(&self, part: &Path) -> Result<()> {
        let wanted = columns_of(&self.schema);
        match parquet_columns(part) {
            Ok(found) if found == wanted => Ok(()),
            // Named as the part already there, not as one this run writes.
            Ok(found) => Err(Error::runtime(format!(
                "cannot add a part beside {}: it holds `{}` but this pipeline writes `{}`: parts of one directory must hold the same columns; write to another directory, or move this one away",
                crate::error::escape_path(part),
                crate::error::shortened(&found.join(", ")),
                crate::error::shortened(&wanted.join(", "))
            ))),
            Err(why) => Err(Error::Output {
                path: part.to_path_buf(),
                source: std::io::Error::other(format!(
                    "the part already there cannot be read ({}), so the columns cannot be checked",
                    crate::error::shortened(&why)
                )),
            }),
        }
    }

    fn abandon(&mut self) {
        if let Some(Open::Appended { file, length }) = self.open.take() {
            if let Ok(file) = file.into_inner() {
                let _ = file.set_len(length);
            }
        }
    }
}

/// How much a Parquet row group may buffer before it is written out: the writer keeps a whole
/// row group in memory, and its own bound (a million rows) is no bound on bytes when values are
/// long.
const ROW_GROUP_BYTES: usize = 64 << 20;

/// Writes `rows` into the row group being built, and writes that group out once it holds more
/// than `limit` bytes.
fn write_parquet<W: std::io::Write + Send>(
    writer: &mut parquet::arrow::ArrowWriter<W>,
    rows: &RecordBatch,
    limit: usize,
) -> parquet::errors::Result<()> {
    writer.write(rows)?;
    if writer.in_progress_size() > limit {
        writer.flush()?;
    }
    Ok(())
}

/// Where a checkpointed stream's part numbers begin, in the parts' directory (hidden, so that
/// readers of `*.parquet` pass it by).
const FIRST_PART: &str = ".first-part";

/// The stream that writes parts into a directory, and the part its epoch 0 has.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FirstPart {
    stream: String,
    part: u64,
}

fn write_first_part(dir: &std::path::Path, first: &FirstPart) -> std::io::Result<()> {
    let text = serde_json::to_vec(first).map_err(std::io::Error::other)?;
    let mut temp = atomic::temp_beside(&dir.join(FIRST_PART))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    std::io::Write::write_all(&mut temp, &text)?;
    atomic::persist(temp, &dir.join(FIRST_PART)).map_err(|e| std::io::Error::other(e.to_string()))
}

/// Which stream writes the parts there, if one is recorded.
fn read_first_part(dir: &std::path::Path) -> std::io::Result<Option<FirstPart>> {
    match std::fs::read(dir.join(FIRST_PART)) {
        Ok(text) => serde_json::from_slice(&text).map(Some).map_err(|e| {
            std::io::Error::other(format!(
                "{} is damaged ({e}): move the directory away to start over",
                dir.join(FIRST_PART).display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The highest `part-N.parquet` in `dir`: its number and path.
fn last_part(dir: &Path) -> std::io::Result<Option<(u64, PathBuf)>> {
    let mut last: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_prefix("part-"))
            .and_then(|n| n.strip_suffix(".parquet"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = number {
            if last.as_ref().is_none_or(|(highest, _)| number > *highest) {
                last = Some((number, entry.path()));
            }
        }
    }
    Ok(last)
}

/// The columns of a Parquet file as `name: type` texts.
fn parquet_columns(path: &Path) -> std::result::Result<Vec<String>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| e.to_string())?;
    Ok(columns_of(reader.schema()))
}

fn columns_of(schema: &arrow_schema::Schema) -> Vec<String> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let data_type = f.data_type();
            let name = crate::data::ValueType::of(data_type)
                .map_or_else(|| data_type.to_string(), |t| t.name().to_owned());
            format!("{}: {name}", f.name())
        })
        .collect()
}

fn write_lines(out: &mut dyn Write, rows: &RecordBatch) -> std::io::Result<()> {
    let mut lines = Vec::new();
    super::json_lines::write_rows(&mut lines, rows, rows.num_rows(), None);
    out.write_all(&lines)
}

impl Sink for FileSink {
    fn begin(&mut self, epoch: u64) -> Result<()> {
        self.abandon();
        self.epoch = epoch;
        self.open = Some(match (self.format, self.appending) {
            (Encoding::Jsonl, false) => Open::Lines(std::io::BufWriter::with_capacity(
                1 << 16,
                atomic::temp_beside(&self.path)?,
            )),
            (Encoding::Jsonl, true) => {
                if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    crate::io::atomic::make_dirs(dir).map_err(|e| self.output(e))?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create(true)
                    .open(&self.path)
                    .map_err(|e| self.output(e))?;
                let first = !std::mem::replace(&mut self.repaired, true);
                if first {
                    self.held = super::epoch_ledger::hold_for_appends(&file, &self.path)?;
                    super::csv::check_json_lines(&mut file).map_err(|e| self.output(e))?;
                }
                // A run killed while writing left part of a line: cut it, as the csv sink
                // does (a whole last line without a line end is kept).
                let prepared = super::epoch_ledger::prepare(
                    self.ledger.as_mut(),
                    epoch,
                    &mut file,
                    &self.path,
                    first,
                    super::csv::end_or_cut_last_line,
                );
                let Some(length) = prepared.map_err(|e| self.output(e))? else {
                    self.open = Some(Open::Skip);
                    return Ok(());
                };
                Open::Appended {
                    file: std::io::BufWriter::with_capacity(1 << 16, file),
                    length,
                }
            }
            (Encoding::Parquet, false) => self.parquet_writer(&self.path.clone())?,
            (Encoding::Parquet, true) => {
                crate::io::atomic::make_dirs(&self.path).map_err(|e| self.output(e))?;
                let offset = match self.part_offset {
                    Some(offset) => offset,
                    None => {
                        // The run's first part: after the parts there (without a
                        // checkpoint), which must hold the same columns.
                        let last = last_part(&self.path).map_err(|e| self.output(e))?;
                        if let Some((_, part)) = &last {
                            self.check_columns(part)?;
                        }
                        let after_last = last
                            .as_ref()
                            .map_or(0, |(number, _)| number.saturating_add(1));
                        if self.checkpointed {
                            // A checkpointed stream names its parts by epoch from where it
                            // began, kept beside them with its id, so a redone epoch replaces
                            // its part and a new stream goes after an earlier one's.
                            let stream = self.stream_id.get().cloned().unwrap_or_default();
                            let first = read_first_part(&self.path).map_err(|e| self.output(e))?;
                            match first {
                                Some(first) if first.stream == stream => first.part,
                                _ => {
                                    // A stream redoing its first epochs without a record
                                    // here was cut off before it wrote its first part: the
                                    // parts there are another stream's, never replaced.
                                    if first.is_none() && !self.fresh_stream && last.is_some() {
                                        tracing::warn!(
                                            "{}: no record of this stream's parts ({FIRST_PART}), so the parts there are taken as an earlier stream's; its parts begin at part {after_last}",
                                            crate::error::escape_path(&self.path)
                                        );
                                    }
                                    let first = FirstPart {
                                        stream,
                                        part: after_last,
                                    };
                                    write_first_part(&self.path, &first)
                                        .map_err(|e| self.output(e))?;
                                    after_last
                                }
                            }
                        } else {
                            after_last
                        }
                    }
                };
                self.part_offset = Some(offset);
                let number = offset.checked_add(epoch).ok_or_else(|| {
                    self.output(std::io::Error::other(
                        "its part numbers have run out (a part numbered near 2^64 is there)",
                    ))
                })?;
                let part = self.path.join(format!("part-{number:08}.parquet"));
                self.parquet_writer(&part)?
            }
        });
        Ok(())
    }

    fn write(&mut self, rows: &RecordBatch) -> Result<Flow> {
        let written = match self.open.as_mut() {
            Some(Open::Lines(out)) => write_lines(out, rows),
            Some(Open::Appended { file, .. }) => write_lines(file, rows),
            Some(Open::Skip) => Ok(()),
            Some(Open::Parquet { writer, .. }) => {
                write_parquet(writer, rows, ROW_GROUP_BYTES).map_err(std::io::Error::other)
            }
            None => return Err(Error::runtime("file sink: rows written before `begin`")),
        };
        if let Err(e) = written {
            self.abandon();
            return Err(self.output(e));
        }
        Ok(Flow::More)
    }

    fn commit(&mut self) -> Result<()> {
        match self.open.take() {
            Some(Open::Lines(out)) => {
                let temp = out.into_inner().map_err(|e| self.output(e.into_error()))?;
                atomic::persist(temp, &self.path)
            }
            Some(Open::Skip) => Ok(()),
            Some(Open::Appended { file, length }) => {
                let synced = file
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|f| f.sync_data().map(|_| f));
                let epoch = self.epoch;
                let recorded = synced.and_then(|f| match self.ledger.as_mut() {
                    Some(ledger) => ledger.record(epoch, f.metadata()?.len()),
                    None => Ok(()),
                });
                recorded.map_err(|e| {
                    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&self.path) {
                        let _ = f.set_len(length);
                    }
                    self.output(e)
                })
            }
            Some(Open::Parquet { writer, target }) => {
                let temp = writer
                    .into_inner()
                    .map_err(|e| self.output(std::io::Error::other(e)))?;
                atomic::persist(temp, &target)
            }
            None => Err(Error::runtime("file sink: commit before `begin`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::write_result;

    fn sink(dir: &Path, yaml: &str, appending: bool) -> Box<dyn Sink> {
        let config: FileSinkConfig = serde_saphyr::from_str(yaml).unwrap();
        let schema = crate::data::word_counts(&["a"], &[1]).schema();
        config
            .build(&SinkContext::for_test(&schema, dir, appending, false))
            .unwrap()
    }

    #[test]
    fn a_checkpointed_stream_appends_each_jsonl_epoch_once_over_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let rows = crate::data::word_counts(&["a", "b"], &[1, 2]);
        let build = || {
            let config: FileSinkConfig =
                serde_saphyr::from_str("{path: out.jsonl, format: jsonl}").unwrap();
            config
                .build(&SinkContext::for_test(
                    &rows.schema(),
                    dir.path(),
                    true,
                    true,
                ))
                .unwrap()
        };
        let mut sink = build();
        write_result(sink.as_mut(), &rows.slice(0, 1), 0).unwrap();
        write_result(sink.as_mut(), &rows.slice(1, 1), 1).unwrap();
        drop(sink);
        let mut restarted = build();
        // Epochs 0 and 1 redone after a restart: skipped; epoch 2 added.
        write_result(restarted.as_mut(), &rows.slice(0, 1), 0).unwrap();
        write_result(restarted.as_mut(), &rows.slice(1, 1), 1).unwrap();
        write_result(restarted.as_mut(), &rows, 2).unwrap();
        let text = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
        assert_eq!(
            text,
            "{\"word\":\"a\",\"count\":1}\n{\"word\":\"b\",\"count\":2}\n{\"word\":\"a\",\"count\":1}\n{\"word\":\"b\",\"count\":2}\n"
        );
    }

    /// A checkpointed stream cut off in its first epoch before this sink wrote its record of
    /// parts redoes that epoch: the parts already there (an earlier run's) are not its own.
    #[test]
    fn a_redone_first_epoch_without_a_record_of_parts_writes_after_the_parts_there() {
        let dir = tempfile::tempdir().unwrap();
        let rows = crate::data::word_counts(&["a", "b"], &[1, 2]);
        let mut earlier = sink(dir.path(), "{path: parts, format: parquet}", true);
        write_result(earlier.as_mut(), &rows, 0).unwrap();
        let earlier_part = dir.path().join("parts/part-00000000.parquet");
        let before = std::fs::read(&earlier_part).unwrap();
        let config: FileSinkConfig =
            serde_saphyr::from_str("{path: parts, format: parquet}").unwrap();
        let schema = rows.schema();
        let context = SinkContext::for_test(&schema, dir.path(), true, true);
        context.stream_id.set("stream-b".into()).unwrap();
        // Not fresh: its checkpoint holds epoch 0 in flight (offsets written, then killed).
        let mut redoing = config
            .build(&SinkContext {
                fresh_stream: false,
                ..context
            })
            .unwrap();
        write_result(redoing.as_mut(), &rows.slice(0, 1), 0).unwrap();
        assert_eq!(
            std::fs::read(&earlier_part).unwrap(),
            before,
            "part 0 replaced"
        );
        assert!(dir.path().join("parts/part-00000001.parquet").exists());
        // Its own redone epoch replaces its own part.
        write_result(redoing.as_mut(), &rows.slice(0, 1), 0).unwrap();
        let parts = std::fs::read_dir(dir.path().join("parts"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != FIRST_PART)
            .count();
        assert_eq!(parts, 2);
    }

    #[test]
    fn files_refuse_a_stream_in_update_mode() {
        let schema = crate::data::word_counts(&["a"], &[1]).schema();
        for yaml in [
            "{path: o.jsonl, format: jsonl}",
            "{path: o, format: parquet}",
            "{path: o.csv, format: csv}",
        ] {
            let config: FileSinkConfig = serde_saphyr::from_str(yaml).unwrap();
            let refused = config
                .build(&SinkContext {
                    input: &schema,
                    base_dir: Path::new("."),
                    streaming: true,
                    appending: false,
                    updating: true,
                    checkpointed: false,
                    fresh_stream: false,
                    stream_id: Default::default(),
                    pipeline: "test",
                })
                .err()
                .unwrap_or_else(|| panic!("{yaml} took update mode"));
            assert!(refused.contains("`output_mode: complete`"), "{refused}");
        }
    }

    #[test]
    fn a_parquet_row_group_is_written_out_once_it_holds_the_bound_in_bytes() {
        // Distinct values, so that a dictionary does not fold them into one.
        let long: Vec<String> = (0..50)
            .map(|i| format!("{i}{}", "x".repeat(10_000)))
            .collect();
        let words: Vec<&str> = long.iter().map(String::as_str).collect();
        let rows = crate::data::word_counts(&words, &[1; 50]);
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(Vec::new(), rows.schema(), None).unwrap();
        for _ in 0..4 {
            write_parquet(&mut writer, &rows, 100_000).unwrap();
        }
        // Each 500 kB batch fills a group past the 100 kB bound: four groups, not one.
        assert_eq!(writer.flushed_row_groups().len(), 4);
        writer.close().unwrap();
    }

    #[test]
    fn a_second_run_appending_to_the_same_file_is_refused_while_the_first_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let rows = crate::data::word_counts(&["a"], &[1]);
        for yaml in [
            "{path: a.jsonl, format: jsonl}",
            "{path: a.csv, format: csv}",
        ] {
            let mut first = sink(dir.path(), yaml, true);
            write_result(first.as_mut(), &rows, 0).unwrap();
            let mut second = sink(dir.path(), yaml, true);
            let refused = write_result(second.as_mut(), &rows, 0).unwrap_err();
            assert_eq!(refused.exit_code(), 3, "{refused}");
            assert!(
                refused.to_string().contains("another run is appending to"),
                "{refused}"
            );
            // The first goes on; once it ends, the second may append.
            write_result(first.as_mut(), &rows, 1).unwrap();
            drop(first);
            let mut third = sink(dir.path(), yaml, true);
            write_result(third.as_mut(), &rows, 0).unwrap();
            let name = yaml[7..].split(',').next().unwrap();
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
            // Three rows of `a`, none cut (the header, `word,count`, has no `a`).
            assert_eq!(text.matches('a').count(), 3, "{text}");
        }
    }

    #[test]
    fn jsonl_replaces_or_appends_and_parquet_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let rows = crate::data::word_counts(&["romeo", "thou"], &[298, 277]);
        let mut lines = sink(dir.path(), "{path: out/c.jsonl, format: jsonl}", false);
        write_result(lines.as_mut(), &rows, 0).unwrap();
        write_result(lines.as_mut(), &rows.slice(0, 1), 0).unwrap();
        let text = std::fs::read_to_string(dir.path().join("out/c.jsonl")).unwrap();
        assert_eq!(text, "{\"word\":\"romeo\",\"count\":298}\n");
        let mut appended = sink(dir.path(), "{path: a.jsonl, format: jsonl}", true);
        write_result(appended.as_mut(), &rows, 0).unwrap();
        write_result(appended.as_mut(), &rows.slice(1, 1), 1).unwrap();
        let text = std::fs::read_to_string(dir.path().join("a.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 3);
        // A run killed mid-line: the next run's first epoch cuts the partial line first.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("a.jsonl"))
            .unwrap();
        file.write_all(b"{\"word\":\"th").unwrap();
        drop(appended);
        let mut restarted = sink(dir.path(), "{path: a.jsonl, format: jsonl}", true);
        write_result(restarted.as_mut(), &rows.slice(0, 1), 2).unwrap();
        let text = std::fs::read_to_string(dir.path().join("a.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        // A file of another kind is refused, and left as it was.
        std::fs::write(dir.path().join("notes.jsonl"), "dear diary\nlast line").unwrap();
        let mut notes = sink(dir.path(), "{path: notes.jsonl, format: jsonl}", true);
        let refused = write_result(notes.as_mut(), &rows, 0)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("its first line is not a JSON object (`dear diary`)"),
            "{refused}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("notes.jsonl")).unwrap(),
            "dear diary\nlast line"
        );
        // A whole line without a line end (another tool's file) is kept, and ended.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("a.jsonl"))
            .unwrap();
        file.write_all(b"{\"word\":\"kept\",\"count\":1}").unwrap();
        drop(restarted);
        let mut restarted = sink(dir.path(), "{path: a.jsonl, format: jsonl}", true);
        write_result(restarted.as_mut(), &rows.slice(0, 1), 3).unwrap();
        let text = std::fs::read_to_string(dir.path().join("a.jsonl")).unwrap();
        assert!(
            text.ends_with("{\"word\":\"kept\",\"count\":1}\n{\"word\":\"romeo\",\"count\":298}\n"),
            "{text}"
        );

        let mut parquet = sink(dir.path(), "{path: c.parquet, format: parquet}", false);
        write_result(parquet.as_mut(), &rows, 0).unwrap();
        let file = std::fs::File::open(dir.path().join("c.parquet")).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(batches[0].column(1).as_ref(), rows.column(1).as_ref());

        let mut parts = sink(dir.path(), "{path: parts, format: parquet}", true);
        write_result(parts.as_mut(), &rows, 3).unwrap();
        write_result(parts.as_mut(), &rows, 4).unwrap();
        write_result(parts.as_mut(), &rows, 4).unwrap(); // a redone epoch rewrites its part
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("parts"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["part-00000003.parquet", "part-00000004.parquet"]);
        // A second run without a checkpoint starts at epoch 0 again: its parts come after.
        let mut again = sink(dir.path(), "{path: parts, format: parquet}", true);
        write_result(again.as_mut(), &rows.slice(0, 1), 0).unwrap();
        write_result(again.as_mut(), &rows.slice(0, 1), 1).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("parts"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "part-00000003.parquet",
                "part-00000004.parquet",
                "part-00000005.parquet",
                "part-00000006.parquet"
            ]
        );
        // Parts of other columns are not added beside them.
        let config: FileSinkConfig =
            serde_saphyr::from_str("{path: parts, format: parquet}").unwrap();
        let other = crate::data::text_batch("label", ["x"]);
        let mut other_sink = config
            .build(&SinkContext::for_test(
                &other.schema(),
                dir.path(),
                true,
                false,
            ))
            .unwrap();
        let refused = write_result(other_sink.as_mut(), &other, 0)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("part-00000006.parquet: it holds `word: text, count: integer` but this pipeline writes `label: text`"),
            "{refused}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("parts")).unwrap().count(),
            4
        );
    }

    #[test]
    fn csv_is_the_csv_sinks_writer_with_a_header() {
        let dir = tempfile::tempdir().unwrap();
        let rows = crate::data::word_counts(&["romeo", "a,b"], &[298, 3]);
        let mut csv = sink(dir.path(), "{path: out/c.csv, format: csv}", false);
        write_result(csv.as_mut(), &rows, 0).unwrap();
        let text = std::fs::read_to_string(dir.path().join("out/c.csv")).unwrap();
        assert_eq!(text, "word,count\nromeo,298\n\"a,b\",3\n");
        let mut appended = sink(dir.path(), "{path: a.csv, format: csv}", true);
        write_result(appended.as_mut(), &rows, 0).unwrap();
        write_result(appended.as_mut(), &rows.slice(1, 1), 1).unwrap();
        let text = std::fs::read_to_string(dir.path().join("a.csv")).unwrap();
        assert_eq!(text, "word,count\nromeo,298\n\"a,b\",3\n\"a,b\",3\n");
    }
}
