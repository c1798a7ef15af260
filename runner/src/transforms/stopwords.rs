//! `stopwords`: drop rows whose word is a stop word. NLTK's lists are built in (stop-words
//! crate); `words:` and `file:` add to them or replace them.

use std::collections::HashSet;

/// The stop list: looked up once per row (or per distinct word), so with a fast hasher.
type WordSet = HashSet<Box<str>, foldhash::fast::RandomState>;
use std::path::PathBuf;

use arrow_array::{Array, BooleanArray, RecordBatch};
use arrow_buffer::BooleanBuffer;
use serde::Deserialize;

use super::{BuildContext, BuildTransform, MapTransform, PerValue, Stage, StageKind};
use crate::data::{text, text_column_index};
use crate::error::Result;

/// Drops rows whose word is a stop word. NLTK's lists are built in (the stop-words crate;
/// English has 198 words: NLTK's classic 179 plus 19 contractions). `words` and `file` (one word
/// a line, `#` comments, at most 64 MiB) add to the list or replace it (`mode`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopwordsConfig {
    /// The text column holding one word per row.
    #[serde(
        default = "default_column",
        deserialize_with = "crate::settings::env::string"
    )]
    pub column: String,
    /// Built-in NLTK list: a language name (`english`) or ISO code (`en`).
    #[serde(
        default = "default_language",
        deserialize_with = "crate::settings::env::string"
    )]
    pub language: String,
    /// Extra stop words.
    #[serde(default, deserialize_with = "crate::settings::env::strings")]
    pub words: Vec<String>,
    /// A file of stop words, one a line (`#` starts a comment), relative to the pipeline file.
    #[serde(default, deserialize_with = "crate::settings::env::opt_path")]
    pub file: Option<PathBuf>,
    /// `add` the given words to the built-in list, or `replace` it with them.
    #[serde(default)]
    pub mode: StopwordsMode,
}

/// How `words` and `file` combine with the built-in list.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StopwordsMode {
    /// Add them to the built-in list (the default).
    #[default]
    Add,
    /// Use them instead of the built-in list.
    Replace,
}

fn default_column() -> String {
    "word".into()
}
fn default_language() -> String {
    "english".into()
}

/// NLTK's language names and the codes the stop-words crate knows them by.
const LANGUAGES: &[(&str, &str)] = &[
    ("arabic", "ar"),
    ("azerbaijani", "az"),
    ("basque", "eu"),
    ("bengali", "bn"),
    ("catalan", "ca"),
    ("chinese", "zh"),
    ("danish", "da"),
    ("dutch", "nl"),
    ("english", "en"),
    ("finnish", "fi"),
    ("french", "fr"),
    ("german", "de"),
    ("greek", "el"),
    ("hebrew", "he"),
    ("hinglish", "hinglish"),
    ("hungarian", "hu"),
    ("indonesian", "id"),
    ("italian", "it"),
    ("kazakh", "kk"),
    ("nepali", "ne"),
    ("norwegian", "no"),
    ("portuguese", "pt"),
    ("romanian", "ro"),
    ("russian", "ru"),
    ("slovene", "sl"),
    ("spanish", "es"),
    ("swedish", "sv"),
    ("tajik", "tg"),
    ("turkish", "tr"),
];

fn builtin(language: &str) -> Result<&'static [&'static str], String> {
    let code = LANGUAGES
        .iter()
        .find(|(name, code)| *name == language || *code == language)
        .map_or(language, |(_, code)| code);
    stop_words::lookup(code).ok_or_else(|| {
        format!(
            "no built-in stop words for language `{language}`{}; known: {}",
            crate::settings::suggestion(language, LANGUAGES.iter().map(|(n, _)| *n)),
            LANGUAGES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

impl StopwordsConfig {
    fn word_set(&self, ctx: &BuildContext) -> Result<WordSet, String> {
        let mut set = WordSet::default();
        if self.mode == StopwordsMode::Add {
            set.extend(builtin(&self.language)?.iter().map(|w| Box::from(*w)));
        } else if self.words.is_empty() && self.file.is_none() {
            return Err(
                "`mode: replace` needs `words` or `file` to replace the built-in list with".into(),
            );
        }
        set.extend(self.words.iter().map(|w| Box::from(w.as_str())));
        if let Some(file) = &self.file {
            let path = crate::settings::resolve_against(ctx.base_dir, file);
            let contents = read_capped(&path)
                .map_err(|e| format!("cannot read stop-word file {}: {e}", path.display()))?;
            set.extend(
                contents
                    .lines()
                    .map(str::trim)
                    .filter(|w| !w.is_empty() && !w.starts_with('#'))
                    .map(Box::from),
            );
        }
        Ok(set)
    }
}

impl BuildTransform for StopwordsConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        let index = text_column_index(ctx.input, &self.column)?;
        let words = self.word_set(ctx)?;
        let lookup = StopSet::new(&words);
        Ok(Stage {
            output: ctx.input.clone(),
            kind: StageKind::Map(Box::new(Stopwords {
                index,
                words,
                lookup,
            })),
        })
    }
}

/// The built `stopwords` transform: drops rows whose word is in its stop list.
pub struct Stopwords {
    index: usize,
    words: WordSet,
    /// The same words, laid out for lookups of a few nanoseconds (one per row).
    lookup: StopSet,
}

impl Stopwords {
    /// One bit per row: set where the word is kept (not a stop word, or null). Built 64 rows
    /// to a word in a plain loop, so the lookup inlines into it.
    fn keep_bits(&self, words: &arrow_array::StringArray) -> BooleanBuffer {
        let (offsets, values) = (words.value_offsets(), words.value_data());
        let rows = words.len();
        let stop = |i: usize| {
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            self.lookup
                .contains_in(values, start, end.saturating_sub(start))
        };
        let mut bits = Vec::with_capacity(rows.div_ceil(64));
        for chunk in 0..rows.div_ceil(64) {
            let mut word = 0u64;
            for bit in 0..64.min(rows - chunk * 64) {
                word |= u64::from(!stop(chunk * 64 + bit)) << bit;
            }
            bits.push(word);
        }
        let keep = BooleanBuffer::new(arrow_buffer::Buffer::from_vec(bits), 0, rows);
        // Nulls are kept (a null is no stop word).
        match words.nulls() {
            Some(nulls) => &keep | &!nulls.inner(),
            None => keep,
        }
    }

    /// The column it tests.
    pub fn column(&self) -> usize {
        self.index
    }

    /// Whether `word` is a stop word (matched exactly, case included).
    pub fn contains(&self, word: &str) -> bool {
        self.lookup.contains(word)
    }
}

impl MapTransform for Stopwords {
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let words = text(batch, self.index);
        let keep = self.keep_bits(words);
        if keep.count_set_bits() == words.len() {
            return Ok(batch.clone());
        }
        crate::data::filter_batch(batch, &keep).map_err(crate::error::Error::runtime)
    }

    fn per_value(&self) -> Option<PerValue> {
        Some(PerValue::Keeps { column: self.index })
    }

    fn keep_mask(&self, batch: &RecordBatch) -> Option<Result<BooleanArray>> {
        Some(Ok(BooleanArray::new(
            self.keep_bits(text(batch, self.index)),
            None,
        )))
    }

    /// Keeps nulls, as `apply` does (`x NOT IN (...)` alone would drop them).
    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> Result<crate::spark::frame::Frame, String> {
        use crate::spark::frame::{call, col, lit_str};
        let name = input.columns()[self.index].clone();
        let mut words: Vec<&str> = self.words.iter().map(|w| &**w).collect();
        words.sort_unstable();
        let listed = col(&name).is_in(words.into_iter().map(lit_str).collect());
        let keep = call(
            "or",
            vec![call("isnull", vec![col(&name)]), call("not", vec![listed])],
        );
        Ok(input.filter(keep))
    }
}

/// Words of up to this many bytes are kept inline in the lookup table (all of NLTK's are).
const INLINE: usize = 16;

/// Hash multipliers `StopSet` chooses from: odd, with bits spread (a golden-ratio constant, then
/// a fixed sequence of its odd multiples by a second one: no randomness, the same table on
/// every run).
const MULTIPLIERS: [u64; 64] = {
    let mut all = [0u64; 64];
    let mut i = 0;
    while i < 64 {
        all[i] = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(2 * i as u64 + 1)
            ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)
            | 1;
        i += 1;
    }
    all
};

/// Past this many words the inline table would cost more memory than it saves time.
const MAX_INLINE_WORDS: usize = 1 << 16;

/// A stop list laid out for one lookup per row: words of up to 16 bytes inline in an
/// open-addressing table (a hash of two 8-byte loads, two compares), the rest in a hash set.
/// Measured on the romeo ×1000 word count without fusion, lookups went from a sixth of the
/// time to a few per cent.
struct StopSet {
    /// Empty slots have `len == 0`; a power of two long.
    slots: Vec<Slot>,
    /// Bits of the hash that pick a slot.
    bits: u32,
    /// The odd constant the hash multiplies by, one of `MULTIPLIERS`.
    multiplier: u64,
    /// Words longer than every stop word are none.
    longest: usize,
    /// Whether the empty word is listed.
    empty: bool,
    /// Words too long for a slot, or every word of a very long list.
    others: WordSet,
    /// Whether short words are in `slots` (`false`: every word is in `others`).
    inline: bool,
    /// The farthest any word sits from its home slot: a lookup reads that many slots more,
    /// always, instead of stopping at a match (found or not is a coin toss in text, and a
    /// mispredicted branch cost more than the lookup).
    max_probe: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    head: [u64; 2],
    len: u8,
}

/// The word's bytes, zero-padded to 16, as two integers (`word` has 1 to 16 bytes). Loads of
/// fixed width, overlapping where the word is shorter: a copy of variable length would be a
/// call to `memcpy` per row.
#[inline(always)]
fn head(word: &[u8]) -> [u64; 2] {
    let len = word.len();
    let load8 = |at: usize| u64::from_le_bytes(word[at..at + 8].try_into().expect("8 bytes"));
    let load4 = |at: usize| {
        u64::from(u32::from_le_bytes(
            word[at..at + 4].try_into().expect("4 bytes"),
        ))
    };
    if len >= 8 {
        // The second integer holds bytes 8..len: the top of the last eight bytes.
        let high = if len > 8 {
            load8(len - 8) >> (8 * (16 - len))
        } else {
            0
        };
        [load8(0), high]
    } else if len >= 4 {
        // Bytes 0..4 and len-4..len overlap where they meet; the bytes there are the same.
        [load4(0) | (load4(len - 4) << (8 * (len - 4))), 0]
    } else {
        let low = word
            .iter()
            .enumerate()
            .fold(0u64, |v, (i, &b)| v | (u64::from(b) << (8 * i)));
        [low, 0]
    }
}

impl StopSet {
    fn new(words: &WordSet) -> Self {
        // Every lookup reads `max_probe + 1` slots: of a few hash multipliers, the one that
        // packs the list with the shortest longest probe (198 English words: 5 with the first,
        // 1 with the best of 64).
        let mut best = Self::with_multiplier(words, MULTIPLIERS[0]);
        for multiplier in MULTIPLIERS.iter().skip(1) {
            if best.max_probe <= 1 {
                break;
            }
            let other = Self::with_multiplier(words, *multiplier);
            if other.max_probe < best.max_probe {
                best = other;
            }
        }
        best
    }

    fn with_multiplier(words: &WordSet, multiplier: u64) -> Self {
        let inline = words.len() <= MAX_INLINE_WORDS;
        let short = words
            .iter()
            .filter(|w| inline && !w.is_empty() && w.len() <= INLINE)
            .count();
        // At most a quarter full: probes stay short.
        let size = (short * 4).next_power_of_two().max(16);
        let mut set = StopSet {
            slots: vec![Slot::default(); size],
            bits: size.trailing_zeros(),
            multiplier,
            longest: words.iter().map(|w| w.len()).max().unwrap_or(0),
            empty: words.contains(""),
            others: WordSet::default(),
            inline,
            max_probe: 0,
        };
        for word in words {
            let bytes = word.as_bytes();
            if !inline || bytes.len() > INLINE {
                set.others.insert(word.clone());
            } else if !bytes.is_empty() {
                let head = head(bytes);
                let mut at = set.slot_of(head, bytes.len());
                let mut probe = 0;
                while set.slots[at].len != 0 {
                    at = (at + 1) & (set.slots.len() - 1);
                    probe += 1;
                }
                set.max_probe = set.max_probe.max(probe);
                set.slots[at] = Slot {
                    head,
                    len: bytes.len() as u8,
                };
            }
        }
        set
    }

    #[inline(always)]
    fn slot_of(&self, head: [u64; 2], len: usize) -> usize {
        let mixed = (head[0] ^ head[1].rotate_left(29) ^ ((len as u64) << 59))
            .wrapping_mul(self.multiplier);
        (mixed >> (64 - self.bits)) as usize
    }

    #[inline(always)]
    fn contains(&self, word: &str) -> bool {
        self.contains_in(word.as_bytes(), 0, word.len())
    }

    /// Whether the `len` bytes at `start` of `text` (UTF-8 there) are a stop word. Where 16
    /// bytes follow `start` in `text`, the word is read with one 16-byte load and masked to its
    /// length, without a branch on the length: word lengths in text are unpredictable.
    #[inline(always)]
    fn contains_in(&self, text: &[u8], start: usize, len: usize) -> bool {
        // Empty, longer than a slot, or no slots: rare, so a predictable branch.
        if len.wrapping_sub(1) >= INLINE || !self.inline {
            return self.contains_unusual(text, start, len);
        }
        let head = match text.get(start..start + INLINE) {
            Some(sixteen) => {
                let all = u128::from_le_bytes(sixteen.try_into().expect("16 bytes"));
                let mask = if len == INLINE {
                    u128::MAX
                } else {
                    (1u128 << (8 * len)) - 1
                };
                let word = all & mask;
                [word as u64, (word >> 64) as u64]
            }
            None => head(&text[start..start + len]),
        };
        match self.max_probe {
            // Unrolled for the usual lists (English packs with 1), the count a constant.
            0 => self.probe::<1>(head, len),
            1 => self.probe::<2>(head, len),
            2 => self.probe::<3>(head, len),
            _ => self.probe_runs(head, len),
        }
    }

    /// Whether one of the `PROBES` slots from the word's own holds it.
    #[inline(always)]
    fn probe<const PROBES: usize>(&self, head: [u64; 2], len: usize) -> bool {
        let first = self.slot_of(head, len);
        let mut found = false;
        for step in 0..PROBES {
            let slot = &self.slots[(first + step) & (self.slots.len() - 1)];
            found |= (slot.len as usize == len)
                & (((slot.head[0] ^ head[0]) | (slot.head[1] ^ head[1])) == 0);
        }
        found
    }

    /// `probe` for a list that packs with longer runs.
    fn probe_runs(&self, head: [u64; 2], len: usize) -> bool {
        let first = self.slot_of(head, len);
        (0..=self.max_probe).any(|step| {
            let slot = &self.slots[(first + step) & (self.slots.len() - 1)];
            slot.len as usize == len && slot.head == head
        })
    }

    /// `contains_in` for the empty word, words longer than a slot, and lists kept in `others`.
    #[cold]
    fn contains_unusual(&self, text: &[u8], start: usize, len: usize) -> bool {
        if len > self.longest {
            false
        } else if len == 0 {
            self.empty
        } else {
            std::str::from_utf8(&text[start..start + len])
                .is_ok_and(|word| self.others.contains(word))
        }
    }
}

/// A stop-word file is a list people write: past this it is a mistake (`/dev/zero`, a log).
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Reads `path` as UTF-8 text, refusing more than `MAX_FILE_BYTES` without reading them.
fn read_capped(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if read as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "it is longer than {} MiB, the most a stop-word list may be",
            MAX_FILE_BYTES >> 20
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_are_kept_and_every_row_is_tested_past_64() {
        let schema =
            std::sync::Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
                "word",
                arrow_schema::DataType::Utf8,
                true,
            )]));
        let StageKind::Map(stopwords) =
            crate::transforms::compliance::build::<StopwordsConfig>("{}", &schema)
                .unwrap()
                .kind
        else {
            panic!("stopwords is row-wise")
        };
        let values: Vec<Option<&str>> = (0..150)
            .map(|i| match i % 5 {
                0 => None,
                1 => Some("the"),
                2 => Some("romeo"),
                3 => Some("and"),
                _ => Some("juliet"),
            })
            .collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![std::sync::Arc::new(arrow_array::StringArray::from(
                values.clone(),
            ))],
        )
        .unwrap();
        let out = stopwords.apply(&batch).unwrap();
        let kept: Vec<Option<&str>> = out
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap()
            .iter()
            .collect();
        let expected: Vec<Option<&str>> = values
            .into_iter()
            .filter(|w| !matches!(w, Some("the" | "and")))
            .collect();
        assert_eq!(kept, expected);
    }

    #[test]
    fn heads_are_the_zero_padded_bytes() {
        for len in 1..=16 {
            let word: Vec<u8> = (1..=len as u8).collect();
            let mut padded = [0u8; 16];
            padded[..len].copy_from_slice(&word);
            let expected = [
                u64::from_le_bytes(padded[..8].try_into().unwrap()),
                u64::from_le_bytes(padded[8..].try_into().unwrap()),
            ];
            assert_eq!(head(&word), expected, "{len} bytes");
        }
    }

    #[test]
    fn the_lookup_table_agrees_with_a_hash_set() {
        let mut words: WordSet = builtin("english")
            .unwrap()
            .iter()
            .map(|w| Box::from(*w))
            .collect();
        for extra in [
            "",
            "a-very-long-stop-word-indeed",
            "exactly16bytes!!",
            "ünïcödé",
            "x",
        ] {
            words.insert(Box::from(extra));
        }
        let set = StopSet::new(&words);
        let probes = [
            "",
            "the",
            "The",
            "thee",
            "a",
            "an",
            "and",
            "x",
            "y",
            "exactly16bytes!!",
            "exactly16bytes!?",
            "a-very-long-stop-word-indeed",
            "a-very-long-stop-word-indeeD",
            "ünïcödé",
            "ünïcöde",
            "yourselves",
            "yourselvesx",
            "mustn't",
            "romeo",
        ];
        for probe in probes {
            assert_eq!(set.contains(probe), words.contains(probe), "{probe:?}");
        }
        for word in &words {
            assert!(set.contains(word), "{word:?}");
        }
        // Inside a longer text, as `apply` reads them: the bytes after each word are not zero.
        let mut text = Vec::new();
        let mut spans = Vec::new();
        for probe in probes
            .iter()
            .chain(words.iter().map(|w| &**w).collect::<Vec<_>>().iter())
        {
            spans.push((*probe, text.len()));
            text.extend_from_slice(probe.as_bytes());
            text.extend_from_slice(b"zzzzzzzzzzzzzzzz");
        }
        for (probe, start) in spans {
            assert_eq!(
                set.contains_in(&text, start, probe.len()),
                words.contains(probe),
                "{probe:?} in a text"
            );
        }
        // A list too long for the inline table still answers exactly.
        let many: WordSet = (0..MAX_INLINE_WORDS + 1)
            .map(|i| format!("w{i}").into_boxed_str())
            .collect();
        let set = StopSet::new(&many);
        assert!(set.contains("w0") && set.contains("w65536") && !set.contains("w65537"));
        assert!(!set.contains(""));
        // A long list that still fits inline packs with runs longer than the unrolled probes.
        let large: WordSet = (0..20_000)
            .map(|i| format!("w{i}").into_boxed_str())
            .collect();
        let set = StopSet::with_multiplier(&large, MULTIPLIERS[0]);
        assert!(set.inline && set.max_probe > 2, "{}", set.max_probe);
        for i in 0..20_000 {
            assert!(set.contains(&format!("w{i}")));
        }
        assert!(!set.contains("w20000") && !set.contains("w"));
    }
    use crate::data::{text_batch, text_schema};
    use crate::transforms::compliance::{run, texts};

    fn build(yaml: &str, dir: &std::path::Path) -> Result<Stage, String> {
        let config: StopwordsConfig = serde_saphyr::from_str(yaml).unwrap();
        config.build(&BuildContext {
            input: &text_schema("word"),
            base_dir: dir,
        })
    }

    fn keep(yaml: &str, words: &[&str]) -> Vec<String> {
        let stage = build(yaml, std::path::Path::new(".")).unwrap();
        texts(&run(&stage, text_batch("word", words)), "word")
    }

    #[test]
    fn english_nltk_list_is_built_in() {
        assert_eq!(
            keep("{}", &["the", "romeo", "thou", "and", "i", "shall"]),
            ["romeo", "thou", "shall"]
        );
        assert_eq!(keep("language: en", &["the", "x"]), ["x"]);
    }

    #[test]
    fn words_and_files_add_or_replace() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("extra.txt"), "# mine\nthou\n\n thy \n").unwrap();
        let stage = build("{file: extra.txt, words: [art]}", dir.path()).unwrap();
        let out = run(
            &stage,
            text_batch("word", ["the", "thou", "thy", "art", "romeo"]),
        );
        assert_eq!(texts(&out, "word"), ["romeo"]);
        assert_eq!(
            keep("{mode: replace, words: [the]}", &["the", "and"]),
            ["and"]
        );
    }

    #[test]
    fn bad_configs_are_explained() {
        let here = std::path::Path::new(".");
        assert!(build("language: englsh", here)
            .err()
            .unwrap()
            .contains("did you mean `english`?"));
        assert!(build("mode: replace", here)
            .err()
            .unwrap()
            .contains("needs `words` or `file`"));
        let endless = build("file: /dev/zero", here).err().unwrap();
        assert!(endless.contains("longer than 64 MiB"), "{endless}");
        assert!(build("file: /no/such/file", here)
            .err()
            .unwrap()
            .contains("cannot read stop-word file"));
    }
}
