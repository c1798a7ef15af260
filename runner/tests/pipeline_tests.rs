//! `runner test`: the tests shipped beside the pipelines pass; a failing test prints its diff
//! and exits 1, an invalid test file exits 2, `--format json` is one object a line; nothing
//! is written where the pipelines' sinks point.

mod common;

use common::{repo_root, runner, write};

/// The names and modification times of what is in `dir`.
fn listing(dir: &std::path::Path) -> Vec<(std::ffi::OsString, Option<std::time::SystemTime>)> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    (
                        e.file_name(),
                        e.metadata().ok().and_then(|m| m.modified().ok()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    entries
}

/// `runner test DIR`: the process's output and its standard output as text.
fn run_tests(dir: &std::path::Path) -> (std::process::Output, String) {
    let out = runner()
        .args(["test", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout)
}

#[test]
fn the_shipped_pipeline_tests_pass_and_write_nothing() {
    let output = repo_root().join("output");
    let before = listing(&output);
    let out = runner()
        .args(["test", repo_root().join("pipelines").to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("test result: ok."), "{stdout}");
    for file in [
        "romeo.test.yaml",
        "hashtags_socket.test.yaml",
        "hashtags_replay.test.yaml",
        "hashtags_mastodon.test.yaml",
        "toots_to_socket.test.yaml",
        "mastodon_languages.test.yaml",
    ] {
        assert!(stdout.contains(file), "{file} ran: {stdout}");
    }
    let after = listing(&output);
    assert_eq!(before, after, "output/ untouched");
}

#[test]
fn a_failing_test_shows_its_diff_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.yaml",
        "name: p\nmode: stream\nsource: {type: socket, host: 127.0.0.1, port: 9}\ntransforms:\n  - {type: explode, column: line, separator: ' ', as: tag}\n  - {type: group_count, by: tag}\nsinks:\n  - {type: csv, path: never/written.csv}\n",
    );
    write(
        dir.path(),
        "p.test.yaml",
        "pipeline: p.yaml\ntests:\n  - name: right\n    input: {epochs: [[a b, a]]}\n    expect: [{rows: [[a, 2], [b, 1]]}]\n  - name: wrong\n    input: {epochs: [[a b], [b]]}\n    expect:\n      - {epoch: 1, rows: [[b, 1], [a, 1]]}\n      - {epoch: 0, row_count: 2}\n",
    );
    let (out, stdout) = run_tests(dir.path());
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(":: right ... ok"), "{stdout}");
    assert!(stdout.contains(":: wrong ... FAILED"), "{stdout}");
    assert!(
        stdout.contains(
            "the sinks, epoch 1: rows differ (- expected, + actual):\n- [b, 1]\n+ [b, 2]\n  [a, 1]"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("test result: FAILED. 1 passed; 1 failed"),
        "{stdout}"
    );
    assert!(
        !dir.path().join("never").exists(),
        "sinks are captured, never written"
    );

    // -q: the failures and the count only.
    let out = runner()
        .args(["test", "-q", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let quiet = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{quiet}");
    assert!(
        !quiet.contains(":: right ... ok") && !quiet.contains("running "),
        "{quiet}"
    );
    assert!(
        quiet.contains(":: wrong ... FAILED")
            && quiet.contains("test result: FAILED. 1 passed; 1 failed"),
        "{quiet}"
    );

    let out = runner()
        .args(["test", "--format", "json", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["result"], "ok");
    assert_eq!(lines[1]["result"], "failed");
    assert_eq!(lines[2]["type"], "summary");
    assert_eq!(lines[2]["failed"], 1);
}

#[test]
fn a_failing_test_says_what_input_the_run_left_out() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.yaml",
        "name: p\nmode: stream\nsource: {type: socket, port: 9, format: jsonl, on_error: skip, columns: {n: integer}}\nsinks:\n  - {type: stdout}\n",
    );
    write(
        dir.path(),
        "p.test.yaml",
        "pipeline: p.yaml\ntests:\n  - name: typo\n    input: {epochs: [[{m: 1}, {n: 2}]]}\n    expect: [{rows: [[1], [2]]}]\n",
    );
    let (out, stdout) = run_tests(dir.path());
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("(the run warned: 1 ")
            && stdout.contains("the required field `n` is missing"),
        "{stdout}"
    );
}

#[test]
fn an_update_mode_aggregate_without_keys_emits_only_when_rows_reach_it() {
    // Spark's update mode emits the groups an epoch updated: an epoch whose rows were all
    // filtered out before the aggregation updated none.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.yaml",
        "name: p\nmode: stream\nsource: {type: socket, host: 127.0.0.1, port: 9}\ntransforms:\n  - {type: filter, where: \"line != 'skip'\"}\n  - {type: aggregate, aggs: {n: count()}}\noutput_mode: update\nsinks:\n  - {type: stdout}\n",
    );
    write(
        dir.path(),
        "p.test.yaml",
        "pipeline: p.yaml\ntests:\n  - name: one group\n    input: {epochs: [[a, b], [skip], [c]]}\n    expect:\n      - {epoch: 0, rows: [[2]]}\n      - {epoch: 1, row_count: 0}\n      - {epoch: 2, rows: [[3]]}\n",
    );
    let (out, stdout) = run_tests(dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(":: one group ... ok"), "{stdout}");
}

#[test]
fn an_invalid_test_file_is_named_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "x.test.yaml",
        "pipeline: p.yaml\ntests:\n  - name: t\n    input: {lines: [a]}\n    expect: [{sink: 0}]\n",
    );
    let out = runner()
        .args(["test", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("x.test.yaml: test `t`: an expectation states none of"),
        "{stderr}"
    );
    let out = runner()
        .args(["test", dir.path().join("nothing").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Epochs for a batch pipeline, no tests, two tests of one name: invalid files, not failures.
    write(
        dir.path(),
        "p.yaml",
        "name: p\nsource: {type: file, path: in.txt}\nsinks:\n  - {type: stdout}\n",
    );
    for (tests, expected) in [
        (
            "  - name: t\n    input: {epochs: [[a]]}\n    expect: [{row_count: 1}]\n",
            "test `t`: `epochs` is for stream pipelines",
        ),
        ("  []\n", "`tests` is empty"),
        (
            "  - {name: t, input: {lines: [a]}, expect: [{row_count: 1}]}\n  - {name: t, input: {lines: [b]}, expect: [{row_count: 1}]}\n",
            "two tests are named `t`",
        ),
    ] {
        let file = write(
            dir.path(),
            "x.test.yaml",
            &format!("pipeline: p.yaml\ntests:\n{tests}"),
        );
        let out = runner()
            .args(["test", file.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
    // A test file that is not UTF-8.
    let latin1 = dir.path().join("latin1.test.yaml");
    std::fs::write(&latin1, b"pipeline: p.yaml\ntests:\n  - name: caf\xe9\n").unwrap();
    let out = runner()
        .args(["test", latin1.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the test file is not UTF-8 text (byte 37 is not)"),
        "{stderr}"
    );
    // The pipeline itself where its tests belong.
    let out = runner()
        .args(["test", dir.path().join("p.yaml").to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("p.yaml: this is a pipeline, not a test file"),
        "{stderr}"
    );
}

#[test]
fn each_epoch_fed_to_a_stream_of_csv_files_is_a_file_with_its_header() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.yaml",
        "name: p\nmode: stream\nsource: {type: file, path: in, format: csv, columns: {name: text, amount: integer}}\ntransforms:\n  - {type: aggregate, by: [name], aggs: {total: sum(amount)}}\noutput_mode: complete\nsinks:\n  - {type: stdout}\n",
    );
    let file = write(
        dir.path(),
        "p.test.yaml",
        "pipeline: p.yaml\ntests:\n  - name: by header\n    input: {epochs: [[\"amount,name\", \"3,ann\"], [\"name,x,amount\", \"ann,y,4\", \"bob,z,1\"]]}\n    expect: [{rows: [[ann, 7], [bob, 1]]}]\n  - name: a bad value is placed\n    input: {lines: [\"amount,name\", \"3,ann\", \"x,bob\"]}\n    expect: [{row_count: 1}]\n",
    );
    let out = runner()
        .args(["test", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("by header ... ok"), "{stdout}");
    assert!(
        stdout.contains(
            "epoch 0 of the test's input line 3: the record cannot be read: `amount`: \"x\" is not an integer"
        ),
        "{stdout}"
    );
}

#[test]
fn a_test_feeds_a_parquet_file_to_a_parquet_source() {
    let dir = tempfile::tempdir().unwrap();
    let batch = arrow_array::RecordBatch::try_from_iter([(
        "n",
        std::sync::Arc::new(arrow_array::Int64Array::from(vec![1, 2, 3])) as arrow_array::ArrayRef,
    )])
    .unwrap();
    common::write_parquet(
        &dir.path().join("x.parquet"),
        &batch,
        parquet::basic::Compression::UNCOMPRESSED,
    );
    write(
        dir.path(),
        "p.yaml",
        "name: p\nsource: {type: file, path: data.parquet, format: parquet}\ntransforms:\n  - {type: aggregate, aggs: {total: sum(n)}}\nsinks:\n  - {type: stdout}\n",
    );
    let tests = write(
        dir.path(),
        "p.test.yaml",
        "pipeline: p.yaml\ntests:\n  - name: sums\n    input: {file: x.parquet}\n    expect: [{rows: [[6]]}]\n",
    );
    let (out, stdout) = run_tests(&tests);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sums ... ok"), "{stdout}");
}

#[test]
fn a_stream_test_stops_at_the_pipelines_max_epochs_as_a_run_does() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.yaml",
        "name: p\nmode: stream\nmax_epochs: 2\nsource: {type: socket, port: 9}\nsinks:\n  - {type: stdout}\n",
    );
    write(
        dir.path(),
        "p.test.yaml",
        "pipeline: p.yaml\ntests:\n  - name: two\n    input: {epochs: [[a], [b], [c]]}\n    expect:\n      - {epoch: 1, rows: [[b]]}\n  - name: past\n    input: {epochs: [[a], [b], [c]]}\n    expect:\n      - {epoch: 2, rows: [[c]]}\n",
    );
    let (out, stdout) = run_tests(dir.path());
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(":: two ... ok") && stdout.contains(":: past ... FAILED"),
        "{stdout}"
    );
}

#[test]
fn a_step_that_keeps_the_aggregation_keeps_the_pipelines_output_mode() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "s.yaml",
        "name: s\nmode: stream\nsource: {type: socket, port: 9, format: jsonl, columns: {t: timestamp, k: text}}\ntransforms:\n  - {type: group_count, by: k, window: {column: t, size: 10m}, watermark: 2m}\noutput_mode: append\nsinks:\n  - {type: stdout, format: tsv}\n",
    );
    // Epoch 3's row is late: dropped, and nothing is final then. The step shows what the
    // sinks get in append mode, not the whole table (which held the late row).
    let epochs = r#"[['{"t":"2025-01-15T12:01:00Z","k":"a"}'], ['{"t":"2025-01-15T12:31:00Z","k":"a"}'], ['{"t":"2025-01-15T12:32:00Z","k":"x"}'], ['{"t":"2025-01-15T12:02:00Z","k":"late"}']]"#;
    write(
        dir.path(),
        "s.test.yaml",
        &format!("pipeline: s.yaml\ntests:\n  - name: step\n    input: {{epochs: {epochs}}}\n    expect:\n      - {{step: 0, epoch: 3, rows: []}}\n      - {{sink: 0, epoch: 3, rows: []}}\n      - {{step: 0, epoch: 2, rows: [[2025-01-15T12:00:00Z, 2025-01-15T12:10:00Z, a, 1]]}}\n"),
    );
    let (out, stdout) = run_tests(dir.path());
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains("kept for ever"), "{stdout}");
}

/// `lines: []` is an empty input, as a run on an empty file reads it (it was one blank line:
/// one row of text, and a CSV source's "the header line is blank").
#[test]
fn no_lines_are_an_empty_input() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "text.yaml",
        "name: text\nsource: {type: file, path: in.txt}\nsinks:\n  - {type: stdout}\n",
    );
    write(
        dir.path(),
        "records.yaml",
        "name: records\nsource: {type: file, path: in.csv, format: csv, columns: {k: text}}\nsinks:\n  - {type: stdout}\n",
    );
    let nothing = "  - name: nothing\n    input: {lines: []}\n    expect: [{row_count: 0}]\n";
    write(
        dir.path(),
        "records.test.yaml",
        &format!("pipeline: records.yaml\ntests:\n{nothing}"),
    );
    // One blank line is still one line of text.
    write(
        dir.path(),
        "text.test.yaml",
        &format!("pipeline: text.yaml\ntests:\n{nothing}  - name: blank\n    input: {{lines: [\"\"]}}\n    expect: [{{row_count: 1}}]\n"),
    );
    let (out, stdout) = run_tests(dir.path());
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches(" ... ok").count(), 3, "{stdout}");
}
