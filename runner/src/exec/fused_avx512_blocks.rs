//! The fused word count's fastest kernel (x86-64 with AVX-512 BW/VL/VBMI2 and BMI2), chosen at
//! run time. Where `short_words_avx512` normalises word by word, this one normalises whole 64-byte
//! blocks: one lowercase add, one punctuation lookup and one `vpcompressb` per block write the
//! block's kept bytes to a small buffer, and `pext` carries the whitespace mask along, so
//! per-block work is shared by the ~10 words a block holds. Word boundaries are stored as
//! positions (compressed indices, no loop over bits), then a tight loop hashes and counts each
//! word straight from the buffer.
//!
//! The text is cut into segments of about `SEGMENT` bytes, just after ASCII whitespace, so no
//! word spans two. A segment is normalised before anything in it is counted, so when it turns
//! out to need rules blocks cannot apply it is counted by `short_words_avx512` instead, from scratch:
//! non-ASCII whitespace (it moves word boundaries), or a word running past `SEGMENT_MAX`. A
//! word with a non-ASCII character other than U+2000..U+203F (no case, not punctuation) is
//! blanked out of the block and given to the tokenizer's Unicode path on its own.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use crate::counts::{PendingWords, WordCounts, INLINE};
use crate::short_words_avx512;
use crate::tokenizer::{flags_of, is_python_whitespace, Tokenizer};

/// Bytes per segment: its buffers stay in L1 between the two passes.
const SEGMENT: usize = 4096;

/// A segment whose last word runs past this goes to the word-by-word kernel (positions are u16
/// and the buffers live on the stack).
const SEGMENT_MAX: usize = 8192;

/// Words with Unicode characters one segment may set aside; more go word by word.
const ODD_WORDS: usize = 64;

/// An ASCII byte that Python splits on (the tokenizer's own definition).
#[inline(always)]
fn is_ascii_space(byte: u8) -> bool {
    byte < 0x80 && is_python_whitespace(byte as char)
}

/// Counts every word of `text` as `tokenizer` makes them (which must lowercase or not, strip
/// all punctuation or none, and must not be the `Edges` variant: the caller checks).
///
/// # Safety
/// The CPU must have the features `short_words_avx512::available` checks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,bmi1,bmi2,popcnt,ssse3")]
pub unsafe fn count_text<const LOWER: bool, const STRIP: bool>(
    counts: &mut WordCounts,
    tokenizer: &Tokenizer,
    text: &str,
    scratch: &mut Vec<u8>,
) {
    if STRIP && !tokenizer.drop_empty() {
        // Words of punctuation alone vanish from the blocks; here they count as "".
        // SAFETY: the caller guarantees the features both kernels need.
        return unsafe {
            short_words_avx512::count_text::<LOWER, STRIP>(counts, tokenizer, text, scratch)
        };
    }
    let mut buffers = Buffers {
        kept: [MaybeUninit::uninit(); SEGMENT_MAX + 64],
        starts: [MaybeUninit::uninit(); SEGMENT_MAX + 64],
        ends: [MaybeUninit::uninit(); SEGMENT_MAX + 64],
    };
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut start = 0;
    while start < n {
        let mut end = (start + SEGMENT).min(n);
        if !is_ascii_space(bytes[end - 1]) {
            end = bytes[end..]
                .iter()
                .position(|&b| is_ascii_space(b))
                .map_or(n, |at| end + at + 1);
        }
        // Cut just after ASCII whitespace: both ends are character boundaries.
        let segment = &text[start..end];
        // SAFETY: the CPU's features are the caller's promise; `count_segment` is only given
        // segments of at most SEGMENT_MAX bytes.
        unsafe {
            if segment.len() > SEGMENT_MAX
                || !count_segment::<LOWER, STRIP>(counts, tokenizer, segment, scratch, &mut buffers)
            {
                short_words_avx512::count_text::<LOWER, STRIP>(counts, tokenizer, segment, scratch);
            }
        }
        start = end;
    }
}

/// One segment's normalised bytes and word boundaries (positions in `kept`).
struct Buffers {
    kept: [MaybeUninit<u8>; SEGMENT_MAX + 64],
    starts: [MaybeUninit<u16>; SEGMENT_MAX + 64],
    ends: [MaybeUninit<u16>; SEGMENT_MAX + 64],
}

/// Counts the words of one segment (at most `SEGMENT_MAX` bytes), or returns false having
/// counted nothing when it has non-ASCII whitespace or too many words with Unicode characters.
///
/// # Safety
/// The CPU must have the features `short_words_avx512::available` checks; `text` must be at most
/// `SEGMENT_MAX` bytes (the buffers' size).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,bmi1,bmi2,popcnt,ssse3")]
unsafe fn count_segment<const LOWER: bool, const STRIP: bool>(
    counts: &mut WordCounts,
    tokenizer: &Tokenizer,
    text: &str,
    scratch: &mut Vec<u8>,
    buffers: &mut Buffers,
) -> bool {
    let bytes = text.as_bytes();
    let n = bytes.len();
    debug_assert!(n <= SEGMENT_MAX);
    let kept = buffers.kept.as_mut_ptr().cast::<u8>();
    let starts = buffers.starts.as_mut_ptr().cast::<u16>();
    let ends = buffers.ends.as_mut_ptr().cast::<u16>();
    let mut kept_len = 0usize;
    let mut n_starts = 0usize;
    let mut n_ends = 0usize;
    // Whether the last kept byte so far is inside a word.
    let mut open = 0u64;
    // Words with Unicode characters (other than U+2000..U+203F): their span in `text`.
    let mut odd = [(0usize, 0usize); ODD_WORDS];
    let mut n_odd = 0usize;
    // Bytes before this belong to a word set aside: they count as whitespace here.
    let mut blank_until = 0usize;
    // U+2000..U+203F is E2 80 xx; E2 followed by anything else, or one of the block's
    // whitespace characters (xx in 80..8A, A8, A9, AF), sends the segment word by word.
    let mut e2_other = 0u64;
    let mut e2_carry = (0u64, 0u64);
    // SAFETY: IOTA is 64 bytes.
    let iota = unsafe { _mm512_loadu_si512(IOTA.as_ptr().cast()) };

    let mut base = 0usize;
    while base < n {
        let valid: u64 = if n - base >= 64 {
            u64::MAX
        } else {
            _bzhi_u64(u64::MAX, (n - base) as u32)
        };
        // SAFETY: the mask covers only bytes of `text`; masked-off bytes are not read.
        let block = unsafe { _mm512_maskz_loadu_epi8(valid, bytes.as_ptr().add(base).cast()) };
        let mut space = short_words_avx512::ascii_space(block);
        let lowered = if LOWER {
            let upper = _mm512_cmple_epu8_mask(
                _mm512_sub_epi8(block, _mm512_set1_epi8(b'A' as i8)),
                _mm512_set1_epi8(25),
            );
            _mm512_mask_add_epi8(block, upper, block, _mm512_set1_epi8(0x20))
        } else {
            block
        };
        let keep = if STRIP {
            valid & !punctuation(lowered)
        } else {
            valid
        };
        // SAFETY: `kept_len + 64` is within `kept` (kept_len <= base < SEGMENT_MAX).
        unsafe {
            _mm512_storeu_si512(
                kept.add(kept_len).cast(),
                _mm512_maskz_compress_epi8(keep, lowered),
            )
        };

        let leads = _mm512_cmpge_epu8_mask(block, _mm512_set1_epi8(0xC0u8 as i8));
        let e2 = _mm512_cmpeq_epi8_mask(block, _mm512_set1_epi8(0xE2u8 as i8));
        let second_80 = _mm512_cmpeq_epi8_mask(block, _mm512_set1_epi8(0x80u8 as i8));
        let third_space = _mm512_cmple_epu8_mask(
            _mm512_sub_epi8(block, _mm512_set1_epi8(0x80u8 as i8)),
            _mm512_set1_epi8(0x0A),
        ) | _mm512_cmple_epu8_mask(
            _mm512_sub_epi8(block, _mm512_set1_epi8(0xA8u8 as i8)),
            _mm512_set1_epi8(1),
        ) | _mm512_cmpeq_epi8_mask(block, _mm512_set1_epi8(0xAFu8 as i8));
        e2_other |= ((e2 << 1) | e2_carry.0) & !second_80;
        e2_other |= ((e2 << 2) | e2_carry.1) & third_space;
        e2_carry = (e2 >> 63, e2 >> 62);

        if blank_until > base {
            space |= _bzhi_u64(u64::MAX, (blank_until - base).min(64) as u32);
        }
        let mut other_leads = leads & !e2;
        while other_leads != 0 {
            let at = base + other_leads.trailing_zeros() as usize;
            other_leads &= other_leads - 1;
            // Checked even inside a word set aside: its extent assumed ASCII whitespace only.
            let c = text[at..].chars().next().unwrap_or(' ');
            if is_python_whitespace(c) {
                return false;
            }
            if at < blank_until {
                continue;
            }
            if n_odd == ODD_WORDS {
                return false;
            }
            // The segment has no non-ASCII whitespace (or is abandoned later), so ASCII
            // whitespace bounds the word.
            let from = bytes[..at]
                .iter()
                .rposition(|&b| is_ascii_space(b))
                .map_or(0, |p| p + 1);
            let to = bytes[at..]
                .iter()
                .position(|&b| is_ascii_space(b))
                .map_or(n, |p| at + p);
            odd[n_odd] = (from, to);
            n_odd += 1;
            if from < base && open != 0 {
                // Its first kept bytes were in an earlier block: its start is the last stored.
                n_starts -= 1;
                open = 0;
            }
            blank_until = to;
            space |= _bzhi_u64(u64::MAX, (to - base).min(64) as u32)
                & !_bzhi_u64(u64::MAX, from.saturating_sub(base) as u32);
        }

        let kept_bits = keep.count_ones();
        let kept_space = if STRIP {
            _pext_u64(space, keep)
        } else {
            space & valid
        };
        let kept_word = !kept_space & _bzhi_u64(u64::MAX, kept_bits);
        let after_word = (kept_word << 1) | open;
        let word_starts = kept_word & !after_word;
        let word_ends = kept_space & after_word;
        // SAFETY: at most 32 positions per block are counted into buffers of SEGMENT_MAX + 64
        // entries, and a segment's positions are fewer than its bytes.
        unsafe {
            n_starts += store_positions(word_starts, kept_len as u16, iota, starts.add(n_starts));
            n_ends += store_positions(word_ends, kept_len as u16, iota, ends.add(n_ends));
        }
        if kept_bits > 0 {
            open = (kept_word >> (kept_bits - 1)) & 1;
        }
        kept_len += kept_bits as usize;
        base += 64;
    }
    if e2_other != 0 {
        return false;
    }
    if n_starts > n_ends {
        // The text ends inside a word.
        // SAFETY: n_ends < n_starts <= SEGMENT_MAX: within `ends`.
        unsafe { *ends.add(n_ends) = kept_len as u16 };
        n_ends += 1;
    }
    // `head_at` reads 16 bytes from each short word's start: a word in the last 15 kept bytes
    // reads past them, beyond what the last block's store may have written (it wrote 64 bytes
    // from its own start). Zeros there make every such read initialised.
    // SAFETY: kept_len <= n <= SEGMENT_MAX, and `kept` has 64 bytes past SEGMENT_MAX.
    unsafe { _mm_storeu_si128(kept.add(kept_len).cast(), _mm_setzero_si128()) };
    let initialised = kept_len + 16;

    let words = Words {
        kept: kept.cast_const(),
        initialised,
        starts: starts.cast_const(),
        ends: ends.cast_const(),
        n: n_ends,
    };
    // SAFETY: n_ends positions were stored in order, each word within the kept_len bytes,
    // and `initialised` covers kept_len + 16.
    unsafe {
        if counts.is_large() {
            count_words::<true>(counts, words);
        } else {
            count_words::<false>(counts, words);
        }
    }
    for &(from, to) in &odd[..n_odd] {
        let word = &text[from..to];
        tokenizer.token(word, flags_of(word.as_bytes()), scratch, &mut |word| {
            counts.add(word, 1)
        });
    }
    true
}

/// Counts the `n` words at `kept[starts[i]..ends[i]]`. With `PREFETCH` (the table is larger
/// than the caches) slots are prefetched and looked up several at a time so that misses
/// overlap; without, out-of-order execution overlaps the (cached) lookups by itself.
///
/// # Safety
/// `n` positions must be initialised in `starts` and `ends`, in order within `kept`, whose
/// first `initialised` bytes are initialised, 16 of them from each start.
#[inline(always)]
unsafe fn count_words<const PREFETCH: bool>(
    counts: &mut WordCounts,
    Words {
        kept,
        initialised,
        starts,
        ends,
        n,
    }: Words,
) {
    let mut pending = PendingWords::default();
    for i in 0..n {
        // SAFETY: the caller initialised `n` positions.
        let (start, end) = unsafe { (*starts.add(i) as usize, *ends.add(i) as usize) };
        debug_assert!(
            start + 16 <= initialised,
            "head_at would read uninitialised bytes"
        );
        let len = end - start;
        // SAFETY: the word lies within `kept`'s initialised bytes, and so do the 16 bytes
        // from its start that `head_at` reads (the caller's promise).
        unsafe {
            if len > INLINE {
                counts.add(std::slice::from_raw_parts(kept.add(start), len), 1);
            } else if PREFETCH {
                counts.add_short_soon(&mut pending, head_at(kept.add(start), len), len, 1);
            } else {
                counts.add_short(head_at(kept.add(start), len), len, 1);
            }
        }
    }
    counts.count_pending(&mut pending);
}

/// One segment's words as `count_words` reads them.
struct Words {
    kept: *const u8,
    /// How many bytes of `kept` are initialised.
    initialised: usize,
    starts: *const u16,
    ends: *const u16,
    n: usize,
}

/// 0, 1, ..., 63: the byte indices `store_positions` compresses.
static IOTA: [u8; 64] = {
    let mut iota = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        iota[i] = i as u8;
        i += 1;
    }
    iota
};

/// Writes `base +` the index of each set bit of `mask` to `out` and returns how many there
/// are. At most 32 (a word start follows a non-word byte, a word end a word byte), so one
/// store of 32 positions covers them.
///
/// # Safety
/// The CPU must have the enabled features; `out` must have room for 32 entries.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
unsafe fn store_positions(mask: u64, base: u16, iota: __m512i, out: *mut u16) -> usize {
    let indices = _mm512_maskz_compress_epi8(mask, iota);
    let positions = _mm512_add_epi16(
        _mm512_cvtepu8_epi16(_mm512_castsi512_si256(indices)),
        _mm512_set1_epi16(base as i16),
    );
    // SAFETY: 32 u16 positions are 64 bytes, for which the caller has room.
    unsafe { _mm512_storeu_si512(out.cast(), positions) };
    mask.count_ones() as usize
}

/// A word of up to `INLINE` bytes at `word` as its zero-padded head (see `counts::head_of`):
/// two loads, the bytes past the word cleared by `bzhi`.
///
/// # Safety
/// 16 bytes from `word` must be initialised, and the CPU must have BMI1 (`bzhi`).
#[inline(always)]
unsafe fn head_at(word: *const u8, len: usize) -> [u64; 2] {
    let bits = (len * 8) as u32;
    // SAFETY: the caller's promises: 16 readable bytes, and the instruction.
    unsafe {
        [
            _bzhi_u64(word.cast::<u64>().read_unaligned(), bits),
            _bzhi_u64(
                word.add(8).cast::<u64>().read_unaligned(),
                bits.saturating_sub(64),
            ),
        ]
    }
}

/// The bytes of `block` that are ASCII punctuation (Python's `string.punctuation`), from the
/// same two nibble tables as `short_words_avx512`'s, applied to 64 bytes at once.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn punctuation(block: __m512i) -> __mmask64 {
    let (low_table, high_table) = short_words_avx512::PUNCTUATION_NIBBLES;
    // SAFETY: the loads read 16 bytes of 16-byte arrays.
    let (low_table, high_table) = unsafe {
        (
            _mm512_broadcast_i32x4(_mm_loadu_si128(low_table.as_ptr().cast())),
            _mm512_broadcast_i32x4(_mm_loadu_si128(high_table.as_ptr().cast())),
        )
    };
    let nibble = _mm512_set1_epi8(0x0F);
    let low = _mm512_shuffle_epi8(low_table, _mm512_and_si512(block, nibble));
    let high = _mm512_shuffle_epi8(
        high_table,
        _mm512_and_si512(_mm512_srli_epi16::<4>(block), nibble),
    );
    _mm512_test_epi8_mask(low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_whitespace_in_u2000_to_u203f_sends_the_segment_word_by_word() {
        // The blocks only check E2 80 xx's third byte against 80..8A, A8, A9 and AF.
        for c in '\u{2000}'..='\u{203f}' {
            let third = c.to_string().as_bytes()[2];
            let checked = (0x80..=0x8A).contains(&third) || matches!(third, 0xA8 | 0xA9 | 0xAF);
            assert!(!is_python_whitespace(c) || checked, "{c:?}");
        }
    }

    #[test]
    fn positions_cover_the_densest_block() {
        if !short_words_avx512::tests::cpu_has_the_kernel_or_skip() {
            return;
        }
        let mut out = [0u16; 64 + 32];
        // SAFETY: available() checked the features; `out` has room for 64 positions.
        let count = unsafe {
            let iota = _mm512_loadu_si512(IOTA.as_ptr().cast());
            store_positions(0x5555_5555_5555_5555, 100, iota, out.as_mut_ptr())
        };
        assert_eq!(count, 32);
        assert!(out[..32]
            .iter()
            .enumerate()
            .all(|(i, &p)| p == 100 + 2 * i as u16));
    }

    #[test]
    fn punctuation_is_pythons_string_punctuation() {
        if !short_words_avx512::tests::cpu_has_the_kernel_or_skip() {
            return;
        }
        let bytes: Vec<u8> = (0..=255u8).collect();
        for chunk in bytes.chunks(64) {
            // SAFETY: available() checked the features; the chunk is 64 bytes.
            let mask = unsafe { punctuation(_mm512_loadu_si512(chunk.as_ptr().cast())) };
            for (i, byte) in chunk.iter().enumerate() {
                assert_eq!(
                    mask >> i & 1 != 0,
                    byte.is_ascii_punctuation(),
                    "{byte:#04x}"
                );
            }
        }
    }
}
