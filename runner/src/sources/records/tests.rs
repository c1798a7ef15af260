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
    assert_eq!(bad[0].reason, "`n`: \"x\" is not an integer");
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
        None,
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
        None,
    )
    .unwrap();
    let names: Vec<_> = json.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a.b", "tags", "s"]);
}

/// Spark's and the CSV sinks' words for the infinities make a float column, as `inf` and `NaN`
/// do; a number past a float's range in a JSON line (`1e400`) is a float, not a bad line.
#[test]
fn infinities_and_numbers_past_a_floats_range_are_inferred_as_floats() {
    let types = |format: Format, head: &[u8]| -> Vec<(String, ValueType)> {
        infer_columns(format, head, b',', None)
            .unwrap()
            .into_iter()
            .map(|c| (c.name, c.value_type))
            .collect()
    };
    assert_eq!(
        types(
            Format::Csv,
            b"f,g,h
1.5,INF,x
Infinity,-Infinity,Infinity
,+INF,NaN
"
        ),
        [
            ("f".to_owned(), ValueType::Float),
            ("g".to_owned(), ValueType::Float),
            ("h".to_owned(), ValueType::Text)
        ]
    );
    assert_eq!(
        types(
            Format::Jsonl,
            br#"{"h":1e400,"s":"1e400 \" -1e999","n":-1e999}
{"h":2,"i":3}
"#
        ),
        [
            ("h".to_owned(), ValueType::Float),
            ("s".to_owned(), ValueType::Text),
            ("n".to_owned(), ValueType::Float),
            ("i".to_owned(), ValueType::Integer)
        ]
    );
    assert_eq!(
        infinite_numbers_as_zero(br#"{"a":[1e400,2,-1e999],"s":"\"1e400"}"#),
        br#"{"a":[0.0,2,0.0],"s":"\"1e400"}"#
    );
}

#[test]
fn records_that_cannot_be_read_do_not_stop_or_sway_the_inference() {
    let types = |columns: Vec<ColumnSpec>| -> Vec<(String, ValueType)> {
        columns
            .into_iter()
            .map(|c| (c.name, c.value_type))
            .collect()
    };
    // Too few and too many fields (a quoted field holding a line end is one record).
    let csv = infer_columns(
        Format::Csv,
        b"a,b,c\n1,2,x\n4,5\n6,\"7\n\",y\nno,no,no,no\n8,9,z",
        b',',
        None,
    )
    .unwrap();
    assert_eq!(
        types(csv),
        [
            ("a".to_owned(), ValueType::Integer),
            ("b".to_owned(), ValueType::Text),
            ("c".to_owned(), ValueType::Text)
        ]
    );
    let kept = super::csv_records_as_long_as_the_header(b"a;b\n1;2\n3\n4;5;6\n7;8", b';', None);
    assert_eq!(kept, b"a;b\n1;2\n7;8");
    // Half an object, an array, a string: left out.
    let json = infer_columns(
        Format::Jsonl,
        b"{\"a\":1}\n{\"a\":2,\n[1]\n\"s\"\n\n{\"a\":3,\"b\":true}\n",
        b',',
        None,
    )
    .unwrap();
    assert_eq!(
        types(json),
        [
            ("a".to_owned(), ValueType::Integer),
            ("b".to_owned(), ValueType::Bool)
        ]
    );
    // A number past a float's range is a float (the reader reads it as infinity, as Spark
    // infers a double), not a bad record.
    let json = infer_columns(
        Format::Jsonl,
        b"{\"x\":1}\n{\"x\":1e400}\n{\"x\":5}\n",
        b',',
        None,
    )
    .unwrap();
    assert_eq!(types(json), [("x".to_owned(), ValueType::Float)]);
    // Values that look like a type and are not one (a 30th of February, an integer past i64):
    // text.
    let csv = infer_columns(
        Format::Csv,
        b"d,t,n,f,m\n2024-05-01,2024-05-01T00:00:00Z,1,2.5,7\n2024-02-30,2024-05-01T25:00:00,9999999999999999999,1e5,\n",
        b',',
        None,
    )
    .unwrap();
    assert_eq!(
        types(csv),
        [
            ("d".to_owned(), ValueType::Text),
            ("t".to_owned(), ValueType::Text),
            ("n".to_owned(), ValueType::Text),
            ("f".to_owned(), ValueType::Float),
            ("m".to_owned(), ValueType::Integer)
        ]
    );
    let none = infer_columns(Format::Jsonl, b"[1]\n{\"a\":", b',', None).unwrap_err();
    assert_eq!(
        none,
        "cannot infer the columns: no JSON object among the first lines could be read (line 1: not a JSON object)"
    );
}

#[test]
fn json_columns_are_inferred_as_the_readers_can_read_them() {
    let types = |head: &[u8]| -> Vec<(String, ValueType)> {
        infer_columns(Format::Jsonl, head, b',', None)
            .unwrap()
            .into_iter()
            .map(|c| (c.name, c.value_type))
            .collect()
    };
    let t = |name: &str, value_type| (name.to_owned(), value_type);
    // Integers then floats, wide integers, timestamps as strings, mixed kinds, late fields.
    assert_eq!(
        types(b"{\"i\":1,\"f\":1,\"w\":5,\"at\":\"2024-05-01T12:00:00Z\",\"m\":true}\n{\"f\":2.5,\"w\":9223372036854775808,\"m\":1,\"late\":null}\n"),
        [
            t("i", ValueType::Integer),
            t("f", ValueType::Float),
            t("w", ValueType::Text),
            t("at", ValueType::Text),
            t("m", ValueType::Text),
            t("late", ValueType::Text)
        ]
    );
    // A flattened key and the nested field it names are one column; what no type reads is
    // left out: arrays of objects or arrays, an object in some lines and a value in others, a
    // flattened key under a value.
    assert_eq!(
        types(b"{\"log.level\":\"info\",\"log\":{\"level\":\"x\"},\"objs\":[{\"z\":1}],\"deep\":[[1]],\"tags\":[\"a\",1,null],\"o\":{\"k\":1},\"msg\":\"hi\",\"msg.len\":2}\n{\"o\":5}\n"),
        [
            t("log.level", ValueType::Text),
            t("tags", ValueType::TextList),
            t("msg", ValueType::Text)
        ]
    );
    let err = infer_columns(Format::Jsonl, b"{}\n{\"a\":[[1]]}\n", b',', None).unwrap_err();
    assert_eq!(
        err,
        "cannot infer the columns: the first lines' objects hold no field that can be read (`a` (arrays of arrays or objects))"
    );
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

/// Random JSON lines: mostly plain objects with the declared fields among others, and lines
/// that are not plain in every way the plain reader gives back (escapes, numbers for text,
/// keys twice, bad JSON, deep nesting, invalid UTF-8). A field's value is an odd one one time
/// in `odd`, a line is disturbed (bad JSON, too deep) about five times in `max(odd, 80)`.
fn random_json_lines(seed: &mut u64, lines: usize, odd: u64) -> Vec<u8> {
    let mut next = move |n: u64| {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed % n
    };
    // Each list: the plain values first, then (taken one time in `odd`) the others.
    let pick =
        |next: &mut dyn FnMut(u64) -> u64, items: &(&[&'static str], &[&'static str])| match next(
            odd,
        ) {
            0 => items.1[next(items.1.len() as u64) as usize],
            _ => items.0[next(items.0.len() as u64) as usize],
        };
    let texts: (&[&str], &[&str]) = (
        &[
            r#""en""#,
            r#""de""#,
            r#""zoë""#,
            r#""日本""#,
            r#""""#,
            r#""2024-05-01T12:00:00Z""#,
            r#""1714564800""#,
            r#""never""#,
            "null",
            r#""tab	in""#,
        ],
        &[
            r#""a\"b""#,
            r#""\u00e9\ud83d\ude00""#,
            r#""\ud842\udfb7\ud840\udc00 \\ud842""#,
            r#""\b\f\n\r\t\/\\ \u0000""#,
            "-1.50e+2",
            "5",
            "true",
            "[]",
            "{}",
            r#""\ud800""#,
            r#""\udc00x""#,
            r#""\x""#,
            r#""\u12""#,
            "1.5e",
        ],
    );
    let numbers: (&[&str], &[&str]) = (
        &[
            "0",
            "-0",
            "7",
            "-42",
            "9223372036854775807",
            "-9223372036854775808",
            "null",
            "31",
        ],
        &[
            "9223372036854775808",
            "1.5",
            "-2.25e3",
            "1E2",
            "1e400",
            "01",
            "-",
            "1.",
            ".5",
            r#""3""#,
            "true",
            "1e-320",
        ],
    );
    let bools: (&[&str], &[&str]) = (&["true", "false", "null"], &["1", r#""true""#, "tru"]);
    let lists: (&[&str], &[&str]) = (
        &[
            "[]",
            r#"["rust","日本"]"#,
            r#"[ "a" , null ,"" ]"#,
            "null",
            r#"["x"]"#,
            r#"[1, true, "5", -2.5e3, false]"#,
        ],
        &[
            r#"["a\"b","\u00e9\ud83d\ude00", "\ud842\udfb7"]"#,
            r#"[["x"]]"#,
            "[{}]",
            r#""x""#,
            r#"["a",]"#,
            r#"["a" "b"]"#,
            "[",
            "{}",
            "1",
            "[nul]",
            r#"["\ud800"]"#,
            "[01]",
        ],
    );
    let noise: (&[&str], &[&str]) = (
        &[
            "1",
            "-3.5e-2",
            r#""plain""#,
            r#""with \\ \/ \n \u00fc \ud83d\ude00""#,
            "[]",
            "[1,[2,{\"k\":null}]]",
            "{}",
            r#"{"lang":"inner"}"#,
            "null",
            "false",
        ],
        &[r#""\ud800""#, r#""\x""#, "[1,]", "{\"a\" 1}", "nul"],
    );
    let keys: (&[&str], &[&str]) = (&["id", "text", "media", ""], &["l\\u0061ng", "lang"]);
    let mut out = Vec::new();
    for _ in 0..lines {
        let mut fields: Vec<String> = Vec::new();
        if next(4) > 0 {
            fields.push(format!(r#""lang":{}"#, pick(&mut next, &texts)));
        }
        if next(4) > 0 {
            fields.push(format!(r#""n":{}"#, pick(&mut next, &numbers)));
        }
        if next(3) > 0 {
            fields.push(format!(r#""x":{}"#, pick(&mut next, &numbers)));
        }
        if next(3) > 0 {
            fields.push(format!(r#""at":{}"#, pick(&mut next, &texts)));
        }
        if next(3) > 0 {
            fields.push(format!(r#""tags":{}"#, pick(&mut next, &lists)));
        }
        match next(6) {
            0 => fields.push(r#""account":null"#.into()),
            1 => fields.push(r#""account":"x""#.into()),
            2 => {}
            _ => {
                let mut inner = Vec::new();
                if next(4) > 0 {
                    inner.push(format!(r#""acct":{}"#, pick(&mut next, &texts)));
                }
                if next(4) > 0 {
                    inner.push(format!(r#""bot":{}"#, pick(&mut next, &bools)));
                }
                if next(3) == 0 {
                    inner.push(format!(r#""more":{}"#, pick(&mut next, &noise)));
                }
                fields.push(format!(r#""account": {{ {} }}"#, inner.join(" , ")));
            }
        }
        for _ in 0..next(3) {
            let key = pick(&mut next, &keys);
            fields.push(format!(r#""{key}":{}"#, pick(&mut next, &noise)));
        }
        // Fields in any order.
        for i in (1..fields.len()).rev() {
            fields.swap(i, next(i as u64 + 1) as usize);
        }
        let mut line = format!("{{{}}}", fields.join(","));
        match next(odd.max(80)) {
            0 => line.push_str(" {}"),
            1 => line.insert(0, '['),
            2 => line = format!("{}{}", "{\"d\":".repeat(70), "}".repeat(70)),
            3 => line = line.replace(',', ",,"),
            4 => line.truncate(line.len() / 2),
            5 => line = format!("  \t{line}\t "),
            _ => {}
        }
        out.extend_from_slice(line.as_bytes());
        if next(200) == 0 {
            out.extend_from_slice(b"\"\xff\"");
        }
        out.extend_from_slice(if next(20) == 0 { b"\r\n" } else { b"\n" });
    }
    out
}

#[test]
fn plain_json_reads_what_the_reader_reads() {
    let columns: &[(&str, &str)] = &[
        ("lang", "text?"),
        ("n", "integer?"),
        ("x", "float?"),
        ("at", "timestamp?"),
        ("account.acct", "text?"),
        ("account.bot", "bool?"),
        ("tags", "list?"),
    ];
    let mut strict = columns.to_vec();
    strict[1].1 = "integer"; // required: a missing n is a bad record
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let (mut plain_lines, mut all_lines, mut mixed_runs) = (0, 0, 0);
    for case in 0..300 {
        // One run in three with few lines that are not plain: read by both readers at once.
        let odd = if case % 3 == 0 { 400 } else { 6 };
        let input = random_json_lines(&mut seed, 1 + case % 40, odd);
        let declared = if case % 2 == 0 { columns } else { &strict[..] };
        let plain = decoder(Format::Jsonl, declared);
        let mut arrow_only = decoder(Format::Jsonl, declared);
        assert!(plain.plain_json.is_some());
        arrow_only.plain_json = None;
        let shown = String::from_utf8_lossy(&input);
        match (plain.decode(&input), arrow_only.decode(&input)) {
            (Ok((got, got_bad)), Ok((want, want_bad))) => {
                let got = one_batch(got, &plain.schema());
                let want = one_batch(want, &plain.schema());
                assert_eq!(got, want, "{shown}");
                let lines = |bad: &[BadRecord]| {
                    bad.iter()
                        .map(|b| (b.line, b.reason.clone()))
                        .collect::<Vec<_>>()
                };
                assert_eq!(lines(&got_bad), lines(&want_bad), "{shown}");
            }
            (got, want) => assert_eq!(got.err(), want.err(), "{shown}"),
        }
        let reader = plain.plain_json.as_ref().unwrap();
        let mut lines = Vec::new();
        for line in input.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            all_lines += 1;
            plain_lines += reader
                .read(&[(0, line)], None)
                .is_some_and(|read| read.others.is_empty()) as usize;
            lines.push((lines.len(), line));
        }
        mixed_runs += reader
            .read(&lines, None)
            .is_some_and(|read| !read.others.is_empty()) as usize;
    }
    // Every path was taken often: the plain reader alone, Arrow's alone, and both in one run.
    assert!(
        plain_lines * 4 > all_lines && plain_lines * 4 < all_lines * 3,
        "{plain_lines} of {all_lines} lines plain"
    );
    assert!(mixed_runs >= 30, "{mixed_runs} runs read by both");
}

/// Objects of many keys, declared and not, read alike by both readers (the plain reader finds a
/// level's keys by name once there are many; an object of 300,000 keys took minutes).
#[test]
fn objects_of_many_keys_are_read_alike_by_both_readers() {
    let declared: Vec<(String, &str)> = (0..40)
        .map(|k| (format!("k{}", k * 7), "integer?"))
        .chain([
            ("deep.k3".to_owned(), "integer?"),
            ("deep.k39".to_owned(), "integer?"),
        ])
        .collect();
    let columns: Vec<(&str, &str)> = declared.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    let mut input = String::new();
    for line in 0..20 {
        let keys: Vec<String> = (0..300)
            .filter(|k| (k + line) % 5 != 0)
            .map(|k| format!("\"k{k}\": {}", k * 1000 + line))
            .collect();
        let deep: Vec<String> = (0..40).map(|k| format!("\"k{k}\": {line}")).collect();
        input.push_str(&format!(
            "{{{}, \"deep\": {{{}}}}}\n",
            keys.join(", "),
            deep.join(", ")
        ));
    }
    let plain = decoder(Format::Jsonl, &columns);
    let mut arrow_only = decoder(Format::Jsonl, &columns);
    arrow_only.plain_json = None;
    let reader = plain.plain_json.as_ref().unwrap();
    let first = input.lines().next().unwrap().as_bytes();
    assert!(reader
        .read(&[(0, first)], None)
        .is_some_and(|read| read.others.is_empty()));
    let (got, got_bad) = plain.decode(input.as_bytes()).unwrap();
    let (want, want_bad) = arrow_only.decode(input.as_bytes()).unwrap();
    assert!(got_bad.is_empty() && want_bad.is_empty());
    let got = one_batch(got, &plain.schema());
    assert_eq!(got, one_batch(want, &plain.schema()));
    assert_eq!(texts(&got, "k14")[..2], ["14000", ""]);
    assert_eq!(texts(&got, "k0")[..2], ["", "1"]);
}

#[test]
fn escaped_characters_past_the_first_astral_plane_are_read_right_by_both_readers() {
    // arrow-json 60 alone reads `\ud842\udfb7` (U+20BB7) as U+10BB7.
    let input = "{\"lang\":\"\\ud842\\udfb7 \\ud83d\\ude00\"}\n{\"lang\":\"\\ud842\\udfb7\",\"lang\":\"\\udbff\\udfff\"}\n";
    let plain = decoder(Format::Jsonl, &[("lang", "text")]);
    let mut arrow_only = decoder(Format::Jsonl, &[("lang", "text")]);
    arrow_only.plain_json = None;
    for d in [&plain, &arrow_only] {
        let (batches, bad) = d.decode(input.as_bytes()).unwrap();
        assert!(bad.is_empty());
        let out = one_batch(batches, &d.schema());
        assert_eq!(texts(&out, "lang"), ["\u{20BB7} \u{1F600}", "\u{10FFFF}"]);
    }
}

#[test]
fn a_bad_csv_record_is_told_by_its_column_name_without_arrows_line_count() {
    // The file has a column nobody declares: Arrow numbers columns in the file.
    let header = ["name", "skipped", "n", "x", "ok"]
        .map(String::from)
        .to_vec();
    let columns = [
        ("name", "text"),
        ("n", "integer"),
        ("x", "float?"),
        ("ok", "bool?"),
    ]
    .iter()
    .map(|(n, t)| ColumnSpec::parse(n, t).unwrap())
    .collect();
    let d = RecordDecoder::csv(header, columns, b',').unwrap();
    let mut input =
        b"a,-,1,1.5,true\nb,-,one,1.5,true\nc,-,1,1.5.1,\nd,-,1,,maybe\ne,-,1\nf,-,1,2,true,6\n"
            .to_vec();
    // Not UTF-8 in the column after the one nobody declares.
    input.extend_from_slice(b"g,-,1,2,\xfftrue\n");
    // A value that spells Arrow's message must not make it name another column.
    input.extend_from_slice(b"h,-,x' as type 'Int64' for column 0 at line 1. Row data: 'y,2,\n");
    // Counted as a CSV reader counts: a quoted comma is inside a field.
    input.extend_from_slice(b"i,-,1,2,true,\"x,y\",7,\n");
    let (batches, bad) = d.decode(&input).unwrap();
    assert_eq!(one_batch(batches, &d.schema()).num_rows(), 1);
    let reasons: Vec<(usize, &str)> = bad.iter().map(|b| (b.line, b.reason.as_str())).collect();
    assert_eq!(
        reasons[..6],
        [
            (1, "`n`: \"one\" is not an integer"),
            (2, "`x`: \"1.5.1\" is not a float"),
            (3, "`ok`: \"maybe\" is not true or false"),
            (4, "3 fields where the header has 5"),
            (5, "6 fields where the header has 5"),
            (6, "`ok`: not UTF-8"),
        ]
    );
    assert_eq!(bad.len(), 8, "{bad:?}");
    assert!(!bad[6].reason.starts_with("`name`"), "{bad:?}");
    assert_eq!(
        (bad[7].line, bad[7].reason.as_str()),
        (8, "8 fields where the header has 5")
    );
}

#[test]
fn a_bad_json_line_is_told_by_the_field_path_as_declared() {
    let d = decoder(
        Format::Jsonl,
        &[
            ("n", "integer"),
            ("account.acct", "text?"),
            ("account.bot", "bool?"),
        ],
    );
    let input = concat!(
        "{\"n\": 1}\n",
        "{\"n\": \"many\"}\n",
        "{\"n\": 2, \"account\": {\"bot\": \"maybe\"}}\n",
        "{\"n\": [3]}\n",
        "{\"n\": 4, \"account\": \"ana\"}\n",
    );
    let (batches, bad) = d.decode(input.as_bytes()).unwrap();
    assert_eq!(one_batch(batches, &d.schema()).num_rows(), 1);
    let reasons: Vec<(usize, &str)> = bad.iter().map(|b| (b.line, b.reason.as_str())).collect();
    assert_eq!(
        reasons[..2],
        [
            (1, "`n`: \"many\" is not an integer"),
            (2, "`account.bot`: \"maybe\" is not true or false")
        ],
        "{reasons:?}"
    );
    assert_eq!(reasons[2], (3, "`n`: [3] is not an integer"));
    assert_eq!(
        reasons[3],
        (
            4,
            "`account`: \"ana\" is not an object (a dotted path reads a field of one)"
        )
    );
}

#[test]
fn json_that_is_not_standard_or_loses_a_fraction_is_a_bad_line() {
    let d = decoder(Format::Jsonl, &[("n", "integer?"), ("s", "text?")]);
    let input = concat!(
        "{\"n\": 1e3, \"s\": \"tab\tin\"}\n",
        "{\"n\": 2.5}\n",
        "{\"s\": 1.5.3}\n",
        "{\"s\": 01}\n",
        "{\"n\": 2,}\n",
        "{\"n\": \"-7\", \"\\u0073\": 4}\n",
        "{\"n\": \"2.5\"}\n",
    );
    let (batches, bad) = d.decode(input.as_bytes()).unwrap();
    let batch = one_batch(batches, &d.schema());
    assert_eq!(
        (0..batch.num_rows())
            .map(|r| crate::data::cell(batch.column(0).as_ref(), r).to_text())
            .collect::<Vec<_>>(),
        ["1000", "-7"]
    );
    let reasons: Vec<(usize, &str)> = bad.iter().map(|b| (b.line, b.reason.as_str())).collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    // A number is told without quotes, a string holding it with them.
    assert_eq!(reasons[0], (1, "`n`: 2.5 is not an integer"));
    for (line, reason) in &reasons[1..4] {
        assert!(reason.starts_with("not valid JSON: "), "{line}: {reason}");
    }
    assert_eq!(
        reasons[3].1,
        "not valid JSON: key must be a string at byte 9"
    );
    assert_eq!(reasons[4], (6, "`n`: \"2.5\" is not an integer"));
}

#[test]
fn json_nested_past_the_limit_is_a_bad_line_not_a_stack_overflow() {
    let d = decoder(Format::Jsonl, &[("a", "integer"), ("b", "list of text?")]);
    let deep = 100_000;
    let input = format!(
        "{{\"a\":1}}\n{{\"a\":2,\"b\":{}{}}}\n{{\"a\":3,\"s\":\"{}\"}}\n",
        "[".repeat(deep),
        "]".repeat(deep),
        "[".repeat(deep)
    );
    let (batches, bad) = d.decode(input.as_bytes()).unwrap();
    let batch = one_batch(batches, &d.schema());
    // Brackets inside a string are text, not nesting.
    assert_eq!(texts(&batch, "a"), ["1", "3"]);
    assert_eq!(bad.len(), 1, "{bad:?}");
    // Lines count from 0 here.
    assert_eq!(bad[0].line, 1);
    assert!(
        bad[0]
            .reason
            .starts_with("arrays and objects nest more than 1000 deep"),
        "{}",
        bad[0].reason
    );
}

#[test]
fn json_floats_in_strings_are_json_numbers_or_sparks_words_for_nan_and_infinity() {
    let d = decoder(Format::Jsonl, &[("x", "float?")]);
    let input = concat!(
        "{\"x\": \"1.5\"}\n",
        "{\"x\": \"+5\"}\n",
        "{\"x\": \"012\"}\n",
        "{\"x\": \"1.5 \"}\n",
        "{\"x\": \"NaN\"}\n",
        "{\"x\": \"-Infinity\"}\n",
        "{\"x\": \"-2e3\"}\n",
        "{\"x\": 7}\n",
    );
    let (batches, bad) = d.decode(input.as_bytes()).unwrap();
    let batch = one_batch(batches, &d.schema());
    assert_eq!(texts(&batch, "x"), ["1.5", "NaN", "-inf", "-2000.0", "7.0"]);
    let reasons: Vec<(usize, &str)> = bad.iter().map(|b| (b.line, b.reason.as_str())).collect();
    assert_eq!(
        reasons,
        [
            (1, "`x`: \"+5\" is not a float"),
            (2, "`x`: \"012\" is not a float"),
            (3, "`x`: \"1.5 \" is not a float")
        ]
    );
}

#[test]
fn json_integers_are_whole_numbers_decided_on_their_digits() {
    use super::exact_integer as int;
    for (written, value) in [
        ("12", Some(12)),
        ("-0", Some(0)),
        ("1e3", Some(1000)),
        ("12.50e1", Some(125)),
        ("0.0001e22", Some(1_000_000_000_000_000_000)),
        ("0e999999", Some(0)),
        ("0e9999999999", Some(0)),
        ("-0.000e-99999999999", Some(0)),
        ("0e", None),
        ("1e9999999999", None),
        ("-9223372036854775808", Some(i64::MIN)),
        ("-9223372036854775808.0", Some(i64::MIN)),
        ("9223372036854775807e0", Some(i64::MAX)),
        ("9223372036854775808.0", None),
        ("1e19", None),
        ("1e999999", None),
        ("2.5", None),
        ("4503599627370496.5", None),
        ("9007199254740993.0", Some(9_007_199_254_740_993)),
        ("1.", None),
        ("01", None),
        ("1e", None),
        ("1e+-5", None),
        ("+1", None),
        (" 1", None),
        ("1.5.3", None),
        ("", None),
    ] {
        assert_eq!(int(written.as_bytes()), value, "{written}");
    }
}

#[test]
fn a_csv_list_is_a_json_array_as_the_sinks_write_it() {
    let d = decoder(Format::Csv, &[("k", "text"), ("l", "list of text?")]);
    let input = b"b,[]\nc,\"[\"\"a b\"\",null,\"\"x\"\",1.5,true]\"\nd,\ne,[x\nf,[[1]]\n";
    let (batches, bad) = d.decode(input).unwrap();
    let out = one_batch(batches, &d.schema());
    let lists: Vec<serde_json::Value> = (0..out.num_rows())
        .map(|r| crate::data::cell(out.column(1).as_ref(), r).to_json())
        .collect();
    assert_eq!(
        lists,
        [
            serde_json::json!([]),
            serde_json::json!(["a b", null, "x", "1.5", "true"]),
            serde_json::Value::Null
        ]
    );
    assert_eq!(bad.len(), 2);
    assert_eq!(bad[1].line, 4);
    assert_eq!(
        (bad[0].line, bad[0].reason.as_str()),
        (
            3,
            "`l`: \"[x\" is not a list (a JSON array of texts, as `[\"a\",null]`)"
        )
    );
}

#[test]
fn repeated_csv_header_names_are_suffixed_as_duckdb_does() {
    let names = |n: &[&str]| super::unique_names(n.iter().map(|s| s.to_string()).collect());
    assert_eq!(names(&["a", "b", "a"]), ["a", "b", "a_1"]);
    // A name the header writes stays that column's (DuckDB would rename the written `a_1`).
    assert_eq!(names(&["a", "a", "a_1", "a"]), ["a", "a_2", "a_1", "a_3"]);
    assert_eq!(names(&["a", "a", "b", "a_1"]), ["a", "a_2", "b", "a_1"]);
    assert_eq!(names(&["a", "a_1", "a"]), ["a", "a_1", "a_2"]);
    assert_eq!(
        names(&["x", "", "y", " "]),
        ["x", "column1", "y", "column3"]
    );
    let mut twelve = vec!["x".to_string(), String::new(), "y".to_string()];
    twelve.extend((3..12).map(|_| String::new()));
    let named = super::unique_names(twelve);
    assert_eq!(&named[..4], ["x", "column01", "y", "column03"]);
    assert_eq!(named[11], "column11");
    assert_eq!(names(&["column1", ""]), ["column1", "column1_1"]);
    assert_eq!(names(&["", "column0"]), ["column0_1", "column0"]);
    assert_eq!(names(&["x", "y"]), ["x", "y"]);
    let inferred = super::infer_columns(Format::Csv, b"a,b,a\n1,2,x\n", b',', None).unwrap();
    let inferred: Vec<(&str, ValueType)> = inferred
        .iter()
        .map(|c| (c.name.as_str(), c.value_type))
        .collect();
    assert_eq!(
        inferred,
        [
            ("a", ValueType::Integer),
            ("b", ValueType::Integer),
            ("a_1", ValueType::Text)
        ]
    );
}

#[test]
fn a_quote_left_open_on_its_line_is_told_so() {
    let d = decoder(Format::Csv, &[("a", "integer"), ("b", "text")]);
    let (batches, bad) = d.decode(b"1,\"line1\nline2\"\n2,ok\n").unwrap();
    assert_eq!(one_batch(batches, &d.schema()).num_rows(), 1);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(
        bad[0]
            .reason
            .starts_with("a quoted field does not end on its line"),
        "{bad:?}"
    );
}

#[test]
fn a_dotted_name_is_also_a_key_of_its_own_in_both_readers() {
    let input = b"{\"a.b\":1}\n{\"a\":{\"b\":2}}\n{\"a.b\":3,\"a\":{\"b\":4}}\n{\"log.level\":\"info\",\"a.b\":5}\n";
    let declared = [("a.b", "integer?"), ("log.level", "text?")];
    let plain = decoder(Format::Jsonl, &declared);
    let mut arrow_only = decoder(Format::Jsonl, &declared);
    arrow_only.plain_json = None;
    for d in [&plain, &arrow_only] {
        let (batches, bad) = d.decode(input).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        let out = one_batch(batches, &d.schema());
        assert_eq!(texts(&out, "a.b"), ["1", "2", "3", "5"]);
        assert_eq!(texts(&out, "log.level"), ["", "", "", "info"]);
    }
}

#[test]
fn a_stream_tells_the_first_bad_record_of_an_epoch_whichever_piece_fails_first() {
    let records = StreamRecords::new(
        decoder(Format::Jsonl, &[("k", "text")]),
        OnError::Fail,
        crate::sources::file::EncodingErrors::Fail,
    );
    // Two pieces decoded in parallel: the first ends in half an object, the second (small,
    // so done first) holds invalid UTF-8.
    let mut first = "{\"k\":\"a\"}\n".repeat(2000).into_bytes();
    first.extend_from_slice(b"{\"k\":\n");
    let second = b"{\"k\":\"\xff\"}\n".to_vec();
    for _ in 0..20 {
        let error = records
            .decode(&[first.clone(), second.clone()], |chunk, line| {
                format!("chunk {chunk} line {}", line + 1)
            })
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("chunk 0 line 2001"), "{error}");
    }
}

#[test]
fn a_carriage_return_inside_a_line_is_a_bad_record_not_a_lost_one() {
    // Arrow's reader ends a record at a lone `\r`: the line held two, and the last line's
    // record was dropped without a word.
    let d = decoder(Format::Csv, &[("a", "integer"), ("b", "integer")]);
    let (batches, bad) = d.decode(b"1,2\r3,4\n5,6\n7,8\r\n9,10\n").unwrap();
    let batch = one_batch(batches, &d.schema());
    assert_eq!(texts(&batch, "a"), ["5", "7", "9"]);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].line, 0);
    assert!(
        bad[0]
            .reason
            .starts_with("a carriage return (\\r) inside the line"),
        "{bad:?}"
    );
    // Windows line ends, and a doubled `\r` before one, are line ends, not records.
    let (batches, bad) = d.decode(b"1,2\r\n3,4\r\n5,6\r\r\n").unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(
        texts(&one_batch(batches, &d.schema()), "a"),
        ["1", "3", "5"]
    );
    // ... read together in one pass (not failed, then read line by line).
    let whole: &[u8] = b"1,2\r\n3,4\r\n";
    let records = [(0, &whole[..3]), (1, &whole[5..8])];
    assert!(d.decode_lines(&records, Some(whole)).is_ok());
    // Inside quotes it is the field's.
    let (batches, bad) = d.decode(b"1,2\n").unwrap();
    assert!(bad.is_empty());
    assert_eq!(one_batch(batches, &d.schema()).num_rows(), 1);
    let t = decoder(Format::Csv, &[("a", "text"), ("b", "integer")]);
    let (batches, bad) = t.decode(b"\"x\ry\",1\n").unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(texts(&one_batch(batches, &t.schema()), "a"), ["x\ry"]);
}

#[test]
fn bad_records_scattered_among_many_are_each_found_and_the_rest_kept_in_order() {
    for format in [Format::Csv, Format::Jsonl] {
        let d = decoder(format, &[("k", "text"), ("v", "integer")]);
        let mut input = String::new();
        let mut expected_bad = Vec::new();
        let mut expected_values = Vec::new();
        // More lines than one read takes, bad ones spread unevenly, two side by side.
        for line in 0..20_000usize {
            let bad = line % 997 == 3 || line == 10_001 || line == 10_002 || line == 19_999;
            let value = match bad {
                true => "x".to_owned(),
                false => line.to_string(),
            };
            match format {
                Format::Csv => input.push_str(&format!("k{line},{value}\n")),
                _ => input.push_str(&format!("{{\"k\":\"k{line}\",\"v\":\"{value}\"}}\n")),
            }
            match bad {
                true => expected_bad.push(line),
                false => expected_values.push(line.to_string()),
            }
        }
        let (batches, bad) = d.decode(input.as_bytes()).unwrap();
        let lines: Vec<usize> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, expected_bad, "{format:?}");
        assert!(bad.iter().all(|b| b.reason.contains("\"x\"")), "{bad:?}");
        let out = one_batch(batches, &d.schema());
        assert_eq!(texts(&out, "v"), expected_values, "{format:?}");
    }
}

#[test]
fn records_without_a_header_are_counted_against_the_declared_columns() {
    // A socket's CSV lines: no header line, the columns as declared.
    let d = decoder(Format::Csv, &[("name", "text"), ("n", "integer")]);
    let (_, bad) = d.decode(b"a,1\nb\nc,2,3\n").unwrap();
    let reasons: Vec<(usize, &str)> = bad.iter().map(|b| (b.line, b.reason.as_str())).collect();
    assert_eq!(
        reasons,
        [
            (1, "1 fields where 2 columns are declared"),
            (2, "3 fields where 2 columns are declared")
        ]
    );
}

/// Many bad records among good ones, of every kind the CSV reader names (a value, a field
/// count, bad UTF-8) and runs of them: each is told at its own line, and every good record is
/// read once, in order.
#[test]
fn many_bad_csv_records_are_each_told_and_the_good_ones_kept_in_order() {
    let d = decoder(Format::Csv, &[("k", "text"), ("n", "integer")]);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut input = Vec::new();
    let (mut kept, mut refused) = (Vec::new(), Vec::new());
    for line in 0..20_000usize {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        match seed % 10 {
            0 => input.extend_from_slice(format!("k{line},n/a\n").as_bytes()),
            1 if line % 7 == 0 => input.extend_from_slice(format!("k{line},1,extra\n").as_bytes()),
            2 if line % 5 == 0 => input.extend_from_slice(b"\xff,3\n"),
            _ => {
                input.extend_from_slice(format!("k{line},{line}\n").as_bytes());
                kept.push(line.to_string());
                continue;
            }
        }
        refused.push(line);
    }
    let (batches, bad) = d.decode(&input).unwrap();
    let out = one_batch(batches, &d.schema());
    assert_eq!(texts(&out, "n"), kept);
    assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), refused);
    assert!(bad
        .iter()
        .any(|b| b.reason == "`n`: \"n/a\" is not an integer"));
}

#[test]
fn a_csv_record_with_text_after_a_closing_quote_is_bad_not_rejoined() {
    let d = decoder(Format::Csv, &[("a", "integer"), ("b", "text")]);
    // Spark's escaped quote, a loose quote, then good records around them.
    let input = b"1,\"a\\\"b\"\n2,\"x\"y\n3,\"say \"\"hi\"\"\"\n4,x\"y\n";
    let (batches, bad) = d.decode(input).unwrap();
    let out = one_batch(batches, &d.schema());
    assert_eq!(texts(&out, "b"), ["say \"hi\"", "x\"y"]);
    let lines: Vec<usize> = bad.iter().map(|b| b.line).collect();
    assert_eq!(lines, [0, 1]);
    assert!(
        bad[0].reason.contains("escaped with a backslash"),
        "{}",
        bad[0].reason
    );
    assert!(bad[1]
        .reason
        .starts_with("field 2 has text after its closing quote"));
}

#[test]
fn a_csv_escape_reads_quotes_as_spark_writes_them() {
    let d = decoder(Format::Csv, &[("a", "integer"), ("b", "text")]).with_escape(Some(b'\\'));
    let input = b"1,\"say \\\"hi\\\"\"\n2,\"c\\\\d\"\n3,\"doubled \"\"too\"\"\"\n4,plain\\text\n";
    let (batches, bad) = d.decode(input).unwrap();
    assert!(
        bad.is_empty(),
        "{:?}",
        bad.iter().map(|b| &b.reason).collect::<Vec<_>>()
    );
    let out = one_batch(batches, &d.schema());
    assert_eq!(
        texts(&out, "b"),
        ["say \"hi\"", "c\\d", "doubled \"too\"", "plain\\text"]
    );
}

#[test]
fn an_object_or_array_where_a_text_is_declared_is_its_json_text_as_in_spark() {
    let d = decoder(
        Format::Jsonl,
        &[("a", "text"), ("n", "integer"), ("l", "list?")],
    );
    let input = b"{\"a\":{\"b\":1},\"n\":1}\n{\"a\":[1,\"x\"],\"n\":2}\n{\"a\":\"plain\",\"n\":3}\n{\"a\":{\"b\": [1, {\"c\": null}]},\"n\":4,\"l\":[\"x\",{\"y\":1},[2]]}\n{\"a\":\"ok\",\"n\":\"five\"}\n";
    let (batches, bad) = d.decode(input).unwrap();
    let out = one_batch(batches, &d.schema());
    assert_eq!(
        texts(&out, "a"),
        [
            "{\"b\":1}",
            "[1,\"x\"]",
            "plain",
            "{\"b\":[1,{\"c\":null}]}"
        ]
    );
    assert_eq!(texts(&out, "n"), ["1", "2", "3", "4"]);
    // A bad value elsewhere on a line is still a bad record.
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].line, 4);
}

/// A messy CSV run (bad values in many records, with wrong field counts, bad UTF-8, missing
/// required fields and bad timestamps among them) decodes to the rows and the refusals, in the
/// reader's words, that reading each record alone gives: the screen that tells bad values
/// without a reader per record agrees with the reader.
#[test]
fn a_messy_csv_run_decodes_as_its_records_read_one_by_one() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let values: [&[&[u8]]; 6] = [
        &[
            b"1",
            b"-7",
            b"",
            b"x",
            b"1.5",
            b"+3",
            b"99999999999999999999",
            b" 4",
        ],
        &[b"ana", b"", b"\"q,uoted\"", b"caf\xc3\xa9", b"bad\xff"],
        &[
            b"1.5", b"", b"inf", b"NaN", b"1e400", b"1,5", b"abc", b"-0.0",
        ],
        &[b"true", b"FALSE", b"", b"yes", b"1", b"True"],
        &[b"2024-05-01T00:00:00Z", b"", b"2024-02-30", b"nope"],
        &[b"extra", b"x"],
    ];
    let mut text = Vec::new();
    for _ in 0..3000 {
        let fields = 5 + usize::from(next(20) == 0);
        let record: Vec<&[u8]> = (0..fields)
            .map(|f| values[f][next(values[f].len() as u64) as usize])
            .collect();
        text.extend_from_slice(&record.join(&b","[..]));
        text.push(b'\n');
    }
    let header = ["d", "n", "s", "x", "ok", "t"].map(String::from).to_vec();
    let specs = [
        ("n", "integer"),
        ("s", "text?"),
        ("x", "float?"),
        ("ok", "bool?"),
        ("t", "timestamp?"),
    ]
    .iter()
    .map(|(n, t)| ColumnSpec::parse(n, t).unwrap())
    .collect::<Vec<_>>();
    // With a header (the first field not read: a projection) and without one.
    for with_header in [true, false] {
        let decoder = match with_header {
            true => RecordDecoder::csv(header.clone(), specs.clone(), b',').unwrap(),
            false => RecordDecoder::new(Format::Csv, specs.clone(), b',').unwrap(),
        };
        let input: Vec<u8> = match with_header {
            true => text
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .flat_map(|l| [&b"7,"[..], l, b"\n"].concat())
                .collect(),
            false => text.clone(),
        };
        let (batches, bad) = decoder.decode(&input).unwrap();
        let rows = one_batch(batches, &decoder.schema());
        let mut alone_rows = Vec::new();
        let mut alone_bad = Vec::new();
        for (index, line) in input
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let (batches, mut refused) = decoder.decode(line).unwrap();
            alone_rows.extend(batches);
            refused.iter_mut().for_each(|r| r.line = index);
            alone_bad.append(&mut refused);
        }
        let alone = one_batch(alone_rows, &decoder.schema());
        assert!(
            bad.len() > 1000 && rows.num_rows() > 100,
            "{} bad",
            bad.len()
        );
        let told = |b: &[BadRecord]| {
            b.iter()
                .map(|r| (r.line, r.reason.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(told(&bad), told(&alone_bad), "header: {with_header}");
        assert_eq!(rows, alone, "header: {with_header}");
    }
}
