//! The page server's routes (axum on a tokio runtime of its own thread). Read-only: every
//! route is a GET, none changes the run. On a loopback address the `Host` header must name
//! it (a page elsewhere cannot reach it through DNS rebinding); with a token, every request
//! must carry it (`Authorization: Bearer`, a cookie, or `?token=` which sets the cookie).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use serde::Deserialize;

use super::live::{Live, Update};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");
const ICON_SVG: &str = include_str!("assets/icon.svg");
/// The cookie a `?token=` sets.
const COOKIE: &str = "runner_ui_token";
/// JSON rows `/api/result` gives by default, and at most.
const DEFAULT_ROWS: usize = 10_000;
const MAX_ROWS: usize = 100_000;
/// Rows per piece of a CSV answer (it is written as it is sent).
const CSV_PIECE_ROWS: usize = 4096;

/// Who may read the page.
#[derive(Clone)]
pub struct Access {
    /// The token a browser must present; `None` when the page is open to whoever reaches it
    /// (loopback addresses only).
    pub token: Option<Arc<str>>,
    /// The port of a loopback address: `Host` must be a loopback name with it.
    pub loopback_port: Option<u16>,
}

/// The page's routes (the page itself, its assets, `/api/*`, `/metrics`), behind the `Host` and
/// token checks of `access`.
pub fn router(live: Arc<Live>, access: Access) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/icon.svg",
            get(|| async { asset(ICON_SVG, "image/svg+xml") }),
        )
        .route("/api/run", get(run))
        .route("/api/result", get(result))
        .route("/api/epochs", get(epochs))
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(access, guard))
        .with_state(live)
}

fn asset(text: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

fn json(value: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn run(State(live): State<Arc<Live>>) -> Response {
    json(live.run_json())
}

#[derive(Deserialize)]
struct EpochsQuery {
    since: Option<u64>,
}

async fn epochs(State(live): State<Arc<Live>>, Query(query): Query<EpochsQuery>) -> Response {
    json(live.epochs_json(query.since))
}

#[derive(Deserialize)]
struct ResultQuery {
    format: Option<String>,
    limit: Option<usize>,
    /// `for=spreadsheet` (the page's download link): CSV whose texts never run as formulas.
    #[serde(rename = "for")]
    for_: Option<String>,
}

/// JSON results built at once: each is held whole until its client has read it, so a few
/// clients that never read cannot hold a copy each of a large result (`/api/result` waits
/// for a turn instead).
const RESULT_BODIES: usize = 2;

/// `/events` streams open at once, of the server's `MAX_CONNECTIONS`: the rest stay free for
/// the page, `/api/*` and `/metrics`, however many event streams are kept open.
const MAX_EVENT_STREAMS: usize = super::serve::MAX_CONNECTIONS / 2;

fn result_bodies() -> &'static Arc<tokio::sync::Semaphore> {
    static BODIES: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    BODIES.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(RESULT_BODIES)))
}

fn event_streams() -> &'static Arc<tokio::sync::Semaphore> {
    static STREAMS: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    STREAMS.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(MAX_EVENT_STREAMS)))
}

async fn result(State(live): State<Arc<Live>>, Query(query): Query<ResultQuery>) -> Response {
    let snapshot = live.result();
    let epoch = snapshot.epoch.map(|e| e.to_string()).unwrap_or_default();
    let epoch = HeaderValue::from_str(&epoch).unwrap_or(HeaderValue::from_static(""));
    match query.format.as_deref() {
        None | Some("json") => {
            let limit = query.limit.unwrap_or(DEFAULT_ROWS).min(MAX_ROWS);
            let Ok(turn) = result_bodies().clone().acquire_owned().await else {
                return refuse(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping\n");
            };
            let body = snapshot.to_json(limit).to_string();
            // The turn is given back when the body has been sent (or the client has gone):
            // the stream ends, and is dropped, only once its one piece was taken.
            let pieces =
                futures_util::stream::unfold((Some(body), Some(turn)), |(body, turn)| async move {
                    body.map(|body| (Ok::<_, Infallible>(body), (None, turn)))
                });
            let mut response = (
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(pieces),
            )
                .into_response();
            response.headers_mut().insert("x-runner-epoch", epoch);
            response
        }
        Some("csv") => {
            // Written piece by piece as it is sent: a large result is never copied whole.
            let mut pieces: Vec<(arrow_array::RecordBatch, bool)> = Vec::new();
            let mut header_due = true;
            for batch in snapshot.batches {
                let mut start = 0;
                while start < batch.num_rows() || (header_due && batch.num_rows() == 0) {
                    let rows = CSV_PIECE_ROWS.min(batch.num_rows() - start);
                    pieces.push((batch.slice(start, rows), header_due));
                    header_due = false;
                    start += rows;
                    if rows == 0 {
                        break;
                    }
                }
            }
            let for_spreadsheet = query.for_.as_deref() == Some("spreadsheet");
            let body = futures_util::stream::iter(pieces).map(move |(piece, header)| {
                let mut body = Vec::new();
                match for_spreadsheet {
                    true => {
                        crate::sinks::csv::write_records_for_spreadsheet(&mut body, &piece, header)?
                    }
                    false => crate::sinks::csv::write_records(&mut body, &piece, header)?,
                }
                Ok::<_, std::io::Error>(body)
            });
            let mut response = (
                [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
                Body::from_stream(body),
            )
                .into_response();
            response.headers_mut().insert("x-runner-epoch", epoch);
            response
        }
        Some(other) => (
            StatusCode::BAD_REQUEST,
            format!("format `{other}` is not json or csv\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(live): State<Arc<Live>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        live.metrics_text(),
    )
        .into_response()
}

/// Server-Sent Events: `state` first, then `epoch`, `result`, `warning` and `state` as they
/// happen. A client that falls `CLIENT_QUEUE` messages behind gets `resync` (fetch
/// everything again) instead of the messages it missed: it never holds the run back.
async fn events(State(live): State<Arc<Live>>) -> Response {
    // Held by the stream, given back when its client goes.
    let Ok(place) = event_streams().clone().try_acquire_owned() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live event streams are open; close a page and reload\n",
        );
    };
    let first = SseEvent::default()
        .event("state")
        .data(live.state_json().to_string());
    let updates = live.subscribe();
    let rest = futures_util::stream::unfold((updates, place), |(mut updates, place)| async move {
        let event = next_event(&mut updates).await?;
        Some((Ok::<_, Infallible>(event), (updates, place)))
    });
    Sse::new(futures_util::stream::once(async { Ok(first) }).chain(rest))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The next message for a client as an SSE event: `resync` when it fell behind; `None` when
/// the run's state is gone.
async fn next_event(updates: &mut tokio::sync::broadcast::Receiver<Update>) -> Option<SseEvent> {
    use tokio::sync::broadcast::error::RecvError;
    Some(match updates.recv().await {
        Ok(Update { name, id, data }) => {
            let event = SseEvent::default().event(name).data(&*data);
            match id {
                Some(id) => event.id(id.to_string()),
                None => event,
            }
        }
        Err(RecvError::Lagged(missed)) => SseEvent::default()
            .event("resync")
            .data(format!("{{\"missed\":{missed}}}")),
        Err(RecvError::Closed) => return None,
    })
}

/// Checks `Host` and the token, and adds the headers every answer carries.
async fn guard(State(access): State<Access>, request: Request, next: Next) -> Response {
    if let Some(port) = access.loopback_port {
        if !loopback_host(request.headers(), port) {
            return refuse(
                StatusCode::FORBIDDEN,
                "this page answers to 127.0.0.1, localhost or [::1] only\n",
            );
        }
    }
    let mut set_cookie = false;
    if let Some(token) = &access.token {
        let from_query = query_token(request.uri().query());
        let presented = bearer(request.headers())
            .or_else(|| cookie(request.headers()))
            .or(from_query.clone());
        if !presented.is_some_and(|p| same_secret(&p, token)) {
            let mut response = refuse(
                StatusCode::UNAUTHORIZED,
                "this page needs its token: `Authorization: Bearer TOKEN`, or open it once with ?token=TOKEN\n",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        set_cookie = from_query.is_some_and(|p| same_secret(&p, token));
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if set_cookie {
        if let Some(token) = &access.token {
            if let Ok(value) = HeaderValue::from_str(&format!(
                "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
            )) {
                headers.insert(header::SET_COOKIE, value);
            }
        }
    }
    secure_headers(headers);
    response
}

fn refuse(status: StatusCode, message: &'static str) -> Response {
    let mut response = (status, message).into_response();
    secure_headers(response.headers_mut());
    response
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn loopback_host(headers: &HeaderMap, port: u16) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Ok(authority) = host.parse::<axum::http::uri::Authority>() else {
        return false;
    };
    let name = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback && authority.port_u16().unwrap_or(80) == port
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| cookie::Cookie::split_parse(h.to_owned()))
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_owned())
}

fn query_token(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
}

/// Compares digests, so the time taken says nothing about how much of a guess was right.
fn same_secret(presented: &str, token: &str) -> bool {
    use sha2::Digest;
    let (a, b) = (
        sha2::Sha256::digest(presented.as_bytes()),
        sha2::Sha256::digest(token.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_loopback_names_with_the_port_pass_on_a_loopback_address() {
        assert!(loopback_host(&host("127.0.0.1:4040"), 4040));
        assert!(loopback_host(&host("localhost:4040"), 4040));
        assert!(loopback_host(&host("[::1]:4040"), 4040));
        assert!(!loopback_host(&host("evil.example:4040"), 4040));
        assert!(!loopback_host(&host("127.0.0.1:4041"), 4040));
        assert!(!loopback_host(&HeaderMap::new(), 4040));
    }

    #[test]
    fn a_client_that_fell_behind_is_told_to_resync_and_then_follows_again() {
        let (tx, mut rx) = tokio::sync::broadcast::channel(4);
        for epoch in 0..10u64 {
            tx.send(Update {
                name: "epoch",
                id: Some(epoch),
                data: "{}".into(),
            })
            .unwrap();
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let first = runtime.block_on(next_event(&mut rx)).unwrap();
        assert!(format!("{first:?}").contains("resync"), "{first:?}");
        assert!(format!("{first:?}").contains("missed\\\":6"), "{first:?}");
        let next = runtime.block_on(next_event(&mut rx)).unwrap();
        assert!(format!("{next:?}").contains("id: 6"), "{next:?}");
        drop(tx);
        for _ in 0..3 {
            assert!(runtime.block_on(next_event(&mut rx)).is_some());
        }
        assert!(runtime.block_on(next_event(&mut rx)).is_none());
    }

    #[test]
    fn tokens_come_from_a_bearer_header_a_cookie_or_the_query() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; runner_ui_token=xyz"),
        );
        assert_eq!(bearer(&headers).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers).as_deref(), Some("xyz"));
        assert_eq!(
            query_token(Some("limit=3&token=a%2Bb")).as_deref(),
            Some("a+b")
        );
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
    }
}
