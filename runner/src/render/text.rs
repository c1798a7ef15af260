//! Text for the charts: glyphs of the embedded Noto Sans rasterised with ab_glyph straight
//! into an RGB buffer (any angle), widths measured the same way, characters the font lacks
//! drawn as `?` and counted.

use std::sync::OnceLock;

use ab_glyph::{Font, ScaleFont};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use super::bar_chart::MAX_LABEL_CHARS;

pub(crate) fn glyph_font() -> Option<&'static ab_glyph::FontRef<'static>> {
    static FONT: OnceLock<Option<ab_glyph::FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| ab_glyph::FontRef::try_from_slice(notosans::REGULAR_TTF).ok())
        .as_ref()
}

/// `text` with characters the font cannot draw replaced by `?` (counted in `missing`), and cut
/// to `MAX_LABEL_CHARS` with `…`.
pub(crate) fn drawable(text: &str, missing: &mut usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            let has_glyph = glyph_font().is_none_or(|f| c.is_whitespace() || f.glyph_id(c).0 != 0);
            if c.is_control() {
                ' '
            } else if has_glyph {
                c
            } else {
                *missing += 1;
                '?'
            }
        })
        .collect();
    if out.chars().count() > MAX_LABEL_CHARS {
        out = out.chars().take(MAX_LABEL_CHARS - 1).collect::<String>() + "…";
    }
    out
}

/// How one piece of text is drawn.
#[derive(Clone, Copy)]
pub(crate) struct TextSpec {
    pub(crate) px: f32,
    pub(crate) colour: RGBColor,
    pub(crate) anchor: (HPos, VPos),
    /// Turned this many degrees counter-clockwise (90: reading bottom to top).
    pub(crate) angle: f32,
}

pub(crate) fn style(
    px: f64,
    colour: &'static RGBColor,
    anchor: Pos,
    transform: FontTransform,
) -> TextSpec {
    TextSpec {
        px: px.max(7.0) as f32,
        colour: *colour,
        anchor: (anchor.h_pos, anchor.v_pos),
        angle: if matches!(transform, FontTransform::Rotate270) {
            90.0
        } else {
            0.0
        },
    }
}

pub(crate) fn push(texts: &mut Vec<TextItem>, text: &str, spec: &TextSpec, at: (i32, i32)) {
    texts.push(TextItem {
        text: text.to_owned(),
        spec: *spec,
        at,
    });
}

/// Text waiting to be painted once the shapes are drawn.
pub(crate) struct TextItem {
    pub(crate) text: String,
    pub(crate) spec: TextSpec,
    pub(crate) at: (i32, i32),
}

pub(crate) fn text_width(text: &str, px: f64) -> i32 {
    let Some(font) = glyph_font() else { return 0 };
    let scaled = font.as_scaled(px.max(7.0) as f32);
    let mut width = 0.0f32;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            width += scaled.kern(p, id);
        }
        width += scaled.h_advance(id);
        previous = Some(id);
    }
    width.ceil() as i32
}

/// Paints text into RGB pixels with ab_glyph: each glyph at its own advance, bearing and
/// baseline (plotters' ab_glyph path drops the left bearing, so letters wobble).
pub(crate) fn paint_text(pixels: &mut [u8], (w, h): (u32, u32), item: &TextItem) {
    let Some(font) = glyph_font() else { return };
    let scaled = font.as_scaled(item.spec.px);
    let (ascent, descent) = (scaled.ascent(), scaled.descent());
    let width = text_width(&item.text, item.spec.px as f64) as f32;
    let height = ascent - descent;
    let dx = match item.spec.anchor.0 {
        HPos::Left => 0.0,
        HPos::Center => -width / 2.0,
        HPos::Right => -width,
    };
    let dy = match item.spec.anchor.1 {
        VPos::Top => 0.0,
        VPos::Center => -height / 2.0,
        VPos::Bottom => -height,
    };
    let RGBColor(r, g, b) = item.spec.colour;
    let mut caret = 0.0;
    let mut previous = None;
    for c in item.text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            caret += scaled.kern(p, id);
        }
        previous = Some(id);
        let glyph = id.with_scale_and_position(item.spec.px, ab_glyph::point(caret, ascent));
        caret += scaled.h_advance(id);
        let Some(outline) = font.outline_glyph(glyph) else {
            continue;
        };
        let bounds = outline.px_bounds();
        outline.draw(|gx, gy, coverage| {
            let lx = bounds.min.x + gx as f32 + dx;
            let ly = bounds.min.y + gy as f32 + dy;
            let mut blend = |x: i64, y: i64, a: f32| {
                if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 || a <= 0.0 {
                    return;
                }
                let i = ((y as usize) * w as usize + x as usize) * 3;
                let a = a.clamp(0.0, 1.0);
                for (channel, ink) in pixels[i..i + 3].iter_mut().zip([r, g, b]) {
                    *channel = (*channel as f32 * (1.0 - a) + ink as f32 * a).round() as u8;
                }
            };
            let angle = item.spec.angle;
            if angle == 0.0 || angle == 90.0 {
                // Whole pixels map to whole pixels.
                let (x, y) = if angle == 90.0 {
                    (item.at.0 as f32 + ly, item.at.1 as f32 - lx)
                } else {
                    (item.at.0 as f32 + lx, item.at.1 as f32 + ly)
                };
                blend(x.round() as i64, y.round() as i64, coverage);
            } else {
                // Any other angle lands between pixels: spread the coverage over the four
                // around it (bilinear), so the turned glyph has no holes.
                let (sin, cos) = angle.to_radians().sin_cos();
                let x = item.at.0 as f32 + lx * cos + ly * sin;
                let y = item.at.1 as f32 - lx * sin + ly * cos;
                let (x0, y0) = (x.floor(), y.floor());
                let (fx, fy) = (x - x0, y - y0);
                let (x0, y0) = (x0 as i64, y0 as i64);
                blend(x0, y0, coverage * (1.0 - fx) * (1.0 - fy));
                blend(x0 + 1, y0, coverage * fx * (1.0 - fy));
                blend(x0, y0 + 1, coverage * (1.0 - fx) * fy);
                blend(x0 + 1, y0 + 1, coverage * fx * fy);
            }
        });
    }
}
