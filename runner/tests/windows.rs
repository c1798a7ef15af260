//! Event-time windows against Spark: the tape in `tests/data/windows/tape` (out-of-order and
//! late events, one file per epoch) was run through PySpark Structured Streaming by
//! `bench/spark_windows.py`, and its output committed as `tests/data/windows/spark.json`.
//! runner must give, epoch by epoch, the same watermark, the same rows dropped as late (as
//! Spark counts them), the same state size and exactly the same emitted rows; and as a batch
//! run the same windows as Spark's batch job.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{runner, write};
use serde_json::Value;

fn tape() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/windows/tape")
}

fn spark() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/windows/spark.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Spark's "10 minutes" as runner writes it.
fn duration(spark: &Value) -> Option<String> {
    let text = spark.as_str()?;
    let (n, unit) = text.split_once(' ').unwrap();
    Some(match unit {
        "minute" | "minutes" => format!("{n}m"),
        other => panic!("unit {other}"),
    })
}

fn window_yaml(scenario: &Value) -> String {
    let mut window = format!(
        "{{column: created_at, size: {}",
        duration(&scenario["size"]).unwrap()
    );
    if let Some(slide) = duration(&scenario["slide"]) {
        window += &format!(", slide: {slide}");
    }
    if let Some(offset) = duration(&scenario["offset"]) {
        window += &format!(", offset: {offset}");
    }
    window + "}"
}

fn micros(text: &Value) -> i64 {
    runner::data::parse_timestamp(text.as_str().unwrap()).unwrap()
}

/// Rows as Spark's reference writes them: [start µs, end µs, tag, count], sorted.
fn rows_of(lines: &[&Value]) -> Vec<Value> {
    let mut rows: Vec<(i64, i64, String, i64)> = lines
        .iter()
        .map(|r| {
            (
                micros(&r["window_start"]),
                micros(&r["window_end"]),
                r["tag"].as_str().unwrap().to_owned(),
                r["count"].as_i64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows.into_iter()
        .map(|(s, e, t, c)| serde_json::json!([s, e, t, c]))
        .collect()
}

fn sorted(rows: &Value) -> Vec<Value> {
    let mut rows = rows.as_array().unwrap().clone();
    rows.sort_by_key(|r| r.to_string());
    let mut keyed: Vec<(i64, i64, String, Value)> = rows
        .into_iter()
        .map(|r| {
            (
                r[0].as_i64().unwrap(),
                r[1].as_i64().unwrap(),
                r[2].as_str().unwrap().to_owned(),
                r,
            )
        })
        .collect();
    keyed.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    keyed.into_iter().map(|k| k.3).collect()
}

fn stream_pipeline(dir: &Path, name: &str, scenario: &Value, extra: &str) -> std::path::PathBuf {
    write(
        dir,
        &format!("{name}.yaml"),
        &format!(
            "name: {name}\nmode: stream\ntrigger: {{available_now: true}}\noutput_mode: {mode}\n{extra}source:\n  type: file\n  path: {tape}\n  format: jsonl\n  columns: {{created_at: timestamp?, tag: text}}\n  max_files_per_trigger: 1\ntransforms:\n  - type: group_count\n    by: tag\n    window: {window}\n    watermark: {watermark}\nsinks:\n  - {{type: stdout, format: jsonl}}\n",
            mode = scenario["mode"].as_str().unwrap(),
            tape = tape().display(),
            window = window_yaml(scenario),
            watermark = duration(&scenario["watermark"]).unwrap(),
        ),
    )
}

/// Runs a stream pipeline: its progress objects, and its emitted rows by epoch.
fn run_stream(pipeline: &Path) -> (Vec<Value>, BTreeMap<u64, Vec<Value>>) {
    let (progress, emitted, _) = run_stream_with_stderr(pipeline);
    (progress, emitted)
}

fn run_stream_with_stderr(pipeline: &Path) -> (Vec<Value>, BTreeMap<u64, Vec<Value>>, String) {
    let out = runner()
        .args(["run", pipeline.to_str().unwrap(), "--progress", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", pipeline.display());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut by_epoch: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for line in stdout.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        by_epoch
            .entry(row["epoch"].as_u64().unwrap())
            .or_default()
            .push(row);
    }
    let progress = stderr
        .lines()
        .filter(|l| l.starts_with("{\"batchId\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (progress, by_epoch, stderr.into_owned())
}

/// Checks runner's epochs against Spark's, from Spark's epoch `first` on.
fn assert_epochs_match(
    name: &str,
    progress: &[Value],
    emitted: &BTreeMap<u64, Vec<Value>>,
    expected: &[Value],
) {
    assert_eq!(
        progress.len(),
        expected.len(),
        "{name}: epochs run (Spark's include its no-data batch)"
    );
    for (ours, theirs) in progress.iter().zip(expected) {
        let epoch = theirs["epoch"].as_u64().unwrap();
        let at = format!("{name}, epoch {epoch}");
        assert_eq!(ours["batchId"], theirs["epoch"], "{at}");
        assert_eq!(
            ours["numInputRows"], theirs["input_rows"],
            "{at}: input rows"
        );
        assert_eq!(
            ours["eventTime"]["watermark"], theirs["watermark"],
            "{at}: watermark"
        );
        let state = &ours["stateOperators"][0];
        assert_eq!(
            state["numRowsDroppedByWatermark"], theirs["dropped"],
            "{at}: rows dropped as late"
        );
        assert_eq!(
            state["numRowsTotal"], theirs["state_rows"],
            "{at}: state rows"
        );
        let rows = rows_of(
            &emitted
                .get(&epoch)
                .map_or(Vec::new(), |r| r.iter().collect()),
        );
        assert_eq!(rows, sorted(&theirs["rows"]), "{at}: emitted rows");
    }
}

#[test]
fn streams_match_spark_epoch_by_epoch() {
    let spark = spark();
    let dir = tempfile::tempdir().unwrap();
    for (name, scenario) in spark["streams"].as_object().unwrap() {
        let pipeline = stream_pipeline(dir.path(), name, scenario, "");
        let (progress, emitted) = run_stream(&pipeline);
        let expected = scenario["epochs"].as_array().unwrap();
        assert_epochs_match(name, &progress, &emitted, expected);
    }
}

#[test]
fn a_stream_stopped_and_restarted_from_its_checkpoint_goes_on_as_spark_s() {
    let spark = spark();
    let dir = tempfile::tempdir().unwrap();
    for name in ["sliding_append", "sliding_update"] {
        let scenario = &spark["streams"][name];
        let expected = scenario["epochs"].as_array().unwrap();
        let checkpoint = dir.path().join(format!("{name}-checkpoint"));
        let extra = format!("checkpoint: {{dir: {}}}\n", checkpoint.display());
        // The first run stops after 4 epochs (its state, watermark and file position saved).
        let first = stream_pipeline(
            dir.path(),
            name,
            scenario,
            &format!("{extra}max_epochs: 4\n"),
        );
        let (progress, emitted) = run_stream(&first);
        assert_epochs_match(name, &progress, &emitted, &expected[..4]);
        // The second goes on from epoch 4, reading from the fifth file.
        let second = stream_pipeline(dir.path(), name, scenario, &extra);
        let (progress, emitted) = run_stream(&second);
        assert_epochs_match(
            &format!("{name} (restarted)"),
            &progress,
            &emitted,
            &expected[4..],
        );
    }
}

#[test]
fn batch_windows_match_spark_s_batch_job() {
    let spark = spark();
    let dir = tempfile::tempdir().unwrap();
    for (name, scenario) in spark["batches"].as_object().unwrap() {
        let pipeline = write(
            dir.path(),
            &format!("{name}.yaml"),
            &format!(
                "name: {name}\nsource:\n  type: file\n  path: {tape}\n  format: jsonl\n  columns: {{created_at: timestamp?, tag: text}}\ntransforms:\n  - type: group_count\n    by: tag\n    window: {window}\nsinks:\n  - {{type: stdout, format: jsonl}}\n",
                tape = tape().display(),
                window = window_yaml(scenario),
            ),
        );
        for cores in ["1", "2"] {
            let out = runner()
                .args(["run", pipeline.to_str().unwrap(), "--cores", cores])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8(out.stdout).unwrap();
            let lines: Vec<Value> = stdout
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let rows = rows_of(&lines.iter().collect::<Vec<_>>());
            assert_eq!(rows, sorted(&scenario["rows"]), "{name} on {cores} core(s)");
        }
    }
}

#[test]
fn a_socket_stream_in_any_order_ends_with_the_batch_answer() {
    use std::io::Write;
    let spark = spark();
    let expected = sorted(&spark["batches"]["tumbling_append"]["rows"]);
    // Every line of the tape, far out of order (reversed, then interleaved), and one that is
    // not JSON at all.
    let mut lines: Vec<String> = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(tape())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        lines.extend(
            std::fs::read_to_string(file)
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
    }
    lines.reverse();
    let (odd, even): (Vec<_>, Vec<_>) =
        lines.into_iter().enumerate().partition(|(i, _)| i % 2 == 1);
    let mut shuffled: Vec<String> = even.into_iter().chain(odd).map(|(_, l)| l).collect();
    shuffled.insert(7, "this is not json".to_owned());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut connection, _) = listener.accept().unwrap();
        for line in &shuffled {
            writeln!(connection, "{line}").unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write(
        dir.path(),
        "socket.yaml",
        &format!(
            "name: socket-windows\nmode: stream\ntrigger: {{available_now: true}}\noutput_mode: complete\nsource:\n  type: socket\n  host: 127.0.0.1\n  port: {port}\n  format: jsonl\n  columns: {{created_at: timestamp?, tag: text}}\n  on_error: skip\ntransforms:\n  - type: group_count\n    by: tag\n    window: {{column: created_at, size: 10m}}\n    watermark: 2m\nsinks:\n  - {{type: stdout, format: jsonl}}\n"
        ),
    );
    let (_, emitted, stderr) = run_stream_with_stderr(&pipeline);
    server.join().unwrap();
    assert!(
        stderr.contains(
            "1 record(s) could not be read and were skipped; the first: a line from 127.0.0.1"
        ),
        "{stderr}"
    );
    // Complete mode keeps every row, late or not: its last epoch is the batch answer.
    let (_, last) = emitted.iter().next_back().expect("an epoch was emitted");
    assert_eq!(rows_of(&last.iter().collect::<Vec<_>>()), expected);
}

#[test]
fn the_trending_replay_pipeline_draws_a_chart_per_final_window() {
    let dir = tempfile::tempdir().unwrap();
    let charts = dir.path().join("top-{window_start}.png");
    let out = runner()
        .args(["run", "pipelines/trending_replay.yaml", "--progress", "off"])
        // Ten times faster than shipped, epochs ten times as often: the same event time per
        // epoch (two minutes), so the tape's far-too-late statuses are late here too.
        .args([
            "--set",
            "source.speed=1200",
            "--set",
            "trigger.processing_time=100ms",
        ])
        .args([
            "--set",
            "sinks.0.format=jsonl",
            "--set",
            "sinks.0.limit=100000",
        ])
        .arg("--set")
        .arg(format!("sinks.1.path={}", charts.display()))
        .current_dir(common::repo_root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Append mode: each final window once, and a chart for each.
    let mut windows: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["window_start"].as_str().unwrap().to_owned(),
                r["epoch"].as_u64().unwrap(),
            )
        })
        .collect();
    windows.dedup();
    let starts: std::collections::BTreeSet<&str> =
        windows.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        starts.len(),
        windows.len(),
        "a window emitted twice: {windows:?}"
    );
    assert!(starts.len() >= 6, "{starts:?}");
    for start in &starts {
        let png = dir
            .path()
            .join(format!("top-{}.png", start.replace(':', "-")));
        assert!(png.is_file(), "no chart {}", png.display());
    }
    // The tape's far-too-late statuses are counted.
    assert!(stderr.contains("arrived behind the watermark"), "{stderr}");
}

#[test]
fn the_run_summary_counts_the_late_rows() {
    let spark = spark();
    let dir = tempfile::tempdir().unwrap();
    let scenario = &spark["streams"]["tumbling_append"];
    let pipeline = stream_pipeline(dir.path(), "summary", scenario, "");
    let summary = dir.path().join("summary.json");
    let out = runner()
        .args(["run", pipeline.to_str().unwrap(), "--quiet", "--summary"])
        .arg(&summary)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    // Spark drops 2 late events in each of epochs 3 to 9 on this tape (tumbling windows: one
    // group per late event).
    let spark_dropped: u64 = scenario["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["dropped"].as_u64().unwrap())
        .sum();
    assert_eq!(summary["warnings"]["late_rows"], spark_dropped);
    let messages = summary["warnings"]["messages"].to_string();
    assert!(
        messages.contains("arrived behind the watermark"),
        "{messages}"
    );

    // Run in two parts from a checkpoint, each summary counts its own part's late rows.
    let pipeline = stream_pipeline(
        dir.path(),
        "parts",
        scenario,
        "checkpoint: {dir: ck}\nmax_epochs: 6\n",
    );
    let part_summary = dir.path().join("part.json");
    let late_of_part = || -> u64 {
        let out = runner()
            .args(["run", pipeline.to_str().unwrap(), "--quiet", "--summary"])
            .arg(&part_summary)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let part: Value =
            serde_json::from_str(&std::fs::read_to_string(&part_summary).unwrap()).unwrap();
        part["warnings"]["late_rows"].as_u64().unwrap()
    };
    let (first, second) = (late_of_part(), late_of_part());
    assert!(first > 0 && second > 0, "{first} then {second}");
    assert_eq!(first + second, spark_dropped);
}

#[test]
fn a_file_stream_names_the_line_of_a_bad_record_past_a_skipped_long_line() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("{{\"tag\":\"{}\"}}", "x".repeat(1_100_000));
    write(
        dir.path(),
        "in/a.jsonl",
        &format!("{{\"tag\":\"ok\"}}\n{long}\n{{\"tag\":\"fine\"}}\nnot json\n"),
    );
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nmode: stream\nsource:\n  type: file\n  path: in\n  format: jsonl\n  columns: {tag: text}\n  max_line_bytes: 1048576\nsinks:\n  - {type: stdout, format: jsonl}\n",
    );
    let out = runner()
        .args(["run", pipeline.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("a.jsonl line 4: the record cannot be read"),
        "{stderr}"
    );
}
