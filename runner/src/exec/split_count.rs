//! The split-count kernel of a stream (the plan's `count_split_text` rule, separator form):
//! `explode(separator)` of a source's raw text lines straight into a `group_count` of the
//! pieces, from the chunks' bytes into the kept state, without building batches.

use crate::transforms::TextCounter;

/// Counts the pieces of every line of `chunks` (valid UTF-8, lines ending in `\n`, CRLF
/// allowed) into `counts` (and `changed`, in update mode), as decode → explode → group_count
/// would, without building batches; `rows` counts the lines.
pub(crate) fn absorb(
    chunks: &[&str],
    separator: &str,
    drop_empty: bool,
    counts: &mut dyn TextCounter,
    mut changed: Option<&mut dyn TextCounter>,
    rows: &mut u64,
) {
    if let [separator] = separator.as_bytes() {
        if separator.is_ascii() && !matches!(separator, b'\n' | b'\r') {
            let mut pieces: Vec<&[u8]> = Vec::new();
            for &text in chunks {
                pieces.clear();
                split_count_bytes(text.as_bytes(), *separator, |piece| match piece {
                    None => *rows += 1,
                    Some(piece) if drop_empty && piece.is_empty() => {}
                    Some(piece) => pieces.push(piece),
                });
                counts.add_each_text(&pieces);
                if let Some(changed) = changed.as_deref_mut() {
                    changed.add_each_text(&pieces);
                }
            }
            return;
        }
    }
    for &text in chunks {
        let body = text.strip_suffix('\n').unwrap_or(text);
        if text.is_empty() {
            continue;
        }
        for line in body.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            *rows += 1;
            let mut count = |piece: &str| {
                if !(drop_empty && piece.is_empty()) {
                    counts.add_text(piece, 1);
                    if let Some(changed) = changed.as_deref_mut() {
                        changed.add_text(piece, 1);
                    }
                }
            };
            // A one-character separator (the usual space) splits without a substring searcher.
            match single_char(separator) {
                Some(c) => line.split(c).for_each(&mut count),
                None => line.split(separator).for_each(&mut count),
            }
        }
    }
}

/// Calls `piece` with every piece of every line of `text` split at the one-byte `separator`,
/// and `piece(None)` once per line before its pieces: lines end at `\n` (an `\r` before it is
/// dropped, as is the `\n` ending `text`). The pieces are exactly those of
/// `line.split(separator)` for each line. Separators and newlines are found 64 bytes at a time
/// as bit masks, so a piece costs a bit scan, not a search call.
fn split_count_bytes<'t>(text: &'t [u8], separator: u8, mut piece: impl FnMut(Option<&'t [u8]>)) {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    if text.is_empty() {
        return;
    }
    piece(None);
    let mut start = 0;
    let mut base = 0;
    while base < body.len() {
        let (mut cuts, newlines) = match body[base..].first_chunk::<64>() {
            Some(block) => cut_masks(block, separator),
            None => {
                // The last, partial block, padded with bytes that cut nothing.
                let mut block = [if separator == 0 { 1 } else { 0 }; 64];
                block[..body.len() - base].copy_from_slice(&body[base..]);
                cut_masks(&block, separator)
            }
        };
        while cuts != 0 {
            let bit = cuts.trailing_zeros() as usize;
            cuts &= cuts - 1;
            let at = base + bit;
            if newlines >> bit & 1 != 0 {
                let line_end = &body[start..at];
                piece(Some(line_end.strip_suffix(b"\r").unwrap_or(line_end)));
                piece(None);
            } else {
                piece(Some(&body[start..at]));
            }
            start = at + 1;
        }
        base += 64;
    }
    let last = &body[start..];
    piece(Some(last.strip_suffix(b"\r").unwrap_or(last)));
}

/// Bit masks of the bytes of `block` that are `separator` or a newline, and of the newlines.
#[inline(always)]
fn cut_masks(block: &[u8; 64], separator: u8) -> (u64, u64) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let (mut cuts, mut newlines) = (0u64, 0u64);
        for part in 0..4 {
            // SAFETY: SSE2 is part of the x86-64 baseline; the load reads 16 bytes of `block`.
            let (cut, newline) = unsafe {
                let v = _mm_loadu_si128(block.as_ptr().add(part * 16) as *const __m128i);
                let newline = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8));
                let cut = _mm_or_si128(newline, _mm_cmpeq_epi8(v, _mm_set1_epi8(separator as i8)));
                (
                    _mm_movemask_epi8(cut) as u16 as u64,
                    _mm_movemask_epi8(newline) as u16 as u64,
                )
            };
            cuts |= cut << (part * 16);
            newlines |= newline << (part * 16);
        }
        (cuts, newlines)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        block
            .iter()
            .enumerate()
            .fold((0, 0), |(cuts, newlines), (i, &b)| {
                (
                    cuts | (((b == b'\n' || b == separator) as u64) << i),
                    newlines | (((b == b'\n') as u64) << i),
                )
            })
    }
}

fn single_char(text: &str) -> Option<char> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What decode → explode would give: one `None` per line, then its pieces.
    fn reference(text: &str, separator: char) -> Vec<Option<String>> {
        let mut out = Vec::new();
        if text.is_empty() {
            return out;
        }
        for line in text.strip_suffix('\n').unwrap_or(text).split('\n') {
            out.push(None);
            let line = line.strip_suffix('\r').unwrap_or(line);
            out.extend(line.split(separator).map(|p| Some(p.to_owned())));
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn byte_splitter_agrees_with_str_split(
            text in "([a-c#é ,\r\n]){0,300}",
            comma: bool,
        ) {
            let separator = if comma { ',' } else { ' ' };
            let mut fast = Vec::new();
            split_count_bytes(text.as_bytes(), separator as u8, |piece| {
                fast.push(piece.map(|p| String::from_utf8(p.to_vec()).unwrap()))
            });
            proptest::prop_assert_eq!(fast, reference(&text, separator));
        }
    }
}
