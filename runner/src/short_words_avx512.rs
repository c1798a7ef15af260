//! The word-by-word AVX-512 kernel for x86-64 CPUs with AVX-512 (BW, VL and VBMI2: Ice Lake
//! and later, Zen 4 and later), shared like `short_words`: the fused count runs it on the
//! segments `exec::fused_avx512_blocks` (which normalises whole blocks) hands on, and the
//! `tokenize` transform runs it over a column's buffer; other CPUs run `short_words`' register
//! kernel.
//!
//! Same semantics as the others (the property test and the fuzz target compare them), fewer
//! instructions per word: a 64-byte block is one load and three compares into a whitespace bit
//! mask; a word of up to 16 bytes is one masked load (which cannot read past the text, so no
//! bounds check and no padding), lowercased by one masked add, and its punctuation, found with
//! two nibble lookups, removed by one `vpcompressb`. The word never leaves its register until it
//! is handed on (hashed for the count, stored with one 16-byte copy by `tokenize`).

use std::arch::x86_64::*;

use crate::counts::{WordCounts, INLINE};
use crate::short_words::{only_general_punctuation, Counting, WordOut};
use crate::tokenizer::{flags_of, non_ascii_space, Tokenizer};

/// Whether this CPU runs the kernel (checked once; the answer cannot change): every feature
/// this kernel's and the block kernel's functions enable.
pub fn available() -> bool {
    use std::sync::OnceLock;
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vbmi2")
            && is_x86_feature_detected!("bmi1")
            && is_x86_feature_detected!("bmi2")
            && is_x86_feature_detected!("popcnt")
            && is_x86_feature_detected!("ssse3")
    })
}

/// Counts every word of `text` as `tokenizer` makes them (which must lowercase or not, strip
/// all punctuation or none, and must not be the `Edges` variant: the caller checks).
///
/// # Safety
/// The CPU must have the features `available` checks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,bmi1,bmi2,popcnt,ssse3")]
pub unsafe fn count_text<const LOWER: bool, const STRIP: bool>(
    counts: &mut WordCounts,
    tokenizer: &Tokenizer,
    text: &str,
    scratch: &mut Vec<u8>,
) {
    let mut out = Counting::new(counts);
    // SAFETY: the caller guarantees the features.
    unsafe { split_words::<LOWER, STRIP, _>(&mut out, tokenizer, text, scratch, |_| 0) };
    out.finish();
}

/// The words of `text` as `tokenizer` makes them (which must lowercase or not, strip all
/// punctuation or none, and must not be the `Edges` variant: the caller checks), to `out`;
/// `breaks(base)` gives the positions in the 64 bytes from `base` where a token must end and
/// a new one start (the starts of lines laid end to end), called once per 64 bytes, in order.
///
/// # Safety
/// The CPU must have the features `available` checks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,bmi1,bmi2,popcnt,ssse3")]
pub unsafe fn split_words<const LOWER: bool, const STRIP: bool, O: WordOut>(
    out: &mut O,
    tokenizer: &Tokenizer,
    text: &str,
    scratch: &mut Vec<u8>,
    mut breaks: impl FnMut(usize) -> u64,
) {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let drop_empty = tokenizer.drop_empty();

    let mut token = |start: usize, end: usize| {
        let len = end - start;
        if len <= INLINE {
            let in_token = _bzhi_u32(0xFFFF, len as u32) as __mmask16;
            // SAFETY: the mask covers `start..end`, inside `text`; masked-off bytes are not
            // read (and cannot fault).
            let mut word =
                unsafe { _mm_maskz_loadu_epi8(in_token, bytes.as_ptr().add(start).cast()) };
            let non_ascii = _mm_movepi8_mask(word);
            if non_ascii == 0 || only_general_punctuation(&bytes[start..end]) {
                let mut word_len = len as u32;
                if LOWER {
                    let upper = _mm_cmple_epu8_mask(
                        _mm_sub_epi8(word, _mm_set1_epi8(b'A' as i8)),
                        _mm_set1_epi8(25),
                    );
                    word = _mm_mask_add_epi8(word, upper, word, _mm_set1_epi8(0x20));
                }
                if STRIP {
                    let keep = in_token & !punctuation(word);
                    word = _mm_maskz_compress_epi8(keep, word);
                    word_len = keep.count_ones();
                }
                if word_len == 0 && drop_empty {
                    return;
                }
                let head = [
                    _mm_cvtsi128_si64(word) as u64,
                    _mm_extract_epi64::<1>(word) as u64,
                ];
                out.short(start, head, word_len as usize);
                return;
            }
        }
        let token = &text[start..end];
        tokenizer.token(token, flags_of(token.as_bytes()), scratch, &mut |word| {
            out.other(start, word)
        });
    };

    // Tokens start at a word byte after whitespace and end at whitespace after a word byte;
    // `open` carries a token over a block edge.
    let mut open = false;
    let mut carried: Option<usize> = None;
    // Non-ASCII whitespace may run past a block's end: bytes before this are whitespace.
    let mut space_until = 0usize;
    let mut base = 0usize;
    // One block past the end (all whitespace) ends a token still open there: `token` has
    // this one call site, so it is inlined into the loop.
    while base < n || carried.is_some() {
        let valid: u64 = if base >= n {
            0
        } else if n - base >= 64 {
            u64::MAX
        } else {
            _bzhi_u64(u64::MAX, (n - base) as u32)
        };
        // SAFETY: the mask covers only bytes of `text` (masked-off bytes are not read, and
        // the address is not dereferenced where the mask is empty).
        let block =
            unsafe { _mm512_maskz_loadu_epi8(valid, bytes.as_ptr().wrapping_add(base).cast()) };
        // Past the end counts as whitespace, so the last token ends there.
        let mut space = ascii_space(block) | !valid;
        space |= non_ascii_space(text, base, _mm512_movepi8_mask(block), &mut space_until);
        let word = !space;
        let after_word = (word << 1) | open as u64;
        // A break ends the token before it and starts one at it.
        let cut = breaks(base);
        let mut starts = word & (!after_word | cut);
        let mut ends = (space | cut) & after_word;
        // Each end closes the token carried in from the last block, then this block's.
        loop {
            let start = match carried.take() {
                Some(start) => start,
                None if starts == 0 => break,
                None => {
                    let start = base + starts.trailing_zeros() as usize;
                    starts &= starts - 1;
                    start
                }
            };
            if ends == 0 {
                carried = Some(start);
                break;
            }
            token(start, base + ends.trailing_zeros() as usize);
            ends &= ends - 1;
        }
        open = word >> 63 != 0;
        base += 64;
    }
}

/// The bytes of `block` that are Python's ASCII whitespace: space, \t \n \v \f \r, and
/// \x1c..\x1f.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn ascii_space(block: __m512i) -> __mmask64 {
    _mm512_cmpeq_epi8_mask(block, _mm512_set1_epi8(b' ' as i8))
        | _mm512_cmple_epu8_mask(
            _mm512_sub_epi8(block, _mm512_set1_epi8(0x09)),
            _mm512_set1_epi8(4),
        )
        | _mm512_cmple_epu8_mask(
            _mm512_sub_epi8(block, _mm512_set1_epi8(0x1c)),
            _mm512_set1_epi8(3),
        )
}

/// Python's `string.punctuation` as two 16-entry tables: for each low nibble the rows (high
/// nibbles) that have punctuation there, and one bit per row. Rows: 0x21-0x2F (bit 0),
/// 0x3A-0x3F (bit 1), 0x40 (bit 2), 0x5B-0x5F (bit 3), 0x60 (bit 4), 0x7B-0x7E (bit 5).
pub(super) const PUNCTUATION_NIBBLES: ([u8; 16], [u8; 16]) = {
    let mut low = [0u8; 16];
    let mut l = 0;
    while l < 16 {
        let mut bits = 0;
        if l >= 1 {
            bits |= 1;
        }
        if l >= 0xA {
            bits |= 2;
        }
        if l == 0 {
            bits |= 4 | 16;
        }
        if l >= 0xB {
            bits |= 8;
        }
        if l >= 0xB && l <= 0xE {
            bits |= 32;
        }
        low[l] = bits;
        l += 1;
    }
    let high = [0, 0, 1, 2, 4, 8, 16, 32, 0, 0, 0, 0, 0, 0, 0, 0];
    (low, high)
};

/// The bytes of `word` that are ASCII punctuation, from `PUNCTUATION_NIBBLES` (a byte is
/// punctuation when its low nibble's entry has its row's bit). Zero padding and non-ASCII
/// bytes are not.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,ssse3")]
fn punctuation(word: __m128i) -> __mmask16 {
    let (low_table, high_table) = PUNCTUATION_NIBBLES;
    // SAFETY: the loads read 16 bytes of 16-byte arrays.
    let (low_table, high_table) = unsafe {
        (
            _mm_loadu_si128(low_table.as_ptr().cast()),
            _mm_loadu_si128(high_table.as_ptr().cast()),
        )
    };
    let nibble = _mm_set1_epi8(0x0F);
    let low = _mm_shuffle_epi8(low_table, _mm_and_si128(word, nibble));
    let high = _mm_shuffle_epi8(high_table, _mm_and_si128(_mm_srli_epi16::<4>(word), nibble));
    _mm_test_epi8_mask(low, high)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Whether the kernel can be tested here. Under `CI=true` a CPU without it fails the test
    /// (CI must not pass by skipping); `RUNNER_TEST_WITHOUT_AVX512=1` says that is expected.
    pub(crate) fn cpu_has_the_kernel_or_skip() -> bool {
        cpu_has_or_skip(available(), "AVX-512 VBMI2")
    }

    /// `available`, or under `CI=true` a failure unless `RUNNER_TEST_WITHOUT_AVX512=1` says
    /// a CPU without `features` is expected: a kernel test must not pass by skipping.
    pub(crate) fn cpu_has_or_skip(available: bool, features: &str) -> bool {
        if available {
            return true;
        }
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        let expected = std::env::var("RUNNER_TEST_WITHOUT_AVX512").is_ok_and(|v| v == "1");
        assert!(
            !ci || expected,
            "this CPU has no {features}, so the fastest kernels are untested (set RUNNER_TEST_WITHOUT_AVX512=1 where that is expected)"
        );
        eprintln!("skipped: this CPU has no {features}");
        false
    }

    /// Collects the kernel's words as the tokenizer's path would write them.
    struct Words(Vec<Vec<u8>>);

    impl WordOut for Words {
        fn short(&mut self, _start: usize, head: [u64; 2], len: usize) {
            let bytes = (u128::from(head[0]) | (u128::from(head[1]) << 64)).to_le_bytes();
            self.0.push(bytes[..len].to_vec());
        }
        fn other(&mut self, _start: usize, word: &[u8]) {
            self.0.push(word.to_vec());
        }
    }

    #[test]
    fn a_word_that_ends_at_a_block_edge_or_the_text_end_is_whole() {
        if !cpu_has_the_kernel_or_skip() {
            return;
        }
        let tokenizer = Tokenizer::new(true, crate::tokenizer::StripPunctuation::All, true);
        for len in [1, 17, 63, 64, 65, 127, 128, 129, 192] {
            // Words of varying lengths run to the very end of the text.
            let text: String = (0..len)
                .map(|i| {
                    if i % 7 == 3 {
                        ' '
                    } else {
                        (b'A' + (i % 26) as u8) as char
                    }
                })
                .collect();
            let mut want = Vec::new();
            tokenizer.words(&text, &mut Vec::new(), |w| want.push(w.to_vec()));
            let mut got = Words(Vec::new());
            // SAFETY: the CPU has the features, checked above.
            unsafe {
                split_words::<true, true, _>(&mut got, &tokenizer, &text, &mut Vec::new(), |_| 0)
            };
            assert_eq!(got.0, want, "{len} bytes");
        }
    }

    #[test]
    fn punctuation_is_pythons_string_punctuation() {
        if !cpu_has_the_kernel_or_skip() {
            return;
        }
        for byte in 0..=255u8 {
            // SAFETY: SSE2 is baseline; available() checked the other features.
            let mask = unsafe { punctuation(_mm_set1_epi8(byte as i8)) };
            let expected = byte.is_ascii_punctuation();
            assert_eq!(mask == 0xFFFF, expected, "byte {byte:#04x}");
            assert!(mask == 0 || mask == 0xFFFF);
        }
    }
}
