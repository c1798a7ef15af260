//! The plain JSON lines reader: reads the declared fields of each line's object straight into
//! columns and checks, without keeping, everything else on the line.
//!
//! Arrow's JSON reader first writes every value of every line onto a tape (each string copied,
//! each number kept as text) and then builds the declared columns from it: on JSON lines whose
//! objects hold more than the pipeline reads (the usual case: a status has dozens of fields),
//! four fifths of a run went to the tape. This reader walks each line once and keeps only the
//! declared fields (dotted paths go down into nested objects).
//!
//! It reads a strict subset of what Arrow's reader reads, and gives the same values for it:
//! standard JSON (RFC 8259), one object per line, nesting at most `MAX_DEPTH` deep, the declared
//! fields' keys once per object and unescaped; text columns take strings (unescaped as Arrow's
//! reader unescapes them), numbers as written and booleans as `true`/`false`, as Arrow's reader
//! does; integer and float columns take numbers parsed by the parser Arrow's reader uses
//! (`lexical-core`; for an integer column, a float only without a fraction); boolean columns
//! take `true`/`false`; list-of-text columns take arrays of what a text column takes, and
//! `null`s; any column `null`. A line with anything else (a string for a number, a
//! number that leaves i64, a bad line) it gives back, and Arrow's reader decides, with its own
//! errors and line numbers. The test `plain_json_reads_what_the_reader_reads` holds it to that
//! on random lines.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, StringArray};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field};

use super::ColumnSpec;
use crate::data::ValueType;

/// Objects nested deeper than this (counting the line's own) go to Arrow's reader.
const MAX_DEPTH: usize = 64;

/// The declared fields of a JSON lines source, as a tree of keys.
#[derive(Debug)]
pub(super) struct PlainJson {
    root: Node,
    /// Each output column's kind, in `columns:` order.
    kinds: Vec<Kind>,
    /// How many keys the tree has (leaves and objects), for the per-line duplicate check.
    keys: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Integer,
    Float,
    Bool,
    /// A list of text: an array of strings (numbers and booleans as their text, as in a text
    /// column) and nulls.
    TextList,
}

/// The keys read at one level of the objects.
#[derive(Debug, Default)]
struct Node {
    children: Vec<Key>,
    /// Each child's place by name, once there are more than `FEW_KEYS` (an object of 60,000
    /// keys took 20 s searched in a list, once per key).
    places: std::collections::HashMap<Box<[u8]>, usize, foldhash::fast::RandomState>,
}

/// Keys of one level searched in a list, which is quicker than hashing for so few.
const FEW_KEYS: usize = 16;

impl Node {
    /// The place of the child named `name`.
    fn place(&self, name: &[u8]) -> Option<usize> {
        match self.children.len() > FEW_KEYS {
            true => self.places.get(name).copied(),
            false => self.children.iter().position(|k| *k.name == *name),
        }
    }

    /// Adds a child, and indexes the children once there are many.
    fn push(&mut self, key: Key) -> usize {
        self.children.push(key);
        let at = self.children.len() - 1;
        if self.children.len() > FEW_KEYS {
            if self.places.is_empty() {
                for (at, key) in self.children.iter().enumerate() {
                    self.places.insert(key.name.clone(), at);
                }
            } else {
                self.places.insert(self.children[at].name.clone(), at);
            }
        }
        at
    }
}

#[derive(Debug)]
struct Key {
    name: Box<[u8]>,
    /// This key's number among all keys of the tree (see `PlainJson::keys`).
    id: usize,
    child: Child,
}

#[derive(Debug)]
enum Child {
    /// A column: its index in `columns:`.
    Column(usize),
    /// An object holding deeper declared fields.
    Object(Node),
}

/// The columns of a run of lines as they are being read.
enum Values {
    Text {
        offsets: Vec<i32>,
        bytes: Vec<u8>,
        valid: Vec<bool>,
    },
    Integer(Vec<i64>, Vec<bool>),
    Float(Vec<f64>, Vec<bool>),
    Bool(Vec<bool>, Vec<bool>),
    /// Each row's items in `items` (a `Text`) from `offsets[row]` to `offsets[row + 1]`.
    TextList {
        offsets: Vec<i32>,
        items: Box<Values>,
        valid: Vec<bool>,
    },
}

impl Values {
    fn new(kind: Kind, rows: usize) -> Values {
        match kind {
            Kind::Text => {
                let mut offsets = Vec::with_capacity(rows + 1);
                offsets.push(0);
                Values::Text {
                    offsets,
                    bytes: Vec::with_capacity(rows * 8),
                    valid: Vec::with_capacity(rows),
                }
            }
            Kind::Integer => Values::Integer(Vec::with_capacity(rows), Vec::with_capacity(rows)),
            Kind::Float => Values::Float(Vec::with_capacity(rows), Vec::with_capacity(rows)),
            Kind::Bool => Values::Bool(Vec::with_capacity(rows), Vec::with_capacity(rows)),
            Kind::TextList => {
                let mut offsets = Vec::with_capacity(rows + 1);
                offsets.push(0);
                Values::TextList {
                    offsets,
                    items: Box::new(Values::new(Kind::Text, rows)),
                    valid: Vec::with_capacity(rows),
                }
            }
        }
    }

    /// Values held (rows, or a list's items).
    fn len(&self) -> usize {
        match self {
            Values::Text { valid, .. }
            | Values::Integer(_, valid)
            | Values::Float(_, valid)
            | Values::Bool(_, valid)
            | Values::TextList { valid, .. } => valid.len(),
        }
    }

    fn push_null(&mut self) {
        match self {
            Values::Text {
                offsets,
                bytes,
                valid,
            } => {
                // The length was checked to fit when the bytes were added.
                offsets.push(bytes.len() as i32);
                valid.push(false);
            }
            Values::Integer(values, valid) => {
                values.push(0);
                valid.push(false);
            }
            Values::Float(values, valid) => {
                values.push(0.0);
                valid.push(false);
            }
            Values::Bool(values, valid) => {
                values.push(false);
                valid.push(false);
            }
            Values::TextList {
                offsets,
                items,
                valid,
            } => {
                // Item counts were checked to fit when the items were added.
                offsets.push(items.len() as i32);
                valid.push(false);
            }
        }
    }

    /// Keeps the first `rows` values.
    fn truncate(&mut self, rows: usize) {
        match self {
            Values::Text {
                offsets,
                bytes,
                valid,
            } => {
                offsets.truncate(rows + 1);
                bytes.truncate(offsets[rows] as usize);
                valid.truncate(rows);
            }
            Values::Integer(values, valid) => {
                values.truncate(rows);
                valid.truncate(rows);
            }
            Values::Float(values, valid) => {
                values.truncate(rows);
                valid.truncate(rows);
            }
            Values::Bool(values, valid) => {
                values.truncate(rows);
                valid.truncate(rows);
            }
            Values::TextList {
                offsets,
                items,
                valid,
            } => {
                offsets.truncate(rows + 1);
                items.truncate(offsets[rows] as usize);
                valid.truncate(rows);
            }
        }
    }

    /// Adds a text value; `None` when the column's bytes would pass `i32` offsets.
    fn push_text(&mut self, text: &[u8]) -> Option<()> {
        if let Values::Text {
            offsets,
            bytes,
            valid,
        } = self
        {
            bytes.extend_from_slice(text);
            offsets.push(i32::try_from(bytes.len()).ok()?);
            valid.push(true);
        }
        Some(())
    }

    fn push_integer(&mut self, value: i64) {
        if let Values::Integer(values, valid) = self {
            values.push(value);
            valid.push(true);
        }
    }

    fn push_float(&mut self, value: f64) {
        if let Values::Float(values, valid) = self {
            values.push(value);
            valid.push(true);
        }
    }

    fn push_bool(&mut self, value: bool) {
        if let Values::Bool(values, valid) = self {
            values.push(value);
            valid.push(true);
        }
    }

    fn into_array(self) -> ArrayRef {
        let nulls = |valid: Vec<bool>| {
            let nulls = NullBuffer::from(valid);
            (nulls.null_count() > 0).then_some(nulls)
        };
        match self {
            Values::Text {
                offsets,
                bytes,
                valid,
            } => Arc::new(StringArray::new(
                // Offsets only grow, from 0, each by a value's length.
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                bytes.into(),
                nulls(valid),
            )),
            Values::Integer(values, valid) => {
                Arc::new(Int64Array::new(values.into(), nulls(valid)))
            }
            Values::Float(values, valid) => {
                Arc::new(Float64Array::new(values.into(), nulls(valid)))
            }
            Values::Bool(values, valid) => Arc::new(BooleanArray::new(values.into(), nulls(valid))),
            Values::TextList {
                offsets,
                items,
                valid,
            } => Arc::new(ListArray::new(
                // The type `list of text` has (`ValueType::data_type`).
                Arc::new(Field::new_list_field(DataType::Utf8, true)),
                // Offsets only grow, from 0, each by a row's item count.
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                items.into_array(),
                nulls(valid),
            )),
        }
    }
}

impl PlainJson {
    /// The reader for `columns`, or `None` when their paths clash.
    pub(super) fn new(columns: &[ColumnSpec]) -> Option<PlainJson> {
        let mut root = Node::default();
        let mut kinds = Vec::with_capacity(columns.len());
        let mut keys = 0;
        for (index, column) in columns.iter().enumerate() {
            kinds.push(match column.value_type {
                ValueType::Text | ValueType::Timestamp => Kind::Text,
                ValueType::Integer => Kind::Integer,
                ValueType::Float => Kind::Float,
                ValueType::Bool => Kind::Bool,
                ValueType::TextList => Kind::TextList,
            });
            let parts: Vec<&str> = column.name.split('.').collect();
            insert(&mut root, &parts, index, &mut keys)?;
            // A dotted name is also a key of its own (`{"log.level": "info"}`).
            if parts.len() > 1 {
                insert(&mut root, &[column.name.as_str()], index, &mut keys)?;
            }
        }
        Some(PlainJson { root, kinds, keys })
    }

    /// The declared columns of `lines` (one object each), in `columns:` order, with the types
    /// Arrow's reader gives them (timestamps as text), and the lines that are not plain (null
    /// in those columns, for Arrow's reader to read); `None` when more than one line in eight
    /// is not plain (Arrow's reader then reads them all, which costs less than line by line).
    /// `whole`: the lines as one slice, when they are (its UTF-8 is checked at once).
    pub(super) fn read(&self, lines: &[(usize, &[u8])], whole: Option<&[u8]>) -> Option<PlainRead> {
        // Arrow's reader checks the UTF-8 of strings; invalid bytes elsewhere do not parse.
        let all_utf8 = whole.is_some_and(|whole| simdutf8::basic::from_utf8(whole).is_ok());
        let most_others = lines.len() / 8 + 1;
        let mut values: Vec<Values> = self
            .kinds
            .iter()
            .map(|&kind| Values::new(kind, lines.len()))
            .collect();
        let mut others = Vec::new();
        // The line on which each key was last seen (0: never), to find a key given twice.
        let mut seen = vec![0usize; self.keys];
        let mut columns_seen = vec![0usize; self.kinds.len()];
        for (number, (_, line)) in lines.iter().enumerate() {
            let stamp = number + 1;
            let mut reader = LineReader {
                line,
                at: 0,
                values: &mut values,
                seen: &mut seen,
                columns_seen: &mut columns_seen,
                stamp,
            };
            let plain = (all_utf8 || simdutf8::basic::from_utf8(line).is_ok())
                && reader.whole_line(&self.root).is_some();
            if !plain {
                // Its values read so far are taken back; Arrow's reader fills the row.
                for values in values.iter_mut() {
                    values.truncate(number);
                    values.push_null();
                }
                others.push(number);
                if others.len() > most_others {
                    return None;
                }
                continue;
            }
            for (column, values) in values.iter_mut().enumerate() {
                if columns_seen[column] != stamp {
                    values.push_null();
                }
            }
        }
        Some(PlainRead {
            columns: values.into_iter().map(Values::into_array).collect(),
            others,
        })
    }
}

/// What `PlainJson::read` read.
pub(super) struct PlainRead {
    /// The declared columns, a row per line.
    pub columns: Vec<ArrayRef>,
    /// The lines (indexes into the lines read) that are not plain: null in `columns`.
    pub others: Vec<usize>,
}

/// Adds the path `parts` of column `index` to the tree; `None` when a path is both a value and
/// an object (the decoder refuses that before) or declared twice.
fn insert(node: &mut Node, parts: &[&str], index: usize, keys: &mut usize) -> Option<()> {
    let (part, rest) = parts.split_first()?;
    let at = match node.place(part.as_bytes()) {
        Some(at) => at,
        None => {
            *keys += 1;
            node.push(Key {
                name: part.as_bytes().into(),
                id: *keys - 1,
                child: match rest.is_empty() {
                    true => Child::Column(index),
                    false => Child::Object(Node::default()),
                },
            })
        }
    };
    match (&mut node.children[at].child, rest.is_empty()) {
        (Child::Object(deeper), false) => insert(deeper, rest, index, keys),
        (Child::Column(existing), true) if *existing == index => Some(()),
        _ => None,
    }
}

/// One line being read; `at` is the next byte.
struct LineReader<'a, 'v> {
    line: &'a [u8],
    at: usize,
    values: &'v mut [Values],
    seen: &'v mut [usize],
    columns_seen: &'v mut [usize],
    stamp: usize,
}

impl<'a> LineReader<'a, '_> {
    /// The line's one object, with only whitespace around it.
    fn whole_line(&mut self, root: &Node) -> Option<()> {
        self.whitespace();
        if self.next()? != b'{' {
            return None;
        }
        self.object(root, 1)?;
        self.whitespace();
        (self.at == self.line.len()).then_some(())
    }

    fn next(&mut self) -> Option<u8> {
        let byte = *self.line.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn peek(&self) -> Option<u8> {
        self.line.get(self.at).copied()
    }

    /// JSON's whitespace (the reader's: space, tab, carriage return, newline).
    fn whitespace(&mut self) {
        whitespace(self.line, &mut self.at);
    }

    /// The rest of an object whose `{` was read, keeping the keys of `node`.
    fn object(&mut self, node: &Node, depth: usize) -> Option<()> {
        self.members(depth, |this| {
            let name = this.plain_string()?;
            this.colon()?;
            match node.place(name).map(|at| &node.children[at]) {
                None => this.skip_value(depth),
                Some(key) => {
                    if this.seen[key.id] == this.stamp {
                        return None; // given twice: Arrow's reader keeps the last
                    }
                    this.seen[key.id] = this.stamp;
                    match &key.child {
                        Child::Column(column) => this.value(*column),
                        Child::Object(deeper) => match this.next()? {
                            b'{' => this.object(deeper, depth + 1),
                            b'n' => this.literal(b"ull"),
                            _ => None,
                        },
                    }
                }
            }
        })
    }

    /// The members of an object whose `{` was read, `depth` deep: `member` reads each one's
    /// key (its `"` read) and value.
    #[inline(always)]
    fn members(
        &mut self,
        depth: usize,
        mut member: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.items(depth, b'}', |this| match this.next()? {
            b'"' => member(this),
            _ => None,
        })
    }

    /// The items of an object or array whose opening byte was read, `depth` deep, up to
    /// `close`: `item` reads each one; commas and whitespace lie between them.
    #[inline(always)]
    fn items(
        &mut self,
        depth: usize,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.whitespace();
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            item(self)?;
            self.whitespace();
            match self.next()? {
                b',' => self.whitespace(),
                byte if byte == close => return Some(()),
                _ => return None,
            }
        }
    }

    /// The `:` after a member's key, with the whitespace around it.
    fn colon(&mut self) -> Option<()> {
        self.whitespace();
        if self.next()? != b':' {
            return None;
        }
        self.whitespace();
        Some(())
    }

    /// A declared field's value, added to its column.
    fn value(&mut self, column: usize) -> Option<()> {
        // Both `"a.b"` and `"a": {"b"}` on one line: given back (Arrow's reader takes `"a.b"`).
        if self.columns_seen[column] == self.stamp {
            return None;
        }
        self.columns_seen[column] = self.stamp;
        let first = self.next()?;
        if first == b'n' {
            self.literal(b"ull")?;
            self.values[column].push_null();
            return Some(());
        }
        let values = &mut self.values[column];
        match values {
            Values::Text { .. } => {
                text_value(self.line, &mut self.at, first, &mut self.values[column])?
            }
            Values::TextList {
                offsets,
                items,
                valid,
            } => {
                if first != b'[' {
                    return None;
                }
                text_items(self.line, &mut self.at, items)?;
                offsets.push(i32::try_from(items.len()).ok()?);
                valid.push(true);
            }
            Values::Integer(..) => {
                // An integer, or a float with no fraction that it holds exactly; anything else
                // is given back, and found bad.
                let token = self.number(first)?;
                // `number` checked JSON's syntax: digits alone parse as they are.
                let number = match lexical_core::parse::<i64>(token) {
                    Ok(number) => number,
                    Err(_) => super::exact_integer(token)?,
                };
                self.values[column].push_integer(number);
            }
            Values::Float(..) => {
                let number = lexical_core::parse::<f64>(self.number(first)?).ok()?;
                self.values[column].push_float(number);
            }
            Values::Bool(..) => {
                let value = match first {
                    b't' => self.literal(b"rue").map(|_| true)?,
                    b'f' => self.literal(b"alse").map(|_| false)?,
                    _ => return None,
                };
                self.values[column].push_bool(value);
            }
        }
        Some(())
    }

    /// The rest of a string whose `"` was read, when it has no escape.
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        let end = start + plain_string_length(&self.line[start..])?;
        self.at = end + 1;
        Some(&self.line[start..end])
    }

    /// The rest of a literal whose first byte was read.
    fn literal(&mut self, rest: &[u8]) -> Option<()> {
        literal(self.line, &mut self.at, rest)
    }

    /// A number whose first byte was read (see `number`).
    fn number(&mut self, first: u8) -> Option<&'a [u8]> {
        number(self.line, &mut self.at, first)
    }

    /// Checks a value nobody reads, its first byte not yet read.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        match self.next()? {
            b'"' => self.skip_string(),
            b'{' => self.skip_object(depth + 1),
            b'[' => self.skip_array(depth + 1),
            b't' => self.literal(b"rue"),
            b'f' => self.literal(b"alse"),
            b'n' => self.literal(b"ull"),
            first @ (b'-' | b'0'..=b'9') => self.number(first).map(|_| ()),
            _ => None,
        }
    }

    fn skip_object(&mut self, depth: usize) -> Option<()> {
        self.members(depth, |this| {
            this.skip_string()?;
            this.colon()?;
            this.skip_value(depth)
        })
    }

    fn skip_array(&mut self, depth: usize) -> Option<()> {
        self.items(depth, b']', |this| this.skip_value(depth))
    }

    /// The rest of a string nobody reads, whose `"` was read.
    fn skip_string(&mut self) -> Option<()> {
        read_string(self.line, &mut self.at, None)
    }
}

/// A text value whose first byte `first` was read (not `null`; `at` is past it), added to
/// `values` (a `Text`): a string unescaped, or a number or boolean as written (Arrow's reader
/// writes them as text).
fn text_value(line: &[u8], at: &mut usize, first: u8, values: &mut Values) -> Option<()> {
    match first {
        b'"' => {
            let Values::Text {
                offsets,
                bytes,
                valid,
            } = values
            else {
                return None;
            };
            read_string(line, at, Some(bytes))?;
            offsets.push(i32::try_from(bytes.len()).ok()?);
            valid.push(true);
        }
        b't' => {
            literal(line, at, b"rue")?;
            values.push_text(b"true")?;
        }
        b'f' => {
            literal(line, at, b"alse")?;
            values.push_text(b"false")?;
        }
        b'-' | b'0'..=b'9' => {
            let number = number(line, at, first)?;
            values.push_text(number)?;
        }
        _ => return None,
    }
    Some(())
}

/// The rest of a list of text whose `[` was read, its items added to `items` (a `Text`): text
/// values and nulls (a nested list or an object is not plain).
fn text_items(line: &[u8], at: &mut usize, items: &mut Values) -> Option<()> {
    whitespace(line, at);
    if *line.get(*at)? == b']' {
        *at += 1;
        return Some(());
    }
    loop {
        let first = *line.get(*at)?;
        *at += 1;
        match first {
            b'n' => {
                literal(line, at, b"ull")?;
                items.push_null();
            }
            first => text_value(line, at, first, items)?,
        }
        whitespace(line, at);
        let next = *line.get(*at)?;
        *at += 1;
        match next {
            b',' => whitespace(line, at),
            b']' => return Some(()),
            _ => return None,
        }
    }
}

/// Skips JSON's whitespace (the reader's: space, tab, carriage return, newline).
fn whitespace(line: &[u8], at: &mut usize) {
    while let Some(b' ' | b'\t' | b'\r' | b'\n') = line.get(*at) {
        *at += 1;
    }
}

/// The rest of a literal whose first byte was read (`at` is past it).
fn literal(line: &[u8], at: &mut usize, rest: &[u8]) -> Option<()> {
    let end = *at + rest.len();
    (line.get(*at..end)? == rest).then_some(())?;
    *at = end;
    Some(())
}

/// A number whose first byte `first` was read (`at` is past it), as JSON writes numbers:
/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn number<'a>(line: &'a [u8], at: &mut usize, first: u8) -> Option<&'a [u8]> {
    let start = *at - 1;
    let digits = |at: &mut usize| {
        let from = *at;
        while let Some(b'0'..=b'9') = line.get(*at) {
            *at += 1;
        }
        *at > from
    };
    let first_digit = match first {
        b'-' => {
            *at += 1;
            *line.get(*at - 1)?
        }
        digit => digit,
    };
    match first_digit {
        b'0' => {}
        b'1'..=b'9' => {
            digits(at);
        }
        _ => return None,
    }
    if line.get(*at) == Some(&b'.') {
        *at += 1;
        digits(at).then_some(())?;
    }
    if let Some(b'e' | b'E') = line.get(*at) {
        *at += 1;
        if let Some(b'+' | b'-') = line.get(*at) {
            *at += 1;
        }
        digits(at).then_some(())?;
    }
    Some(&line[start..*at])
}

/// The rest of a string whose `"` was read (`at` is past it; it ends past the closing one):
/// its escapes checked as Arrow's reader checks them (JSON's, a `\u` escape of a surrogate
/// half only as a high half followed by a low one) and, with `out`, its text unescaped as Arrow's
/// reader unescapes it, added to `out`.
fn read_string(line: &[u8], at: &mut usize, mut out: Option<&mut Vec<u8>>) -> Option<()> {
    loop {
        let rest = line.get(*at..)?;
        let stop = quote_or_backslash(rest)?;
        if let Some(out) = out.as_deref_mut() {
            out.extend_from_slice(&rest[..stop]);
        }
        *at += stop + 1;
        if rest[stop] == b'"' {
            return Some(());
        }
        let escape = *line.get(*at)?;
        *at += 1;
        let byte = match escape {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let high = hex4(line, at)?;
                let c = match char::from_u32(high) {
                    Some(c) => c,
                    None if (0xD800..=0xDBFF).contains(&high) => {
                        if line.get(*at..*at + 2)? != b"\\u" {
                            return None;
                        }
                        *at += 2;
                        let low = hex4(line, at)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return None;
                        }
                        char::from_u32((((high - 0xD800) << 10) | (low - 0xDC00)) + 0x1_0000)?
                    }
                    None => return None,
                };
                if let Some(out) = out.as_deref_mut() {
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                continue;
            }
            _ => return None,
        };
        if let Some(out) = out.as_deref_mut() {
            out.push(byte);
        }
    }
}

/// `text` with each escaped surrogate pair (`\ud842\udfb7`) written as its character's UTF-8
/// instead, for Arrow's reader: arrow-json 60 decodes a pair of a character past U+1FFFF into
/// a wrong one (it ORs the 0x10000 in rather than adding it: `\ud842\udfb7`, 𠮷 U+20BB7, came
/// out as U+10BB7). A string may hold the character as it is, so the JSON means the same;
/// `\\` before a `u` is an escaped backslash, not an escape, and is left alone.
pub(super) fn surrogate_pairs_as_utf8(text: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if memchr::memmem::find(text, b"\\u").is_none() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = memchr::memchr(b'\\', &text[at..]) {
        let escape = at + found;
        out.extend_from_slice(&text[at..escape]);
        let pair = (text.get(escape + 1) == Some(&b'u'))
            .then(|| {
                let mut next = escape + 2;
                let high = hex4(text, &mut next)?;
                (text.get(next..next + 2)? == b"\\u").then_some(())?;
                next += 2;
                let low = hex4(text, &mut next)?;
                let pair = (0xD800..=0xDBFF).contains(&high) && (0xDC00..=0xDFFF).contains(&low);
                pair.then_some(())?;
                let c = char::from_u32((((high - 0xD800) << 10) | (low - 0xDC00)) + 0x1_0000)?;
                Some((c, next))
            })
            .flatten();
        match pair {
            Some((c, next)) => {
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                at = next;
            }
            None => {
                // The escape's two bytes as they are (`\\` stays an escaped backslash).
                let end = (escape + 2).min(text.len());
                out.extend_from_slice(&text[escape..end]);
                at = end;
            }
        }
    }
    out.extend_from_slice(&text[at..]);
    std::borrow::Cow::Owned(out)
}

/// Four hexadecimal digits at `at` (moved past them).
fn hex4(line: &[u8], at: &mut usize) -> Option<u32> {
    let digits = line.get(*at..*at + 4)?;
    let mut value = 0;
    for &digit in digits {
        value = value * 16 + (digit as char).to_digit(16)?;
    }
    *at += 4;
    Some(value)
}

/// The length of a string's bytes up to its closing `"`, when it has no escape before it.
fn plain_string_length(rest: &[u8]) -> Option<usize> {
    let stop = quote_or_backslash(rest)?;
    (rest[stop] == b'"').then_some(stop)
}

/// Where the first `"` or `\\` of `rest` is. Eight bytes at a time in a word: keys and most
/// values are a few bytes long, too short for `memchr`'s vector loop to pay for its start.
fn quote_or_backslash(rest: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `word` equal to `byte` (and perhaps of bytes above the
    // first such byte, whose borrow the subtraction carried up: only the lowest is used).
    let equal = |word: u64, byte: u8| {
        let x = word ^ (ONES * byte as u64);
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    let mut chunks = rest.chunks_exact(8);
    for (index, chunk) in chunks.by_ref().enumerate() {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let found = equal(word, b'"') | equal(word, b'\\');
        if found != 0 {
            return Some(index * 8 + found.trailing_zeros() as usize / 8);
        }
    }
    let tail = chunks.remainder();
    let at = rest.len() - tail.len();
    tail.iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|p| at + p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    fn spec(name: &str, type_text: &str) -> ColumnSpec {
        ColumnSpec::parse(name, type_text).unwrap()
    }

    #[test]
    fn reads_declared_fields_and_nested_paths_and_gives_back_what_is_not_plain() {
        let reader = PlainJson::new(&[
            spec("lang", "text?"),
            spec("n", "integer?"),
            spec("account.acct", "text?"),
            spec("account.bot", "bool?"),
            spec("x", "float?"),
        ])
        .unwrap();
        let lines: Vec<&[u8]> = vec![
            br#"{"lang":"en","n":3,"account":{"acct":"ana","bot":false},"x":1.5e1,"skip":[1,{"a":"\u00e9\ud83d\ude00"},null]}"#,
            br#" { "n" : -7 , "account" : null, "lang": 12.50 } "#,
            br#"{"lang":"a\"b\\c\/\u00e9\ud83d\ude00\n","account":{"acct":true,"bot":true},"n":-2e0}"#,
        ];
        let numbered: Vec<(usize, &[u8])> = lines.iter().copied().enumerate().collect();
        let read = reader.read(&numbered, None).unwrap();
        assert!(read.others.is_empty());
        let columns = read.columns;
        let text = |c: usize| {
            let a = columns[c].as_any().downcast_ref::<StringArray>().unwrap();
            a.iter().map(|v| v.map(str::to_owned)).collect::<Vec<_>>()
        };
        let some = |text: &str| Some(text.to_owned());
        assert_eq!(text(0), [some("en"), some("12.50"), some("a\"b\\c/é😀\n")]);
        assert_eq!(text(2), [some("ana"), None, some("true")]);
        let n = columns[1].as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(n.iter().collect::<Vec<_>>(), [Some(3), Some(-7), Some(-2)]);
        let bot = columns[3].as_any().downcast_ref::<BooleanArray>().unwrap();
        assert_eq!(
            bot.iter().collect::<Vec<_>>(),
            [Some(false), None, Some(true)]
        );
        let x = columns[4].as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(x.iter().collect::<Vec<_>>(), [Some(15.0), None, None]);

        for not_plain in [
            &br#"{"lang":"e\x"}"#[..],        // not an escape
            br#"{"lang":"\udc00"}"#,          // half a surrogate pair
            br#"{"n":-2.9}"#,                 // a fraction for an integer
            br#"{"lang":"\ud800\u0041"}"#,    // a high half without a low one
            br#"{"lang":{}}"#,                // an object for text
            br#"{"n":"5"}"#,                  // a string for a number
            br#"{"n":99999999999999999999}"#, // leaves i64
            br#"{"lang":"en","lang":"de"}"#,  // a key twice
            br#"{"l\u0061ng":"en"}"#,         // an escaped key
            br#"{"a":"\ud800"}"#,             // half a surrogate pair
            br#"{"a":01}"#,                   // not JSON's number
            br#"{"a":1,}"#,                   // a trailing comma
            br#"{"a":1} {}"#,                 // two objects
            br#"[1]"#,                        // not an object
            br#"{"account":{"acct":[]}}"#,    // a list for text
            br#"{"account":"x"}"#,            // not an object
            br#"{"a":"x"#,                    // unfinished
            b"{\"a\":\"\xff\"}",              // not UTF-8
        ] {
            let one = [(0, not_plain)];
            assert!(
                reader.read(&one, None).unwrap().others == [0],
                "{}",
                String::from_utf8_lossy(not_plain)
            );
        }
        let deep = format!("{}{}", "{\"a\":".repeat(80), "}".repeat(80));
        let deep = [(0, deep.as_bytes())];
        assert_eq!(reader.read(&deep, None).unwrap().others, [0]);

        // Lines that are not plain are left null for Arrow's reader, their values taken back;
        // past one line in eight, Arrow's reader reads them all.
        let mut mixed: Vec<(usize, &[u8])> = Vec::new();
        for i in 0..16 {
            mixed.push((
                i,
                match i {
                    3 => br#"{"lang":"xx","n":2,"account":{"acct":"yy","bot":tru}}"#,
                    9 => br#"{"n":5,"lang":"de","n":6}"#,
                    _ => br#"{"lang":"en","n":1}"#,
                },
            ));
        }
        let read = reader.read(&mixed, None).unwrap();
        assert_eq!(read.others, [3, 9]);
        let langs = read.columns[0]
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let ns = read.columns[1]
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        for row in 0..16 {
            let other = row == 3 || row == 9;
            assert_eq!(langs.is_null(row), other);
            assert_eq!(ns.is_null(row), other);
            assert!(other || langs.value(row) == "en" && ns.value(row) == 1);
        }
        assert_eq!(langs.value_data().len(), 14 * 2);
        mixed[5].1 = b"[]";
        mixed[7].1 = b"{";
        assert!(reader.read(&mixed, None).is_none());
    }

    #[test]
    fn quotes_and_backslashes_are_found_where_memchr_finds_them() {
        let mut text = Vec::new();
        for length in 0..40 {
            for at in 0..=length {
                for stop in [b'"', b'\\'] {
                    text.clear();
                    // Bytes next to the two, zero and high bytes: where a word's test could err.
                    let filler = [
                        b'a', 0x00, 0x21, 0x23, 0x5b, 0x5d, 0x80, 0xff, 0xa2, 0xdc, 0x01,
                    ];
                    text.extend((0..length).map(|i| filler[(i * 7 + at) % filler.len()]));
                    if at < length {
                        text[at] = stop;
                    }
                    assert_eq!(
                        quote_or_backslash(&text),
                        memchr::memchr2(b'"', b'\\', &text),
                        "{text:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn surrogate_pairs_are_written_as_their_characters_for_arrows_reader() {
        let cases: [(&[u8], &str); 6] = [
            (br#"{"a":"\ud842\udfb7 \ud83d\ude00"}"#, "{\"a\":\"𠮷 😀\"}"),
            (br#""\\ud842\udfb7""#, r#""\\ud842\udfb7""#), // an escaped backslash first
            (br#""\\\ud840\udc00""#, "\"\\\\\u{20000}\""),
            (
                br#""\ud800\u0041 \udc00 \u00e9""#,
                r#""\ud800\u0041 \udc00 \u00e9""#,
            ),
            (br#""\ud842\udf"#, r#""\ud842\udf"#), // cut short
            (br#"no escapes"#, "no escapes"),
        ];
        for (text, want) in cases {
            let got = surrogate_pairs_as_utf8(text);
            assert_eq!(String::from_utf8_lossy(&got), want);
        }
    }

    #[test]
    fn lists_of_text_are_read_and_half_read_ones_taken_back() {
        assert!(PlainJson::new(&[spec("a", "text"), spec("a.b", "text")]).is_none());
        let reader = PlainJson::new(&[spec("tags", "list<text>"), spec("n", "integer?")]).unwrap();
        let lines: [&[u8]; 6] = [
            br#"{"tags":["rust","\u00e9"],"n":1}"#,
            br#"{"tags":[ ] }"#,
            br#"{"tags":null}"#,
            br#"{"tags":["a",null,2.50,true]}"#,
            br#"{"tags":["a","b",["c"]]}"#, // a nested list: Arrow's reader says what it is
            br#"{"n":2,"tags":["z"]}"#,
        ];
        let numbered: Vec<(usize, &[u8])> = lines.iter().copied().enumerate().collect();
        let read = reader.read(&numbered, None).unwrap();
        assert_eq!(read.others, [4]);
        let tags = read.columns[0]
            .as_any()
            .downcast_ref::<ListArray>()
            .unwrap();
        assert_eq!(
            tags.data_type(),
            &ValueType::TextList.data_type(),
            "the model's type"
        );
        let rows: Vec<Option<Vec<Option<String>>>> = tags
            .iter()
            .map(|row| {
                row.map(|items| {
                    let items = items.as_any().downcast_ref::<StringArray>().unwrap();
                    items.iter().map(|v| v.map(str::to_owned)).collect()
                })
            })
            .collect();
        let some =
            |items: &[Option<&str>]| Some(items.iter().map(|v| v.map(str::to_owned)).collect());
        assert_eq!(
            rows,
            [
                some(&[Some("rust"), Some("é")]),
                some(&[]),
                None,
                some(&[Some("a"), None, Some("2.50"), Some("true")]),
                None, // left for Arrow's reader, its two items read taken back
                some(&[Some("z")]),
            ]
        );
        assert_eq!(tags.values().len(), 7);
    }
}
