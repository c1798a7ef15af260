//! Streaming through the binary, with real TCP servers and clients on 127.0.0.1.

mod common;
use common::*;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn spawn_runner(pipeline: &std::path::Path, extra: &[&str]) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .arg("run")
        .arg(pipeline)
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> (i32, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn counts(csv: &std::path::Path) -> Vec<(String, i64)> {
    let text = std::fs::read_to_string(csv).unwrap_or_default();
    let mut rows: Vec<(String, i64)> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.rsplit_once(',')
                .map(|(w, c)| (w.to_owned(), c.parse().unwrap()))
        })
        .collect();
    rows.sort();
    rows
}

fn hashtag_pipeline(dir: &std::path::Path, source: &str, extra: &str) -> std::path::PathBuf {
    write(
        dir,
        "p.yaml",
        &format!(
            "name: t\nmode: stream\nsource:\n{source}\ntransforms:\n  - {{type: explode, column: line, separator: ' ', as: hashtag}}\n  - {{type: group_count, by: hashtag}}\n{extra}sinks:\n  - {{type: stdout, format: jsonl}}\n  - {{type: csv, path: counts.csv}}\n"
        ),
    )
}

/// A line server: accepts one client and sends `batches` with `pause` between them, then closes.
fn line_server(batches: Vec<Vec<u8>>, pause: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        for batch in batches {
            client.write_all(&batch).unwrap();
            std::thread::sleep(pause);
        }
    });
    port
}

#[test]
fn complete_mode_counts_exactly_across_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Vec<u8>> = (0..5)
        .map(|_| b"rust spark ai\nrust go\n".repeat(2_000))
        .collect();
    let port = line_server(batches, Duration::from_millis(300));
    let p = hashtag_pipeline(
        dir.path(),
        &format!("  type: socket\n  host: 127.0.0.1\n  port: {port}"),
        "trigger:\n  processing_time: 200ms\noutput_mode: complete\n",
    );
    let (code, stdout, stderr) = finish(spawn_runner(&p, &[]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        counts(&dir.path().join("counts.csv")),
        [
            ("ai".into(), 10_000),
            ("go".into(), 10_000),
            ("rust".into(), 20_000),
            ("spark".into(), 10_000)
        ]
    );
    // JSON lines, one object a line (`| jq` works): the epoch is a field, not a header.
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let epochs: std::collections::BTreeSet<u64> =
        rows.iter().map(|r| r["epoch"].as_u64().unwrap()).collect();
    assert!(epochs.len() >= 3, "several epochs expected:\n{stdout}");
    assert_eq!(rows[0]["epoch"], 0, "{stdout}");
    // Complete mode: every epoch carries the whole table, most frequent first.
    assert_eq!(rows[0]["hashtag"], "rust", "{stdout}");
    assert!(
        stderr.contains("epoch 0: ") && stderr.contains("stopped (the source ended)"),
        "{stderr}"
    );
}

#[test]
fn update_mode_emits_only_changed_rows_and_append_emits_new_rows() {
    let dir = tempfile::tempdir().unwrap();
    let port = line_server(
        vec![b"a b\n".to_vec(), b"b\n".to_vec()],
        Duration::from_millis(600),
    );
    let p = hashtag_pipeline(
        dir.path(),
        &format!("  type: socket\n  host: 127.0.0.1\n  port: {port}"),
        "trigger:\n  processing_time: 250ms\noutput_mode: update\n",
    );
    // A file sink would hold the last epoch's changes alone: refused, as Spark's file sinks do.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("validate")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("sinks.1 (csv): this stream's `update` output mode"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replace("  - {type: csv, path: counts.csv}\n", "")).unwrap();
    let (code, stdout, stderr) = finish(spawn_runner(&p, &[]));
    assert_eq!(code, 0, "{stderr}");
    let epoch_of = |line: &str| -> u64 {
        serde_json::from_str::<serde_json::Value>(line).unwrap()["epoch"]
            .as_u64()
            .unwrap()
    };
    let epochs: Vec<String> = (0..2)
        .map(|n| {
            stdout
                .lines()
                .filter(|l| epoch_of(l) == n)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    assert!(stdout.lines().all(|l| epoch_of(l) < 2), "{stdout}");
    assert!(
        epochs[0].contains("\"a\"") && epochs[0].contains("\"b\""),
        "{stdout}"
    );
    assert!(
        epochs[1].contains("{\"epoch\":1,\"hashtag\":\"b\",\"count\":2}")
            && !epochs[1].contains("\"a\""),
        "{stdout}"
    );

    // Append without an aggregation: each epoch has only its new rows.
    let port = line_server(
        vec![b"x y\n".to_vec(), b"z\n".to_vec()],
        Duration::from_millis(600),
    );
    let p = write(
        dir.path(),
        "append.yaml",
        &format!("name: t\nmode: stream\nsource:\n  type: socket\n  host: 127.0.0.1\n  port: {port}\ntransforms:\n  - {{type: explode, column: line, separator: ' ', as: tag}}\ntrigger:\n  processing_time: 250ms\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
    );
    let (code, stdout, stderr) = finish(spawn_runner(&p, &[]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "epoch\ttag\n0\tx\n0\ty\n1\tz\n");
}

#[test]
fn reconnects_after_the_server_closes_and_waits_for_it_to_start() {
    let dir = tempfile::tempdir().unwrap();
    // Reserve a port, then start the server only after runner is already trying it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = hashtag_pipeline(
        dir.path(),
        &format!("  type: socket\n  host: 127.0.0.1\n  port: {port}\n  reconnect: true"),
        "trigger:\n  processing_time: 100ms\nstop_after: 3s\n",
    );
    let mut child = spawn_runner(&p, &[]);
    // Wait for runner to say it is retrying the refused port (an event, not a guessed delay),
    // keeping the rest of its stderr for the checks below.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("retrying until it accepts connections") {
        let mut line = String::new();
        let read = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(read > 0, "runner ended before retrying: {seen}");
        seen.push_str(&line);
    }
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        rest
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    for round in 0..2 {
        let (mut client, _) = listener.accept().unwrap();
        client
            .write_all(format!("r{round} shared\n").repeat(100).as_bytes())
            .unwrap();
        drop(client);
    }
    let (code, _, _) = finish(child);
    let stderr = seen + &rest.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        counts(&dir.path().join("counts.csv")),
        [
            ("r0".into(), 100),
            ("r1".into(), 100),
            ("shared".into(), 200)
        ]
    );
    assert!(stderr.contains("stopped (stop_after reached)"), "{stderr}");
}

#[test]
fn sigterm_finishes_the_epoch_and_flushes_the_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = hashtag_pipeline(
        dir.path(),
        &format!("  type: socket\n  mode: listen\n  port: {port}"),
        "trigger:\n  processing_time: 60s\n",
    );
    let child = spawn_runner(&p, &[]);
    // Two clients at once: listen mode reads from all of them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut clients = Vec::new();
    while clients.len() < 2 {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => clients.push(c),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("runner never listened: {e}"),
        }
    }
    clients[0]
        .write_all(b"alpha beta\n".repeat(500).as_slice())
        .unwrap();
    clients[1]
        .write_all(b"beta\n".repeat(250).as_slice())
        .unwrap();
    // Wait until runner has taken the bytes off its sockets (the kernel's receive queues of
    // its connections on the port are empty), not a guessed delay. On loopback a write has
    // put its bytes in that queue by the time it returns.
    let unread = || -> u64 {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let local_port =
                    u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
                let queues = fields.get(4)?;
                let rx = u64::from_str_radix(queues.split(':').nth(1)?, 16).ok()?;
                (local_port == port && fields.get(3) == Some(&"01")).then_some(rx)
            })
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while unread() > 0 {
        assert!(
            Instant::now() < deadline,
            "runner never read the clients' lines"
        );
        std::thread::yield_now();
    }
    // The 60 s trigger has not fired yet: SIGTERM must still process and write what arrived.
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let (code, _, stderr) = finish(child);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        counts(&dir.path().join("counts.csv")),
        [("alpha".into(), 500), ("beta".into(), 750)]
    );
    assert!(stderr.contains("stopped (interrupted)"), "{stderr}");
}

#[test]
fn available_now_drains_the_source_then_stops() {
    let dir = tempfile::tempdir().unwrap();
    let port = line_server(vec![b"q w e\n".repeat(50_000)], Duration::from_millis(10));
    let p = hashtag_pipeline(
        dir.path(),
        &format!("  type: socket\n  host: 127.0.0.1\n  port: {port}"),
        "trigger:\n  available_now: true\n",
    );
    let (code, _, stderr) = finish(spawn_runner(&p, &["--progress", "json"]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        counts(&dir.path().join("counts.csv")),
        [
            ("e".into(), 50_000),
            ("q".into(), 50_000),
            ("w".into(), 50_000)
        ]
    );
    let progress: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!progress.is_empty());
    assert_eq!(progress[0]["batchId"], 0);
    let total: u64 = progress
        .iter()
        .map(|p| p["numInputRows"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 50_000);
}

#[test]
fn one_runner_serves_lines_to_another_over_the_socket_sink() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "tags.txt", &"rust ai\nrust\n".repeat(1000));
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = write(
        dir.path(),
        "serve.yaml",
        &format!("name: serve\nsource:\n  type: file\n  path: tags.txt\nsinks:\n  - type: socket\n    listen: 127.0.0.1:{port}\n"),
    );
    let serving = spawn_runner(&server, &[]);
    let p = hashtag_pipeline(
        dir.path(),
        &format!("  type: socket\n  host: 127.0.0.1\n  port: {port}"),
        "trigger:\n  processing_time: 100ms\n",
    );
    let (code, _, stderr) = finish(spawn_runner(&p, &["--progress", "off"]));
    assert_eq!(code, 0, "{stderr}");
    let (served, _, serve_err) = finish(serving);
    assert_eq!(served, 0, "{serve_err}");
    assert!(
        serve_err.contains(&format!("waiting for a connection on 127.0.0.1:{port}")),
        "{serve_err}"
    );
    assert_eq!(
        counts(&dir.path().join("counts.csv")),
        [("ai".into(), 1000), ("rust".into(), 2000)]
    );
}

#[test]
fn a_stream_of_files_with_a_backlog_takes_one_trigger_per_epoch() {
    let dir = tempfile::tempdir().unwrap();
    for (n, rows) in [(1, 2), (2, 3), (3, 4)] {
        write(
            &dir.path().join("in"),
            &format!("{n}.txt"),
            &"x\n".repeat(rows),
        );
    }
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nmode: stream\nsource: {type: file, path: in, max_files_per_trigger: 1}\ntrigger:\n  processing_time: 300ms\nsinks:\n  - {type: stdout, format: jsonl}\n",
    );
    let started = Instant::now();
    let (code, out, err) = finish(spawn_runner(&p, &["--progress", "json"]));
    let elapsed = started.elapsed();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 9, "{out}");
    let epochs: Vec<(u64, u64)> = err
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["batchId"].as_u64()?, v["numInputRows"].as_u64()?)))
        .collect();
    // One file an epoch, each at its trigger: epoch 2 cannot start before two intervals have
    // passed (the backlog used to run its epochs back to back, in a few milliseconds).
    assert_eq!(epochs, [(0, 2), (1, 3), (2, 4)], "{err}");
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
}

#[test]
fn a_stream_of_records_follows_encoding_errors_as_a_batch_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"{\"k\":\"a\"}\n{\"k\":\"b".to_vec();
    bytes.extend_from_slice(b"\xff\"}\n{\"k\":\"c\"}\n");
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/1.jsonl"), bytes).unwrap();
    let run = |mode: &str| {
        let p = write(
            dir.path(),
            "p.yaml",
            &format!("name: t\nmode: stream\nsource: {{type: file, path: in, format: jsonl, columns: {{k: text}}, encoding_errors: {mode}}}\nsinks:\n  - {{type: stdout, format: jsonl}}\n"),
        );
        finish(spawn_runner(&p, &[]))
    };
    let (code, out, err) = run("replace");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "{\"epoch\":0,\"k\":\"a\"}\n{\"epoch\":0,\"k\":\"b\u{FFFD}\"}\n{\"epoch\":0,\"k\":\"c\"}\n"
    );
    assert!(err.contains("1 line(s) had invalid UTF-8"), "{err}");
    let (code, out, err) = run("skip");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "{\"epoch\":0,\"k\":\"a\"}\n{\"epoch\":0,\"k\":\"c\"}\n"
    );
    assert!(
        err.contains("1 line(s) with invalid UTF-8 were skipped"),
        "{err}"
    );
    let (code, _, err) = run("fail");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("1.jsonl line 2: invalid UTF-8 at byte 8 of the line"),
        "{err}"
    );
    // Lines too are named by file and line.
    std::fs::write(dir.path().join("in/1.jsonl"), b"ok\nok2\nbad\xc3\x28x\n").unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nmode: stream\nsource: {type: file, path: in, encoding_errors: fail}\nsinks:\n  - {type: stdout, format: jsonl}\n",
    );
    let (code, _, err) = finish(spawn_runner(&p, &[]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("1.jsonl line 3: invalid UTF-8 at byte 4 of the line"),
        "{err}"
    );
}

#[test]
fn json_lines_after_a_byte_order_mark_are_read_in_batch_and_stream() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(
        dir.path().join("in/1.jsonl"),
        b"\xEF\xBB\xBF{\"k\":\"a\"}\n{\"k\":\"b\"}\n",
    )
    .unwrap();
    // Not data, as Spark passes them by: they would fail the run if read.
    std::fs::write(dir.path().join("in/_SUCCESS"), "{not json").unwrap();
    std::fs::write(dir.path().join("in/.2.jsonl.tmp"), "{not json").unwrap();
    for mode in ["batch", "stream"] {
        let p = write(
            dir.path(),
            "p.yaml",
            &format!("name: t\nmode: {mode}\nsource: {{type: file, path: in, format: jsonl, columns: {{k: text}}}}\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
        );
        let (code, out, err) = finish(spawn_runner(&p, &[]));
        assert_eq!(code, 0, "{mode}: {err}");
        // Inferred columns too.
        let inferred = write(
            dir.path(),
            "q.yaml",
            &format!("name: t\nmode: {mode}\nsource: {{type: file, path: in, format: jsonl}}\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
        );
        let (code, _, err) = finish(spawn_runner(&inferred, &[]));
        assert_eq!(code, 0, "{mode} inferred: {err}");
        let keys: Vec<&str> = out
            .lines()
            .filter(|l| *l == "a" || l.ends_with("\ta") || *l == "b" || l.ends_with("\tb"))
            .collect();
        assert_eq!(keys.len(), 2, "{mode}: {out}");
    }
}

#[test]
fn a_stream_of_csv_files_reads_each_file_by_its_own_header() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(
        dir.path().join("in/1.csv"),
        "name,amount,city\nann,3,paris\nbob,4,rome\n",
    )
    .unwrap();
    // Another order, a byte order mark, CRLF and a column more: found by name.
    std::fs::write(
        dir.path().join("in/2.csv"),
        "\u{FEFF}city,name,amount,extra\r\nparis,ann,10,x\r\nrome,cid,1,y\r\n",
    )
    .unwrap();
    let pipeline = |columns: &str| {
        write(
            dir.path(),
            "p.yaml",
            &format!("name: t\nmode: stream\nsource: {{type: file, path: in, format: csv{columns}, max_files_per_trigger: 1}}\ntransforms:\n  - {{type: aggregate, by: [name], aggs: {{total: sum(amount)}}}}\noutput_mode: complete\ncheckpoint: {{dir: ck}}\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
        )
    };
    let p = pipeline(", columns: {name: text, amount: integer}");
    let (code, out, err) = finish(spawn_runner(&p, &[]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "epoch\tname\ttotal\n0\tann\t3\n0\tbob\t4\n1\tann\t13\n1\tbob\t4\n1\tcid\t1\n"
    );
    // A restart goes on from the checkpoint with the next file.
    std::fs::write(dir.path().join("in/3.csv"), "amount,name\n5,bob\n").unwrap();
    let (code, out, err) = finish(spawn_runner(&p, &[]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "epoch\tname\ttotal\n2\tann\t13\n2\tbob\t9\n2\tcid\t1\n"
    );
    // A file without a declared column, and a value that is not of its type, are named.
    std::fs::remove_dir_all(dir.path().join("ck")).unwrap();
    std::fs::write(dir.path().join("in/4.csv"), "name,city\ndan,oslo\n").unwrap();
    let (code, _, err) = finish(spawn_runner(&p, &[]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("4.csv: the CSV header has no column `amount` (header: name, city)"),
        "{err}"
    );
    std::fs::write(dir.path().join("in/4.csv"), "name,amount\ndan,1\neve,zz\n").unwrap();
    std::fs::remove_dir_all(dir.path().join("ck")).unwrap();
    let (code, _, err) = finish(spawn_runner(&p, &[]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("4.csv line 3: the record cannot be read: `amount`: \"zz\" is not an integer"),
        "{err}"
    );
    // Columns inferred from the first file (name, amount, city): optional, so 3.csv, without
    // `city`, is read with nulls there.
    std::fs::remove_file(dir.path().join("in/4.csv")).unwrap();
    std::fs::remove_dir_all(dir.path().join("ck")).unwrap();
    let p = pipeline("");
    let (code, out, err) = finish(spawn_runner(&p, &[]));
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("2\tann\t13\n2\tbob\t9\n2\tcid\t1\n"), "{out}");
}

#[test]
fn a_socket_reads_csv_records_into_the_columns_in_order() {
    let port = line_server(
        vec![
            b"ann;3;2024-01-01T00:00:00Z\nbob;x;2024-01-01T00:00:00Z\n".to_vec(),
            b"\"c;d\";5;1700000000\ntoo;many;fields;here\nann;1;2024-01-02T00:00:00Z\n".to_vec(),
        ],
        Duration::from_millis(10),
    );
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        &format!("name: t\nmode: stream\nsource: {{type: socket, host: 127.0.0.1, port: {port}, format: csv, delimiter: ';', columns: {{name: text, amount: integer, at: timestamp}}, on_error: skip}}\ntransforms:\n  - {{type: aggregate, by: [name], aggs: {{total: sum(amount), last: max(at)}}}}\noutput_mode: complete\ntrigger: {{available_now: true}}\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
    );
    let (code, out, err) = finish(spawn_runner(&p, &[]));
    assert_eq!(code, 0, "{err}");
    let last_epoch: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split_once('\t').unwrap().1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .take(2)
        .collect();
    assert_eq!(
        last_epoch,
        [
            "c;d\t5\t2023-11-14T22:13:20Z",
            "ann\t4\t2024-01-02T00:00:00Z"
        ],
        "{out}"
    );
    assert!(
        err.contains(
            "2 record(s) could not be read and were skipped; the first: a line from 127.0.0.1"
        ),
        "{err}"
    );
    // Without columns, a socket cannot know the fields.
    let p = write(
        dir.path(),
        "q.yaml",
        "name: t\nmode: stream\nsource: {type: socket, port: 9, format: csv}\nsinks:\n  - {type: stdout}\n",
    );
    let (code, _, err) = run_pipeline(&p, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`format: csv` needs `columns:`"), "{err}");
}

#[test]
fn lines_left_out_are_placed_by_file_and_line_in_streams_and_batch_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    // A line over max_line_bytes (1 MiB; a batch run takes one up to half as long again),
    // then one of invalid UTF-8 on line 3.
    let mut bytes = b"ok\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 2 << 20));
    bytes.extend_from_slice(b"\nbad\xff\nfine\n");
    std::fs::write(dir.path().join("in/1.txt"), &bytes).unwrap();
    let run = |mode: &str, encoding: &str| {
        let p = write(
            dir.path(),
            "p.yaml",
            &format!("name: t\nmode: {mode}\nsource: {{type: file, path: in, max_line_bytes: 1MiB, encoding_errors: {encoding}}}\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
        );
        finish(spawn_runner(&p, &[]))
    };
    // The stream's chunk left the long line out: the bad line is still line 3.
    let (code, _, err) = run("stream", "fail");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("1.txt line 3: invalid UTF-8 at byte 4 of the line"),
        "{err}"
    );
    for mode in ["stream", "batch"] {
        let (code, out, err) = run(mode, "replace");
        assert_eq!(code, 0, "{mode}: {err}");
        assert!(out.contains("bad\u{FFFD}\n"), "{mode}: {out}");
        assert!(
            err.contains("1 line(s) had invalid UTF-8; bad bytes were replaced with U+FFFD (the first seen: ")
                && err.contains("1.txt line 3)"),
            "{mode}: {err}"
        );
        assert!(
            err.contains(
                "1 line(s) longer than max_line_bytes (1048576) were skipped (the first seen: "
            ) && err.contains("1.txt"),
            "{mode}: {err}"
        );
    }
    // A kernel reads valid chunks raw and hands the others to the source: the places still
    // follow the files.
    std::fs::write(dir.path().join("in/1.txt"), "a b\nb c\n").unwrap();
    std::fs::write(dir.path().join("in/2.txt"), b"c\nd \xff\n").unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nmode: stream\nsource: {type: file, path: in, max_files_per_trigger: 1}\ntransforms:\n  - {type: explode, column: line, separator: ' ', as: w}\n  - {type: group_count, by: w}\noutput_mode: complete\nsinks:\n  - {type: stdout, format: tsv}\n",
    );
    let (code, _, err) = finish(spawn_runner(&p, &[]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("2.txt line 2)"), "{err}");
}

#[test]
fn columns_are_inferred_from_the_first_file_with_records() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/a0.csv"), "").unwrap();
    std::fs::write(dir.path().join("in/a1.csv"), "k,v\n").unwrap();
    std::fs::write(dir.path().join("in/a2.csv"), "k,v\nx,1\ny,2.5\n").unwrap();
    for mode in ["batch", "stream"] {
        let p = write(
            dir.path(),
            "p.yaml",
            &format!("name: t\nmode: {mode}\nsource: {{type: file, path: in, format: csv}}\ntransforms:\n  - {{type: aggregate, aggs: {{total: sum(v)}}}}\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
        );
        let (code, out, err) = finish(spawn_runner(&p, &[]));
        assert_eq!(code, 0, "{mode}: {err}");
        // `v` is a float (from a2.csv), not text (from the header-only a1.csv).
        assert!(out.ends_with("3.5\n"), "{mode}: {out}");
    }
}

#[test]
fn invalid_utf8_in_a_csv_header_is_replaced_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/a.csv"), b"k,v,\xffx\nok,1,2\n").unwrap();
    for mode in ["batch", "stream"] {
        let p = write(
            dir.path(),
            "p.yaml",
            &format!("name: t\nmode: {mode}\nsource: {{type: file, path: in, format: csv, columns: {{k: text}}}}\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
        );
        let (code, out, err) = finish(spawn_runner(&p, &[]));
        assert_eq!(code, 0, "{mode}: {err}");
        assert!(out.ends_with("ok\n"), "{mode}: {out}");
        assert!(
            err.contains("1 line(s) had invalid UTF-8; bad bytes were replaced with U+FFFD (the first seen: ")
                && err.contains("a.csv line 1, the CSV header)"),
            "{mode}: {err}"
        );
    }
}

#[test]
fn an_optional_column_a_csv_files_header_lacks_is_null() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    // An older file, before the column `v` was added.
    std::fs::write(dir.path().join("in/1.csv"), "k\na\n").unwrap();
    std::fs::write(dir.path().join("in/2.csv"), "v,k\n2,a\n").unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nmode: stream\nsource: {type: file, path: in, format: csv, columns: {k: text, v: integer?}}\ntransforms:\n  - {type: aggregate, by: [k], aggs: {n: count(), with_v: count(v), total: sum(v)}}\noutput_mode: complete\nsinks:\n  - {type: stdout, format: tsv}\n",
    );
    let (code, out, err) = finish(spawn_runner(&p, &[]));
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("\ta\t2\t1\t2\n"), "{out}");
    // A required one is still an error that says how to make it optional.
    std::fs::write(
        &p,
        std::fs::read_to_string(&p)
            .unwrap()
            .replace("integer?", "integer"),
    )
    .unwrap();
    let (code, _, err) = finish(spawn_runner(&p, &[]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("1.csv: the CSV header has no column `v` (header: k); write `integer?` in `columns:` to read it as null where a file lacks it"),
        "{err}"
    );
}

#[test]
fn a_stream_whose_only_output_is_closed_stops() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    write(&dir.path().join("in"), "a.txt", "a\nb\n");
    // It polls for files for ever: only its closed output can end it.
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nmode: stream\nsource: {type: file, path: in, poll: 50ms}\ntrigger: {processing_time: 50ms}\nemit_empty: true\nsinks:\n  - {type: stdout}\n",
    );
    let child = runner_process()
        .arg("run")
        .arg(&pipeline)
        .stdout(closed_pipe())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A watchdog, so that a stream that does not stop fails the test rather than hanging it.
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished
            .recv_timeout(std::time::Duration::from_secs(120))
            .is_err()
        {
            // SAFETY: a plain signal to the child this test started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = done.send(());
    watchdog.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("stopped (its output was closed)"),
        "{stderr}"
    );
}

#[test]
fn an_idle_stream_whose_stdout_reader_left_stops_without_waiting_for_rows() {
    let dir = tempfile::tempdir().unwrap();
    // A server that accepts and then sends nothing: the stream is idle for as long as it lives.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let p = write(
        dir.path(),
        "p.yaml",
        &format!("name: idle\nmode: stream\nsource: {{type: socket, host: 127.0.0.1, port: {port}}}\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
    );
    let log = dir.path().join("stderr.log");
    // Standard output is a pipe; its reader goes once the stream is connected and idle, as
    // `| head` leaves it.
    let (reader, writer) = std::io::pipe().unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .arg("run")
        .arg(&p)
        .env("RUNNER_LOCK_DIR", unique_lock_dir())
        .stdout(Stdio::from(writer))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let (connection, _) = server.accept().unwrap();
    drop(reader);
    // The connection stays open and silent; only the closed pipe can end the run. A limit
    // keeps a regression from hanging the suite.
    let pid = child.id() as i32;
    let (exited, exit) = std::sync::mpsc::channel();
    std::thread::spawn(move || exited.send(child.wait().unwrap()));
    let Ok(status) = exit.recv_timeout(Duration::from_secs(30)) else {
        // SAFETY: a plain signal to the child this test started (not yet reaped).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("an idle stream kept running with its stdout closed");
    };
    drop(connection);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("stopped (its output was closed): 0 epoch(s)"),
        "{stderr}"
    );
}

#[test]
fn rows_held_for_the_sinks_are_measured_once_so_a_file_is_one_epoch() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    // 9 MB of lines: about 13 MB as rows, within the 32 MiB an epoch holds for its sinks
    // (counted once per decoded chunk, not once per slice of it, it was cut at 2 MB).
    let lines: Vec<String> = (0..1_000_000).map(|i| format!("{i:08}")).collect();
    std::fs::write(dir.path().join("in/a.txt"), lines.join("\n") + "\n").unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nmode: stream\nsource: {type: file, path: in}\ntrigger: {available_now: true}\nsinks:\n  - {type: csv, path: out.csv}\n",
    );
    let (code, _, err) = run_pipeline(&p, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("epoch 0: 1,000,000 rows in") && err.contains("1 epoch(s)"),
        "{err}"
    );
    let written = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    assert_eq!(written.lines().count(), 1_000_001);
}

#[test]
fn a_column_named_epoch_is_refused_where_a_streams_stdout_adds_its_own() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["jsonl", "tsv"] {
        let p = write(
            dir.path(),
            "p.yaml",
            &format!("name: t\nmode: stream\nsource: {{type: socket, host: 127.0.0.1, port: 9, format: csv, columns: {{name: text, epoch: integer}}}}\nsinks:\n  - {{type: stdout, format: {format}}}\n"),
        );
        let (code, _, err) = run_pipeline(&p, &[]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("sinks.0 (stdout): the column `epoch` clashes with the epoch number"),
            "{err}"
        );
    }
    // A batch run prints no epoch: the column is the data's own.
    write(dir.path(), "in.csv", "name,epoch\nx,5\n");
    let p = write(
        dir.path(),
        "b.yaml",
        "name: t\nsource: {type: file, path: in.csv, format: csv}\nsinks:\n  - {type: stdout, format: jsonl}\n",
    );
    let (code, out, err) = run_pipeline(&p, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "{\"name\":\"x\",\"epoch\":5}\n");
}

#[test]
fn a_stream_of_a_folder_that_does_not_exist_says_so_then_reads_it_once_made() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nmode: stream\nmax_epochs: 1\nsource: {type: file, path: incoming, poll: 50ms}\nsinks:\n  - {type: stdout, format: jsonl}\n",
    );
    let mut child = spawn_runner(&p, &[]);
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "ended: {said}");
        said.push_str(&line);
        if line.contains("incoming does not exist (yet): the stream waits for it to appear") {
            break;
        }
    }
    // Made after the warning (whole, by a rename): its file is read, and the epoch ends the
    // run.
    write(&dir.path().join("staging"), "a.txt", "hello\n");
    std::fs::rename(dir.path().join("staging"), dir.path().join("incoming")).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"epoch\":0,\"line\":\"hello\"}\n"
    );
}

/// A run that fails still tells what it skipped before: the warnings come before the error,
/// in a stream as in a batch run.
#[test]
fn a_failed_run_still_warns_of_the_records_it_skipped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/1.csv"), "a,b\n1,x\nzz,y\n3,z\n").unwrap();
    for mode in ["batch", "stream"] {
        let p = write(
            dir.path(),
            "p.yaml",
            &format!("name: t\nmode: {mode}\nsource: {{type: file, path: in, format: csv, columns: {{a: integer, b: text}}, on_error: skip}}\ntransforms:\n  - {{type: with_column, name: c, expr: cast(b as integer)}}\nsinks:\n  - {{type: stdout, format: jsonl}}\n"),
        );
        let (code, _, err) = finish(spawn_runner(&p, &[]));
        assert_eq!(code, 1, "{mode}: {err}");
        let warned = err
            .find("record(s) could not be read and were skipped")
            .unwrap_or_else(|| panic!("{mode}: {err}"));
        let failed = err
            .find("cannot cast \"x\" to integer")
            .unwrap_or_else(|| panic!("{mode}: {err}"));
        assert!(warned < failed, "{mode}: {err}");
    }
}

/// A stream's epoch is decoded on all cores: the warning still names the earliest bad line
/// of the epoch, not the first a worker met.
#[test]
fn a_stream_names_the_earliest_bad_line_whatever_the_cores() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    for file in 0..40 {
        let mut bytes = Vec::new();
        for line in 1..=4000 {
            match (file, line) {
                (7, 3000) | (12, 1) => bytes.extend_from_slice(b"{\"k\":\"b\xff\"}\n"),
                _ => bytes.extend_from_slice(format!("{{\"k\":\"k{}\"}}\n", line % 7).as_bytes()),
            }
        }
        std::fs::write(dir.path().join(format!("in/f{file:02}.jsonl")), bytes).unwrap();
    }
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nmode: stream\nsource: {type: file, path: in, format: jsonl, columns: {k: text}}\ntransforms:\n  - {type: aggregate, by: k, aggs: {n: count()}}\nsinks:\n  - {type: csv, path: out.csv}\n",
    );
    for _ in 0..4 {
        let (code, _, err) = finish(spawn_runner(&p, &["--cores", "2"]));
        assert_eq!(code, 0, "{err}");
        assert!(
            err.contains("2 line(s) had invalid UTF-8") && err.contains("f07.jsonl line 3000)"),
            "{err}"
        );
    }
}

/// A FIFO named as a stream's `path` is refused with what reads it: a stream of files found
/// nothing to list in it, ended at once with exit 0, and left its writer waiting.
#[test]
fn a_fifo_is_no_stream_of_files() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ff");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nmode: stream\nsource: {type: file, path: ff}\nsinks: [stdout]\n",
    );
    let (code, _, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("ff is not one (a FIFO or a device): use `mode: batch` to read it"),
        "{stderr}"
    );
}
