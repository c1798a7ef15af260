//! One run per pipeline at a time (for cron): a second run exits with code 3 and says who holds
//! the lock; `--wait` waits for it instead.

mod common;
use common::*;

use predicates::prelude::*;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_second_run_is_refused_or_waits() {
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("locks");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A stream that listens for a second, then stops by itself.
    let p = write(
        dir.path(),
        "p.yaml",
        &format!("name: t\nmode: stream\nsource:\n  type: socket\n  mode: listen\n  port: {port}\nstop_after: 1500ms\nsinks:\n  - type: stdout\n"),
    );
    let first = Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .arg("run")
        .arg(&p)
        .arg("--lock-dir")
        .arg(&locks)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the first run never started listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    runner()
        .arg("run")
        .arg(&p)
        .arg("--lock-dir")
        .arg(&locks)
        .assert()
        .code(3)
        .stderr(
            predicate::str::contains("another run of")
                .and(predicate::str::contains(format!("pid {}", first.id())))
                .and(predicate::str::contains("--wait")),
        );
    // A wait that runs out says so.
    runner()
        .arg("run")
        .arg(&p)
        .arg("--lock-dir")
        .arg(&locks)
        .args(["--wait", "100ms"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "It was still running after waiting 100ms (--wait)",
        ));
    // Waiting instead: it starts once the first run has stopped, and runs to its own end.
    runner()
        .arg("run")
        .arg(&p)
        .arg("--lock-dir")
        .arg(&locks)
        .args(["--wait", "20s"])
        .assert()
        .success();
    let mut first = first;
    assert!(first.wait().unwrap().success());
}

/// Pipelines given as pipes (`runner run <(...)`) are all named `/dev/fd/63`: each is locked
/// by its text, so that two different ones run side by side and the same one twice does not.
#[test]
fn pipelines_given_as_pipes_are_locked_by_their_text() {
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("locks");
    let reads_stdin = write(
        dir.path(),
        "a.yaml",
        "name: a\nsource: {type: file, path: \"-\"}\nsinks: [{type: stdout, format: tsv}]\n",
    );
    write(dir.path(), "in.txt", "x\n");
    let reads_a_file = write(
        dir.path(),
        "b.yaml",
        "name: b\nsource: {type: file, path: in.txt}\nsinks: [{type: stdout, format: tsv}]\n",
    );
    let piped = |pipeline: &std::path::Path| {
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg("exec \"$0\" run -q --lock-dir \"$1\" <(cat \"$2\")")
            .arg(assert_cmd::cargo::cargo_bin("runner"))
            .arg(&locks)
            .arg(pipeline)
            .current_dir(dir.path());
        command
    };
    // The first holds its lock while it reads its standard input: once it has printed a
    // row (a quiet pipe's rows go on at once), it holds it.
    let mut first = piped(&reads_stdin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::{BufRead, Write};
        let mut stdin = first.stdin.as_ref().unwrap();
        stdin.write_all(b"x\n").unwrap();
        let mut printed = std::io::BufReader::new(first.stdout.take().unwrap()).lines();
        assert_eq!(printed.next().unwrap().unwrap(), "line");
        assert_eq!(printed.next().unwrap().unwrap(), "x");
    }
    let other = piped(&reads_a_file).output().unwrap();
    assert!(
        other.status.success(),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&other.stdout), "line\nx\n");
    let same = piped(&reads_stdin).stdin(Stdio::null()).output().unwrap();
    assert_eq!(same.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&same.stderr).contains("another run of"));
    // The same text from another folder reads other paths: another job.
    let elsewhere = tempfile::tempdir().unwrap();
    let moved = piped(&reads_stdin)
        .current_dir(elsewhere.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        moved.status.success(),
        "{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    drop(first.stdin.take());
    assert!(first.wait().unwrap().success());
}
