//! `stdout`: print the result. `aligned` is the chapter's `f'{word:>{max_len}}: {count}'`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use serde::Deserialize;

use super::{BuildSink, Flow, Sink, SinkContext};
use crate::data::cell;
use crate::error::{Error, Result};

/// Prints the result. `aligned` is the chapter's `f'{word:>{max_len}}: {count}'`; `table` a
/// table; `tsv` writes a tab, line end or backslash in a value as `\t`, `\n`, `\r`, `\\` and
/// another control character as `\u{7}` (its code in hex); `jsonl` one object a row (numbers
/// unquoted, timestamps RFC 3339, lists as arrays); `bars` a horizontal bar chart in Unicode
/// blocks, scaled to the terminal's width (the last numeric column is the length). In a stream
/// every epoch is printed under `EPOCH N` (on a terminal, redrawn in place); in `jsonl` and
/// `tsv` the epoch is data (an `"epoch"` field, a leading `epoch` column). Control characters
/// from the data are escaped; a closed pipe (`| head`) is not an error.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// `aligned` (first column right-aligned, `: `, the rest), `table`, `tsv` or `jsonl`.
    #[serde(default)]
    pub format: StdoutFormat,
    /// Print at most this many rows.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// How the `stdout` sink prints a result.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StdoutFormat {
    /// The first column right-aligned, then `: ` and the rest (the chapter's `word: count`).
    Aligned,
    /// A table with a header row and numbers right-aligned (the default).
    #[default]
    Table,
    /// Tab-separated values with a header row: numbers unquoted, timestamps RFC 3339, lists
    /// as JSON arrays; tabs, newlines and backslashes escaped as `\t`, `\n`, `\\`.
    Tsv,
    /// One JSON object per row: numbers unquoted, timestamps RFC 3339, lists as arrays.
    Jsonl,
    /// A horizontal bar chart in Unicode blocks, scaled to the terminal width.
    Bars,
}

impl BuildSink for StdoutSinkConfig {
    fn build(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, String> {
        if self.format == StdoutFormat::Bars && bar_value_column(ctx.input).is_none() {
            return Err(
                "`format: bars` needs a numeric column for the bar lengths (for example `count`)"
                    .into(),
            );
        }
        // A stream's jsonl and tsv carry the epoch as data: a column of the same name would
        // be overwritten (jsonl) or doubled (tsv).
        if ctx.streaming
            && matches!(self.format, StdoutFormat::Jsonl | StdoutFormat::Tsv)
            && ctx.input.fields().iter().any(|f| f.name() == "epoch")
        {
            return Err(format!(
                "the column `epoch` clashes with the epoch number `format: {}` adds to each row of a stream; rename it first (`- {{type: rename, columns: {{epoch: epoch_time}}}}`)",
                match self.format {
                    StdoutFormat::Jsonl => "jsonl",
                    _ => "tsv",
                }
            ));
        }
        Ok(Box::new(StdoutSink::new(
            self.clone(),
            Output::Stdout,
            ctx.input.clone(),
            ctx.streaming,
        )))
    }
}

/// Where the text goes: the process's stdout, or a buffer in tests.
enum Output {
    Stdout,
    #[cfg_attr(not(test), allow(dead_code))]
    Buffer(Arc<Mutex<Vec<u8>>>),
}

/// The `stdout` sink at run time: prints each result (each epoch under its header in a stream).
pub struct StdoutSink {
    config: StdoutSinkConfig,
    out: Output,
    schema: arrow_schema::SchemaRef,
    /// Each result is an epoch: print a header, and on a terminal redraw in place.
    streaming: bool,
    /// Whether tsv's column names were printed (once per run, a stream's epochs included).
    header_printed: bool,
    /// On a terminal: the lines of the table drawn last, to redraw its region only.
    last_lines: Option<usize>,
    /// The epoch being written, and its rows so far: all offered, and those kept (`limit`).
    epoch: u64,
    rows_seen: usize,
    rows_kept: usize,
    /// Human formats: rows waiting to be laid out together (a page, or a stream's epoch).
    page: Vec<RecordBatch>,
    page_rows: usize,
    pages_printed: usize,
    /// Standard output was closed by its reader (`runner run ... | head`).
    closed: bool,
}

/// Rows laid out together by the human formats of a batch run: column widths are those of
/// their page, and memory stays bounded however long the result. A table is costlier per row.
const PAGE_ROWS: usize = 65_536;
const TABLE_PAGE_ROWS: usize = 10_000;

/// What goes before an epoch's table on a terminal so that it replaces the last one in place:
/// the first time, clear the screen once and remember the table's start (`ESC 7`); then go
/// back there and clear below it (`ESC 8`, `ESC [J`), leaving the rest of the screen alone.
/// A table too tall for the screen (it scrolls, and the remembered start with it) clears the
/// screen each time instead.
fn redraw_prefix(
    last_lines: Option<usize>,
    lines: usize,
    terminal_rows: Option<usize>,
) -> &'static str {
    let fits = |n: usize| terminal_rows.is_none_or(|rows| n + 2 < rows);
    match last_lines {
        Some(last) if fits(last) && fits(lines) => "\x1b8\x1b[J",
        _ => "\x1b[2J\x1b[H\x1b7",
    }
}

/// Renders `batch` (at most `limit` rows) in `format`. With `epoch` (a stream), the machine
/// formats carry it as data: a leading `epoch` column in tsv, an `"epoch"` field in jsonl.
/// Text from the data never reaches a terminal as control sequences: the human formats escape
/// control characters, tsv escapes them as `\u{..}`, jsonl as JSON does.
pub fn render(
    batch: &RecordBatch,
    format: StdoutFormat,
    limit: Option<usize>,
    epoch: Option<u64>,
) -> String {
    let rows = limit.map_or(batch.num_rows(), |n| n.min(batch.num_rows()));
    let text_row = |row: usize| -> Vec<String> {
        batch
            .columns()
            .iter()
            // A list as a JSON array: items with spaces or nulls stay told apart.
            .map(|c| one_line(&cell(c.as_ref(), row).to_field()))
            .collect()
    };
    let mut out = String::new();
    match format {
        StdoutFormat::Aligned => {
            let cells: Vec<Vec<String>> = (0..rows).map(text_row).collect();
            // Python's str formatting pads by characters, and so do we.
            let width = cells
                .iter()
                .map(|r| r.first().map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0);
            for row in cells {
                let (first, rest) = row
                    .split_first()
                    .map_or(("", &[][..]), |(f, r)| (f.as_str(), r));
                // Padded by hand: a format width past 65,535 panicked (a long first value).
                let pad = width.saturating_sub(first.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(first);
                if !rest.is_empty() {
                    out.push_str(": ");
                    out.push_str(&rest.join(": "));
                }
                out.push('\n');
            }
        }
        StdoutFormat::Table => {
            let width = terminal_size::terminal_size().map(|(width, _)| width.0);
            out.push_str(&table(batch, rows, text_row, width));
        }
        StdoutFormat::Tsv => {
            // Backslashes doubled first, then tab, line breaks and other control characters
            // written as escapes: each escape reads back as one thing.
            let escape = |s: &str| {
                // One memchr per character: no copy for the usual cell without any.
                if !['\\', '\t', '\n', '\r'].into_iter().any(|c| s.contains(c)) {
                    return crate::error::escape_controls(s).into_owned();
                }
                let tsv = s
                    .replace('\\', "\\\\")
                    .replace('\t', "\\t")
                    .replace('\n', "\\n")
                    .replace('\r', "\\r");
                crate::error::escape_controls(&tsv).into_owned()
            };
            let mut header: Vec<String> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| escape(f.name()))
                .collect();
            if epoch.is_some() {
                header.insert(0, "epoch".into());
            }
            out.push_str(&header.join("\t"));
            out.push('\n');
            for row in 0..rows {
                // A list as a JSON array (`to_field`), so its items read back as they were.
                let mut cells: Vec<String> = batch
                    .columns()
                    .iter()
                    .map(|c| escape(&cell(c.as_ref(), row).to_field()))
                    .collect();
                if let Some(epoch) = epoch {
                    cells.insert(0, epoch.to_string());
                }
                out.push_str(&cells.join("\t"));
                out.push('\n');
            }
        }
        StdoutFormat::Bars => out.push_str(&bars(batch, rows, terminal_width())),
        StdoutFormat::Jsonl => {
            let mut lines = Vec::new();
            super::json_lines::write_rows(&mut lines, batch, rows, epoch);
            out = String::from_utf8(lines).expect("JSON text written from UTF-8 strings");
        }
    }
    out
}

/// `rows` of `batch` as a table. With a `width` (a terminal's) it keeps to it, each row on one
/// line, long cells cut with `…`: a row wrapped by the terminal scrolled the screen and broke
/// the in-place redraw of a stream's epochs.
fn table(
    batch: &RecordBatch,
    rows: usize,
    text_row: impl Fn(usize) -> Vec<String>,
    width: Option<u16>,
) -> String {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    let one_row = |cells: Vec<String>| {
        let mut row = comfy_table::Row::from(cells);
        if width.is_some() {
            row.max_height(1);
        }
        row
    };
    if let Some(width) = width {
        table
            .set_width(width)
            .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
            .set_truncation_indicator("…");
    }
    table.set_header(one_row(
        batch
            .schema()
            .fields()
            .iter()
            .map(|f| one_line(f.name()))
            .collect(),
    ));
    for row in 0..rows {
        table.add_row(one_row(text_row(row)));
    }
    for (i, field) in batch.schema().fields().iter().enumerate() {
        if matches!(field.data_type(), DataType::Int64 | DataType::Float64) {
            if let Some(column) = table.column_mut(i) {
                column.set_cell_alignment(comfy_table::CellAlignment::Right);
            }
        }
    }
    format!("{table}\n")
}

/// A cell or column name for the `table` and `aligned` views: line breaks and tabs as `\n`,
/// `\t` (a value holding a line break would otherwise print as a row of its own) and other
/// control characters escaped.
fn one_line(text: &str) -> String {
    let text = crate::error::escape_controls(text);
    if !text.contains(['\n', '\t']) {
        return text.into_owned();
    }
    text.replace('\n', "\\n").replace('\t', "\\t")
}

/// The last numeric column: the bar length.
fn bar_value_column(schema: &arrow_schema::Schema) -> Option<usize> {
    schema
        .fields()
        .iter()
        .rposition(|f| matches!(f.data_type(), DataType::Int64 | DataType::Float64))
}

/// The terminal's width, or `COLUMNS`, or 80.
fn terminal_width() -> usize {
    terminal_size::terminal_size()
        .map(|(w, _)| w.0 as usize)
        .or_else(|| std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()))
        .unwrap_or(80)
}

/// Rows as `label ████▍ value` lines: labels aligned, the longest bar filling the width. A
/// windowed result (`window_start`, `window_end` first) gets a line naming each window, and
/// its labels are the column after them.
pub fn bars(batch: &RecordBatch, rows: usize, width: usize) -> String {
    const EIGHTHS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    let Some(value_column) = bar_value_column(&batch.schema()) else {
        return String::new();
    };
    let schema = batch.schema();
    let is_time = |i: usize| schema.field(i).data_type() == &crate::data::timestamp_type();
    let windowed = schema.fields().len() > 3
        && schema.field(0).name() == crate::transforms::aggregate::windowed::WINDOW_START
        && schema.field(1).name() == crate::transforms::aggregate::windowed::WINDOW_END
        && is_time(0)
        && is_time(1);
    let label_column = if windowed { 2 } else { 0 };
    let window_of = |row: usize| -> Option<String> {
        match (
            cell(batch.column(0).as_ref(), row),
            cell(batch.column(1).as_ref(), row),
        ) {
            (crate::data::Cell::Timestamp(start), crate::data::Cell::Timestamp(end)) => {
                Some(super::chart::window_caption(start, end))
            }
            _ => None,
        }
    };
    let entries: Vec<(String, f64, String)> = (0..rows)
        .map(|row| {
            // One line per bar: line breaks and tabs in a label become spaces.
            let text = cell(batch.column(label_column).as_ref(), row)
                .to_text()
                .replace(['\n', '\r', '\t'], " ");
            // At most 30 columns wide (a wide character takes two).
            let mut columns = 0;
            let label: String = crate::error::escape_controls(&text)
                .chars()
                .take_while(|c| {
                    columns += unicode_width::UnicodeWidthChar::width(*c).unwrap_or(0);
                    columns <= 30
                })
                .collect();
            let value = match cell(batch.column(value_column).as_ref(), row) {
                crate::data::Cell::Int(i) => i as f64,
                crate::data::Cell::Float(f) => f,
                _ => 0.0,
            };
            (
                label,
                value,
                // As the table writes it (`Infinity`).
                cell(batch.column(value_column).as_ref(), row).to_field(),
            )
        })
        .collect();
    let columns = |text: &str| unicode_width::UnicodeWidthStr::width(text);
    let label_width = entries.iter().map(|e| columns(&e.0)).max().unwrap_or(0);
    let value_width = entries.iter().map(|e| e.2.len()).max().unwrap_or(0);
    let bar_width = width.saturating_sub(label_width + value_width + 3).max(10);
    // Scaled to the largest finite value: an infinite one fills the width, and does not
    // shrink every other bar to nothing.
    let max = entries
        .iter()
        .map(|e| e.1)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let mut out = String::new();
    let mut window = None;
    for (row, (label, value, text)) in entries.iter().enumerate() {
        if windowed {
            let this = window_of(row);
            if this != window {
                out.push_str(&format!("{}\n", this.as_deref().unwrap_or("(no window)")));
                window = this;
            }
        }
        let share = if *value == f64::INFINITY {
            1.0
        } else if max > 0.0 {
            (value.max(0.0) / max).min(1.0)
        } else {
            0.0
        };
        let eighths = (share * bar_width as f64 * 8.0).round() as usize;
        let bar = "█".repeat(eighths / 8) + EIGHTHS[eighths % 8];
        let pad = bar_width - bar.chars().count().min(bar_width);
        out.push_str(&format!(
            "{}{label} {bar}{} {text:>value_width$}\n",
            " ".repeat(label_width - columns(label)),
            " ".repeat(pad)
        ));
    }
    out
}

impl StdoutSink {
    fn new(
        config: StdoutSinkConfig,
        out: Output,
        schema: arrow_schema::SchemaRef,
        streaming: bool,
    ) -> Self {
        StdoutSink {
            config,
            out,
            schema,
            streaming,
            header_printed: false,
            last_lines: None,
            epoch: 0,
            rows_seen: 0,
            rows_kept: 0,
            page: Vec::new(),
            page_rows: 0,
            pages_printed: 0,
            closed: false,
        }
    }

    /// Formats whose rows are printed as they come: tsv and jsonl.
    fn machine(&self) -> bool {
        matches!(self.config.format, StdoutFormat::Jsonl | StdoutFormat::Tsv)
    }

    fn page_size(&self) -> usize {
        match self.config.format {
            StdoutFormat::Table => TABLE_PAGE_ROWS,
            _ => PAGE_ROWS,
        }
    }

    /// Prints tsv or jsonl rows (tsv's column names before the first rows of the run), a
    /// slice at a time: the text of a result of millions of rows is never held whole, and a
    /// closed pipe stops the printing. On the run's pool a few slices at a time are rendered
    /// together on its cores (a result of millions of rows took a core seconds to print), and
    /// printed in order.
    fn print_rows(&mut self, rows: &RecordBatch) -> Result<()> {
        use rayon::prelude::*;
        const SLICE_ROWS: usize = 8192;
        // Only on a pool's worker, which is the run's (a batch's result): elsewhere rayon
        // would take every core of the machine, not the run's.
        let together = match rayon::current_thread_index() {
            Some(_) => rayon::current_num_threads().max(1) * 2,
            None => 1,
        };
        let epoch = self.streaming.then_some(self.epoch);
        let format = self.config.format;
        let mut start = 0;
        // At least once: an empty batch still prints tsv's column names.
        loop {
            let mut slices = Vec::with_capacity(together);
            while slices.len() < together {
                let length = SLICE_ROWS.min(rows.num_rows() - start);
                slices.push(rows.slice(start, length));
                start += length;
                if start >= rows.num_rows() {
                    break;
                }
            }
            let texts: Vec<String> = match slices.len() {
                1 => vec![render(&slices[0], format, None, epoch)],
                _ => slices
                    .par_iter()
                    .map(|slice| render(slice, format, None, epoch))
                    .collect(),
            };
            for mut text in texts {
                if format == StdoutFormat::Tsv {
                    if self.header_printed {
                        text = text
                            .split_once('\n')
                            .map_or(String::new(), |(_, rows)| rows.to_owned());
                    }
                    self.header_printed = true;
                }
                self.emit(&text)?;
                if self.closed {
                    return Ok(());
                }
            }
            if start >= rows.num_rows() {
                return Ok(());
            }
        }
    }

    /// Lays out and prints the rows waiting in `page`.
    fn print_page(&mut self) -> Result<()> {
        let page = crate::data::concat(&self.schema, &std::mem::take(&mut self.page));
        self.page_rows = 0;
        self.pages_printed += 1;
        let mut text = render(&page, self.config.format, None, None);
        if self.streaming {
            let redraw = matches!(self.out, Output::Stdout)
                && std::io::IsTerminal::is_terminal(&std::io::stdout());
            let lines = text.lines().count() + 1;
            let clear = if redraw {
                let terminal_rows = terminal_size::terminal_size().map(|(_, h)| h.0 as usize);
                let prefix = redraw_prefix(self.last_lines, lines, terminal_rows);
                self.last_lines = Some(lines);
                prefix
            } else {
                ""
            };
            let rows = self.rows_seen;
            let shown = self.config.limit.filter(|&limit| limit < rows);
            text = format!(
                "{clear}EPOCH {} ({rows} row{}{})\n{text}",
                self.epoch,
                if rows == 1 { "" } else { "s" },
                shown.map_or(String::new(), |n| format!(", first {n} shown"))
            );
        }
        self.emit(&text)
    }

    /// Writes `text`; a closed standard output (`runner run ... | head`) is not a failure, it
    /// ends the output.
    fn emit(&mut self, text: &str) -> Result<()> {
        if self.closed || text.is_empty() {
            return Ok(());
        }
        match &self.out {
            Output::Stdout => {
                let mut stdout = std::io::stdout().lock();
                match stdout
                    .write_all(text.as_bytes())
                    .and_then(|_| stdout.flush())
                {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        self.closed = true;
                        Ok(())
                    }
                    Err(e) => Err(Error::runtime(format!(
                        "cannot write to standard output: {e}"
                    ))),
                    Ok(()) => Ok(()),
                }
            }
            Output::Buffer(buffer) => {
                buffer
                    .lock()
                    .expect("test buffer")
                    .extend_from_slice(text.as_bytes());
                Ok(())
            }
        }
    }
}

impl Sink for StdoutSink {
    fn begin(&mut self, epoch: u64) -> Result<()> {
        self.epoch = epoch;
        self.rows_seen = 0;
        self.rows_kept = 0;
        self.page.clear();
        self.page_rows = 0;
        self.pages_printed = 0;
        Ok(())
    }

    fn write(&mut self, rows: &RecordBatch) -> Result<Flow> {
        let wanted = self
            .config
            .limit
            .map_or(usize::MAX, |limit| limit.saturating_sub(self.rows_kept));
        self.rows_seen += rows.num_rows();
        let kept = rows.slice(0, rows.num_rows().min(wanted));
        self.rows_kept += kept.num_rows();
        if kept.num_rows() > 0 && !self.closed {
            if self.machine() {
                self.print_rows(&kept)?;
            } else {
                self.page_rows += kept.num_rows();
                self.page.push(kept);
                // A stream's epoch is drawn whole, under its header.
                if !self.streaming && self.page_rows >= self.page_size() {
                    self.print_page()?;
                }
            }
        }
        let limit_reached = self.config.limit.is_some_and(|l| self.rows_kept >= l);
        // A stream keeps counting the epoch's rows for its header.
        Ok(if self.closed || (limit_reached && !self.streaming) {
            Flow::Enough
        } else {
            Flow::More
        })
    }

    fn commit(&mut self) -> Result<()> {
        if self.machine() {
            if self.config.format == StdoutFormat::Tsv && !self.header_printed {
                // An empty result still has its columns.
                self.print_rows(&RecordBatch::new_empty(self.schema.clone()))?;
            }
            return Ok(());
        }
        if self.page_rows > 0 || self.pages_printed == 0 {
            self.print_page()?;
        }
        Ok(())
    }

    fn closed(&self) -> bool {
        self.closed || (self.closes_with_stdout() && crate::io::console::stdout_reader_gone())
    }

    fn closes_with_stdout(&self) -> bool {
        matches!(self.out, Output::Stdout)
    }

    fn prints_to_terminal(&self) -> bool {
        std::io::IsTerminal::is_terminal(&std::io::stdout())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::write_result;

    fn counts() -> RecordBatch {
        crate::data::word_counts(&["romeo", "thou", "i’ll", "a\tb"], &[298, 277, 61, 60])
    }

    /// The first `rows` rows of `batch` as JSON objects, one per line, each built as a JSON object
    /// (the later of two keys of one name wins).
    fn jsonl_objects(batch: &RecordBatch, rows: usize, epoch: Option<u64>) -> String {
        let mut out = String::new();
        let schema = batch.schema();
        for row in 0..rows {
            let object: serde_json::Map<String, serde_json::Value> = epoch
                .map(|epoch| ("epoch".to_owned(), serde_json::Value::from(epoch)))
                .into_iter()
                .chain(
                    schema
                        .fields()
                        .iter()
                        .zip(batch.columns())
                        .map(|(f, c)| (f.name().clone(), cell(c.as_ref(), row).to_json())),
                )
                .collect();
            out.push_str(&serde_json::Value::Object(object).to_string());
            out.push('\n');
        }
        out
    }

    #[test]
    fn jsonl_written_value_by_value_is_what_json_objects_give() {
        use arrow_array::builder::{ListBuilder, StringBuilder};
        use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
        let text = StringArray::from(vec![
            Some("plain"),
            Some("quote \" back\\slash \u{1b}[31m tab\t é ✓"),
            None,
            Some(""),
            Some("\u{7f}\u{9b}\u{2028}"),
            Some("last"),
        ]);
        let ints = Int64Array::from(vec![
            Some(0),
            Some(-7),
            None,
            Some(i64::MAX),
            Some(i64::MIN),
            Some(1),
        ]);
        let floats = Float64Array::from(vec![
            Some(0.1),
            Some(-0.0),
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(1e300),
            None,
        ]);
        let flags = BooleanArray::from(vec![
            Some(true),
            Some(false),
            None,
            Some(true),
            None,
            Some(false),
        ]);
        let times = arrow_array::TimestampMicrosecondArray::from(vec![
            Some(0),
            Some(1_700_000_000_123_456),
            None,
            Some(-1),
            Some(86_400_000_000),
            Some(1),
        ])
        .with_timezone("UTC");
        let mut lists = ListBuilder::new(StringBuilder::new());
        for row in 0..6 {
            match row {
                2 => lists.append_null(),
                _ => {
                    for item in 0..row {
                        lists.values().append_value(format!("i\"{item}"));
                    }
                    lists.append(true);
                }
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(text),
            Arc::new(ints),
            Arc::new(floats),
            Arc::new(flags),
            Arc::new(times),
            Arc::new(lists.finish()),
        ];
        let names = ["t\"ext", "int", "float", "flag", "at", "list"];
        let fields: Vec<arrow_schema::Field> = names
            .iter()
            .zip(&columns)
            .map(|(name, c)| arrow_schema::Field::new(*name, c.data_type().clone(), true))
            .collect();
        let batch =
            RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns).unwrap();
        for epoch in [None, Some(3)] {
            for rows in [0, 1, 6] {
                let fast = render(&batch, StdoutFormat::Jsonl, Some(rows), epoch);
                let objects = jsonl_objects(&batch, rows, epoch);
                assert_eq!(fast.lines().count(), rows);
                for (line, object) in fast.lines().zip(objects.lines()) {
                    let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
                    let built: serde_json::Value = serde_json::from_str(object).unwrap();
                    assert_eq!(parsed, built);
                    // Same keys in the same order; no control character written raw.
                    assert_eq!(
                        parsed.as_object().unwrap().keys().collect::<Vec<_>>(),
                        built.as_object().unwrap().keys().collect::<Vec<_>>()
                    );
                    assert!(!line.chars().any(char::is_control), "{line}");
                }
            }
        }
        // A column named `epoch` in a stream: one key, as a JSON object has it.
        let clash = crate::data::word_counts(&["a"], &[1]);
        let renamed = RecordBatch::try_new(
            Arc::new(arrow_schema::Schema::new(vec![
                arrow_schema::Field::new("epoch", DataType::Utf8, true),
                arrow_schema::Field::new("count", DataType::Int64, true),
            ])),
            clash.columns().to_vec(),
        )
        .unwrap();
        assert_eq!(
            render(&renamed, StdoutFormat::Jsonl, None, Some(1)),
            "{\"epoch\":\"a\",\"count\":1}\n"
        );
    }

    #[test]
    fn aligned_matches_the_chapter() {
        assert_eq!(
            render(&counts(), StdoutFormat::Aligned, Some(3), None),
            "romeo: 298\n thou: 277\n i’ll: 61\n"
        );
        // A first value past 65,535 characters (a format width's most) is padded too.
        let long = "w".repeat(70_000);
        let rows = crate::data::word_counts(&[long.as_str(), "a"], &[1, 2]);
        let text = render(&rows, StdoutFormat::Aligned, None, None);
        assert!(
            text.ends_with(&format!("{}a: 2\n", " ".repeat(69_999))),
            "{}",
            text.len()
        );
    }

    #[test]
    fn a_stream_epoch_is_data_in_machine_formats_and_controls_are_escaped() {
        let jsonl = render(&counts(), StdoutFormat::Jsonl, Some(1), Some(7));
        assert_eq!(jsonl, "{\"epoch\":7,\"word\":\"romeo\",\"count\":298}\n");
        let tsv = render(&counts(), StdoutFormat::Tsv, Some(1), Some(7));
        assert_eq!(tsv, "epoch\tword\tcount\n7\tromeo\t298\n");
        let red = crate::data::word_counts(&["\x1b[31mred"], &[1]);
        for format in [
            StdoutFormat::Aligned,
            StdoutFormat::Table,
            StdoutFormat::Tsv,
            StdoutFormat::Bars,
            StdoutFormat::Jsonl,
        ] {
            let text = render(&red, format, None, None);
            assert!(!text.contains('\x1b'), "{format:?}: {text:?}");
        }
    }

    #[test]
    fn a_terminal_redraws_only_the_tables_region_once_it_is_drawn() {
        // First epoch: clear once and remember where the table starts.
        assert_eq!(redraw_prefix(None, 22, Some(40)), "\x1b[2J\x1b[H\x1b7");
        // Then back to that start, clearing only what is below it.
        assert_eq!(redraw_prefix(Some(22), 22, Some(40)), "\x1b8\x1b[J");
        // A table as tall as the screen scrolls it: clear the screen each time.
        assert_eq!(redraw_prefix(Some(22), 60, Some(40)), "\x1b[2J\x1b[H\x1b7");
        assert_eq!(redraw_prefix(Some(60), 22, Some(40)), "\x1b[2J\x1b[H\x1b7");
    }

    #[test]
    fn bars_of_windows_name_each_window_and_label_by_key() {
        use arrow_array::{Int64Array, StringArray, TimestampMicrosecondArray};
        let min = 60_000_000i64;
        let batch = RecordBatch::try_from_iter([
            (
                "window_start",
                Arc::new(TimestampMicrosecondArray::from(vec![0, 10 * min]).with_timezone("UTC"))
                    as arrow_array::ArrayRef,
            ),
            (
                "window_end",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![10 * min, 20 * min]).with_timezone("UTC"),
                ) as _,
            ),
            (
                "tag",
                Arc::new(StringArray::from(vec!["rust", "spark"])) as _,
            ),
            ("count", Arc::new(Int64Array::from(vec![4, 2])) as _),
        ])
        .unwrap();
        let text = bars(&batch, 2, 40);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "1970-01-01 00:00–00:10 UTC");
        assert!(lines[1].starts_with(" rust █"), "{text}");
        assert_eq!(lines[2], "1970-01-01 00:10–00:20 UTC");
        assert!(lines[3].starts_with("spark █"), "{text}");
    }

    #[test]
    fn tsv_escapes_and_jsonl_types() {
        let tsv = render(&counts(), StdoutFormat::Tsv, None, None);
        assert!(tsv.starts_with("word\tcount\nromeo\t298\n"));
        assert!(tsv.ends_with("a\\tb\t60\n"));
        let jsonl = render(&counts(), StdoutFormat::Jsonl, Some(1), None);
        assert_eq!(jsonl, "{\"word\":\"romeo\",\"count\":298}\n");
    }

    #[test]
    fn tsv_and_the_views_print_lists_as_json_arrays_and_timestamps_as_rfc_3339() {
        use arrow_array::builder::{ListBuilder, StringBuilder};
        let mut lists = ListBuilder::new(StringBuilder::new());
        lists.values().append_value("a b");
        lists.values().append_null();
        lists.values().append_value("tab\there");
        lists.append(true);
        lists.append_null();
        let at =
            arrow_array::TimestampMicrosecondArray::from(vec![Some(1_714_564_800_000_000), None])
                .with_timezone("UTC");
        let batch = RecordBatch::try_from_iter([
            ("tags", Arc::new(lists.finish()) as arrow_array::ArrayRef),
            ("at", Arc::new(at) as arrow_array::ArrayRef),
        ])
        .unwrap();
        let tsv = render(&batch, StdoutFormat::Tsv, None, None);
        assert_eq!(
            tsv,
            "tags\tat\n[\"a b\",null,\"tab\\\\there\"]\t2024-05-01T12:00:00Z\n\t\n"
        );
        for view in [StdoutFormat::Table, StdoutFormat::Aligned] {
            let shown = render(&batch, view, None, None);
            assert!(shown.contains("[\"a b\",null,\"tab\\there\"]"), "{shown}");
        }
    }

    #[test]
    fn data_cannot_forge_rows_or_reach_the_terminal_as_control_sequences() {
        let batch = RecordBatch::try_from_iter([
            (
                "k\u{1b}[31m",
                Arc::new(arrow_array::StringArray::from(vec![
                    "evil\nfake: 999",
                    "cr\r esc\u{1b} literal\\u{1b}",
                ])) as arrow_array::ArrayRef,
            ),
            (
                "v",
                Arc::new(arrow_array::Int64Array::from(vec![1, 2])) as arrow_array::ArrayRef,
            ),
        ])
        .unwrap();
        let aligned = render(&batch, StdoutFormat::Aligned, None, None);
        assert_eq!(aligned.lines().count(), 2, "{aligned}");
        assert!(aligned.contains("evil\\nfake: 999: 1"), "{aligned}");
        let table = render(&batch, StdoutFormat::Table, None, None);
        assert!(
            !table.contains('\u{1b}') && !table.contains('\r'),
            "{table}"
        );
        assert!(table.contains("k\\u{1b}[31m"), "{table}");
        let tsv = render(&batch, StdoutFormat::Tsv, None, None);
        assert_eq!(
            tsv,
            "k\\u{1b}[31m\tv\nevil\\nfake: 999\t1\ncr\\r esc\\u{1b} literal\\\\u{1b}\t2\n"
        );
    }

    #[test]
    fn bars_scale_to_the_width_and_align() {
        let text = bars(&counts(), 2, 40);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].chars().count(), lines[1].chars().count());
        assert!(
            lines[0].starts_with("romeo █") && lines[0].ends_with(" 298"),
            "{text}"
        );
        assert!(
            lines[1].starts_with(" thou █") && lines[1].ends_with(" 277"),
            "{text}"
        );
        let full = lines[0].chars().filter(|c| *c == '█').count();
        assert_eq!(full, 40 - 5 - 3 - 3);
    }

    /// Labels are aligned by the columns they take (a wide character two), and an infinite
    /// value fills the width without shrinking the other bars to nothing.
    #[test]
    fn bars_align_wide_labels_and_scale_past_an_infinity() {
        let batch = RecordBatch::try_from_iter([
            (
                "k",
                Arc::new(arrow_array::StringArray::from(vec!["漢字", "ab", "c"]))
                    as arrow_array::ArrayRef,
            ),
            (
                "v",
                Arc::new(arrow_array::Float64Array::from(vec![
                    2.0,
                    1.0,
                    f64::INFINITY,
                ])) as arrow_array::ArrayRef,
            ),
        ])
        .unwrap();
        let text = bars(&batch, 3, 40);
        let lines: Vec<&str> = text.lines().collect();
        let bar_at = |line: &str| {
            let label = &line[..line.find(['█', '▏', '▎', '▍', '▌', '▋', '▊', '▉']).unwrap()];
            unicode_width::UnicodeWidthStr::width(label)
        };
        assert!(
            lines.iter().all(|l| bar_at(l) == bar_at(lines[0])),
            "{text}"
        );
        let full = |line: &str| line.chars().filter(|c| *c == '█').count();
        assert_eq!(full(lines[0]) / 2, full(lines[1]), "{text}");
        assert!(full(lines[2]) >= full(lines[0]), "{text}");
        assert!(lines[2].ends_with(" Infinity"), "{text}");
    }

    #[test]
    fn a_table_on_a_terminal_keeps_to_its_width_a_row_a_line() {
        let long = format!("#{}", "verylonghashtag".repeat(30));
        let batch =
            crate::data::word_counts(&[long.as_str(), "日本語のハッシュタグ", "rust"], &[3, 2, 1]);
        let text_row = |row: usize| {
            batch
                .columns()
                .iter()
                .map(|c| cell(c.as_ref(), row).to_field())
                .collect::<Vec<_>>()
        };
        let drawn = table(&batch, 3, text_row, Some(40));
        // Borders, the header and three rows, one line each, none wider than 40 columns
        // (the Japanese characters take two each).
        assert_eq!(drawn.lines().count(), 7, "{drawn}");
        for line in drawn.lines() {
            let columns: usize = line
                .chars()
                .map(|c| {
                    if ('\u{3000}'..='\u{9fff}').contains(&c) {
                        2
                    } else {
                        1
                    }
                })
                .sum();
            assert!(columns <= 40, "{columns} columns: {line}");
        }
        assert!(drawn.contains('…') && drawn.contains("rust"), "{drawn}");
        // Without a terminal the cells are whole.
        assert!(table(&batch, 3, text_row, None).contains(&long));
    }

    #[test]
    fn table_has_header_and_rows() {
        let table = render(&counts(), StdoutFormat::Table, Some(2), None);
        assert!(table.contains("word") && table.contains("romeo") && table.contains("277"));
        assert!(!table.contains("i’ll"));
    }

    #[test]
    fn sink_writes_what_render_gives() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let config: StdoutSinkConfig =
            serde_saphyr::from_str("{format: aligned, limit: 1}").unwrap();
        let mut sink = StdoutSink::new(
            config,
            Output::Buffer(buffer.clone()),
            counts().schema(),
            false,
        );
        write_result(&mut sink, &counts(), 0).unwrap();
        assert_eq!(
            String::from_utf8(buffer.lock().unwrap().clone()).unwrap(),
            "romeo: 298\n"
        );
        // A stream in a human format says when the limit hides rows.
        buffer.lock().unwrap().clear();
        sink.streaming = true;
        write_result(&mut sink, &counts(), 3).unwrap();
        assert_eq!(
            String::from_utf8(buffer.lock().unwrap().clone()).unwrap(),
            "EPOCH 3 (4 rows, first 1 shown)\nromeo: 298\n"
        );
    }

    #[test]
    fn many_rows_rendered_on_several_cores_print_in_order_under_one_header() {
        let words: Vec<String> = (0..100_000).map(|i| format!("w{i}")).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let counts: Vec<i64> = (0..words.len() as i64).collect();
        let big = crate::data::word_counts(&words, &counts);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for format in ["jsonl", "tsv"] {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let config: StdoutSinkConfig =
                serde_saphyr::from_str(&format!("{{format: {format}}}")).unwrap();
            let mut sink = StdoutSink::new(
                config.clone(),
                Output::Buffer(buffer.clone()),
                big.schema(),
                false,
            );
            pool.install(|| write_result(&mut sink, &big, 0)).unwrap();
            let printed = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
            assert_eq!(printed, render(&big, config.format, None, None), "{format}");
        }
    }

    #[test]
    fn a_batch_result_is_printed_in_pages_and_a_limit_says_enough() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let config: StdoutSinkConfig = serde_saphyr::from_str("{format: aligned}").unwrap();
        let mut sink = StdoutSink::new(
            config,
            Output::Buffer(buffer.clone()),
            counts().schema(),
            false,
        );
        sink.begin(0).unwrap();
        let words: Vec<String> = (0..PAGE_ROWS + 1).map(|i| format!("w{i}")).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let big = crate::data::word_counts(&words, &vec![1; words.len()]);
        // The first page is printed as soon as it is full, before the result ends.
        assert_eq!(sink.write(&big).unwrap(), Flow::More);
        let printed = buffer.lock().unwrap().len();
        assert!(printed > 0);
        sink.commit().unwrap();
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), PAGE_ROWS + 1);
        // The last page has its own width: `w65536: 1` needs no padding.
        assert!(
            text.ends_with("\nw65536: 1\n"),
            "{}",
            &text[text.len() - 40..]
        );

        let config: StdoutSinkConfig = serde_saphyr::from_str("{format: tsv, limit: 3}").unwrap();
        let mut sink = StdoutSink::new(
            config,
            Output::Buffer(Arc::default()),
            counts().schema(),
            false,
        );
        sink.begin(0).unwrap();
        assert_eq!(sink.write(&counts().slice(0, 2)).unwrap(), Flow::More);
        assert_eq!(sink.write(&counts().slice(2, 2)).unwrap(), Flow::Enough);
    }
}
