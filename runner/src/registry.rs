//! The one place that maps YAML `type:` names to components. `runner list` and the reference
//! pages (`runner docs`) are generated from these tables, and the YAML loader dispatches
//! through them.

use crate::sinks::{self, BuildSink};
use crate::sources::{self, BuildSource};
use crate::transforms::{self, BuildTransform};

/// One row of `runner list`.
#[derive(Debug, Clone, Copy)]
pub struct ComponentInfo {
    /// `source`, `transform` or `sink`.
    pub kind: &'static str,
    /// The YAML `type:` name (`file`, `tokenize`, `csv`, ...).
    pub name: &'static str,
    /// What the component does, in one line without a final period: `runner list` shows it,
    /// and the reference page opens with it.
    pub summary: &'static str,
    /// The component as it is written in a pipeline file (YAML), for the reference pages;
    /// a test checks that it loads.
    pub example: &'static str,
    /// The config type's path under `runner::` (`sources::file::FileSourceConfig`): where
    /// its keys are documented.
    pub config_type: &'static str,
    /// The option that the type's key takes as its value when the block is written so
    /// (`- select: [a, b]` for `columns`); `None`: the key takes the map of options
    /// (`- aggregate: {by: …}`).
    pub value_option: Option<&'static str>,
}

/// `Some(literal)`, or `None` when the macro was given none.
macro_rules! optional_literal {
    () => {
        None
    };
    ($value:literal) => {
        Some($value)
    };
}

/// Declares an enum of component configs selected by `type:`, its deserializer (through
/// `config::tagged`, which keeps YAML error locations) and its table of names.
macro_rules! component_enum {
    ($enum:ident, $kind:literal, $builder:path, [
        $( $tag:literal => $variant:ident($config:ty) $([$value_option:literal])? : $summary:literal ; $example:literal ),+ $(,)?
    ]) => {
        #[doc = concat!("A ", $kind, "'s settings, chosen by its YAML `type:`.")]
        #[derive(Debug, Clone)]
        pub enum $enum {
            $(
                #[doc = concat!("`type: ", $tag, "`: ", $summary, ".")]
                $variant($config)
            ),+
        }

        impl $enum {
            /// Every component of this kind, in the order `runner list` shows them.
            pub const ALL: &'static [ComponentInfo] = &[
                $( ComponentInfo {
                    kind: $kind,
                    name: $tag,
                    summary: $summary,
                    example: $example,
                    config_type: stringify!($config),
                    value_option: optional_literal!($($value_option)?),
                } ),+
            ];

            /// The YAML `type:` name of this config.
            pub fn type_name(&self) -> &'static str {
                match self { $( Self::$variant(_) => $tag ),+ }
            }

            /// The config as its builder.
            pub fn builder(&self) -> &dyn $builder {
                match self { $( Self::$variant(c) => c ),+ }
            }
        }

        impl crate::settings::tagged::TaggedConfig for $enum {
            const KIND: &'static str = $kind;
            const TAGS: &'static [&'static str] = &[ $( $tag ),+ ];
            const VALUE_OPTIONS: &'static [(&'static str, &'static str)] =
                &[ $( $( ($tag, $value_option), )? )+ ];

            fn is_option_name(name: &str) -> bool {
                static NAMES: std::sync::OnceLock<std::collections::HashSet<String>> =
                    std::sync::OnceLock::new();
                NAMES
                    .get_or_init(|| {
                        let mut generator = schemars::SchemaGenerator::default();
                        let mut names = std::collections::HashSet::new();
                        $( {
                            let schema = <$config as schemars::JsonSchema>::json_schema(&mut generator);
                            if let Some(properties) = schema.to_value()["properties"].as_object() {
                                names.extend(properties.keys().cloned());
                            }
                        } )+
                        names
                    })
                    .contains(name)
            }

            fn from_tag<'de, A: serde::de::MapAccess<'de>>(
                tag: &str,
                rest: serde::de::value::MapAccessDeserializer<A>,
            ) -> Result<Self, A::Error> {
                match tag {
                    $( $tag => <$config as serde::Deserialize>::deserialize(rest).map(Self::$variant), )+
                    _ => Err(serde::de::Error::unknown_variant(tag, Self::TAGS)),
                }
            }

            fn from_tag_buffered(tag: &str, rest: serde_json::Value) -> Result<Self, serde_json::Error> {
                match tag {
                    $( $tag => serde_json::from_value::<$config>(rest).map(Self::$variant), )+
                    _ => Err(serde::de::Error::unknown_variant(tag, Self::TAGS)),
                }
            }
        }

        /// A `oneOf` of the components' configs, each with its `type` as a constant, so editors
        /// complete the keys of the chosen type, and each as its type's key (`select: [a]`).
        impl schemars::JsonSchema for $enum {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($enum).into()
            }

            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let mut variants = Vec::new();
                $( {
                    let schema = <$config as schemars::JsonSchema>::json_schema(generator);
                    variants.extend(crate::schema::variants(
                        schema,
                        $tag,
                        $summary,
                        optional_literal!($($value_option)?),
                    ));
                } )+
                schemars::json_schema!({
                    "description": concat!("A ", $kind, ", chosen by its `type` (or written as its type's key)."),
                    "oneOf": variants,
                })
            }
        }

        impl<'de> serde::Deserialize<'de> for $enum {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                crate::settings::tagged::deserialize(d)
            }
        }
    };
}

component_enum!(SourceConfig, "source", BuildSource, [
    "file" => File(sources::file::FileSourceConfig)
        : "Lines of text files (column `line`), or CSV, JSON-lines and Parquet records; a file, a directory, a glob or standard input"
        ; "type: file\npath: ../data/RomeoAndJuliet.txt\nfetch:\n  url: https://raw.githubusercontent.com/pdeitel/PythonDataScienceFullThrottle/master/ch16/RomeoAndJuliet.txt\n  sha256: bf8e99f2edb49e1692038870eae947dfbd9547c2dc91fcbb7d1c71fe96d91589\n",
    "socket" => Socket(sources::socket::SocketSourceConfig)
        : "Lines from TCP: connect to a server (like Spark's socket source) or listen for clients (stream mode)"
        ; "type: socket\nhost: localhost\nport: 9876\nreconnect: true\n",
    "mastodon" => Mastodon(sources::mastodon::MastodonSourceConfig)
        : "Statuses from a Mastodon live stream over HTTPS (SSE), one row per status with its tags (stream mode)"
        ; "type: mastodon\ninstance: https://mastodon.social\nstream: public\ntoken_env: MASTODON_ACCESS_TOKEN\nlimit: 1000\nonly_with_tags: true\n",
    "replay" => Replay(sources::replay::ReplaySourceConfig)
        : "Replay a recorded Mastodon stream (a tape from `record_to`) at any speed, offline (stream mode)"
        ; "type: replay\npath: tapes/sample.jsonl\nspeed: max\n",
]);

component_enum!(TransformConfig, "transform", BuildTransform, [
    "tokenize" => Tokenize(transforms::tokenize::TokenizeConfig)
        : "Split a text column into one row per word (Python str.split), lowercased, punctuation stripped"
        ; "type: tokenize\ncolumn: line\nas: word\nstrip_punctuation: all\n",
    "stopwords" => Stopwords(transforms::stopwords::StopwordsConfig)
        : "Drop rows whose word is a stop word (NLTK English built in, or your own list)"
        ; "type: stopwords\nlanguage: english\nwords: [thee, thy]\n",
    "explode" => Explode(transforms::explode::ExplodeConfig) ["column"]
        : "One row per piece of a string column split on a separator, or per element of a list column"
        ; "type: explode\ncolumn: line\nseparator: \" \"\nas: hashtag\n",
    "lowercase" => Lowercase(transforms::lowercase::LowercaseConfig) ["column"]
        : "Lowercase a text column (Unicode-aware)"
        ; "type: lowercase\ncolumn: hashtag\n",
    "group_count" => GroupCount(transforms::group_count::GroupCountConfig) ["by"]
        : "Count rows per distinct value of one or more columns (column `count`)"
        ; "type: group_count\nby: hashtag\nwindow: {column: created_at, size: 10m, slide: 5m}\nwatermark: 2m\n",
    "filter" => Filter(transforms::filter::FilterConfig) ["where"]
        : "Keep rows matching an expression such as `count >= 60 and word != \"thou\"`"
        ; "type: filter\nwhere: count >= 60 and word not in [\"thou\", \"thy\"]\n",
    "aggregate" => Aggregate(transforms::aggregate::AggregateConfig)
        : "Group by key expressions and compute count, sum, min, max, avg, count_distinct, first, last, collect_list"
        ; "type: aggregate\nby: [\"date_trunc('hour', created_at) as hour\", language]\naggs:\n  statuses: count()\n  accounts: count_distinct(acct)\n",
    "parse_json" => ParseJson(transforms::parse_json::ParseJsonConfig)
        : "Parse a text column of JSON objects (a socket's lines) into typed columns"
        ; "type: parse_json\ncolumn: line\ncolumns: {created_at: timestamp, tag: text, account.acct: text?}\non_error: skip\n",
    "select" => Select(transforms::select::SelectConfig) ["columns"]
        : "Keep, compute and reorder columns: `[word, \"length(word) as len\"]`"
        ; "type: select\ncolumns: [word, \"length(word) as len\"]\n",
    "with_column" => WithColumn(transforms::with_column::WithColumnConfig)
        : "Add (or replace) a column computed by an expression"
        ; "type: with_column\nname: len\nexpr: length(word)\n",
    "rename" => Rename(transforms::rename::RenameConfig) ["columns"]
        : "Rename columns: `{old: new}`"
        ; "type: rename\ncolumns: {count: occurrences}\n",
    "drop" => Drop(transforms::drop::DropConfig) ["columns"]
        : "Remove columns"
        ; "type: drop\ncolumns: [line]\n",
    "sort" => Sort(transforms::sort::SortConfig) ["by"]
        : "Order rows by columns, ascending or descending; ties broken by the other columns"
        ; "type: sort\nby: [count desc, word]\n",
    "limit" => Limit(transforms::limit::LimitConfig) ["n"]
        : "Keep the first N rows"
        ; "type: limit\nn: 10\n",
    "plugin" => Plugin(transforms::plugin::PluginConfig)
        : "A custom transform from a shared library built with the runner-plugin SDK"
        ; "type: plugin\npath: ../target/release/libstemmer.so\nconfig: {column: word, language: english}\ntimeout: 60s\n",
]);

component_enum!(SinkConfig, "sink", BuildSink, [
    "stdout" => Stdout(sinks::stdout::StdoutSinkConfig)
        : "Print the result: aligned (the chapter's `word: count`), table, bars, tsv or jsonl"
        ; "type: stdout\nformat: aligned\nlimit: 20\n",
    "csv" => Csv(sinks::csv::CsvSinkConfig)
        : "Write the result to a CSV file, replaced atomically"
        ; "type: csv\npath: ../output/romeo_counts.csv\n",
    "file" => File(sinks::file::FileSinkConfig)
        : "Write the result as JSON lines, Parquet or CSV, replaced atomically (a stream's append mode: lines added, or a Parquet part file per epoch)"
        ; "type: file\npath: ../output/counts.parquet\nformat: parquet\n",
    "chart" => Chart(sinks::chart::ChartSinkConfig)
        : "Draw the top rows as a PNG bar chart (embedded font, no system fonts needed)"
        ; "type: chart\npath: ../output/hashtags_top20.png\nx: hashtag\ny: count\ntop: 20\ntitle: \"Top hashtags — epoch {epoch}\"\n",
    "sqlite" => Sqlite(sinks::sqlite::SqliteSinkConfig)
        : "Write the result into an SQLite table (bundled SQLite): replace, upsert or append, each epoch once"
        ; "type: sqlite\npath: ../output/hashtags.db\ntable: hashtag_counts\nkey: [hashtag]\nmode: upsert\n",
    "postgres" => Postgres(sinks::postgres::PostgresSinkConfig)
        : "Write the result into a PostgreSQL table (COPY, TLS by rustls): replace, upsert or append, each epoch once"
        ; "type: postgres\nurl_env: HASHTAGS_DB_URL\ntable: hashtag_counts\nkey: [hashtag]\nmode: upsert\n",
    "socket" => Socket(sinks::socket::SocketSinkConfig)
        : "Serve rows as lines to a TCP client (listens, waits for it), like the chapter's forwarder"
        ; "type: socket\nlisten: 127.0.0.1:9876\ncolumn: tags\nformat: joined\n",
]);

/// Every component, sources first, then transforms, then sinks.
pub fn all() -> impl Iterator<Item = &'static ComponentInfo> {
    SourceConfig::ALL
        .iter()
        .chain(TransformConfig::ALL)
        .chain(SinkConfig::ALL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_within_a_kind_and_documented() {
        for table in [SourceConfig::ALL, TransformConfig::ALL, SinkConfig::ALL] {
            let mut names: Vec<_> = table.iter().map(|c| c.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), table.len());
            assert!(table.iter().all(|c| !c.summary.is_empty()));
        }
        assert!(all().any(|c| c.kind == "transform" && c.name == "group_count"));
    }

    #[test]
    fn every_example_loads_as_its_own_component() {
        fn check<T: serde::de::DeserializeOwned>(info: &ComponentInfo, name: impl Fn(&T) -> &str) {
            let config: T = serde_saphyr::from_str(info.example)
                .unwrap_or_else(|e| panic!("the example of {} {}: {e}", info.kind, info.name));
            assert_eq!(name(&config), info.name);
        }
        for info in SourceConfig::ALL {
            check::<SourceConfig>(info, |c| c.type_name());
        }
        for info in TransformConfig::ALL {
            check::<TransformConfig>(info, |c| c.type_name());
        }
        for info in SinkConfig::ALL {
            check::<SinkConfig>(info, |c| c.type_name());
        }
    }
}
