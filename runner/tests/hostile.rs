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
    let port = free_port();
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

#[test]
fn listen_mode_rate_limits_its_warning_for_connections_that_break() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let p = write(
        dir.path(),
        "p.yaml",
        &format!("name: l\nmode: stream\nstop_after: 60s\nsource:\n  type: socket\n  mode: listen\n  port: {port}\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
    );
    let (mut child, mut stderr) = run_reading_stderr(&p);
    // Clients that send half a line and reset the connection (linger 0: RST, not FIN).
    let reset = |client: std::net::TcpStream| {
        reset_on_close(&client);
        drop(client);
    };
    let first = loop {
        if let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            break c;
        }
        assert!(child.try_wait().unwrap().is_none(), "runner ended early");
        std::thread::yield_now();
    };
    reset(first);
    let mut seen = read_until(&mut stderr, "the client's connection broke");
    for _ in 0..200 {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = c.write_all(b"cut mid-li");
        reset(c);
    }
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    std::io::Read::read_to_string(&mut stderr, &mut seen).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{seen}");
    // 201 broken connections within 10 s: one warning (a warning each flooded the log).
    assert_eq!(seen.matches("connection broke").count(), 1, "{seen}");
}

#[test]
fn silent_clients_holding_every_place_are_told_of_and_closed_by_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let p = write(
        dir.path(),
        "p.yaml",
        &format!("name: l\nmode: stream\nstop_after: 60s\nsource:\n  type: socket\n  mode: listen\n  port: {port}\n  max_clients: 2\n  idle_timeout: 1s\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
    );
    let mut child = runner_process()
        .arg("run")
        .arg(&p)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let (rows, printed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stdout) {
            let _ = rows.send(line.unwrap());
        }
    });
    // Two clients take both places and send nothing (one a line's start).
    let first = loop {
        if let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            break c;
        }
        assert!(child.try_wait().unwrap().is_none(), "runner ended early");
        std::thread::yield_now();
    };
    let mut second = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    second.write_all(b"never fini").unwrap();
    let mut third = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    third.write_all(b"hello\n").unwrap();
    let mut seen = read_until(&mut stderr, "client places (`max_clients`) are taken");
    assert!(seen.contains("one silent for 1s is closed"), "{seen}");
    // The silent two are closed after a second; the third's line then comes through.
    let row = printed
        .iter()
        .find(|row| !row.starts_with("epoch\t"))
        .unwrap();
    assert!(row.ends_with("\thello"), "{row}");
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    std::io::Read::read_to_string(&mut stderr, &mut seen).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{seen}");
    assert!(
        seen.contains("2 client(s) were closed after sending nothing for 1s (`idle_timeout`)"),
        "{seen}"
    );
    assert!(seen.contains("1 unfinished line(s)"), "{seen}");
    let later: Vec<String> = printed.try_iter().collect();
    assert!(
        later.iter().all(|row| row.starts_with("epoch\t")),
        "the cut line is not a row: {later:?}"
    );
    drop((first, second, third));
}

/// Starts `runner run pipeline`, its stdout discarded; its stderr to read as it comes.
fn run_reading_stderr(
    pipeline: &std::path::Path,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
) {
    let mut child = runner_process()
        .arg("run")
        .arg(pipeline)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    (child, stderr)
}

/// Reads `child`'s stderr until a line contains `wanted`; returns what it read.
fn read_until(stderr: &mut impl std::io::BufRead, wanted: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(wanted) {
        let mut line = String::new();
        let read = stderr.read_line(&mut line).unwrap();
        assert!(read > 0, "runner ended before saying {wanted:?}:\n{seen}");
        seen.push_str(&line);
    }
    seen
}

#[test]
fn sigterm_ends_a_socket_sink_waiting_for_a_client_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let p = write(
        dir.path(),
        "p.yaml",
        &format!(
            "name: forward\nmode: stream\nsource:\n  type: replay\n  path: {}\n  speed: max\ntransforms:\n  - {{type: explode, column: tags, as: tag}}\nsinks:\n  - {{type: socket, listen: '127.0.0.1:{port}'}}\n",
            repo_root().join("pipelines/tapes/sample.jsonl").display()
        ),
    );
    let (mut child, mut stderr) = run_reading_stderr(&p);
    read_until(&mut stderr, "waiting for a connection on");
    let signalled = std::time::Instant::now();
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    let took = signalled.elapsed();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
    assert!(rest.contains("stopping: no client took"), "{rest}");
    // It used to run on 27 s after SIGTERM; the wait polls every 100 ms.
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
}

#[test]
fn a_client_that_stops_reading_is_dropped_after_write_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (source_port, sink_port) = (free_port(), free_port());
    let p = write(
        dir.path(),
        "p.yaml",
        &format!("name: relay\nmode: stream\nstop_after: 20s\nsource:\n  type: socket\n  mode: listen\n  port: {source_port}\nsinks:\n  - {{type: socket, listen: '127.0.0.1:{sink_port}', write_timeout: 1s}}\n"),
    );
    let (mut child, mut stderr) = run_reading_stderr(&p);
    // Lines into the source without end: far more than the socket buffers hold.
    let feeder = std::thread::spawn(move || {
        let mut source = loop {
            if let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", source_port)) {
                break c;
            }
            std::thread::yield_now();
        };
        // Until runner stops (its end of the connection closes): every epoch has lines.
        let line = "a line for a client that never reads\n".repeat(1000);
        while source.write_all(line.as_bytes()).is_ok() {}
    });
    // A client of the sink (which listens from its first epoch on) that never reads.
    let silent = loop {
        if let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", sink_port)) {
            break c;
        }
        assert!(child.try_wait().unwrap().is_none(), "runner ended early");
        std::thread::yield_now();
    };
    let seen = read_until(
        &mut stderr,
        "dropping the client (writing the epoch's lines to it took longer than 1s (write_timeout))",
    );
    assert!(seen.contains("line(s) were not delivered"), "{seen}");
    drop(silent);
    // A client that reads, but a little at a time (paced, 4 KiB every 50 ms): dropped as well
    // once the epoch's lines are not all taken after 1s (it made progress all along, and was
    // kept for ever).
    let slow = std::net::TcpStream::connect(("127.0.0.1", sink_port)).unwrap();
    let mut reading = slow.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while matches!(std::io::Read::read(&mut reading, &mut buffer), Ok(n) if n > 0) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    read_until(
        &mut stderr,
        "dropping the client (writing the epoch's lines to it took longer than 1s (write_timeout))",
    );
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // What the kernel still holds for it is not read to the end.
    let _ = slow.shutdown(std::net::Shutdown::Both);
    let _ = reader.join();
    let _ = feeder.join();
}

#[test]
fn secrets_in_variables_and_url_credentials_never_reach_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "hunter2-topsecret-9f8e";
    let p = write(
        dir.path(),
        "p.yaml",
        "name: s\nsource:\n  type: file\n  path: ${MY_SECRET}/in.txt\n  fetch:\n    url: http://user:pa55word-xyz@127.0.0.1:1/in.txt\n    sha256: bf8e99f2edb49e1692038870eae947dfbd9547c2dc91fcbb7d1c71fe96d91589\nsummary: summary.json\nsinks:\n  - {type: stdout}\n",
    );
    let outputs = [
        runner()
            .args(["plan"])
            .arg(&p)
            .env("MY_SECRET", secret)
            .output()
            .unwrap(),
        runner()
            .args(["plan", "--format", "json"])
            .arg(&p)
            .env("MY_SECRET", secret)
            .output()
            .unwrap(),
        runner()
            .args(["run"])
            .arg(&p)
            .env("MY_SECRET", secret)
            .output()
            .unwrap(),
        runner()
            .args(["run", "--log-format", "json", "-v"])
            .arg(&p)
            .env("MY_SECRET", secret)
            .output()
            .unwrap(),
    ];
    let summary = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
    let mut all = summary.clone();
    for out in &outputs {
        all.push_str(&String::from_utf8_lossy(&out.stdout));
        all.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        !all.contains(secret),
        "the ${{MY_SECRET}} value leaked:\n{all}"
    );
    assert!(
        !all.contains("pa55word-xyz"),
        "URL credentials leaked:\n{all}"
    );
    // What is shown instead.
    assert!(
        all.contains("http://[redacted]@127.0.0.1:1/in.txt"),
        "{all}"
    );
    assert!(all.contains("[redacted]/in.txt"), "{all}");
    assert!(summary.contains("[redacted]"), "{summary}");
}

/// Runs `runner run pipeline` with `stdin` as standard input: exit code, stderr, peak RSS in MB.
fn run_measured(pipeline: &std::path::Path, stdin: std::process::Stdio) -> (i32, String, f64) {
    let mut command = runner_process();
    command.arg("run").arg(pipeline).stdin(stdin);
    let (code, stderr, peak_mb) = run_with_peak_rss(command, &pipeline.with_extension("log"));
    (code.unwrap_or(-1), stderr, peak_mb)
}

#[test]
fn a_file_without_newlines_is_read_in_bounded_memory_and_its_line_skipped() {
    let dir = tempfile::tempdir().unwrap();
    // 400 MB of zeros and no newline between two real lines: a sparse file (read by position,
    // in parallel) and the same bytes through a pipe (read in sequence).
    let path = dir.path().join("zeros.txt");
    {
        use std::io::{Seek, SeekFrom};
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(b"first line\n").unwrap();
        file.seek(SeekFrom::Start(400 << 20)).unwrap();
        file.write_all(b"\nlast line\n").unwrap();
    }
    let pipeline = |name: &str, source_path: &str| {
        write(
            dir.path(),
            name,
            &format!("name: z\nsource:\n  type: file\n  path: {source_path}\n  max_line_bytes: 8388608\ntransforms:\n  - {{type: tokenize}}\n  - {{type: group_count, by: word}}\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
        )
    };
    let indexed = pipeline("indexed.yaml", path.to_str().unwrap());
    let (code, stderr, peak_mb) = run_measured(&indexed, std::process::Stdio::null());
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("1 line(s) longer than max_line_bytes (8388608) were skipped"),
        "{stderr}"
    );
    assert!(peak_mb < 150.0, "peak RSS {peak_mb:.0} MB");

    let piped = pipeline("piped.yaml", "'-'");
    let (code, stderr, peak_mb) = run_measured(&piped, std::fs::File::open(&path).unwrap().into());
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("1 line(s) longer than max_line_bytes (8388608) were skipped"),
        "{stderr}"
    );
    assert!(peak_mb < 150.0, "peak RSS {peak_mb:.0} MB");
}

/// Bytes `pid` has read so far (`rchar` of /proc/PID/io).
fn bytes_read(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("rchar: ").map(|n| n.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

/// Runs `runner run pipeline`, sends SIGTERM once it has read `enough` bytes (an event: its
/// own read counter), and returns its peak RSS in MB.
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives its resource usage
fn peak_rss_until_sigterm(pipeline: &std::path::Path, enough: u64) -> f64 {
    let child = runner_process()
        .arg("run")
        .arg(pipeline)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    while bytes_read(pid) < enough {
        let mut status = 0;
        // SAFETY: a non-blocking check on our own child.
        let ended = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
        assert_eq!(ended, 0, "runner ended before reading {enough} bytes");
        std::thread::yield_now();
    }
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    wait_with_peak_rss(&child).1
}

/// A FIFO in `dir` and a thread writing `line` into it until its reader goes away.
fn endless_fifo(
    dir: &std::path::Path,
    line: &str,
) -> (std::path::PathBuf, std::thread::JoinHandle<()>) {
    let fifo = dir.join("endless.fifo");
    let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let lines = line.repeat((1 << 20) / line.len() + 1);
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut out = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            while out.write_all(lines.as_bytes()).is_ok() {}
        })
    };
    (fifo, writer)
}

#[test]
fn dev_zero_and_an_endless_fifo_are_read_in_bounded_memory_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let count = |name: &str, path: &str| {
        write(
            dir.path(),
            name,
            &format!("name: z\nsource:\n  type: file\n  path: {path}\ntransforms:\n  - {{type: tokenize}}\n  - {{type: group_count, by: word}}\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
        )
    };
    // Newline-free: one endless line, skipped past max_line_bytes (64 MiB) as it is read.
    let peak = peak_rss_until_sigterm(&count("zero.yaml", "/dev/zero"), 300 << 20);
    assert!(
        peak < 200.0,
        "/dev/zero: peak RSS {peak:.0} MB after 300 MB read"
    );
    // An endless FIFO of lines into a count: state is bounded by the distinct words.
    let (fifo, writer) = endless_fifo(dir.path(), "romeo and juliet and the nurse\n");
    let peak = peak_rss_until_sigterm(&count("fifo.yaml", fifo.to_str().unwrap()), 300 << 20);
    assert!(
        peak < 200.0,
        "endless FIFO: peak RSS {peak:.0} MB after 300 MB read"
    );
    writer.join().unwrap();
}

#[test]
fn an_endless_fifo_through_a_pipeline_without_aggregation_streams_in_bounded_memory() {
    // No count to keep memory small: every row goes to the sink, so only streaming the rows
    // as they are produced keeps memory bounded (collecting them grew to gigabytes).
    let dir = tempfile::tempdir().unwrap();
    // Long lines: cheap per byte to pass through, so 300 MB go by quickly.
    let line = format!("{}\n", "romeo and juliet and the nurse ".repeat(32));
    let (fifo, writer) = endless_fifo(dir.path(), &line);
    let pipeline = write(
        dir.path(),
        "lines.yaml",
        &format!(
            "name: lines\nsource:\n  type: file\n  path: {}\nsinks:\n  - {{type: stdout, format: tsv}}\n",
            fifo.display()
        ),
    );
    let peak = peak_rss_until_sigterm(&pipeline, 300 << 20);
    assert!(
        peak < 200.0,
        "endless FIFO into stdout: peak RSS {peak:.0} MB after 300 MB read"
    );
    writer.join().unwrap();
}

#[test]
fn control_sequences_in_logged_text_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    // A host name carrying a terminal title change and a screen clear: the retry warning
    // quotes it.
    let p = write(
        dir.path(),
        "p.yaml",
        "name: c\nmode: stream\nstop_after: 1s\nsource:\n  type: socket\n  host: \"bad\\e]0;pwned\\a\\e[2Jhost\"\n  port: 9\n  reconnect: true\nsinks:\n  - {type: stdout, format: tsv}\n",
    );
    for format in ["text", "json"] {
        let out = runner()
            .args(["run", "--log-format", format])
            .arg(&p)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("waiting for bad"), "{stderr}");
        assert!(
            !stderr.contains('\x1b') && !stderr.contains('\x07'),
            "{stderr:?}"
        );
    }
}

/// The kernel's files are listed as empty (`/proc`) or as a page (`/sys`) whatever they hold:
/// they are read to their end, not by their listed size (`/proc/self/status` was read as empty,
/// 0 rows and exit 0).
#[test]
fn the_kernels_files_are_read_to_their_end_not_by_their_size() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::path::Path::new("/proc/self/status");
    assert_eq!(
        std::fs::metadata(status).unwrap().len(),
        0,
        "listed as empty"
    );
    let p = write(
        dir.path(),
        "p.yaml",
        "name: p\nsource: {type: file, path: /proc/self/status}\ntransforms:\n  - {type: filter, where: \"line like 'Name:%' or line like 'Pid:%'\"}\nsinks:\n  - {type: stdout, format: tsv}\n",
    );
    let out = runner().arg("-q").arg("run").arg(&p).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    // The process's own status: its name and its process id, each once.
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("Name:") && lines[1].starts_with("Pid:"),
        "{text}"
    );
}
