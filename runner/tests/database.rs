//! Results into a database, with the real binary: the word count into SQLite (replaced in one
//! transaction, the same rows as the CSV), a checkpointed stream killed with SIGKILL and
//! restarted writes every row exactly once, and the settings the sink refuses.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use common::{repo_root, run_pipeline, runner_process, write};

fn rows(db: &Path, sql: &str) -> Vec<Vec<String>> {
    let connection = rusqlite::Connection::open(db).unwrap();
    let mut statement = connection.prepare(sql).unwrap();
    let columns = statement.column_count();
    statement
        .query_map([], |row| {
            (0..columns)
                .map(|i| {
                    Ok(match row.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                        rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                        rusqlite::types::ValueRef::Real(f) => f.to_string(),
                        rusqlite::types::ValueRef::Text(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        rusqlite::types::ValueRef::Blob(_) => "BLOB".to_owned(),
                    })
                })
                .collect()
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn the_word_count_goes_into_sqlite_with_the_csvs_rows_run_after_run() {
    let Some(play) = common::romeo_text() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pipeline = common::romeo_pipeline(
        dir.path(),
        &play,
        "romeo",
        &[
            "{type: csv, path: out/counts.csv}",
            "{type: sqlite, path: out/romeo.db, table: word_counts, key: [word]}",
        ],
    );
    for _ in 0..2 {
        let (code, _, stderr) = run_pipeline(&pipeline, &[]);
        assert_eq!(code, 0, "{stderr}");
    }
    let csv = common::csv_rows(&dir.path().join("out/counts.csv"));
    let db = dir.path().join("out/romeo.db");
    let table = rows(
        &db,
        "SELECT word, count FROM word_counts ORDER BY count DESC, word",
    );
    assert_eq!(table, csv);
    assert_eq!(table.len(), 25);
    assert_eq!(table[0], ["romeo", "298"]);
    let ledger = rows(
        &db,
        "SELECT pipeline, target, epoch, rows FROM runner_epochs",
    );
    assert_eq!(ledger, [["romeo", "word_counts", "0", "25"]]);
}

#[test]
fn a_checkpointed_stream_killed_and_restarted_writes_every_row_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let tape = repo_root().join("pipelines/tapes/sample.jsonl");
    // Append mode: each epoch's rows are added, so a row written twice or lost shows. A
    // checkpoint every 3 epochs lags the database, so a restart redoes epochs it holds.
    let pipeline = |db: &str, state: &str| {
        write(
            dir.path(),
            &format!("{db}.yaml"),
            &format!(
                "name: tags\nmode: stream\nsource: {{type: replay, path: {}, speed: '20'}}\ntransforms:\n  - {{type: explode, column: tags, as: hashtag}}\n  - {{type: select, columns: [id, created_at, hashtag]}}\ntrigger: {{processing_time: 50ms}}\ncheckpoint: {{dir: {state}, every: 3}}\nsinks:\n  - {{type: sqlite, path: {db}.db, table: tags, mode: append}}\n",
                tape.display()
            ),
        )
    };
    let reference = pipeline("reference", "reference-state");
    let (code, _, stderr) = run_pipeline(&reference, &["-q"]);
    assert_eq!(code, 0, "{stderr}");

    let killed = pipeline("killed", "killed-state");
    let mut skipped_redone = false;
    // Killed with SIGKILL as soon as it reports epoch 4 (its checkpoint is at epoch 2 or
    // 5), then again at epoch 10 of the next run, then left to finish.
    for kill_at in [Some(4u64), Some(10), None] {
        let mut child = runner_process()
            .args(["run", "--progress", "json"])
            .arg(&killed)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = Vec::new();
        for line in stderr.lines() {
            let line = line.unwrap();
            if line.contains("was written before") {
                skipped_redone = true;
            }
            let epoch = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v["batchId"].as_u64());
            seen.push(line);
            if epoch
                .zip(kill_at)
                .is_some_and(|(epoch, kill)| epoch >= kill)
            {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
        let status = child.wait().unwrap();
        if kill_at.is_none() {
            assert!(status.success(), "{}", seen.join("\n"));
        }
    }
    let query = "SELECT id, created_at, hashtag FROM tags ORDER BY id, hashtag";
    let expected = rows(&dir.path().join("reference.db"), query);
    let got = rows(&dir.path().join("killed.db"), query);
    assert!(expected.len() > 100, "{}", expected.len());
    assert_eq!(got.len(), expected.len(), "no row written twice, none lost");
    assert_eq!(got, expected);
    assert!(
        expected[0][1].ends_with('Z') && expected[0][1].contains('T'),
        "timestamps as RFC 3339: {:?}",
        expected[0]
    );
    assert!(
        skipped_redone,
        "a restart redid an epoch the database held, and the sink skipped it"
    );
}

#[test]
fn settings_the_sqlite_sink_refuses_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "a b\n");
    for (sink, stream, expected) in [
        (
            "{type: sqlite, path: o.db, table: t, mode: upsert}",
            "",
            "mode `upsert` needs `key`",
        ),
        (
            "{type: sqlite, path: o.db, table: t, key: [nope]}",
            "",
            "key: ",
        ),
        (
            "{type: sqlite, path: o.db, table: runner_epochs}",
            "",
            "is reserved",
        ),
        (
            "{type: sqlite, path: o.db, table: t, key: [w, w]}",
            "",
            "key: `w` is listed twice",
        ),
        (
            "{type: sqlite, path: o.db, table: t}",
            "mode: stream\noutput_mode: update\n",
            "use `mode: upsert` with `key`",
        ),
    ] {
        let source = if stream.is_empty() {
            format!("{{type: file, path: {}}}", input.display())
        } else {
            "{type: socket, host: 127.0.0.1, port: 9}".to_owned()
        };
        let pipeline = write(
            dir.path(),
            "p.yaml",
            &format!(
                "name: t\n{stream}source: {source}\ntransforms:\n  - {{type: explode, column: line, separator: ' ', as: w}}\n  - {{type: group_count, by: w}}\nsinks:\n  - {sink}\n"
            ),
        );
        let (code, _, stderr) = run_pipeline(&pipeline, &[]);
        assert_eq!(code, 2, "{sink}: {stderr}");
        assert!(stderr.contains(expected), "{sink}: {stderr}");
        assert!(stderr.contains("sinks.0 (sqlite)"), "{stderr}");
    }
    // Names SQLite takes for one column.
    let pipeline = write(
        dir.path(),
        "case.yaml",
        &format!(
            "name: t\nsource: {{type: file, path: {}}}\ntransforms:\n  - {{type: with_column, name: LINE, expr: upper(line)}}\nsinks:\n  - {{type: sqlite, path: o.db, table: t}}\n",
            input.display()
        ),
    );
    let (code, _, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "columns `line` and `LINE` differ only in case, which SQLite does not tell apart"
        ),
        "{stderr}"
    );
    // A database that cannot be written is a runtime error, and the run says which.
    std::fs::write(dir.path().join("not-a-db"), "plain text, not SQLite").unwrap();
    let pipeline = write(
        dir.path(),
        "bad.yaml",
        &format!(
            "name: t\nsource: {{type: file, path: {}}}\nsinks:\n  - {{type: sqlite, path: not-a-db, table: t}}\n",
            input.display()
        ),
    );
    let (code, _, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not-a-db"), "{stderr}");
}

#[test]
fn an_upsert_keeps_the_last_row_of_a_key_and_refuses_a_null_key() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "kv.csv", "k,v\na,1\na,2\nb,3\n");
    write(dir.path(), "null_key.csv", "k,v\nc,5\n,4\n");
    let pipeline = |file: &str| {
        write(
            dir.path(),
            "p.yaml",
            &format!(
                "name: t\nsource: {{type: file, path: {file}, format: csv, columns: {{k: text?, v: integer}}}}\nsinks:\n  - {{type: sqlite, path: o.db, table: t, key: [k], mode: upsert}}\n"
            ),
        )
    };
    let (code, _, stderr) = run_pipeline(&pipeline("kv.csv"), &[]);
    assert_eq!(code, 0, "{stderr}");
    let db = dir.path().join("o.db");
    assert_eq!(
        rows(&db, "SELECT k, v FROM t ORDER BY k"),
        [["a", "2"], ["b", "3"]]
    );
    // A null key matches no row (SQLite lets it into a primary key): each run added one.
    let (code, _, stderr) = run_pipeline(&pipeline("null_key.csv"), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the key column `k` is null in a row, and a database key cannot be null"),
        "{stderr}"
    );
    assert_eq!(
        rows(&db, "SELECT k, v FROM t ORDER BY k"),
        [["a", "2"], ["b", "3"]],
        "nothing of the epoch is written"
    );
    // A NaN key is stored as NULL by SQLite: the same.
    write(dir.path(), "nan_key.csv", "k,v\n1.5,1\nNaN,2\n");
    let pipeline = write(
        dir.path(),
        "nan.yaml",
        "name: t\nsource: {type: file, path: nan_key.csv, format: csv, columns: {k: float, v: integer}}\nsinks:\n  - {type: sqlite, path: nan.db, table: t, key: [k], mode: upsert}\n",
    );
    let (code, _, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the key column `k` is NaN in a row, which SQLite stores as NULL"),
        "{stderr}"
    );
}

#[test]
fn an_existing_tables_columns_are_found_whatever_their_case_as_sqlite_finds_them() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "a\n");
    let db = dir.path().join("o.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t (Line TEXT)")
        .unwrap();
    let pipeline = write(
        dir.path(),
        "p.yaml",
        &format!(
            "name: t\nsource: {{type: file, path: {}}}\nsinks:\n  - {{type: sqlite, path: o.db, table: t, mode: append}}\n",
            input.display()
        ),
    );
    let (code, _, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(rows(&db, "SELECT Line FROM t"), [["a"]]);
}
