//! `sort`: order rows by `column [asc|desc]` keys. Ties are broken by every remaining column
//! that could be a key (not lists) in ascending order, so the output is the same whatever the
//! number of cores.
//! Nulls order as in Spark: first when ascending, last when descending (a null is smaller than
//! every value); NaN is larger than every number. Keys may be text, numbers, booleans or
//! timestamps.

use std::cmp::Ordering;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::DataType;
use serde::Deserialize;

use super::group_count::OneOrMany;
use super::{BuildContext, BuildTransform, GlobalTransform, SortKey, Stage, StageKind};
use crate::data::{cell, key_column, type_label, Cell};
use crate::error::Result;

/// Orders rows by `column [asc|desc]` keys (text, numbers, booleans or timestamps). Ties are
/// broken by the remaining columns of those types (not lists), ascending, so the output is the
/// same on every run and core count. Nulls come first ascending and last descending (Spark's order); text compares by
/// bytes. Right before a `limit`, it picks the first `n` rows without ordering the rest (the
/// run summary then shows `n` rows out of the sort). A sort gives no row before its input has
/// ended; in a batch run without an aggregation it holds at most about 16 MiB of rows, writing
/// sorted runs to temporary files (under `TMPDIR`) past that and merging them, so any input
/// can be sorted.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SortConfig {
    /// Sort keys, most significant first: `count desc`, `word` (ascending by default).
    pub by: OneOrMany,
}

fn parse_key(spec: &str, ctx: &BuildContext) -> Result<SortKey, String> {
    let whole = spec.trim();
    if whole.is_empty() {
        return Err("an empty sort key".into());
    }
    // A column's whole name (spaces and all), or a name then `asc` or `desc`.
    let (column, descending) = match key_column(ctx.input, whole) {
        Ok(column) => (column, false),
        Err(no_column) => {
            let Some((name, direction)) = whole.rsplit_once(char::is_whitespace) else {
                return Err(no_column);
            };
            let name = name.trim_end();
            let descending = match direction.to_ascii_lowercase().as_str() {
                "asc" => false,
                "desc" => true,
                other if key_column(ctx.input, name).is_ok() => {
                    return Err(format!(
                        "`{spec}`: the direction must be `asc` or `desc`, not `{other}`"
                    ))
                }
                _ => return Err(no_column),
            };
            (key_column(ctx.input, name)?, descending)
        }
    };
    let name = ctx.input.field(column).name();
    let data_type = ctx.input.field(column).data_type();
    if !matches!(
        data_type,
        DataType::Utf8
            | DataType::Int64
            | DataType::Float64
            | DataType::Boolean
            | DataType::Timestamp(..)
    ) {
        return Err(format!(
            "cannot sort by `{name}`: it holds {}",
            type_label(data_type)
        ));
    }
    Ok(SortKey { column, descending })
}

impl BuildTransform for SortConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        let mut keys = Vec::new();
        for spec in self.by.to_vec() {
            let key = parse_key(&spec, ctx)?;
            if keys.iter().any(|k: &SortKey| k.column == key.column) {
                return Err(format!("`{spec}`: this column is already a sort key"));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("`by` needs at least one column".into());
        }
        // Deterministic tie-breaking: every other sortable column, ascending.
        for (column, field) in ctx.input.fields().iter().enumerate() {
            let sortable = matches!(
                field.data_type(),
                DataType::Utf8
                    | DataType::Int64
                    | DataType::Float64
                    | DataType::Boolean
                    | DataType::Timestamp(..)
            );
            if sortable && !keys.iter().any(|k| k.column == column) {
                keys.push(SortKey {
                    column,
                    descending: false,
                });
            }
        }
        Ok(Stage {
            output: ctx.input.clone(),
            kind: StageKind::Global(Box::new(Sort { keys })),
        })
    }

    fn error_location(&self, message: &str) -> Option<serde_saphyr::Location> {
        self.by.locate(message)
    }
}

/// The built `sort` transform: orders rows by its keys, ties broken by every other column.
pub struct Sort {
    keys: Vec<SortKey>,
}

fn compare(a: &Cell, b: &Cell) -> Ordering {
    match (a, b) {
        (Cell::Text(x), Cell::Text(y)) => x.cmp(y),
        (Cell::Int(x), Cell::Int(y)) => x.cmp(y),
        (Cell::Float(x), Cell::Float(y)) => crate::data::compare_floats(*x, *y),
        (Cell::Bool(x), Cell::Bool(y)) => x.cmp(y),
        (Cell::Timestamp(x), Cell::Timestamp(y)) => x.cmp(y),
        // A null is smallest: first ascending, last descending (Spark's default order).
        (Cell::Null, Cell::Null) => Ordering::Equal,
        (Cell::Null, _) => Ordering::Less,
        (_, Cell::Null) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// A sort key's column, read without a type dispatch per comparison.
enum KeyColumn<'a> {
    Text(&'a StringArray),
    Int(&'a [i64]),
    Float(&'a [f64]),
    Other(&'a dyn Array),
}

impl KeyColumn<'_> {
    /// As `compare(cell(a), cell(b))`.
    fn compare(&self, array: &dyn Array, a: usize, b: usize) -> Ordering {
        match (array.is_null(a), array.is_null(b)) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        match self {
            KeyColumn::Text(strings) => strings.value(a).cmp(strings.value(b)),
            KeyColumn::Int(values) => values[a].cmp(&values[b]),
            KeyColumn::Float(values) => crate::data::compare_floats(values[a], values[b]),
            KeyColumn::Other(array) => compare(&cell(*array, a), &cell(*array, b)),
        }
    }
}

impl Sort {
    /// The batch in key order; with `first`, possibly only its first `first` rows.
    fn sorted(&self, batch: RecordBatch, first: Option<usize>) -> RecordBatch {
        let keys: Vec<(&dyn Array, KeyColumn, bool)> = self
            .keys
            .iter()
            .map(|key| {
                let array = batch.column(key.column).as_ref();
                let column = match array.data_type() {
                    DataType::Utf8 => KeyColumn::Text(array.as_string::<i32>()),
                    DataType::Int64 => KeyColumn::Int(array.as_primitive::<Int64Type>().values()),
                    DataType::Float64 => {
                        KeyColumn::Float(array.as_primitive::<Float64Type>().values())
                    }
                    _ => KeyColumn::Other(array),
                };
                (array, column, key.descending)
            })
            .collect();
        let compare = |&a: &u32, &b: &u32| {
            for (array, column, descending) in &keys {
                let ordering = column.compare(*array, a as usize, b as usize);
                let ordering = if *descending {
                    ordering.reverse()
                } else {
                    ordering
                };
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            // Spark's order ties -0.0 with 0.0, which print differently: they go in a fixed
            // order, so that equal rows are identical (the output whatever the input order).
            for (array, column, descending) in &keys {
                if let KeyColumn::Float(values) = column {
                    if array.is_valid(a as usize) && array.is_valid(b as usize) {
                        let ordering = values[a as usize].total_cmp(&values[b as usize]);
                        if ordering != Ordering::Equal {
                            return if *descending {
                                ordering.reverse()
                            } else {
                                ordering
                            };
                        }
                    }
                }
            }
            Ordering::Equal
        };
        let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
        if let Some(first) = first.filter(|&first| first < order.len()) {
            // Only when every column is a key: rows that compare equal are then identical, so
            // selecting (not stable) gives the rows a stable sort would.
            if self.keys.len() == batch.num_columns() {
                order.select_nth_unstable_by(first, compare);
                order.truncate(first);
            }
        }
        order.sort_by(compare);
        arrow_select::take::take_record_batch(&batch, &UInt32Array::from(order))
            .expect("indices are in bounds")
    }
}

impl GlobalTransform for Sort {
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        Ok(self.sorted(batch, None))
    }

    /// Ties are broken by the other columns, so equal rows are identical.
    fn order_independent(&self) -> bool {
        true
    }

    /// The keys, tie-breakers included; its comparison is the one `sort_keys` promises.
    fn sort_keys(&self) -> Option<Vec<SortKey>> {
        Some(self.keys.clone())
    }

    /// The same keys, tie-breakers included, with the same null order (first ascending, last
    /// descending) and byte order of text.
    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> Result<crate::spark::frame::Frame, String> {
        let keys = self
            .keys
            .iter()
            .map(|key| {
                crate::spark::frame::col(&input.columns()[key.column]).sort_key(key.descending)
            })
            .collect();
        Ok(input.sort(keys))
    }

    fn apply_first(&self, batch: RecordBatch, rows: usize) -> Result<RecordBatch> {
        Ok(self.sorted(batch, Some(rows)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::compliance::{run, texts};

    fn counts() -> RecordBatch {
        crate::data::word_counts(
            &["thy", "romeo", "art", "one", "thou"],
            &[170, 298, 60, 60, 277],
        )
    }

    fn build(yaml: &str) -> Result<Stage, String> {
        let config: SortConfig = serde_saphyr::from_str(yaml).unwrap();
        config.build(&BuildContext {
            input: &counts().schema(),
            base_dir: std::path::Path::new("."),
        })
    }

    #[test]
    fn timestamps_sort_with_nulls_first_ascending_and_last_descending() {
        use arrow_array::{Int64Array, TimestampMicrosecondArray};
        let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("hour", crate::data::timestamp_type(), true),
            arrow_schema::Field::new("n", DataType::Int64, false),
        ]));
        let hours = TimestampMicrosecondArray::from(vec![Some(7_200_000_000), None, Some(0)])
            .with_timezone("UTC");
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                std::sync::Arc::new(hours),
                std::sync::Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap();
        for (by, expected) in [("by: hour", [2, 3, 1]), ("by: hour desc", [1, 3, 2])] {
            let config: SortConfig = serde_saphyr::from_str(by).unwrap();
            let stage = config
                .build(&BuildContext {
                    input: &schema,
                    base_dir: std::path::Path::new("."),
                })
                .unwrap();
            let StageKind::Global(sort) = stage.kind else {
                panic!("sort is a global stage")
            };
            let sorted = sort.apply(batch.clone()).unwrap();
            let n: Vec<i64> = sorted
                .column(1)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec();
            assert_eq!(n, expected, "{by}");
        }
    }

    /// A column named with a space is a key written bare or in backticks, with or without a
    /// direction; a wrong direction after a column is named as such.
    #[test]
    fn a_name_with_spaces_is_a_key_bare_or_in_backticks() {
        use arrow_array::{Int64Array, StringArray};
        let batch = RecordBatch::try_from_iter([
            (
                "first name",
                std::sync::Arc::new(StringArray::from(vec!["b", "a", "c"])) as _,
            ),
            (
                "n",
                std::sync::Arc::new(Int64Array::from(vec![1, 2, 3])) as _,
            ),
        ])
        .unwrap();
        for (by, expected) in [
            ("by: first name", [2, 1, 3]),
            ("by: '`first name`'", [2, 1, 3]),
            ("by: first name desc", [3, 1, 2]),
            ("by: '`first name` DESC'", [3, 1, 2]),
        ] {
            let StageKind::Global(sort) = build_on(&batch, by).kind else {
                panic!("sort is a global stage")
            };
            let sorted = sort.apply(batch.clone()).unwrap();
            let n = sorted
                .column(1)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec();
            assert_eq!(n, expected, "{by}");
        }
        let error = |by: &str| {
            let config: SortConfig = serde_saphyr::from_str(by).unwrap();
            config
                .build(&BuildContext {
                    input: &batch.schema(),
                    base_dir: std::path::Path::new("."),
                })
                .err()
                .unwrap()
        };
        assert!(error("by: first name descending")
            .contains("the direction must be `asc` or `desc`, not `descending`"));
        assert!(error("by: frist name")
            .contains("there is no column `frist name`, did you mean `first name`?"));
    }

    #[test]
    fn every_nan_is_above_every_number_and_minus_zero_ties_with_zero_as_in_spark() {
        use arrow_array::{Float64Array, Int64Array};
        // `-NaN` (sign bit set, as x86 makes `inf - inf`) came before every number.
        let batch = RecordBatch::try_from_iter([
            (
                "f",
                std::sync::Arc::new(Float64Array::from(vec![
                    Some(-f64::NAN),
                    Some(1.0),
                    Some(f64::NAN),
                    None,
                    Some(f64::NEG_INFINITY),
                    Some(0.0),
                    Some(-0.0),
                ])) as _,
            ),
            (
                "x",
                std::sync::Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5, 7, 6])) as _,
            ),
        ])
        .unwrap();
        for (by, expected) in [
            // NaNs tie, and so do 0.0 and -0.0: `x` breaks both ties.
            ("by: f", [4, 5, 6, 7, 2, 1, 3]),
            ("by: f desc", [1, 3, 2, 6, 7, 5, 4]),
        ] {
            let out = run(&build_on(&batch, by), batch.clone());
            let x = out.column(1).as_primitive::<Int64Type>().values().to_vec();
            assert_eq!(x, expected, "{by}");
        }
    }

    #[test]
    fn minus_zero_and_zero_go_in_one_order_whatever_the_input_order() {
        use arrow_array::Float64Array;
        let values: Vec<f64> = (0..40)
            .map(|i| if i % 2 == 0 { 0.0 } else { -0.0 })
            .chain([1.0, -1.0])
            .collect();
        let texts_of = |values: Vec<f64>, first: Option<usize>| {
            let batch = RecordBatch::try_from_iter([(
                "f",
                std::sync::Arc::new(Float64Array::from(values)) as _,
            )])
            .unwrap();
            let StageKind::Global(sort) = build_on(&batch, "by: f").kind else {
                panic!("sort is a global stage")
            };
            let out = match first {
                Some(rows) => sort.apply_first(batch, rows).unwrap().slice(0, rows),
                None => sort.apply(batch).unwrap(),
            };
            texts(&out, "f")
        };
        let mut reversed = values.clone();
        reversed.reverse();
        for first in [None, Some(15)] {
            let expected = texts_of(values.clone(), first);
            assert_eq!(texts_of(reversed.clone(), first), expected, "{first:?}");
            assert_eq!(expected[0], "-1.0");
            assert_eq!(expected[1], "-0.0", "{expected:?}");
        }
    }

    fn build_on(batch: &RecordBatch, yaml: &str) -> Stage {
        let config: SortConfig = serde_saphyr::from_str(yaml).unwrap();
        config
            .build(&BuildContext {
                input: &batch.schema(),
                base_dir: std::path::Path::new("."),
            })
            .unwrap()
    }

    #[test]
    fn the_first_rows_are_those_of_the_full_sort() {
        // Many ties on count: selection must break them by word as the full sort does.
        let words: Vec<String> = (0..500)
            .map(|i| format!("w{:03}", (i * 7919) % 500))
            .collect();
        let counts: Vec<i64> = (0..500).map(|i| (i * 31) % 9).collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let batch = crate::data::word_counts(&refs, &counts);
        let StageKind::Global(sort) = build("by: count desc").unwrap().kind else {
            panic!("sort is a global stage")
        };
        let full = sort.apply(batch.clone()).unwrap();
        for rows in [0, 1, 30, 499, 500, 600] {
            let first = sort.apply_first(batch.clone(), rows).unwrap();
            let first = first.slice(0, rows.min(first.num_rows()));
            assert_eq!(first, full.slice(0, rows.min(500)), "first {rows}");
        }
    }

    #[test]
    fn nulls_come_first_ascending_and_last_descending_as_in_spark() {
        use arrow_array::{Int64Array, StringArray};
        let batch = RecordBatch::try_from_iter([
            (
                "word",
                std::sync::Arc::new(StringArray::from(vec![Some("b"), None, Some("a")])) as _,
            ),
            (
                "count",
                std::sync::Arc::new(Int64Array::from(vec![Some(2), Some(1), None])) as _,
            ),
        ])
        .unwrap();
        let sort = |yaml: &str| {
            let out = run(&build_on(&batch, yaml), batch.clone());
            let words = out.column(0).as_string::<i32>();
            (0..out.num_rows())
                .map(|i| words.is_valid(i).then(|| words.value(i).to_owned()))
                .collect::<Vec<_>>()
        };
        let s = |w: &str| Some(w.to_owned());
        assert_eq!(sort("by: word"), [None, s("a"), s("b")]);
        assert_eq!(sort("by: word desc"), [s("b"), s("a"), None]);
        // By count: a (null count) first ascending, last descending.
        assert_eq!(sort("by: count"), [s("a"), None, s("b")]);
        assert_eq!(sort("by: count desc"), [s("b"), None, s("a")]);
    }

    #[test]
    fn sorts_descending_with_ties_broken_by_the_rest() {
        let out = run(&build("by: [count desc, word asc]").unwrap(), counts());
        assert_eq!(texts(&out, "word"), ["romeo", "thou", "thy", "art", "one"]);
        // Without an explicit word key, ties are still broken by `word` ascending.
        let out = run(&build("by: count desc").unwrap(), counts());
        assert_eq!(texts(&out, "word"), ["romeo", "thou", "thy", "art", "one"]);
        let out = run(&build("by: word").unwrap(), counts());
        assert_eq!(texts(&out, "word"), ["art", "one", "romeo", "thou", "thy"]);
    }

    #[test]
    fn bad_keys_are_explained() {
        assert!(build("by: [count down]")
            .err()
            .unwrap()
            .contains("`asc` or `desc`"));
        assert!(build("by: [cont desc]")
            .err()
            .unwrap()
            .contains("did you mean `count`?"));
        assert!(build("by: [count, count desc]")
            .err()
            .unwrap()
            .contains("already a sort key"));
    }
}
