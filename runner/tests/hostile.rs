//! A hostile machine and network, through the binary: servers that misbehave on purpose and a
//! process short of file descriptors. Each test bounds what runner does (connections made,
//! warnings logged) instead of guessing how long something takes.

mod common;
use common::*;

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A server that accepts every connection and closes it at once; counts them.
fn accept_and_close() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, accepted)
}

#[test]
fn reconnecting_to_a_server_that_closes_at_once_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    let (port, accepted) = accept_and_close();
    let p = write(
        dir.path(),
        "p.yaml",
        &format!("name: r\nmode: stream\nstop_after: 2s\nsource:\n  type: socket\n  host: 127.0.0.1\n  port: {port}\n  reconnect: true\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
    );
    runner().arg("run").arg(&p).assert().success();
    // Without backoff: 26-28 thousand connections in 5 s. With it (50 ms doubling to 2 s):
    // about 6 in 2 s; the bound leaves room for a slow machine, none for a storm.
    let made = accepted.load(Ordering::SeqCst);
    assert!((1..=20).contains(&made), "{made} connections in 2 s");
}

#[test]
fn listen_mode_out_of_descriptors_backs_off_and_rate_limits_its_warning() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = write(
        dir.path(),
        "p.yaml",
        &format!("name: l\nmode: stream\nstop_after: 3s\nsource:\n  type: socket\n  mode: listen\n  port: {port}\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
    );
    // 32 descriptors: a few clients exhaust them, and accept fails with EMFILE.
    let mut child = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n 32 && exec {} run {}",
            assert_cmd::cargo::cargo_bin("runner").display(),
            p.display()
        ))
        .env("RUNNER_LOCK_DIR", unique_lock_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Connect until runner listens, then 60 clients that stay connected.
    let mut clients = Vec::new();
    while clients.is_empty() {
        if let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            clients.push(c);
        }
        assert!(child.try_wait().unwrap().is_none(), "runner ended early");
        std::thread::yield_now();
    }
    for _ in 0..60 {
        if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = c.write_all(b"x\n");
            clients.push(c);
        }
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warnings = stderr.matches("accepting a client failed").count();
    // Without backoff: 5.1 million warnings (345 MB) in 8 s. Now at most one every 10 s.
    assert_eq!(warnings, 1, "EMFILE once, warned once:\n{stderr}");
    assert!(stderr.len() < 100_000, "{} bytes of stderr", stderr.len());
}
