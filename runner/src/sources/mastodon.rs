//! `mastodon`: statuses from a Mastodon live stream (Server-Sent Events over HTTPS, rustls),
//! one row per `update` event. The protocol facts it follows: the streaming host is discovered
//! through `/api/v2/instance`; every stream needs a user token (`Authorization: Bearer`);
//! the body is SSE with `:)` and `:thump` comments; `update` carries a Status JSON, `delete` a
//! bare id, `status.update` an edit (both counted, otherwise ignored); unknown events are
//! skipped; one malformed payload is counted and skipped. 4xx answers (but 429) are fatal with
//! the server's message; 429, 5xx, stalls and dropped connections reconnect with exponential
//! backoff and jitter. The token never appears in any log line, error or file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::Sender;

use super::{BuildSource, BuiltSource, Chunk, Delivery, SourceContext, StreamSource};

/// Stream mode. The streaming host is found through the instance's `/api/v2/instance`
/// (`configuration.urls.streaming`), falling back to the instance. One row per `update` event:
/// `id`, `created_at` (a timestamp), `username`, `acct`, `language`, `content` (the HTML as plain
/// text), `tags` (a list of the tag names as sent: `explode` it, then `lowercase`) and `url`.
/// `delete` and `status.update` events are counted and otherwise ignored, unknown events skipped,
/// malformed ones skipped and counted; the counts are printed when the stream stops.
///
/// The access token (scope `read` or `read:statuses`; Mastodon 4.2+ requires one for every
/// stream) is read from the variable `token_env` names, sent as `Authorization: Bearer`, and
/// never logged, written or shown in an error. 401 and 400 answers end the run (exit 1) with the
/// server's message; 429 (after its `Retry-After`), 5xx answers, stalls and dropped connections
/// reconnect with exponential backoff and jitter. Mastodon does not replay what was missed while
/// disconnected.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MastodonSourceConfig {
    /// The instance, e.g. `https://mastodon.social` (`http://` for local servers).
    #[serde(deserialize_with = "crate::settings::env::string")]
    pub instance: String,
    /// `public`, `public:local`, `public:remote` or `hashtag:<tag>`.
    #[serde(
        default = "default_stream",
        deserialize_with = "crate::settings::env::string"
    )]
    pub stream: String,
    /// The environment variable holding the access token (never the token itself).
    #[serde(
        default = "default_token_env",
        deserialize_with = "crate::settings::env::string"
    )]
    pub token_env: String,
    /// Stop after this many statuses.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub limit: Option<u64>,
    /// Only statuses with at least one hashtag.
    #[serde(default)]
    pub only_with_tags: bool,
    /// Only statuses in these languages (ISO 639-1 codes).
    #[serde(default, deserialize_with = "crate::settings::env::strings")]
    pub languages: Vec<String>,
    /// Give up connecting after this long (e.g. `10s`).
    #[serde(default, deserialize_with = "crate::settings::duration::opt")]
    #[schemars(with = "Option<String>")]
    pub connect_timeout: Option<Duration>,
    /// Reconnect when no byte (heartbeats included) arrives for this long, or a request gets
    /// no answer; default 60 s.
    #[serde(default, deserialize_with = "crate::settings::duration::opt")]
    #[schemars(with = "Option<String>")]
    pub idle_timeout: Option<Duration>,
    /// Give up after this many failed connection attempts in a row (default: never).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Also write every received event (type, payload, receive time) to this JSONL file,
    /// created (or replaced) when the first event arrives.
    #[serde(default, deserialize_with = "crate::settings::env::opt_path")]
    pub record_to: Option<PathBuf>,
    /// A larger event (a status is a few KiB) is skipped and counted instead of held in
    /// memory. Default 1 MiB.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
}

fn default_max_event_bytes() -> usize {
    1 << 20
}

/// Bytes of an error response read for its message; the rest is not read.
const MAX_ERROR_BODY: usize = 64 << 10;

/// Cuts an SSE body into whole events (each chunk ends at an event's blank line) so the parser
/// never holds more than one event, and drops an event longer than `cap` as its bytes arrive,
/// counting it. Memory stays at most `cap` whatever the server sends.
pub struct EventFramer {
    event: Vec<u8>,
    cap: usize,
    skipping: bool,
    after_line_end: bool,
}

impl EventFramer {
    /// A framer that drops events longer than `cap` bytes.
    pub fn new(cap: usize) -> Self {
        EventFramer {
            event: Vec::new(),
            cap,
            skipping: false,
            after_line_end: false,
        }
    }

    /// The whole events `bytes` completes (their bytes, boundaries included).
    pub fn feed(&mut self, bytes: &[u8], oversized: &AtomicU64) -> Vec<u8> {
        let mut complete = Vec::new();
        for &byte in bytes {
            if !self.skipping {
                self.event.push(byte);
            }
            // A blank line ends an event: a line end right after another (`\r` is part of one).
            let boundary = match byte {
                b'\n' => std::mem::replace(&mut self.after_line_end, true),
                b'\r' => false,
                _ => {
                    self.after_line_end = false;
                    false
                }
            };
            if boundary {
                if !std::mem::take(&mut self.skipping) {
                    complete.extend_from_slice(&self.event);
                }
                self.event.clear();
            } else if !self.skipping && self.event.len() > self.cap {
                self.skipping = true;
                self.event = Vec::new();
                oversized.fetch_add(1, Ordering::Relaxed);
            }
        }
        complete
    }
}

/// The access token from `var`, or why it cannot be one: a header value cannot hold a newline
/// or another control character, so such a token would only fail on every retry.
fn read_token(var: &str) -> Result<String, String> {
    let token = std::env::var(var).map_err(|_| {
        format!(
            "the environment variable {var} is not set: create an access token with the `read:statuses` scope (Preferences → Development → New application) and export it"
        )
    })?;
    if token.trim().is_empty() {
        return Err(format!("the environment variable {var} is empty"));
    }
    if let Some(at) = token.chars().position(|c| c.is_control()) {
        return Err(format!(
            "the token in {var} has a control character (a newline?) at character {}; export the token alone",
            at + 1
        ));
    }
    Ok(token)
}

fn default_stream() -> String {
    "public".into()
}
fn default_token_env() -> String {
    "MASTODON_ACCESS_TOKEN".into()
}

/// The columns of a status row.
pub fn status_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("created_at", crate::data::timestamp_type(), true),
        Field::new("username", DataType::Utf8, true),
        Field::new("acct", DataType::Utf8, true),
        Field::new("language", DataType::Utf8, true),
        Field::new("content", DataType::Utf8, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            false,
        ),
        Field::new("url", DataType::Utf8, true),
    ]))
}

/// The streaming endpoint path and query for a `stream:` value.
pub fn stream_endpoint(stream: &str) -> Result<(String, Vec<(String, String)>), String> {
    let path = |p: &str| format!("/api/v1/streaming/{p}");
    match stream {
        "public" => Ok((path("public"), vec![])),
        "public:local" => Ok((path("public/local"), vec![])),
        "public:remote" => Ok((path("public/remote"), vec![])),
        other => match other.strip_prefix("hashtag:") {
            Some(tag) if !tag.trim().is_empty() => {
                let (tag, local) = match tag.strip_suffix(":local") {
                    Some(t) => (t, true),
                    None => (tag, false),
                };
                let tag = tag.trim_start_matches('#').to_owned();
                Ok((path(if local { "hashtag/local" } else { "hashtag" }), vec![("tag".into(), tag)]))
            }
            Some(_) => Err("`hashtag:` needs a tag name, e.g. `hashtag:rust`".into()),
            None => Err(format!(
                "unknown stream `{other}`{}; use public, public:local, public:remote or hashtag:<tag>",
                crate::settings::suggestion(other, ["public", "public:local", "public:remote"])
            )),
        },
    }
}

impl BuildSource for MastodonSourceConfig {
    fn build(&self, ctx: &SourceContext) -> Result<BuiltSource, String> {
        // The token is a secret for every output, not only this source's errors.
        if let Ok(token) = std::env::var(&self.token_env) {
            crate::redact::register(&token);
        }
        let instance = self.instance.trim_end_matches('/').to_owned();
        if !(instance.starts_with("https://") || instance.starts_with("http://")) {
            return Err(format!(
                "instance must be an https:// URL (got `{instance}`)"
            ));
        }
        stream_endpoint(&self.stream)?;
        if self.limit == Some(0) {
            return Err("`limit` must be at least 1 (leave it out for no limit)".into());
        }
        if self.token_env.is_empty() {
            return Err("`token_env` is empty".into());
        }
        Ok(BuiltSource::Stream(Box::new(MastodonSource {
            config: self.clone(),
            instance,
            record_to: self
                .record_to
                .as_ref()
                .map(|p| crate::settings::resolve_against(ctx.base_dir, p)),
            stats: Arc::new(EventStats::default()),
        })))
    }
}

/// What the event handling saw, for the end-of-run summary.
#[derive(Default)]
pub struct EventStats {
    /// `update` events that became rows of an epoch.
    pub updates: AtomicU64,
    /// `delete` events, ignored.
    pub deletes: AtomicU64,
    /// `status.update` events (edits), ignored.
    pub edits: AtomicU64,
    /// Events of any other kind, skipped.
    pub unknown: AtomicU64,
    /// Events whose JSON could not be read (an `update`'s status, a row line), skipped.
    pub malformed: AtomicU64,
    /// Statuses left out by `only_with_tags` or `languages`.
    pub filtered: AtomicU64,
    /// Events longer than `max_event_bytes`, skipped.
    pub oversized: AtomicU64,
    /// Why the first malformed event could not be read.
    first_malformed: std::sync::Mutex<Option<String>>,
}

impl EventStats {
    /// Counts a malformed event; returns whether it is the first (its reason is kept).
    pub fn malformed(&self, why: impl std::fmt::Display) -> bool {
        let first = self.malformed.fetch_add(1, Ordering::Relaxed) == 0;
        if first {
            *self
                .first_malformed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(why.to_string());
        }
        first
    }

    /// The counts in one line for the end of the run.
    pub fn summary(&self) -> String {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{} statuses; {} deletes and {} edits ignored, {} unknown events skipped, {} statuses filtered out",
            load(&self.updates),
            load(&self.deletes),
            load(&self.edits),
            load(&self.unknown),
            load(&self.filtered)
        )
    }

    /// The counts the run summary reports: malformed and oversized events.
    pub fn counters(&self) -> super::SourceCounters {
        super::SourceCounters {
            malformed_events: self.malformed.load(Ordering::Relaxed)
                + self.oversized.load(Ordering::Relaxed),
            ..Default::default()
        }
    }

    /// A warning per kind of event skipped as unreadable (malformed or oversized); empty when none
    /// was.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let malformed = self.malformed.load(Ordering::Relaxed);
        if malformed > 0 {
            let first = self
                .first_malformed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .as_ref()
                .map_or(String::new(), |why| {
                    format!(" (the first: {})", crate::error::escape_controls(why))
                });
            warnings.push(format!(
                "{malformed} event(s) had malformed JSON and were skipped{first}"
            ));
        }
        let oversized = self.oversized.load(Ordering::Relaxed);
        if oversized > 0 {
            warnings.push(format!(
                "{oversized} event(s) longer than max_event_bytes were skipped"
            ));
        }
        warnings
    }
}

/// The status fields a row needs; everything else in the payload is ignored.
#[derive(Debug, Deserialize)]
struct Status {
    id: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    account: Option<Account>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Account {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    acct: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Tag {
    name: String,
}

/// One row, as handed from the source task to the engine (one JSON line each).
#[derive(Debug, Serialize, Deserialize)]
struct Row {
    id: String,
    created_at: Option<String>,
    username: Option<String>,
    acct: Option<String>,
    language: Option<String>,
    content: Option<String>,
    tags: Vec<String>,
    url: Option<String>,
}

/// Filters applied to statuses before they become rows.
#[derive(Clone)]
pub struct Filters {
    /// Leave out statuses without a hashtag.
    pub only_with_tags: bool,
    /// Keep only statuses in these languages (ISO 639-1 codes); empty keeps every language.
    pub languages: Vec<String>,
}

/// Turns one SSE event into a row line (JSON + `\n`), or nothing (counted in `stats`).
pub fn event_to_line(
    event: &str,
    data: &str,
    filters: &Filters,
    stats: &EventStats,
) -> Option<Vec<u8>> {
    match event {
        "update" => {}
        "delete" => {
            stats.deletes.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        "status.update" => {
            stats.edits.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        _ => {
            stats.unknown.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    }
    let status: Status = match serde_json::from_str(data) {
        Ok(status) => status,
        Err(e) => {
            if stats.malformed(&e) {
                tracing::warn!("skipping an update event with malformed JSON ({e}); further ones are only counted");
            }
            return None;
        }
    };
    let language_ok = filters.languages.is_empty()
        || status
            .language
            .as_deref()
            .is_some_and(|l| filters.languages.iter().any(|want| want == l));
    if (filters.only_with_tags && status.tags.is_empty()) || !language_ok {
        stats.filtered.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let account = status.account.unwrap_or(Account {
        username: None,
        acct: None,
    });
    let row = Row {
        id: status.id,
        created_at: status.created_at,
        username: account.username,
        acct: account.acct,
        language: status.language,
        content: status.content.as_deref().map(html_to_text),
        tags: status.tags.into_iter().map(|t| t.name).collect(),
        url: status.url,
    };
    let mut line = serde_json::to_vec(&row).ok()?;
    line.push(b'\n');
    Some(line)
}

/// What a connection does with a response body that arrives in `pieces` (cut anywhere, as the
/// network delivers it): SSE parsing, then [`event_to_line`] for each event. Returns the row
/// lines and, if the SSE stream broke (invalid UTF-8), why; a connection would reconnect there.
/// The entry point of the tests and the fuzz target, which feed bodies without a server.
pub fn body_to_lines(
    pieces: &[&[u8]],
    filters: &Filters,
    stats: &EventStats,
    max_event_bytes: usize,
) -> (Vec<Chunk>, Option<String>) {
    use std::task::{Context, Poll};
    let mut framer = EventFramer::new(max_event_bytes);
    let bytes = futures_util::stream::iter(
        pieces
            .iter()
            .map(|piece| Ok::<_, std::convert::Infallible>(framer.feed(piece, &stats.oversized))),
    );
    let mut events = std::pin::pin!(eventsource_stream::Eventsource::eventsource(bytes));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut lines = Vec::new();
    loop {
        // Every piece is ready, so the stream never waits.
        match futures_util::Stream::poll_next(events.as_mut(), &mut cx) {
            Poll::Ready(Some(Ok(event))) => {
                lines.extend(event_to_line(&event.event, &event.data, filters, stats));
            }
            Poll::Ready(Some(Err(e))) => return (lines, Some(e.to_string())),
            Poll::Ready(None) | Poll::Pending => return (lines, None),
        }
    }
}

/// Status HTML as plain text: paragraphs and line breaks become newlines, tags go, entities are
/// decoded.
pub fn html_to_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('>') else {
            text.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let tag = rest[open + 1..open + close].trim().to_ascii_lowercase();
        if tag.starts_with("br") || tag == "/p" {
            text.push('\n');
        }
        rest = &rest[open + close + 1..];
    }
    text.push_str(rest);
    html_escape::decode_html_entities(text.trim_end()).into_owned()
}

/// Decodes row lines into a batch with the status columns.
pub fn decode_rows(schema: &SchemaRef, chunks: &[Chunk], stats: &EventStats) -> RecordBatch {
    let mut text_columns: Vec<StringBuilder> = (0..7).map(|_| StringBuilder::new()).collect();
    let mut tags = ListBuilder::new(StringBuilder::new());
    for line in chunks
        .iter()
        .flat_map(|c| c.split(|&b| b == b'\n'))
        .filter(|l| !l.is_empty())
    {
        let row = match serde_json::from_slice::<Row>(line) {
            Ok(row) => {
                // Counted here, not when read: a stream stopped by `max_epochs` has read ahead.
                stats.updates.fetch_add(1, Ordering::Relaxed);
                row
            }
            Err(e) => {
                stats.malformed(e);
                continue;
            }
        };
        let values = [
            Some(row.id),
            row.created_at,
            row.username,
            row.acct,
            row.language,
            row.content,
            row.url,
        ];
        for (builder, value) in text_columns.iter_mut().zip(values) {
            builder.append_option(value);
        }
        for tag in row.tags {
            tags.values().append_value(tag);
        }
        tags.append(true);
    }
    let mut columns: Vec<ArrayRef> = text_columns
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    let url = columns.pop().expect("seven text columns");
    // `created_at` is a timestamp (RFC 3339 in the stream; one that does not parse is null).
    let created_at: arrow_array::TimestampMicrosecondArray =
        arrow_array::cast::AsArray::as_string::<i32>(columns[1].as_ref())
            .iter()
            .map(|v| v.and_then(crate::data::parse_timestamp))
            .collect();
    columns[1] = Arc::new(created_at.with_timezone("UTC"));
    columns.push(Arc::new(tags.finish()));
    columns.push(url);
    RecordBatch::try_new(schema.clone(), columns).expect("columns follow the status schema")
}

/// The `mastodon` source at run time: statuses from an instance's live stream (recorded to a tape
/// with `record_to`).
pub struct MastodonSource {
    config: MastodonSourceConfig,
    instance: String,
    record_to: Option<PathBuf>,
    stats: Arc<EventStats>,
}

/// Replaces the token wherever it could appear.
fn redact(text: &str, token: &str) -> String {
    if token.len() < 4 {
        return text.to_owned();
    }
    text.replace(token, "[redacted]")
}

/// Why a connection attempt ended.
enum Ended {
    /// The stream should be retried (drop, stall, 429, 5xx): why, the server's Retry-After,
    /// and whether events had arrived on this connection (then the backoff starts over).
    Retry(String, Option<Duration>, bool),
    /// Nothing more to do (limit reached, or the engine is gone).
    Done,
}

impl StreamSource for MastodonSource {
    fn spark(&self) -> std::result::Result<crate::spark::frame::Frame, String> {
        Err(crate::spark::frame::MASTODON_REFUSAL.into())
    }

    fn schema(&self) -> SchemaRef {
        status_schema()
    }

    fn start(
        &self,
        tx: Sender<Delivery>,
        _from: Option<super::SourcePosition>,
        _redo_until: Option<super::SourcePosition>,
    ) -> tokio::task::JoinHandle<Result<(), String>> {
        let (config, instance, record_to, stats) = (
            self.config.clone(),
            self.instance.clone(),
            self.record_to.clone(),
            self.stats.clone(),
        );
        tokio::spawn(async move {
            let token = read_token(&config.token_env)?;
            run_stream(&config, &instance, record_to, &stats, &token, tx)
                .await
                .map_err(|e| redact(&e, &token))
        })
    }

    fn decode(&self, chunks: &[Chunk]) -> crate::error::Result<RecordBatch> {
        Ok(decode_rows(&status_schema(), chunks, &self.stats))
    }

    fn warnings(&self) -> Vec<String> {
        self.stats.warnings()
    }

    fn summary(&self) -> Option<String> {
        Some(self.stats.summary())
    }

    fn counters(&self) -> super::SourceCounters {
        self.stats.counters()
    }
}

async fn run_stream(
    config: &MastodonSourceConfig,
    instance: &str,
    record_to: Option<PathBuf>,
    stats: &EventStats,
    token: &str,
    tx: Sender<Delivery>,
) -> Result<(), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .user_agent(concat!("runner/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(config.connect_timeout.unwrap_or(Duration::from_secs(20)))
        .build()
        .map_err(|e| format!("cannot set up HTTPS: {e}"))?;
    // Created at the first event: a run that fails before (a refused token) leaves an earlier
    // recording at that path as it was.
    let mut recorder = record_to.map(Recording::Due);
    let idle = config.idle_timeout.unwrap_or(Duration::from_secs(60));
    let streaming = discover_streaming_host(&client, instance, idle).await;
    let (path, query) = stream_endpoint(&config.stream)?;
    let url = format!("{streaming}{path}");
    let filters = Filters {
        only_with_tags: config.only_with_tags,
        languages: config.languages.clone(),
    };
    let started = Instant::now();
    let mut sent = 0u64;
    let mut failures = 0u32;
    loop {
        let attempt = connect_once(
            &client,
            &url,
            &query,
            token,
            idle,
            &filters,
            stats,
            config.limit,
            config.max_event_bytes,
            &mut sent,
            &tx,
            &mut recorder,
            started,
        )
        .await?;
        match attempt {
            Ended::Done => return Ok(()),
            Ended::Retry(why, retry_after, streamed) => {
                if streamed {
                    failures = 0;
                }
                failures += 1;
                if config.max_retries.is_some_and(|max| failures > max) {
                    return Err(format!(
                        "giving up on {url} after {} attempts: {why}",
                        failures
                    ));
                }
                // Exponential backoff with jitter: 0.5 s, 1 s, 2 s ... up to 60 s, ±25 %.
                let base = Duration::from_millis(500)
                    * 2u32.saturating_pow(failures.saturating_sub(1).min(7));
                let base = base.min(Duration::from_secs(60));
                let jitter = 0.75 + (started.elapsed().subsec_nanos() % 1000) as f64 / 2000.0;
                // A server that says when to come back (429 Retry-After) is listened to.
                let wait = base.mul_f64(jitter).max(retry_after.unwrap_or_default());
                tracing::warn!(
                    "stream interrupted ({why}); reconnecting in {:.1} s (attempt {})",
                    wait.as_secs_f64(),
                    failures + 1
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The most bytes of `/api/v2/instance` read (Mastodon's is a few KiB).
const MAX_INSTANCE_BODY: usize = 1 << 20;

/// The streaming base URL from `/api/v2/instance` (`wss://` → `https://`), or the instance:
/// when that answer does not come within `wait`, is longer than `MAX_INSTANCE_BODY`, names
/// no streaming URL, or names one without TLS for an `https://` instance (the token would
/// travel in clear).
async fn discover_streaming_host(
    client: &reqwest::Client,
    instance: &str,
    wait: Duration,
) -> String {
    let found = async {
        let mut response = client
            .get(format!("{instance}/api/v2/instance"))
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.ok()? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_INSTANCE_BODY {
                tracing::warn!(
                    "{instance}/api/v2/instance answered more than {} KiB: not read further",
                    MAX_INSTANCE_BODY >> 10
                );
                return None;
            }
        }
        let body: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let named = body.pointer("/configuration/urls/streaming")?.as_str()?;
        streaming_base(instance, named)
            .map_err(|why| {
                tracing::warn!(
                    "{instance} names `{}` as its streaming address: not used ({why}); streaming from the instance",
                    crate::error::escape_controls(named)
                )
            })
            .ok()
    };
    match tokio::time::timeout(wait, found).await {
        Ok(Some(url)) => {
            tracing::info!(streaming = %url, "streaming host from /api/v2/instance");
            url
        }
        Ok(None) => instance.to_owned(),
        Err(_) => {
            tracing::warn!(
                "{instance}/api/v2/instance did not answer within {} s: streaming from the instance",
                wait.as_secs_f64()
            );
            instance.to_owned()
        }
    }
}

/// The streaming base URL an instance's `configuration.urls.streaming` names, as HTTP(S)
/// (`wss://` → `https://`); refused when it is no web address, or when it would take the
/// token off TLS (an `https://` instance naming `ws://` or `http://`).
fn streaming_base(instance: &str, named: &str) -> Result<String, &'static str> {
    let named = named.trim_end_matches('/');
    let url = if let Some(rest) = named.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = named.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        named.to_owned()
    };
    if url.starts_with("https://") {
        Ok(url)
    } else if !url.starts_with("http://") {
        Err("not a ws://, wss:// or http(s):// address")
    } else if instance.starts_with("https://") {
        Err("the token would leave TLS")
    } else {
        Ok(url)
    }
}

/// Where received events are recorded (`record_to`): the file is created at the first event.
enum Recording {
    Due(PathBuf),
    Open(tokio::fs::File),
}

impl Recording {
    async fn write(&mut self, line: &[u8]) -> Result<(), String> {
        if let Recording::Due(path) = self {
            let file = tokio::fs::File::create(&*path)
                .await
                .map_err(|e| format!("cannot write the recording {}: {e}", path.display()))?;
            *self = Recording::Open(file);
        }
        match self {
            Recording::Open(file) => file
                .write_all(line)
                .await
                .map_err(|e| format!("cannot write the recording: {e}")),
            Recording::Due(_) => Ok(()),
        }
    }

    async fn flush(&mut self) {
        if let Recording::Open(file) = self {
            let _ = file.flush().await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn connect_once(
    client: &reqwest::Client,
    url: &str,
    query: &[(String, String)],
    token: &str,
    idle: Duration,
    filters: &Filters,
    stats: &EventStats,
    limit: Option<u64>,
    max_event_bytes: usize,
    sent: &mut u64,
    tx: &Sender<Delivery>,
    recorder: &mut Option<Recording>,
    started: Instant,
) -> Result<Ended, String> {
    // A server that takes the connection and never answers is a stall like any other.
    let request = client
        .get(url)
        .query(query)
        .bearer_auth(token)
        .header("Accept", "text/event-stream")
        .send();
    let response = match tokio::time::timeout(idle, request).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            return Ok(Ended::Retry(
                format!("cannot connect to {url}: {}", crate::error::error_chain(&e)),
                None,
                false,
            ))
        }
        Err(_) => {
            return Ok(Ended::Retry(
                format!("{url} did not answer within {} s", idle.as_secs_f64()),
                None,
                false,
            ))
        }
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|seconds| Duration::from_secs(seconds.min(3600)));
    if !status.is_success() {
        // The start of the body only: an error page of any size costs at most MAX_ERROR_BODY.
        let mut response = response;
        let mut head = Vec::new();
        while head.len() < MAX_ERROR_BODY {
            match tokio::time::timeout(idle, response.chunk()).await {
                Ok(Ok(Some(chunk))) => head.extend_from_slice(&chunk),
                _ => break,
            }
        }
        head.truncate(MAX_ERROR_BODY);
        let body = String::from_utf8_lossy(&head).into_owned();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .map(|m| {
                crate::error::escape_controls(&m)
                    .chars()
                    .take(300)
                    .collect::<String>()
            })
            // An HTML error page: its text on one line, shortened.
            .unwrap_or_else(|| {
                let text = html_to_text(&body);
                text.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .chars()
                    .take(200)
                    .collect()
            });
        if status.as_u16() == 429 || status.is_server_error() {
            return Ok(Ended::Retry(
                format!("{url} answered {status}: {message}"),
                retry_after,
                false,
            ));
        }
        let hint = match status.as_u16() {
            401 => " Check the token in the environment variable: it must be a user token with the `read` or `read:statuses` scope.",
            400 => " Check `stream:` (for hashtag streams, `hashtag:<tag>`).",
            _ => "",
        };
        return Err(format!("{url} answered {status}: {message}.{hint}"));
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if let Some(content_type) = content_type {
        if !content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("text/event-stream")
        {
            return Err(format!(
                "{url} answered {status} with `{}`, not an event stream (text/event-stream): is `instance` a Mastodon server?",
                crate::error::escape_controls(&content_type)
            ));
        }
    }
    tracing::info!(%url, "streaming");
    let last_byte = Arc::new(AtomicU64::new(0));
    let clock = Instant::now();
    let seen = last_byte.clone();
    let mut framer = EventFramer::new(max_event_bytes);
    let oversized = &stats.oversized;
    let bytes = response
        .bytes_stream()
        .inspect(move |_| {
            seen.store(clock.elapsed().as_millis() as u64, Ordering::Relaxed);
        })
        .map(move |piece| piece.map(|bytes| framer.feed(&bytes, oversized)));
    let mut events = eventsource_stream::Eventsource::eventsource(bytes);
    let mut check = tokio::time::interval(Duration::from_millis(250).min(idle));
    let mut streamed = false;
    loop {
        tokio::select! {
            next = events.next() => match next {
                None => return Ok(Ended::Retry("the server closed the stream".into(), None, streamed)),
                Some(Err(e)) => return Ok(Ended::Retry(format!("the stream broke: {e}"), None, streamed)),
                Some(Ok(event)) => {
                    streamed = true;
                    if let Some(recording) = recorder.as_mut() {
                        let record = serde_json::json!({
                            "event": event.event,
                            "data": event.data,
                            "t": started.elapsed().as_secs_f64(),
                        });
                        let mut line = record.to_string();
                        line.push('\n');
                        recording.write(line.as_bytes()).await?;
                    }
                    if let Some(line) = event_to_line(&event.event, &event.data, filters, stats) {
                        if tx.send(line.into()).await.is_err() {
                            return Ok(Ended::Done);
                        }
                        *sent += 1;
                        if limit.is_some_and(|l| *sent >= l) {
                            tracing::info!("limit of {sent} statuses reached");
                            if let Some(recording) = recorder.as_mut() {
                                recording.flush().await;
                            }
                            return Ok(Ended::Done);
                        }
                    }
                }
            },
            _ = check.tick() => {
                let quiet = clock.elapsed().saturating_sub(Duration::from_millis(last_byte.load(Ordering::Relaxed)));
                if quiet >= idle {
                    return Ok(Ended::Retry(format!("no data or heartbeat for {} s", idle.as_secs()), None, streamed));
                }
            }
            _ = tx.closed() => return Ok(Ended::Done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPDATE: &str = r#"{"id":"113245678901234567","created_at":"2025-01-15T12:34:56.789Z","language":"en","url":"https://mastodon.example/@alice/1","content":"<p>Streaming &amp; counts in <a href=\"https://mastodon.example/tags/Rust\" class=\"mention hashtag\" rel=\"tag\">#<span>Rust</span></a></p>","reblog":null,"account":{"id":"1","username":"alice","acct":"alice"},"tags":[{"name":"Rust","url":"https://mastodon.example/tags/rust"}],"quote":null}"#;

    #[test]
    fn update_events_become_rows_and_others_are_counted() {
        let stats = EventStats::default();
        let filters = Filters {
            only_with_tags: false,
            languages: vec![],
        };
        let line = event_to_line("update", UPDATE, &filters, &stats).unwrap();
        assert!(event_to_line("delete", "107214471804101576", &filters, &stats).is_none());
        assert!(event_to_line("status.update", UPDATE, &filters, &stats).is_none());
        assert!(event_to_line("announcement", "{}", &filters, &stats).is_none());
        assert!(event_to_line("update", "{not json", &filters, &stats).is_none());
        let batch = decode_rows(&status_schema(), &[line], &stats);
        assert_eq!(batch.num_rows(), 1);
        let cell = |name: &str| {
            crate::data::cell(
                batch
                    .column(batch.schema().index_of(name).unwrap())
                    .as_ref(),
                0,
            )
            .to_text()
        };
        assert_eq!(cell("username"), "alice");
        assert_eq!(cell("tags"), "Rust");
        assert_eq!(cell("content"), "Streaming & counts in #Rust");
        let summary = stats.summary();
        assert!(
            summary.contains("1 statuses; 1 deletes and 1 edits ignored, 1 unknown"),
            "{summary}"
        );
        assert!(stats.warnings()[0].contains("1 event(s) had malformed JSON"));
    }

    #[test]
    fn filters_drop_untagged_and_other_languages() {
        let stats = EventStats::default();
        let untagged = UPDATE.replace(
            r#""tags":[{"name":"Rust","url":"https://mastodon.example/tags/rust"}]"#,
            r#""tags":[]"#,
        );
        let tagged_only = Filters {
            only_with_tags: true,
            languages: vec![],
        };
        assert!(event_to_line("update", &untagged, &tagged_only, &stats).is_none());
        let german = Filters {
            only_with_tags: false,
            languages: vec!["de".into()],
        };
        assert!(event_to_line("update", UPDATE, &german, &stats).is_none());
        assert_eq!(stats.filtered.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn streams_map_to_endpoints() {
        assert_eq!(
            stream_endpoint("public").unwrap().0,
            "/api/v1/streaming/public"
        );
        assert_eq!(
            stream_endpoint("public:local").unwrap().0,
            "/api/v1/streaming/public/local"
        );
        let (path, query) = stream_endpoint("hashtag:#Rust Lang").unwrap();
        assert_eq!(path, "/api/v1/streaming/hashtag");
        assert_eq!(query, [("tag".to_owned(), "Rust Lang".to_owned())]);
        assert!(stream_endpoint("hashtag:")
            .unwrap_err()
            .contains("needs a tag"));
        assert!(stream_endpoint("publc")
            .unwrap_err()
            .contains("did you mean `public`?"));
    }

    #[test]
    fn a_streaming_address_is_used_unless_it_takes_the_token_off_tls() {
        let secure = "https://mastodon.example";
        assert_eq!(
            streaming_base(secure, "wss://streaming.mastodon.example/").unwrap(),
            "https://streaming.mastodon.example"
        );
        assert_eq!(
            streaming_base(secure, "https://s.example").unwrap(),
            "https://s.example"
        );
        assert!(streaming_base(secure, "ws://streaming.mastodon.example").is_err());
        assert!(streaming_base(secure, "http://streaming.mastodon.example").is_err());
        assert!(streaming_base(secure, "ftp://s.example").is_err());
        // A local test server over plain HTTP may name a plain one.
        assert_eq!(
            streaming_base("http://127.0.0.1:4000", "ws://127.0.0.1:4000").unwrap(),
            "http://127.0.0.1:4000"
        );
    }

    #[test]
    fn html_becomes_text() {
        assert_eq!(
            html_to_text("<p>a<br>b</p><p>c &lt;3 &#39;x&#39;</p>"),
            "a\nb\nc <3 'x'"
        );
    }

    #[test]
    fn an_event_longer_than_the_cap_is_skipped_and_counted_in_bounded_memory() {
        let stats = EventStats::default();
        let filters = Filters {
            only_with_tags: false,
            languages: vec![],
        };
        let update = format!("event: update\ndata: {UPDATE}\n\n");
        let huge = format!("event: update\ndata: {}\n\n", "x".repeat(5000));
        let body = format!("{update}{huge}:thump\n{update}");
        // Cut anywhere, with a 4 KiB cap: the two statuses come through, the huge one is
        // skipped and counted.
        let pieces: Vec<&[u8]> = body.as_bytes().chunks(7).collect();
        let (lines, error) = body_to_lines(&pieces, &filters, &stats, 4096);
        assert_eq!(error, None);
        assert_eq!(lines.len(), 2);
        assert_eq!(stats.oversized.load(Ordering::Relaxed), 1);
        assert!(stats.warnings()[0].contains("1 event(s) longer than max_event_bytes"));
        // The framer itself never holds more than the cap.
        let mut framer = EventFramer::new(4096);
        let oversized = AtomicU64::new(0);
        for _ in 0..1000 {
            assert!(framer.feed(&[b'x'; 1000], &oversized).is_empty());
            assert!(framer.event.capacity() <= 8192);
        }
        assert_eq!(oversized.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_token_with_a_control_character_is_refused_before_any_connection() {
        std::env::set_var("RUNNER_TEST_TOKEN_NL", "abc\ndef");
        let error = read_token("RUNNER_TEST_TOKEN_NL").unwrap_err();
        assert!(
            error.contains("control character (a newline?) at character 4"),
            "{error}"
        );
        assert!(
            !error.contains("abc"),
            "the token is never printed: {error}"
        );
        std::env::set_var("RUNNER_TEST_TOKEN_OK", "abc-def");
        assert_eq!(read_token("RUNNER_TEST_TOKEN_OK").unwrap(), "abc-def");
    }

    #[test]
    fn tokens_are_redacted() {
        assert_eq!(
            redact("GET /x?access_token=sekrit-123", "sekrit-123"),
            "GET /x?access_token=[redacted]"
        );
    }
}
