//! Checking what a pipeline gave against what a test expects, and saying how they differ:
//! values compared as JSON (numbers by value, so `2` and `2.0` agree; timestamps as RFC 3339
//! text; lists as arrays), rows as lists of values or maps of some columns, and a diff of the
//! rows (`-` expected only, `+` actual only) when exact rows differ.

use arrow_array::RecordBatch;
use serde_json::Value;

use super::Expectation;
use crate::data::cell;

/// What one run of a pipeline handed its sinks.
pub struct Run {
    /// Each epoch's id and its whole result (one epoch, 0, in a batch run).
    pub epochs: Vec<(u64, RecordBatch)>,
    /// The result's column names, in order.
    pub columns: Vec<String>,
    /// `the sinks` or `transforms.N`, for messages.
    pub label: String,
    /// What the run warned of (input skipped or repaired): a failure may be explained there.
    pub warnings: Vec<String>,
}

/// Rows in a diff at most; more are counted.
const DIFF_LINES: usize = 40;

/// What of `expectation` does not hold in `run`.
pub fn check(expectation: &Expectation, run: &Run, streaming: bool) -> Vec<String> {
    let mut failures = Vec::new();
    let place = match expectation.sink {
        Some(sink) => format!("sinks.{sink}"),
        None => run.label.clone(),
    };
    let chosen = match expectation.epoch {
        Some(epoch) => run.epochs.iter().find(|(id, _)| *id == epoch),
        None => run.epochs.last(),
    };
    let Some((epoch, batch)) = chosen else {
        let ids: Vec<String> = run.epochs.iter().map(|(id, _)| id.to_string()).collect();
        return vec![match expectation.epoch {
            Some(epoch) => format!(
                "{place}: no epoch {epoch} (the run had epochs [{}])",
                ids.join(", ")
            ),
            None => format!("{place}: received no result"),
        }];
    };
    let at = if streaming {
        format!("{place}, epoch {epoch}")
    } else {
        place
    };
    if let Some(columns) = &expectation.columns {
        if *columns != run.columns {
            failures.push(format!(
                "{at}: columns are [{}], expected [{}]",
                run.columns.join(", "),
                columns.join(", ")
            ));
        }
    }
    let actual = rows_of(batch);
    if let Some(count) = expectation.row_count {
        if actual.len() != count {
            failures.push(format!("{at}: {} rows, expected {count}", actual.len()));
        }
    }
    if let Some(expected) = &expectation.rows {
        let shaped: Vec<Value> = expected
            .iter()
            .enumerate()
            .map(|(i, row)| {
                shape(
                    &actual.get(i).cloned().unwrap_or_default(),
                    row,
                    &run.columns,
                )
            })
            .collect();
        let same = expected.len() == actual.len()
            && expected
                .iter()
                .zip(&shaped)
                .all(|(e, a)| values_equal(e, a));
        if !same {
            failures.push(format!(
                "{at}: rows differ (- expected, + actual):\n{}",
                diff(expected, &actual, &run.columns)
            ));
        }
    }
    if let Some(wanted) = &expectation.contains {
        for row in wanted {
            let found = actual
                .iter()
                .any(|a| values_equal(row, &shape(a, row, &run.columns)));
            if !found {
                failures.push(format!(
                    "{at}: no row {} among the {} rows",
                    flow(row),
                    actual.len()
                ));
            }
        }
    }
    failures
}

/// Each row of `batch` as a JSON array.
fn rows_of(batch: &RecordBatch) -> Vec<Value> {
    (0..batch.num_rows())
        .map(|row| {
            Value::Array(
                batch
                    .columns()
                    .iter()
                    .map(|c| match cell(c.as_ref(), row) {
                        // JSON has no NaN or infinity: written as the sinks print them
                        // (`NaN`, `inf`, `-inf`), so a test tells them from null.
                        crate::data::Cell::Float(x) if !x.is_finite() => {
                            Value::String(crate::data::float_text(x))
                        }
                        value => value.to_json(),
                    })
                    .collect(),
            )
        })
        .collect()
}

/// `actual` (an array) in the shape of `expected`: an array as it is, a map of the same
/// columns for a map.
fn shape(actual: &Value, expected: &Value, columns: &[String]) -> Value {
    match (expected, actual) {
        (Value::Object(wanted), Value::Array(values)) => Value::Object(
            wanted
                .keys()
                .map(|name| {
                    let value = columns
                        .iter()
                        .position(|c| c == name)
                        .and_then(|i| values.get(i).cloned())
                        .unwrap_or(Value::String(format!("<no column {name}>")));
                    (name.clone(), value)
                })
                .collect(),
        ),
        _ => actual.clone(),
    }
}

/// JSON equality of an expected value `a` and an actual one `b`, with numbers compared by
/// value and timestamps by instant.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        // Date-times by the instant they name: `12:00:00Z` is `12:00:00+00:00` and
        // `13:00:00+01:00`, where the actual value (`b`) is a timestamp as runner prints one
        // (RFC 3339 in UTC with `Z`); a text written otherwise is compared as text.
        (Value::String(x), Value::String(y)) if x != y && is_date_time(x) => {
            match (
                crate::data::parse_timestamp(x),
                crate::data::parse_timestamp(y),
            ) {
                (Some(x), Some(at)) => x == at && crate::data::format_timestamp(at) == *y,
                _ => false,
            }
        }
        _ => a == b,
    }
}

/// Whether `text` is written as a date and time (`2024-05-01T12:00:00Z`, or a space before
/// the time), not an epoch number or other text that also reads as a timestamp.
fn is_date_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 19
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't' | b' ')
        && bytes[13] == b':'
}

/// A row as one line: `[romeo, 298]`, `{word: romeo}`.
fn flow(value: &Value) -> String {
    match value {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(flow).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{k}: {}", flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::String(s) if plain(s) => crate::error::escape_controls(s).into_owned(),
        // Quoted where written plain it would read as another value (`"1"`, `"null"`) or
        // not as one value: text and numbers never look alike in a diff.
        Value::String(s) => {
            crate::error::escape_controls(&Value::String(s.clone()).to_string()).into_owned()
        }
        other => other.to_string(),
    }
}

/// Whether YAML reads `text` written unquoted in a flow sequence as that text.
fn plain(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    let lower = text.to_ascii_lowercase();
    let special_word = matches!(
        lower.as_str(),
        "null" | "~" | "true" | "false" | "yes" | "no" | "on" | "off" | ".nan" | ".inf" | "-.inf"
    );
    let number = text.parse::<f64>().is_ok()
        || text.starts_with("0x")
        || text.starts_with("0o")
        || text.starts_with("+.");
    !special_word
        && !number
        && !text.contains([',', '[', ']', '{', '}', ':', '#', '"', '\''])
        && !"-?&*!|>%@`".contains(first)
        && text.trim() == text
}

/// A line diff of the rows (longest common subsequence), cut at `DIFF_LINES` lines.
fn diff(expected: &[Value], actual: &[Value], columns: &[String]) -> String {
    let shaped: Vec<Value> = actual
        .iter()
        .map(|a| match expected.first() {
            Some(first) => shape(a, first, columns),
            None => a.clone(),
        })
        .collect();
    let (n, m) = (expected.len(), shaped.len());
    // Tables of a few thousand rows at most: a quadratic table is fine; beyond, list both.
    let mut lines: Vec<String> = Vec::new();
    if n.saturating_mul(m) > 4_000_000 {
        lines.extend(expected.iter().map(|e| format!("- {}", flow(e))));
        lines.extend(shaped.iter().map(|a| format!("+ {}", flow(a))));
    } else {
        let mut lcs = vec![vec![0u32; m + 1]; n + 1];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i][j] = if values_equal(&expected[i], &shaped[j]) {
                    lcs[i + 1][j + 1] + 1
                } else {
                    lcs[i + 1][j].max(lcs[i][j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && values_equal(&expected[i], &shaped[j]) {
                lines.push(format!("  {}", flow(&expected[i])));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
                // Expected lines first where both differ, as diff and git show them.
                lines.push(format!("- {}", flow(&expected[i])));
                i += 1;
            } else {
                lines.push(format!("+ {}", flow(&shaped[j])));
                j += 1;
            }
        }
    }
    let total = lines.len();
    let mut text = lines
        .into_iter()
        .take(DIFF_LINES)
        .collect::<Vec<_>>()
        .join("\n");
    if total > DIFF_LINES {
        text.push_str(&format!("\n  ... {} more lines", total - DIFF_LINES));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(words: &[&str], counts: &[i64]) -> Run {
        Run {
            epochs: vec![(0, crate::data::word_counts(words, counts))],
            columns: vec!["word".into(), "count".into()],
            label: "the sinks".into(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn text_that_would_read_as_another_value_is_quoted_in_a_diff() {
        let row = json!(["romeo", "1", 1, "null", null, "a, b", " x", "", "2.5", true, "true"]);
        assert_eq!(
            flow(&row),
            r#"[romeo, "1", 1, "null", null, "a, b", " x", "", "2.5", true, "true"]"#
        );
    }

    #[test]
    fn exact_rows_pass_and_a_difference_is_shown_as_a_diff() {
        let run = run(&["romeo", "thou"], &[3, 2]);
        let mut expectation = Expectation {
            rows: Some(vec![json!(["romeo", 3]), json!(["thou", 2.0])]),
            ..Expectation::default()
        };
        assert!(check(&expectation, &run, false).is_empty());
        expectation.rows = Some(vec![json!(["romeo", 3]), json!(["thee", 2])]);
        let failures = check(&expectation, &run, false);
        assert_eq!(
            failures,
            ["the sinks: rows differ (- expected, + actual):\n  [romeo, 3]\n- [thee, 2]\n+ [thou, 2]"]
        );
    }

    #[test]
    fn date_times_compare_by_the_instant_they_name() {
        let text = |s: &str| Value::String(s.into());
        // As runner prints a timestamp: expected values that name its instant agree.
        let at = text("2025-01-15T12:00:00Z");
        assert!(values_equal(&text("2025-01-15T12:00:00+00:00"), &at));
        assert!(values_equal(&text("2025-01-15 13:00:00+01:00"), &at));
        assert!(values_equal(&text("2025-01-15T12:00:00.000Z"), &at));
        assert!(!values_equal(&text("2025-01-15T12:00:01Z"), &at));
        // A text column that holds a date-time written otherwise is text: a test can tell
        // that it is not written as expected.
        assert!(!values_equal(&at, &text("2025-01-15 13:00:00+01:00")));
        assert!(!values_equal(&at, &text("2025-01-15T12:00:00.000Z")));
        // Epoch numbers and other text stay text.
        assert!(!values_equal(&text("1736942400"), &at));
        assert!(!values_equal(&text("1"), &text("1.0")));
    }

    #[test]
    fn nan_and_infinities_are_told_from_null() {
        let floats = arrow_array::Float64Array::from(vec![
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            None,
        ]);
        let run = Run {
            epochs: vec![(
                0,
                RecordBatch::try_from_iter([(
                    "f",
                    std::sync::Arc::new(floats) as arrow_array::ArrayRef,
                )])
                .unwrap(),
            )],
            columns: vec!["f".into()],
            label: "the sinks".into(),
            warnings: Vec::new(),
        };
        let mut expectation = Expectation {
            rows: Some(vec![
                json!(["NaN"]),
                json!(["inf"]),
                json!(["-inf"]),
                json!([null]),
            ]),
            ..Expectation::default()
        };
        assert!(check(&expectation, &run, false).is_empty());
        expectation.rows = Some(vec![
            json!([null]),
            json!([null]),
            json!([null]),
            json!([null]),
        ]);
        assert_eq!(check(&expectation, &run, false).len(), 1);
    }

    #[test]
    fn maps_name_some_columns_and_contains_counts_and_columns_are_checked() {
        let run = run(&["a", "b"], &[1, 2]);
        let expectation = Expectation {
            contains: Some(vec![json!({"word": "b"}), json!({"count": 5})]),
            row_count: Some(3),
            columns: Some(vec!["word".into(), "n".into()]),
            ..Expectation::default()
        };
        let failures = check(&expectation, &run, false);
        assert_eq!(
            failures,
            [
                "the sinks: columns are [word, count], expected [word, n]",
                "the sinks: 2 rows, expected 3",
                "the sinks: no row {count: 5} among the 2 rows",
            ]
        );
    }

    #[test]
    fn a_missing_epoch_names_the_epochs_there_were() {
        let run = run(&["a"], &[1]);
        let expectation = Expectation {
            epoch: Some(4),
            row_count: Some(1),
            ..Expectation::default()
        };
        assert_eq!(
            check(&expectation, &run, true),
            ["the sinks: no epoch 4 (the run had epochs [0])"]
        );
    }
}
