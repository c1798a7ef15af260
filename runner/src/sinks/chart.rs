//! `chart`: the top rows as a PNG bar chart, like the chapter's seaborn chart (palette `cool`,
//! rotated category labels) with value labels and a y axis from 0. The sink keeps the `top`
//! bars of each result and hands them to `render::bar_chart`; the image is rendered into
//! memory and written atomically, so a viewer never reads half a PNG.

use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::RecordBatch;
use arrow_schema::DataType;
use serde::Deserialize;

use super::{BuildSink, Flow, Sink, SinkContext};
use crate::data::{cell, column_index, type_label, Cell};
use crate::error::{Error, Result};
use crate::io::atomic;
pub use crate::render::bar_chart::{render_png, Bar, ChartSpec, Orientation, Palette};
use plotters::style::RGBColor;

/// Draws the `top` rows with the largest `y` as a PNG bar chart (`sort: input`: the first
/// `top` rows in their order, for a histogram): bars by value (ties by label) in seaborn's `cool`
/// gradient, value labels with grouped digits (`298,000`), a y axis from 0 with ticks, category
/// labels under the bars (horizontal where they fit, else turned 45°, else 90°) or at the left.
/// Labels over 20 characters end in `…`; characters the font lacks (CJK, emoji) are drawn as `?`
/// with a warning. The font (Noto Sans) is embedded: no system font is read, so a chart is the
/// same on every machine. An empty result draws "no data yet". Written atomically.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartSinkConfig {
    /// The PNG file to write, relative to the pipeline file; its directory is created if needed.
    /// For a windowed result, `{window_start}` in the path draws one chart per window
    /// (`trending-{window_start}.png`); without it the chart shows the latest window.
    #[serde(deserialize_with = "crate::settings::env::path")]
    pub path: PathBuf,
    /// The category column (one bar per row).
    #[serde(deserialize_with = "crate::settings::env::string")]
    pub x: String,
    /// The numeric column (bar length).
    #[serde(deserialize_with = "crate::settings::env::string")]
    pub y: String,
    /// How many bars: the rows with the largest `y`.
    #[serde(default = "default_top")]
    #[schemars(range(min = 1))]
    pub top: usize,
    /// The caption; `{epoch}`, `{time}` and (for a windowed result) `{window}` are replaced
    /// when it is drawn.
    #[serde(default, deserialize_with = "crate::settings::env::opt_string")]
    pub title: Option<String>,
    /// Width and height in pixels.
    #[serde(default = "default_size")]
    pub size: [u32; 2],
    /// `vertical` bars (labels rotated below) or `horizontal` bars (labels on the left).
    #[serde(default)]
    pub orientation: Orientation,
    /// `value`: the `top` largest, largest first (default); `input`: the first `top` rows in
    /// the order they come (a histogram keeps its bins in order).
    #[serde(default)]
    pub sort: BarOrder,
    /// Bar colours: `cool` (seaborn's cyan-to-magenta gradient, the chapter's; default),
    /// `tab10` (matplotlib's ten categorical colours) or one colour for every bar (`"#4c72b0"`).
    #[serde(default, deserialize_with = "palette")]
    #[schemars(with = "Option<String>")]
    pub palette: Palette,
}

fn palette<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Palette, D::Error> {
    let text = String::deserialize(d)?;
    match text.as_str() {
        "cool" => Ok(Palette::Cool),
        "tab10" => Ok(Palette::Tab10),
        hex => {
            let digits = hex.strip_prefix('#').filter(|h| h.len() == 6);
            let channel =
                |i: usize| digits.and_then(|h| u8::from_str_radix(h.get(i..i + 2)?, 16).ok());
            match (channel(0), channel(2), channel(4)) {
                (Some(r), Some(g), Some(b)) => Ok(Palette::Single(RGBColor(r, g, b))),
                _ => Err(serde::de::Error::custom(format!(
                    "palette `{hex}` is not `cool`, `tab10` or a colour like \"#4c72b0\""
                ))),
            }
        }
    }
}

/// Which rows become bars, in which order.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BarOrder {
    /// The `top` rows with the largest `y`, largest first.
    #[default]
    Value,
    /// The first `top` rows in the order they come (a histogram keeps its bins in order).
    Input,
}

fn default_top() -> usize {
    20
}
fn default_size() -> [u32; 2] {
    [1280, 720]
}

impl ChartSinkConfig {
    /// The caption: `title:`, else a phrase a reader takes in (not `count by hashtag`).
    pub fn title(&self) -> String {
        self.title.clone().unwrap_or_else(|| match self.sort {
            BarOrder::Value => format!("Top {} {} values by {}", self.top, self.x, self.y),
            BarOrder::Input => format!("{} by {}", self.y, self.x),
        })
    }
}

impl BuildSink for ChartSinkConfig {
    fn output_path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn build(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, String> {
        let x = column_index(ctx.input, &self.x).map_err(|e| format!("x: {e}"))?;
        let y = column_index(ctx.input, &self.y).map_err(|e| format!("y: {e}"))?;
        let y_type = ctx.input.field(y).data_type();
        if !matches!(y_type, DataType::Int64 | DataType::Float64) {
            return Err(format!(
                "y: column `{}` holds {}, but the bar length must be a number",
                self.y,
                type_label(y_type)
            ));
        }
        if self.top == 0 {
            return Err("top must be at least 1".into());
        }
        let [width, height] = self.size;
        if !(200..=8000).contains(&width) || !(150..=8000).contains(&height) {
            return Err(format!("size [{width}, {height}] is out of range: width 200..8000, height 150..8000 pixels"));
        }
        if self.path.as_os_str().is_empty() {
            return Err("`path` must name a file".into());
        }
        let is_time = |i: usize| ctx.input.field(i).data_type() == &crate::data::timestamp_type();
        let window = match (
            ctx.input.index_of(WINDOW_START),
            ctx.input.index_of(WINDOW_END),
        ) {
            (Ok(start), Ok(end)) if is_time(start) && is_time(end) => Some((start, end)),
            _ => None,
        };
        let per_window = self.path.to_string_lossy().contains("{window_start}");
        let wants_window = per_window || self.title().contains("{window}");
        if wants_window && window.is_none() {
            return Err(format!(
                "`{{window_start}}` and `{{window}}` name the window of a windowed result, and these rows have no `{WINDOW_START}` and `{WINDOW_END}` (add `window:` to the aggregation)"
            ));
        }
        Ok(Box::new(ChartSink {
            spec: ChartSpec {
                title: self.title(),
                x_name: self.x.clone(),
                y_name: self.y.clone(),
                width,
                height,
                orientation: self.orientation,
                palette: self.palette,
            },
            path: crate::settings::resolve_against(ctx.base_dir, &self.path),
            x,
            y,
            top: self.top,
            order: self.sort,
            epoch: 0,
            window,
            per_window,
            windows: std::collections::BTreeMap::new(),
            not_finite: 0,
            told: Default::default(),
        }))
    }
}

/// The `chart` sink at run time: draws each result (or each window's) into a PNG file, replaced
/// atomically.
pub struct ChartSink {
    spec: ChartSpec,
    path: PathBuf,
    x: usize,
    y: usize,
    top: usize,
    order: BarOrder,
    /// The epoch being drawn.
    epoch: u64,
    /// The window columns (start, end) of a windowed result.
    window: Option<(usize, usize)>,
    /// A chart per window (`{window_start}` in the path), else the latest window's.
    per_window: bool,
    /// The epoch's bars so far by window start (one entry without windows), with the window's
    /// end: only `top` are kept per window, whatever the rows.
    windows: std::collections::BTreeMap<i64, (i64, Vec<Bar>)>,
    /// The epoch's values that are NaN or infinite: they have no bar.
    not_finite: usize,
    /// Warnings by kind, the latest of each (a stream draws every epoch): told at the run's end.
    told: std::sync::Mutex<std::collections::BTreeMap<&'static str, String>>,
}

use crate::transforms::aggregate::windowed::{WINDOW_END, WINDOW_START};

/// How a window's start goes into a file name: `2026-11-30T12-05-00Z` (no colons).
fn file_stamp(micros: i64) -> String {
    crate::data::format_timestamp(micros).replace(':', "-")
}

/// A window as a caption shows it: `2026-11-30 12:00–12:10 UTC` (both dates when they differ).
pub fn window_caption(start: i64, end: i64) -> String {
    let (Some(s), Some(e)) = (
        chrono::DateTime::from_timestamp_micros(start),
        chrono::DateTime::from_timestamp_micros(end),
    ) else {
        return format!("{start}–{end} µs");
    };
    let time = |t: &chrono::DateTime<chrono::Utc>| {
        if t.timestamp_subsec_micros() == 0 && t.timestamp() % 60 == 0 {
            t.format("%H:%M").to_string()
        } else {
            t.format("%H:%M:%S%.f").to_string()
        }
    };
    if s.date_naive() == e.date_naive() || (end - start <= 86_400_000_000 && time(&e) == "00:00") {
        format!("{} {}–{} UTC", s.format("%Y-%m-%d"), time(&s), time(&e))
    } else {
        format!(
            "{} {} – {} {} UTC",
            s.format("%Y-%m-%d"),
            time(&s),
            e.format("%Y-%m-%d"),
            time(&e)
        )
    }
}

impl ChartSink {
    /// Keeps `message`, the latest of its `kind`, for the run's end.
    fn tell(&self, kind: &'static str, message: String) {
        self.told
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kind, message);
    }

    /// Adds `bars` (of one window) to what the epoch holds for it, keeping `top`.
    fn add(&mut self, start: i64, end: i64, bars: Vec<Bar>) {
        let (top, order) = (self.top, self.order);
        let (_, kept) = self.windows.entry(start).or_insert((end, Vec::new()));
        match order {
            BarOrder::Value => {
                // The top of (the top so far + these) is the top of all rows: the order
                // (value, then label) is total.
                kept.extend(bars);
                kept.sort_by(|a, b| {
                    b.value
                        .total_cmp(&a.value)
                        .then_with(|| a.label.cmp(&b.label))
                });
                kept.truncate(top);
            }
            BarOrder::Input => {
                let wanted = top.saturating_sub(kept.len());
                kept.extend(bars.into_iter().take(wanted));
            }
        }
    }

    fn draw(&self, path: &Path, bars: &[Bar], window: Option<(i64, i64)>) -> Result<()> {
        let mut title = caption(&self.spec.title, self.epoch);
        title = match window {
            Some((start, end)) => title.replace("{window}", &window_caption(start, end)),
            // No window has rows yet: not the placeholder itself.
            None => title.replace("{window}", "(no window yet)"),
        };
        let spec = ChartSpec {
            title,
            ..self.spec.clone()
        };
        let (png, drawn) = render_png(bars, &spec).map_err(|e| {
            Error::runtime(format!("cannot draw the chart {}: {e}", path.display()))
        })?;
        if drawn.missing_glyphs > 0 {
            self.tell(
                "glyphs",
                format!(
                    "chart {}: {} character(s) have no glyph in the embedded font and are drawn as `?`",
                    path.display(),
                    drawn.missing_glyphs
                ),
            );
        }
        if drawn.negative > 0 {
            self.tell(
                "negative",
                format!(
                    "chart {}: {} value(s) below zero are labelled without a bar: the chart's axis starts at 0",
                    path.display(),
                    drawn.negative
                ),
            );
        }
        atomic::write(path, &png)
    }
}

/// The `top` rows with the largest values, largest first, ties by label; rows without a value
/// are left out.
pub fn top_bars(batch: &RecordBatch, x: usize, y: usize, top: usize) -> Vec<Bar> {
    let mut bars = first_bars(batch, x, y, usize::MAX);
    bars.sort_by(|a, b| {
        b.value
            .total_cmp(&a.value)
            .then_with(|| a.label.cmp(&b.label))
    });
    bars.truncate(top);
    bars
}

/// The first `top` rows with a value, in input order.
pub fn first_bars(batch: &RecordBatch, x: usize, y: usize, top: usize) -> Vec<Bar> {
    (0..batch.num_rows())
        .filter_map(|row| {
            let label = cell(batch.column(x).as_ref(), row).to_text();
            match cell(batch.column(y).as_ref(), row) {
                Cell::Int(i) => Some(Bar::integer(label, i)),
                Cell::Float(f) if f.is_finite() => Some(Bar::new(label, f)),
                _ => None,
            }
        })
        .take(top)
        .collect()
}

/// Replaces `{epoch}` and `{time}` (UTC, to the second) in a caption.
pub fn caption(template: &str, epoch: u64) -> String {
    template.replace("{epoch}", &epoch.to_string()).replace(
        "{time}",
        &humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    )
}

impl Sink for ChartSink {
    fn begin(&mut self, epoch: u64) -> Result<()> {
        self.epoch = epoch;
        self.windows.clear();
        self.not_finite = 0;
        Ok(())
    }

    fn write(&mut self, rows: &RecordBatch) -> Result<Flow> {
        if let Some(values) = rows.column(self.y).as_primitive_opt::<Float64Type>() {
            self.not_finite += values.iter().flatten().filter(|v| !v.is_finite()).count();
        }
        let Some((start_column, end_column)) = self.window else {
            let bars = match self.order {
                BarOrder::Value => top_bars(rows, self.x, self.y, self.top),
                BarOrder::Input => first_bars(rows, self.x, self.y, self.top),
            };
            self.add(i64::MIN, i64::MIN, bars);
            let full = self.windows.values().all(|(_, b)| b.len() >= self.top);
            return Ok(if self.order == BarOrder::Input && full {
                Flow::Enough
            } else {
                Flow::More
            });
        };
        // Rows of a window follow each other: cut the batch into runs of one window.
        let starts = rows.column(start_column);
        let ends = rows.column(end_column);
        let time = |column: &arrow_array::ArrayRef, row: usize| match cell(column.as_ref(), row) {
            Cell::Timestamp(t) => Some(t),
            _ => None,
        };
        let mut row = 0;
        while row < rows.num_rows() {
            let start = time(starts, row);
            let run = (row..rows.num_rows())
                .take_while(|&r| time(starts, r) == start)
                .count();
            let (Some(start), Some(end)) = (start, time(ends, row)) else {
                row += run;
                continue;
            };
            let part = rows.slice(row, run);
            let bars = match self.order {
                BarOrder::Value => top_bars(&part, self.x, self.y, self.top),
                BarOrder::Input => first_bars(&part, self.x, self.y, self.top),
            };
            self.add(start, end, bars);
            row += run;
        }
        Ok(Flow::More)
    }

    fn warnings(&self) -> Vec<String> {
        let told = self.told.lock().unwrap_or_else(|p| p.into_inner());
        told.values().cloned().collect()
    }

    fn commit(&mut self) -> Result<()> {
        if self.not_finite > 0 {
            self.tell(
                "not finite",
                format!(
                    "chart {}: {} value(s) of `{}` that are NaN or infinite have no bar and were left out",
                    self.path.display(),
                    self.not_finite,
                    self.spec.y_name
                ),
            );
        }
        if self.window.is_none() {
            let bars = self
                .windows
                .values()
                .next()
                .map_or(&[][..], |(_, b)| b.as_slice());
            return self.draw(&self.path, bars, None);
        }
        if self.per_window {
            // One chart per window the epoch emitted (append mode: each final window once).
            for (start, (end, bars)) in &self.windows {
                let name = self
                    .path
                    .to_string_lossy()
                    .replace("{window_start}", &file_stamp(*start));
                self.draw(Path::new(&name), bars, Some((*start, *end)))?;
            }
            return Ok(());
        }
        // The latest window; an epoch that emitted none leaves the chart as it was.
        match self.windows.iter().next_back() {
            Some((start, (end, bars))) => self.draw(&self.path, bars, Some((*start, *end))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::bar_chart::format_value;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn top_bars_sorts_by_value_then_label_and_cuts() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("word", DataType::Utf8, false),
            Field::new("count", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["b", "a", "c", "d"])),
                Arc::new(Int64Array::from(vec![5, 5, 9, 1])),
            ],
        )
        .unwrap();
        let top = top_bars(&batch, 0, 1, 3);
        let labels: Vec<&str> = top.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["c", "a", "b"]);
        // `sort: input` keeps a histogram's order.
        let first = first_bars(&batch, 0, 1, 3);
        let labels: Vec<&str> = first.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["b", "a", "c"]);
    }

    #[test]
    fn values_have_grouped_digits_and_the_default_title_is_a_sentence() {
        assert_eq!(format_value(298_000.0), "298,000");
        assert_eq!(format_value(1_234_567.4), "1,234,567");
        assert_eq!(format_value(-4_500.0), "-4,500");
        assert_eq!(format_value(298.0), "298");
        assert_eq!(format_value(0.126), "0.13");
        let config: ChartSinkConfig =
            serde_saphyr::from_str("{path: c.png, x: hashtag, y: count, sort: input}").unwrap();
        assert_eq!(config.sort, BarOrder::Input);
        let schema = Schema::new(vec![
            Field::new("hashtag", DataType::Utf8, false),
            Field::new("count", DataType::Int64, false),
        ]);
        let sink = config.build(&SinkContext {
            input: &Arc::new(schema),
            base_dir: Path::new("."),
            streaming: false,
            appending: false,
            updating: false,
            checkpointed: false,
            fresh_stream: false,
            stream_id: Default::default(),
            pipeline: "test",
        });
        assert!(sink.is_ok());
        assert_eq!(config.title(), "count by hashtag");
        let config: ChartSinkConfig =
            serde_saphyr::from_str("{path: c.png, x: hashtag, y: count}").unwrap();
        assert_eq!(config.title(), "Top 20 hashtag values by count");
        let config: ChartSinkConfig =
            serde_saphyr::from_str("{path: c.png, x: w, y: n, title: Mine}").unwrap();
        assert_eq!(config.title(), "Mine");
    }

    #[test]
    fn captions_fill_placeholders() {
        assert_eq!(caption("epoch {epoch}", 7), "epoch 7");
        assert!(caption("{time}", 0).ends_with('Z'));
    }

    #[test]
    fn palettes_are_read_by_name_or_colour() {
        let parse = |yaml: &str| serde_saphyr::from_str::<ChartSinkConfig>(yaml);
        let config = parse("{path: c.png, x: w, y: n, palette: tab10}").unwrap();
        assert_eq!(config.palette, Palette::Tab10);
        let config = parse("{path: c.png, x: w, y: n, palette: '#4c72b0'}").unwrap();
        assert_eq!(config.palette, Palette::Single(RGBColor(0x4c, 0x72, 0xb0)));
        let error = parse("{path: c.png, x: w, y: n, palette: viridis}")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("is not `cool`, `tab10` or a colour"),
            "{error}"
        );
    }

    fn windowed_rows() -> RecordBatch {
        use arrow_array::TimestampMicrosecondArray;
        let min = 60_000_000i64;
        let starts = TimestampMicrosecondArray::from(vec![0, 0, 10 * min]).with_timezone("UTC");
        let ends = TimestampMicrosecondArray::from(vec![10 * min, 10 * min, 20 * min])
            .with_timezone("UTC");
        RecordBatch::try_from_iter([
            ("window_start", Arc::new(starts) as arrow_array::ArrayRef),
            ("window_end", Arc::new(ends) as _),
            ("tag", Arc::new(StringArray::from(vec!["a", "b", "c"])) as _),
            ("count", Arc::new(Int64Array::from(vec![3, 1, 2])) as _),
        ])
        .unwrap()
    }

    fn chart(
        dir: &Path,
        yaml: &str,
        rows: &RecordBatch,
    ) -> std::result::Result<Box<dyn Sink>, String> {
        let config: ChartSinkConfig = serde_saphyr::from_str(yaml).unwrap();
        config.build(&SinkContext {
            input: &rows.schema(),
            base_dir: dir,
            streaming: true,
            appending: true,
            updating: false,
            checkpointed: false,
            fresh_stream: false,
            stream_id: Default::default(),
            pipeline: "test",
        })
    }

    #[test]
    fn a_windowed_result_gets_a_chart_per_window_or_its_latest_window() {
        let dir = tempfile::tempdir().unwrap();
        let rows = windowed_rows();
        let mut each = chart(
            dir.path(),
            "{path: 'top-{window_start}.png', x: tag, y: count, title: 'Top tags {window}'}",
            &rows,
        )
        .unwrap();
        crate::sinks::write_result(each.as_mut(), &rows, 0).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "top-1970-01-01T00-00-00Z.png",
                "top-1970-01-01T00-10-00Z.png"
            ]
        );
        let mut latest = chart(dir.path(), "{path: latest.png, x: tag, y: count}", &rows).unwrap();
        crate::sinks::write_result(latest.as_mut(), &rows, 0).unwrap();
        assert!(dir.path().join("latest.png").is_file());
        assert_eq!(window_caption(0, 600_000_000), "1970-01-01 00:00–00:10 UTC");
        assert_eq!(
            window_caption(86_400_000_000 - 300_000_000, 86_400_000_000 + 300_000_000),
            "1970-01-01 23:55 – 1970-01-02 00:05 UTC"
        );
    }

    #[test]
    fn window_placeholders_need_a_windowed_result() {
        let dir = tempfile::tempdir().unwrap();
        let rows = windowed_rows().project(&[2, 3]).unwrap();
        let err = chart(
            dir.path(),
            "{path: 'c-{window_start}.png', x: tag, y: count}",
            &rows,
        )
        .err()
        .unwrap();
        assert!(err.contains("add `window:`"), "{err}");
        let err = chart(
            dir.path(),
            "{path: c.png, x: tag, y: count, title: '{window}'}",
            &rows,
        )
        .err()
        .unwrap();
        assert!(err.contains("windowed result"), "{err}");
    }
}
