//! The fused word count: `tokenize → [stopwords] → group_count` on a text source runs as one
//! loop from input bytes into a per-worker hash table, with no batch, string or row in between.
//! The stop-word filter runs once per distinct word after counting (a membership filter gives
//! the same result either way, and the table is far smaller than the input). Counting raw
//! tokens and normalising afterwards was tried: it is no faster on the play and multiplies the
//! table size on large vocabularies (every case and punctuation variant is a key). Everything else uses the generic path;
//! `runner run --no-fusion` forces the generic path, and the tests compare the two.

use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::SchemaRef;

use super::BuiltStage;
pub use crate::counts::{WordCounts, WordHasher};
use crate::transforms::group_count::GroupCount;
use crate::transforms::stopwords::Stopwords;
use crate::transforms::tokenize::{Tokenize, Tokenizer};
use crate::transforms::StageKind;

/// Which stages the fused loop replaces.
#[derive(Debug, Clone)]
pub struct Fusion {
    pub tokenize: usize,
    pub stopwords: Option<usize>,
    pub group_count: usize,
    /// Whether the counts must come out in group_count's order (no sort follows to order them).
    pub order_rows: bool,
}

/// Recognises `tokenize → [stopwords] → group_count by the word` at the start of `stages`,
/// reading the source's only column.
pub fn detect(stages: &[BuiltStage], source: &SchemaRef) -> Option<Fusion> {
    if source.fields().len() != 1 {
        return None;
    }
    let map = |i: usize| match stages.get(i).map(|s| &s.stage.kind) {
        Some(StageKind::Map(m)) => Some(m.as_any()),
        _ => None,
    };
    let tokenize = map(0)?.downcast_ref::<Tokenize>()?;
    if tokenize.input_column() != 0 {
        return None;
    }
    let (stopwords, next) = match map(1).and_then(|m| m.downcast_ref::<Stopwords>()) {
        Some(s) if s.column() == 0 => (Some(1), 2),
        Some(_) => return None,
        None => (None, 1),
    };
    let StageKind::Aggregate(aggregation) = &stages.get(next)?.stage.kind else {
        return None;
    };
    let group_count = aggregation.as_any().downcast_ref::<GroupCount>()?;
    if group_count.keys() != [0] {
        return None;
    }
    // Row-wise stages keep order; the first stage that cares about order decides.
    let order_rows = !matches!(
        stages[next + 1..].iter().find(|s| !matches!(s.stage.kind, StageKind::Map(_))),
        Some(s) if s.type_name == "sort"
    );
    Some(Fusion {
        tokenize: 0,
        stopwords,
        group_count: next,
        order_rows,
    })
}

/// The parts of the pipeline the fused loop needs, borrowed from the built stages.
pub struct WordCount<'a> {
    pub tokenizer: &'a Tokenizer,
    pub stopwords: Option<&'a Stopwords>,
    pub output: SchemaRef,
    pub order_rows: bool,
}

impl<'a> WordCount<'a> {
    pub fn new(fusion: &Fusion, stages: &'a [BuiltStage]) -> Option<Self> {
        let as_map = |i: usize| match &stages[i].stage.kind {
            StageKind::Map(m) => Some(m.as_any()),
            _ => None,
        };
        let tokenize = as_map(fusion.tokenize)?.downcast_ref::<Tokenize>()?;
        let stopwords = match fusion.stopwords {
            Some(i) => Some(as_map(i)?.downcast_ref::<Stopwords>()?),
            None => None,
        };
        Some(WordCount {
            tokenizer: tokenize.tokenizer(),
            stopwords,
            output: stages[fusion.group_count].stage.output.clone(),
            order_rows: fusion.order_rows,
        })
    }

    /// The counts as the group_count stage would emit them (stop words removed).
    pub fn result(&self, counts: WordCounts) -> RecordBatch {
        let mut rows: Vec<(String, u64)> = counts
            .entries()
            // Words are valid UTF-8: cut from valid text at ASCII bytes or whole characters.
            .map(|(word, count)| {
                (
                    String::from_utf8(word)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                    count,
                )
            })
            .filter(|(word, _)| self.stopwords.is_none_or(|stop| !stop.contains(word)))
            .collect();
        if self.order_rows {
            // As group_count orders them: most frequent first, ties by word.
            rows.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        }
        let words = StringArray::from_iter_values(rows.iter().map(|(w, _)| w));
        let counts = Int64Array::from_iter_values(rows.iter().map(|(_, c)| *c as i64));
        RecordBatch::try_new(self.output.clone(), vec![Arc::new(words), Arc::new(counts)])
            .expect("word and count columns match group_count's output")
    }
}

/// Counts every word of `text`, normalised by `tokenizer`, into `counts`.
#[inline]
pub fn count_text(
    counts: &mut WordCounts,
    tokenizer: &Tokenizer,
    text: &str,
    scratch: &mut Vec<u8>,
) {
    tokenizer.words(text, scratch, |word| counts.add(word, 1));
}
