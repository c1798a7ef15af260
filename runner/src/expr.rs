//! The `where:` expression language of `filter`: comparisons (`== != < <= > >=`), `in [..]`,
//! `and`, `or`, `not`, parentheses, string/number/boolean literals and column names (bare, or
//! in backticks when they contain other characters). Type-checked against the input schema
//! when the pipeline is validated, so a mistake is reported before any data is read.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_buffer::BooleanBuffer;
use arrow_schema::{DataType, Schema};

use crate::data::{cell, column_index, type_label, Cell};

/// A compiled, type-checked predicate.
#[derive(Debug, Clone)]
pub struct Predicate {
    root: Node,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Type {
    Text,
    Number,
    Bool,
}

impl Type {
    fn of(data_type: &DataType) -> Option<Type> {
        match data_type {
            DataType::Utf8 => Some(Type::Text),
            DataType::Int64 | DataType::Float64 => Some(Type::Number),
            DataType::Boolean => Some(Type::Bool),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Type::Text => "text",
            Type::Number => "a number",
            Type::Bool => "a boolean",
        }
    }
}

/// A number as written or stored: integers stay exact (an i64 above 2^53 has no f64 twin),
/// and an integer compares with a float by value, exactly.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn cmp_exact(self, other: Num) -> Option<std::cmp::Ordering> {
        use std::cmp::Ordering;
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b),
            (Num::Int(a), Num::Float(b)) => int_cmp_float(a, b),
            (Num::Float(a), Num::Int(b)) => int_cmp_float(b, a).map(Ordering::reverse),
        }
    }
}

/// `int` against `float` by their exact values (`None` for NaN).
fn int_cmp_float(int: i64, float: f64) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering;
    if float.is_nan() {
        return None;
    }
    // 2^63 is exact as f64; every f64 in [-2^63, 2^63) truncates to an i64 exactly.
    if float >= 9_223_372_036_854_775_808.0 {
        return Some(Ordering::Less);
    }
    if float < -9_223_372_036_854_775_808.0 {
        return Some(Ordering::Greater);
    }
    let whole = float.trunc();
    Some(int.cmp(&(whole as i64)).then_with(|| {
        let fraction = float - whole;
        0.0f64.partial_cmp(&fraction).unwrap_or(Ordering::Equal)
    }))
}

impl PartialEq for Num {
    fn eq(&self, other: &Num) -> bool {
        self.cmp_exact(*other) == Some(std::cmp::Ordering::Equal)
    }
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Num) -> Option<std::cmp::Ordering> {
        self.cmp_exact(*other)
    }
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Num::Int(i) => write!(f, "{i}"),
            Num::Float(x) => write!(f, "{x}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Text(String),
    Number(Num),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// Whether `l op r` holds (false where `PartialOrd` cannot order them, as for NaN).
    fn holds<T: PartialOrd + ?Sized>(self, l: &T, r: &T) -> bool {
        match self {
            CmpOp::Eq => l == r,
            CmpOp::Ne => l != r,
            CmpOp::Lt => l < r,
            CmpOp::Le => l <= r,
            CmpOp::Gt => l > r,
            CmpOp::Ge => l >= r,
        }
    }

    /// The operator with its operands swapped: `a < b` is `b > a`.
    fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            same => same,
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    Column(usize),
    Literal(Literal),
    Compare(CmpOp, Box<Node>, Box<Node>),
    In(Box<Node>, Vec<Literal>, bool),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Text(String),
    Number(Num),
    Op(CmpOp),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

/// Parses and type-checks `source` against `schema`.
pub fn compile(source: &str, schema: &Schema) -> Result<Predicate, String> {
    let tokens = lex(source).map_err(|(at, msg)| at_column(source, at, &msg))?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        schema,
        source,
        depth: 0,
        operators: 0,
    };
    let (root, ty) = parser.or()?;
    if let Some((at, token)) = parser.tokens.get(parser.pos) {
        return Err(at_column(
            source,
            *at,
            &format!("unexpected {} after a complete expression", describe(token)),
        ));
    }
    if ty != Type::Bool {
        return Err(format!(
            "`{source}` is {}, not a condition; compare it, e.g. `{source} > 0`",
            ty.label()
        ));
    }
    Ok(Predicate { root })
}

fn at_column(source: &str, at: usize, message: &str) -> String {
    let column = source[..at.min(source.len())].chars().count() + 1;
    format!("in `{source}` at character {column}: {message}")
}

fn describe(token: &Token) -> String {
    match token {
        Token::Ident(name) => format!("`{name}`"),
        Token::Text(s) => format!("string \"{s}\""),
        Token::Number(n) => format!("number {n}"),
        Token::Op(_) => "a comparison".into(),
        Token::LParen => "`(`".into(),
        Token::RParen => "`)`".into(),
        Token::LBracket => "`[`".into(),
        Token::RBracket => "`]`".into(),
        Token::Comma => "`,`".into(),
    }
}

fn lex(src: &str) -> Result<Vec<(usize, Token)>, (usize, String)> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let token = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => Token::LParen,
            b')' => Token::RParen,
            b'[' => Token::LBracket,
            b']' => Token::RBracket,
            b',' => Token::Comma,
            b'=' if bytes.get(i + 1) == Some(&b'=') => {
                i += 1;
                Token::Op(CmpOp::Eq)
            }
            b'=' => return Err((i, "`=` is not a comparison; use `==`".into())),
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 1;
                Token::Op(CmpOp::Ne)
            }
            b'<' | b'>' => {
                let or_equal = bytes.get(i + 1) == Some(&b'=');
                if or_equal {
                    i += 1;
                }
                Token::Op(match (c, or_equal) {
                    (b'<', false) => CmpOp::Lt,
                    (b'<', true) => CmpOp::Le,
                    (_, false) => CmpOp::Gt,
                    (_, true) => CmpOp::Ge,
                })
            }
            b'"' | b'\'' => {
                let mut value = String::new();
                let mut chars = src[i + 1..].char_indices();
                loop {
                    match chars.next() {
                        None => return Err((start, "this string has no closing quote".into())),
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, 't')) => value.push('\t'),
                            Some((_, other)) => value.push(other),
                            None => return Err((start, "this string has no closing quote".into())),
                        },
                        Some((offset, q)) if q as u32 == c as u32 => {
                            i += offset + 1;
                            break;
                        }
                        Some((_, other)) => value.push(other),
                    }
                }
                Token::Text(value)
            }
            b'`' => {
                let end = src[i + 1..]
                    .find('`')
                    .ok_or((start, "this column name has no closing backtick".to_owned()))?;
                let name = src[i + 1..i + 1 + end].to_owned();
                i += end + 1;
                Token::Ident(name)
            }
            b'0'..=b'9' | b'-' | b'.' => {
                let mut end = i + 1;
                while end < bytes.len()
                    && (bytes[end].is_ascii_digit()
                        || matches!(bytes[end], b'.' | b'e' | b'E' | b'_'))
                {
                    end += 1;
                }
                let text = src[i..end].replace('_', "");
                let value = match text.parse::<i64>() {
                    Ok(int) => Num::Int(int),
                    Err(_) => Num::Float(
                        text.parse()
                            .map_err(|_| (start, format!("`{}` is not a number", &src[i..end])))?,
                    ),
                };
                i = end - 1;
                Token::Number(value)
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let rest = &src[i..];
                let len = rest
                    .char_indices()
                    .find(|(_, ch)| !(ch.is_alphanumeric() || *ch == '_'))
                    .map_or(rest.len(), |(at, _)| at);
                if len == 0 {
                    // A non-ASCII character that cannot start a name (a combining mark, a
                    // symbol): without this check the lexer stood still, pushing empty names.
                    let ch = rest.chars().next().unwrap_or('?');
                    return Err((i, format!("unexpected character `{ch}`")));
                }
                i += len - 1;
                Token::Ident(rest[..len].to_owned())
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err((i, format!("unexpected character `{ch}`")));
            }
        };
        tokens.push((start, token));
        i += 1;
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    schema: &'a Schema,
    source: &'a str,
    /// Parentheses and `not`s open around the current position (see `MAX_DEPTH`).
    depth: usize,
    /// `and`s and `or`s so far (see `MAX_OPERATORS`).
    operators: usize,
}

/// How deeply parentheses and `not` may nest. The parser, the evaluator and dropping the tree
/// all recurse once per level, so without a bound a long run of `(` overflows the stack.
const MAX_DEPTH: usize = 64;

/// How many `and`/`or` an expression may have: a chain of them is a tree as deep as it is
/// long, which evaluating (on a worker's stack) and dropping recurse through.
const MAX_OPERATORS: usize = 256;

impl Parser<'_> {
    /// Runs `parse` one nesting level deeper, refusing to go past `MAX_DEPTH`.
    fn nested<T>(
        &mut self,
        parse: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<T, String> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(&format!(
                "the expression nests more than {MAX_DEPTH} levels of parentheses or `not`"
            )));
        }
        self.depth += 1;
        let parsed = parse(self);
        self.depth -= 1;
        parsed
    }

    /// Counts one more `and`/`or`, refusing to go past `MAX_OPERATORS`.
    fn count_operator(&mut self) -> Result<(), String> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            self.pos -= 1;
            return Err(self.error(&format!(
                "the expression has more than {MAX_OPERATORS} `and`/`or` operators; split it into several filter steps"
            )));
        }
        Ok(())
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn here(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map_or(self.source.len(), |(at, _)| *at)
    }

    fn error(&self, message: &str) -> String {
        at_column(self.source, self.here(), message)
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(w)) if w == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_bool(&self, ty: Type, at: usize, what: &str) -> Result<(), String> {
        if ty == Type::Bool {
            Ok(())
        } else {
            Err(at_column(
                self.source,
                at,
                &format!("`{what}` needs a condition, found {}", ty.label()),
            ))
        }
    }

    fn or(&mut self) -> Result<(Node, Type), String> {
        let at = self.here();
        let (mut left, mut ty) = self.and()?;
        while self.keyword("or") {
            self.count_operator()?;
            self.expect_bool(ty, at, "or")?;
            let right_at = self.here();
            let (right, right_ty) = self.and()?;
            self.expect_bool(right_ty, right_at, "or")?;
            left = Node::Or(Box::new(left), Box::new(right));
            ty = Type::Bool;
        }
        Ok((left, ty))
    }

    fn and(&mut self) -> Result<(Node, Type), String> {
        let at = self.here();
        let (mut left, mut ty) = self.not()?;
        while self.keyword("and") {
            self.count_operator()?;
            self.expect_bool(ty, at, "and")?;
            let right_at = self.here();
            let (right, right_ty) = self.not()?;
            self.expect_bool(right_ty, right_at, "and")?;
            left = Node::And(Box::new(left), Box::new(right));
            ty = Type::Bool;
        }
        Ok((left, ty))
    }

    fn not(&mut self) -> Result<(Node, Type), String> {
        if self.keyword("not") {
            let at = self.here();
            let (inner, ty) = self.nested(Self::not)?;
            self.expect_bool(ty, at, "not")?;
            return Ok((Node::Not(Box::new(inner)), Type::Bool));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<(Node, Type), String> {
        let left_at = self.here();
        let (left, left_ty) = self.primary()?;
        if let Some(Token::Op(op)) = self.peek().cloned() {
            let op_at = self.here();
            self.pos += 1;
            let (right, right_ty) = self.primary()?;
            if left_ty != right_ty {
                return Err(at_column(
                    self.source,
                    op_at,
                    &format!(
                        "cannot compare {} with {}",
                        left_ty.label(),
                        right_ty.label()
                    ),
                ));
            }
            if left_ty == Type::Bool && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(at_column(
                    self.source,
                    op_at,
                    "booleans can only be compared with == and !=",
                ));
            }
            return Ok((
                Node::Compare(op, Box::new(left), Box::new(right)),
                Type::Bool,
            ));
        }
        let negated = if matches!(self.peek(), Some(Token::Ident(w)) if w == "not")
            && matches!(self.tokens.get(self.pos + 1), Some((_, Token::Ident(w))) if w == "in")
        {
            self.pos += 1;
            true
        } else {
            false
        };
        if self.keyword("in") {
            let items = self.list(left_ty)?;
            return Ok((Node::In(Box::new(left), items, negated), Type::Bool));
        }
        let _ = left_at;
        Ok((left, left_ty))
    }

    fn list(&mut self, item_ty: Type) -> Result<Vec<Literal>, String> {
        if self.peek() != Some(&Token::LBracket) {
            return Err(self.error("`in` needs a list, like `in [\"a\", \"b\"]`"));
        }
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(&Token::RBracket) {
                self.pos += 1;
                return Ok(items);
            }
            let at = self.here();
            let literal = match self.tokens.get(self.pos).map(|(_, t)| t.clone()) {
                Some(Token::Text(s)) => Literal::Text(s),
                Some(Token::Number(n)) => Literal::Number(n),
                Some(Token::Ident(w)) if w == "true" || w == "false" => Literal::Bool(w == "true"),
                _ => return Err(self.error("expected a literal value in the list")),
            };
            if literal_type(&literal) != item_ty {
                return Err(at_column(
                    self.source,
                    at,
                    &format!(
                        "this list holds {} but is matched against {}",
                        literal_type(&literal).label(),
                        item_ty.label()
                    ),
                ));
            }
            items.push(literal);
            self.pos += 1;
            match self.peek() {
                Some(Token::Comma) => self.pos += 1,
                Some(Token::RBracket) => {}
                _ => return Err(self.error("expected `,` or `]` in the list")),
            }
        }
    }

    fn primary(&mut self) -> Result<(Node, Type), String> {
        let Some((at, token)) = self.tokens.get(self.pos).cloned() else {
            return Err(self.error("the expression ends too early"));
        };
        self.pos += 1;
        match token {
            Token::Number(n) => Ok((Node::Literal(Literal::Number(n)), Type::Number)),
            Token::Text(s) => Ok((Node::Literal(Literal::Text(s)), Type::Text)),
            Token::Ident(w) if w == "true" || w == "false" => {
                Ok((Node::Literal(Literal::Bool(w == "true")), Type::Bool))
            }
            Token::Ident(name) => {
                if self.peek() == Some(&Token::LParen) {
                    return Err(at_column(
                        self.source,
                        at,
                        &format!(
                            "`{name}(...)`: functions are not supported in `where:`; compare columns with values, e.g. `word != \"x\" and count >= 60`"
                        ),
                    ));
                }
                let index =
                    column_index(self.schema, &name).map_err(|e| at_column(self.source, at, &e))?;
                let data_type = self.schema.field(index).data_type();
                let ty = Type::of(data_type).ok_or_else(|| {
                    at_column(
                        self.source,
                        at,
                        &format!(
                            "column `{name}` holds {}, which filter cannot compare",
                            type_label(data_type)
                        ),
                    )
                })?;
                Ok((Node::Column(index), ty))
            }
            Token::LParen => {
                let inner = self.nested(Self::or)?;
                if self.peek() != Some(&Token::RParen) {
                    return Err(self.error("expected `)`"));
                }
                self.pos += 1;
                Ok(inner)
            }
            other => Err(at_column(
                self.source,
                at,
                &format!("unexpected {}", describe(&other)),
            )),
        }
    }
}

fn literal_type(literal: &Literal) -> Type {
    match literal {
        Literal::Text(_) => Type::Text,
        Literal::Number(_) => Type::Number,
        Literal::Bool(_) => Type::Bool,
    }
}

/// A value while evaluating one row.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Value<'a> {
    Null,
    Text(&'a str),
    Number(Num),
    Bool(bool),
}

impl<'a> From<&'a Literal> for Value<'a> {
    fn from(literal: &'a Literal) -> Self {
        match literal {
            Literal::Text(s) => Value::Text(s),
            Literal::Number(n) => Value::Number(*n),
            Literal::Bool(b) => Value::Bool(*b),
        }
    }
}

impl Predicate {
    /// The columns it reads, in order, each once.
    pub fn columns(&self) -> Vec<usize> {
        fn walk(node: &Node, out: &mut Vec<usize>) {
            match node {
                Node::Column(index) => out.push(*index),
                Node::Literal(_) => {}
                Node::Compare(_, left, right) | Node::And(left, right) | Node::Or(left, right) => {
                    walk(left, out);
                    walk(right, out);
                }
                Node::In(inner, _, _) | Node::Not(inner) => walk(inner, out),
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Evaluates the predicate on every row; a comparison involving null is false.
    pub fn evaluate(&self, batch: &RecordBatch) -> BooleanArray {
        let columns = batch.columns();
        if let Some(mask) = mask(&self.root, columns) {
            return BooleanArray::new(mask, None);
        }
        (0..batch.num_rows())
            .map(|row| Some(eval(&self.root, columns, row) == Value::Bool(true)))
            .collect()
    }
}

/// The predicate over whole columns where it has that shape: comparisons of a number or text
/// column with a literal, and `and`/`or`/`not` of those (one tight loop per comparison instead
/// of a tree walk per row: a word count's `count >= 60` meets a million rows). `None`: evaluate
/// row by row. Same results as `eval`, nulls included (they compare false).
fn mask(node: &Node, columns: &[ArrayRef]) -> Option<BooleanBuffer> {
    match node {
        Node::Compare(op, left, right) => match (&**left, &**right) {
            (Node::Column(index), Node::Literal(literal)) => {
                compare_column(columns[*index].as_ref(), *op, literal)
            }
            (Node::Literal(literal), Node::Column(index)) => {
                compare_column(columns[*index].as_ref(), op.flipped(), literal)
            }
            _ => None,
        },
        Node::And(left, right) => Some(&mask(left, columns)? & &mask(right, columns)?),
        Node::Or(left, right) => Some(&mask(left, columns)? | &mask(right, columns)?),
        // The inner node is a comparison or a combination of them: never null, so `not` is
        // plain negation.
        Node::Not(inner) => Some(!&mask(inner, columns)?),
        _ => None,
    }
}

fn compare_column(array: &dyn Array, op: CmpOp, literal: &Literal) -> Option<BooleanBuffer> {
    let valid = |row: usize| array.is_valid(row);
    let rows = array.len();
    match (array.data_type(), literal) {
        (DataType::Int64, Literal::Number(Num::Int(n))) => {
            let values = array.as_primitive::<Int64Type>().values();
            Some(BooleanBuffer::collect_bool(rows, |row| {
                op.holds(&values[row], n) && valid(row)
            }))
        }
        (DataType::Int64, Literal::Number(n)) => {
            let values = array.as_primitive::<Int64Type>().values();
            Some(BooleanBuffer::collect_bool(rows, |row| {
                op.holds(&Num::Int(values[row]), n) && valid(row)
            }))
        }
        (DataType::Float64, Literal::Number(Num::Float(n))) => {
            let values = array.as_primitive::<Float64Type>().values();
            Some(BooleanBuffer::collect_bool(rows, |row| {
                op.holds(&values[row], n) && valid(row)
            }))
        }
        (DataType::Float64, Literal::Number(n)) => {
            let values = array.as_primitive::<Float64Type>().values();
            Some(BooleanBuffer::collect_bool(rows, |row| {
                op.holds(&Num::Float(values[row]), n) && valid(row)
            }))
        }
        (DataType::Utf8, Literal::Text(text)) => {
            let strings = array.as_string::<i32>();
            Some(BooleanBuffer::collect_bool(rows, |row| {
                op.holds(strings.value(row), text.as_str()) && valid(row)
            }))
        }
        _ => None,
    }
}

fn eval<'a>(node: &'a Node, columns: &'a [ArrayRef], row: usize) -> Value<'a> {
    match node {
        Node::Column(index) => match cell(columns[*index].as_ref() as &dyn Array, row) {
            Cell::Text(s) => Value::Text(s),
            Cell::Int(i) => Value::Number(Num::Int(i)),
            Cell::Float(f) => Value::Number(Num::Float(f)),
            Cell::Bool(b) => Value::Bool(b),
            _ => Value::Null,
        },
        Node::Literal(literal) => literal.into(),
        Node::Compare(op, left, right) => {
            let (l, r) = (eval(left, columns, row), eval(right, columns, row));
            if l == Value::Null || r == Value::Null {
                return Value::Bool(false);
            }
            Value::Bool(op.holds(&l, &r))
        }
        Node::In(value, items, negated) => {
            let v = eval(value, columns, row);
            if v == Value::Null {
                return Value::Bool(false);
            }
            Value::Bool(items.iter().any(|item| Value::from(item) == v) != *negated)
        }
        Node::And(l, r) => {
            Value::Bool(truthy(eval(l, columns, row)) && truthy(eval(r, columns, row)))
        }
        Node::Or(l, r) => {
            Value::Bool(truthy(eval(l, columns, row)) || truthy(eval(r, columns, row)))
        }
        Node::Not(inner) => match eval(inner, columns, row) {
            Value::Null => Value::Bool(false),
            v => Value::Bool(!truthy(v)),
        },
    }
}

fn truthy(value: Value) -> bool {
    value == Value::Bool(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        crate::data::word_counts(&["romeo", "thou", "i’ll", "one"], &[298, 277, 59, 60])
    }

    /// Row by row, as `evaluate` does for shapes `mask` does not take.
    fn row_by_row(predicate: &Predicate, batch: &RecordBatch) -> Vec<bool> {
        (0..batch.num_rows())
            .map(|row| eval(&predicate.root, batch.columns(), row) == Value::Bool(true))
            .collect()
    }

    proptest::proptest! {
        /// The whole-column path gives what the row-by-row path gives, nulls and NaN included.
        #[test]
        fn columns_and_rows_agree(
            rows in proptest::collection::vec(
                (proptest::option::of("[a-c]{0,2}"), proptest::option::of(-3i64..4),
                 proptest::option::of(proptest::sample::select(vec![-1.5, 0.0, 2.0, f64::NAN]))),
                0..40,
            ),
            expr in proptest::sample::select(vec![
                "count >= 1", "1 < count", "count != 2 and word == 'b'", "not (word < 'b') or x > 0",
                "x == 2", "not x != 2", "2 >= x and not (count <= -1)", "word >= 'ab' or count == 0",
            ]),
        ) {
            use arrow_array::{Float64Array, Int64Array, StringArray};
            let schema = Arc::new(Schema::new(vec![
                arrow_schema::Field::new("word", DataType::Utf8, true),
                arrow_schema::Field::new("count", DataType::Int64, true),
                arrow_schema::Field::new("x", DataType::Float64, true),
            ]));
            let batch = RecordBatch::try_new(schema.clone(), vec![
                Arc::new(rows.iter().map(|r| r.0.clone()).collect::<StringArray>()),
                Arc::new(rows.iter().map(|r| r.1).collect::<Int64Array>()),
                Arc::new(rows.iter().map(|r| r.2).collect::<Float64Array>()),
            ]).unwrap();
            let predicate = compile(expr, &schema).unwrap();
            proptest::prop_assert!(mask(&predicate.root, batch.columns()).is_some());
            let evaluated: Vec<bool> = predicate.evaluate(&batch).iter().map(|v| v.unwrap()).collect();
            proptest::prop_assert_eq!(evaluated, row_by_row(&predicate, &batch), "{}", expr);
        }
    }

    fn keep(expr: &str) -> Vec<bool> {
        let b = batch();
        let p = compile(expr, &b.schema()).unwrap_or_else(|e| panic!("{e}"));
        p.evaluate(&b).iter().map(|v| v.unwrap()).collect()
    }

    fn error(expr: &str) -> String {
        compile(expr, &batch().schema()).unwrap_err()
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
        assert_eq!(keep("word not in ['thou']"), [true, false, true, true]);
        assert_eq!(
            keep("word != 'i’ll' and count > 1e2"),
            [true, true, false, false]
        );
        assert_eq!(keep("`count` <= -1"), [false, false, false, false]);
    }

    #[test]
    fn type_errors_are_found_before_data() {
        assert!(error("count >= 'a'").contains("cannot compare a number with text"));
        assert!(error("cuont > 1").contains("did you mean `count`?"));
        assert!(error("count").contains("not a condition"));
        assert!(error("count > 1 and word").contains("`and` needs a condition"));
        assert!(error("word in [1, 2]").contains("list holds a number"));
        assert!(error("count = 5").contains("use `==`"));
        assert!(error("(count > 1").contains("expected `)`"));
        assert!(error("count > ").contains("ends too early"));
        assert!(error("word == 'x").contains("no closing quote"));
        assert!(error("count > 1 2").contains("unexpected number"));
        assert!(error("count ~ 1").contains("character 7"));
        assert!(error("length(word) > 5")
            .contains("at character 1: `length(...)`: functions are not supported"));
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
        // 10,000 comparisons in a chain overflowed a worker's stack when evaluated.
        let chain = vec!["count > 1"; 10_000].join(" and ");
        assert!(error(&chain).contains("more than 256 `and`/`or` operators"));
        let chain = vec!["count > 1"; 257].join(" or ");
        assert!(compile(&chain, &batch().schema()).is_ok());
        let fine = format!("{}count > 1{}", "(".repeat(60), ")".repeat(60));
        assert_eq!(keep(&fine), [true, true, true, true]);
    }

    #[test]
    fn integers_compare_exactly_above_2_pow_53() {
        use arrow_array::Int64Array;
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "n",
            DataType::Int64,
            false,
        )]));
        let big = 9_007_199_254_740_993i64; // 2^53 + 1: as f64 it would be 2^53
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![
                big - 1,
                big,
                big + 1,
                i64::MAX,
            ]))],
        )
        .unwrap();
        let keep = |expr: &str| -> Vec<bool> {
            let predicate = compile(expr, &schema).unwrap();
            let by_column = predicate.evaluate(&batch);
            // The row-by-row path (a comparison of two expressions) agrees.
            let rows: Vec<bool> = (0..batch.num_rows())
                .map(|row| eval(&predicate.root, batch.columns(), row) == Value::Bool(true))
                .collect();
            let by_column: Vec<bool> = by_column.iter().map(|v| v == Some(true)).collect();
            assert_eq!(by_column, rows, "{expr}");
            rows
        };
        assert_eq!(keep("n == 9007199254740993"), [false, true, false, false]);
        assert_eq!(keep("n > 9007199254740992"), [false, true, true, true]);
        assert_eq!(keep("n < 9007199254740994.0"), [true, true, false, false]);
        assert_eq!(keep("n < 0.5"), [false, false, false, false]);
        assert_eq!(
            keep("n >= 9223372036854775807"),
            [false, false, false, true]
        );
        assert_eq!(keep("n < 1e30"), [true, true, true, true]);
        assert_eq!(keep("n in [9007199254740994]"), [false, false, true, false]);
    }

    /// Found by the `where_expr` fuzz target: a non-ASCII character that is not alphanumeric
    /// (here the combining mark U+0596) after a name made the lexer loop forever.
    #[test]
    fn a_non_alphanumeric_character_is_an_error_not_a_hang() {
        assert!(error("word\u{596}n in [1, 2]").contains("unexpected character `\u{596}`"));
        assert!(error("\u{2603} == 'x'").contains("at character 1: unexpected character"));
    }
}
