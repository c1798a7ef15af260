//! The binary on small inputs written by the tests: commands, sources, sinks, exit codes.

mod common;
use common::*;
use predicates::prelude::*;

const WORDS: &str = "The cat and the hat.\r\nA cat, a CAT!\nhat";

fn pipeline(dir: &std::path::Path, source: &str, rest: &str) -> std::path::PathBuf {
    write(
        dir,
        "p.yaml",
        &format!("name: t\nsource:\n{source}\n{rest}"),
    )
}

const COUNT: &str = "transforms:
  - type: tokenize
  - type: stopwords
  - type: group_count
    by: word
  - type: sort
    by: [count desc]
sinks:
  - type: stdout
    format: tsv
  - type: csv
    path: out/counts.csv
";

#[test]
fn counts_words_of_a_small_file_relative_to_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", WORDS);
    let p = pipeline(dir.path(), "  type: file\n  path: in.txt", COUNT);
    // Run from another directory: paths resolve against the pipeline file.
    runner()
        .args(["run"])
        .arg(&p)
        .current_dir(std::env::temp_dir())
        .assert()
        .success()
        .stdout("word\tcount\ncat\t3\nhat\t2\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/counts.csv")).unwrap(),
        "word,count\ncat,3\nhat,2\n"
    );
}

#[test]
fn a_pipeline_file_given_as_a_pipe_is_read_once_and_its_paths_are_the_working_directory_s() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", WORDS);
    // In a folder of its own, as `/dev/fd` is: `in.txt` is not there.
    std::fs::create_dir(dir.path().join("pipes")).unwrap();
    let fifo = dir.path().join("pipes/pipeline.fifo");
    let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `name` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let text = format!("name: t\nsource:\n  type: file\n  path: in.txt\n{COUNT}");
    // The writer writes once, as `<(...)` does: a second open for reading would wait for
    // a writer for ever.
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, text).unwrap())
    };
    runner()
        .args(["run"])
        .arg(&fifo)
        .current_dir(dir.path())
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .success()
        .stdout("word\tcount\ncat\t3\nhat\t2\n");
    writer.join().unwrap();
}

#[test]
fn reads_standard_input_with_dash() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "  type: file\n  path: '-'", COUNT);
    runner()
        .arg("run")
        .arg(&p)
        .write_stdin(WORDS)
        .assert()
        .success()
        .stdout("word\tcount\ncat\t3\nhat\t2\n");
}

#[test]
fn formats_jsonl_and_table_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", WORDS);
    let p = pipeline(
        dir.path(),
        "  type: file\n  path: in.txt",
        "transforms:\n  - type: tokenize\n  - type: group_count\n    by: word\n  - type: sort\n    by: count desc\n  - type: limit\n    n: 2\nsinks:\n  - type: stdout\n    format: jsonl\n  - type: stdout\n    limit: 1\n",
    );
    let out = runner().arg("run").arg(&p).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("{\"word\":\"cat\",\"count\":3}\n{\"word\":\"a\",\"count\":2}\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("│ cat  ┆     3 │") || stdout.contains("cat"),
        "{stdout}"
    );
    assert!(
        !stdout[stdout.find('┌').unwrap_or(0)..].contains("│ a "),
        "table limit 1: {stdout}"
    );
}

#[test]
fn explode_and_filter_without_aggregation_keep_input_order() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "tags.txt", "rust spark ai\nai\n\nrust  go\n");
    let p = pipeline(
        dir.path(),
        "  type: file\n  path: tags.txt",
        "transforms:\n  - type: explode\n    column: line\n    separator: ' '\n    as: hashtag\n  - type: filter\n    where: hashtag != 'spark'\nsinks:\n  - type: stdout\n    format: tsv\n",
    );
    runner()
        .arg("run")
        .arg(&p)
        .args(["--cores", "2"])
        .assert()
        .success()
        .stdout("hashtag\nrust\nai\nai\nrust\ngo\n");
}

#[test]
fn missing_input_is_a_runtime_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "  type: file\n  path: nowhere.txt", COUNT);
    runner().arg("run").arg(&p).assert().code(1).stderr(
        predicate::str::contains("cannot read input").and(predicate::str::contains("nowhere.txt")),
    );
}

/// An expression that fails while it runs (a cast of a bad value) names its step's place in the
/// pipeline file, on the row-wise path and in the CSV aggregate kernel.
#[test]
fn a_runtime_expression_error_points_at_its_step_in_the_pipeline_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "k,v\na,1\nb,x\n");
    let source = "  type: file\n  path: in.csv\n  format: csv\n  columns: {k: text, v: text}";
    let computed = pipeline(
        dir.path(),
        source,
        "transforms:\n  - type: with_column\n    name: n\n    expr: cast(v as integer) + 1\nsinks:\n  - type: stdout\n",
    );
    runner().arg("run").arg(&computed).assert().code(1).stderr(
        predicate::str::contains(format!(
            "{}:8:5: transforms.0 (with_column): `cast(v as integer) + 1`: cannot cast \"x\" to integer",
            computed.display()
        )),
    );
    let kernel = pipeline(
        dir.path(),
        source,
        "transforms:\n  - {type: filter, where: \"k != 'z'\"}\n  - type: filter\n    where: cast(v as integer) > 0\n  - {type: aggregate, by: [k], aggs: {n: count()}}\nsinks:\n  - type: stdout\n",
    );
    runner()
        .args(["plan"])
        .arg(&kernel)
        .assert()
        .success()
        .stdout(predicate::str::contains("csv_aggregate_kernel"));
    runner()
        .arg("run")
        .arg(&kernel)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "{}:9:5: transforms.1 (filter): `cast(v as integer) > 0`: cannot cast \"x\" to integer",
            kernel.display()
        )));
    // An aggregation's own error (a sum past i64), in a batch (fused or not) and a stream.
    write(dir.path(), "big.csv", "k,a\nx,9223372036854775807\nx,1\n");
    for (mode, options) in [
        ("batch", None),
        ("batch", Some("--no-fusion")),
        ("stream", None),
    ] {
        let summed = pipeline(
            dir.path(),
            "  type: file\n  path: big.csv\n  format: csv",
            &format!("mode: {mode}\ntransforms:\n  - type: aggregate\n    by: [k]\n    aggs: {{s: sum(a)}}\nsinks:\n  - type: stdout\n"),
        );
        runner()
            .arg("run")
            .arg(&summed)
            .args(options)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(format!(
                "{}:8:5: transforms.0 (aggregate): integer overflow in `sum(a)` for the group k = 'x'",
                summed.display()
            )));
    }
}

#[test]
fn invalid_utf8_is_replaced_and_reported_or_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.txt"), b"caf\xe9 ok\n").unwrap();
    let rest = "transforms:\n  - type: tokenize\nsinks:\n  - type: stdout\n    format: tsv\n";
    let p = pipeline(dir.path(), "  type: file\n  path: bad.txt", rest);
    runner()
        .arg("run")
        .arg(&p)
        .assert()
        .success()
        .stdout("word\ncaf\u{fffd}\nok\n")
        .stderr(predicate::str::contains(
            "warning: 1 line(s) had invalid UTF-8",
        ));
    runner()
        .arg("run")
        .arg(&p)
        .arg("--quiet")
        .assert()
        .success()
        .stderr("");
    let p = pipeline(
        dir.path(),
        "  type: file\n  path: bad.txt\n  encoding_errors: fail",
        rest,
    );
    runner()
        .arg("run")
        .arg(&p)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("bad.txt line 1: invalid UTF-8"));
}

/// Workers meet bad lines out of order; the warning names the earliest in the input, the
/// same whatever the cores, as lines and as CSV records, in two files of a folder.
#[test]
fn the_first_bad_line_named_is_the_earliest_whatever_the_cores() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = Vec::new();
    text.extend_from_slice(b"k,v\n");
    for line in 2..400_000u32 {
        match line % 40_000 {
            // The first bad line is line 7 of b.csv; every later morsel holds one too.
            7 => text.extend_from_slice(b"caf\xe9,1\n"),
            _ => text.extend_from_slice(format!("k{},{line}\n", line % 97).as_bytes()),
        }
    }
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/b.csv"), &text).unwrap();
    std::fs::write(dir.path().join("in/c.csv"), &text).unwrap();
    let as_csv = pipeline(
        dir.path(),
        "  type: file\n  path: in\n  format: csv\n  encoding_errors: skip",
        "transforms:\n  - {type: aggregate, by: k, aggs: {n: count()}}\nsinks:\n  - {type: stdout, format: jsonl}\n",
    );
    let as_lines = dir.path().join("lines.yaml");
    std::fs::write(
        &as_lines,
        "name: t\nsource: {type: file, path: in}\ntransforms: [{type: filter, where: line == 'none'}]\nsinks: [{type: stdout}]\n",
    )
    .unwrap();
    let first = format!(
        "(the first seen: {} line 7)",
        dir.path().join("in/b.csv").display()
    );
    for (p, count) in [
        (&as_csv, "20 line(s) with invalid UTF-8 were skipped"),
        (&as_lines, "20 line(s) had invalid UTF-8"),
    ] {
        for cores in ["5", "1", "5", "3", "5"] {
            runner()
                .arg("run")
                .arg(p)
                .args(["--cores", cores])
                .assert()
                .success()
                .stderr(predicate::str::contains(count))
                .stderr(predicate::str::contains(first.as_str()));
        }
    }
}

#[test]
fn unwritable_output_fails_and_keeps_the_previous_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "a b\n");
    write(dir.path(), "out/counts.csv", "previous\n");
    let p = pipeline(dir.path(), "  type: file\n  path: in.txt", COUNT);
    let out_dir = dir.path().join("out");
    let mut perms = std::fs::metadata(&out_dir).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
    std::fs::set_permissions(&out_dir, perms.clone()).unwrap();
    let probe = std::fs::File::create(out_dir.join("probe"));
    if probe.is_ok() {
        eprintln!("SKIPPED: running as a user who can write to a read-only directory");
        return;
    }
    runner()
        .arg("run")
        .arg(&p)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot write output"));
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&out_dir, perms).unwrap();
    assert_eq!(
        std::fs::read_to_string(out_dir.join("counts.csv")).unwrap(),
        "previous\n"
    );
}

#[test]
fn validate_checks_many_files_and_reads_no_data() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", WORDS);
    let good = pipeline(dir.path(), "  type: file\n  path: in.txt", COUNT);
    let bad = write(
        dir.path(),
        "bad.yaml",
        "name: t\nsource:\n  type: fil\n  path: x\nsinks:\n  - type: stdout\n",
    );
    runner()
        .arg("validate")
        .arg(&good)
        .assert()
        .success()
        .stdout(predicate::str::starts_with("ok: "));
    runner()
        .arg("validate")
        .arg(&good)
        .arg(&bad)
        .assert()
        .code(2)
        .stdout(predicate::str::contains("ok: "))
        .stderr(
            predicate::str::contains("bad.yaml:3:").and(predicate::str::contains(
                "1 of 2 pipeline files are not valid",
            )),
        );
}

#[test]
fn validate_reports_a_missing_input_and_notes_one_fetch_will_bring() {
    let dir = tempfile::tempdir().unwrap();
    let missing = pipeline(dir.path(), "  type: file\n  path: nowhere.txt", COUNT);
    runner()
        .arg("validate")
        .arg(&missing)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "nowhere.txt does not exist (no such file or directory)",
        ));
    let fetched = pipeline(
        dir.path(),
        "  type: file\n  path: later.txt\n  fetch:\n    url: http://127.0.0.1:9/later.txt\n    sha256: bf8e99f2edb49e1692038870eae947dfbd9547c2dc91fcbb7d1c71fe96d91589",
        COUNT,
    );
    runner()
        .arg("validate")
        .arg(&fetched)
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "later.txt does not exist yet: the first run downloads it from http://127.0.0.1:9/later.txt",
        ));
    let stdin = pipeline(dir.path(), "  type: file\n  path: '-'", COUNT);
    runner().arg("validate").arg(&stdin).assert().success();
}

#[test]
fn standard_input_replaces_a_fetched_file_with_set_or_input() {
    // romeo.yaml's shape: a file with `fetch`. `-` must read standard input, not fetch.
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        "  type: file\n  path: play.txt\n  fetch:\n    url: http://127.0.0.1:9/play.txt\n    sha256: bf8e99f2edb49e1692038870eae947dfbd9547c2dc91fcbb7d1c71fe96d91589",
        COUNT,
    );
    for args in [&["--set", "source.path=-"][..], &["--input", "-"][..]] {
        runner()
            .arg("run")
            .arg(&p)
            .args(args)
            .write_stdin(WORDS)
            .assert()
            .success()
            .stdout("word\tcount\ncat\t3\nhat\t2\n");
    }
    write(dir.path(), "other.txt", "hat hat cat\n");
    runner()
        .arg("run")
        .arg(&p)
        .args(["--input", dir.path().join("other.txt").to_str().unwrap()])
        .assert()
        .success()
        .stdout("word\tcount\nhat\t2\ncat\t1\n");
    // A relative --input is relative to the current directory, not to the pipeline file.
    write(&dir.path().join("here"), "mine.txt", "cat cat\n");
    runner()
        .arg("run")
        .arg(&p)
        .args(["--input", "mine.txt"])
        .current_dir(dir.path().join("here"))
        .assert()
        .success()
        .stdout("word\tcount\ncat\t2\n");
}

#[test]
fn validate_accepts_the_shipped_pipelines() {
    for entry in std::fs::read_dir(repo_root().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let out = runner().arg("validate").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && stderr.contains("cannot open plugin") {
            // A plugin pipeline whose library is not built yet (cargo build --release -p NAME):
            // the message says so; tests/plugins.rs runs it with a library built there.
            eprintln!("SKIPPED {}: {stderr}", path.display());
            continue;
        }
        assert!(out.status.success(), "{}: {stderr}", path.display());
    }
}

#[test]
fn list_shows_every_component() {
    let assert = runner().arg("list").assert().success();
    let stdout = String::from_utf8(assert.get_output().stdout.clone()).unwrap();
    for name in [
        "file",
        "tokenize",
        "stopwords",
        "explode",
        "lowercase",
        "group_count",
        "filter",
        "sort",
        "limit",
        "stdout",
        "csv",
    ] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(name)),
            "{name} missing from:\n{stdout}"
        );
    }
    // Every stdout format is named, `bars` included.
    for format in ["aligned", "table", "bars", "tsv", "jsonl"] {
        assert!(stdout.contains(format), "{format} missing from:\n{stdout}");
    }
}

#[test]
fn help_has_examples_exit_codes_and_the_trust_boundary() {
    let assert = runner().arg("--help").assert().success();
    let stdout = String::from_utf8(assert.get_output().stdout.clone()).unwrap();
    for expected in [
        "Examples:",
        "runner run pipelines/romeo.yaml",
        "Exit codes:",
        "3  another run of the same pipeline holds its lock",
        "a pipeline file is code",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
}

#[test]
fn plan_shows_when_a_stream_stops() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "s.yaml",
        "name: s\nmode: stream\nstop_after: 10m\nmax_epochs: 5\nsource: {type: socket, host: 127.0.0.1, port: 9}\nsinks:\n  - {type: stdout}\n",
    );
    runner()
        .arg("plan")
        .arg(&p)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "stops     after 10m or after 5 epoch(s)",
        ));
}

#[test]
fn environment_variables_fill_string_values() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "x z x\n");
    let p = pipeline(
        dir.path(),
        "  type: file\n  path: ${RUNNER_TEST_INPUT}",
        COUNT,
    );
    runner()
        .arg("run")
        .arg(&p)
        .env("RUNNER_TEST_INPUT", "in.txt")
        .assert()
        .success()
        .stdout("word\tcount\nx\t2\nz\t1\n");
    runner()
        .arg("run")
        .arg(&p)
        .env_remove("RUNNER_TEST_INPUT")
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("p.yaml:4:")
                .and(predicate::str::contains("`RUNNER_TEST_INPUT` is not set")),
        );
}

#[test]
fn set_adds_values_and_rejects_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "b a b\n");
    let p = pipeline(dir.path(), "  type: file\n  path: in.txt", COUNT);
    runner()
        .arg("run")
        .arg(&p)
        .args([
            "--set",
            "transforms.4.type=limit",
            "--set",
            "transforms.4.n=1",
            "--set",
            "sinks.0.format=jsonl",
        ])
        .assert()
        .success()
        .stdout("{\"word\":\"b\",\"count\":2}\n");
    runner()
        .arg("run")
        .arg(&p)
        .args(["--set", "transforms.9.n=1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("has 4 items"));
    runner()
        .arg("run")
        .arg(&p)
        .args(["--set", "nonsense"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("PATH=VALUE"));
    runner()
        .arg("run")
        .arg(&p)
        .args(["--set", "cores=many"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("with --set").and(predicate::str::contains("cores")));
}

#[test]
fn fetch_downloads_a_missing_input_once_and_verifies_it() {
    let body = b"Romeo romeo juliet\n".to_vec();
    let sha = "6b83b19d1a8b2d4b7f3f8a4c1b1cf5e2a3c5e0a0f1b2c3d4e5f60718293a4b5c"; // wrong on purpose
    let good_sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let url = http_server("200 OK", body.clone(), 1);
    let source = format!("  type: file\n  path: data/play.txt\n  fetch:\n    url: {url}/play.txt\n    sha256: {good_sha}");
    let p = pipeline(dir.path(), &source, COUNT);
    runner()
        .arg("run")
        .arg(&p)
        .assert()
        .success()
        .stdout("word\tcount\nromeo\t2\njuliet\t1\n");
    assert_eq!(
        std::fs::read(dir.path().join("data/play.txt")).unwrap(),
        body
    );
    // The file is there now: no second request (the server would refuse it).
    runner().arg("run").arg(&p).assert().success();

    // A checksum mismatch is an error and leaves nothing behind.
    let dir = tempfile::tempdir().unwrap();
    let url = http_server("200 OK", body.clone(), 1);
    let source = format!(
        "  type: file\n  path: data/play.txt\n  fetch:\n    url: {url}/play.txt\n    sha256: {sha}"
    );
    let p = pipeline(dir.path(), &source, COUNT);
    runner()
        .arg("run")
        .arg(&p)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nothing was saved"));
    assert_eq!(
        std::fs::read_dir(dir.path().join("data")).unwrap().count(),
        0,
        "no file, no temp file"
    );

    // An HTTP error status.
    let url = http_server("404 Not Found", b"gone".to_vec(), 1);
    let source = format!(
        "  type: file\n  path: data/play.txt\n  fetch:\n    url: {url}/play.txt\n    sha256: {sha}"
    );
    let p = pipeline(dir.path(), &source, COUNT);
    runner()
        .arg("run")
        .arg(&p)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("404"));
}

#[test]
fn fetch_without_network_says_where_to_put_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let source = format!("  type: file\n  path: data/play.txt\n  fetch:\n    url: http://127.0.0.1:1/play.txt\n    sha256: {}", "a".repeat(64));
    let p = pipeline(dir.path(), &source, COUNT);
    let out = runner().arg("run").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A short error, then the hint on a line of its own; the URL once.
    assert!(
        stderr.contains("error: cannot download http://127.0.0.1:1/play.txt: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("\nhelp: without network, download it yourself and save it as "),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("http://127.0.0.1:1/play.txt").count(),
        1,
        "{stderr}"
    );
}

/// An HTTP server whose one answer never ends (no Content-Length), or that announces
/// `announced` bytes; it serves until the client goes away.
fn endless_server(announced: Option<u64>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let length =
                    announced.map_or(String::new(), |n| format!("Content-Length: {n}\r\n"));
                let head = format!("HTTP/1.1 200 OK\r\n{length}Connection: close\r\n\r\n");
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                while stream.write_all(&chunk).is_ok() {}
            });
        }
    });
    format!("http://{address}")
}

#[test]
fn fetch_stops_at_max_bytes_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    for (announced, expected) in [
        (None, "the body went on past 1000000 bytes"),
        (Some(5_000_000_000), "the server announced 5000000000 bytes"),
    ] {
        let url = endless_server(announced);
        let source = format!("  type: file\n  path: data/play.txt\n  fetch:\n    url: {url}/play.txt\n    sha256: {}\n    max_bytes: 1000000", "a".repeat(64));
        let p = pipeline(dir.path(), &source, COUNT);
        runner()
            .arg("run")
            .arg(&p)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(expected));
        let left: Vec<_> = std::fs::read_dir(dir.path().join("data"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

#[test]
fn a_where_error_points_at_the_character_in_the_expression_with_the_line_shown() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", WORDS);
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: in.txt}\ntransforms:\n  - type: tokenize\n  - type: filter\n    where: \"word != 'x' and lenght > 5\"\nsinks:\n  - {type: stdout}\n",
    );
    let out = runner().arg("validate").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Line 6, column 29: `lenght` inside the quoted value, not the step's `type:` line.
    assert!(
        stderr.contains("p.yaml:6:29: transforms.1 (filter)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("6 |     where: \"word != 'x' and lenght > 5\"\n  |                             ^ there is no column `lenght`"),
        "{stderr}"
    );
    let p = write(
        dir.path(),
        "q.yaml",
        "name: t\nsource: {type: file, path: in.txt}\ntransforms:\n  - type: tokenize\n  - {type: filter, where: lenght(word) > 5}\nsinks:\n  - {type: stdout}\n",
    );
    runner()
        .arg("validate")
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "q.yaml:5:27: transforms.1 (filter): where: in `lenght(word) > 5` at character 1: there is no function `lenght`, did you mean `length`?",
        ));
}

#[test]
fn newcomers_mistakes_get_messages_that_say_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "s.csv", "a,n\nx,1\n");
    let check = |name: &str, text: &str, args: &[&str], wanted: &[&str]| {
        let p = write(dir.path(), name, text);
        let out = runner()
            .arg("validate")
            .arg(&p)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        for w in wanted {
            assert!(stderr.contains(w), "{name}: wanted {w}:\n{stderr}");
        }
    };
    // With --set, a value's error is located in the changed text, which it shows.
    check(
        "e.yaml",
        "name: t\nsource: {type: file, path: s.csv, format: csv}\ntransforms:\n  - type: filter\n    where: amout > 1\nsinks:\n  - {type: stdout}\n",
        &["--set", "cores=1"],
        &["e.yaml (with --set):", "|   where: amout > 1\n", "^ there is no column `amout`"],
    );
    check(
        "b.yaml",
        "name: t\nsource: {type: file, path: s.csv, format: csv}\ntransforms:\n  - {type: group_count, by: n}\nsinks:\n  - {type: stdout}\n",
        &[],
        &["b.yaml:4:29:", "must be quoted here, e.g. `'n'`"],
    );
    check(
        "n.yaml",
        "name: \"\"\nsource: {type: file, path: s.csv, format: csv}\nsinks:\n  - {type: stdout}\n",
        &[],
        &["`name` is empty"],
    );
    check(
        "m.yaml",
        "name:\nsource: {type: file, path: s.csv, format: csv}\nsinks:\n  - {type: stdout}\n",
        &[],
        &["m.yaml:1:", "a value is missing here"],
    );
    let stream = "name: t\nmode: stream\nsource: {type: file, path: ., format: lines, poll: 1s}\ntrigger: {available_now: true}\nsinks:\n  - {type: stdout}\n";
    check(
        "p.yaml",
        stream,
        &[],
        &["p.yaml:4:10:", "a `file` source with `poll` never ends"],
    );
    check(
        "z.yaml",
        stream,
        &["--set", "max_epochs=0", "--set", "trigger={}"],
        &["`max_epochs: 0` would run no epoch"],
    );
    // select, rename and drop point at the item they are about.
    check(
        "s.yaml",
        "name: t\nsource: {type: file, path: s.csv, format: csv}\ntransforms:\n  - type: select\n    columns: [a, n, \"upper(a) as a\"]\nsinks:\n  - {type: stdout}\n",
        &[],
        &["s.yaml:5:22:", "`a` is selected twice"],
    );
    check(
        "r.yaml",
        "name: t\nsource: {type: file, path: s.csv, format: csv}\ntransforms:\n  - type: rename\n    columns: {a: n}\nsinks:\n  - {type: stdout}\n",
        &[],
        &["r.yaml:5:18:", "two columns would be called `n`"],
    );
    check(
        "q.yaml",
        "name: t\nsource: {type: file, path: s.csv, format: csv}\ntransforms:\n  - type: rename\n    columns: {nope: x}\nsinks:\n  - {type: stdout}\n",
        &[],
        &["q.yaml:5:15:", "there is no column `nope`"],
    );
    check(
        "d.yaml",
        "name: t\nsource: {type: file, path: s.csv, format: csv}\ntransforms:\n  - type: drop\n    columns: [a, nope]\nsinks:\n  - {type: stdout}\n",
        &[],
        &["d.yaml:5:18:", "there is no column `nope`"],
    );
    check(
        "i.yaml",
        "name: t\nsource: {type: file, path: s.csv, format: csv}\ntransforms:\n  - type: limit\n     n: 2\nsinks:\n  - {type: stdout}\n",
        &[],
        &["is a key on the line after `type: limit` indented further than `type`?"],
    );
}

#[test]
fn input_reads_the_file_given_and_never_downloads_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource:\n  type: file\n  path: play.txt\n  fetch: {url: \"http://127.0.0.1:9/play.txt\"}\nsinks:\n  - {type: stdout}\n",
    );
    let out = runner()
        .arg("run")
        .arg(&p)
        .args(["--input", "nosuch.txt"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("download"), "{stderr}");
    assert!(stderr.contains("nosuch.txt"), "{stderr}");
    assert!(!dir.path().join("nosuch.txt").exists());
}

#[test]
fn errors_in_aggregate_sort_and_group_count_point_at_the_item_they_are_about() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", WORDS);
    let check = |name: &str, steps: &str, at: &str, shown: &str| {
        let p = write(
            dir.path(),
            name,
            &format!(
                "name: t\nsource: {{type: file, path: in.txt}}\ntransforms:\n  - type: tokenize\n{steps}sinks:\n  - {{type: stdout}}\n"
            ),
        );
        let out = runner().arg("validate").arg(&p).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(at), "wanted {at}:\n{stderr}");
        assert!(stderr.contains(shown), "wanted {shown}:\n{stderr}");
    };
    // An aggregate call: at the character of the unknown column, on the call's own line.
    check(
        "a.yaml",
        "  - type: aggregate\n    by: word\n    aggs:\n      n: count()\n      total: sum(length(wrod))\n",
        "a.yaml:9:25: transforms.1 (aggregate): aggs: total: in `sum(length(wrod))`",
        " 9 |       total: sum(length(wrod))\n   |                         ^ there is no column `wrod`",
    );
    // A call that is not an aggregate: at the call.
    check(
        "b.yaml",
        "  - type: aggregate\n    by: word\n    aggs: {n: count(), m: median(word)}\n",
        "b.yaml:7:27: transforms.1 (aggregate): aggs: m:",
        "^ `median` is not an aggregate function, did you mean `mean`?",
    );
    // A key expression in a flow list, quoted: past the quote, at the column.
    check(
        "c.yaml",
        "  - type: aggregate\n    by: [word, \"length(wrd) as len\"]\n    aggs: {n: count()}\n",
        "c.yaml:6:24: transforms.1 (aggregate): by: in `length(wrd) as len`",
        "^ there is no column `wrd`",
    );
    // A key listed twice: at the first item of that name.
    check(
        "d.yaml",
        "  - type: aggregate\n    by:\n      - word\n      - lower(word) as word\n    aggs: {n: count()}\n",
        "d.yaml:7:9: transforms.1 (aggregate): by: `word` is listed twice",
        "7 |       - word\n  |         ^ `word` is listed twice",
    );
    // sort: the key whose column is missing.
    check(
        "e.yaml",
        "  - type: sort\n    by: [word, cnt desc]\n",
        "e.yaml:6:16: transforms.1 (sort):",
        "there is no column `cnt`",
    );
    // group_count with one column written as a string.
    check(
        "f.yaml",
        "  - {type: group_count, by: wrd}\n",
        "f.yaml:5:29: transforms.1 (group_count):",
        "there is no column `wrd`",
    );
}

#[test]
fn a_missing_input_is_a_runtime_failure_even_when_columns_are_inferred_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: later.csv, format: csv}\nsinks:\n  - {type: stdout}\n",
    );
    // `run`: exit 1, as for any missing input (a cron job whose file has not come yet).
    runner()
        .arg("run")
        .arg(&p)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("cannot read input "))
        .stderr(predicates::str::contains(
            "later.csv: no such file (its columns are inferred from it; list them in `columns:`",
        ));
    // `validate`: a pipeline whose input is missing is not valid (exit 2), as with declared
    // columns.
    runner()
        .arg("validate")
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("later.csv: no such file"));
    // A file beside it with a close name is named (a typo in the path).
    write(dir.path(), "latter.csv", "a\n1\n");
    runner()
        .arg("run")
        .arg(&p)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("; is it latter.csv?"));
    // A directory without files yet says so.
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let p = write(
        dir.path(),
        "e.yaml",
        "name: t\nmode: stream\nsource: {type: file, path: empty, format: csv, poll: 1s}\nsinks:\n  - {type: stdout}\n",
    );
    runner()
        .arg("run")
        .arg(&p)
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
        "no file there yet (the columns are inferred from the first one; list them in `columns:`",
    ));
    // `--input` on a source without a path says so.
    let socket = write(
        dir.path(),
        "s.yaml",
        "name: t\nmode: stream\nsource: {type: socket, port: 9}\nsinks:\n  - {type: stdout}\n",
    );
    runner()
        .arg("run")
        .arg(&socket)
        .args(["--input", "x.txt"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "--input names the input file of a `file` or `replay` source; this pipeline's source is `socket`, which has none",
        ));
}

#[test]
fn plan_escapes_control_characters_of_column_names_from_the_data() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.jsonl", "{\"a\\u001b[31mX\\u202e\":1}\n");
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: in.jsonl, format: jsonl}\nsinks:\n  - {type: stdout}\n",
    );
    let out = runner().arg("plan").arg(&p).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("a\\u{1b}[31mX\\u{202e}: integer"),
        "{stdout}"
    );
    assert!(!stdout.contains('\u{1b}') && !stdout.contains('\u{202e}'));
}

#[test]
fn files_named_with_a_leading_underscore_are_read_when_the_glob_asks_for_them() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("in"), "_a.txt", "kept\n");
    write(&dir.path().join("in"), "b.txt", "plain\n");
    let read = |path: &str| {
        let p = write(
            dir.path(),
            "p.yaml",
            &format!("name: t\nsource: {{type: file, path: '{path}'}}\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
        );
        let out = runner().arg("run").arg(&p).arg("-q").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(read("in/_*.txt"), "line\nkept\n");
    assert_eq!(read("in/*.txt"), "line\nplain\n");
    assert_eq!(read("in"), "line\nplain\n");
}

#[test]
fn a_closed_pipe_ends_commands_quietly_and_a_full_disk_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "a b\n");
    let pipeline = write(
        dir.path(),
        "p.yaml",
        &format!(
            "name: t\nsource: {{type: file, path: {}}}\nsinks:\n  - {{type: csv, path: out.csv}}\n",
            input.display()
        ),
    );
    let commands: [&[&str]; 4] = [
        &["schema"],
        &["plan", pipeline.to_str().unwrap(), "--format", "json"],
        &["validate", pipeline.to_str().unwrap()],
        &["list"],
    ];
    for args in commands {
        // Nothing is read: the first write meets the closed pipe (it panicked: exit 101).
        let out = runner_process()
            .args(args)
            .stdout(closed_pipe())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = runner_process().args(args).stdout(full).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("error: cannot write to standard output: No space left on device"),
            "{args:?}: {out:?}"
        );
    }
    // A run whose stderr is closed still ends with its own code.
    let out = runner_process()
        .arg("run")
        .arg(&pipeline)
        .stderr(closed_pipe())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        "line\na b\n"
    );
}

#[test]
fn validate_and_schedule_show_names_from_files_with_their_controls_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "a\n");
    // The name sets the window title (OSC) and colours (CSI) if it reaches a terminal raw.
    let pipeline = write(
        dir.path(),
        "p.yaml",
        &format!(
            "name: \"a\\x9b31mb\\e]0;pwned\\a\"\nschedule: \"0 3 * * *\"\nsource: {{type: file, path: {}}}\nsinks:\n  - {{type: csv, path: out.csv}}\n",
            input.display()
        ),
    );
    for args in [&["validate"][..], &["schedule", "--next"][..]] {
        let out = runner_process().args(args).arg(&pipeline).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(
            stdout.contains("a\\u{9b}31mb\\u{1b}]0;pwned\\u{7}"),
            "{args:?}: {stdout}"
        );
        assert!(
            !stdout.contains(['\u{1b}', '\u{9b}', '\u{7}']),
            "{args:?}: {stdout:?}"
        );
    }
}

#[test]
fn a_file_whose_name_reads_as_a_glob_is_that_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data[1].txt", "x\n");
    // A file the glob `data[1].txt` would match, and the literal name must not.
    write(dir.path(), "data1.txt", "wrong\n");
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: \"data[1].txt\"}\nsinks:\n  - {type: csv, path: out.csv}\n",
    );
    let (code, _, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        "line\nx\n"
    );

    // A folder so named, holding the files of a glob, in a batch run and a stream.
    std::fs::create_dir(dir.path().join("in[1]")).unwrap();
    std::fs::create_dir(dir.path().join("in1")).unwrap();
    write(&dir.path().join("in[1]"), "a.txt", "right\n");
    write(&dir.path().join("in1"), "a.txt", "wrong\n");
    for (mode, out) in [
        ("", "batch.csv"),
        (
            "mode: stream\ntrigger: {available_now: true}\n",
            "stream.csv",
        ),
    ] {
        let pipeline = write(
            dir.path(),
            "p.yaml",
            &format!("name: t\n{mode}source:\n  type: file\n  path: \"in[1]/*.txt\"\nsinks:\n  - {{type: csv, path: {out}}}\n"),
        );
        let (code, _, stderr) = run_pipeline(&pipeline, &[]);
        assert_eq!(code, 0, "{mode}: {stderr}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(out)).unwrap(),
            "line\nright\n",
            "{mode}"
        );
    }
}

#[test]
fn a_file_uri_is_read_here_and_another_uri_is_left_to_spark() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "x\n");
    let absolute = std::path::absolute(&input).unwrap();
    let pipeline = write(
        dir.path(),
        "p.yaml",
        &format!(
            "name: t\nsource: {{type: file, path: \"file://{}\"}}\nsinks:\n  - {{type: csv, path: out.csv}}\n",
            absolute.display()
        ),
    );
    let (code, _, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        "line\nx\n"
    );
    let hdfs = write(
        dir.path(),
        "h.yaml",
        "name: t\nsource: {type: file, path: \"hdfs://nn/x.txt\"}\nsinks:\n  - {type: csv, path: out.csv}\n",
    );
    let (code, _, stderr) = run_pipeline(&hdfs, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("`hdfs://nn/x.txt` is a URI, which only Spark reads"),
        "{stderr}"
    );
}

#[test]
fn a_file_where_a_folder_belongs_is_named_as_what_it_is_for() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "in.txt", "a\n");
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: in.txt}\nsinks:\n  - {type: csv, path: out.csv}\n",
    );
    let out = runner_process()
        .arg("run")
        .arg(&pipeline)
        .arg("--lock-dir")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot take the run's lock at "),
        "{stderr}"
    );
    let out = runner_process()
        .args(["docs", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("that is a file; name a folder for the pages"),
        "{stderr}"
    );
}

#[test]
fn a_pipeline_file_that_is_not_utf8_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(&pipeline, b"name: t\ndescription: caf\xe9\n").unwrap();
    let out = runner_process().arg("run").arg(&pipeline).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("p.yaml:2: the pipeline file is not UTF-8 text (byte 24 is not)"),
        "{stderr}"
    );
}

#[test]
fn too_many_cores_on_the_command_line_is_said_of_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "a\n");
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: in.txt}\nsinks:\n  - {type: csv, path: out.csv}\n",
    );
    let (code, _, stderr) = run_pipeline(&pipeline, &["--cores", "1025"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error: --cores 1025 is more than runner runs on"),
        "{stderr}"
    );
}

#[test]
fn a_batch_run_stopped_by_sigterm_says_so_and_leaves_its_outputs_as_they_were() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    // A FIFO as input: opening it for writing returns once the run has opened it to read,
    // so the signal arrives while the run reads (after it set its signal handling up).
    let fifo = dir.path().join("in.fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    write(dir.path(), "out.csv", "earlier\n");
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: in.fifo}\nsinks:\n  - {type: csv, path: out.csv}\nsummary: run.json\n",
    );
    let child = runner_process()
        .arg("run")
        .arg(&pipeline)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    input.write_all(b"a\nb\n").unwrap();
    // Without an aggregation the CSV sink began before reading: its temporary file is there.
    let temporaries = || -> Vec<String> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect()
    };
    assert_eq!(temporaries().len(), 1, "{:?}", temporaries());
    // SAFETY: a plain signal to the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    drop(input);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(
        stderr.contains("interrupted by SIGTERM before the run finished"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        "earlier\n"
    );
    let summary = std::fs::read_to_string(dir.path().join("run.json")).unwrap();
    assert!(summary.contains("\"exit_code\": 143"), "{summary}");
    assert!(temporaries().is_empty(), "{:?}", temporaries());
}

#[test]
fn an_empty_runner_lock_dir_is_unset_not_a_missing_value() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "a\n");
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: in.txt}\nsinks:\n  - {type: csv, path: out.csv}\n",
    );
    let out = runner_process()
        .arg("run")
        .arg(&pipeline)
        .env("RUNNER_LOCK_DIR", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        "line\na\n"
    );
}

#[test]
fn two_sinks_writing_one_path_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "w,n\na,1\n");
    write(dir.path(), "o.csv", "kept\n");
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: in.csv, format: csv}\nsinks:\n  - {type: file, path: o.csv, format: csv}\n  - {type: csv, path: sub/../o.csv}\n",
    );
    let (code, _, err) = run_pipeline(&p, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("sinks.1 (csv): it writes ") && err.contains("as sinks.0 does"),
        "{err}"
    );
    // Nothing was run: the earlier output stands.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("o.csv")).unwrap(),
        "kept\n"
    );
    let p = write(
        dir.path(),
        "db.yaml",
        "name: t\nsource: {type: file, path: in.csv, format: csv}\nsinks:\n  - {type: sqlite, path: o.db, table: first}\n  - {type: sqlite, path: o.db, table: second}\n",
    );
    // Two tables of one database: the second sink would wait for the first's lock.
    let (code, _, err) = run_pipeline(&p, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sinks.1 (sqlite): it writes "), "{err}");
}

#[test]
fn a_test_file_given_to_run_plan_or_schedule_says_runner_test_runs_it() {
    let tests = repo_root().join("pipelines/romeo.test.yaml");
    for args in [&["run"][..], &["plan"], &["schedule", "--next"]] {
        runner()
            .args(args)
            .arg(&tests)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("`runner test"));
    }
}

/// `--ui` takes an optional address: a pipeline file right after it is the pipeline.
#[test]
fn a_pipeline_right_after_a_bare_ui_flag_is_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), WORDS).unwrap();
    let p = pipeline(
        dir.path(),
        "  type: file\n  path: notes.txt",
        "sinks:\n  - type: stdout\n",
    );
    runner()
        .args(["run", "--ui"])
        .arg(&p)
        .assert()
        .success()
        .stderr(predicate::str::contains("live page: http://"));
}
