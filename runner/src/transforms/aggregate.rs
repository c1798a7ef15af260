//! `aggregate`: group rows by zero or more key expressions and compute aggregates per group
//! (`count`, `sum`, `min`, `max`, `avg`, `count_distinct`, `first`, `last`, `collect_list`).
//!
//! Each worker aggregates into its own table; tables are merged once (Spark's partial
//! aggregation). Keys are encoded with Arrow's row format, so any number and type of key
//! columns hash and sort as bytes; the result is ordered by key. `first`/`last`/`collect_list`
//! follow input order: rows carry their morsel's index, so the answer does not depend on which
//! worker saw which rows.

use std::any::Any;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use super::{
    AggregateState, Aggregation, BuildContext, BuildTransform, GroupedRows, PlainColumns, Stage,
    StageKind,
};
use crate::data::ValueType;
use crate::error::{escape_controls, shortened, Error, Result};
use crate::expr::{compile_aggregate, compile_named, AggregateFunction, Expr};

/// One row per group (per window with `window`): the keys, then the aggregates in the order
/// written. `count()`, `count(x)`, `sum`, `min`, `max`, `avg`, `count_distinct`, `first`, `last`
/// (in input order, whatever the cores) and `collect_list`. Rows come ordered by key, nulls
/// first. Sums of integers are exact; a total past i64 is an error, not a wrap. Each worker
/// aggregates into its own table, merged once; a batch run spills groups past `memory_limit`
/// to disk. In a stream the state persists across epochs, and a checkpoint saves what each
/// group needs to go on. See
/// [Records](../../records.md#aggregate).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// Key columns or expressions (`"date_trunc('hour', created_at) as hour"`); none: one
    /// group of all rows.
    #[serde(default)]
    pub by: Option<super::group_count::OneOrMany>,
    /// Output column to aggregate call, in the order written, e.g. `{total: sum(amount), n:
    /// count(), buyers: count_distinct(customer)}`.
    #[schemars(with = "std::collections::BTreeMap<String, String>")]
    pub aggs: indexmap::IndexMap<String, serde_saphyr::Spanned<String>>,
    /// Aggregate per event-time window: `{column: created_at, size: 10m, slide: 5m}`. The
    /// output starts with `window_start` and `window_end`.
    #[serde(default)]
    pub window: Option<super::window::WindowConfig>,
    /// Streams: how late a row may arrive (event time behind the latest seen) and still count,
    /// e.g. `2m`. Windows the watermark passes are final: `append` emits them, and their state
    /// is freed.
    #[serde(default, deserialize_with = "crate::settings::duration::opt_delay")]
    #[schemars(with = "Option<String>")]
    pub watermark: Option<std::time::Duration>,
    /// Batch runs: the memory the aggregation may take (all workers together) before its
    /// groups are spilled to temporary files as sorted runs, merged by key at the end, e.g.
    /// `512MiB`, `4GB`. Default: half the machine's memory (or of the container's limit).
    /// Streams keep their state in memory (and in checkpoints).
    #[serde(default, deserialize_with = "crate::settings::size::opt")]
    #[schemars(with = "Option<String>")]
    pub memory_limit: Option<u64>,
}

impl BuildTransform for AggregateConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        let stage = self.build_groups(ctx)?;
        window_stage(&self.window, self.watermark, ctx, stage, None)
    }

    fn error_location(&self, message: &str) -> Option<serde_saphyr::Location> {
        // "by: ..." is about a key; "aggs: NAME: ..." (or a clash naming NAME) about a call.
        if message.starts_with("by: ") {
            return self.by.as_ref().and_then(|by| by.locate(message));
        }
        let rest = message.strip_prefix("aggs: ")?;
        let mut aggs = self.aggs.iter();
        aggs.clone()
            .find(|(name, _)| rest.starts_with(&format!("{name}: ")))
            .or_else(|| aggs.find(|(name, _)| rest.contains(&format!("`{name}`"))))
            .map(|(_, call)| call.referenced)
    }
}

/// `stage` (an aggregation) computed per window when `window` is set.
pub(crate) fn window_stage(
    window: &Option<super::window::WindowConfig>,
    watermark: Option<std::time::Duration>,
    ctx: &BuildContext,
    stage: Stage,
    count_first: Option<usize>,
) -> Result<Stage, String> {
    let Some(window) = window else {
        if watermark.is_some() {
            return Err(
                "`watermark` applies to windows: add `window: {column: ..., size: ...}`".into(),
            );
        }
        return Ok(stage);
    };
    let StageKind::Aggregate(inner) = stage.kind else {
        return Err("a window needs an aggregation".into());
    };
    windowed::stage(window, watermark, ctx, inner, &stage.output, count_first)
}

impl AggregateConfig {
    /// The aggregation without its window.
    fn build_groups(&self, ctx: &BuildContext) -> Result<Stage, String> {
        let by = self.by.as_ref().map(|b| b.to_vec()).unwrap_or_default();
        if self.aggs.is_empty() {
            return Err("`aggs` is empty: name at least one aggregate, e.g. `{n: count()}`".into());
        }
        let mut fields: Vec<Field> = Vec::new();
        let mut keys = Vec::new();
        for item in &by {
            let (expr, name) = compile_named(item, ctx.input).map_err(|e| format!("by: {e}"))?;
            if expr.value_type() == ValueType::TextList {
                return Err(format!(
                    "by: cannot group by `{name}`: it holds lists (explode it first)"
                ));
            }
            if fields.iter().any(|f| f.name() == &name) {
                return Err(format!("by: `{name}` is listed twice"));
            }
            fields.push(Field::new(&name, expr.data_type(), true));
            keys.push(expr);
        }
        let mut aggs = Vec::new();
        for (name, call) in &self.aggs {
            if fields.iter().any(|f| f.name() == name) {
                return Err(format!(
                    "aggs: the column `{name}` clashes with a key column"
                ));
            }
            let (function, expr) = compile_aggregate(&call.value, ctx.input)
                .map_err(|e| format!("aggs: {name}: {e}"))?;
            let input = expr.as_ref().map(Expr::value_type);
            let output = output_type(function, input);
            let nullable = !matches!(
                function,
                AggregateFunction::Count | AggregateFunction::CountDistinct
            );
            fields.push(Field::new(name, output.data_type(), nullable));
            aggs.push(Agg {
                function,
                expr,
                input,
            });
        }
        let key_fields: Vec<SortField> =
            keys.iter().map(|k| SortField::new(k.data_type())).collect();
        if self.memory_limit.is_some() && self.window.is_some() {
            return Err(
                "`memory_limit` applies to aggregates without a window (windows are kept in memory)"
                    .into(),
            );
        }
        let output: SchemaRef = Arc::new(Schema::new(fields));
        Ok(Stage {
            output: output.clone(),
            kind: StageKind::Aggregate(Box::new(Aggregate {
                keys,
                key_fields,
                aggs: Arc::new(aggs),
                output,
                memory_limit: self.memory_limit,
                group_seed: std::hash::BuildHasher::hash_one(
                    &foldhash::fast::RandomState::default(),
                    0u8,
                ),
            })),
        })
    }
}

fn output_type(function: AggregateFunction, input: Option<ValueType>) -> ValueType {
    use AggregateFunction as A;
    match function {
        A::Count | A::CountDistinct => ValueType::Integer,
        A::Avg => ValueType::Float,
        A::CollectList => ValueType::TextList,
        A::Sum | A::Min | A::Max | A::First | A::Last => input.unwrap_or(ValueType::Integer),
    }
}

#[derive(Clone)]
struct Agg {
    function: AggregateFunction,
    expr: Option<Expr>,
    input: Option<ValueType>,
}

/// The built `aggregate` transform: its key expressions and aggregate calls, checked against the
/// input.
#[derive(Clone)]
pub struct Aggregate {
    keys: Vec<Expr>,
    key_fields: Vec<SortField>,
    aggs: Arc<Vec<Agg>>,
    output: SchemaRef,
    /// Seeds its states' group tables (see `GroupIndex`).
    group_seed: u64,
    /// `memory_limit:` as written (bytes); `None`: the machine's default.
    memory_limit: Option<u64>,
}

impl Aggregation for Aggregate {
    fn key_columns(&self) -> usize {
        self.keys.len()
    }

    fn holds_values(&self) -> bool {
        self.aggs.iter().any(|agg| {
            matches!(
                agg.function,
                AggregateFunction::CountDistinct | AggregateFunction::CollectList
            )
        })
    }

    fn memory_limit(&self) -> Option<usize> {
        Some(match self.memory_limit {
            Some(bytes) => usize::try_from(bytes).unwrap_or(usize::MAX),
            None => crate::settings::size::default_memory_limit(),
        })
    }

    /// `groupBy(keys).agg(...)` then runner's order (by key, nulls first). Only the aggregates
    /// whose answer does not depend on how rows are split across executors translate: not
    /// `first`/`last`/`collect_list` (input order) nor float `sum`/`avg` (rounding order).
    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> Result<crate::spark::frame::Frame, String> {
        use crate::spark::frame::{call, call_distinct, col, lit_f64, lit_i32};
        use AggregateFunction as A;
        let names = crate::data::columns_names(&self.output);
        let mut keys = Vec::new();
        // Float keys group and order alike there: -0.0 is 0.0 and every NaN one, above
        // every number.
        for (expr, name) in self.keys.iter().zip(&names) {
            keys.push((expr.to_spark(input.columns())?, name.clone()));
        }
        let mut aggregates = Vec::new();
        for (agg, name) in self.aggs.iter().zip(&names[self.keys.len()..]) {
            let argument = match &agg.expr {
                Some(expr) => Some(expr.to_spark(input.columns())?),
                None => None,
            };
            let float = agg.input == Some(ValueType::Float);
            let column = match (agg.function, argument) {
                (A::Count, None) => call("count", vec![lit_i32(1)]),
                (A::Count, Some(x)) => call("count", vec![x]),
                (A::CountDistinct, Some(x)) => call_distinct("count", vec![x]),
                // Summed exactly, as here (Spark's `sum` of longs fails when a running total
                // overflows even if the total fits; its `avg` adds doubles): the sum as a
                // decimal, then an integer (an error when it does not fit), or its double over
                // the count.
                (A::Sum, Some(x)) if !float => {
                    call("sum", vec![x.cast("decimal(38,0)")]).cast("bigint")
                }
                (A::Avg, Some(x)) if !float => call(
                    "/",
                    vec![
                        call("sum", vec![x.clone().cast("decimal(38,0)")]).cast("double"),
                        call("count", vec![x]).cast("double"),
                    ],
                ),
                // -0.0 and 0.0 are one value to both, and Spark returns whichever it met first:
                // 0.0, as here.
                (A::Min, Some(x)) if float => call("+", vec![call("min", vec![x]), lit_f64(0.0)]),
                (A::Max, Some(x)) if float => call("+", vec![call("max", vec![x]), lit_f64(0.0)]),
                (A::Min, Some(x)) => call("min", vec![x]),
                (A::Max, Some(x)) => call("max", vec![x]),
                (A::Sum | A::Avg, _) => {
                    return Err(format!("`{name}`: a float sum rounds in the order Spark's executors add, not runner's; sum integers, or run it with --engine local"))
                }
                _ => {
                    return Err(format!("`{name}`: first, last and collect_list follow input order, which a cluster does not keep; run it with --engine local"))
                }
            };
            aggregates.push((column.alias(name), name.clone()));
        }
        let order: Vec<_> = names[..self.keys.len()]
            .iter()
            .map(|k| col(k).sort_key(false))
            .collect();
        let grouped = input.group_by_exprs(keys, aggregates);
        Ok(if order.is_empty() {
            grouped
        } else {
            grouped.sort(order)
        })
    }

    fn plain_columns(&self) -> Option<PlainColumns> {
        Some(PlainColumns {
            keys: self
                .keys
                .iter()
                .map(Expr::as_column)
                .collect::<Option<_>>()?,
            args: self
                .aggs
                .iter()
                .map(|agg| match &agg.expr {
                    Some(expr) => expr.as_column().map(Some),
                    None => Some(None),
                })
                .collect::<Option<_>>()?,
        })
    }

    fn new_state(&self) -> Box<dyn AggregateState> {
        Box::new(self.table())
    }

    fn batch_form(&self) -> Option<Box<dyn Aggregation>> {
        distinct::DistinctByGrouping::of(self).map(|d| Box::new(d) as Box<dyn Aggregation>)
    }
}

impl Aggregate {
    /// An empty state.
    fn table(&self) -> AggregateTable {
        let mut table = AggregateTable {
            keys: self.keys.clone(),
            converter: RowConverter::new(self.key_fields.clone())
                .expect("key types are the model's, which the row format encodes"),
            aggs: self.aggs.clone(),
            output: self.output.clone(),
            groups: GroupIndex::new(self.group_seed),
            columns: self.aggs.iter().map(AccColumn::new).collect(),
            morsel: 0,
            row: 0,
            held: 0,
        };
        if self.keys.is_empty() {
            // Without keys there is one group, even over no rows (`count()` is then 0).
            table.group_of_key(&[]);
        }
        table
    }
}

/// Encodes the first `keys` columns of a spilled run as the sort compares them.
pub(crate) fn key_converter(batch: &RecordBatch, keys: usize) -> Result<RowConverter> {
    let fields = batch.schema().fields()[..keys]
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    RowConverter::new(fields).map_err(|e| Error::runtime(format!("merging spilled groups: {e}")))
}

/// Where the rows of `batch`'s last key begin (rows are in key order).
pub(crate) fn last_key_start(
    converter: &RowConverter,
    batch: &RecordBatch,
    keys: usize,
) -> Result<usize> {
    let columns = batch.columns()[..keys].to_vec();
    let rows = converter
        .convert_columns(&columns)
        .map_err(|e| Error::runtime(format!("merging spilled groups: {e}")))?;
    let last = rows.num_rows() - 1;
    let mut start = last;
    while start > 0 && rows.row(start - 1) == rows.row(last) {
        start -= 1;
    }
    Ok(start)
}

/// The snapshot `state` column of an aggregation whose one aggregate is `count()`, for groups
/// with these counts (a `group_count`'s checkpoint or spill, in its own form, restored into the
/// general table).
pub(crate) fn count_states(counts: &arrow_array::Int64Array) -> ArrayRef {
    let states: arrow_array::StringArray = counts
        .iter()
        .map(|count| serde_json::to_string(&[Acc::Count(count.unwrap_or(0))]).ok())
        .collect();
    Arc::new(states)
}

/// One value read from a column, for the accumulators that keep values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Value {
    Text(String),
    Int(i64),
    Float(#[serde(with = "snapshot::f64_bits")] f64),
    Bool(bool),
    Timestamp(i64),
    /// A list of text (`first`, `last` and `count_distinct` take lists too, as Spark's do).
    List(Vec<Option<String>>),
}

impl Value {
    /// `-0.0` as `0.0`: they are one value to `min` and `max` (as in Spark, which returns
    /// whichever it met first), so the answer does not depend on the rows' order.
    fn zero_unsigned(self) -> Value {
        match self {
            // A float pattern compares with `==`: -0.0 matches.
            Value::Float(0.0) => Value::Float(0.0),
            other => other,
        }
    }

    fn read(array: &dyn Array, row: usize) -> Option<Value> {
        if array.is_null(row) {
            return None;
        }
        Some(match array.data_type() {
            DataType::Utf8 => Value::Text(array.as_string::<i32>().value(row).to_owned()),
            DataType::Int64 => Value::Int(array.as_primitive::<Int64Type>().value(row)),
            DataType::Float64 => Value::Float(array.as_primitive::<Float64Type>().value(row)),
            DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
            DataType::Timestamp(..) => {
                Value::Timestamp(array.as_primitive::<TimestampMicrosecondType>().value(row))
            }
            DataType::List(_) => {
                let items = array.as_list::<i32>().value(row);
                Value::List(
                    items
                        .as_string::<i32>()
                        .iter()
                        .map(|item| item.map(str::to_owned))
                        .collect(),
                )
            }
            _ => return None,
        })
    }

    /// Orders values of one column (floats totally: NaN above every number, as in Spark, and
    /// -0.0 below 0.0, so `min` and `max` of a group holding both do not depend on which
    /// worker saw which first).
    fn cmp(&self, other: &Value) -> std::cmp::Ordering {
        match (self, other) {
            (Value::Text(a), Value::Text(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) | (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
            (Value::Float(a), Value::Float(b)) => match a.partial_cmp(b) {
                Some(std::cmp::Ordering::Equal) => a.is_sign_positive().cmp(&b.is_sign_positive()),
                Some(order) => order,
                None => a.is_nan().cmp(&b.is_nan()),
            },
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::List(a), Value::List(b)) => a.cmp(b),
            _ => std::cmp::Ordering::Equal,
        }
    }

    /// Bytes the value holds outside itself (a text's characters).
    fn heap_bytes(&self) -> usize {
        match self {
            Value::Text(s) => s.capacity(),
            Value::List(items) => {
                items.capacity() * std::mem::size_of::<Option<String>>()
                    + items.iter().flatten().map(String::capacity).sum::<usize>()
            }
            _ => 0,
        }
    }

    fn text(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(x) => crate::data::float_text(*x),
            Value::Bool(b) => b.to_string(),
            Value::Timestamp(t) => crate::data::format_timestamp(*t),
            Value::List(items) => serde_json::Value::from(items.clone()).to_string(),
        }
    }
}

/// Where a row is in the input: its morsel, then its place among the rows this state saw of
/// that morsel (a state sees a morsel's rows in order).
type Order = (u64, u64);

/// One aggregate's state for one group.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Acc {
    Count(i64),
    /// Summed exactly (an i128 cannot overflow on fewer than 2^64 values); the result must
    /// fit an i64.
    SumInt(#[serde(with = "snapshot::opt_i128")] Option<i128>),
    SumFloat(#[serde(with = "snapshot::opt_f64")] Option<f64>),
    Avg {
        #[serde(with = "snapshot::f64_bits")]
        sum: f64,
        #[serde(with = "snapshot::i128_text")]
        int_sum: i128,
        count: i64,
    },
    Min(Option<Value>),
    Max(Option<Value>),
    Distinct(std::collections::HashSet<DistinctKey>),
    First(Option<(Order, Option<Value>)>),
    Last(Option<(Order, Option<Value>)>),
    List(Vec<(Order, String)>),
}

/// A value as a hashable key (floats by their bits, with every NaN one value and -0 as 0).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum DistinctKey {
    Text(String),
    Int(i64),
    Bits(u64),
    Bool(bool),
    List(Vec<Option<String>>),
}

impl DistinctKey {
    fn of(value: Value) -> DistinctKey {
        match value {
            Value::Text(s) => DistinctKey::Text(s),
            Value::Int(i) | Value::Timestamp(i) => DistinctKey::Int(i),
            Value::Float(x) if x.is_nan() => DistinctKey::Bits(f64::NAN.to_bits()),
            Value::Float(x) => DistinctKey::Bits((x + 0.0).to_bits()),
            Value::Bool(b) => DistinctKey::Bool(b),
            Value::List(items) => DistinctKey::List(items),
        }
    }
}

impl Agg {
    fn empty(&self) -> Acc {
        use AggregateFunction as A;
        match self.function {
            A::Count => Acc::Count(0),
            A::Sum if self.input == Some(ValueType::Float) => Acc::SumFloat(None),
            A::Sum => Acc::SumInt(None),
            A::Avg => Acc::Avg {
                sum: 0.0,
                int_sum: 0,
                count: 0,
            },
            A::Min => Acc::Min(None),
            A::Max => Acc::Max(None),
            A::CountDistinct => Acc::Distinct(Default::default()),
            A::First => Acc::First(None),
            A::Last => Acc::Last(None),
            A::CollectList => Acc::List(Vec::new()),
        }
    }
}

fn overflow(what: &str) -> Error {
    Error::runtime(format!(
        "aggregate: integer overflow in `{what}`: the sum is outside {} to {} (cast the column to float to sum it approximately)",
        i64::MIN,
        i64::MAX
    ))
}

impl Acc {
    /// The latest morsel an order-keeping accumulator holds a row of.
    fn latest_morsel(&self) -> Option<u64> {
        match self {
            Acc::First(Some(((m, _), _))) | Acc::Last(Some(((m, _), _))) => Some(*m),
            Acc::List(items) => items.iter().map(|((m, _), _)| *m).max(),
            _ => None,
        }
    }

    /// Adds row `row` of `values` (the aggregate's argument; `None` for `count()`).
    fn add(
        &mut self,
        values: Option<&ArrayRef>,
        row: usize,
        order: Order,
        call: &str,
    ) -> Result<isize> {
        let present = values.is_none_or(|v| v.is_valid(row));
        // What the accumulator grew by outside itself (kept texts, distinct values, list
        // items), for the state's memory estimate.
        let mut grew = 0isize;
        let held = |v: &Option<Value>| v.as_ref().map_or(0, Value::heap_bytes) as isize;
        match self {
            Acc::Count(n) => *n += i64::from(present),
            _ if !present && !matches!(self, Acc::First(_) | Acc::Last(_)) => {}
            Acc::SumInt(sum) => {
                let v = values
                    .expect("sum has an argument")
                    .as_primitive::<Int64Type>()
                    .value(row);
                *sum = Some(
                    sum.unwrap_or(0)
                        .checked_add(i128::from(v))
                        .ok_or_else(|| overflow(call))?,
                );
            }
            Acc::SumFloat(sum) => {
                let v = values
                    .expect("sum has an argument")
                    .as_primitive::<Float64Type>()
                    .value(row);
                *sum = Some(sum.unwrap_or(0.0) + v);
            }
            Acc::Avg {
                sum,
                int_sum,
                count,
            } => {
                let array = values.expect("avg has an argument");
                match array.data_type() {
                    DataType::Int64 => {
                        *int_sum += i128::from(array.as_primitive::<Int64Type>().value(row))
                    }
                    _ => *sum += array.as_primitive::<Float64Type>().value(row),
                }
                *count += 1;
            }
            Acc::Min(best) => {
                if let Some(v) = Value::read(values.expect("min has an argument").as_ref(), row)
                    .map(Value::zero_unsigned)
                {
                    if best.as_ref().is_none_or(|b| v.cmp(b).is_lt()) {
                        grew = v.heap_bytes() as isize - held(best);
                        *best = Some(v);
                    }
                }
            }
            Acc::Max(best) => {
                if let Some(v) = Value::read(values.expect("max has an argument").as_ref(), row)
                    .map(Value::zero_unsigned)
                {
                    if best.as_ref().is_none_or(|b| v.cmp(b).is_gt()) {
                        grew = v.heap_bytes() as isize - held(best);
                        *best = Some(v);
                    }
                }
            }
            Acc::Distinct(set) => {
                if let Some(v) = Value::read(
                    values.expect("count_distinct has an argument").as_ref(),
                    row,
                ) {
                    let bytes = v.heap_bytes() + std::mem::size_of::<DistinctKey>() + 8;
                    if set.insert(DistinctKey::of(v)) {
                        grew = bytes as isize;
                    }
                }
            }
            Acc::First(kept) => {
                if kept.as_ref().is_none_or(|(o, _)| order < *o) {
                    let value = values.and_then(|v| Value::read(v.as_ref(), row));
                    grew = held(&value) - kept.as_ref().map_or(0, |(_, v)| held(v));
                    *kept = Some((order, value));
                }
            }
            Acc::Last(kept) => {
                if kept.as_ref().is_none_or(|(o, _)| order > *o) {
                    let value = values.and_then(|v| Value::read(v.as_ref(), row));
                    grew = held(&value) - kept.as_ref().map_or(0, |(_, v)| held(v));
                    *kept = Some((order, value));
                }
            }
            Acc::List(items) => {
                if let Some(v) = values.and_then(|v| Value::read(v.as_ref(), row)) {
                    let text = v.text();
                    grew = (text.capacity() + std::mem::size_of::<(Order, String)>()) as isize;
                    items.push((order, text));
                }
            }
        }
        Ok(grew)
    }

    fn merge(&mut self, other: Acc, call: &str) -> Result<()> {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::SumInt(a), Acc::SumInt(b)) => {
                *a = match (*a, b) {
                    (Some(x), Some(y)) => Some(x.checked_add(y).ok_or_else(|| overflow(call))?),
                    (x, y) => x.or(y),
                }
            }
            (Acc::SumFloat(a), Acc::SumFloat(b)) => {
                *a = match (*a, b) {
                    (Some(x), Some(y)) => Some(x + y),
                    (x, y) => x.or(y),
                }
            }
            (
                Acc::Avg {
                    sum,
                    int_sum,
                    count,
                },
                Acc::Avg {
                    sum: s,
                    int_sum: i,
                    count: c,
                },
            ) => {
                *sum += s;
                *int_sum += i;
                *count += c;
            }
            (Acc::Min(a), Acc::Min(b)) => {
                if let Some(b) = b {
                    if a.as_ref().is_none_or(|x| b.cmp(x).is_lt()) {
                        *a = Some(b);
                    }
                }
            }
            (Acc::Max(a), Acc::Max(b)) => {
                if let Some(b) = b {
                    if a.as_ref().is_none_or(|x| b.cmp(x).is_gt()) {
                        *a = Some(b);
                    }
                }
            }
            (Acc::Distinct(a), Acc::Distinct(b)) => a.extend(b),
            (Acc::First(a), Acc::First(b)) => {
                if let Some(b) = b {
                    if a.as_ref().is_none_or(|x| b.0 < x.0) {
                        *a = Some(b);
                    }
                }
            }
            (Acc::Last(a), Acc::Last(b)) => {
                if let Some(b) = b {
                    if a.as_ref().is_none_or(|x| b.0 > x.0) {
                        *a = Some(b);
                    }
                }
            }
            (Acc::List(a), Acc::List(b)) => a.extend(b),
            _ => return Err(Error::runtime(
                "aggregate: states of different aggregates cannot merge (a damaged checkpoint?)",
            )),
        }
        Ok(())
    }
}

/// Results of more groups than this are sorted and decoded on the pool's cores.
const PARALLEL_GROUPS: usize = 1 << 16;

/// An `aggregate` state: one accumulator per aggregate call for each group, by encoded key.
pub struct AggregateTable {
    keys: Vec<Expr>,
    converter: RowConverter,
    aggs: Arc<Vec<Agg>>,
    output: SchemaRef,
    /// Encoded key to group number.
    groups: GroupIndex,
    /// Per aggregate, its accumulators by group number.
    columns: Vec<AccColumn>,
    /// The morsel being read and the rows of it seen so far (see `Order`).
    morsel: u64,
    row: u64,
    /// Bytes the accumulators hold outside their vectors, as `update` reported them.
    held: isize,
}

impl AggregateTable {
    fn evaluate_keys(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        self.keys
            .iter()
            .map(|k| {
                let key = k
                    .evaluate(batch)
                    .map_err(|e| Error::runtime(format!("aggregate: by: {e}")))?;
                Ok(crate::data::float_keys(key))
            })
            .collect()
    }

    /// The group number of each row of `keys` (new groups created empty).
    fn group_ids(&mut self, keys: &[ArrayRef], rows: usize) -> Result<Vec<usize>> {
        if keys.is_empty() {
            return Ok(vec![0; rows]);
        }
        let encoded = self
            .converter
            .convert_columns(keys)
            .map_err(|e| Error::runtime(format!("aggregate: {e}")))?;
        // Hashed first, so that each row's slot is loaded a few rows before its lookup (with
        // millions of groups the table lies in no cache).
        const AHEAD: usize = 8;
        let hashes: Vec<u64> = encoded
            .iter()
            .map(|row| self.groups.hash(row.as_ref()))
            .collect();
        for &hash in hashes.iter().take(AHEAD) {
            self.groups.prefetch(hash);
        }
        let mut ids = Vec::with_capacity(rows);
        for (index, row) in encoded.iter().enumerate() {
            if let Some(&later) = hashes.get(index + AHEAD) {
                self.groups.prefetch(later);
            }
            ids.push(self.group_of_hashed(hashes[index], row.as_ref()));
        }
        Ok(ids)
    }

    /// The group of an encoded key, created empty if new.
    fn group_of_key(&mut self, key: &[u8]) -> usize {
        let hash = self.groups.hash(key);
        self.group_of_hashed(hash, key)
    }

    /// `group_of_key` with the hash `GroupIndex::hash` gave.
    fn group_of_hashed(&mut self, hash: u64, key: &[u8]) -> usize {
        let (id, new) = self.groups.find_or_insert(hash, key);
        if new {
            for (column, agg) in self.columns.iter_mut().zip(self.aggs.iter()) {
                column.push_group(agg);
            }
        }
        id
    }

    /// Group numbers in key order (nulls first).
    fn sorted(&self) -> Vec<usize> {
        // Each key's first 32 bytes (zero-padded, big-endian: ordered as the bytes are) go
        // with its group, so that most comparisons read no key: with millions of groups the
        // keys lie far apart in memory, and keys of two columns often share their first 16
        // bytes (a product and the year of a date). Equal heads compare the whole keys.
        let head = |id: usize| {
            let key = self.groups.key(id);
            let mut head = [0u8; 32];
            let n = key.len().min(32);
            head[..n].copy_from_slice(&key[..n]);
            let (high, low) = head.split_at(16);
            let high = u128::from_be_bytes(high.try_into().expect("16 bytes"));
            let low = u128::from_be_bytes(low.try_into().expect("16 bytes"));
            (high, low, id)
        };
        let order = |a: &(u128, u128, usize), b: &(u128, u128, usize)| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then_with(|| self.groups.key(a.2).cmp(self.groups.key(b.2)))
        };
        // Keys are distinct, so any sort gives one order. On a worker of the run's pool (a
        // batch's result) its cores sort millions of groups together; elsewhere (a stream's
        // epoch) the sort stays on its thread.
        let mut groups: Vec<(u128, u128, usize)>;
        if rayon::current_thread_index().is_some() && self.groups.len() > PARALLEL_GROUPS {
            use rayon::prelude::*;
            groups = (0..self.groups.len()).into_par_iter().map(head).collect();
            groups.par_sort_unstable_by(order);
        } else {
            groups = (0..self.groups.len()).map(head).collect();
            groups.sort_unstable_by(order);
        }
        groups.into_iter().map(|(_, _, id)| id).collect()
    }

    /// The columns of a `spill_snapshot`: the keys as the output has them, then each
    /// aggregate's `AccColumn::spill_fields`.
    fn spill_schema(&self) -> Schema {
        let key_count = self.keys.len();
        let mut fields: Vec<Field> = self.output.fields()[..key_count]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for (index, column) in self.columns.iter().enumerate() {
            fields.extend(column.spill_fields(self.output.field(key_count + index).name()));
        }
        Schema::new(fields)
    }

    /// The key columns of `groups`.
    fn key_columns(&self, groups: &[usize]) -> Result<Vec<ArrayRef>> {
        if self.keys.is_empty() {
            return Ok(Vec::new());
        }
        // The keys lie scattered over the table, and the decoder reads each once per column:
        // they are copied into one buffer first, each prefetched a few groups ahead (its
        // place a few groups before that).
        const AHEAD: usize = 8;
        let mut bytes = Vec::with_capacity(groups.len() * 16);
        let mut ends = Vec::with_capacity(groups.len());
        for (index, &id) in groups.iter().enumerate() {
            if let Some(&later) = groups.get(index + 2 * AHEAD) {
                self.groups.prefetch_ends(later);
            }
            if let Some(&later) = groups.get(index + AHEAD) {
                self.groups.prefetch_key(later);
            }
            bytes.extend_from_slice(self.groups.key(id));
            ends.push(bytes.len());
        }
        let parser = self.converter.parser();
        let mut start = 0;
        let rows: Vec<_> = ends
            .iter()
            .map(|&end| {
                let row = parser.parse(&bytes[start..end]);
                start = end;
                row
            })
            .collect();
        self.converter
            .convert_rows(rows)
            .map_err(|e| Error::runtime(format!("aggregate: {e}")))
    }

    /// The columns `build` makes of `groups`; with millions of groups, made in parts on the
    /// pool's cores (each part reads groups scattered over the table) and joined.
    fn in_parts(
        &self,
        groups: &[usize],
        build: impl Fn(&[usize]) -> Result<Vec<ArrayRef>> + Sync,
    ) -> Result<Vec<ArrayRef>> {
        if rayon::current_thread_index().is_none() || groups.len() <= PARALLEL_GROUPS {
            return build(groups);
        }
        use rayon::prelude::*;
        let parts: Vec<Vec<ArrayRef>> = groups
            .par_chunks(PARALLEL_GROUPS)
            .map(&build)
            .collect::<Result<_>>()?;
        let columns = parts.first().map_or(0, Vec::len);
        (0..columns)
            .map(|column| {
                let arrays: Vec<&dyn Array> =
                    parts.iter().map(|part| part[column].as_ref()).collect();
                arrow_select::concat::concat(&arrays)
                    .map_err(|e| Error::runtime(format!("aggregate: {e}")))
            })
            .collect()
    }

    /// An overflowing sum's error, naming its group by the key values in row `row` of `keys`
    /// (a sum over millions of groups is no help without it).
    fn overflow_in_group(&self, call: &str, keys: &[ArrayRef], row: usize) -> Error {
        let options = arrow_cast::display::FormatOptions::default().with_null("null");
        let group: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let value = arrow_cast::display::ArrayFormatter::try_new(key.as_ref(), &options)
                    .map(|format| format.value(row).to_string())
                    .unwrap_or_default();
                let quoted = match key.data_type() {
                    DataType::Utf8 | DataType::LargeUtf8 if key.is_valid(row) => {
                        format!("'{value}'")
                    }
                    _ => value,
                };
                format!(
                    "{} = {}",
                    escape_controls(self.output.field(index).name()),
                    shortened(&quoted)
                )
            })
            .collect();
        if group.is_empty() {
            return overflow(call);
        }
        Error::runtime(format!(
            "aggregate: integer overflow in `{call}` for the group {}: the sum is outside {} to {} (cast the column to float to sum it approximately)",
            group.join(", "),
            i64::MIN,
            i64::MAX
        ))
    }

    /// `aggregate_column` for the aggregates kept in plain vectors (`None` for others), read
    /// without an `Acc` per group.
    fn plain_column(
        &self,
        index: usize,
        ids: &[usize],
        keys: &[ArrayRef],
    ) -> Result<Option<ArrayRef>> {
        use arrow_array::{Float64Array, Int64Array};
        Ok(Some(match &self.columns[index] {
            AccColumn::Count(counts) => Arc::new(Int64Array::from_iter_values(
                ids.iter().map(|&id| counts[id]),
            )),
            AccColumn::SumInt(sums, seen) => {
                let call = self.aggs[index].expr.as_ref().map_or("sum", |e| e.source());
                let sums = ids
                    .iter()
                    .enumerate()
                    .map(|(row, &id)| {
                        seen[id]
                            .then(|| {
                                i64::try_from(sums[id])
                                    .map_err(|_| self.overflow_in_group(call, keys, row))
                            })
                            .transpose()
                    })
                    .collect::<Result<Int64Array>>()?;
                Arc::new(sums)
            }
            AccColumn::SumFloat(sums, seen) => Arc::new(
                ids.iter()
                    .map(|&id| seen[id].then_some(sums[id]))
                    .collect::<Float64Array>(),
            ),
            AccColumn::Avg(sums, int_sums, counts) => Arc::new(
                ids.iter()
                    .map(|&id| {
                        (counts[id] != 0)
                            .then(|| (sums[id] + int_sums[id] as f64) / counts[id] as f64)
                    })
                    .collect::<Float64Array>(),
            ),
            AccColumn::Generic(_) => return Ok(None),
        }))
    }

    /// The output column of aggregate `index` for the groups `ids`, whose key columns (row for
    /// row) are `keys`: an error names the group.
    fn aggregate_column(
        &self,
        index: usize,
        ids: &[usize],
        field: &Field,
        keys: &[ArrayRef],
    ) -> Result<ArrayRef> {
        if let Some(array) = self.plain_column(index, ids, keys)? {
            return Ok(array);
        }
        use arrow_array::builder::*;
        let owned: Vec<Acc> = ids.iter().map(|&id| self.columns[index].acc(id)).collect();
        let accs = owned.iter();
        let value_of = |acc: &Acc| -> Option<Value> {
            match acc {
                Acc::Min(v) | Acc::Max(v) => v.clone(),
                Acc::First(v) | Acc::Last(v) => v.as_ref().and_then(|(_, v)| v.clone()),
                _ => None,
            }
        };
        Ok(match self.aggs[index].function {
            AggregateFunction::Count => Arc::new(
                accs.map(|a| match a {
                    Acc::Count(n) => *n,
                    _ => 0,
                })
                .collect::<arrow_array::Int64Array>(),
            ),
            AggregateFunction::CountDistinct => Arc::new(
                accs.map(|a| match a {
                    Acc::Distinct(s) => s.len() as i64,
                    _ => 0,
                })
                .collect::<arrow_array::Int64Array>(),
            ),
            AggregateFunction::Avg => Arc::new(
                accs.map(|a| match a {
                    Acc::Avg { count: 0, .. } => None,
                    Acc::Avg {
                        sum,
                        int_sum,
                        count,
                    } => Some((*sum + *int_sum as f64) / *count as f64),
                    _ => None,
                })
                .collect::<arrow_array::Float64Array>(),
            ),
            AggregateFunction::CollectList => {
                let mut builder = ListBuilder::new(StringBuilder::new());
                for acc in accs {
                    if let Acc::List(items) = acc {
                        let mut items: Vec<_> = items.iter().collect();
                        items.sort_by_key(|(order, _)| *order);
                        for (_, item) in items {
                            builder.values().append_value(item);
                        }
                    }
                    builder.append(true);
                }
                Arc::new(builder.finish())
            }
            AggregateFunction::Sum => match field.data_type() {
                DataType::Float64 => Arc::new(
                    accs.map(|a| match a {
                        Acc::SumFloat(s) => *s,
                        _ => None,
                    })
                    .collect::<arrow_array::Float64Array>(),
                ),
                _ => {
                    let call = self.aggs[index].expr.as_ref().map_or("sum", |e| e.source());
                    let sums = accs
                        .enumerate()
                        .map(|(row, a)| match a {
                            Acc::SumInt(Some(s)) => i64::try_from(*s)
                                .map(Some)
                                .map_err(|_| self.overflow_in_group(call, keys, row)),
                            _ => Ok(None),
                        })
                        .collect::<Result<arrow_array::Int64Array>>()?;
                    Arc::new(sums)
                }
            },
            _ => {
                let values: Vec<Option<Value>> = accs.map(value_of).collect();
                values_array(&values, field.data_type())
            }
        })
    }
}

fn values_array(values: &[Option<Value>], data_type: &DataType) -> ArrayRef {
    match data_type {
        DataType::Utf8 => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(Value::Text(s)) => Some(s.as_str()),
                    _ => None,
                })
                .collect::<arrow_array::StringArray>(),
        ),
        DataType::Int64 => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(Value::Int(i)) => Some(*i),
                    _ => None,
                })
                .collect::<arrow_array::Int64Array>(),
        ),
        DataType::Float64 => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(Value::Float(x)) => Some(*x),
                    _ => None,
                })
                .collect::<arrow_array::Float64Array>(),
        ),
        DataType::Boolean => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(Value::Bool(b)) => Some(*b),
                    _ => None,
                })
                .collect::<arrow_array::BooleanArray>(),
        ),
        DataType::List(_) => {
            let mut builder =
                arrow_array::builder::ListBuilder::new(arrow_array::builder::StringBuilder::new());
            for value in values {
                match value {
                    Some(Value::List(items)) => {
                        for item in items {
                            builder.values().append_option(item.as_deref());
                        }
                        builder.append(true);
                    }
                    _ => builder.append_null(),
                }
            }
            Arc::new(builder.finish())
        }
        _ => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(Value::Timestamp(t)) => Some(*t),
                    _ => None,
                })
                .collect::<arrow_array::TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ),
    }
}

impl AggregateState for AggregateTable {
    fn begin_morsel(&mut self, index: u64) {
        self.morsel = index;
        self.row = 0;
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let keys = self.evaluate_keys(batch)?;
        let ids = self.group_ids(&keys, batch.num_rows())?;
        let args = self
            .aggs
            .iter()
            .map(|agg| {
                agg.expr
                    .as_ref()
                    .map(|e| {
                        e.evaluate(batch)
                            .map_err(|e| Error::runtime(format!("aggregate: {e}")))
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        self.add_grouped(&ids, &args)
    }

    fn grouped(&mut self) -> Option<&mut dyn GroupedRows> {
        Some(self)
    }

    fn merge(&mut self, other: Box<dyn AggregateState>) -> Result<()> {
        let mut other = other
            .into_any()
            .downcast::<AggregateTable>()
            .expect("merging states of one aggregation");
        // The smaller table is merged into the larger (the first worker's state into an
        // empty one costs nothing); which morsel is being read stays this state's.
        if other.groups.len() > self.groups.len() {
            let (morsel, row) = (self.morsel, self.row);
            std::mem::swap(self, &mut *other);
            (self.morsel, self.row) = (morsel, row);
        }
        let AggregateTable {
            groups,
            mut columns,
            ..
        } = *other;
        let calls: Vec<String> = self
            .aggs
            .iter()
            .map(|agg| {
                agg.expr
                    .as_ref()
                    .map_or("count()", |e| e.source())
                    .to_owned()
            })
            .collect();
        // Room for every group of the other table (with millions of distinct keys, most are
        // new here), so that the table does not grow step by step.
        self.groups.reserve(groups.len(), groups.key_bytes());
        // Each key's slot here is loaded a few keys before its lookup.
        const AHEAD: usize = 8;
        let mut ahead = groups.keys_hashed_for(self.groups.seed()).skip(AHEAD);
        for (_, hash) in groups.keys_hashed_for(self.groups.seed()).take(AHEAD) {
            self.groups.prefetch(hash);
        }
        for (theirs, (key, hash)) in groups.keys_hashed_for(self.groups.seed()).enumerate() {
            if let Some((_, later)) = ahead.next() {
                self.groups.prefetch(later);
            }
            let (mine, new) = self.groups.find_or_insert(hash, key);
            for (index, column) in columns.iter_mut().enumerate() {
                match new {
                    true => self.columns[index].push_from(column, theirs),
                    false => self.columns[index].merge(mine, column.take(theirs), &calls[index])?,
                }
            }
        }
        Ok(())
    }

    fn result(&self) -> Result<RecordBatch> {
        let sorted = self.sorted();
        let key_count = self.keys.len();
        let columns = self.in_parts(&sorted, |groups| {
            let mut columns = self.key_columns(groups)?;
            for index in 0..self.aggs.len() {
                let column = self.aggregate_column(
                    index,
                    groups,
                    self.output.field(key_count + index),
                    &columns[..key_count],
                )?;
                columns.push(column);
            }
            Ok(columns)
        })?;
        Ok(RecordBatch::try_new_with_options(
            self.output.clone(),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(sorted.len())),
        )
        .expect("columns built from the output schema"))
    }

    /// The key columns and, per group, the accumulators as JSON (`state`): everything needed to
    /// go on counting (an average's sum and count, the distinct values), not only the result.
    fn snapshot(&self) -> Result<RecordBatch> {
        let sorted = self.sorted();
        let mut columns = self.in_parts(&sorted, |groups| self.key_columns(groups))?;
        let mut fields: Vec<Field> = self.output.fields()[..columns.len()]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let states: arrow_array::StringArray = sorted
            .iter()
            .map(|&id| {
                let accs: Vec<Acc> = self.columns.iter().map(|c| c.acc(id)).collect();
                serde_json::to_string(&accs).ok()
            })
            .collect();
        columns.push(Arc::new(states));
        fields.push(Field::new("state", DataType::Utf8, true));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(sorted.len())),
        )
        .expect("columns built from their fields"))
    }

    fn restore(&mut self, table: &RecordBatch) -> Result<()> {
        let damaged =
            |why: String| Error::runtime(format!("the saved aggregate state is damaged: {why}"));
        let key_count = self.keys.len();
        let expected: Vec<_> = self.output.fields()[..key_count]
            .iter()
            .map(|f| f.data_type().clone())
            .chain([DataType::Utf8])
            .collect();
        let found: Vec<_> = table
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        if expected != found {
            return Err(damaged(format!(
                "its columns are {found:?}, this step needs {expected:?}"
            )));
        }
        let keys: Vec<ArrayRef> = table.columns()[..key_count].to_vec();
        let states = table.column(key_count).as_string::<i32>().clone();
        let ids = self.group_ids(&keys, table.num_rows())?;
        for (row, id) in ids.into_iter().enumerate() {
            let text = states
                .is_valid(row)
                .then(|| states.value(row))
                .ok_or_else(|| damaged("a group has no state".into()))?;
            let accs: Vec<Acc> = serde_json::from_str(text).map_err(|e| damaged(e.to_string()))?;
            if accs.len() != self.aggs.len() {
                return Err(damaged(format!(
                    "{} aggregates saved, {} here",
                    accs.len(),
                    self.aggs.len()
                )));
            }
            for (index, acc) in accs.into_iter().enumerate() {
                let kind_matches = std::mem::discriminant(&acc)
                    == std::mem::discriminant(&self.aggs[index].empty());
                if !kind_matches {
                    return Err(damaged(format!(
                        "aggregate {} was saved as another kind",
                        index + 1
                    )));
                }
                self.columns[index].merge(id, acc, "restored state")?;
            }
        }
        self.after_restored();
        Ok(())
    }

    /// The keys, then each aggregate's accumulators as they are held (see
    /// `AccColumn::spill_fields`): a spill writes and reads its runs several times, and a
    /// checkpoint's JSON took a third of a spilling run's time.
    fn spill_snapshot(&self) -> Result<RecordBatch> {
        let sorted = self.sorted();
        let columns = self.in_parts(&sorted, |groups| {
            let mut columns = self.key_columns(groups)?;
            for column in &self.columns {
                columns.extend(column.spilled(groups));
            }
            Ok(columns)
        })?;
        RecordBatch::try_new_with_options(
            Arc::new(self.spill_schema()),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(sorted.len())),
        )
        .map_err(|e| Error::runtime(format!("aggregate: spilling: {e}")))
    }

    fn spill_restore(&mut self, table: &RecordBatch) -> Result<()> {
        self.check_spilled(table)?;
        let key_count = self.keys.len();
        let keys: Vec<ArrayRef> = table.columns()[..key_count].to_vec();
        let ids = self.group_ids(&keys, table.num_rows())?;
        self.merge_spilled(&ids, table)?;
        self.after_restored();
        Ok(())
    }

    /// Equal keys are next to each other: each row's group is found by comparing its key
    /// with the row before, with no table of groups, and the keys are taken from the rows, not
    /// decoded and sorted again (the merge of a spilled run's slices took a third of its time
    /// in the table, its sort and the keys' decoding).
    fn result_of_sorted(mut self: Box<Self>, table: &RecordBatch) -> Result<RecordBatch> {
        self.check_spilled(table)?;
        let key_count = self.keys.len();
        if key_count == 0 || self.groups.len() != 0 {
            self.spill_restore(table)?;
            return self.result();
        }
        let keys: Vec<ArrayRef> = table.columns()[..key_count].to_vec();
        let encoded = self
            .converter
            .convert_columns(&keys)
            .map_err(|e| Error::runtime(format!("aggregate: {e}")))?;
        let mut ids = Vec::with_capacity(table.num_rows());
        let mut firsts: Vec<u32> = Vec::new();
        for row in 0..table.num_rows() {
            if row == 0 || encoded.row(row) != encoded.row(row - 1) {
                firsts.push(row as u32);
            }
            ids.push(firsts.len() - 1);
        }
        for _ in 0..firsts.len() {
            for (column, agg) in self.columns.iter_mut().zip(self.aggs.iter()) {
                column.push_group(agg);
            }
        }
        self.merge_spilled(&ids, table)?;
        let firsts = arrow_array::UInt32Array::from(firsts);
        let mut columns = keys
            .iter()
            .map(|key| arrow_select::take::take(key, &firsts, None))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::runtime(format!("aggregate: {e}")))?;
        let groups: Vec<usize> = (0..firsts.len()).collect();
        for index in 0..self.aggs.len() {
            let column = self.aggregate_column(
                index,
                &groups,
                self.output.field(key_count + index),
                &columns[..key_count],
            )?;
            columns.push(column);
        }
        RecordBatch::try_new_with_options(
            self.output.clone(),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(groups.len())),
        )
        .map_err(|e| Error::runtime(format!("aggregate: {e}")))
    }

    fn rows(&self) -> usize {
        self.groups.len()
    }

    /// The groups' keys and table, the accumulators' vectors and what they hold (estimated
    /// as it was added). The snapshot is in key order and `restore` merges equal keys, as a
    /// spill needs.
    fn spillable_bytes(&self) -> Option<usize> {
        let columns: usize = self.columns.iter().map(AccColumn::memory_bytes).sum();
        Some(self.groups.memory_bytes() + columns + self.held.max(0) as usize)
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

impl AggregateTable {
    /// After groups were restored: rows read from now on come after every restored one.
    fn after_restored(&mut self) {
        let latest = self
            .columns
            .iter()
            .filter_map(AccColumn::latest_morsel)
            .max();
        if let Some(latest) = latest {
            self.morsel = self.morsel.max(latest + 1);
            self.row = 0;
        }
    }

    /// An error unless `table` has the columns of this state's `spill_snapshot`.
    fn check_spilled(&self, table: &RecordBatch) -> Result<()> {
        let expected = self.spill_schema();
        let types = |fields: &arrow_schema::Fields| -> Vec<DataType> {
            fields.iter().map(|f| f.data_type().clone()).collect()
        };
        if types(expected.fields()) != types(table.schema().fields()) {
            return Err(Error::runtime(format!(
                "a spilled run of the aggregate is damaged: its columns are {:?}, this step needs {:?}",
                types(table.schema().fields()),
                types(expected.fields())
            )));
        }
        Ok(())
    }

    /// Folds the accumulators of `table` (a `spill_snapshot`'s columns) into the groups `ids`,
    /// one row each.
    fn merge_spilled(&mut self, ids: &[usize], table: &RecordBatch) -> Result<()> {
        let mut at = self.keys.len();
        for (index, agg) in self.aggs.iter().enumerate() {
            let width = self.columns[index].spill_fields("").len();
            let call = agg.expr.as_ref().map_or("count()", |e| e.source());
            self.columns[index].merge_spilled(agg, ids, &table.columns()[at..at + width], call)?;
            at += width;
        }
        Ok(())
    }
}

mod columns;
mod distinct;
mod group_index;
pub mod windowed;
use columns::AccColumn;
use group_index::GroupIndex;

impl GroupedRows for AggregateTable {
    fn groups_of(&mut self, keys: &[ArrayRef], rows: usize) -> Result<Vec<usize>> {
        self.group_ids(keys, rows)
    }

    fn add_grouped(&mut self, ids: &[usize], args: &[Option<ArrayRef>]) -> Result<()> {
        let aggs = self.aggs.clone();
        for (index, agg) in aggs.iter().enumerate() {
            let call = agg.expr.as_ref().map_or("count()", |e| e.source());
            let values = args.get(index).and_then(Option::as_ref);
            self.held += self.columns[index].update(values, ids, (self.morsel, self.row), call)?;
        }
        self.row += ids.len() as u64;
        Ok(())
    }
}

/// How numbers JSON cannot hold exactly are written in snapshots: floats by their bits (JSON has
/// no NaN or infinity), 128-bit sums as decimal text (past u64, JSON readers round them).
mod snapshot {
    use serde::{Deserialize, Deserializer, Serializer};

    pub mod f64_bits {
        use super::*;
        pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u64(x.to_bits())
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
            u64::deserialize(d).map(f64::from_bits)
        }
    }

    pub mod opt_f64 {
        use super::*;
        pub fn serialize<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
            match x {
                Some(x) => s.serialize_some(&x.to_bits()),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
            Option::<u64>::deserialize(d).map(|b| b.map(f64::from_bits))
        }
    }

    pub mod i128_text {
        use super::*;
        pub fn serialize<S: Serializer>(x: &i128, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&x.to_string())
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
            String::deserialize(d)?
                .parse()
                .map_err(serde::de::Error::custom)
        }
    }

    pub mod opt_i128 {
        use super::*;
        pub fn serialize<S: Serializer>(x: &Option<i128>, s: S) -> Result<S::Ok, S::Error> {
            match x {
                Some(x) => s.serialize_some(&x.to_string()),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i128>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|t| t.parse().map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests;
