use super::*;
use arrow_array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use std::sync::Arc;

fn batch() -> RecordBatch {
    crate::data::word_counts(&["romeo", "thou", "i’ll", "one"], &[298, 277, 59, 60])
}

fn keep_in(expr: &str, batch: &RecordBatch) -> Vec<bool> {
    let p = compile(expr, &batch.schema()).unwrap_or_else(|e| panic!("{e}"));
    p.evaluate(batch)
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect()
}

fn keep(expr: &str) -> Vec<bool> {
    keep_in(expr, &batch())
}

fn error(expr: &str) -> String {
    compile(expr, &batch().schema()).unwrap_err()
}

/// Every row's value of `expr` over `batch`, as text (null as `null`).
fn values_in(expr: &str, batch: &RecordBatch) -> Vec<String> {
    let e = compile_expr(expr, &batch.schema()).unwrap_or_else(|e| panic!("{e}"));
    let out = e.evaluate(batch).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.len(), batch.num_rows());
    assert_eq!(out.data_type(), &e.data_type(), "{expr}");
    (0..out.len())
        .map(|row| match crate::data::cell(out.as_ref(), row) {
            crate::data::Cell::Null => "null".into(),
            cell => cell.to_text(),
        })
        .collect()
}

fn values(expr: &str) -> Vec<String> {
    values_in(expr, &batch())
}

/// A batch with nulls in every column: `s` text, `n` integer, `x` float, `t` timestamp.
fn nullable() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("s", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
        Field::new("x", DataType::Float64, true),
        Field::new("t", crate::data::timestamp_type(), true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![Some("Ab c"), None, Some("ΣΑΣ x")])),
            Arc::new(Int64Array::from(vec![Some(7), Some(-2), None])),
            Arc::new(Float64Array::from(vec![Some(2.5), None, Some(-0.5)])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    Some(1_714_564_800_000_000), // 2024-05-01T12:00:00Z
                    None,
                    Some(1_714_569_330_500_000), // 2024-05-01T13:15:30.5Z
                ])
                .with_timezone("UTC"),
            ),
        ],
    )
    .unwrap()
}

#[test]
fn comparisons_and_logic() {
    assert_eq!(keep("count >= 60"), [true, true, false, true]);
    assert_eq!(
        keep("count < 100 and not (word == 'one')"),
        [false, false, true, false]
    );
    assert_eq!(
        keep("word == \"romeo\" or count == 60"),
        [true, false, false, true]
    );
    assert_eq!(
        keep("word in [\"thou\", 'one']"),
        [false, true, false, true]
    );
    assert_eq!(keep("word not in ('thou')"), [true, false, true, true]);
    assert_eq!(
        keep("word != 'i’ll' and count > 1e2"),
        [true, true, false, false]
    );
    assert_eq!(keep("`count` <= -1"), [false, false, false, false]);
    assert_eq!(keep("count between 60 and 277"), [false, true, false, true]);
    assert_eq!(
        keep("count not between 60 and 277"),
        [true, false, true, false]
    );
    assert_eq!(
        keep("word like 'th%' or word like '_n_'"),
        [false, true, false, true]
    );
    assert_eq!(keep("word matches '^[a-z]+$'"), [true, true, false, true]);
    assert_eq!(keep("word not matches 'o'"), [false, false, true, false]);
    assert_eq!(
        keep("length(word) >= 4 AND count % 2 == 0"),
        [true, false, false, false]
    );
    assert_eq!(keep("count * 2 - 1 > 500"), [true, true, false, false]);
}

#[test]
fn arithmetic_and_functions() {
    assert_eq!(values("count + 1"), ["299", "278", "60", "61"]);
    assert_eq!(values("count / 2"), ["149.0", "138.5", "29.5", "30.0"]);
    assert_eq!(values("count % 7"), ["4", "4", "3", "4"]);
    assert_eq!(
        values("-count * 1.5"),
        ["-447.0", "-415.5", "-88.5", "-90.0"]
    );
    assert_eq!(values("upper(word)"), ["ROMEO", "THOU", "I’LL", "ONE"]);
    assert_eq!(values("length(word)"), ["5", "4", "4", "3"]);
    assert_eq!(values("substr(word, 2, 2)"), ["om", "ho", "’l", "ne"]);
    assert_eq!(values("substr(word, -2)"), ["eo", "ou", "ll", "ne"]);
    assert_eq!(
        values("regex_extract(word, '([aeiou])(.)', 2)"),
        ["m", "u", "’", "n"]
    );
    assert_eq!(
        values("contains(word, 'o') and ends_with(word, 'e')"),
        ["false", "false", "false", "true"]
    );
    assert_eq!(values("split(word, 'o')"), ["r me ", "th u", "i’ll", " ne"]);
    assert_eq!(values("length(split(word, 'o'))"), ["3", "2", "1", "2"]);
    // An empty separator splits into characters, as Spark's `split` does.
    assert_eq!(
        values("split(word, '')"),
        ["r o m e o", "t h o u", "i ’ l l", "o n e"]
    );
    // Empty text is one empty piece, whatever the separator.
    assert_eq!(values("length(split(substr(word, 9), ''))"), ["1"; 4]);
    assert_eq!(values("length(split(substr(word, 9), 'o'))"), ["1"; 4]);
    assert_eq!(values("cast(count as text)"), ["298", "277", "59", "60"]);
    assert_eq!(
        values("cast(count as float) / 4"),
        ["74.5", "69.25", "14.75", "15.0"]
    );
    assert_eq!(
        values("round(count / 7, 1)"),
        ["42.6", "39.6", "8.4", "8.6"]
    );
    assert_eq!(values("round(count, -1)"), ["300", "280", "60", "60"]);
    assert_eq!(values("abs(60 - count)"), ["238", "217", "1", "0"]);
    assert_eq!(values("'x'"), ["x", "x", "x", "x"]);
    assert_eq!(values("count > 100"), ["true", "true", "false", "false"]);
}

#[test]
fn nulls_propagate_as_in_sql() {
    let b = nullable();
    assert_eq!(values_in("n + 1", &b), ["8", "-1", "null"]);
    assert_eq!(values_in("n / 0", &b), ["null", "null", "null"]);
    assert_eq!(values_in("n % 0", &b), ["null", "null", "null"]);
    // -0.0 is zero too (Arrow's total order tells it from 0.0).
    assert_eq!(values_in("1.0 / -0.0", &b), ["null", "null", "null"]);
    assert_eq!(
        values_in("5.0 % (0.0 * -1.0)", &b),
        ["null", "null", "null"]
    );
    assert_eq!(values_in("x > 0", &b), ["true", "null", "false"]);
    assert_eq!(values_in("x > 0 or n > 0", &b), ["true", "null", "null"]);
    assert_eq!(values_in("x > 0 and n > 0", &b), ["true", "false", "false"]);
    assert_eq!(keep_in("not (x > 0)", &b), [false, false, true]);
    assert_eq!(keep_in("s is null", &b), [false, true, false]);
    assert_eq!(
        keep_in("s is not null and n is not null", &b),
        [true, false, false]
    );
    assert_eq!(values_in("coalesce(n, x, 0)", &b), ["7.0", "-2.0", "-0.5"]);
    assert_eq!(
        values_in("coalesce(s, 'none')", &b),
        ["Ab c", "none", "ΣΑΣ x"]
    );
    // `if`: a null condition takes the `else` value, as in Spark; an integer beside a float
    // is a float, as in `coalesce`.
    assert_eq!(
        values_in("if(x > 0, 'up', 'not up')", &b),
        ["up", "not up", "not up"]
    );
    assert_eq!(values_in("if(n >= 7, n, x)", &b), ["7.0", "null", "-0.5"]);
    assert_eq!(
        values_in("if(true, s, null)", &b),
        ["Ab c", "null", "ΣΑΣ x"]
    );
    assert_eq!(values_in("if(null, 1, 2)", &b), ["2", "2", "2"]);
    // A bad pattern is one line: the reason, not the regex parser's own drawing.
    let err = compile_expr("s matches '['", &b.schema()).unwrap_err();
    assert!(err.contains("unclosed character class"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    let err = compile_expr("if(n, 1, 2)", &b.schema()).unwrap_err();
    assert!(err.contains("`if` needs a condition first"), "{err}");
    let err = compile_expr("if(n > 1, 1, 'one')", &b.schema()).unwrap_err();
    assert!(err.contains("`if` mixes an integer and text"), "{err}");
    assert_eq!(values_in("lower(s)", &b), ["ab c", "null", "σας x"]);
    assert_eq!(values_in("length(null)", &b), ["null", "null", "null"]);
    assert_eq!(values_in("n in [7, 8]", &b), ["true", "false", "null"]);
    assert_eq!(values_in("trim(s)", &b), ["Ab c", "null", "ΣΑΣ x"]);
    // As Spark's `concat`: null when one part is null.
    assert_eq!(
        values_in("concat(s, '-', lower(s))", &b),
        ["Ab c-ab c", "null", "ΣΑΣ x-σας x"]
    );
    assert_eq!(values_in("concat('a', 'b')", &b), ["ab", "ab", "ab"]);
    assert_eq!(values_in("concat(s)", &b), ["Ab c", "null", "ΣΑΣ x"]);
    assert_eq!(values_in("concat(s, null)", &b), ["null", "null", "null"]);
    let err = compile_expr("concat(s, n)", &b.schema()).unwrap_err();
    assert!(
        err.ends_with("`concat` joins texts, found an integer: write `cast(... as text)`"),
        "{err}"
    );
    // `||` is `concat`, as in Spark SQL.
    assert_eq!(
        values_in("s || '-' || lower(s)", &b),
        ["Ab c-ab c", "null", "ΣΑΣ x-σας x"]
    );
    assert_eq!(
        values_in("s || 'x' == 'Ab cx'", &b),
        ["true", "null", "false"]
    );
    let err = compile_expr("s || n", &b.schema()).unwrap_err();
    assert!(
        err.ends_with("`||` joins texts, found an integer: write `cast(... as text)`"),
        "{err}"
    );
    let err = compile("n == null", &b.schema()).unwrap_err();
    assert!(err.contains("use `is null`"), "{err}");
}

#[test]
fn timestamps_compare_truncate_and_cast() {
    let b = nullable();
    assert_eq!(
        values_in("t", &b),
        ["2024-05-01T12:00:00Z", "null", "2024-05-01T13:15:30.500Z"]
    );
    assert_eq!(
        keep_in("t > '2024-05-01T12:30:00Z'", &b),
        [false, false, true]
    );
    assert_eq!(keep_in("t >= '2024-05-01'", &b), [true, false, true]);
    assert_eq!(
        values_in("date_trunc('hour', t)", &b),
        ["2024-05-01T12:00:00Z", "null", "2024-05-01T13:00:00Z"]
    );
    assert_eq!(
        values_in("date_trunc('week', t)", &b),
        ["2024-04-29T00:00:00Z", "null", "2024-04-29T00:00:00Z"]
    );
    for unit in ["millisecond", "MICROSECOND"] {
        assert_eq!(
            values_in(&format!("date_trunc('{unit}', t)"), &b),
            ["2024-05-01T12:00:00Z", "null", "2024-05-01T13:15:30.500Z"],
            "{unit}"
        );
    }
    assert_eq!(
        values_in("cast(t as integer)", &b),
        ["1714564800", "null", "1714569330"]
    );
    assert_eq!(
        values_in("cast(1714564800 as timestamp)", &b)[0],
        "2024-05-01T12:00:00Z"
    );
    assert_eq!(
        values_in("cast('2024-05-01 14:00:00+02:00' as timestamp)", &b)[0],
        "2024-05-01T12:00:00Z"
    );
    assert!(keep_in("now() > t", &b) == [true, false, true]);
    // Numbers past the years 1 to 9999 are no timestamp (RFC 3339 cannot write them).
    assert_eq!(
        values_in("cast(253402300799 as timestamp)", &b)[0],
        "9999-12-31T23:59:59Z"
    );
    assert_eq!(
        values_in("cast(-62135596800.0 as timestamp)", &b)[0],
        "0001-01-01T00:00:00Z"
    );
    // Past microseconds a float's seconds are truncated toward zero, as Spark's cast does.
    assert_eq!(
        values_in("cast(1714564800.123456789 as timestamp)", &b)[0],
        "2024-05-01T12:00:00.123456Z"
    );
    assert_eq!(
        values_in("cast(-0.0000015 as timestamp)", &b)[0],
        "1969-12-31T23:59:59.999999Z"
    );
    for past in [
        "253402300800",
        "-62135596801",
        "9223372036854",
        "253402300800.0",
        "-1e300",
    ] {
        let cast = compile_expr(&format!("cast({past} as timestamp)"), &b.schema()).unwrap();
        let err = cast.evaluate(&b).unwrap_err();
        assert!(
            err.contains("out of the timestamps' range (years 1 to 9999)"),
            "{err}"
        );
        assert_eq!(
            values_in(&format!("try_cast({past} as timestamp)"), &b),
            ["null", "null", "null"]
        );
    }
    // A text literal beside a timestamp in `coalesce` is one, as in a comparison.
    assert_eq!(
        values_in("coalesce(t, '2024-01-01')", &b),
        [
            "2024-05-01T12:00:00Z",
            "2024-01-01T00:00:00Z",
            "2024-05-01T13:15:30.500Z"
        ]
    );
    let err = compile("coalesce(t, 'soon')", &b.schema()).unwrap_err();
    assert!(err.contains("\"soon\" is not a timestamp"), "{err}");
    let err = compile("t > 'yesterday'", &b.schema()).unwrap_err();
    assert!(err.contains("is not a timestamp"), "{err}");
}

#[test]
fn run_time_errors_name_the_expression() {
    let b = nullable();
    let overflow = compile_expr("n + 9223372036854775807", &b.schema()).unwrap();
    let err = overflow.evaluate(&b).unwrap_err();
    assert!(err.contains("integer overflow"), "{err}");
    let bad_cast = compile_expr("cast(s as integer)", &b.schema()).unwrap();
    let err = bad_cast.evaluate(&b).unwrap_err();
    assert!(
        err.starts_with("`cast(s as integer)`: cannot cast \"Ab c\" to integer;")
            && err.contains("try_cast"),
        "{err}"
    );
    // The value as written, not as Arrow's message shows it (lower-cased), nor its type names.
    let err = compile_expr("cast(upper(s) as bool)", &b.schema())
        .unwrap()
        .evaluate(&b)
        .unwrap_err();
    assert!(err.contains("cannot cast \"AB C\" to bool"), "{err}");
    let err = compile_expr("cast(x * 1e300 * 1e300 as integer)", &b.schema())
        .unwrap()
        .evaluate(&b)
        .unwrap_err();
    assert!(
        err.contains("cannot cast inf to integer") && !err.contains("Int64"),
        "{err}"
    );
    let tried = compile_expr("try_cast(s as integer)", &b.schema()).unwrap();
    assert_eq!(tried.evaluate(&b).unwrap().null_count(), 3);
    assert_eq!(
        values_in("-9223372036854775808", &b)[0],
        i64::MIN.to_string()
    );
    // The same literal where an argument must be written in the expression.
    assert_eq!(
        values_in("substr('abc', -9223372036854775808)", &b)[0],
        "abc"
    );
    let err = compile_expr("substr('abc', 9223372036854775808)", &b.schema()).unwrap_err();
    assert!(err.contains("past the integers' range"), "{err}");
}

#[test]
fn text_casts_to_bool_as_spark_reads_it() {
    let spellings = [
        "true", "T", " Yes ", "y", "1", "FALSE", "f", "no", "N", "0", "on", "off", "tr", "", "2",
    ];
    let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
    let b = RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(spellings.to_vec()))],
    )
    .unwrap();
    assert_eq!(
        values_in("try_cast(s as bool)", &b),
        [
            "true", "true", "true", "true", "true", "false", "false", "false", "false", "false",
            "null", "null", "null", "null", "null"
        ]
    );
    let err = compile_expr("cast(s as bool)", &b.schema())
        .unwrap()
        .evaluate(&b)
        .unwrap_err();
    assert!(
        err.contains("cannot cast \"on\" to bool (true, t, yes"),
        "{err}"
    );
}

#[test]
fn type_errors_are_found_before_data() {
    assert!(error("count >= 'a'").contains("cannot compare an integer with text"));
    assert!(error("cuont > 1").contains("did you mean `count`?"));
    assert!(error("count").contains("not a condition; compare it, e.g. `count > 0`"));
    // Each type's example is itself a condition.
    assert!(error("word").contains("e.g. `word == 'a'` or `word is not null`"));
    let err = error("cast(word as varchar) == 'a'");
    assert!(
        err.contains(
            "`varchar` is not a type (a cast is to text, integer, float, bool, timestamp)"
        ),
        "{err}"
    );
    assert!(error("cast(word as txt) == 'a'").contains("did you mean `text`?"));
    assert!(error("null").contains("`null` is null, never true"));
    assert!(error("count > 1 and word").contains("`and` needs a condition"));
    assert!(error("word in [1, 2]").contains("list holds an integer"));
    assert!(error("count = 5").contains("use `==`"));
    assert!(error("(count > 1").contains("expected `)`"));
    assert!(error("count > ").contains("ends too early"));
    assert!(error("word == 'x").contains("no closing quote"));
    assert!(error("count > 1 2").contains("unexpected number"));
    assert!(error("count ~ 1").contains("character 7"));
    assert!(error("lenght(word) > 5").contains("did you mean `length`?"));
    assert!(error("sum(count) > 5").contains("is an aggregate"));
    assert!(error("word + 1 > 0").contains("`+` needs numbers, found text"));
    assert!(error("length(count) > 1").contains("needs text or a list"));
    assert!(error("substr(word, count) == 'a'").contains("must be an integer written"));
    assert!(error("word matches '('").contains("not a valid regular expression"));
    assert!(
        error("cast(word as date) == 1").contains("did you mean `float`?")
            || error("cast(word as date) == 1").contains("not a type")
    );
    assert!(error("regex_extract(word, 'a', 1) == ''").contains("group 1 does not exist"));
}

#[test]
fn select_items_are_named() {
    let schema = batch().schema();
    assert_eq!(
        compile_named("length(word) as len", &schema).unwrap().1,
        "len"
    );
    assert_eq!(compile_named("word", &schema).unwrap().1, "word");
    assert_eq!(
        compile_named(" count + 1 ", &schema).unwrap().1,
        "count + 1"
    );
    assert!(compile_named("word as", &schema)
        .unwrap_err()
        .contains("needs the new column's name"));
}

#[test]
fn aggregate_calls() {
    let schema = batch().schema();
    let (f, e) = compile_aggregate("sum(count * 2)", &schema).unwrap();
    assert_eq!(f, AggregateFunction::Sum);
    assert_eq!(e.unwrap().value_type(), ValueType::Integer);
    assert_eq!(
        compile_aggregate("count()", &schema).unwrap().0,
        AggregateFunction::Count
    );
    // SQL's spelling of the same.
    let (f, e) = compile_aggregate("COUNT( * )", &schema).unwrap();
    assert_eq!((f, e.is_none()), (AggregateFunction::Count, true));
    assert!(compile_aggregate("sum(*)", &schema).is_err());
    assert!(compile_aggregate("count(* 2)", &schema).is_err());
    assert!(compile_aggregate("sum(word)", &schema)
        .unwrap_err()
        .contains("cannot take text"));
    assert!(compile_aggregate("sum(null)", &schema)
        .unwrap_err()
        .contains("a bare `null` has no type for `sum` to take"));
    assert!(compile_aggregate("summ(count)", &schema)
        .unwrap_err()
        .contains("did you mean `sum`?"));
    assert!(compile_aggregate("count", &schema)
        .unwrap_err()
        .contains("not an aggregate call"));
}

/// Found by the `where_expr` fuzz target (10-minute run): 3,600 `(` overflowed the stack.
#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}count > 1{}", "(".repeat(5000), ")".repeat(5000));
    assert!(
        error(&deep).contains("nests more than 64 levels"),
        "{}",
        error(&deep)
    );
    assert!(error(&"not ".repeat(5000)).contains("nests more than 64 levels"));
    assert!(error(&"-".repeat(5000)).contains("nests more than 64 levels"));
    assert!(
        error(&format!("{}1{}", "abs(".repeat(100), ")".repeat(100)))
            .contains("nests more than 64")
    );
    let chain = vec!["count > 1"; 10_000].join(" and ");
    assert!(error(&chain).contains("more than 256 operators"));
    let fine = format!("{}count > 1{}", "(".repeat(60), ")".repeat(60));
    assert_eq!(keep(&fine), [true, true, true, true]);
    let long = vec!["count > 1"; 128].join(" or ");
    assert_eq!(keep(&long), [true, true, true, true]);
}

/// Integers against integers exactly; an integer against a float as floats, as Spark, DuckDB and
/// Polars compare them (and as a `--remote` run does).
#[test]
fn integers_compare_exactly_and_against_floats_as_floats() {
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let big = 9_007_199_254_740_993i64; // 2^53 + 1: as f64 it would be 2^53
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from(vec![
            big - 1,
            big,
            big + 1,
            i64::MAX,
        ]))],
    )
    .unwrap();
    assert_eq!(
        keep_in("n == 9007199254740993", &batch),
        [false, true, false, false]
    );
    assert_eq!(
        keep_in("n > 9007199254740992", &batch),
        [false, true, true, true]
    );
    assert_eq!(
        keep_in("n < 9007199254740994.0", &batch),
        [true, true, false, false]
    );
    assert_eq!(
        keep_in("9007199254740994.0 > n", &batch),
        [true, true, false, false]
    );
    assert_eq!(keep_in("n < 0.5", &batch), [false, false, false, false]);
    assert_eq!(
        keep_in("n >= 9223372036854775807", &batch),
        [false, false, false, true]
    );
    assert_eq!(keep_in("n < 1e30", &batch), [true, true, true, true]);
    assert_eq!(
        keep_in("n in [9007199254740994]", &batch),
        [false, false, true, false]
    );
    // 2^53 + 1 is 2^53 as a float.
    assert_eq!(
        keep_in("n == 9007199254740992.0", &batch),
        [true, true, false, false]
    );
    assert_eq!(
        keep_in("9007199254740992.0 >= n", &batch),
        [true, true, false, false]
    );
    // A float in the list makes the integers floats, the listed integer too.
    assert_eq!(
        keep_in("n in [9007199254740992, 0.5]", &batch),
        [true, true, false, false]
    );
    assert_eq!(
        keep_in("n not in [9007199254740992, 0.5]", &batch),
        [false, false, true, true]
    );
}

/// Found by the `where_expr` fuzz target: a non-ASCII character that is not alphanumeric
/// (here the combining mark U+0596) after a name made the lexer loop forever.
#[test]
fn a_non_alphanumeric_character_is_an_error_not_a_hang() {
    assert!(error("word\u{596}n in [1, 2]").contains("unexpected character `\u{596}`"));
    assert!(error("\u{2603} == 'x'").contains("at character 1: unexpected character"));
}

proptest::proptest! {
    /// Whatever combination of operators, a filter's answer for a row is the answer for that
    /// row alone: evaluating the whole batch equals evaluating each row as a batch of one.
    #[test]
    fn whole_batches_and_single_rows_agree(
        rows in proptest::collection::vec(
            (proptest::option::of("[a-c]{0,2}"), proptest::option::of(-3i64..4),
             proptest::option::of(proptest::sample::select(vec![-1.5, 0.0, 2.0, f64::NAN]))),
            1..30,
        ),
        expr in proptest::sample::select(vec![
            "count >= 1", "1 < count", "count != 2 and word == 'b'", "not (word < 'b') or x > 0",
            "x == 2", "not x != 2", "2 >= x and not (count <= -1)", "word >= 'ab' or count == 0",
            "count + x > 1", "count / x < 1", "coalesce(word, 'z') like 'a%'", "count in [1, x]",
            "length(word) between count and 3", "x is null or count % 2 == 1",
        ]),
    ) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("word", DataType::Utf8, true),
            Field::new("count", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(schema.clone(), vec![
            Arc::new(rows.iter().map(|r| r.0.clone()).collect::<StringArray>()),
            Arc::new(rows.iter().map(|r| r.1).collect::<Int64Array>()),
            Arc::new(rows.iter().map(|r| r.2).collect::<Float64Array>()),
        ]).unwrap();
        let predicate = compile(expr, &schema).unwrap();
        let whole: Vec<bool> = predicate.evaluate(&batch).unwrap().iter().map(|v| v.unwrap()).collect();
        let single: Vec<bool> = (0..batch.num_rows())
            .map(|row| predicate.evaluate(&batch.slice(row, 1)).unwrap().value(0))
            .collect();
        proptest::prop_assert_eq!(whole, single, "{}", expr);
    }
}

#[test]
fn floats_compare_as_spark_compares_them() {
    // NaN is above every number and equal to itself; -0.0 equals 0.0.
    let x: Arc<dyn arrow_array::Array> = Arc::new(Float64Array::from(vec![
        f64::NAN,
        -0.0,
        0.0,
        f64::NEG_INFINITY,
        1.0,
    ]));
    let b = RecordBatch::try_from_iter([("x", x)]).unwrap();
    let expected = [true, false, false, false, true];
    assert_eq!(keep_in("x > 0", &b), expected);
    assert_eq!(keep_in("x > 0.0", &b), expected);
    assert_eq!(keep_in("x == 0", &b), [false, true, true, false, false]);
    assert_eq!(keep_in("x == 0.0", &b), [false, true, true, false, false]);
    assert_eq!(keep_in("x == x", &b), [true; 5]);
    assert_eq!(keep_in("0 < x", &b), expected);
    assert_eq!(
        keep_in("x >= 9223372036854775807", &b),
        [true, false, false, false, false]
    );
}

#[test]
fn epoch_numbers_are_told_apart_by_size_and_stay_in_years_1_to_9999() {
    use crate::data::parse_timestamp as parse;
    let at = 1_714_557_600_123_456i64;
    assert_eq!(parse("1714557600"), Some(1_714_557_600_000_000));
    assert_eq!(parse("1714557600123"), Some(1_714_557_600_123_000));
    assert_eq!(parse("1714557600123456"), Some(at));
    assert_eq!(parse("1714557600123456789"), Some(at));
    assert_eq!(parse("0001-01-01T00:00:00Z"), Some(-62_135_596_800_000_000));
    assert_eq!(parse("99999999999"), Some(99_999_999_999_000_000));
    assert_eq!(parse("9999999999999999"), Some(9_999_999_999_999_999));
    assert_eq!(parse("-99999999999"), None);
    assert_eq!(parse("0000-01-01"), None);
    assert_eq!(parse("0000-01-01T00:00:00+01:00"), None);
    assert_eq!(parse("9999-12-31T23:59:59Z"), Some(253_402_300_799_000_000));
    // An offset of hours alone, as PostgreSQL prints a timestamptz.
    let ten_utc = Some(1_714_557_600_000_000);
    assert_eq!(parse("2024-05-01 12:00:00+02"), ten_utc);
    assert_eq!(parse("2024-05-01T12:00:00+0200"), ten_utc);
    assert_eq!(parse("2024-05-01 09:00:00-01"), ten_utc);
    // A fraction is decided on its digits and cut off past microseconds, as the cast cuts it.
    assert_eq!(parse("1714564800.9999996"), Some(1_714_564_800_999_999));
    assert_eq!(parse("1714564800.123456789"), Some(1_714_564_800_123_456));
    assert_eq!(parse("1714557600123.4567"), Some(1_714_557_600_123_456));
    assert_eq!(parse("-1.5"), Some(-1_500_000));
    assert_eq!(parse(".5"), Some(500_000));
    assert_eq!(parse("1.5e9"), Some(1_500_000_000_000_000));
    assert_eq!(parse("."), None);
    assert_eq!(parse("1.2.3"), None);
    // Nanoseconds are floored, written as an integer or with a fraction.
    assert_eq!(parse("-100000000000000001"), Some(-100_000_000_000_001));
    assert_eq!(parse("-100000000000000001.0"), Some(-100_000_000_000_001));
    assert_eq!(parse("-100000000000000000.5"), Some(-100_000_000_000_001));
    assert_eq!(parse("-100000000000000000.0"), Some(-100_000_000_000_000));
    // A float is decided on its shortest digits, as the text it prints as.
    assert_eq!(crate::data::epoch_number_micros(1.000001), Some(1_000_001));
    assert_eq!(crate::data::epoch_number_micros(-1.5), Some(-1_500_000));
    assert_eq!(crate::data::epoch_number_micros(1e300), None);
}

#[test]
fn like_escapes_are_spark_sqls() {
    let s: Arc<dyn arrow_array::Array> =
        Arc::new(StringArray::from(vec!["a_c", "abc", "a%c", "100%"]));
    let b = RecordBatch::try_from_iter([("s", s)]).unwrap();
    assert_eq!(keep_in(r"s like 'a\_c'", &b), [true, false, false, false]);
    assert_eq!(keep_in(r"s like '%\%'", &b), [false, false, false, true]);
    assert_eq!(keep_in(r"s like 'a_c'", &b), [true, true, true, false]);
    // Escapes Spark SQL refuses are refused when the pipeline is checked.
    for bad in [r"s like 'a\\c'", r"s like 'abc\\'"] {
        let err = compile_expr(bad, &b.schema()).err().unwrap();
        assert!(err.contains("escapes nothing"), "{bad}: {err}");
    }
}

#[test]
fn floats_print_as_cast_prints_them() {
    let values = vec![
        1.0,
        0.1,
        1e19,
        1e-7,
        5e-5,
        0.00012,
        -0.0,
        1e16,
        1e308,
        f64::NAN,
        f64::INFINITY,
    ];
    let floats: Arc<dyn arrow_array::Array> = Arc::new(Float64Array::from(values.clone()));
    let cast = arrow_cast::cast(&floats, &arrow_schema::DataType::Utf8).unwrap();
    let cast = cast.as_any().downcast_ref::<StringArray>().unwrap();
    for (row, x) in values.iter().enumerate() {
        assert_eq!(crate::data::float_text(*x), cast.value(row), "{x}");
    }
}

#[test]
fn a_null_cast_to_any_type_is_null() {
    let b = nullable();
    for to in ["integer", "float", "bool", "text", "timestamp"] {
        let cast = compile_expr(&format!("cast(null as {to})"), &b.schema()).unwrap();
        let out = cast.evaluate(&b).unwrap();
        assert_eq!(
            (out.len(), out.null_count()),
            (b.num_rows(), b.num_rows()),
            "{to}"
        );
    }
}

#[test]
fn casts_of_text_trim_spaces_and_controls_as_spark_not_unicode_spaces() {
    let s: Arc<dyn arrow_array::Array> = Arc::new(StringArray::from(vec![
        " 12 ",
        "\u{1}12",
        "\u{b}1.5",
        "\u{a0}12",
        "\u{3000}true",
        "\u{1c}true",
        "\ttrue\n",
    ]));
    let b = RecordBatch::try_from_iter([("s", s)]).unwrap();
    assert_eq!(
        values_in("try_cast(s as integer)", &b),
        ["12", "12", "null", "null", "null", "null", "null"]
    );
    assert_eq!(
        values_in("try_cast(s as float)", &b),
        ["12.0", "12.0", "1.5", "null", "null", "null", "null"]
    );
    assert_eq!(
        values_in("try_cast(s as bool)", &b),
        ["null", "null", "null", "null", "null", "true", "true"]
    );
}

/// A `select` item or `aggregate` key that is a column's whole name, spaces and all, is that
/// column (it parses as no expression); anything else still has to parse.
#[test]
fn a_column_named_like_no_expression_is_an_item_by_its_name() {
    let schema = Schema::new(vec![
        Field::new("first name", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
    ]);
    let (expr, name) = super::compile_named("first name", &schema).unwrap();
    assert_eq!((expr.as_column(), name.as_str()), (Some(0), "first name"));
    let (expr, name) = super::compile_named("`first name` as f", &schema).unwrap();
    assert_eq!((expr.as_column(), name.as_str()), (Some(0), "f"));
    assert!(super::compile_named("frist name", &schema)
        .unwrap_err()
        .contains("unexpected `name`"));
}

/// `if`, `coalesce`, `and` and `or` evaluate a part that can fail only on the rows that need
/// it, as Spark and SQL do: a guarded cast or a guarded product that would overflow is not an
/// error on a row the guard rules out.
#[test]
fn a_part_a_row_does_not_take_is_not_evaluated_on_it() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("s", DataType::Utf8, true),
        Field::new("i", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![Some("12"), Some("abc"), None])),
            Arc::new(Int64Array::from(vec![Some(1), Some(1 << 62), Some(3)])),
        ],
    )
    .unwrap();
    let values = |expr: &str| values_in(expr, &batch);
    assert_eq!(
        values(r"if(s matches '^\\d+$', cast(s as integer), null)"),
        ["12", "null", "null"]
    );
    assert_eq!(values("if(i < 100, i * 4, 0)"), ["4", "0", "12"]);
    assert_eq!(values("if(i > 100, 0, i * 4)"), ["4", "0", "12"]);
    assert_eq!(values("i < 100 and i * 4 > 0"), ["true", "false", "true"]);
    assert_eq!(values("i > 100 or i * 4 > 0"), ["true", "true", "true"]);
    assert_eq!(
        values("coalesce(i, i * 4)"),
        ["1", "4611686018427387904", "3"]
    );
    // A null guard decides nothing: the rest is evaluated there.
    assert_eq!(values("s == '12' and i * 2 > 0"), ["true", "false", "null"]);
    // A row that takes the failing part still fails, naming the value.
    let e = compile_expr("if(i > 100, i * 4, i - 1)", &batch.schema()).unwrap();
    let error = e.evaluate(&batch).unwrap_err().to_string();
    assert!(error.contains("4611686018427387904 * 4"), "{error}");
}
