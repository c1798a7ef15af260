//! Evaluates a typed expression a column at a time with Arrow's kernels. A literal stays one
//! value (`Col::Scalar`) until it meets a column, so `count >= 60` is one comparison kernel
//! over the column. Nulls propagate as in SQL (and Spark): a comparison or arithmetic with a
//! null is null, `and`/`or` are three-valued, and a filter keeps only rows that are true.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Datum, Float64Array, Int64Array, RecordBatch, Scalar,
    StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{ArrowError, DataType};

use super::check::{Arith, Cmp, Function, Node, TimeUnit, Type, Typed};
use crate::data::ValueType;

/// A value of every row, or one value standing for all of them.
#[derive(Debug, Clone)]
pub(super) enum Col {
    Array(ArrayRef),
    /// A one-row array.
    Scalar(ArrayRef),
}

type Out = Result<Col, String>;

impl Col {
    fn array(&self) -> &ArrayRef {
        match self {
            Col::Array(a) | Col::Scalar(a) => a,
        }
    }

    fn is_scalar(&self) -> bool {
        matches!(self, Col::Scalar(_))
    }

    /// Every row's value (a scalar repeated), as `data_type` when it is a bare null.
    pub(super) fn into_array(self, rows: usize, data_type: &DataType) -> Result<ArrayRef, String> {
        let array = match self {
            Col::Array(a) => a,
            Col::Scalar(a) => {
                let indices = arrow_array::UInt32Array::from(vec![0u32; rows]);
                arrow_select::take::take(a.as_ref(), &indices, None).map_err(message)?
            }
        };
        if array.data_type() == &DataType::Null && data_type != &DataType::Null {
            return arrow_cast::cast(&array, data_type).map_err(message);
        }
        Ok(array)
    }

    /// Applies a one-array function, keeping a scalar a scalar.
    fn map(self, f: impl FnOnce(&ArrayRef) -> Result<ArrayRef, String>) -> Out {
        Ok(match self {
            Col::Array(a) => Col::Array(f(&a)?),
            Col::Scalar(a) => Col::Scalar(f(&a)?),
        })
    }
}

fn message(e: ArrowError) -> String {
    match e {
        ArrowError::ArithmeticOverflow(what) => format!(
            "integer overflow ({}: past the integers' range, i64)",
            what.trim_start_matches("Overflow happened on: ")
        ),
        ArrowError::ComputeError(what) | ArrowError::CastError(what) => what,
        other => other.to_string(),
    }
}

/// Runs a two-operand kernel on datums (an array or a scalar each).
fn binary(
    l: &Col,
    r: &Col,
    kernel: impl Fn(&dyn Datum, &dyn Datum) -> Result<ArrayRef, ArrowError>,
) -> Out {
    let ls = l.is_scalar().then(|| Scalar::new(l.array().clone()));
    let rs = r.is_scalar().then(|| Scalar::new(r.array().clone()));
    let left: &dyn Datum = match &ls {
        Some(scalar) => scalar,
        None => l.array(),
    };
    let right: &dyn Datum = match &rs {
        Some(scalar) => scalar,
        None => r.array(),
    };
    let out = kernel(left, right).map_err(message)?;
    Ok(if l.is_scalar() && r.is_scalar() {
        Col::Scalar(out)
    } else {
        Col::Array(out)
    })
}

/// Both operands of one Arrow type: a bare null takes the other's type.
fn unify(l: Col, r: Col) -> Result<(Col, Col), String> {
    let (lt, rt) = (l.array().data_type().clone(), r.array().data_type().clone());
    if lt == DataType::Null && rt != DataType::Null {
        Ok((l.map(|a| arrow_cast::cast(a, &rt).map_err(message))?, r))
    } else if rt == DataType::Null && lt != DataType::Null {
        let r = r.map(|a| arrow_cast::cast(a, &lt).map_err(message))?;
        Ok((l, r))
    } else {
        Ok((l, r))
    }
}

/// Both as arrays of `rows` (for kernels without scalar forms).
fn arrays(l: Col, r: Col, rows: usize) -> Result<(ArrayRef, ArrayRef, bool), String> {
    let scalar = l.is_scalar() && r.is_scalar();
    let n = if scalar { 1 } else { rows };
    let lt = l.array().data_type().clone();
    let rt = r.array().data_type().clone();
    Ok((l.into_array(n, &rt)?, r.into_array(n, &lt)?, scalar))
}

fn wrap(array: ArrayRef, scalar: bool) -> Col {
    if scalar {
        Col::Scalar(array)
    } else {
        Col::Array(array)
    }
}

fn as_bool(col: Col, rows: usize) -> Result<(BooleanArray, bool), String> {
    let scalar = col.is_scalar();
    let array = col.into_array(if scalar { 1 } else { rows }, &DataType::Boolean)?;
    Ok((array.as_boolean().clone(), scalar))
}

/// `b` with its nulls false.
fn nulls_false(b: &BooleanArray) -> BooleanArray {
    match b.nulls() {
        Some(_) => arrow_select::filter::prep_null_mask_filter(b),
        None => b.clone(),
    }
}

/// Whether evaluating `t` can fail on a row's value (an overflow, a cast that does not take
/// the text): such a part of `if`, `coalesce`, `and` or `or` is evaluated only on the rows that
/// need it. Others are evaluated on every row, whose cost is less than picking the rows.
fn may_fail(t: &Typed) -> bool {
    match &t.node {
        Node::Column(_) | Node::Literal(_) => false,
        Node::Neg(_) | Node::Arith(..) => true,
        Node::Cast(inner, _, try_) => !*try_ || may_fail(inner),
        Node::Call(Function::Abs | Function::Round(_) | Function::DateTrunc(_), _) => true,
        Node::Call(_, args) => args.iter().any(may_fail),
        Node::Not(a) | Node::IsNull(a, _) | Node::Like(a, ..) | Node::Matches(a, ..) => may_fail(a),
        Node::Compare(_, a, b) | Node::And(a, b) | Node::Or(a, b) => may_fail(a) || may_fail(b),
        Node::In(a, items, _) => may_fail(a) || items.iter().any(may_fail),
    }
}

/// `t` of the rows of `batch` where `wanted` is true; null on the others, where it is not
/// evaluated at all (so that its errors are those of the rows that need it).
fn eval_where(t: &Typed, batch: &RecordBatch, wanted: &BooleanArray) -> Out {
    let picked = wanted.true_count();
    if !may_fail(t) || picked == batch.num_rows() {
        return eval(t, batch);
    }
    let data_type = match &t.ty {
        Type::Of(v) => v.data_type(),
        Type::Null => DataType::Null,
    };
    if picked == 0 {
        return Ok(Col::Array(arrow_array::new_null_array(
            &data_type,
            batch.num_rows(),
        )));
    }
    // Only the columns `t` reads are picked; the others are cut to length without a copy
    // (they are not read), so that a wide batch costs no more than a narrow one.
    let predicate = arrow_select::filter::FilterBuilder::new(wanted)
        .optimize()
        .build();
    let read = super::columns_of(t);
    let columns = batch
        .columns()
        .iter()
        .enumerate()
        .map(|(index, column)| match read.binary_search(&index) {
            Ok(_) => predicate.filter(column.as_ref()).map_err(message),
            Err(_) => Ok(column.slice(0, picked)),
        })
        .collect::<Result<Vec<_>, String>>()?;
    let rows = RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(picked)),
    )
    .map_err(message)?;
    let values = eval(t, &rows)?.into_array(picked, &data_type)?;
    // Each wanted row's place among the picked ones; null (a null value) elsewhere.
    let mut next = 0u32;
    let places: arrow_array::UInt32Array = wanted
        .iter()
        .map(|w| {
            w.unwrap_or(false).then(|| {
                next += 1;
                next - 1
            })
        })
        .collect();
    let spread = arrow_select::take::take(values.as_ref(), &places, None).map_err(message)?;
    Ok(Col::Array(spread))
}

pub(super) fn eval(t: &Typed, batch: &RecordBatch) -> Out {
    let rows = batch.num_rows();
    match &t.node {
        Node::Column(index) => Ok(Col::Array(batch.column(*index).clone())),
        Node::Literal(value) => Ok(Col::Scalar(value.clone())),
        Node::Neg(inner) => eval(inner, batch)?.map(|a| {
            if a.data_type() == &DataType::Null {
                return Ok(a.clone());
            }
            arrow_arith::numeric::neg(a.as_ref()).map_err(message)
        }),
        Node::Not(inner) => {
            let (b, scalar) = as_bool(eval(inner, batch)?, rows)?;
            Ok(wrap(
                Arc::new(arrow_arith::boolean::not(&b).map_err(message)?),
                scalar,
            ))
        }
        Node::And(l, r) | Node::Or(l, r) => {
            let and = matches!(t.node, Node::And(..));
            let (lb, ls) = as_bool(eval(l, batch)?, rows)?;
            // The right side only where the left does not decide (false for `and`, true for
            // `or`), as Spark and SQL evaluate it: `s matches '^\d+$' and cast(s as integer)
            // > 5` must not fail on a row the left side rules out.
            let undecided = || -> Result<BooleanArray, String> {
                // Where the left is false (`and`) or true (`or`), not null: decided.
                let decides = match and {
                    true => arrow_arith::boolean::not(&lb).map_err(message)?,
                    false => lb.clone(),
                };
                arrow_arith::boolean::not(&nulls_false(&decides)).map_err(message)
            };
            // A constant left side that decides (`false and ...`, `true or ...`): so be it.
            if ls && lb.len() == 1 && lb.is_valid(0) && lb.value(0) != and {
                return Ok(Col::Scalar(Arc::new(lb)));
            }
            // The rows left undecided are picked only for a right side that can fail: a plain
            // `a > 1 and b < 2` (a filter's usual form) runs as it ran, on every row.
            let right = match ls || !may_fail(r) {
                false => eval_where(r, batch, &undecided()?)?,
                true => eval(r, batch)?,
            };
            let (rb, rs) = as_bool(right, rows)?;
            let (lb, rb) = match (ls, rs) {
                (true, false) => (broadcast_bool(&lb, rows), rb),
                (false, true) => (lb, broadcast_bool(&rb, rows)),
                _ => (lb, rb),
            };
            let out = if and {
                arrow_arith::boolean::and_kleene(&lb, &rb)
            } else {
                arrow_arith::boolean::or_kleene(&lb, &rb)
            }
            .map_err(message)?;
            Ok(wrap(Arc::new(out), ls && rs))
        }
        Node::Arith(op, l, r) => arith(*op, eval(l, batch)?, eval(r, batch)?, rows),
        Node::Compare(op, l, r) => compare(*op, eval(l, batch)?, eval(r, batch)?, rows),
        Node::In(value, items, negated) => {
            let mut v = eval(value, batch)?;
            let items = items
                .iter()
                .map(|item| eval(item, batch))
                .collect::<Result<Vec<_>, _>>()?;
            // As Spark: a float anywhere makes every integer a float, so `n in [2^53 + 1, 0.5]`
            // holds for 2^53 too.
            let is = |c: &Col, t: &DataType| c.array().data_type() == t;
            if is(&v, &DataType::Int64) && items.iter().any(|i| is(i, &DataType::Float64)) {
                v = v.map(|a| arrow_cast::cast(a, &DataType::Float64).map_err(message))?;
            }
            let mut any: Option<Col> = None;
            for item in items {
                let hit = compare(Cmp::Eq, v.clone(), item, rows)?;
                any = Some(match any {
                    None => hit,
                    Some(so_far) => {
                        let (a, s1) = as_bool(so_far, rows)?;
                        let (b, s2) = as_bool(hit, rows)?;
                        let (a, b) = match (s1, s2) {
                            (true, false) => (broadcast_bool(&a, rows), b),
                            (false, true) => (a, broadcast_bool(&b, rows)),
                            _ => (a, b),
                        };
                        wrap(
                            Arc::new(arrow_arith::boolean::or_kleene(&a, &b).map_err(message)?),
                            s1 && s2,
                        )
                    }
                });
            }
            let found = match any {
                Some(found) => found,
                None => Col::Scalar(Arc::new(BooleanArray::from(vec![false]))),
            };
            if *negated {
                let (b, scalar) = as_bool(found, rows)?;
                Ok(wrap(
                    Arc::new(arrow_arith::boolean::not(&b).map_err(message)?),
                    scalar,
                ))
            } else {
                Ok(found)
            }
        }
        Node::IsNull(value, negated) => eval(value, batch)?.map(|a| {
            let out = if *negated {
                arrow_arith::boolean::is_not_null(a.as_ref())
            } else {
                arrow_arith::boolean::is_null(a.as_ref())
            };
            Ok(Arc::new(out.map_err(message)?) as ArrayRef)
        }),
        Node::Like(value, pattern, negated) => {
            let v = eval(value, batch)?;
            let p = Col::Scalar(Arc::new(StringArray::from(vec![pattern.as_str()])));
            let (v, p) = unify(v, p)?;
            binary(&v, &p, |a, b| {
                let out = if *negated {
                    arrow_string::like::nlike(a, b)
                } else {
                    arrow_string::like::like(a, b)
                };
                out.map(|o| Arc::new(o) as ArrayRef)
            })
        }
        Node::Matches(value, regex, negated) => eval(value, batch)?.map(|a| {
            let a = text_of(a)?;
            let out: BooleanArray = a
                .iter()
                .map(|s| s.map(|s| regex.is_match(s) != *negated))
                .collect();
            Ok(Arc::new(out) as ArrayRef)
        }),
        Node::Cast(value, to, try_) => cast(eval(value, batch)?, *to, *try_),
        Node::Call(function, args) => call(function, args, batch, t.ty),
    }
}

fn broadcast_bool(one: &BooleanArray, rows: usize) -> BooleanArray {
    if one.is_null(0) {
        BooleanArray::new_null(rows)
    } else {
        BooleanArray::from(vec![one.value(0); rows])
    }
}

fn text_of(a: &ArrayRef) -> Result<StringArray, String> {
    if a.data_type() == &DataType::Null {
        return Ok(StringArray::new_null(a.len()));
    }
    Ok(a.as_string::<i32>().clone())
}

fn arith(op: Arith, l: Col, r: Col, rows: usize) -> Out {
    let (l, r) = unify(l, r)?;
    if l.array().data_type() == &DataType::Null {
        return Ok(l);
    }
    let _ = rows;
    // Division and remainder by zero give null, as in Spark (not an error, not infinity).
    let zero_is_null = |r: Col| -> Out {
        r.map(|a| {
            let is_zero = match a.data_type() {
                DataType::Int64 => {
                    let zero: ArrayRef = Arc::new(Int64Array::from(vec![0]));
                    arrow_ord::cmp::eq(a, &Scalar::new(zero)).map_err(message)?
                }
                // `==`, not Arrow's total order, in which -0.0 is not 0.0.
                _ => a
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|x| x.map(|x| x == 0.0))
                    .collect(),
            };
            arrow_select::nullif::nullif(a.as_ref(), &is_zero).map_err(message)
        })
    };
    let r = if matches!(op, Arith::Div | Arith::Rem) {
        zero_is_null(r)?
    } else {
        r
    };
    binary(&l, &r, |a, b| match op {
        Arith::Add => arrow_arith::numeric::add(a, b),
        Arith::Sub => arrow_arith::numeric::sub(a, b),
        Arith::Mul => arrow_arith::numeric::mul(a, b),
        Arith::Div => arrow_arith::numeric::div(a, b),
        Arith::Rem => arrow_arith::numeric::rem(a, b),
    })
}

fn compare(op: Cmp, l: Col, r: Col, rows: usize) -> Out {
    let (l, r) = unify(l, r)?;
    let (mut lt, rt) = (l.array().data_type().clone(), r.array().data_type().clone());
    let (l, r) = if lt != rt {
        // An integer against a float: the integer is made a float, as Spark, DuckDB and Polars
        // compare them (2^53 + 1 == 2^53 as floats), and so as a `--remote` run computes it.
        let as_float = |c: Col| c.map(|a| arrow_cast::cast(a, &DataType::Float64).map_err(message));
        lt = DataType::Float64;
        (as_float(l)?, as_float(r)?)
    } else {
        (l, r)
    };
    if lt == DataType::Null {
        return Ok(Col::Scalar(Arc::new(BooleanArray::new_null(1))));
    }
    if let DataType::List(_) = lt {
        let (la, ra, scalar) = arrays(l, r, rows)?;
        let equal = arrow_ord::cmp::eq(&la, &ra).map_err(message);
        let out = match equal {
            Ok(out) => out,
            Err(_) => (0..la.len())
                .map(|i| {
                    (la.is_valid(i) && ra.is_valid(i)).then(|| {
                        let a = la.as_list::<i32>().value(i);
                        let b = ra.as_list::<i32>().value(i);
                        a.as_string::<i32>().iter().eq(b.as_string::<i32>().iter())
                    })
                })
                .collect(),
        };
        let out = if op == Cmp::Ne {
            arrow_arith::boolean::not(&out).map_err(message)?
        } else {
            out
        };
        return Ok(wrap(Arc::new(out), scalar));
    }
    // Arrow orders floats totally, -0.0 below 0.0; Spark has them equal (NaN above every number
    // and equal to itself, as in Arrow).
    let (l, r) = if lt == DataType::Float64 {
        (
            l.map(|a| Ok(crate::data::float_keys(a.clone())))?,
            r.map(|a| Ok(crate::data::float_keys(a.clone())))?,
        )
    } else {
        (l, r)
    };
    binary(&l, &r, |a, b| {
        let out = match op {
            Cmp::Eq => arrow_ord::cmp::eq(a, b),
            Cmp::Ne => arrow_ord::cmp::neq(a, b),
            Cmp::Lt => arrow_ord::cmp::lt(a, b),
            Cmp::Le => arrow_ord::cmp::lt_eq(a, b),
            Cmp::Gt => arrow_ord::cmp::gt(a, b),
            Cmp::Ge => arrow_ord::cmp::gt_eq(a, b),
        };
        out.map(|o| Arc::new(o) as ArrayRef)
    })
}

/// `x` rounded to `digits` decimals half away from zero, as Spark's `round` on a double: on the
/// shortest decimal that reads back as `x` (`1.005` is rounded as 1.005, not as the binary
/// 1.00499999999999989...), so `round(1.005, 2)` is 1.01 and a large `x` stays itself.
fn round_half_up(x: f64, digits: i32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    if x == 0.0 {
        return 0.0;
    }
    // Most values are far from a tie: scaled by 10^digits (exact up to 10^15) and more than
    // the product's error away from .5, they round as their shortest decimal does, and
    // `n / 10^digits` is the float nearest that decimal, as parsing it gives.
    if (0..=15).contains(&digits) {
        let scale = 10f64.powi(digits);
        let scaled = x * scale;
        if scaled.abs() < f64::from(1u32 << 30) && (scaled.abs().fract() - 0.5).abs() > 1e-6 {
            return scaled.round() / scale + 0.0;
        }
    }
    round_on_the_shortest_decimal(x, digits)
}

/// [`round_half_up`] on the digits of the shortest decimal that reads back as `x` (not 0).
fn round_on_the_shortest_decimal(x: f64, digits: i32) -> f64 {
    // `d.ddde±E`: the digits without the point, and the place of the first one.
    let shortest = format!("{:e}", x.abs());
    let Some((mantissa, exponent)) = shortest.split_once('e') else {
        return x;
    };
    let Ok(exponent) = exponent.parse::<i64>() else {
        return x;
    };
    let figures: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    // How many figures are kept: those of places 10^exponent down to 10^-digits.
    let kept = exponent + 1 + i64::from(digits);
    if kept >= figures.len() as i64 {
        return x;
    }
    let sign = if x < 0.0 { "-" } else { "" };
    if kept < 0 {
        return 0.0;
    }
    let kept = kept as usize;
    let mut number: Vec<u8> = figures[..kept].to_vec();
    if figures[kept] >= b'5' {
        // Add one at the last kept place, carrying (999 becomes 1000).
        let mut at = number.len();
        loop {
            if at == 0 {
                number.insert(0, b'1');
                break;
            }
            at -= 1;
            if number[at] == b'9' {
                number[at] = b'0';
            } else {
                number[at] += 1;
                break;
            }
        }
    }
    if number.is_empty() {
        return 0.0;
    }
    let place = exponent + 1 - kept as i64;
    let text = format!("{sign}{}e{place}", String::from_utf8_lossy(&number));
    text.parse().unwrap_or(x)
}

fn cast(value: Col, to: ValueType, try_: bool) -> Out {
    value.map(|a| {
        let from = a.data_type().clone();
        let target = to.data_type();
        if from == target {
            return Ok(a.clone());
        }
        let fail = |what: String| -> String {
            format!("{what}; `try_cast` gives null instead of failing")
        };
        match (ValueType::of(&from), to) {
            (Some(ValueType::Integer), ValueType::Timestamp) => {
                let out: TimestampMicrosecondArray = a
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| {
                        let micros = v.map(|s| {
                            s.checked_mul(1_000_000)
                                .filter(|&m| crate::data::timestamp_in_range(m))
                        });
                        (v, micros)
                    })
                    .map(|(v, micros)| match micros {
                        Some(None) if !try_ => Err(fail(format!(
                            "{} seconds is out of the timestamps' range (years 1 to 9999)",
                            v.unwrap_or(0)
                        ))),
                        Some(None) => Ok(None),
                        Some(Some(m)) => Ok(Some(m)),
                        None => Ok(None),
                    })
                    .collect::<Result<_, String>>()?;
                Ok(Arc::new(out.with_timezone("UTC")) as ArrayRef)
            }
            (Some(ValueType::Float), ValueType::Timestamp) => {
                let out: TimestampMicrosecondArray = a
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| match v {
                        None => Ok(None),
                        Some(s) => {
                            let m = s * 1e6;
                            match (m.is_finite() && m.abs() < 9.2e18)
                                // Truncated toward zero, as Spark's cast does.
                                .then_some(m as i64)
                                .filter(|&m| crate::data::timestamp_in_range(m))
                            {
                                Some(m) => Ok(Some(m)),
                                None if try_ => Ok(None),
                                None => Err(fail(format!(
                                    "{} seconds is out of the timestamps' range (years 1 to 9999)",
                                    crate::data::float_text(s)
                                ))),
                            }
                        }
                    })
                    .collect::<Result<_, String>>()?;
                Ok(Arc::new(out.with_timezone("UTC")) as ArrayRef)
            }
            (Some(ValueType::Timestamp), ValueType::Integer) => {
                let out: Int64Array = a
                    .as_primitive::<TimestampMicrosecondType>()
                    .iter()
                    .map(|v| v.map(|m| m.div_euclid(1_000_000)))
                    .collect();
                Ok(Arc::new(out) as ArrayRef)
            }
            (Some(ValueType::Timestamp), ValueType::Float) => {
                let out: Float64Array = a
                    .as_primitive::<TimestampMicrosecondType>()
                    .iter()
                    .map(|v| v.map(|m| m as f64 / 1e6))
                    .collect();
                Ok(Arc::new(out) as ArrayRef)
            }
            (Some(ValueType::Timestamp), ValueType::Text) => {
                let out: StringArray = a
                    .as_primitive::<TimestampMicrosecondType>()
                    .iter()
                    .map(|v| v.map(crate::data::format_timestamp))
                    .collect();
                Ok(Arc::new(out) as ArrayRef)
            }
            (Some(ValueType::Text), ValueType::Timestamp) => {
                let out: TimestampMicrosecondArray = a
                    .as_string::<i32>()
                    .iter()
                    .map(|v| match v {
                        None => Ok(None),
                        Some(s) => match crate::data::parse_timestamp_text(s) {
                            Some(m) => Ok(Some(m)),
                            None if try_ => Ok(None),
                            None => Err(fail(format!(
                                "cannot cast \"{}\" to a timestamp",
                                crate::error::escape_controls(s)
                            ))),
                        },
                    })
                    .collect::<Result<_, String>>()?;
                Ok(Arc::new(out.with_timezone("UTC")) as ArrayRef)
            }
            (Some(ValueType::Text), ValueType::Float) => {
                // As Spark reads a double (Java's grammar: `0x1p3`, `1.5d`), not as Arrow's
                // parser does.
                let out: Float64Array = a
                    .as_string::<i32>()
                    .iter()
                    .map(|v| match v {
                        None => Ok(None),
                        Some(s) => match super::java_double::spark_double(s) {
                            Some(x) => Ok(Some(x)),
                            None if try_ => Ok(None),
                            None => Err(fail(format!(
                                "cannot cast \"{}\" to float",
                                crate::error::escape_controls(&crate::error::shortened(s))
                            ))),
                        },
                    })
                    .collect::<Result<_, String>>()?;
                Ok(Arc::new(out) as ArrayRef)
            }
            (Some(ValueType::Text), ValueType::Bool) => {
                // Spark's spellings (trimmed, any case), not Arrow's wider set ("on", "tr").
                let out: BooleanArray = a
                    .as_string::<i32>()
                    .iter()
                    .map(|v| match v {
                        None => Ok(None),
                        Some(s) => match spark_bool(s) {
                            Some(b) => Ok(Some(b)),
                            None if try_ => Ok(None),
                            None => Err(fail(format!(
                                "cannot cast \"{}\" to bool (true, t, yes, y, 1 or false, f, no, n, 0, in any case)",
                                crate::error::escape_controls(&crate::error::shortened(s))
                            ))),
                        },
                    })
                    .collect::<Result<_, String>>()?;
                Ok(Arc::new(out) as ArrayRef)
            }
            _ => {
                // Cast as `try_cast` does (a value that does not convert becomes null), then
                // tell the first such value as it is written: Arrow's own error names its
                // types and may show the value changed (lower-cased).
                let options = arrow_cast::CastOptions {
                    safe: true,
                    ..Default::default()
                };
                let trimmed;
                let a = match (ValueType::of(&from), to) {
                    (Some(ValueType::Text), ValueType::Integer) => {
                        trimmed = spark_trimmed(a);
                        &trimmed
                    }
                    _ => a,
                };
                let cast = arrow_cast::cast_with_options(a, &target, &options)
                    .map_err(|e| fail(crate::error::escape_controls(&message(e)).into_owned()))?;
                // A null literal (Arrow's Null type) has no validity buffer: every row is
                // null already, and casts to null as in Spark.
                if !try_ && from != DataType::Null && cast.null_count() > a.null_count() {
                    if let Some(row) = (0..a.len()).find(|&r| a.is_valid(r) && cast.is_null(r)) {
                        let value = crate::data::cell(a.as_ref(), row).to_text();
                        let shown = match ValueType::of(&from) {
                            Some(ValueType::Text) => format!(
                                "\"{}\"",
                                crate::error::escape_controls(&crate::error::shortened(&value))
                            ),
                            _ => crate::error::escape_controls(&value).into_owned(),
                        };
                        return Err(fail(format!("cannot cast {shown} to {}", to.name())));
                    }
                }
                Ok(cast)
            }
        }
    })
}

/// What Spark's casts of a text trim around it: spaces and ASCII control characters, not
/// Unicode's other spaces (U+00A0 stays, and the cast fails).
pub(super) fn spark_space(c: char) -> bool {
    c <= ' '
}

/// `texts` with what Spark's casts trim taken off each value (the same array when none has
/// any).
fn spark_trimmed(texts: &ArrayRef) -> ArrayRef {
    let strings = texts.as_string::<i32>();
    let untrimmed = |s: &str| s.starts_with(spark_space) || s.ends_with(spark_space);
    if !strings.iter().flatten().any(untrimmed) {
        return texts.clone();
    }
    Arc::new(
        strings
            .iter()
            .map(|v| v.map(|s| s.trim_matches(spark_space)))
            .collect::<StringArray>(),
    )
}

/// A text as Spark's cast reads a bool: `true`, `t`, `yes`, `y`, `1` or `false`, `f`, `no`,
/// `n`, `0`, in any case, with whitespace around it trimmed.
fn spark_bool(text: &str) -> Option<bool> {
    let word = text.trim_matches(spark_space);
    const TRUE: [&str; 5] = ["true", "t", "yes", "y", "1"];
    const FALSE: [&str; 5] = ["false", "f", "no", "n", "0"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(word)) {
        Some(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(word)) {
        Some(false)
    } else {
        None
    }
}

fn string_map(a: &ArrayRef, f: impl Fn(&str) -> String) -> Result<ArrayRef, String> {
    let out: StringArray = text_of(a)?.iter().map(|s| s.map(&f)).collect();
    Ok(Arc::new(out))
}

/// Every argument as an array of one length (a bare null as `target`): one row when all are
/// scalars (the result then is one too, which the flag says), else the batch's rows.
fn arrays_of(
    args: &[Typed],
    batch: &RecordBatch,
    target: &DataType,
) -> Result<(Vec<ArrayRef>, bool), String> {
    let values = args
        .iter()
        .map(|a| eval(a, batch))
        .collect::<Result<Vec<_>, _>>()?;
    let scalar = values.iter().all(Col::is_scalar);
    let n = if scalar { 1 } else { batch.num_rows() };
    let arrays = values
        .into_iter()
        .map(|value| value.into_array(n, target))
        .collect::<Result<_, _>>()?;
    Ok((arrays, scalar))
}

fn call(function: &Function, args: &[Typed], batch: &RecordBatch, ty: Type) -> Out {
    let rows = batch.num_rows();
    let arg = |i: usize| eval(&args[i], batch);
    match function {
        Function::Length => arg(0)?.map(|a| {
            let out: Int64Array = match a.data_type() {
                DataType::List(_) => {
                    let list = a.as_list::<i32>();
                    (0..list.len())
                        .map(|i| list.is_valid(i).then(|| list.value_length(i) as i64))
                        .collect()
                }
                _ => text_of(a)?
                    .iter()
                    .map(|s| s.map(|s| s.chars().count() as i64))
                    .collect(),
            };
            Ok(Arc::new(out) as ArrayRef)
        }),
        Function::Lower => arg(0)?.map(|a| string_map(a, str::to_lowercase)),
        Function::Upper => arg(0)?.map(|a| string_map(a, str::to_uppercase)),
        Function::Trim => arg(0)?.map(|a| string_map(a, |s| s.trim().to_owned())),
        Function::Contains | Function::StartsWith | Function::EndsWith => {
            let (l, r, scalar) = arrays(arg(0)?, arg(1)?, rows)?;
            let (l, r) = (text_of(&l)?, text_of(&r)?);
            let out: BooleanArray = l
                .iter()
                .zip(r.iter())
                .map(|(a, b)| {
                    let (a, b) = (a?, b?);
                    Some(match function {
                        Function::Contains => a.contains(b),
                        Function::StartsWith => a.starts_with(b),
                        _ => a.ends_with(b),
                    })
                })
                .collect();
            Ok(wrap(Arc::new(out), scalar))
        }
        Function::Substr(start, len) => {
            arg(0)?.map(|a| string_map(a, |s| substring(s, *start, *len)))
        }
        Function::Split(separator) => arg(0)?.map(|a| {
            let mut builder =
                arrow_array::builder::ListBuilder::new(arrow_array::builder::StringBuilder::new());
            for value in text_of(a)?.iter() {
                match value {
                    Some(s) if separator.is_empty() => {
                        // Into characters; empty text is one empty piece, as in Spark (and as
                        // with any other separator).
                        if s.is_empty() {
                            builder.values().append_value("");
                        }
                        let mut chars = [0u8; 4];
                        for c in s.chars() {
                            builder.values().append_value(c.encode_utf8(&mut chars));
                        }
                        builder.append(true);
                    }
                    Some(s) => {
                        for piece in s.split(separator.as_str()) {
                            builder.values().append_value(piece);
                        }
                        builder.append(true);
                    }
                    None => builder.append(false),
                }
            }
            Ok(Arc::new(builder.finish()) as ArrayRef)
        }),
        Function::RegexExtract(regex, group) => arg(0)?.map(|a| {
            // As Spark's `regexp_extract`: the empty string when nothing matches.
            string_map(a, |s| {
                regex
                    .captures(s)
                    .and_then(|c| c.get(*group))
                    .map_or(String::new(), |m| m.as_str().to_owned())
            })
        }),
        Function::Concat => {
            let (values, scalar) = arrays_of(args, batch, &DataType::Utf8)?;
            let mut out: Option<StringArray> = None;
            for next in values {
                let next = text_of(&next)?;
                out = Some(match out {
                    None => next,
                    Some(so_far) => {
                        arrow_string::concat_elements::concat_elements_utf8(&so_far, &next)
                            .map_err(message)?
                    }
                });
            }
            let out = out.ok_or("`concat` needs an argument")?;
            Ok(wrap(Arc::new(out), scalar))
        }
        Function::Coalesce => {
            let target = match ty {
                Type::Of(t) => t.data_type(),
                Type::Null => DataType::Null,
            };
            if args.iter().any(may_fail) {
                // Each argument only where those before it are null: `coalesce(i, i * 4)`
                // must not overflow on a row whose `i` is there.
                let mut out: Option<ArrayRef> = None;
                for arg in args {
                    out = Some(match out {
                        None => eval(arg, batch)?.into_array(rows, &target)?,
                        Some(so_far) => {
                            let present = arrow_arith::boolean::is_not_null(so_far.as_ref())
                                .map_err(message)?;
                            let missing = arrow_arith::boolean::not(&present).map_err(message)?;
                            let next =
                                eval_where(arg, batch, &missing)?.into_array(rows, &target)?;
                            arrow_select::zip::zip(&present, &so_far, &next).map_err(message)?
                        }
                    });
                }
                return Ok(Col::Array(
                    out.unwrap_or_else(|| arrow_array::new_null_array(&target, rows)),
                ));
            }
            let (values, scalar) = arrays_of(args, batch, &target)?;
            let mut out: Option<ArrayRef> = None;
            for next in values {
                out = Some(match out {
                    None => next,
                    Some(so_far) => {
                        let present =
                            arrow_arith::boolean::is_not_null(so_far.as_ref()).map_err(message)?;
                        arrow_select::zip::zip(&present, &so_far, &next).map_err(message)?
                    }
                });
            }
            Ok(wrap(
                out.unwrap_or_else(|| {
                    arrow_array::new_null_array(&target, if scalar { 1 } else { rows })
                }),
                scalar,
            ))
        }
        Function::If => {
            let target = match ty {
                Type::Of(t) => t.data_type(),
                Type::Null => DataType::Null,
            };
            let condition = arg(0)?;
            if may_fail(&args[1]) || may_fail(&args[2]) {
                // Each branch only on the rows that take it, as in Spark: `if(s matches
                // '^\d+$', cast(s as integer), null)` must not fail on a row of letters.
                let condition = condition.into_array(rows, &DataType::Boolean)?;
                let chosen = nulls_false(condition.as_boolean());
                let other = arrow_arith::boolean::not(&chosen).map_err(message)?;
                let then = eval_where(&args[1], batch, &chosen)?.into_array(rows, &target)?;
                let otherwise = eval_where(&args[2], batch, &other)?.into_array(rows, &target)?;
                let out = arrow_select::zip::zip(&chosen, &then, &otherwise).map_err(message)?;
                return Ok(Col::Array(out));
            }
            let (then, otherwise) = (arg(1)?, arg(2)?);
            let scalar = condition.is_scalar() && then.is_scalar() && otherwise.is_scalar();
            let n = if scalar { 1 } else { rows };
            let condition = condition.into_array(n, &DataType::Boolean)?;
            // A null condition is not true: the `else` value, as in Spark.
            let condition = match condition.as_boolean() {
                c if c.null_count() == 0 => c.clone(),
                c => arrow_select::filter::prep_null_mask_filter(c),
            };
            let (then, otherwise) = (
                then.into_array(n, &target)?,
                otherwise.into_array(n, &target)?,
            );
            let chosen = arrow_select::zip::zip(&condition, &then, &otherwise).map_err(message)?;
            Ok(wrap(chosen, scalar))
        }
        Function::Abs => arg(0)?.map(|a| match a.data_type() {
            DataType::Int64 => {
                let out = a
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| match v {
                        None => Ok(None),
                        Some(v) => v
                            .checked_abs()
                            .map(Some)
                            .ok_or_else(|| format!("integer overflow (abs({v}))")),
                    })
                    .collect::<Result<Int64Array, String>>()?;
                Ok(Arc::new(out) as ArrayRef)
            }
            DataType::Float64 => {
                let out: Float64Array = a.as_primitive::<Float64Type>().unary(f64::abs);
                Ok(Arc::new(out) as ArrayRef)
            }
            _ => Ok(a.clone()),
        }),
        Function::Round(digits) => arg(0)?.map(|a| match a.data_type() {
            DataType::Float64 => {
                let out: Float64Array = a
                    .as_primitive::<Float64Type>()
                    .unary(|x| round_half_up(x, *digits));
                Ok(Arc::new(out) as ArrayRef)
            }
            DataType::Int64 if *digits < 0 => {
                let unit = 10i64.pow(digits.unsigned_abs());
                let out = a
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| match v {
                        None => Ok(None),
                        Some(v) => {
                            let down = v - v % unit;
                            let rest = (v % unit).abs();
                            let rounded = if rest * 2 >= unit {
                                down.checked_add(if v < 0 { -unit } else { unit })
                            } else {
                                Some(down)
                            };
                            rounded
                                .map(Some)
                                .ok_or_else(|| format!("integer overflow (round({v}, {digits}))"))
                        }
                    })
                    .collect::<Result<Int64Array, String>>()?;
                Ok(Arc::new(out) as ArrayRef)
            }
            _ => Ok(a.clone()),
        }),
        Function::DateTrunc(unit) => arg(0)?.map(|a| {
            if a.data_type() == &DataType::Null {
                return Ok(arrow_array::new_null_array(
                    &crate::data::timestamp_type(),
                    a.len(),
                ));
            }
            let out: TimestampMicrosecondArray = a
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .map(|v| v.and_then(|m| truncate(m, *unit)))
                .collect();
            Ok(Arc::new(out.with_timezone("UTC")) as ArrayRef)
        }),
        Function::Now => {
            let now = super::query_time();
            Ok(Col::Scalar(Arc::new(
                TimestampMicrosecondArray::from(vec![now]).with_timezone("UTC"),
            )))
        }
    }
}

/// Spark's `substring(s, pos, len)`: 1-based; a negative `pos` counts from the end; 0 is 1.
pub(super) fn substring(s: &str, pos: i64, len: Option<i64>) -> String {
    let chars = s.chars().count() as i64;
    let start = match pos {
        p if p > 0 => p - 1,
        p if p < 0 => chars + p,
        _ => 0,
    };
    let end = match len {
        Some(len) => start.saturating_add(len),
        None => i64::MAX,
    };
    let start = start.max(0);
    if start >= end {
        return String::new();
    }
    s.chars()
        .skip(start as usize)
        .take((end - start).min(chars) as usize)
        .collect()
}

/// `micros` cut down to the start of its `unit` (UTC; weeks start on Monday).
fn truncate(micros: i64, unit: TimeUnit) -> Option<i64> {
    use chrono::{Datelike, Timelike};
    let t = chrono::DateTime::from_timestamp_micros(micros)?.naive_utc();
    let date = t.date();
    let day = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0);
    let cut = match unit {
        TimeUnit::Year => day(date.with_month(1)?.with_day(1)?)?,
        TimeUnit::Quarter => day(date.with_day(1)?.with_month((date.month0() / 3) * 3 + 1)?)?,
        TimeUnit::Month => day(date.with_day(1)?)?,
        TimeUnit::Week => {
            day(date - chrono::Days::new(date.weekday().num_days_from_monday() as u64))?
        }
        TimeUnit::Day => day(date)?,
        TimeUnit::Hour => date.and_hms_opt(t.hour(), 0, 0)?,
        TimeUnit::Minute => date.and_hms_opt(t.hour(), t.minute(), 0)?,
        TimeUnit::Second => date.and_hms_opt(t.hour(), t.minute(), t.second())?,
        TimeUnit::Millisecond => return Some(micros - micros.rem_euclid(1_000)),
        TimeUnit::Microsecond => return Some(micros),
    };
    Some(cut.and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::round_half_up as round;

    #[test]
    fn milliseconds_are_truncated_down_and_microseconds_kept() {
        use super::{truncate, TimeUnit};
        assert_eq!(truncate(1_500_123, TimeUnit::Millisecond), Some(1_500_000));
        assert_eq!(truncate(-1, TimeUnit::Millisecond), Some(-1_000));
        assert_eq!(truncate(-1, TimeUnit::Microsecond), Some(-1));
    }
    use super::round_on_the_shortest_decimal as slow;

    #[test]
    fn rounding_is_half_up_on_the_shortest_decimal_as_in_spark() {
        for (x, digits, rounded) in [
            (1.005, 2, 1.01),
            (0.285, 2, 0.29),
            (5.015, 2, 5.02),
            (2.675, 2, 2.68),
            (-2.5, 0, -3.0),
            (2.4, 0, 2.0),
            (9.995, 2, 10.0),
            (0.0004, 3, 0.0),
            (0.0005, 3, 0.001),
            (1234.5, -2, 1200.0),
            (1250.0, -2, 1300.0),
            (49.0, -2, 0.0),
            (1e300, 10, 1e300),
            (1.7e308, 2, 1.7e308),
            (-1e300, 9, -1e300),
            (5e-324, 2, 0.0),
            (123.456, 18, 123.456),
        ] {
            assert_eq!(round(x, digits), rounded, "round({x}, {digits})");
        }
        assert!(round(f64::NAN, 2).is_nan());
        assert!(round(-0.0, 2).is_sign_positive() && round(-0.0004, 3).is_sign_positive());
        // The fast path and the decimal one agree wherever both apply.
        for i in -20_000..20_000 {
            let x = f64::from(i) * 0.001_7;
            for digits in 0..4 {
                assert_eq!(round(x, digits), slow(x, digits), "round({x}, {digits})");
            }
        }
        assert_eq!(round(f64::INFINITY, 2), f64::INFINITY);
    }
}
