//! `file`: lines of text. `path` is a file, a directory (its files, by name), a glob, or `-` for
//! standard input; several files are read as one input. FIFOs and pipes are read sequentially.
//! CRLF and LF both end a line and are not part of the value.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::Deserialize;

use super::fetch::{fetch, FetchConfig};
use super::records::{infer_columns, BadRecord, ColumnSpec, Format, OnError, RecordDecoder};
use super::{BatchSource, BuildSource, BuiltSource, Morsel, Morsels, Position, SourceContext};
use crate::data::{text_schema, TextColumnBuilder, BATCH_ROWS};
use crate::error::{escape_path, Error, Result};

/// Reads a file, every file of a directory (in name order), the files a glob matches, or
/// standard input (`-`); several files are read as one input, and FIFOs are read sequentially.
/// What a pipe (standard input, a FIFO) gives is read as it comes: when it goes quiet for a
/// moment its rows go on to the sinks, and a reached `limit` ends the run although the
/// pipe's writer goes on (`tail -f app.log | runner run ...`).
/// In a directory or a glob, files whose names start with `.` or `_` (`_SUCCESS`, a file being
/// written) are passed by, as Spark passes them.
/// Each line becomes a row of one text column (`column`); with `format`, each record a row of
/// typed columns (see [Records](../../records.md)). Lines end at `\n` (a `\r` before it is
/// removed); a UTF-8 byte order mark at the start of a file is not part of its first line.
///
/// Invalid UTF-8 is replaced, skipped or fails the run (`encoding_errors`, naming the file and
/// line); replaced and skipped lines are counted in a warning at the end. With `fetch`, a missing
/// input is downloaded once over HTTPS (rustls), its SHA-256 checked, and moved into place
/// atomically; a mismatch saves nothing.
///
/// In a stream the files there at the start are read, then, with `poll`, new files as they
/// appear; a `checkpoint:` records the files taken, by name, and how far the one being read
/// was read.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// A file, directory, glob (`logs/*.txt`) or `-` (standard input), relative to the pipeline file.
    #[serde(deserialize_with = "crate::settings::env::path")]
    pub path: PathBuf,
    /// The output column.
    #[serde(
        default = "default_column",
        deserialize_with = "crate::settings::env::string"
    )]
    pub column: String,
    /// What to do with bytes that are not UTF-8: `replace` them with U+FFFD, `skip` the line,
    /// or `fail` the run.
    #[serde(default)]
    pub encoding_errors: EncodingErrors,
    /// Download the file once when `path` does not exist.
    #[serde(default)]
    pub fetch: Option<FetchConfig>,
    /// A longer line is skipped and counted rather than held in memory (a size, `1MiB`, or a
    /// number of bytes; at least 1 MiB; default 64 MiB): a file without newlines, such as `/dev/zero`, is read in bounded memory.
    /// Lines are measured as they are read, so one that ends within the read it starts in
    /// (up to half as long again) is still taken. For `csv` and `jsonl` under `on_error: fail`,
    /// such a record fails a batch run (a stream skips and counts it).
    #[serde(
        default = "default_max_line_bytes",
        deserialize_with = "crate::settings::size::bytes"
    )]
    #[schemars(with = "String")]
    pub max_line_bytes: usize,
    /// How records are written: `lines` (each line one row of `column`), `csv` (with a header
    /// line), `jsonl` (one JSON object per line) or `parquet`. A stream of files (`mode:
    /// stream`) reads `lines`, `jsonl` or `csv` (each file with its header); `parquet` is read
    /// by batch runs.
    #[serde(default)]
    pub format: Format,
    /// For csv, jsonl and parquet: the fields to read and their types (`text`, `integer`,
    /// `float`, `bool`, `timestamp`, `list of text`; `?` after the type: may be missing),
    /// e.g. `{created_at: timestamp, tag: text, account.acct: text?}`. CSV fields by header
    /// name, nested JSON fields by dotted path, Parquet columns by name (an optional one a file
    /// lacks is null). Omitted: inferred from the first lines (from the file's schema for
    /// Parquet).
    #[serde(default)]
    #[schemars(with = "Option<std::collections::BTreeMap<String, String>>")]
    pub columns: Option<indexmap::IndexMap<String, String>>,
    /// A record that does not parse or lacks a required field: `fail` the run (default) or
    /// `skip` it (counted in the warnings with the first one's line number).
    #[serde(default)]
    pub on_error: OnError,
    /// The CSV field separator (one character; default `,`).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// CSV: a character that escapes a quote inside a quoted field, besides doubling it:
    /// `"\\"` reads what Spark writes by default (`"say \"hi\""`). Default: none (RFC 4180:
    /// quotes are doubled).
    #[serde(default)]
    pub escape: Option<char>,
    /// CSV: a quoted field may hold line breaks (Spark's `multiLine`, as spreadsheets export
    /// notes and addresses). Records then end at a line break outside quotes, found by
    /// reading each file from its start: one thread reads it, where one record per line is
    /// read in parallel pieces, and the CSV kernels are not used. The header is one line; a
    /// record is at most `max_line_bytes`, measured as lines are (one that ends within the read
    /// it starts in is still taken); a longer one fails the run, as its end cannot be found
    /// without holding it (`on_error: skip` does not apply). Batch runs.
    #[serde(default)]
    pub multi_line: bool,
    /// Stream mode: the most files one epoch takes (Spark's `maxFilesPerTrigger`); default:
    /// every new file.
    #[serde(default)]
    #[schemars(with = "Option<std::num::NonZeroU64>")]
    pub max_files_per_trigger: Option<std::num::NonZeroUsize>,
    /// Stream mode: look for new files this often (e.g. `5s`) and never end; without it the
    /// stream ends after the files there at the start.
    #[serde(default, deserialize_with = "crate::settings::duration::opt")]
    #[schemars(with = "Option<String>")]
    pub poll: Option<std::time::Duration>,
}

fn default_max_line_bytes() -> usize {
    64 << 20
}

/// What the `file` source does with bytes that are not UTF-8.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EncodingErrors {
    /// Replace them with U+FFFD and keep the line (the default).
    #[default]
    Replace,
    /// Leave the line out, counted in the run's warnings.
    Skip,
    /// Stop the run with an error naming the file and line.
    Fail,
}

fn default_column() -> String {
    "line".into()
}

/// Whether `path` is a URI (`scheme://...`), which Spark reads as written.
fn is_uri(path: &str) -> bool {
    path.split_once("://").is_some_and(|(scheme, _)| {
        let mut chars = scheme.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
    })
}

/// Bytes per morsel read from a stream: large enough to amortise scheduling, small enough to
/// spread over cores.
const MORSEL_BYTES: usize = 1 << 20;

/// Bytes per piece of a file read by offset: a quarter of a stream's morsel, so that a piece
/// and what a kernel builds from it stay in a core's L2 cache (measured on the records
/// benchmark's CSV before its kernel read numbers in lanes: 0.35 s with 1 MiB pieces, 0.30 s
/// with 256 KiB; the word count and JSON lines no slower).
const PIECE_BYTES: usize = 1 << 18;

impl BuildSource for FileSourceConfig {
    fn missing_input(&self, ctx: &SourceContext) -> Option<(PathBuf, String)> {
        if self.columns.is_some() || self.path == Path::new("-") {
            return None;
        }
        let path = self.local_path(ctx.base_dir);
        first_file(&path)
            .is_none()
            .then(|| (path.clone(), inferred_input_missing(&path)))
    }

    fn build(&self, ctx: &SourceContext) -> Result<BuiltSource, String> {
        if self.path.as_os_str().is_empty() {
            return Err("`path` is empty".into());
        }
        if self.max_line_bytes < MORSEL_BYTES {
            return Err(format!(
                "max_line_bytes must be at least {MORSEL_BYTES} (1 MiB), not {}",
                self.max_line_bytes
            ));
        }
        let path = self.local_path(ctx.base_dir);
        if let Some(fetch) = &self.fetch {
            fetch.validate()?;
            // `-` (standard input, e.g. `--input -`) has nothing to download: fetch is ignored.
            if is_pattern(&path) {
                return Err("`fetch` needs `path` to be a single file".into());
            }
        }
        if self.delimiter.is_some() && self.format != Format::Csv {
            return Err("`delimiter` is for `format: csv`".into());
        }
        if self.escape.is_some() && self.format != Format::Csv {
            return Err("`escape` is for `format: csv`".into());
        }
        if self.escape.is_some() && self.multi_line {
            return Err("`escape` is not read with `multi_line: true` yet: records of several lines are found by doubled quotes only".into());
        }
        if self.multi_line {
            if self.format != Format::Csv {
                return Err(
                    "`multi_line` is for `format: csv` (a JSON line is one record by definition)"
                        .into(),
                );
            }
            if ctx.streaming {
                return Err(
                    "`multi_line` is for batch runs: a stream of files reads one record per line"
                        .into(),
                );
            }
            if self.encoding_errors == EncodingErrors::Skip {
                return Err("`encoding_errors: skip` leaves out lines, which would cut records of several lines (`multi_line`): use `replace` or `fail`".into());
            }
        }
        if ctx.streaming {
            return self.build_stream(path);
        }
        if self.max_files_per_trigger.is_some() || self.poll.is_some() {
            return Err("`max_files_per_trigger` and `poll` are for `mode: stream`".into());
        }
        if self.format == Format::Parquet {
            return super::parquet::build(self, path);
        }
        if let Some(first) = first_file(&path).filter(|f| starts_with(f, b"PAR1")) {
            return Err(format!(
                "{} is a Parquet file: add `format: parquet` (it would be read as {})",
                escape_path(&first),
                self.format.name()
            ));
        }
        for file in files_named(&path) {
            if let Some(what) = file_not_text(&file) {
                return Err(format!("{NOT_TEXT_INPUT}{} is {what}", escape_path(&file)));
            }
        }
        let delimiter = csv_delimiter(self.delimiter)?;
        let escape = csv_escape(self.escape, delimiter)?;
        let lines = Arc::new(super::LineCounts::default());
        let records = match self.format {
            Format::Lines => {
                if self.columns.is_some() {
                    return Err("`columns` is for csv, jsonl and parquet; `format: lines` reads one text column named by `column`".into());
                }
                None
            }
            format => Some(Records {
                format,
                columns: self.column_specs(format, &path, delimiter, escape)?,
                inferred: self.columns.is_none(),
                delimiter,
                escape,
                decoder: std::sync::OnceLock::new(),
                on_error: self.on_error,
                encoding_errors: self.encoding_errors,
                lines: lines.clone(),
                bad: AtomicU64::new(0),
                first_bad: std::sync::Mutex::new(None),
                file_order: Default::default(),
                multi_line: self.multi_line,
            }),
        };
        let schema = match &records {
            None => text_schema(&self.column),
            Some(r) => {
                // A JSON-lines decoder is made now; a CSV one when the header is read.
                let decoder =
                    RecordDecoder::new(r.format, r.columns.clone(), delimiter)?.with_escape(escape);
                let schema = decoder.schema();
                if r.format == Format::Jsonl {
                    let _ = r.decoder.set(decoder);
                }
                schema
            }
        };
        Ok(BuiltSource::Batch(Box::new(FileSource {
            written: self.path.clone(),
            path,
            records,
            schema,
            encoding_errors: self.encoding_errors,
            fetch: self.fetch.clone(),
            lines,
            max_line_bytes: self.max_line_bytes,
            buffers: std::sync::Mutex::new(Vec::new()),
            opened_bytes: std::sync::Mutex::new(None),
            reading_stopped: Default::default(),
        })))
    }
}

impl FileSourceConfig {
    /// `path` on this machine: resolved against the pipeline file's folder, or a `file://`
    /// URI's path (as Spark reads one).
    fn local_path(&self, base_dir: &Path) -> PathBuf {
        let written = self.path.to_string_lossy();
        let without_host = written
            .strip_prefix("file://localhost/")
            .or_else(|| written.strip_prefix("file:///"));
        match without_host {
            Some(rest) => PathBuf::from(format!("/{rest}")),
            None => crate::settings::resolve_against(base_dir, &self.path),
        }
    }

    /// The stream form: Spark's file stream source.
    fn build_stream(&self, path: PathBuf) -> Result<BuiltSource, String> {
        let (decoder, schema) = match self.format {
            Format::Lines if self.columns.is_some() => {
                return Err("`columns` is for csv, jsonl and parquet; `format: lines` reads one text column named by `column`".into());
            }
            format @ (Format::Jsonl | Format::Csv) => {
                let delimiter = csv_delimiter(self.delimiter)?;
                let escape = csv_escape(self.escape, delimiter)?;
                let decoder = RecordDecoder::new(
                    format,
                    self.column_specs(format, &path, delimiter, escape)?,
                    delimiter,
                )?
                .with_escape(escape);
                let schema = decoder.schema();
                (Some(decoder), schema)
            }
            _ => (None, text_schema(&self.column)),
        };
        super::file_stream::build(self, path, decoder, schema)
    }

    /// The columns to read: as written in `columns:`, or inferred from the first lines of the
    /// first file.
    fn column_specs(
        &self,
        format: Format,
        path: &Path,
        delimiter: u8,
        escape: Option<u8>,
    ) -> Result<Vec<ColumnSpec>, String> {
        if let Some(columns) = &self.columns {
            if columns.is_empty() {
                return Err("columns: name at least one field".into());
            }
            return columns
                .iter()
                .map(|(n, t)| ColumnSpec::parse(n, t))
                .collect();
        }
        let files = files_named(path);
        if files.is_empty() {
            return Err(match path == Path::new("-") {
                true => {
                    "cannot infer the columns of standard input: list them in `columns:`".into()
                }
                false => inferred_input_missing(path),
            });
        }
        // A CSV header and one record, or one JSON line, at least: from the first file that
        // has them (an empty or header-only file first in the listing tells nothing), else
        // from the first file.
        let lines = if format == Format::Csv { 2 } else { 1 };
        // Records of several lines (`multi_line`) are counted as records, not lines.
        let records_of = (format == Format::Csv && self.multi_line).then_some(delimiter);
        let mut chosen = None;
        for file in &files {
            let head = read_head(file, 256 * 1024, lines, records_of)
                .map_err(|e| format!("{INFERRED_FROM_INPUT}{}: {e}", escape_path(file)))?;
            let written = match records_of {
                Some(delimiter) => super::records::multi_line::records(&head, delimiter)
                    .iter()
                    .filter(|(_, record)| !record.iter().all(u8::is_ascii_whitespace))
                    .count(),
                None => head
                    .split(|&b| b == b'\n')
                    .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
                    .count(),
            };
            let enough = written >= lines;
            if enough || chosen.is_none() {
                chosen = Some((file.clone(), head));
            }
            if enough {
                break;
            }
        }
        let Some((first, mut head)) = chosen else {
            return Err(inferred_input_missing(path));
        };
        // As when the records are read: a byte order mark is not part of the first line.
        if format == Format::Jsonl && head.starts_with(UTF8_BOM) {
            head.drain(..UTF8_BOM.len());
        }
        // Invalid UTF-8 is repaired or dropped when records are read; here it must not stop
        // the inference.
        let head = match std::str::from_utf8(&head) {
            Ok(_) => head,
            Err(_) => String::from_utf8_lossy(&head).into_owned().into_bytes(),
        };
        infer_columns(format, &head, delimiter, escape).map_err(|e| {
            let why = e.strip_prefix("cannot infer the columns: ").unwrap_or(&e);
            format!(
                "{INFERRED_FROM_INPUT}{}: {why}; list them in `columns:`",
                escape_path(&first)
            )
        })
    }
}

/// How messages name the input at `path`.
fn origin_of(path: &Path) -> Arc<str> {
    match path == Path::new("-") {
        true => "standard input".into(),
        false => path.display().to_string().into(),
    }
}

/// The CSV escape character `escape:` names, if any: one ASCII character other than a quote,
/// a line break or the delimiter.
pub(super) fn csv_escape(escape: Option<char>, delimiter: u8) -> Result<Option<u8>, String> {
    match escape {
        None => Ok(None),
        Some(c) if c.is_ascii() && !matches!(c, '"' | '\n' | '\r') && c as u8 != delimiter => {
            Ok(Some(c as u8))
        }
        Some(c) => Err(format!(
            "escape: `{}` cannot escape quotes (use one ASCII character other than a quote, a line break or the delimiter; `\"\\\\\"` reads Spark's CSV)",
            c.escape_default()
        )),
    }
}

/// The CSV field separator `delimiter:` names (`,` without it): one ASCII character other
/// than a quote or a line end.
pub(super) fn csv_delimiter(delimiter: Option<char>) -> Result<u8, String> {
    match delimiter {
        None => Ok(b','),
        Some(c) if c.is_ascii() && c != '\n' && c != '\r' && c != '"' => Ok(c as u8),
        Some(c) => Err(format!(
            "delimiter: `{}` cannot separate CSV fields (use one ASCII character other than a quote or newline)",
            // A quote as itself (`escape_debug` writes it `\"`), a line end escaped.
            match c {
                '"' => c.to_string(),
                _ => c.escape_debug().to_string(),
            }
        )),
    }
}

/// How a build error starts when the input the columns are inferred from cannot be read or
/// holds nothing to infer them from: an input failure (exit 1), not an invalid pipeline.
pub(crate) const INFERRED_FROM_INPUT: &str = "cannot infer the columns from ";

/// How a build error starts when an input is not text runner reads (compressed, UTF-16): an
/// input failure (exit 1), as the same file met in a stream is, not an invalid pipeline.
pub(crate) const NOT_TEXT_INPUT: &str = "the input ";

/// Why a source cannot be built when the input its columns are inferred from is not there
/// (`BuildSource::missing_input`: a runtime failure, as any missing input).
pub(super) fn inferred_input_missing(path: &Path) -> String {
    let what = if path.is_dir() || is_pattern(path) {
        // A directory or glob without files yet (a stream waiting for them, say).
        "no file there yet (the columns are inferred from the first one"
    } else if path.exists() {
        // A named pipe or a device: what is read to infer the columns would be gone.
        "not a regular file, which could be read twice (the columns are inferred from a first read"
    } else {
        "no such file (its columns are inferred from it"
    };
    format!(
        "{what}; list them in `columns:` to run or check the pipeline without it): {}",
        path.display()
    )
}

/// The first file `path` names (itself, the first by name in a directory or of a glob).
pub(super) fn first_file(path: &Path) -> Option<PathBuf> {
    files_named(path).into_iter().next()
}

/// The files `path` names, in name order: itself, a directory's (not hidden ones) or a glob's
/// matches.
fn files_named(path: &Path) -> Vec<PathBuf> {
    if path == Path::new("-") {
        return Vec::new();
    }
    let mut files: Vec<PathBuf> = if is_pattern(path) {
        let Ok(matches) = glob_matches(path) else {
            return Vec::new();
        };
        matches
            .into_iter()
            .filter(|p| p.is_file() && !is_hidden_match(path, p))
            .collect()
    } else if path.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file() && !is_hidden(p))
            .collect()
    } else {
        return path
            .is_file()
            .then(|| path.to_path_buf())
            .into_iter()
            .collect();
    };
    files.sort();
    files
}

/// What a text file's first bytes say it is when it is not text runner reads (compressed,
/// UTF-16), with what to do: `None` for anything else (text, or unreadable: reading it says
/// why). Read as text, such a file gave garbage rows or a misleading field count.
pub(super) fn not_text(start: &[u8]) -> Option<&'static str> {
    const KINDS: [(&[u8], &str); 7] = [
        (b"\x1f\x8b", "gzip-compressed: decompress it first (`gunzip -k FILE`), or pipe it in (`gzip -dc FILE | runner run PIPELINE --input -`; CSV and JSON lines read so need `columns:`)"),
        (b"\x28\xb5\x2f\xfd", "zstd-compressed: decompress it first (`zstd -d FILE`), or pipe it in (`zstd -dc FILE | runner run PIPELINE --input -`; CSV and JSON lines read so need `columns:`)"),
        (b"BZh", "bzip2-compressed: decompress it first (`bunzip2 -k FILE`), or pipe it in (`bzip2 -dc FILE | runner run PIPELINE --input -`; CSV and JSON lines read so need `columns:`)"),
        (b"\xfd7zXZ\x00", "xz-compressed: decompress it first (`unxz -k FILE`), or pipe it in (`xz -dc FILE | runner run PIPELINE --input -`; CSV and JSON lines read so need `columns:`)"),
        (b"PK\x03\x04", "a zip archive: extract it first (`unzip FILE`)"),
        (b"\xff\xfe", "UTF-16 (its byte-order mark says so): convert it to UTF-8 first (`iconv -f UTF-16 -t UTF-8 FILE > NEW`)"),
        (b"\xfe\xff", "UTF-16 (its byte-order mark says so): convert it to UTF-8 first (`iconv -f UTF-16 -t UTF-8 FILE > NEW`)"),
    ];
    KINDS
        .iter()
        .find(|(magic, _)| start.starts_with(magic))
        // A bzip2 stream goes on with its block size, a digit 1 to 9 (a text may begin "BZh").
        .filter(|(magic, _)| *magic != b"BZh" || matches!(start.get(3), Some(b'1'..=b'9')))
        .map(|(_, what)| *what)
}

/// `not_text` of the file at `path`.
fn file_not_text(path: &Path) -> Option<&'static str> {
    let mut start = Vec::with_capacity(6);
    std::fs::File::open(path)
        .and_then(|f| f.take(6).read_to_end(&mut start))
        .ok()?;
    not_text(&start)
}

/// Whether the file at `path` starts with `magic` (`false` when it cannot be read).
fn starts_with(path: &Path, magic: &[u8]) -> bool {
    let mut start = vec![0u8; magic.len()];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut start))
        .is_ok()
        && start == magic
}

/// Up to `limit` bytes from the start of `path`, cut after the last whole line (the last whole
/// CSV record, with `records_of` a delimiter: records of several lines, `multi_line`).
fn read_head(
    path: &Path,
    limit: u64,
    lines: usize,
    records_of: Option<u8>,
) -> std::io::Result<Vec<u8>> {
    // Past `limit`, only until `lines` whole lines are in (a first record of 300 KB is read
    // whole, not cut), up to what a line may hold.
    const MOST: u64 = 64 << 20;
    let mut file = std::fs::File::open(path)?;
    let mut head = Vec::new();
    let mut wanted = limit;
    loop {
        let before = head.len();
        (&mut file)
            .take(wanted - before as u64)
            .read_to_end(&mut head)?;
        let ended = (head.len() as u64) < wanted;
        let whole = match records_of {
            Some(delimiter) => super::records::multi_line::record_ends(&head, delimiter),
            None => (
                memchr::memchr_iter(b'\n', &head).count(),
                memchr::memrchr(b'\n', &head).map(|end| end + 1),
            ),
        };
        if ended || whole.0 >= lines || wanted >= MOST {
            if !ended {
                if let Some(end) = whole.1 {
                    head.truncate(end);
                }
            }
            return Ok(head);
        }
        wanted = (wanted * 2).min(MOST);
    }
}

/// The first line of `reader` (without its line end), and the bytes read after it; `None` at
/// once at the end. Read in blocks, not byte by byte: a header of 100,000 columns is a
/// megabyte. Longer than `max` bytes: an error.
fn read_header(reader: &mut dyn Read, max: usize) -> std::io::Result<(Option<Vec<u8>>, Vec<u8>)> {
    let mut line = Vec::new();
    let mut block = vec![0; 64 * 1024];
    let mut searched = 0;
    loop {
        let read = match reader.read(&mut block) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        line.extend_from_slice(&block[..read]);
        let end = memchr::memchr(b'\n', &line[searched..]).map(|at| searched + at);
        searched = line.len();
        let (mut header, rest) = match end {
            Some(end) => {
                let rest = line[end + 1..].to_vec();
                line.truncate(end);
                (line, rest)
            }
            None if read == 0 && line.is_empty() => return Ok((None, Vec::new())),
            None if read == 0 => (line, Vec::new()),
            None if line.len() > max => {
                return Err(header_too_long(max));
            }
            None => continue,
        };
        if header.len() > max {
            return Err(header_too_long(max));
        }
        if header.last() == Some(&b'\r') {
            header.pop();
        }
        return Ok((Some(header), rest));
    }
}

fn header_too_long(max: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "the header line is longer than max_line_bytes ({max} bytes); raise `max_line_bytes`"
        ),
    )
}

/// Reading CSV or JSON lines records: the columns, the decoder (for CSV made when the header
/// is read), and what was left out.
struct Records {
    format: Format,
    columns: Vec<ColumnSpec>,
    /// The columns were inferred from the input's start (no `columns:`): a later record may
    /// not fit them.
    inferred: bool,
    /// CSV: the character that escapes a quote in a quoted field (`escape:`).
    escape: Option<u8>,
    delimiter: u8,
    decoder: std::sync::OnceLock<RecordDecoder>,
    on_error: OnError,
    /// What a record with invalid UTF-8 gets, before it is read (as a line gets it).
    encoding_errors: EncodingErrors,
    lines: Arc<super::LineCounts>,
    bad: AtomicU64,
    /// The first record left out, in input order (see `BadPlace`): where and why, for the
    /// warning. Workers find bad records in any order.
    first_bad: std::sync::Mutex<Option<(BadPlace, String)>>,
    /// Each input's place in the order the files are read (by its name in messages).
    file_order: std::sync::Mutex<std::collections::HashMap<Arc<str>, usize>>,
    /// CSV records may hold line breaks in quoted fields.
    multi_line: bool,
}

/// Where a bad record is in the input, ordered as the input is: its file's place in the list,
/// its morsel's start (a line or a byte offset: one or the other for all of a file's
/// morsels) and its line in the morsel.
type BadPlace = (usize, u64, u64);

impl Records {
    /// Takes the CSV header of `origin`: the first file's makes the decoder; every other file
    /// must have the same.
    fn header(&self, origin: &str, header: Option<Vec<u8>>) -> Result<()> {
        let Some(header) = header else {
            return Ok(());
        };
        if self.encoding_errors == EncodingErrors::Fail {
            if let Err(e) = std::str::from_utf8(&header) {
                return Err(Error::runtime(format!(
                    "{origin} line 1: invalid UTF-8 in the CSV header at byte {}; use `encoding_errors: replace` to read it anyway",
                    e.valid_up_to() + 1
                )));
            }
        }
        // Invalid UTF-8 in a name is replaced (as inference reads it), whatever
        // `encoding_errors` says of records: the header cannot be skipped. It is counted.
        if std::str::from_utf8(&header).is_err() {
            self.lines
                .bad_utf8_line(false, (self.lines.order_of(origin), 0, 0), || {
                    format!("{origin} line 1, the CSV header")
                });
        }
        if let Some(problem) = super::records::multi_line::header_problem(&header, self.delimiter) {
            return Err(Error::runtime(format!("{origin} line 1: {problem}")));
        }
        let names = super::records::csv_header_names(&header, self.delimiter);
        if let Some(existing) = self.decoder.get() {
            if existing.header() != names.as_slice() {
                return Err(Error::runtime(format!(
                    "{origin}: its CSV header ({}) differs from the first file's ({})",
                    crate::error::escape_controls(&names.join(", ")),
                    crate::error::escape_controls(&existing.header().join(", "))
                )));
            }
            return Ok(());
        }
        let decoder = RecordDecoder::csv(names, self.columns.clone(), self.delimiter)
            .map(|d| d.with_escape(self.escape))
            .map_err(|e| Error::runtime(format!("{origin}: {e}")))?
            .with_multi_line(self.multi_line);
        let _ = self.decoder.set(decoder);
        Ok(())
    }

    /// The records of a morsel as batches; bad ones fail the run or are counted.
    fn decode(
        &self,
        morsel: &Morsel,
        line_number: impl Fn(u64) -> String,
    ) -> Result<Vec<RecordBatch>> {
        let Some(decoder) = self.decoder.get() else {
            // A CSV input without even a header line: no records.
            return Ok(Vec::new());
        };
        // A UTF-8 byte order mark before a file's first JSON line (as some Windows tools
        // write) is not part of the record; the CSV reader passes it by itself.
        let at_start = matches!(morsel.position, Position::Line(1) | Position::Offset(0));
        let without_mark = |bytes: &[u8]| -> std::ops::Range<usize> {
            match at_start && self.format == Format::Jsonl && bytes.starts_with(UTF8_BOM) {
                true => UTF8_BOM.len()..bytes.len(),
                false => 0..bytes.len(),
            }
        };
        let records = &morsel.bytes[without_mark(&morsel.bytes)];
        let (mut batches, mut bad) = decoder.decode(records).map_err(Error::runtime)?;
        // Only a morsel with bad records is checked for invalid UTF-8 (the readers check it
        // anyway): then `encoding_errors` repairs or drops those lines and it is read again.
        if !bad.is_empty() && simdutf8::basic::from_utf8(records).is_err() {
            let repaired = self.repair_utf8(morsel, &line_number)?;
            (batches, bad) = decoder
                .decode(&repaired[without_mark(&repaired)])
                .map_err(Error::runtime)?;
        }
        if let Some(BadRecord { line, reason }) = bad.first() {
            let at = || format!("{} line {}", morsel.origin, line_number(*line as u64));
            if self.on_error == OnError::Fail {
                let inferred = match self.inferred && reason.contains(" is not ") {
                    true => "; the columns were inferred from the input's start (`runner plan` shows them): declare them in `columns:` to read every record",
                    false => "",
                };
                return Err(Error::runtime(format!(
                    "{}: the {} record cannot be read: {reason} (`on_error: skip` leaves such records out{inferred})",
                    at(),
                    self.format.name()
                )));
            }
            self.bad.fetch_add(bad.len() as u64, Ordering::Relaxed);
            let file = self
                .file_order
                .lock()
                .ok()
                .and_then(|order| order.get(&morsel.origin).copied())
                .unwrap_or(usize::MAX);
            let start = match morsel.position {
                Position::Line(line) | Position::Offset(line) => line,
            };
            let place = (file, start, *line as u64);
            if let Ok(mut first) = self.first_bad.lock() {
                // The line's number is counted (a read of the file up to the morsel, for one
                // read in pieces) only for a record before the first so far.
                if first.as_ref().is_none_or(|(earliest, _)| place < *earliest) {
                    *first = Some((place, format!("{}: {reason}", at())));
                }
            }
        }
        Ok(batches)
    }

    /// Notes the order the inputs named `origins` are read in, for telling the first bad
    /// record.
    fn read_in_order(&self, origins: impl Iterator<Item = Arc<str>>) {
        if let Ok(mut order) = self.file_order.lock() {
            *order = origins.enumerate().map(|(i, o)| (o, i)).collect();
        }
    }
}

impl Records {
    /// The morsel with each line of invalid UTF-8 as `encoding_errors` says (see
    /// `LineCounts::repair_utf8`), a failure naming its line.
    fn repair_utf8(
        &self,
        morsel: &Morsel,
        line_number: &impl Fn(u64) -> String,
    ) -> Result<Vec<u8>> {
        self.lines.repair_utf8(
            &morsel.bytes,
            self.encoding_errors,
            !self.multi_line,
            (self.lines.order_of(&morsel.origin), morsel.position.order()),
            &|index| format!("{} line {}", morsel.origin, line_number(index as u64)),
        )
    }
}

/// A file a directory holds but that is not its data, as Spark and Hadoop pass them by: a
/// hidden one (`.name`, such as a ledger or a file being written) or one whose name starts
/// with `_` (`_SUCCESS`, `_temporary`).
pub(super) fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(['.', '_']))
}

/// Whether a glob's match is passed by as hidden: not when the pattern's own last part starts
/// with `.` or `_` (`logs/_*.csv` asks for such files).
pub(super) fn is_hidden_match(pattern: &Path, path: &Path) -> bool {
    is_hidden(path) && !is_hidden(pattern)
}

/// The UTF-8 byte order mark.
pub(super) const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Whether a `file` source of `source` (a file, a folder or a glob) would read the file
/// `candidate`, one that runner writes (a checkpoint's, a sink's output, a run summary): read
/// back, it became rows. As the source lists files: a folder's own (not its folders'), a
/// glob's matches (a `*` within one folder), names starting with `.` or `_` passed by.
pub fn would_read(source: &Path, candidate: &Path) -> bool {
    let absolute = |p: &Path| {
        std::path::absolute(p)
            .map(|a| a.components().collect::<PathBuf>())
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let (source, candidate) = (absolute(source), absolute(candidate));
    if is_pattern(&source) {
        let options = glob::MatchOptions {
            require_literal_separator: true,
            ..glob::MatchOptions::new()
        };
        return !is_hidden_match(&source, &candidate)
            && glob::Pattern::new(&glob_pattern(&source))
                .is_ok_and(|pattern| pattern.matches_path_with(&candidate, options));
    }
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    match source.is_dir() {
        true => {
            !is_hidden(&candidate)
                && candidate
                    .parent()
                    .is_some_and(|folder| same(folder, &source))
        }
        false => same(&source, &candidate),
    }
}

/// Whether `path` is a glob: it has `*`, `?` or `[`, and no file or folder has it as its
/// name (`data[1].csv` that exists is that file).
pub(crate) fn is_pattern(path: &Path) -> bool {
    path.to_string_lossy().contains(['*', '?', '[']) && !path.exists()
}

/// How many of `path`'s leading components name a folder that exists as written: glob
/// characters there are part of its name (`in[1]/*.csv` reads the folder `in[1]`).
fn literal_components(path: &Path) -> usize {
    let components: Vec<_> = path.components().collect();
    (0..components.len())
        .rev()
        .find(|&n| {
            n > 0 && {
                let prefix: PathBuf = components[..n].iter().collect();
                prefix.is_dir()
            }
        })
        .unwrap_or(0)
}

/// `path` as a glob pattern written with `escape` for its folders that exist as written (see
/// [`literal_components`]), the rest as the user wrote it.
pub(super) fn glob_pattern_with(path: &Path, escape: impl Fn(&str) -> String) -> String {
    let literal = literal_components(path);
    let mut prefix: PathBuf = path.components().take(literal).collect();
    let escaped = escape(&prefix.to_string_lossy());
    prefix = PathBuf::from(escaped);
    for component in path.components().skip(literal) {
        prefix.push(component);
    }
    prefix.to_string_lossy().into_owned()
}

/// `path` as a pattern for the `glob` crate (see [`glob_pattern_with`]).
pub(super) fn glob_pattern(path: &Path) -> String {
    glob_pattern_with(path, glob::Pattern::escape)
}

/// The files a glob `path` matches, as the `glob` crate lists them (errors reading a folder
/// are passed by).
pub(super) fn glob_matches(path: &Path) -> std::result::Result<Vec<PathBuf>, String> {
    let pattern = glob_pattern(path);
    let matches = glob::glob(&pattern).map_err(|e| {
        format!(
            "bad glob pattern `{}`: {e}",
            crate::error::escape_controls(&path.to_string_lossy())
        )
    })?;
    Ok(matches.filter_map(|entry| entry.ok()).collect())
}

/// The folder below which a glob's matches lie: its folders before the first that holds a
/// pattern (folders that exist as written count as folders, [`literal_components`]).
pub(super) fn glob_root(path: &Path) -> PathBuf {
    let literal = literal_components(path);
    path.components()
        .enumerate()
        .take_while(|(i, c)| {
            *i < literal || !c.as_os_str().to_string_lossy().contains(['*', '?', '['])
        })
        .map(|(_, c)| c)
        .collect()
}

/// The `file` source in batch mode: one file, a glob or standard input, read in morsels.
pub struct FileSource {
    path: PathBuf,
    /// `path` as the file has it (a URI for Spark stays one).
    written: PathBuf,
    /// Set for `csv` and `jsonl`; `None` reads lines.
    records: Option<Records>,
    schema: SchemaRef,
    encoding_errors: EncodingErrors,
    fetch: Option<FetchConfig>,
    /// Lines skipped (too long, bad UTF-8) or repaired, shared with the readers.
    lines: Arc<super::LineCounts>,
    max_line_bytes: usize,
    /// Morsel buffers handed back by `recycle`, reused to avoid page faults on fresh memory.
    buffers: std::sync::Mutex<Vec<Vec<u8>>>,
    /// The files' sizes when the run opened them: what it reads, even where a sink replaces
    /// its own input by the end.
    opened_bytes: std::sync::Mutex<Option<u64>>,
    /// Set by `stop_reading`: a read waiting on a pipe gives up (see `fill`).
    reading_stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl FileSource {
    /// The files to read, in order.
    fn files(&self) -> Result<Vec<PathBuf>> {
        if self.path == Path::new("-") {
            return Ok(vec![self.path.clone()]);
        }
        let written = self.written.to_string_lossy();
        if is_uri(&written) && !written.starts_with("file://") {
            return Err(Error::runtime(format!(
                "`{}` is a URI, which only Spark reads: run with --engine spark (a path on this machine is written without a scheme, or as file:///path)",
                crate::error::escape_controls(&written)
            )));
        }
        if is_pattern(&self.path) {
            let pattern = self.path.to_string_lossy();
            let mut files: Vec<PathBuf> = glob_matches(&self.path)
                .map_err(Error::runtime)?
                .into_iter()
                .filter(|p| !p.is_dir() && !is_hidden_match(&self.path, p))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(Error::runtime(format!(
                    "no files match `{pattern}` (files whose names start with `.` or `_` are passed by unless the pattern starts so)"
                )));
            }
            return Ok(files);
        }
        if !self.path.exists() {
            if let Some(fetch_config) = &self.fetch {
                fetch(fetch_config, &self.path)?;
            } else {
                return Err(Error::Input {
                    path: self.path.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no such file or directory",
                    ),
                });
            }
        }
        if self.path.is_dir() {
            let read = std::fs::read_dir(&self.path).map_err(|source| Error::Input {
                path: self.path.clone(),
                source,
            })?;
            let mut files: Vec<PathBuf> = read
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| !p.is_dir() && !is_hidden(p))
                .collect();
            files.sort();
            return Ok(files);
        }
        Ok(vec![self.path.clone()])
    }

    /// Every batch of one morsel ([`BatchSource::decode_each`] hands them on).
    fn batches(&self, morsel: Morsel) -> Result<Vec<RecordBatch>> {
        if let Some(records) = &self.records {
            let batches = records.decode(&morsel, |line| self.line_number(&morsel, line))?;
            self.recycle(morsel.bytes);
            return Ok(batches);
        }
        if let Ok(text) = simdutf8::basic::from_utf8(&morsel.bytes) {
            // Valid as a whole (the usual case): lines are copied out with no check per line.
            let batches = self.decode_valid(text)?;
            self.recycle(morsel.bytes);
            return Ok(batches);
        }
        let mut batches = Vec::new();
        let mut builder =
            StringBuilder::with_capacity(BATCH_ROWS, morsel.bytes.len().min(BATCH_ROWS * 128));
        let mut rows = 0;
        let body = morsel.bytes.strip_suffix(b"\n").unwrap_or(&morsel.bytes);
        if morsel.bytes.is_empty() {
            return Ok(batches);
        }
        for (offset, raw) in body.split(|&b| b == b'\n').enumerate() {
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            match std::str::from_utf8(line) {
                Ok(text) => builder.append_value(text),
                Err(e) => match self.encoding_errors {
                    EncodingErrors::Replace | EncodingErrors::Skip => {
                        let skip = self.encoding_errors == EncodingErrors::Skip;
                        let at = (self.lines.order_of(&morsel.origin), morsel.position.order(), offset as u64);
                        self.lines.bad_utf8_line(skip, at, || {
                            format!(
                                "{} line {}",
                                morsel.origin,
                                self.line_number(&morsel, offset as u64)
                            )
                        });
                        if skip {
                            continue;
                        }
                        builder.append_value(String::from_utf8_lossy(line));
                    }
                    EncodingErrors::Fail => {
                        return Err(Error::runtime(format!(
                            "{} line {}: invalid UTF-8 at byte {} of the line; use `encoding_errors: replace` or `skip` to read it anyway",
                            morsel.origin,
                            self.line_number(&morsel, offset as u64),
                            e.valid_up_to() + 1
                        )))
                    }
                },
            }
            rows += 1;
            if rows == BATCH_ROWS {
                batches.push(self.finish_batch(&mut builder));
                rows = 0;
            }
        }
        if rows > 0 {
            batches.push(self.finish_batch(&mut builder));
        }
        self.recycle(morsel.bytes);
        Ok(batches)
    }
}

impl BatchSource for FileSource {
    fn decode_each(
        &self,
        morsel: Morsel,
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        self.batches(morsel)?.into_iter().try_for_each(emit)
    }

    fn raw_text_lines(&self) -> bool {
        self.records.is_none()
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn check_inputs(&self) -> std::result::Result<Option<String>, String> {
        if self.path == Path::new("-") {
            return Ok(None);
        }
        if is_pattern(&self.path) {
            return self.files().map(|_| None).map_err(|e| e.to_string());
        }
        if self.path.exists() {
            return Ok(None);
        }
        match &self.fetch {
            Some(fetch) => Ok(Some(format!(
                "input {} does not exist yet: the first run downloads it from {}",
                self.path.display(),
                fetch.url
            ))),
            None => Err(format!(
                "input {} does not exist (no such file or directory)",
                self.path.display()
            )),
        }
    }

    fn fetch_missing(&self) -> Result<()> {
        match &self.fetch {
            Some(fetch_config) if !is_pattern(&self.path) && !self.path.exists() => {
                fetch(fetch_config, &self.path)
            }
            _ => Ok(()),
        }
    }

    /// `spark.read.text`: a URI (`hdfs://`, `s3a://`, `file://`) as written; a path on this
    /// machine as `file://` with a warning that every executor must see it (`fetch_missing`
    /// downloads it first).
    fn spark(&self) -> std::result::Result<crate::spark::frame::Frame, String> {
        use crate::spark::frame::col;
        if self.records.is_some() {
            return Err("only `format: lines` is read on Spark so far; run csv and jsonl with --engine local".into());
        }
        if self.encoding_errors != EncodingErrors::Replace {
            return Err("Spark's text reader has no `encoding_errors: skip` or `fail`; remove it or run with --engine local".into());
        }
        if self.path == Path::new("-") {
            return Err(
                "standard input is on this machine, out of reach of Spark's executors".into(),
            );
        }
        let written = self.written.to_string_lossy();
        // Spark's file index passes by names starting with `_` or `.` even when the path
        // names the file itself (or a glob asks for them): it would read nothing, and say
        // nothing.
        if !is_uri(&written) && !self.path.is_dir() && is_hidden(&self.path) {
            return Err(format!(
                "Spark passes by files whose names start with `_` or `.`, even named ones, and would read nothing of {}: rename it, or run with --engine local",
                crate::error::escape_path(&self.path)
            ));
        }
        let (uri, warning) = if is_uri(&written) {
            (written.into_owned(), None)
        } else {
            let absolute = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
            // Hadoop globs every path it reads: glob characters in the names of a file or
            // folders that exist as written (`data[1].txt`, `in[1]/*.txt`) are escaped to
            // name them.
            let hadoop_escape = |text: &str| -> String {
                text.chars()
                    .flat_map(|c| {
                        let escaped = matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\');
                        escaped
                            .then_some('\\')
                            .into_iter()
                            .chain(std::iter::once(c))
                    })
                    .collect()
            };
            // Hadoop's glob builds the paths it lists from their names, in which a `:` is
            // then taken for a URI's scheme: a name with one below a glob's fixed folders (the
            // files it matches here) fails there. (A plain path with `:` is read.)
            let below_the_glob = if is_pattern(&self.path) {
                let root = glob_root(&self.path);
                glob_matches(&self.path)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|p| {
                        p.strip_prefix(&root)
                            .unwrap_or(p)
                            .to_string_lossy()
                            .contains(':')
                    })
            } else {
                None
            };
            if let Some(colon) = below_the_glob {
                return Err(format!(
                    "Hadoop's glob cannot read {}: a `:` in a name it lists is read as a URI's scheme there; rename it, name the file without a glob, or run with --engine local",
                    crate::error::escape_path(&colon)
                ));
            }
            let shown = if is_pattern(&self.path) {
                glob_pattern_with(&absolute, hadoop_escape)
            } else {
                hadoop_escape(&absolute.display().to_string())
            };
            let uri = format!("file://{shown}");
            let warning = format!(
                "the source reads {uri}, a path on this machine: every Spark executor must see it there (a shared file system), or write a URI (hdfs://, s3a://) as `path`"
            );
            (uri, Some(warning))
        };
        let column = self.schema.field(0).name().clone();
        // A line's `\r` before its `\n` is not part of it, as here.
        let line = crate::spark::frame::call(
            "regexp_replace",
            vec![
                col("value"),
                crate::spark::frame::lit_str("\\r\\z"),
                crate::spark::frame::lit_str(""),
            ],
        );
        let frame = crate::spark::frame::Frame::read_text(vec![uri])
            .select(vec![line.alias(&column)], vec![column]);
        Ok(match warning {
            Some(warning) => frame.warn(warning),
            None => frame,
        })
    }

    fn open(&self) -> Result<Morsels<'_>> {
        self.reading_stopped
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let files = self.files()?;
        self.lines
            .read_in_order(files.iter().map(|path| origin_of(path)));
        if let Some(records) = &self.records {
            records.read_in_order(files.iter().map(|path| origin_of(path)));
        }
        let all_regular = files
            .iter()
            .all(|p| p != Path::new("-") && read_by_its_size(p));
        let csv = self.records.as_ref().filter(|r| r.format == Format::Csv);
        // Records of several lines are found from a file's start: its pieces cannot be read
        // apart.
        let multi_line = csv.filter(|r| r.multi_line).map(|r| r.delimiter);
        if all_regular && multi_line.is_none() {
            let mut starts = Vec::with_capacity(files.len());
            for path in &files {
                let mut start = 0;
                if let Some(records) = csv {
                    let fail = |source| Error::Input {
                        path: path.clone(),
                        source,
                    };
                    let mut file = std::fs::File::open(path).map_err(fail)?;
                    let (header, _) = read_header(&mut file, self.max_line_bytes).map_err(fail)?;
                    start = header.as_ref().map_or(0, |h| h.len() as u64 + 1);
                    records.header(&path.display().to_string(), header)?;
                }
                starts.push(start);
            }
            return self.open_indexed(files, starts);
        }
        Ok(Morsels::Sequential(Box::new(files.into_iter().flat_map(
            move |path| -> Box<dyn Iterator<Item = Result<Morsel>> + Send> {
                // A run that wants no more input opens no more files (a FIFO's open waits
                // for a writer).
                if self
                    .reading_stopped
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    return Box::new(std::iter::empty());
                }
                let origin = origin_of(&path);
                // Standard input is read through a descriptor of its own, unbuffered: `fill`
                // waits on it, and must not miss bytes held in `Stdin`'s buffer.
                let reader = if path == Path::new("-") {
                    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                        // Waiting without a word reads as a hang.
                        tracing::warn!(
                            "reading standard input from the terminal: type lines, then Ctrl-D"
                        );
                    }
                    std::io::stdin()
                        .as_fd()
                        .try_clone_to_owned()
                        .map(std::fs::File::from)
                } else {
                    std::fs::File::open(&path)
                };
                let mut next_line = 1;
                // The bytes read past a CSV header are the records' first.
                let mut pending = Vec::new();
                let reader = reader.and_then(|mut reader| {
                    if let Some(records) = csv {
                        let (header, rest) = read_header(&mut reader, self.max_line_bytes)?;
                        next_line += u64::from(header.is_some());
                        if let Err(e) = records.header(&origin, header) {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                e.to_string(),
                            ));
                        }
                        pending = rest;
                    }
                    Ok(reader)
                });
                match reader {
                    Ok(reader) => Box::new(LineMorsels {
                        // A pipe (or terminal) is waited on when it goes quiet (see `fill`).
                        pipe: waited_on(&reader).map(|fd| (fd, self.reading_stopped.clone())),
                        reader: Box::new(reader),
                        pending,
                        origin,
                        path,
                        carry: Vec::new(),
                        next_line,
                        done: false,
                        max_line_bytes: self.max_line_bytes,
                        skipping: false,
                        lines: self.lines.clone(),
                        fail_on_long: self.fails_on_long_records() || multi_line.is_some(),
                        multi_line,
                    }),
                    Err(source) => Box::new(std::iter::once(Err(Error::Input { path, source }))),
                }
            },
        ))))
    }

    fn raw_csv_records(&self) -> bool {
        self.records
            .as_ref()
            .is_some_and(|r| r.format == Format::Csv && !r.multi_line)
    }

    fn csv_layout(&self) -> Option<super::records::CsvLayout> {
        self.records
            .as_ref()
            .filter(|r| r.format == Format::Csv)?
            .decoder
            .get()?
            .csv_layout()
    }

    fn stop_reading(&self) {
        self.reading_stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn recycle(&self, mut bytes: Vec<u8>) {
        bytes.clear();
        if let Ok(mut pool) = self.buffers.lock() {
            if pool.len() < 64 {
                pool.push(bytes);
            }
        }
    }

    fn warnings(&self) -> Vec<String> {
        let mut warnings = self.lines.warnings(self.max_line_bytes);
        if let Some(records) = &self.records {
            let bad = records.bad.load(Ordering::Relaxed);
            if bad > 0 {
                let first = records
                    .first_bad
                    .lock()
                    .ok()
                    .and_then(|f| f.as_ref().map(|(_, first)| first.clone()))
                    .unwrap_or_default();
                warnings.push(format!(
                    "{bad} {} record(s) could not be read and were skipped (the first: {first})",
                    records.format.name()
                ));
            }
        }
        warnings
    }

    fn counters(&self) -> super::SourceCounters {
        super::SourceCounters {
            malformed_events: self
                .records
                .as_ref()
                .map_or(0, |r| r.bad.load(Ordering::Relaxed)),
            ..self.lines.counters()
        }
    }

    fn input_bytes(&self) -> Option<u64> {
        if let Some(opened) = *self.opened_bytes.lock().unwrap_or_else(|p| p.into_inner()) {
            return Some(opened);
        }
        // Not opened as regular files: listed now; a pipe or standard input has no size.
        let files = self.files().ok()?;
        files
            .iter()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
            })
            .sum()
    }
}

/// One morsel of a regular file: the lines that start in `start..end`.
struct Piece {
    file: Arc<InputFile>,
    origin: Arc<str>,
    path: Arc<Path>,
    start: u64,
    end: u64,
}

/// A file cut into pieces, opened when its first piece is read and closed after its last: a
/// folder of 100,000 files holds a few open at a time (about one per core), not one each, which
/// the open-files limit (`ulimit -n`, often 1,024) would refuse.
struct InputFile {
    path: Arc<Path>,
    /// The file's device and inode when the run listed it: a file replaced since (rotated
    /// away) is an error, not other bytes at the same offsets.
    identity: (u64, u64),
    open: std::sync::Mutex<Option<Arc<std::fs::File>>>,
    /// Pieces not yet read; at 0 the file is closed (a piece read again opens it again).
    pieces_left: std::sync::atomic::AtomicUsize,
}

impl InputFile {
    /// The open file, opened now if no piece holds it.
    fn handle(&self) -> std::io::Result<Arc<std::fs::File>> {
        use std::os::unix::fs::MetadataExt;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = open.as_ref() {
            return Ok(file.clone());
        }
        let file = std::fs::File::open(&self.path)?;
        let now = file.metadata()?;
        if (now.dev(), now.ino()) != self.identity {
            return Err(std::io::Error::other(
                "the file was replaced by another while the run read it",
            ));
        }
        let file = Arc::new(file);
        *open = Some(file.clone());
        Ok(file)
    }

    /// One piece read: after the last, the file is let go (closed when no read holds it).
    fn piece_read(&self) {
        use std::sync::atomic::Ordering;
        let before = self
            .pieces_left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if before == Ok(1) {
            self.open.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }
}

/// Whether `path` is a regular file that holds what its size says, whose pieces can be read at
/// their offsets. The kernel's files (`/proc`, `/sys`) are listed as empty, or as a page,
/// whatever they hold: they are read to their end, as a pipe is (`/proc/cpuinfo` was read as
/// empty). They are told by where they are, never by reading them (a read of `/proc/kmsg`
/// takes what it reads, or waits).
fn read_by_its_size(path: &Path) -> bool {
    let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file());
    let kernels = std::fs::canonicalize(path)
        .is_ok_and(|real| real.starts_with("/proc") || real.starts_with("/sys"));
    regular && !kernels
}

impl FileSource {
    /// Regular files are cut into fixed byte ranges that workers read themselves with
    /// positional reads, so reading scales with the cores instead of queueing on one reader.
    /// `starts`: where each file's records begin (after a CSV header).
    fn open_indexed(&self, files: Vec<PathBuf>, starts: Vec<u64>) -> Result<Morsels<'_>> {
        use std::os::unix::fs::MetadataExt;
        let mut pieces = Vec::new();
        let mut total = 0u64;
        for (path, first) in files.into_iter().zip(starts) {
            let metadata = std::fs::metadata(&path).map_err(|source| Error::Input {
                path: path.clone(),
                source,
            })?;
            let len = metadata.len();
            total = total.saturating_add(len);
            let (origin, path): (Arc<str>, Arc<Path>) =
                (path.display().to_string().into(), path.into());
            let file = Arc::new(InputFile {
                path: path.clone(),
                identity: (metadata.dev(), metadata.ino()),
                open: std::sync::Mutex::new(None),
                pieces_left: std::sync::atomic::AtomicUsize::new(0),
            });
            let mut start = first;
            let mut count = 0;
            while start < len {
                let end = (start + PIECE_BYTES as u64).min(len);
                pieces.push(Piece {
                    file: file.clone(),
                    origin: origin.clone(),
                    path: path.clone(),
                    start,
                    end,
                });
                start = end;
                count += 1;
            }
            file.pieces_left
                .store(count, std::sync::atomic::Ordering::Relaxed);
        }
        *self.opened_bytes.lock().unwrap_or_else(|p| p.into_inner()) = Some(total);
        Ok(Morsels::Indexed {
            count: pieces.len(),
            read: Box::new(move |i| {
                let piece = &pieces[i];
                let read = self.read_piece(piece);
                piece.file.piece_read();
                read
            }),
        })
    }

    fn buffer(&self) -> Vec<u8> {
        self.buffers
            .lock()
            .ok()
            .and_then(|mut pool| pool.pop())
            .unwrap_or_default()
    }

    /// Reads the lines that start inside `piece`: from just after the first newline at or after
    /// `start - 1` (the start itself for the first piece) to the newline that ends the line
    /// holding byte `end - 1` (or the end of the file).
    fn read_piece(&self, piece: &Piece) -> Result<Morsel> {
        use std::os::unix::fs::FileExt;
        let fail = |source| Error::Input {
            path: piece.path.to_path_buf(),
            source,
        };
        let file = piece.file.handle().map_err(fail)?;
        let from = piece.start.saturating_sub(1);
        let mut bytes = self.buffer();
        let mut filled = 0usize;
        let mut wanted = (piece.end - from) as usize;
        let mut eof = false;
        // Where the search for the newline ending the last owned line goes on from: each
        // round searches only the bytes it added (a long line is read in linear time).
        let last_owned = (piece.end - 1 - from) as usize;
        let owned = last_owned + 1;
        let mut searched = last_owned;
        let mut first_read = true;
        loop {
            if bytes.len() < wanted {
                bytes.resize(wanted, 0);
            }
            while filled < wanted {
                match file.read_at(&mut bytes[filled..wanted], from + filled as u64) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(fail(e)),
                }
            }
            if eof && filled <= last_owned {
                // The piece was cut from the file's length when the run started.
                return Err(Error::runtime(format!(
                    "input {} shrank while it was read: byte {} was in the file when the run started, the file now ends at byte {}",
                    piece.path.display(),
                    piece.end - 1,
                    from + filled as u64
                )));
            }
            if std::mem::take(&mut first_read)
                && piece.start > 0
                && memchr::memchr(b'\n', &bytes[..last_owned.min(filled)]).is_none()
            {
                // No line starts in this piece: it is the middle of a line an earlier piece
                // owns (and reads, or skips). Nothing to read further.
                filled = 0;
                break;
            }
            // The line holding byte end - 1 ends at the first newline from there on.
            if let Some(at) = memchr::memchr(b'\n', &bytes[searched.min(filled)..filled]) {
                filled = searched.min(filled) + at + 1;
                break;
            }
            searched = filled.max(searched);
            if eof {
                break;
            }
            let line_start =
                memchr::memrchr(b'\n', &bytes[..owned.min(filled)]).map_or(0, |p| p + 1);
            if filled - line_start > self.max_line_bytes {
                // The last line is too long to hold: drop it (its owner is this piece, the
                // check above makes sure), and count it once.
                if self.fails_on_long_records() {
                    // The line's number costs a count of the newlines before it: done only
                    // here, as the run stops.
                    let line_offset = from + line_start as u64;
                    let line = lines_before(&file, line_offset).map(|n| n + 1);
                    return Err(long_record(
                        &piece.path.display().to_string(),
                        line,
                        self.max_line_bytes,
                    ));
                }
                // Its number costs a count of the newlines before it: done for the first only.
                let seen = (
                    self.lines.order_of(&piece.origin),
                    from + line_start as u64,
                    0,
                );
                self.lines.long_line(seen, || {
                    let at = lines_before(&file, from + line_start as u64);
                    match at {
                        Some(before) => format!("{} line {}", piece.path.display(), before + 1),
                        None => piece.path.display().to_string(),
                    }
                });
                filled = line_start;
                break;
            }
            // Grow geometrically: a line of n bytes costs O(n) reads and copies in all.
            wanted = filled + (filled / 2).max(64 * 1024);
        }
        bytes.truncate(filled);
        let first = if piece.start == 0 {
            // A UTF-8 byte order mark is not text of the first line (Spark's text reader, and
            // Hadoop's under it, pass it by too).
            if bytes.starts_with(UTF8_BOM) {
                UTF8_BOM.len()
            } else {
                0
            }
        } else {
            // Skip the line that started in an earlier piece (byte 0 here is byte start - 1).
            match memchr::memchr(b'\n', &bytes[..owned.min(bytes.len())]) {
                Some(at) => at + 1,
                None => bytes.len(),
            }
        };
        bytes.drain(..first);
        Ok(Morsel {
            bytes,
            origin: piece.origin.clone(),
            position: Position::Offset(from + first as u64),
        })
    }

    /// The 1-based line number of line `index` of `morsel`; counts newlines in the file up to
    /// the morsel when the morsel was read by position (only on this error path).
    fn line_number(&self, morsel: &Morsel, index: u64) -> String {
        match morsel.position {
            Position::Line(first) => (first + index).to_string(),
            Position::Offset(offset) => {
                let counted = std::fs::File::open(&*morsel.origin)
                    .ok()
                    .and_then(|f| lines_before(&f, offset));
                match counted {
                    Some(before) => (before + 1 + index).to_string(),
                    None => format!("at byte {offset}+"),
                }
            }
        }
    }

    /// The lines of `text`, `\r\n` or `\n` ended, as batches.
    fn decode_valid(&self, text: &str) -> Result<Vec<RecordBatch>> {
        let bytes = text.as_bytes();
        let mut batches = Vec::new();
        if bytes.is_empty() {
            return Ok(batches);
        }
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let mut lines =
            TextColumnBuilder::with_capacity(BATCH_ROWS, body.len().min(BATCH_ROWS * 128));
        let finish = |lines: &mut TextColumnBuilder| -> Result<RecordBatch> {
            // SAFETY: every line is cut from `text` (UTF-8, a `str`) at `\n` and `\r`, ASCII
            // bytes, so each is UTF-8.
            let column = unsafe { lines.finish_valid() }.map_err(Error::runtime)?;
            Ok(
                RecordBatch::try_new(self.schema.clone(), vec![Arc::new(column)])
                    .expect("one text column"),
            )
        };
        let mut start = 0;
        // memchr finds the newlines 32 bytes at a time; `split` tests a byte at a time.
        for end in memchr::memchr_iter(b'\n', body).chain([body.len()]) {
            let raw = &body[start..end];
            start = end + 1;
            lines.push(raw.strip_suffix(b"\r").unwrap_or(raw));
            if lines.rows() == BATCH_ROWS {
                batches.push(finish(&mut lines)?);
            }
        }
        if lines.rows() > 0 {
            batches.push(finish(&mut lines)?);
        }
        Ok(batches)
    }

    /// Whether a line too long to hold fails the run: records under `on_error: fail` (lines
    /// are skipped and counted, as `max_line_bytes` says).
    fn fails_on_long_records(&self) -> bool {
        self.records
            .as_ref()
            .is_some_and(|r| r.on_error == OnError::Fail)
    }

    fn finish_batch(&self, builder: &mut StringBuilder) -> RecordBatch {
        RecordBatch::try_new(self.schema.clone(), vec![Arc::new(builder.finish())])
            .expect("one text column")
    }
}

/// Reads a stream in morsels of about `MORSEL_BYTES`, each ending at a newline (except the last).
struct LineMorsels {
    reader: Box<dyn Read + Send>,
    /// The reader's descriptor where it is not a regular file, and the run's wish to stop
    /// reading (see `fill`).
    pipe: Option<(Pipe, Arc<std::sync::atomic::AtomicBool>)>,
    /// Bytes read before the first morsel (past a CSV header), its first.
    pending: Vec<u8>,
    origin: Arc<str>,
    path: PathBuf,
    carry: Vec<u8>,
    next_line: u64,
    done: bool,
    max_line_bytes: usize,
    /// Inside a line longer than `max_line_bytes`: its bytes are dropped until its newline.
    skipping: bool,
    lines: Arc<super::LineCounts>,
    /// Records under `on_error: fail`: a line too long to hold is an error, not skipped.
    fail_on_long: bool,
    /// CSV records of several lines (`multi_line`), with this delimiter: a morsel ends at a
    /// line break outside quotes.
    multi_line: Option<u8>,
}

impl Iterator for LineMorsels {
    type Item = Result<Morsel>;

    fn next(&mut self) -> Option<Result<Morsel>> {
        if self.done {
            return None;
        }
        // `carry` holds the unfinished last line of the previous read: it has no newline.
        let mut buffer = std::mem::take(&mut self.carry);
        loop {
            let mut start = buffer.len();
            let (filled, eof) = if self.pending.is_empty() {
                buffer.resize(start + MORSEL_BYTES, 0);
                let pipe = self.pipe.as_ref().map(|(fd, stop)| (*fd, stop.as_ref()));
                match fill(&mut self.reader, &mut buffer[start..], pipe) {
                    Ok(result) => result,
                    Err(source) => {
                        self.done = true;
                        return Some(Err(Error::Input {
                            path: self.path.clone(),
                            source,
                        }));
                    }
                }
            } else {
                buffer.append(&mut self.pending);
                (buffer.len() - start, false)
            };
            buffer.truncate(start + filled);
            // Stopped (see `fill`): what was read is not wanted, nor a line it cut.
            if self
                .pipe
                .as_ref()
                .is_some_and(|(_, stop)| stop.load(std::sync::atomic::Ordering::SeqCst))
            {
                self.done = true;
                return None;
            }
            if self.skipping {
                // The rest of a long line: drop bytes up to its newline.
                match memchr::memchr(b'\n', &buffer) {
                    Some(at) => {
                        buffer.drain(..=at);
                        start = 0;
                        self.skipping = false;
                        // The skipped line still has a number.
                        self.next_line += 1;
                    }
                    None => {
                        buffer.clear();
                        if eof {
                            self.done = true;
                            return None;
                        }
                        continue;
                    }
                }
            }
            if eof {
                self.done = true;
                return (!buffer.is_empty()).then(|| Ok(self.morsel(buffer)));
            }
            // `carry` (before `start`) has no newline: only the new bytes are searched. A
            // record of several lines is walked from its start, which `carry` holds.
            let whole = match self.multi_line {
                Some(delimiter) => {
                    super::records::multi_line::whole_records_len(&buffer, delimiter)
                }
                None => memchr::memrchr(b'\n', &buffer[start..]).map(|at| start + at + 1),
            };
            if let Some(cut) = whole {
                self.carry = buffer[cut..].to_vec();
                buffer.truncate(cut);
                return Some(Ok(self.morsel(buffer)));
            }
            // A line longer than a morsel: keep reading until it ends, up to max_line_bytes.
            if buffer.len() > self.max_line_bytes {
                if self.fail_on_long {
                    self.done = true;
                    // `buffer` is one unfinished record, from the line `next_line`.
                    let error = match self.multi_line {
                        Some(_) => Error::runtime(format!(
                            "{} line {}: a record is longer than max_line_bytes ({} bytes): raise `max_line_bytes`; a quote that is never closed makes one record of the rest of the input",
                            self.origin, self.next_line, self.max_line_bytes
                        )),
                        None => long_record(&self.origin, Some(self.next_line), self.max_line_bytes),
                    };
                    return Some(Err(error));
                }
                self.lines.long_line(
                    (self.lines.order_of(&self.origin), self.next_line, 0),
                    || format!("{} line {}", self.origin, self.next_line),
                );
                self.skipping = true;
                buffer.clear();
            }
        }
    }
}

/// A record too long to hold, under `on_error: fail`.
fn long_record(origin: &str, line: Option<u64>, max_line_bytes: usize) -> Error {
    let line = line.map_or(String::new(), |n| format!(" line {n}"));
    Error::runtime(format!(
        "{origin}{line}: a record is longer than max_line_bytes ({max_line_bytes} bytes); raise `max_line_bytes`, or `on_error: skip` leaves such records out"
    ))
}

/// How many newlines `file` holds before byte `offset` (`None` when it cannot be read).
fn lines_before(file: &std::fs::File, offset: u64) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let mut buffer = vec![0u8; 1 << 20];
    let (mut at, mut lines) = (0u64, 0u64);
    while at < offset {
        let wanted = (offset - at).min(buffer.len() as u64) as usize;
        let read = file.read_at(&mut buffer[..wanted], at).ok()?;
        if read == 0 {
            return None;
        }
        lines += memchr::memchr_iter(b'\n', &buffer[..read]).count() as u64;
        at += read as u64;
    }
    Some(lines)
}

/// Reads until `buffer` is full or the input ends; returns the bytes read and whether it ended.
fn fill(
    reader: &mut dyn Read,
    buffer: &mut [u8],
    pipe: Option<(Pipe, &std::sync::atomic::AtomicBool)>,
) -> std::io::Result<(usize, bool)> {
    let mut filled = 0;
    // Whether the pipe was just seen to have more (no need to ask again before reading).
    let mut ready = false;
    while filled < buffer.len() {
        // A pipe is waited on a moment at a time, so that a run that wants no more input (a
        // limit reached, the sinks closed) ends although the pipe's writer goes on.
        if let Some((pipe, stop)) = pipe {
            while !ready && !pipe.ready_within(crate::cancel::POLL) {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return Ok((filled, true));
                }
            }
        }
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => return Ok((filled, true)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        // A pipe that has nothing more for a moment (`tail -f log |`, a slow writer): what
        // it gave is handed on, so that its rows reach the sinks as they come and a `limit`
        // stops the run, rather than waiting for a whole morsel.
        if let Some((pipe, _)) = pipe.filter(|_| filled < buffer.len()) {
            ready = pipe.ready_within(PIPE_QUIET);
            if !ready {
                return Ok((filled, false));
            }
        }
    }
    Ok((filled, false))
}

/// How long a pipe may be silent before what it gave is handed on.
const PIPE_QUIET: std::time::Duration = std::time::Duration::from_millis(20);

/// A reader's descriptor, for reading it as soon as it goes quiet.
#[derive(Clone, Copy)]
struct Pipe(std::os::fd::RawFd);

/// `reader`'s descriptor where it is not a regular file (a pipe, a FIFO, a terminal).
fn waited_on<T: std::os::fd::AsFd>(reader: &T) -> Option<Pipe> {
    let fd = reader.as_fd();
    let regular = fd
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|file| file.metadata())
        .is_ok_and(|m| m.is_file());
    (!regular).then_some(Pipe(std::os::fd::AsRawFd::as_raw_fd(&fd)))
}

impl Pipe {
    /// Whether there is more to read (or its end, or an error a read will tell) within
    /// `wait`.
    fn ready_within(self, wait: std::time::Duration) -> bool {
        let mut poll = libc::pollfd {
            fd: self.0,
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid `pollfd`, and its count, 1; `poll` writes only its `revents`.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        // Interrupted by a signal: not ready, asked again. Another failure: a read tells it.
        ready > 0
            || (ready < 0
                && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted)
    }
}

impl LineMorsels {
    fn morsel(&mut self, mut bytes: Vec<u8>) -> Morsel {
        let first_line = self.next_line;
        // As `read_piece`: a file's byte order mark is not text of its first line.
        if first_line == 1 && bytes.starts_with(UTF8_BOM) {
            bytes.drain(..UTF8_BOM.len());
        }
        self.next_line += memchr::memchr_iter(b'\n', &bytes).count() as u64;
        Morsel {
            bytes,
            origin: self.origin.clone(),
            position: Position::Line(first_line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file opened when its first piece is read is the file the run listed: one replaced
    /// since (rotated away, a new one in its place) is an error, not its bytes.
    #[test]
    fn an_input_replaced_before_its_first_piece_is_read_is_an_error() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, "one\n").unwrap();
        let listed = std::fs::metadata(&path).unwrap();
        let input = InputFile {
            path: path.clone().into(),
            identity: (listed.dev(), listed.ino()),
            open: std::sync::Mutex::new(None),
            pieces_left: std::sync::atomic::AtomicUsize::new(2),
        };
        let first = input.handle().unwrap();
        assert!(Arc::ptr_eq(&first, &input.handle().unwrap()));
        input.piece_read();
        input.piece_read();
        assert!(
            input.open.lock().unwrap().is_none(),
            "closed after its last piece"
        );
        std::fs::write(dir.path().join("b.txt"), "two\n").unwrap();
        std::fs::rename(dir.path().join("b.txt"), &path).unwrap();
        let error = input.handle().unwrap_err().to_string();
        assert!(error.contains("replaced by another"), "{error}");
    }

    #[test]
    fn compressed_and_utf16_starts_are_told_and_text_is_not() {
        assert!(not_text(b"\x1f\x8b\x08").unwrap().starts_with("gzip"));
        assert!(not_text(b"BZh91AY").unwrap().starts_with("bzip2"));
        assert!(not_text(b"\xff\xfek\x00").unwrap().starts_with("UTF-16"));
        for text in [
            &b"BZh is a word"[..],
            b"k,v\n",
            b"\xef\xbb\xbfk,v",
            b"",
            b"\x1f",
        ] {
            assert_eq!(not_text(text), None, "{text:?}");
        }
    }
    use crate::transforms::compliance::texts;

    #[test]
    fn the_head_for_inference_holds_whole_lines_however_long_the_first_are() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.csv");
        let long = "z".repeat(300_000);
        std::fs::write(&path, format!("a,b\n1,{long}\n2,y\n")).unwrap();
        let head = read_head(&path, 1024, 2, None).unwrap();
        assert!(head.len() >= 4 + 3 + long.len(), "{}", head.len());
        assert!(head.ends_with(b"\n"));
        // Within the limit: cut at the last whole line.
        let head = read_head(&path, 300_010, 1, None).unwrap();
        assert_eq!(head.len(), 4 + 3 + long.len());
        let columns = infer_columns(
            Format::Csv,
            &read_head(&path, 1024, 2, None).unwrap(),
            b',',
            None,
        )
        .unwrap();
        assert_eq!(columns[0].value_type, crate::data::ValueType::Integer);
    }

    fn source(path: &Path, yaml_extra: &str) -> Box<dyn BatchSource> {
        let yaml = format!("{{path: '{}' {yaml_extra}}}", path.display());
        let config: FileSourceConfig = serde_saphyr::from_str(&yaml).unwrap();
        match config
            .build(&SourceContext {
                base_dir: Path::new("."),
                streaming: false,
            })
            .unwrap()
        {
            BuiltSource::Batch(source) => source,
            BuiltSource::Stream(_) => panic!("the file source is a batch source"),
        }
    }

    fn read_all(src: &dyn BatchSource) -> Result<Vec<String>> {
        read_column(src, "line")
    }

    /// Every value of `column` the source gives, as text, morsel by morsel in order.
    fn read_column(src: &dyn BatchSource, column: &str) -> Result<Vec<String>> {
        let mut values = Vec::new();
        for morsel in src.open()?.into_seq_iter() {
            for batch in src.decode(morsel?)? {
                values.extend(texts(&batch, column));
            }
        }
        Ok(values)
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Gives at most `step` bytes a read, as a pipe may.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(out.len()).min(self.bytes.len());
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_header_is_read_in_blocks_and_the_bytes_after_it_are_handed_on() {
        let wide: String = (0..100_000).map(|i| format!("c{i},")).collect();
        let input = format!("{wide}z\r\n1,2\n3,4");
        for step in [1, 7, 1 << 20] {
            let mut reader = Trickle {
                bytes: input.as_bytes(),
                step,
            };
            let (header, rest) = read_header(&mut reader, 1 << 20).unwrap();
            let mut after = rest;
            reader.read_to_end(&mut after).unwrap();
            assert_eq!(header.unwrap(), format!("{wide}z").into_bytes());
            assert_eq!(after, b"1,2\n3,4");
        }
        let mut empty: &[u8] = b"";
        assert_eq!(read_header(&mut empty, 10).unwrap(), (None, Vec::new()));
        let mut unended: &[u8] = b"a,b";
        assert_eq!(
            read_header(&mut unended, 10).unwrap(),
            (Some(b"a,b".to_vec()), Vec::new())
        );
        for input in [&b"abcdefghijk\n1\n"[..], b"abcdefghijk"] {
            let mut long = input;
            let error = read_header(&mut long, 10).unwrap_err().to_string();
            assert!(
                error.contains("longer than max_line_bytes (10 bytes)"),
                "{error}"
            );
        }
    }

    #[test]
    fn an_escape_reads_sparks_csv_from_inference_to_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "spark.csv",
            b"n,quote\n1,\"say \\\"hi\\\"\"\n2,\"a,\\\"b\"\n",
        );
        let src = source(&path, ", format: csv, escape: '\\'");
        assert_eq!(
            read_column(src.as_ref(), "quote").unwrap(),
            ["say \"hi\"", "a,\"b"]
        );
        let refused = |options: &str| {
            let yaml = format!("{{path: '{}'{options}}}", path.display());
            let config: FileSourceConfig = serde_saphyr::from_str(&yaml).unwrap();
            config
                .build(&SourceContext {
                    base_dir: dir.path(),
                    streaming: false,
                })
                .err()
                .unwrap()
        };
        assert!(refused(", format: csv, escape: '\"'").contains("cannot escape quotes"));
        assert!(refused(", format: csv, escape: ','").contains("cannot escape quotes"));
        assert!(refused(", format: jsonl, escape: '\\'").contains("is for `format: csv`"));
        assert!(refused(", format: csv, multi_line: true, escape: '\\'")
            .contains("not read with `multi_line: true` yet"));
    }

    #[test]
    fn a_record_that_does_not_fit_inferred_columns_says_they_were_inferred() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("a\n");
        for i in 0..40_000 {
            text.push_str(&format!("{i}\n"));
        }
        text.push_str("3.5\n");
        let path = write(dir.path(), "late.csv", text.as_bytes());
        let err = read_column(source(&path, ", format: csv").as_ref(), "a")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"3.5\" is not an integer"), "{err}");
        assert!(err.contains("the columns were inferred"), "{err}");
        let declared = source(&path, ", format: csv, columns: {a: integer}");
        let err = read_column(declared.as_ref(), "a").unwrap_err().to_string();
        assert!(!err.contains("inferred"), "{err}");
        // An empty file has no header to infer from.
        let empty = write(dir.path(), "empty.csv", b"");
        let config: FileSourceConfig =
            serde_saphyr::from_str(&format!("{{path: '{}', format: csv}}", empty.display()))
                .unwrap();
        let refused = config
            .build(&SourceContext {
                base_dir: dir.path(),
                streaming: false,
            })
            .err()
            .unwrap();
        assert!(refused.contains("the input is empty"), "{refused}");
    }

    #[test]
    fn a_record_too_long_to_hold_fails_under_on_error_fail() {
        let dir = tempfile::tempdir().unwrap();
        let long = "y".repeat(3 << 20);
        let path = write(
            dir.path(),
            "long.csv",
            format!("a,b\n1,x\n2,{long}\n3,z\n").as_bytes(),
        );
        let read = |on_error: &str| -> Result<Vec<String>> {
            let src = source(
                &path,
                &format!(", format: csv, on_error: {on_error}, max_line_bytes: 1048576, columns: {{a: integer, b: text}}"),
            );
            read_column(src.as_ref(), "a")
        };
        assert_eq!(read("skip").unwrap(), ["1", "3"]);
        let err = read("fail").unwrap_err().to_string();
        assert!(
            err.contains("long.csv line 3: a record is longer than max_line_bytes"),
            "{err}"
        );
        // Read in order, from the file's start (records of several lines): the same line.
        let err = read("fail, multi_line: true").unwrap_err().to_string();
        assert!(
            err.contains("long.csv line 3: a record is longer than max_line_bytes")
                && err.contains("a quote that is never closed"),
            "{err}"
        );
    }

    #[test]
    fn records_with_invalid_utf8_follow_encoding_errors_as_lines_do() {
        let dir = tempfile::tempdir().unwrap();
        let csv = write(dir.path(), "u.csv", b"a,b\n1,ok\n2,bad\xff\n3,fine\n");
        let json = write(
            dir.path(),
            "u.jsonl",
            b"{\"a\":1,\"b\":\"ok\"}\n{\"a\":2,\"b\":\"bad\xff\"}\n{\"a\":3,\"b\":\"fine\"}\n",
        );
        for (path, format, bad_line) in [(&csv, "csv", 3), (&json, "jsonl", 2)] {
            let read = |mode: &str| -> Result<Vec<String>> {
                let src = source(
                    path,
                    &format!(", format: {format}, encoding_errors: {mode}, columns: {{a: integer, b: text}}"),
                );
                read_column(src.as_ref(), "b")
            };
            assert_eq!(
                read("replace").unwrap(),
                ["ok", "bad\u{fffd}", "fine"],
                "{format}"
            );
            assert_eq!(read("skip").unwrap(), ["ok", "fine"], "{format}");
            let err = read("fail").unwrap_err().to_string();
            let said = format!("line {bad_line}: invalid UTF-8 at byte");
            assert!(err.contains(&said), "{format}: {err}");
        }
    }

    #[test]
    fn crlf_lf_and_missing_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a.txt", b"one\r\ntwo\n\nthree");
        assert_eq!(
            read_all(source(&path, "").as_ref()).unwrap(),
            ["one", "two", "", "three"]
        );
        let empty = write(dir.path(), "empty.txt", b"");
        assert!(read_all(source(&empty, "").as_ref()).unwrap().is_empty());
    }

    #[test]
    fn invalid_utf8_under_each_policy() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "bad.txt", b"ok\nbad \xff here\nfine\n");
        let replace = source(&path, "");
        assert_eq!(
            read_all(replace.as_ref()).unwrap(),
            ["ok", "bad \u{fffd} here", "fine"]
        );
        assert!(replace.warnings()[0].contains("1 line(s) had invalid UTF-8"));
        let skip = source(&path, ", encoding_errors: skip");
        assert_eq!(read_all(skip.as_ref()).unwrap(), ["ok", "fine"]);
        assert!(skip.warnings()[0].contains("skipped"));
        let err = read_all(source(&path, ", encoding_errors: fail").as_ref())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.txt line 2: invalid UTF-8 at byte 5"),
            "{err}"
        );
    }

    #[test]
    fn a_byte_order_mark_is_not_text_of_the_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bom.txt");
        write(dir.path(), "bom.txt", b"\xEF\xBB\xBFfirst\r\nsecond\n");
        assert_eq!(
            read_all(source(&path, "").as_ref()).unwrap(),
            ["first", "second"]
        );
        // Read from standard input's reader too (one sequence of morsels).
        let mut morsels = LineMorsels {
            reader: Box::new(std::io::Cursor::new(b"\xEF\xBB\xBFfirst\n".to_vec())),
            pipe: None,
            pending: Vec::new(),
            origin: "standard input".into(),
            path: PathBuf::from("-"),
            carry: Vec::new(),
            next_line: 1,
            done: false,
            max_line_bytes: MORSEL_BYTES,
            skipping: false,
            lines: Arc::new(super::super::LineCounts::default()),
            fail_on_long: false,
            multi_line: None,
        };
        assert_eq!(morsels.next().unwrap().unwrap().bytes, b"first\n");
    }

    #[test]
    fn directories_and_globs_read_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.txt", b"b1\nb2");
        write(dir.path(), "a.txt", b"a1\n");
        write(dir.path(), "c.log", b"c1\n");
        assert_eq!(
            read_all(source(dir.path(), "").as_ref()).unwrap(),
            ["a1", "b1", "b2", "c1"]
        );
        let glob = dir.path().join("*.txt");
        assert_eq!(
            read_all(source(&glob, "").as_ref()).unwrap(),
            ["a1", "b1", "b2"]
        );
        let none = dir.path().join("*.csv");
        assert!(read_all(source(&none, "").as_ref())
            .unwrap_err()
            .to_string()
            .contains("no files match"));
    }

    #[test]
    fn large_input_is_cut_into_morsels_at_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = Vec::new();
        for i in 0..300_000 {
            text.extend_from_slice(format!("line number {i}\n").as_bytes());
        }
        let path = write(dir.path(), "big.txt", &text);
        let src = source(&path, "");
        let morsels: Vec<Morsel> = src
            .open()
            .unwrap()
            .into_seq_iter()
            .map(|m| m.unwrap())
            .collect();
        assert!(
            morsels.len() > 2,
            "expected several morsels, got {}",
            morsels.len()
        );
        assert!(morsels.iter().all(|m| m.bytes.ends_with(b"\n")));
        assert_eq!(
            morsels[1].position,
            Position::Offset(morsels[0].bytes.len() as u64)
        );
        let lines = read_all(src.as_ref()).unwrap();
        assert_eq!(lines.len(), 300_000);
        assert_eq!(lines[299_999], "line number 299999");
    }

    #[test]
    fn a_file_that_shrinks_while_it_is_read_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let line = "a line of text\n".repeat(1000);
        let text = line.repeat(3 * MORSEL_BYTES / line.len() + 1);
        let path = write(dir.path(), "shrinking.txt", text.as_bytes());
        let src = source(&path, "");
        let mut morsels = src.open().unwrap().into_seq_iter();
        morsels.next().unwrap().unwrap();
        // The pieces were cut from the length at open; the file loses its last two thirds.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(MORSEL_BYTES as u64 + 10)
            .unwrap();
        let error = morsels
            .find_map(|m| m.err())
            .expect("reading past the new end fails")
            .to_string();
        assert!(
            error.contains("shrinking.txt shrank while it was read"),
            "{error}"
        );
    }

    #[test]
    fn a_line_longer_than_max_line_bytes_is_skipped_on_both_read_paths() {
        let dir = tempfile::tempdir().unwrap();
        let long = "x".repeat(3 * MORSEL_BYTES + 5);
        let text = format!("a b\n{long}\nc d\n");
        let path = write(dir.path(), "long.txt", text.as_bytes());
        let yaml = format!(
            "{{path: '{}', max_line_bytes: {MORSEL_BYTES}}}",
            path.display()
        );
        let config: FileSourceConfig = serde_saphyr::from_str(&yaml).unwrap();
        let BuiltSource::Batch(src) = config
            .build(&SourceContext {
                base_dir: Path::new("."),
                streaming: false,
            })
            .unwrap()
        else {
            panic!("a batch source")
        };
        assert_eq!(read_all(src.as_ref()).unwrap(), ["a b", "c d"]);
        assert_eq!(src.counters().skipped_lines, 1);
        let warning = &src.warnings()[0];
        assert!(
            warning.contains("1 line(s) longer than max_line_bytes")
                && warning.contains("long.txt line 2)"),
            "{warning}"
        );
        // The sequential reader (pipes, standard input) on the same bytes.
        let lines = Arc::new(super::super::LineCounts::default());
        let morsels = LineMorsels {
            reader: Box::new(std::io::Cursor::new(text.into_bytes())),
            pipe: None,
            pending: Vec::new(),
            origin: "pipe".into(),
            path: "pipe".into(),
            carry: Vec::new(),
            next_line: 1,
            done: false,
            max_line_bytes: MORSEL_BYTES,
            skipping: false,
            lines: lines.clone(),
            fail_on_long: false,
            multi_line: None,
        };
        let bytes: Vec<u8> = morsels.flat_map(|m| m.unwrap().bytes).collect();
        assert_eq!(bytes, b"a b\nc d\n");
        assert_eq!(lines.long_lines.load(Ordering::Relaxed), 1);
        let warning = &lines.warnings(MORSEL_BYTES)[0];
        assert!(
            warning.contains("(the first seen: pipe line 2)"),
            "{warning}"
        );
        let small = FileSourceConfig {
            max_line_bytes: 100,
            ..serde_saphyr::from_str(&format!("{{path: '{}'}}", path.display())).unwrap()
        };
        let error = small
            .build(&SourceContext {
                base_dir: Path::new("."),
                streaming: false,
            })
            .err()
            .unwrap();
        assert!(error.contains("at least 1048576"), "{error}");
    }

    #[test]
    fn positional_morsels_cover_the_file_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = Vec::new();
        let mut i = 0u64;
        while text.len() < 5 * MORSEL_BYTES {
            // Lines of every length, one of them longer than two morsels.
            let len = if i == 40 {
                2 * MORSEL_BYTES + 17
            } else {
                (i * 7919 % 3000) as usize
            };
            text.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, len));
            text.extend_from_slice(if i.is_multiple_of(3) { b"\r\n" } else { b"\n" });
            i += 1;
        }
        // A newline exactly at a morsel boundary, and no final newline.
        text[MORSEL_BYTES - 1] = b'\n';
        text.extend_from_slice(b"tail");
        let path = write(dir.path(), "big.txt", &text);
        let src = source(&path, "");
        let Morsels::Indexed { count, read } = src.open().unwrap() else {
            panic!("a regular file is read by position")
        };
        let mut joined = Vec::new();
        for i in 0..count {
            let morsel = read(i).unwrap();
            assert!(i + 1 == count || morsel.bytes.is_empty() || morsel.bytes.ends_with(b"\n"));
            joined.extend_from_slice(&morsel.bytes);
        }
        assert_eq!(joined.len(), text.len());
        assert!(joined == text);
    }

    #[test]
    fn line_numbers_are_found_for_positional_morsels() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = "good line\n".repeat(200_000).into_bytes();
        text.extend_from_slice(b"bad \xff\n");
        let path = write(dir.path(), "late.txt", &text);
        let err = read_all(source(&path, ", encoding_errors: fail").as_ref())
            .unwrap_err()
            .to_string();
        assert!(err.contains("late.txt line 200001: invalid UTF-8"), "{err}");
    }

    #[test]
    fn invalid_utf8_hint_names_only_what_applies() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "bad.csv", b"a,b\n1,x\n2,\xff\n");
        let hint = |extra: &str| {
            read_all(
                source(
                    &path,
                    &format!(", format: csv, encoding_errors: fail{extra}"),
                )
                .as_ref(),
            )
            .unwrap_err()
            .to_string()
        };
        let err = hint("");
        assert!(
            err.contains("bad.csv line 3: invalid UTF-8") && err.contains("or `skip`"),
            "{err}"
        );
        // Records of several lines cannot leave a line out: `skip` is refused there.
        let err = hint(", multi_line: true");
        assert!(
            err.contains("bad.csv line 3: invalid UTF-8") && !err.contains("skip"),
            "{err}"
        );
    }

    #[test]
    fn delimiter_error_shows_control_characters_escaped() {
        let err = csv_delimiter(Some('\n')).unwrap_err();
        assert!(err.starts_with("delimiter: `\\n` cannot"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        assert_eq!(csv_delimiter(Some(';')), Ok(b';'));
    }

    #[test]
    fn the_first_skipped_record_is_the_first_in_input_order_whatever_order_morsels_are_read() {
        let dir = tempfile::tempdir().unwrap();
        // Several morsels each: bad records early in the first file, late in it, and in the
        // second.
        let mut text = String::from("k,v\n");
        for line in 2..=400_000 {
            let bad = line == 7 || line == 399_990;
            text.push_str(if bad { "a,x\n" } else { "a,1\n" });
        }
        write(dir.path(), "1.csv", text.as_bytes());
        write(dir.path(), "2.csv", b"k,v\nb,y\n");
        let path = dir.path().join("*.csv");
        let src = source(
            &path,
            ", format: csv, on_error: skip, columns: {k: text, v: integer}",
        );
        let morsels: Vec<Morsel> = src
            .open()
            .unwrap()
            .into_seq_iter()
            .map(Result::unwrap)
            .collect();
        assert!(morsels.len() > 2, "{} morsels", morsels.len());
        // Workers finish morsels in any order: the last first here.
        let mut rows = 0;
        for morsel in morsels.into_iter().rev() {
            rows += src
                .decode(morsel)
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>();
        }
        assert_eq!(rows, 399_999 - 2);
        let warnings = src.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0]
                .starts_with("3 csv record(s) could not be read and were skipped (the first: ")
                && warnings[0].contains("1.csv line 7: `v`: \"x\" is not an integer"),
            "{warnings:?}"
        );
    }

    #[test]
    fn missing_file_is_an_input_error() {
        let err = read_all(source(Path::new("/no/such/file.txt"), "").as_ref()).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(err.to_string().contains("/no/such/file.txt"));
    }
}
