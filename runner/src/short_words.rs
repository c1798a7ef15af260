//! The short-word kernel shared by the fused word count and the `tokenize` transform: splits
//! text into tokens 64 bytes at a time (`tokenizer::split_tokens`) and normalises each token
//! of up to 16 bytes in two registers — lowercase by arithmetic, punctuation removed with
//! `pext` where the CPU has BMI2 — giving the same words as the tokenizer's own path, which
//! takes longer tokens and tokens with case-changing non-ASCII. The fused count hashes the
//! words it gets; `tokenize` writes them into a column.

use crate::counts::{head_of, PendingWords, WordCounts, INLINE};
use crate::tokenizer::{flags_of, split_tokens_breaking, StripPunctuation, TokenSink, Tokenizer};

/// Where the kernel's words go.
pub trait WordOut {
    /// A normalised word of up to 16 bytes, zero-padded in `head`, from the token at `start`.
    fn short(&mut self, start: usize, head: [u64; 2], len: usize);
    /// Any other word (a long one, or one with case-changing non-ASCII), normalised by the
    /// tokenizer's own path, from the token at `start`.
    fn other(&mut self, start: usize, word: &[u8]);
}

/// Counts the kernels' words: each short word's table slot is prefetched and the word counted
/// a few words later (`PendingWords`); `finish` counts the last ones.
pub struct Counting<'a> {
    counts: &'a mut WordCounts,
    pending: PendingWords,
}

impl<'a> Counting<'a> {
    /// Counts into `counts`.
    pub fn new(counts: &'a mut WordCounts) -> Self {
        Counting {
            counts,
            pending: PendingWords::default(),
        }
    }

    /// Counts the words still pending.
    pub fn finish(mut self) {
        self.counts.count_pending(&mut self.pending);
    }
}

impl WordOut for Counting<'_> {
    #[inline(always)]
    fn short(&mut self, _start: usize, head: [u64; 2], len: usize) {
        self.counts.add_short_soon(&mut self.pending, head, len, 1);
    }

    #[inline(always)]
    fn other(&mut self, _start: usize, word: &[u8]) {
        self.counts.add(word, 1);
    }
}

/// `split_words` with the fastest kernel this CPU runs: AVX-512 (`short_words_avx512`) where
/// the CPU has it and the tokenizer strips all punctuation or none, else the register kernel
/// with `pext` where it can.
#[inline]
pub fn split_words_fastest<O: WordOut>(
    tokenizer: &Tokenizer,
    text: &str,
    scratch: &mut Vec<u8>,
    out: &mut O,
    breaks: impl FnMut(usize) -> u64,
) {
    #[cfg(target_arch = "x86_64")]
    if tokenizer.strip() != StripPunctuation::Edges && crate::short_words_avx512::available() {
        use crate::short_words_avx512::split_words as avx512;
        let all = tokenizer.strip() == StripPunctuation::All;
        // SAFETY: the CPU has the kernel's features, checked just above.
        unsafe {
            return match (tokenizer.lowercase(), all) {
                (true, true) => avx512::<true, true, O>(out, tokenizer, text, scratch, breaks),
                (true, false) => avx512::<true, false, O>(out, tokenizer, text, scratch, breaks),
                (false, true) => avx512::<false, true, O>(out, tokenizer, text, scratch, breaks),
                (false, false) => avx512::<false, false, O>(out, tokenizer, text, scratch, breaks),
            };
        }
    }
    split_words(tokenizer, text, scratch, out, true, breaks)
}

/// The words of `text` as `tokenizer` makes them, to `out`; `breaks` as for
/// `split_tokens_breaking`. With `pext` and a CPU with BMI2, punctuation is removed with
/// `pext`. Edge stripping is not the kernel's: the tokenizer's path takes it.
#[inline]
pub fn split_words<O: WordOut>(
    tokenizer: &Tokenizer,
    text: &str,
    scratch: &mut Vec<u8>,
    out: &mut O,
    pext: bool,
    breaks: impl FnMut(usize) -> u64,
) {
    if tokenizer.strip() == StripPunctuation::Edges {
        // Rare; the kernel only knows "strip all" and "strip none".
        let mut sink = Reference {
            text,
            tokenizer,
            scratch,
            out,
        };
        return split_tokens_breaking(text, &mut sink, breaks);
    }
    #[cfg(target_arch = "x86_64")]
    if pext && bmi2_available() {
        // SAFETY: the CPU has every feature the kernel enables, checked just above.
        return unsafe { split_words_bmi2(tokenizer, text, scratch, out, breaks) };
    }
    let _ = pext;
    // SAFETY: without PEXT the kernel needs no CPU feature.
    unsafe { split_words_with::<false, O>(tokenizer, text, scratch, out, breaks) }
}

/// Whether this CPU has every feature `split_words_bmi2` enables.
#[cfg(target_arch = "x86_64")]
pub fn bmi2_available() -> bool {
    std::arch::is_x86_feature_detected!("bmi2") && std::arch::is_x86_feature_detected!("popcnt")
}

/// The kernel compiled with BMI2, whose `pext` removes punctuation bytes from a word held in
/// two registers in a few cycles.
///
/// # Safety
/// The CPU must have BMI2 and POPCNT (`bmi2_available`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi2,popcnt")]
unsafe fn split_words_bmi2<O: WordOut>(
    tokenizer: &Tokenizer,
    text: &str,
    scratch: &mut Vec<u8>,
    out: &mut O,
    breaks: impl FnMut(usize) -> u64,
) {
    // SAFETY: the caller guarantees BMI2.
    unsafe { split_words_with::<true, O>(tokenizer, text, scratch, out, breaks) }
}

/// # Safety
/// With `PEXT`, the CPU must have BMI2 (the kernel it builds calls `pext`).
#[inline(always)]
unsafe fn split_words_with<const PEXT: bool, O: WordOut>(
    tokenizer: &Tokenizer,
    text: &str,
    scratch: &mut Vec<u8>,
    out: &mut O,
    breaks: impl FnMut(usize) -> u64,
) {
    let mut kernel = Kernel::<PEXT, O> {
        out,
        tokenizer,
        text,
        scratch,
        lowercase: tokenizer.lowercase(),
        strip: tokenizer.strip() == StripPunctuation::All,
        drop_empty: tokenizer.drop_empty(),
    };
    split_tokens_breaking(text, &mut kernel, breaks);
}

/// Every token through the tokenizer's own path (edge stripping).
struct Reference<'a, O> {
    text: &'a str,
    tokenizer: &'a Tokenizer,
    scratch: &'a mut Vec<u8>,
    out: &'a mut O,
}

impl<O: WordOut> TokenSink for Reference<'_, O> {
    fn token(&mut self, start: usize, end: usize, flags: u8) {
        let out = &mut *self.out;
        self.tokenizer
            .token(&self.text[start..end], flags, self.scratch, &mut |word| {
                out.other(start, word)
            });
    }
}

/// Normalises each token of up to 16 bytes in two registers (lowercase by arithmetic,
/// punctuation removed by compaction) and hands it on without copying it anywhere. Longer
/// tokens, and tokens with non-ASCII characters other than general punctuation such as `’`,
/// take the tokenizer's own path.
struct Kernel<'a, const PEXT: bool, O> {
    out: &'a mut O,
    tokenizer: &'a Tokenizer,
    text: &'a str,
    scratch: &'a mut Vec<u8>,
    lowercase: bool,
    strip: bool,
    drop_empty: bool,
}

impl<const PEXT: bool, O: WordOut> TokenSink for Kernel<'_, PEXT, O> {
    /// The kernel finds what it needs from the word's own registers.
    const FLAGS: bool = false;

    #[inline(always)]
    fn token(&mut self, start: usize, end: usize, flags: u8) {
        let bytes = self.text.as_bytes();
        let len = end - start;
        if len <= INLINE {
            let head = match bytes.get(start..).and_then(|b| b.first_chunk::<INLINE>()) {
                // One 16-byte load, masked to the token: cheaper than assembling it.
                Some(wide) => {
                    let wide = u128::from_le_bytes(*wide) & (u128::MAX >> (128 - 8 * len));
                    [wide as u64, (wide >> 64) as u64]
                }
                None => head_of(&bytes[start..end]),
            };
            if (head[0] | head[1]) & HIGH_BITS == 0 || only_general_punctuation(&bytes[start..end])
            {
                let (head, len) = self.normalise(head, len);
                if len > 0 || !self.drop_empty {
                    self.out.short(start, head, len);
                }
                return;
            }
        }
        let out = &mut *self.out;
        let token = &self.text[start..end];
        debug_assert_eq!(flags, 0, "FLAGS is false");
        self.tokenizer.token(
            token,
            flags_of(token.as_bytes()),
            self.scratch,
            &mut |word| out.other(start, word),
        );
    }
}

impl<const PEXT: bool, O> Kernel<'_, PEXT, O> {
    /// The word as the tokenizer would make it, for a token without case-changing non-ASCII.
    /// Both steps run on every word: they cost less than a mispredicted branch would.
    #[inline(always)]
    fn normalise(&self, mut head: [u64; 2], mut len: usize) -> ([u64; 2], usize) {
        let (upper, punct) = classify(head);
        if self.lowercase {
            head = [
                head[0] | (upper[0] & 0x2020_2020_2020_2020),
                head[1] | (upper[1] & 0x2020_2020_2020_2020),
            ];
        }
        if self.strip {
            len -= ((punct[0].count_ones() + punct[1].count_ones()) / 8) as usize;
            // 0xFF for every byte to keep (the zero padding included: it stays zero).
            let keep = [!punct[0], !punct[1]];
            let (low, high) = if PEXT {
                // SAFETY: a `Kernel::<true, _>` is only made by `split_words_with::<true, _>`, whose
                // caller guarantees BMI2.
                unsafe {
                    (
                        compact_pext(head[0], keep[0]),
                        compact_pext(head[1], keep[1]),
                    )
                }
            } else {
                (
                    compact_scalar(head[0], keep[0]),
                    compact_scalar(head[1], keep[1]),
                )
            };
            let joined = low as u128 | ((high as u128) << keep[0].count_ones());
            head = [joined as u64, (joined >> 64) as u64];
        }
        (head, len)
    }
}

const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Byte masks (0xFF per matching byte) of the ASCII capitals and of the ASCII punctuation
/// (Python's `string.punctuation`) in a 16-byte word.
#[inline(always)]
fn classify(head: [u64; 2]) -> ([u64; 2], [u64; 2]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86-64 baseline; no memory is touched.
        unsafe {
            let v = _mm_set_epi64x(head[1] as i64, head[0] as i64);
            let punct = crate::tokenizer::sse2_ascii_punctuation(v);
            let upper = crate::tokenizer::sse2_within(v, b'A', b'Z');
            let halves = |x: __m128i| {
                [
                    _mm_cvtsi128_si64(x) as u64,
                    _mm_cvtsi128_si64(_mm_unpackhi_epi64(x, x)) as u64,
                ]
            };
            (halves(upper), halves(punct))
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let bytes = |f: fn(u64) -> u64| head.map(|w| (f(w) >> 7) * 0xFF);
        (
            bytes(|w| swar::ascii_bytes_within(w, b'A', b'Z')),
            bytes(swar::ascii_punctuation),
        )
    }
}

/// Byte-parallel tests on a `u64` for targets without SSE2 (and the tests).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
mod swar {
    const ONES: u64 = 0x0101_0101_0101_0101;
    use super::HIGH_BITS;

    /// 0x80 in every byte of `word` that is ASCII and within `lo..=hi` (`lo` > 0), else 0. No
    /// carry crosses a byte because each sum stays below 0x100.
    #[inline(always)]
    pub fn ascii_bytes_within(word: u64, lo: u8, hi: u8) -> u64 {
        let low7 = word & !HIGH_BITS;
        let at_least_lo = low7 + ONES * (0x80 - lo as u64);
        let above_hi = low7 + ONES * (0x7f - hi as u64);
        at_least_lo & !above_hi & !word & HIGH_BITS
    }

    /// 0x80 in every byte of `word` that is ASCII punctuation.
    #[inline(always)]
    pub fn ascii_punctuation(word: u64) -> u64 {
        ascii_bytes_within(word, 0x21, 0x2f)
            | ascii_bytes_within(word, 0x3a, 0x40)
            | ascii_bytes_within(word, 0x5b, 0x60)
            | ascii_bytes_within(word, 0x7b, 0x7e)
    }
}

/// The bytes of `word` where `keep` is 0xFF, moved down to the low end, zeros above.
///
/// # Safety
/// The CPU must have BMI2.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "bmi2")]
unsafe fn compact_pext(word: u64, keep: u64) -> u64 {
    std::arch::x86_64::_pext_u64(word, keep)
}

/// Without `pext` (other architectures) the scalar compaction does the same.
///
/// # Safety
/// None: `unsafe` only to match the x86-64 signature.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
unsafe fn compact_pext(word: u64, keep: u64) -> u64 {
    compact_scalar(word, keep)
}

#[inline(always)]
fn compact_scalar(word: u64, keep: u64) -> u64 {
    let mut out = 0u64;
    let mut shift = 0;
    for i in 0..8 {
        if (keep >> (i * 8)) & 1 != 0 {
            out |= ((word >> (i * 8)) & 0xFF) << shift;
            shift += 8;
        }
    }
    out
}

/// Whether every non-ASCII character of `token` is in U+2000..U+203F (general punctuation and
/// spaces, none of which has a case): then ASCII rules normalise the token exactly, as Python
/// would. That covers the curly apostrophes and dashes of English text.
#[inline(always)]
pub(crate) fn only_general_punctuation(token: &[u8]) -> bool {
    let mut at = 0;
    while let Some(offset) = token[at..].iter().position(|&b| b >= 0x80) {
        at += offset;
        if token.get(at..at + 2) != Some(&[0xE2, 0x80]) {
            return false;
        }
        at += 3;
        if at >= token.len() {
            return true;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_keeps_the_marked_bytes_in_order() {
        let word = u64::from_le_bytes(*b"a,b.c!de");
        let keep = u64::from_le_bytes([0xFF, 0, 0xFF, 0, 0xFF, 0, 0xFF, 0xFF]);
        assert_eq!(
            compact_scalar(word, keep),
            u64::from_le_bytes(*b"abcde\0\0\0")
        );
        #[cfg(target_arch = "x86_64")]
        if bmi2_available() {
            // SAFETY: the CPU has BMI2, checked just above.
            let pext = unsafe { compact_pext(word, keep) };
            assert_eq!(pext, compact_scalar(word, keep));
        }
    }

    #[test]
    fn general_punctuation_is_the_only_non_ascii_fast_path() {
        assert!(only_general_punctuation("i’ll".as_bytes()));
        assert!(only_general_punctuation("—“a”".as_bytes()));
        assert!(!only_general_punctuation("été".as_bytes()));
        assert!(!only_general_punctuation("a’é".as_bytes()));
    }
}
