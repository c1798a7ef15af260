//! Soundness through the binary: whatever the input, config or internal failure, a run ends
//! with a clear error and a non-zero exit code (never a panic report or a hang), a failed run
//! still writes its summary, and values that would overflow are refused at validation.

mod common;
use common::*;

use std::path::{Path, PathBuf};

/// A replay stream over `tape` at `speed` into a CSV, with a summary.
fn replay(dir: &Path, tape: &Path, speed: &str, extra: &str) -> PathBuf {
    write(
        dir,
        "p.yaml",
        &format!(
            "name: tags\nmode: stream\nsource:\n  type: replay\n  path: {}\n  speed: {speed}\ntransforms:\n  - {{type: explode, column: tags, as: hashtag}}\n  - {{type: group_count, by: hashtag}}\ntrigger:\n  available_now: true\n{extra}summary: summary.json\nsinks:\n  - {{type: csv, path: out.csv}}\n",
            tape.display()
        ),
    )
}

fn sample_tape() -> PathBuf {
    repo_root().join("pipelines/tapes/sample.jsonl")
}

fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("a summary was written");
    serde_json::from_str(&text).unwrap()
}

/// Runs `args`, expecting `code` and `message` on stderr, and no panic report.
fn fails(args: &[&str], dir: &Path, code: i32, message: &str) -> String {
    let out = runner().args(args).current_dir(dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(
        stderr.contains(message),
        "expected {message:?} in:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked at") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    stderr
}

#[test]
fn a_tape_too_far_ahead_to_wait_for_fails_the_run_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    // 1 of 600 rows, then "source ended", exit 0 and status ok: the task had panicked.
    let p = replay(dir.path(), &sample_tape(), "1e-300", "");
    fails(
        &["run", p.to_str().unwrap()],
        dir.path(),
        1,
        "too far to wait for",
    );
    assert_eq!(summary(dir.path())["status"], "failed");

    let first = std::fs::read_to_string(sample_tape()).unwrap();
    let line = first.lines().next().unwrap();
    let (head, _) = line.rsplit_once("\"t\":").expect("a recorded time");
    write(dir.path(), "far.jsonl", &format!("{head}\"t\": 1e300}}\n"));
    let p = replay(dir.path(), &dir.path().join("far.jsonl"), "1", "");
    fails(
        &["run", p.to_str().unwrap()],
        dir.path(),
        1,
        "far.jsonl line 1: its time t = 1e300",
    );
    assert_eq!(summary(dir.path())["status"], "failed");
}

#[test]
fn a_long_pause_on_a_tape_is_said_not_slept_through_quietly() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let first = std::fs::read_to_string(sample_tape()).unwrap();
    let line = first.lines().next().unwrap();
    let (head, _) = line.rsplit_once("\"t\":").expect("a recorded time");
    // Unix times: the second event is 31 years after the first.
    write(
        dir.path(),
        "unix.jsonl",
        &format!("{head}\"t\": 0}}\n{head}\"t\": 1e9}}\n"),
    );
    // Bounded: without the warning the run ends at `stop_after` and the test fails.
    let p = replay(
        dir.path(),
        &dir.path().join("unix.jsonl"),
        "1",
        "stop_after: 60s\n",
    );
    let mut child = common::runner_process()
        .arg("run")
        .arg(&p)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        if line.contains("unix.jsonl line 2: its event is 31years") {
            break;
        }
    }
    assert!(
        seen.contains("waiting for it; `speed: max` replays without the pauses"),
        "{seen}"
    );
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_checkpoint_with_a_time_off_the_tape_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = replay(
        dir.path(),
        &sample_tape(),
        "max",
        "checkpoint:\n  dir: state\n",
    );
    runner().arg("run").arg(&p).assert().success();
    let commit = dir.path().join("state/commit.json");
    let text = std::fs::read_to_string(&commit).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["position"]["time"] = serde_json::json!(-1e300);
    std::fs::write(&commit, json.to_string()).unwrap();
    fails(
        &["run", p.to_str().unwrap()],
        dir.path(),
        1,
        "not a time on the tape",
    );
    assert_eq!(summary(dir.path())["status"], "failed");
}

#[test]
fn a_panic_anywhere_is_one_error_exit_1_and_a_failed_summary() {
    let dir = tempfile::tempdir().unwrap();
    // In a stream source's task: it used to read as "the source ended", exit 0.
    let p = replay(dir.path(), &sample_tape(), "max", "");
    let stderr = fails_at(&p, "replay-source", &[]);
    assert!(
        stderr.contains("internal error: runner panicked: failpoint replay-source"),
        "{stderr}"
    );
    let written = summary(dir.path());
    assert_eq!(written["status"], "failed");
    assert!(written["error"]
        .as_str()
        .unwrap()
        .contains("failpoint replay-source"));

    // On a batch worker thread.
    write(dir.path(), "in.txt", "a b c\n");
    let p = write(
        dir.path(),
        "b.yaml",
        "name: b\nsource: {type: file, path: in.txt}\ntransforms:\n  - {type: tokenize}\n  - {type: group_count, by: word}\nsummary: summary.json\nsinks:\n  - {type: stdout}\n",
    );
    fails_at(&p, "batch-worker", &[]);
    assert_eq!(summary(dir.path())["status"], "failed");
}

/// Runs `pipeline` with the failpoint `point` (debug builds panic there): it must end as one
/// error naming it, exit 1, with no backtrace hint. Returns the standard error.
fn fails_at(pipeline: &Path, point: &str, args: &[&str]) -> String {
    let out = runner()
        .arg("run")
        .args(args)
        .arg(pipeline)
        .env("RUNNER_FAILPOINT", point)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("failpoint {point}")), "{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
    stderr
}

#[test]
fn a_panic_while_spilled_groups_merge_ends_the_run_with_one_clean_error() {
    // The runs are merged on a thread of their own, ahead of the writer.
    let dir = tempfile::tempdir().unwrap();
    let words: String = (0..200_000).map(|i| format!("w{i}\n")).collect();
    write(dir.path(), "in.txt", &words);
    let p = write(
        dir.path(),
        "m.yaml",
        "name: m\nsource: {type: file, path: in.txt}\ntransforms:\n  - {type: aggregate, by: line, aggs: {n: count()}, memory_limit: 64KiB}\nsummary: summary.json\nsinks:\n  - {type: stdout, format: tsv}\n",
    );
    fails_at(&p, "spill-merge", &["--cores", "2"]);
    assert_eq!(summary(dir.path())["status"], "failed");
    // Without the failpoint the same run merges and prints every group.
    let out = runner()
        .args(["run", "--cores", "2"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout.iter().filter(|&&b| b == b'\n').count(),
        200_000 + 1
    );
}

/// Runs a streamed pipeline (file → tokenize → stdout) over `lines` lines of `a b c` on two
/// cores with the failpoint `point`: it must end as one clean error.
fn streamed_fails_at(lines: usize, point: &str) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", &"a b c\n".repeat(lines));
    let p = write(
        dir.path(),
        "s.yaml",
        "name: s\nsource: {type: file, path: in.txt}\ntransforms:\n  - {type: tokenize}\nsinks:\n  - {type: stdout, format: tsv}\n",
    );
    fails_at(&p, point, &["--cores", "2"]);
}

#[test]
fn a_panic_while_a_streamed_pipeline_takes_a_morsel_ends_the_run_instead_of_hanging() {
    // A worker that dies before it has a morsel's index must not leave the in-order writer
    // waiting for it (and the other workers waiting for the writer).
    streamed_fails_at(1_000_000, "morsel-take");
}

#[test]
fn a_panic_while_a_streamed_pipeline_writes_ends_the_run_instead_of_hanging() {
    // The writer dies while the workers read 18 MB, more than a window of 1 MiB morsels: the
    // run ends as one clean error. (The feed is stopped as the writer unwinds, so a worker
    // waiting for room is let go too; whether one is waiting when it dies is up to timing,
    // so this test does not show that part.)
    streamed_fails_at(3_000_000, "morsel-write");
}

#[test]
fn a_plugin_timeout_and_an_unwritable_lock_directory_still_write_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "a b c\n");
    let faulty = repo_root().join("target/plugin-tests/debug/libfaulty.so");
    if !faulty.exists() {
        // Built by tests/plugins.rs; build it here when this test runs first.
        let built = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
            .args(["build", "-p", "faulty", "--target-dir"])
            .arg(repo_root().join("target/plugin-tests"))
            .current_dir(repo_root())
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .unwrap();
        assert!(built.success());
    }
    let p = write(
        dir.path(),
        "p.yaml",
        &format!(
            "name: slow\nsource: {{type: file, path: in.txt}}\ntransforms:\n  - {{type: tokenize}}\n  - type: plugin\n    path: {}\n    config: {{fault: slow, seconds: 30}}\n    timeout: 200ms\nsummary: summary.json\nsinks:\n  - {{type: stdout}}\n",
            faulty.display()
        ),
    );
    fails(
        &["run", p.to_str().unwrap()],
        dir.path(),
        1,
        "longer than its timeout",
    );
    let written = summary(dir.path());
    assert_eq!(written["status"], "failed");
    assert!(written["error"].as_str().unwrap().contains("timeout"));

    // The lock directory cannot be created (a file is in the way).
    std::fs::remove_file(dir.path().join("summary.json")).unwrap();
    write(dir.path(), "blocker", "");
    let p = write(
        dir.path(),
        "q.yaml",
        "name: q\nsource: {type: file, path: in.txt}\nsummary: summary.json\nsinks:\n  - {type: stdout}\n",
    );
    let out = runner()
        .arg("run")
        .arg(&p)
        .env("RUNNER_LOCK_DIR", dir.path().join("blocker/locks"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(summary(dir.path())["status"], "failed");
}

#[test]
fn values_that_would_overflow_or_exhaust_are_refused_at_validation() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "a b c\n");
    let pipeline = |name: &str, body: &str| {
        write(
            dir.path(),
            name,
            &format!("name: v\nsource: {{type: file, path: in.txt}}\n{body}sinks:\n  - {{type: stdout}}\n"),
        )
        .to_str()
        .unwrap()
        .to_owned()
    };
    // Durations near u64::MAX overflowed instants (exit 101).
    let p = pipeline(
        "d.yaml",
        "transforms:\n  - type: plugin\n    path: x.so\n    timeout: 18446744073709551615s\n",
    );
    fails(
        &["validate", &p],
        dir.path(),
        2,
        "durations are limited to 100 years",
    );
    fails(
        &["run", "--wait", "18446744073709551615s", &p],
        dir.path(),
        2,
        "durations are limited to 100 years",
    );
    // 100,000 cores hung.
    let p = pipeline("c.yaml", "cores: 100000\n");
    fails(&["validate", &p], dir.path(), 2, "1024 at most");
    fails(
        &["run", "--cores", "5000", &pipeline("c2.yaml", "")],
        dir.path(),
        2,
        "1024 at most",
    );
    // 10,000 `and`ed comparisons overflowed a worker's stack.
    let chain = vec!["word != 'x'"; 10_000].join(" and ");
    let p = pipeline(
        "w.yaml",
        &format!("transforms:\n  - {{type: tokenize}}\n  - type: filter\n    where: \"{chain}\"\n"),
    );
    fails(&["validate", &p], dir.path(), 2, "more than 256 operators");
    // A stop-word file without end grew validation to gigabytes.
    let p = pipeline(
        "s.yaml",
        "transforms:\n  - {type: tokenize}\n  - {type: stopwords, file: /dev/zero}\n",
    );
    fails(&["validate", &p], dir.path(), 2, "longer than 64 MiB");
}
