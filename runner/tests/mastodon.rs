//! The mastodon and replay sources against a fake Mastodon server that speaks the streaming
//! protocol as the real one does (as described in Mastodon's streaming API documentation): instance
//! discovery with a `ws://` streaming URL, bearer tokens, SSE over chunked HTTP with the `:)`
//! preamble and `:thump` heartbeats, events cut at arbitrary bytes (inside UTF-8 characters
//! too), deletes, edits, unknown events, malformed JSON, JSON errors, and a dropped connection.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "good-token-5f2b9c";
const TAGS: [&str; 6] = ["Rust", "rust", "Café", "AI", "Fediverse", "日本"];

fn status(i: usize) -> (String, Vec<&'static str>) {
    let tags: Vec<&str> = (0..i % 4).map(|k| TAGS[(i + k * 5) % TAGS.len()]).collect();
    let tag_json: Vec<String> = tags
        .iter()
        .map(|t| {
            format!(
                r#"{{"name":"{t}","url":"https://mastodon.example/tags/{}"}}"#,
                t.to_lowercase()
            )
        })
        .collect();
    let json = format!(
        r#"{{"id":"{}","created_at":"2025-01-15T12:34:56.789Z","in_reply_to_id":null,"sensitive":false,"spoiler_text":"","visibility":"public","language":"en","uri":"https://mastodon.example/users/alice/statuses/{i}","url":"https://mastodon.example/@alice/{i}","content":"<p>status {i} — ünïcödé</p>","reblog":null,"account":{{"id":"1","username":"alice","acct":"alice@mastodon.example","display_name":"Alice","bot":false}},"media_attachments":[],"mentions":[],"tags":[{}],"emojis":[],"card":null,"poll":null,"filtered":[],"quote":null}}"#,
        113245678901234567u64 + i as u64,
        tag_json.join(",")
    );
    (json, tags)
}

/// The SSE body: statuses interleaved with the other kinds of event.
fn events(statuses: usize) -> Vec<String> {
    let mut events = vec![":)\n".to_owned()];
    for i in 0..statuses {
        events.push(format!("event: update\ndata: {}\n\n", status(i).0));
        match i % 7 {
            1 => events.push(format!(
                "event: delete\ndata: {}\n\n",
                107214471804101576u64 + i as u64
            )),
            2 => events.push(":thump\n".to_owned()),
            3 => events.push(format!("event: status.update\ndata: {}\n\n", status(i).0)),
            4 => events.push("event: announcement\ndata: {\"id\":\"1\"}\n\n".to_owned()),
            _ => {}
        }
        if i == 9 {
            events.push("event: update\ndata: {\"id\": \"broken\n\n".to_owned());
        }
    }
    events
}

/// What the fake server saw.
#[derive(Default)]
struct Seen {
    requests: Vec<String>,
    authorizations: Vec<String>,
}

struct FakeMastodon {
    port: u16,
    seen: Arc<Mutex<Seen>>,
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Writes `bytes` as HTTP chunks cut at pseudo-random places (any byte, mid-character too).
fn write_chunked(stream: &mut TcpStream, bytes: &[u8], seed: &mut u64) -> std::io::Result<()> {
    let mut at = 0;
    while at < bytes.len() {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = (1 + (*seed >> 33) as usize % 97).min(bytes.len() - at);
        write!(stream, "{len:x}\r\n")?;
        stream.write_all(&bytes[at..at + len])?;
        stream.write_all(b"\r\n")?;
        stream.flush()?;
        at += len;
    }
    Ok(())
}

impl FakeMastodon {
    /// Serves `statuses` statuses on the public stream; the first streaming connection drops
    /// in the middle of the event at `drop_at` (the source must reconnect; the server then
    /// resumes from that event, as if it had been published after the reconnection).
    fn start(statuses: usize, drop_at: usize) -> FakeMastodon {
        Self::serve(statuses, drop_at, false)
    }

    /// Like `start`, but the first streaming connection stops sending anything (no events, no
    /// heartbeats) after the events before `stall_at`, and stays open until the client leaves.
    fn start_stalling(statuses: usize, stall_at: usize) -> FakeMastodon {
        Self::serve(statuses, stall_at, true)
    }

    fn serve(statuses: usize, drop_at: usize, stall: bool) -> FakeMastodon {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = seen.clone();
        std::thread::spawn(move || {
            let body = events(statuses);
            let mut streams_served = 0;
            let mut seed = 42u64;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut authorization = String::new();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).is_err()
                        || header == "\r\n"
                        || header.is_empty()
                    {
                        break;
                    }
                    if let Some(value) = header
                        .strip_prefix("authorization: ")
                        .or_else(|| header.strip_prefix("Authorization: "))
                    {
                        authorization = value.trim().to_owned();
                    }
                }
                let target = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_owned();
                {
                    let mut seen = state.lock().unwrap();
                    seen.requests.push(target.clone());
                    seen.authorizations.push(authorization.clone());
                }
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                match path {
                    "/api/v2/instance" => respond(
                        &mut stream,
                        "200 OK",
                        "application/json",
                        &format!(
                            r#"{{"domain":"mastodon.example","configuration":{{"urls":{{"streaming":"ws://127.0.0.1:{port}"}}}}}}"#
                        ),
                    ),
                    "/api/v1/streaming/health" => {
                        respond(&mut stream, "200 OK", "text/plain", "OK")
                    }
                    _ if path.starts_with("/api/v1/streaming") => {
                        if authorization.is_empty() {
                            respond(
                                &mut stream,
                                "401 Unauthorized",
                                "application/json",
                                r#"{"error":"Missing access token"}"#,
                            );
                            continue;
                        }
                        if authorization != format!("Bearer {TOKEN}") {
                            respond(
                                &mut stream,
                                "401 Unauthorized",
                                "application/json",
                                r#"{"error":"Invalid access token"}"#,
                            );
                            continue;
                        }
                        let stream_body: Vec<u8> = match path {
                            "/api/v1/streaming/public" => {
                                let events = if streams_served == 0 {
                                    &body[..]
                                } else {
                                    &body[drop_at..]
                                };
                                events.concat().into_bytes()
                            }
                            "/api/v1/streaming/hashtag" if query.starts_with("tag=") => {
                                format!(":)\nevent: update\ndata: {}\n\n", status(3).0).into_bytes()
                            }
                            "/api/v1/streaming/hashtag" => {
                                respond(
                                    &mut stream,
                                    "400 Bad Request",
                                    "application/json",
                                    r#"{"error":"Missing tag name parameter"}"#,
                                );
                                continue;
                            }
                            _ => {
                                respond(
                                    &mut stream,
                                    "400 Bad Request",
                                    "application/json",
                                    r#"{"error":"Unknown channel requested"}"#,
                                );
                                continue;
                            }
                        };
                        let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nTransfer-Encoding: chunked\r\n\r\n");
                        if stall && streams_served == 0 && path == "/api/v1/streaming/public" {
                            let before: usize = body[..drop_at].iter().map(String::len).sum();
                            streams_served += 1;
                            if write_chunked(&mut stream, &stream_body[..before], &mut seed).is_ok()
                            {
                                // Silence until the client gives up on this connection.
                                let mut rest = Vec::new();
                                let _ = reader.read_to_end(&mut rest);
                            }
                            continue;
                        }
                        let cut = if streams_served == 0 && path == "/api/v1/streaming/public" {
                            // Drop in the middle of event `drop_at`.
                            let before: usize = body[..drop_at].iter().map(String::len).sum();
                            before + body[drop_at].len() / 2
                        } else {
                            stream_body.len()
                        };
                        streams_served += 1;
                        if write_chunked(&mut stream, &stream_body[..cut], &mut seed).is_err() {
                            continue;
                        }
                        if cut < stream_body.len() {
                            drop(stream);
                            continue;
                        }
                        // Keep the stream open with heartbeats, as a real server does.
                        for _ in 0..200 {
                            std::thread::sleep(Duration::from_millis(50));
                            if write_chunked(&mut stream, b":thump\n", &mut seed).is_err() {
                                break;
                            }
                        }
                    }
                    _ => respond(
                        &mut stream,
                        "404 Not Found",
                        "application/json",
                        r#"{"error":"Not found"}"#,
                    ),
                }
                let mut rest = Vec::new();
                let _ = reader.read_to_end(&mut rest);
            }
        });
        FakeMastodon { port, seen }
    }
}

fn pipeline(dir: &std::path::Path, source_extra: &str, port: u16) -> std::path::PathBuf {
    write(
        dir,
        "p.yaml",
        &format!(
            "name: t\nmode: stream\nsource:\n  type: mastodon\n  instance: http://127.0.0.1:{port}\n{source_extra}transforms:\n  - {{type: explode, column: tags, as: hashtag}}\n  - {{type: lowercase, column: hashtag}}\n  - {{type: group_count, by: hashtag}}\ntrigger:\n  processing_time: 200ms\nsinks:\n  - {{type: csv, path: counts.csv}}\n"
        ),
    )
}

fn counts(path: &std::path::Path) -> BTreeMap<String, i64> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader
        .records()
        .map(|r| r.unwrap())
        .map(|r| (r[0].to_owned(), r[1].parse().unwrap()))
        .collect()
}

fn expected(statuses: usize) -> BTreeMap<String, i64> {
    let mut want = BTreeMap::new();
    for i in 0..statuses {
        for tag in status(i).1 {
            *want.entry(tag.to_lowercase()).or_insert(0) += 1;
        }
    }
    want
}

fn run(pipeline: &std::path::Path, token: Option<&str>) -> (i32, String) {
    let mut cmd = runner();
    cmd.arg("run")
        .arg(pipeline)
        .env_remove("MASTODON_ACCESS_TOKEN")
        .timeout(Duration::from_secs(60));
    if let Some(token) = token {
        cmd.env("MASTODON_ACCESS_TOKEN", token);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn counts_hashtags_exactly_through_drops_splits_and_noise_then_replays_the_recording() {
    let server = FakeMastodon::start(60, 25);
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        "  limit: 50\n  record_to: tape.jsonl\n",
        server.port,
    );
    let (code, stderr) = run(&p, Some(TOKEN));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(counts(&dir.path().join("counts.csv")), expected(50));
    assert!(
        stderr.contains("reconnecting"),
        "the dropped connection is retried:\n{stderr}"
    );
    assert!(
        stderr.contains("1 event(s) had malformed JSON and were skipped"),
        "{stderr}"
    );
    assert!(stderr.contains("source: 50 statuses;"), "{stderr}");
    assert!(
        !stderr.contains(TOKEN),
        "the token leaked into stderr:\n{stderr}"
    );
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.requests[0], "/api/v2/instance");
    assert!(
        seen.requests[1..]
            .iter()
            .all(|r| r == "/api/v1/streaming/public"),
        "{:?}",
        seen.requests
    );
    assert!(seen.authorizations[1..]
        .iter()
        .all(|a| a == &format!("Bearer {TOKEN}")));
    drop(seen);

    let tape = std::fs::read_to_string(dir.path().join("tape.jsonl")).unwrap();
    assert!(!tape.contains(TOKEN));
    let replay = write(
        dir.path(),
        "replay.yaml",
        "name: r\nmode: stream\nsource:\n  type: replay\n  path: tape.jsonl\n  speed: max\ntransforms:\n  - {type: explode, column: tags, as: hashtag}\n  - {type: lowercase, column: hashtag}\n  - {type: group_count, by: hashtag}\nsinks:\n  - {type: csv, path: replayed.csv}\n",
    );
    let (code, stderr) = run(&replay, None);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(counts(&dir.path().join("replayed.csv")), expected(50));
}

#[test]
fn a_stalled_stream_is_dropped_after_the_idle_timeout_and_resumed() {
    let server = FakeMastodon::start_stalling(30, 12);
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "  limit: 30\n  idle_timeout: 1s\n", server.port);
    let (code, stderr) = run(&p, Some(TOKEN));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("no data or heartbeat for 1 s"),
        "the silent connection is given up:\n{stderr}"
    );
    assert!(stderr.contains("reconnecting"), "{stderr}");
    assert_eq!(counts(&dir.path().join("counts.csv")), expected(30));
    let seen = server.seen.lock().unwrap();
    let streams = seen
        .requests
        .iter()
        .filter(|r| *r == "/api/v1/streaming/public")
        .count();
    assert_eq!(streams, 2, "{:?}", seen.requests);
}

#[test]
fn a_wrong_or_missing_token_fails_with_the_servers_message_and_no_token_in_sight() {
    let server = FakeMastodon::start(5, 0);
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "", server.port);
    let (code, stderr) = run(&p, Some("wrong-token-0000"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("401 Unauthorized: Invalid access token")
            && stderr.contains("read:statuses"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-token-0000"), "{stderr}");
    let (code, stderr) = run(&p, None);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("MASTODON_ACCESS_TOKEN is not set"),
        "{stderr}"
    );
}

#[test]
fn hashtag_streams_send_the_tag_and_unknown_channels_fail() {
    let server = FakeMastodon::start(5, 0);
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        "  stream: \"hashtag:#Café au lait\"\n  limit: 1\n",
        server.port,
    );
    let (code, stderr) = run(&p, Some(TOKEN));
    assert_eq!(code, 0, "{stderr}");
    let seen = server.seen.lock().unwrap();
    assert!(
        seen.requests
            .iter()
            .any(|r| r == "/api/v1/streaming/hashtag?tag=Caf%C3%A9+au+lait"),
        "{:?}",
        seen.requests
    );
    drop(seen);
    let p = pipeline(dir.path(), "  stream: public:remote\n", server.port);
    let (code, stderr) = run(&p, Some(TOKEN));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("400 Bad Request: Unknown channel requested"),
        "{stderr}"
    );
}

#[test]
fn the_shipped_replay_pipeline_runs_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = {
        let out = runner()
            .args([
                "run",
                "pipelines/hashtags_replay.yaml",
                "--set",
                "source.speed=max",
                "--set",
                "trigger.processing_time=100ms",
            ])
            .arg("--set")
            .arg(format!(
                "sinks.1.path={}",
                dir.path().join("c.png").display()
            ))
            .arg("--set")
            .arg(format!(
                "sinks.2.path={}",
                dir.path().join("c.csv").display()
            ))
            .current_dir(repo_root())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, 0, "{stderr}");
    let counts = counts(&dir.path().join("c.csv"));
    assert!(
        counts.len() >= 20 && counts.contains_key("rust"),
        "{counts:?}"
    );
    let _ = std::fs::File::open(dir.path().join("c.png"))
        .unwrap()
        .read(&mut [0u8; 8])
        .unwrap();
}

#[test]
fn update_mode_ends_with_every_count_exact() {
    let server = FakeMastodon::start(40, 12);
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        &format!(
            "name: t\nmode: stream\nsource:\n  type: mastodon\n  instance: http://127.0.0.1:{}\n  limit: 40\ntransforms:\n  - {{type: explode, column: tags, as: hashtag}}\n  - {{type: lowercase, column: hashtag}}\n  - {{type: group_count, by: hashtag}}\ntrigger:\n  processing_time: 100ms\noutput_mode: update\nsinks:\n  - {{type: stdout, format: jsonl}}\n",
            server.port
        ),
    );
    let out = runner()
        .arg("run")
        .arg(&p)
        .env("MASTODON_ACCESS_TOKEN", TOKEN)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each epoch emits only the tags it changed, with their running totals: the last value
    // seen for every tag is its final count.
    let mut last = BTreeMap::new();
    for line in String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{'))
    {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        last.insert(
            row["hashtag"].as_str().unwrap().to_owned(),
            row["count"].as_i64().unwrap(),
        );
    }
    assert_eq!(last, expected(40));
}

#[test]
fn the_forwarder_feeds_the_socket_pipeline_end_to_end() {
    let server = FakeMastodon::start(30, 10);
    let tagged = (0..30).filter(|i| !status(*i).1.is_empty()).count();
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let forwarder = write(
        dir.path(),
        "forward.yaml",
        &format!(
            "name: forward\nmode: stream\nsource:\n  type: mastodon\n  instance: http://127.0.0.1:{}\n  only_with_tags: true\n  limit: {tagged}\ntransforms:\n  - {{type: lowercase, column: tags}}\nsinks:\n  - {{type: socket, listen: 127.0.0.1:{port}, column: tags, format: joined}}\n",
            server.port,
            tagged = tagged
        ),
    );
    let counter = write(
        dir.path(),
        "count.yaml",
        &format!("name: count\nmode: stream\nsource:\n  type: socket\n  host: 127.0.0.1\n  port: {port}\ntransforms:\n  - {{type: explode, column: line, separator: ' ', as: hashtag}}\n  - {{type: group_count, by: hashtag}}\ntrigger:\n  processing_time: 100ms\nsinks:\n  - {{type: csv, path: counts.csv}}\n"),
    );
    let mut forwarding = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .arg("run")
        .arg(&forwarder)
        .env("MASTODON_ACCESS_TOKEN", TOKEN)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = runner()
        .arg("run")
        .arg(&counter)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(forwarding.wait().unwrap().success());
    // Statuses without tags were left out by the forwarder; every tag arrived lowercased.
    let want: BTreeMap<String, i64> = expected(30);
    assert_eq!(counts(&dir.path().join("counts.csv")), want);
}

/// A server whose first stream request gets `refusal` (a whole HTTP response) and the next
/// ones two statuses; runs the pipeline to `limit: 2` and returns its exit code and stderr.
fn refused_once_then_streaming(refusal: &'static str, dir: &std::path::Path) -> (i32, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut streams = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header == "\r\n" || header.is_empty() {
                    break;
                }
            }
            if !request.contains("/api/v1/streaming/public") {
                respond(
                    &mut stream,
                    "404 Not Found",
                    "application/json",
                    r#"{"error":"Not found"}"#,
                );
                continue;
            }
            streams += 1;
            if streams == 1 {
                let _ = stream.write_all(refusal.as_bytes());
                continue;
            }
            let mut seed = 7;
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
            let body = format!(
                ":)\nevent: update\ndata: {}\n\nevent: update\ndata: {}\n\n",
                status(1).0,
                status(2).0
            );
            let _ = write_chunked(&mut stream, body.as_bytes(), &mut seed);
            std::thread::sleep(Duration::from_secs(2));
        }
    });
    run(&pipeline(dir, "  limit: 2\n", port), Some(TOKEN))
}

#[test]
fn a_50_mb_error_page_is_summarised_not_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    // A JSON error whose message is 50 MB long.
    let page = format!(
        "{{\"error\":\"We're sorry{}\"}}",
        " and sorry".repeat(5_000_000)
    );
    let refusal = format!("HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}", page.len());
    let (code, stderr) = refused_once_then_streaming(refusal.leak(), dir.path());
    assert_eq!(code, 0, "{}", &stderr[..stderr.len().min(2000)]);
    assert!(
        stderr.contains("answered 500 Internal Server Error: ")
            && stderr.contains("We're sorry and sorry"),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    // It went whole into the message: 50 MB of stderr. Now one line of at most 200 characters.
    assert!(stderr.len() < 10_000, "{} bytes of stderr", stderr.len());
    assert_eq!(counts(&dir.path().join("counts.csv")), expected(3));
}

#[test]
fn a_429_is_retried_after_the_servers_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"{"error":"Too many requests"}"#;
    let refusal = format!("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let (code, stderr) = refused_once_then_streaming(refusal.leak(), dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(
            "429 Too Many Requests: Too many requests); reconnecting in 1.0 s (attempt 2)"
        ),
        "{stderr}"
    );
    // Statuses 1 and 2 were sent; status 0 has no tags, so this is what 0..3 count.
    assert_eq!(counts(&dir.path().join("counts.csv")), expected(3));
}

#[test]
fn a_500_is_retried_with_backoff_then_streams() {
    let dir = tempfile::tempdir().unwrap();
    let refusal = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\nContent-Length: 21\r\nConnection: close\r\n\r\n<h1>We're sorry</h1>\n";
    let (code, stderr) = refused_once_then_streaming(refusal, dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("answered 500 Internal Server Error: We're sorry); reconnecting in "),
        "{stderr}"
    );
    assert_eq!(counts(&dir.path().join("counts.csv")), expected(3));
}

/// A replay of `tape` counting hashtags into counts.csv, `extra` lines added to its source.
fn replay_pipeline(dir: &std::path::Path, tape: &str, extra: &str) -> std::path::PathBuf {
    write(
        dir,
        "replay.yaml",
        &format!("name: r\nmode: stream\nsource:\n  type: replay\n  path: '{tape}'\n  speed: max\n{extra}transforms:\n  - {{type: explode, column: tags, as: hashtag}}\n  - {{type: lowercase, column: hashtag}}\n  - {{type: group_count, by: hashtag}}\nsinks:\n  - {{type: csv, path: counts.csv}}\n"),
    )
}

/// A tape line of status `i`, as `record_to` writes it.
fn tape_line(i: usize) -> String {
    let record = serde_json::json!({"event": "update", "data": status(i).0, "t": 0.0});
    format!("{record}\n")
}

/// Runs `runner ARGS` with stderr kept: exit code, stderr, peak RSS in MB.
fn run_measured(dir: &std::path::Path, args: &[&std::ffi::OsStr]) -> (i32, String, f64) {
    let mut command = runner_process();
    command
        .args(args)
        .current_dir(dir)
        .env("MASTODON_ACCESS_TOKEN", TOKEN);
    let (code, stderr, peak_mb) = run_with_peak_rss(command, &dir.join("stderr.log"));
    (code.unwrap_or(-1), stderr, peak_mb)
}

#[test]
fn a_tape_that_is_not_lines_of_events_is_refused_by_its_line_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    // 300 MB without a newline (a sparse file): refused at its cap, not read into memory.
    let endless = dir.path().join("endless.jsonl");
    std::fs::File::create(&endless)
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    let p = replay_pipeline(dir.path(), "endless.jsonl", "");
    let (code, stderr, peak_mb) = run_measured(dir.path(), &["run".as_ref(), p.as_os_str()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("endless.jsonl line 1 is longer than 16777216 bytes (`max_line_bytes`)"),
        "{stderr}"
    );
    assert!(peak_mb < 150.0, "peak RSS {peak_mb:.0} MB");

    // Bytes that are not UTF-8: named by their line.
    let mut bytes = tape_line(1).into_bytes();
    bytes.extend_from_slice(b"{\"event\": \"update\", \"data\": \"\xff\xfe\"}\n");
    std::fs::write(dir.path().join("latin1.jsonl"), bytes).unwrap();
    let p = replay_pipeline(dir.path(), "latin1.jsonl", "");
    let (code, stderr, _) = run_measured(dir.path(), &["run".as_ref(), p.as_os_str()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("latin1.jsonl line 2 is not UTF-8 text"),
        "{stderr}"
    );

    // A byte order mark before the first event is no part of it.
    let tape = format!("\u{feff}{}{}", tape_line(1), tape_line(2));
    std::fs::write(dir.path().join("bom.jsonl"), tape).unwrap();
    let p = replay_pipeline(dir.path(), "bom.jsonl", "");
    let (code, stderr, _) = run_measured(dir.path(), &["run".as_ref(), p.as_os_str()]);
    assert_eq!(code, 0, "{stderr}");
    let mut want = expected(3);
    for tag in status(0).1 {
        *want.get_mut(&tag.to_lowercase()).unwrap() -= 1;
    }
    want.retain(|_, n| *n > 0);
    assert_eq!(counts(&dir.path().join("counts.csv")), want);

    // A recording stopped mid-write: its last line, without a newline, is cut short. The
    // events before it are counted, the cut one is skipped with a warning, the run succeeds.
    let last = tape_line(2);
    let tape = format!(
        "{}{}{}",
        tape_line(0),
        tape_line(1),
        &last[..last.len() / 2]
    );
    std::fs::write(dir.path().join("cut.jsonl"), tape).unwrap();
    let p = replay_pipeline(dir.path(), "cut.jsonl", "");
    let (code, stderr, _) = run_measured(dir.path(), &["run".as_ref(), p.as_os_str()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("1 event(s) had malformed JSON and were skipped")
            && stderr
                .contains("cut.jsonl line 3 (the tape's last) is cut short without its newline"),
        "{stderr}"
    );
    assert_eq!(counts(&dir.path().join("counts.csv")), expected(2));
    // The same line cut short before a newline is damage in the middle of the tape.
    let tape = format!(
        "{}{}\n{}",
        tape_line(0),
        &last[..last.len() / 2],
        tape_line(1)
    );
    std::fs::write(dir.path().join("torn.jsonl"), tape).unwrap();
    let p = replay_pipeline(dir.path(), "torn.jsonl", "");
    let (code, stderr, _) = run_measured(dir.path(), &["run".as_ref(), p.as_os_str()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("torn.jsonl line 2 is not a recorded event"),
        "{stderr}"
    );
}

#[test]
fn a_missing_tape_or_standard_input_is_refused_when_the_pipeline_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let p = replay_pipeline(dir.path(), "nowhere.jsonl", "");
    let out = runner().arg("validate").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nowhere.jsonl does not exist"), "{stderr}");
    let p = replay_pipeline(dir.path(), "-", "");
    let out = runner().arg("validate").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`path: -`: a tape is read from a file"),
        "{stderr}"
    );
}

#[test]
fn a_replay_of_a_fifo_no_one_writes_to_stops_on_sigterm() {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("tape.fifo");
    let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `name` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let p = replay_pipeline(dir.path(), "tape.fifo", "");
    let mut child = runner_process()
        .arg("run")
        .arg(&p)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A writer that never writes: its open succeeds once runner opened the FIFO to read it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let _writer = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
        {
            Ok(writer) => break writer,
            Err(_) if std::time::Instant::now() < deadline => std::thread::yield_now(),
            Err(e) => panic!("runner never opened the tape: {e}"),
        }
    };
    // SAFETY: kill takes a pid and a signal number; the child is ours and not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("a stream blocked reading its tape ignored SIGTERM");
        }
        std::thread::yield_now();
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopped (interrupted)"), "{stderr}");
}

/// A server that takes connections and never answers them.
fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.extend(stream.ok());
        }
    });
    port
}

#[test]
fn a_server_that_never_answers_is_a_stall_retried_then_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        "  idle_timeout: 1s\n  max_retries: 1\n",
        silent_server(),
    );
    let (code, stderr) = run(&p, Some(TOKEN));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("/api/v2/instance did not answer within 1 s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("giving up on http://127.0.0.1:")
            && stderr.contains("did not answer within 1 s"),
        "{stderr}"
    );
}

#[test]
fn an_endless_instance_answer_and_a_web_page_for_a_stream_are_refused_in_bounded_memory() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            if request.contains("/api/v2/instance") {
                // JSON that never ends, until the client hangs up.
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"x\":\"");
                let chunk = vec![b'a'; 64 << 10];
                while stream.write_all(&chunk).is_ok() {}
            } else {
                respond(
                    &mut stream,
                    "200 OK",
                    "text/html",
                    "<html>a web page</html>",
                );
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    // An earlier recording at `record_to` outlives a run that never streamed.
    std::fs::write(dir.path().join("tape.jsonl"), tape_line(1)).unwrap();
    let p = pipeline(dir.path(), "  record_to: tape.jsonl\n", port);
    let (code, stderr, peak_mb) = run_measured(dir.path(), &["run".as_ref(), p.as_os_str()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("/api/v2/instance answered more than 1024 KiB"),
        "{stderr}"
    );
    assert!(
        stderr.contains("with `text/html`, not an event stream (text/event-stream)"),
        "{stderr}"
    );
    assert!(peak_mb < 150.0, "peak RSS {peak_mb:.0} MB");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tape.jsonl")).unwrap(),
        tape_line(1)
    );
}
