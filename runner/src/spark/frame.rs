//! DataFrame and column builders for Spark Connect. Each builds the protobuf message Spark
//! Connect receives (an unresolved plan: Spark analyses it) and, beside it, the same program
//! as PySpark-like text, which `runner plan --engine spark` shows: what is shown is what is
//! sent. This module and `words.rs` are what components (sources, transforms) use to describe
//! themselves to Spark; the engine (translation, execution) is above them.

use runner_spark_connect_proto as pb;

use pb::expression::{self as ex, literal::LiteralType, sort_order};

/// A step's refusal when it has no translation of its own.
pub const NOT_TRANSLATED: &str =
    "this step has no Spark translation yet; run the pipeline with --engine local";
/// A source's refusal when it has no translation of its own.
pub const SOURCE_NOT_TRANSLATED: &str =
    "Spark cannot read this source; run the pipeline with --engine local";

/// Why the Mastodon sources (live and recorded) do not run on Spark, and what does.
pub const MASTODON_REFUSAL: &str = "Spark has no Mastodon reader; run `runner run pipelines/toots_to_socket.yaml` in front of a `socket` source, which Spark reads";

/// A column expression.
#[derive(Debug, Clone)]
pub struct Column {
    expr: pb::Expression,
    /// PySpark-like text.
    text: String,
}

fn expression(expr_type: ex::ExprType) -> pb::Expression {
    pb::Expression {
        common: None,
        expr_type: Some(expr_type),
    }
}

/// A column by name (quoted, so that any name is taken as written).
pub fn col(name: &str) -> Column {
    Column {
        expr: expression(ex::ExprType::UnresolvedAttribute(ex::UnresolvedAttribute {
            unparsed_identifier: format!("`{}`", name.replace('`', "``")),
            plan_id: None,
            is_metadata_column: None,
        })),
        text: format!("col({})", python_str(name)),
    }
}

fn literal(value: LiteralType, text: String) -> Column {
    Column {
        expr: expression(ex::ExprType::Literal(ex::Literal {
            literal_type: Some(value),
            ..Default::default()
        })),
        text,
    }
}

/// A text literal (`lit('word')`).
pub fn lit_str(value: &str) -> Column {
    literal(LiteralType::String(value.to_owned()), python_str(value))
}

/// A 64-bit integer literal (Spark's `long`).
pub fn lit_i64(value: i64) -> Column {
    literal(LiteralType::Long(value), value.to_string())
}

/// A 32-bit integer literal (Spark's `int`).
pub fn lit_i32(value: i32) -> Column {
    literal(LiteralType::Integer(value), value.to_string())
}

/// A double literal.
pub fn lit_f64(value: f64) -> Column {
    literal(LiteralType::Double(value), format!("{value:?}"))
}

/// A boolean literal (`True` or `False` in the text).
pub fn lit_bool(value: bool) -> Column {
    literal(
        LiteralType::Boolean(value),
        if value { "True" } else { "False" }.to_owned(),
    )
}

/// A null of Spark's string type (a typed null: Spark needs one to resolve functions).
pub fn lit_null_str() -> Column {
    literal(
        LiteralType::Null(pb::DataType {
            kind: Some(pb::data_type::Kind::String(pb::data_type::String {
                type_variation_reference: 0,
                collation: String::new(),
            })),
        }),
        "lit(None)".to_owned(),
    )
}

/// A call of one of Spark's functions, resolved by name on the server (`lower`, `split`,
/// `explode`, and the operators `==`, `<`, `and`, `not`, ...).
pub fn call(name: &str, args: Vec<Column>) -> Column {
    let text = match (name, args.as_slice()) {
        (op, [a, b]) if is_operator(op) => format!("({} {op} {})", a.text, b.text),
        ("not", [a]) => format!("~{}", a.text),
        (_, args) => format!(
            "{name}({})",
            args.iter()
                .map(|a| a.text.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Column {
        expr: expression(ex::ExprType::UnresolvedFunction(ex::UnresolvedFunction {
            function_name: name.to_owned(),
            arguments: args.into_iter().map(|a| a.expr).collect(),
            is_distinct: false,
            is_user_defined_function: false,
            ..Default::default()
        })),
        text,
    }
}

fn is_operator(name: &str) -> bool {
    matches!(
        name,
        "==" | "<" | "<=" | ">" | ">=" | "+" | "-" | "*" | "/" | "%" | "and" | "or" | "<=>"
    )
}

/// `name(DISTINCT args)`: an aggregate over distinct values (`count_distinct`).
pub fn call_distinct(name: &str, args: Vec<Column>) -> Column {
    let text: Vec<&str> = args.iter().map(|a| a.text.as_str()).collect();
    let text = format!("{name}_distinct({})", text.join(", "));
    let mut column = call(name, args);
    column.text = text;
    if let Some(ex::ExprType::UnresolvedFunction(f)) = &mut column.expr.expr_type {
        f.is_distinct = true;
    }
    column
}

impl Column {
    /// The column cast to `type_name` (Spark SQL's name: `bigint`, `double`,
    /// `decimal(38,0)`), failing on a value that does not fit (ANSI), as runner's casts do.
    pub fn cast(self, type_name: &str) -> Column {
        self.cast_as("cast", type_name, ex::cast::EvalMode::Ansi)
    }

    /// The column cast to `type_name` as `try_cast` does: null where a value does not fit.
    pub fn try_cast(self, type_name: &str) -> Column {
        self.cast_as("try_cast", type_name, ex::cast::EvalMode::Try)
    }

    /// `Cast` in `mode`, shown as PySpark's `method` of that name.
    fn cast_as(self, method: &str, type_name: &str, mode: ex::cast::EvalMode) -> Column {
        Column {
            text: format!("{}.{method}(\"{type_name}\")", self.text),
            expr: expression(ex::ExprType::Cast(Box::new(ex::Cast {
                expr: Some(Box::new(self.expr)),
                cast_to_type: Some(ex::cast::CastToType::TypeStr(type_name.to_owned())),
                eval_mode: mode as i32,
            }))),
        }
    }

    /// The column under the name `name` (`.alias(name)`).
    pub fn alias(self, name: &str) -> Column {
        Column {
            text: format!("{}.alias({})", self.text, python_str(name)),
            expr: expression(ex::ExprType::Alias(Box::new(ex::Alias {
                expr: Some(Box::new(self.expr)),
                name: vec![name.to_owned()],
                metadata: None,
            }))),
        }
    }

    /// `self IN (items)`; a long list is shortened in the text, never in the plan.
    pub fn is_in(self, items: Vec<Column>) -> Column {
        const SHOWN: usize = 6;
        let count = items.len();
        let mut shown: Vec<&str> = items.iter().take(SHOWN).map(|c| c.text.as_str()).collect();
        let more = format!("... {} more", count.saturating_sub(SHOWN));
        if count > SHOWN {
            shown.push(&more);
        }
        let text = format!("{}.isin({})", self.text, shown.join(", "));
        let mut column = call("in", std::iter::once(self).chain(items).collect());
        column.text = text;
        column
    }

    /// The column as PySpark-like text, as `runner plan --engine spark` shows it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// `self` as an ascending (nulls first) or descending (nulls last) sort key: Spark's
    /// defaults, and runner's order.
    pub fn sort_key(self, descending: bool) -> SortKey {
        SortKey {
            text: format!(
                "{}.{}()",
                self.text,
                if descending { "desc" } else { "asc" }
            ),
            order: ex::SortOrder {
                child: Some(Box::new(self.expr)),
                direction: if descending {
                    sort_order::SortDirection::Descending
                } else {
                    sort_order::SortDirection::Ascending
                } as i32,
                null_ordering: if descending {
                    sort_order::NullOrdering::SortNullsLast
                } else {
                    sort_order::NullOrdering::SortNullsFirst
                } as i32,
            },
        }
    }
}

/// One key of a sort.
#[derive(Debug, Clone)]
pub struct SortKey {
    order: ex::SortOrder,
    text: String,
}

/// A DataFrame: the relation Spark Connect receives, its text, and its columns' names.
#[derive(Debug, Clone)]
pub struct Frame {
    relation: pb::Relation,
    /// One line per operation.
    lines: Vec<String>,
    columns: Vec<String>,
    /// Whether it reads a stream (`readStream`).
    streaming: bool,
    /// Things the user should know about the program (a local path sent to the cluster).
    warnings: Vec<String>,
}

fn relation(rel_type: pb::relation::RelType) -> pb::Relation {
    pb::Relation {
        common: None,
        rel_type: Some(rel_type),
    }
}

impl Frame {
    /// `spark.read.text(paths, lineSep="\n")`: one row per line, in the column `value`,
    /// lines ended by `\n` only, as runner's reader ends them (Hadoop's default also ends
    /// one at a lone `\r`); the `\r` of a `\r\n` stays, for the caller to remove.
    pub fn read_text(paths: Vec<String>) -> Frame {
        let shown: Vec<String> = paths.iter().map(|p| python_str(p)).collect();
        Frame {
            relation: relation(pb::relation::RelType::Read(pb::Read {
                is_streaming: false,
                read_type: Some(pb::read::ReadType::DataSource(pb::read::DataSource {
                    format: Some("text".to_owned()),
                    schema: None,
                    options: [("lineSep".to_owned(), "\n".to_owned())]
                        .into_iter()
                        .collect(),
                    paths,
                    predicates: Vec::new(),
                    source_name: None,
                })),
            })),
            lines: vec![format!(
                "spark.read.text({}, lineSep=\"\\n\")",
                shown.join(", ")
            )],
            columns: vec!["value".to_owned()],
            streaming: false,
            warnings: Vec::new(),
        }
    }

    /// `spark.readStream.format("socket")`: one row per line received, in the column `value`.
    pub fn read_socket(host: &str, port: u16) -> Frame {
        let options = [
            ("host".to_owned(), host.to_owned()),
            ("port".to_owned(), port.to_string()),
        ];
        Frame {
            relation: relation(pb::relation::RelType::Read(pb::Read {
                is_streaming: true,
                read_type: Some(pb::read::ReadType::DataSource(pb::read::DataSource {
                    format: Some("socket".to_owned()),
                    schema: None,
                    options: options.into_iter().collect(),
                    paths: Vec::new(),
                    predicates: Vec::new(),
                    source_name: None,
                })),
            })),
            lines: vec![format!(
                "spark.readStream.format(\"socket\").option(\"host\", {}).option(\"port\", {port}).load()",
                python_str(host)
            )],
            columns: vec!["value".to_owned()],
            streaming: true,
            warnings: Vec::new(),
        }
    }

    /// The columns' names, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Whether the frame is a stream (`readStream`) rather than a batch read.
    pub fn streaming(&self) -> bool {
        self.streaming
    }

    /// The frame with a warning for the user attached.
    pub fn warn(mut self, warning: String) -> Frame {
        self.warnings.push(warning);
        self
    }

    /// The warnings attached with [`Frame::warn`], in order.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// `.select(columns)`: `names` are the resulting columns' names (the aliases given).
    pub fn select(mut self, columns: Vec<Column>, names: Vec<String>) -> Frame {
        let text: Vec<&str> = columns.iter().map(|c| c.text.as_str()).collect();
        self.lines.push(format!(".select({})", text.join(", ")));
        self.relation = relation(pb::relation::RelType::Project(Box::new(pb::Project {
            input: Some(Box::new(self.relation)),
            expressions: columns.into_iter().map(|c| c.expr).collect(),
        })));
        self.columns = names;
        self
    }

    /// `.select(...)` of every column as it is but the one at `index`, which becomes `column`
    /// named `name` (what a step that rewrites one column does).
    pub fn replacing(self, index: usize, column: Column, name: &str) -> Frame {
        let mut names = self.columns.clone();
        names[index] = name.to_owned();
        let mut column = Some(column.alias(name));
        let columns = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, existing)| match column.take_if(|_| i == index) {
                Some(replaced) => replaced,
                None => col(existing),
            })
            .collect();
        self.select(columns, names)
    }

    /// `.filter(condition)`.
    pub fn filter(mut self, condition: Column) -> Frame {
        self.lines.push(format!(".filter({})", condition.text));
        self.relation = relation(pb::relation::RelType::Filter(Box::new(pb::Filter {
            input: Some(Box::new(self.relation)),
            condition: Some(condition.expr),
        })));
        self
    }

    /// `.groupBy(keys).agg(aggregates)`: the keys' columns, then the aggregates'.
    pub fn group_by(self, keys: &[String], aggregates: Vec<(Column, String)>) -> Frame {
        let keys = keys.iter().map(|k| (col(k), k.clone())).collect();
        self.group_by_exprs(keys, aggregates)
    }

    /// `.groupBy(key expressions).agg(aggregates)`, each key named (aliased) as given.
    pub fn group_by_exprs(
        mut self,
        keys: Vec<(Column, String)>,
        aggregates: Vec<(Column, String)>,
    ) -> Frame {
        let shown: Vec<String> = keys
            .iter()
            .map(|(column, name)| {
                if column.text == format!("col({})", python_str(name)) {
                    python_str(name)
                } else {
                    format!("{}.alias({})", column.text, python_str(name))
                }
            })
            .collect();
        let aggs: Vec<&str> = aggregates.iter().map(|(c, _)| c.text.as_str()).collect();
        self.lines.push(format!(
            ".groupBy({}).agg({})",
            shown.join(", "),
            aggs.join(", ")
        ));
        let mut columns: Vec<String> = keys.iter().map(|(_, name)| name.clone()).collect();
        columns.extend(aggregates.iter().map(|(_, name)| name.clone()));
        self.relation = relation(pb::relation::RelType::Aggregate(Box::new(pb::Aggregate {
            input: Some(Box::new(self.relation)),
            group_type: pb::aggregate::GroupType::Groupby as i32,
            grouping_expressions: keys
                .into_iter()
                .map(|(column, name)| column.alias(&name).expr)
                .collect(),
            aggregate_expressions: aggregates.into_iter().map(|(c, _)| c.expr).collect(),
            pivot: None,
            grouping_sets: Vec::new(),
        })));
        self.columns = columns;
        self
    }

    /// `.orderBy(keys)`: a global sort.
    pub fn sort(mut self, keys: Vec<SortKey>) -> Frame {
        let text: Vec<&str> = keys.iter().map(|k| k.text.as_str()).collect();
        self.lines.push(format!(".orderBy({})", text.join(", ")));
        self.relation = relation(pb::relation::RelType::Sort(Box::new(pb::Sort {
            input: Some(Box::new(self.relation)),
            order: keys.into_iter().map(|k| k.order).collect(),
            is_global: Some(true),
        })));
        self
    }

    /// `.limit(rows)`.
    pub fn limit(mut self, rows: i32) -> Frame {
        self.lines.push(format!(".limit({rows})"));
        self.relation = relation(pb::relation::RelType::Limit(Box::new(pb::Limit {
            input: Some(Box::new(self.relation)),
            limit: rows,
        })));
        self
    }

    /// The relation to send.
    pub fn relation(&self) -> &pb::Relation {
        &self.relation
    }

    /// The program as PySpark-like text, one operation a line.
    pub fn text(&self) -> String {
        self.lines.join("\n    ")
    }
}

/// A Python string literal of `text` (what `runner plan` shows; also safe on a terminal:
/// control characters are escaped).
pub fn python_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A Java regular expression matching `text` literally (as Java's `Pattern.quote`).
pub fn java_quote(text: &str) -> String {
    format!("\\Q{}\\E", text.replace("\\E", "\\E\\\\E\\Q"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_shows_the_program_sent() {
        let frame = Frame::read_text(vec!["file:///data/play.txt".into()])
            .select(vec![col("value").alias("line")], vec!["line".into()])
            .filter(call(">=", vec![col("line"), lit_i64(3)]))
            .limit(5);
        assert_eq!(
            frame.text(),
            "spark.read.text(\"file:///data/play.txt\", lineSep=\"\\n\")\n    .select(col(\"value\").alias(\"line\"))\n    .filter((col(\"line\") >= 3))\n    .limit(5)"
        );
        assert_eq!(frame.columns(), ["line"]);
        let Some(pb::relation::RelType::Limit(limit)) = &frame.relation().rel_type else {
            panic!("the last operation is the outermost relation");
        };
        assert_eq!(limit.limit, 5);
    }

    #[test]
    fn names_are_quoted_as_written() {
        let Some(ex::ExprType::UnresolvedAttribute(a)) = col("a`b.c").expr.expr_type else {
            panic!("a column is an attribute");
        };
        assert_eq!(a.unparsed_identifier, "`a``b.c`");
    }

    #[test]
    fn long_lists_are_shortened_in_the_text_only() {
        let items: Vec<Column> = (0..10).map(lit_i64).collect();
        let column = col("n").is_in(items);
        assert!(column.text().ends_with("... 4 more)"), "{}", column.text());
        let Some(ex::ExprType::UnresolvedFunction(f)) = &column.expr.expr_type else {
            panic!("in is a function");
        };
        assert_eq!(f.arguments.len(), 11);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(python_str("a\"\u{1b}[31m"), "\"a\\\"\\u001b[31m\"");
        assert_eq!(java_quote(r"a\Eb"), r"\Qa\E\\E\Qb\E");
    }
}
