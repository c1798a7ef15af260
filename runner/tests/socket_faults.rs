//! A socket source facing a misbehaving server, with the real binary and real TCP: a connection
//! reset mid-line, invalid UTF-8, 100 MB without a newline, and a flood faster than the
//! pipeline drains. Memory is checked as the kernel measured it (peak RSS from `wait4`).

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;

use common::{run_with_peak_rss, runner_process, write};

/// A pipeline counting the space-separated words of the lines from `port` into `counts.csv`.
fn pipeline(dir: &Path, port: u16, extra: &str) -> std::path::PathBuf {
    write(
        dir,
        "p.yaml",
        &format!(
            "name: t\nmode: stream\nsource: {{type: socket, host: 127.0.0.1, port: {port}}}\ntransforms:\n  - {{type: explode, column: line, separator: ' ', as: word}}\n  - {{type: group_count, by: word}}\n{extra}sinks:\n  - {{type: csv, path: counts.csv}}\n"
        ),
    )
}

/// Runs the pipeline to its end: exit code, stderr, and the peak resident memory in MB.
fn run(pipeline: &Path) -> (i32, String, f64) {
    let mut command = runner_process();
    command.arg("run").arg(pipeline);
    let (code, stderr, peak_mb) = run_with_peak_rss(command, &pipeline.with_extension("log"));
    (code.unwrap_or(-1), stderr, peak_mb)
}

fn once(bytes: &[u8]) -> std::iter::Once<Vec<u8>> {
    std::iter::once(bytes.to_vec())
}

fn counts(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("counts.csv")).unwrap()
}

/// Serves one client `pieces`, then closes the connection, or resets it (RST) with `reset`.
/// The pieces are made as they are sent: the peak RSS the kernel reports for a child includes
/// this (parent) process's at the moment it was spawned, so the test must stay small.
fn serve(pieces: impl Iterator<Item = Vec<u8>> + Send + 'static, reset: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        for piece in pieces {
            client.write_all(&piece).unwrap();
        }
        if reset {
            // Linger 0: close sends RST instead of FIN.
            common::reset_on_close(&client);
            // Let the reader take the bytes first, so the reset cuts the unfinished line.
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        drop(client);
    });
    port
}

#[test]
fn a_line_cut_by_a_reset_is_dropped_and_one_ended_by_a_close_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    // A broken connection is not the input's end: the rows before it are counted and
    // written, and the run says so with its exit code.
    let (code, stderr, _) = run(&pipeline(
        dir.path(),
        serve(once(b"a b\nc d"), true),
        "summary: summary.json\n",
    ));
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(counts(dir.path()), "word,count\na,1\nb,1\n");
    let dropped = "1 unfinished line(s) of broken connections were dropped";
    assert!(stderr.contains(dropped), "{stderr}");
    // The failed run's summary keeps the warning, as it counts the line.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "failed", "{summary}");
    assert_eq!(summary["warnings"]["skipped_lines"], 1, "{summary}");
    assert_eq!(summary["warnings"]["messages"][0], dropped, "{summary}");
    assert!(
        stderr.contains("the connection to 127.0.0.1:")
            && stderr.contains("broke: Connection reset by peer"),
        "{stderr}"
    );

    let (code, stderr, _) = run(&pipeline(dir.path(), serve(once(b"a b\nc d"), false), ""));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(counts(dir.path()), "word,count\na,1\nb,1\nc,1\nd,1\n");
}

#[test]
fn an_address_in_use_to_listen_on_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let path = dir.path().join("listen.yaml");
    std::fs::write(
        &path,
        format!("name: t\nmode: stream\nsource: {{type: socket, mode: listen, port: {port}}}\nsinks:\n  - {{type: csv, path: lines.csv}}\n"),
    )
    .unwrap();
    let (code, stderr, _) = run(&path);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{port}: Address already in use"
        )),
        "{stderr}"
    );
}

#[test]
fn invalid_utf8_is_replaced_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let port = serve(once(b"caf\xe9 ok\nok\n"), false);
    let (code, stderr, _) = run(&pipeline(dir.path(), port, ""));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(counts(dir.path()), "word,count\nok,2\ncaf\u{FFFD},1\n");
    assert!(
        stderr.contains("1 line(s) had invalid UTF-8; bad bytes were replaced with U+FFFD"),
        "{stderr}"
    );
}

#[test]
fn a_100_mb_line_without_newline_is_skipped_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let line = (0..100).map(|_| vec![b'x'; 1 << 20]);
    let pieces = once(b"before\n").chain(line).chain(once(b"\nafter\n"));
    let (code, stderr, peak_mb) = run(&pipeline(dir.path(), serve(pieces, false), ""));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(counts(dir.path()), "word,count\nafter,1\nbefore,1\n");
    assert!(
        stderr.contains("1 line(s) longer than max_line_bytes (1048576) were skipped"),
        "{stderr}"
    );
    assert!(peak_mb < 64.0, "peak RSS {peak_mb:.1} MB for a 100 MB line");
    eprintln!("100 MB line: peak RSS {peak_mb:.1} MB");
}

#[test]
fn a_flood_faster_than_the_pipeline_drains_stays_in_bounded_memory() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut client, _): (TcpStream, _) = listener.accept().unwrap();
        // 10,000 distinct words over and over, as fast as the socket takes them.
        let block: String = (0..10_000)
            .map(|i| format!("w{i} #t{} x\n", i % 7))
            .collect();
        while client.write_all(block.as_bytes()).is_ok() {}
    });
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        port,
        "trigger: {processing_time: 500ms}\nstop_after: 3s\n",
    );
    let (code, stderr, peak_mb) = run(&p);
    assert_eq!(code, 0, "{stderr}");
    let csv = counts(dir.path());
    assert_eq!(
        csv.lines().count(),
        1 + 10_000 + 7 + 1,
        "every word counted"
    );
    assert!(peak_mb < 200.0, "peak RSS {peak_mb:.1} MB under a flood");
    eprintln!("flood: peak RSS {peak_mb:.1} MB");
}

/// `connect_timeout` ends the wait for a server that is not there (exit 1, naming the address
/// and the setting), and with `reconnect: true` the wait after a server went away; the rows
/// read before are written.
#[test]
fn connect_timeout_ends_the_wait_for_a_missing_server() {
    let dir = tempfile::tempdir().unwrap();
    let source = |port: u16, more: &str| {
        write(
            dir.path(),
            "p.yaml",
            &format!(
                "name: t\nmode: stream\nsource: {{type: socket, host: 127.0.0.1, port: {port}, connect_timeout: 1s{more}}}\ntransforms:\n  - {{type: explode, column: line, separator: ' ', as: word}}\n  - {{type: group_count, by: word}}\nsinks:\n  - {{type: csv, path: counts.csv}}\n"
            ),
        )
    };
    // A port nobody listens on: taken, then let go.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, stderr, _) = run(&source(port, ""));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no connection to 127.0.0.1:{port} for 1s (`connect_timeout`): Connection refused"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("retrying for up to 1s (`connect_timeout`)"),
        "{stderr}"
    );

    let port = serve(once(b"a b a\n"), false);
    let (code, stderr, _) = run(&source(port, ", reconnect: true"));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("(`connect_timeout`)"), "{stderr}");
    assert_eq!(counts(dir.path()), "word,count\na,2\nb,1\n");
}
