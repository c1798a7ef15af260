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
            "It was still running after --wait 100ms",
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
