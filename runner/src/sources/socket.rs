//! `socket`: lines of text from TCP, the chapter's `readStream.format('socket')`. `connect` is a
//! client like Spark's (it waits for the server, retrying with backoff, and can reconnect);
//! `listen` accepts any number of clients and reads lines from all of them. Lines longer than
//! `max_line_bytes` are skipped and counted, never buffered whole.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::Sender;

use super::records::{ColumnSpec, Format, OnError, RecordDecoder, StreamRecords};
use super::{BuildSource, BuiltSource, Chunk, Delivery, SourceContext, StreamSource};
use crate::data::text_schema;

/// Stream mode. With `mode: connect` (the default) it is a TCP client like Spark's socket
/// source: it waits for the server, retrying with backoff (50 ms doubling to 2 s; for ever, or
/// up to `connect_timeout`), and ends when the server closes, unless `reconnect: true`. With
/// `mode: listen` it accepts clients (up to `max_clients` at once) and reads lines from all of
/// them: any client that reaches the address
/// is a source of rows, so with records (`format: jsonl` or `csv`) and `on_error: fail` (the
/// default) one bad line from any of them ends the run; listen on loopback, or use
/// `on_error: skip`, where clients are not all trusted.
///
/// UTF-8 lines, CRLF or LF; a final line without a newline is kept, a line cut by a connection
/// reset is dropped and reported. A broken connection (without `reconnect`) ends the run with
/// exit code 1 once the rows before it are processed; an address in use to listen on is an
/// error too. Invalid UTF-8 is replaced with U+FFFD and counted. A line
/// longer than `max_line_bytes` is skipped and counted, never buffered whole. When the pipeline
/// falls behind, the source stops reading (backpressure). With `format: jsonl` each line is a
/// JSON object read into `columns`, as the file source reads them; with `format: csv` each line
/// is a CSV record without a header, its fields the `columns` in the order written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SocketSourceConfig {
    /// The host to connect to, or the address to listen on (default 127.0.0.1 when listening).
    #[serde(default, deserialize_with = "crate::settings::env::opt_string")]
    pub host: Option<String>,
    /// The TCP port.
    pub port: u16,
    /// `connect` to a server (default) or `listen` for clients.
    #[serde(default)]
    pub mode: SocketMode,
    /// In `connect` mode: connect again when the server closes the connection, instead of
    /// ending the source.
    #[serde(default)]
    pub reconnect: bool,
    /// Longer lines are skipped (and counted) rather than held in memory (a size, `64KiB`, or
    /// a number of bytes; default 1 MiB).
    #[serde(
        default = "default_max_line",
        deserialize_with = "crate::settings::size::bytes"
    )]
    #[schemars(with = "String")]
    pub max_line_bytes: usize,
    /// In `listen` mode: the most clients read at once (default 64); more wait to be accepted.
    #[serde(default = "default_max_clients")]
    #[schemars(range(min = 1))]
    pub max_clients: usize,
    /// In `listen` mode: a client that sends nothing for this long is closed, freeing its
    /// place (a duration such as `5m`; default: never). Without it, clients that connect and
    /// stay silent can hold every place; runner warns when the places are all taken.
    #[serde(default, deserialize_with = "crate::settings::duration::opt")]
    #[schemars(with = "Option<String>")]
    pub idle_timeout: Option<Duration>,
    /// In `connect` mode: end the run (exit code 1) when no connection is made for this long, at
    /// the start or, with `reconnect: true`, after the server closed (a duration such as `30s`;
    /// default: wait for ever, as for a server started after runner).
    #[serde(default, deserialize_with = "crate::settings::duration::opt")]
    #[schemars(with = "Option<String>")]
    pub connect_timeout: Option<Duration>,
    /// The output column (`format: lines`).
    #[serde(
        default = "default_column",
        deserialize_with = "crate::settings::env::string"
    )]
    pub column: String,
    /// `lines` (each line one row of `column`), `jsonl` (one JSON object per line, read into
    /// `columns`) or `csv` (one record per line, no header: its fields are `columns` in order).
    #[serde(default)]
    pub format: Format,
    /// For `jsonl` and `csv`: the fields to read and their types, as for the file source
    /// (required: a socket cannot be looked at in advance). For `csv`, every field of a record
    /// in the order written: a record with more or fewer fields is a bad record.
    #[serde(default)]
    #[schemars(with = "Option<std::collections::BTreeMap<String, String>>")]
    pub columns: Option<indexmap::IndexMap<String, String>>,
    /// The CSV field separator (one character; default `,`).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// A record that does not parse: `fail` the run (default) or `skip` it (counted).
    #[serde(default)]
    pub on_error: OnError,
}

/// Whether the `socket` source connects to a server or accepts clients.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SocketMode {
    /// Connect to a server at `host:port` as a TCP client, like Spark's socket source (the
    /// default).
    #[default]
    Connect,
    /// Listen on `host:port` and read lines from every client, up to `max_clients` at once.
    Listen,
}

fn default_max_line() -> usize {
    1 << 20
}
fn default_max_clients() -> usize {
    64
}
fn default_column() -> String {
    "line".into()
}

impl BuildSource for SocketSourceConfig {
    fn build(&self, _ctx: &SourceContext) -> Result<BuiltSource, String> {
        if self.max_line_bytes == 0 {
            return Err("max_line_bytes must be at least 1".into());
        }
        if self.max_clients == 0 {
            return Err("max_clients must be at least 1".into());
        }
        if self.mode == SocketMode::Connect && self.idle_timeout.is_some() {
            return Err("`idle_timeout` is for `mode: listen` (it closes silent clients)".into());
        }
        if self.mode == SocketMode::Listen && self.connect_timeout.is_some() {
            return Err(
                "`connect_timeout` is for `mode: connect` (it bounds the wait for the server)"
                    .into(),
            );
        }
        if self.port == 0 && self.mode == SocketMode::Connect {
            return Err("`port: 0` names no server to connect to (it waited for ever)".into());
        }
        let host = self.host.clone().unwrap_or_else(|| match self.mode {
            SocketMode::Connect => "localhost".into(),
            SocketMode::Listen => "127.0.0.1".into(),
        });
        if host.is_empty() {
            return Err("`host` is empty".into());
        }
        if self.delimiter.is_some() && self.format != Format::Csv {
            return Err("`delimiter` is for `format: csv`".into());
        }
        let records = match (self.format, &self.columns) {
            (Format::Lines, None) => None,
            (Format::Lines, Some(_)) => {
                return Err("`columns` is for `format: jsonl` or `csv`; `format: lines` reads one text column named by `column`".into())
            }
            (format @ (Format::Jsonl | Format::Csv), Some(columns)) if !columns.is_empty() => {
                let specs = columns
                    .iter()
                    .map(|(n, t)| ColumnSpec::parse(n, t))
                    .collect::<Result<Vec<_>, _>>()?;
                let delimiter = super::file::csv_delimiter(self.delimiter)?;
                Some(StreamRecords::new(
                    RecordDecoder::new(format, specs, delimiter)?,
                    self.on_error,
                    // As the socket's lines: bad bytes replaced.
                    super::file::EncodingErrors::Replace,
                ))
            }
            (Format::Jsonl, _) => {
                return Err("`format: jsonl` needs `columns:` (a socket cannot be looked at in advance), e.g. `{created_at: timestamp, tag: text}`".into())
            }
            (Format::Csv, _) => {
                return Err("`format: csv` needs `columns:`, every field of a record in order (a socket sends no header), e.g. `{name: text, amount: integer}`".into())
            }
            (other, _) => {
                return Err(format!(
                    "`format: {}` is for files; a socket reads `lines`, `jsonl` or `csv`",
                    other.name()
                ))
            }
        };
        Ok(BuiltSource::Stream(Box::new(SocketSource {
            config: self.clone(),
            address: format!("{host}:{}", self.port),
            schema: records
                .as_ref()
                .map_or_else(|| text_schema(&self.column), StreamRecords::schema),
            records,
            stats: Arc::new(Stats::default()),
        })))
    }
}

#[derive(Default)]
struct Stats {
    lines: super::LineCounts,
    /// Unfinished lines of connections that broke (reset, timeout): dropped, not counted.
    cut_lines: AtomicU64,
    /// Listen mode: when a broken connection was last warned of, and how many broke since
    /// without a warning (told with the next, or at the end).
    broken: std::sync::Mutex<(Option<tokio::time::Instant>, u64)>,
    /// Listen mode: clients closed by `idle_timeout`.
    idle_closed: AtomicU64,
}

/// The `socket` source at run time: lines (or JSON lines) from TCP connections.
pub struct SocketSource {
    config: SocketSourceConfig,
    address: String,
    schema: SchemaRef,
    /// `format: jsonl` or `csv`.
    records: Option<StreamRecords>,
    stats: Arc<Stats>,
}

/// Bytes read from the socket at a time, and the most handed to the engine in one chunk.
const READ_BYTES: usize = 64 * 1024;

impl StreamSource for SocketSource {
    /// `readStream.format("socket")`: Spark connects to the same host and port.
    fn spark(&self) -> std::result::Result<crate::spark::frame::Frame, String> {
        use crate::spark::frame::col;
        if self.config.mode != SocketMode::Connect {
            return Err(
                "Spark's socket source connects to a server; it cannot listen (`mode: listen`)"
                    .into(),
            );
        }
        if self.records.is_some() {
            return Err("only `format: lines` is read on Spark".into());
        }
        let host = self.config.host.as_deref().unwrap_or("localhost");
        let column = self.schema.field(0).name().clone();
        Ok(
            crate::spark::frame::Frame::read_socket(host, self.config.port)
                .select(vec![col("value").alias(&column)], vec![column]),
        )
    }

    fn raw_text_lines(&self) -> bool {
        self.records.is_none()
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn start(
        &self,
        tx: Sender<Delivery>,
        _from: Option<super::SourcePosition>,
        _redo_until: Option<super::SourcePosition>,
    ) -> tokio::task::JoinHandle<Result<(), String>> {
        let (address, config, stats) = (
            self.address.clone(),
            self.config.clone(),
            self.stats.clone(),
        );
        tokio::spawn(async move {
            match config.mode {
                SocketMode::Connect => connect_loop(&address, &config, &stats, tx).await,
                SocketMode::Listen => listen_loop(&address, &config, &stats, tx).await,
            }
        })
    }

    fn decode(&self, chunks: &[Chunk]) -> crate::error::Result<RecordBatch> {
        if let Some(records) = &self.records {
            return records.decode(chunks, |_, _| format!("a line from {}", self.address));
        }
        self.stats.lines.decode(
            &self.schema,
            chunks,
            super::file::EncodingErrors::Replace,
            &|_, _| format!("a line from {}", self.address),
        )
    }

    fn warnings(&self) -> Vec<String> {
        let mut warnings = self.stats.lines.warnings(self.config.max_line_bytes);
        let cut = self.stats.cut_lines.load(Ordering::Relaxed);
        if cut > 0 {
            warnings.push(format!(
                "{cut} unfinished line(s) of broken connections were dropped"
            ));
        }
        let untold = self
            .stats
            .broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1;
        if untold > 0 {
            warnings.push(format!(
                "{untold} more client connection(s) broke after the last warning of one (told at most every 10 s)"
            ));
        }
        let idle = self.stats.idle_closed.load(Ordering::Relaxed);
        if let (Some(timeout), 1..) = (self.config.idle_timeout, idle) {
            warnings.push(format!(
                "{idle} client(s) were closed after sending nothing for {} (`idle_timeout`)",
                humantime::format_duration(timeout)
            ));
        }
        warnings.extend(self.records.iter().flat_map(StreamRecords::warnings));
        warnings
    }

    fn counters(&self) -> super::SourceCounters {
        let lines = self.stats.lines.counters();
        super::SourceCounters {
            skipped_lines: lines.skipped_lines + self.stats.cut_lines.load(Ordering::Relaxed),
            ..lines
        } + self
            .records
            .as_ref()
            .map(StreamRecords::counters)
            .unwrap_or_default()
    }
}

async fn connect_loop(
    address: &str,
    config: &SocketSourceConfig,
    stats: &Stats,
    tx: Sender<Delivery>,
) -> Result<(), String> {
    let mut backoff = Duration::from_millis(50);
    let mut announced = false;
    // Since when the source has had no connection (for `connect_timeout`).
    let mut unconnected_since = tokio::time::Instant::now();
    loop {
        let attempt = tokio::net::TcpStream::connect(address);
        let connected = match config.connect_timeout {
            // A host that drops the handshake is waited for no longer than the time left.
            Some(limit) => {
                let left = limit.saturating_sub(unconnected_since.elapsed());
                match tokio::time::timeout(left, attempt).await {
                    Ok(connected) => connected,
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the handshake was not answered",
                    )),
                }
            }
            None => attempt.await,
        };
        match connected {
            Ok(stream) => {
                tracing::info!(%address, "connected");
                announced = false;
                let connected = tokio::time::Instant::now();
                match read_lines(stream, config, stats, &tx).await {
                    // The engine is gone.
                    Err(()) => return Ok(()),
                    // A broken connection is not the end of the input, as a closed one is:
                    // the run says so with its exit code (its rows so far are processed).
                    Ok(Some(broke)) if !config.reconnect => {
                        return Err(format!(
                            "the connection to {address} broke: {broke} (`reconnect: true` connects again)"
                        ))
                    }
                    Ok(None) if !config.reconnect => return Ok(()),
                    Ok(Some(broke)) => {
                        tracing::warn!(%address, "the connection broke: {broke}; reconnecting")
                    }
                    Ok(None) => {}
                }
                // A server that accepts and closes at once gets the same backoff as one that
                // refuses: no storm of connections.
                if connected.elapsed() < Duration::from_secs(1) {
                    tracing::debug!(%address, "the server closed the connection at once; reconnecting in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                } else {
                    backoff = Duration::from_millis(50);
                    tracing::info!(%address, "the server closed the connection; reconnecting");
                }
                unconnected_since = tokio::time::Instant::now();
            }
            Err(e) => {
                if !announced {
                    let until = match config.connect_timeout {
                        Some(limit) => format!(
                            "for up to {} (`connect_timeout`)",
                            humantime::format_duration(limit)
                        ),
                        None => "until it accepts connections (`connect_timeout` bounds the wait)"
                            .to_owned(),
                    };
                    tracing::warn!("waiting for {address} ({e}); retrying {until}");
                    announced = true;
                }
                if tx.is_closed() {
                    return Ok(());
                }
                let pause = match config.connect_timeout {
                    Some(limit) => backoff.min(limit.saturating_sub(unconnected_since.elapsed())),
                    None => backoff,
                };
                tokio::time::sleep(pause).await;
                if let Some(limit) = config.connect_timeout {
                    if unconnected_since.elapsed() >= limit {
                        return Err(format!(
                            "no connection to {address} for {} (`connect_timeout`): {e}",
                            humantime::format_duration(limit)
                        ));
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn listen_loop(
    address: &str,
    config: &SocketSourceConfig,
    stats: &Arc<Stats>,
    tx: Sender<Delivery>,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    match listener.local_addr() {
        // Port 0 asks the system for a free port: which one is all a client needs.
        Ok(bound) if config.port == 0 => {
            tracing::warn!("listening for clients on {bound} (`port: 0` took a free port)")
        }
        Ok(bound) => tracing::info!(%bound, "listening for clients"),
        Err(_) => tracing::info!(%address, "listening for clients"),
    }
    let clients = Arc::new(tokio::sync::Semaphore::new(config.max_clients));
    let mut backoff = Duration::from_millis(10);
    let mut last_warning: Option<tokio::time::Instant> = None;
    let mut failures_since_warning = 0u64;
    let mut told_full: Option<tokio::time::Instant> = None;
    loop {
        // At most max_clients at once. A client that comes while every place is taken is
        // accepted and waits for one to free.
        let (permit, accepted) = match clients.clone().try_acquire_owned() {
            Ok(permit) => tokio::select! {
                accepted = listener.accept() => (permit, accepted),
                _ = tx.closed() => return Ok(()),
            },
            Err(_) => {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    // A place freed first: take it as usual.
                    _ = clients.clone().acquire_owned() => continue,
                    _ = tx.closed() => return Ok(()),
                };
                if accepted.is_ok()
                    && told_full.is_none_or(|at| at.elapsed() >= Duration::from_secs(600))
                {
                    // Clients that stay connected and silent lock the others out: say so
                    // (at most every ten minutes), with what frees places.
                    let advice = match config.idle_timeout {
                        Some(timeout) => format!(
                            "one silent for {} is closed",
                            humantime::format_duration(timeout)
                        ),
                        None => "`idle_timeout` closes silent clients".to_owned(),
                    };
                    tracing::warn!(
                        "all {} client places (`max_clients`) are taken: a new client waits until one closes ({advice})",
                        config.max_clients
                    );
                    told_full = Some(tokio::time::Instant::now());
                }
                let permit = tokio::select! {
                    permit = clients.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => return Ok(()),
                    },
                    _ = tx.closed() => return Ok(()),
                };
                (permit, accepted)
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                tracing::info!(%peer, "client connected");
                let (config, stats, tx) = (config.clone(), stats.clone(), tx.clone());
                tokio::spawn(async move {
                    match read_lines(stream, &config, &stats, &tx).await {
                        // Told at most every 10 s, with the count: a peer that opens and
                        // resets thousands of connections must not flood the log and the
                        // page's warnings.
                        Ok(Some(broke)) => {
                            let mut broken = stats.broken.lock().unwrap_or_else(|p| p.into_inner());
                            let now = tokio::time::Instant::now();
                            if broken
                                .0
                                .is_none_or(|at| now - at >= Duration::from_secs(10))
                            {
                                let others = match broken.1 {
                                    0 => String::new(),
                                    n => format!(" ({n} more broke since the last warning)"),
                                };
                                tracing::warn!(
                                    %peer,
                                    "the client's connection broke: {broke}{others}"
                                );
                                *broken = (Some(now), 0);
                            } else {
                                broken.1 += 1;
                                tracing::info!(%peer, "the client's connection broke: {broke}");
                            }
                        }
                        _ => tracing::info!(%peer, "client disconnected"),
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of descriptors (EMFILE) and the like: the pending connection stays
                // queued, so accepting again at once would spin. Back off, and warn at
                // most every 10 s with the count.
                failures_since_warning += 1;
                let now = tokio::time::Instant::now();
                if last_warning.is_none_or(|at| now - at >= Duration::from_secs(10)) {
                    tracing::warn!(
                            "accepting a client failed: {e} ({failures_since_warning} time(s) since the last warning); retrying in {backoff:?}"
                        );
                    last_warning = Some(now);
                    failures_since_warning = 0;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = tx.closed() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Reads one connection to its end, sending chunks of whole lines: `Ok(None)` when the peer
/// closed it, `Ok(Some(why))` when it broke. `Err` means the engine is gone (the channel
/// closed), so reading should stop for good.
async fn read_lines(
    mut stream: tokio::net::TcpStream,
    config: &SocketSourceConfig,
    stats: &Stats,
    tx: &Sender<Delivery>,
) -> Result<Option<String>, ()> {
    let mut lines = LineReader::new(config.max_line_bytes);
    let mut buffer = vec![0u8; READ_BYTES];
    loop {
        let read = stream.read(&mut buffer);
        let read = match config.idle_timeout {
            Some(timeout) => match tokio::time::timeout(timeout, read).await {
                Ok(read) => read,
                Err(_) => {
                    // Closed like a connection that ended: a last line already sent in part
                    // is dropped with the connection, as a broken one's is.
                    stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    if lines.finish().is_some() {
                        stats.cut_lines.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::info!("a client sent nothing for {timeout:?}: closed");
                    return Ok(None);
                }
            },
            None => read.await,
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                // A line cut by a broken connection is likely a fragment: a closed connection's
                // last line counts (as a file's does), a broken one's does not.
                if lines.finish().is_some() {
                    stats.cut_lines.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(Some(e.to_string()));
            }
        };
        let chunk = lines.push(&buffer[..n], &stats.lines.long_lines);
        if !chunk.is_empty() && tx.send(chunk.into()).await.is_err() {
            return Err(());
        }
    }
    if let Some(last) = lines.finish() {
        tx.send(last.into()).await.map_err(|_| ())?;
    }
    Ok(None)
}

/// Cuts the bytes of one connection, read in pieces of any size, into chunks of whole lines
/// (each ending in `\n`). Lines longer than `max_line_bytes` (not counting the `\n`) are
/// skipped and counted, and never held whole.
pub struct LineReader {
    max_line_bytes: usize,
    /// The unfinished line of the previous read.
    pending: Vec<u8>,
    /// Inside a line already found too long: drop everything up to its newline.
    skipping: bool,
}

impl LineReader {
    /// A reader that skips lines longer than `max_line_bytes` (not counting the `\n`).
    pub fn new(max_line_bytes: usize) -> Self {
        LineReader {
            max_line_bytes,
            pending: Vec::new(),
            skipping: false,
        }
    }

    /// Takes the next bytes read and returns the whole lines they complete (maybe none);
    /// every skipped line adds one to `long_lines`.
    pub fn push(&mut self, mut data: &[u8], long_lines: &AtomicU64) -> Chunk {
        // `chunk` starts with the unfinished line of the previous read; the current line
        // starts at `line_start`.
        let mut chunk = std::mem::take(&mut self.pending);
        let mut line_start = 0;
        while !data.is_empty() {
            match memchr::memchr(b'\n', data) {
                Some(at) => {
                    if self.skipping {
                        self.skipping = false;
                    } else if chunk.len() - line_start + at > self.max_line_bytes {
                        long_lines.fetch_add(1, Ordering::Relaxed);
                        chunk.truncate(line_start);
                    } else {
                        chunk.extend_from_slice(&data[..=at]);
                    }
                    line_start = chunk.len();
                    data = &data[at + 1..];
                }
                None => {
                    if !self.skipping {
                        if chunk.len() - line_start + data.len() > self.max_line_bytes {
                            // Too long already: drop it and everything up to its newline.
                            long_lines.fetch_add(1, Ordering::Relaxed);
                            chunk.truncate(line_start);
                            self.skipping = true;
                        } else {
                            chunk.extend_from_slice(data);
                        }
                    }
                    data = &[];
                }
            }
        }
        self.pending = chunk.split_off(line_start);
        chunk
    }

    /// The connection ended: a final line without a newline is kept (with one added).
    pub fn finish(self) -> Option<Chunk> {
        let mut last = self.pending;
        if last.is_empty() || self.skipping {
            return None;
        }
        last.push(b'\n');
        Some(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(yaml: &str) -> Box<dyn StreamSource> {
        let config: SocketSourceConfig = serde_saphyr::from_str(yaml).unwrap();
        match config
            .build(&SourceContext {
                base_dir: std::path::Path::new("."),
                streaming: false,
            })
            .unwrap()
        {
            BuiltSource::Stream(s) => s,
            BuiltSource::Batch(_) => panic!("socket is a stream source"),
        }
    }

    #[test]
    fn idle_timeout_is_for_listening() {
        let built = |yaml: &str| {
            serde_saphyr::from_str::<SocketSourceConfig>(yaml)
                .unwrap()
                .build(&SourceContext {
                    base_dir: std::path::Path::new("."),
                    streaming: true,
                })
                .err()
        };
        let connect = built("{port: 1, idle_timeout: 5m}").unwrap();
        assert!(
            connect.contains("`idle_timeout` is for `mode: listen`"),
            "{connect}"
        );
        assert!(built("{port: 1, mode: listen, idle_timeout: 5m}").is_none());
        let listen = built("{port: 1, mode: listen, connect_timeout: 5s}").unwrap();
        assert!(
            listen.contains("`connect_timeout` is for `mode: connect`"),
            "{listen}"
        );
        assert!(built("{port: 1, connect_timeout: 5s}").is_none());
    }

    #[test]
    fn decodes_lines_with_crlf_and_bad_bytes() {
        let src = source("port: 1");
        let batch = src
            .decode(&[b"a b\r\nc\n".to_vec(), b"d\xff\n".to_vec()])
            .unwrap();
        let lines: Vec<_> = (0..batch.num_rows())
            .map(|r| crate::data::cell(batch.column(0).as_ref(), r).to_text())
            .collect();
        assert_eq!(lines, ["a b", "c", "d\u{fffd}"]);
        assert!(src.warnings()[0].contains("invalid UTF-8"));
    }

    #[test]
    fn reads_a_server_skipping_long_lines_and_keeping_the_last() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let (mut s, _) = listener.accept().await.unwrap();
                s.write_all(b"one\ntwo\n").await.unwrap();
                s.write_all(&vec![b'x'; 300]).await.unwrap();
                s.write_all(b"\nthree\nlast").await.unwrap();
            });
            let src = source(&format!(
                "{{host: 127.0.0.1, port: {port}, max_line_bytes: 100}}"
            ));
            let (tx, mut rx) = tokio::sync::mpsc::channel(4);
            src.start(tx, None, None);
            let mut chunks = Vec::new();
            while let Some(delivery) = rx.recv().await {
                assert!(delivery.resume_at.is_none(), "a socket has no positions");
                chunks.push(delivery.chunk);
            }
            let batch = src.decode(&chunks).unwrap();
            let lines: Vec<_> = (0..batch.num_rows())
                .map(|r| crate::data::cell(batch.column(0).as_ref(), r).to_text())
                .collect();
            assert_eq!(lines, ["one", "two", "three", "last"]);
            assert!(src.warnings()[0].contains("1 line(s) longer than max_line_bytes"));
        });
    }
}
