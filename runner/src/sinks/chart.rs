//! `chart`: the top rows as a PNG bar chart, like the chapter's seaborn chart (palette `cool`,
//! rotated category labels) with value labels and a y axis from 0. The sink keeps the `top`
//! bars of each result and hands them to `render::bar_chart`; the image is rendered into
//! memory and written atomically, so a viewer never reads half a PNG.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use serde::Deserialize;

use super::{BuildSink, Flow, Sink, SinkContext};
use crate::data::{cell, column_index, type_label, Cell};
use crate::error::{Error, Result};
use crate::io::atomic;
pub use crate::render::bar_chart::{render_png, Bar, ChartSpec, Orientation, Palette};
use plotters::style::RGBColor;

/// Draw a bar chart.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartSinkConfig {
    /// The PNG file to write, relative to the pipeline file; its directory is created if needed.
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
    pub top: usize,
    /// The caption; `{epoch}` and `{time}` are replaced when it is drawn.
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BarOrder {
    #[default]
    Value,
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
    fn title(&self) -> String {
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
            bars: Vec::new(),
        }))
    }
}

pub struct ChartSink {
    spec: ChartSpec,
    path: PathBuf,
    x: usize,
    y: usize,
    top: usize,
    order: BarOrder,
    /// The epoch being drawn, and its bars so far: only `top` are kept, whatever the rows.
    epoch: u64,
    bars: Vec<Bar>,
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
            let value = match cell(batch.column(y).as_ref(), row) {
                Cell::Int(i) => i as f64,
                Cell::Float(f) if f.is_finite() => f,
                _ => return None,
            };
            Some(Bar {
                label: cell(batch.column(x).as_ref(), row).to_text(),
                value,
            })
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
        self.bars.clear();
        Ok(())
    }

    fn write(&mut self, rows: &RecordBatch) -> Result<Flow> {
        match self.order {
            BarOrder::Value => {
                // The top of (the top so far + this batch's top) is the top of all rows: the
                // order (value, then label) is total.
                self.bars.extend(top_bars(rows, self.x, self.y, self.top));
                self.bars.sort_by(|a, b| {
                    b.value
                        .total_cmp(&a.value)
                        .then_with(|| a.label.cmp(&b.label))
                });
                self.bars.truncate(self.top);
                Ok(Flow::More)
            }
            BarOrder::Input => {
                let wanted = self.top.saturating_sub(self.bars.len());
                self.bars.extend(first_bars(rows, self.x, self.y, wanted));
                Ok(if self.bars.len() >= self.top {
                    Flow::Enough
                } else {
                    Flow::More
                })
            }
        }
    }

    fn commit(&mut self) -> Result<()> {
        let spec = ChartSpec {
            title: caption(&self.spec.title, self.epoch),
            ..self.spec.clone()
        };
        let (png, drawn) = render_png(&self.bars, &spec).map_err(|e| {
            Error::runtime(format!(
                "cannot draw the chart {}: {e}",
                self.path.display()
            ))
        })?;
        if drawn.missing_glyphs > 0 {
            tracing::warn!(
                chart = %self.path.display(),
                "{} character(s) in the chart have no glyph in the embedded font and are drawn as `?`",
                drawn.missing_glyphs
            );
        }
        atomic::write(&self.path, &png)
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
}
