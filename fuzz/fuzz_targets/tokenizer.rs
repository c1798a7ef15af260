//! The tokenizer: the fused word-count kernel (with BMI2 where the CPU has it, and the portable
//! compaction) must count exactly the words the tokenizer's reference path (`Tokenizer::words`,
//! what the generic `tokenize` transform uses) gives, and that path must agree with Python's
//! `line.lower().split()` + `strip_punc`, written the obvious way. First byte: the options.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use runner::exec::fused::{count_text_using, CountKernel, WordCounts, WordHasher};
use runner::transforms::tokenize::{is_python_whitespace, StripPunctuation, TokenizeConfig};

type Counts = Vec<(Vec<u8>, u64)>;

fn python(text: &str, config: &TokenizeConfig) -> Counts {
    let lowered = if config.lowercase {
        text.to_lowercase()
    } else {
        text.to_owned()
    };
    let mut counts = BTreeMap::<Vec<u8>, u64>::new();
    for token in lowered
        .split(is_python_whitespace)
        .filter(|t| !t.is_empty())
    {
        let word: String = match config.strip_punctuation {
            StripPunctuation::All => token
                .chars()
                .filter(|c| !c.is_ascii_punctuation())
                .collect(),
            StripPunctuation::Edges => token
                .trim_matches(|c: char| c.is_ascii_punctuation())
                .into(),
            StripPunctuation::None => token.into(),
        };
        if !(config.drop_empty && word.is_empty()) {
            *counts.entry(word.into_bytes()).or_default() += 1;
        }
    }
    counts.into_iter().collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let config = TokenizeConfig {
        column: "line".into(),
        output: "word".into(),
        lowercase: options & 1 != 0,
        drop_empty: options & 2 != 0,
        strip_punctuation: match (options >> 2) % 3 {
            0 => StripPunctuation::All,
            1 => StripPunctuation::Edges,
            _ => StripPunctuation::None,
        },
    };
    let tokenizer = config.tokenizer();

    let mut reference = BTreeMap::<Vec<u8>, u64>::new();
    tokenizer.words(&text, &mut Vec::new(), |word| {
        *reference.entry(word.to_vec()).or_default() += 1
    });
    let reference: Counts = reference.into_iter().collect();

    for kernel in CountKernel::available() {
        let name = format!("{kernel:?} kernel");
        let mut counts = WordCounts::new(WordHasher::default());
        count_text_using(kernel, &mut counts, &tokenizer, &text, &mut Vec::new());
        let mut fused: Counts = counts.entries().collect();
        fused.sort();
        assert_eq!(
            fused, reference,
            "{name} disagrees with Tokenizer::words on {text:?} ({config:?})"
        );
    }
    assert_eq!(
        python(&text, &config),
        reference,
        "Tokenizer::words disagrees with Python's semantics on {text:?} ({config:?})"
    );
});
