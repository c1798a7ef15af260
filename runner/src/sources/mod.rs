//! Sources: one file per component. A batch source is read sequentially in large morsels cut at
//! record boundaries; decoding a morsel into batches is independent and runs on any worker.

pub mod fetch;
pub mod file;
pub mod file_stream;
pub mod mastodon;
pub mod parquet;
pub mod records;
pub mod replay;
pub mod socket;

use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::error::Result;

/// What a source config needs to build its runtime.
pub struct SourceContext<'a> {
    /// The pipeline file's directory, for relative paths.
    pub base_dir: &'a Path,
    /// The pipeline runs as a stream (`mode: stream`): a source that can read either way
    /// (files) builds its stream form.
    pub streaming: bool,
}

/// Implemented by every source config.
pub trait BuildSource: Send + Sync {
    /// Builds the source (its stream form when `ctx.streaming` and it has one); an `Err` (a
    /// sentence for the user) when the settings cannot be used.
    fn build(&self, ctx: &SourceContext) -> Result<BuiltSource, String>;
    /// When `build` failed: whether it failed for an input it needs (to infer columns from)
    /// that is not there, a runtime failure (exit 1, as any missing input) rather than an
    /// invalid pipeline. The input's path and the very message `build` gives then.
    fn missing_input(&self, _ctx: &SourceContext) -> Option<(std::path::PathBuf, String)> {
        None
    }
}

/// A bounded input read to its end (batch mode), or an unbounded one read as it arrives
/// (stream mode).
pub enum BuiltSource {
    /// A bounded input, read to its end in morsels.
    Batch(Box<dyn BatchSource>),
    /// An unbounded input, read as it arrives.
    Stream(Box<dyn StreamSource>),
}

impl BuiltSource {
    /// See `BatchSource::raw_text_lines`.
    pub fn raw_text_lines(&self) -> bool {
        match self {
            BuiltSource::Batch(s) => s.raw_text_lines(),
            BuiltSource::Stream(s) => s.raw_text_lines(),
        }
    }

    /// The columns every batch from the source has.
    pub fn schema(&self) -> SchemaRef {
        match self {
            BuiltSource::Batch(s) => s.schema(),
            BuiltSource::Stream(s) => s.schema(),
        }
    }

    /// See `BatchSource::spark`.
    pub fn spark(&self) -> Result<crate::spark::frame::Frame, String> {
        match self {
            BuiltSource::Batch(s) => s.spark(),
            BuiltSource::Stream(s) => s.spark(),
        }
    }
}

/// Bytes of whole lines (each ending in `\n`) handed from a streaming source to the engine.
pub type Chunk = Vec<u8>;

/// Where a positioned source (a replay tape, a stream of files) resumes after a chunk: a
/// checkpoint stores the position of the last chunk an epoch took, and a restarted run starts
/// reading there.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourcePosition {
    /// Bytes of the input consumed (of every file, for a stream of files): grows with every
    /// chunk, so a redone epoch ends where its first run ended.
    pub offset: u64,
    /// The recorded time at that point (seconds since the tape's start), so pacing resumes.
    pub time: f64,
    /// A stream of files: the files taken, by name, in the order they were taken (a restart
    /// skips them by name, not by counting bytes in today's listing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<file_stream::FilesTaken>,
}

impl SourcePosition {
    /// A position with no files: bytes and a time.
    pub fn at(offset: u64, time: f64) -> Self {
        SourcePosition {
            offset,
            time,
            files: None,
        }
    }

    /// What is wrong with a position read from a checkpoint, if anything.
    pub fn check(&self) -> Result<(), String> {
        if !(self.time.is_finite() && self.time >= 0.0) {
            return Err(format!(
                "its position's time is {}, not a time on the tape",
                self.time
            ));
        }
        match &self.files {
            Some(files) => files.check(self.offset),
            None => Ok(()),
        }
    }
}

/// A chunk on its way from a source to the engine, with the position after it when the
/// source has positions.
pub struct Delivery {
    /// Whole lines of input.
    pub chunk: Chunk,
    /// Where a restarted run resumes after this chunk; `None` for a source without positions.
    pub resume_at: Option<SourcePosition>,
    /// A source that `marks_epochs`: the epoch ends after this chunk.
    pub ends_epoch: bool,
    /// A source that `marks_epochs`: nothing more is there to read for now (an epoch without
    /// rows may run, as Spark runs one when the watermark moves and no data is waiting).
    pub caught_up: bool,
}

impl From<Chunk> for Delivery {
    fn from(chunk: Chunk) -> Self {
        Delivery {
            chunk,
            resume_at: None,
            ends_epoch: false,
            caught_up: false,
        }
    }
}

/// A source that runs as a tokio task and pushes chunks into a bounded channel: when the
/// engine falls behind, `send` waits and the source stops reading (backpressure).
pub trait StreamSource: Send + Sync {
    /// The columns every batch from this source has.
    fn schema(&self) -> SchemaRef;
    /// Starts reading (a positioned source from `from` when given); the source ends (for
    /// good) when it drops `tx`. An `Err` is a fatal problem (a rejected token, say) that ends
    /// the run with exit code 1.
    /// `redo_until`: where the last epoch recorded and not committed ended (the source takes
    /// its input up to there as the first run took it).
    fn start(
        &self,
        tx: tokio::sync::mpsc::Sender<Delivery>,
        from: Option<SourcePosition>,
        redo_until: Option<SourcePosition>,
    ) -> tokio::task::JoinHandle<Result<(), String>>;
    /// Whether deliveries carry positions a restarted run can resume from (a replay tape can
    /// be re-read; a socket or a live stream cannot).
    fn positioned(&self) -> bool {
        false
    }
    /// For `runner validate`: whether the input is there, without reading it (`Err` when it
    /// is missing), as [`BatchSource::check_inputs`].
    fn check_inputs(&self) -> Result<Option<String>, String> {
        Ok(None)
    }
    /// Turns chunks into a batch of rows (an error when a record cannot be read and the
    /// source is told to fail on it).
    fn decode(&self, chunks: &[Chunk]) -> Result<RecordBatch>;
    /// Chunks a kernel read raw (`raw_text_lines`), in order, without `decode`: a source that
    /// keeps something for each chunk until it is decoded lets it go.
    fn passed(&self, _chunks: &[Chunk]) {}
    /// A test's input in place of what `start` reads (`runner test`): each epoch's lines as
    /// the chunk `decode` will be handed, in order. A source whose input starts with a header
    /// (CSV files) takes the first line as it; the default joins the lines.
    fn fed(&self, epochs: &[Vec<String>]) -> Vec<Chunk> {
        epochs.iter().map(|lines| joined_lines(lines)).collect()
    }
    /// Declared when the source says where epochs end (`Delivery::ends_epoch`, a file stream's
    /// `max_files_per_trigger`): the engine then ends them there, not when the input pauses.
    fn marks_epochs(&self) -> bool {
        false
    }
    /// Declared when every chunk's bytes are whole lines of text and each row is one line in
    /// the only column (a trailing `\r` dropped, invalid UTF-8 handled by `decode`): a kernel
    /// may then read the bytes without decoding them into batches.
    fn raw_text_lines(&self) -> bool {
        false
    }

    /// Things worth telling the user at the end (skipped long lines, ...).
    fn warnings(&self) -> Vec<String>;
    /// A one-line account of what the source read, for the end of the run.
    fn summary(&self) -> Option<String> {
        None
    }
    /// What the source dropped or repaired so far, for the run summary.
    fn counters(&self) -> SourceCounters {
        SourceCounters::default()
    }
    /// How Spark reads the same input (`crate::spark`), or why it cannot.
    fn spark(&self) -> std::result::Result<crate::spark::frame::Frame, String> {
        Err(crate::spark::frame::SOURCE_NOT_TRANSLATED.into())
    }
}

/// `lines`, each ended by a newline, as one chunk.
pub fn joined_lines(lines: &[String]) -> Chunk {
    let mut chunk: Chunk = Vec::new();
    for line in lines {
        chunk.extend_from_slice(line.as_bytes());
        chunk.push(b'\n');
    }
    chunk
}

/// Input a source repaired or dropped, by cause: the warnings of a run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceCounters {
    /// Lines with invalid UTF-8 (replaced or skipped).
    pub bad_utf8_lines: u64,
    /// Lines left out: invalid UTF-8 under `encoding_errors: skip`, over `max_line_bytes`, or cut
    /// off by a broken connection.
    pub skipped_lines: u64,
    /// Records that could not be read: events of a Mastodon stream or tape, CSV or JSON lines
    /// records (skipped under `on_error: skip`).
    pub malformed_events: u64,
}

impl std::ops::Add for SourceCounters {
    type Output = SourceCounters;
    fn add(self, other: SourceCounters) -> SourceCounters {
        SourceCounters {
            bad_utf8_lines: self.bad_utf8_lines + other.bad_utf8_lines,
            skipped_lines: self.skipped_lines + other.skipped_lines,
            malformed_events: self.malformed_events + other.malformed_events,
        }
    }
}

/// A raw piece of input, cut at a record boundary.
pub struct Morsel {
    /// The input's bytes, ending at a record boundary.
    pub bytes: Vec<u8>,
    /// Where it came from, for error messages.
    pub origin: std::sync::Arc<str>,
    /// Where it starts in `origin`: the 1-based number of its first line when known (sequential
    /// reads count them), else its byte offset (parallel reads; the line is found on demand).
    pub position: Position,
}

/// Where a morsel starts in its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The 1-based number of its first line.
    Line(u64),
    /// Its byte offset from the start of the input (the line is found on demand).
    Offset(u64),
}

impl Position {
    /// Its line number or byte offset: one kind for each input, so it orders the input's
    /// morsels.
    pub fn order(self) -> u64 {
        match self {
            Position::Line(n) | Position::Offset(n) => n,
        }
    }
}

/// The morsels of an input: read one after another (pipes, standard input), or independently
/// by index (regular files, read with positional reads by whichever worker takes the index).
pub enum Morsels<'a> {
    /// Morsels read in order by one iterator.
    Sequential(Box<dyn Iterator<Item = Result<Morsel>> + Send + 'a>),
    /// Morsels read independently, by index.
    Indexed {
        /// The number of morsels.
        count: usize,
        /// Reads morsel `i` (0 to `count - 1`); any worker may call it.
        read: Box<dyn Fn(usize) -> Result<Morsel> + Send + Sync + 'a>,
    },
}

impl<'a> Morsels<'a> {
    /// Every morsel with its position in input order, as a parallel iterator.
    pub fn into_par_iter(
        self,
    ) -> impl rayon::iter::ParallelIterator<Item = (usize, Result<Morsel>)> + 'a {
        use rayon::prelude::*;
        match self {
            Morsels::Sequential(iter) => rayon::iter::Either::Left(iter.enumerate().par_bridge()),
            Morsels::Indexed { count, read } => {
                rayon::iter::Either::Right((0..count).into_par_iter().map(move |i| (i, read(i))))
            }
        }
    }

    /// Every morsel in input order, one after another.
    pub fn into_seq_iter(self) -> Box<dyn Iterator<Item = Result<Morsel>> + Send + 'a> {
        match self {
            Morsels::Sequential(iter) => iter,
            Morsels::Indexed { count, read } => Box::new((0..count).map(read)),
        }
    }
}

/// A bounded input (a file, standard input) read in morsels that any worker can decode (batch
/// mode).
pub trait BatchSource: Send + Sync {
    /// The columns every batch from this source has.
    fn schema(&self) -> SchemaRef;
    /// Opens the input (fetching it first if configured).
    fn open(&self) -> Result<Morsels<'_>>;
    /// Turns one morsel into record batches, handed to `emit` in order as they are made;
    /// called from any worker thread. A morsel may decode into more than should be held at
    /// once (a slice of a Parquet row group), so a source hands its batches on as it reads.
    fn decode_each(
        &self,
        morsel: Morsel,
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()>;
    /// Turns one morsel into record batches, all of them at once.
    fn decode(&self, morsel: Morsel) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        self.decode_each(morsel, &mut |batch| {
            batches.push(batch);
            Ok(())
        })?;
        Ok(batches)
    }
    /// Declared when every morsel's bytes are whole lines of text and each row is one line in
    /// the only column (a trailing `\r` dropped, invalid UTF-8 handled by `decode`): a kernel
    /// may then read the bytes without decoding them into batches.
    fn raw_text_lines(&self) -> bool {
        false
    }

    /// Declared when every morsel's bytes are CSV records, one per line, that `decode` reads
    /// with Arrow's CSV reader and nothing else (no encoding repair): a kernel may then split
    /// the fields itself, at the places `csv_layout` gives, and hand `decode` a morsel it
    /// cannot read alone.
    fn raw_csv_records(&self) -> bool {
        false
    }
    /// Where the columns are in each record, once the header is read (from `open` on).
    fn csv_layout(&self) -> Option<records::CsvLayout> {
        None
    }

    /// Takes back a morsel's buffer for reuse (fresh buffers cost page faults).
    fn recycle(&self, _bytes: Vec<u8>) {}
    /// The run wants no more input (a limit was reached, the sinks closed): a read waiting
    /// on a pipe gives up, so that the run ends although the pipe's writer goes on.
    fn stop_reading(&self) {}
    /// Things worth telling the user at the end (replaced or skipped bad lines, ...).
    fn warnings(&self) -> Vec<String>;
    /// What the source dropped or repaired so far, for the run summary.
    fn counters(&self) -> SourceCounters {
        SourceCounters::default()
    }
    /// The size of the whole input when it is known without reading it (regular files).
    fn input_bytes(&self) -> Option<u64> {
        None
    }
    /// The bytes the run read of an input of known size: the whole, unless reading stopped
    /// early (a `limit` reached, the sinks closed), as the progress meter counts it.
    fn bytes_read(&self) -> Option<u64> {
        self.input_bytes()
    }
    /// Before another engine reads the input (Spark): downloads it first when it is missing and
    /// the source says where from (`fetch:`).
    fn fetch_missing(&self) -> Result<()> {
        Ok(())
    }
    /// For `runner validate`: whether the input is there, without reading it. `Err` when it is
    /// missing; `Ok(Some(note))` when something is worth saying (a download on first run).
    fn check_inputs(&self) -> Result<Option<String>, String> {
        Ok(None)
    }
    /// How Spark reads the same input (`crate::spark`), or why it cannot.
    fn spark(&self) -> std::result::Result<crate::spark::frame::Frame, String> {
        Err(crate::spark::frame::SOURCE_NOT_TRANSLATED.into())
    }
}

/// Lines a streaming source of text lines skipped or repaired, counted as it reads and decodes.
#[derive(Default)]
pub struct LineCounts {
    /// Longer than `max_line_bytes`: skipped.
    pub long_lines: std::sync::atomic::AtomicU64,
    /// Invalid UTF-8, bad bytes replaced.
    pub bad_utf8: std::sync::atomic::AtomicU64,
    /// Invalid UTF-8, left out (`encoding_errors: skip`).
    pub skipped_utf8: std::sync::atomic::AtomicU64,
    /// Where the first line skipped for its length was seen (a file, a line), for the warning.
    first_long: FirstSeen,
    /// Where the first line of invalid UTF-8 was seen.
    first_utf8: FirstSeen,
    /// For a stream's readers: the order of the next piece of input met (each epoch's
    /// chunks are decoded after the last epoch's).
    in_turn: std::sync::atomic::AtomicU64,
    /// Each input's place in the order the files are read (by its name in messages).
    file_order: std::sync::Mutex<std::collections::HashMap<std::sync::Arc<str>, u64>>,
}

/// Where a line lies in the input, in the input's order: its file's place in the order the
/// files are read (for a stream: the turn of the piece of input it came in), the start of its
/// morsel (a line number or a byte offset, one kind for each file; a stream's chunk) and the
/// line's index there. Workers meet lines out of this order; the warnings name the earliest,
/// so that a run tells the same place whatever its cores.
pub type SeenAt = (u64, u64, u64);

/// The earliest place of something counted, by [`SeenAt`].
#[derive(Default)]
struct FirstSeen(std::sync::Mutex<Option<(SeenAt, String)>>);

impl FirstSeen {
    /// Keeps `place()` when `at` comes before the place kept. Only then is it worked out (a
    /// line's number may cost a count of the lines before it), and not under the lock.
    fn note(&self, at: SeenAt, place: impl FnOnce() -> String) {
        let earlier = |kept: &Option<(SeenAt, String)>| {
            kept.as_ref().is_none_or(|(earliest, _)| at < *earliest)
        };
        if !earlier(&self.0.lock().unwrap_or_else(|p| p.into_inner())) {
            return;
        }
        let place = place();
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if earlier(&kept) {
            *kept = Some((at, place));
        }
    }

    fn place(&self) -> Option<String> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.as_ref().map(|(_, place)| place.clone())
    }
}

impl LineCounts {
    /// Counts a line skipped for its length, at `at`, told as `place` (for the earliest only).
    pub fn long_line(&self, at: SeenAt, place: impl FnOnce() -> String) {
        self.long_lines
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.first_long.note(at, place);
    }

    /// Counts a line of invalid UTF-8, repaired or (`skipped`) left out, at `at`, told as
    /// `place` (for the earliest only).
    pub fn bad_utf8_line(&self, skipped: bool, at: SeenAt, place: impl FnOnce() -> String) {
        let counter = match skipped {
            true => &self.skipped_utf8,
            false => &self.bad_utf8,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.first_utf8.note(at, place);
    }

    /// The turn of the next piece of a stream's input, in the order they are met.
    pub fn in_turn(&self) -> u64 {
        self.in_turn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Notes the order the inputs named `origins` are read in.
    pub fn read_in_order(&self, origins: impl Iterator<Item = std::sync::Arc<str>>) {
        let mut order = self.file_order.lock().unwrap_or_else(|p| p.into_inner());
        *order = origins.enumerate().map(|(i, o)| (o, i as u64)).collect();
    }

    /// The place of the input named `origin` in the order the inputs are read.
    pub fn order_of(&self, origin: &str) -> u64 {
        let order = self.file_order.lock().unwrap_or_else(|p| p.into_inner());
        order.get(origin).copied().unwrap_or(u64::MAX)
    }

    /// ` (the first seen: PLACE)` when a place was told.
    fn first_seen(place: &FirstSeen) -> String {
        place.place().map_or(String::new(), |p| {
            format!(" (the first seen: {})", crate::error::escape_controls(&p))
        })
    }
    /// The counts for the run summary: a line skipped for bad UTF-8 is both a bad-UTF-8 line
    /// and a skipped one.
    pub fn counters(&self) -> SourceCounters {
        use std::sync::atomic::Ordering;
        let skipped_utf8 = self.skipped_utf8.load(Ordering::Relaxed);
        SourceCounters {
            bad_utf8_lines: self.bad_utf8.load(Ordering::Relaxed) + skipped_utf8,
            skipped_lines: self.long_lines.load(Ordering::Relaxed) + skipped_utf8,
            malformed_events: 0,
        }
    }

    /// The end-of-run warnings for what was counted.
    pub fn warnings(&self, max_line_bytes: usize) -> Vec<String> {
        use std::sync::atomic::Ordering;
        let mut warnings = Vec::new();
        let long = self.long_lines.load(Ordering::Relaxed);
        if long > 0 {
            warnings.push(format!(
                "{long} line(s) longer than max_line_bytes ({max_line_bytes}) were skipped{}",
                Self::first_seen(&self.first_long)
            ));
        }
        let bad = self.bad_utf8.load(Ordering::Relaxed);
        if bad > 0 {
            warnings.push(format!(
                "{bad} line(s) had invalid UTF-8; bad bytes were replaced with U+FFFD{}",
                Self::first_seen(&self.first_utf8)
            ));
        }
        let skipped = self.skipped_utf8.load(Ordering::Relaxed);
        if skipped > 0 {
            warnings.push(format!(
                "{skipped} line(s) with invalid UTF-8 were skipped{}",
                Self::first_seen(&self.first_utf8)
            ));
        }
        warnings
    }

    /// `bytes` (whole lines of records) with each line of invalid UTF-8 as `encoding` says, and
    /// counted: its bad bytes replaced, or the line left blank (not a record; the lines after
    /// keep their numbers), or the run failed with the line's place (`place` of its 0-based
    /// index in `bytes`). The failure's hint names `skip` only where `skip_allowed` (records of
    /// several lines cannot leave a line out).
    /// `at` is where `bytes` start (the first two parts of a [`SeenAt`]).
    pub fn repair_utf8(
        &self,
        bytes: &[u8],
        encoding: file::EncodingErrors,
        skip_allowed: bool,
        at: (u64, u64),
        place: &dyn Fn(usize) -> String,
    ) -> Result<Vec<u8>> {
        let seen = |index: usize| (at.0, at.1, index as u64);
        let mut out = Vec::with_capacity(bytes.len() + 64);
        for (index, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            let Err(e) = std::str::from_utf8(line) else {
                out.extend_from_slice(line);
                continue;
            };
            match encoding {
                file::EncodingErrors::Replace => {
                    self.bad_utf8_line(false, seen(index), || place(index));
                    out.extend_from_slice(String::from_utf8_lossy(line).as_bytes());
                }
                file::EncodingErrors::Skip => {
                    self.bad_utf8_line(true, seen(index), || place(index));
                    if line.ends_with(b"\n") {
                        out.push(b'\n');
                    }
                }
                file::EncodingErrors::Fail => {
                    return Err(crate::error::Error::runtime(format!(
                        "{}: invalid UTF-8 at byte {} of the line; use `encoding_errors: replace`{} to read it anyway",
                        place(index),
                        e.valid_up_to() + 1,
                        if skip_allowed { " or `skip`" } else { "" }
                    )))
                }
            }
        }
        Ok(out)
    }

    /// Chunks of whole lines (`\n` or `\r\n` ended) as rows of the one text column of
    /// `schema`; invalid UTF-8 handled by `encoding` (`fail` says where the line is:
    /// `place(chunk, line)`, the line 0-based in its chunk).
    pub fn decode(
        &self,
        schema: &SchemaRef,
        chunks: &[Chunk],
        encoding: file::EncodingErrors,
        place: &dyn Fn(usize, usize) -> String,
    ) -> Result<RecordBatch> {
        let bytes: usize = chunks.iter().map(Vec::len).sum();
        let turn = self.in_turn();
        let mut lines = arrow_array::builder::StringBuilder::with_capacity(bytes / 16 + 1, bytes);
        for (index, chunk) in chunks.iter().enumerate().filter(|(_, c)| !c.is_empty()) {
            let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
            for (line_index, raw) in body.split(|&b| b == b'\n').enumerate() {
                let line = raw.strip_suffix(b"\r").unwrap_or(raw);
                match std::str::from_utf8(line) {
                    Ok(text) => lines.append_value(text),
                    Err(e) => match encoding {
                        file::EncodingErrors::Replace => {
                            let at = (turn, index as u64, line_index as u64);
                            self.bad_utf8_line(false, at, || place(index, line_index));
                            lines.append_value(String::from_utf8_lossy(line));
                        }
                        file::EncodingErrors::Skip => {
                            let at = (turn, index as u64, line_index as u64);
                            self.bad_utf8_line(true, at, || place(index, line_index));
                        }
                        file::EncodingErrors::Fail => {
                            return Err(crate::error::Error::runtime(format!(
                                "{}: invalid UTF-8 at byte {} of the line; use `encoding_errors: replace` or `skip` to read it anyway",
                                crate::error::escape_controls(&place(index, line_index)),
                                e.valid_up_to() + 1
                            )))
                        }
                    },
                }
            }
        }
        Ok(
            RecordBatch::try_new(schema.clone(), vec![std::sync::Arc::new(lines.finish())])
                .expect("one text column"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_place_is_kept_whatever_order_lines_are_met_in() {
        let counts = LineCounts::default();
        // Read in this order, whatever their names' order as text (`-` sorts before `/`).
        counts.read_in_order(
            ["d/f.csv", "d-1/f.csv"]
                .into_iter()
                .map(std::sync::Arc::from),
        );
        let at = |origin: &str, start: u64, line: u64| (counts.order_of(origin), start, line);
        counts.bad_utf8_line(true, at("d/f.csv", 2_000_000, 3), || {
            "d/f.csv line 90000".into()
        });
        counts.bad_utf8_line(true, at("d/f.csv", 1_000_000, 9), || {
            "d/f.csv line 50000".into()
        });
        // A later place is not even worked out.
        counts.bad_utf8_line(true, at("d-1/f.csv", 0, 0), || unreachable!("later"));
        counts.bad_utf8_line(true, at("d/f.csv", 1_000_000, 10), || unreachable!("later"));
        counts.bad_utf8_line(true, at("d/f.csv", 0, 7), || "d/f.csv line 8".into());
        assert_eq!(
            counts.warnings(1 << 20),
            ["5 line(s) with invalid UTF-8 were skipped (the first seen: d/f.csv line 8)"]
        );
    }
}
