//! `window:` of `group_count` and `aggregate`: event-time windows, assigned exactly as Spark's
//! `window(column, size, slide, offset)` assigns them (its `TimeWindowing` analyzer rule):
//! aligned to the Unix epoch plus the offset, tumbling when `slide` is absent, sliding
//! otherwise, a window's start inside it and its end not.

use std::time::Duration;

use serde::Deserialize;

/// `window: {column: created_at, size: 10m, slide: 5m}`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// The timestamp column giving each row's event time; rows where it is null are left out.
    pub column: String,
    /// How long each window is (`10m`, `1h`, `30s`).
    #[serde(deserialize_with = "crate::settings::duration::required")]
    #[schemars(with = "String")]
    pub size: Duration,
    /// How often a window starts (at most `size`); absent: `size` (tumbling windows).
    #[serde(default, deserialize_with = "crate::settings::duration::opt")]
    #[schemars(with = "Option<String>")]
    pub slide: Option<Duration>,
    /// Shifts the windows from the Unix epoch (`1m`, or `-1m`), less than `slide` either way:
    /// with `size: 1h, offset: 15m` windows run from a quarter past the hour.
    #[serde(default)]
    pub offset: Option<String>,
}

/// The most windows one row may belong to (`size / slide`): more is a mistake that would
/// multiply every row.
const MAX_OVERLAPPING: i64 = 10_000;

/// Windows in microseconds, as Spark keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// How long each window is, in microseconds.
    pub size: i64,
    /// How often a window starts, in microseconds (`size` for tumbling windows).
    pub slide: i64,
    /// Where windows start, relative to the Unix epoch, in microseconds; less than `slide` either
    /// way.
    pub offset: i64,
}

fn micros(d: Duration, what: &str) -> Result<i64, String> {
    i64::try_from(d.as_micros()).map_err(|_| format!("window: `{what}` is too long"))
}

impl WindowConfig {
    /// The windows in microseconds; an error when `size` or `slide` is under a microsecond or too
    /// long, `slide` exceeds `size`, a row would be in more than 10,000 windows, or the offset is
    /// not shorter than `slide`.
    pub fn spec(&self) -> Result<WindowSpec, String> {
        let size = micros(self.size, "size")?;
        let slide = match self.slide {
            Some(slide) => micros(slide, "slide")?,
            None => size,
        };
        if size == 0 || slide == 0 {
            return Err("window: `size` and `slide` must be at least a microsecond".into());
        }
        if slide > size {
            return Err(format!(
                "window: `slide` ({}) is longer than `size` ({}): rows between windows would belong to none",
                humantime::format_duration(self.slide.unwrap_or_default()),
                humantime::format_duration(self.size)
            ));
        }
        let offset = match &self.offset {
            None => 0,
            Some(text) => {
                let (negative, magnitude) = match text.trim().strip_prefix('-') {
                    Some(rest) => (true, rest),
                    None => (false, text.trim()),
                };
                crate::settings::duration::fixed_units(magnitude)
                    .map_err(|e| format!("window: offset: {e}"))?;
                let parsed = humantime::parse_duration(magnitude.trim()).map_err(|e| {
                    format!("window: offset: `{text}` is not a duration ({e}); write it like `1m` or `-30s`")
                })?;
                let value = micros(parsed, "offset")?;
                if negative {
                    -value
                } else {
                    value
                }
            }
        };
        if size / slide > MAX_OVERLAPPING {
            return Err(format!(
                "window: a row would belong to {} windows (`size` / `slide`); at most {MAX_OVERLAPPING} are allowed",
                size / slide
            ));
        }
        if offset.abs() >= slide {
            return Err(format!(
                "window: `offset` ({}) must be shorter than the slide (as in Spark)",
                self.offset.as_deref().unwrap_or("0")
            ));
        }
        Ok(WindowSpec {
            size,
            slide,
            offset,
        })
    }
}

impl WindowSpec {
    /// How many windows may hold one instant.
    fn overlapping(&self) -> i64 {
        (self.size + self.slide - 1) / self.slide
    }

    /// Calls `each` with the start of every window holding event time `t`, latest first.
    /// Returns false, calling nothing, when a window holding `t` would start or end outside
    /// the 64-bit microsecond range (an event time near year ±292,000).
    ///
    /// Spark's arithmetic (3.4 on, after SPARK-39347): the last start is `t - r`, where `r` is
    /// the remainder of `t - offset` by `slide` made non-negative; earlier ones step back by
    /// `slide`, and a candidate that does not hold `t` is left out.
    #[inline]
    pub fn starts(&self, t: i64, mut each: impl FnMut(i64)) -> bool {
        let Some(last) = t
            .checked_sub(self.offset)
            .and_then(|shifted| t.checked_sub(shifted.rem_euclid(self.slide)))
        else {
            return false;
        };
        let count = self.overlapping();
        // The earliest candidate and the latest end must exist.
        let earliest = (count - 1)
            .checked_mul(self.slide)
            .and_then(|back| last.checked_sub(back));
        if earliest.is_none() || last.checked_add(self.size).is_none() {
            return false;
        }
        for i in 0..count {
            let start = last - i * self.slide;
            if t >= start && t < start + self.size {
                each(start);
            }
        }
        true
    }

    /// The end of the window starting at `start` (a start `starts` gave).
    pub fn end(&self, start: i64) -> i64 {
        start.saturating_add(self.size)
    }

    /// The window as people write it: `10m`, or `10m every 5m`.
    pub fn describe(&self) -> String {
        let d = |us: i64| humantime::format_duration(Duration::from_micros(us as u64)).to_string();
        let mut text = d(self.size);
        if self.slide != self.size {
            text += &format!(" every {}", d(self.slide));
        }
        if self.offset != 0 {
            let sign = if self.offset < 0 { "-" } else { "+" };
            text += &format!(" {sign}{}", d(self.offset.abs()));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    fn spec(yaml: &str) -> Result<WindowSpec, String> {
        serde_saphyr::from_str::<WindowConfig>(yaml)
            .map_err(|e| e.to_string())?
            .spec()
    }

    fn starts(spec: &WindowSpec, t: i64) -> Vec<i64> {
        let mut out = Vec::new();
        spec.starts(t, |s| out.push(s));
        out
    }

    fn placed(spec: &WindowSpec, t: i64) -> bool {
        spec.starts(t, |_| {})
    }

    #[test]
    fn tumbling_windows_hold_their_start_and_not_their_end() {
        let s = spec("{column: t, size: 10m}").unwrap();
        assert_eq!(starts(&s, 0), [0]);
        assert_eq!(starts(&s, 10 * MIN - 1), [0]);
        assert_eq!(starts(&s, 10 * MIN), [10 * MIN]);
        assert_eq!(s.end(10 * MIN), 20 * MIN);
    }

    #[test]
    fn sliding_windows_give_every_window_holding_the_instant() {
        let s = spec("{column: t, size: 10m, slide: 5m}").unwrap();
        assert_eq!(starts(&s, 12 * MIN), [10 * MIN, 5 * MIN]);
        assert_eq!(starts(&s, 15 * MIN), [15 * MIN, 10 * MIN]);
    }

    #[test]
    fn spark_s_own_example_with_an_offset() {
        // From the comment of Spark's TimeWindowing: 12:05 with window 12m, slide 5m, start 2m
        // falls in 11:57-12:09 and 12:02-12:14 (11:52-12:04 does not hold it).
        let s = spec("{column: t, size: 12m, slide: 5m, offset: 2m}").unwrap();
        let t = (12 * 60 + 5) * MIN;
        assert_eq!(starts(&s, t), [(12 * 60 + 2) * MIN, (11 * 60 + 57) * MIN]);
        let s = spec("{column: t, size: 12m, slide: 5m}").unwrap();
        assert_eq!(
            starts(&s, t),
            [(12 * 60 + 5) * MIN, (12 * 60) * MIN, (11 * 60 + 55) * MIN]
        );
    }

    #[test]
    fn negative_offsets_and_times_before_1970_follow_spark_arithmetic() {
        let s = spec("{column: t, size: 10m, offset: -1m}").unwrap();
        assert_eq!(starts(&s, 0), [-MIN]);
        let s = spec("{column: t, size: 10m}").unwrap();
        assert_eq!(starts(&s, -MIN), [-10 * MIN]);
        // More than a slide before 1970 (PySpark 4.0.1 gives these; before SPARK-39347 Spark
        // put -11m in [-10m, 0)).
        assert_eq!(starts(&s, -11 * MIN), [-20 * MIN]);
        let s = spec("{column: t, size: 10m, slide: 3m, offset: 1m}").unwrap();
        assert_eq!(
            starts(&s, -11 * MIN),
            [-11 * MIN, -14 * MIN, -17 * MIN, -20 * MIN]
        );
        assert_eq!(starts(&s, 0), [-2 * MIN, -5 * MIN, -8 * MIN]);
    }

    #[test]
    fn times_at_the_ends_of_the_range_are_not_placed_rather_than_wrapped() {
        let s = spec("{column: t, size: 10m, slide: 5m}").unwrap();
        assert!(!placed(&s, i64::MIN));
        assert!(!placed(&s, i64::MAX));
        assert!(placed(&s, i64::MAX - 10 * MIN - 1));
        for t in [i64::MIN + 10 * MIN, i64::MAX - 10 * MIN - 1] {
            for start in starts(&s, t) {
                assert!(start <= t && t < s.end(start));
            }
        }
    }

    #[test]
    fn a_row_in_too_many_windows_is_refused() {
        let e = spec("{column: t, size: 30days, slide: 1s}").unwrap_err();
        assert!(e.contains("at most 10000"), "{e}");
    }

    #[test]
    fn bad_windows_are_refused_with_the_reason() {
        let e = spec("{column: t, size: 5m, slide: 10m}").unwrap_err();
        assert!(e.contains("longer than `size`"), "{e}");
        let e = spec("{column: t, size: 10m, slide: 5m, offset: 5m}").unwrap_err();
        assert!(e.contains("shorter than the slide"), "{e}");
        let e = spec("{column: t, size: 10m, offset: soon}").unwrap_err();
        assert!(e.contains("not a duration"), "{e}");
        let e = spec("{column: t, size: 0s}").unwrap_err();
        assert!(e.contains("more than zero"), "{e}");
    }

    #[test]
    fn describes_itself() {
        assert_eq!(spec("{column: t, size: 10m}").unwrap().describe(), "10m");
        assert_eq!(
            spec("{column: t, size: 10m, slide: 5m, offset: -1m}")
                .unwrap()
                .describe(),
            "10m every 5m -1m"
        );
    }
}
