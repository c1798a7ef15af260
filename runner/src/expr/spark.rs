//! Expressions as Spark columns, for running a pipeline on Spark (`crate::spark`), with
//! runner's semantics kept: `/` divides as floats in both; division and remainder by zero give null (Spark's ANSI mode would
//! fail), `!=` is `not(==)`, `in` and the logic operators are SQL's three-valued logic in both.
//! What has no exact Spark twin (regular expressions: Rust's syntax is not Java's; `trim`'s
//! Unicode whitespace; timestamps' units) is refused with the reason, never approximated.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::Array;
use arrow_schema::DataType;

use super::check::{Arith, Cmp, Function, Node, Typed};
use super::Expr;
use crate::spark::frame::{self as f, call, Column};

impl Expr {
    /// The expression as a Spark column over columns named `columns` (by input index).
    pub fn to_spark(&self, columns: &[String]) -> Result<Column, String> {
        spark(&self.root, columns).map_err(|e| format!("`{}`: {e}", self.source))
    }
}

fn spark(t: &Typed, columns: &[String]) -> Result<Column, String> {
    let go = |t: &Typed| spark(t, columns);
    Ok(match &t.node {
        Node::Column(index) => f::col(
            columns
                .get(*index)
                .ok_or_else(|| format!("no column #{index}"))?,
        ),
        Node::Literal(array) => literal(array.as_ref())?,
        Node::Neg(a) => call("negative", vec![go(a)?]),
        Node::Not(a) => call("not", vec![go(a)?]),
        Node::Arith(op, a, b) => {
            let (a, b) = (go(a)?, go(b)?);
            let zero = || match t.ty {
                super::check::Type::Of(crate::data::ValueType::Float) => f::lit_f64(0.0),
                _ => f::lit_i64(0),
            };
            match op {
                Arith::Add => call("+", vec![a, b]),
                Arith::Sub => call("-", vec![a, b]),
                Arith::Mul => call("*", vec![a, b]),
                // `/` divides as floats in both; by zero: null here, an error in Spark's ANSI
                // mode, hence `nullif`.
                Arith::Div => call("/", vec![a, call("nullif", vec![b, zero()])]),
                Arith::Rem => call("%", vec![a, call("nullif", vec![b, zero()])]),
            }
        }
        Node::Compare(op, a, b) => {
            let (a, b) = (go(a)?, go(b)?);
            match op {
                Cmp::Eq => call("==", vec![a, b]),
                Cmp::Ne => call("not", vec![call("==", vec![a, b])]),
                Cmp::Lt => call("<", vec![a, b]),
                Cmp::Le => call("<=", vec![a, b]),
                Cmp::Gt => call(">", vec![a, b]),
                Cmp::Ge => call(">=", vec![a, b]),
            }
        }
        Node::And(a, b) => call("and", vec![go(a)?, go(b)?]),
        Node::Or(a, b) => call("or", vec![go(a)?, go(b)?]),
        Node::In(value, items, negated) => {
            let items = items.iter().map(go).collect::<Result<Vec<_>, _>>()?;
            let found = go(value)?.is_in(items);
            if *negated {
                call("not", vec![found])
            } else {
                found
            }
        }
        Node::IsNull(a, negated) => {
            call(if *negated { "isnotnull" } else { "isnull" }, vec![go(a)?])
        }
        Node::Like(a, pattern, negated) => {
            let like = call("like", vec![go(a)?, f::lit_str(pattern)]);
            if *negated {
                call("not", vec![like])
            } else {
                like
            }
        }
        Node::Matches(a, regex, negated) => {
            // Java reads a pattern differently: it goes as its plain meaning, spelled out.
            let pattern = super::java_regex::java_pattern(regex.as_str())
                .map_err(|why| format!("`matches`: {why}; run it with --engine local"))?;
            let found = call("rlike", vec![go(a)?, f::lit_str(&pattern)]);
            if *negated {
                call("not", vec![found])
            } else {
                found
            }
        }
        // The checker's own widening of an integer operand to a float: exact in both.
        Node::Cast(a, crate::data::ValueType::Float, false)
            if matches!(
                a.ty,
                super::check::Type::Of(crate::data::ValueType::Integer) | super::check::Type::Null
            ) =>
        {
            call("double", vec![go(a)?])
        }
        Node::Cast(value, to, try_) => {
            use crate::data::ValueType as V;
            let from = match value.ty {
                super::check::Type::Of(from) => Some(from),
                super::check::Type::Null => None,
            };
            // The casts whose every value converts as runner's do (checked against Spark):
            // numbers, bools and texts, but not a float to text (Java writes `1.0E20`, runner
            // `1e20`) nor timestamps (Spark's depend on the session's time zone).
            let exact = matches!(
                (from, to),
                (
                    Some(V::Integer | V::Bool | V::Text),
                    V::Integer | V::Float | V::Bool | V::Text
                ) | (Some(V::Float), V::Integer | V::Float | V::Bool)
            );
            let (Some(type_name), true) = (spark_type(super::check::Type::Of(*to)), exact) else {
                let name = if *try_ { "try_cast" } else { "cast" };
                return Err(format!(
                    "`{name}` from {} to {} has no Spark translation yet; run it with --engine local",
                    value.ty.label(),
                    to.name()
                ));
            };
            let mut value = go(value)?;
            if (from, to) == (Some(V::Float), &V::Integer) {
                // 2^63 is past the integers here; Spark's check lets it by (as `i64::MAX`).
                // As NaN it fails there as here (`try_cast`: null).
                let past = call("==", vec![value.clone(), f::lit_f64(i64::MAX as f64)]);
                value = call("if", vec![past, f::lit_f64(f64::NAN), value]);
            }
            if *try_ {
                value.try_cast(type_name)
            } else {
                value.cast(type_name)
            }
        }
        Node::Call(function, typed) => {
            // A `null` among `coalesce`'s or `if`'s values is null of the type the checker
            // gave them all.
            let values_type = match function {
                Function::Coalesce | Function::If => spark_type(t.ty),
                _ => None,
            };
            let mut args = typed
                .iter()
                .map(|arg| match (&arg.node, values_type) {
                    (Node::Literal(value), Some(ty))
                        if value.data_type() == &DataType::Null || value.is_null(0) =>
                    {
                        Ok(f::lit_null_str().cast(ty))
                    }
                    _ => go(arg),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let name = match function {
                // A list's length is its number of items.
                Function::Length
                    if typed.first().map(|a| a.ty)
                        == Some(super::check::Type::Of(crate::data::ValueType::TextList)) =>
                {
                    "array_size"
                }
                Function::Length => "char_length",
                Function::Lower => "lower",
                Function::Upper => "upper",
                Function::Contains => "contains",
                Function::StartsWith => "startswith",
                Function::EndsWith => "endswith",
                Function::Coalesce => "coalesce",
                Function::Concat => "concat",
                Function::Abs => "abs",
                // Spark's `if`: a null condition gives the `else` value, as here.
                Function::If => "if",
                Function::Substr(start, length) => {
                    // Spark's `substring` is runner's (1-based; a negative start counts from
                    // the end; 0 is 1), over 32-bit positions.
                    let int = |n: i64, what: &str| {
                        i32::try_from(n).map(f::lit_i32).map_err(|_| {
                            format!("`substr`'s {what} {n} is past Spark's 32-bit positions; run it with --engine local")
                        })
                    };
                    args.push(int(*start, "start")?);
                    if let Some(length) = length {
                        args.push(int(*length, "length")?);
                    }
                    "substring"
                }
                Function::Split(separator) => {
                    // Spark reads the separator as a regular expression: quoted, it is taken
                    // literally. An empty one splits into characters in both, as written.
                    let separator = if separator.is_empty() {
                        String::new()
                    } else {
                        crate::spark::frame::java_quote(separator)
                    };
                    args.extend([f::lit_str(&separator), f::lit_i32(-1)]);
                    "split"
                }
                Function::Trim => {
                    // Spark's `trim` strips spaces only; runner's, Unicode's White_Space,
                    // which Java's regular expressions name.
                    args.extend([
                        f::lit_str(r"\A\p{IsWhite_Space}+|\p{IsWhite_Space}+\z"),
                        f::lit_str(""),
                    ]);
                    "regexp_replace"
                }
                Function::Round(digits) => {
                    // Both round half away from zero on the value's shortest decimal (Spark:
                    // `BigDecimal(Double.toString(x))`, HALF_UP).
                    args.push(f::lit_i32(*digits));
                    "round"
                }
                Function::RegexExtract(regex, group) => {
                    // The pattern's plain meaning, its groups numbered as written; `""` where
                    // nothing matches (or the group took no part) in both.
                    let pattern = super::java_regex::java_pattern_with_groups(regex.as_str())
                        .map_err(|why| {
                            format!("`regex_extract`: {why}; run it with --engine local")
                        })?;
                    let group = i32::try_from(*group).map_err(|_| "too many groups".to_owned())?;
                    args.extend([f::lit_str(&pattern), f::lit_i32(group)]);
                    "regexp_extract"
                }
                other => {
                    let name = match other {
                        Function::DateTrunc(_) => "date_trunc",
                        _ => "now",
                    };
                    return Err(format!(
                        "`{name}` has no Spark translation yet; run it with --engine local"
                    ));
                }
            };
            let called = call(name, args);
            if matches!(function, Function::Length) {
                // Spark's `char_length` and `array_size` are 32-bit integers: arithmetic on them would overflow
                // (an error in ANSI mode) where runner's 64-bit integers do not.
                called.cast("bigint")
            } else {
                called
            }
        }
    })
}

/// Spark's name for a runner type, for casts.
fn spark_type(ty: super::check::Type) -> Option<&'static str> {
    use crate::data::ValueType as V;
    match ty {
        super::check::Type::Of(V::Text) => Some("string"),
        super::check::Type::Of(V::Integer) => Some("bigint"),
        super::check::Type::Of(V::Float) => Some("double"),
        super::check::Type::Of(V::Bool) => Some("boolean"),
        super::check::Type::Of(V::Timestamp) => Some("timestamp"),
        super::check::Type::Of(V::TextList) => Some("array<string>"),
        super::check::Type::Null => None,
    }
}

fn literal(array: &dyn Array) -> Result<Column, String> {
    if array.is_null(0) {
        return Ok(f::lit_null_str());
    }
    Ok(match array.data_type() {
        DataType::Int64 => f::lit_i64(array.as_primitive::<Int64Type>().value(0)),
        DataType::Float64 => f::lit_f64(array.as_primitive::<Float64Type>().value(0)),
        DataType::Utf8 => f::lit_str(array.as_string::<i32>().value(0)),
        DataType::Boolean => f::lit_bool(array.as_boolean().value(0)),
        other => {
            return Err(format!(
                "a literal of {} has no Spark translation yet; run it with --engine local",
                crate::data::type_label(other)
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use arrow_schema::{Field, Schema};

    use super::*;

    fn translated(source: &str) -> Result<String, String> {
        let schema = Schema::new(vec![
            Field::new("word", DataType::Utf8, true),
            Field::new("count", DataType::Int64, false),
        ]);
        let expr = super::super::compile_expr(source, &schema)?;
        expr.to_spark(&["word".into(), "count".into()])
            .map(|c| c.text().to_owned())
    }

    #[test]
    fn conditions_translate_with_runner_semantics() {
        assert_eq!(
            translated("count >= 60 and word != \"thou\"").unwrap(),
            "((col(\"count\") >= 60) and ~(col(\"word\") == \"thou\"))"
        );
        let divided = translated("count / 2 > 3").unwrap();
        assert!(
            divided.starts_with("((double(col(\"count\")) / nullif(")
                && divided.contains(", 0.0))"),
            "{divided}"
        );
        assert_eq!(
            translated("word not in [\"a\", \"b\"]").unwrap(),
            "~col(\"word\").isin(\"a\", \"b\")"
        );
        assert_eq!(
            translated("length(word) between 2 and 4").unwrap(),
            "((char_length(col(\"word\")).cast(\"bigint\") >= 2) and (char_length(col(\"word\")).cast(\"bigint\") <= 4))"
        );
        assert_eq!(
            translated("concat(word, \"!\") == \"a!\"").unwrap(),
            "(concat(col(\"word\"), \"!\") == \"a!\")"
        );
        assert_eq!(
            translated("word || \"!\" || word == \"a!a\"").unwrap(),
            "(concat(col(\"word\"), \"!\", col(\"word\")) == \"a!a\")"
        );
    }

    #[test]
    fn text_functions_translate_to_their_spark_twins() {
        assert_eq!(
            translated("if(count > 2, word, null)").unwrap(),
            "if((col(\"count\") > 2), col(\"word\"), lit(None).cast(\"string\"))"
        );
        assert_eq!(
            translated("coalesce(null, count, 1.5)").unwrap(),
            "coalesce(lit(None).cast(\"double\"), double(col(\"count\")), 1.5)"
        );
        assert_eq!(
            translated("substr(word, -3, 2)").unwrap(),
            "substring(col(\"word\"), -3, 2)"
        );
        assert_eq!(
            translated("substr(word, 2)").unwrap(),
            "substring(col(\"word\"), 2)"
        );
        // The separator is quoted (Spark reads a regular expression); an empty one is not.
        assert_eq!(
            translated("split(word, '.')").unwrap(),
            "split(col(\"word\"), \"\\\\Q.\\\\E\", -1)"
        );
        assert_eq!(
            translated("length(split(word, ''))").unwrap(),
            "array_size(split(col(\"word\"), \"\", -1)).cast(\"bigint\")"
        );
        assert!(translated("trim(word)")
            .unwrap()
            .starts_with("regexp_replace(col(\"word\"), \"\\\\A\\\\p{IsWhite_Space}+|"));
        assert_eq!(
            translated("cast(count as text) || cast(try_cast(word as integer) as text)").unwrap(),
            "concat(col(\"count\").cast(\"string\"), col(\"word\").try_cast(\"bigint\").cast(\"string\"))"
        );
        assert_eq!(
            translated("cast(count / 2 as integer)").unwrap(),
            "if(((double(col(\"count\")) / nullif(double(2), 0.0)) == 9.223372036854776e18), NaN, (double(col(\"count\")) / nullif(double(2), 0.0))).cast(\"bigint\")"
        );
        assert_eq!(
            translated("round(count, -1)").unwrap(),
            "round(col(\"count\"), -1)"
        );
    }

    #[test]
    fn what_spark_reads_differently_is_refused() {
        let error = translated("word matches \"\\\\ba\"").unwrap_err();
        assert!(error.contains("reads differently in Java"), "{error}");
        assert_eq!(
            translated("word not matches \"^a\"").unwrap(),
            "~rlike(col(\"word\"), \"(?:\\\\A(?:\\\\x{61}))\")"
        );
        let error = translated("substr(word, 3000000000)").unwrap_err();
        assert!(error.contains("32-bit"), "{error}");
        let error = translated("regex_extract(word, '(a|b)*c', 1)").unwrap_err();
        assert!(error.contains("a group inside a repetition"), "{error}");
        assert_eq!(
            translated("regex_extract(word, 'a(.)', 1)").unwrap(),
            "regexp_extract(col(\"word\"), \"(?:(?:\\\\x{61})([\\\\x{0}-\\\\x{9}\\\\x{B}-\\\\x{10FFFF}]))\", 1)"
        );
        let error = translated("cast(count / 2 as text)").unwrap_err();
        assert!(
            error.contains("`cast` from a float to text has no Spark translation"),
            "{error}"
        );
        let error = translated("now() is null").unwrap_err();
        assert!(error.contains("`now` has no Spark translation"), "{error}");
    }
}
