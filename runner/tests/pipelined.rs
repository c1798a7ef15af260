//! A pipeline without an aggregation streams its rows to the sinks: memory stays bounded
//! whatever the input's size, and a reached `limit` or a closed standard output stops the
//! reading early. A sort of such an input spills sorted runs to disk and merges them, or keeps
//! only the first rows before a limit, in bounded memory too.

mod common;

use std::io::{BufRead, Write};

use common::{run_with_peak_rss, runner_process, wait_with_peak_rss, write};

/// Lines in the generated input, and the size of each (1 KiB with its newline).
const LINES: usize = 1 << 19;
const LINE_BYTES: usize = 1024;

/// A 512 MiB input of numbered 1 KiB lines: far more than the bound on memory, which a
/// run that gathered its rows before writing them would pass several times over.
fn big_input(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("big.txt");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let filler = "romeo and juliet, the most excellent and lamentable tragedy ".repeat(17);
    for i in 0..LINES {
        writeln!(file, "{} {i:07}", &filler[..LINE_BYTES - 9]).unwrap();
    }
    file.flush().unwrap();
    path
}

/// Held by each test while it has its input: one 512 MiB input, its outputs and its sorted
/// runs on disk at a time (a machine with little room left in its temporary folder failed the
/// two tests together), and one big run at a time measured on a 2-core machine.
static ONE_BIG_INPUT_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_big_input_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    // A test that failed holding it leaves nothing for the other to fear.
    ONE_BIG_INPUT_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn pipeline(
    dir: &std::path::Path,
    name: &str,
    input: &std::path::Path,
    rest: &str,
) -> std::path::PathBuf {
    write(
        dir,
        name,
        &format!(
            "name: {name}\nsource:\n  type: file\n  path: '{}'\n{rest}",
            input.display()
        ),
    )
}

/// Runs `runner ARGS`, standard output discarded; its exit code, standard error and peak RSS
/// in MB.
fn run_measured(log: &std::path::Path, args: &[&std::ffi::OsStr]) -> (Option<i32>, String, f64) {
    let mut command = runner_process();
    command.args(args);
    run_with_peak_rss(command, log)
}

/// The rows the source produced, from the run summary.
fn source_rows(summary: &std::path::Path) -> u64 {
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    summary["stages"][0]["rows_out"].as_u64().unwrap()
}

/// Runs `pipeline` (whose sink is standard output) on 2 cores: what it printed, and the rows
/// its source read.
fn run_limited(pipeline: &std::path::Path) -> (String, u64) {
    let summary = pipeline.with_extension("json");
    let out = runner_process()
        .args(["run", "--cores", "2", "--summary"])
        .arg(&summary)
        .arg(pipeline)
        .output()
        .unwrap();
    assert!(out.status.success());
    (
        String::from_utf8(out.stdout).unwrap(),
        source_rows(&summary),
    )
}

#[test]
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives its resource usage
fn non_aggregating_pipelines_stream_in_bounded_memory_and_stop_early() {
    let _alone = one_big_input_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let input = big_input(dir.path());

    // file → stdout tsv: every line comes out, in order, with memory far below the input's.
    let tsv = pipeline(
        dir.path(),
        "tsv",
        &input,
        "sinks:\n  - {type: stdout, format: tsv}\n",
    );
    let mut child = runner_process()
        .arg("run")
        .arg(&tsv)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        // Counts lines (std's memchr finds them: this test is built without optimisation) and
        // keeps the first and the last.
        let mut stdout = std::io::BufReader::with_capacity(1 << 20, stdout);
        let (mut lines, mut first, mut last, mut line) =
            (0usize, Vec::new(), Vec::new(), Vec::new());
        while stdout.read_until(b'\n', &mut line).unwrap() > 0 {
            if lines == 0 {
                first = line.clone();
            }
            lines += 1;
            std::mem::swap(&mut last, &mut line);
            line.clear();
        }
        (lines, first, last)
    });
    let (code, peak_mb) = wait_with_peak_rss(&child);
    assert_eq!(code, Some(0));
    let (lines, first, last) = reader.join().unwrap();
    assert_eq!(lines, LINES + 1);
    assert_eq!(first, b"line\n");
    assert!(last.ends_with(format!(" {:07}\n", LINES - 1).as_bytes()));
    assert!(
        peak_mb < 200.0,
        "file → stdout tsv: peak RSS {peak_mb:.0} MB over 512 MiB"
    );

    // file → csv: the file is complete, memory bounded.
    let csv = pipeline(
        dir.path(),
        "csv",
        &input,
        "sinks:\n  - {type: csv, path: out.csv}\n",
    );
    let (code, stderr, peak_mb) = run_measured(
        &dir.path().join("csv.log"),
        &["run".as_ref(), csv.as_os_str()],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        peak_mb < 200.0,
        "file → csv: peak RSS {peak_mb:.0} MB over 512 MiB"
    );
    let mut written =
        std::io::BufReader::new(std::fs::File::open(dir.path().join("out.csv")).unwrap());
    let mut first = String::new();
    written.read_line(&mut first).unwrap();
    assert_eq!(first, "line\n");
    let (mut rows, mut line) = (0, Vec::new());
    while written.read_until(b'\n', &mut line).unwrap() > 0 {
        rows += 1;
        line.clear();
    }
    assert_eq!(rows, LINES);
    std::fs::remove_file(dir.path().join("out.csv")).unwrap();

    // limit: 10 takes ten rows and reads only the first morsels (1 MiB each, a window of a
    // few per core), not the 512 of the input.
    let limited = pipeline(
        dir.path(),
        "limited",
        &input,
        "transforms:\n  - {type: limit, n: 10}\nsinks:\n  - {type: stdout, format: tsv}\n",
    );
    let (text, read) = run_limited(&limited);
    assert_eq!(text.lines().count(), 11, "{text}");
    assert!(text.lines().last().unwrap().ends_with(" 0000009"));
    assert!(
        read <= 16 * (1 << 20) / LINE_BYTES as u64,
        "limit: 10 read {read} rows"
    );

    // A reader that closes standard output after two lines stops the run early; exit 0.
    let summary = dir.path().join("head.json");
    let mut child = runner_process()
        .args(["run", "--summary"])
        .arg(&summary)
        .arg(&tsv)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut two = String::new();
    stdout.read_line(&mut two).unwrap();
    stdout.read_line(&mut two).unwrap();
    drop(stdout);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let read = source_rows(&summary);
    assert!(
        read < LINES as u64 / 4,
        "a closed stdout still read {read} rows"
    );
}

/// The number at the end of a generated line (`... 0000042`), quoted by CSV or not.
fn line_number(line: &[u8]) -> usize {
    let text = std::str::from_utf8(line)
        .unwrap()
        .trim_end()
        .trim_end_matches('"');
    text[text.len() - 7..].parse().unwrap()
}

#[test]
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives its resource usage
fn a_sort_of_a_large_input_spills_and_merges_in_bounded_memory() {
    let _alone = one_big_input_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let input = big_input(dir.path());

    // Every line, largest first: the lines differ only in their numbers, so the output runs
    // from the last line's number down to 0.
    let sorted = pipeline(
        dir.path(),
        "sorted",
        &input,
        "transforms:\n  - {type: sort, by: line desc}\nsinks:\n  - {type: csv, path: sorted.csv}\n",
    );
    let plan = runner_process()
        .args(["plan", "--format", "json"])
        .arg(&sorted)
        .output()
        .unwrap();
    assert!(plan.status.success());
    let plan = String::from_utf8(plan.stdout).unwrap();
    assert!(plan.contains("\"external_sort\""), "{plan}");
    let summary = dir.path().join("sorted.json");
    let (code, stderr, peak_mb) = run_measured(
        &dir.path().join("sorted.log"),
        &[
            "run".as_ref(),
            "--summary".as_ref(),
            summary.as_os_str(),
            sorted.as_os_str(),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        peak_mb < 200.0,
        "file → sort → csv: peak RSS {peak_mb:.0} MB over 512 MiB"
    );
    let mut written =
        std::io::BufReader::new(std::fs::File::open(dir.path().join("sorted.csv")).unwrap());
    let mut line = Vec::new();
    written.read_until(b'\n', &mut line).unwrap();
    assert_eq!(line, b"line\n");
    let mut expected = LINES;
    line.clear();
    while written.read_until(b'\n', &mut line).unwrap() > 0 {
        expected -= 1;
        assert_eq!(line_number(&line), expected, "out of order");
        line.clear();
    }
    assert_eq!(expected, 0, "{expected} rows missing");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(summary["stages"][1]["type"], "sort");
    assert_eq!(summary["stages"][1]["rows_in"], LINES as u64);
    assert_eq!(summary["stages"][1]["rows_out"], LINES as u64);
    // No place for the sorted runs: a clear error, exit 1, and the previous output intact.
    let before = std::fs::metadata(dir.path().join("sorted.csv"))
        .unwrap()
        .len();
    let out = runner_process()
        .arg("run")
        .arg(&sorted)
        .env("TMPDIR", dir.path().join("no-such-folder"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot create a folder for sorted runs"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("sorted.csv"))
            .unwrap()
            .len(),
        before
    );
    std::fs::remove_file(dir.path().join("sorted.csv")).unwrap();

    // Before a limit the sort keeps only the first rows: the five largest.
    let top = pipeline(
        dir.path(),
        "top",
        &input,
        "transforms:\n  - {type: sort, by: line desc}\n  - {type: limit, n: 5}\nsinks:\n  - {type: stdout, format: tsv}\n",
    );
    let plan = runner_process()
        .args(["plan", "--format", "json"])
        .arg(&top)
        .output()
        .unwrap();
    assert!(String::from_utf8(plan.stdout)
        .unwrap()
        .contains("\"top_k\""));
    let mut child = runner_process()
        .arg("run")
        .arg(&top)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::BufReader::new(stdout), &mut text).unwrap();
        text
    });
    let (code, peak_mb) = wait_with_peak_rss(&child);
    assert_eq!(code, Some(0));
    assert!(peak_mb < 200.0, "sort → limit 5: peak RSS {peak_mb:.0} MB");
    let text = reader.join().unwrap();
    let numbers: Vec<usize> = text
        .lines()
        .skip(1)
        .map(|l| line_number(l.as_bytes()))
        .collect();
    assert_eq!(numbers, (LINES - 5..LINES).rev().collect::<Vec<_>>());

    // A second sort takes the first one's rows as it merges them, through the steps between,
    // and spills in turn: memory stays bounded (it held the whole input before).
    let twice = pipeline(
        dir.path(),
        "twice",
        &input,
        "transforms:\n  - sort: line desc\n  - filter: ends_with(line, '5')\n  - sort: line\nsinks:\n  - {type: csv, path: twice.csv}\n",
    );
    let plan = runner_process()
        .args(["plan", "--format", "json"])
        .arg(&twice)
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let operators: Vec<&str> = plan["physical"]["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|operator| operator["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        operators,
        ["scan", "external_sort", "row_wise", "external_sort"],
        "{plan}"
    );
    let summary = dir.path().join("twice.json");
    let (code, stderr, peak_mb) = run_measured(
        &dir.path().join("twice.log"),
        &[
            "run".as_ref(),
            "--summary".as_ref(),
            summary.as_os_str(),
            twice.as_os_str(),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        peak_mb < 200.0,
        "file → sort → filter → sort → csv: peak RSS {peak_mb:.0} MB over 512 MiB"
    );
    let written = std::fs::read(dir.path().join("twice.csv")).unwrap();
    let numbers: Vec<usize> = written
        .split(|&b| b == b'\n')
        .skip(1)
        .filter(|line| !line.is_empty())
        .map(line_number)
        .collect();
    let expected: Vec<usize> = (0..LINES).filter(|n| n % 10 == 5).collect();
    assert_eq!(numbers.len(), expected.len());
    assert!(numbers == expected, "out of order or rows lost");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(summary["stages"][1]["rows_in"], LINES as u64);
    assert_eq!(summary["stages"][1]["rows_out"], LINES as u64);
    assert_eq!(summary["stages"][3]["rows_in"], expected.len() as u64);
    assert_eq!(summary["stages"][3]["rows_out"], expected.len() as u64);
}

/// Rows of the one-row-group Parquet file: 192 MB of values once decoded, written as the
/// `parquet` crate writes pages (20 480 rows each: 20 000, rounded up to its batches of 1024).
const PARQUET_ROWS: i64 = 12_000_000;

/// One Parquet row group far larger than the bound on memory once decoded (a whole file of one
/// group, as Spark and pyarrow write large ones) is read in morsels of a few pages, each
/// decoded a batch at a time and its rows handed on as they come: a filter into a CSV file
/// and an aggregation keep memory bounded (they held the whole group), and a limit stops
/// the reading early.
#[test]
fn one_large_parquet_row_group_is_read_in_bounded_memory() {
    use std::sync::Arc;
    let _alone = one_big_input_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.parquet");
    {
        // Written page by page (Arrow's writer would hold the whole group in this process,
        // whose memory a child started by vfork counts as its own peak).
        use parquet::data_type::{DoubleType, Int64Type};
        let schema = parquet::schema::parser::parse_message_type(
            "message m { required int64 n; required double x; }",
        )
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_dictionary_enabled(false)
            .set_statistics_enabled(parquet::file::properties::EnabledStatistics::None)
            .build();
        let file = std::fs::File::create(&path).unwrap();
        let mut writer = parquet::file::writer::SerializedFileWriter::new(
            file,
            Arc::new(schema),
            Arc::new(props),
        )
        .unwrap();
        let mut group = writer.next_row_group().unwrap();
        let chunks = || {
            (0..PARQUET_ROWS)
                .step_by(1 << 16)
                .map(|start| start..PARQUET_ROWS.min(start + (1 << 16)))
        };
        let mut n = group.next_column().unwrap().unwrap();
        for rows in chunks() {
            let values: Vec<i64> = rows.collect();
            n.typed::<Int64Type>()
                .write_batch(&values, None, None)
                .unwrap();
        }
        n.close().unwrap();
        let mut x = group.next_column().unwrap().unwrap();
        for rows in chunks() {
            let values: Vec<f64> = rows.map(|i| i as f64).collect();
            x.typed::<DoubleType>()
                .write_batch(&values, None, None)
                .unwrap();
        }
        x.close().unwrap();
        group.close().unwrap();
        assert_eq!(writer.close().unwrap().num_row_groups(), 1);
    }
    let source = format!(
        "name: p\nsource: {{type: file, path: '{}', format: parquet}}\n",
        path.display()
    );

    // Runs `step` on the file into the CSV file `{name}.csv`: what it wrote, and the peak RSS
    // in MB.
    let run = |name: &str, step: &str| -> (String, f64) {
        let pipeline = write(
            dir.path(),
            &format!("{name}.yaml"),
            &format!(
                "{source}transforms:\n  - {step}\nsinks:\n  - {{type: csv, path: {name}.csv}}\n"
            ),
        );
        let (code, stderr, peak_mb) = run_measured(
            &dir.path().join(format!("{name}.log")),
            &[
                "run".as_ref(),
                "--cores".as_ref(),
                "2".as_ref(),
                pipeline.as_os_str(),
            ],
        );
        assert_eq!(code, Some(0), "{stderr}");
        let written = std::fs::read_to_string(dir.path().join(format!("{name}.csv"))).unwrap();
        (written, peak_mb)
    };

    // A filter into a CSV file: every 100 000th row, in order.
    let (written, peak_mb) = run("filtered", "{type: filter, where: 'n % 100000 == 0'}");
    let expected: String = std::iter::once("n,x\n".to_owned())
        .chain(
            (0..PARQUET_ROWS)
                .step_by(100_000)
                .map(|n| format!("{n},{n}.0\n")),
        )
        .collect();
    assert_eq!(written, expected);
    assert!(
        peak_mb < 120.0,
        "parquet → filter → csv: peak RSS {peak_mb:.0} MB"
    );

    // An aggregation over every row: the exact sum.
    let (written, peak_mb) = run(
        "summed",
        "{type: aggregate, aggs: {rows: count(), total: sum(n)}}",
    );
    let total = PARQUET_ROWS * (PARQUET_ROWS - 1) / 2;
    assert_eq!(written, format!("rows,total\n{PARQUET_ROWS},{total}\n"));
    assert!(
        peak_mb < 120.0,
        "parquet → aggregate: peak RSS {peak_mb:.0} MB"
    );

    // limit: 3 stops within the group: a few morsels read, not its 12 million rows.
    let limited = write(
        dir.path(),
        "limited.yaml",
        &format!("{source}transforms:\n  - {{type: limit, n: 3}}\nsinks:\n  - {{type: stdout, format: tsv}}\n"),
    );
    let (text, read) = run_limited(&limited);
    assert_eq!(text, "n\tx\n0\t0.0\n1\t1.0\n2\t2.0\n");
    assert!(read < PARQUET_ROWS as u64 / 8, "limit: 3 read {read} rows");
}

/// A pipe that goes quiet (`tail -f log |`, a slow writer) has what it gave read at once:
/// its rows reach the sinks as they come, and a `limit` ends the run, without waiting for
/// a morsel's worth of input or for the writer to close the pipe.
#[test]
fn rows_of_a_quiet_pipe_reach_the_sinks_and_a_limit_as_they_come() {
    let dir = tempfile::tempdir().unwrap();
    let limited = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: \"-\"}\ntransforms:\n  - {type: limit, n: 2}\nsinks:\n  - {type: stdout, format: tsv}\n",
    );
    let mut child = runner_process()
        .arg("run")
        .arg(&limited)
        .arg("-q")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // One line, then the pipe stays open: the line is printed.
    stdin.write_all(b"a\n").unwrap();
    let wait = std::time::Duration::from_secs(20);
    assert_eq!(received.recv_timeout(wait).unwrap(), "line");
    assert_eq!(received.recv_timeout(wait).unwrap(), "a");
    // The second reaches the limit: the run ends with the pipe still open.
    stdin.write_all(b"b\n").unwrap();
    assert_eq!(received.recv_timeout(wait).unwrap(), "b");
    let (exited, exit) = std::sync::mpsc::channel();
    std::thread::spawn(move || exited.send(child.wait().unwrap()));
    let status = exit
        .recv_timeout(wait)
        .expect("the run did not end at its limit");
    assert!(status.success());
    drop(stdin);
}
