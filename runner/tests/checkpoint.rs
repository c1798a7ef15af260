//! Checkpointed stream state, with the real binary: kill -9 at random moments of a replay and
//! restart until it ends gives the counts of an uninterrupted run; epoch ids continue; an
//! uncommitted epoch is redone over exactly its recorded input; another pipeline's checkpoint
//! is refused; a socket stream carries its state over a restart.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{repo_root, run_pipeline, runner, runner_process, unique_lock_dir, write};

fn tape() -> PathBuf {
    repo_root().join("pipelines/tapes/sample.jsonl")
}

/// The replay hashtag count with a checkpoint in `dir/state` and a CSV in `dir/out.csv`.
fn replay_pipeline(dir: &Path, speed: &str, trigger: &str, every: u64) -> PathBuf {
    write(
        dir,
        "p.yaml",
        &format!(
            "name: tags\nmode: stream\nsource:\n  type: replay\n  path: {}\n  speed: {speed}\ntransforms:\n  - {{type: explode, column: tags, as: hashtag}}\n  - {{type: lowercase, column: hashtag}}\n  - {{type: group_count, by: hashtag}}\ntrigger:\n  processing_time: {trigger}\ncheckpoint:\n  dir: state\n  every: {every}\nsinks:\n  - {{type: csv, path: out.csv}}\n",
            tape().display()
        ),
    )
}

/// `runner run --progress json`, its stderr going to `log`.
fn spawn(pipeline: &Path, log: &Path) -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .args(["run", "--progress", "json"])
        .arg(pipeline)
        .env("RUNNER_LOCK_DIR", unique_lock_dir())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// (batchId, numInputRows) of every epoch a run reported.
fn epochs(log: &Path) -> Vec<(u64, u64)> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["batchId"].as_u64()?, v["numInputRows"].as_u64()?)))
        .collect()
}

fn commit(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("state/commit.json")).ok()?;
    Some(serde_json::from_str(&text).expect("commit.json is whole"))
}

/// The final counts of the tape without interruption or checkpoint.
fn uninterrupted_counts() -> String {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = replay_pipeline(dir.path(), "max", "50ms", 1);
    runner()
        .arg("run")
        .arg(&pipeline)
        .args(["-q", "--set", "checkpoint.dir=other"])
        .assert()
        .success();
    std::fs::read_to_string(dir.path().join("out.csv")).unwrap()
}

#[test]
fn kill_9_at_random_moments_then_restarting_gives_the_counts_of_an_uninterrupted_run() {
    // RUNNER_TEST_SEED=N replays a failed run's kill moments (the seed is in every message).
    let seed = std::env::var("RUNNER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64
        })
        | 1;
    let mut random = seed;
    let mut next_delay = || {
        // xorshift: varied kill moments, reproducible from the seed printed on failure.
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        Duration::from_millis(40 + random % 400)
    };
    let dir = tempfile::tempdir().unwrap();
    // The 60 s tape in about 2 s, 40 epochs; a commit every epoch, and every 3 in a second round.
    for every in [1, 3] {
        let _ = std::fs::remove_dir_all(dir.path().join("state"));
        let pipeline = replay_pipeline(dir.path(), "30", "50ms", every);
        let mut rows_of_epoch: BTreeMap<u64, u64> = BTreeMap::new();
        let mut kills = 0;
        let mut redone = 0;
        for run in 0.. {
            let expected_first = commit(dir.path()).map_or(0, |c| c["epoch"].as_u64().unwrap() + 1);
            let log = dir.path().join(format!("run-{every}-{run}.log"));
            let mut child = spawn(&pipeline, &log);
            let finished = if kills < 6 {
                std::thread::sleep(next_delay());
                match child.try_wait().unwrap() {
                    Some(status) => Some(status),
                    None => {
                        child.kill().unwrap(); // SIGKILL
                        child.wait().unwrap();
                        kills += 1;
                        None
                    }
                }
            } else {
                Some(child.wait().unwrap())
            };
            let reported = epochs(&log);
            let context = format!("seed {seed}, every {every}, run {run}: {reported:?}");
            if let Some(&(first, _)) = reported.first() {
                assert_eq!(
                    first, expected_first,
                    "epoch ids continue from the commit; {context}"
                );
            }
            for &(id, rows) in &reported {
                // An epoch seen twice (sinks written, then killed before its commit) was
                // redone over the same input.
                if let Some(before) = rows_of_epoch.insert(id, rows) {
                    assert_eq!(before, rows, "epoch {id} redone with other rows; {context}");
                    redone += 1;
                }
            }
            if let Some(status) = finished {
                assert!(status.success(), "{context}: {status}");
                break;
            }
        }
        eprintln!("seed {seed}, every {every}: {kills} kills, {redone} epochs reported twice");
        let ids: Vec<u64> = rows_of_epoch.keys().copied().collect();
        assert_eq!(
            ids,
            (0..ids.len() as u64).collect::<Vec<_>>(),
            "seed {seed}"
        );
        assert_eq!(
            rows_of_epoch.values().sum::<u64>(),
            600,
            "every status counted once; seed {seed}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
            uninterrupted_counts(),
            "seed {seed}, every {every}, {kills} kills"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn an_uncommitted_epoch_is_redone_over_exactly_its_recorded_input() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = replay_pipeline(dir.path(), "30", "50ms", 1);
    runner()
        .arg("run")
        .arg(&pipeline)
        .args(["-q", "--set", "max_epochs=2"])
        .assert()
        .success();
    let committed = commit(dir.path()).unwrap();
    assert_eq!(committed["epoch"], 1);
    let offset = committed["position"]["offset"].as_u64().unwrap() as usize;
    // As if epoch 2 had ended 40 tape lines later and been killed after its sinks.
    let tape = std::fs::read(tape()).unwrap();
    let lines: Vec<&[u8]> = tape[offset..]
        .split_inclusive(|&b| b == b'\n')
        .take(40)
        .collect();
    let end = offset + lines.iter().map(|l| l.len()).sum::<usize>();
    let statuses = lines
        .iter()
        .filter(|l| l.starts_with(b"{\"event\": \"update\""))
        .count() as u64;
    std::fs::write(
        dir.path().join("state/offsets.json"),
        format!("[{{\"epoch\": 2, \"end\": {{\"offset\": {end}, \"time\": 0}}}}]"),
    )
    .unwrap();
    let log = dir.path().join("redo.log");
    let status = spawn(&pipeline, &log).wait().unwrap();
    assert!(status.success());
    let reported = epochs(&log);
    assert_eq!(reported[0], (2, statuses), "{reported:?}");
    assert!(reported.len() > 1, "the stream goes on after the redo");
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("redoing 1 uncommitted epoch(s) first"));
    assert!(!dir.path().join("state/offsets.json").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        uninterrupted_counts()
    );
}

#[test]
fn first_and_last_keep_input_order_over_a_restart_with_and_without_windows() {
    for window in ["", "\n    window: {column: ts, size: 10m}"] {
        let dir = tempfile::tempdir().unwrap();
        // One file an epoch: 7, then null, then 3 (the last value is 3; with a null last
        // before it, `last` is null after epoch 1).
        for (n, v) in [(1, "7"), (2, "null"), (3, "3")] {
            write(
                &dir.path().join("in"),
                &format!("{n}.jsonl"),
                &format!("{{\"k\":\"a\",\"v\":{v},\"ts\":\"2024-01-01T00:0{n}:00Z\"}}\n"),
            );
        }
        let pipeline = write(
            dir.path(),
            "p.yaml",
            &format!(
                "name: t\nmode: stream\nsource: {{type: file, path: in, format: jsonl, max_files_per_trigger: 1, columns: {{k: text, v: integer?, ts: timestamp}}}}\ntransforms:\n  - type: aggregate\n    by: [k]{window}\n    aggs: {{f: first(v), l: last(v), n: count()}}\noutput_mode: complete\ncheckpoint: {{dir: ck}}\nsinks:\n  - {{type: stdout, format: jsonl}}\n"
            ),
        );
        let run = |extra: &[&str]| -> Vec<serde_json::Value> {
            let out = runner()
                .arg("run")
                .arg(&pipeline)
                .arg("-q")
                .args(extra)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let straight = run(&["--set", "checkpoint=null"]);
        // Epoch 1 ends with `last` null (the null came last), epoch 2 with 3.
        assert_eq!(straight[1]["l"], serde_json::Value::Null, "{straight:?}");
        assert_eq!(straight[2]["l"], 3, "{straight:?}");
        // Stopped after epoch 0, then after epoch 1, then to the end.
        let first = run(&["--set", "max_epochs=1"]);
        let second = run(&["--set", "max_epochs=1"]);
        let third = run(&[]);
        let resumed: Vec<serde_json::Value> =
            first.into_iter().chain(second).chain(third).collect();
        assert_eq!(resumed, straight, "window: {window:?}");
    }
}

#[test]
fn a_checkpoint_of_another_pipeline_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = replay_pipeline(dir.path(), "max", "50ms", 1);
    runner()
        .arg("run")
        .arg(&pipeline)
        .args(["-q", "--set", "max_epochs=1"])
        .assert()
        .success();
    let before = std::fs::read(dir.path().join("state/commit.json")).unwrap();
    let output = runner()
        .arg("run")
        .arg(&pipeline)
        .args(["-q", "--set", "transforms.1.column=url"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("belongs to a different pipeline (`tags`): transforms.1 (lowercase) was `{\"column\":\"hashtag\",\"type\":\"lowercase\"}`, it is now `{\"column\":\"url\",\"type\":\"lowercase\"}`"),
        "{stderr}"
    );
    assert!(stderr.contains("remove"), "{stderr}");
    assert_eq!(
        std::fs::read(dir.path().join("state/commit.json")).unwrap(),
        before
    );
}

/// A path taken from the environment is the path it names: a checkpoint of `${INDIR}` as
/// one directory is not continued over another (its files of the same names would be taken
/// as read).
#[test]
fn a_checkpoint_of_a_path_from_the_environment_is_of_the_directory_it_named() {
    let dir = tempfile::tempdir().unwrap();
    for (day, files) in [("dayA", &["a,1\n"][..]), ("dayB", &["b,2\n", "c,3\n"][..])] {
        std::fs::create_dir(dir.path().join(day)).unwrap();
        for (i, text) in files.iter().enumerate() {
            std::fs::write(
                dir.path().join(day).join(format!("part{i}.csv")),
                format!("k,v\n{text}"),
            )
            .unwrap();
        }
    }
    let pipeline = write(
        dir.path(),
        "env.yaml",
        "name: env\nmode: stream\nmax_epochs: 1\nsource: {type: file, path: \"${RUNNER_TEST_INDIR}\", format: csv, columns: {k: text, v: integer}}\ntransforms:\n  - {type: aggregate, by: [k], aggs: {s: sum(v)}}\ncheckpoint: {dir: ck}\nsinks:\n  - {type: csv, path: out.csv}\n",
    );
    runner()
        .arg("run")
        .arg(&pipeline)
        .arg("-q")
        .env("RUNNER_TEST_INDIR", "dayA")
        .assert()
        .success();
    let output = runner()
        .arg("run")
        .arg(&pipeline)
        .arg("-q")
        .env("RUNNER_TEST_INDIR", "dayB")
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("belongs to a different pipeline") && stderr.contains("dayB"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        "k,s\na,1\n"
    );
}

#[test]
fn a_socket_stream_carries_its_counts_over_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |lines: &'static str| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(lines.as_bytes()).unwrap();
        });
        port
    };
    let pipeline = |port: u16| {
        write(
            dir.path(),
            "s.yaml",
            &format!("name: s\nmode: stream\nsource: {{type: socket, host: 127.0.0.1, port: {port}}}\ntransforms:\n  - {{type: explode, column: line, separator: ' ', as: tag}}\n  - {{type: group_count, by: tag}}\ncheckpoint: {{dir: state}}\nsinks:\n  - {{type: csv, path: out.csv}}\n"),
        )
    };
    for lines in ["a b\nb\n", "b c\n"] {
        runner()
            .arg("run")
            .arg(pipeline(serve(lines)))
            .arg("-q")
            .assert()
            .success();
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        "tag,count\nb,3\na,1\nc,1\n"
    );
    let committed = commit(dir.path()).unwrap();
    assert_eq!(committed["rows_in"], 3);
    assert!(committed["position"].is_null(), "a socket has no position");
}

/// A stream of the files in `dir/in`, one file an epoch, counting rows by key, checkpointed in
/// `dir/state`.
fn files_pipeline(dir: &Path) -> PathBuf {
    write(
        dir,
        "p.yaml",
        "name: t\nmode: stream\nsource: {type: file, path: in, format: jsonl, max_files_per_trigger: 1, columns: {k: text}}\ntransforms:\n  - {type: group_count, by: k}\noutput_mode: update\ncheckpoint: {dir: state}\nsinks:\n  - {type: stdout, format: jsonl}\n",
    )
}

/// A file of `rows` rows with key `key` in `dir/in`.
fn key_file(dir: &Path, name: &str, key: &str, rows: usize) {
    write(
        &dir.join("in"),
        name,
        &format!("{{\"k\":\"{key}\"}}\n").repeat(rows),
    );
}

/// Runs the pipeline, named by its absolute path, or from its directory with `relative` in
/// `extra` (positions must not depend on how the pipeline was named); (epoch, stdout rows) of
/// each epoch reported on stderr.
fn run_files(pipeline: &Path, extra: &[&str]) -> (Vec<(u64, u64)>, Vec<serde_json::Value>) {
    let dir = pipeline.parent().unwrap();
    let log = dir.join("run.log");
    let relative = extra.contains(&"relative");
    let extra: Vec<&str> = extra.iter().copied().filter(|&e| e != "relative").collect();
    let out = Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .args(["run", "--progress", "json"])
        .arg(if relative {
            Path::new(pipeline.file_name().unwrap())
        } else {
            pipeline
        })
        .current_dir(dir)
        .args(extra)
        .env("RUNNER_LOCK_DIR", unique_lock_dir())
        .stderr(std::fs::File::create(&log).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let rows = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (epochs(&log), rows)
}

#[test]
fn a_stream_of_files_skips_what_it_took_by_name_after_files_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = files_pipeline(dir.path());
    key_file(dir.path(), "b.jsonl", "b", 2);
    key_file(dir.path(), "c.jsonl", "c", 3);
    let (ran, _) = run_files(&pipeline, &["relative", "--set", "max_epochs=2"]);
    assert_eq!(ran, [(0, 2), (1, 3)]);
    // Named by its absolute path now: the files taken are known all the same.
    let (ran, _) = run_files(&pipeline, &[]);
    assert_eq!(ran, [], "nothing new to read");
    // b is read and moved away; a new file sorts before those taken, another after.
    std::fs::remove_file(dir.path().join("in/b.jsonl")).unwrap();
    key_file(dir.path(), "a.jsonl", "a", 4);
    key_file(dir.path(), "d.jsonl", "d", 5);
    let (ran, rows) = run_files(&pipeline, &[]);
    assert_eq!(ran, [(2, 4), (3, 5)]);
    assert_eq!(
        rows,
        [
            serde_json::json!({"epoch": 2, "k": "a", "count": 4}),
            serde_json::json!({"epoch": 3, "k": "d", "count": 5})
        ]
    );
    // The commit names the files taken, in the order taken.
    let taken: Vec<String> = commit(dir.path()).unwrap()["position"]["files"]["whole"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let name = f[0].as_str().unwrap();
            name[name.len() - 7..].to_owned()
        })
        .collect();
    assert_eq!(taken, ["b.jsonl", "c.jsonl", "a.jsonl", "d.jsonl"]);
}

/// Files b and c, epoch 0 (b) committed, and epoch 1 recorded as having taken c, as if killed
/// after its sinks ran and before its commit.
fn epoch_1_took_c_and_was_not_committed() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = files_pipeline(dir.path());
    key_file(dir.path(), "b.jsonl", "b", 2);
    key_file(dir.path(), "c.jsonl", "c", 3);
    run_files(&pipeline, &["--set", "max_epochs=1"]);
    let position = commit(dir.path()).unwrap()["position"].clone();
    let b = position["files"]["whole"][0].clone();
    assert_eq!(position["offset"], 20, "{position}");
    let c_name = b[0].as_str().unwrap().replace("b.jsonl", "c.jsonl");
    std::fs::write(
        dir.path().join("state/offsets.json"),
        serde_json::json!([{"epoch": 1, "end": {"offset": 50, "time": 0, "files": {"whole": [b, [c_name, 30]]}}}]).to_string(),
    )
    .unwrap();
    (dir, pipeline)
}

#[test]
fn a_redone_epoch_of_a_stream_of_files_takes_the_files_it_first_took() {
    // Then a appeared, sorting before c.
    let (dir, pipeline) = epoch_1_took_c_and_was_not_committed();
    key_file(dir.path(), "a.jsonl", "a", 4);
    let (ran, rows) = run_files(&pipeline, &[]);
    assert_eq!(ran, [(1, 3), (2, 4)]);
    assert_eq!(
        rows,
        [
            serde_json::json!({"epoch": 1, "k": "c", "count": 3}),
            serde_json::json!({"epoch": 2, "k": "a", "count": 4})
        ]
    );
    // The epoch's file gone: the redo cannot be done as it was, and says so.
    let (dir, pipeline) = epoch_1_took_c_and_was_not_committed();
    std::fs::remove_file(dir.path().join("in/c.jsonl")).unwrap();
    runner()
        .arg("run")
        .arg(&pipeline)
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "c.jsonl: an epoch to redo read 30 bytes of it, and it is not there now",
        ));
}

#[test]
fn epochs_killed_before_the_first_commit_are_redone_over_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = files_pipeline(dir.path());
    key_file(dir.path(), "b.jsonl", "b", 2);
    key_file(dir.path(), "c.jsonl", "c", 3);
    // As if epochs 0 (b) and 1 (c) had run their sinks and the run was killed before its
    // first commit; then a appeared, sorting before both. (A stream's id is written before
    // its first epoch.)
    std::fs::create_dir(dir.path().join("state")).unwrap();
    std::fs::write(
        dir.path().join("state/stream-id"),
        "0123456789abcdef0123456789abcdef",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("state/offsets.json"),
        serde_json::json!([
            {"epoch": 0, "end": {"offset": 20, "time": 0, "files": {"whole": [["b.jsonl", 20]]}}},
            {"epoch": 1, "end": {"offset": 50, "time": 0, "files": {"whole": [["b.jsonl", 20], ["c.jsonl", 30]]}}}
        ])
        .to_string(),
    )
    .unwrap();
    key_file(dir.path(), "a.jsonl", "a", 4);
    let (ran, _) = run_files(&pipeline, &[]);
    assert_eq!(ran, [(0, 2), (1, 3), (2, 4)]);
}

#[test]
fn a_stream_started_over_with_a_new_checkpoint_adds_its_epochs_after_the_earlier_streams() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nmode: stream\nsource: {type: file, path: in, max_files_per_trigger: 1}\ntrigger: {available_now: true}\noutput_mode: append\ncheckpoint: {dir: state}\nsinks:\n  - {type: csv, path: out/rows.csv}\n  - {type: file, path: out/rows.jsonl, format: jsonl}\n  - {type: file, path: out/parts, format: parquet}\n",
    );
    for n in 1..=3 {
        write(
            &dir.path().join("in"),
            &format!("{n}.txt"),
            &format!("first{n}\n"),
        );
    }
    let (ran, _) = run_files(&pipeline, &[]);
    assert_eq!(ran, [(0, 1), (1, 1), (2, 1)]);
    // Started over, as runner's messages advise: the checkpoint removed, new input.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    std::fs::remove_dir_all(dir.path().join("in")).unwrap();
    for n in 1..=4 {
        write(
            &dir.path().join("in"),
            &format!("{n}.txt"),
            &format!("second{n}\n"),
        );
    }
    // In two runs: the second goes on with the new stream's numbering.
    let (ran, _) = run_files(&pipeline, &["--set", "max_epochs=2"]);
    assert_eq!(ran, [(0, 1), (1, 1)]);
    let (ran, _) = run_files(&pipeline, &[]);
    assert_eq!(ran, [(2, 1), (3, 1)]);
    let rows = |n: usize, prefix: &str| -> Vec<String> {
        (1..=n).map(|i| format!("{prefix}{i}")).collect()
    };
    let expected: Vec<String> = rows(3, "first")
        .into_iter()
        .chain(rows(4, "second"))
        .collect();
    let csv = std::fs::read_to_string(dir.path().join("out/rows.csv")).unwrap();
    assert_eq!(csv.lines().skip(1).collect::<Vec<_>>(), expected);
    let jsonl = std::fs::read_to_string(dir.path().join("out/rows.jsonl")).unwrap();
    let lines: Vec<String> = jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(lines, expected);
    // Seven parts: the new stream's after the earlier one's, none replaced.
    let mut parts: Vec<String> = std::fs::read_dir(dir.path().join("out/parts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    parts.sort();
    assert_eq!(parts.len(), 7, "{parts:?}");
    assert_eq!(parts[6], "part-00000006.parquet");
    // Read back in part order: the earlier stream's rows, then the new one's.
    let read = Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .args(["run", "-q"])
        .arg(write(
            dir.path(),
            "read.yaml",
            "name: r\nsource: {type: file, path: out/parts, format: parquet}\nsinks:\n  - {type: stdout, format: tsv}\n",
        ))
        .env("RUNNER_LOCK_DIR", unique_lock_dir())
        .output()
        .unwrap();
    let read = String::from_utf8(read.stdout).unwrap();
    assert_eq!(read.lines().skip(1).collect::<Vec<_>>(), expected);

    // A third stream killed after recording its first epoch's end, before its sinks ran: the
    // restart is no longer new to the checkpoint, and still is to the sinks' ledgers.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    std::fs::remove_dir_all(dir.path().join("in")).unwrap();
    write(&dir.path().join("in"), "1.txt", "third1\n");
    std::fs::create_dir(dir.path().join("state")).unwrap();
    std::fs::write(
        dir.path().join("state/stream-id"),
        "0123456789abcdef0123456789abcdef",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("state/offsets.json"),
        r#"[{"epoch":0,"end":{"offset":7,"time":0,"files":{"whole":[["1.txt",7]]}}}]"#,
    )
    .unwrap();
    let (ran, _) = run_files(&pipeline, &[]);
    assert_eq!(ran, [(0, 1)]);
    let csv = std::fs::read_to_string(dir.path().join("out/rows.csv")).unwrap();
    assert_eq!(csv.lines().last(), Some("third1"), "{csv}");
    let parts = std::fs::read_dir(dir.path().join("out/parts"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".parquet")
        })
        .count();
    assert_eq!(parts, 8);
}

#[test]
fn pacing_settings_may_change_between_runs_of_a_checkpointed_stream() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = files_pipeline(dir.path());
    for (n, key) in ["a", "b", "c", "d"].iter().enumerate() {
        key_file(dir.path(), &format!("{n}.jsonl"), key, 1);
    }
    let (ran, _) = run_files(&pipeline, &["--set", "max_epochs=1"]);
    assert_eq!(ran, [(0, 1)]);
    // More files an epoch now: the checkpoint is continued, not refused.
    let (ran, _) = run_files(
        &pipeline,
        &[
            "--set",
            "source.max_files_per_trigger=3",
            "--set",
            "max_epochs=1",
        ],
    );
    assert_eq!(ran, [(1, 3)]);
    // A change that alters what is read still is refused.
    let out = Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .arg("run")
        .arg(&pipeline)
        .args(["--set", "source.max_line_bytes=100"])
        .env("RUNNER_LOCK_DIR", unique_lock_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_line_bytes"));
    // So is another output mode: it decides what the state keeps and what sinks were given.
    let out = Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .arg("run")
        .arg(&pipeline)
        .args(["--set", "output_mode=complete"])
        .env("RUNNER_LOCK_DIR", unique_lock_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("its output mode was update, this one's is complete"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_file_that_changed_after_it_was_read_is_warned_of_at_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = files_pipeline(dir.path());
    key_file(dir.path(), "a.jsonl", "a", 1);
    key_file(dir.path(), "b.jsonl", "b", 1);
    run_files(&pipeline, &["--set", "max_epochs=1"]);
    key_file(dir.path(), "a.jsonl", "a", 2);
    let (ran, _) = run_files(&pipeline, &[]);
    assert_eq!(ran, [(1, 1)], "only b is read");
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap();
    assert!(
        log.contains("a.jsonl: it held 10 bytes when it was read and holds 20 now"),
        "{log}"
    );
}

/// One file (`f0.jsonl`, `f1.jsonl`, ...) per time of `times` (on 2026-01-01, key `a`), counted
/// per minute with a 10-second watermark in append mode, one file per epoch, checkpointed.
fn windowed_files(
    times: &[&str],
    source_extra: &str,
    stream_extra: &str,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    for (index, ts) in times.iter().enumerate() {
        std::fs::write(
            dir.path().join(format!("in/f{index}.jsonl")),
            format!("{{\"ts\":\"2026-01-01T{ts}Z\",\"k\":\"a\"}}\n"),
        )
        .unwrap();
    }
    let p = write(
        dir.path(),
        "p.yaml",
        &format!("name: t\nmode: stream\nsource: {{type: file, path: in, format: jsonl, max_files_per_trigger: 1{source_extra}, columns: {{ts: timestamp, k: text}}}}\ntransforms:\n  - {{type: group_count, by: k, window: {{column: ts, size: 1m}}, watermark: 10s}}\noutput_mode: append\ncheckpoint: {{dir: ck}}\n{stream_extra}sinks:\n  - {{type: stdout, format: jsonl}}\n"),
    );
    (dir, p)
}

#[test]
fn a_restart_under_a_processing_time_trigger_takes_its_files_before_moving_the_watermark() {
    // The third file's row belongs to a window the second file's rows make final: run
    // uninterrupted, it is counted (late rows go by the previous epoch's watermark). A restart
    // before it ran an epoch without rows at its first trigger, which moved that watermark
    // and dropped the row as late.
    let (dir, p) = windowed_files(
        &["00:00:30", "00:01:30", "00:00:50"],
        "",
        "trigger: {processing_time: 100ms}\n",
    );
    let run = |extra: &[&str]| {
        let (code, out, err) = run_pipeline(&p, extra);
        assert_eq!(code, 0, "{err}");
        (out, err)
    };
    let (whole, _) = run(&[]);
    assert!(whole.contains("\"count\":2"), "{whole}");
    std::fs::remove_dir_all(dir.path().join("ck")).unwrap();
    let (first, err) = run(&["--set", "max_epochs=2"]);
    assert_eq!(first, "");
    // The files taken into its two epochs, not those the source read ahead.
    assert!(err.contains("source: 2 file(s) read"), "{err}");
    let (rest, err) = run(&[]);
    assert_eq!(rest, whole, "{err}");
    assert!(!err.contains("late"), "{err}");
}

#[test]
fn a_restart_with_nothing_new_runs_the_epoch_its_watermark_calls_for_at_once() {
    // After epoch 0 (file f0), f1 was read too, and moved the watermark past f0's window: a
    // restart finds no new file, and its first epoch must emit that window without waiting
    // for one (it waited until a stop).
    let (_dir, p) = windowed_files(&["00:00:30", "00:01:30"], ", poll: 100ms", "");
    let (code, out, err) = run_pipeline(&p, &["--set", "max_epochs=2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "", "{err}");
    let mut child = runner_process()
        .arg("run")
        .arg(&p)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // The window comes out at once; a minute is far more than any machine needs.
    let line = rx.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("the restarted stream emitted nothing");
    assert!(
        line.contains("\"window_end\":\"2026-01-01T00:01:00Z\"") && line.contains("\"count\":1"),
        "{line}"
    );
}

/// A stream of one file of 38 MB (more than an epoch's 32 MiB bound on bytes): 100,000 rows
/// of key `a` an hour after 900,000 rows of key `b`, counted per 10 minutes with a 5-minute
/// watermark. Cut into several epochs, the `a` rows would move the watermark past `b`'s
/// window and the `b` rows after the cut would be dropped as late.
fn one_big_file(trigger: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let mut text = String::with_capacity(38_000_000);
    for i in 0..1_000_000 {
        let (key, hour) = if i < 100_000 { ("a", 1) } else { ("b", 0) };
        text += &format!(
            "{{\"k\":\"{key}\",\"ts\":\"2024-05-01T0{hour}:00:{:02}Z\"}}\n",
            i % 60
        );
    }
    std::fs::write(dir.path().join("in/f1.jsonl"), text).unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        &format!("name: t\nmode: stream\nsource: {{type: file, path: in, format: jsonl, max_files_per_trigger: 1, columns: {{k: text, ts: timestamp}}}}\ntransforms:\n  - {{type: group_count, by: k, window: {{column: ts, size: 10m}}, watermark: 5m}}\noutput_mode: append\ntrigger: {trigger}\ncheckpoint: {{dir: ck}}\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
    );
    (dir, p)
}

#[test]
fn an_epoch_takes_its_files_whole_whatever_their_size() {
    let (_dir, p) = one_big_file("{available_now: true}");
    let (code, out, err) = run_pipeline(&p, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("\tb\t900000\n"), "{out}\n{err}");
    assert!(err.contains("epoch 0: 1,000,000 rows in"), "{err}");
    assert!(!err.contains("late"), "{err}");
}

#[test]
fn a_stop_within_an_epochs_files_leaves_it_to_the_next_run() {
    let (dir, p) = one_big_file("{processing_time: 1s}");
    let child = runner_process()
        .arg("run")
        .arg(&p)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped once it has read some MB of the file (of 38): within the epoch's file.
    let io = format!("/proc/{}/io", child.id());
    let read = || -> u64 {
        std::fs::read_to_string(&io)
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("rchar: ").map(|n| n.parse().unwrap_or(0)))
            })
            .unwrap_or(0)
    };
    let started = std::time::Instant::now();
    while read() < 8_000_000 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "it read nothing"
        );
        std::thread::yield_now();
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("stopped within epoch 0's files: it is left undone, and the next run takes them again from the checkpoint"),
        "{err}"
    );
    assert!(!err.contains("epoch 0:"), "no epoch ran: {err}");
    // The restart emits the window an uninterrupted run emits, whole.
    let (code, out, err) = run_pipeline(&p, &["--set", "trigger={available_now: true}"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("\tb\t900000\n"), "{out}\n{err}");
    drop(dir);
}

#[test]
fn a_stop_within_an_epochs_files_after_uncommitted_epochs_loses_no_row() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    // Four small files (epochs 0 to 3: `every: 3` commits epoch 2 only), then a big one, whose
    // epoch the stop leaves undone.
    let mut expected = Vec::new();
    for file in 1..=4 {
        let lines: Vec<String> = (0..1000).map(|i| format!("small{file}-{i}")).collect();
        std::fs::write(
            dir.path().join(format!("in/{file}.txt")),
            lines.join("\n") + "\n",
        )
        .unwrap();
        expected.extend(lines);
    }
    let big: Vec<String> = (0..1_000_000).map(|i| format!("{i:08}")).collect();
    std::fs::write(dir.path().join("in/5.txt"), big.join("\n") + "\n").unwrap();
    expected.extend(big);
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nmode: stream\nsource: {type: file, path: in, max_files_per_trigger: 1}\ntrigger: {processing_time: 200ms}\noutput_mode: append\ncheckpoint: {dir: ck, every: 3}\nsinks:\n  - {type: csv, path: out/lines.csv}\n",
    );
    // Stopped, as a signal stops it, once the big file's epoch has taken some of its input
    // (a test hook of debug builds: a signal would race the epochs).
    let out = runner_process()
        .arg("run")
        .arg(&p)
        .env("RUNNER_STOP_IN_EPOCH", "4")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("epoch 3:") && !err.contains("epoch 4:"),
        "{err}"
    );
    assert!(
        err.contains("stopped within epoch 4's files: it is left undone"),
        "{err}"
    );
    // The restart redoes what the stop did not commit, and takes the big file whole.
    let (code, _, err) = run_pipeline(&p, &[]);
    assert_eq!(code, 0, "{err}");
    let written = std::fs::read_to_string(dir.path().join("out/lines.csv")).unwrap();
    let mut rows: Vec<&str> = written.lines().skip(1).collect();
    rows.sort_unstable();
    let mut expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(rows.len(), expected.len(), "{err}");
    assert!(rows == expected, "rows lost or doubled");
}

/// A stream stopped by `max_epochs` while redoing the epochs a killed run did not commit
/// saves where it got to: the next run goes on from there, instead of redoing the same first
/// epoch for ever.
#[test]
fn a_stream_stopped_while_redoing_commits_what_it_redid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    for i in 0..6 {
        std::fs::write(
            dir.path().join(format!("in/f{i}.csv")),
            format!("k,v\nk{i},{i}\n"),
        )
        .unwrap();
    }
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: redo\nmode: stream\nsource: {type: file, path: in, format: csv, max_files_per_trigger: 1, columns: {k: text, v: integer}}\ncheckpoint: {dir: state, every: 100}\nsinks:\n  - {type: file, path: out.jsonl, format: jsonl}\n",
    );
    let mut child = runner_process()
        .arg("run")
        .arg(&pipeline)
        .arg("-q")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once it has written at least four epochs, none committed (`every: 100`).
    let lines = || {
        std::fs::read_to_string(dir.path().join("out.jsonl")).map_or(0, |text| text.lines().count())
    };
    while lines() < 4 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the stream ended early"
        );
        std::thread::yield_now();
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(commit(dir.path()).is_none(), "nothing was committed");
    for expected in 0..3u64 {
        runner()
            .arg("run")
            .arg(&pipeline)
            .args(["-q", "--set", "max_epochs=1"])
            .assert()
            .success();
        let committed = commit(dir.path()).expect("a stop after a redone epoch commits it");
        assert_eq!(committed["epoch"], expected);
    }
    runner()
        .arg("run")
        .arg(&pipeline)
        .arg("-q")
        .args(["--set", "stop_after=60s"])
        .assert()
        .success();
    let text = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let mut keys: Vec<&str> = text.lines().collect();
    keys.sort();
    assert_eq!(keys.len(), 6, "each file's row once: {text}");
    keys.dedup();
    assert_eq!(keys.len(), 6, "{text}");
}

/// A checkpoint kept where its file source reads would be read as input (its `stream-id`
/// and `commit.json` became rows): refused before anything is read.
#[test]
fn a_checkpoint_where_the_source_reads_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/a.txt"), "a\n").unwrap();
    for (source, checkpoint, refused) in [
        ("in", "in", true),
        ("'in/*'", "in", true),
        ("'in/*.txt'", "in", false),
        ("in", "in/state", false),
        ("in", "state", false),
    ] {
        let pipeline = write(
            dir.path(),
            "p.yaml",
            &format!("name: c\nmode: stream\nmax_epochs: 1\nsource: {{type: file, path: {source}}}\ncheckpoint: {{dir: {checkpoint}}}\nsinks:\n  - {{type: stdout}}\n"),
        );
        let (code, _, stderr) = run_pipeline(&pipeline, &[]);
        match refused {
            true => {
                assert_eq!(code, 2, "{source} {checkpoint}: {stderr}");
                assert!(stderr.contains("is where the source reads"), "{stderr}");
            }
            false => assert_eq!(code, 0, "{source} {checkpoint}: {stderr}"),
        }
    }
}

/// A commit changed by hand so that it would count again or read elsewhere is refused as
/// damaged: its source position taken out or nulled (the files would be read again from the
/// start), its state's digest taken out, its state named outside the directory (read, and
/// removed after the next commit).
#[test]
fn a_commit_edited_to_count_again_or_read_elsewhere_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = files_pipeline(dir.path());
    key_file(dir.path(), "b.jsonl", "b", 2);
    let (ran, _) = run_files(&pipeline, &[]);
    assert_eq!(ran, [(0, 2)]);
    let path = dir.path().join("state/commit.json");
    let good = std::fs::read_to_string(&path).unwrap();
    // The state's copy outside the directory, as a hand would name it.
    let state_name = commit(dir.path()).unwrap()["state"]
        .as_str()
        .unwrap()
        .to_owned();
    let outside = dir.path().join("elsewhere.arrow");
    std::fs::copy(dir.path().join("state").join(&state_name), &outside).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit, &str); 4] = [
        (
            "no position",
            |c| {
                c.as_object_mut().unwrap().remove("position");
            },
            "its commit records no source position",
        ),
        (
            "a null position",
            |c| c["position"] = serde_json::Value::Null,
            "its commit records no source position",
        ),
        (
            "no digest",
            |c| {
                c.as_object_mut().unwrap().remove("state_sha256");
            },
            "it records no SHA-256 of",
        ),
        (
            "a state outside",
            |c| c["state"] = "../elsewhere.arrow".into(),
            "is not a state file of the directory",
        ),
    ];
    for (what, edit, expected) in edits {
        let mut commit: serde_json::Value = serde_json::from_str(&good).unwrap();
        edit(&mut commit);
        std::fs::write(&path, commit.to_string()).unwrap();
        let out = Command::new(assert_cmd::cargo::cargo_bin("runner"))
            .args(["run", "--quiet"])
            .arg(&pipeline)
            .env("RUNNER_LOCK_DIR", unique_lock_dir())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains("is damaged") && stderr.contains(expected),
            "{what}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{what}: counted again");
    }
    assert!(
        outside.exists(),
        "a file outside the checkpoint was removed"
    );
    // Put back, it goes on: nothing new.
    std::fs::write(&path, &good).unwrap();
    let (ran, _) = run_files(&pipeline, &[]);
    assert_eq!(ran, []);
}
