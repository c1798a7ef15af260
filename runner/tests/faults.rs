//! Faults from outside, with the real binary: a full disk (a file-size limit) or a read-only
//! directory while writing outputs. The previous outputs must stay whole and no temporary file may stay behind.

mod common;
use common::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The files in `dir` whose names end in `.tmp`.
fn temp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_file_size_limit_fails_the_write_cleanly_and_keeps_the_previous_output() {
    let dir = tempfile::tempdir().unwrap();
    let words: Vec<String> = (0..40).map(|i| format!("word{i} ").repeat(i + 1)).collect();
    write(dir.path(), "in.txt", &words.concat());
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource:\n  type: file\n  path: in.txt\ntransforms:\n  - type: tokenize\n  - type: group_count\n    by: word\nsinks:\n  - type: chart\n    path: out/chart.png\n    x: word\n    y: count\n",
    );
    let chart = dir.path().join("out/chart.png");
    runner().arg("run").arg(&pipeline).assert().success();
    let before = std::fs::read(&chart).unwrap();
    assert!(before.len() > 20 * 1024, "the chart must outgrow the limit");

    // Past `ulimit -f` the kernel would kill the process mid-write (SIGXFSZ); runner ignores
    // the signal, so the write fails with EFBIG and is reported.
    write(dir.path(), "in.txt", "other words entirely\n");
    let limited = std::process::Command::new("bash")
        .arg("-c")
        .arg("ulimit -f 20; exec \"$0\" \"$@\"")
        .arg(assert_cmd::cargo::cargo_bin("runner"))
        .arg("run")
        .arg(&pipeline)
        .env("RUNNER_LOCK_DIR", unique_lock_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert_eq!(limited.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write output") && stderr.contains("File too large"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&chart).unwrap(),
        before,
        "previous chart intact"
    );
    assert!(temp_files(&dir.path().join("out")).is_empty());

    // Without the limit the next run replaces it.
    runner().arg("run").arg(&pipeline).assert().success();
    assert_ne!(std::fs::read(&chart).unwrap(), before);
    assert!(temp_files(&dir.path().join("out")).is_empty());
}

#[test]
fn a_read_only_output_directory_fails_clearly_and_keeps_the_previous_output() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let chmod = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    // Everything the run needs sits in one folder another user can read: the binary too, as
    // the build folder may not be reachable for them.
    chmod(dir.path(), 0o755);
    let binary = dir.path().join("runner");
    std::fs::copy(assert_cmd::cargo::cargo_bin("runner"), &binary).unwrap();
    write(dir.path(), "in.txt", "one two two\n");
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: in.txt}\ntransforms:\n  - type: tokenize\n  - {type: group_count, by: word}\nsinks:\n  - {type: csv, path: out/counts.csv}\n",
    );
    let locks = dir.path().join("locks");
    std::fs::create_dir(&locks).unwrap();
    chmod(&locks, 0o777);
    let run = || {
        let mut command = std::process::Command::new(&binary);
        command
            .arg("run")
            .arg(&pipeline)
            .env("RUNNER_LOCK_DIR", &locks);
        // Root writes through any permission: run as `nobody` then (tests often run as root).
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            command.uid(65534).gid(65534);
        }
        command.output().unwrap()
    };
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    chmod(&out, 0o777);
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let before = std::fs::read(out.join("counts.csv")).unwrap();
    assert_eq!(before, b"word,count\ntwo,2\none,1\n");

    chmod(&out, 0o555);
    write(dir.path(), "in.txt", "three\n");
    let denied = run();
    chmod(&out, 0o755);
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert_eq!(denied.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write output")
            && stderr.contains("out/counts.csv: Permission denied"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(out.join("counts.csv")).unwrap(), before);
    assert!(temp_files(&out).is_empty());
}

/// A server on 127.0.0.1 that sends hashtag lines to every client as fast as it reads them;
/// the counter tells how many clients it has accepted.
fn flooding_server() -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let lines = "rust spark ai\nrust data\n".repeat(500);
                while std::io::Write::write_all(&mut client, lines.as_bytes()).is_ok() {}
            });
        }
    });
    (port, accepted)
}

/// Waits until the server has accepted `n` clients (a slow machine may take a while to start).
fn wait_for_clients(accepted: &AtomicUsize, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while accepted.load(Ordering::SeqCst) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "runner never connected"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A stream pipeline counting the hashtags of the lines from `port`, with the given trigger
/// interval and `sinks:` entries.
fn hashtag_stream(
    dir: &std::path::Path,
    port: u16,
    trigger: &str,
    sinks: &str,
) -> std::path::PathBuf {
    write(
        dir,
        "p.yaml",
        &format!(
            "name: t\nmode: stream\nsource:\n  type: socket\n  host: 127.0.0.1\n  port: {port}\ntransforms:\n  - {{type: explode, column: line, separator: ' ', as: hashtag}}\n  - {{type: group_count, by: hashtag}}\ntrigger:\n  processing_time: {trigger}\nsinks:\n{sinks}"
        ),
    )
}

/// Starts `runner run -q pipeline` with its output discarded.
fn spawn_quiet(pipeline: &std::path::Path) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .arg("run")
        .arg(pipeline)
        .arg("-q")
        .env("RUNNER_LOCK_DIR", unique_lock_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill_9_during_streaming_epochs_leaves_whole_outputs_and_the_next_run_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _) = flooding_server();
    let pipeline = hashtag_stream(dir.path(), port, "20ms", "  - {type: csv, path: out/counts.csv}\n  - {type: chart, path: out/top.png, x: hashtag, y: count}\n");
    let out = dir.path().join("out");
    // Kill at varied moments: every output present must be whole, whatever the moment.
    for (round, wait_ms) in [130u64, 210, 290, 370, 450].into_iter().enumerate() {
        let mut child = spawn_quiet(&pipeline);
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if let Ok(csv) = std::fs::read_to_string(out.join("counts.csv")) {
            let mut lines = csv.lines();
            assert_eq!(lines.next(), Some("hashtag,count"), "round {round}: {csv}");
            let rows: Vec<(String, u64)> = lines
                .map(|l| {
                    let (tag, count) = l.split_once(',').expect("whole row");
                    (tag.to_owned(), count.parse().expect("whole count"))
                })
                .collect();
            assert_eq!(rows.len(), 4, "round {round}: {csv}");
        }
        if let Ok(png) = std::fs::File::open(out.join("top.png")) {
            let mut reader = png::Decoder::new(std::io::BufReader::new(png))
                .read_info()
                .expect("a whole PNG header");
            let mut pixels = vec![0; reader.output_buffer_size()];
            reader.next_frame(&mut pixels).expect("a whole PNG");
        }
    }
    assert!(
        out.join("counts.csv").exists(),
        "no epoch finished in five runs"
    );
    // The next run succeeds and leaves no temporary file of the killed ones behind (one is
    // planted, as a kill in the middle of a write leaves it, in case no kill hit a write).
    std::fs::write(out.join(".top.png.999999999.Ab3xY9.tmp"), b"half a png").unwrap();
    runner()
        .arg("run")
        .arg(&pipeline)
        .args(["-q", "--set", "stop_after=300ms"])
        .assert()
        .success();
    assert!(temp_files(&out).is_empty(), "{:?}", temp_files(&out));
}

#[test]
fn sigterm_or_sigint_at_any_moment_of_a_stream_exits_0_with_the_last_epoch_written() {
    let dir = tempfile::tempdir().unwrap();
    let (port, accepted) = flooding_server();
    let pipeline = hashtag_stream(
        dir.path(),
        port,
        "1s",
        "  - {type: csv, path: counts.csv}\n",
    );
    let csv = dir.path().join("counts.csv");
    let signals = [
        ("-TERM", 50u64),
        ("-INT", 330),
        ("-TERM", 620),
        ("-INT", 1240),
    ];
    for (round, (signal, wait_ms)) in signals.into_iter().enumerate() {
        let _ = std::fs::remove_file(&csv);
        let mut child = spawn_quiet(&pipeline);
        // The moments count from the connection, after which rows keep arriving.
        wait_for_clients(&accepted, round + 1);
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        let sent = std::process::Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{signal} after {wait_ms} ms");
        // Rows had arrived (the server floods), so the interrupted epoch was written, whole.
        let text = std::fs::read_to_string(&csv)
            .unwrap_or_else(|e| panic!("{signal} after {wait_ms} ms: no last epoch: {e}"));
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("hashtag,count"));
        let counts: Vec<u64> = lines
            .map(|l| l.split_once(',').unwrap().1.parse().unwrap())
            .collect();
        assert_eq!(counts.len(), 4, "{text}");
        assert!(counts.iter().all(|&c| c > 0), "{text}");
    }
}
