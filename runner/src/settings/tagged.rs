//! YAML blocks selected by a `type:` key (`- type: tokenize`).
//!
//! serde's `#[serde(tag = "type")]` buffers the whole block before choosing the variant, which
//! throws away the YAML position of every error inside it and turns `path: 12` into a number
//! that no longer deserializes as a string. Instead we read `type` first and hand the rest of
//! the same YAML map straight to the chosen config struct, so the YAML library keeps pointing at
//! the exact line and column. When `type` is not the first key we fall back to buffering.
//!
//! A block may also be written as its type's key (`- aggregate: {by: …, aggs: …}`, its
//! options under it), as a type's key with the value of its main option (`- select: [a, b]`
//! is `{type: select, columns: [a, b]}`), or as the type's bare name (`- lowercase`), as the
//! issue's interface and Redpanda Connect write steps. The value is handed to the config
//! straight from the YAML map too, so its errors keep their place.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, MapAccess, Visitor};

/// Implemented (by `registry::component_enum!`) for each enum of component configs.
pub trait TaggedConfig: Sized {
    /// "source", "transform" or "sink", for messages.
    const KIND: &'static str;
    /// Every valid `type:` name.
    const TAGS: &'static [&'static str];
    /// The types whose key takes the value of one option (`select` → `columns`): `- select:
    /// [a, b]`. The others' key takes their map of options.
    const VALUE_OPTIONS: &'static [(&'static str, &'static str)];

    /// Whether some component of this kind has an option of this name (`tokenize`'s
    /// `lowercase`): a block whose first key is such a name is read whole before it is known
    /// to be `type:`-tagged or written as a type's key.
    fn is_option_name(name: &str) -> bool;

    /// Deserializes the config for `tag` from the rest of the map (after the `type` key).
    fn from_tag<'de, A: MapAccess<'de>>(
        tag: &str,
        rest: MapAccessDeserializer<A>,
    ) -> Result<Self, A::Error>;

    /// Same, from a buffered map (the fallback path).
    fn from_tag_buffered(tag: &str, rest: serde_json::Value) -> Result<Self, serde_json::Error>;
}

/// Reads a `type:`-tagged map as `T` (`deserialize_with`), keeping YAML error locations; an unknown
/// `type` names the valid ones.
pub fn deserialize<'de, T: TaggedConfig, D: de::Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    // `any`, not `map`: a block may be a type's bare name (`- lowercase`).
    d.deserialize_any(TaggedVisitor::<T>(PhantomData))
}

struct TaggedVisitor<T>(PhantomData<T>);

fn unknown_type<E: de::Error>(kind: &str, tag: &str, tags: &'static [&'static str]) -> E {
    // `type: limit` with `n: 2` indented deeper on the next line is one text, `limit n: 2`.
    let indented = match tag.split_once(char::is_whitespace) {
        Some((first, _)) if tags.contains(&first) => {
            format!("; is a key on the line after `type: {first}` indented further than `type`?")
        }
        _ => String::new(),
    };
    E::custom(format!(
        "unknown {kind} type `{tag}`{} (valid types: {}; see `runner list`){indented}",
        crate::settings::suggestion(tag, tags.iter().copied()),
        tags.join(", ")
    ))
}

impl<'de, T: TaggedConfig> Visitor<'de> for TaggedVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} block: a map with a `type` key", T::KIND)
    }

    /// `- lowercase`: a type without options.
    fn visit_str<E: de::Error>(self, tag: &str) -> Result<T, E> {
        if !T::TAGS.contains(&tag) {
            let close = crate::settings::suggestion(tag, T::TAGS.iter().copied());
            if !close.is_empty() {
                return Err(unknown_type(T::KIND, tag, T::TAGS));
            }
            // `source: in.txt`: most likely a block's options left out.
            return Err(E::custom(format!(
                "expected a map here: `key: value` lines indented below, or `{{key: value, ...}}` (a {kind} such as `{{type: {first}, ...}}`; `{tag}` is no {kind} type)",
                kind = T::KIND,
                first = T::TAGS[0],
                tag = crate::error::escape_controls(tag)
            )));
        }
        T::from_tag(tag, MapAccessDeserializer::new(no_options::<E>()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Err(de::Error::custom(format!(
                "missing `type` in this {}; valid types: {}",
                T::KIND,
                T::TAGS.join(", ")
            )));
        };
        if first == "type" {
            let tag: String = map.next_value()?;
            if !T::TAGS.contains(&tag.as_str()) {
                return Err(unknown_type(T::KIND, &tag, T::TAGS));
            }
            return T::from_tag(&tag, MapAccessDeserializer::new(map));
        }
        if T::TAGS.contains(&first.as_str()) && !T::is_option_name(&first) {
            return shorthand::<T, A>(&first, map);
        }
        // Fallback: buffer the block (errors inside it then point at the block, not the key).
        let mut buffered = serde_json::Map::new();
        let value: serde_json::Value = map.next_value()?;
        buffered.insert(first, value);
        while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
            buffered.insert(key, value);
        }
        let tag = match buffered.remove("type") {
            Some(serde_json::Value::String(tag)) => tag,
            Some(other) => {
                return Err(de::Error::custom(format!(
                    "`type` of a {} must be a string, found {other}",
                    T::KIND
                )))
            }
            // `- lowercase: word`, read whole (`lowercase` is also an option's name).
            None if buffered.len() == 1 => {
                let Some((tag, value)) = buffered.into_iter().next() else {
                    unreachable!("one key")
                };
                if !T::TAGS.contains(&tag.as_str()) {
                    return Err(de::Error::custom(format!(
                        "missing `type` in this {}; valid types: {}",
                        T::KIND,
                        T::TAGS.join(", ")
                    )));
                }
                return shorthand_buffered::<T>(&tag, value)
                    .map_err(|e| de::Error::custom(format!("in {} `{tag}`: {e}", T::KIND)));
            }
            None => {
                // `{as: n, group_count: word}`: the type's key among other keys.
                if let Some(tag) = buffered.keys().find(|key| T::TAGS.contains(&key.as_str())) {
                    return Err(de::Error::custom(format!(
                        "this {kind} has no `type`, and `{tag}:` is one key among others: write `type: {tag}` with the options beside it, or `{tag}:` alone with the options under it",
                        kind = T::KIND
                    )));
                }
                return Err(de::Error::custom(format!(
                    "missing `type` in this {}; valid types: {}",
                    T::KIND,
                    T::TAGS.join(", ")
                )));
            }
        };
        if !T::TAGS.contains(&tag.as_str()) {
            return Err(unknown_type(T::KIND, &tag, T::TAGS));
        }
        T::from_tag_buffered(&tag, serde_json::Value::Object(buffered))
            .map_err(|e| de::Error::custom(format!("in {} `{tag}`: {e}", T::KIND)))
    }
}

/// An empty map of options, for a type written without any (`- lowercase`, `- tokenize:`).
fn no_options<'de, E: de::Error>(
) -> serde::de::value::MapDeserializer<'de, std::iter::Empty<(&'de str, &'de str)>, E> {
    serde::de::value::MapDeserializer::new(std::iter::empty())
}

/// A block written as its type's key (`- select: [a, b]`, `- aggregate: {…}`): the value read
/// straight from the YAML map as the type's main option or as its map of options; a key
/// beside the type's is an error, since the type's key holds the whole block.
fn shorthand<'de, T: TaggedConfig, A: MapAccess<'de>>(
    tag: &str,
    mut map: A,
) -> Result<T, A::Error> {
    let option = T::VALUE_OPTIONS
        .iter()
        .find(|(name, _)| *name == tag)
        .map(|&(_, option)| option);
    let config = match option {
        Some(option) => T::from_tag(
            tag,
            MapAccessDeserializer::new(OneOption {
                option: Some(option),
                block: &mut map,
            }),
        )?,
        None => map.next_value_seed(Options::<T> {
            tag,
            kind: PhantomData,
        })?,
    };
    if let Some(extra) = map.next_key::<String>()? {
        return Err(de::Error::custom(match option {
            Some(option) => format!(
                "`{tag}:` names this {kind} and holds its `{option}`, so `{extra}` cannot stand beside it: write `type: {tag}` with `{option}:` and `{extra}:` beside it",
                kind = T::KIND
            ),
            None => format!(
                "`{tag}:` names this {kind} and holds its options, so `{extra}:` goes under it, or write `type: {tag}` with the options beside it",
                kind = T::KIND
            ),
        }));
    }
    Ok(config)
}

/// [`shorthand`] for a block read whole.
fn shorthand_buffered<T: TaggedConfig>(
    tag: &str,
    value: serde_json::Value,
) -> Result<T, serde_json::Error> {
    let option = T::VALUE_OPTIONS
        .iter()
        .find(|(name, _)| *name == tag)
        .map(|&(_, option)| option);
    let options = match (option, value) {
        (Some(option), value) => serde_json::Map::from_iter([(option.to_owned(), value)]),
        (None, serde_json::Value::Object(options)) => options,
        (None, serde_json::Value::Null) => serde_json::Map::new(),
        (None, _) => {
            return Err(de::Error::custom(format!(
                "expected a map of the options of {} `{tag}`",
                T::KIND
            )))
        }
    };
    T::from_tag_buffered(tag, serde_json::Value::Object(options))
}

/// The block `{type: tag, option: VALUE}` as a map whose one value is read from the YAML
/// map the block was written in (`- select: [a, b]`), where the value's places are.
struct OneOption<'a, A> {
    option: Option<&'static str>,
    block: &'a mut A,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for OneOption<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.option
            .take()
            .map(|option| seed.deserialize(de::value::StrDeserializer::<A::Error>::new(option)))
            .transpose()
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, A::Error> {
        self.block.next_value_seed(seed)
    }
}

/// The map of options under a type's key (`- aggregate: {by: …}`), or nothing (`- tokenize:`).
struct Options<'t, T> {
    tag: &'t str,
    kind: PhantomData<T>,
}

impl<'de, T: TaggedConfig> de::DeserializeSeed<'de> for Options<'_, T> {
    type Value = T;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: TaggedConfig> Visitor<'de> for Options<'_, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a map of the options of {} `{}`", T::KIND, self.tag)
    }

    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<T, M::Error> {
        T::from_tag(self.tag, MapAccessDeserializer::new(map))
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        T::from_tag(self.tag, MapAccessDeserializer::new(no_options::<E>()))
    }

    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        self.visit_unit()
    }
}

/// Rewrites blocks written as their type's key (`{select: [a]}`, `lowercase`) in an untyped
/// document as `type:` blocks (`{type: select, columns: [a]}`), so that `--set
/// transforms.0.columns=…` finds the key, and a checkpoint made under one form goes on under
/// the other.
pub fn expand_shorthand<T: TaggedConfig>(block: &mut serde_json::Value) {
    use serde_json::Value;
    let expanded = match block {
        Value::String(tag) if T::TAGS.contains(&tag.as_str()) => {
            let mut map = serde_json::Map::new();
            map.insert("type".into(), Value::String(tag.clone()));
            map
        }
        Value::Object(map) if map.len() == 1 => {
            let Some((tag, value)) = map.iter().next() else {
                return;
            };
            if !T::TAGS.contains(&tag.as_str()) {
                return;
            }
            let option = T::VALUE_OPTIONS
                .iter()
                .find(|(name, _)| name == tag)
                .map(|&(_, option)| option);
            let mut expanded = serde_json::Map::new();
            expanded.insert("type".into(), Value::String(tag.clone()));
            match (option, value) {
                (Some(option), value) => {
                    expanded.insert(option.into(), value.clone());
                }
                (None, Value::Object(options)) => {
                    expanded.extend(options.iter().map(|(k, v)| (k.clone(), v.clone())))
                }
                (None, Value::Null) => {}
                // Not a map of options: left for the typed parse to refuse.
                (None, _) => return,
            }
            expanded
        }
        _ => return,
    };
    *block = Value::Object(expanded);
}
