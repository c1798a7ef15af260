//! `file` in stream mode: Spark's file stream source (`readStream.json(dir)`). The files that
//! `path` names are taken in name order, each once; `max_files_per_trigger` caps how many go
//! into one epoch (without it an epoch takes every new file). With `poll`, the source looks
//! for new files that often and never ends (move finished files in: a file is read once, when
//! first seen); without it the stream ends after the files there at the start.
//!
//! Formats: `lines`, `jsonl` and `csv` (Parquet is read by batch runs). Each CSV file starts
//! with its header, and its fields are found by name in it: files may order their columns
//! differently, or add columns, as long as each has the declared ones.
//!
//! Positions (for checkpoints) name the files taken, in the order taken, and the bytes taken
//! from the one being read, as Spark's file source logs the files of each batch: a restarted
//! stream skips the files it took by name (a file deleted since is no loss; one added since is
//! read, wherever its name sorts) and redoes an epoch over the files that epoch first took, in
//! the same order. A file must not change once there.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::Sender;

use super::file::is_pattern;
use super::file::{EncodingErrors, FileSourceConfig};
use super::records::{Format, RecordDecoder, StreamRecords};
use super::{BuiltSource, Chunk, Delivery, SourceCounters, StreamSource};
use crate::error::{escape_controls, Result};

/// For each chunk sent and not yet decoded: where it comes from.
type Origins = Mutex<VecDeque<Origin>>;

/// A chunk's file, its first line number and, for CSV, the file's header line.
#[derive(Clone)]
struct Origin {
    file: Arc<str>,
    first_line: u64,
    header: Option<Arc<[u8]>>,
    /// Text lines: the numbers of lines left out of the chunk for their length, ascending
    /// (records keep a blank line in their place instead).
    skipped: Vec<u64>,
}

impl Origin {
    /// The number of the chunk's line `index` (0-based, among the lines it holds).
    fn line_number(&self, index: usize) -> u64 {
        let mut number = self.first_line + index as u64;
        for skipped in &self.skipped {
            if *skipped <= number {
                number += 1;
            }
        }
        number
    }
}

/// `csv`: each file's records are read by its own header.
struct CsvFiles {
    columns: Vec<super::records::ColumnSpec>,
    delimiter: u8,
    escape: Option<u8>,
    encoding_errors: EncodingErrors,
    /// Decoders by header line (files of one stream mostly share one header; a few kept).
    decoders: Mutex<Vec<HeaderDecoder>>,
}

/// A CSV header line and the decoder of files that start with it.
type HeaderDecoder = (Arc<[u8]>, Arc<RecordDecoder>);

/// How many headers' decoders a CSV stream keeps.
const CSV_DECODERS_KEPT: usize = 16;

impl CsvFiles {
    /// The decoder for a file with this header line.
    fn decoder(&self, file: &str, header: &Arc<[u8]>) -> Result<Arc<RecordDecoder>> {
        let mut kept = self
            .decoders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, decoder)) = kept.iter().find(|(h, _)| h == header) {
            return Ok(decoder.clone());
        }
        let file = escape_controls(file);
        if self.encoding_errors == EncodingErrors::Fail {
            if let Err(e) = std::str::from_utf8(header) {
                return Err(crate::error::Error::runtime(format!(
                    "{file} line 1: invalid UTF-8 in the CSV header at byte {}; use `encoding_errors: replace` to read it anyway",
                    e.valid_up_to() + 1
                )));
            }
        }
        if let Some(problem) = super::records::multi_line::header_problem(header, self.delimiter) {
            return Err(crate::error::Error::runtime(format!(
                "{file} line 1: {problem}"
            )));
        }
        let names = super::records::csv_header_names(header, self.delimiter);
        let decoder = RecordDecoder::csv(names, self.columns.clone(), self.delimiter)
            .map(|d| d.with_escape(self.escape))
            .map(Arc::new)
            .map_err(|e| crate::error::Error::runtime(format!("{file}: {e}")))?;
        if kept.len() == CSV_DECODERS_KEPT {
            kept.remove(0);
        }
        kept.push((header.clone(), decoder.clone()));
        Ok(decoder)
    }
}

/// The most bytes handed over in one chunk (whole lines).
const CHUNK_BYTES: usize = 1 << 20;

pub(super) fn build(
    config: &FileSourceConfig,
    path: PathBuf,
    decoder: Option<RecordDecoder>,
    schema: SchemaRef,
) -> Result<BuiltSource, String> {
    if path == Path::new("-") {
        return Err("in stream mode `path` names files (a directory or a glob), not standard input: use `mode: batch` to read standard input".into());
    }
    // A FIFO, a socket or a device is no file to list: the stream would find nothing in it
    // and end at once, its writer left waiting.
    if std::fs::metadata(&path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        return Err(format!(
            "in stream mode `path` names files (a directory or a glob), and {} is not one (a FIFO or a device): use `mode: batch` to read it, or a `socket` source for a stream of lines",
            crate::error::escape_path(&path)
        ));
    }
    if config.fetch.is_some() {
        return Err("`fetch` is for batch runs; a stream reads the files it finds".into());
    }
    if !matches!(config.format, Format::Lines | Format::Jsonl | Format::Csv) {
        return Err(format!(
            "`format: {}` is read by batch runs; a stream of files reads `lines`, `jsonl` or `csv`",
            config.format.name()
        ));
    }
    let csv = match (&decoder, config.format) {
        (Some(decoder), Format::Csv) => Some(CsvFiles {
            columns: decoder.columns().to_vec(),
            delimiter: decoder.delimiter(),
            escape: decoder.escape(),
            encoding_errors: config.encoding_errors,
            decoders: Mutex::new(Vec::new()),
        }),
        _ => None,
    };
    Ok(BuiltSource::Stream(Box::new(FileStreamSource {
        path,
        schema,
        csv,
        records: decoder.map(|d| StreamRecords::new(d, config.on_error, config.encoding_errors)),
        encoding_errors: config.encoding_errors,
        max_line_bytes: config.max_line_bytes,
        max_files_per_trigger: config.max_files_per_trigger,
        poll: config.poll,
        origins: Arc::new(Mutex::new(VecDeque::new())),
        stats: Arc::new(Stats::default()),
    })))
}

/// The `file` source in stream mode: the files `path` names (a directory or a glob), each read once
/// in name order.
pub struct FileStreamSource {
    path: PathBuf,
    schema: SchemaRef,
    /// `jsonl` and `csv`: the records; `None`: lines.
    records: Option<StreamRecords>,
    /// `csv`: the columns to find in each file's header.
    csv: Option<CsvFiles>,
    encoding_errors: EncodingErrors,
    max_line_bytes: usize,
    max_files_per_trigger: Option<std::num::NonZeroUsize>,
    poll: Option<Duration>,
    /// Records: for each chunk sent and not yet decoded, where it comes from (the engine
    /// decodes every chunk of a record source, in order).
    origins: Arc<Origins>,
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Stats {
    /// Files taken into epochs: counted when their first rows are (the source reads ahead,
    /// and a stop may leave what it read untaken), or when read if they hold none.
    files: AtomicU64,
    /// The file of the last chunk taken, to count files as their chunks come.
    last_file: Mutex<Option<Arc<str>>>,
    /// Chunks with rows sent.
    sent_chunks: AtomicU64,
    lines: super::LineCounts,
}

/// The files `path` names now, by name: itself, a directory's files (not hidden ones), or a
/// glob's matches.
fn list(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let hidden = |p: &Path| super::file::is_hidden(p);
    let mut files: Vec<PathBuf> = if is_pattern(path) {
        super::file::glob_matches(path)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?
            .into_iter()
            .filter(|p| p.is_file() && !super::file::is_hidden_match(path, p))
            .collect()
    } else if path.is_dir() {
        std::fs::read_dir(path)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file() && !hidden(p))
            .collect()
    } else if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        Vec::new()
    };
    files.sort();
    Ok(files)
}

/// Where to read a file from.
struct FileRead<'a> {
    path: &'a Path,
    skip: u64,
    /// Chunks end at the first line end past each multiple of this (`CHUNK_BYTES`).
    chunk_bytes: u64,
    /// JSON lines or CSV (not text lines): a byte order mark before the first is passed by,
    /// and a line skipped for its length leaves a blank line in its place.
    records: bool,
    /// CSV: the first line is the file's header, sent with each chunk rather than as a record.
    header: bool,
}

/// The files taken so far in one run: an append-only list that every position handed out
/// shares (each position says how much of it is its own), so a position per chunk costs no copy.
type TakenLog = Arc<Mutex<Vec<(Arc<str>, u64)>>>;

fn lock(log: &TakenLog) -> std::sync::MutexGuard<'_, Vec<(Arc<str>, u64)>> {
    // The list is only appended to: a panic elsewhere cannot leave it half changed.
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The files a stream of files has taken, in the order taken: those read to their end with
/// their sizes, and the one being read with the bytes taken from it.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(from = "StoredFiles", into = "StoredFiles")]
pub struct FilesTaken {
    log: TakenLog,
    /// The first `whole` files of the log.
    whole: usize,
    reading: Option<(Arc<str>, u64)>,
}

/// `FilesTaken` as a checkpoint stores it.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredFiles {
    /// Each file read to its end: name and size.
    whole: Vec<(String, u64)>,
    /// The file being read: name and bytes taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reading: Option<(String, u64)>,
}

impl From<StoredFiles> for FilesTaken {
    fn from(stored: StoredFiles) -> Self {
        let whole: Vec<(Arc<str>, u64)> = stored
            .whole
            .into_iter()
            .map(|(name, size)| (name.into(), size))
            .collect();
        FilesTaken {
            whole: whole.len(),
            log: Arc::new(Mutex::new(whole)),
            reading: stored.reading.map(|(name, bytes)| (name.into(), bytes)),
        }
    }
}

impl From<FilesTaken> for StoredFiles {
    fn from(files: FilesTaken) -> Self {
        StoredFiles {
            whole: files
                .whole_files()
                .into_iter()
                .map(|(name, size)| (name.to_string(), size))
                .collect(),
            reading: files.reading.map(|(name, bytes)| (name.to_string(), bytes)),
        }
    }
}

impl FilesTaken {
    /// The files read to their end, in the order taken.
    fn whole_files(&self) -> Vec<(Arc<str>, u64)> {
        lock(&self.log)[..self.whole].to_vec()
    }

    /// What is wrong with files read from a checkpoint whose position is `offset`, if
    /// anything: the bytes must add up to it, and no file may be taken twice.
    pub fn check(&self, offset: u64) -> Result<(), String> {
        let mut names = HashSet::new();
        let mut total = 0u64;
        let files = self.whole_files();
        for (name, bytes) in files.iter().chain(&self.reading) {
            if name.is_empty() {
                return Err("its position names a file with an empty name".into());
            }
            if !names.insert(name.clone()) {
                return Err(format!(
                    "its position names the file {} twice",
                    escape_controls(name)
                ));
            }
            // No file system holds more than i64::MAX bytes: past it the sizes are not real
            // (and later offsets could overflow).
            total = total
                .checked_add(*bytes)
                .filter(|&t| t <= i64::MAX as u64)
                .ok_or("its position's files hold more bytes than any file system")?;
        }
        if total != offset {
            return Err(format!(
                "its position's files hold {total} bytes, its offset says {offset}"
            ));
        }
        Ok(())
    }
}

impl PartialEq for FilesTaken {
    fn eq(&self, other: &Self) -> bool {
        self.whole == other.whole
            && self.reading == other.reading
            && (Arc::ptr_eq(&self.log, &other.log) || self.whole_files() == other.whole_files())
    }
}

impl std::fmt::Debug for FilesTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilesTaken")
            .field("whole", &self.whole_files())
            .field("reading", &self.reading)
            .finish()
    }
}

/// The positions of one file's chunks: the bytes of every file before it (`base`) and the
/// files taken before it (the log).
struct Positions<'a> {
    log: &'a TakenLog,
    name: Arc<str>,
    base: u64,
}

impl Positions<'_> {
    /// After `at` bytes of the file.
    fn within(&self, at: u64) -> super::SourcePosition {
        super::SourcePosition {
            offset: self.base.saturating_add(at),
            time: 0.0,
            files: Some(FilesTaken {
                whole: lock(self.log).len(),
                log: self.log.clone(),
                reading: Some((self.name.clone(), at)),
            }),
        }
    }

    /// After the whole file, `size` bytes: it joins the files taken.
    fn after(&self, size: u64) -> super::SourcePosition {
        let whole = {
            let mut log = lock(self.log);
            log.push((self.name.clone(), size));
            log.len()
        };
        super::SourcePosition {
            offset: self.base.saturating_add(size),
            time: 0.0,
            files: Some(FilesTaken {
                whole,
                log: self.log.clone(),
                reading: None,
            }),
        }
    }
}

/// Sends one file in chunks of whole lines (a line over `max_line_bytes` is skipped and
/// counted), each with the position after it. Chunks end at the first line end at or past
/// each multiple of `CHUNK_BYTES` in the file, wherever reading started: a restarted run cuts
/// them where the first run did, so a redone epoch ends exactly where it ended before. The
/// last chunk carries `last`'s marks. Returns the file's size, or `None` when the engine has
/// gone.
async fn send_file(
    read: FileRead<'_>,
    positions: &Positions<'_>,
    max_line_bytes: usize,
    stats: &Stats,
    origins: Option<&Origins>,
    tx: &Sender<Delivery>,
    last: (bool, bool),
) -> std::result::Result<Option<u64>, String> {
    use tokio::io::AsyncSeekExt;
    let path = read.path;
    let origin: Arc<str> = path.display().to_string().into();
    let failed = |e: std::io::Error| format!("{}: {e}", escape_controls(&origin));
    let mut file = tokio::fs::File::open(path).await.map_err(failed)?;
    if read.skip == 0 {
        let mut start = [0u8; 6];
        let mut filled = 0;
        while filled < start.len() {
            match file.read(&mut start[filled..]).await.map_err(failed)? {
                0 => break,
                n => filled += n,
            }
        }
        if let Some(what) = super::file::not_text(&start[..filled]) {
            return Err(format!("{} is {what}", escape_controls(&origin)));
        }
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(failed)?;
    }
    let header = match read.header {
        true => first_line(&mut file, max_line_bytes)
            .await
            .map_err(|e| format!("{}: the CSV header: {e}", escape_controls(&origin)))?,
        false => None,
    };
    if header.is_some() {
        // Lines are counted from the start of the file, the header's included.
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(failed)?;
    }
    let mut buffer = vec![0u8; 64 * 1024];
    // Line numbers go on from where a restart starts reading.
    let mut next_line = 1u64;
    let mut counted = 0u64;
    while counted < read.skip {
        let want = (read.skip - counted).min(buffer.len() as u64) as usize;
        let n = file.read(&mut buffer[..want]).await.map_err(failed)?;
        if n == 0 {
            break;
        }
        next_line += memchr::memchr_iter(b'\n', &buffer[..n]).count() as u64;
        counted += n as u64;
    }
    let mut skip = read.skip;
    if let Some((_, end)) = &header {
        if skip < *end {
            skip = *end;
            next_line = 2;
        }
    } else if skip == 0 {
        // A UTF-8 byte order mark before the first line is not part of it (lines or records).
        let mut head = [0u8; 3];
        let n = file.read(&mut head).await.map_err(failed)?;
        if head[..n] == *super::file::UTF8_BOM {
            skip = 3;
        }
    }
    file.seek(std::io::SeekFrom::Start(skip))
        .await
        .map_err(failed)?;
    let header = header.map(|(line, _)| line);
    // A header's invalid UTF-8 is replaced in the names (a header cannot be skipped), and
    // counted, once per file (when read from its start).
    if read.skip == 0
        && header
            .as_ref()
            .is_some_and(|h| std::str::from_utf8(h).is_err())
    {
        let turn = (stats.lines.in_turn(), 0, 0);
        stats
            .lines
            .bad_utf8_line(false, turn, || format!("{origin} line 1, the CSV header"));
    }
    // Where reading is in the file, where the next chunk may end, and the chunk being filled:
    // whole lines, then the start of the line being read (from `partial`).
    let mut at = skip;
    let mut boundary = (skip / read.chunk_bytes + 1) * read.chunk_bytes;
    let mut pending: Vec<u8> = Vec::new();
    let mut partial = 0usize;
    let mut skipping = false;
    let mut chunk_first_line = next_line;
    // Text lines left out of the chunk being filled, by number.
    let mut skipped_here: Vec<u64> = Vec::new();
    loop {
        let n = file.read(&mut buffer).await.map_err(failed)?;
        let at_end = n == 0;
        let mut data = &buffer[..n];
        while !data.is_empty() {
            let Some(end) = memchr::memchr(b'\n', data) else {
                if !skipping {
                    pending.extend_from_slice(data);
                    if pending.len() - partial > max_line_bytes {
                        pending.truncate(partial);
                        skipping = true;
                        let turn = (stats.lines.in_turn(), 0, 0);
                        stats
                            .lines
                            .long_line(turn, || format!("{origin} line {next_line}"));
                    }
                }
                at += data.len() as u64;
                data = &[];
                continue;
            };
            at += end as u64 + 1;
            next_line += 1;
            let too_long = skipping || pending.len() - partial + end > max_line_bytes;
            if too_long {
                if !skipping {
                    // `next_line` has gone past it.
                    let turn = (stats.lines.in_turn(), 0, 0);
                    stats
                        .lines
                        .long_line(turn, || format!("{origin} line {}", next_line - 1));
                }
                skipping = false;
                pending.truncate(partial);
                if !read.records {
                    skipped_here.push(next_line - 1);
                }
                if read.records {
                    // Records: a blank line in its place (not a record) keeps the line
                    // numbers of the records after it right.
                    pending.push(b'\n');
                }
            } else {
                pending.extend_from_slice(&data[..=end]);
            }
            partial = pending.len();
            data = &data[end + 1..];
            if at >= boundary && partial > 0 {
                boundary = (at / read.chunk_bytes + 1) * read.chunk_bytes;
                let rest = pending.split_off(partial);
                let chunk = std::mem::replace(&mut pending, rest);
                partial = 0;
                let first = std::mem::replace(&mut chunk_first_line, next_line);
                stats.sent_chunks.fetch_add(1, Ordering::Relaxed);
                if !send_chunk(
                    chunk,
                    positions.within(at),
                    Origin {
                        file: origin.clone(),
                        first_line: first,
                        header: header.clone(),
                        skipped: std::mem::take(&mut skipped_here),
                    },
                    origins,
                    tx,
                    (false, false),
                )
                .await
                {
                    return Ok(None);
                }
            }
        }
        if at_end {
            // A last line without a newline is a line; one being skipped stays skipped.
            if pending.len() > partial && !skipping {
                pending.push(b'\n');
            } else {
                pending.truncate(partial);
            }
            if !pending.is_empty() {
                stats.sent_chunks.fetch_add(1, Ordering::Relaxed);
            }
            if !send_chunk(
                pending,
                positions.after(at),
                Origin {
                    file: origin.clone(),
                    first_line: chunk_first_line,
                    header,
                    skipped: skipped_here,
                },
                origins,
                tx,
                last,
            )
            .await
            {
                return Ok(None);
            }
            return Ok(Some(at));
        }
    }
}

/// The first line of `file` read from its start (without its line end or a UTF-8 byte order
/// mark), and where the next line starts; `None` for an empty file. Over `max` bytes: an error.
async fn first_line(
    file: &mut tokio::fs::File,
    max: usize,
) -> std::io::Result<Option<(Arc<[u8]>, u64)>> {
    let mut line = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let end = loop {
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            if line.is_empty() {
                return Ok(None);
            }
            break line.len() as u64;
        }
        if let Some(at) = memchr::memchr(b'\n', &buffer[..n]) {
            line.extend_from_slice(&buffer[..at]);
            break line.len() as u64 + 1;
        }
        line.extend_from_slice(&buffer[..n]);
        if line.len() > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("its first line is longer than `max_line_bytes` ({max} bytes)"),
            ));
        }
    };
    if line.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("its first line is longer than `max_line_bytes` ({max} bytes)"),
        ));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.starts_with(super::file::UTF8_BOM) {
        line.drain(..super::file::UTF8_BOM.len());
    }
    Ok(Some((line.into(), end)))
}

/// Hands a chunk (possibly empty: it may still end an epoch) to the engine with the position
/// after it; `false` when the engine has gone.
async fn send_chunk(
    chunk: Vec<u8>,
    at: super::SourcePosition,
    origin: Origin,
    origins: Option<&Origins>,
    tx: &Sender<Delivery>,
    marks: (bool, bool),
) -> bool {
    if chunk.is_empty() && !marks.0 && !marks.1 {
        return true;
    }
    if let (Some(origins), false) = (origins, chunk.is_empty()) {
        if let Ok(mut queue) = origins.lock() {
            queue.push_back(origin);
        }
    }
    let delivery = Delivery {
        chunk,
        resume_at: Some(at),
        ends_epoch: marks.0,
        caught_up: marks.1,
    };
    tx.send(delivery).await.is_ok()
}

/// A file to read next, and how.
struct Next {
    path: PathBuf,
    name: Arc<str>,
    /// Bytes an earlier run took from it.
    skip: u64,
    ends_epoch: bool,
    caught_up: bool,
}

/// What a run of the stream has taken: the files read to their end (the log, and their names
/// to skip in later listings), and what a restart must take first.
struct Taking {
    /// Names are paths below this (see `listing_root`).
    root: PathBuf,
    log: TakenLog,
    seen: HashSet<Arc<str>>,
    /// Bytes of the files read to their end: where the next file's bytes start.
    taken: u64,
    /// The file a stopped run was reading, and the bytes it took.
    reading: Option<(Arc<str>, u64)>,
    /// The files the epochs being redone took after the commit, in their order, each with its
    /// size (or, for one they were reading, the bytes they took).
    again: Vec<AgainFile>,
    /// A checkpoint written before positions named files: the bytes taken from the files in
    /// name order.
    bytes_in_name_order: u64,
    /// A restart's first listing: warn of files read whole that changed size since.
    check_sizes: bool,
}

/// A file an epoch being redone took.
struct AgainFile {
    name: Arc<str>,
    bytes: u64,
    /// Read to its end (`bytes` is its size), or up to `bytes`.
    whole: bool,
}

/// The directory file names are kept relative to: `path` itself when it is a directory, a
/// glob's directories before its first pattern, a file's directory. Names then stay the same
/// whichever way the pipeline file was named on the command line, or where the inputs moved.
fn listing_root(path: &Path) -> PathBuf {
    if is_pattern(path) {
        super::file::glob_root(path)
    } else if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

impl Taking {
    /// For the files under `root`, from a checkpoint's position (`from`) and the end of the
    /// last epoch to redo.
    fn resume(
        root: PathBuf,
        from: Option<super::SourcePosition>,
        redo_until: Option<super::SourcePosition>,
    ) -> Result<Self, String> {
        let mut taking = Taking {
            root,
            log: Arc::new(Mutex::new(Vec::new())),
            seen: HashSet::new(),
            taken: 0,
            reading: None,
            again: Vec::new(),
            bytes_in_name_order: 0,
            check_sizes: false,
        };
        let Some(from) = from else {
            return Ok(taking);
        };
        let files = match from.files {
            Some(files) => files,
            // No commit yet: nothing taken.
            None if from.offset == 0 => FilesTaken::from(StoredFiles {
                whole: Vec::new(),
                reading: None,
            }),
            None => {
                taking.bytes_in_name_order = from.offset;
                return Ok(taking);
            }
        };
        let whole = files.whole_files();
        taking.check_sizes = !whole.is_empty();
        taking.taken = whole.iter().fold(0u64, |sum, f| sum.saturating_add(f.1));
        taking.seen = whole.iter().map(|f| f.0.clone()).collect();
        taking.reading = files.reading.clone();
        if let Some(until) = redo_until.and_then(|u| u.files) {
            let damaged = |what: &str| {
                format!("the checkpoint is damaged: {what} (its offsets.json and commit.json disagree); remove the checkpoint directory to start over")
            };
            // The epochs after the commit took the files after those it names, beginning
            // with the rest of the one it was reading.
            let redone = until.whole_files();
            if redone.get(..whole.len()) != Some(&whole[..]) {
                return Err(damaged(
                    "the files of the epochs to redo do not start with those of its commit",
                ));
            }
            let mut again: Vec<AgainFile> = redone[whole.len()..]
                .iter()
                .map(|(name, bytes)| AgainFile {
                    name: name.clone(),
                    bytes: *bytes,
                    whole: true,
                })
                .collect();
            again.extend(until.reading.iter().map(|(name, bytes)| AgainFile {
                name: name.clone(),
                bytes: *bytes,
                whole: false,
            }));
            if let Some((name, bytes)) = &files.reading {
                if again
                    .first()
                    .is_none_or(|a| a.name != *name || a.bytes < *bytes)
                {
                    return Err(damaged(
                        "the epochs to redo do not go on with the file its commit was reading",
                    ));
                }
            }
            taking.again = again;
        }
        *lock(&taking.log) = whole;
        Ok(taking)
    }

    /// A file's name as positions keep it.
    fn name(&self, path: &Path) -> Arc<str> {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into()
    }

    /// A name as messages show it.
    fn shown(&self, name: &str) -> String {
        crate::error::escape_path(&self.root.join(name))
    }

    /// The files to read from a listing, in order: the one a stopped run was reading, then
    /// what the epochs being redone took, then the files not taken yet, by name.
    fn queue(&mut self, listed: Vec<PathBuf>, per_epoch: usize) -> Result<Vec<Next>, String> {
        if std::mem::take(&mut self.check_sizes) {
            self.warn_of_changed_files(&listed);
        }
        let mut fresh: Vec<(Arc<str>, PathBuf)> = listed
            .into_iter()
            .map(|p| (self.name(&p), p))
            .filter(|(name, _)| !self.seen.contains(name))
            .collect();
        if self.bytes_in_name_order > 0 {
            self.skip_in_name_order(&mut fresh)?;
        }
        let start_over = "remove the checkpoint directory to start over";
        // A file a restart needs, and its size now.
        let shown = |name: &str| crate::error::escape_path(&self.root.join(name));
        let mut take_out = |name: &Arc<str>| -> Result<Option<(Next, u64)>, String> {
            let Some(index) = fresh.iter().position(|(n, _)| n == name) else {
                return Ok(None);
            };
            let (name, path) = fresh.remove(index);
            let size = std::fs::metadata(&path)
                .map_err(|e| format!("{}: {e}", shown(&name)))?
                .len();
            Ok(Some((
                Next {
                    path,
                    name,
                    skip: 0,
                    ends_epoch: false,
                    caught_up: false,
                },
                size,
            )))
        };
        let mut queue: Vec<Next> = Vec::new();
        if let Some((name, bytes)) = self.reading.take() {
            let Some((mut file, size)) = take_out(&name)? else {
                return Err(format!(
                    "{}: a stopped run read {bytes} bytes of it, and it is not there now; {start_over}",
                    shown(&name)
                ));
            };
            if size < bytes {
                return Err(format!(
                    "{}: a stopped run read {bytes} bytes of it, and it holds {size} now (was it changed?); {start_over}",
                    shown(&name)
                ));
            }
            file.skip = bytes;
            queue.push(file);
        }
        for again in std::mem::take(&mut self.again) {
            let size = if queue.first().is_some_and(|f| f.name == again.name) {
                std::fs::metadata(&queue[0].path)
                    .map_err(|e| format!("{}: {e}", shown(&again.name)))?
                    .len()
            } else {
                match take_out(&again.name)? {
                    Some((file, size)) => {
                        queue.push(file);
                        size
                    }
                    // An empty file moved away: nothing to redo.
                    None if again.bytes == 0 => continue,
                    None => {
                        return Err(format!(
                            "{}: an epoch to redo read {} bytes of it, and it is not there now; {start_over}",
                            shown(&again.name),
                            again.bytes
                        ))
                    }
                }
            };
            if size < again.bytes || (again.whole && size != again.bytes) {
                let read = match again.whole {
                    true => format!("read it whole when it held {} bytes", again.bytes),
                    false => format!("read {} bytes of it", again.bytes),
                };
                return Err(format!(
                    "{}: an epoch to redo {read}, and it holds {size} now (was it changed?); {start_over}",
                    shown(&again.name),
                ));
            }
        }
        // Where the files of a restart end, an epoch ends (a redone epoch ends at its recorded
        // end, whatever the marks); then after each `per_epoch` new files, and at the end of
        // the listing.
        if let Some(last) = queue.last_mut() {
            last.ends_epoch = true;
            last.caught_up = fresh.is_empty();
        }
        let count = fresh.len();
        for (index, (name, path)) in fresh.into_iter().enumerate() {
            let last_listed = index + 1 == count;
            queue.push(Next {
                path,
                name,
                skip: 0,
                ends_epoch: last_listed || (index + 1) % per_epoch == 0,
                caught_up: last_listed,
            });
        }
        Ok(queue)
    }

    /// Files read whole by earlier runs whose size is not what it was: read once, they are not
    /// read again, so what changed in them is left out; said once, at a restart.
    fn warn_of_changed_files(&self, listed: &[PathBuf]) {
        let sizes: std::collections::HashMap<Arc<str>, u64> =
            lock(&self.log).iter().cloned().collect();
        for path in listed {
            let name = self.name(path);
            let (Some(&then), Ok(meta)) = (sizes.get(&name), std::fs::metadata(path)) else {
                continue;
            };
            if meta.len() != then {
                tracing::warn!(
                    "{}: it held {then} bytes when it was read and holds {} now; a file is read once, so what changed in it is not read (add new files instead)",
                    self.shown(&name),
                    meta.len()
                );
            }
        }
    }

    /// A checkpoint of an earlier version counted bytes in name order: the files it covers are
    /// taken (and named from now on), the one it ends in is being read.
    fn skip_in_name_order(&mut self, fresh: &mut Vec<(Arc<str>, PathBuf)>) -> Result<(), String> {
        while self.bytes_in_name_order > 0 && !fresh.is_empty() {
            let size = std::fs::metadata(&fresh[0].1)
                .map_err(|e| format!("{}: {e}", self.shown(&fresh[0].0)))?
                .len();
            if size > self.bytes_in_name_order {
                self.reading = Some((fresh[0].0.clone(), self.bytes_in_name_order));
                self.bytes_in_name_order = 0;
                return Ok(());
            }
            let (name, _) = fresh.remove(0);
            self.bytes_in_name_order -= size;
            self.taken = self.taken.saturating_add(size);
            self.seen.insert(name.clone());
            lock(&self.log).push((name, size));
        }
        if self.bytes_in_name_order > 0 {
            return Err(format!(
                "the checkpoint says {} more bytes were read than the files now hold (were files removed or shortened?); remove the checkpoint directory to start over",
                self.bytes_in_name_order
            ));
        }
        Ok(())
    }
}

impl StreamSource for FileStreamSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn raw_text_lines(&self) -> bool {
        self.records.is_none() && self.encoding_errors == EncodingErrors::Replace
    }

    fn marks_epochs(&self) -> bool {
        true
    }

    fn positioned(&self) -> bool {
        true
    }

    fn start(
        &self,
        tx: Sender<Delivery>,
        from: Option<super::SourcePosition>,
        redo_until: Option<super::SourcePosition>,
    ) -> tokio::task::JoinHandle<Result<(), String>> {
        let path = self.path.clone();
        let stats = self.stats.clone();
        let max_line_bytes = self.max_line_bytes;
        let per_epoch = self.max_files_per_trigger.map_or(usize::MAX, |n| n.get());
        let poll = self.poll;
        let origins = self.origins.clone();
        let records = self.records.is_some();
        let header = self.csv.is_some();
        // Origins are taken off the queue by `decode`, or by `passed` for chunks a kernel
        // read raw: every chunk is one or the other, in order.
        tokio::spawn(async move {
            let mut taking = Taking::resume(listing_root(&path), from, redo_until)?;
            // Whether the engine knows the source has nothing more for now (the last file
            // sent says so; a listing with nothing new says so once).
            let mut said_caught_up = false;
            // A path that does not exist lists nothing, as an empty folder does: said once,
            // since a mistyped folder would otherwise look like a stream with no data yet.
            let mut said_missing = false;
            loop {
                let missing = match is_pattern(&path) {
                    // A glob in the working directory (`*.jsonl`) has an empty root: `.`.
                    true => {
                        let root = super::file::glob_root(&path);
                        !root.as_os_str().is_empty() && !root.exists()
                    }
                    false => !path.exists(),
                };
                if missing && !std::mem::replace(&mut said_missing, true) {
                    let shown = crate::error::escape_path(&path);
                    match poll {
                        Some(_) => tracing::warn!(
                            "{shown} does not exist (yet): the stream waits for it to appear; if no rows come, check the source's `path`"
                        ),
                        None => tracing::warn!(
                            "{shown} does not exist: there is nothing to read (check the source's `path`; `poll` waits for files to appear)"
                        ),
                    }
                }
                let listed = list(&path)
                    .map_err(|e| format!("{}: {e}", crate::error::escape_path(&path)))?;
                let queue = taking.queue(listed, per_epoch)?;
                if queue.is_empty() && !said_caught_up {
                    said_caught_up = true;
                    let nothing_new = Delivery {
                        chunk: Vec::new(),
                        resume_at: None,
                        ends_epoch: false,
                        caught_up: true,
                    };
                    if tx.send(nothing_new).await.is_err() {
                        return Ok(());
                    }
                }
                for next in queue {
                    said_caught_up = next.caught_up;
                    let read = FileRead {
                        path: &next.path,
                        skip: next.skip,
                        chunk_bytes: CHUNK_BYTES as u64,
                        records,
                        header,
                    };
                    let positions = Positions {
                        log: &taking.log,
                        name: next.name.clone(),
                        base: taking.taken,
                    };
                    let chunks_before = stats.sent_chunks.load(Ordering::Relaxed);
                    let sent = send_file(
                        read,
                        &positions,
                        max_line_bytes,
                        &stats,
                        Some(&*origins),
                        &tx,
                        (next.ends_epoch, next.caught_up),
                    )
                    .await?;
                    if stats.sent_chunks.load(Ordering::Relaxed) == chunks_before {
                        // No rows: counted now, as no chunk of it will be taken.
                        stats.files.fetch_add(1, Ordering::Relaxed);
                    }
                    taking.seen.insert(next.name);
                    match sent {
                        Some(size) => taking.taken = taking.taken.saturating_add(size),
                        None => return Ok(()),
                    }
                }
                match poll {
                    Some(every) => tokio::time::sleep(every).await,
                    None => return Ok(()),
                }
            }
        })
    }

    fn decode(&self, chunks: &[Chunk]) -> Result<RecordBatch> {
        match &self.records {
            None => self.decode_lines(chunks),
            Some(records) => {
                let origins = self.chunk_origins(chunks);
                let decoders = match &self.csv {
                    None => Vec::new(),
                    Some(csv) => origins
                        .iter()
                        .map(|origin| match origin {
                            Some(Origin {
                                file,
                                header: Some(header),
                                ..
                            }) => csv.decoder(file, header).map(Some),
                            _ => Ok(None),
                        })
                        .collect::<Result<_>>()?,
                };
                records.decode_each(chunks, &decoders, |chunk, line| {
                    self.place(&origins, chunk, line)
                })
            }
        }
    }

    fn passed(&self, chunks: &[Chunk]) {
        self.chunk_origins(chunks);
    }

    /// Each epoch's lines as one chunk, as a file of its own (`epoch N of the test's input`):
    /// for CSV, its first line is its header.
    fn fed(&self, epochs: &[Vec<String>]) -> Vec<Chunk> {
        let mut queue = self.origins.lock().unwrap_or_else(|p| p.into_inner());
        epochs
            .iter()
            .enumerate()
            .map(|(index, lines)| {
                let (header, records) = match (&self.csv, lines.split_first()) {
                    (Some(_), Some((header, records))) => (
                        Some(Arc::<[u8]>::from(
                            header.trim_start_matches('\u{FEFF}').as_bytes(),
                        )),
                        records,
                    ),
                    _ => (None, &lines[..]),
                };
                let chunk = super::joined_lines(records);
                if !chunk.is_empty() {
                    queue.push_back(Origin {
                        file: format!("epoch {index} of the test's input").into(),
                        first_line: 1 + u64::from(header.is_some()),
                        header,
                        skipped: Vec::new(),
                    });
                }
                chunk
            })
            .collect()
    }

    fn warnings(&self) -> Vec<String> {
        let mut warnings = self.stats.lines.warnings(self.max_line_bytes);
        warnings.extend(self.records.iter().flat_map(StreamRecords::warnings));
        warnings
    }

    fn summary(&self) -> Option<String> {
        Some(format!(
            "{} file(s) read",
            self.stats.files.load(Ordering::Relaxed)
        ))
    }

    fn counters(&self) -> SourceCounters {
        let records = self.records.as_ref().map(StreamRecords::counters);
        self.stats.lines.counters() + records.unwrap_or_default()
    }
}

impl FileStreamSource {
    fn decode_lines(&self, chunks: &[Chunk]) -> Result<RecordBatch> {
        let origins = self.chunk_origins(chunks);
        self.stats.lines.decode(
            &self.schema,
            chunks,
            self.encoding_errors,
            &|chunk, line| self.place(&origins, chunk, line),
        )
    }

    /// Each chunk's file and first line number (queued in order as the chunks were sent;
    /// every chunk is decoded, in order).
    fn chunk_origins(&self, chunks: &[Chunk]) -> Vec<Option<Origin>> {
        let mut queue = self.origins.lock().ok();
        let origins: Vec<Option<Origin>> = chunks
            .iter()
            .map(|c| match (&mut queue, c.is_empty()) {
                (Some(q), false) => q.pop_front(),
                _ => None,
            })
            .collect();
        // A file is taken when its first chunk is.
        let mut last = self
            .stats
            .last_file
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for origin in origins.iter().flatten() {
            if last.as_ref() != Some(&origin.file) {
                self.stats.files.fetch_add(1, Ordering::Relaxed);
                *last = Some(origin.file.clone());
            }
        }
        origins
    }

    /// Where line `line` (0-based) of chunk `chunk` is: its file and line number.
    fn place(&self, origins: &[Option<Origin>], chunk: usize, line: usize) -> String {
        match origins.get(chunk).and_then(Option::as_ref) {
            Some(origin) => format!("{} line {}", origin.file, origin.line_number(line)),
            None => format!("{} (a chunk's line {})", self.path.display(), line + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every delivery of `path` read from `skip`: (chunk, position, first line numbers queued).
    fn deliveries(path: &Path, skip: u64, max_line: usize) -> Vec<(Vec<u8>, u64)> {
        csv_deliveries(path, skip, max_line, false)
            .into_iter()
            .map(|(chunk, at, _)| (chunk, at))
            .collect()
    }

    /// As `deliveries`, reading a CSV header (`header`), with each chunk's origin.
    fn csv_deliveries(
        path: &Path,
        skip: u64,
        max_line: usize,
        header: bool,
    ) -> Vec<(Vec<u8>, u64, Option<Origin>)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
            let stats = Stats::default();
            let read = FileRead {
                path,
                skip,
                chunk_bytes: 100,
                records: header,
                header,
            };
            let origins = Origins::default();
            let log = TakenLog::default();
            let positions = Positions {
                log: &log,
                name: path.to_string_lossy().into(),
                base: 1000,
            };
            let size = send_file(
                read,
                &positions,
                max_line,
                &stats,
                Some(&origins),
                &tx,
                (true, true),
            )
            .await
            .unwrap();
            assert_eq!(size, Some(std::fs::metadata(path).unwrap().len()));
            drop(tx);
            let mut out = Vec::new();
            let mut origins = origins.into_inner().unwrap();
            while let Some(d) = rx.recv().await {
                let origin = match d.chunk.is_empty() {
                    true => None,
                    false => origins.pop_front(),
                };
                out.push((d.chunk, d.resume_at.unwrap().offset, origin));
            }
            out
        })
    }

    #[test]
    fn chunks_end_at_the_same_lines_wherever_reading_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        let mut text = String::new();
        for i in 0..60 {
            text += &"x".repeat(5 + i % 23);
            text += "\n";
            if i == 30 {
                text += &"L".repeat(70);
                text += "\n";
            }
        }
        text += "last line without a newline";
        std::fs::write(&path, &text).unwrap();
        let first = deliveries(&path, 0, 40);
        // Everything but the long line, the last line ended.
        let joined: Vec<u8> = first.iter().flat_map(|(c, _)| c.clone()).collect();
        let expected = text.replace(&format!("{}\n", "L".repeat(70)), "") + "\n";
        assert_eq!(String::from_utf8(joined).unwrap(), expected);
        assert_eq!(first.last().unwrap().1, 1000 + text.len() as u64);
        assert!(first.len() > 5);
        // A restart from any position the first run handed over gets the same chunks after it.
        for (index, (_, position)) in first.iter().enumerate() {
            let again = deliveries(&path, position - 1000, 40);
            let rest = &first[index + 1..];
            if rest.is_empty() {
                // At the end: one empty chunk that still carries the marks.
                assert_eq!(again, [(Vec::new(), *position)]);
            } else {
                assert_eq!(again, rest, "restarted at {position}");
            }
        }
    }

    #[test]
    fn a_long_line_is_skipped_wherever_its_end_falls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        // 41 bytes with its newline inside the same read as its start.
        std::fs::write(&path, format!("a\n{}\nb\n", "y".repeat(41))).unwrap();
        let all: Vec<u8> = deliveries(&path, 0, 40)
            .into_iter()
            .flat_map(|(c, _)| c)
            .collect();
        assert_eq!(all, b"a\nb\n");
    }

    #[test]
    fn a_csv_files_header_goes_with_every_chunk_wherever_reading_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        let mut text = String::from("\u{FEFF}b,a\r\n");
        for i in 0..80 {
            text += &format!("{i},{}\n", "x".repeat(i % 17));
        }
        std::fs::write(&path, &text).unwrap();
        let first = csv_deliveries(&path, 0, 1 << 20, true);
        assert!(first.len() > 5);
        let joined: Vec<u8> = first.iter().flat_map(|(c, _, _)| c.clone()).collect();
        assert_eq!(
            String::from_utf8(joined).unwrap(),
            text.split_once('\n').unwrap().1
        );
        let mut line = 2;
        for (chunk, _, origin) in &first {
            let origin = origin.as_ref().unwrap();
            assert_eq!(&*origin.header.clone().unwrap(), b"b,a");
            assert_eq!(origin.first_line, line);
            line += memchr::memchr_iter(b'\n', chunk).count() as u64;
        }
        // A restart (at any position handed over) reads the header again and numbers the
        // lines as the first run did.
        for (index, (_, position, _)) in first.iter().enumerate() {
            let again = csv_deliveries(&path, position - 1000, 1 << 20, true);
            let rest = &first[index + 1..];
            if !rest.is_empty() {
                let strip = |d: &[(Vec<u8>, u64, Option<Origin>)]| -> Vec<(Vec<u8>, u64, u64)> {
                    d.iter()
                        .map(|(c, at, o)| (c.clone(), *at, o.as_ref().unwrap().first_line))
                        .collect()
                };
                assert_eq!(strip(&again), strip(rest), "restarted at {position}");
                assert!(again
                    .iter()
                    .all(|(_, _, o)| o.as_ref().unwrap().header.is_some()));
            }
        }
        // An empty file has no header and no records; a header too long is an error.
        std::fs::write(&path, "").unwrap();
        assert!(csv_deliveries(&path, 0, 1 << 20, true)
            .iter()
            .all(|(c, _, _)| c.is_empty()));
        std::fs::write(&path, format!("{}\n1\n", "h".repeat(200))).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let error = runtime.block_on(async {
            let mut file = tokio::fs::File::open(&path).await.unwrap();
            first_line(&mut file, 100).await.unwrap_err()
        });
        assert!(error
            .to_string()
            .contains("longer than `max_line_bytes` (100 bytes)"));
    }

    /// Files taken as a checkpoint stores them: `whole` read to their end, `reading` part read.
    fn taken(whole: &[(&str, u64)], reading: Option<(&str, u64)>) -> super::super::SourcePosition {
        let files = FilesTaken::from(StoredFiles {
            whole: whole.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
            reading: reading.map(|(n, b)| (n.to_string(), b)),
        });
        let offset = whole.iter().map(|f| f.1).sum::<u64>() + reading.map_or(0, |r| r.1);
        super::super::SourcePosition {
            offset,
            time: 0.0,
            files: Some(files),
        }
    }

    /// Files `names` (each 10 bytes) in a new directory, and their paths by name.
    fn listing(names: &[&str]) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            std::fs::write(dir.path().join(name), "123456789\n").unwrap();
        }
        let files = list(dir.path()).unwrap();
        (dir, files)
    }

    fn root(dir: &tempfile::TempDir) -> PathBuf {
        listing_root(dir.path())
    }

    /// (file, skip, ends_epoch, caught_up) of each file queued.
    fn queued(queue: &[Next]) -> Vec<(String, u64, bool, bool)> {
        queue
            .iter()
            .map(|n| {
                let file = n.path.file_name().unwrap().to_string_lossy().into_owned();
                (file, n.skip, n.ends_epoch, n.caught_up)
            })
            .collect()
    }

    #[test]
    fn a_restart_skips_the_files_taken_by_name_and_reads_new_ones_wherever_they_sort() {
        // b and c were taken; b is gone since, a and d are new.
        let (dir, files) = listing(&["a", "c", "d"]);
        let from = taken(&[("b", 10), ("c", 10)], None);
        let mut taking = Taking::resume(root(&dir), Some(from), None).unwrap();
        assert_eq!(taking.taken, 20);
        let queue = taking.queue(files, usize::MAX).unwrap();
        assert_eq!(
            queued(&queue),
            [("a".into(), 0, false, false), ("d".into(), 0, true, true)]
        );
    }

    #[test]
    fn the_file_being_read_goes_on_first_then_the_redone_epochs_files_in_their_order() {
        let (dir, files) = listing(&["a", "b", "c", "d", "e"]);
        // Committed: b whole, 4 bytes of e. Epochs to redo took the rest of e, then c.
        let from = taken(&[("b", 10)], Some(("e", 4)));
        let until = taken(&[("b", 10), ("e", 10), ("c", 10)], None);
        let mut taking = Taking::resume(root(&dir), Some(from), Some(until)).unwrap();
        let queue = taking.queue(files, 1).unwrap();
        assert_eq!(
            queued(&queue),
            [
                ("e".into(), 4, false, false),
                ("c".into(), 0, true, false),
                ("a".into(), 0, true, false),
                ("d".into(), 0, true, true)
            ]
        );
        // Bytes before the next file: b's.
        assert_eq!(taking.taken, 10);
    }

    #[test]
    fn files_a_restart_needs_must_be_there_as_they_were() {
        let (dir, files) = listing(&["a"]);
        let gone = taken(&[], Some(("z", 4)));
        let error = Taking::resume(root(&dir), Some(gone), None)
            .unwrap()
            .queue(files.clone(), 1)
            .err()
            .unwrap();
        assert!(
            error.contains("a stopped run read 4 bytes of it, and it is not there now"),
            "{error}"
        );
        let shortened = taken(&[], Some(("a", 11)));
        let error = Taking::resume(root(&dir), Some(shortened), None)
            .unwrap()
            .queue(files.clone(), 1)
            .err()
            .unwrap();
        assert!(error.contains("holds 10 now"), "{error}");
        let from = taken(&[], None);
        let redo_gone = taken(&[("y", 10)], None);
        let error = Taking::resume(root(&dir), Some(from), Some(redo_gone))
            .unwrap()
            .queue(files.clone(), 1)
            .err()
            .unwrap();
        assert!(
            error.contains("an epoch to redo read 10 bytes of it, and it is not there now"),
            "{error}"
        );
        // Epochs to redo that do not start from the commit's files.
        let from = taken(&[("a", 10)], None);
        let other = taken(&[("b", 10)], None);
        let error = Taking::resume(root(&dir), Some(from), Some(other))
            .err()
            .unwrap();
        assert!(
            error.contains("do not start with those of its commit"),
            "{error}"
        );
    }

    #[test]
    fn a_checkpoint_that_counted_bytes_in_name_order_is_carried_on() {
        let (dir, files) = listing(&["a", "b", "c"]);
        let mut taking = Taking::resume(
            root(&dir),
            Some(super::super::SourcePosition::at(14, 0.0)),
            None,
        )
        .unwrap();
        let queue = taking.queue(files.clone(), usize::MAX).unwrap();
        assert_eq!(
            queued(&queue),
            [("b".into(), 4, true, false), ("c".into(), 0, true, true)]
        );
        assert_eq!((taking.taken, lock(&taking.log).len()), (10, 1));
        let error = Taking::resume(
            root(&dir),
            Some(super::super::SourcePosition::at(31, 0.0)),
            None,
        )
        .unwrap()
        .queue(files, 1)
        .err()
        .unwrap();
        assert!(
            error.contains("1 more bytes were read than the files now hold"),
            "{error}"
        );
    }

    #[test]
    fn stored_files_round_trip_and_are_checked() {
        let position = taken(&[("in/a", 10), ("in/b", 5)], Some(("in/c", 3)));
        let json = serde_json::to_string(&position).unwrap();
        assert_eq!(
            json,
            r#"{"offset":18,"time":0.0,"files":{"whole":[["in/a",10],["in/b",5]],"reading":["in/c",3]}}"#
        );
        let back: super::super::SourcePosition = serde_json::from_str(&json).unwrap();
        assert_eq!(back, position);
        back.check().unwrap();
        // A position without files (a tape's) reads as before.
        let tape: super::super::SourcePosition =
            serde_json::from_str(r#"{"offset":7,"time":1.5}"#).unwrap();
        assert_eq!(tape, super::super::SourcePosition::at(7, 1.5));
        for (bad, says) in [
            (
                r#"{"offset":19,"time":0,"files":{"whole":[["a",10]],"reading":["c",3]}}"#,
                "hold 13 bytes, its offset says 19",
            ),
            (
                r#"{"offset":20,"time":0,"files":{"whole":[["a",10],["a",10]]}}"#,
                "names the file a twice",
            ),
            (
                r#"{"offset":0,"time":0,"files":{"whole":[["",0]]}}"#,
                "empty",
            ),
            (
                r#"{"offset":0,"time":0,"files":{"whole":[["a",18446744073709551615],["b",1]]}}"#,
                "more bytes than any file system",
            ),
            (
                r#"{"offset":9223372036854775808,"time":0,"files":{"whole":[["a",9223372036854775808]]}}"#,
                "more bytes than any file system",
            ),
        ] {
            let position: super::super::SourcePosition = serde_json::from_str(bad).unwrap();
            let error = position.check().unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
        assert!(serde_json::from_str::<super::super::SourcePosition>(
            r#"{"offset":0,"time":0,"files":{"whole":[],"extra":1}}"#
        )
        .is_err());
    }

    #[test]
    fn positions_share_the_list_of_files_and_each_keeps_its_own_part() {
        let log = TakenLog::default();
        let first = Positions {
            log: &log,
            name: "a".into(),
            base: 0,
        };
        let inside = first.within(4);
        let after_a = first.after(10);
        let second = Positions {
            log: &log,
            name: "b".into(),
            base: 10,
        };
        let after_b = second.after(5);
        let json = |p: &super::super::SourcePosition| serde_json::to_string(p).unwrap();
        assert_eq!(
            json(&inside),
            r#"{"offset":4,"time":0.0,"files":{"whole":[],"reading":["a",4]}}"#
        );
        assert_eq!(
            json(&after_a),
            r#"{"offset":10,"time":0.0,"files":{"whole":[["a",10]]}}"#
        );
        assert_eq!(
            json(&after_b),
            r#"{"offset":15,"time":0.0,"files":{"whole":[["a",10],["b",5]]}}"#
        );
        assert!(Arc::ptr_eq(
            &after_a.files.unwrap().log,
            &after_b.files.unwrap().log
        ));
    }

    #[test]
    fn a_redo_before_the_first_commit_takes_the_files_its_epochs_took() {
        // Killed in epoch 1 before any commit: epochs 0 and 1 took c, then b; a is new.
        let (dir, files) = listing(&["a", "b", "c"]);
        let until = taken(&[("c", 10), ("b", 10)], None);
        let mut taking = Taking::resume(
            root(&dir),
            Some(super::super::SourcePosition::at(0, 0.0)),
            Some(until),
        )
        .unwrap();
        assert_eq!(
            queued(&taking.queue(files, 1).unwrap()),
            [
                ("c".into(), 0, false, false),
                ("b".into(), 0, true, false),
                ("a".into(), 0, true, true)
            ]
        );
    }

    #[test]
    fn a_file_an_epoch_to_redo_took_must_not_have_changed() {
        let (dir, files) = listing(&["a", "b"]);
        std::fs::write(dir.path().join("b"), "12345\n").unwrap();
        for (until, says) in [
            (
                taken(&[("a", 10), ("b", 10)], None),
                "read it whole when it held 10 bytes, and it holds 6 now",
            ),
            (
                taken(&[("a", 10)], Some(("b", 7))),
                "read 7 bytes of it, and it holds 6 now",
            ),
            (
                taken(&[("a", 9)], None),
                "read it whole when it held 9 bytes, and it holds 10 now",
            ),
        ] {
            let error = Taking::resume(root(&dir), Some(taken(&[], None)), Some(until))
                .unwrap()
                .queue(files.clone(), 1)
                .err()
                .unwrap();
            assert!(error.contains(says), "{error}");
        }
        // A part read is fine as long as the file still holds it; an empty file moved away
        // leaves nothing to redo.
        let until = taken(&[("gone", 0), ("a", 10)], Some(("b", 6)));
        let queue = Taking::resume(root(&dir), Some(taken(&[], None)), Some(until))
            .unwrap()
            .queue(files, 1)
            .unwrap();
        assert_eq!(
            queued(&queue),
            [("a".into(), 0, false, false), ("b".into(), 0, true, true)]
        );
        // Epochs to redo that do not go on with the file the commit was reading.
        let from = taken(&[], Some(("a", 4)));
        let error = Taking::resume(root(&dir), Some(from), Some(taken(&[("b", 6)], None)))
            .err()
            .unwrap();
        assert!(
            error.contains("do not go on with the file its commit was reading"),
            "{error}"
        );
    }

    #[test]
    fn names_are_kept_below_the_directory_or_the_globs_fixed_part() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("in/x")).unwrap();
        std::fs::write(dir.path().join("in/x/1.jsonl"), "").unwrap();
        assert_eq!(listing_root(&dir.path().join("in")), dir.path().join("in"));
        assert_eq!(
            listing_root(&dir.path().join("in/*/*.jsonl")),
            dir.path().join("in")
        );
        assert_eq!(
            listing_root(&dir.path().join("in/x/1.jsonl")),
            dir.path().join("in/x")
        );
        assert_eq!(listing_root(Path::new("1.jsonl")), Path::new(""));
        let taking = Taking::resume(dir.path().join("in"), None, None).unwrap();
        assert_eq!(&*taking.name(&dir.path().join("in/x/1.jsonl")), "x/1.jsonl");
    }
}
