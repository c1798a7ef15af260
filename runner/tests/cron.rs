//! Built for cron: run summaries, a killed run, `runner schedule`, plain output in log files,
//! the JSON Schema and `runner plan`.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use predicates::prelude::*;
use serde_json::Value;

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_runner(args: &[&std::ffi::OsStr]) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` to exit, killing it after `limit` (a safety net, not an assertion on time).
fn wait_at_most(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn stage<'a>(summary: &'a Value, step: &str) -> &'a Value {
    summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == step)
        .unwrap_or_else(|| panic!("no stage {step} in {summary}"))
}

#[test]
fn romeo_summary_records_the_run() {
    let Some(play) = romeo_text() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str], summary: &Path| {
        runner()
            .args(["run", "pipelines/romeo.yaml", "--cores", "2"])
            .arg("--set")
            .arg(format!("source.path={}", play.display()))
            .arg("--set")
            .arg(format!(
                "sinks.1.path={}",
                dir.path().join("c.csv").display()
            ))
            .arg("--set")
            .arg(format!(
                "sinks.2.path={}",
                dir.path().join("c.png").display()
            ))
            .arg("--summary")
            .arg(summary)
            .args(extra)
            .current_dir(repo_root())
            .assert()
            .success()
            .stderr(predicate::str::contains("romeo-word-count: ok in "))
    };
    let fused = dir.path().join("fused.json");
    run(&[], &fused);
    let summary = read_json(&fused);
    let pipeline_file = std::fs::read(repo_root().join("pipelines/romeo.yaml")).unwrap();
    let sha: String = sha2::Digest::finalize(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        &pipeline_file,
    ))
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect();
    assert_eq!(summary["pipeline"], "romeo-word-count");
    assert_eq!(summary["file_sha256"], sha.as_str());
    assert_eq!(summary["status"], "ok");
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["error"], Value::Null);
    assert_eq!(summary["mode"], "batch");
    assert_eq!(
        summary["bytes_read"],
        std::fs::metadata(&play).unwrap().len()
    );
    assert_eq!(summary["rows_out"], 25);
    assert!(summary["duration_seconds"].as_f64().unwrap() >= 0.0);
    assert!(summary["started"].as_str().unwrap() <= summary["ended"].as_str().unwrap());
    // The fused word count: its stages are marked, the count's rows feed the filter.
    assert_eq!(stage(&summary, "transforms.0")["fused"], "word count");
    // The stop words are taken out of the counted words, not out of rows: their rows are
    // not known (not the distinct words' numbers).
    assert_eq!(stage(&summary, "transforms.1")["fused"], "word count");
    assert_eq!(stage(&summary, "transforms.1")["rows_in"], Value::Null);
    assert_eq!(stage(&summary, "transforms.1")["rows_out"], Value::Null);
    let distinct = &stage(&summary, "transforms.2")["rows_out"];
    assert!(distinct.as_u64().unwrap() > 25);
    assert_eq!(&stage(&summary, "transforms.3")["rows_in"], distinct);
    assert_eq!(stage(&summary, "transforms.3")["rows_out"], 25);
    assert_eq!(stage(&summary, "sinks.1")["rows_in"], 25);
    let outputs: Vec<&str> = summary["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    assert!(outputs[0].ends_with("c.csv") && outputs[1].ends_with("c.png"));
    assert_eq!(summary["warnings"]["bad_utf8_lines"], 0);
    assert_eq!(summary["warnings"]["skipped_lines"], 0);
    assert_eq!(summary["warnings"]["malformed_events"], 0);

    // Transform by transform, every stage has its rows; the source's are the play's lines.
    let generic = dir.path().join("generic.json");
    run(&["--no-fusion"], &generic);
    let summary = read_json(&generic);
    let text = std::fs::read(&play).unwrap();
    let lines = text.iter().filter(|&&b| b == b'\n').count() + usize::from(!text.ends_with(b"\n"));
    assert_eq!(stage(&summary, "source")["rows_out"], lines as u64);
    assert_eq!(stage(&summary, "transforms.0")["rows_in"], lines as u64);
    let words = stage(&summary, "transforms.0")["rows_out"]
        .as_u64()
        .unwrap();
    let kept = stage(&summary, "transforms.1")["rows_out"]
        .as_u64()
        .unwrap();
    assert!(words > kept && kept > 0);
    assert_eq!(stage(&summary, "transforms.2")["rows_in"], kept);
    assert_eq!(&stage(&summary, "transforms.2")["rows_out"], distinct);
    assert_eq!(summary["rows_out"], 25);
    // The second run replaced files written moments before (often within the same second):
    // they are still this run's outputs.
    assert_eq!(summary["outputs"].as_array().unwrap().len(), 2, "{summary}");
}

#[test]
fn a_failed_run_writes_its_summary_and_the_pipeline_key_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nsummary: out/summary.json\nsource:\n  type: file\n  path: missing.txt\nsinks:\n  - type: stdout\n",
    );
    runner()
        .arg("run")
        .arg(&p)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("missing.txt"));
    let summary = read_json(&dir.path().join("out/summary.json"));
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary["exit_code"], 1);
    assert!(summary["error"].as_str().unwrap().contains("missing.txt"));
    assert_eq!(summary["pipeline"], "t");
    assert_eq!(summary["outputs"], serde_json::json!([]));

    // Success replaces it (atomically), and --quiet prints nothing.
    write(dir.path(), "missing.txt", "a\n\u{0}b\n");
    runner()
        .arg("run")
        .arg(&p)
        .arg("--quiet")
        .assert()
        .success()
        .stderr("");
    let summary = read_json(&dir.path().join("out/summary.json"));
    assert_eq!(summary["status"], "ok");
    assert_eq!(stage(&summary, "source")["rows_out"], 2);
    assert_eq!(stage(&summary, "sinks.0")["rows_in"], 2);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["summary.json"]);
}

#[test]
fn a_stream_that_fails_after_an_epoch_says_what_its_epochs_did() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    write(dir.path(), "in/1.csv", "store,amount\na,1\nb,2\n");
    write(dir.path(), "in/2.csv", "store,amount\na,x\n");
    let p = write(
        dir.path(),
        "p.yaml",
        "name: s\nmode: stream\nsource: {type: file, path: in, format: csv, max_files_per_trigger: 1, on_error: fail, columns: {store: text, amount: float}}\ntransforms:\n  - {type: aggregate, by: [store], aggs: {total: sum(amount)}}\ntrigger: {available_now: true}\noutput_mode: complete\nsinks:\n  - {type: file, path: out.csv, format: csv}\n",
    );
    let summary_path = dir.path().join("summary.json");
    runner()
        .arg("run")
        .arg("--summary")
        .arg(&summary_path)
        .arg(&p)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("in/2.csv line 2"));
    let summary = read_json(&summary_path);
    assert_eq!(summary["status"], "failed");
    // Epoch 0 (the first file) was written before the second file failed.
    assert_eq!(summary["epochs"], 1, "{summary}");
    assert_eq!(summary["rows_in"], 2, "{summary}");
    assert_eq!(summary["rows_out"], 2, "{summary}");
    assert_eq!(stage(&summary, "source")["rows_out"], 2, "{summary}");
    // The bytes the finished epoch took in: the first file's records ("a,1\nb,2\n"), not its
    // header, nor the failed epoch's record.
    assert_eq!(summary["bytes_read"], 8, "{summary}");
    let written = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    assert_eq!(summary["outputs"][0]["bytes"], written.len(), "{summary}");
}

#[test]
fn bytes_read_are_the_inputs_size_when_read_even_where_the_sink_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = "store,amount\na,1\nb,2\na,3\n";
    write(dir.path(), "sales.csv", input);
    // The sink writes over the file the run reads, with fewer bytes than it had.
    let p = write(
        dir.path(),
        "p.yaml",
        "name: b\nsource: {type: file, path: sales.csv, format: csv}\ntransforms:\n  - {type: aggregate, by: [store], aggs: {n: count()}}\nsinks:\n  - {type: file, path: sales.csv, format: csv}\n",
    );
    let summary_path = dir.path().join("summary.json");
    runner()
        .arg("run")
        .arg("--summary")
        .arg(&summary_path)
        .arg(&p)
        .assert()
        .success();
    let written = std::fs::read_to_string(dir.path().join("sales.csv")).unwrap();
    assert_eq!(written, "store,n\na,2\nb,1\n");
    let summary = read_json(&summary_path);
    assert_eq!(summary["bytes_read"], input.len(), "{summary}");
}

/// A run that stops reading early (a `limit` reached) reports the bytes it read, not the
/// input's size.
#[test]
fn bytes_read_stop_where_the_reading_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("store,amount\n");
    for row in 0..800_000 {
        input.push_str(&format!("s{},{row}\n", row % 97));
    }
    write(dir.path(), "sales.csv", &input);
    let p = write(
        dir.path(),
        "p.yaml",
        "name: b\nsource: {type: file, path: sales.csv, format: csv}\ntransforms:\n  - {type: limit, n: 5}\nsinks:\n  - {type: csv, path: out.csv}\n",
    );
    let summary_path = dir.path().join("summary.json");
    runner()
        .args(["run", "--cores", "1", "--summary"])
        .arg(&summary_path)
        .arg(&p)
        .assert()
        .success();
    let summary = read_json(&summary_path);
    let read = summary["bytes_read"].as_u64().unwrap();
    assert!(
        read > 0 && read < input.len() as u64 / 2,
        "{read} of {} bytes",
        input.len()
    );
}

#[test]
fn a_failed_streams_stages_count_only_the_epochs_it_finished() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    write(dir.path(), "in/1.csv", "store,amount\na,1\nb,2\nc,-1\n");
    // Its rows pass the filter and reach the aggregation, whose sum then overflows.
    write(
        dir.path(),
        "in/2.csv",
        "store,amount\nd,5\na,9223372036854775807\n",
    );
    let p = write(
        dir.path(),
        "p.yaml",
        "name: s\nmode: stream\nsource: {type: file, path: in, format: csv, max_files_per_trigger: 1, columns: {store: text, amount: integer}}\ntransforms:\n  - {type: filter, where: amount > 0}\n  - {type: aggregate, by: [store], aggs: {total: sum(amount)}}\ntrigger: {available_now: true}\noutput_mode: complete\nsinks:\n  - {type: file, path: out.csv, format: csv}\n",
    );
    let summary_path = dir.path().join("summary.json");
    runner()
        .arg("run")
        .arg("--summary")
        .arg(&summary_path)
        .arg(&p)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("overflow"));
    let summary = read_json(&summary_path);
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary["epochs"], 1, "{summary}");
    assert_eq!(summary["rows_in"], 3, "{summary}");
    assert_eq!(stage(&summary, "source")["rows_out"], 3, "{summary}");
    assert_eq!(stage(&summary, "transforms.0")["rows_in"], 3, "{summary}");
    assert_eq!(stage(&summary, "transforms.0")["rows_out"], 2, "{summary}");
    assert_eq!(stage(&summary, "transforms.1")["rows_in"], 2, "{summary}");
    // The first epoch's result: the groups a and b.
    assert_eq!(summary["rows_out"], 2, "{summary}");
    assert_eq!(stage(&summary, "sinks.0")["rows_in"], 2, "{summary}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        "store,total\na,1\nb,2\n"
    );
}

#[test]
fn a_summary_that_would_replace_the_pipeline_or_an_output_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = "name: t\nsource:\n  type: file\n  path: in.txt\nsinks:\n  - {type: csv, path: out/counts.csv}\n";
    let p = write(dir.path(), "p.yaml", text);
    write(dir.path(), "in.txt", "a\nb\n");
    runner().arg("run").arg(&p).arg("-q").assert().success();
    let output = std::fs::read(dir.path().join("out/counts.csv")).unwrap();
    // The pipeline file, by another spelling of its path too; the output; a folder.
    for (summary, refusal) in [
        ("p.yaml", "would replace the pipeline file"),
        ("out/../p.yaml", "would replace the pipeline file"),
        ("out/counts.csv", "would replace the output"),
        ("out", "it is a folder"),
    ] {
        runner()
            .arg("run")
            .arg(&p)
            .args(["--summary", summary])
            .current_dir(dir.path())
            .assert()
            .code(2)
            .stderr(predicate::str::contains(refusal));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        assert_eq!(
            std::fs::read(dir.path().join("out/counts.csv")).unwrap(),
            output
        );
    }
    // Written in the pipeline, the same.
    let in_file = write(
        dir.path(),
        "q.yaml",
        &format!("{text}summary: out/counts.csv\n"),
    );
    runner()
        .arg("run")
        .arg(&in_file)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("would replace the output"));
    assert_eq!(
        std::fs::read(dir.path().join("out/counts.csv")).unwrap(),
        output
    );
}

/// A summary or a sink where the source reads is refused: it would replace the input, or be
/// read as input by a stream's next epochs or the next run. A batch run that names the very
/// file it reads as its output replaces it once it has read it (as `sort -o f f`).
#[test]
fn a_summary_or_an_output_where_the_source_reads_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: in/a.csv, format: csv}\ntransforms:\n  - {type: aggregate, by: [k], aggs: {n: count()}}\nsinks:\n  - {type: csv, path: out.csv}\n",
    );
    let input = "k\na\na\nb\n";
    write(dir.path(), "in/a.csv", input);
    let refused = |args: &[&str], refusal: &str| {
        runner()
            .arg("run")
            .arg(&p)
            .args(args)
            .current_dir(dir.path())
            .assert()
            .code(2)
            .stderr(predicate::str::contains(refusal));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("in/a.csv")).unwrap(),
            input
        );
        assert!(!dir.path().join("in/b.csv").exists());
    };
    refused(&["--summary", "in/a.csv"], "would replace the input");
    refused(
        &["--summary", "in/b.csv", "--set", "source.path=in"],
        "would be where the source reads",
    );
    refused(
        &["--set", "source.path=in", "--set", "sinks.0.path=in/b.csv"],
        "where the source reads: its output would be read as input (by the next run)",
    );
    refused(
        &[
            "--set",
            "source.path=in/*.csv",
            "--set",
            "sinks.0.path=in/b.csv",
        ],
        "(by the next run)",
    );
    refused(
        &["--set", "mode=stream", "--set", "sinks.0.path=in/a.csv"],
        "(by the stream's next epochs)",
    );
    // What the source passes by is no input: a hidden name in its folder, a file in a
    // folder below its glob's.
    for args in [
        &["--set", "source.path=in", "--summary", "in/_last-run.json"][..],
        &[
            "--set",
            "source.path=in/*.csv",
            "--set",
            "sinks.0.path=in/out/b.csv",
        ][..],
    ] {
        runner()
            .arg("run")
            .arg(&p)
            .arg("-q")
            .args(args)
            .current_dir(dir.path())
            .assert()
            .success();
    }
    assert!(dir.path().join("in/_last-run.json").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("in/out/b.csv")).unwrap(),
        "k,n\na,2\nb,1\n"
    );
    // In place: the file is read to its end, then replaced by the result.
    runner()
        .arg("run")
        .arg(&p)
        .args(["-q", "--set", "sinks.0.path=in/a.csv"])
        .current_dir(dir.path())
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("in/a.csv")).unwrap(),
        "k,n\na,2\nb,1\n"
    );
}

#[test]
fn kill_9_leaves_no_lock_and_the_previous_output_intact() {
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("locks");
    let port = free_port();
    let p = write(
        dir.path(),
        "p.yaml",
        &format!("name: t\nmode: stream\nsource:\n  type: socket\n  mode: listen\n  port: {port}\ntransforms:\n  - type: explode\n    column: line\n    separator: ' '\n    as: tag\n  - type: group_count\n    by: tag\ntrigger:\n  processing_time: 50ms\nstop_after: 60s\nsinks:\n  - type: csv\n    path: out/counts.csv\n"),
    );
    let previous = "tag,count\nold,1\n";
    write(dir.path(), "out/counts.csv", previous);
    let mut child = spawn_runner(&[
        "run".as_ref(),
        p.as_os_str(),
        "--lock-dir".as_ref(),
        locks.as_os_str(),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
            break stream;
        }
        assert!(Instant::now() < deadline, "the run never listened");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Keep it busy writing epochs, then kill it without warning.
    let csv = dir.path().join("out/counts.csv");
    while std::fs::read_to_string(&csv).unwrap() == previous {
        assert!(Instant::now() < deadline, "no epoch was written");
        stream.write_all(b"a b c\n").unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..20 {
        let _ = stream.write_all(&b"x y z\n".repeat(1000));
    }
    signal(&child, "-KILL");
    let status = wait_at_most(&mut child, Duration::from_secs(20));
    assert!(!status.success());
    // Whatever the moment of the kill, the output is a whole CSV: old or new, never half.
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        text.starts_with("tag,count\n") && text.ends_with('\n'),
        "{text}"
    );
    assert!(
        text.lines().skip(1).all(|l| l.split(',').count() == 2),
        "{text}"
    );
    // The kernel dropped the lock with the process: the next run starts (and stops by itself).
    runner()
        .arg("run")
        .arg(&p)
        .args(["--set", "stop_after=200ms", "--lock-dir"])
        .arg(&locks)
        .assert()
        .success();
}

/// Starts `runner schedule` on `pipeline`; its stderr comes line by line through the receiver
/// (which disconnects at the end of the pipe).
fn spawn_schedule(pipeline: &Path, locks: &Path) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = spawn_runner(&[
        "schedule".as_ref(),
        pipeline.as_os_str(),
        "--lock-dir".as_ref(),
        locks.as_os_str(),
    ]);
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

/// Sends SIGTERM to a `runner schedule`, waits for it, and adds the rest of its log to `log`.
fn stop_schedule(
    child: &mut Child,
    lines: &std::sync::mpsc::Receiver<String>,
    log: &mut Vec<String>,
) -> std::process::ExitStatus {
    signal(child, "-TERM");
    let status = wait_at_most(child, Duration::from_secs(30));
    // The reader thread ends at the pipe's end: take every line up to there, not only those
    // already forwarded.
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(10)) {
        log.push(line);
    }
    status
}

#[test]
fn schedule_runs_a_pipeline_each_second_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "a b a\n");
    let p = write(
        dir.path(),
        "p.yaml",
        "name: every-second\nschedule: '* * * * * *'\nsummary: summary.json\nsource:\n  type: file\n  path: in.txt\ntransforms:\n  - type: tokenize\n  - type: group_count\n    by: word\nsinks:\n  - type: csv\n    path: out.csv\n",
    );
    let (mut child, lines) = spawn_schedule(&p, &dir.path().join("locks"));
    let mut log = Vec::new();
    let mut finished = 0;
    while finished < 2 {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("fewer than two runs; log so far:\n{}", log.join("\n")));
        if line.contains("run finished") {
            assert!(line.contains("exit_code=0"), "{line}");
            finished += 1;
        }
        log.push(line);
    }
    let status = stop_schedule(&mut child, &lines, &mut log);
    let log = log.join("\n");
    assert!(status.success(), "{log}");
    assert!(log.contains("SIGTERM: starting no more runs"), "{log}");
    assert!(
        log.contains("every-second: ok in "),
        "each run's one-line summary: {log}"
    );
    assert!(log.contains("run started"), "{log}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        "word,count\na,2\nb,1\n"
    );
    assert_eq!(read_json(&dir.path().join("summary.json"))["status"], "ok");
}

#[test]
fn schedule_never_overlaps_a_pipeline_with_itself() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Each run listens for 2.5 s, so the next two due times find it still going.
    let p = write(
        dir.path(),
        "slow.yaml",
        &format!("name: slow\nmode: stream\nschedule: '* * * * * *'\nstop_after: 2500ms\nsource:\n  type: socket\n  mode: listen\n  host: 127.0.0.1\n  port: {port}\nsinks:\n  - type: stdout\n"),
    );
    let (mut child, lines) = spawn_schedule(&p, &dir.path().join("locks"));
    let mut log = Vec::new();
    let (mut started, mut skipped, mut finished) = (0, 0, 0);
    while finished < 1 || skipped < 1 {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no skip seen; log so far:\n{}", log.join("\n")));
        if line.contains("run started") {
            started += 1;
            // A second start before the first run finished would be an overlap.
            assert_eq!(started, finished + 1, "{}\n{line}", log.join("\n"));
        }
        if line.contains("still going; skipping") {
            skipped += 1;
        }
        if line.contains("run finished") {
            finished += 1;
        }
        log.push(line);
    }
    let status = stop_schedule(&mut child, &lines, &mut log);
    assert!(status.success(), "{}", log.join("\n"));
}

#[test]
fn schedule_refuses_pipelines_without_or_with_a_bad_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let plain = write(
        dir.path(),
        "plain.yaml",
        "name: t\nsource:\n  type: file\n  path: in.txt\nsinks:\n  - type: stdout\n",
    );
    runner()
        .arg("schedule")
        .arg(&plain)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("plain.yaml: no `schedule:`"));
    let bad = write(
        dir.path(),
        "bad.yaml",
        "name: t\nschedule: '61 * * * *'\nsource:\n  type: file\n  path: in.txt\nsinks:\n  - type: stdout\n",
    );
    for command in ["schedule", "validate", "run"] {
        runner().arg(command).arg(&bad).assert().code(2).stderr(
            predicate::str::contains("bad.yaml:2:11:")
                .and(predicate::str::contains("not a valid cron expression")),
        );
    }
}

#[test]
fn schedule_of_every_pipeline_file_skips_those_without_a_schedule() {
    // `runner schedule pipelines/*.yaml`, as docs/cron.md shows it: only romeo.yaml has one
    // (and --next loads no plugin, so pipelines whose plugin is not built are fine too).
    let mut files: Vec<String> = std::fs::read_dir(repo_root().join("pipelines"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.strip_prefix(repo_root()).unwrap().display().to_string())
        .collect();
    files.sort();
    let output = runner()
        .args(["schedule", "--next"])
        .args(&files)
        .current_dir(repo_root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("skipping"), "{stderr}");
    assert!(stderr.contains("without a `schedule:`"), "{stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.starts_with("pipelines/romeo.yaml (romeo-word-count)"),
        "{stdout}"
    );
}

#[test]
fn schedule_next_prints_the_next_five_times() {
    let output = runner()
        .args(["schedule", "--next", "pipelines/romeo.yaml"])
        .current_dir(repo_root())
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let times: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(times.len(), 5, "{stdout}");
    assert!(times.iter().all(|t| t.contains(" 03:00:00 ")), "{stdout}");
    assert!(stdout.starts_with("pipelines/romeo.yaml (romeo-word-count): `0 3 * * *`"));
}

#[test]
fn no_escape_codes_when_output_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.txt"), b"caf\xff\nok\n").unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource:\n  type: file\n  path: bad.txt\ntransforms:\n  - type: tokenize\n  - type: group_count\n    by: word\nsinks:\n  - type: stdout\n  - type: stdout\n    format: bars\n",
    );
    for extra in [&["-v"][..], &["-vv"], &[]] {
        let output = runner().arg("run").arg(&p).args(extra).output().unwrap();
        assert!(output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("warning: 1 line(s) had invalid UTF-8"),
            "{stderr}"
        );
        assert!(!output.stdout.contains(&0x1b), "stdout has an escape code");
        assert!(
            !output.stderr.contains(&0x1b),
            "stderr has an escape code: {stderr}"
        );
    }
    // JSON logs: every line on stderr is one JSON object.
    let output = runner()
        .arg("run")
        .arg(&p)
        .args(["--log-format", "json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let events: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(events.iter().any(|e| e["level"] == "WARN"
        && e["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("invalid UTF-8"))));
    assert!(events.iter().any(|e| e["fields"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("t: ok in "))));
    // As many lines as text mode prints: the warning and the result, no INFO chatter (the
    // engine's "running" and fused-loop lines, once a Rust Debug dump, are for -v).
    assert_eq!(events.len(), 2, "{stderr}");
    assert!(!stderr.contains("Fusion {"), "{stderr}");
    // Errors too.
    let output = runner()
        .args(["run", "missing.yaml", "--log-format", "json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let event: Value = serde_json::from_slice(&output.stderr).unwrap();
    assert_eq!(event["level"], "ERROR");
    // And a command line the parser refuses, as one event on one line.
    let output = runner()
        .args(["--log-format", "json", "run", "--bogus", "p.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let event: Value = serde_json::from_str(&stderr).unwrap();
    assert_eq!(event["level"], "ERROR");
    assert!(event["fields"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("unexpected argument '--bogus' found")));
}

#[test]
fn schema_accepts_every_shipped_pipeline_and_rejects_a_broken_one() {
    let output = runner().arg("schema").output().unwrap();
    assert!(output.status.success());
    let schema: Value = serde_json::from_slice(&output.stdout).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo_root().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        // The pipelines' tests (`*.test.yaml`) are not pipeline files.
        if path.extension().is_none_or(|e| e != "yaml") || runner::testing::is_test_file(&path) {
            continue;
        }
        let document: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&document)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        checked += 1;
    }
    assert!(checked >= 5);
    for broken in [
        "name: t\nsource: {type: file, path: in.txt}\nsinks: [{type: csv}]\n",
        "name: t\nsource: {type: file, path: in.txt}\ntranforms: []\nsinks: [{type: stdout}]\n",
        "name: t\nsource: {type: file, path: in.txt}\nsinks: [{type: stdout, format: fancy}]\n",
        "source: {type: file, path: in.txt}\nsinks: [{type: stdout}]\n",
    ] {
        let document: Value = serde_saphyr::from_str(broken).unwrap();
        assert!(!validator.is_valid(&document), "accepted: {broken}");
    }
}

#[test]
fn plan_shows_the_pipeline_as_it_will_run_without_reading_data() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource:\n  type: file\n  path: never-read.txt\ntransforms:\n  - type: tokenize\n  - type: stopwords\n  - type: group_count\n    by: word\n  - type: filter\n    where: count > 1\nsinks:\n  - type: csv\n    path: out/c.csv\n",
    );
    runner()
        .arg("plan")
        .arg(&p)
        .args(["--cores", "3"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("batch, 3 core(s)")
                .and(predicate::str::contains("never-read.txt (missing)"))
                .and(predicate::str::contains(
                    "fused     transforms.0, transforms.1, transforms.2 run as one word-count kernel",
                ))
                .and(predicate::str::contains("word: text, count: integer"))
                .and(predicate::str::contains(
                    dir.path().join("out/c.csv").to_str().unwrap(),
                )),
        );
    let output = runner()
        .arg("plan")
        .arg(&p)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["transforms"][3]["type"], "filter");
    assert_eq!(plan["transforms"][3]["fused"], Value::Null);
    assert_eq!(plan["transforms"][3]["runs"], "on the merged result");
    // The physical plan whole: the rule that fused, and its kernel's steps.
    assert_eq!(plan["physical"]["rules_applied"][0], "count_split_text");
    assert_eq!(plan["physical"]["fusion"]["kernel"], "word_count");
    assert_eq!(plan["physical"]["fusion"]["count"], 2);
    assert_eq!(
        plan["physical"]["operators"][1]["name"],
        "word_count_kernel"
    );
    assert_eq!(
        plan["logical"]["source"]["capabilities"][0],
        "raw_text_lines"
    );
    assert!(!dir.path().join("out").exists());
}
