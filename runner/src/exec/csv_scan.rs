//! The CSV aggregate kernel's fast pieces: where a morsel's delimiters and newlines are (one
//! pass, 64 bytes at a time), and parsers for the plain spellings of integers and decimals
//! that give exactly what Arrow's CSV reader gives, without its general grammar.
//!
//! A record of the records benchmark is about 43 bytes with five fields: splitting it field
//! by field and parsing numbers with the general parsers took most of the kernel's time.

use arrow_array::types::{Float64Type, Int64Type};
use arrow_cast::parse::Parser;

/// Writes the place of every `delimiter` and newline of `bytes`, in order, into `out` from
/// index `from`, and gives how many were written and how many of them are newlines. `out`
/// must hold `from + bytes.len() + 64` entries (the writes go past the last place by up to 64).
pub fn separators(bytes: &[u8], delimiter: u8, out: &mut [u32], from: usize) -> (usize, usize) {
    assert!(out.len() >= from + bytes.len() + 64, "room for every place");
    assert!(u32::try_from(bytes.len()).is_ok(), "places fit 32 bits");
    #[cfg(target_arch = "x86_64")]
    if crate::short_words_avx512::available() {
        // SAFETY: `available` checked the features; `out` has the room asserted above.
        return unsafe { separators_avx512(bytes, delimiter, out, from) };
    }
    #[cfg(target_arch = "x86_64")]
    if avx2_available() {
        // SAFETY: `avx2_available` checked the features; `out` has the room asserted above.
        return unsafe { separators_avx2(bytes, delimiter, out, from) };
    }
    separators_portable(bytes, delimiter, out, from)
}

/// Whether the CPU has what `separators_avx2` uses (most x86-64 CPUs since 2013; the
/// development machines without AVX-512 have it).
#[cfg(target_arch = "x86_64")]
fn avx2_available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("bmi1")
        && is_x86_feature_detected!("popcnt")
}

/// `separators` with AVX2: two 32-byte compares give each 64 bytes' places as a bit mask,
/// written out four places at a time (the portable loop, a byte at a time, was a fifth of the
/// CSV kernel's time on a CPU without AVX-512).
///
/// # Safety
/// The CPU must have the features `avx2_available` checks, and `out` must hold
/// `from + bytes.len() + 64` entries.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,popcnt")]
unsafe fn separators_avx2(
    bytes: &[u8],
    delimiter: u8,
    out: &mut [u32],
    from: usize,
) -> (usize, usize) {
    use std::arch::x86_64::*;
    let (mut n, mut newlines) = (from, 0usize);
    let newline = _mm256_set1_epi8(b'\n' as i8);
    let delimiters = _mm256_set1_epi8(delimiter as i8);
    let mut block = [0u8; 64];
    for (index, chunk) in bytes.chunks(64).enumerate() {
        let base = (index * 64) as u32;
        let source = match chunk.len() {
            64 => chunk.as_ptr(),
            // Only the last chunk is short: `block` is still all zeros.
            len => {
                block[..len].copy_from_slice(chunk);
                block.as_ptr()
            }
        };
        // SAFETY: `source` points at 64 readable bytes (a whole chunk or the zero-padded
        // copy, whose zeros are neither a delimiter nor a newline unless the delimiter is 0;
        // then `valid` masks them off).
        let (low, high) = unsafe {
            (
                _mm256_loadu_si256(source.cast()),
                _mm256_loadu_si256(source.add(32).cast()),
            )
        };
        let mask = |v: __m256i, of: __m256i| _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, of)) as u32;
        let valid = u64::MAX >> (64 - chunk.len());
        let lines = (u64::from(mask(low, newline)) | u64::from(mask(high, newline)) << 32) & valid;
        let mut places = lines
            | ((u64::from(mask(low, delimiters)) | u64::from(mask(high, delimiters)) << 32)
                & valid);
        newlines += lines.count_ones() as usize;
        let count = places.count_ones() as usize;
        // Four places per round, without a branch per place: the writes past `count` (at
        // most three, each `base + 64`) land in `out`'s room and are overwritten or ignored.
        let to = &mut out[n..n + count.next_multiple_of(4)];
        for four in to.chunks_exact_mut(4) {
            for place in four {
                *place = base + places.trailing_zeros();
                places &= places.wrapping_sub(1);
            }
        }
        n += count;
    }
    (n - from, newlines)
}

fn separators_portable(
    bytes: &[u8],
    delimiter: u8,
    out: &mut [u32],
    from: usize,
) -> (usize, usize) {
    let (mut n, mut newlines) = (from, 0);
    for (at, &byte) in bytes.iter().enumerate() {
        if byte == delimiter || byte == b'\n' {
            out[n] = at as u32;
            n += 1;
            newlines += usize::from(byte == b'\n');
        }
    }
    (n - from, newlines)
}

/// `separators` with AVX-512: each 64 bytes' places are one compress of the byte indices.
///
/// # Safety
/// The CPU must have the features `short_words_avx512::available` checks, and `out` must hold
/// `from + bytes.len() + 64` entries.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
unsafe fn separators_avx512(
    bytes: &[u8],
    delimiter: u8,
    out: &mut [u32],
    from: usize,
) -> (usize, usize) {
    use std::arch::x86_64::*;
    let iota: [u8; 64] = std::array::from_fn(|i| i as u8);
    let (mut n, mut newlines) = (from, 0usize);
    let newline = _mm512_set1_epi8(b'\n' as i8);
    let delimiters = _mm512_set1_epi8(delimiter as i8);
    // SAFETY: `iota` is 64 bytes.
    let indices = unsafe { _mm512_loadu_si512(iota.as_ptr().cast()) };
    let mut block = [0u8; 64];
    for (index, chunk) in bytes.chunks(64).enumerate() {
        let base = (index * 64) as u32;
        let source = match chunk.len() {
            64 => chunk.as_ptr(),
            // Only the last chunk is short: `block` is still all zeros.
            len => {
                block[..len].copy_from_slice(chunk);
                block.as_ptr()
            }
        };
        // SAFETY: `source` points at 64 readable bytes (a whole chunk or the zero-padded
        // copy, whose zeros are neither a delimiter nor a newline unless the delimiter is 0;
        // then `valid` masks them off).
        let v = unsafe { _mm512_loadu_si512(source.cast()) };
        let valid = u64::MAX >> (64 - chunk.len());
        let lines = _mm512_cmpeq_epi8_mask(v, newline) & valid;
        let places = (lines | _mm512_cmpeq_epi8_mask(v, delimiters)) & valid;
        newlines += lines.count_ones() as usize;
        let count = places.count_ones() as usize;
        let packed = _mm512_maskz_compress_epi8(places, indices);
        let offset = _mm512_set1_epi32(base as i32);
        let mut written = 0;
        while written < count {
            let lane = match written {
                0 => _mm512_castsi512_si128(packed),
                16 => _mm512_extracti32x4_epi32::<1>(packed),
                32 => _mm512_extracti32x4_epi32::<2>(packed),
                _ => _mm512_extracti32x4_epi32::<3>(packed),
            };
            let wide = _mm512_add_epi32(_mm512_cvtepu8_epi32(lane), offset);
            let to = &mut out[n + written..n + written + 16];
            // SAFETY: `to` is 16 `u32`s of `out` (the slice is bounds-checked).
            unsafe { _mm512_storeu_si512(to.as_mut_ptr().cast(), wide) };
            written += 16;
        }
        n += count;
    }
    (n - from, newlines)
}

/// Ten to the powers a plain decimal's fraction may have (all exact in an f64).
const POWERS_OF_TEN: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

const ZEROS: u64 = 0x3030_3030_3030_3030;

/// The eight bytes of `text` that end at `end`, with the `len` bytes of the field that ends
/// there kept and the bytes before it made `'0'` (leading zeros): `None` when fewer than
/// eight bytes end at `end` or the field is longer than eight.
#[inline(always)]
fn right_aligned(text: &[u8], end: usize, len: usize) -> Option<u64> {
    if len == 0 || len > 8 {
        return None;
    }
    let eight = text.get(end.checked_sub(8)?..end)?;
    let word = u64::from_le_bytes(eight.try_into().ok()?);
    // The field's first byte is byte `8 - len`; the bytes below it belong to other fields.
    let below = match len {
        8 => 0,
        _ => (1u64 << ((8 - len) * 8)) - 1,
    };
    Some((word & !below) | (ZEROS & below))
}

/// Eight ASCII digits (the first at the lowest byte) as their number; `None` if a byte is not
/// a digit.
#[inline(always)]
fn eight_digits(word: u64) -> Option<u64> {
    let digits = word ^ ZEROS;
    // Each byte is 0..=9 exactly when adding 0x76 leaves its top bit clear and it had none.
    if (digits.wrapping_add(0x7676_7676_7676_7676) | digits) & 0x8080_8080_8080_8080 != 0 {
        return None;
    }
    let pairs = (digits.wrapping_mul(10) + (digits >> 8)) & 0x00FF_00FF_00FF_00FF;
    let quads = (pairs.wrapping_mul(100) + (pairs >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((quads.wrapping_mul(10_000) + (quads >> 32)) & 0xFFFF_FFFF)
}

/// The field `text[start..end]` as Arrow's CSV reader reads an integer (`Int64Type::parse`):
/// up to eight digits after an optional `-` in a few instructions, anything else by that
/// parser itself.
#[inline(always)]
pub fn parse_integer(text: &str, start: usize, end: usize) -> Option<i64> {
    let bytes = text.as_bytes();
    let negative = bytes.get(start) == Some(&b'-');
    let digits = end.saturating_sub(start + usize::from(negative));
    if let Some(word) = right_aligned(bytes, end, digits) {
        if let Some(value) = eight_digits(word) {
            let value = value as i64;
            return Some(if negative { -value } else { value });
        }
    }
    Int64Type::parse(text.get(start..end)?)
}

/// The field `text[start..end]` as Arrow's CSV reader reads a float (`Float64Type::parse`).
#[inline(always)]
pub fn parse_float(text: &str, start: usize, end: usize) -> Option<f64> {
    parse_float_parts(text, start, end).map(|(numerator, power)| numerator / POWERS_OF_TEN[power])
}

/// `parse_float` as a numerator and the power of ten (an index into `POWERS_OF_TEN`) to divide
/// it by, so that a column's divisions can run in a loop of their own (where they overlap: in
/// the parsing loop each one's latency held the loop up).
///
/// A plain decimal of up to eight characters after an optional `-` (digits, at most one `.`
/// with a digit on each side) is its digits as an integer over a power of ten: both are exact
/// in an f64 and IEEE division rounds correctly, so the quotient is the correctly rounded value
/// the general parser gives. Anything else is that parser's value over 1.
#[inline(always)]
pub fn parse_float_parts(text: &str, start: usize, end: usize) -> Option<(f64, usize)> {
    let bytes = text.as_bytes();
    let negative = bytes.get(start) == Some(&b'-');
    let len = end.saturating_sub(start + usize::from(negative));
    if let Some(word) = right_aligned(bytes, end, len) {
        if let Some((mantissa, power)) = plain_decimal(word, len) {
            // `mantissa as f64` is a conversion that merges into its register's old value, a
            // chain from one row to the next; below 2^52 the float with the mantissa's bits
            // under 2^52's exponent, less 2^52, is the same number with no such chain.
            const TWO_TO_52: f64 = 4_503_599_627_370_496.0;
            let numerator = f64::from_bits(TWO_TO_52.to_bits() | mantissa) - TWO_TO_52;
            return Some((if negative { -numerator } else { numerator }, power));
        }
    }
    Float64Type::parse(text.get(start..end)?).map(|value| (value, 0))
}

/// Divides each numerator of `values` by ten to its power in `powers` (see
/// `parse_float_parts`); with one power for all, one division the compiler can vectorise.
pub fn divide_by_powers(values: &mut [f64], powers: &[u32]) {
    match powers.first() {
        Some(&first) if powers.iter().all(|&p| p == first) => {
            let divisor = POWERS_OF_TEN[first as usize % POWERS_OF_TEN.len()];
            values.iter_mut().for_each(|v| *v /= divisor);
        }
        _ => {
            for (v, &p) in values.iter_mut().zip(powers) {
                *v /= POWERS_OF_TEN[p as usize % POWERS_OF_TEN.len()];
            }
        }
    }
}

/// A right-aligned field of `len` bytes (see `right_aligned`) read as a plain decimal: its
/// digits as an integer and how many follow the dot.
#[inline(always)]
fn plain_decimal(word: u64, len: usize) -> Option<(u64, usize)> {
    // The bytes equal to '.': the high bit of each (exact: no borrow between bytes).
    let dots = {
        let t = word ^ 0x2E2E_2E2E_2E2E_2E2E;
        !(((t & 0x7F7F_7F7F_7F7F_7F7F) + 0x7F7F_7F7F_7F7F_7F7F) | t | 0x7F7F_7F7F_7F7F_7F7F)
    };
    // (No `count_ones`: without the POPCNT feature, which the baseline target lacks, it is a
    // dozen instructions.)
    let (digits, fraction) = match dots {
        0 => (word, 0),
        _ if dots & (dots - 1) == 0 => {
            let dot = dots.trailing_zeros() as usize / 8;
            // A digit on each side: the dot is neither the field's first byte nor its last.
            if dot <= 8 - len || dot == 7 {
                return None;
            }
            // The bytes before the dot move up one byte into its place; a '0' comes in below.
            let below = (1u64 << (dot * 8)) - 1;
            let above = word & !((below << 8) | 0xFF);
            ((word & below) << 8 | above | 0x30, 7 - dot)
        }
        _ => return None,
    };
    Some((eight_digits(digits)?, fraction))
}

/// Whether this CPU runs `plain_numbers` (checked once).
pub fn lanes_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512cd")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A number column read eight fields at a time: into `i64`s or `f64`s, the only two types
/// (sealed: the lanes are stored as eight 8-byte values of either).
pub trait Lanes: sealed::Sealed + Copy + Default {
    /// Whether the lanes are floats (else integers).
    const FLOAT: bool;
}
impl Lanes for i64 {
    const FLOAT: bool = false;
}
impl Lanes for f64 {
    const FLOAT: bool = true;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for i64 {}
    impl Sealed for f64 {}
}

/// Reads field `field` of the first `rows` records of `bytes` (record `r`'s field ends at
/// `seps[r * fields + field + 1]` and starts one past `seps[r * fields + field]`) as plain
/// numbers eight at a time: integers of up to eight digits after an optional `-`, and for
/// floats decimals as `parse_float` reads them, with the same values. Writes `out[r]` for each
/// such field and pushes every other record's number to `others` (empty fields, other
/// spellings, fields within eight bytes of the text's start, the last few records): the
/// caller reads those with `parse_integer` / `parse_float`.
///
/// Needs `lanes_available()`; `out` holds `rows` values.
pub fn plain_numbers<T: Lanes>(
    bytes: &[u8],
    seps: &[u32],
    (fields, field, rows): (usize, usize, usize),
    out: &mut [T],
    others: &mut Vec<u32>,
) {
    assert!(lanes_available() && field < fields && out.len() >= rows);
    assert!(seps.len() > rows * fields && i32::try_from(seps.len()).is_ok());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `lanes_available` checked the features; the asserts above are the rest of
    // `number_column`'s conditions.
    unsafe {
        number_column(bytes, seps, (fields, field, rows), out, others)
    };
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (bytes, seps, out);
        others.extend(0..rows as u32);
    }
}

/// `plain_numbers`, eight records at a time.
///
/// # Safety
/// The CPU must have the features `lanes_available` checks; `field < fields`,
/// `out.len() >= rows`, `seps.len() > rows * fields` and below `i32::MAX`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512dq,avx512cd")]
unsafe fn number_column<T: Lanes>(
    bytes: &[u8],
    seps: &[u32],
    (fields, field, rows): (usize, usize, usize),
    out: &mut [T],
    others: &mut Vec<u32>,
) {
    use std::arch::x86_64::*;
    let whole = rows / 8 * 8;
    // Entry `lane * fields + field` of `seps` is the place before lane's field.
    let lanes = _mm256_add_epi32(
        _mm256_mullo_epi32(
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            _mm256_set1_epi32(fields as i32),
        ),
        _mm256_set1_epi32(field as i32),
    );
    let text_len = _mm512_set1_epi64(bytes.len() as i64);
    for first in (0..whole).step_by(8) {
        let at = _mm256_add_epi32(lanes, _mm256_set1_epi32((first * fields) as i32));
        // SAFETY: the largest entry read is `(whole - 1) * fields + field + 1`, at most
        // `rows * fields`, inside `seps` (the caller's promise).
        let (before, after) = unsafe {
            (
                _mm256_i32gather_epi32::<4>(seps.as_ptr().cast(), at),
                _mm256_i32gather_epi32::<4>(seps.as_ptr().add(1).cast(), at),
            )
        };
        // The place before the first field is `u32::MAX`: one past it is 0 in 32 bits.
        let start = _mm512_cvtepu32_epi64(_mm256_add_epi32(before, _mm256_set1_epi32(1)));
        let end = _mm512_cvtepu32_epi64(after);
        // SAFETY: the features are enabled here; `out[first..]` holds 8 values (`first + 8`
        // is at most `whole`, at most `rows`).
        let read = unsafe { number_lanes::<T>(bytes, start, end, text_len, &mut out[first..]) };
        let mut missed = !read;
        while missed != 0 {
            others.push((first + missed.trailing_zeros() as usize) as u32);
            missed &= missed - 1;
        }
    }
    others.extend(whole as u32..rows as u32);
}

/// Eight fields (`start`, `end`) of `bytes` read as in `plain_numbers` into `out`; the lanes
/// read.
///
/// # Safety
/// The CPU must have the features `lanes_available` checks; `out` must hold 8 values;
/// `text_len` is `bytes.len()` in every lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512dq,avx512cd")]
#[inline]
unsafe fn number_lanes<T: Lanes>(
    bytes: &[u8],
    start: std::arch::x86_64::__m512i,
    end: std::arch::x86_64::__m512i,
    text_len: std::arch::x86_64::__m512i,
    out: &mut [T],
) -> u8 {
    use std::arch::x86_64::*;
    assert!(out.len() >= 8);
    let one = _mm512_set1_epi64(1);
    let eight = _mm512_set1_epi64(8);
    let byte_bits = |x: __m512i| _mm512_slli_epi64::<3>(x);
    let len = _mm512_sub_epi64(end, start);
    // Lanes whose eight bytes ending at `end` lie in the text, with a field of 1 to 8 bytes.
    let mut ok = _mm512_cmpge_epu64_mask(end, eight)
        & _mm512_cmple_epu64_mask(end, text_len)
        & _mm512_cmple_epu64_mask(start, end)
        & _mm512_cmpge_epu64_mask(len, one)
        & _mm512_cmple_epu64_mask(len, eight);
    let from = _mm512_sub_epi64(end, eight);
    // SAFETY: a lane is loaded only where `ok`: its 8 bytes from `end - 8` lie in `bytes`
    // (8 <= end <= bytes.len()); the others load nothing.
    let word = unsafe {
        _mm512_mask_i64gather_epi64::<1>(_mm512_setzero_si512(), ok, from, bytes.as_ptr().cast())
    };
    // The field is the top `len` bytes; its first byte may be a minus sign.
    let first = _mm512_and_si512(
        _mm512_srlv_epi64(word, byte_bits(_mm512_sub_epi64(eight, len))),
        _mm512_set1_epi64(0xFF),
    );
    let negative = _mm512_cmpeq_epi64_mask(first, _mm512_set1_epi64(b'-' as i64)) & ok;
    let digits = _mm512_mask_sub_epi64(len, negative, len, one);
    ok &= _mm512_cmpge_epu64_mask(digits, one);
    // The bytes below the digits become '0's (leading zeros).
    let below = _mm512_sub_epi64(
        _mm512_sllv_epi64(one, byte_bits(_mm512_sub_epi64(eight, digits))),
        one,
    );
    let zeros = _mm512_set1_epi64(ZEROS as i64);
    let word = _mm512_ternarylogic_epi64::<0xCA>(below, zeros, word);
    // The bytes equal to '.', as their high bits (exact: no borrow between bytes).
    let low7 = _mm512_set1_epi64(0x7F7F_7F7F_7F7F_7F7F);
    let t = _mm512_xor_si512(word, _mm512_set1_epi64(0x2E2E_2E2E_2E2E_2E2E));
    let dots = _mm512_andnot_si512(
        _mm512_or_si512(
            _mm512_or_si512(_mm512_add_epi64(_mm512_and_si512(t, low7), low7), t),
            low7,
        ),
        _mm512_set1_epi64(-1),
    );
    let zero = _mm512_setzero_si512();
    let dotted = _mm512_cmpneq_epi64_mask(dots, zero);
    // At most one dot (`dots & (dots - 1)` is zero).
    ok &= _mm512_cmpeq_epi64_mask(_mm512_and_si512(dots, _mm512_sub_epi64(dots, one)), zero);
    let (word, fraction) = if T::FLOAT {
        // The dot's byte: 63 less the leading zeros of its bit, over 8.
        let bit = _mm512_and_si512(dots, _mm512_sub_epi64(zero, dots));
        let dot = _mm512_srli_epi64::<3>(_mm512_sub_epi64(
            _mm512_set1_epi64(63),
            _mm512_lzcnt_epi64(bit),
        ));
        // A digit on each side: the dot is neither the field's first byte nor its last.
        let dot_ok = _mm512_cmpgt_epu64_mask(dot, _mm512_sub_epi64(eight, digits))
            & _mm512_cmpneq_epi64_mask(dot, _mm512_set1_epi64(7));
        ok &= !dotted | dot_ok;
        // The bytes below the dot move up one byte into its place; a '0' comes in below.
        let under = _mm512_sub_epi64(_mm512_sllv_epi64(one, byte_bits(dot)), one);
        let above = _mm512_andnot_si512(
            _mm512_or_si512(_mm512_slli_epi64::<8>(under), _mm512_set1_epi64(0xFF)),
            word,
        );
        let moved = _mm512_or_si512(
            _mm512_or_si512(_mm512_slli_epi64::<8>(_mm512_and_si512(word, under)), above),
            _mm512_set1_epi64(0x30),
        );
        (
            _mm512_mask_blend_epi64(dotted, word, moved),
            _mm512_maskz_sub_epi64(dotted, _mm512_set1_epi64(7), dot),
        )
    } else {
        ok &= !dotted;
        (word, zero)
    };
    // Every byte a digit; then the digits combined, two, four, then eight at a time.
    let values = _mm512_xor_si512(word, zeros);
    let high = _mm512_set1_epi64(0x8080_8080_8080_8080u64 as i64);
    let checked = _mm512_or_si512(
        _mm512_add_epi64(values, _mm512_set1_epi64(0x7676_7676_7676_7676)),
        values,
    );
    ok &= _mm512_testn_epi64_mask(checked, high);
    let pairs = _mm512_and_si512(
        _mm512_add_epi64(
            _mm512_mullo_epi64(values, _mm512_set1_epi64(10)),
            _mm512_srli_epi64::<8>(values),
        ),
        _mm512_set1_epi64(0x00FF_00FF_00FF_00FF),
    );
    let quads = _mm512_and_si512(
        _mm512_add_epi64(
            _mm512_mullo_epi64(pairs, _mm512_set1_epi64(100)),
            _mm512_srli_epi64::<16>(pairs),
        ),
        _mm512_set1_epi64(0x0000_FFFF_0000_FFFF),
    );
    let number = _mm512_and_si512(
        _mm512_add_epi64(
            _mm512_mullo_epi64(quads, _mm512_set1_epi64(10_000)),
            _mm512_srli_epi64::<32>(quads),
        ),
        _mm512_set1_epi64(0xFFFF_FFFF),
    );
    let to = out.as_mut_ptr();
    if T::FLOAT {
        // Exact conversions (below 2^32) and one correctly rounded division, as `parse_float`.
        // SAFETY: `POWERS_OF_TEN` holds 16 f64s; the fraction is below 8.
        let powers = unsafe { _mm512_loadu_pd(POWERS_OF_TEN.as_ptr()) };
        let quotient = _mm512_div_pd(
            _mm512_cvtepu64_pd(number),
            _mm512_permutexvar_pd(fraction, powers),
        );
        let sign = _mm512_set1_epi64(i64::MIN);
        let signed = _mm512_mask_xor_epi64(
            _mm512_castpd_si512(quotient),
            negative,
            _mm512_castpd_si512(quotient),
            sign,
        );
        // SAFETY: `out` holds at least 8 `f64`s (T is f64 here), checked by the caller.
        unsafe { _mm512_storeu_si512(to.cast(), signed) };
    } else {
        let signed = _mm512_mask_sub_epi64(number, negative, zero, number);
        // SAFETY: `out` holds at least 8 `i64`s (T is i64 here), checked by the caller.
        unsafe { _mm512_storeu_si512(to.cast(), signed) };
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_are_found_in_order_across_blocks() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for len in [0, 1, 63, 64, 65, 127, 128, 129, 1000, 4099] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    [b'a', b',', b'\n', 0xC3, b';', 0][(seed % 6) as usize]
                })
                .collect();
            for delimiter in [b',', b';', 0] {
                let mut expected = Vec::new();
                let mut newlines = 0;
                for (at, &b) in bytes.iter().enumerate() {
                    if b == delimiter || b == b'\n' {
                        expected.push(at as u32);
                    }
                    newlines += usize::from(b == b'\n');
                }
                let mut out = vec![7u32; 3 + len + 64];
                let (count, lines) = separators(&bytes, delimiter, &mut out, 3);
                assert_eq!(&out[3..3 + count], &expected[..], "len {len}");
                assert_eq!(lines, newlines);
                assert_eq!(&out[..3], &[7, 7, 7]);
                let mut out = vec![7u32; 3 + len + 64];
                let (count, lines) = separators_portable(&bytes, delimiter, &mut out, 3);
                assert_eq!((&out[3..3 + count], lines), (&expected[..], newlines));
                #[cfg(target_arch = "x86_64")]
                if avx2_available() {
                    let mut out = vec![7u32; 3 + len + 64];
                    // SAFETY: the features were checked; `out` has the room.
                    let (count, lines) = unsafe { separators_avx2(&bytes, delimiter, &mut out, 3) };
                    assert_eq!((&out[3..3 + count], lines), (&expected[..], newlines));
                    assert_eq!(&out[..3], &[7, 7, 7]);
                }
            }
        }
    }

    /// The eight-lane reader against the one-field parsers, on every spelling of the test
    /// below laid out as records of two fields.
    #[test]
    fn numbers_read_eight_at_a_time_are_the_same() {
        #[cfg(target_arch = "x86_64")]
        let available =
            crate::short_words_avx512::tests::cpu_has_or_skip(lanes_available(), "AVX-512 F/DQ/CD");
        #[cfg(not(target_arch = "x86_64"))]
        let available = false;
        if !available {
            return;
        }
        let spellings = spellings();
        let mut text = String::from("header,x\n");
        let mut seps = vec![u32::MAX];
        // The header's places, then each record: a number and a filler.
        for (i, s) in std::iter::once(&"h".to_string())
            .chain(&spellings)
            .enumerate()
        {
            if i > 0 {
                text.push_str(s);
                seps.push(text.len() as u32);
                text.push_str(",y\n");
                seps.push(text.len() as u32 - 1);
            } else {
                seps.clear();
                seps.push(u32::MAX);
                seps.push(6);
                seps.push(8);
            }
        }
        let rows = spellings.len() + 1;
        let mut ints = vec![0i64; rows];
        let mut floats = vec![0f64; rows];
        let (mut int_others, mut float_others) = (Vec::new(), Vec::new());
        plain_numbers(
            text.as_bytes(),
            &seps,
            (2, 0, rows),
            &mut ints,
            &mut int_others,
        );
        plain_numbers(
            text.as_bytes(),
            &seps,
            (2, 0, rows),
            &mut floats,
            &mut float_others,
        );
        let (mut lanes_read, mut float_lanes_read) = (0, 0);
        for row in 1..rows {
            let s = &spellings[row - 1];
            if !int_others.contains(&(row as u32)) {
                lanes_read += 1;
                assert_eq!(Some(ints[row]), Int64Type::parse(s), "{s:?}");
            }
            if !float_others.contains(&(row as u32)) {
                float_lanes_read += 1;
                let expected = Float64Type::parse(s).map(f64::to_bits);
                assert_eq!(Some(floats[row].to_bits()), expected, "{s:?}");
            }
        }
        assert!(lanes_read > rows / 3, "only {lanes_read} read in lanes");
        assert!(
            float_lanes_read > rows / 2,
            "only {float_lanes_read} read in lanes"
        );
    }

    fn spellings() -> Vec<String> {
        let mut spellings: Vec<String> = [
            "0",
            "-0",
            "7",
            "-7",
            "+7",
            "00",
            "12345678",
            "99999999",
            "123456789",
            "-12345678",
            "1.5",
            "-0.25",
            "27.50",
            "0.00",
            "-0.00",
            "100.00",
            ".5",
            "5.",
            "1.2.3",
            "1e3",
            "nan",
            "inf",
            "-",
            ".",
            "",
            " 1",
            "1 ",
            "1;5",
            "9223372036854775807",
            "0.1",
            "1234.567",
            "9.999999",
            "0000001.",
            "١٢",
            "-.5",
            "-5.",
            "--1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut seed = 1u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let digits = 1 + (seed % 8) as usize;
            let number = format!("{:08}", seed % 100_000_000);
            let mut s = number[8 - digits..].to_string();
            if digits > 1 && (seed >> 20).is_multiple_of(2) {
                let dot = 1 + (seed >> 24) as usize % (digits - 1);
                s.insert(dot, '.');
            }
            if (seed >> 30).is_multiple_of(3) {
                s.insert(0, '-');
            }
            spellings.push(s);
        }
        spellings
    }

    /// Each spelling parsed in the middle of a line (so that eight bytes end at it) and at the
    /// start of a text (where they do not), against Arrow's parsers.
    #[test]
    fn numbers_parse_as_the_reader_parses_them() {
        let spellings = spellings();
        for s in &spellings {
            for prefix in ["", "abcdefgh,"] {
                let text = format!("{prefix}{s},x");
                let (start, end) = (prefix.len(), prefix.len() + s.len());
                let expected_int = Int64Type::parse(s);
                assert_eq!(parse_integer(&text, start, end), expected_int, "{s:?}");
                let expected = Float64Type::parse(s).map(f64::to_bits);
                let got = parse_float(&text, start, end).map(f64::to_bits);
                assert_eq!(got, expected, "{s:?}");
            }
        }
    }
}
