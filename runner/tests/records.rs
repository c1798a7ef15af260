//! Records end to end: CSV, JSON lines and Parquet files through expressions and `aggregate`
//! to typed output, and bad records under `on_error`.

mod common;

use std::sync::Arc;

use arrow_array::RecordBatch;
use common::{run_pipeline, write, write_parquet};

const SALES: &str = "customer,region,amount,price,at\n\
ana,north,3,1.5,2024-05-01T12:00:00Z\n\
bo,south,5,2.0,2024-05-01T12:30:00Z\n\
ana,north,,0.5,1714568400\n\
\"zoë, jr\",south,1,4.0,2024-05-01 14:00:00\n\
bo,south,5,-1.0,2024-05-01T15:59:59.5Z\n";

fn jsonl_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn csv_through_expressions_and_aggregate_to_typed_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "sales.csv", SALES);
    let pipeline = write(
        dir.path(),
        "p.yaml",
        r#"name: sales
source:
  type: file
  path: sales.csv
  format: csv
  columns: {customer: text, amount: integer?, price: float, at: timestamp}
transforms:
  - type: with_column
    name: hour
    expr: date_trunc('hour', at)
  - type: filter
    where: price > 0 and customer != 'nobody'
  - type: aggregate
    by: [customer]
    aggs:
      n: count()
      total: sum(amount)
      mean: avg(price)
      first_hour: min(hour)
      hours: count_distinct(hour)
sinks:
  - {type: stdout, format: jsonl}
"#,
    );
    let (code, stdout, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 0, "{stderr}");
    let rows = jsonl_lines(&stdout);
    assert_eq!(
        rows,
        [
            serde_json::json!({"customer": "ana", "n": 2, "total": 3, "mean": 1.0, "first_hour": "2024-05-01T12:00:00Z", "hours": 2}),
            serde_json::json!({"customer": "bo", "n": 1, "total": 5, "mean": 2.0, "first_hour": "2024-05-01T12:00:00Z", "hours": 1}),
            serde_json::json!({"customer": "zoë, jr", "n": 1, "total": 1, "mean": 4.0, "first_hour": "2024-05-01T14:00:00Z", "hours": 1}),
        ]
    );
}

#[test]
fn infinite_floats_written_to_csv_read_back_and_as_spark_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "k,f\na,inf\nb,-Infinity\nc,NaN\nd,2.5\n",
    );
    let to_csv = write(
        dir.path(),
        "w.yaml",
        "name: w\nsource: {type: file, path: in.csv, format: csv, columns: {k: text, f: float}}\nsinks: [{type: csv, path: out.csv}]\n",
    );
    let (code, _, stderr) = run_pipeline(&to_csv, &[]);
    assert_eq!(code, 0, "{stderr}");
    let written = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    // Spark's CSV reader takes `Infinity` (and reads `inf` as null).
    assert_eq!(written, "k,f\na,Infinity\nb,-Infinity\nc,NaN\nd,2.5\n");
    let back = write(
        dir.path(),
        "r.yaml",
        "name: r\nsource: {type: file, path: out.csv, format: csv, columns: {k: text, f: float}}\ntransforms: [{type: select, columns: [k, \"f > 1e308 as big\", \"f < -1e308 as small\", \"f is null as missing\"]}]\nsinks: [{type: stdout, format: jsonl}]\n",
    );
    let (code, stdout, stderr) = run_pipeline(&back, &[]);
    assert_eq!(code, 0, "{stderr}");
    let rows = jsonl_lines(&stdout);
    let column = |name: &str| -> Vec<bool> { rows.iter().map(|r| r[name] == true).collect() };
    // NaN is above every number, as Spark compares floats.
    assert_eq!(column("big"), [true, false, true, false]);
    assert_eq!(column("small"), [false, true, false, false]);
    assert_eq!(column("missing"), [false, false, false, false]);
}

#[test]
fn inferred_csv_columns_select_and_rename() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "sales.csv", SALES);
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: sales.csv, format: csv}\ntransforms:\n  - {type: select, columns: [customer, \"amount * 2 as double\", \"upper(region) as r\"]}\n  - {type: rename, columns: {customer: who}}\n  - {type: drop, columns: [r]}\n  - {type: limit, n: 2}\nsinks:\n  - {type: stdout, format: tsv}\n",
    );
    let (code, stdout, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "who\tdouble\nana\t6\nbo\t10\n");
}

#[test]
fn an_error_after_a_sort_names_only_the_step_that_failed() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "sales.csv", SALES);
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: sales.csv, format: csv}\ntransforms:\n  - sort: customer\n  - filter: cast(region as integer) > 0\n  - sort: amount\nsinks: [stdout]\n",
    );
    let (code, _, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("p.yaml:5:5: transforms.1 (filter): "),
        "{stderr}"
    );
    assert!(!stderr.contains("(sort)"), "{stderr}");
    assert!(
        stderr.contains(r#"cannot cast "north" to integer"#),
        "{stderr}"
    );
}

const TOOTS: &str = r#"{"created_at":"2024-05-01T12:00:00Z","language":"en","account":{"acct":"ana"}}
{"created_at":"2024-05-01T12:10:00Z","language":"de","account":{"acct":"bo"}}
not json at all
{"created_at":"2024-05-01T13:00:00Z","language":null,"account":{"acct":"ana"}}
{"created_at":"2024-05-01T13:05:00Z","language":"en"}
"#;

#[test]
fn json_lines_with_bad_records_fail_with_the_line_or_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "toots.jsonl", TOOTS);
    let pipeline = |on_error: &str| {
        write(
            dir.path(),
            &format!("{on_error}.yaml"),
            &format!(
                "name: t\nsource:\n  type: file\n  path: toots.jsonl\n  format: jsonl\n  on_error: {on_error}\n  columns: {{created_at: timestamp, language: text?, account.acct: text}}\ntransforms:\n  - type: aggregate\n    by: [\"date_trunc('hour', created_at) as hour\", language]\n    aggs: {{statuses: count(), people: count_distinct(account.acct)}}\nsinks:\n  - {{type: stdout, format: jsonl}}\n"
            ),
        )
    };
    let (code, _, stderr) = run_pipeline(&pipeline("fail"), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("toots.jsonl line 3: the jsonl record cannot be read"),
        "{stderr}"
    );
    let (code, stdout, stderr) = run_pipeline(&pipeline("skip"), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        jsonl_lines(&stdout),
        [
            serde_json::json!({"hour": "2024-05-01T12:00:00Z", "language": "de", "statuses": 1, "people": 1}),
            serde_json::json!({"hour": "2024-05-01T12:00:00Z", "language": "en", "statuses": 1, "people": 1}),
            serde_json::json!({"hour": "2024-05-01T13:00:00Z", "language": null, "statuses": 1, "people": 1}),
        ]
    );
    assert!(
        stderr.contains("2 jsonl record(s) could not be read and were skipped")
            && stderr.contains("line 3"),
        "{stderr}"
    );
}

#[test]
fn bad_records_among_the_first_lines_are_bad_records_when_the_columns_are_inferred() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "r.csv", "a,b,c\n1,2,3\n4,5\n6,7,8\n");
    write(
        dir.path(),
        "j.jsonl",
        "{\"a\":1,\"b\":\"x\"}\n{\"a\":2,\n{\"a\":3,\"b\":\"y\"}\n",
    );
    let pipeline = |file: &str, format: &str, on_error: &str| {
        write(
            dir.path(),
            &format!("{format}_{on_error}.yaml"),
            &format!(
                "name: t\nsource: {{type: file, path: {file}, format: {format}, on_error: {on_error}}}\nsinks:\n  - {{type: stdout, format: jsonl}}\n"
            ),
        )
    };
    let (code, stdout, stderr) = run_pipeline(&pipeline("r.csv", "csv", "skip"), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        jsonl_lines(&stdout),
        [
            serde_json::json!({"a": 1, "b": 2, "c": 3}),
            serde_json::json!({"a": 6, "b": 7, "c": 8}),
        ]
    );
    assert!(
        stderr.contains("1 csv record(s) could not be read"),
        "{stderr}"
    );
    assert!(stderr.contains("r.csv line 3"), "{stderr}");
    let (code, _, stderr) = run_pipeline(&pipeline("r.csv", "csv", "fail"), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "r.csv line 3: the csv record cannot be read: 2 fields where the header has 3"
        ),
        "{stderr}"
    );
    let (code, stdout, stderr) = run_pipeline(&pipeline("j.jsonl", "jsonl", "skip"), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        jsonl_lines(&stdout),
        [
            serde_json::json!({"a": 1, "b": "x"}),
            serde_json::json!({"a": 3, "b": "y"}),
        ]
    );
    assert!(stderr.contains("j.jsonl line 2"), "{stderr}");
    let (code, _, stderr) = run_pipeline(&pipeline("j.jsonl", "jsonl", "fail"), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("j.jsonl line 2: the jsonl record cannot be read"),
        "{stderr}"
    );
}

#[test]
fn parquet_files_are_read_by_row_group_with_their_types() {
    use arrow_array::{Int32Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("tag", arrow_schema::DataType::Utf8, true),
        arrow_schema::Field::new("n", arrow_schema::DataType::Int32, true),
    ]));
    let file = std::fs::File::create(dir.path().join("t.parquet")).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(3))
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
    let tags: Vec<&str> = vec!["a", "b", "a", "c", "a", "b", "a"];
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(tags.clone())),
            Arc::new(Int32Array::from((1..=7).collect::<Vec<i32>>())),
        ],
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: t.parquet, format: parquet}\ntransforms:\n  - type: aggregate\n    by: tag\n    aggs: {n: count(), total: sum(n), first: first(n), last: last(n), all: collect_list(n)}\nsinks:\n  - {type: stdout, format: jsonl}\n",
    );
    let (code, stdout, stderr) = run_pipeline(&pipeline, &["--cores", "2"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        jsonl_lines(&stdout),
        [
            serde_json::json!({"tag": "a", "n": 4, "total": 16, "first": 1, "last": 7, "all": ["1", "3", "5", "7"]}),
            serde_json::json!({"tag": "b", "n": 2, "total": 8, "first": 2, "last": 6, "all": ["2", "6"]}),
            serde_json::json!({"tag": "c", "n": 1, "total": 4, "first": 4, "last": 4, "all": ["4"]}),
        ]
    );
    // Rows skipped for a missing required value: counted, and the first one placed.
    let file = std::fs::File::create(dir.path().join("gaps.parquet")).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(3))
        .build();
    let gaps = RecordBatch::try_new(
        batch.schema(),
        vec![
            Arc::new(StringArray::from(tags)),
            Arc::new(Int32Array::from(vec![
                Some(1),
                Some(2),
                Some(3),
                None,
                Some(5),
                None,
                Some(7),
            ])),
        ],
    )
    .unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, gaps.schema(), Some(props)).unwrap();
    writer.write(&gaps).unwrap();
    writer.close().unwrap();
    let pipeline = write(
        dir.path(),
        "gaps.yaml",
        "name: t\nsource: {type: file, path: gaps.parquet, format: parquet, on_error: skip, columns: {tag: text, n: integer}}\ntransforms:\n  - {type: aggregate, aggs: {n: count(), total: sum(n)}}\nsinks:\n  - {type: stdout, format: jsonl}\n",
    );
    let (code, stdout, stderr) = run_pipeline(&pipeline, &["--cores", "2"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        jsonl_lines(&stdout),
        [serde_json::json!({"n": 5, "total": 18})]
    );
    assert!(
        stderr.contains("2 Parquet row(s) held a null in a required field or a value not of its column's type, and were skipped (the first: ")
            && stderr.contains("gaps.parquet: row group 1, row 0: the required field `n` is null"),
        "{stderr}"
    );
    // Unsigned 64-bit integers are inferred as integers; one past i64 is a bad row.
    let unsigned = RecordBatch::try_from_iter([(
        "u",
        Arc::new(arrow_array::UInt64Array::from(vec![7, u64::MAX])) as arrow_array::ArrayRef,
    )])
    .unwrap();
    write_parquet(
        &dir.path().join("u.parquet"),
        &unsigned,
        parquet::basic::Compression::UNCOMPRESSED,
    );
    let pipeline = write(
        dir.path(),
        "u.yaml",
        "name: t\nsource: {type: file, path: u.parquet, format: parquet, on_error: skip}\nsinks:\n  - {type: stdout, format: jsonl}\n",
    );
    let (code, stdout, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(jsonl_lines(&stdout), [serde_json::json!({"u": 7})]);
    assert!(
        stderr.contains("18446744073709551615 cannot be read as integer (out of range)"),
        "{stderr}"
    );
    // A file that is not Parquet: an input failure (exit 1), also when the columns are
    // inferred from it.
    write(dir.path(), "bad.parquet", "not parquet");
    for columns in ["", ", columns: {a: integer}"] {
        let bad = write(
            dir.path(),
            "bad.yaml",
            &format!("name: t\nsource: {{type: file, path: bad.parquet, format: parquet{columns}}}\nsinks:\n  - {{type: stdout}}\n"),
        );
        let (code, _, stderr) = run_pipeline(&bad, &[]);
        assert_eq!(code, 1, "{columns}: {stderr}");
        assert!(stderr.contains("not a readable Parquet file"), "{stderr}");
    }
}

#[test]
fn a_parquet_folder_passes_hidden_files_by_and_reads_optional_columns_a_file_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("in");
    std::fs::create_dir(&folder).unwrap();
    let ints = |values: Vec<i64>| {
        RecordBatch::try_from_iter([(
            "a",
            Arc::new(arrow_array::Int64Array::from(values)) as arrow_array::ArrayRef,
        )])
        .unwrap()
    };
    let texts = RecordBatch::try_from_iter([(
        "b",
        Arc::new(arrow_array::StringArray::from(vec!["x"])) as arrow_array::ArrayRef,
    )])
    .unwrap();
    let brotli = parquet::basic::Compression::BROTLI(Default::default());
    write_parquet(&folder.join("p1.parquet"), &ints(vec![1]), brotli);
    // A part file without the extension is read; hidden ones are not.
    write_parquet(
        &folder.join("part-2.snappy.parq"),
        &texts,
        parquet::basic::Compression::SNAPPY,
    );
    write_parquet(&folder.join("_tmp.parquet"), &ints(vec![100]), brotli);
    write_parquet(&folder.join(".x.parquet"), &ints(vec![200]), brotli);
    write(&folder, "_SUCCESS", "");
    for path in ["in", "'in/*'"] {
        let pipeline = write(
            dir.path(),
            "p.yaml",
            &format!("name: t\nsource: {{type: file, path: {path}, format: parquet, columns: {{a: integer?, b: text?}}}}\nsinks:\n  - {{type: stdout, format: jsonl}}\n"),
        );
        let (code, stdout, stderr) = run_pipeline(&pipeline, &[]);
        assert_eq!(code, 0, "{path}: {stderr}");
        assert_eq!(
            jsonl_lines(&stdout),
            [
                serde_json::json!({"a": 1, "b": null}),
                serde_json::json!({"a": null, "b": "x"})
            ],
            "{path}"
        );
    }
    // A Parquet file read without `format: parquet` is named as one.
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: in/p1.parquet}\nsinks:\n  - {type: stdout}\n",
    );
    let (code, _, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("p1.parquet is a Parquet file: add `format: parquet`"),
        "{stderr}"
    );
    // A required column a file lacks is named, with the way to read it as null.
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: in, format: parquet, columns: {a: integer, b: text?}}\nsinks:\n  - {type: stdout, format: jsonl}\n",
    );
    let (code, _, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("part-2.snappy.parq: no column `a` (columns: b; write `integer?`"),
        "{stderr}"
    );
}

#[test]
fn rows_parse_json_skips_are_counted_in_the_runs_warnings() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "{\"a\":1}\nnot json\n{\"a\":2}\n");
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: in.txt}\ntransforms:\n  - {type: parse_json, columns: {a: integer}, on_error: skip}\nsinks:\n  - {type: stdout, format: jsonl}\n",
    );
    let summary = dir.path().join("summary.json");
    let (code, stdout, stderr) = run_pipeline(&pipeline, &["--summary", summary.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        jsonl_lines(&stdout),
        [serde_json::json!({"a": 1}), serde_json::json!({"a": 2})]
    );
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(
        summary.contains("transforms.0 (parse_json): 1 row(s) whose `line` could not be read were skipped (the first: the line is not a JSON object"),
        "{summary}"
    );
}

#[test]
fn a_csv_column_missing_from_the_header_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "sales.csv", SALES);
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: sales.csv, format: csv, columns: {custmer: text}}\nsinks:\n  - {type: stdout}\n",
    );
    let (code, _, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the CSV header has no column `custmer`, did you mean `customer`?"),
        "{stderr}"
    );
}

#[test]
fn now_is_one_time_for_the_whole_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("n\n");
    for i in 0..200_000 {
        csv.push_str(&format!("{i}\n"));
    }
    write(dir.path(), "n.csv", &csv);
    let pipeline = write(
        dir.path(),
        "p.yaml",
        r#"name: now
source: {type: file, path: n.csv, format: csv, columns: {n: integer}}
transforms:
  - type: select
    columns: [n, "now() as a", "now() as b"]
  - type: aggregate
    aggs: {times: count_distinct(a), differ: count(a != b or null), first: min(a), last: max(b)}
sinks:
  - {type: stdout, format: jsonl}
"#,
    );
    let before = chrono::Utc::now();
    let (code, stdout, stderr) = run_pipeline(&pipeline, &["--cores", "2"]);
    let after = chrono::Utc::now();
    assert_eq!(code, 0, "{stderr}");
    let rows = jsonl_lines(&stdout);
    assert_eq!(rows.len(), 1, "{stdout}");
    assert_eq!(
        (&rows[0]["times"], &rows[0]["differ"]),
        (&1.into(), &0.into())
    );
    assert_eq!(rows[0]["first"], rows[0]["last"]);
    let at: chrono::DateTime<chrono::Utc> = rows[0]["first"].as_str().unwrap().parse().unwrap();
    assert!(before <= at && at <= after, "{at} not in {before}..{after}");
}

/// A CSV field as a spreadsheet writes it: quoted when it holds a quote, a comma or a line end,
/// its quotes doubled.
fn csv_field(text: &str) -> String {
    match text.contains(['"', ',', '\n', '\r']) {
        true => format!("\"{}\"", text.replace('"', "\"\"")),
        false => text.to_owned(),
    }
}

#[test]
fn multi_line_csv_reads_line_breaks_in_quoted_fields_across_morsels() {
    let dir = tempfile::tempdir().unwrap();
    // 60,000 records of notes with line breaks (LF and CRLF), quotes and commas: about 3 MiB,
    // read in 1 MiB morsels, so records of several lines straddle the cuts.
    let pieces = ["a", "b c", "\n", "\"", ",", "é", "\r\n", "zz"];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut csv = String::from("id,note,amount\r\n");
    let (mut notes_chars, mut amounts, mut lines_with_breaks) = (0usize, 0i64, 0usize);
    for id in 0..60_000i64 {
        let mut note = String::new();
        for _ in 0..(id % 17) * 3 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            note.push_str(pieces[(seed % pieces.len() as u64) as usize]);
        }
        notes_chars += note.chars().count();
        lines_with_breaks += usize::from(note.contains('\n'));
        amounts += id * 3;
        csv.push_str(&format!("{id},{},{}\r\n", csv_field(&note), id * 3));
    }
    assert!(csv.len() > 2 << 20 && lines_with_breaks > 10_000);
    write(dir.path(), "notes.csv", &csv);
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: notes\nsource: {type: file, path: notes.csv, format: csv, multi_line: true, columns: {id: integer, note: text?, amount: integer}}\ntransforms:\n  - {type: aggregate, aggs: {n: count(), ids: count_distinct(id), total: sum(amount), chars: sum(length(note)), broken: \"sum(cast(contains(note, '\\n') as integer))\"}}\nsinks:\n  - {type: stdout, format: jsonl}\n",
    );
    let (code, stdout, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        jsonl_lines(&stdout),
        [
            serde_json::json!({"n": 60_000, "ids": 60_000, "total": amounts, "chars": notes_chars, "broken": lines_with_breaks})
        ]
    );
    // Without multi_line the first record of several lines is named as such.
    let (code, _, stderr) = run_pipeline(&pipeline, &["--set", "source.multi_line=false"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("a quoted field does not end on its line"),
        "{stderr}"
    );
}

#[test]
fn multi_line_csv_columns_are_inferred_past_a_first_record_of_many_lines() {
    let dir = tempfile::tempdir().unwrap();
    // The first record spans 150,000 lines (300 KB, past the 256 KiB first read).
    let note = "a\n".repeat(150_000);
    write(
        dir.path(),
        "long.csv",
        &format!("id,note,flag\n1,\"{note}\",true\n2,short,false\n"),
    );
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: l\nsource: {type: file, path: long.csv, format: csv, multi_line: true}\ntransforms:\n  - {type: select, columns: [id, flag, \"length(note) as chars\"]}\nsinks:\n  - {type: stdout, format: jsonl}\n",
    );
    let (code, stdout, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        jsonl_lines(&stdout),
        [
            serde_json::json!({"id": 1, "flag": true, "chars": 300_000}),
            serde_json::json!({"id": 2, "flag": false, "chars": 5}),
        ]
    );
}

#[test]
fn multi_line_csv_names_a_bad_records_first_line_and_an_unclosed_quote() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad.csv",
        "name,note,amount\na,\"hello\nworld\",1\nb,\"x\ny\",oops\nc,\"open\nnever closed,3\n",
    );
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: bad\nsource: {type: file, path: bad.csv, format: csv, multi_line: true, columns: {name: text, note: text, amount: integer}}\nsinks:\n  - {type: stdout, format: jsonl}\n",
    );
    let (code, _, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 1);
    // The record of lines 4 and 5 starts on line 4.
    assert!(
        stderr.contains(
            "bad.csv line 4: the csv record cannot be read: `amount`: \"oops\" is not an integer"
        ),
        "{stderr}"
    );
    let (code, stdout, stderr) = run_pipeline(&pipeline, &["--set", "source.on_error=skip"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        jsonl_lines(&stdout),
        [serde_json::json!({"name": "a", "note": "hello\nworld", "amount": 1})]
    );
    assert!(
        stderr.contains("2 csv record(s) could not be read and were skipped")
            && !stderr.contains("line 7"),
        "{stderr}"
    );

    // Where multi_line cannot apply, validation says why.
    for (extra, why) in [
        ("format: jsonl", "`multi_line` is for `format: csv`"),
        (
            "format: csv, encoding_errors: skip",
            "`encoding_errors: skip` leaves out lines",
        ),
    ] {
        let p = write(
            dir.path(),
            "refused.yaml",
            &format!("name: r\nsource: {{type: file, path: bad.csv, {extra}, multi_line: true}}\nsinks:\n  - {{type: stdout}}\n"),
        );
        let (code, _, stderr) = run_pipeline(&p, &[]);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
    }
    let p = write(
        dir.path(),
        "stream.yaml",
        "name: s\nmode: stream\nsource: {type: file, path: bad.csv, format: csv, multi_line: true}\nsinks:\n  - {type: stdout}\n",
    );
    let (code, _, stderr) = run_pipeline(&p, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`multi_line` is for batch runs"),
        "{stderr}"
    );
}

#[test]
fn a_csv_header_is_one_line_and_a_values_line_break_never_reaches_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let run = |file: &str, text: &str, columns: &str| {
        write(dir.path(), file, text);
        let p = write(
            dir.path(),
            "p.yaml",
            &format!("name: h\nsource: {{type: file, path: {file}, format: csv, multi_line: true{columns}}}\nsinks:\n  - {{type: stdout, format: jsonl}}\n"),
        );
        run_pipeline(&p, &[])
    };
    // A header with a quoted line break: refused, whether its columns are inferred or not.
    let (code, _, stderr) = run("hq.csv", "\"a\nx\",b\n1,2\n", "");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("a quote in the header does not close on its line"),
        "{stderr}"
    );
    let (code, _, stderr) = run("hq.csv", "\"a\nx\",b\n1,2\n", ", columns: {b: integer}");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("hq.csv line 1: a quote in the header does not close"),
        "{stderr}"
    );
    // Lines that end in a lone carriage return: named, not read as no rows.
    let (code, stdout, stderr) = run("cr.csv", "a,b\r1,2\r3,4\r", ", columns: {a: integer}");
    assert_eq!((code, stdout.as_str()), (1, ""), "{stderr}");
    assert!(
        stderr.contains("cr.csv line 1: the header line holds a carriage return"),
        "{stderr}"
    );
    // A value's line break in a message is written `\n`: it cannot start a line of its own.
    let (code, _, stderr) = run(
        "spoof.csv",
        "a,b\n\"12\nwarning: spoof\",x\n",
        ", columns: {a: integer, b: text}",
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("\"12\\nwarning: spoof\" is not an integer"),
        "{stderr}"
    );
    assert!(
        !stderr.lines().any(|l| l.starts_with("warning: spoof")),
        "{stderr}"
    );
}

#[test]
fn columns_are_not_inferred_from_a_named_pipe_and_it_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("in.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: in.csv, format: csv}\nsinks:\n  - {type: stdout, format: jsonl}\n",
    );
    // Refused before the pipe is opened: no writer is needed.
    let (code, _, stderr) = run_pipeline(&pipeline, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("not a regular file, which could be read twice"),
        "{stderr}"
    );
    assert!(!stderr.contains("no such file"), "{stderr}");
}

/// Compressed and UTF-16 files are named as what they are, in batch (any file of a glob)
/// and in a stream: read as text they gave garbage rows, or a misleading field count.
#[test]
fn compressed_and_utf16_files_are_named_as_such_not_read_as_text() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/a.csv"), "k,v\na,1\n").unwrap();
    std::fs::write(
        dir.path().join("in/b.csv.gz"),
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00junk",
    )
    .unwrap();
    let batch = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: 'in/*', format: csv}\nsinks:\n  - {type: stdout}\n",
    );
    // An input failure (exit 1), in a batch as in a stream.
    let (code, _, stderr) = run_pipeline(&batch, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("source (file): the input ")
            && stderr.contains("b.csv.gz is gzip-compressed: decompress it first"),
        "{stderr}"
    );
    std::fs::remove_file(dir.path().join("in/b.csv.gz")).unwrap();
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in "k,v\r\nb,2\r\n".encode_utf16() {
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    std::fs::write(dir.path().join("in/c.csv"), &utf16).unwrap();
    let stream = write(
        dir.path(),
        "s.yaml",
        "name: s\nmode: stream\nstop_after: 60s\nsource: {type: file, path: in, format: csv, columns: {k: text, v: integer}}\nsinks:\n  - {type: stdout}\n",
    );
    let (code, _, stderr) = run_pipeline(&stream, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("c.csv is UTF-16 (its byte-order mark says so): convert it to UTF-8"),
        "{stderr}"
    );
}

/// A folder of more files than the open-files limit is read: each file is opened when its
/// first piece is read and closed after its last, in the parallel reader, the CSV aggregate
/// kernel and a stream. (The limit is set for the run alone, by the shell's `ulimit`.)
#[test]
fn a_folder_of_more_files_than_the_open_files_limit_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    for i in 0..600 {
        std::fs::write(
            dir.path().join(format!("in/f{i:04}.csv")),
            format!("k,v\na,{i}\n"),
        )
        .unwrap();
    }
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: in, format: csv}\ntransforms:\n  - {type: aggregate, by: [k], aggs: {s: sum(v), n: count()}}\nsinks:\n  - {type: csv, path: out.csv}\n",
    );
    for extra in ["", "--no-fusion", "--set mode=stream"] {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n 128 && exec \"$0\" run \"$1\" {extra}"))
            .arg(assert_cmd::cargo::cargo_bin("runner"))
            .arg(&pipeline)
            .env("RUNNER_LOCK_DIR", dir.path().join("locks"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{extra}: {stderr}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
            "k,s,n\na,179700,600\n",
            "{extra}"
        );
    }
}

/// A file's last record that begins in one 256 KiB piece and ends in the next leaves the
/// last piece without a whole record: the CSV aggregate kernel reads it as no records (it
/// panicked indexing the places of a record it did not have), as Arrow's reader does.
#[test]
fn a_last_record_across_a_piece_boundary_is_read_by_the_csv_kernel() {
    const PIECE: usize = 256 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource: {type: file, path: in.csv, format: csv}\ntransforms:\n  - {type: aggregate, by: [k], aggs: {n: count(), s: sum(v)}}\nsinks:\n  - {type: csv, path: out.csv}\n",
    );
    // The last record's bytes past the boundary: a few, more than a short field, and all
    // of a record longer than a piece (its key is the long field).
    for (pieces, past) in [(1, 6), (2, 10), (1, 1), (1, PIECE + 7)] {
        let key = if past > PIECE {
            "b".repeat(past)
        } else {
            "a".to_owned()
        };
        let last = format!("{key},1234567\n");
        let start = (pieces * PIECE + past).checked_sub(last.len()).unwrap();
        let mut text = String::from("k,v\n");
        let mut rows = 0i64;
        while text.len() + 4 <= start {
            text.push_str("a,1\n");
            rows += 1;
        }
        // The last short record's value padded with zeros, to end where the last begins.
        text.truncate(text.len() - 1);
        let zeros = start - text.len() - 1;
        text.push_str(&"0".repeat(zeros));
        text.push('\n');
        text.push_str(&last);
        assert_eq!(text.len(), pieces * PIECE + past);
        std::fs::write(dir.path().join("in.csv"), &text).unwrap();
        let padded = 10i64.pow(zeros as u32);
        let expected = if key == "a" {
            format!("k,n,s\na,{},{}\n", rows + 1, rows - 1 + padded + 1234567)
        } else {
            format!("k,n,s\na,{rows},{}\n{key},1,1234567\n", rows - 1 + padded)
        };
        for extra in [&[][..], &["--no-fusion"][..]] {
            let (code, _, stderr) = run_pipeline(&pipeline, extra);
            assert_eq!(
                code, 0,
                "{pieces} piece(s) + {past} bytes {extra:?}: {stderr}"
            );
            assert!(
                std::fs::read_to_string(dir.path().join("out.csv")).unwrap() == expected,
                "{pieces} piece(s) + {past} bytes {extra:?}"
            );
        }
    }
}
