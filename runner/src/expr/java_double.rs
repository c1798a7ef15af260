//! A text as Spark's `cast(s as double)` reads it, so that a cast gives the same float (or
//! fails on the same texts) on both engines. Spark first tries Java's `Double.parseDouble`
//! (decimal or hexadecimal digits, an optional `f`/`d` suffix, `NaN`, `Infinity`), then its
//! own spellings (`inf`, `infinity`, `nan` in any case). Decimal digits are converted by Rust's
//! parser (correctly rounded, as Java's is) once the text is known to be in Java's grammar;
//! hexadecimal ones here (Rust has no such parser), rounded to nearest, ties to even.

/// `text` as Spark casts it to a double, or `None` where the cast fails.
pub(super) fn spark_double(text: &str) -> Option<f64> {
    // What Java's `String.trim`, and so Spark's casts, take off a text.
    let text = text.trim_matches(super::eval::spark_space);
    if let Some(value) = java_parse_double(text) {
        return Some(value);
    }
    match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => None,
    }
}

/// Java's `Double.parseDouble` on a trimmed text.
fn java_parse_double(text: &str) -> Option<f64> {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'+') => (false, &text[1..]),
        Some(b'-') => (true, &text[1..]),
        _ => (false, text),
    };
    let magnitude = match rest {
        "NaN" => return Some(f64::NAN),
        "Infinity" => f64::INFINITY,
        _ => {
            // One type suffix may end the number; it does not change the value.
            let body = rest.strip_suffix(['f', 'F', 'd', 'D']).unwrap_or(rest);
            match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
                Some(hex) => hexadecimal(hex)?,
                None if is_decimal(body) => body.parse::<f64>().ok()?,
                None => return None,
            }
        }
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// Whether `body` is `digits [. digits] [(e|E) [+|-] digits]` with a digit before the
/// exponent (`1.`, `.5` and `1.e2` are numbers; `.`, `e5` and `1e` are not).
fn is_decimal(body: &str) -> bool {
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(whole) && digits(fraction) && whole.len() + fraction.len() > 0;
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// `hex [. hex] (p|P) [+|-] digits` (after `0x`): its value, rounded to nearest, ties to even.
fn hexadecimal(text: &str) -> Option<f64> {
    let at = text.find(['p', 'P'])?;
    let (mantissa, exponent) = (&text[..at], &text[at + 1..]);
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.len() + fraction.len() == 0 {
        return None;
    }
    let exponent_digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if exponent_digits.is_empty() || !exponent_digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Past ±100,000 every value is 0 or infinite: held there, the sums below cannot overflow.
    let mut binary_exponent: i64 = exponent_digits
        .bytes()
        .fold(0i64, |e, d| (e * 10 + i64::from(d - b'0')).min(100_000));
    if exponent.starts_with('-') {
        binary_exponent = -binary_exponent;
    }
    // The first 15 significant digits (60 bits) exactly; whether any later one is not 0.
    let mut significand: u64 = 0;
    let mut sticky = false;
    let mut kept = 0;
    for (index, c) in whole.chars().chain(fraction.chars()).enumerate() {
        let digit = u64::from(c.to_digit(16)?);
        let in_fraction = index >= whole.len();
        if kept < 15 {
            if significand != 0 || digit != 0 {
                significand = significand << 4 | digit;
                kept += 1;
            }
            if in_fraction {
                binary_exponent -= 4;
            }
        } else {
            sticky |= digit != 0;
            if !in_fraction {
                binary_exponent += 4;
            }
        }
    }
    Some(round_to_double(significand, binary_exponent, sticky))
}

/// `significand × 2^exponent` (with `sticky`: a little more than that) as the nearest double,
/// ties to even.
fn round_to_double(significand: u64, exponent: i64, sticky: bool) -> f64 {
    if significand == 0 {
        return 0.0;
    }
    let length = i64::from(64 - significand.leading_zeros());
    // The place of the leading bit, and how many bits a double keeps there (fewer below the
    // normal range).
    let top = length - 1 + exponent;
    let precision = if top >= -1022 { 53 } else { top + 1075 };
    let dropped = length - precision;
    let (mut kept, mut kept_exponent) = (u128::from(significand), exponent);
    if dropped > 0 {
        let value = u128::from(significand);
        let (quotient, remainder, half) = if dropped >= 128 {
            (0, value, u128::MAX)
        } else {
            let dropped = dropped as u32;
            (
                value >> dropped,
                value & ((1u128 << dropped) - 1),
                1u128 << (dropped - 1),
            )
        };
        let up = remainder > half || (remainder == half && (sticky || quotient & 1 == 1));
        kept = quotient + u128::from(up);
        kept_exponent += dropped;
    }
    // `kept` has at most 53 bits and `kept × 2^kept_exponent` is a double (or past the
    // largest): scaled by powers of two, each step is exact.
    let mut value = kept as f64;
    let mut e = kept_exponent;
    while e != 0 && value != 0.0 && value.is_finite() {
        let step = e.clamp(-1000, 1000);
        value *= f64::from_bits(((step + 1023) as u64) << 52);
        e -= step;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Option<f64> {
        spark_double(text)
    }

    /// As Spark 4.0.1 on Java 17 casts them (`try_cast(s as double)`).
    #[test]
    fn texts_read_as_sparks_cast_reads_them() {
        let same = |text: &str, expected: Option<f64>| {
            let got = read(text);
            match (got, expected) {
                (Some(g), Some(e)) if e.is_nan() => assert!(g.is_nan(), "{text:?}: {g}"),
                (Some(g), Some(e)) => assert_eq!(g.to_bits(), e.to_bits(), "{text:?}: {g} {e}"),
                (g, e) => assert_eq!(g, e, "{text:?}"),
            }
        };
        for (text, expected) in [
            ("-nan", None),
            ("+nan", None),
            ("-NaN", Some(f64::NAN)),
            ("NAN", Some(f64::NAN)),
            ("+NaN", Some(f64::NAN)),
            ("INFINITY", Some(f64::INFINITY)),
            ("-Infinity", Some(f64::NEG_INFINITY)),
            ("+inf", Some(f64::INFINITY)),
            ("-INF", Some(f64::NEG_INFINITY)),
            ("0x1p3", Some(8.0)),
            ("0X1P-2", Some(0.25)),
            ("0x1.8p1", Some(3.0)),
            ("-0x1p3", Some(-8.0)),
            ("0x1p3d", Some(8.0)),
            ("0x10", None),
            ("1.5d", Some(1.5)),
            ("1.5F", Some(1.5)),
            ("1.5e3d", Some(1500.0)),
            ("1d", Some(1.0)),
            ("d", None),
            ("1.5dd", None),
            (" 1.5d ", Some(1.5)),
            ("1e", None),
            ("1e+", None),
            ("1.e2", Some(100.0)),
            (".e2", None),
            ("+.5", Some(0.5)),
            ("1E400", Some(f64::INFINITY)),
            ("1e-400", Some(0.0)),
            (" \u{1} 1.5 \u{1f}", Some(1.5)),
            ("1.5\u{a0}", None),
            ("١", None),
            ("1_0", None),
            ("0x", None),
            ("0xp1", None),
            ("0x.p1", None),
            ("0x1.p1", Some(2.0)),
            ("0x.8p1", Some(1.0)),
            ("1.5 d", None),
            ("NaNd", None),
            ("Infinityd", None),
            ("-0", Some(-0.0)),
            ("", None),
        ] {
            same(text, expected);
        }
    }

    #[test]
    fn hexadecimal_digits_round_to_nearest_ties_to_even() {
        let hex = |text: &str| read(text).unwrap();
        // 53 bits exactly, and one half-unit more: a tie, to even (down), then just past it.
        assert_eq!(hex("0x1.fffffffffffffp0"), 2.0 - f64::EPSILON);
        assert_eq!(hex("0x1.00000000000008p0"), 1.0);
        assert_eq!(hex("0x1.000000000000080000001p0"), 1.0 + f64::EPSILON);
        assert_eq!(hex("0x1.00000000000018p0"), 1.0 + 2.0 * f64::EPSILON);
        // Digits past the 15th count only as "more than the tie".
        assert_eq!(hex("0x1000000000000080000000001p-96"), 1.0 + f64::EPSILON);
        // Below the normal range, and below the least double.
        assert_eq!(hex("0x1p-1074"), 5e-324);
        assert_eq!(hex("0x1p-1075"), 0.0);
        assert_eq!(hex("0x1.0000001p-1075"), 5e-324);
        assert_eq!(hex("0x1.8p-1074"), 1e-323);
        assert_eq!(hex("0x1p-1022"), f64::MIN_POSITIVE);
        assert_eq!(hex("0x1.fffffffffffffp1023"), f64::MAX);
        assert_eq!(hex("0x1.fffffffffffff8p1023"), f64::INFINITY);
        assert_eq!(hex("0x1p99999999999999999999"), f64::INFINITY);
        assert_eq!(hex("0x1p-99999999999999999999"), 0.0);
        assert_eq!(hex("0x0.0p0"), 0.0);
        assert_eq!(hex("0x000000000000000000000001p0"), 1.0);
    }
}
