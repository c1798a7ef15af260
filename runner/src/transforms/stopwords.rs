//! `stopwords`: drop rows whose word is a stop word. NLTK's lists are built in (stop-words
//! crate); `words:` and `file:` add to them or replace them.

use std::collections::HashSet;

/// The stop list: looked up once per row (or per distinct word), so with a fast hasher.
type WordSet = HashSet<Box<str>, foldhash::fast::RandomState>;
use std::path::PathBuf;

use arrow_array::{BooleanArray, RecordBatch};
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
        Ok(Stage {
            output: ctx.input.clone(),
            kind: StageKind::Map(Box::new(Stopwords { index, words })),
        })
    }
}

/// The built `stopwords` transform: drops rows whose word is in its stop list.
pub struct Stopwords {
    index: usize,
    words: WordSet,
}

impl Stopwords {
    /// The column it tests.
    pub fn column(&self) -> usize {
        self.index
    }

    /// Whether `word` is a stop word (matched exactly, case included).
    pub fn contains(&self, word: &str) -> bool {
        self.words.contains(word)
    }
}

impl MapTransform for Stopwords {
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let keep: BooleanArray = text(batch, self.index)
            .iter()
            .map(|w| Some(w.is_none_or(|w| !self.contains(w))))
            .collect();
        Ok(arrow_select::filter::filter_record_batch(batch, &keep)
            .expect("mask has one entry per row"))
    }

    fn per_value(&self) -> Option<PerValue> {
        Some(PerValue::Keeps { column: self.index })
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
