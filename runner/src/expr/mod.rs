//! The expression language shared by `filter` (`where:`), `select`, `with_column` and
//! `aggregate`: arithmetic (`+ - * / %`), comparisons (`== != < <= > >=`), `and`/`or`/`not`,
//! `in [..]`, `between`, `is [not] null`, `like`, `matches` (a regular expression), functions
//! (`length`, `lower`, `substr`, `cast(x as integer)`, `date_trunc`, ...), string, number,
//! boolean and `null` literals and column names (bare, dotted for nested JSON fields, or in
//! backticks).
//!
//! An expression is parsed (`parse`), typed against the input schema when the pipeline is
//! validated (`check`: a mistake is reported with its position before any data is read), and
//! evaluated a column at a time with Arrow's kernels (`eval`). The language is runner's own
//! (`==`, `in [..]`, `matches` are not SQL), so it has its own small parser rather than a SQL one.

mod check;
mod eval;
mod java_double;
mod java_regex;
mod lex;
mod parse;
mod spark;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

use crate::data::ValueType;
use check::{Checker, Node, Type, Typed};

/// A compiled, typed expression.
#[derive(Debug, Clone)]
pub struct Expr {
    root: Typed,
    source: String,
}

/// A compiled expression that is a condition (`filter`'s `where:`).
#[derive(Debug, Clone)]
pub struct Predicate {
    expr: Expr,
}

/// Parses and types `source` against `schema`.
pub fn compile_expr(source: &str, schema: &Schema) -> Result<Expr, String> {
    let ast = parse::Parser::new(source)?.expression()?;
    typed(ast, source, schema)
}

fn typed(ast: parse::Ast, source: &str, schema: &Schema) -> Result<Expr, String> {
    let root = Checker { schema, source }.check(&ast)?;
    Ok(Expr {
        root,
        source: source.to_owned(),
    })
}

/// Column `index` of `schema` as it is (`select`'s `*`); `None` for a type expressions cannot
/// use.
pub fn column(index: usize, schema: &Schema) -> Option<Expr> {
    let field = schema.fields().get(index)?;
    let ty = crate::data::ValueType::of(field.data_type())?;
    Some(Expr {
        root: Typed {
            node: Node::Column(index),
            ty: Type::Of(ty),
        },
        source: format!("`{}`", field.name()),
    })
}

/// An item of `select`: an expression and the name of its column (`... as name`; a bare
/// column keeps its name; anything else is named by its text).
pub fn compile_named(source: &str, schema: &Schema) -> Result<(Expr, String), String> {
    let parsed = parse::Parser::new(source).and_then(|p| p.named());
    // A column named like no expression (`first name`) may be written as its name, as in
    // `sort` and `group_count`.
    let (ast, alias) = match parsed {
        Ok(parsed) => parsed,
        Err(_) if schema.index_of(source).is_ok() && !source.contains('`') => {
            let quoted = format!("`{source}`");
            let ast = parse::Parser::new(&quoted)?.expression()?;
            return Ok((typed(ast, &quoted, schema)?, source.to_owned()));
        }
        Err(e) => return Err(e),
    };
    let name = match (alias, &ast.kind) {
        (Some(alias), _) => alias,
        (None, parse::Kind::Column(column)) => column.clone(),
        (None, _) => source.trim().to_owned(),
    };
    Ok((typed(ast, source, schema)?, name))
}

/// Parses and types a condition.
pub fn compile(source: &str, schema: &Schema) -> Result<Predicate, String> {
    let expr = compile_expr(source, schema)?;
    match expr.root.ty {
        Type::Of(ValueType::Bool) => Ok(Predicate { expr }),
        Type::Null => Err(format!(
            "`{source}` is null, never true: a filter keeps the rows whose condition is true"
        )),
        Type::Of(other) => {
            let example = match other {
                ValueType::Text => format!("`{source} == 'a'` or `{source} is not null`"),
                ValueType::Timestamp => format!("`{source} >= '2024-05-01'`"),
                ValueType::TextList => format!("`length({source}) > 0`"),
                _ => format!("`{source} > 0`"),
            };
            Err(format!(
                "`{source}` is {}, not a condition; compare it, e.g. {example}",
                Type::Of(other).label()
            ))
        }
    }
}

impl Predicate {
    /// The condition as a Spark column (see `Expr::to_spark`).
    pub fn to_spark(&self, columns: &[String]) -> Result<crate::spark::frame::Column, String> {
        self.expr.to_spark(columns)
    }
}

/// An aggregate function of `aggregate`'s `aggs:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateFunction {
    /// `count()`: rows in the group; `count(x)`: rows where `x` is not null.
    Count,
    /// `sum(x)`: the total of the non-null values (integers exactly; a total past i64 is an error).
    Sum,
    /// `min(x)`: the smallest non-null value.
    Min,
    /// `max(x)`: the largest non-null value.
    Max,
    /// `avg(x)` (or `mean`): the mean of the non-null values, as a float.
    Avg,
    /// `count_distinct(x)`: the number of distinct non-null values.
    CountDistinct,
    /// `first(x)`: the value of the group's first row in input order (null when that row's is).
    First,
    /// `last(x)`: the value of the group's last row in input order (null when that row's is).
    Last,
    /// `collect_list(x)`: the non-null values as a list of text, in input order.
    CollectList,
}

/// The time `now()` gives, in microseconds since the epoch; `i64::MIN` until a run sets it.
static QUERY_TIME: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(i64::MIN);

/// Fixes the time `now()` gives from here on: called when a run starts and when each epoch of
/// a stream begins, so that a query sees one time, as Spark's `current_timestamp()` (per
/// micro-batch in a stream).
pub fn start_query_time() {
    let now = chrono::Utc::now().timestamp_micros();
    QUERY_TIME.store(now, std::sync::atomic::Ordering::Relaxed);
}

/// What `now()` gives: the time `start_query_time` fixed, or the clock's before any run.
pub(crate) fn query_time() -> i64 {
    match QUERY_TIME.load(std::sync::atomic::Ordering::Relaxed) {
        i64::MIN => chrono::Utc::now().timestamp_micros(),
        fixed => fixed,
    }
}

/// Parses `name(expr)` (or `count()`) as an aggregate call over `schema`.
pub fn compile_aggregate(
    source: &str,
    schema: &Schema,
) -> Result<(AggregateFunction, Option<Expr>), String> {
    let ast = parse::Parser::new(source)?.expression()?;
    let parse::Kind::Call(name, args) = &ast.kind else {
        return Err(format!(
            "`{source}` is not an aggregate call; write e.g. `sum(amount)` or `count()`"
        ));
    };
    use AggregateFunction as A;
    let function = match name.as_str() {
        "count" => A::Count,
        "sum" => A::Sum,
        "min" => A::Min,
        "max" => A::Max,
        "avg" | "mean" => A::Avg,
        "count_distinct" => A::CountDistinct,
        "first" => A::First,
        "last" => A::Last,
        "collect_list" => A::CollectList,
        other => {
            let names = check::AGGREGATES;
            return Err(format!(
                "`{other}` is not an aggregate function{} (aggregates: {})",
                crate::data::closest(other, names.iter().copied())
                    .map_or(String::new(), |b| format!(", did you mean `{b}`?")),
                names.join(", ")
            ));
        }
    };
    let expr = match (function, args.as_slice()) {
        (A::Count, []) => None,
        (_, [arg]) => Some(typed(arg.clone(), source, schema)?),
        _ => {
            return Err(format!(
                "`{source}`: `{name}` takes one argument{}",
                if function == A::Count {
                    " (or none: `count()` counts rows)"
                } else {
                    ""
                }
            ))
        }
    };
    if let Some(e) = &expr {
        let t = e.value_type();
        let numeric = matches!(t, ValueType::Integer | ValueType::Float);
        let ordered =
            numeric || matches!(t, ValueType::Text | ValueType::Timestamp | ValueType::Bool);
        let ok = match function {
            A::Sum | A::Avg => numeric,
            A::Min | A::Max => ordered,
            _ => {
                t != ValueType::TextList
                    || matches!(function, A::Count | A::CountDistinct | A::First | A::Last)
            }
        };
        if !ok && e.root.ty == Type::Null {
            return Err(format!(
                "`{source}`: a bare `null` has no type for `{name}` to take: write e.g. `cast(null as integer)`"
            ));
        }
        if !ok {
            return Err(format!(
                "`{source}`: `{name}` cannot take {}",
                Type::Of(t).label()
            ));
        }
    }
    Ok((function, expr))
}

impl Expr {
    /// The type of its values (a bare `null` is text).
    pub fn value_type(&self) -> ValueType {
        match self.root.ty {
            Type::Of(t) => t,
            Type::Null => ValueType::Text,
        }
    }

    /// The Arrow type of its values (see [`Expr::value_type`]).
    pub fn data_type(&self) -> DataType {
        self.value_type().data_type()
    }

    /// The output field for the expression's column `name`.
    pub fn field(&self, name: &str, schema: &Schema) -> Field {
        match self.root.node {
            // A column passed through keeps its field (nullability included).
            Node::Column(index) => schema.field(index).clone().with_name(name),
            _ => Field::new(name, self.data_type(), true),
        }
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The input column it is, when it is just one.
    pub fn as_column(&self) -> Option<usize> {
        match self.root.node {
            Node::Column(index) => Some(index),
            _ => None,
        }
    }

    /// The value of every row of `batch`.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef, String> {
        eval::eval(&self.root, batch)
            .and_then(|col| col.into_array(batch.num_rows(), &self.data_type()))
            .map_err(|e| format!("`{}`: {e}", self.source))
    }

    /// The columns it reads, in order, each once.
    pub fn columns(&self) -> Vec<usize> {
        columns_of(&self.root)
    }
}

/// The columns `t` reads, in order, each once.
fn columns_of(t: &Typed) -> Vec<usize> {
    fn walk(t: &Typed, out: &mut Vec<usize>) {
        match &t.node {
            Node::Column(index) => out.push(*index),
            Node::Literal(_) => {}
            Node::Neg(a)
            | Node::Not(a)
            | Node::IsNull(a, _)
            | Node::Like(a, _, _)
            | Node::Matches(a, _, _)
            | Node::Cast(a, _, _) => walk(a, out),
            Node::Arith(_, a, b) | Node::Compare(_, a, b) | Node::And(a, b) | Node::Or(a, b) => {
                walk(a, out);
                walk(b, out);
            }
            Node::In(a, items, _) => {
                walk(a, out);
                items.iter().for_each(|i| walk(i, out));
            }
            Node::Call(_, args) => args.iter().for_each(|a| walk(a, out)),
        }
    }
    let mut out = Vec::new();
    walk(t, &mut out);
    out.sort_unstable();
    out.dedup();
    out
}

impl Predicate {
    /// The columns it reads, in order, each once.
    pub fn columns(&self) -> Vec<usize> {
        self.expr.columns()
    }

    /// Whether each row is kept: true; false and null (unknown) are not.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray, String> {
        let values = self.expr.evaluate(batch)?;
        let values = arrow_array::cast::AsArray::as_boolean(values.as_ref()).clone();
        if values.null_count() == 0 {
            return Ok(values);
        }
        // Null (unknown) is not kept.
        Ok(arrow_select::filter::prep_null_mask_filter(&values))
    }
}

#[cfg(test)]
mod tests;
