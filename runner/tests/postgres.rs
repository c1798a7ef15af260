//! The `postgres` sink against a real PostgreSQL server (`bash .ci/postgres.sh start`, whose
//! URL `.ci/run` exports as RUNNER_POSTGRES_URL): the word count, a checkpointed stream killed
//! with SIGKILL and restarted (every row exactly once), the server restarted in the middle of
//! a stream (reconnected, nothing lost or doubled), a wrong password (exit 1, never printed).
//! Without the server these tests fail under `CI=true` and print SKIPPED otherwise.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use common::{repo_root, run_pipeline, runner_process, write};

/// The test server's URL, or `None` (the caller returns) outside CI; with the server to this
/// test alone while it holds the guard (one test restarts the server, which would close the
/// others' connections).
fn server() -> Option<(String, std::sync::MutexGuard<'static, ()>)> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let url = std::env::var("RUNNER_POSTGRES_URL").ok();
    if url.is_none() {
        common::missing_input(
            "RUNNER_POSTGRES_URL is not set: start a server with `bash .ci/postgres.sh start` and export the URL it prints",
        );
    }
    // A test that failed holding it leaves the server as usable as before.
    let guard = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    url.map(|url| (url, guard))
}

/// A unique table name per test, so tests share the server.
fn table(name: &str) -> String {
    format!("{name}_{}", std::process::id())
}

fn query(url: &str, sql: &str) -> Vec<Vec<String>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .simple_query(sql)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    })
}

/// The replay tape into `table` in append mode, with a checkpoint every 3 epochs (so a
/// restart redoes epochs the database already holds).
fn replay_pipeline(dir: &Path, name: &str, table: &str, speed: &str) -> std::path::PathBuf {
    write(
        dir,
        &format!("{name}.yaml"),
        &format!(
            "name: {table}\nmode: stream\nsource: {{type: replay, path: {}, speed: '{speed}'}}\ntransforms:\n  - {{type: select, columns: [id, created_at, language, tags]}}\ntrigger: {{processing_time: 50ms}}\ncheckpoint: {{dir: {name}-state, every: 3}}\nsinks:\n  - {{type: postgres, url_env: RUNNER_POSTGRES_URL, table: {table}, mode: append}}\n",
            repo_root().join("pipelines/tapes/sample.jsonl").display()
        ),
    )
}

/// Runs `pipeline` with `--progress json`, calling `at_epoch` with each epoch id as it is
/// reported; it returns `true` to kill the run there (SIGKILL). Returns whether the run ended
/// by itself with success, and its stderr.
fn run_watching(pipeline: &Path, mut at_epoch: impl FnMut(u64) -> bool) -> (bool, String) {
    let mut child = runner_process()
        .args(["run", "--progress", "json"])
        .arg(pipeline)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut killed = false;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let epoch = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["batchId"].as_u64());
        seen.push(line);
        if epoch.is_some_and(&mut at_epoch) {
            child.kill().unwrap(); // SIGKILL
            killed = true;
            break;
        }
    }
    let status = child.wait().unwrap();
    (!killed && status.success(), seen.join("\n"))
}

#[test]
fn the_word_count_goes_into_postgres_with_the_csvs_rows_run_after_run() {
    let Some((url, _alone)) = server() else {
        return;
    };
    let Some(play) = common::romeo_text() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let table = table("romeo");
    let postgres =
        format!("{{type: postgres, url_env: RUNNER_POSTGRES_URL, table: {table}, key: [word]}}");
    let pipeline = common::romeo_pipeline(
        dir.path(),
        &play,
        &format!("romeo-{table}"),
        &["{type: csv, path: out/counts.csv}", &postgres],
    );
    for _ in 0..2 {
        let (code, _, stderr) = run_pipeline(&pipeline, &[]);
        assert_eq!(code, 0, "{stderr}");
    }
    let csv = common::csv_rows(&dir.path().join("out/counts.csv"));
    let rows = query(
        &url,
        &format!("SELECT word, count FROM {table} ORDER BY count DESC, word"),
    );
    assert_eq!(rows, csv);
    let types = query(
        &url,
        &format!("SELECT data_type FROM information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position"),
    );
    assert_eq!(types, [["text"], ["bigint"]]);
    let ledger = query(
        &url,
        &format!("SELECT epoch, rows FROM runner_epochs WHERE target = '{table}'"),
    );
    assert_eq!(ledger, [["0", "25"]]);
}

#[test]
fn a_stream_killed_and_restarted_and_a_server_restarted_write_every_row_exactly_once() {
    let Some((url, _alone)) = server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let reference = table("reference");
    let (ok, log) = run_watching(
        &replay_pipeline(dir.path(), "reference", &reference, "max"),
        |_| false,
    );
    assert!(ok, "{log}");

    // Killed twice with SIGKILL, then left to finish; the server is restarted under it once.
    let killed = table("killed");
    let pipeline = replay_pipeline(dir.path(), "killed", &killed, "20");
    let mut logs = String::new();
    for kill_at in [4u64, 10] {
        let (_, log) = run_watching(&pipeline, |epoch| epoch >= kill_at);
        logs.push_str(&log);
        // Renamed between runs: the ledger's rows are the stream's, whatever its name.
        let text = std::fs::read_to_string(&pipeline).unwrap();
        let renamed = text.replacen("name: ", &format!("name: r{kill_at}_"), 1);
        assert_ne!(renamed, text);
        std::fs::write(&pipeline, renamed).unwrap();
    }
    let port = url
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .unwrap()
        .to_owned();
    let mut restarted = false;
    let (ok, log) = run_watching(&pipeline, |epoch| {
        if epoch >= 14 && !restarted {
            restarted = true;
            let status = std::process::Command::new("bash")
                .arg(repo_root().join(".ci/postgres.sh"))
                .arg("restart")
                .env("RUNNER_PG_PORT", &port)
                .status()
                .unwrap();
            assert!(status.success());
        }
        false
    });
    logs.push_str(&log);
    assert!(ok, "{logs}");
    assert!(restarted, "{logs}");
    assert!(
        logs.contains("again in"),
        "the sink lost its connection with the restart and tried the epoch again: {logs}"
    );
    assert!(
        logs.contains("was written before"),
        "a restart redid an epoch the table held, and the sink skipped it: {logs}"
    );
    let sql = |t: &str| format!("SELECT id, created_at, language, tags FROM {t} ORDER BY id");
    let expected = query(&url, &sql(&reference));
    let got = query(&url, &sql(&killed));
    assert!(expected.len() > 100);
    assert_eq!(got.len(), expected.len(), "no row written twice, none lost");
    assert_eq!(got, expected);
    // Types: timestamps as timestamptz, lists as text arrays.
    assert!(expected[0][1].contains("+00"), "{:?}", expected[0]);
    assert!(expected[0][3].starts_with('{'), "{:?}", expected[0]);
}

#[test]
fn a_wrong_password_fails_the_run_without_showing_it() {
    let Some((url, _alone)) = server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "a b\n");
    let pipeline = write(
        dir.path(),
        "p.yaml",
        &format!(
            "name: t\nsource: {{type: file, path: {}}}\nsinks:\n  - {{type: postgres, url_env: WRONG_URL, table: t}}\n",
            input.display()
        ),
    );
    let wrong = url.replace("runner-test-password", "not-the-password-4711");
    let out = common::runner()
        .arg("run")
        .arg(&pipeline)
        .env("WRONG_URL", &wrong)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password-4711"), "{stderr}");
    // `create: false` and no such table: the error says so.
    let no_table = write(
        dir.path(),
        "no_table.yaml",
        &format!(
            "name: t\nsource: {{type: file, path: {}}}\nsinks:\n  - {{type: postgres, url_env: RUNNER_POSTGRES_URL, table: {}, create: false}}\n",
            input.display(),
            table("absent")
        ),
    );
    let out = common::runner().arg("run").arg(&no_table).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the table does not exist"), "{stderr}");
    // No variable at all: named.
    let out = common::runner().arg("run").arg(&pipeline).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WRONG_URL is not set"), "{stderr}");
}

/// Runs `pipeline` with the test server's URL; exit code and stderr.
fn run_with(pipeline: &Path, url: &str) -> (Option<i32>, String) {
    let out = common::runner()
        .arg("run")
        .arg(pipeline)
        .env("PG_URL", url)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn nulls_of_every_type_land_and_rows_that_cannot_are_refused_at_once() {
    let Some((url, _alone)) = server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "all.csv",
        "id,n,f,b,t,l\na,1,1.5,true,2024-01-01T00:00:00Z,x y\nb,,,,,\n",
    );
    let nulls = table("nulls");
    let pipeline = write(
        dir.path(),
        "nulls.yaml",
        &format!(
            "name: t\nsource: {{type: file, path: all.csv, format: csv, columns: {{id: text, n: integer?, f: float?, b: bool?, t: timestamp?, l: text?}}}}\ntransforms:\n  - {{type: with_column, name: l, expr: \"split(l, ' ')\"}}\nsinks:\n  - {{type: postgres, url_env: PG_URL, table: {nulls}}}\n"
        ),
    );
    let (code, stderr) = run_with(&pipeline, &url);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        query(&url, &format!("SELECT * FROM {nulls} ORDER BY id")),
        [
            ["a", "1", "1.5", "t", "2024-01-01 00:00:00+00", "{x,y}"],
            ["b", "NULL", "NULL", "NULL", "NULL", "NULL"]
        ]
    );

    // Upsert: of two rows with one key in a result, the last is kept (as the sqlite sink
    // keeps it); a null key is refused at once, not tried again as a lost connection.
    write(dir.path(), "kv.csv", "k,v\na,1\na,2\nb,3\n");
    let upserted = table("upserted");
    let upsert = |file: &str| {
        write(
            dir.path(),
            "upsert.yaml",
            &format!(
                "name: t\nsource: {{type: file, path: {file}, format: csv, columns: {{k: text?, v: integer}}}}\nsinks:\n  - {{type: postgres, url_env: PG_URL, table: {upserted}, key: [k], mode: upsert}}\n"
            ),
        )
    };
    let (code, stderr) = run_with(&upsert("kv.csv"), &url);
    assert_eq!(code, Some(0), "{stderr}");
    let rows = query(&url, &format!("SELECT k, v FROM {upserted} ORDER BY k"));
    assert_eq!(rows, [["a", "2"], ["b", "3"]]);
    write(dir.path(), "null_key.csv", "k,v\nc,5\n,4\n");
    let (code, stderr) = run_with(&upsert("null_key.csv"), &url);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the key column `k` is null in a row, and a database key cannot be null"),
        "{stderr}"
    );
    assert!(!stderr.contains("again"), "{stderr}");
    let rows = query(&url, &format!("SELECT k, v FROM {upserted} ORDER BY k"));
    assert_eq!(
        rows,
        [["a", "2"], ["b", "3"]],
        "nothing of the epoch is written"
    );

    // An existing table without a key on `k` is refused before anything is written, naming
    // the index to add; with a unique index on it the same upsert runs.
    let unkeyed = table("unkeyed");
    query(&url, &format!("CREATE TABLE {unkeyed} (k text, v bigint)"));
    let pipeline = write(
        dir.path(),
        "unkeyed.yaml",
        &format!(
            "name: t\nsource: {{type: file, path: kv.csv, format: csv, columns: {{k: text, v: integer}}}}\nsinks:\n  - {{type: postgres, url_env: PG_URL, table: {unkeyed}, key: [k], mode: upsert}}\n"
        ),
    );
    let (code, stderr) = run_with(&pipeline, &url);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the table exists without a key to upsert on: `upsert` replaces rows with the same (k), but the table has no primary key or unique index on them; add one (CREATE UNIQUE INDEX ON \"{unkeyed}\"(\"k\"))"
        )),
        "{stderr}"
    );
    // A partial unique index is no key for ON CONFLICT (k).
    query(
        &url,
        &format!("CREATE UNIQUE INDEX ON {unkeyed}(k) WHERE v > 0"),
    );
    let (code, stderr) = run_with(&pipeline, &url);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("without a key to upsert on"), "{stderr}");
    query(&url, &format!("CREATE UNIQUE INDEX ON {unkeyed}(k)"));
    let (code, stderr) = run_with(&pipeline, &url);
    assert_eq!(code, Some(0), "{stderr}");
    let rows = query(&url, &format!("SELECT k, v FROM {unkeyed} ORDER BY k"));
    assert_eq!(rows, [["a", "2"], ["b", "3"]]);

    // A table of the same columns with other types: named, not COPY's "incorrect binary
    // data format".
    let typed = table("typed");
    query(&url, &format!("CREATE TABLE {typed} (k text, v integer)"));
    let pipeline = write(
        dir.path(),
        "typed.yaml",
        &format!(
            "name: t\nsource: {{type: file, path: kv.csv, format: csv, columns: {{k: text, v: integer}}}}\nsinks:\n  - {{type: postgres, url_env: PG_URL, table: {typed}, mode: append}}\n"
        ),
    );
    let (code, stderr) = run_with(&pipeline, &url);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("its column `v` is int4, the result's is integer (BIGINT here)"),
        "{stderr}"
    );

    // Columns of types with the same binary format take the values.
    let alike = table("alike");
    query(
        &url,
        &format!("CREATE TABLE {alike} (k varchar(10), v bigint, t timestamp)"),
    );
    let pipeline = write(
        dir.path(),
        "alike.yaml",
        &format!(
            "name: t\nsource: {{type: file, path: kv.csv, format: csv, columns: {{k: text, v: integer}}}}\ntransforms:\n  - {{type: with_column, name: t, expr: \"cast(v as timestamp)\"}}\nsinks:\n  - {{type: postgres, url_env: PG_URL, table: {alike}, mode: append}}\n"
        ),
    );
    let (code, stderr) = run_with(&pipeline, &url);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        query(&url, &format!("SELECT k, v, t FROM {alike} ORDER BY v")),
        [
            ["a", "1", "1970-01-01 00:00:01"],
            ["a", "2", "1970-01-01 00:00:02"],
            ["b", "3", "1970-01-01 00:00:03"]
        ]
    );

    // A setting the server cannot meet fails at once too.
    let (code, stderr) = run_with(&pipeline, &format!("{url}?sslmode=require"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("again"), "{stderr}");

    // An upsert into a table with columns the result leaves to their defaults (NOT NULL
    // with a default, an identity) fills them as an append does; a result column named as
    // the temporary table's numbering column is kept apart from it.
    let defaulted = table("defaulted");
    query(
        &url,
        &format!("CREATE TABLE {defaulted} (id bigint GENERATED ALWAYS AS IDENTITY, k text PRIMARY KEY, \"runner#order\" bigint, updated_at timestamptz NOT NULL DEFAULT now())"),
    );
    let pipeline = write(
        dir.path(),
        "defaulted.yaml",
        &format!(
            "name: t\nsource: {{type: file, path: kv.csv, format: csv, columns: {{k: text, v: integer}}}}\ntransforms:\n  - {{type: rename, columns: {{v: 'runner#order'}}}}\nsinks:\n  - {{type: postgres, url_env: PG_URL, table: {defaulted}, key: [k], mode: upsert}}\n"
        ),
    );
    let (code, stderr) = run_with(&pipeline, &url);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        query(
            &url,
            &format!(
                "SELECT k, \"runner#order\", updated_at IS NOT NULL FROM {defaulted} ORDER BY k"
            )
        ),
        [["a", "2", "t"], ["b", "3", "t"]]
    );

    // A NUL character in a text is named by column and row, and nothing is written.
    write(
        dir.path(),
        "nul.jsonl",
        "{\"k\": \"c\"}\n{\"k\": \"a\\u0000b\"}\n",
    );
    let pipeline = write(
        dir.path(),
        "nul.yaml",
        &format!(
            "name: t\nsource: {{type: file, path: nul.jsonl, format: jsonl, columns: {{k: text}}}}\ntransforms:\n  - {{type: with_column, name: l, expr: \"split(k, 'x')\"}}\nsinks:\n  - {{type: postgres, url_env: PG_URL, table: {defaulted}, key: [k], mode: upsert}}\n"
        ),
    );
    query(
        &url,
        &format!("ALTER TABLE {defaulted} ADD COLUMN l text[]"),
    );
    let (code, stderr) = run_with(&pipeline, &url);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the text in column `k` of the result's row 2 holds a NUL character (U+0000)"
        ),
        "{stderr}"
    );
    assert_eq!(
        query(&url, &format!("SELECT count(*) FROM {defaulted}")),
        [["2"]]
    );
}

/// Checked before any data is read, with no server needed: a name PostgreSQL would cut, and
/// the URL's variable unset (the other sinks have not written when the run stops).
#[test]
fn names_postgres_would_cut_and_an_unset_url_fail_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "k,v\na,1\n");
    let long = "c".repeat(64);
    let pipeline = write(
        dir.path(),
        "long.yaml",
        &format!(
            "name: t\nsource: {{type: file, path: in.csv, format: csv, columns: {{k: text, v: integer}}}}\ntransforms:\n  - {{type: rename, columns: {{v: {long}}}}}\nsinks:\n  - {{type: postgres, url_env: RUNNER_TEST_UNSET_URL, table: t}}\n"
        ),
    );
    let out = common::runner()
        .arg("validate")
        .arg(&pipeline)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the column name `{long}` is 64 bytes long; PostgreSQL keeps 63"
        )),
        "{stderr}"
    );

    let pipeline = write(
        dir.path(),
        "unset.yaml",
        "name: t\nsource: {type: file, path: in.csv, format: csv}\nsinks:\n  - {type: csv, path: out.csv}\n  - {type: postgres, url_env: RUNNER_TEST_UNSET_URL, table: t}\n",
    );
    let out = common::runner()
        .arg("run")
        .arg(&pipeline)
        .env_remove("RUNNER_TEST_UNSET_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the environment variable RUNNER_TEST_UNSET_URL is not set"),
        "{stderr}"
    );
    assert!(!dir.path().join("out.csv").exists());
    // `validate` does not ask for it: it may run where the secret is not set.
    let out = common::runner()
        .arg("validate")
        .arg(&pipeline)
        .env_remove("RUNNER_TEST_UNSET_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_run_creating_its_tables_while_another_session_does_goes_on() {
    let Some((url, _alone)) = server() else {
        return;
    };
    // A database of its own, without runner_epochs. This session creates runner_epochs in a
    // transaction it holds open: the run's CREATE TABLE IF NOT EXISTS waits for it, and then
    // fails on the catalog's unique index, as two runs starting together on a fresh database
    // do (seen in CI). The run must take the table the other session made.
    let database = format!("fresh_{}", std::process::id());
    query(&url, &format!("CREATE DATABASE {database}"));
    let (base, _) = url.rsplit_once('/').unwrap();
    let fresh = format!("{base}/{database}");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "a\nb\n");
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: p\nsource: {type: file, path: in.txt}\nsinks:\n  - {type: postgres, url_env: PG_URL, table: t}\n",
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&fresh, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute("BEGIN; CREATE TABLE runner_epochs (pipeline TEXT NOT NULL, target TEXT NOT NULL, epoch BIGINT NOT NULL, rows BIGINT NOT NULL, written_at TIMESTAMPTZ NOT NULL, stream TEXT, PRIMARY KEY (pipeline, target))")
            .await
            .unwrap();
        let run = runner_process()
            .arg("run")
            .arg(&pipeline)
            .env("PG_URL", &fresh)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Until the run waits on this session's lock.
        let (watcher, watching) = tokio_postgres::connect(&fresh, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(watching);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the run never waited");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        client.batch_execute("COMMIT").await.unwrap();
        run
    });
    let out = run.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(query(&fresh, "SELECT count(*) FROM t"), [["2"]]);
}
