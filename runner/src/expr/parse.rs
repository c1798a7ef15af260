//! Parses tokens into an untyped tree (`Ast`), each node with the offset it starts at.
//!
//! Precedence, loosest first: `or`; `and`; `not`; comparisons, `in`, `between`, `is null`,
//! `like`, `matches`; `+ -`; `* / %`; unary `-`; literals, names, calls and parentheses.

use super::lex::{Sym, Token};

#[derive(Debug, Clone)]
pub(super) struct Ast {
    /// Byte offset in the source where the node starts.
    pub at: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub(super) enum Kind {
    Column(String),
    Text(String),
    Int(u64),
    Float(f64),
    Bool(bool),
    Null,
    Neg(Box<Ast>),
    Not(Box<Ast>),
    Binary(BinOp, Box<Ast>, Box<Ast>),
    In(Box<Ast>, Vec<Ast>, bool),
    Between(Box<Ast>, Box<Ast>, Box<Ast>, bool),
    IsNull(Box<Ast>, bool),
    Like(Box<Ast>, Box<Ast>, bool),
    Matches(Box<Ast>, Box<Ast>, bool),
    Call(String, Vec<Ast>),
    /// `cast(x as type)`; the flag is `try_cast` (null instead of an error).
    Cast(Box<Ast>, String, usize, bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    pub(super) fn text(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "and",
            BinOp::Or => "or",
        }
    }
}

#[derive(Clone, Copy)]
enum Infix {
    Binary(BinOp),
    /// `a || b`: `concat(a, b)`, a chain of them one call.
    Pipes,
    /// `is`, `in`, `between`, `like`, `matches` (possibly after `not`).
    Postfix,
}

fn op_precedence(op: BinOp) -> u8 {
    match op {
        BinOp::Or => 1,
        BinOp::And => 2,
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 4,
        BinOp::Add | BinOp::Sub => 5,
        BinOp::Mul | BinOp::Div | BinOp::Rem => 6,
    }
}

/// The call `a || b` is parsed into: `concat` under the name the checker's messages show.
pub(super) const PIPES: &str = "||";

/// How deeply parentheses, `not`, `-` and calls may nest. Parsing, typing, evaluating and
/// dropping the tree all recurse once per level, so without a bound a long run of `(`
/// overflows the stack.
pub(super) const MAX_DEPTH: usize = 64;

/// How many binary operators an expression may have: a chain of them is a tree as deep as it
/// is long, which evaluating (on a worker's stack) and dropping recurse through.
pub(super) const MAX_OPERATORS: usize = 256;

/// `in \`source\` at character N: message`.
/// A long expression is shown only around the position (the YAML snippet has the rest).
pub(super) fn at_column(source: &str, at: usize, message: &str) -> String {
    // On one line (a YAML block scalar has line breaks); each is one character still.
    let one_line = source.replace(['\n', '\r', '\t'], " ");
    let source = one_line.as_str();
    let at = at.min(source.len());
    let column = source[..at].chars().count() + 1;
    const SHOWN: usize = 60;
    if source.chars().count() <= 2 * SHOWN {
        return format!("in `{source}` at character {column}: {message}");
    }
    let before: String = {
        let chars: Vec<char> = source[..at].chars().rev().take(SHOWN).collect();
        chars.into_iter().rev().collect()
    };
    let after: String = source[at..].chars().take(SHOWN).collect();
    format!("in `…{before}{after}…` at character {column}: {message}")
}

pub(super) struct Parser<'a> {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    source: &'a str,
    depth: usize,
    operators: usize,
}

/// Words with a meaning of their own: a column with such a name is written in backticks.
const KEYWORDS: &[&str] = &[
    "and", "or", "not", "in", "between", "is", "null", "like", "matches", "true", "false", "as",
];

impl<'a> Parser<'a> {
    pub(super) fn new(source: &'a str) -> Result<Self, String> {
        let tokens = super::lex::lex(source).map_err(|(at, msg)| at_column(source, at, &msg))?;
        Ok(Parser {
            tokens,
            pos: 0,
            source,
            depth: 0,
            operators: 0,
        })
    }

    /// One whole expression.
    pub(super) fn expression(mut self) -> Result<Ast, String> {
        let ast = self.climb(1)?;
        self.end()?;
        Ok(ast)
    }

    /// An expression with an optional `as name` after it (an item of `select`).
    pub(super) fn named(mut self) -> Result<(Ast, Option<String>), String> {
        let ast = self.climb(1)?;
        let name = if self.keyword("as") {
            match self.take() {
                Some(Token::Ident(name) | Token::Quoted(name)) => Some(name),
                _ => {
                    self.pos = self.pos.saturating_sub(1);
                    return Err(self.error("`as` needs the new column's name"));
                }
            }
        } else {
            None
        };
        self.end()?;
        Ok((ast, name))
    }

    fn end(&self) -> Result<(), String> {
        match self.tokens.get(self.pos) {
            None => Ok(()),
            Some((at, token)) => Err(at_column(
                self.source,
                *at,
                &format!(
                    "unexpected {} after a complete expression",
                    token.describe()
                ),
            )),
        }
    }

    fn nested<T>(
        &mut self,
        parse: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<T, String> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(&format!(
                "the expression nests more than {MAX_DEPTH} levels of parentheses, calls, `-` or `not`"
            )));
        }
        self.depth += 1;
        let parsed = parse(self);
        self.depth -= 1;
        parsed
    }

    fn count_operator(&mut self) -> Result<(), String> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            self.pos -= 1;
            return Err(self.error(&format!(
                "the expression has more than {MAX_OPERATORS} operators; split it into several steps"
            )));
        }
        Ok(())
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn take(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).map(|(_, t)| t.clone());
        if token.is_some() {
            self.pos += 1;
        }
        token
    }

    fn here(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map_or(self.source.len(), |(at, _)| *at)
    }

    fn error(&self, message: &str) -> String {
        at_column(self.source, self.here(), message)
    }

    fn is_keyword(&self, offset: usize, word: &str) -> bool {
        matches!(self.tokens.get(self.pos + offset), Some((_, Token::Ident(w))) if w.eq_ignore_ascii_case(word))
    }

    fn keyword(&mut self, word: &str) -> bool {
        if self.is_keyword(0, word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn sym(&mut self, sym: Sym) -> bool {
        if self.peek() == Some(&Token::Sym(sym)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, sym: Sym) -> Result<(), String> {
        if self.sym(sym) {
            Ok(())
        } else if self.peek().is_none() {
            Err(self.error(&format!(
                "the expression ends too early; expected `{}`",
                sym.text()
            )))
        } else {
            Err(self.error(&format!("expected `{}`", sym.text())))
        }
    }

    /// Precedence climbing: the operators binding at least as tightly as `min`, left to right
    /// (one loop instead of a function per level keeps the stack shallow per nesting).
    fn climb(&mut self, min: u8) -> Result<Ast, String> {
        let mut left = self.prefix()?;
        loop {
            let Some((precedence, op)) = self.infix() else {
                return Ok(left);
            };
            if precedence < min {
                return Ok(left);
            }
            left = match op {
                Infix::Binary(op) => {
                    self.pos += 1;
                    self.count_operator()?;
                    let right = self.climb(precedence + 1)?;
                    Ast {
                        at: left.at,
                        kind: Kind::Binary(op, Box::new(left), Box::new(right)),
                    }
                }
                Infix::Pipes => {
                    self.pos += 1;
                    self.count_operator()?;
                    let right = self.climb(precedence + 1)?;
                    match left.kind {
                        Kind::Call(name, mut args) if name == PIPES => {
                            args.push(right);
                            Ast {
                                at: left.at,
                                kind: Kind::Call(name, args),
                            }
                        }
                        kind => Ast {
                            at: left.at,
                            kind: Kind::Call(
                                PIPES.to_owned(),
                                vec![Ast { at: left.at, kind }, right],
                            ),
                        },
                    }
                }
                Infix::Postfix => self.postfix(left)?,
            };
        }
    }

    /// The operator at the current token, with its precedence (`or` 1, `and` 2, comparisons
    /// and `in`/`between`/`is`/`like`/`matches` 4, `+ - ||` 5, `* / %` 6).
    fn infix(&self) -> Option<(u8, Infix)> {
        let binary = |op| Some((op_precedence(op), Infix::Binary(op)));
        match self.peek()? {
            Token::Sym(Sym::Eq) => binary(BinOp::Eq),
            Token::Sym(Sym::Ne) => binary(BinOp::Ne),
            Token::Sym(Sym::Lt) => binary(BinOp::Lt),
            Token::Sym(Sym::Le) => binary(BinOp::Le),
            Token::Sym(Sym::Gt) => binary(BinOp::Gt),
            Token::Sym(Sym::Ge) => binary(BinOp::Ge),
            Token::Sym(Sym::Plus) => binary(BinOp::Add),
            Token::Sym(Sym::Minus) => binary(BinOp::Sub),
            Token::Sym(Sym::Star) => binary(BinOp::Mul),
            Token::Sym(Sym::Slash) => binary(BinOp::Div),
            Token::Sym(Sym::Percent) => binary(BinOp::Rem),
            // Spark's grammar puts `||` beside `+` and `-`.
            Token::Sym(Sym::Pipes) => Some((5, Infix::Pipes)),
            Token::Ident(w) if w.eq_ignore_ascii_case("or") => binary(BinOp::Or),
            Token::Ident(w) if w.eq_ignore_ascii_case("and") => binary(BinOp::And),
            Token::Ident(_)
                if ["is", "in", "between", "like", "matches"]
                    .iter()
                    .any(|w| self.is_keyword(0, w))
                    || (self.is_keyword(0, "not")
                        && ["in", "between", "like", "matches"]
                            .iter()
                            .any(|w| self.is_keyword(1, w))) =>
            {
                Some((4, Infix::Postfix))
            }
            _ => None,
        }
    }

    /// `not x`, `-x`, or a primary.
    fn prefix(&mut self) -> Result<Ast, String> {
        let at = self.here();
        if self.keyword("not") {
            let inner = self.nested(|p| p.climb(3))?;
            return Ok(Ast {
                at,
                kind: Kind::Not(Box::new(inner)),
            });
        }
        if self.sym(Sym::Minus) {
            let inner = self.nested(|p| p.climb(7))?;
            return Ok(Ast {
                at,
                kind: Kind::Neg(Box::new(inner)),
            });
        }
        self.primary()
    }

    /// `x is [not] null`, `x [not] in [..]`, `x [not] between a and b`, `x [not] like p`,
    /// `x [not] matches p` (the current token starts the operator).
    fn postfix(&mut self, left: Ast) -> Result<Ast, String> {
        let at = left.at;
        self.count_operator()?;
        if self.keyword("is") {
            let negated = self.keyword("not");
            if !self.keyword("null") {
                return Err(self.error("expected `null` after `is` (`x is null`, `x is not null`)"));
            }
            return Ok(Ast {
                at,
                kind: Kind::IsNull(Box::new(left), negated),
            });
        }
        let negated = self.keyword("not");
        let boxed = Box::new(left);
        let kind = if self.keyword("in") {
            Kind::In(boxed, self.list()?, negated)
        } else if self.keyword("between") {
            let low = self.climb(5)?;
            if !self.keyword("and") {
                return Err(self.error("`between` needs `and`: `x between 1 and 5`"));
            }
            let high = self.climb(5)?;
            Kind::Between(boxed, Box::new(low), Box::new(high), negated)
        } else if self.keyword("like") {
            Kind::Like(boxed, Box::new(self.climb(5)?), negated)
        } else {
            self.keyword("matches");
            Kind::Matches(boxed, Box::new(self.climb(5)?), negated)
        };
        Ok(Ast { at, kind })
    }

    fn list(&mut self) -> Result<Vec<Ast>, String> {
        let close = if self.sym(Sym::LBracket) {
            Sym::RBracket
        } else if self.sym(Sym::LParen) {
            Sym::RParen
        } else {
            return Err(self.error("`in` needs a list, like `in [\"a\", \"b\"]`"));
        };
        self.items(close)
    }

    /// Comma-separated expressions up to `close` (taken).
    fn items(&mut self, close: Sym) -> Result<Vec<Ast>, String> {
        let mut items = Vec::new();
        if self.sym(close) {
            return Ok(items);
        }
        loop {
            items.push(self.nested(|p| p.climb(1))?);
            if self.sym(close) {
                return Ok(items);
            }
            if !self.sym(Sym::Comma) {
                return Err(if self.peek().is_none() {
                    self.error(&format!(
                        "the expression ends too early; expected `,` or `{}`",
                        close.text()
                    ))
                } else {
                    self.error(&format!("expected `,` or `{}`", close.text()))
                });
            }
        }
    }

    fn primary(&mut self) -> Result<Ast, String> {
        let at = self.here();
        let Some(token) = self.take() else {
            return Err(self.error("the expression ends too early"));
        };
        let kind = match token {
            Token::Text(s) => Kind::Text(s),
            Token::Int(n) => Kind::Int(n),
            Token::Float(x) => Kind::Float(x),
            Token::Quoted(name) => Kind::Column(name),
            Token::Sym(Sym::LParen) => {
                let inner = self.nested(|p| p.climb(1))?;
                self.expect(Sym::RParen)?;
                return Ok(inner);
            }
            Token::Ident(word) => {
                let lower = word.to_ascii_lowercase();
                if self.peek() == Some(&Token::Sym(Sym::LParen)) {
                    self.pos += 1;
                    return self.nested(|p| p.call(at, lower));
                }
                match lower.as_str() {
                    "true" => Kind::Bool(true),
                    "false" => Kind::Bool(false),
                    "null" => Kind::Null,
                    keyword if KEYWORDS.contains(&keyword) => {
                        return Err(at_column(
                            self.source,
                            at,
                            &format!("unexpected `{word}` (a column with this name is written in backticks: `{word}`)"),
                        ));
                    }
                    _ => Kind::Column(word),
                }
            }
            other => {
                return Err(at_column(
                    self.source,
                    at,
                    &format!("unexpected {}", other.describe()),
                ))
            }
        };
        Ok(Ast { at, kind })
    }

    /// A call after its `(`: `cast(x as type)` has its own shape; the rest take expressions.
    fn call(&mut self, at: usize, name: String) -> Result<Ast, String> {
        if name == "cast" || name == "try_cast" {
            let value = self.climb(1)?;
            let type_at = self.here();
            let type_name = if self.keyword("as") {
                match self.take() {
                    Some(Token::Ident(t)) => t,
                    _ => {
                        return Err(at_column(
                            self.source,
                            type_at,
                            "expected a type after `as`",
                        ))
                    }
                }
            } else if self.sym(Sym::Comma) {
                match self.take() {
                    Some(Token::Text(t)) => t,
                    _ => return Err(at_column(self.source, type_at, "expected a type name")),
                }
            } else {
                return Err(self.error("`cast` is written `cast(x as integer)`"));
            };
            self.expect(Sym::RParen)?;
            return Ok(Ast {
                at,
                kind: Kind::Cast(Box::new(value), type_name, type_at, name == "try_cast"),
            });
        }
        // SQL's `count(*)`: the rows, as `count()` counts them.
        if name == "count"
            && self.peek() == Some(&Token::Sym(Sym::Star))
            && self.tokens.get(self.pos + 1).map(|(_, t)| t) == Some(&Token::Sym(Sym::RParen))
        {
            self.pos += 2;
            return Ok(Ast {
                at,
                kind: Kind::Call(name, Vec::new()),
            });
        }
        let args = self.items(Sym::RParen)?;
        Ok(Ast {
            at,
            kind: Kind::Call(name, args),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree written back with every operation in parentheses.
    fn shape(ast: &Ast) -> String {
        match &ast.kind {
            Kind::Column(c) => c.clone(),
            Kind::Text(s) => format!("{s:?}"),
            Kind::Int(n) => n.to_string(),
            Kind::Float(x) => format!("{x:?}"),
            Kind::Bool(b) => b.to_string(),
            Kind::Null => "null".into(),
            Kind::Neg(a) => format!("(-{})", shape(a)),
            Kind::Not(a) => format!("(not {})", shape(a)),
            Kind::Binary(op, l, r) => format!("({} {} {})", shape(l), op.text(), shape(r)),
            Kind::In(v, items, n) => format!(
                "({} {}in [{}])",
                shape(v),
                if *n { "not " } else { "" },
                items.iter().map(shape).collect::<Vec<_>>().join(", ")
            ),
            Kind::Between(v, l, h, n) => format!(
                "({} {}between {} and {})",
                shape(v),
                if *n { "not " } else { "" },
                shape(l),
                shape(h)
            ),
            Kind::IsNull(v, n) => format!("({} is {}null)", shape(v), if *n { "not " } else { "" }),
            Kind::Like(v, p, _) => format!("({} like {})", shape(v), shape(p)),
            Kind::Matches(v, p, _) => format!("({} matches {})", shape(v), shape(p)),
            Kind::Call(f, args) => format!(
                "{f}({})",
                args.iter().map(shape).collect::<Vec<_>>().join(", ")
            ),
            Kind::Cast(v, t, _, _) => format!("cast({} as {t})", shape(v)),
        }
    }

    fn parsed(src: &str) -> String {
        shape(
            &Parser::new(src)
                .unwrap()
                .expression()
                .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(parsed("a + b * c - d"), "((a + (b * c)) - d)");
        assert_eq!(
            parsed("-a * 2 >= 3 AND NOT b or c"),
            "(((((-a) * 2) >= 3) and (not b)) or c)"
        );
        assert_eq!(
            parsed("x between 1 and 2 and y"),
            "((x between 1 and 2) and y)"
        );
        assert_eq!(parsed("x not in (1, 2)"), "(x not in [1, 2])");
        assert_eq!(parsed("x is not null"), "(x is not null)");
        assert_eq!(parsed("length(lower(w)) > 3"), "(length(lower(w)) > 3)");
        assert_eq!(parsed("cast(n as float) / 2"), "(cast(n as float) / 2)");
        assert_eq!(parsed("now()"), "now()");
        // `||` beside `+`, left to right; a chain is one call.
        assert_eq!(parsed("a || b || c + d"), "(||(a, b, c) + d)");
        assert_eq!(parsed("a || (b || c)"), "||(a, ||(b, c))");
        assert_eq!(parsed("a || b == c"), "(||(a, b) == c)");
    }

    #[test]
    fn named_items_and_errors() {
        let (ast, name) = Parser::new("length(word) as len").unwrap().named().unwrap();
        assert_eq!(
            (shape(&ast), name.as_deref()),
            ("length(word)".into(), Some("len"))
        );
        let err = |src: &str| Parser::new(src).unwrap().expression().unwrap_err();
        assert!(
            err("(a > 1").contains("ends too early; expected `)`"),
            "{}",
            err("(a > 1")
        );
        assert!(err("a > 1 2").contains("unexpected number 2"));
        assert!(err("a is 3").contains("expected `null`"));
        assert!(err("in > 1").contains("written in backticks"));
        assert!(err(&"(".repeat(100)).contains("nests more than 64"));
        assert!(err(&vec!["a"; 300].join(" + ")).contains("more than 256 operators"));
    }
}
