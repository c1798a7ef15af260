//! Malformed pipeline files: each gets exit code 2 and a message that says where and what.

mod common;
use common::*;

const SOURCE: &str = "source:\n  type: file\n  path: in.txt\n";
const SINKS: &str = "sinks:\n  - type: stdout\n";

/// (what is wrong, the file, substrings the error must contain)
fn cases() -> Vec<(&'static str, String, Vec<&'static str>)> {
    vec![
        ("misspelled top-level key", format!("name: t\n{SOURCE}tranforms: []\n{SINKS}"),
            vec!["p.yaml:5:1:", "unknown field `tranforms`, did you mean `transforms`?"]),
        ("misspelled key in a transform", format!("name: t\n{SOURCE}transforms:\n  - type: tokenize\n    lowercas: true\n{SINKS}"),
            vec!["p.yaml:7:5:", "did you mean `lowercase`?"]),
        ("unknown transform type", format!("name: t\n{SOURCE}transforms:\n  - type: tokenise\n{SINKS}"),
            vec!["p.yaml:6:5:", "unknown transform type `tokenise`, did you mean `tokenize`?"]),
        ("unknown source type", "name: t\nsource:\n  type: files\n  path: x\nsinks:\n  - type: stdout\n".into(),
            vec!["p.yaml:3:", "unknown source type `files`, did you mean `file`?"]),
        ("unknown sink type", format!("name: t\n{SOURCE}sinks:\n  - type: cvs\n    path: x.csv\n"),
            vec!["p.yaml:6:", "unknown sink type `cvs`, did you mean `csv`?"]),
        ("a second YAML document", format!("name: t\n{SOURCE}{SINKS}---\nname: u\n"),
            vec!["p.yaml:8:1:", "a second YAML document (after `---`) starts here"]),
        ("an unclosed brace", "name: t\nsource: {type: file, path: in.txt\nsinks: [{type: stdout}]\n".into(),
            vec!["p.yaml:3:", "a `{` or `[` opened above is not closed"]),
        ("another tool's name for a key", "name: t\nsource: {type: file, path: in.csv, format: csv, sep: ';'}\nsinks: [{type: stdout}]\n".into(),
            vec!["p.yaml:2:", "unknown field `sep`, did you mean `delimiter`?"]),
        ("too many cores", format!("name: t\ncores: 2000\n{SOURCE}{SINKS}"),
            vec!["p.yaml:2:1: cores: 2000 is more than runner runs on"]),
        ("a stream's key in a batch", format!("name: t\n{SOURCE}max_epochs: 3\n{SINKS}"),
            vec!["p.yaml:5:1: `max_epochs` only applies to `mode: stream`"]),
        ("missing source", format!("name: t\n{SINKS}"),
            vec!["p.yaml:", "the pipeline has no `source:`"]),
        ("missing name", format!("{SOURCE}{SINKS}"),
            vec!["p.yaml: the pipeline has no `name:`"]),
        ("missing type", format!("name: t\nsource:\n  path: in.txt\n{SINKS}"),
            vec!["p.yaml:", "missing `type`"]),
        ("a tab as indentation", format!("name: t\n{SOURCE}transforms:\n  - type: filter\n\twhere: line != 'x'\n{SINKS}"),
            vec!["found a tab: YAML indents with spaces, never tabs"]),
        ("a list item indented off its list", format!("name: t\n{SOURCE}transforms:\n  - type: filter\n    where: line != 'x'\n   - type: sort\n     by: [line]\n{SINKS}"),
            vec!["p.yaml:8:", "line up each key of one map, and each `- ` of one list, in the same column"]),
        ("a CSV file read as lines", format!("name: t\n{SOURCE}transforms:\n  - {{type: filter, where: amount > 1}}\n{SINKS}"),
            vec!["p.yaml:6:", "there is no column `amount` (columns here: line); the rows are lines of text: to read a file's columns, give its source `format: csv`"]),
        ("a type's key with an option beside it", format!("name: t\n{SOURCE}transforms:\n  - aggregate: {{by: [line], aggs: {{n: count()}}}}\n    memory_limit: 1GiB\n{SINKS}"),
            vec!["p.yaml:6:5:", "`aggregate:` names this transform and holds its options, so `memory_limit:` goes under it"]),
        ("a comment cuts an expression", format!("name: t\n{SOURCE}transforms:\n  - type: filter\n    where: line == 'a #b'\n{SINKS}"),
            vec!["this string has no closing quote (YAML takes ` #` as the start of a comment: put the whole expression in double quotes)"]),
        ("empty sinks", format!("name: t\n{SOURCE}sinks: []\n"),
            vec!["`sinks` is empty"]),
        ("wrong type for cores", format!("name: t\ncores: lots\n{SOURCE}{SINKS}"),
            vec!["p.yaml:2:", "cores"]),
        ("wrong type for a bool", format!("name: t\n{SOURCE}transforms:\n  - type: tokenize\n    lowercase: maybe\n{SINKS}"),
            vec!["p.yaml:7:", "maybe"]),
        ("bad enum value", format!("name: t\n{SOURCE}transforms:\n  - type: tokenize\n    strip_punctuation: some\n{SINKS}"),
            vec!["p.yaml:7:", "`some`", "all"]),
        ("bad mode", format!("name: t\nmode: batchy\n{SOURCE}{SINKS}"),
            vec!["p.yaml:2:", "did you mean `batch`?"]),
        ("where on a missing column", format!("name: t\n{SOURCE}transforms:\n  - type: filter\n    where: cuont > 1\n{SINKS}"),
            vec!["p.yaml:7:12:", "transforms.0 (filter)", "no column `cuont`", "^ there is no column"]),
        ("where with a type error", format!("name: t\n{SOURCE}transforms:\n  - type: tokenize\n  - type: group_count\n    by: word\n  - type: filter\n    where: count >= 'many'\n{SINKS}"),
            vec!["transforms.2 (filter)", "cannot compare an integer with text"]),
        ("where with a syntax error", format!("name: t\n{SOURCE}transforms:\n  - type: tokenize\n  - type: filter\n    where: word = 'x'\n{SINKS}"),
            vec!["transforms.1 (filter)", "use `==`"]),
        ("group by a missing column", format!("name: t\n{SOURCE}transforms:\n  - type: group_count\n    by: word\n{SINKS}"),
            vec!["transforms.0 (group_count)", "no column `word`", "columns here: line"]),
        ("sort direction", format!("name: t\n{SOURCE}transforms:\n  - type: sort\n    by: [line downward]\n{SINKS}"),
            vec!["transforms.0 (sort)", "`asc` or `desc`"]),
        ("tokenize a missing column", format!("name: t\n{SOURCE}transforms:\n  - type: tokenize\n    column: text\n{SINKS}"),
            vec!["transforms.0 (tokenize)", "no column `text`"]),
        ("YAML syntax error", format!("name: t\n{SOURCE}transforms: [\n{SINKS}"),
            vec!["p.yaml:"]),
        ("tab indentation", "name: t\nsource:\n\ttype: file\n\tpath: x\nsinks:\n  - type: stdout\n".into(),
            vec!["p.yaml:3:", "tab"]),
        ("duplicate key", format!("name: t\nname: u\n{SOURCE}{SINKS}"),
            vec!["p.yaml:2:", "`name` is given twice"]),
        ("bad fetch checksum", "name: t\nsource:\n  type: file\n  path: x.txt\n  fetch:\n    url: https://example.org/x\n    sha256: abc\nsinks:\n  - type: stdout\n".into(),
            vec!["p.yaml:3:", "64 hex digits"]),
        ("bad fetch url", format!("name: t\nsource:\n  type: file\n  path: x.txt\n  fetch:\n    url: ftp://example.org/x\n    sha256: {}\nsinks:\n  - type: stdout\n", "a".repeat(64)),
            vec!["must start with https://"]),
        ("unknown stop-word language", format!("name: t\n{SOURCE}transforms:\n  - type: tokenize\n  - type: stopwords\n    language: englsh\n{SINKS}"),
            vec!["transforms.1 (stopwords)", "did you mean `english`?"]),
        ("a stream of Parquet files", format!("name: t\nmode: stream\n{SOURCE}  format: parquet\n{SINKS}"),
            vec!["p.yaml:4:", "a stream of files reads `lines`, `jsonl` or `csv`"]),
        ("a stream of standard input", format!("name: t\nmode: stream\nsource:\n  type: file\n  path: '-'\n{SINKS}"),
            vec!["p.yaml:4:", "not standard input"]),
        ("JSON lines from a socket without columns", format!("name: t\nmode: stream\nsource:\n  type: socket\n  port: 9876\n  format: jsonl\n{SINKS}"),
            vec!["p.yaml:4:", "`format: jsonl` needs `columns:`"]),
        ("a window on text", format!("name: t\nmode: stream\nsource:\n  type: socket\n  port: 9876\ntransforms:\n  - {{type: group_count, by: line, window: {{column: line, size: 10m}}}}\n{SINKS}"),
            vec!["transforms.0 (group_count)", "window: `line` holds text, not timestamps"]),
        ("append on windows without a watermark", format!("name: t\nmode: stream\nsource:\n  type: file\n  path: in\n  format: jsonl\n  columns: {{t: timestamp, tag: text}}\ntransforms:\n  - {{type: group_count, by: tag, window: {{column: t, size: 10m}}}}\noutput_mode: append\n{SINKS}"),
            vec!["`output_mode: append` emits each window once", "add `watermark: 2m`"]),
        ("a port out of range", format!("name: t\nmode: stream\nsource: {{type: socket, port: 70000}}\n{SINKS}"),
            vec!["p.yaml:3:", "expected a whole number from 0 to 65535"]),
        ("port 0 to connect to", format!("name: t\nmode: stream\nsource: {{type: socket, port: 0}}\n{SINKS}"),
            vec!["source (socket)", "`port: 0` names no server"]),
        ("a window of a month", format!("name: t\nmode: stream\nsource:\n  type: socket\n  port: 9876\ntransforms:\n  - {{type: with_column, name: t, expr: now()}}\n  - {{type: group_count, by: line, window: {{column: t, size: 1M}}}}\n{SINKS}"),
            vec!["p.yaml:8:", "`1M`: `M` is a month or a year, which has no fixed length"]),
        ("a slide longer than the window", format!("name: t\nmode: stream\nsource:\n  type: socket\n  port: 9876\ntransforms:\n  - {{type: with_column, name: t, expr: now()}}\n  - {{type: group_count, by: line, window: {{column: t, size: 1m, slide: 2m}}}}\n{SINKS}"),
            vec!["transforms.1 (group_count)", "longer than `size`"]),
        ("socket source in batch mode", format!("name: t\nsource:\n  type: socket\n  port: 9876\n{SINKS}"),
            vec!["p.yaml:3:", "never ends, so it needs `mode: stream`"]),
        ("append after an aggregation", format!("name: t\nmode: stream\nsource:\n  type: socket\n  port: 9876\ntransforms:\n  - {{type: explode, column: line, separator: ' '}}\n  - {{type: group_count, by: line}}\noutput_mode: append\n{SINKS}"),
            vec!["p.yaml:9:14:", "`output_mode: append` cannot follow transforms.1 (group_count)", "watermark"]),
        ("complete without an aggregation", format!("name: t\nmode: stream\nsource:\n  type: socket\n  port: 9876\noutput_mode: complete\n{SINKS}"),
            vec!["`output_mode: complete` needs an aggregation"]),
        ("two triggers", format!("name: t\nmode: stream\nsource:\n  type: socket\n  port: 9876\ntrigger:\n  processing_time: 1s\n  available_now: true\n{SINKS}"),
            vec!["p.yaml:7:", "either `processing_time` or `available_now`"]),
        ("bad duration", format!("name: t\nmode: stream\nsource:\n  type: socket\n  port: 9876\ntrigger:\n  processing_time: soon\n{SINKS}"),
            vec!["p.yaml:7:20:", "`soon` is not a duration"]),
        ("bars without numbers", format!("name: t\n{SOURCE}sinks:\n  - type: stdout\n    format: bars\n"),
            vec!["sinks.0 (stdout)", "`format: bars` needs a numeric column"]),
        ("trigger in batch mode", format!("name: t\n{SOURCE}trigger:\n  processing_time: 1s\n{SINKS}"),
            vec!["`trigger` only applies to `mode: stream`"]),
        ("explode text without separator", format!("name: t\n{SOURCE}transforms:\n  - type: explode\n    column: line\n{SINKS}"),
            vec!["transforms.0 (explode)", "separator"]),
        ("limit without n", format!("name: t\n{SOURCE}transforms:\n  - type: limit\n{SINKS}"),
            vec!["p.yaml:6:", "missing field `n`"]),
        ("not a map", "- just\n- a list\n".into(),
            vec!["p.yaml:1:"]),
        ("empty file", String::new(),
            vec!["p.yaml"]),
    ]
}

#[test]
fn every_malformed_pipeline_gets_exit_2_and_a_located_message() {
    assert!(cases().len() >= 20);
    let dir = tempfile::tempdir().unwrap();
    for (what, text, expected) in cases() {
        let path = write(dir.path(), "p.yaml", &text);
        for command in ["validate", "run"] {
            let output = runner()
                .arg(command)
                .arg(&path)
                .current_dir(dir.path())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{what} ({command}): exit code; stderr:\n{stderr}"
            );
            assert!(stderr.starts_with("error: "), "{what}: {stderr}");
            for needle in &expected {
                assert!(
                    stderr.contains(needle),
                    "{what}: expected `{needle}` in:\n{stderr}"
                );
            }
            assert!(
                !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
                "{what}: {stderr}"
            );
        }
    }
}

#[test]
fn a_missing_pipeline_file_is_a_usage_error() {
    runner()
        .args(["run", "/no/such/pipeline.yaml"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "cannot read pipeline file /no/such/pipeline.yaml",
        ));
}

#[test]
fn bad_command_line_usage_exits_2() {
    runner().args(["run"]).assert().code(2);
    runner().args(["frobnicate"]).assert().code(2);
    runner()
        .args(["run", "x.yaml", "--cores", "two"])
        .assert()
        .code(2);
}
