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

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::Sender;

use super::file::{EncodingErrors, FileSourceConfig};
use super::records::{Format, RecordDecoder, StreamRecords};
use super::{BuiltSource, Chunk, Delivery, SourceCounters, StreamSource};
use crate::error::{escape_controls, Result};

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

/// The `file` source in stream mode: the files `path` names (a directory or a glob), each read once
/// in name order.
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
    lines: super::LineCounts,
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
    /// Chunks end at the first line end past each multiple of this (`CHUNK_BYTES`).
    chunk_bytes: u64,
}

/// Sends one file in chunks of whole lines (a line over `max_line_bytes` is skipped and
/// counted), each with the position after it. Chunks end at the first line end at or past
/// each multiple of `CHUNK_BYTES` in the file, wherever reading started: a restarted run cuts
/// them where the first run did, so a redone epoch ends exactly where it ended before. The
/// last chunk carries `last`'s marks. Returns the file's size, or `None` when the engine has
/// gone.
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
    file.seek(std::io::SeekFrom::Start(read.skip))
        .await
        .map_err(failed)?;
    // Where reading is in the file, where the next chunk may end, and the chunk being filled:
    // whole lines, then the start of the line being read (from `partial`).
    let mut at = read.skip;
    let mut boundary = (read.skip / read.chunk_bytes + 1) * read.chunk_bytes;
    let mut pending: Vec<u8> = Vec::new();
    let mut partial = 0usize;
    let mut skipping = false;
    let mut chunk_first_line = next_line;
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
                        stats.lines.long_lines.fetch_add(1, Ordering::Relaxed);
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
                    stats.lines.long_lines.fetch_add(1, Ordering::Relaxed);
                }
                skipping = false;
                pending.truncate(partial);
                if origins.is_some() {
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
                if !send_chunk(
                    chunk,
                    read.base + at,
                    (&origin, first),
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
            if !send_chunk(
                pending,
                read.base + at,
                (&origin, chunk_first_line),
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

/// Hands a chunk (possibly empty: it may still end an epoch) to the engine with the position
/// after it; `false` when the engine has gone.
async fn send_chunk(
    chunk: Vec<u8>,
    at: u64,
    (origin, first_line): (&Arc<str>, u64),
    origins: Option<&Origins>,
    tx: &Sender<Delivery>,
    marks: (bool, bool),
) -> bool {
    if chunk.is_empty() && !marks.0 && !marks.1 {
        return true;
    }
    if let (Some(origins), false) = (origins, chunk.is_empty()) {
        if let Ok(mut queue) = origins.lock() {
            queue.push_back((origin.clone(), first_line));
        }
    }
    let delivery = Delivery {
        chunk,
        resume_at: Some(position(at)),
        ends_epoch: marks.0,
        caught_up: marks.1,
    };
    tx.send(delivery).await.is_ok()
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
                    let size = std::fs::metadata(&files[0])
                        .map_err(|e| {
                            format!("{}: {e}", escape_controls(&files[0].display().to_string()))
                        })?
                        .len();
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
                if resume > 0 {
                    // The files are shorter than what earlier runs took: they changed.
                    return Err(format!(
                        "{}: the checkpoint says {} more bytes were read than the files now hold (were files removed or shortened?); remove the checkpoint directory to start over",
                        escape_controls(&path.display().to_string()),
                        resume
                    ));
                }
                let count = files.len();
                for (index, file) in files.into_iter().enumerate() {
                    let last_listed = index + 1 == count;
                    let ends_epoch = last_listed || (index + 1) % per_epoch == 0;
                    let read = FileRead {
                        path: &file,
                        skip: std::mem::take(&mut skip),
                        base: taken,
                        chunk_bytes: CHUNK_BYTES as u64,
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
        let mut warnings = self.stats.lines.warnings(self.max_line_bytes);
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
            malformed_events: self.records.as_ref().map_or(0, StreamRecords::bad_records),
            ..self.stats.lines.counters()
        }
    }
}

fn position(offset: u64) -> super::SourcePosition {
    super::SourcePosition { offset, time: 0.0 }
}

impl FileStreamSource {
    fn decode_lines(&self, chunks: &[Chunk]) -> Result<RecordBatch> {
        self.stats.lines.decode(
            &self.schema,
            chunks,
            self.encoding_errors,
            &self.path.display(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every delivery of `path` read from `skip`: (chunk, position, first line numbers queued).
    fn deliveries(path: &Path, skip: u64, max_line: usize) -> Vec<(Vec<u8>, u64)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
            let stats = Stats::default();
            let read = FileRead {
                path,
                skip,
                base: 1000,
                chunk_bytes: 100,
            };
            let size = send_file(read, max_line, &stats, None, &tx, (true, true))
                .await
                .unwrap();
            assert_eq!(size, Some(std::fs::metadata(path).unwrap().len()));
            drop(tx);
            let mut out = Vec::new();
            while let Some(d) = rx.recv().await {
                out.push((d.chunk, d.resume_at.unwrap().offset));
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
}
