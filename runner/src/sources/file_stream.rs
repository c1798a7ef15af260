//! `file` in stream mode: Spark's file stream source (`readStream.json(dir)`). The files that
//! `path` names are taken in name order, each once; `max_files_per_trigger` caps how many go
//! into one epoch (without it an epoch takes every new file). With `poll`, the source looks
//! for new files that often and never ends (move finished files in: a file is read once, when
//! first seen); without it the stream ends after the files there at the start.
//!
//! Formats: `lines` and `jsonl` (CSV and Parquet are read by batch runs).
//!
//! Positions (for checkpoints) count the bytes taken from the files in name order, so a
//! restarted stream skips what earlier epochs took: files must not change once there, and new
//! ones must sort after those already read (timestamped names), as with Spark's file source.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::builder::StringBuilder;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::Sender;

use super::file::{EncodingErrors, FileSourceConfig};
use super::records::{Format, RecordDecoder, StreamRecords};
use super::{BuiltSource, Chunk, Delivery, SourceCounters, StreamSource};
use crate::error::{escape_controls, Error, Result};

/// For each chunk sent and not yet decoded: its file and first line number.
type Origins = Mutex<VecDeque<(Arc<str>, u64)>>;

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
    if config.fetch.is_some() {
        return Err("`fetch` is for batch runs; a stream reads the files it finds".into());
    }
    if !matches!(config.format, Format::Lines | Format::Jsonl) {
        return Err(format!(
            "`format: {}` is read by batch runs; a stream of files reads `lines` or `jsonl`",
            config.format.name()
        ));
    }
    Ok(BuiltSource::Stream(Box::new(FileStreamSource {
        path,
        schema,
        records: decoder.map(|d| StreamRecords::new(d, config.on_error)),
        encoding_errors: config.encoding_errors,
        max_line_bytes: config.max_line_bytes,
        max_files_per_trigger: config.max_files_per_trigger,
        poll: config.poll,
        origins: Arc::new(Mutex::new(VecDeque::new())),
        stats: Arc::new(Stats::default()),
    })))
}

pub struct FileStreamSource {
    path: PathBuf,
    schema: SchemaRef,
    /// `jsonl`: the records; `None`: lines.
    records: Option<StreamRecords>,
    encoding_errors: EncodingErrors,
    max_line_bytes: usize,
    max_files_per_trigger: Option<std::num::NonZeroUsize>,
    poll: Option<Duration>,
    /// `jsonl`: for each chunk sent and not yet decoded, its file and first line number (the
    /// engine decodes every chunk of a record source, in order).
    origins: Arc<Origins>,
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Stats {
    files: AtomicU64,
    long_lines: AtomicU64,
    bad_utf8: AtomicU64,
    skipped_utf8: AtomicU64,
}

/// The files `path` names now, by name: itself, a directory's files (not hidden ones), or a
/// glob's matches.
fn list(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let hidden = |p: &Path| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
    };
    let mut files: Vec<PathBuf> = if path.to_string_lossy().contains(['*', '?', '[']) {
        glob::glob(&path.to_string_lossy())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?
            .filter_map(|e| e.ok())
            .filter(|p| p.is_file() && !hidden(p))
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

/// Where to read a file from, and the position (bytes of all files) its start is at.
struct FileRead<'a> {
    path: &'a Path,
    skip: u64,
    base: u64,
}

/// Sends one file in chunks of whole lines (lines over `max_line_bytes` skipped and counted),
/// each with the position after it. The last chunk carries `last`'s marks. Returns the
/// file's size, or `None` when the engine has gone.
async fn send_file(
    read: FileRead<'_>,
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
    if read.skip > 0 {
        file.seek(std::io::SeekFrom::Start(read.skip))
            .await
            .map_err(failed)?;
    }
    // Bytes of the file read, and the offset just after the last line end among them: where a
    // restart reads from once the lines before it are sent.
    let mut raw_read = read.skip;
    let mut line_end_raw = read.skip;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut skipping = false;
    let mut next_line = 1u64;
    let mut chunk_first_line = 1u64;
    loop {
        let n = file.read(&mut buffer).await.map_err(failed)?;
        raw_read += n as u64;
        let at_end = n == 0;
        let mut data = &buffer[..n];
        while !data.is_empty() {
            match memchr::memchr(b'\n', data) {
                Some(end) => {
                    line_end_raw = raw_read - (data.len() - end - 1) as u64;
                    if !skipping {
                        pending.extend_from_slice(&data[..=end]);
                    }
                    skipping = false;
                    next_line += 1;
                    data = &data[end + 1..];
                }
                None => {
                    if !skipping {
                        pending.extend_from_slice(data);
                    }
                    data = &[];
                }
            }
            // A line longer than allowed: drop what there is of it, skip to its end.
            let tail = pending.len() - memchr::memrchr(b'\n', &pending).map_or(0, |i| i + 1);
            if tail > max_line_bytes {
                pending.truncate(pending.len() - tail);
                skipping = true;
                stats.long_lines.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut added_newline = false;
        if at_end && !pending.is_empty() && !pending.ends_with(b"\n") {
            pending.push(b'\n');
            next_line += 1;
            added_newline = true;
        }
        let whole = memchr::memrchr(b'\n', &pending).map_or(0, |i| i + 1);
        if whole > 0 && (whole >= CHUNK_BYTES || at_end) {
            let rest = pending.split_off(whole);
            let chunk = std::mem::replace(&mut pending, rest);
            if let Some(origins) = origins {
                if let Ok(mut queue) = origins.lock() {
                    queue.push_back((origin.clone(), chunk_first_line));
                }
            }
            chunk_first_line = next_line - memchr::memchr_iter(b'\n', &pending).count() as u64;
            let marks = if at_end { last } else { (false, false) };
            let consumed = if added_newline {
                raw_read
            } else {
                line_end_raw
            };
            let delivery = Delivery {
                chunk,
                resume_at: Some(position(read.base + consumed)),
                ends_epoch: marks.0,
                caught_up: marks.1,
            };
            if tx.send(delivery).await.is_err() {
                return Ok(None);
            }
        } else if at_end && (last.0 || last.1) {
            // An empty file still ends its epoch.
            let delivery = Delivery {
                chunk: Vec::new(),
                resume_at: Some(position(read.base + raw_read)),
                ends_epoch: last.0,
                caught_up: last.1,
            };
            if tx.send(delivery).await.is_err() {
                return Ok(None);
            }
        }
        if at_end {
            return Ok(Some(raw_read));
        }
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
    ) -> tokio::task::JoinHandle<Result<(), String>> {
        let mut resume = from.map_or(0, |p| p.offset);
        let path = self.path.clone();
        let stats = self.stats.clone();
        let max_line_bytes = self.max_line_bytes;
        let per_epoch = self.max_files_per_trigger.map_or(usize::MAX, |n| n.get());
        let poll = self.poll;
        let origins = self.records.is_some().then(|| self.origins.clone());
        tokio::spawn(async move {
            let mut seen: HashSet<PathBuf> = HashSet::new();
            // Bytes of the files taken so far, in name order: the position.
            let mut taken = 0u64;
            loop {
                let mut files: Vec<PathBuf> = list(&path)
                    .map_err(|e| format!("{}: {e}", escape_controls(&path.display().to_string())))?
                    .into_iter()
                    .filter(|p| !seen.contains(p))
                    .collect();
                // A restart: pass over what earlier runs took.
                let mut skip = 0;
                while resume > 0 && !files.is_empty() {
                    let size = std::fs::metadata(&files[0]).map_or(0, |m| m.len());
                    if size > resume {
                        skip = resume;
                        break;
                    }
                    resume -= size;
                    taken += size;
                    seen.insert(files.remove(0));
                }
                if skip > 0 {
                    resume = 0;
                }
                let count = files.len();
                for (index, file) in files.into_iter().enumerate() {
                    let last_listed = index + 1 == count;
                    let ends_epoch = last_listed || (index + 1) % per_epoch == 0;
                    let read = FileRead {
                        path: &file,
                        skip: std::mem::take(&mut skip),
                        base: taken,
                    };
                    let sent = send_file(
                        read,
                        max_line_bytes,
                        &stats,
                        origins.as_deref(),
                        &tx,
                        (ends_epoch, last_listed),
                    )
                    .await?;
                    stats.files.fetch_add(1, Ordering::Relaxed);
                    seen.insert(file);
                    match sent {
                        Some(size) => taken += size,
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
                // Each non-empty chunk has its origin queued, in order.
                let origins: Vec<Option<(Arc<str>, u64)>> = {
                    let mut queue = self.origins.lock().ok();
                    chunks
                        .iter()
                        .map(|c| match (&mut queue, c.is_empty()) {
                            (Some(q), false) => q.pop_front(),
                            _ => None,
                        })
                        .collect()
                };
                records.decode(chunks, |chunk, line| match &origins[chunk] {
                    Some((file, first)) => format!("{file} line {}", first + line as u64),
                    None => format!("{} (a chunk's line {})", self.path.display(), line + 1),
                })
            }
        }
    }

    fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let long = self.stats.long_lines.load(Ordering::Relaxed);
        if long > 0 {
            warnings.push(format!(
                "{long} line(s) longer than max_line_bytes ({}) were skipped",
                self.max_line_bytes
            ));
        }
        let bad = self.stats.bad_utf8.load(Ordering::Relaxed);
        if bad > 0 {
            warnings.push(format!(
                "{bad} line(s) had invalid UTF-8; bad bytes were replaced with U+FFFD"
            ));
        }
        let skipped = self.stats.skipped_utf8.load(Ordering::Relaxed);
        if skipped > 0 {
            warnings.push(format!("{skipped} line(s) with invalid UTF-8 were skipped"));
        }
        warnings.extend(self.records.as_ref().and_then(StreamRecords::warning));
        warnings
    }

    fn summary(&self) -> Option<String> {
        Some(format!(
            "{} file(s) read",
            self.stats.files.load(Ordering::Relaxed)
        ))
    }

    fn counters(&self) -> SourceCounters {
        SourceCounters {
            bad_utf8_lines: self.stats.bad_utf8.load(Ordering::Relaxed),
            skipped_lines: self.stats.long_lines.load(Ordering::Relaxed)
                + self.stats.skipped_utf8.load(Ordering::Relaxed),
            malformed_events: self.records.as_ref().map_or(0, StreamRecords::bad_records),
        }
    }
}

fn position(offset: u64) -> super::SourcePosition {
    super::SourcePosition { offset, time: 0.0 }
}

impl FileStreamSource {
    fn decode_lines(&self, chunks: &[Chunk]) -> Result<RecordBatch> {
        let bytes: usize = chunks.iter().map(Vec::len).sum();
        let mut lines = StringBuilder::with_capacity(bytes / 16 + 1, bytes);
        for chunk in chunks.iter().filter(|c| !c.is_empty()) {
            let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
            for raw in body.split(|&b| b == b'\n') {
                let line = raw.strip_suffix(b"\r").unwrap_or(raw);
                match std::str::from_utf8(line) {
                    Ok(text) => lines.append_value(text),
                    Err(e) => match self.encoding_errors {
                        EncodingErrors::Replace => {
                            self.stats.bad_utf8.fetch_add(1, Ordering::Relaxed);
                            lines.append_value(String::from_utf8_lossy(line));
                        }
                        EncodingErrors::Skip => {
                            self.stats.skipped_utf8.fetch_add(1, Ordering::Relaxed);
                        }
                        EncodingErrors::Fail => {
                            return Err(Error::runtime(format!(
                                "{}: a line is not valid UTF-8 ({e}); `encoding_errors: replace` or `skip` reads past it",
                                self.path.display()
                            )))
                        }
                    },
                }
            }
        }
        Ok(
            RecordBatch::try_new(self.schema.clone(), vec![Arc::new(lines.finish())])
                .expect("one text column"),
        )
    }
}
