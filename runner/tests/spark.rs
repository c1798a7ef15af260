//! The Spark engine against a real Spark Connect server (Spark 4.0.1 from the `pyspark` wheel,
//! started by `bench/spark-connect.sh`; `.ci/run` starts one with 2 executor cores at
//! RUNNER_SPARK_REMOTE and one with 1 at RUNNER_SPARK_REMOTE_1CORE). Every answer is compared
//! row for row with the local engine's on the same input. Without a server these tests fail
//! under `CI=true` and say they skipped otherwise.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The address of a running Spark Connect server from `variable`, or `None` (skipped).
fn spark(variable: &str) -> Option<String> {
    let remote = std::env::var(variable).ok().filter(|v| !v.is_empty());
    if remote.is_none() {
        missing_input(&format!(
            "{variable} is not set: start a server with `bash bench/spark-connect.sh start` and set {variable}=sc://127.0.0.1:15002"
        ));
    }
    remote
}

/// Runs `pipeline` with `args` on `engine` (`local`, or Spark at `remote`) writing a CSV of
/// the result; returns the CSV's text.
fn run_to_csv(pipeline: &Path, engine: Option<&str>, args: &[String], out: &Path) -> String {
    let mut cmd = runner();
    cmd.arg("run").arg(pipeline).arg("-q");
    match engine {
        Some(remote) => cmd.args(["--remote", remote]),
        None => cmd.args(["--engine", "local"]),
    };
    for arg in args {
        cmd.arg("--set").arg(arg);
    }
    cmd.arg("--set")
        .arg(format!("sinks=[{{type: csv, path: {}}}]", out.display()));
    let output = cmd.current_dir(repo_root()).output().unwrap();
    assert!(
        output.status.success(),
        "{} on {}: {}",
        pipeline.display(),
        engine.unwrap_or("local"),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(out).unwrap()
}

/// Whether every step of `pipeline` with `args` runs on Spark (none falls back to running
/// here on the result), as `runner plan` says.
fn all_on_spark(remote: &str, pipeline: &Path, args: &[String]) -> bool {
    let mut cmd = runner();
    cmd.arg("plan").arg(pipeline).args(["--remote", remote]);
    for arg in args {
        cmd.arg("--set").arg(arg);
    }
    let output = cmd.current_dir(repo_root()).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).contains("\nhere      sinks, on Spark's result\n")
}

/// The same pipeline, settings and input on Spark and locally: the same rows, in order; every
/// step ran on Spark (none was left to run here).
fn same_on_both(remote: &str, pipeline: &Path, args: &[String]) -> String {
    assert!(
        all_on_spark(remote, pipeline, args),
        "{} with {args:?}: a step runs here, not on Spark",
        pipeline.display()
    );
    same_answer(remote, pipeline, args)
}

/// The same pipeline, settings and input on Spark (with what Spark cannot run run here) and
/// locally: the same rows, in order.
fn same_answer(remote: &str, pipeline: &Path, args: &[String]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let local = run_to_csv(pipeline, None, args, &dir.path().join("local.csv"));
    let on_spark = run_to_csv(pipeline, Some(remote), args, &dir.path().join("spark.csv"));
    assert_eq!(on_spark, local, "{} with {args:?}", pipeline.display());
    assert!(
        local.lines().count() > 1,
        "a test must have rows to compare"
    );
    local
}

fn romeo_args(play: &Path, threshold: u32) -> Vec<String> {
    vec![
        format!("source.path={}", play.display()),
        format!("transforms.3.where=count >= {threshold}"),
    ]
}

#[test]
fn the_romeo_answer_on_spark_is_the_local_answer_on_one_and_two_executor_cores() {
    let Some(play) = romeo_text() else { return };
    let pipeline = repo_root().join("pipelines/romeo.yaml");
    for variable in ["RUNNER_SPARK_REMOTE", "RUNNER_SPARK_REMOTE_1CORE"] {
        let Some(remote) = spark(variable) else {
            return;
        };
        let golden = same_on_both(&remote, &pipeline, &romeo_args(&play, 60));
        assert_eq!(golden.lines().count(), 26, "{golden}");
        assert!(
            golden.starts_with("word,count\nromeo,298\nthou,277\n"),
            "{golden}"
        );
        assert!(golden.ends_with("hath,64\none,60\n"), "{golden}");
        // Every word (threshold 1): 3,734 rows, ties broken the same way.
        let all = same_on_both(&remote, &pipeline, &romeo_args(&play, 1));
        assert_eq!(all.lines().count(), 3735);
    }
}

/// Text that tells Python's `str.split()`, `str.lower()` and punctuation stripping apart from
/// near misses: Unicode spaces, ASCII separators, leading/trailing blanks, punctuation inside
/// and at the edges, final sigma, dotted capital I, curly quotes, tokens of only punctuation.
const TRICKY: &str = "  Leading and trailing blanks  \n\
Tabs\tand\u{0b}vertical\u{0c}feeds\u{1c}file\u{1d}group\u{1e}record\u{1f}unit\n\
no\u{a0}break\u{2003}em\u{3000}ideographic\u{2028}line\u{85}next \u{200b}zero-width\n\
\"Quoted,\" (parens) [brackets] don't --- ... e.g. u.s.a. ?!\n\
ΣΊΣΥΦΟΣ ΟΔΟΣ. İstanbul İİ KELVIN\u{212a} Straße ÉCOLE\n\
i’ll ‘curly’ “double” — dash… naïve café\n\
\n\
MiXeD CaSe mixed case MIXED CASE\n";

fn tricky_pipeline(dir: &Path, tokenize: &str, more: &str) -> PathBuf {
    write(dir, "tricky.txt", &TRICKY.repeat(3));
    write(
        dir,
        "p.yaml",
        &format!(
            "name: tricky\nsource:\n  type: file\n  path: tricky.txt\ntransforms:\n  - type: tokenize\n{tokenize}{more}  - type: group_count\n    by: word\n  - type: sort\n    by: [count desc, word asc]\nsinks:\n  - type: stdout\n"
        ),
    )
}

#[test]
fn words_split_lowercased_and_stripped_exactly_as_locally() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for tokenize in [
        "    lowercase: true\n    strip_punctuation: all\n",
        "    lowercase: true\n    strip_punctuation: edges\n",
        "    lowercase: false\n    strip_punctuation: none\n",
        "    lowercase: false\n    strip_punctuation: all\n    drop_empty: false\n",
    ] {
        let pipeline = tricky_pipeline(dir.path(), tokenize, "");
        let rows = same_on_both(&remote, &pipeline, &[]);
        assert!(rows.lines().count() > 30, "{rows}");
    }
}

#[test]
fn filters_sorts_limits_stopwords_and_explode_translate_exactly() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let Some(play) = romeo_text() else { return };
    let pipeline = repo_root().join("pipelines/romeo.yaml");
    let source = format!("source.path={}", play.display());
    let variants: [&[&str]; 6] = [
        // The expression language: arithmetic (integer division), between, in, like, length.
        &["transforms.3.where=count / 7 > 3 and length(word) between 4 and 6 and word not in [\"romeo\", \"juliet\"] or word like \"%’s\""],
        // Texts joined (Spark's `concat`).
        &["transforms.3.where=count >= 20 and concat(word, \"!\", upper(word)) like \"th%!TH%\""],
        // Another order, ties broken by the other column; then a limit.
        &[
            "transforms.3.where=count >= 5",
            "transforms.4.by=[word desc]",
            "transforms.5={type: limit, n: 17}",
        ],
        // Stop words of the file's own, replacing the built-in list.
        &[
            "transforms.1={type: stopwords, mode: replace, words: [the, and, i, to, a]}",
            "transforms.3.where=count >= 100",
        ],
        // A filter before the aggregation (runs on Spark's executors too).
        &[
            "transforms.1={type: filter, where: \"not (word in [\\\"the\\\", \\\"and\\\"]) and length(word) > 2\"}",
            "transforms.3.where=count between 50 and 400",
        ],
        // A limit before the sort's tie-break matters: sort by count only, ties by word.
        &["transforms.3.where=count >= 30", "transforms.4.by=count asc"],
    ];
    for variant in variants {
        let mut args = vec![source.clone()];
        args.extend(variant.iter().map(|s| s.to_string()));
        same_on_both(&remote, &pipeline, &args);
    }
    // explode at a separator, then lowercase, counting pairs of columns.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "tags.txt",
        &"Rust,rust,,SPARK\nspark,Arrow,\n,,\nArrow,ARROW,rust\n".repeat(50),
    );
    let exploded = write(
        dir.path(),
        "p.yaml",
        "name: tags\nsource:\n  type: file\n  path: tags.txt\ntransforms:\n  - type: explode\n    column: line\n    separator: \",\"\n    as: tag\n  - type: lowercase\n    column: tag\n  - type: group_count\n    by: tag\nsinks:\n  - type: stdout\n",
    );
    let rows = same_on_both(&remote, &exploded, &[]);
    assert_eq!(rows, "tag,count\narrow,150\nrust,150\nspark,100\n");
    let rows = same_on_both(
        &remote,
        &exploded,
        &["transforms.0.drop_empty=false".into()],
    );
    // An empty text is written `""` (a null would be nothing), as Spark writes it.
    assert!(
        rows.contains("\n\"\",250\n"),
        "empty pieces counted: {rows}"
    );
}

#[test]
fn floats_group_and_sort_as_locally_minus_zero_and_nan_included() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "lines.txt", &"a\nbb\nccc\ndddd\n".repeat(5));
    // `z`: -0.0 for one-letter lines, 0.0 for the others. `m`: inf - inf (NaN) for lines of
    // three letters or more, -inf + inf (NaN, with its sign bit set on x86) for one letter,
    // 0.0 for two.
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: floats\nsource:\n  type: file\n  path: lines.txt\ntransforms:\n  - {type: with_column, name: z, expr: \"(length(line) - 2) * 0.0\"}\n  - {type: with_column, name: m, expr: \"(length(line) - 2) * 1e308 * 10 - (length(line) - 2) * 1e308 * 10\"}\n  - type: aggregate\n    by: [z, m]\n    aggs: {rows: count()}\n  - {type: sort, by: [m desc, z]}\nsinks:\n  - type: stdout\n",
    );
    let rows = same_on_both(&remote, &pipeline, &[]);
    assert_eq!(rows, "z,m,rows\n0.0,NaN,15\n0.0,0.0,5\n");
}

#[test]
fn integer_sums_and_averages_are_exact_overflow_fails_and_min_max_of_zeros_agree() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "avg.txt", "bb\na\na\n");
    // Summed as doubles, Spark's own avg gives 3002399751580330.5 here.
    let average = write(
        dir.path(),
        "avg.yaml",
        "name: avg\nsource: {type: file, path: avg.txt}\ntransforms:\n  - {type: with_column, name: v, expr: \"(length(line) - 1) * 9007199254740991 + 1\"}\n  - {type: aggregate, aggs: {a: avg(v)}}\nsinks:\n  - type: stdout\n",
    );
    assert_eq!(
        same_on_both(&remote, &average, &[]),
        "a\n3002399751580331.5\n"
    );
    // A running total past i64 whose end fits: Spark's own sum fails on it.
    write(dir.path(), "sum.txt", "bb\nbb\n\n");
    let sum = write(
        dir.path(),
        "sum.yaml",
        "name: sum\nsource: {type: file, path: sum.txt}\ntransforms:\n  - {type: with_column, name: v, expr: \"length(line) * 4611686018427387903 - 4000000000000000000\"}\n  - {type: aggregate, aggs: {s: sum(v)}}\nsinks:\n  - type: stdout\n",
    );
    assert_eq!(same_on_both(&remote, &sum, &[]), "s\n6446744073709551612\n");
    // A total past i64 fails on both engines (Spark 3 would wrap it without ANSI mode); each
    // value fits.
    write(dir.path(), "over.txt", "bb\nbb\nbb\n");
    let over = write(
        dir.path(),
        "over.yaml",
        "name: over\nsource: {type: file, path: over.txt}\ntransforms:\n  - {type: with_column, name: v, expr: \"length(line) * 4611686018427387903\"}\n  - {type: aggregate, aggs: {s: sum(v)}}\nsinks:\n  - type: stdout\n",
    );
    for engine in [None, Some(remote.as_str())] {
        let mut command = runner();
        command.arg("run").arg(&over);
        if let Some(remote) = engine {
            command.args(["--remote", remote]);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{engine:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
        assert!(
            stderr.contains("overflow") && !stderr.contains("with_column"),
            "{engine:?}: {stderr}"
        );
    }
    // Lengths multiply as 64-bit integers there too (Spark's char_length is 32-bit).
    write(dir.path(), "long.txt", &format!("{}\n", "x".repeat(46_341)));
    let squared = write(
        dir.path(),
        "squared.yaml",
        "name: squared\nsource: {type: file, path: long.txt}\ntransforms:\n  - {type: with_column, name: sq, expr: \"length(line) * length(line)\"}\n  - {type: aggregate, aggs: {sq: max(sq)}}\nsinks:\n  - type: stdout\n",
    );
    assert_eq!(same_on_both(&remote, &squared, &[]), "sq\n2147488281\n");
    // -0.0 and 0.0 are one value to min and max: 0.0 whatever the order.
    for (name, lines) in [("zeros.txt", "a\nbb\n"), ("swapped.txt", "bb\na\n")] {
        write(dir.path(), name, lines);
        let zeros = write(
            dir.path(),
            "zeros.yaml",
            &format!("name: zeros\nsource: {{type: file, path: {name}}}\ntransforms:\n  - {{type: with_column, name: z, expr: \"(length(line) % 2 - 0.5) * 0.0\"}}\n  - {{type: aggregate, aggs: {{low: min(z), high: max(z)}}}}\nsinks:\n  - type: stdout\n"),
        );
        assert_eq!(
            same_on_both(&remote, &zeros, &[]),
            "low,high\n0.0,0.0\n",
            "{name}"
        );
    }
}

/// An integer against a float is compared as floats on both engines (2^53 + 1 is 2^53 as a
/// float), in `==` and in an `in` list that holds a float.
#[test]
fn integers_against_floats_compare_as_floats_on_both_engines() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "lines.txt", "x\n\nyy\n");
    let pipeline = write(
        dir.path(),
        "compare.yaml",
        "name: compare\nsource: {type: file, path: lines.txt}\ntransforms:\n  - {type: with_column, name: v, expr: \"length(line) + 9007199254740992\"}\n  - {type: with_column, name: eq, expr: \"v == 9007199254740992.0\"}\n  - {type: with_column, name: listed, expr: \"v in [9007199254740992, 0.5]\"}\n  - {type: select, columns: [v, eq, listed]}\n  - {type: sort, by: [v]}\nsinks:\n  - type: stdout\n",
    );
    assert_eq!(
        same_on_both(&remote, &pipeline, &[]),
        "v,eq,listed\n9007199254740992,true,true\n9007199254740993,true,true\n9007199254740994,false,false\n"
    );
}

#[test]
fn lines_end_at_newlines_on_spark_too_byte_order_mark_and_carriage_returns_included() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "cr.txt",
        "\u{feff}bom first\r\nwin line\r\nmac\rline\rend\nlast",
    );
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: lines\nsource: {type: file, path: cr.txt}\ntransforms:\n  - {type: with_column, name: n, expr: \"length(line)\"}\n  - {type: aggregate, by: [line], aggs: {n: max(n), rows: count()}}\nsinks:\n  - type: stdout\n",
    );
    let rows = same_on_both(&remote, &pipeline, &[]);
    assert_eq!(
        rows,
        "line,n,rows\nbom first,9,1\nlast,4,1\n\"mac\rline\rend\",12,1\nwin line,8,1\n"
    );
    // Bytes that are not UTF-8: replaced on both engines, as `encoding_errors: replace` says.
    std::fs::write(dir.path().join("cr.txt"), b"ok\nbad \xff here\nok\n").unwrap();
    let rows = same_on_both(&remote, &pipeline, &[]);
    assert_eq!(rows, "line,n,rows\nbad \u{fffd} here,10,1\nok,2,2\n");
}

#[test]
fn a_file_whose_name_reads_as_a_glob_is_that_file_on_spark_too() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data[1].txt", &"right\n".repeat(3));
    // What Hadoop's glob `data[1].txt` would read instead.
    write(dir.path(), "data1.txt", "wrong\n");
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: bracket\nsource:\n  type: file\n  path: \"data[1].txt\"\ntransforms:\n  - {type: group_count, by: line}\nsinks:\n  - type: stdout\n",
    );
    let rows = same_on_both(&remote, &pipeline, &[]);
    assert_eq!(rows, "line,count\nright,3\n");

    // A name with `:`, which Hadoop reads as a URI's scheme: refused before anything runs.
    std::fs::create_dir(dir.path().join("at:10")).unwrap();
    write(&dir.path().join("at:10"), "f.txt", "x\n");
    let colon = write(
        dir.path(),
        "colon.yaml",
        "name: colon\nsource: {type: file, path: \"*/f.txt\"}\ntransforms:\n  - {type: group_count, by: line}\nsinks:\n  - type: stdout\n",
    );
    let output = runner()
        .args(["run", "--remote", &remote])
        .arg(&colon)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("a `:` in a name it lists"),
        "{output:?}"
    );
    std::fs::remove_dir_all(dir.path().join("at:10")).unwrap();

    // A folder so named, holding the files of a glob.
    std::fs::create_dir(dir.path().join("in[1]")).unwrap();
    std::fs::create_dir(dir.path().join("in1")).unwrap();
    write(&dir.path().join("in[1]"), "a.txt", &"right\n".repeat(2));
    write(&dir.path().join("in1"), "a.txt", "wrong\n");
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: bracket\nsource:\n  type: file\n  path: \"in[1]/*.txt\"\ntransforms:\n  - {type: group_count, by: line}\nsinks:\n  - type: stdout\n",
    );
    let rows = same_on_both(&remote, &pipeline, &[]);
    assert_eq!(rows, "line,count\nright,2\n");
}

/// The test plugin `min_length`, built once into target/plugin-tests (as tests/plugins.rs does).
fn min_length_plugin() -> PathBuf {
    let target = repo_root().join("target").join("plugin-tests");
    let out = nested_cargo()
        .args(["build", "-p", "min_length", "--target-dir"])
        .arg(&target)
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug/libmin_length.so")
}

#[test]
fn a_plugin_runs_here_after_the_aggregation_and_is_refused_before_it() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let Some(play) = romeo_text() else { return };
    let plugin = min_length_plugin();
    let pipeline = repo_root().join("pipelines/romeo.yaml");
    let step = format!(
        "{{type: plugin, path: {}, config: {{column: word, min: 6}}}}",
        plugin.display()
    );
    // After the aggregation: Spark counts, the plugin runs here on the collected rows.
    let rows = same_answer(
        &remote,
        &pipeline,
        &[
            format!("source.path={}", play.display()),
            format!("transforms.5={step}"),
        ],
    );
    assert!(
        rows.starts_with("word,count\njuliet,178\ncapulet,141\n"),
        "{rows}"
    );
    // Before it: refused at validation, with the reason, before anything runs.
    let output = runner()
        .args(["run", "pipelines/romeo.yaml", "--remote", &remote])
        .arg("--set")
        .arg(format!("source.path={}", play.display()))
        .arg("--set")
        .arg(format!("transforms.1={step}"))
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("transforms.1 (plugin) before the aggregation cannot run on Spark")
            && stderr.contains("executors cannot load"),
        "{stderr}"
    );
    // `runner plan` says the same without loading the library.
    let output = runner()
        .args(["plan", "pipelines/romeo.yaml", "--remote", &remote])
        .arg("--set")
        .arg(format!("transforms.1={step}"))
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[test]
fn a_result_over_max_collect_rows_fails_clearly() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let Some(play) = romeo_text() else { return };
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("out.csv");
    std::fs::write(&csv, "earlier,result\n").unwrap();
    let output = runner()
        .args(["run", "pipelines/romeo.yaml", "-q", "--remote", &remote])
        .arg("--set")
        .arg(format!("source.path={}", play.display()))
        .args(["--set", "transforms.3.where=count >= 1"])
        .args(["--set", "engine={type: spark, max_collect_rows: 1000}"])
        .arg("--set")
        .arg(format!("sinks=[{{type: csv, path: {}}}]", csv.display()))
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("more than 1000 rows (engine.max_collect_rows)"),
        "{stderr}"
    );
    // The earlier output is untouched.
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), "earlier,result\n");
}

#[test]
fn spark_down_is_a_clear_error_naming_the_address() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "a b c\n");
    let output = runner()
        .args(["run", "pipelines/romeo.yaml", "-q"])
        .arg("--remote")
        .arg(format!("sc://127.0.0.1:{port}"))
        .arg("--input")
        .arg(&input)
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot reach Spark Connect at sc://127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn plan_shows_the_spark_program_and_what_runs_where() {
    let output = runner()
        .args(["plan", "pipelines/romeo.yaml", "--engine", "spark"])
        .env(
            "SPARK_REMOTE",
            "sc://spark-master:15002/;use_ssl=true;token=s3cr3t-token",
        )
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "engine    Spark Connect at sc://spark-master:15002/;use_ssl=true",
        "on Spark  source, transforms.0 (tokenize), transforms.1 (stopwords), transforms.2 (group_count), transforms.3 (filter), transforms.4 (sort)",
        "spark.read.text(\"file://",
        ".groupBy(\"word\").agg(count(1).alias(\"count\"))",
        ".filter((col(\"count\") >= 60))",
        "here      sinks, on Spark's result",
        "every Spark executor must see it",
        "transforms.0    tokenize [on Spark]",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("s3cr3t"), "{text}");
    // --engine local wins over the file and the environment.
    let output = runner()
        .args(["plan", "pipelines/romeo.yaml", "--engine", "local"])
        .env("SPARK_REMOTE", "sc://spark-master:15002")
        .current_dir(repo_root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("word_count_kernel") && !text.contains("Spark"),
        "{text}"
    );
}

#[test]
fn what_spark_cannot_run_is_refused_at_validation_with_the_alternative() {
    for (pipeline, args, expected) in [
        (
            "pipelines/hashtags_replay.yaml",
            vec![],
            "source (replay) cannot run on Spark: Spark has no Mastodon reader; run `runner run pipelines/toots_to_socket.yaml`",
        ),
        (
            "pipelines/romeo.yaml",
            vec!["--set", "transforms.1={type: filter, where: 'word matches \"(?m)^a\"'}"],
            "`matches`: `^ in multi-line mode` (a line anchor or word boundary) reads differently in Java",
        ),
        (
            "pipelines/romeo.yaml",
            vec!["--remote", "http://spark:15002"],
            "is not a Spark Connect address",
        ),
        (
            "pipelines/romeo.yaml",
            vec!["--remote", "sc://spark:15002/;token=s3cr3t-token"],
            "would travel unencrypted",
        ),
    ] {
        let output = runner()
            .args(["plan", pipeline, "--engine", "spark"])
            .args(&args)
            .env("SPARK_REMOTE", "sc://127.0.0.1:15002")
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{pipeline} {args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{pipeline} {args:?}: {stderr}");
        assert!(!stderr.contains("s3cr3t"), "{stderr}");
    }
    // `runner validate` checks the translation of a file that says `engine: spark`.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "a b\n");
    let file = write(
        dir.path(),
        "p.yaml",
        "name: v\nengine: {type: spark, remote: \"sc://spark-master:15002\"}\nsource: {type: file, path: in.txt}\ntransforms:\n  - {type: tokenize}\n  - {type: filter, where: 'word matches \"(?m)x$\"'}\n  - {type: group_count, by: word}\nsinks: [{type: stdout}]\n",
    );
    let output = runner().arg("validate").arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "p.yaml:6:5: transforms.1 (filter) before the aggregation cannot run on Spark"
        ),
        "{stderr}"
    );
    // A file Spark's listing would pass by (its name starts with `_`): refused, not read as
    // empty.
    write(dir.path(), "_part.txt", "a b\n");
    let hidden = write(
        dir.path(),
        "hidden.yaml",
        "name: h\nsource: {type: file, path: _part.txt}\nsinks: [{type: stdout}]\n",
    );
    let output = runner()
        .arg("plan")
        .arg(&hidden)
        .args(["--engine", "spark", "--remote", "sc://127.0.0.1:15002"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Spark passes by files whose names start with `_` or `.`"),
        "{stderr}"
    );
    // No address anywhere.
    let output = runner()
        .args(["plan", "pipelines/romeo.yaml", "--engine", "spark"])
        .env_remove("SPARK_REMOTE")
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--remote sc://host:15002"));
}

/// A line server for one client: sends `text`, then keeps the connection open until the
/// returned sender is dropped or sent to (Spark's socket source reads from a server, as the
/// chapter's forwarder is one). Returns its port.
fn line_server(text: String, close_after_sending: bool) -> (u16, std::sync::mpsc::Sender<()>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Ok((mut client, _)) = listener.accept() else {
            return;
        };
        let _ = client.write_all(text.as_bytes());
        let _ = client.flush();
        if !close_after_sending {
            let _ = finished.recv();
        }
    });
    (port, done)
}

fn hashtag_lines() -> String {
    let tags = ["#rust", "#spark", "#arrow", "#ai", "#Rust", "#data"];
    let mut text = String::new();
    for i in 0..3000usize {
        let line: Vec<&str> = (0..1 + i % 4)
            .map(|j| tags[(i * 7 + j * 3) % tags.len()])
            .collect();
        text.push_str(&line.join(" "));
        text.push('\n');
    }
    text
}

#[test]
fn a_socket_stream_counted_by_spark_equals_the_local_count() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pipeline = repo_root().join("pipelines/hashtags_socket.yaml");
    let lines = hashtag_lines();
    let sets = |port: u16, csv: &Path| -> Vec<String> {
        vec![
            format!("source.port={port}"),
            "source.host=127.0.0.1".into(),
            "trigger.processing_time=500ms".into(),
            format!("sinks=[{{type: csv, path: {}}}]", csv.display()),
        ]
    };
    // The local engine: the server closes after sending, the stream ends with the source.
    let (port, _server) = line_server(lines.clone(), true);
    let local_csv = dir.path().join("local.csv");
    let mut local = runner();
    local
        .arg("run")
        .arg(&pipeline)
        .args(["-q", "--engine", "local"]);
    for set in sets(port, &local_csv) {
        local.arg("--set").arg(set);
    }
    let output = local.current_dir(repo_root()).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let expected = std::fs::read_to_string(&local_csv).unwrap();
    assert!(expected.lines().count() == 7, "{expected}");

    // On Spark: the same lines; runner writes the CSV after every Spark batch. Once it holds
    // the local answer, SIGTERM stops the run (and Spark's query) cleanly.
    let (port, server) = line_server(lines, false);
    let spark_csv = dir.path().join("spark.csv");
    let binary = assert_cmd::cargo::cargo_bin("runner");
    let mut child = std::process::Command::new(binary);
    child
        .arg("run")
        .arg(&pipeline)
        .args(["--remote", &remote, "--progress", "json"])
        .env("RUNNER_LOCK_DIR", unique_lock_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for set in sets(port, &spark_csv) {
        child.arg("--set").arg(set);
    }
    let mut child = child.current_dir(repo_root()).spawn().unwrap();
    // Every stderr line as it comes: an epoch's progress line is written after its sinks.
    let stderr = child.stderr.take().unwrap();
    let (line_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut log = String::new();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let line = match lines_rx.recv_timeout(remaining) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("Spark's count never reached the local one: {log}")
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("runner ended before Spark's count reached the local one: {log}")
            }
        };
        log.push_str(&line);
        log.push('\n');
        if line.contains("\"batchId\"")
            && std::fs::read_to_string(&spark_csv).unwrap_or_default() == expected
        {
            break;
        }
    }
    // kill(1) with SIGTERM asks runner to stop, as Ctrl-C would.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The rest of stderr, to its end (the process closing it).
    log.extend(lines_rx.iter().map(|line| line + "\n"));
    let status = child.wait().unwrap();
    drop(server);
    assert_eq!(std::fs::read_to_string(&spark_csv).unwrap(), expected);
    assert!(status.success(), "{status}: {log}");
    // Spark's batches were reported, numbered by Spark, with their rows.
    assert!(log.contains("\"batchId\":1,"), "{log}");
    let rows: u64 = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("numInputRows").and_then(|n| n.as_u64()))
        .sum();
    assert_eq!(rows, 3000, "every line was counted once: {log}");
    assert!(log.contains("stopped (interrupted)"), "{log}");
}

#[test]
fn the_run_summary_says_what_ran_on_spark_and_counts_what_ran_here() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let Some(play) = romeo_text() else { return };
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let output = runner()
        .args(["run", "pipelines/romeo.yaml", "-q", "--remote", &remote])
        .arg("--set")
        .arg(format!("source.path={}", play.display()))
        // A multi-line anchor has no Java twin: the filter runs here, on Spark's result.
        .args([
            "--set",
            "transforms.3.where=word matches \"(?m)^[a-r]\" and count >= 60",
        ])
        .arg("--set")
        .arg(format!(
            "sinks=[{{type: csv, path: {}}}]",
            dir.path().join("c.csv").display()
        ))
        .arg("--summary")
        .arg(&summary)
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(summary["engine"]["type"], "spark");
    assert_eq!(summary["engine"]["remote"], remote.as_str());
    assert_eq!(
        summary["engine"]["on_spark"],
        serde_json::json!([
            "transforms.0 (tokenize)",
            "transforms.1 (stopwords)",
            "transforms.2 (group_count)"
        ])
    );
    let stages = summary["stages"].as_array().unwrap();
    let steps: Vec<&str> = stages.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["source", "transforms.3", "transforms.4", "sinks.0"]);
    assert_eq!(stages[0]["type"], "spark");
    // Every distinct word came back; the filter kept those from a to r with 60 or more.
    assert_eq!(stages[0]["rows_out"], 3734);
    assert_eq!(stages[1]["rows_in"], 3734);
    let kept = stages[1]["rows_out"].as_u64().unwrap();
    assert!(kept > 0 && kept < 25, "{summary}");
    assert_eq!(summary["rows_out"].as_u64(), Some(kept));
}

#[test]
fn a_peer_that_is_not_spark_connect_is_a_clear_error() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        // An HTTP/1 answer with a terminal escape, then the connection closed: not gRPC.
        for client in listener.incoming().take(4) {
            let Ok(mut client) = client else { continue };
            let _ = client.write_all(b"HTTP/1.1 200 OK\r\n\r\n\x1b[2J\x1b[31mgarbage");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "a b c\n");
    let output = runner()
        .args(["run", "pipelines/romeo.yaml", "-q"])
        .arg("--remote")
        .arg(format!("sc://127.0.0.1:{port}"))
        .arg("--input")
        .arg(&input)
        .current_dir(repo_root())
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot talk to Spark Connect at sc://127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn computed_columns_select_rename_and_drop_translate_exactly() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let Some(play) = romeo_text() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write(
        dir.path(),
        "records.yaml",
        &format!(
            "name: records\nsource: {{type: file, path: {}}}\ntransforms:\n  - {{type: tokenize}}\n  - {{type: with_column, name: len, expr: \"length(word)\"}}\n  - {{type: filter, where: \"len >= 7 or word in [\\\"love\\\", \\\"hate\\\"]\"}}\n  - {{type: group_count, by: [len, word]}}\n  - {{type: with_column, name: share, expr: \"count * 100 / 7 - len % 3\"}}\n  - {{type: select, columns: [word, len, count, share, \"count > 20 and len < 9 as common\"]}}\n  - {{type: rename, columns: {{word: w}}}}\n  - {{type: drop, columns: [len]}}\n  - {{type: sort, by: [count desc, w]}}\n  - {{type: limit, n: 40}}\nsinks: [{{type: stdout}}]\n",
            play.display()
        ),
    );
    let rows = same_on_both(&remote, &pipeline, &[]);
    assert!(rows.starts_with("w,count,share,common\n"), "{rows}");
    assert_eq!(rows.lines().count(), 41, "{rows}");
}

#[test]
fn aggregates_whose_answer_is_order_free_translate_exactly() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let Some(play) = romeo_text() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pipeline = |name: &str, aggregate: &str| {
        write(
            dir.path(),
            name,
            &format!(
                "name: agg\nsource: {{type: file, path: {}}}\ntransforms:\n  - {{type: tokenize}}\n  - {{type: with_column, name: len, expr: \"length(word)\"}}\n  - {aggregate}\nsinks: [{{type: stdout}}]\n",
                play.display()
            ),
        )
    };
    // Keys as expressions, every order-free aggregate, ordered by key as runner orders them.
    let by_length = pipeline(
        "by_length.yaml",
        "{type: aggregate, by: [\"len % 5 as bucket\", \"len > 6 as long\"], aggs: {n: count(), words: count_distinct(word), letters: sum(len), mean: avg(len), first_word: min(word), last_word: max(word), longest: max(len)}}",
    );
    let rows = same_on_both(&remote, &by_length, &[]);
    assert!(
        rows.starts_with("bucket,long,n,words,letters,mean,first_word,last_word,longest\n"),
        "{rows}"
    );
    // No keys: one row.
    let total = pipeline(
        "total.yaml",
        "{type: aggregate, aggs: {n: count(), distinct: count_distinct(word)}}",
    );
    assert_eq!(same_on_both(&remote, &total, &[]).lines().count(), 2);
    // What depends on the order rows arrive in is refused, with the reason.
    let ordered = pipeline(
        "ordered.yaml",
        "{type: aggregate, by: len, aggs: {first: first(word)}}",
    );
    let output = runner()
        .args(["plan", "--remote", &remote])
        .arg(&ordered)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("follow input order"),
        "{output:?}"
    );
}

#[test]
fn a_missing_input_with_fetch_is_downloaded_here_before_spark_reads_it() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let Some(play) = romeo_text() else { return };
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("downloaded/play.txt");
    let run = |url: &str| {
        runner()
            .args(["run", "pipelines/romeo.yaml", "-q", "--remote", &remote])
            .arg("--set")
            .arg(format!("source.path={}", target.display()))
            .arg("--set")
            .arg(format!("source.fetch.url={url}/play.txt"))
            .arg("--set")
            .arg(format!(
                "sinks=[{{type: csv, path: {}}}]",
                dir.path().join("c.csv").display()
            ))
            .current_dir(repo_root())
            .output()
            .unwrap()
    };
    // A failed download is a run-time error (exit 1), not a refusal.
    let failed = run(&http_server("404 Not Found", b"gone".to_vec(), 4));
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    assert!(!String::from_utf8_lossy(&failed.stderr).contains("cannot run on Spark"));
    let served = run(&http_server("200 OK", std::fs::read(&play).unwrap(), 1));
    assert!(served.status.success(), "{served:?}");
    assert!(target.is_file());
    let rows = std::fs::read_to_string(dir.path().join("c.csv")).unwrap();
    assert!(
        rows.starts_with("word,count\nromeo,298\n") && rows.lines().count() == 26,
        "{rows}"
    );
}

#[test]
fn text_functions_conditions_and_rounding_translate_exactly() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Separators at the edges and doubled, the empty line, Unicode's spaces (and U+001C, which
    // is not one), `\Q`/`\E` (how Spark's separator is quoted), characters past the BMP.
    let lines = [
        "",
        "a,b,,c,",
        ",lead",
        "  padded\u{a0}",
        "\u{2003}em space\u{3000}",
        "\u{1c}file sep\u{1c}",
        "\tTab\t",
        "héllo wörld",
        "日本語,テキスト",
        "x",
        "a\\Eb,c\\Q",
        "ends,with,,",
        "Straße",
        "  ",
        "🙂 emoji,🙃",
    ];
    write(dir.path(), "in.txt", &(lines.join("\n") + "\n"));
    let texts = write(
        dir.path(),
        "texts.yaml",
        r#"name: texts
source: {type: file, path: in.txt}
transforms:
  - {type: with_column, name: pieces, expr: "split(line, ',')"}
  - {type: with_column, name: chars, expr: "split(line, '')"}
  - {type: with_column, name: n_pieces, expr: "length(pieces)"}
  - {type: explode, column: pieces, as: piece, drop_empty: false}
  - {type: explode, column: chars, as: ch, drop_empty: false}
  - {type: with_column, name: t, expr: "trim(piece)"}
  - {type: with_column, name: s, expr: "substr(piece, -3, 2) || '|' || substr(piece, 2) || '|' || substr(piece, 0, 1)"}
  - {type: with_column, name: big, expr: "if(length(t) > 3, upper(t), if(t == '', null, t))"}
  - {type: aggregate, by: [piece, ch, t, s, big, n_pieces], aggs: {n: count()}}
sinks: [{type: stdout}]
"#,
    );
    let rows = same_on_both(&remote, &texts, &[]);
    // The empty line is one empty piece and one empty character, as Spark splits it.
    assert!(rows.contains("\n\"\",\"\",\"\",||,,1,1\n"), "{rows}");
    // Trimmed of Unicode's spaces, not of U+001C.
    assert!(rows.contains(",em space,"), "{rows}");
    assert!(rows.contains(",\u{1c}file sep\u{1c},"), "{rows}");

    // Halves, and values whose shortest decimal ends in 5 though the float is below it.
    let numbers: String = (0..400).map(|n| "x".repeat(n) + "\n").collect();
    write(dir.path(), "lengths.txt", &numbers);
    let rounding = write(
        dir.path(),
        "rounding.yaml",
        r#"name: rounding
source: {type: file, path: lengths.txt}
transforms:
  - {type: with_column, name: n, expr: "length(line)"}
  - {type: select, columns: [n, "round(n / 8, 2) as a", "round(n * 1.005, 2) as b", "round(n / 3, 5) as c", "round(n * 0.1 + 0.05, 1) as d", "round(n * 1000000000000000 / 7, -3) as e", "round(-n / 8, 2) as f", "round(n * 2.675, 2) as g", "round(n * 0.0001 + 0.00005, 4) as h", "round(n * 12345, -2) as i", "round(n / 7 * 1e-10, 12) as j", "round(n / 8) as k", "round(n * 1.5e30, -18) as l"]}
  - {type: aggregate, by: [n, a, b, c, d, e, f, g, h, i, j, k, l], aggs: {rows: count()}}
sinks: [{type: stdout}]
"#,
    );
    let rows = same_on_both(&remote, &rounding, &[]);
    assert_eq!(rows.lines().count(), 401, "{rows}");
    // 1.005 is a little below 1.005 as a float; both round its decimal half up.
    assert!(rows.contains("\n1,0.13,1.01,"), "{rows}");
}

#[test]
fn casts_between_numbers_bools_and_texts_translate_exactly() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Texts that read as a number, a bool, both or neither, each way Spark's cast and
    // runner's could part: signs, spaces and control characters around, a no-break space,
    // fractions, exponents, the integers' edges and past them, other digits, the bool words.
    let texts = [
        "0",
        "1",
        "-1",
        "+1",
        "007",
        " 42 ",
        "\t42",
        "42\u{a0}",
        "1.5",
        "-1.5",
        "1.",
        ".5",
        "1e3",
        "1.5d",
        "0x10",
        "inf",
        "nan",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "9223372036854775807.9",
        "1_000",
        "1,000",
        "٣",
        "１",
        "true",
        "false",
        "TRUE",
        "t",
        "F",
        "yes",
        "No",
        "y",
        "n",
        "on",
        "2",
        "-0",
        "",
        "  ",
        "abc",
        "1 2",
        "\u{1} 7 \u{1f}",
        "-",
        "+",
    ];
    write(dir.path(), "texts.txt", &(texts.join("\n") + "\n"));
    let casts = write(
        dir.path(),
        "casts.yaml",
        r#"name: casts
source: {type: file, path: texts.txt}
transforms:
  - {type: select, columns: [line, "try_cast(line as integer) as i", "try_cast(line as bool) as b", "cast(try_cast(line as integer) as float) as i_f", "cast(try_cast(line as integer) as text) as i_t", "cast(try_cast(line as bool) as text) as b_t", "cast(try_cast(line as bool) as integer) as b_i", "cast(try_cast(line as bool) as float) as b_f", "try_cast(try_cast(line as integer) as bool) as i_b"]}
  - {type: with_column, name: x, expr: "i * 1.0"}
  - {type: with_column, name: x_i, expr: "try_cast(x as integer)"}
  - {type: with_column, name: eighth_i, expr: "try_cast(i / -8 as integer)"}
  - {type: with_column, name: eighth_b, expr: "try_cast(i / 8 as bool)"}
  - {type: aggregate, by: [line, i, b, i_f, i_t, b_t, b_i, b_f, i_b, x, x_i, eighth_i, eighth_b], aggs: {n: count()}}
sinks: [{type: stdout}]
"#,
    );
    let rows = same_on_both(&remote, &casts, &[]);
    assert_eq!(rows.lines().count(), texts.len() + 1, "{rows}");
    // i64::MAX as a float is 2^63, past the integers: null in both (Spark's own check would
    // give i64::MAX).
    assert!(
        rows.contains("\n9223372036854775807,9223372036854775807,,9.223372036854776e18,9223372036854775807,,,,true,9.223372036854776e18,,-1152921504606846976,true,1\n"),
        "{rows}"
    );
    // Texts to floats as Java's `parseDouble` and then Spark read them: hexadecimal digits,
    // type suffixes, Java's and Spark's spellings of infinity and NaN, the doubles' edges
    // (rounding ties, below the normal range, past the largest), and random decimal and
    // hexadecimal numbers (a fixed generator: the same texts each run).
    let mut floats: Vec<String> = [
        "-nan",
        "-NaN",
        "NAN",
        "+NaN",
        "Infinity",
        "-INFINITY",
        "+inf",
        "0x1p3",
        "0X1P-2",
        "0x1.8p1",
        "-0x1p3d",
        "0x10",
        "1.5d",
        "0.1F",
        "1.5dd",
        " 1.5d ",
        "1e",
        "1.e2",
        ".e2",
        "+.5",
        "1E400",
        "1e-400",
        "1.5 d",
        "NaNd",
        "0x.p1",
        "0x1.p1",
        "0x.8p1",
        "0x1.00000000000008p0",
        "0x1.000000000000080000001p0",
        "0x1.00000000000018p0",
        "0x1p-1074",
        "0x1p-1075",
        "0x1.0000001p-1075",
        "0x1.8p-1074",
        "0x1.ffffffffffffe8p-1023",
        "0x1.fffffffffffff8p1023",
        "0x1p99999999999999999999",
        "0x3.3333333333333333333p-2",
        "2.4703282292062328e-324",
        "2.4703282292062327e-324",
        "1.7976931348623159e308",
        "9007199254740993",
    ]
    .map(String::from)
    .to_vec();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let digits = |next: &mut dyn FnMut(u64) -> u64, alphabet: &[u8], count: u64| -> String {
        (0..1 + next(count))
            .map(|_| alphabet[next(alphabet.len() as u64) as usize] as char)
            .collect()
    };
    for _ in 0..150 {
        let mut text = digits(&mut next, b"0123456789", 20);
        if next(2) == 0 {
            text = format!("{text}.{}", digits(&mut next, b"0123456789", 20));
        }
        if next(2) == 0 {
            text = format!("{text}e{}{}", ["", "+", "-"][next(3) as usize], next(330));
        }
        floats.push(text);
        let hex = digits(&mut next, b"0123456789abcdefABCDEF", 20);
        let point = next(hex.len() as u64 + 1) as usize;
        floats.push(format!(
            "{}0x{}.{}p{}{}",
            ["", "-"][next(2) as usize],
            &hex[..point],
            &hex[point..],
            ["", "+", "-"][next(3) as usize],
            next(1100)
        ));
    }
    floats.sort();
    floats.dedup();
    write(dir.path(), "floats.txt", &(floats.join("\n") + "\n"));
    let to_floats = write(
        dir.path(),
        "floats.yaml",
        r#"name: floats
source: {type: file, path: floats.txt}
transforms:
  - {type: with_column, name: f, expr: "try_cast(line as float)"}
  - {type: with_column, name: kind, expr: "if(f is null, 'null', if(f != f, 'nan', if(f > 1e308, 'inf', if(f < -1e308, '-inf', 'number'))))"}
  - {type: aggregate, by: [line, f, kind], aggs: {n: count()}}
sinks: [{type: stdout}]
"#,
    );
    let rows = same_on_both(&remote, &to_floats, &[]);
    assert_eq!(rows.lines().count(), floats.len() + 1, "{rows}");
    assert!(rows.contains("\n0x1.8p1,3.0,number,1\n"), "{rows}");
    assert!(rows.contains("\n-nan,,null,1\n"), "{rows}");

    // A cast that fails fails on both engines.
    let failing = write(
        dir.path(),
        "failing.yaml",
        "name: failing\nsource: {type: file, path: texts.txt}\ntransforms:\n  - {type: with_column, name: i, expr: \"cast(line as integer)\"}\n  - {type: group_count, by: [i]}\nsinks: [{type: stdout}]\n",
    );
    for engine in [vec!["--engine", "local"], vec!["--remote", &remote]] {
        let output = runner()
            .arg("run")
            .arg(&failing)
            .args(&engine)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{engine:?}: {stderr}");
        assert!(stderr.contains("cast"), "{engine:?}: {stderr}");
    }
}

#[test]
fn regular_expressions_match_the_same_texts_on_spark() {
    let Some(remote) = spark("RUNNER_SPARK_REMOTE") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Texts where Rust's and Java's readings of a pattern part: line ends other than `\n`
    // inside a line, case folding (ß, the Kelvin sign, ǅ, final sigma, İ, ﬁ, Roman numerals),
    // digits and spaces of other scripts, characters past the BMP.
    let lines = [
        "",
        "abc",
        "a\rc",
        "a\u{85}c",
        "a\u{2028}c",
        "Straße",
        "STRASSE",
        "\u{212a}",
        "k",
        "ǅ",
        "ǆ",
        "Σίσυφος",
        "ΣΊΣΥΦΟΣ",
        "ς",
        "123",
        "١٢٣",
        "\u{ff11}",
        "hello world",
        "hello\u{a0}world",
        "hello\u{2003}world",
        "😀 grin",
        "tab\there",
        "xx",
        "abcd",
        "  ",
        "İstanbul",
        "ﬁ",
        "fi",
        "Ⅸ",
        "ⅸ",
        "i\u{307}",
    ];
    write(dir.path(), "lines.txt", &(lines.join("\n") + "\n"));
    let patterns = [
        r"^[a-z]+$",
        r"\d+",
        r"^.$",
        r"(?i)straße",
        r"(?i)k",
        r"\w+\s\w+",
        r"^$",
        r"a.c",
        r"^.*$",
        r"\p{Greek}",
        r"[[:alpha:]]",
        r"(a|ab)(c|bcd)",
        r"^x*$",
        r"\x{1F600}",
        r"^[^a]",
        r"(?i)ǆ",
        r"(?i)σ",
        r"^\s*$",
        r"(?i)ﬁ",
        r"(?i)ⅸ",
        r"(?i)İ",
        r"(?s)a.c",
        r"[\p{L}&&\p{Lu}]",
        r"[a-z--[aeiou]]+",
        r"\W",
        r"(?i)[a-c]+d",
        r"x{2}",
        r"(?U)a+?",
        r"[^\x00-\x{10FFFF}]",
    ];
    let matches: Vec<String> = patterns
        .iter()
        .map(|p| format!("line matches '{}'", p.replace('\\', "\\\\")))
        .collect();
    let pipeline = counted_by_line(
        dir.path(),
        "matches",
        &matches,
        "  - {type: filter, where: \"line not matches '^ab'\"}\n",
    );
    let rows = same_on_both(&remote, &pipeline, &[]);
    assert_eq!(rows.lines().count(), lines.len() - 1, "{rows}");
    // `.` takes a `\r` in Rust's reading, and so on Spark: `a.c` matches it.
    let carriage = rows
        .lines()
        .find(|row| row.starts_with("\"a\rc\""))
        .unwrap_or_else(|| panic!("{rows}"));
    assert_eq!(carriage.split(',').nth(8), Some("true"), "{carriage}");

    // What groups capture, where no group is repeated (a repeated one is refused: Java's
    // backtracking may keep what a failed attempt captured).
    let extracts = [
        (r"(a|ab)(c|bcd)(d*)", 2),
        (r"(a|ab)(c|bcd)(d*)", 3),
        (r"(\d+)\D+(\d+)", 2),
        (r"(?i)(s+)", 1),
        (r"(.)(.)", 2),
        (r"(a+?)(a*)", 2),
        (r"(\p{Greek}+)", 1),
        (r"()", 1),
        (r"(a)|(b)", 2),
        (r"(\S)\S*$", 1),
        (r"(?i)(k\d)", 1),
        (r"(.*?)(\d*)$", 2),
        (r"(.+)(.+)", 1),
        (r"(\w+)\W+(\w+)", 0),
    ];
    let extracts: Vec<String> = extracts
        .iter()
        .map(|(p, group)| {
            format!(
                "regex_extract(line, '{}', {group})",
                p.replace('\\', "\\\\")
            )
        })
        .collect();
    let pipeline = counted_by_line(dir.path(), "extracts", &extracts, "");
    let rows = same_on_both(&remote, &pipeline, &[]);
    assert_eq!(rows.lines().count(), lines.len() + 1, "{rows}");
    // `abcd`: `a`, then `bcd` (the first alternative that lets the match go on), then `d*` empty.
    assert!(rows.contains("\nabcd,bcd,\"\","), "{rows}");
}

/// A pipeline over `lines.txt` in `dir`: each line with the value of each expression (as
/// `c0`, `c1`, ...), `between` (steps, as YAML lines), then the rows counted by all of them.
fn counted_by_line(dir: &Path, name: &str, expressions: &[String], between: &str) -> PathBuf {
    let columns: String = expressions
        .iter()
        .enumerate()
        .map(|(i, expr)| {
            let expr = format!("{expr} as c{i}");
            format!("      - {}\n", serde_json::to_string(&expr).unwrap())
        })
        .collect();
    let keys: Vec<String> = (0..expressions.len()).map(|i| format!("c{i}")).collect();
    write(
        dir,
        &format!("{name}.yaml"),
        &format!(
            "name: {name}\nsource: {{type: file, path: lines.txt}}\ntransforms:\n  - type: select\n    columns:\n      - line\n{columns}{between}  - {{type: aggregate, by: [line, {}], aggs: {{n: count()}}}}\nsinks: [{{type: stdout}}]\n",
            keys.join(", ")
        ),
    )
}
