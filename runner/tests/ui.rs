//! The live page (`--ui`) in a real browser and through its API: headless Chromium (Debian's
//! `chromium`, installed by `.ci/chromium.sh`) driven over the DevTools protocol, a socket
//! stream fed by the test, a batch run kept up by `--ui-linger`. Screenshots go to
//! `target/tmp/ui-screenshots/` (cargo's folder for test files, never `output/`).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use common::{runner_process, write};
use serde_json::{json, Value};

/// How long any one awaited thing may take before the test fails (a slow CI machine).
const PATIENCE: Duration = Duration::from_secs(90);

/// A `runner run` with its stderr read line by line on a thread.
struct Run {
    child: Child,
    lines: Receiver<String>,
    url: String,
    stderr: Vec<String>,
}

impl Run {
    fn start(pipeline: &Path, extra: &[&str]) -> Run {
        let mut child = runner_process()
            .arg("run")
            .arg(pipeline)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = read_lines(child.stderr.take().unwrap());
        let mut run = Run {
            child,
            lines,
            url: String::new(),
            stderr: Vec::new(),
        };
        let line = run.wait_line(|l| l.starts_with("live page: "));
        run.url = line["live page: ".len()..].trim().to_owned();
        run
    }

    /// A batch run with its page, once the run is over and the page stays up (10 minutes).
    fn finished_with_page(pipeline: &Path) -> Run {
        let mut run = Run::start(pipeline, &["--ui", "127.0.0.1:0", "--ui-linger", "10m"]);
        run.wait_line(|l| l.starts_with("the live page stays up for 10m"));
        run
    }

    /// The next stderr line that `wanted` accepts (the ones before are kept).
    fn wait_line(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) => {
                    self.stderr.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no such line on stderr ({e}); so far:\n{}",
                    self.stderr.join("\n")
                ),
            }
        }
    }

    /// SIGTERM, then the exit code and the rest of stderr.
    fn stop(mut self) -> (Option<i32>, Vec<String>) {
        // SAFETY: signals our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        self.stderr.extend(self.lines.iter());
        (status.code(), self.stderr)
    }
}

fn read_lines(stream: ChildStderr) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn http() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap()
}

fn get(url: &str) -> reqwest::blocking::Response {
    let response = http().get(url).send().unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response
}

fn get_json(url: &str) -> Value {
    serde_json::from_str(&get(url).text().unwrap()).unwrap()
}

/// One Server-Sent Event: its name, id and data.
type Sse = (String, Option<String>, String);

/// Follows `/events` on a thread.
fn follow_events(url: &str) -> Receiver<Sse> {
    let response = get(&format!("{url}events"));
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let (mut name, mut id, mut data) = (String::new(), None, String::new());
        for line in BufReader::new(response).lines() {
            let Ok(line) = line else { break };
            if line.is_empty() {
                if !name.is_empty() && tx.send((name.clone(), id.take(), data.clone())).is_err() {
                    break;
                }
                name.clear();
                data.clear();
            } else if let Some(value) = line.strip_prefix("event:") {
                name = value.trim().to_owned();
            } else if let Some(value) = line.strip_prefix("id:") {
                id = Some(value.trim().to_owned());
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push_str(value.trim_start());
            }
        }
    });
    rx
}

/// Reads events until the epochs have taken `rows` input rows in all and the result of the
/// last one has come; checks that epochs come in order, each with its result.
fn follow_epochs(events: &Receiver<Sse>, epochs: &mut Vec<u64>, rows_seen: &mut u64, rows: u64) {
    let mut result_of = None;
    while *rows_seen < rows || result_of != epochs.last().copied() {
        let (name, id, data) = events
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("no more events after epochs {epochs:?}: {e}"));
        let data: Value = serde_json::from_str(&data).unwrap();
        match name.as_str() {
            "epoch" => {
                let epoch = data["batchId"].as_u64().unwrap();
                assert_eq!(id, Some(epoch.to_string()));
                assert_eq!(epoch, epochs.len() as u64, "epochs in order: {epochs:?}");
                assert_eq!(
                    result_of,
                    Some(epoch),
                    "the result comes before its epoch's progress"
                );
                epochs.push(epoch);
                *rows_seen += data["numInputRows"].as_u64().unwrap();
            }
            "result" => result_of = data["epoch"].as_u64(),
            _ => {}
        }
    }
}

/// Headless Chromium, driven over the DevTools protocol (a WebSocket of JSON messages).
struct Browser {
    child: Child,
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn open(url: &str) -> Browser {
        let binary = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .map(String::from)
            .chain(std::env::var("RUNNER_CHROMIUM"))
            .rev()
            .find(|b| {
                std::process::Command::new(b)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .expect("no Chromium: install it with `bash .ci/chromium.sh` (the browser tests need a real browser)");
        let profile = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1280,1100",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = read_lines(child.stderr.take().unwrap());
        let endpoint = loop {
            let line = lines
                .recv_timeout(PATIENCE)
                .expect("Chromium did not say where its DevTools listen");
            if let Some(at) = line.find("ws://") {
                break line[at..].trim().to_owned();
            }
        };
        // Keep draining Chromium's stderr so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.iter() {});
        let (socket, _) = tungstenite::connect(endpoint.as_str()).unwrap();
        if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
        }
        let mut browser = Browser {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call("Page.enable", json!({}));
        browser.call("Page.navigate", json!({"url": url}));
        browser.wait_event("Page.loadEventFired");
        browser
    }

    /// The next message from the browser (a read a signal interrupted is tried again).
    fn read(&mut self) -> tungstenite::Message {
        loop {
            match self.socket.read() {
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                other => return other.unwrap(),
            }
        }
    }

    /// Reads messages until the event `method` comes.
    fn wait_event(&mut self, method: &str) {
        loop {
            let message = self.read();
            let Ok(text) = message.to_text() else {
                continue;
            };
            let message: Value = serde_json::from_str(text).unwrap();
            if message["method"] == method {
                return;
            }
        }
    }

    /// Sends a command (to the page once attached) and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let mut message = json!({"id": self.next_id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = self.session.clone().into();
        }
        self.socket
            .send(tungstenite::Message::text(message.to_string()))
            .unwrap();
        loop {
            let reply = self.read();
            let Ok(text) = reply.to_text() else { continue };
            let reply: Value = serde_json::from_str(text).unwrap();
            if reply["id"] == self.next_id {
                assert!(reply["error"].is_null(), "{method}: {}", reply["error"]);
                return reply["result"].clone();
            }
        }
    }

    /// Waits in the page until `condition` (a JS expression) is truthy and returns its value;
    /// fails with the page's text after `PATIENCE`.
    fn wait_for(&mut self, condition: &str) -> Value {
        let expression = format!(
            "new Promise((resolve, reject) => {{ const t0 = Date.now(); const check = () => {{ let v; try {{ v = ({condition}); }} catch (e) {{}} if (v) return resolve(v); if (Date.now() - t0 > {}) return reject(new Error('timed out waiting for: ' + {condition:?} + '\\n' + document.body.innerText.slice(0, 2000))); setTimeout(check, 50); }}; check(); }})",
            PATIENCE.as_millis()
        );
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        );
        assert!(
            result["exceptionDetails"].is_null(),
            "{}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    fn screenshot(&mut self, name: &str) -> PathBuf {
        use base64::Engine;
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `burst` (lines of space-separated tags) to the stream's socket, counting its tags
/// into `counts`; returns the lines sent.
fn send_burst(feed: &mut TcpStream, burst: &[&str], counts: &mut HashMap<String, i64>) -> u64 {
    for tag in burst.iter().flat_map(|line| line.split(' ')) {
        *counts.entry(tag.to_owned()).or_default() += 1;
    }
    feed.write_all(format!("{}\n", burst.join("\n")).as_bytes())
        .unwrap();
    burst.len() as u64
}

/// The chart's bars as the page shows them: (label, value).
const BARS: &str = "[...document.querySelectorAll('#chart g.bar')].map(g => [g.dataset.label, Number(g.dataset.value)])";

/// The `top` (label, count) pairs of `counts`, largest first, ties by label: what the chart
/// sink draws.
fn top(counts: &HashMap<String, i64>, top: usize) -> Vec<(String, i64)> {
    let mut pairs: Vec<_> = counts.iter().map(|(k, v)| (k.clone(), *v)).collect();
    pairs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    pairs.truncate(top);
    pairs
}

fn page_bars(browser: &mut Browser) -> Vec<(String, i64)> {
    let bars = browser.wait_for(&format!("{BARS}.length > 0 && {BARS}"));
    bars.as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b[0].as_str().unwrap().to_owned(),
                b[1].as_f64().unwrap() as i64,
            )
        })
        .collect()
}

#[test]
fn a_socket_streams_page_follows_every_epoch_in_the_browser_and_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let pipeline = write(
        dir.path(),
        "tags.yaml",
        &format!(
            "name: live-tags\nmode: stream\nsource: {{type: socket, host: 127.0.0.1, port: {port}}}\ntransforms:\n  - {{type: explode, column: line, separator: ' ', as: hashtag}}\n  - {{type: group_count, by: hashtag}}\ntrigger: {{processing_time: 100ms}}\nstop_after: 10m\nsinks:\n  - {{type: csv, path: out/counts.csv}}\n  - {{type: chart, path: out/top.png, x: hashtag, y: count, top: 5, title: 'Top hashtags, epoch {{epoch}}'}}\n"
        ),
    );
    let run = Run::start(&pipeline, &["--ui", "127.0.0.1:0"]);
    let (mut feed, _) = listener.accept().unwrap();
    let url = run.url.clone();
    let events = follow_events(&url);
    // A client that never reads its events must not hold anything back.
    let mut stuck =
        TcpStream::connect(url.trim_start_matches("http://").trim_end_matches('/')).unwrap();
    write!(
        stuck,
        "GET /events HTTP/1.1\r\nHost: {}\r\n\r\n",
        url.trim_start_matches("http://").trim_end_matches('/')
    )
    .unwrap();

    let mut counts: HashMap<String, i64> = HashMap::new();
    let mut lines_sent = 0u64;
    let mut rows_seen = 0u64;
    let mut epochs_seen: Vec<u64> = Vec::new();
    let bursts: [&[&str]; 2] = [
        &["rust spark", "rust ai", "spark rust data", "linux"],
        &["ai ai ai", "data", "rust go", "ai"],
    ];
    for burst in bursts {
        lines_sent += send_burst(&mut feed, burst, &mut counts);
        // Every epoch arrives, in order, with its result, until the burst is counted.
        follow_epochs(&events, &mut epochs_seen, &mut rows_seen, lines_sent);
        // The result the API serves is the CSV sink's file.
        let csv = get(&format!("{url}api/result?format=csv")).text().unwrap();
        let file = std::fs::read_to_string(dir.path().join("out/counts.csv")).unwrap();
        assert_eq!(csv, file);
        let json: Value = get_json(&format!("{url}api/result"));
        assert_eq!(json["total_rows"], counts.len());
        let served: HashMap<String, i64> = json["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap()))
            .collect();
        assert_eq!(served, counts);
    }
    let epochs: Value = get_json(&format!("{url}api/epochs"));
    let ids: Vec<u64> = epochs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["batchId"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, epochs_seen);
    let metrics = get(&format!("{url}metrics")).text().unwrap();
    assert!(
        metrics.contains(&format!(
            "runner_epochs_total{{pipeline=\"live-tags\"}} {}\n",
            epochs_seen.len()
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "runner_input_rows_total{{pipeline=\"live-tags\"}} {lines_sent}\n"
    )));

    // The page: the chart shows the current top hashtags; the next epoch redraws it in place.
    let mut browser = Browser::open(&url);
    let before = *epochs_seen.last().unwrap();
    browser.wait_for(&format!(
        "document.getElementById('epoch').dataset.epoch === '{before}'"
    ));
    assert_eq!(page_bars(&mut browser), top(&counts, 5));
    let marker: Value = browser.wait_for("(window.sameDocument = 'yes')");
    assert_eq!(marker, "yes");
    lines_sent += send_burst(
        &mut feed,
        &["zig zig zig", "zig rust", "zig zig"],
        &mut counts,
    );
    follow_epochs(&events, &mut epochs_seen, &mut rows_seen, lines_sent);
    let after = *epochs_seen.last().unwrap();
    assert!(after > before);
    browser.wait_for(&format!(
        "document.getElementById('epoch').dataset.epoch === '{after}'"
    ));
    let expected = top(&counts, 5);
    assert_eq!(expected[0], ("zig".to_owned(), 6));
    let label = expected
        .iter()
        .map(|(l, _)| l.as_str())
        .collect::<Vec<_>>()
        .join(",");
    browser.wait_for(&format!("{BARS}.map(b => b[0]).join(',') === '{label}'"));
    assert_eq!(page_bars(&mut browser), expected);
    // Redrawn without reloading the page.
    assert_eq!(browser.wait_for("window.sameDocument"), "yes");
    let title = browser.wait_for("document.getElementById('chart-title').textContent");
    assert_eq!(title, format!("Top hashtags, epoch {after}"));
    browser.wait_for("document.getElementById('state').dataset.state === 'running'");
    browser.screenshot("stream.png");
    // The streaming tab lists the epochs.
    browser.wait_for("document.getElementById('tab-streaming').click() || true");
    let listed = browser.wait_for("document.querySelectorAll('#epochs tbody tr').length");
    assert_eq!(listed, epochs_seen.len().min(50));
    browser.screenshot("stream-epochs.png");

    let (code, stderr) = run.stop();
    assert_eq!(code, Some(0), "{}", stderr.join("\n"));
    let printed: Vec<u64> = stderr
        .iter()
        .filter_map(|l| l.strip_prefix("epoch ")?.split(':').next()?.parse().ok())
        .collect();
    assert_eq!(printed, epochs_seen, "the page saw every epoch runner ran");
    drop(stuck);
}

#[test]
fn a_finished_batch_run_keeps_its_page_up_for_the_linger_time() {
    let Some(play) = common::romeo_text() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pipeline = common::romeo_pipeline(
        dir.path(),
        &play,
        "romeo",
        &[
            "{type: csv, path: out/counts.csv}",
            "{type: chart, path: out/top.png, x: word, y: count, top: 20, title: Top words in Romeo and Juliet}",
        ],
    );
    let run = Run::finished_with_page(&pipeline);
    let url = run.url.clone();
    let csv = get(&format!("{url}api/result?format=csv")).text().unwrap();
    let file = std::fs::read_to_string(dir.path().join("out/counts.csv")).unwrap();
    assert_eq!(csv, file);
    let counts: HashMap<String, i64> = file
        .lines()
        .skip(1)
        .map(|l| {
            let (word, count) = l.split_once(',').unwrap();
            (word.to_owned(), count.parse().unwrap())
        })
        .collect();
    assert!(counts.len() > 20);
    let run_json: Value = get_json(&format!("{url}api/run"));
    assert_eq!(run_json["state"], "finished");
    assert_eq!(run_json["exit_code"], 0);
    assert_eq!(run_json["mode"], "batch");

    let mut browser = Browser::open(&url);
    browser.wait_for("document.getElementById('state').dataset.state === 'finished'");
    browser.wait_for("document.getElementById('epoch').dataset.epoch === '0'");
    assert_eq!(page_bars(&mut browser), top(&counts, 20));
    let rows = browser.wait_for("document.querySelectorAll('#result tbody tr').length");
    assert_eq!(rows, counts.len());
    browser.screenshot("batch.png");
    // The filter narrows the table to matching rows.
    browser.wait_for("(() => { const f = document.getElementById('filter'); f.value = 'romeo'; f.dispatchEvent(new Event('input')); return true; })()");
    let shown = browser.wait_for("[...document.querySelectorAll('#result tbody tr')].map(r => r.cells[0].textContent).join(',')");
    assert_eq!(shown, "romeo");
    browser.wait_for("document.getElementById('tab-run').click() || true");
    let stages = browser.wait_for("document.querySelectorAll('#stages li').length");
    assert_eq!(stages, 1 + 5 + 2, "the source, five steps and two sinks");
    browser.screenshot("batch-run.png");

    // SIGTERM ends the linger at once, and the run's exit code stays 0.
    let (code, stderr) = run.stop();
    assert_eq!(code, Some(0), "{}", stderr.join("\n"));
}

#[test]
fn the_page_counts_rows_out_of_aggregations_and_the_input_of_batch_runs_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("k,v\n");
    for i in 0..30 {
        csv += &format!("k{},{i}\n", i % 7);
    }
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/1.csv"), &csv).unwrap();
    let steps = "transforms:\n  - {type: filter, where: 'v >= 2'}\n  - {type: aggregate, by: [k], aggs: {n: count()}}\n  - {type: filter, where: \"k < 'k5'\"}\n";
    for mode in ["batch", "stream"] {
        let pipeline = write(
            dir.path(),
            "p.yaml",
            &format!("name: rows\nmode: {mode}\nsource: {{type: file, path: in, format: csv, columns: {{k: text, v: integer}}}}\n{steps}sinks:\n  - {{type: csv, path: out.csv}}\n"),
        );
        let run = Run::finished_with_page(&pipeline);
        let url = run.url.clone();
        let run_json: Value = get_json(&format!("{url}api/run"));
        // 28 rows kept, in 7 groups, 5 of them before `k5`.
        let rows: Vec<(Value, Value)> = run_json["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["rows_in"].clone(), s["rows_out"].clone()))
            .collect();
        assert_eq!(
            rows,
            [
                (30.into(), 28.into()),
                (28.into(), 7.into()),
                (7.into(), 5.into())
            ],
            "{mode}: {run_json}"
        );
        assert_eq!(run_json["input_rows"], 30, "{mode}: {run_json}");
        assert_eq!(run_json["input_bytes"], csv.len() - 4, "{mode}: {run_json}");
        let metrics = get(&format!("{url}metrics")).text().unwrap();
        assert!(
            metrics.contains("runner_stage_rows_out_total{pipeline=\"rows\",stage=\"1\",step=\"transforms.1 (aggregate)\"} 7\n"),
            "{mode}: {metrics}"
        );
        assert!(
            metrics.contains("runner_input_rows_total{pipeline=\"rows\"} 30\n"),
            "{mode}: {metrics}"
        );
        let (code, stderr) = run.stop();
        assert_eq!(code, Some(0), "{}", stderr.join("\n"));
    }
}

#[test]
fn the_page_shows_large_ids_small_and_negative_numbers_exactly_and_a_streams_last_state() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "id,v\n113000000000000001,-3.25\n113000000000000003,0.001\n9007199254740993,2\n",
    );
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: numbers\nsource: {type: file, path: in.csv, format: csv, columns: {id: integer, v: float}}\ntransforms:\n  - {type: with_column, name: label, expr: \"cast(id as text)\"}\n  - {type: select, columns: [label, id, v]}\nsinks:\n  - {type: csv, path: out.csv}\n",
    );
    let run = Run::finished_with_page(&pipeline);
    let mut browser = Browser::open(&run.url);
    browser.wait_for("document.querySelectorAll('#result tbody tr').length === 3");
    let cells = browser.wait_for(
        "[...document.querySelectorAll('#result tbody td')].map(c => c.textContent).join('|')",
    );
    let cells = cells.as_str().unwrap();
    for shown in [
        "113,000,000,000,000,001",
        "113,000,000,000,000,003",
        "9,007,199,254,740,993",
        "0.001",
        "-3.25",
    ] {
        assert!(cells.contains(shown), "{shown} in {cells}");
    }
    // The negative value has a bar, below the axis.
    let negative = browser.wait_for("(() => { const g = [...document.querySelectorAll('#chart g.bar')].find(g => g.dataset.value === '-3.25'); return g && g.querySelector('rect').getAttribute('height') > 0 ? 'drawn' : ''; })()");
    assert_eq!(negative, "drawn");
    drop(browser);
    let (code, stderr) = run.stop();
    assert_eq!(code, Some(0), "{}", stderr.join("\n"));

    // An empty result with a chart: no bars, no hang.
    let empty = write(
        dir.path(),
        "e.yaml",
        "name: empty\nsource: {type: file, path: in.csv, format: csv, columns: {id: integer, v: float}}\ntransforms:\n  - {type: filter, where: v > 100}\n  - {type: with_column, name: label, expr: \"cast(id as text)\"}\n  - {type: select, columns: [label, v]}\nsinks:\n  - {type: csv, path: empty.csv}\n",
    );
    let run = Run::finished_with_page(&empty);
    let mut browser = Browser::open(&run.url);
    browser.wait_for("document.getElementById('rows-shown').textContent === '0 of 0 rows'");
    let grid = browser.wait_for("String(document.querySelectorAll('#chart line.grid').length)");
    assert!(
        grid.as_str().unwrap().parse::<usize>().unwrap() <= 12,
        "{grid}"
    );
    drop(browser);
    let (code, stderr) = run.stop();
    assert_eq!(code, Some(0), "{}", stderr.join("\n"));

    // A run that failed says so where its result would be.
    write(dir.path(), "bad.csv", "id,v\nx,1\n");
    let failing = write(
        dir.path(),
        "f.yaml",
        "name: failing\nsource: {type: file, path: bad.csv, format: csv, columns: {id: integer, v: float}}\nsinks:\n  - {type: csv, path: failed.csv}\n",
    );
    let run = Run::finished_with_page(&failing);
    let mut browser = Browser::open(&run.url);
    browser.wait_for("document.getElementById('state').dataset.state === 'failed'");
    browser.wait_for("document.getElementById('rows-shown').textContent.startsWith('No result: the run failed: ')");
    drop(browser);
    let (code, stderr) = run.stop();
    assert_eq!(code, Some(1), "{}", stderr.join("\n"));

    // A stream stopped without linger: its page shows it stopped, not running for ever.
    std::fs::create_dir(dir.path().join("in")).unwrap();
    write(&dir.path().join("in"), "1.csv", "id,v\n1,2\n");
    let stream = write(
        dir.path(),
        "s.yaml",
        "name: numbers\nmode: stream\nsource: {type: file, path: in, format: csv, poll: 100ms, columns: {id: integer, v: float}}\ntrigger: {processing_time: 200ms}\nsinks:\n  - {type: csv, path: stream.csv}\n",
    );
    let mut run = Run::start(&stream, &["--ui", "127.0.0.1:0"]);
    let mut browser = Browser::open(&run.url);
    browser.wait_for("document.getElementById('state').dataset.state === 'running'");
    browser.wait_for("document.getElementById('connection').textContent === 'live'");
    // More files, one epoch each, some while the page loads.
    for file in 2..=4 {
        let previous = format!("epoch {}:", file - 2);
        run.wait_line(|l| l.starts_with(&previous));
        write(
            &dir.path().join("in"),
            &format!("{file}.csv"),
            "id,v\n1,2\n",
        );
    }
    run.wait_line(|l| l.starts_with("epoch 3:"));
    let (code, stderr) = run.stop();
    assert_eq!(code, Some(0), "{}", stderr.join("\n"));
    browser.wait_for("document.getElementById('state').dataset.state === 'stopped'");
    // Every epoch once, in order, whether it came as an event or in the first fetch.
    let ids = browser.wait_for("JSON.stringify(page.epochs.map(e => e.batchId))");
    let ids: Vec<u64> = serde_json::from_str(ids.as_str().unwrap()).unwrap();
    assert!(ids.len() >= 4, "{ids:?}");
    assert_eq!(ids, (0..ids.len() as u64).collect::<Vec<_>>());
}

#[test]
fn clients_that_send_nothing_are_let_go_and_cannot_crowd_out_the_page() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "k\na\nb\n");
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: idle\nsource: {type: file, path: in.csv, format: csv}\nsinks:\n  - {type: csv, path: out.csv}\n",
    );
    let run = Run::finished_with_page(&pipeline);
    let url = run.url.clone();
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    // More silent clients than the page serves at once (64), half of them halfway through a
    // request's headers: each is closed by the server (a read ends) instead of held for ever.
    let mut idle: Vec<TcpStream> = (0..100)
        .map(|i| {
            let mut client = TcpStream::connect(&address).unwrap();
            if i % 2 == 1 {
                client
                    .write_all(b"GET /api/run HTTP/1.1\r\nHost: ")
                    .unwrap();
            }
            client.set_read_timeout(Some(PATIENCE)).unwrap();
            client
        })
        .collect();
    for client in &mut idle {
        let mut answer = Vec::new();
        match std::io::Read::read_to_end(client, &mut answer) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
    // And the page answers again.
    assert_eq!(get_json(&format!("{url}api/run"))["state"], "finished");
    let (code, stderr) = run.stop();
    assert_eq!(code, Some(0), "{}", stderr.join("\n"));
}

#[test]
fn event_streams_left_open_leave_room_for_the_page_and_a_download_defuses_formulas() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "k,n\n=cmd|' /c calc'!A1,1\n@SUM(1+1),2\nplain,3\n-2,4\n",
    );
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: open\nsource: {type: file, path: in.csv, format: csv, columns: {k: text, n: integer}}\nsinks:\n  - {type: csv, path: out.csv}\n",
    );
    let run = Run::finished_with_page(&pipeline);
    let url = run.url.clone();
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    // Event streams that stay open (their clients never read): half of the server's 64
    // connections at most; the next is told so at once.
    let request = format!("GET /events HTTP/1.1\r\nHost: {address}\r\n\r\n");
    let open: Vec<TcpStream> = (0..32)
        .map(|_| {
            let mut client = TcpStream::connect(&address).unwrap();
            client.write_all(request.as_bytes()).unwrap();
            let mut first = [0u8; 12];
            std::io::Read::read_exact(&mut client, &mut first).unwrap();
            assert_eq!(&first, b"HTTP/1.1 200");
            client
        })
        .collect();
    let refused = http().get(format!("{url}events")).send().unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    // The page, the API and the metrics are still served.
    assert_eq!(get_json(&format!("{url}api/run"))["state"], "finished");
    assert!(get(&format!("{url}metrics"))
        .text()
        .unwrap()
        .contains("runner_"));
    drop(open);
    // The API's CSV is the sink's file, byte for byte; the page's download link asks for a
    // CSV whose texts cannot run as spreadsheet formulas.
    let csv = get(&format!("{url}api/result?format=csv")).text().unwrap();
    assert_eq!(
        csv,
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap()
    );
    let page = get(&url).text().unwrap();
    assert!(
        page.contains("api/result?format=csv&amp;for=spreadsheet"),
        "{page}"
    );
    let safe = get(&format!("{url}api/result?format=csv&for=spreadsheet"))
        .text()
        .unwrap();
    assert_eq!(
        safe,
        "k,n\n'=cmd|' /c calc'!A1,1\n'@SUM(1+1),2\nplain,3\n'-2,4\n"
    );
    let (code, stderr) = run.stop();
    assert_eq!(code, Some(0), "{}", stderr.join("\n"));
}

#[test]
fn a_page_other_machines_reach_needs_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "a b\nb\n");
    let pipeline = write(
        dir.path(),
        "p.yaml",
        &format!(
            "name: t\nsource: {{type: file, path: {}}}\ntransforms:\n  - {{type: explode, column: line, separator: ' ', as: w}}\n  - {{type: group_count, by: w}}\nsinks:\n  - {{type: csv, path: out.csv}}\n",
            input.display()
        ),
    );
    let out = common::runner()
        .args(["run", pipeline.to_str().unwrap(), "--ui", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--ui-token-env"), "{stderr}");

    let token = "s3cret-token-for-the-page-0123";
    // The same settings from `ui:` in the file.
    let served = write(
        dir.path(),
        "served.yaml",
        &format!(
            "{}ui: {{listen: '0.0.0.0:0', token_env: RUNNER_TEST_UI_TOKEN, linger: 10m}}\n",
            std::fs::read_to_string(&pipeline).unwrap()
        ),
    );
    let mut run = {
        let mut child = runner_process()
            .env("RUNNER_TEST_UI_TOKEN", token)
            .args(["run", served.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = read_lines(child.stderr.take().unwrap());
        Run {
            child,
            lines,
            url: String::new(),
            stderr: Vec::new(),
        }
    };
    let line = run.wait_line(|l| l.starts_with("live page: "));
    let port = line
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let url = format!("http://127.0.0.1:{port}/");
    run.wait_line(|l| l.starts_with("the live page stays up"));
    let client = http();
    let refused = client.get(format!("{url}api/result")).send().unwrap();
    assert_eq!(refused.status(), 401);
    let wrong = client
        .get(format!("{url}api/result"))
        .bearer_auth("s3cret-token-for-the-page-0124")
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let bearer = client
        .get(format!("{url}api/result?format=csv"))
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(bearer.status(), 200);
    assert_eq!(bearer.text().unwrap(), "w,count\nb,2\na,1\n");
    // `?token=` once sets a cookie that lets the page's own requests in.
    let first = client.get(format!("{url}?token={token}")).send().unwrap();
    assert_eq!(first.status(), 200);
    let cookie = first
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let with_cookie = client
        .get(format!("{url}metrics"))
        .header("cookie", cookie)
        .send()
        .unwrap();
    assert_eq!(with_cookie.status(), 200);
    // Read-only: nothing but GET.
    let post = client
        .post(format!("{url}api/run"))
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(post.status(), 405);
    let (code, stderr) = run.stop();
    assert_eq!(code, Some(0));
    assert!(
        !stderr.join("\n").contains(token),
        "the token never reaches the logs"
    );
}
