//! Types an `Ast` against a schema: every column found, every operand of a type its operator
//! takes, every literal pattern compiled. What comes out (`Typed`) can only fail at run time on
//! values (an integer overflow, a failed cast), never on its shape.

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow_schema::Schema;
use std::sync::Arc;

use super::parse::{at_column, Ast, BinOp, Kind, PIPES};
use crate::data::{closest, column_index, type_label, ValueType};

/// The type of an expression: one of the model's, or `Null` for a bare `null` (which takes
/// the type of what it meets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Type {
    Null,
    Of(ValueType),
}

use ValueType as V;

impl Type {
    pub(super) fn label(self) -> String {
        match self {
            Type::Null => "null".into(),
            Type::Of(V::Text) => "text".into(),
            Type::Of(V::Integer) => "an integer".into(),
            Type::Of(V::Float) => "a float".into(),
            Type::Of(V::Bool) => "a condition (bool)".into(),
            Type::Of(V::Timestamp) => "a timestamp".into(),
            Type::Of(V::TextList) => "a list of text".into(),
        }
    }

    fn numeric(self) -> bool {
        matches!(self, Type::Of(V::Integer | V::Float) | Type::Null)
    }

    fn is(self, t: ValueType) -> bool {
        self == Type::Of(t) || self == Type::Null
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Units `date_trunc` cuts timestamps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimeUnit {
    Year,
    Quarter,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
    Microsecond,
}

#[derive(Debug, Clone)]
pub(super) enum Function {
    Length,
    Lower,
    Upper,
    Trim,
    Contains,
    StartsWith,
    EndsWith,
    /// 1-based start and optional length, as Spark's `substring`.
    Substr(i64, Option<i64>),
    Split(String),
    RegexExtract(regex::Regex, usize),
    Coalesce,
    /// `if(condition, then, else)`: `then` where the condition is true, else `else` (a null
    /// condition too, as in Spark).
    If,
    /// The texts one after another; null when one is null (as Spark's `concat`).
    Concat,
    Abs,
    Round(i32),
    DateTrunc(TimeUnit),
    Now,
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    Column(usize),
    /// A one-row array of the node's type (null for `Type::Null`).
    Literal(ArrayRef),
    Neg(Box<Typed>),
    Not(Box<Typed>),
    /// Operands of one numeric type (integers are widened to floats beforehand).
    Arith(Arith, Box<Typed>, Box<Typed>),
    /// Operands of one type, or an integer and a float (compared as floats, as in Spark).
    Compare(Cmp, Box<Typed>, Box<Typed>),
    And(Box<Typed>, Box<Typed>),
    Or(Box<Typed>, Box<Typed>),
    In(Box<Typed>, Vec<Typed>, bool),
    IsNull(Box<Typed>, bool),
    Like(Box<Typed>, String, bool),
    Matches(Box<Typed>, regex::Regex, bool),
    Call(Function, Vec<Typed>),
    Cast(Box<Typed>, ValueType, bool),
}

#[derive(Debug, Clone)]
pub(super) struct Typed {
    pub node: Node,
    pub ty: Type,
}

/// Aggregate functions: named here so that using one outside `aggregate` says where it goes.
pub(super) const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "mean",
    "count_distinct",
    "first",
    "last",
    "collect_list",
];

const FUNCTIONS: &[&str] = &[
    "length",
    "lower",
    "upper",
    "trim",
    "contains",
    "starts_with",
    "ends_with",
    "substr",
    "split",
    "regex_extract",
    "coalesce",
    "if",
    "concat",
    "cast",
    "try_cast",
    "abs",
    "round",
    "date_trunc",
    "now",
];

pub(super) struct Checker<'a> {
    pub schema: &'a Schema,
    pub source: &'a str,
}

fn boxed(t: Typed) -> Box<Typed> {
    Box::new(t)
}

fn literal(array: ArrayRef, ty: Type) -> Typed {
    Typed {
        node: Node::Literal(array),
        ty,
    }
}

impl Checker<'_> {
    fn err(&self, at: usize, message: impl AsRef<str>) -> String {
        at_column(self.source, at, message.as_ref())
    }

    pub(super) fn check(&self, ast: &Ast) -> Result<Typed, String> {
        // One small function per kind: this one recurses once per nesting level, and a frame
        // holding every kind's locals overflowed a 2 MiB stack in debug builds.
        match &ast.kind {
            Kind::Column(name) => self.check_column(name, ast.at),
            Kind::Text(s) => self.check_text(s),
            Kind::Int(n) => self.check_int(n, ast.at),
            Kind::Float(x) => self.check_float(x),
            Kind::Bool(b) => self.check_bool(b),
            Kind::Null => self.check_null(),
            Kind::Neg(inner) => self.check_neg(inner, ast.at),
            Kind::Not(inner) => self.check_not(inner),
            Kind::Binary(op, left, right) => self.check_binary_op(op, left, right),
            Kind::Between(value, low, high, negated) => {
                self.check_between(value, low, high, negated, ast.at)
            }
            Kind::In(value, items, negated) => self.check_in_list(value, items, negated),
            Kind::IsNull(value, negated) => self.check_is_null(value, negated),
            Kind::Like(value, pattern, negated) => self.check_like(value, pattern, negated),
            Kind::Matches(value, pattern, negated) => self.check_matches(value, pattern, negated),
            Kind::Cast(value, type_name, type_at, try_) => {
                self.check_cast(value, type_name, type_at, try_, ast.at)
            }
            Kind::Call(name, args) => self.check_call_op(name, args, ast.at),
        }
    }

    #[inline(never)]
    fn check_column(&self, name: &str, at: usize) -> Result<Typed, String> {
        Ok({
            let index = column_index(self.schema, name).map_err(|e| self.err(at, e))?;
            let data_type = self.schema.field(index).data_type();
            let t = ValueType::of(data_type).ok_or_else(|| {
                self.err(
                    at,
                    format!(
                        "column `{name}` holds {}, which expressions cannot use",
                        type_label(data_type)
                    ),
                )
            })?;
            Typed {
                node: Node::Column(index),
                ty: Type::Of(t),
            }
        })
    }

    #[inline(never)]
    fn check_text(&self, s: &str) -> Result<Typed, String> {
        Ok(literal(
            Arc::new(StringArray::from(vec![s])),
            Type::Of(V::Text),
        ))
    }

    #[inline(never)]
    fn check_int(&self, n: &u64, at: usize) -> Result<Typed, String> {
        Ok({
            let value = i64::try_from(*n).map_err(|_| {
                self.err(
                    at,
                    format!(
                        "{n} is larger than the largest integer, {} (write `{n}.0` for a float)",
                        i64::MAX
                    ),
                )
            })?;
            literal(
                Arc::new(Int64Array::from(vec![value])),
                Type::Of(V::Integer),
            )
        })
    }

    #[inline(never)]
    fn check_float(&self, x: &f64) -> Result<Typed, String> {
        Ok(literal(
            Arc::new(Float64Array::from(vec![*x])),
            Type::Of(V::Float),
        ))
    }

    #[inline(never)]
    fn check_bool(&self, b: &bool) -> Result<Typed, String> {
        Ok(literal(
            Arc::new(BooleanArray::from(vec![*b])),
            Type::Of(V::Bool),
        ))
    }

    #[inline(never)]
    fn check_null(&self) -> Result<Typed, String> {
        Ok(literal(
            Arc::new(arrow_array::NullArray::new(1)),
            Type::Null,
        ))
    }

    #[inline(never)]
    fn check_neg(&self, inner: &Ast, at: usize) -> Result<Typed, String> {
        Ok({
            // `-9223372036854775808` is a literal, not the negation of one too large.
            if let Kind::Int(n) = inner.kind {
                if n == i64::MIN.unsigned_abs() {
                    return Ok(literal(
                        Arc::new(Int64Array::from(vec![i64::MIN])),
                        Type::Of(V::Integer),
                    ));
                }
            }
            let value = self.check(inner)?;
            if !value.ty.numeric() {
                return Err(self.err(
                    at,
                    format!("`-` needs a number, found {}", value.ty.label()),
                ));
            }
            let ty = value.ty;
            Typed {
                node: Node::Neg(boxed(value)),
                ty,
            }
        })
    }

    #[inline(never)]
    fn check_not(&self, inner: &Ast) -> Result<Typed, String> {
        Ok({
            let value = self.condition(inner, "not")?;
            Typed {
                node: Node::Not(boxed(value)),
                ty: Type::Of(V::Bool),
            }
        })
    }

    #[inline(never)]
    fn check_binary_op(&self, op: &BinOp, left: &Ast, right: &Ast) -> Result<Typed, String> {
        self.binary(*op, left, right)
    }

    #[inline(never)]
    fn check_between(
        &self,
        value: &Ast,
        low: &Ast,
        high: &Ast,
        negated: &bool,
        at: usize,
    ) -> Result<Typed, String> {
        Ok({
            let v = self.check(value)?;
            let ge = self.compare(Cmp::Ge, v.clone(), self.check(low)?, at, low.at)?;
            let le = self.compare(Cmp::Le, v, self.check(high)?, at, high.at)?;
            let both = Typed {
                node: Node::And(boxed(ge), boxed(le)),
                ty: Type::Of(V::Bool),
            };
            self.negate_if(both, *negated)
        })
    }

    #[inline(never)]
    fn check_in_list(&self, value: &Ast, items: &[Ast], negated: &bool) -> Result<Typed, String> {
        Ok({
            let v = self.check(value)?;
            let mut typed = Vec::with_capacity(items.len());
            for item in items {
                let i = self.coerce_timestamp_literal(self.check(item)?, v.ty, item.at)?;
                if !comparable(v.ty, i.ty) {
                    return Err(self.err(
                        item.at,
                        format!(
                            "this list holds {} but is matched against {}",
                            i.ty.label(),
                            v.ty.label()
                        ),
                    ));
                }
                typed.push(i);
            }
            Typed {
                node: Node::In(boxed(v), typed, *negated),
                ty: Type::Of(V::Bool),
            }
        })
    }

    #[inline(never)]
    fn check_is_null(&self, value: &Ast, negated: &bool) -> Result<Typed, String> {
        Ok(Typed {
            node: Node::IsNull(boxed(self.check(value)?), *negated),
            ty: Type::Of(V::Bool),
        })
    }

    #[inline(never)]
    fn check_like(&self, value: &Ast, pattern: &Ast, negated: &bool) -> Result<Typed, String> {
        Ok({
            let v = self.text_operand(value, "like")?;
            let pattern = self.text_literal(pattern, "`like`'s pattern")?;
            // As Spark SQL reads a pattern: `\\` escapes only `_`, `%` and itself, and may not
            // end the pattern.
            let mut chars = pattern.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('_' | '%' | '\\') => {}
                        Some(other) => {
                            return Err(format!("`like`'s pattern `{}`: `\\{other}` escapes nothing (write `\\_`, `\\%` or `\\\\`; a backslash escapes only those, as in Spark SQL)", crate::error::escape_controls(&pattern)))
                        }
                        None => {
                            return Err(format!("`like`'s pattern `{}` ends with a backslash, which escapes nothing (write `\\\\` for a backslash)", crate::error::escape_controls(&pattern)))
                        }
                    }
                }
            }
            Typed {
                node: Node::Like(boxed(v), pattern, *negated),
                ty: Type::Of(V::Bool),
            }
        })
    }

    #[inline(never)]
    fn check_matches(&self, value: &Ast, pattern: &Ast, negated: &bool) -> Result<Typed, String> {
        Ok({
            let v = self.text_operand(value, "matches")?;
            let pattern_at = pattern.at;
            let regex = self.regex(pattern, pattern_at, "`matches`")?;
            Typed {
                node: Node::Matches(boxed(v), regex, *negated),
                ty: Type::Of(V::Bool),
            }
        })
    }

    #[inline(never)]
    fn check_cast(
        &self,
        value: &Ast,
        type_name: &str,
        type_at: &usize,
        try_: &bool,
        at: usize,
    ) -> Result<Typed, String> {
        Ok({
            let v = self.check(value)?;
            let to = ValueType::parse(type_name).map_err(|_| {
                // The types a cast goes to (a list is no cast's target).
                let targets = ["text", "integer", "float", "bool", "timestamp"];
                let hint = crate::data::closest(&type_name.to_ascii_lowercase(), targets)
                    .map_or(String::new(), |best| format!(", did you mean `{best}`?"));
                self.err(
                    *type_at,
                    format!(
                        "`{type_name}` is not a type{hint} (a cast is to {})",
                        targets.join(", ")
                    ),
                )
            })?;
            let allowed = match (v.ty, to) {
                (Type::Null, _) => true,
                (Type::Of(from), to) if from == to => true,
                (Type::Of(V::TextList), _) | (_, V::TextList) => false,
                (Type::Of(V::Bool), V::Timestamp) | (Type::Of(V::Timestamp), V::Bool) => false,
                _ => true,
            };
            if !allowed {
                return Err(self.err(at, format!("cannot cast {} to {}", v.ty.label(), to.name())));
            }
            Typed {
                node: Node::Cast(boxed(v), to, *try_),
                ty: Type::Of(to),
            }
        })
    }

    #[inline(never)]
    fn check_call_op(&self, name: &str, args: &[Ast], at: usize) -> Result<Typed, String> {
        self.call(name, args, at)
    }

    fn negate_if(&self, t: Typed, negated: bool) -> Typed {
        if negated {
            Typed {
                node: Node::Not(boxed(t)),
                ty: Type::Of(V::Bool),
            }
        } else {
            t
        }
    }

    fn condition(&self, ast: &Ast, what: &str) -> Result<Typed, String> {
        let t = self.check(ast)?;
        if t.ty.is(V::Bool) {
            Ok(t)
        } else {
            Err(self.err(
                ast.at,
                format!("`{what}` needs a condition, found {}", t.ty.label()),
            ))
        }
    }

    fn text_operand(&self, ast: &Ast, what: &str) -> Result<Typed, String> {
        let t = self.check(ast)?;
        if t.ty.is(V::Text) {
            Ok(t)
        } else {
            Err(self.err(
                ast.at,
                format!("`{what}` needs text, found {}", t.ty.label()),
            ))
        }
    }

    fn text_literal(&self, ast: &Ast, what: &str) -> Result<String, String> {
        match &ast.kind {
            Kind::Text(s) => Ok(s.clone()),
            _ => Err(self.err(
                ast.at,
                format!("{what} must be a string written in the expression"),
            )),
        }
    }

    fn int_literal(&self, ast: &Ast, what: &str) -> Result<i64, String> {
        match &ast.kind {
            Kind::Int(n) => i64::try_from(*n)
                .map_err(|_| self.err(ast.at, format!("{what} is past the integers' range"))),
            Kind::Neg(inner) => match inner.kind {
                Kind::Int(n) if n == i64::MIN.unsigned_abs() => Ok(i64::MIN),
                Kind::Int(n) => i64::try_from(n)
                    .map(|n| -n)
                    .map_err(|_| self.err(ast.at, format!("{what} is past the integers' range"))),
                _ => Err(self.err(
                    ast.at,
                    format!("{what} must be an integer written in the expression"),
                )),
            },
            _ => Err(self.err(
                ast.at,
                format!("{what} must be an integer written in the expression"),
            )),
        }
    }

    fn regex(&self, ast: &Ast, at: usize, what: &str) -> Result<regex::Regex, String> {
        let pattern = self.text_literal(ast, &format!("{what}'s pattern"))?;
        regex::RegexBuilder::new(&pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                // The parser's message spans lines (the pattern, a caret, the reason): only the
                // reason, which a caret of its own in the pipeline file would not line up with.
                let text = e.to_string();
                let reason = text.lines().last().unwrap_or_default();
                let reason = reason.strip_prefix("error: ").unwrap_or(reason);
                self.err(
                    at,
                    format!("{what}: not a valid regular expression: {reason}"),
                )
            })
    }

    fn binary(&self, op: BinOp, left: &Ast, right: &Ast) -> Result<Typed, String> {
        let arith = match op {
            BinOp::And | BinOp::Or => {
                let l = self.condition(left, op.text())?;
                let r = self.condition(right, op.text())?;
                let node = if op == BinOp::And {
                    Node::And(boxed(l), boxed(r))
                } else {
                    Node::Or(boxed(l), boxed(r))
                };
                return Ok(Typed {
                    node,
                    ty: Type::Of(V::Bool),
                });
            }
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let cmp = match op {
                    BinOp::Eq => Cmp::Eq,
                    BinOp::Ne => Cmp::Ne,
                    BinOp::Lt => Cmp::Lt,
                    BinOp::Le => Cmp::Le,
                    BinOp::Gt => Cmp::Gt,
                    _ => Cmp::Ge,
                };
                let (l, r) = (self.check(left)?, self.check(right)?);
                return self.compare(cmp, l, r, left.at, right.at);
            }
            BinOp::Add => Arith::Add,
            BinOp::Sub => Arith::Sub,
            BinOp::Mul => Arith::Mul,
            BinOp::Div => Arith::Div,
            BinOp::Rem => Arith::Rem,
        };
        let (l, r) = (self.check(left)?, self.check(right)?);
        for (t, ast) in [(&l, left), (&r, right)] {
            if !t.ty.numeric() {
                return Err(self.err(
                    ast.at,
                    format!("`{}` needs numbers, found {}", op.text(), t.ty.label()),
                ));
            }
        }
        // `/` divides as floats (7 / 2 is 3.5, as in Spark); otherwise integers stay integers
        // unless a float is involved.
        let float = arith == Arith::Div || l.ty == Type::Of(V::Float) || r.ty == Type::Of(V::Float);
        let (l, r, ty) = if float {
            (to_float(l), to_float(r), Type::Of(V::Float))
        } else if l.ty == Type::Null && r.ty == Type::Null {
            (l, r, Type::Null)
        } else {
            (l, r, Type::Of(V::Integer))
        };
        Ok(Typed {
            node: Node::Arith(arith, boxed(l), boxed(r)),
            ty,
        })
    }

    fn compare(
        &self,
        cmp: Cmp,
        l: Typed,
        r: Typed,
        op_at: usize,
        right_at: usize,
    ) -> Result<Typed, String> {
        if l.ty == Type::Null || r.ty == Type::Null {
            return Err(self.err(
                op_at,
                "a comparison with null is null, neither true nor false; use `is null` or `is not null`",
            ));
        }
        let (left_type, right_type) = (l.ty, r.ty);
        let r = self.coerce_timestamp_literal(r, left_type, right_at)?;
        let l = self.coerce_timestamp_literal(l, right_type, op_at)?;
        if !comparable(l.ty, r.ty) {
            return Err(self.err(
                op_at,
                format!(
                    "cannot compare {} with {}",
                    left_type.label(),
                    right_type.label()
                ),
            ));
        }
        if matches!(l.ty, Type::Of(V::Bool | V::TextList)) && !matches!(cmp, Cmp::Eq | Cmp::Ne) {
            return Err(self.err(
                op_at,
                format!("{} can only be compared with == and !=", l.ty.label()),
            ));
        }
        Ok(Typed {
            node: Node::Compare(cmp, boxed(l), boxed(r)),
            ty: Type::Of(V::Bool),
        })
    }

    /// A text literal met by a timestamp becomes a timestamp literal (`created_at >
    /// "2024-05-01"`), parsed here so that a bad one is found before any data.
    fn coerce_timestamp_literal(&self, t: Typed, other: Type, at: usize) -> Result<Typed, String> {
        if other != Type::Of(V::Timestamp) || t.ty != Type::Of(V::Text) {
            return Ok(t);
        }
        let Node::Literal(array) = &t.node else {
            return Ok(t);
        };
        let text = arrow_array::cast::AsArray::as_string::<i32>(array.as_ref()).value(0);
        let micros = crate::data::parse_timestamp_text(text).ok_or_else(|| {
            self.err(
                at,
                format!("\"{text}\" is not a timestamp (write e.g. \"2024-05-01T12:00:00Z\")"),
            )
        })?;
        Ok(literal(
            Arc::new(
                arrow_array::TimestampMicrosecondArray::from(vec![micros]).with_timezone("UTC"),
            ),
            Type::Of(V::Timestamp),
        ))
    }

    fn call(&self, name: &str, args: &[Ast], at: usize) -> Result<Typed, String> {
        if AGGREGATES.contains(&name) {
            return Err(self.err(
                at,
                format!("`{name}` is an aggregate: use it in an `aggregate` step's `aggs:`"),
            ));
        }
        let arity = |min: usize, max: usize| -> Result<(), String> {
            if args.len() < min || args.len() > max {
                let wanted = if min == max {
                    format!("{min}")
                } else if max == usize::MAX {
                    format!("at least {min}")
                } else {
                    format!("{min} to {max}")
                };
                Err(self.err(
                    at,
                    format!(
                        "`{name}` takes {wanted} argument{}, found {}",
                        if max == 1 || (max == usize::MAX && min == 1) {
                            ""
                        } else {
                            "s"
                        },
                        args.len()
                    ),
                ))
            } else {
                Ok(())
            }
        };
        let text_arg = |i: usize| self.text_operand(&args[i], name);
        let (function, typed, ty): (Function, Vec<Typed>, Type) = match name {
            "length" => {
                arity(1, 1)?;
                let a = self.check(&args[0])?;
                if !(a.ty.is(V::Text) || a.ty.is(V::TextList)) {
                    return Err(self.err(
                        args[0].at,
                        format!("`length` needs text or a list, found {}", a.ty.label()),
                    ));
                }
                (Function::Length, vec![a], Type::Of(V::Integer))
            }
            "lower" | "upper" | "trim" => {
                arity(1, 1)?;
                let f = match name {
                    "lower" => Function::Lower,
                    "upper" => Function::Upper,
                    _ => Function::Trim,
                };
                (f, vec![text_arg(0)?], Type::Of(V::Text))
            }
            "contains" | "starts_with" | "ends_with" => {
                arity(2, 2)?;
                let f = match name {
                    "contains" => Function::Contains,
                    "starts_with" => Function::StartsWith,
                    _ => Function::EndsWith,
                };
                (f, vec![text_arg(0)?, text_arg(1)?], Type::Of(V::Bool))
            }
            "substr" | "substring" => {
                arity(2, 3)?;
                let start = self.int_literal(&args[1], "`substr`'s start")?;
                let len = match args.get(2) {
                    Some(a) => Some(self.int_literal(a, "`substr`'s length")?),
                    None => None,
                };
                (
                    Function::Substr(start, len),
                    vec![text_arg(0)?],
                    Type::Of(V::Text),
                )
            }
            "split" => {
                arity(2, 2)?;
                // An empty separator splits into characters, as Spark's does.
                let separator = self.text_literal(&args[1], "`split`'s separator")?;
                (
                    Function::Split(separator),
                    vec![text_arg(0)?],
                    Type::Of(V::TextList),
                )
            }
            "regex_extract" | "regexp_extract" => {
                arity(2, 3)?;
                let regex = self.regex(&args[1], args[1].at, "`regex_extract`")?;
                let group = match args.get(2) {
                    Some(a) => self.int_literal(a, "`regex_extract`'s group")?,
                    None => 1,
                };
                if group < 0 || group as usize >= regex.captures_len() {
                    return Err(self.err(
                        args.get(2).map_or(at, |a| a.at),
                        format!(
                            "the pattern has {} group(s); group {group} does not exist",
                            regex.captures_len() - 1
                        ),
                    ));
                }
                (
                    Function::RegexExtract(regex, group as usize),
                    vec![text_arg(0)?],
                    Type::Of(V::Text),
                )
            }
            "coalesce" => {
                arity(1, usize::MAX)?;
                let (typed, ty) = self.one_type_of(name, args)?;
                (Function::Coalesce, typed, ty)
            }
            "if" => {
                arity(3, 3)?;
                let condition = self.check(&args[0])?;
                if !(condition.ty.is(V::Bool) || condition.ty == Type::Null) {
                    return Err(self.err(
                        args[0].at,
                        format!(
                            "`if` needs a condition first (`if(amount > 10, 'big', 'small')`), \
                             found {}",
                            condition.ty.label()
                        ),
                    ));
                }
                let (values, ty) = self.one_type_of(name, &args[1..])?;
                let mut typed = vec![condition];
                typed.extend(values);
                (Function::If, typed, ty)
            }
            "concat" | PIPES => {
                arity(1, usize::MAX)?;
                let mut typed = Vec::with_capacity(args.len());
                for arg in args {
                    let t = self.check(arg)?;
                    if !t.ty.is(V::Text) {
                        return Err(self.err(
                            arg.at,
                            match t.ty {
                                // A list has no text cast: its items are texts already.
                                Type::Of(V::TextList) => format!(
                                    "`{name}` joins texts, found a list of text: explode it first, or aggregate it"
                                ),
                                _ => format!(
                                    "`{name}` joins texts, found {}: write `cast(... as text)`",
                                    t.ty.label()
                                ),
                            },
                        ));
                    }
                    typed.push(t);
                }
                (Function::Concat, typed, Type::Of(V::Text))
            }
            "abs" => {
                arity(1, 1)?;
                let a = self.check(&args[0])?;
                if !a.ty.numeric() {
                    return Err(self.err(
                        args[0].at,
                        format!("`abs` needs a number, found {}", a.ty.label()),
                    ));
                }
                let ty = a.ty;
                (Function::Abs, vec![a], ty)
            }
            "round" => {
                arity(1, 2)?;
                let a = self.check(&args[0])?;
                if !a.ty.numeric() {
                    return Err(self.err(
                        args[0].at,
                        format!("`round` needs a number, found {}", a.ty.label()),
                    ));
                }
                let digits = match args.get(1) {
                    Some(d) => self.int_literal(d, "`round`'s digits")?,
                    None => 0,
                };
                if !(-18..=18).contains(&digits) {
                    return Err(self.err(args[1].at, "`round`'s digits must be between -18 and 18"));
                }
                let ty = a.ty;
                (Function::Round(digits as i32), vec![a], ty)
            }
            "date_trunc" => {
                arity(2, 2)?;
                let unit_name = self.text_literal(&args[0], "`date_trunc`'s unit")?;
                let unit = match unit_name.to_ascii_lowercase().as_str() {
                    "year" | "yyyy" | "yy" => TimeUnit::Year,
                    "quarter" => TimeUnit::Quarter,
                    "month" | "mon" | "mm" => TimeUnit::Month,
                    "week" => TimeUnit::Week,
                    "day" | "dd" => TimeUnit::Day,
                    "hour" => TimeUnit::Hour,
                    "minute" => TimeUnit::Minute,
                    "second" => TimeUnit::Second,
                    "millisecond" => TimeUnit::Millisecond,
                    "microsecond" => TimeUnit::Microsecond,
                    _ => {
                        return Err(self.err(
                            args[0].at,
                            format!("`{unit_name}` is not a unit (year, quarter, month, week, day, hour, minute, second, millisecond, microsecond)"),
                        ))
                    }
                };
                let t = self.check(&args[1])?;
                if !t.ty.is(V::Timestamp) {
                    return Err(self.err(
                        args[1].at,
                        format!("`date_trunc` needs a timestamp, found {}", t.ty.label()),
                    ));
                }
                (Function::DateTrunc(unit), vec![t], Type::Of(V::Timestamp))
            }
            "now" | "current_timestamp" => {
                arity(0, 0)?;
                (Function::Now, vec![], Type::Of(V::Timestamp))
            }
            _ => {
                return Err(self.err(
                    at,
                    format!(
                        "there is no function `{name}`{} (functions: {})",
                        closest(name, FUNCTIONS.iter().chain(AGGREGATES).copied())
                            .map_or(String::new(), |best| format!(", did you mean `{best}`?")),
                        FUNCTIONS.join(", ")
                    ),
                ))
            }
        };
        Ok(Typed {
            node: Node::Call(function, typed),
            ty,
        })
    }
}

impl Checker<'_> {
    /// `args` typed as one type, as `coalesce` and `if` give them: integers beside a float
    /// are floats, text literals beside a timestamp timestamps; anything else mixed is an
    /// error at the argument that mixes it.
    fn one_type_of(&self, name: &str, args: &[Ast]) -> Result<(Vec<Typed>, Type), String> {
        let mut typed = args
            .iter()
            .map(|a| self.check(a))
            .collect::<Result<Vec<_>, _>>()?;
        // Text literals next to a timestamp are timestamps, as in comparisons.
        if typed.iter().any(|t| t.ty == Type::Of(V::Timestamp)) {
            typed = typed
                .into_iter()
                .zip(args)
                .map(|(t, a)| self.coerce_timestamp_literal(t, Type::Of(V::Timestamp), a.at))
                .collect::<Result<_, _>>()?;
        }
        let mut ty = Type::Null;
        for (t, a) in typed.iter().zip(args) {
            ty = match (ty, t.ty) {
                (Type::Null, other) | (other, Type::Null) => other,
                (x, y) if x == y => x,
                (Type::Of(V::Integer), Type::Of(V::Float))
                | (Type::Of(V::Float), Type::Of(V::Integer)) => Type::Of(V::Float),
                (x, y) => {
                    return Err(self.err(
                        a.at,
                        format!("`{name}` mixes {} and {}", x.label(), y.label()),
                    ))
                }
            };
        }
        let typed = if ty == Type::Of(V::Float) {
            typed.into_iter().map(to_float).collect()
        } else {
            typed
        };
        Ok((typed, ty))
    }
}

fn comparable(a: Type, b: Type) -> bool {
    match (a, b) {
        (Type::Null, _) | (_, Type::Null) => true,
        (x, y) if x == y => true,
        (Type::Of(V::Integer | V::Float), Type::Of(V::Integer | V::Float)) => true,
        _ => false,
    }
}

/// `t` as a float (an integer widened; a float or null unchanged).
fn to_float(t: Typed) -> Typed {
    if t.ty == Type::Of(V::Integer) {
        Typed {
            node: Node::Cast(boxed(t), V::Float, false),
            ty: Type::Of(V::Float),
        }
    } else {
        t
    }
}
