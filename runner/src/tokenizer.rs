//! The word splitter shared by the `tokenize` transform and the word-count kernel, so the two
//! cannot disagree: Python's `str.split()` (64 bytes at a time as bit masks, SIMD where the CPU
//! has it), then lowercasing and ASCII punctuation stripping as the chapter's `strip_punc`.
//! A kernel-level module: it knows nothing of pipelines.

use serde::Deserialize;

/// Which ASCII punctuation a word loses.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StripPunctuation {
    /// Anywhere in the word, as the chapter's `strip_punc` (`o'er` becomes `oer`); the default.
    #[default]
    All,
    /// At the start and end of the word only (`'tis` becomes `tis`, `o'er` stays).
    Edges,
    /// Nowhere: words keep their punctuation.
    None,
}

/// Python's `str.isspace`: Unicode White_Space plus the ASCII separators U+001C..U+001F.
#[inline]
pub fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// What to do with one ASCII byte; any other value is the byte to keep (already lowercased).
const SKIP: u16 = 0x100;
const SPACE: u16 = 0x200;
const NON_ASCII: u16 = 0x300;

/// The word splitter shared by the `tokenize` transform and the fused word-count path, so the
/// two cannot disagree. Works on bytes: one table lookup per ASCII byte, with a slow path for
/// tokens containing non-ASCII characters that follows Python exactly.
#[derive(Clone)]
pub struct Tokenizer {
    /// Per byte: the byte to keep, or SKIP / SPACE / NON_ASCII.
    map: [u16; 256],
    lowercase: bool,
    strip: StripPunctuation,
    drop_empty: bool,
}

impl Tokenizer {
    /// A splitter that lowercases words (Unicode-aware) when `lowercase`, strips punctuation as
    /// `strip` says, and leaves out empty words when `drop_empty`.
    pub fn new(lowercase: bool, strip: StripPunctuation, drop_empty: bool) -> Self {
        let mut map = [0u16; 256];
        for (b, slot) in map.iter_mut().enumerate() {
            let byte = b as u8;
            *slot = if byte >= 0x80 {
                NON_ASCII
            } else if is_python_whitespace(byte as char) {
                SPACE
            } else if byte.is_ascii_punctuation() && strip == StripPunctuation::All {
                SKIP
            } else if lowercase {
                byte.to_ascii_lowercase() as u16
            } else {
                byte as u16
            };
        }
        Tokenizer {
            map,
            lowercase,
            strip,
            drop_empty,
        }
    }

    /// Whether words are lowercased.
    pub fn lowercase(&self) -> bool {
        self.lowercase
    }

    /// Which ASCII punctuation words lose.
    pub fn strip(&self) -> StripPunctuation {
        self.strip
    }

    /// Whether words left empty (only punctuation) are left out.
    pub fn drop_empty(&self) -> bool {
        self.drop_empty
    }

    /// Calls `emit` with every word of `text`, normalised. `scratch` is reused between calls.
    #[inline]
    pub fn words(&self, text: &str, scratch: &mut Vec<u8>, mut emit: impl FnMut(&[u8])) {
        split_whitespace(text, |token, flags| {
            self.token(token, flags, scratch, &mut emit)
        });
    }

    /// Normalises one whitespace-free token (with the flags `split_whitespace` gave it) and
    /// emits it unless it ends up dropped.
    #[inline(always)]
    pub fn token(
        &self,
        token: &str,
        flags: u8,
        scratch: &mut Vec<u8>,
        emit: &mut impl FnMut(&[u8]),
    ) {
        let bytes = token.as_bytes();
        let punct_matters = flags & HAS_PUNCT != 0 && self.strip != StripPunctuation::None;
        let lower_matters = flags & HAS_UPPER != 0 && self.lowercase;
        if flags & HAS_NON_ASCII == 0 && !punct_matters && bytes.len() <= SHORT {
            if !lower_matters {
                // Already normalised, the common case: no copy at all.
                return emit(bytes);
            }
            let mut short = [0u8; SHORT];
            for (out, &b) in short.iter_mut().zip(bytes) {
                *out = b | ((b.is_ascii_uppercase() as u8) << 5);
            }
            return emit(&short[..bytes.len()]);
        }
        if bytes.len() <= SHORT && flags & HAS_NON_ASCII == 0 {
            // Short ASCII words are normalised into a stack buffer: no capacity checks, no heap.
            let mut short = [0u8; SHORT];
            let mut len = 0;
            for &b in bytes {
                let action = self.map[b as usize];
                if action < SKIP {
                    short[len] = action as u8;
                    len += 1;
                }
            }
            self.emit_word(&short[..len], emit);
        } else {
            self.slow_word(token, scratch);
            self.emit_word(scratch, emit);
        }
    }

    /// Applies edge stripping and `drop_empty`, then emits.
    #[inline(always)]
    fn emit_word(&self, word: &[u8], emit: &mut impl FnMut(&[u8])) {
        let word = if self.strip == StripPunctuation::Edges {
            let first = word
                .iter()
                .position(|b| !b.is_ascii_punctuation())
                .unwrap_or(word.len());
            let last = word
                .iter()
                .rposition(|b| !b.is_ascii_punctuation())
                .map_or(first, |p| p + 1);
            &word[first..last]
        } else {
            word
        };
        if !(self.drop_empty && word.is_empty()) {
            emit(word);
        }
    }

    /// Normalises a token with non-ASCII characters (or a long one) into `scratch`, exactly as
    /// Python does: lowercase first, then strip ASCII punctuation. Lowercasing is per character
    /// except for capital sigma, whose lowercase depends on its neighbours (final sigma).
    #[cold]
    fn slow_word(&self, raw: &str, scratch: &mut Vec<u8>) {
        scratch.clear();
        // Capital sigma (UTF-8 `CE A3`) lowercases by its neighbours: the whole word at once.
        if self.lowercase && raw.as_bytes().windows(2).any(|pair| pair == [0xCE, 0xA3]) {
            let mut utf8 = [0u8; 4];
            for c in raw.to_lowercase().chars() {
                if !(self.strip == StripPunctuation::All && c.is_ascii_punctuation()) {
                    scratch.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
            return;
        }
        let mut utf8 = [0u8; 4];
        for c in raw.chars() {
            if c.is_ascii() {
                // ASCII by the table: lowercased, or skipped when punctuation is stripped.
                let action = self.map[c as usize];
                if action < SKIP {
                    scratch.push(action as u8);
                }
            } else if !self.lowercase || ('\u{2000}'..='\u{206F}').contains(&c) {
                // General Punctuation (’ ‘ — “ ”: most non-ASCII in English text) has no case.
                scratch.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            } else {
                for lower in c.to_lowercase() {
                    // A non-ASCII capital may lowercase to ASCII (the Kelvin sign to `k`).
                    if !(self.strip == StripPunctuation::All && lower.is_ascii_punctuation()) {
                        scratch.extend_from_slice(lower.encode_utf8(&mut utf8).as_bytes());
                    }
                }
            }
        }
    }
}

/// Token flags passed by `split_whitespace`: the token has an ASCII capital letter, ASCII
/// punctuation, or a non-ASCII byte. A token with none of them is already normalised.
pub const HAS_UPPER: u8 = 1;
/// Token flag: the token has ASCII punctuation.
pub const HAS_PUNCT: u8 = 2;
/// Token flag: the token has a non-ASCII byte.
pub const HAS_NON_ASCII: u8 = 4;

/// Calls `emit` with every maximal run of non-whitespace characters of `text` (Python's
/// `str.split()` with no argument) and its flags, fast: 64 bytes at a time are turned into bit
/// masks, and tokens are read off the masks, so there is no branch per byte.
#[inline]
pub fn split_whitespace(text: &str, emit: impl FnMut(&str, u8)) {
    struct Emit<'t, F>(&'t str, F);
    impl<F: FnMut(&str, u8)> TokenSink for Emit<'_, F> {
        #[inline(always)]
        fn token(&mut self, start: usize, end: usize, flags: u8) {
            (self.1)(&self.0[start..end], flags)
        }
    }
    split_tokens(text, &mut Emit(text, emit));
}

/// Receives the tokens `split_tokens` finds, as byte ranges of its text. A trait rather than a
/// closure so the hot loops that implement it are inlined into the splitter.
pub trait TokenSink {
    /// Whether `token` reads its flags; when false they are not computed (always 0), which
    /// saves work per block.
    const FLAGS: bool = true;

    /// `text[start..end]` is a token (never empty, cut at character boundaries).
    fn token(&mut self, start: usize, end: usize, flags: u8);
}

/// The flags `split_tokens` gives a token, computed from its bytes.
pub fn flags_of(token: &[u8]) -> u8 {
    token.iter().fold(0, |flags, &b| {
        flags
            | (b.is_ascii_uppercase() as u8 * HAS_UPPER)
            | (b.is_ascii_punctuation() as u8 * HAS_PUNCT)
            | ((b >= 0x80) as u8 * HAS_NON_ASCII)
    })
}

/// `split_whitespace` for a `TokenSink`.
#[inline(always)]
pub fn split_tokens<S: TokenSink>(text: &str, sink: &mut S) {
    split_tokens_breaking(text, sink, |_| 0)
}

/// `split_tokens` over text that is several values laid end to end (a text column's buffer):
/// `breaks(base)` gives the bits of the 64 bytes at `base` where a value starts, and a token
/// never runs across one. One pass over the whole buffer instead of one call per value saves
/// the partial block every short value would cost. `base` only grows from call to call.
#[inline(always)]
pub fn split_tokens_breaking<S: TokenSink>(
    text: &str,
    sink: &mut S,
    mut breaks: impl FnMut(usize) -> u64,
) {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut token_start: Option<usize> = None;
    let mut open = false;
    let mut flags = 0u8;
    // Non-ASCII whitespace may run past the end of a block; bytes before this are whitespace.
    let mut space_until = 0usize;
    let mut base = 0usize;
    while base < n {
        let len = (n - base).min(64);
        let mut masks = match bytes[base..].first_chunk::<64>() {
            Some(block) => block_masks(block),
            None => {
                // The last, partial block: padded with spaces, which end any token.
                let mut block = [b' '; 64];
                block[..len].copy_from_slice(&bytes[base..]);
                block_masks(&block)
            }
        };
        masks.space |= non_ascii_space(text, base, masks.high & low_bits(len), &mut space_until);
        // Tokens start at a word byte after a space and end (exclusively) at a space after a
        // word byte; `open` carries a token across the block edge. Starts and ends alternate,
        // so each token costs two bit scans.
        let word = !masks.space;
        let after_word = (word << 1) | open as u64;
        // A value's first byte ends the token before it and starts one of its own.
        let value_starts = breaks(base);
        let mut starts = word & (!after_word | value_starts);
        let mut ends = (masks.space | value_starts) & after_word;
        if let Some(start) = token_start {
            if ends == 0 {
                if S::FLAGS {
                    flags |= masks.flags(u64::MAX);
                }
                base += 64;
                continue;
            }
            let end = ends.trailing_zeros() as usize;
            ends &= ends - 1;
            if S::FLAGS {
                flags |= masks.flags(low_bits(end));
            }
            sink.token(start, base + end, flags);
            token_start = None;
        }
        while starts != 0 {
            let start = starts.trailing_zeros() as usize;
            starts &= starts - 1;
            if ends == 0 {
                token_start = Some(base + start);
                if S::FLAGS {
                    flags = masks.flags(!low_bits(start));
                }
                break;
            }
            let end = ends.trailing_zeros() as usize;
            ends &= ends - 1;
            let flags = if S::FLAGS {
                masks.flags(low_bits(end) & !low_bits(start))
            } else {
                0
            };
            sink.token(base + start, base + end, flags);
        }
        open = word >> 63 != 0;
        base += 64;
    }
    if let Some(start) = token_start {
        sink.token(start, n, flags);
    }
}

/// The bits of the 64-byte block at `base` that belong to non-ASCII whitespace characters
/// (`\u{85}`, `\u{a0}`, `\u{2003}`, ...), given the block's bytes of 0x80 and above in `high`.
/// A character may run past the block: `space_until` carries where the last one ends.
#[inline(always)]
pub(crate) fn non_ascii_space(
    text: &str,
    base: usize,
    mut high: u64,
    space_until: &mut usize,
) -> u64 {
    let bytes = text.as_bytes();
    let mut space = if *space_until > base {
        low_bits((*space_until - base).min(64))
    } else {
        0
    };
    while high != 0 {
        let j = high.trailing_zeros() as usize;
        high &= high - 1;
        let at = base + j;
        // Only lead bytes start a character; continuation bytes are skipped by `chars`.
        if (bytes[at] & 0xC0) != 0x80 {
            if let Some(c) = text[at..]
                .chars()
                .next()
                .filter(|c| is_python_whitespace(*c))
            {
                let end = at + c.len_utf8();
                *space_until = (*space_until).max(end);
                space |= low_bits((end - base).min(64)) & !low_bits(j);
            }
        }
    }
    space
}

/// A mask of the lowest `n` bits (`n` up to 64).
#[inline(always)]
fn low_bits(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Per-byte classes of a 64-byte block, one bit per byte.
#[derive(Debug, PartialEq, Eq)]
struct Masks {
    /// ASCII whitespace as Python sees it: \t..\r, \x1c..\x1f, space.
    space: u64,
    /// Not ASCII.
    high: u64,
    upper: u64,
    punct: u64,
}

impl Masks {
    /// The token flags for the bytes in `range`.
    #[inline(always)]
    fn flags(&self, range: u64) -> u8 {
        (((self.upper & range) != 0) as u8 * HAS_UPPER)
            | (((self.punct & range) != 0) as u8 * HAS_PUNCT)
            | (((self.high & range) != 0) as u8 * HAS_NON_ASCII)
    }
}

#[inline(always)]
fn block_masks(block: &[u8; 64]) -> Masks {
    #[cfg(target_arch = "x86_64")]
    {
        sse2_masks(block)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        scalar_masks(block)
    }
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn scalar_masks(block: &[u8; 64]) -> Masks {
    let mut m = Masks {
        space: 0,
        high: 0,
        upper: 0,
        punct: 0,
    };
    for (j, &b) in block.iter().enumerate() {
        let is_space = (b == b' ') | (b.wrapping_sub(9) < 5) | (b.wrapping_sub(0x1c) < 4);
        m.space |= (is_space as u64) << j;
        m.high |= ((b >= 0x80) as u64) << j;
        m.upper |= (b.is_ascii_uppercase() as u64) << j;
        m.punct |= (b.is_ascii_punctuation() as u64) << j;
    }
    m
}

/// 0xFF in every byte of `v` within `lo..=hi` (unsigned), else 0: `lo <= byte <= hi` as
/// `min(byte - lo, hi - lo) == byte - lo`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn sse2_within(
    v: std::arch::x86_64::__m128i,
    lo: u8,
    hi: u8,
) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86-64 baseline; no memory is touched.
    unsafe {
        let shifted = _mm_sub_epi8(v, _mm_set1_epi8(lo as i8));
        _mm_cmpeq_epi8(
            _mm_min_epu8(shifted, _mm_set1_epi8((hi - lo) as i8)),
            shifted,
        )
    }
}

/// 0xFF in every byte of `v` that is ASCII punctuation (Python's `string.punctuation`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn sse2_ascii_punctuation(v: std::arch::x86_64::__m128i) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86-64 baseline; no memory is touched.
    unsafe {
        _mm_or_si128(
            _mm_or_si128(sse2_within(v, 0x21, 0x2f), sse2_within(v, 0x3a, 0x40)),
            _mm_or_si128(sse2_within(v, 0x5b, 0x60), sse2_within(v, 0x7b, 0x7e)),
        )
    }
}

/// The same with SSE2, which every x86-64 CPU has: 16 bytes per compare, one movemask each.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn sse2_masks(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::*;
    let mut m = Masks {
        space: 0,
        high: 0,
        upper: 0,
        punct: 0,
    };
    for part in 0..4 {
        // SAFETY: SSE2 is part of the x86-64 baseline; the load reads 16 bytes inside `block`.
        let (space, high, upper, punct) = unsafe {
            let v = _mm_loadu_si128(block.as_ptr().add(part * 16) as *const __m128i);
            let within = |lo, hi| sse2_within(v, lo, hi);
            let space = _mm_or_si128(
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b' ' as i8)),
                _mm_or_si128(within(9, 13), within(0x1c, 0x1f)),
            );
            let punct = sse2_ascii_punctuation(v);
            // Callers that never read `upper` and `punct` (see `TokenSink::FLAGS`) have them
            // removed by the compiler: all of this is inlined.
            (
                _mm_movemask_epi8(space) as u16 as u64,
                _mm_movemask_epi8(v) as u16 as u64,
                _mm_movemask_epi8(within(b'A', b'Z')) as u16 as u64,
                _mm_movemask_epi8(punct) as u16 as u64,
            )
        };
        let shift = part * 16;
        m.space |= space << shift;
        m.high |= high << shift;
        m.upper |= upper << shift;
        m.punct |= punct << shift;
    }
    m
}

/// Words up to this many bytes take the fast path.
const SHORT: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    /// The tokenizer's settings, as `tokenize` has them.
    struct Options {
        lowercase: bool,
        strip_punctuation: StripPunctuation,
        drop_empty: bool,
    }

    /// Python's `line.lower().split()` then strip_punc, written the obvious way.
    fn reference(line: &str, config: &Options) -> Vec<String> {
        let lowered = if config.lowercase {
            line.to_lowercase()
        } else {
            line.to_owned()
        };
        lowered
            .split(is_python_whitespace)
            .filter(|t| !t.is_empty())
            .map(|t| match config.strip_punctuation {
                StripPunctuation::All => t.chars().filter(|c| !c.is_ascii_punctuation()).collect(),
                StripPunctuation::Edges => t
                    .trim_matches(|c: char| c.is_ascii_punctuation())
                    .to_owned(),
                StripPunctuation::None => t.to_owned(),
            })
            .filter(|w| !(config.drop_empty && w.is_empty()))
            .collect()
    }

    fn fast(line: &str, config: &Options) -> Vec<String> {
        let mut words = Vec::new();
        Tokenizer::new(
            config.lowercase,
            config.strip_punctuation,
            config.drop_empty,
        )
        .words(line, &mut Vec::new(), |w| {
            words.push(String::from_utf8(w.to_vec()).unwrap())
        });
        words
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        #[test]
        fn fast_path_agrees_with_python_semantics(
            line in "([a-zA-Z0-9'’,.;:!?()\\-_ \t\r\n\u{1c}\u{85}\u{a0}\u{2003}\u{3000}]|ΣΟΔΑσςİÉé日本K\u{212a}){0,40}",
            lowercase: bool,
            drop_empty: bool,
            strip in 0..3u8,
        ) {
            let config = Options {
                lowercase,
                strip_punctuation: [StripPunctuation::All, StripPunctuation::Edges, StripPunctuation::None][strip as usize],
                drop_empty,
            };
            proptest::prop_assert_eq!(fast(&line, &config), reference(&line, &config));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        #[test]
        fn block_splitter_agrees_with_str_split(
            text in "([a-z.'’ \t\r\n\u{1c}\u{85}\u{a0}\u{2003}\u{3000}日é]){0,200}",
        ) {
            let mut fast = Vec::new();
            split_whitespace(&text, |t, _| fast.push(t.to_owned()));
            let reference: Vec<String> = text.split(is_python_whitespace).filter(|t| !t.is_empty()).map(str::to_owned).collect();
            proptest::prop_assert_eq!(fast, reference);
        }
    }

    #[test]
    fn vector_and_scalar_masks_agree() {
        let mut block = [0u8; 64];
        for start in (0..=255u16).step_by(64) {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (start as usize + j) as u8;
            }
            assert_eq!(block_masks(&block), scalar_masks(&block));
        }
    }

    #[test]
    fn token_flags_cover_the_whole_token_across_blocks() {
        let text = format!("{}Ab, {}x,y {}z", "a".repeat(62), "b".repeat(70), "é");
        let mut seen = Vec::new();
        split_whitespace(&text, |t, flags| seen.push((t.len(), flags)));
        assert_eq!(
            seen,
            [
                (65, HAS_UPPER | HAS_PUNCT),
                (73, HAS_PUNCT),
                (3, HAS_NON_ASCII)
            ]
        );
    }

    #[test]
    fn block_splitter_handles_block_edges() {
        for pad in 0..70 {
            let text = format!(
                "{}ab\u{3000}cd{}\u{a0}",
                "x".repeat(pad),
                " ".repeat(pad % 7)
            );
            let mut fast = Vec::new();
            split_whitespace(&text, |t, _| fast.push(t.to_owned()));
            let reference: Vec<String> = text
                .split(is_python_whitespace)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            assert_eq!(fast, reference, "pad {pad}");
        }
    }
}
