use super::*;
use crate::transforms::compliance::{build, texts};
use arrow_array::{Float64Array, Int64Array, StringArray};

/// `customer` text, `amount` integer, `price` float; nulls in each.
fn sales() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer", DataType::Utf8, true),
        Field::new("amount", DataType::Int64, true),
        Field::new("price", DataType::Float64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![
                Some("ana"),
                Some("bo"),
                Some("ana"),
                None,
                Some("zoë"),
                Some("bo"),
            ])),
            Arc::new(Int64Array::from(vec![
                Some(3),
                Some(5),
                None,
                Some(7),
                Some(1),
                Some(5),
            ])),
            Arc::new(Float64Array::from(vec![
                Some(1.5),
                Some(2.0),
                Some(0.5),
                None,
                Some(4.0),
                Some(-1.0),
            ])),
        ],
    )
    .unwrap()
}

/// The aggregation `yaml` builds over `input`, and its output schema.
fn aggregation_over(yaml: &str, input: &SchemaRef) -> (Box<dyn Aggregation>, SchemaRef) {
    let stage = build::<AggregateConfig>(yaml, input).unwrap_or_else(|e| panic!("{e}"));
    let StageKind::Aggregate(a) = stage.kind else {
        panic!("an aggregate stage")
    };
    (a, stage.output)
}

fn aggregation(yaml: &str) -> (Box<dyn Aggregation>, SchemaRef) {
    aggregation_over(yaml, &sales().schema())
}

fn error(yaml: &str) -> String {
    build::<AggregateConfig>(yaml, &sales().schema())
        .err()
        .unwrap()
}

fn one_state(yaml: &str, batch: &RecordBatch) -> RecordBatch {
    let (a, output) = aggregation(yaml);
    let mut state = a.new_state();
    state.begin_morsel(0);
    state.update(batch).unwrap();
    let result = state.result().unwrap();
    assert_eq!(result.schema(), output);
    result
}

const ALL: &str = "{by: customer, aggs: {n: count(), amounts: count(amount), total: sum(amount), mean: avg(amount), low: min(price), high: max(customer), kinds: count_distinct(amount), first: first(amount), last: last(price), all: collect_list(amount)}}";

#[test]
fn every_aggregate_by_key_with_nulls() {
    let out = one_state(ALL, &sales());
    // Key order, null first.
    assert_eq!(texts(&out, "customer"), ["", "ana", "bo", "zoë"]);
    assert_eq!(out.column(0).null_count(), 1);
    assert_eq!(texts(&out, "n"), ["1", "2", "2", "1"]);
    assert_eq!(texts(&out, "amounts"), ["1", "1", "2", "1"]);
    assert_eq!(texts(&out, "total"), ["7", "3", "10", "1"]);
    assert_eq!(texts(&out, "mean"), ["7.0", "3.0", "5.0", "1.0"]);
    assert_eq!(texts(&out, "low"), ["", "0.5", "-1.0", "4.0"]);
    assert_eq!(texts(&out, "high"), ["", "ana", "bo", "zoë"]);
    assert_eq!(texts(&out, "kinds"), ["1", "1", "1", "1"]);
    assert_eq!(texts(&out, "first"), ["7", "3", "5", "1"]);
    assert_eq!(texts(&out, "last"), ["", "0.5", "-1.0", "4.0"]);
    assert_eq!(texts(&out, "all"), ["7", "3", "5 5", "1"]);
}

#[test]
fn no_keys_is_one_group_even_over_no_rows() {
    let out = one_state(
        "aggs: {n: count(), total: sum(amount), mean: avg(price)}",
        &sales(),
    );
    assert_eq!(texts(&out, "n"), ["6"]);
    assert_eq!(texts(&out, "total"), ["21"]);
    assert_eq!(texts(&out, "mean"), ["1.4"]);
    let empty = one_state(
        "aggs: {n: count(), total: sum(amount)}",
        &sales().slice(0, 0),
    );
    assert_eq!(texts(&empty, "n"), ["0"]);
    assert_eq!(
        empty.column(1).null_count(),
        1,
        "a sum of no values is null"
    );
}

#[test]
fn key_expressions_and_several_keys() {
    let out = one_state(
        "{by: [\"amount > 2 as big\", \"upper(coalesce(customer, '?')) as who\"], aggs: {n: count()}}",
        &sales(),
    );
    assert_eq!(texts(&out, "big"), ["", "false", "true", "true", "true"]);
    assert_eq!(texts(&out, "who"), ["ANA", "ZOË", "?", "ANA", "BO"]);
    assert_eq!(texts(&out, "n"), ["1", "1", "1", "1", "2"]);
}

/// Split into morsels handed to states in any order, merged: the same answer as one state,
/// `first`/`last`/`collect_list` included (they follow input order, not arrival).
#[test]
fn partial_states_merge_to_the_answer_of_one() {
    let batch = sales();
    let expected = one_state(ALL, &batch);
    let (a, _) = aggregation(ALL);
    for split in 1..batch.num_rows() {
        let mut late = a.new_state();
        late.begin_morsel(1);
        late.update(&batch.slice(split, batch.num_rows() - split))
            .unwrap();
        let mut early = a.new_state();
        early.begin_morsel(0);
        early.update(&batch.slice(0, split)).unwrap();
        let mut merged = a.new_state();
        merged.merge(late).unwrap();
        merged.merge(early).unwrap();
        assert_eq!(merged.result().unwrap(), expected, "split at {split}");
    }
}

/// More groups than are sorted on one thread: states of unequal size merged either way round,
/// the result taken inside a pool of two (sorted and decoded in parts) and outside it, both
/// equal to sums computed here.
#[test]
fn hundreds_of_thousands_of_groups_merge_sort_and_decode_in_parts_alike() {
    let groups = 150_000;
    let rows = 400_000;
    let schema = sales().schema();
    let batch = |range: std::ops::Range<usize>| {
        let keys: StringArray = range
            .clone()
            .map(|i| Some(format!("k{}", i % groups)))
            .collect();
        let amounts: Int64Array = range.clone().map(|i| Some(i as i64)).collect();
        let prices: Float64Array = range.map(|i| Some((i % 7) as f64)).collect();
        RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(keys), Arc::new(amounts), Arc::new(prices)],
        )
        .unwrap()
    };
    let mut expected = std::collections::BTreeMap::<String, (i64, i64, f64)>::new();
    for i in 0..rows {
        let entry = expected.entry(format!("k{}", i % groups)).or_default();
        entry.0 += 1;
        entry.1 += i as i64;
        entry.2 += (i % 7) as f64;
    }
    let yaml = "{by: customer, aggs: {n: count(), total: sum(amount), mean: avg(price)}}";
    let (a, _) = aggregation(yaml);
    for (small_first, pool) in [(true, true), (false, false), (true, false)] {
        let (small, large) = (batch(0..50_000), batch(50_000..rows));
        let mut first = a.new_state();
        let mut second = a.new_state();
        let (to_first, to_second) = if small_first {
            (small, large)
        } else {
            (large, small)
        };
        first.begin_morsel(0);
        first.update(&to_first).unwrap();
        second.begin_morsel(1);
        second.update(&to_second).unwrap();
        first.merge(second).unwrap();
        let result = match pool {
            true => rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap()
                .install(move || first.result())
                .unwrap(),
            false => first.result().unwrap(),
        };
        assert_eq!(result.num_rows(), groups);
        let keys = texts(&result, "customer");
        let counts = texts(&result, "n");
        let totals = texts(&result, "total");
        let means = result.column(3).as_primitive::<Float64Type>();
        for (row, (key, (n, total, price_sum))) in expected.iter().enumerate() {
            assert_eq!(
                (&keys[row], &counts[row], &totals[row]),
                (key, &n.to_string(), &total.to_string()),
                "row {row}"
            );
            assert!((means.value(row) - price_sum / *n as f64).abs() < 1e-9);
        }
    }
}

#[test]
fn a_snapshot_restores_everything_needed_to_go_on() {
    let batch = sales();
    let (a, _) = aggregation(ALL);
    let mut before = a.new_state();
    before.update(&batch.slice(0, 3)).unwrap();
    let mut restored = a.new_state();
    restored.restore(&before.snapshot().unwrap()).unwrap();
    restored.update(&batch.slice(3, 3)).unwrap();
    assert_eq!(restored.result().unwrap(), one_state(ALL, &batch));
    // A damaged snapshot is an error, not a panic.
    let mut snapshot = before.snapshot().unwrap();
    let states: StringArray = vec![Some("[{\"Count\": 1}]"); snapshot.num_rows()].into();
    let mut columns = snapshot.columns().to_vec();
    *columns.last_mut().unwrap() = Arc::new(states);
    snapshot = RecordBatch::try_new(snapshot.schema(), columns).unwrap();
    let err = a.new_state().restore(&snapshot).unwrap_err().to_string();
    assert!(err.contains("damaged"), "{err}");
}

#[test]
fn an_overflowing_sum_names_its_group_with_control_characters_escaped() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("region", DataType::Utf8, true),
        Field::new("year", DataType::Int64, true),
        Field::new("amount", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![
                Some("ok"),
                Some("bad\x1b[2J"),
                None,
            ])),
            Arc::new(Int64Array::from(vec![Some(2024), Some(2025), None])),
            Arc::new(Int64Array::from(vec![1, i64::MAX, 2])),
        ],
    )
    .unwrap();
    let (a, _) = aggregation_over("{by: [region, year], aggs: {total: sum(amount)}}", &schema);
    let mut state = a.new_state();
    state.update(&batch).unwrap();
    state.update(&batch).unwrap();
    let err = state.result().unwrap_err().to_string();
    // Only the group of 'bad…' overflows; a null key would be named `null`.
    assert!(
        err.contains(
            "integer overflow in `sum(amount)` for the group region = 'bad\\u{1b}[2J', year = 2025: the sum is outside"
        ),
        "{err}"
    );
    // With no key there is no group to name.
    let (a, _) = aggregation_over("aggs: {total: sum(amount)}", &schema);
    let mut state = a.new_state();
    state.update(&batch).unwrap();
    let err = state.result().unwrap_err().to_string();
    assert!(
        err.contains("integer overflow in `sum(amount)`: the sum"),
        "{err}"
    );
}

#[test]
fn an_integer_sum_is_exact_and_an_error_only_when_the_total_leaves_i64() {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "amount",
        DataType::Int64,
        true,
    )]));
    let batch = |values: Vec<i64>| {
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap()
    };
    let (a, _) = aggregation_over("aggs: {total: sum(amount), mean: avg(amount)}", &schema);
    // A running sum past i64 that comes back: exact, as DuckDB's.
    let mut state = a.new_state();
    state.update(&batch(vec![i64::MAX, 1, -2])).unwrap();
    let out = state.result().unwrap();
    assert_eq!(texts(&out, "total"), [(i64::MAX - 1).to_string()]);
    // A total past i64: an error naming the sum, never a wrapped number.
    let mut left = a.new_state();
    left.update(&batch(vec![i64::MAX])).unwrap();
    let mut right = a.new_state();
    right.update(&batch(vec![i64::MAX])).unwrap();
    left.merge(right).unwrap();
    let err = left.result().unwrap_err().to_string();
    assert!(err.contains("integer overflow in `sum(amount)`"), "{err}");
    // Below the range too, and the message names both ends.
    let mut low = a.new_state();
    low.update(&batch(vec![i64::MIN, -1])).unwrap();
    let err = low.result().unwrap_err().to_string();
    assert!(
        err.contains("the sum is outside -9223372036854775808 to 9223372036854775807"),
        "{err}"
    );
    // The average of the same values is exact too.
    let mut state = a.new_state();
    state.update(&batch(vec![i64::MAX, i64::MAX])).unwrap();
    assert!(state.result().is_err());
}

/// Snapshots keep what JSON numbers cannot: NaN and infinite float sums, and integer sums
/// that pass u64 on the way (exact 128-bit partial sums).
#[test]
fn snapshots_keep_nan_infinity_and_wide_sums() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("amount", DataType::Int64, true),
        Field::new("price", DataType::Float64, true),
    ]));
    let (a, _) = aggregation_over(
        "aggs: {total: sum(amount), mean: avg(amount), fsum: sum(price), fmean: avg(price), top: max(price)}",
        &schema,
    );
    let rows = |amounts: Vec<i64>, prices: Vec<f64>| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(amounts)),
                Arc::new(Float64Array::from(prices)),
            ],
        )
        .unwrap()
    };
    let mut before = a.new_state();
    before
        .update(&rows(
            vec![i64::MAX, i64::MAX, i64::MAX],
            vec![f64::NAN, 1.0, f64::INFINITY],
        ))
        .unwrap();
    let mut restored = a.new_state();
    restored.restore(&before.snapshot().unwrap()).unwrap();
    restored
        .update(&rows(
            vec![i64::MIN, i64::MIN, i64::MIN],
            vec![2.0, 3.0, 4.0],
        ))
        .unwrap();
    let out = restored.result().unwrap();
    assert_eq!(texts(&out, "total"), ["-3"]);
    assert_eq!(texts(&out, "mean"), ["-0.5"]);
    assert_eq!(texts(&out, "fsum"), ["NaN"]);
    assert_eq!(
        texts(&out, "top"),
        ["NaN"],
        "NaN orders above every number, as in Spark"
    );
}

#[test]
fn min_and_max_of_both_zeros_do_not_depend_on_which_came_first() {
    // -0.0 and 0.0 are one value (as in Spark SQL, which returns whichever came first): 0.0.
    let zeros = |values: Vec<f64>| {
        RecordBatch::try_from_iter([("price", Arc::new(Float64Array::from(values)) as ArrayRef)])
            .unwrap()
    };
    let (a, _) = aggregation_over(
        "{aggs: {low: min(price), high: max(price)}}",
        &zeros(vec![]).schema(),
    );
    for order in [vec![0.0, -0.0], vec![-0.0, 0.0]] {
        // In one state, and split over two merged in either order.
        let mut one = a.new_state();
        one.update(&zeros(order.clone())).unwrap();
        let out = one.result().unwrap();
        assert_eq!(texts(&out, "low"), ["0.0"], "{order:?}");
        assert_eq!(texts(&out, "high"), ["0.0"], "{order:?}");
        let mut first = a.new_state();
        first.update(&zeros(vec![order[0]])).unwrap();
        let mut second = a.new_state();
        second.update(&zeros(vec![order[1]])).unwrap();
        first.merge(second).unwrap();
        let out = first.result().unwrap();
        assert_eq!(texts(&out, "low"), ["0.0"], "{order:?}");
        assert_eq!(texts(&out, "high"), ["0.0"], "{order:?}");
    }
}

#[test]
fn mistakes_are_found_at_validation() {
    assert!(error("{by: customer, aggs: {}}").contains("`aggs` is empty"));
    assert!(error("{by: custmer, aggs: {n: count()}}").contains("did you mean `customer`?"));
    assert!(error("{by: customer, aggs: {customer: count()}}").contains("clashes with a key"));
    assert!(error("{aggs: {t: sum(customer)}}").contains("cannot take text"));
    assert!(error("{aggs: {t: total(amount)}}").contains("not an aggregate function"));
    assert!(error("{aggs: {t: \"sum(amount, price)\"}}").contains("takes one argument"));
}

#[test]
fn first_last_and_count_distinct_take_lists() {
    use arrow_array::builder::{ListBuilder, StringBuilder};
    let mut lists = ListBuilder::new(StringBuilder::new());
    let rows: [Option<&[Option<&str>]>; 5] = [
        Some(&[Some("x"), Some("y")]),
        None,
        Some(&[]),
        Some(&[Some("z"), None]),
        Some(&[Some("x"), Some("y")]),
    ];
    for row in rows {
        match row {
            Some(items) => {
                for item in items {
                    lists.values().append_option(*item);
                }
                lists.append(true);
            }
            None => lists.append_null(),
        }
    }
    let batch = RecordBatch::try_from_iter([
        (
            "g",
            Arc::new(StringArray::from(vec!["a", "a", "b", "b", "b"])) as ArrayRef,
        ),
        ("l", Arc::new(lists.finish()) as ArrayRef),
    ])
    .unwrap();
    let yaml = "{by: g, aggs: {f: first(l), la: last(l), d: count_distinct(l)}}";
    let (a, output) = aggregation_over(yaml, &batch.schema());
    let mut state = a.new_state();
    state.update(&batch.slice(0, 3)).unwrap();
    let mut restored = a.new_state();
    restored.restore(&state.snapshot().unwrap()).unwrap();
    restored.update(&batch.slice(3, 2)).unwrap();
    let result = restored.result().unwrap();
    assert_eq!(result.schema(), output);
    let rows: Vec<serde_json::Value> = (0..result.num_rows())
        .map(|row| {
            let schema = result.schema();
            let names = schema.fields().iter().map(|f| f.name().clone());
            names
                .zip(result.columns())
                .map(|(name, c)| (name, crate::data::cell(c.as_ref(), row).to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect();
    assert_eq!(
        rows,
        [
            serde_json::json!({"g": "a", "f": ["x", "y"], "la": null, "d": 1}),
            serde_json::json!({"g": "b", "f": [], "la": ["x", "y"], "d": 3}),
        ]
    );
}
