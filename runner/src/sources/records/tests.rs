use super::*;
use crate::transforms::compliance::texts;

fn decoder(format: Format, columns: &[(&str, &str)]) -> RecordDecoder {
    let specs = columns
        .iter()
        .map(|(n, t)| ColumnSpec::parse(n, t).unwrap())
        .collect();
    RecordDecoder::new(format, specs, b',').unwrap()
}

fn one_batch(batches: Vec<RecordBatch>, schema: &SchemaRef) -> RecordBatch {
    arrow_select::concat::concat_batches(schema, &batches).unwrap()
}

#[test]
fn csv_typed_with_optional_fields_and_bad_records() {
    let d = decoder(
        Format::Csv,
        &[
            ("tag", "text"),
            ("n", "integer?"),
            ("at", "timestamp"),
            ("x", "float?"),
        ],
    );
    let input = b"rust,3,2024-05-01T12:00:00Z,1.5\r\n\"a,b\",,1714564800,\n\nbad,x,2024-05-01,2\nc,4,never,\nd,5,,\n";
    let (batches, bad) = d.decode(input).unwrap();
    let out = one_batch(batches, &d.schema());
    assert_eq!(texts(&out, "tag"), ["rust", "a,b"]);
    assert_eq!(texts(&out, "n"), ["3", ""]);
    assert_eq!(
        texts(&out, "at"),
        ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00Z"]
    );
    let lines: Vec<usize> = bad.iter().map(|b| b.line).collect();
    assert_eq!(lines, [3, 4, 5], "{bad:?}");
    assert!(
        bad[0].reason.contains("Int64") || bad[0].reason.contains("x"),
        "{}",
        bad[0].reason
    );
    assert!(
        bad[1].reason.contains("\"never\" is not a timestamp"),
        "{}",
        bad[1].reason
    );
    assert!(
        bad[2].reason.contains("required field `at`"),
        "{}",
        bad[2].reason
    );
}

#[test]
fn json_lines_with_nested_paths_lists_and_bad_lines() {
    let d = decoder(
        Format::Jsonl,
        &[
            ("created_at", "timestamp"),
            ("account.acct", "text"),
            ("lang", "text?"),
            ("tags", "list of text?"),
            ("n", "integer?"),
        ],
    );
    let input = r#"{"created_at":"2024-05-01T12:00:00.5Z","account":{"acct":"ana","id":1},"lang":"en","tags":["a","b"],"n":2}
{"created_at":1714564800000,"account":{"acct":"bo"},"extra":[1,{"x":2}]}
{"created_at":"2024-05-01T12:00:00Z","account":null}
not json
{"created_at":"2024-05-01T12:00:00Z","account":{"acct":"zoë"},"n":"seven"}
{"created_at":"2024-05-01T12:00:00Z","account":{"acct":"x"}
"#;
    let (batches, bad) = d.decode(input.as_bytes()).unwrap();
    let out = one_batch(batches, &d.schema());
    assert_eq!(texts(&out, "account.acct"), ["ana", "bo"]);
    assert_eq!(
        texts(&out, "created_at"),
        ["2024-05-01T12:00:00.500Z", "2024-05-01T12:00:00Z"]
    );
    assert_eq!(texts(&out, "tags"), ["a b", ""]);
    let lines: Vec<usize> = bad.iter().map(|b| b.line).collect();
    assert_eq!(lines, [2, 3, 4, 5], "{bad:?}");
    assert!(
        bad[0].reason.contains("required field `account.acct`"),
        "{}",
        bad[0].reason
    );
}

/// Two objects on one line are not a record, even when the line count and the object count
/// would still match over a run of lines read at once (the decoder fills up).
#[test]
fn two_json_values_on_one_line_are_a_bad_record() {
    let d = decoder(Format::Jsonl, &[("n", "integer")]);
    let mut input = String::from("{\"n\":1}{\"n\":2}\n");
    for i in 0..(BATCH_ROWS - 1) {
        input.push_str(&format!("{{\"n\":{i}}}\n"));
    }
    let (batches, bad) = d.decode(input.as_bytes()).unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, BATCH_ROWS - 1);
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].line, 0);
    // The decoders go on working after the bad line (a failed one is not reused).
    let (again, bad) = d.decode(b"{\"n\":5}\n").unwrap();
    assert_eq!((again[0].num_rows(), bad.len()), (1, 0));
}

#[test]
fn columns_are_inferred_from_the_first_lines() {
    let csv = infer_columns(
        Format::Csv,
        b"name,n,x,ok\nana,1,1.5,true\nbo,2,2,false\n",
        b',',
    )
    .unwrap();
    let types: Vec<_> = csv
        .iter()
        .map(|c| (c.name.as_str(), c.value_type))
        .collect();
    assert_eq!(
        types,
        [
            ("name", ValueType::Text),
            ("n", ValueType::Integer),
            ("x", ValueType::Float),
            ("ok", ValueType::Bool)
        ]
    );
    let json = infer_columns(
        Format::Jsonl,
        br#"{"a":{"b":1},"tags":["x"],"s":"t"}"#,
        b',',
    )
    .unwrap();
    let names: Vec<_> = json.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a.b", "tags", "s"]);
}

#[test]
fn column_types_are_checked() {
    assert!(ColumnSpec::parse("x", "integr")
        .unwrap_err()
        .contains("did you mean `integer`?"));
    assert!(!ColumnSpec::parse("x", "text?").unwrap().required);
    let clash = RecordDecoder::new(
        Format::Jsonl,
        vec![
            ColumnSpec::parse("a", "text").unwrap(),
            ColumnSpec::parse("a.b", "text").unwrap(),
        ],
        b',',
    );
    assert!(clash
        .err()
        .unwrap()
        .contains("both as a value and as an object"));
}
