//! Drawing a bar chart into memory: layout (plot area, axis with round ticks, bars in a
//! palette, value labels, category labels flat, at 45° or 90° as they fit) with plotters, and
//! text with `render::text`. All text is Noto Sans embedded in the binary (the notosans crate,
//! SIL OFL 1.1), so the chart looks the same on a server with no fonts. Labels are drawn one by
//! one at each bar's pixel position: plotters' own rotated axis labels overlap the bars
//! (plotters #551).

use ab_glyph::Font;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;
use serde::Deserialize;

use super::text::{drawable, glyph_font, paint_text, push, style, text_width, TextItem};

/// How bars are coloured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Palette {
    /// The `cool` gradient of seaborn, cyan to magenta across the bars (the default).
    #[default]
    Cool,
    /// The ten categorical colours of matplotlib's `tab10`, repeated past ten bars.
    Tab10,
    /// One colour for every bar.
    Single(RGBColor),
}

/// matplotlib's `tab10`.
const TAB10: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

impl Palette {
    /// The colour of bar `index` of `count`.
    pub fn colour(self, index: usize, count: usize) -> RGBColor {
        match self {
            Palette::Cool => bar_colour(index, count),
            Palette::Tab10 => TAB10[index % TAB10.len()],
            Palette::Single(colour) => colour,
        }
    }
}

/// Which way the bars run.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Orientation {
    /// Bars rise from the x axis, category labels below them (the default).
    #[default]
    Vertical,
    /// Bars run right from the y axis, category labels on the left.
    Horizontal,
}

/// Labels longer than this are cut and end with `…`.
pub(crate) const MAX_LABEL_CHARS: usize = 20;
const TEXT: RGBColor = RGBColor(40, 40, 40);
const AXIS: RGBColor = RGBColor(90, 90, 90);
const GRID: RGBColor = RGBColor(228, 228, 228);

/// What to draw, apart from the bars.
#[derive(Debug, Clone)]
pub struct ChartSpec {
    /// The caption, placeholders already replaced.
    pub title: String,
    /// The category column's name: the title of the category axis.
    pub x_name: String,
    /// The value column's name: the title of the value axis.
    pub y_name: String,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels; text and margins scale with it (720 pixels = 1).
    pub height: u32,
    /// Which way the bars run.
    pub orientation: Orientation,
    /// How the bars are coloured.
    pub palette: Palette,
}

/// One bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// The category label (cut to 20 characters with `…` when drawn).
    pub label: String,
    /// The bar's length, on an axis from 0 (a negative value has no bar).
    pub value: f64,
    /// The value as its label shows it: an integer's every digit (a float has 53 bits).
    pub text: String,
}

impl Bar {
    /// A bar of a float value.
    pub fn new(label: impl Into<String>, value: f64) -> Bar {
        Bar {
            label: label.into(),
            value,
            text: format_value(value),
        }
    }

    /// A bar of an integer value, labelled with its exact digits.
    pub fn integer(label: impl Into<String>, value: i64) -> Bar {
        let sign = if value < 0 { "-" } else { "" };
        Bar {
            label: label.into(),
            value: value as f64,
            text: format!("{sign}{}", crate::data::group_digits(value.unsigned_abs())),
        }
    }
}

/// The parts of the layout both orientations share.
struct Frame<'a> {
    spec: &'a ChartSpec,
    /// Text and margins grow with the image height (720 pixels = 1).
    scale: f64,
    /// Where the plot area starts, below the title.
    top: i32,
}

/// Where things ended up, for tests and warnings.
#[derive(Debug, Clone, Default)]
pub struct Drawn {
    /// The plot area: left, top, right, bottom, in pixels.
    pub plot: (i32, i32, i32, i32),
    /// The number of bars drawn.
    pub bars: usize,
    /// Characters replaced by `?` because the font has no glyph for them.
    pub missing_glyphs: usize,
    /// Bars whose value is below zero: labelled, without a bar (the axis starts at 0).
    pub negative: usize,
}

/// The seaborn/matplotlib `cool` colour map: cyan to magenta.
pub fn cool(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    RGBColor(
        (255.0 * t).round() as u8,
        (255.0 * (1.0 - t)).round() as u8,
        255,
    )
}

/// The colour of bar `index` of `count`.
pub fn bar_colour(index: usize, count: usize) -> RGBColor {
    cool(if count <= 1 {
        0.0
    } else {
        index as f64 / (count - 1) as f64
    })
}

/// The axis top for the largest value `max` (with room for value labels) and its ticks from 0:
/// steps of 1, 2 or 5 times a power of ten, none above the axis top; at least 1 when every
/// value is `whole` (counts have no ticks at 0.5).
fn axis(max: f64, headroom: f64, whole: bool) -> (f64, Vec<f64>) {
    // Near f64::MAX the headroom would overflow to infinity.
    let top = if max > 0.0 {
        (max * headroom).min(f64::MAX)
    } else {
        1.0
    };
    let rough = top / 5.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude);
    let step = if whole { step.max(1.0) } else { step };
    let count = (top / step).floor().min(20.0) as usize;
    (top, (0..=count).map(|i| i as f64 * step).collect())
}

/// A value label or tick: digits grouped (`298,000`), two decimals below 100, and beyond
/// 10^15 (where a float no longer holds every digit) at most three decimals and a power of
/// ten (`1.235e17`, `1e308`).
pub(crate) fn format_value(v: f64) -> String {
    let grouped = |whole: f64| {
        let sign = if whole < 0.0 { "-" } else { "" };
        format!(
            "{sign}{}",
            crate::data::group_digits(whole.abs().round() as u64)
        )
    };
    if v.abs() >= 1e15 {
        let text = format!("{v:.3e}");
        match text.split_once('e') {
            Some((mantissa, power)) if mantissa.contains('.') => {
                format!(
                    "{}e{power}",
                    mantissa.trim_end_matches('0').trim_end_matches('.')
                )
            }
            _ => text,
        }
    } else if v.fract() == 0.0 || v.abs() >= 100.0 {
        grouped(v)
    } else {
        format!("{v:.2}")
    }
}

/// Whether every bar's value is a whole number.
fn all_whole(bars: &[Bar]) -> bool {
    bars.iter().all(|b| b.value.fract() == 0.0)
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// Renders the chart to RGB pixels.
pub fn render_rgb(bars: &[Bar], spec: &ChartSpec) -> Result<(Vec<u8>, Drawn), String> {
    let (w, h) = (spec.width, spec.height);
    let mut pixels = vec![255u8; (w * h * 3) as usize];
    let mut drawn = Drawn {
        bars: bars.len(),
        negative: bars.iter().filter(|b| b.value < 0.0).count(),
        ..Drawn::default()
    };
    let mut texts: Vec<TextItem> = Vec::new();
    let texts_ref = &mut texts;
    {
        let texts = texts_ref;
        let area = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        area.fill(&WHITE).map_err(err)?;
        let scale = (h as f64 / 720.0).clamp(0.75, 3.0);
        let title_px = 26.0 * scale;
        let title = drawable(&spec.title, &mut drawn.missing_glyphs);
        // The title is not cut at MAX_LABEL_CHARS: use the raw text with only glyph fallback.
        let title = if title.ends_with('…') {
            spec.title
                .chars()
                .map(|c| {
                    if glyph_font().is_some_and(|f| f.glyph_id(c).0 == 0 && !c.is_whitespace()) {
                        '?'
                    } else {
                        c
                    }
                })
                .collect()
        } else {
            title
        };
        push(
            texts,
            &title,
            &style(
                title_px,
                &TEXT,
                Pos::new(HPos::Center, VPos::Top),
                FontTransform::None,
            ),
            (w as i32 / 2, (10.0 * scale) as i32),
        );
        let top = (10.0 * scale + title_px * 1.6) as i32;

        if bars.is_empty() {
            let (left, right, bottom) = (
                (40.0 * scale) as i32,
                w as i32 - (40.0 * scale) as i32,
                h as i32 - (40.0 * scale) as i32,
            );
            area.draw(&Rectangle::new(
                [(left, top), (right, bottom)],
                ShapeStyle::from(&GRID).stroke_width(2),
            ))
            .map_err(err)?;
            push(
                texts,
                "no data yet",
                &style(
                    30.0 * scale,
                    &AXIS,
                    Pos::new(HPos::Center, VPos::Center),
                    FontTransform::None,
                ),
                ((left + right) / 2, (top + bottom) / 2),
            );
            drawn.plot = (left, top, right, bottom);
        } else {
            let labels: Vec<String> = bars
                .iter()
                .map(|b| drawable(&b.label, &mut drawn.missing_glyphs))
                .collect();
            match spec.orientation {
                Orientation::Vertical => draw_vertical(
                    &area,
                    texts,
                    bars,
                    &labels,
                    &Frame { spec, scale, top },
                    &mut drawn,
                )?,
                Orientation::Horizontal => draw_horizontal(
                    &area,
                    texts,
                    bars,
                    &labels,
                    &Frame { spec, scale, top },
                    &mut drawn,
                )?,
            }
        }
        area.present().map_err(err)?;
    }
    for item in &texts {
        paint_text(&mut pixels, (w, h), item);
    }
    Ok((pixels, drawn))
}

fn draw_vertical(
    area: &Area,
    texts: &mut Vec<TextItem>,
    bars: &[Bar],
    labels: &[String],
    frame: &Frame,
    drawn: &mut Drawn,
) -> Result<(), String> {
    let (spec, scale, top) = (frame.spec, frame.scale, frame.top);
    let (w, h) = (spec.width as i32, spec.height as i32);
    let max = bars.iter().map(|b| b.value).fold(0.0, f64::max);
    let (axis_max, ticks) = axis(max, 1.08, all_whole(bars));
    let tick_px = 17.0 * scale;
    let axis_title_px = 18.0 * scale;
    let tick_labels: Vec<String> = ticks.iter().map(|t| format_value(*t)).collect();
    let tick_w = tick_labels
        .iter()
        .map(|t| text_width(t, tick_px))
        .max()
        .unwrap_or(0);
    let left = (14.0 * scale + axis_title_px * 1.5) as i32 + tick_w + 8;
    let right = w - (24.0 * scale) as i32;

    // Category labels: horizontal where they fit their slot, else turned 45° where their
    // thickness fits it (as matplotlib's rotation=45, ha='right'), else 90°. The turned
    // labels' length decides the bottom margin (at most 30% of the height); at 90° a crowded
    // chart gets a smaller font rather than overlapping labels.
    let slot = (right - left) as f64 / bars.len() as f64;
    let full_px = 18.0 * scale;
    let max_extent = h as f64 * 0.30;
    let widest = labels
        .iter()
        .map(|l| text_width(l, full_px))
        .max()
        .unwrap_or(0) as f64;
    let angle = label_angle(widest, full_px, slot);
    let label_px = if angle == 90.0 {
        full_px.min(slot * 0.8).max(6.0)
    } else {
        full_px
    };
    let (sin, cos) = (angle as f64).to_radians().sin_cos();
    // At 45° a label also reaches left of its bar: never past the plot's left edge.
    let max_label_len = match angle {
        0.0 => slot * 0.92,
        90.0 => max_extent,
        _ => ((max_extent - label_px) / sin).min((slot * 0.5 + left as f64 - 8.0) / cos),
    } as i32;
    let labels: Vec<String> = labels
        .iter()
        .map(|l| fit(l, label_px, max_label_len))
        .collect();
    let label_len = labels
        .iter()
        .map(|l| text_width(l, label_px))
        .max()
        .unwrap_or(0) as f64;
    let extent = (label_len * sin + label_px * 1.2 * cos).ceil() as i32;
    let bottom = h - (extent + 14 + (axis_title_px * 1.8) as i32);
    let plot_h = (bottom - top) as f64;
    let y_of = |v: f64| bottom - (v / axis_max * plot_h).round() as i32;

    for (tick, text) in ticks.iter().zip(&tick_labels) {
        let y = y_of(*tick);
        area.draw(&PathElement::new(
            vec![(left, y), (right, y)],
            ShapeStyle::from(&GRID).stroke_width(1),
        ))
        .map_err(err)?;
        area.draw(&PathElement::new(
            vec![(left - 5, y), (left, y)],
            ShapeStyle::from(&AXIS).stroke_width(1),
        ))
        .map_err(err)?;
        push(
            texts,
            text,
            &style(
                tick_px,
                &TEXT,
                Pos::new(HPos::Right, VPos::Center),
                FontTransform::None,
            ),
            (left - 8, y),
        );
    }

    let bar_w = (slot * 0.78).max(1.0);
    let value_px_base = 16.0 * scale;
    for (i, (bar, label)) in bars.iter().zip(&labels).enumerate() {
        let centre = left as f64 + slot * (i as f64 + 0.5);
        let (x0, x1) = (
            (centre - bar_w / 2.0).round() as i32,
            (centre + bar_w / 2.0).round() as i32,
        );
        let y_top = y_of(bar.value.max(0.0));
        area.draw(&Rectangle::new(
            [(x0, y_top), (x1.max(x0 + 1), bottom)],
            spec.palette.colour(i, bars.len()).filled(),
        ))
        .map_err(err)?;
        let value = bar.text.clone();
        let fits = text_width(&value, value_px_base) as f64 <= slot * 0.95;
        let value_px = if fits {
            value_px_base
        } else {
            value_px_base * slot * 0.95 / text_width(&value, value_px_base).max(1) as f64
        };
        push(
            texts,
            &value,
            &style(
                value_px,
                &TEXT,
                Pos::new(HPos::Center, VPos::Bottom),
                FontTransform::None,
            ),
            (centre as i32, y_top - 3),
        );
        // Turned labels are anchored by their end at the axis, so each hangs below its own
        // bar; a horizontal one is centred under it.
        let mut label_style = style(
            label_px,
            &TEXT,
            if angle == 0.0 {
                Pos::new(HPos::Center, VPos::Top)
            } else {
                Pos::new(HPos::Right, VPos::Center)
            },
            FontTransform::None,
        );
        label_style.angle = angle;
        push(texts, label, &label_style, (centre as i32, bottom + 8));
    }
    finish_axes(
        area,
        texts,
        frame,
        (left, top, right, bottom),
        (&spec.x_name, &spec.y_name),
        drawn,
    )
}

/// The angle of the category labels under vertical bars: 0 when the widest fits its slot,
/// 45 when a label's thickness fits it turned that way, else 90.
fn label_angle(widest: f64, px: f64, slot: f64) -> f32 {
    if widest <= slot * 0.92 {
        0.0
    } else if px * 1.2 * std::f64::consts::SQRT_2 <= slot {
        45.0
    } else {
        90.0
    }
}

fn draw_horizontal(
    area: &Area,
    texts: &mut Vec<TextItem>,
    bars: &[Bar],
    labels: &[String],
    frame: &Frame,
    drawn: &mut Drawn,
) -> Result<(), String> {
    let (spec, scale, top) = (frame.spec, frame.scale, frame.top);
    let (w, h) = (spec.width as i32, spec.height as i32);
    let max = bars.iter().map(|b| b.value).fold(0.0, f64::max);
    let (axis_max, ticks) = axis(max, 1.12, all_whole(bars));
    let tick_px = 17.0 * scale;
    let axis_title_px = 18.0 * scale;
    let bottom = h - (tick_px * 1.6 + axis_title_px * 1.8) as i32;
    let slot = (bottom - top) as f64 / bars.len() as f64;
    let label_px = (18.0 * scale).min(slot * 0.8).max(6.0);
    let max_label_len = (w as f64 * 0.30) as i32;
    let labels: Vec<String> = labels
        .iter()
        .map(|l| fit(l, label_px, max_label_len))
        .collect();
    let label_len = labels
        .iter()
        .map(|l| text_width(l, label_px))
        .max()
        .unwrap_or(0);
    let left = (14.0 * scale + axis_title_px * 1.5) as i32 + label_len + 10;
    let right = w - (24.0 * scale) as i32;
    let x_of = |v: f64| left + (v / axis_max * (right - left) as f64).round() as i32;

    for tick in &ticks {
        let x = x_of(*tick);
        area.draw(&PathElement::new(
            vec![(x, top), (x, bottom)],
            ShapeStyle::from(&GRID).stroke_width(1),
        ))
        .map_err(err)?;
        push(
            texts,
            &format_value(*tick),
            &style(
                tick_px,
                &TEXT,
                Pos::new(HPos::Center, VPos::Top),
                FontTransform::None,
            ),
            (x, bottom + 6),
        );
    }
    let bar_h = (slot * 0.78).max(1.0);
    for (i, (bar, label)) in bars.iter().zip(&labels).enumerate() {
        let centre = top as f64 + slot * (i as f64 + 0.5);
        let (y0, y1) = (
            (centre - bar_h / 2.0).round() as i32,
            (centre + bar_h / 2.0).round() as i32,
        );
        let x_end = x_of(bar.value.max(0.0));
        area.draw(&Rectangle::new(
            [(left, y0), (x_end, y1.max(y0 + 1))],
            spec.palette.colour(i, bars.len()).filled(),
        ))
        .map_err(err)?;
        push(
            texts,
            &bar.text,
            &style(
                label_px.min(16.0 * scale),
                &TEXT,
                Pos::new(HPos::Left, VPos::Center),
                FontTransform::None,
            ),
            (x_end + 4, centre as i32),
        );
        push(
            texts,
            label,
            &style(
                label_px,
                &TEXT,
                Pos::new(HPos::Right, VPos::Center),
                FontTransform::None,
            ),
            (left - 8, centre as i32),
        );
    }
    finish_axes(
        area,
        texts,
        frame,
        (left, top, right, bottom),
        (&spec.y_name, &spec.x_name),
        drawn,
    )
}

/// The axis lines and titles both orientations draw: `titles` are the one under the plot and
/// the one beside it (rotated).
fn finish_axes(
    area: &Area,
    texts: &mut Vec<TextItem>,
    frame: &Frame,
    (left, top, right, bottom): (i32, i32, i32, i32),
    (below, beside): (&str, &str),
    drawn: &mut Drawn,
) -> Result<(), String> {
    let (h, scale) = (frame.spec.height as i32, frame.scale);
    let axis_title_px = 16.0 * scale;
    area.draw(&PathElement::new(
        vec![(left, top), (left, bottom), (right, bottom)],
        ShapeStyle::from(&AXIS).stroke_width(1),
    ))
    .map_err(err)?;
    let under = style(
        axis_title_px,
        &TEXT,
        Pos::new(HPos::Center, VPos::Bottom),
        FontTransform::None,
    );
    push(
        texts,
        below,
        &under,
        ((left + right) / 2, h - (6.0 * scale) as i32),
    );
    let side = style(
        axis_title_px,
        &TEXT,
        Pos::new(HPos::Center, VPos::Top),
        FontTransform::Rotate270,
    );
    push(
        texts,
        beside,
        &side,
        ((8.0 * scale) as i32, (top + bottom) / 2),
    );
    drawn.plot = (left, top, right, bottom);
    Ok(())
}

/// Cuts `label` (ending it with `…`) until it is at most `max_px` wide.
fn fit(label: &str, px: f64, max_px: i32) -> String {
    let mut text = label.to_owned();
    while text_width(&text, px) > max_px && text.chars().count() > 2 {
        let kept: String = text
            .trim_end_matches('…')
            .chars()
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, rest)| rest.iter().collect())
            .unwrap_or_default();
        text = kept + "…";
    }
    text
}

/// Renders the chart as PNG bytes.
pub fn render_png(bars: &[Bar], spec: &ChartSpec) -> Result<(Vec<u8>, Drawn), String> {
    let (pixels, drawn) = render_rgb(bars, spec)?;
    let mut png = Vec::with_capacity(pixels.len() / 8);
    {
        let mut encoder = png::Encoder::new(&mut png, spec.width, spec.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // Fast compression: a chart is mostly flat colour, so it still compresses well.
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header().map_err(err)?;
        writer.write_image_data(&pixels).map_err(err)?;
    }
    Ok((png, drawn))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec(orientation: Orientation) -> ChartSpec {
        ChartSpec {
            title: "Top words".into(),
            x_name: "word".into(),
            y_name: "count".into(),
            width: 1280,
            height: 720,
            orientation,
            palette: Palette::Cool,
        }
    }

    fn bars(n: usize) -> Vec<Bar> {
        (0..n)
            .map(|i| Bar::new(format!("word{i:02}"), (300 - i * 10) as f64))
            .collect()
    }

    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).unwrap();
        (info.width, info.height, pixels)
    }

    /// Runs of bar-coloured pixels along row `y`.
    fn bar_runs(pixels: &[u8], width: u32, y: i32) -> usize {
        let row =
            &pixels[(y as usize * width as usize * 3)..((y as usize + 1) * width as usize * 3)];
        let mut runs = 0;
        let mut inside = false;
        for px in row.chunks(3) {
            let is_bar = px[2] == 255 && (px[0] as u16 + px[1] as u16) == 255;
            if is_bar && !inside {
                runs += 1;
            }
            inside = is_bar;
        }
        runs
    }

    #[test]
    fn png_has_the_size_and_one_coloured_region_per_bar() {
        for orientation in [Orientation::Vertical, Orientation::Horizontal] {
            let (png, drawn) = render_png(&bars(20), &spec(orientation)).unwrap();
            let (w, h, pixels) = decode(&png);
            assert_eq!((w, h), (1280, 720));
            assert!(pixels.iter().any(|&b| b < 200), "not blank");
            if orientation == Orientation::Vertical {
                assert_eq!(bar_runs(&pixels, w, drawn.plot.3 - 2), 20);
            } else {
                // Count bars down a column just right of the axis.
                let x = drawn.plot.0 as usize + 3;
                let column: Vec<u8> = (0..h as usize)
                    .flat_map(|y| {
                        pixels[(y * w as usize + x) * 3..(y * w as usize + x) * 3 + 3].to_vec()
                    })
                    .collect();
                assert_eq!(bar_runs(&column, h, 0), 20);
            }
        }
    }

    #[test]
    fn empty_result_says_no_data_yet() {
        let (png, drawn) = render_png(&[], &spec(Orientation::Vertical)).unwrap();
        let (w, _, pixels) = decode(&png);
        assert_eq!(drawn.bars, 0);
        assert!(pixels.iter().any(|&b| b < 200), "the message is drawn");
        assert_eq!(bar_runs(&pixels, w, 400), 0);
    }

    #[test]
    fn long_and_non_ascii_labels_draw_with_visible_fallback() {
        let mut missing = 0;
        assert_eq!(
            drawable("a_very_long_label_that_goes_on", &mut missing),
            "a_very_long_label_t…"
        );
        assert_eq!(drawable("café i’ll", &mut missing), "café i’ll");
        assert_eq!(missing, 0);
        assert_eq!(drawable("日本", &mut missing), "??");
        assert_eq!(missing, 2);
        let bars = vec![Bar::new("日本", 3.0), Bar::new("café", 2.0)];
        let (_, drawn) = render_png(&bars, &spec(Orientation::Vertical)).unwrap();
        assert_eq!(drawn.missing_glyphs, 2);
    }

    #[test]
    fn huge_integers_keep_their_digits_huge_floats_their_magnitude_and_counts_whole_ticks() {
        assert_eq!(
            Bar::integer("x", 12_345_678_901_234_567).text,
            "12,345,678,901,234,567"
        );
        assert_eq!(
            Bar::integer("x", i64::MIN).text,
            "-9,223,372,036,854,775,808"
        );
        assert_eq!(format_value(1e308), "1e308");
        assert_eq!(format_value(-2.5e20), "-2.5e20");
        assert_eq!(format_value(12_345_678_901_234_567.0), "1.235e16");
        assert_eq!(format_value(999_999_999_999_999.0), "999,999,999,999,999");
        assert_eq!(axis(2.0, 1.08, true).1, [0.0, 1.0, 2.0]);
        assert!(axis(2.0, 1.08, false).1.contains(&0.5));
        // The largest floats and a negative value draw, the negative one without a bar.
        let bars = vec![
            Bar::new("max", f64::MAX),
            Bar::new("big", 1e308),
            Bar::integer("below", -5),
        ];
        for orientation in [Orientation::Vertical, Orientation::Horizontal] {
            let (_, drawn) = render_png(&bars, &spec(orientation)).unwrap();
            assert_eq!((drawn.bars, drawn.negative), (3, 1));
        }
    }

    #[test]
    fn ticks_are_round_and_stay_below_the_axis_top() {
        let (top, ticks) = axis(298.0, 1.08, true);
        assert!((top - 321.84).abs() < 1e-9);
        assert_eq!(ticks, [0.0, 100.0, 200.0, 300.0]);
        assert_eq!(axis(0.0, 1.1, true).0, 1.0);
        let (top, ticks) = axis(12345.0, 1.08, true);
        assert!(*ticks.last().unwrap() <= top && ticks.len() >= 3);
    }

    #[test]
    fn labels_lie_flat_when_they_fit_then_turn_45_then_90() {
        assert_eq!(label_angle(40.0, 18.0, 60.0), 0.0);
        assert_eq!(label_angle(75.0, 18.0, 58.0), 45.0);
        assert_eq!(label_angle(75.0, 18.0, 20.0), 90.0);
    }

    #[test]
    fn palette_runs_from_cyan_to_magenta() {
        assert_eq!(bar_colour(0, 20), RGBColor(0, 255, 255));
        assert_eq!(bar_colour(19, 20), RGBColor(255, 0, 255));
        assert_eq!(Palette::Tab10.colour(11, 20), RGBColor(255, 127, 14));
        assert_eq!(
            Palette::Single(RGBColor(0x4c, 0x72, 0xb0)).colour(5, 20),
            RGBColor(0x4c, 0x72, 0xb0)
        );
    }
}
