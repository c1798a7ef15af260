//! How a component reads its settings: environment variables in values, durations, paths
//! relative to the pipeline file, `type:`-tagged choices with located errors, suggestions for
//! misspelt names. The layer under both the pipeline loader (`config`) and the components,
//! which import it and never `config` itself: no cycle between them.

pub mod env;
pub mod size;
pub mod tagged;

use std::path::{Path, PathBuf};

/// Durations written as `10s`, `500ms`, `2m`, `1h 30m`.
pub mod duration {
    use serde::{Deserialize, Deserializer};

    /// The longest duration any setting takes (`stop_after`, triggers, timeouts, `--wait`):
    /// longer ones are mistakes, and instants that far ahead cannot be represented.
    pub const MAX: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);

    /// Parses `10s`, `500ms`, `1h 30m`; zero and more than [`MAX`] are errors.
    pub fn parse(text: &str) -> Result<std::time::Duration, String> {
        let parsed = parse_delay(text)?;
        if parsed.is_zero() {
            return Err(format!("`{text}`: the duration must be more than zero"));
        }
        Ok(parsed)
    }

    /// As [`parse`], zero allowed (a watermark's delay: `0s` keeps no late rows).
    pub fn parse_delay(text: &str) -> Result<std::time::Duration, String> {
        if text.trim().starts_with('-') {
            return Err(format!("`{text}`: a duration cannot be negative"));
        }
        fixed_units(text)?;
        let parsed = humantime::parse_duration(text.trim()).map_err(|e| {
            format!("`{text}` is not a duration ({e}); write it like `10s`, `500ms` or `2m`")
        })?;
        if parsed > MAX {
            return Err(format!("`{text}`: durations are limited to 100 years"));
        }
        Ok(parsed)
    }

    /// Refuses months and years (`1M`, `2y`), whose length varies: humantime reads them as
    /// 30.44 and 365.25 days, and `1M` is an easy slip for `1m`. Spark refuses them in
    /// windows too.
    pub fn fixed_units(text: &str) -> Result<(), String> {
        let units = text
            .split(|c: char| !c.is_alphabetic())
            .filter(|unit| !unit.is_empty());
        for unit in units {
            if matches!(
                unit,
                "M" | "month" | "months" | "y" | "year" | "years" | "mo"
            ) {
                return Err(format!(
                    "`{text}`: `{unit}` is a month or a year, which has no fixed length; write days (`30d`) (minutes are `m`)"
                ));
            }
        }
        Ok(())
    }

    /// A duration setting (`deserialize_with`), read by [`parse`].
    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    /// An optional delay setting (`deserialize_with`), read by [`parse_delay`]: zero allowed.
    pub fn opt_delay<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<std::time::Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => parse_delay(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }

    /// An optional duration setting (`deserialize_with`), read by [`parse`].
    pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::time::Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => parse(&text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// `path` if absolute (or `-`), otherwise `base/path` with `x/..` pairs folded away, so
/// messages say `data/x.txt` rather than `pipelines/../data/x.txt`.
pub fn resolve_against(base: &Path, path: &Path) -> PathBuf {
    use std::path::Component;
    if path.is_absolute() || path == Path::new("-") {
        return path.to_path_buf();
    }
    let mut resolved = PathBuf::new();
    for component in base.join(path).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(
                    resolved.components().next_back(),
                    Some(Component::Normal(_))
                ) =>
            {
                resolved.pop();
            }
            other => resolved.push(other),
        }
    }
    if resolved.as_os_str().is_empty() {
        resolved.push(".");
    }
    resolved
}

/// `, did you mean `x`?` when a candidate is close to `word`, else nothing.
pub fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match crate::error::closest(word, candidates) {
        Some(best) => format!(", did you mean `{best}`?"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::duration;
    use std::time::Duration;

    #[test]
    fn durations_have_fixed_lengths_and_only_delays_may_be_zero() {
        assert_eq!(duration::parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration::parse("500ms"), Ok(Duration::from_millis(500)));
        assert!(duration::parse("0s")
            .unwrap_err()
            .contains("more than zero"));
        assert_eq!(duration::parse_delay("0s"), Ok(Duration::ZERO));
        for month_or_year in ["1M", "2months", "1y", "1year 2d", "3mo"] {
            let error = duration::parse(month_or_year).unwrap_err();
            assert!(
                error.contains("no fixed length"),
                "{month_or_year}: {error}"
            );
            assert!(duration::parse_delay(month_or_year).is_err());
        }
        assert!(duration::parse("101y").is_err());
        assert!(duration::parse("-5m")
            .unwrap_err()
            .contains("cannot be negative"));
        assert!(duration::parse("36600d").unwrap_err().contains("100 years"));
    }
}
