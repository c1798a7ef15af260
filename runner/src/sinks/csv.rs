//! `csv`: the result as a CSV file (quoting by the csv crate), replaced atomically. In a
//! stream's `append` output mode each epoch's new rows are added to the file instead (the
//! header once, when the file is new), as Spark's file sink adds files.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use serde::Deserialize;

use super::{BuildSink, Flow, Sink, SinkContext};
use crate::data::cell;
use crate::error::{Error, Result};
use crate::io::atomic;

/// Writes a CSV file (quoting by the csv crate; timestamps RFC 3339, lists as JSON arrays) to a
/// temporary file in the same directory, flushed and renamed, so a reader or a killed run never
/// sees half a file; the directory is created if needed. In a stream's `append` output mode, each epoch's rows are added (the
/// header once; a partial last record left by a killed run is cut first, while a whole one
/// without a line end, as another tool may leave it, is kept and ended; a file whose header
/// names other columns is refused). With a checkpoint, the ledger `.NAME.epoch` beside the file
/// records the last epoch added, so an epoch redone after a restart is not added twice.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvSinkConfig {
    /// The file to write, relative to the pipeline file; its directory is created if needed.
    #[serde(deserialize_with = "crate::settings::env::path")]
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
        super::refuse_update_mode(ctx)?;
        Ok(Box::new(CsvSink {
            path: crate::settings::resolve_against(ctx.base_dir, &self.path),
            header: self.header,
            appending: ctx.appending,
            ledger: super::epoch_ledger::for_appends(
                ctx,
                &crate::settings::resolve_against(ctx.base_dir, &self.path),
            ),
            epoch: 0,
            repaired: false,
            schema: ctx.input.clone(),
            open: None,
            held: None,
        }))
    }
}

/// The `csv` sink at run time: writes each result to its file, replacing it or, in `append` output
/// mode, adding to it.
pub struct CsvSink {
    path: PathBuf,
    header: bool,
    /// Add each epoch's rows to the file rather than replace it.
    appending: bool,
    /// A checkpointed stream's appends: which epochs the file holds (a redone one is skipped).
    ledger: Option<super::epoch_ledger::EpochLedger>,
    /// The epoch being written.
    epoch: u64,
    /// Whether this run has checked the file's end (see `open_for_append`).
    repaired: bool,
    schema: arrow_schema::SchemaRef,
    /// The result being written, between `begin` and `commit`.
    open: Option<Open>,
    /// The file appended to, held for the run (see `epoch_ledger::hold_for_appends`).
    held: Option<std::fs::File>,
}

/// Where a result's records go until it is committed.
enum Open {
    /// A temporary file beside the target, renamed over it at commit.
    Replace(std::io::BufWriter<tempfile::NamedTempFile>),
    /// The target itself, at its end; `length` is where this epoch's rows start, to cut them
    /// back off if they cannot all be written.
    Append {
        writer: std::io::BufWriter<std::fs::File>,
        length: u64,
    },
    /// A redone epoch the file holds already: its rows are not written again.
    Skip,
}

impl CsvSink {
    fn output_error(&self, source: std::io::Error) -> Error {
        Error::Output {
            path: self.path.clone(),
            source,
        }
    }

    /// Opens the file to add an epoch's rows at its end (creating it, with the header, when
    /// it is new or empty). The first append of a run also removes a partial last record left
    /// by a process killed mid-write.
    fn open_for_append(&mut self) -> Result<Open> {
        let output = |source: std::io::Error| Error::Output {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::io::atomic::make_dirs(dir).map_err(output)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(output)?;
        let first = !std::mem::replace(&mut self.repaired, true);
        if first {
            self.held = super::epoch_ledger::hold_for_appends(&file, &self.path)?;
        }
        // Another file's header is refused before its end is touched (cut or ended); a file
        // without one line end yet is a header cut short, or this sink's own, checked after.
        let header_first =
            first && self.header && whole_lines_length(&mut file).map_err(output)? > 0;
        if header_first {
            self.check_header(&mut file)?;
        }
        let columns = self.schema.fields().len();
        let Some(length) = super::epoch_ledger::prepare(
            self.ledger.as_mut(),
            self.epoch,
            &mut file,
            &self.path,
            first,
            |file, path| end_or_cut_last_record(file, path, columns),
        )
        .map_err(output)?
        else {
            return Ok(Open::Skip);
        };
        if first && self.header && length > 0 && !header_first {
            self.check_header(&mut file)?;
        }
        let mut writer = std::io::BufWriter::with_capacity(1 << 16, file);
        if self.header && length == 0 {
            write_records(
                &mut writer,
                &RecordBatch::new_empty(self.schema.clone()),
                true,
            )
            .map_err(output)?;
        }
        Ok(Open::Append { writer, length })
    }

    /// Refuses to add rows under another header: the file's first record must name this
    /// result's columns, in order.
    fn check_header(&self, file: &mut std::fs::File) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        let output = |source: std::io::Error| Error::Output {
            path: self.path.clone(),
            source,
        };
        file.seek(SeekFrom::Start(0)).map_err(output)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(std::io::Read::take(&mut *file, 1 << 20));
        let mut found = csv::StringRecord::new();
        let read = reader.read_record(&mut found).unwrap_or(false);
        let wanted: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let found: Vec<&str> = found.iter().collect();
        if read && found == wanted {
            return Ok(());
        }
        let shown = |names: &[&str]| {
            crate::error::shortened(&crate::error::escape_controls(&names.join(",")))
        };
        Err(output(std::io::Error::other(format!(
            "its header is `{}` but this pipeline writes `{}`: rows would go under the wrong columns; write to another file, or move this one away",
            shown(&found),
            shown(&wanted)
        ))))
    }

    /// Gives up the result being written: a temporary file is removed, appended rows are cut
    /// back off, so the file holds whole epochs.
    fn abandon(&mut self) {
        if let Some(Open::Append { writer, length }) = self.open.take() {
            if let Ok(file) = writer.into_inner() {
                let _ = file.set_len(length);
            } else if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&self.path) {
                let _ = file.set_len(length);
            }
        }
    }
}

/// The bytes of `file` from `start` to its end (at most a few MiB: see the callers).
fn tail(file: &mut std::fs::File, start: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Ends `file`'s last line (`tail`), which has no line end but reads as whole (a file another
/// tool wrote without a final newline), so that appended rows start on a line of their own. A
/// run of runner killed inside a record's last field leaves such a line too: nothing tells the
/// two apart without a checkpoint's ledger, so the line is kept (no row is lost) and shown.
fn end_last_line(
    file: &mut std::fs::File,
    path: &Path,
    length: u64,
    tail: &[u8],
) -> std::io::Result<u64> {
    use std::io::Write;
    tracing::warn!(
        "{}: its last line (`{}`) has no line end: it is kept, and ended before the rows appended (if a run was killed while writing it, it may be cut short: check it)",
        crate::error::escape_path(path),
        crate::error::shortened(&String::from_utf8_lossy(tail))
    );
    file.write_all(b"\n")?;
    Ok(length + 1)
}

/// Cuts `file` back to `whole` bytes, saying what is removed (a partial last record a run
/// killed while appending left), so that a record lost this way can be found again.
fn cut_back(file: &mut std::fs::File, path: &Path, whole: u64, cut: &[u8]) -> std::io::Result<u64> {
    let length = file.metadata()?.len();
    let shown = match cut.is_empty() {
        true => String::new(),
        false => format!(
            ", `{}`",
            crate::error::shortened(&String::from_utf8_lossy(cut))
        ),
    };
    tracing::warn!(
        "{}: removing a partial last record ({} bytes{shown}) left by an epoch that was cut off",
        crate::error::escape_path(path),
        length - whole,
    );
    file.set_len(whole)?;
    Ok(whole)
}

/// The most bytes past the last line end that are read to judge them; more than this is cut
/// (or refused) unread.
const MOST_TAIL: u64 = 1 << 20;

/// Refuses to append JSON lines to a file whose first whole line is not a JSON object (a
/// file of another kind, named by mistake), before its end is touched.
pub(super) fn check_json_lines(file: &mut std::fs::File) -> std::io::Result<()> {
    use std::io::{BufRead, Seek, SeekFrom};
    if whole_lines_length(file)? == 0 {
        return Ok(());
    }
    file.seek(SeekFrom::Start(0))?;
    let mut first = Vec::new();
    std::io::BufReader::new(std::io::Read::take(&mut *file, MOST_TAIL))
        .read_until(b'\n', &mut first)?;
    let object = first.ends_with(b"\n")
        && serde_json::from_slice::<serde_json::Value>(&first).is_ok_and(|v| v.is_object());
    if object || !first.ends_with(b"\n") && first.len() as u64 == MOST_TAIL {
        return Ok(());
    }
    Err(std::io::Error::other(format!(
        "its first line is not a JSON object (`{}`): it is not a JSON lines file to add rows to; write to another file, or move this one",
        crate::error::shortened(&String::from_utf8_lossy(first.trim_ascii_end()))
    )))
}

/// Readies a JSON-lines `file` (at `path`) to take rows at its end; gives its length then. A
/// last line without a line end is either part of a line a run killed while appending left
/// (not a JSON value: cut off) or a whole line another tool wrote without a final newline (a
/// JSON value: kept, and ended).
pub(super) fn end_or_cut_last_line(file: &mut std::fs::File, path: &Path) -> std::io::Result<u64> {
    let length = file.metadata()?.len();
    let whole = whole_lines_length(file)?;
    if whole == length {
        return Ok(length);
    }
    let cut = match length - whole <= MOST_TAIL {
        true => tail(file, whole)?,
        false => Vec::new(),
    };
    let text = std::str::from_utf8(&cut).map(str::trim);
    if matches!(text, Ok(t) if !t.is_empty() && serde_json::from_str::<serde_json::Value>(t).is_ok())
    {
        return end_last_line(file, path, length, &cut);
    }
    cut_back(file, path, whole, &cut)
}

/// Readies a CSV `file` (at `path`) to take records of `columns` fields at its end; gives its
/// length then. A quoted field may hold line ends, so the whole file is read to find the last
/// line end outside quotes. What follows it is either part of a record a run killed while
/// appending left (cut off) or a whole record another tool wrote without a final line end (its
/// quotes closed and `columns` fields: kept, and ended).
fn end_or_cut_last_record(
    file: &mut std::fs::File,
    path: &Path,
    columns: usize,
) -> std::io::Result<u64> {
    let length = file.metadata()?.len();
    let (whole, quote_open) = whole_records_length(file)?;
    if whole == length {
        return Ok(length);
    }
    // A record this sink writes ends at a line end outside quotes; a file written otherwise
    // (a quote escaped with a backslash) can leave a quote open far back: refuse to cut much.
    if length - whole > MOST_TAIL && whole < whole_lines_length(file)? {
        return Err(std::io::Error::other(format!(
            "its last {} bytes do not end a CSV record (a quote is left open): it was not written by this sink, or is damaged; fix or move it",
            length - whole
        )));
    }
    let cut = match length - whole <= MOST_TAIL {
        true => tail(file, whole)?,
        false => Vec::new(),
    };
    if !quote_open && !cut.is_empty() {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(cut.as_slice());
        let mut record = csv::ByteRecord::new();
        let one = reader.read_byte_record(&mut record).unwrap_or(false)
            && record.len() == columns
            && !reader
                .read_byte_record(&mut csv::ByteRecord::new())
                .unwrap_or(true);
        if one {
            return end_last_line(file, path, length, &cut);
        }
    }
    cut_back(file, path, whole, &cut)
}

/// The length of CSV `file` up to and including its last line end outside quotes (a quote
/// inside a quoted field is written twice, so quotes open and close in turn), and whether a
/// quote is open at its end.
fn whole_records_length(file: &mut std::fs::File) -> std::io::Result<(u64, bool)> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))?;
    let mut chunk = vec![0u8; 256 * 1024];
    let (mut offset, mut whole, mut quoted) = (0u64, 0u64, false);
    loop {
        let read = file.read(&mut chunk)?;
        if read == 0 {
            return Ok((whole, quoted));
        }
        for at in memchr::memchr2_iter(b'"', b'\n', &chunk[..read]) {
            match chunk[at] {
                b'"' => quoted = !quoted,
                _ if !quoted => whole = offset + at as u64 + 1,
                _ => {}
            }
        }
        offset += read as u64;
    }
}

/// The length of `file` up to and including its last newline.
fn whole_lines_length(file: &mut std::fs::File) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let length = file.metadata()?.len();
    let mut end = length;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let piece = &mut chunk[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(piece)?;
        if let Some(at) = memchr::memrchr(b'\n', piece) {
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl Sink for CsvSink {
    /// An appending stream's file under another header is refused before any sink writes:
    /// refused at its first epoch, the sinks before it had appended theirs.
    fn ready(&self) -> Result<()> {
        if !(self.appending && self.header) {
            return Ok(());
        }
        // A regular file only: opening a FIFO to read waits for a writer.
        if !std::fs::metadata(&self.path).is_ok_and(|m| m.is_file()) {
            return Ok(());
        }
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            // One that cannot be read: told at the first epoch.
            return Ok(());
        };
        match whole_lines_length(&mut file) {
            Ok(length) if length > 0 => self.check_header(&mut file),
            _ => Ok(()),
        }
    }

    fn begin(&mut self, epoch: u64) -> Result<()> {
        self.abandon();
        self.epoch = epoch;
        self.open = Some(if self.appending {
            self.open_for_append()?
        } else {
            let temp = atomic::temp_beside(&self.path)?;
            let mut writer = std::io::BufWriter::with_capacity(1 << 16, temp);
            if self.header {
                write_records(
                    &mut writer,
                    &RecordBatch::new_empty(self.schema.clone()),
                    true,
                )
                .map_err(|e| self.output_error(e))?;
            }
            Open::Replace(writer)
        });
        Ok(())
    }

    fn write(&mut self, rows: &RecordBatch) -> Result<Flow> {
        let written = match self.open.as_mut() {
            Some(Open::Replace(writer)) => write_records(writer, rows, false),
            Some(Open::Append { writer, .. }) => write_records(writer, rows, false),
            Some(Open::Skip) => Ok(()),
            None => return Err(Error::runtime("csv sink: rows written before `begin`")),
        };
        if let Err(e) = written {
            self.abandon();
            return Err(self.output_error(e));
        }
        Ok(Flow::More)
    }

    fn commit(&mut self) -> Result<()> {
        match self.open.take() {
            Some(Open::Replace(writer)) => {
                let temp = writer
                    .into_inner()
                    .map_err(|e| self.output_error(e.into_error()))?;
                atomic::persist(temp, &self.path)
            }
            Some(Open::Skip) => Ok(()),
            Some(Open::Append { writer, length }) => {
                let synced = writer
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|file| file.sync_data().map(|_| file));
                let epoch = self.epoch;
                let recorded = synced.and_then(|file| match self.ledger.as_mut() {
                    Some(ledger) => ledger.record(epoch, file.metadata()?.len()),
                    None => Ok(()),
                });
                match recorded {
                    Ok(_) => Ok(()),
                    Err(error) => {
                        if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&self.path) {
                            let _ = file.set_len(length);
                        }
                        Err(self.output_error(error))
                    }
                }
            }
            None => Err(Error::runtime("csv sink: commit before `begin`")),
        }
    }
}

/// Writes `result` (after its column names, with `header`) as CSV records, quoted where needed
/// by csv-core (the csv crate's writer): every cell as its text, an empty text as `""` and a
/// null as nothing, as Spark writes them, so other readers tell them apart (a record of one
/// null field is `""` too, as a blank line would be no record). The fuzz target checks that
/// the csv crate's reader gives every field back.
pub fn write_records<W: std::io::Write>(
    out: &mut W,
    result: &RecordBatch,
    header: bool,
) -> std::io::Result<()> {
    write_records_as(out, result, header, false)
}

/// [`write_records`] for a spreadsheet: a text that a spreadsheet would take for a formula
/// (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a `'` before it, as
/// OWASP advises, so that data never runs as a formula when the file is opened.
pub fn write_records_for_spreadsheet<W: std::io::Write>(
    out: &mut W,
    result: &RecordBatch,
    header: bool,
) -> std::io::Result<()> {
    write_records_as(out, result, header, true)
}

fn write_records_as<W: std::io::Write>(
    out: &mut W,
    result: &RecordBatch,
    header: bool,
    for_spreadsheet: bool,
) -> std::io::Result<()> {
    let defused = |text: &str| -> Option<String> {
        (for_spreadsheet && text.starts_with(['=', '+', '-', '@', '\t', '\r']))
            .then(|| format!("'{text}"))
    };
    let mut writer = csv_core::WriterBuilder::new()
        .terminator(csv_core::Terminator::Any(b'\n'))
        .build();
    let mut line = Vec::with_capacity(1 << 16);
    let lone = result.num_columns() == 1;
    if header {
        for (index, field) in result.schema().fields().iter().enumerate() {
            let name = defused(field.name());
            push_field(
                &mut writer,
                &mut line,
                index,
                Some(name.as_deref().unwrap_or(field.name()).as_bytes()),
                lone,
            );
        }
        end_record(&mut writer, &mut line);
    }
    for row in 0..result.num_rows() {
        for (index, column) in result.columns().iter().enumerate() {
            match cell(column.as_ref(), row) {
                crate::data::Cell::Null => push_field(&mut writer, &mut line, index, None, lone),
                crate::data::Cell::Text(text) if for_spreadsheet => {
                    let quoted = defused(text);
                    let field = quoted.as_deref().unwrap_or(text);
                    push_field(&mut writer, &mut line, index, Some(field.as_bytes()), lone)
                }
                value => {
                    let text = value.to_field();
                    push_field(&mut writer, &mut line, index, Some(text.as_bytes()), lone)
                }
            }
        }
        end_record(&mut writer, &mut line);
        if line.len() >= 1 << 16 {
            out.write_all(&line)?;
            line.clear();
        }
    }
    out.write_all(&line)
}

/// Adds field `index` of a record to `line`: `None` (a null) as nothing, an empty text as
/// `""`, anything else quoted where needed.
fn push_field(
    writer: &mut csv_core::Writer,
    line: &mut Vec<u8>,
    index: usize,
    field: Option<&[u8]>,
    lone: bool,
) {
    if index > 0 {
        write_all(line, |out| {
            let (result, written) = writer.delimiter(out);
            (result, 0, written)
        });
    }
    match field {
        // A record of one empty field: csv-core's line end writes it `""`.
        None | Some([]) if lone => {}
        Some([]) => line.extend_from_slice(b"\"\""),
        None => {}
        Some(mut input) => {
            // The whole field goes in one call: csv-core decides its quoting from it.
            loop {
                let start = line.len();
                line.resize(start + input.len() * 2 + 8, 0);
                let (result, read, written) = writer.field(input, &mut line[start..]);
                line.truncate(start + written);
                input = &input[read..];
                if result == csv_core::WriteResult::InputEmpty {
                    break;
                }
            }
        }
    }
}

/// Ends a record in `line` (its closing quote, if open, and the line end).
fn end_record(writer: &mut csv_core::Writer, line: &mut Vec<u8>) {
    write_all(line, |out| {
        let (result, written) = writer.terminator(out);
        (result, 0, written)
    });
}

/// Runs a csv-core step that writes into `line`, with room for it.
fn write_all(
    line: &mut Vec<u8>,
    mut step: impl FnMut(&mut [u8]) -> (csv_core::WriteResult, usize, usize),
) {
    loop {
        let start = line.len();
        line.resize(start + 8, 0);
        let (result, _, written) = step(&mut line[start..]);
        line.truncate(start + written);
        if result == csv_core::WriteResult::InputEmpty {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::text_batch;
    use crate::sinks::write_result;

    /// Adds `bytes` at the end of the file at `path`, as a run killed mid-write leaves them.
    fn append_to(path: &Path, bytes: &[u8]) {
        let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        std::io::Write::write_all(&mut file, bytes).unwrap();
    }

    #[test]
    fn append_mode_adds_every_epoch_and_repairs_a_cut_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = CsvSinkConfig {
            path: "out/tags.csv".into(),
            header: true,
        };
        let build = || {
            config
                .build(&SinkContext::for_test(
                    &text_batch("tag", ["x"]).schema(),
                    dir.path(),
                    true,
                    false,
                ))
                .unwrap()
        };
        let path = dir.path().join("out/tags.csv");
        let mut sink = build();
        write_result(sink.as_mut(), &text_batch("tag", ["a", "b"]), 0).unwrap();
        write_result(sink.as_mut(), &text_batch("tag", ["c"]), 1).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "tag\na\nb\nc\n");
        // A run killed in the middle of an epoch's write; the next run cuts the partial line.
        append_to(&path, b"d,partial");
        drop(sink); // A run's end lets go of the file.
        let mut sink = build();
        write_result(sink.as_mut(), &text_batch("tag", ["d"]), 2).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "tag\na\nb\nc\nd\n");
        // A value holding line ends is quoted; a record cut inside it is cut whole, even
        // right after one of its line ends.
        drop(sink); // A run's end lets go of the file.
        let mut sink = build();
        write_result(sink.as_mut(), &text_batch("tag", ["e\n\"f\"\n"]), 3).unwrap();
        let whole = "tag\na\nb\nc\nd\n\"e\n\"\"f\"\"\n\"\n";
        assert_eq!(std::fs::read_to_string(&path).unwrap(), whole);
        drop(sink); // A run's end lets go of the file.
        for cut in ["\"g\nh", "\"g\n", "\"g\"\"\n\"\"", "x,y"] {
            append_to(&path, cut.as_bytes());
            let mut sink = build();
            write_result(sink.as_mut(), &text_batch("tag", [""; 0]), 4).unwrap();
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                whole,
                "after {cut:?}"
            );
        }
        // A whole last record without a line end (another tool's file) is kept and ended.
        append_to(&path, b"\"x\ny\"");
        let mut sink = build();
        write_result(sink.as_mut(), &text_batch("tag", ["z"]), 4).unwrap();
        let whole = format!("{whole}\"x\ny\"\nz\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), whole);
        // Rows of other columns are not added under this header.
        drop(sink);
        let other = config
            .build(&SinkContext::for_test(
                &text_batch("label", ["x"]).schema(),
                dir.path(),
                true,
                false,
            ))
            .unwrap();
        let mut other = other;
        // Said before the run reads anything (`ready`), so that no sink writes an epoch first.
        let early = other.ready().unwrap_err().to_string();
        assert!(early.contains("its header is `tag`"), "{early}");
        let refused = write_result(other.as_mut(), &text_batch("label", ["z"]), 5)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("its header is `tag` but this pipeline writes `label`"),
            "{refused}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), whole);
        // Refused before its end is touched: a last line that would be cut (two fields
        // where `label` has one) is left as it is.
        let foreign = format!("{whole}a,b");
        std::fs::write(&path, &foreign).unwrap();
        drop(other);
        let mut other = config
            .build(&SinkContext::for_test(
                &text_batch("label", ["x"]).schema(),
                dir.path(),
                true,
                false,
            ))
            .unwrap();
        assert!(write_result(other.as_mut(), &text_batch("label", ["z"]), 6).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), foreign);
    }

    #[test]
    fn a_whole_last_record_without_a_line_end_is_kept_and_a_partial_one_cut() {
        let dir = tempfile::tempdir().unwrap();
        let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("id", arrow_schema::DataType::Utf8, true),
            arrow_schema::Field::new("v", arrow_schema::DataType::Utf8, true),
        ]));
        let rows = RecordBatch::try_new(
            schema.clone(),
            vec![
                std::sync::Arc::new(arrow_array::StringArray::from(vec!["1"])),
                std::sync::Arc::new(arrow_array::StringArray::from(vec!["2"])),
            ],
        )
        .unwrap();
        let config = CsvSinkConfig {
            path: "out.csv".into(),
            header: true,
        };
        let path = dir.path().join("out.csv");
        for (before, after) in [
            // Written by another tool without a final newline: every record kept.
            ("id,v\n100,200\n101,201", "id,v\n100,200\n101,201\n1,2\n"),
            ("id,v", "id,v\n1,2\n"),
            // Fewer fields than the header, or a quote left open: part of a record, cut.
            ("id,v\n100,200\n101", "id,v\n100,200\n1,2\n"),
            ("id,v\n100,200\n\"10,1", "id,v\n100,200\n1,2\n"),
        ] {
            std::fs::write(&path, before).unwrap();
            let mut sink = config
                .build(&SinkContext::for_test(&schema, dir.path(), true, false))
                .unwrap();
            write_result(sink.as_mut(), &rows, 0).unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), after, "{before:?}");
        }
    }

    #[test]
    fn a_checkpointed_stream_appends_each_epoch_once_over_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let config = CsvSinkConfig {
            path: "tags.csv".into(),
            header: true,
        };
        let build = || {
            config
                .build(&SinkContext::for_test(
                    &text_batch("tag", ["x"]).schema(),
                    dir.path(),
                    true,
                    true,
                ))
                .unwrap()
        };
        let path = dir.path().join("tags.csv");
        // The first run is killed in epoch 0 after some of its rows reached the file: the
        // restart cuts back to where the stream began (here: nothing) and writes it whole.
        let mut killed = build();
        killed.begin(0).unwrap();
        drop(killed);
        std::fs::write(&path, "tag\na\n\"ha").unwrap();
        let mut sink = build();
        write_result(sink.as_mut(), &text_batch("tag", ["a"]), 0).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "tag\na\n");
        write_result(sink.as_mut(), &text_batch("tag", ["b"]), 1).unwrap();
        // Killed after epoch 1 reached the file but before the checkpoint saved it, and in
        // the middle of epoch 2: the restart redoes epoch 1, then writes epoch 2 whole.
        append_to(&path, b"c\n\"half");
        drop(sink);
        let mut restarted = build();
        write_result(restarted.as_mut(), &text_batch("tag", ["b"]), 1).unwrap();
        write_result(restarted.as_mut(), &text_batch("tag", ["c", "d"]), 2).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "tag\na\nb\nc\nd\n");
        assert!(dir.path().join(".tags.csv.epoch").exists());
    }

    #[test]
    fn quotes_fields_and_writes_a_header() {
        let dir = tempfile::tempdir().unwrap();
        let batch = text_batch("word", ["plain", "with,comma", "say \"hi\"", "i’ll"]);
        let config = CsvSinkConfig {
            path: "out/x.csv".into(),
            header: true,
        };
        let mut sink = config
            .build(&SinkContext::for_test(
                &batch.schema(),
                dir.path(),
                false,
                false,
            ))
            .unwrap();
        write_result(sink.as_mut(), &batch, 0).unwrap();
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
    fn infinite_floats_are_written_as_spark_reads_them() {
        use arrow_array::{ArrayRef, Float64Array};
        let batch = RecordBatch::try_from_iter([(
            "f",
            std::sync::Arc::new(Float64Array::from(vec![
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
                -0.0,
                1e20,
            ])) as ArrayRef,
        )])
        .unwrap();
        let mut out = Vec::new();
        write_records(&mut out, &batch, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "f\nInfinity\n-Infinity\nNaN\n-0.0\n1e20\n");
    }

    #[test]
    fn an_empty_text_is_quoted_and_a_null_is_nothing() {
        use arrow_array::{ArrayRef, Int64Array, StringArray};
        let batch = RecordBatch::try_from_iter([
            (
                "t",
                std::sync::Arc::new(StringArray::from(vec![
                    Some(""),
                    None,
                    Some("a\r\nb"),
                    Some(" x"),
                ])) as ArrayRef,
            ),
            (
                "n",
                std::sync::Arc::new(Int64Array::from(vec![Some(1), None, None, Some(-2)]))
                    as ArrayRef,
            ),
        ])
        .unwrap();
        let mut out = Vec::new();
        write_records(&mut out, &batch, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "t,n\n\"\",1\n,\n\"a\r\nb\",\n x,-2\n");
        // One column: a null is `""` too, since a blank line is no record.
        let lone = RecordBatch::try_from_iter([(
            "t",
            std::sync::Arc::new(StringArray::from(vec![Some(""), None, Some("z")])) as ArrayRef,
        )])
        .unwrap();
        let mut out = Vec::new();
        write_records(&mut out, &lone, false).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "\"\"\n\"\"\nz\n");
        // A long field (past the line buffer) whole, quotes doubled.
        let long = "\"q\"".repeat(40_000);
        let mut out = Vec::new();
        write_records(&mut out, &text_batch("t", [long.as_str()]), false).unwrap();
        let back: Vec<String> = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(out.as_slice())
            .records()
            .map(|r| r.unwrap()[0].to_owned())
            .collect();
        assert_eq!(back, [long]);
    }

    #[test]
    fn lists_are_written_as_json_arrays_that_read_back() {
        use arrow_array::builder::{ListBuilder, StringBuilder};
        let mut lists = ListBuilder::new(StringBuilder::new());
        lists.values().append_value("a b");
        lists.values().append_null();
        lists.values().append_value("c,\"d\"");
        lists.append(true);
        lists.append(true);
        let batch = RecordBatch::try_from_iter([(
            "tags",
            std::sync::Arc::new(lists.finish()) as arrow_array::ArrayRef,
        )])
        .unwrap();
        let mut out = Vec::new();
        write_records(&mut out, &batch, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let back: Vec<serde_json::Value> = reader
            .records()
            .map(|r| serde_json::from_str(&r.unwrap()[0]).unwrap())
            .collect();
        assert_eq!(
            back,
            [
                serde_json::json!(["a b", null, "c,\"d\""]),
                serde_json::json!([])
            ]
        );
    }

    #[test]
    fn unwritable_directory_is_an_output_error() {
        let batch = text_batch("word", ["a"]);
        let config = CsvSinkConfig {
            path: "/proc/no/such/dir/x.csv".into(),
            header: false,
        };
        let mut sink = config
            .build(&SinkContext::for_test(
                &batch.schema(),
                std::path::Path::new("."),
                false,
                false,
            ))
            .unwrap();
        let err = write_result(sink.as_mut(), &batch, 0).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(
            err.to_string()
                .contains("cannot write output /proc/no/such/dir/x.csv"),
            "{err}"
        );
    }
}
