//! An `aggregate` of more groups than its `memory_limit` holds: each worker's groups are
//! spilled to temporary files as sorted runs and merged at the end, giving the answer the
//! in-memory aggregation gives, byte for byte, through the CSV kernel and without it, with the
//! steps after the aggregation streamed or not, in less memory.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::{runner_process, wait_with_peak_rss, write};

/// Rows of the generated input, and how many users they come from (most are distinct
/// groups: the state is large, its result too).
const ROWS: usize = 600_000;
const USERS: u64 = 2_000_000;

/// `user,city,amount,price`: users with Unicode and empty (null) cities, integers with
/// empty (null) fields, prices in halves (their sums are exact in any order, so the averages
/// do not depend on how the rows were split between workers).
fn sales(dir: &Path) -> PathBuf {
    let path = dir.join("sales.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(file, "user,city,amount,price").unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for row in 0..ROWS {
        // xorshift: the same input on every run.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let user = x % USERS;
        let city = ["oslo", "tromsø", "", "ålesund"][(x >> 40) as usize % 4];
        let amount = match row % 23 {
            0 => String::new(),
            _ => ((x >> 20) % 2_001).to_string(),
        };
        writeln!(file, "ü{user:07},{city},{amount},{}.5", (x >> 50) % 100).unwrap();
    }
    file.flush().unwrap();
    path
}

fn pipeline(dir: &Path, name: &str, transforms: &str, limit: Option<&str>) -> PathBuf {
    let limit = limit.map_or(String::new(), |l| format!("\n    memory_limit: {l}"));
    let transforms = transforms.replace("$LIMIT", &limit);
    write(
        dir,
        &format!("{name}.yaml"),
        &format!(
            "name: {name}\nsource:\n  type: file\n  path: sales.csv\n  format: csv\n  \
             columns: {{user: text, city: text?, amount: integer?, price: float}}\n\
             transforms:\n{transforms}\nsinks:\n  - {{type: csv, path: {name}.csv}}\n"
        ),
    )
}

/// Runs the pipeline (with `extra` arguments, `-v` to log): exit code, peak RSS in MB, stderr.
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives its resource usage
fn run(pipeline: &Path, extra: &[&str]) -> (Option<i32>, f64, String) {
    let stderr = pipeline.with_extension("err");
    let child = runner_process()
        .arg("-v")
        .arg("run")
        .arg(pipeline)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let (code, peak) = wait_with_peak_rss(&child);
    (code, peak, std::fs::read_to_string(&stderr).unwrap())
}

const SPILLED: &str = "aggregate spilled to disk";

/// Runs `transforms` with a small memory limit and without one (default: half the
/// machine's memory); both must succeed, the first spilling, with the same output.
fn same_answer(dir: &Path, name: &str, transforms: &str, extra: &[&str]) -> (f64, f64) {
    let spilled = pipeline(dir, &format!("{name}_spilled"), transforms, Some("4MiB"));
    let whole = pipeline(dir, &format!("{name}_whole"), transforms, None);
    let (code, spilled_peak, stderr) = run(&spilled, extra);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(SPILLED),
        "{name}: nothing spilled\n{stderr}"
    );
    let (code, whole_peak, stderr) = run(&whole, extra);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains(SPILLED), "{name}: spilled without a limit");
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
    let (spilled_out, whole_out) = (
        read(&format!("{name}_spilled.csv")),
        read(&format!("{name}_whole.csv")),
    );
    assert!(whole_out.lines().count() > 2, "{name}: {whole_out}");
    assert!(
        spilled_out == whole_out,
        "{name}: the spilled answer differs"
    );
    eprintln!("{name}: peak RSS {spilled_peak:.0} MB spilled, {whole_peak:.0} MB in memory");
    (spilled_peak, whole_peak)
}

#[test]
fn aggregates_past_their_memory_limit_spill_and_give_the_same_answer_in_less_memory() {
    let dir = tempfile::tempdir().unwrap();
    sales(dir.path());
    let plain = "  - type: aggregate\n    by: [user, city]\n    \
                 aggs: {total: sum(amount), mean: avg(price), n: count()}$LIMIT";
    // Through the CSV kernel.
    let (spilled_peak, whole_peak) = same_answer(dir.path(), "kernel", plain, &[]);
    assert!(
        spilled_peak < whole_peak * 0.8,
        "spilled peak RSS {spilled_peak:.0} MB, in memory {whole_peak:.0} MB"
    );
    // Every aggregate, through Arrow's CSV reader and the general state.
    let every = "  - type: aggregate\n    by: [user, city]\n    \
                 aggs: {n: count(), total: sum(amount), mean: avg(price), low: min(amount), \
                 high: max(city), cities: count_distinct(city), first_amount: first(amount), \
                 last_city: last(city), amounts: collect_list(amount)}$LIMIT";
    same_answer(dir.path(), "every", every, &["--no-fusion", "--cores", "3"]);
}

/// `count_distinct` over a few groups of many distinct values: grouped by the value too, the
/// finer groups spill like any others, and the answer is the distinct values counted here.
#[test]
fn distinct_values_of_a_few_groups_spill_and_are_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let input = std::fs::read_to_string(sales(dir.path())).unwrap();
    let steps = "  - type: aggregate\n    by: city\n    \
                 aggs: {users: count_distinct(user), n: count(), total: sum(amount), \
                 again: count_distinct(user), low: min(user), mean: avg(amount)}$LIMIT";
    let (spilled_peak, whole_peak) = same_answer(dir.path(), "distinct", steps, &[]);
    assert!(
        spilled_peak < whole_peak * 0.8,
        "spilled peak RSS {spilled_peak:.0} MB, in memory {whole_peak:.0} MB"
    );
    // Each city's distinct users and rows, counted from the input (empty city: null, first).
    let mut cities: std::collections::BTreeMap<
        Option<&str>,
        (std::collections::HashSet<&str>, u64),
    > = Default::default();
    for line in input.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let city = Some(fields[1]).filter(|c| !c.is_empty());
        let (users, rows) = cities.entry(city).or_default();
        users.insert(fields[0]);
        *rows += 1;
    }
    let out = std::fs::read_to_string(dir.path().join("distinct_spilled.csv")).unwrap();
    let counted: Vec<(String, String, String)> = out
        .lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields[0].into(), fields[1].into(), fields[2].into())
        })
        .collect();
    let expected: Vec<(String, String, String)> = cities
        .iter()
        .map(|(city, (users, rows))| {
            (
                city.unwrap_or("").into(),
                users.len().to_string(),
                rows.to_string(),
            )
        })
        .collect();
    assert_eq!(counted, expected);
    assert!(expected
        .iter()
        .all(|(_, users, _)| users.parse::<u64>().unwrap() > 100_000));
}

/// Writing a worker's groups out sorts them on the pool, which may hand the writing thread
/// another morsel: with 3 or more threads that morsel's worker waited for the lock the writer
/// held, for ever. Eight threads, spilling, through the CSV kernel and the general state.
#[test]
fn spilling_on_eight_threads_does_not_wait_on_itself() {
    let dir = tempfile::tempdir().unwrap();
    sales(dir.path());
    let plain = "  - type: aggregate\n    by: [user, city]\n    \
                 aggs: {total: sum(amount), mean: avg(price), n: count()}$LIMIT";
    same_answer(dir.path(), "kernel8", plain, &["--cores", "8"]);
    same_answer(
        dir.path(),
        "general8",
        plain,
        &["--no-fusion", "--cores", "8"],
    );
}

#[test]
fn steps_after_a_spilled_aggregate_stream_or_take_the_whole_result() {
    let dir = tempfile::tempdir().unwrap();
    sales(dir.path());
    // A filter, a sort and a limit take the merged groups batch by batch.
    let streamed =
        "  - type: aggregate\n    by: [user]\n    aggs: {total: sum(amount), n: count()}$LIMIT\n  \
                    - {type: filter, where: 'n > 1'}\n  \
                    - {type: sort, by: [total desc, user]}\n  \
                    - {type: limit, n: 50}";
    same_answer(dir.path(), "streamed", streamed, &[]);
    // Two sorts, a filter between: the second takes the first's rows as it merges them (the
    // result was held whole for a second sort).
    let sorted_twice =
        "  - type: aggregate\n    by: [user]\n    aggs: {total: sum(amount), n: count()}$LIMIT\n  \
                    - sort: total desc\n  \
                    - filter: n > 1\n  \
                    - sort: [n, user desc]";
    same_answer(dir.path(), "sorted_twice", sorted_twice, &[]);
    let stderr = std::fs::read_to_string(dir.path().join("sorted_twice_spilled.err")).unwrap();
    let sorts = stderr.matches("sort merging its sorted runs").count()
        + stderr.matches("sort ordering its rows in memory").count();
    assert_eq!(
        sorts, 2,
        "both sorts take the merged rows in turn\n{stderr}"
    );
    // After a sort, an aggregation takes the sorted rows as they are merged and keeps to its
    // limit (it held the whole input, never spilling); `first` follows the sorted order.
    let after_sort = "  - sort: [amount desc, user]\n  \
                      - type: aggregate\n    by: [city]\n    \
                      aggs: {n: count(), top: first(user), users: count_distinct(user)}$LIMIT";
    same_answer(dir.path(), "after_sort", after_sort, &[]);
    // Past a spilled aggregation and a sort, a second aggregation spills in turn.
    let sorted_between = "  - type: aggregate\n    by: [user, city]\n    \
                          aggs: {n: count(), total: sum(amount)}$LIMIT\n  \
                          - sort: [total desc, user, city]\n  \
                          - type: aggregate\n    by: [user]\n    \
                          aggs: {cities: count(), best: first(city), total: sum(total)}$LIMIT";
    same_answer(dir.path(), "sorted_between", sorted_between, &[]);
    let stderr = std::fs::read_to_string(dir.path().join("sorted_between_spilled.err")).unwrap();
    assert_eq!(
        stderr.matches(SPILLED).count(),
        2,
        "both aggregations spill\n{stderr}"
    );
    // A limit before an aggregation stops the reading once reached.
    let limited = pipeline(
        dir.path(),
        "limited",
        "  - limit: 1000\n  - type: aggregate\n    by: [city]\n    aggs: {n: count()}",
        None,
    );
    let summary = dir.path().join("limited.json");
    let (code, _, stderr) = run(&limited, &["--summary", summary.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let read = summary["stages"][0]["rows_out"].as_u64().unwrap();
    assert!(
        read < ROWS as u64 / 4,
        "{read} rows read for a limit of 1000"
    );
    let counted = std::fs::read_to_string(dir.path().join("limited.csv")).unwrap();
    let total: u64 = counted
        .lines()
        .skip(1)
        .map(|line| line.rsplit(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 1000, "{counted}");
    // A second aggregation takes the merged groups a slice at a time.
    let regrouped = "  - type: aggregate\n    by: [user, city]\n    aggs: {n: count()}$LIMIT\n  \
                     - type: aggregate\n    by: [city]\n    aggs: {users: count(), rows: sum(n)}";
    same_answer(dir.path(), "regrouped", regrouped, &[]);
    // Through a row-wise step, into a second aggregation of many groups that spills in turn
    // (under its own limit) rather than holding the first's result whole; `first` and `last`
    // follow the first's groups in key order, as in memory.
    let twice = "  - type: aggregate\n    by: [user, city]\n    \
                 aggs: {n: count(), total: sum(amount)}$LIMIT\n  \
                 - {type: with_column, name: bucket, expr: 'substr(user, 1, 6)'}\n  \
                 - type: aggregate\n    by: [bucket]\n    \
                 aggs: {users: count(), rows: sum(n), total: sum(total), first_user: first(user), \
                 last_city: last(city), cities: count_distinct(city)}$LIMIT";
    same_answer(dir.path(), "twice", twice, &["--no-fusion"]);
    let stderr = std::fs::read_to_string(dir.path().join("twice_spilled.err")).unwrap();
    assert_eq!(
        stderr.matches(SPILLED).count(),
        2,
        "both aggregations spill\n{stderr}"
    );
}

#[test]
fn group_counts_past_their_memory_limit_spill_and_come_out_most_frequent_first() {
    let dir = tempfile::tempdir().unwrap();
    sales(dir.path());
    // By one text column: the CSV kernel; by two: the general state.
    let by_user = "  - type: group_count\n    by: user$LIMIT";
    same_answer(dir.path(), "by_user", by_user, &[]);
    let by_both = "  - type: group_count\n    by: [city, user]$LIMIT\n  - {type: limit, n: 1000}";
    same_answer(dir.path(), "by_both", by_both, &[]);
}

#[test]
fn a_spill_without_a_place_for_its_runs_is_a_clear_error_that_keeps_the_old_output() {
    let dir = tempfile::tempdir().unwrap();
    sales(dir.path());
    let transforms = "  - type: aggregate\n    by: [user]\n    aggs: {n: count()}$LIMIT";
    let spilled = pipeline(dir.path(), "nowhere", transforms, Some("1MiB"));
    std::fs::write(dir.path().join("nowhere.csv"), "earlier output\n").unwrap();
    let out = runner_process()
        .arg("run")
        .arg(&spilled)
        .env("TMPDIR", dir.path().join("no-such-folder"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spilling groups to disk: aggregate: cannot create a folder")
            && stderr.contains("no-such-folder"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("nowhere.csv")).unwrap(),
        "earlier output\n"
    );
}

#[test]
fn a_memory_limit_that_is_not_a_size_is_refused_where_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    sales(dir.path());
    for (limit, says) in [("lots", "is not a size"), ("0MiB", "more than zero")] {
        let transforms = "  - type: aggregate\n    by: [user]\n    aggs: {n: count()}$LIMIT";
        let bad = pipeline(dir.path(), "bad", transforms, Some(limit));
        let out = runner_process().arg("run").arg(&bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{limit}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(says) && stderr.contains("bad.yaml:11:19"),
            "{limit}: {stderr}"
        );
    }
}

/// Text of many distinct words (most seen once), in two cases, some longer than the
/// kernel's inline 16 bytes, some of them stop words, with lines that are not valid UTF-8
/// (they go through the source's decoder).
fn many_words(dir: &Path) -> PathBuf {
    let path = dir.join("words.txt");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for line in 0..60_000 {
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let word = match x % 7 {
                0 => format!("Wörd{}", x % 150_000),
                1 => format!("wörd{}", x % 150_000),
                2 => format!("a-rather-long-word-number-{}", x % 90_000),
                3 => ["the", "The", "AND", "of"][(x >> 30) as usize % 4].to_owned(),
                _ => format!("w{}", x % 400_000),
            };
            write!(file, "{word}, ").unwrap();
        }
        if line % 997 == 0 {
            file.write_all(b"bad \xff bytes").unwrap();
        }
        writeln!(file).unwrap();
    }
    file.flush().unwrap();
    path
}

#[test]
fn the_word_count_kernel_spills_past_its_memory_limit_and_gives_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    many_words(dir.path());
    // `lowercase` maps words after counting: `Wörd7` and `wörd7` counted in different runs
    // become one word when the runs are merged.
    let yaml = |name: &str, limit: &str, tail: &str| {
        write(
            dir.path(),
            &format!("{name}.yaml"),
            &format!(
                "name: {name}\nsource:\n  type: file\n  path: words.txt\n  \
                 encoding_errors: replace\ntransforms:\n  \
                 - {{type: tokenize, lowercase: false}}\n  - {{type: lowercase, column: word}}\n  \
                 - {{type: stopwords}}\n  - type: group_count\n    by: word{limit}\n{tail}\
                 sinks:\n  - {{type: csv, path: {name}.csv}}\n"
            ),
        )
    };
    let limit = "\n    memory_limit: 1MiB";
    let top = "  - {type: limit, n: 2000}\n";
    for (name, pipeline, extra) in [
        ("spilled", yaml("spilled", limit, ""), &[][..]),
        (
            "spilled_3",
            yaml("spilled_3", limit, ""),
            &["--cores", "3"][..],
        ),
        // Eight threads: a table written out sorts on the pool (it used to wait on itself).
        (
            "spilled_8",
            yaml("spilled_8", limit, ""),
            &["--cores", "8"][..],
        ),
        ("whole", yaml("whole", "", ""), &[][..]),
        ("unfused", yaml("unfused", "", ""), &["--no-fusion"][..]),
        ("spilled_top", yaml("spilled_top", limit, top), &[][..]),
        ("whole_top", yaml("whole_top", "", top), &[][..]),
    ] {
        let (code, _, stderr) = run(&pipeline, extra);
        assert_eq!(code, Some(0), "{name}: {stderr}");
        assert_eq!(
            stderr.contains(SPILLED),
            name.starts_with("spilled"),
            "{name}: {stderr}"
        );
    }
    let plan = runner_process()
        .arg("plan")
        .arg(dir.path().join("spilled.yaml"))
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.contains("word_count_kernel") && plan.contains("merged by word"),
        "{plan}"
    );
    let read =
        |name: &str| std::fs::read_to_string(dir.path().join(format!("{name}.csv"))).unwrap();
    let whole = read("whole");
    assert!(whole.lines().count() > 100_000, "{}", whole.len());
    assert!(whole.contains("\nwörd"), "lowercased words are counted");
    assert!(!whole.contains("\nWörd") && !whole.contains("\nthe,"));
    assert!(
        read("unfused") == whole,
        "the kernel differs from the steps"
    );
    assert!(read("spilled") == whole, "the spilled answer differs");
    assert!(
        read("spilled_3") == whole,
        "the spilled answer on 3 cores differs"
    );
    assert!(
        read("spilled_8") == whole,
        "the spilled answer on 8 cores differs"
    );
    assert_eq!(read("spilled_top"), read("whole_top"));
    assert_eq!(read("whole_top").lines().count(), 2001);
}

/// `runner plan` of a pipeline with `steps` (YAML list items) over a CSV of columns `k,v`.
fn plan_of(dir: &Path, steps: &str) -> String {
    write(dir, "in.csv", "k,v\na,1\n");
    let pipeline = write(
        dir,
        "p.yaml",
        &format!("name: p\nsource: {{type: file, path: in.csv, format: csv}}\ntransforms:\n{steps}\nsinks:\n  - {{type: stdout}}\n"),
    );
    let out = runner_process().arg("plan").arg(pipeline).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_plan_says_where_a_groups_distinct_values_and_lists_are_held_whole() {
    let dir = tempfile::tempdir().unwrap();
    let plan_of = |aggs: &str| {
        plan_of(
            dir.path(),
            &format!("  - {{type: aggregate, by: [k], aggs: {aggs}, memory_limit: 128MiB}}"),
        )
    };
    for aggs in [
        "{n: count_distinct(v), first: first(v)}",
        "{all: collect_list(v), n: count()}",
    ] {
        let plan = plan_of(aggs);
        assert!(
            plan.contains("spilled to temporary files")
                && plan.contains("distinct values and lists are held whole"),
            "{aggs}: {plan}"
        );
    }
    // Counted by grouping on the value too, where the other aggregates allow it.
    let plan = plan_of("{n: count_distinct(v), rows: count()}");
    assert!(
        plan.contains("by the keys and the value count_distinct counts")
            && plan.contains("spilled to temporary files")
            && !plan.contains("held whole"),
        "{plan}"
    );
    let plan = plan_of("{n: count(), top: max(v)}");
    assert!(
        plan.contains("spilled to temporary files") && !plan.contains("held whole"),
        "{plan}"
    );
}

#[test]
fn the_plan_says_what_a_limit_after_a_spilling_aggregation_stops() {
    let dir = tempfile::tempdir().unwrap();
    let limit_of = |steps: &str| {
        let plan = plan_of(dir.path(), &format!("{steps}\n  - {{type: limit, n: 3}}"));
        let line = plan
            .lines()
            .find(|l| l.contains(" limit ["))
            .map(str::to_owned);
        line.unwrap_or_else(|| panic!("no limit in {plan}"))
    };
    // Most frequent first: the sort into that order keeps only the first rows (a top-k).
    let line = limit_of("  - {type: group_count, by: k, memory_limit: 16MiB}");
    assert!(line.contains("keeps only these first rows"), "{line}");
    // In key order: the merge stops.
    let line = limit_of("  - {type: aggregate, by: [k], aggs: {n: count()}, memory_limit: 16MiB}");
    assert!(line.contains("stopping the merge once reached"), "{line}");
    // After a sort: the sort's rows, as they come.
    let line = limit_of(
        "  - {type: aggregate, by: [k], aggs: {n: count()}, memory_limit: 16MiB}\n  - {type: sort, by: [n desc]}",
    );
    assert!(
        line.contains("the rows of the steps before it as they come"),
        "{line}"
    );
}
