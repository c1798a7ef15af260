//! YAML blocks selected by a `type:` key (`- type: tokenize`).
//!
//! serde's `#[serde(tag = "type")]` buffers the whole block before choosing the variant, which
//! throws away the YAML position of every error inside it and turns `path: 12` into a number
//! that no longer deserializes as a string. Instead we read `type` first and hand the rest of
//! the same YAML map straight to the chosen config struct, so the YAML library keeps pointing at
//! the exact line and column. When `type` is not the first key we fall back to buffering.

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
    d.deserialize_map(TaggedVisitor::<T>(PhantomData))
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
            None => {
                // `- aggregate: {by: …}`: the type written as a key, its options under it.
                let named = buffered.keys().find(|key| T::TAGS.contains(&key.as_str()));
                if let (Some(tag), 1) = (named, buffered.len()) {
                    return Err(de::Error::custom(format!(
                        "missing `type` in this {kind}: `{tag}:` is not an option; name the {kind} with `type: {tag}` and put its options beside it, as in `{{type: {tag}, ...}}`",
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
