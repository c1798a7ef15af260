//! `--set PATH=VALUE`: change or add any value of the pipeline before it is validated.

use serde_json::Value;

/// One `--set` argument, parsed.
#[derive(Debug, Clone)]
pub struct Override {
    /// The dotted path split at dots (`["transforms", "3", "where"]`); list indices stay as text.
    pub path: Vec<String>,
    /// The value read as YAML; an empty value is the empty string and a lone `-` is the string `-`.
    pub value: Value,
    /// The argument as given (`PATH=VALUE`), for messages.
    pub raw: String,
    /// A key removed beside the value set (`--input` removes the source's `fetch`: the file
    /// given is read, never downloaded into).
    pub removes: Option<String>,
    /// The option that made this override, and the source types it applies to (`--input`
    /// sets a `path`, which only some sources have).
    pub for_sources: Option<(&'static str, &'static [&'static str])>,
}

impl std::str::FromStr for Override {
    type Err = String;

    /// `transforms.3.where=count >= 100`: a dotted path, `=`, then a YAML scalar or flow value.
    fn from_str(raw: &str) -> Result<Self, String> {
        let (path, value) = raw
            .split_once('=')
            .ok_or_else(|| format!("`{raw}` is not PATH=VALUE (example: --set cores=2)"))?;
        let path: Vec<String> = path.trim().split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("`{raw}`: the path has an empty segment"));
        }
        let value = if value.trim().is_empty() {
            Value::String(String::new())
        } else if value.trim() == "-" {
            // YAML reads a lone `-` as a list of one null; here it is standard input's name.
            Value::String("-".into())
        } else {
            super::from_yaml::<Value>(value)
                .map_err(|e| format!("`{raw}`: the value is not valid YAML: {}", first_line(&e)))?
        };
        Ok(Override {
            path,
            value,
            raw: raw.to_owned(),
            removes: None,
            for_sources: None,
        })
    }
}

impl Override {
    /// `PATH=VALUE` with VALUE taken as text as it is (no YAML), for options such as `--input`.
    pub fn text(path: &[&str], value: &str) -> Override {
        Override {
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            value: Value::String(value.to_owned()),
            raw: format!("{}={value}", path.join(".")),
            removes: None,
            for_sources: None,
        }
    }

    /// `--input PATH`: the source's `path`, and no `fetch` (a missing file is an error, not a
    /// download into a mistyped path).
    pub fn input(value: &str) -> Override {
        Override {
            removes: Some("fetch".into()),
            for_sources: Some(("--input", &["file", "replay"])),
            ..Override::text(&["source", "path"], value)
        }
    }
}

fn first_line(e: &serde_saphyr::Error) -> String {
    let rendered = e.to_string();
    rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned()
}

/// Applies `ov` to `doc`, creating maps along the way; a number indexes a list, and the index
/// just past the end appends.
pub fn apply(doc: &mut Value, ov: &Override) -> Result<(), String> {
    if let Some((option, types)) = ov.for_sources {
        let source = doc
            .get("source")
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str);
        if let Some(other) = source.filter(|t| !types.contains(t)) {
            let types: Vec<String> = types.iter().map(|t| format!("`{t}`")).collect();
            return Err(format!(
                "{option} names the input file of a {} source; this pipeline's source is `{}`, which has none",
                types.join(" or "),
                crate::error::escape_controls(other)
            ));
        }
    }
    let mut node = doc;
    for (depth, segment) in ov.path.iter().enumerate() {
        let last = depth + 1 == ov.path.len();
        let here = ov.path[..depth].join(".");
        node = match node {
            Value::Array(items) => {
                let index: usize = segment.parse().map_err(|_| {
                    format!(
                        "--set {}: `{here}` is a list; use a number, not `{segment}`",
                        ov.raw
                    )
                })?;
                if index == items.len() {
                    items.push(Value::Object(Default::default()));
                }
                let len = items.len();
                items.get_mut(index).ok_or_else(|| {
                    format!(
                        "--set {}: `{here}` has {len} items (indices 0 to {}), there is no {index}",
                        ov.raw,
                        len.saturating_sub(1)
                    )
                })?
            }
            Value::Object(map) => {
                if let Some(removed) = ov.removes.as_ref().filter(|_| last) {
                    map.remove(removed);
                }
                // A key not there yet: a list when a number follows (`transforms.0=` on a
                // file without transforms appends the first), else a map.
                let next_is_index = ov
                    .path
                    .get(depth + 1)
                    .is_some_and(|next| next.parse::<usize>().is_ok());
                map.entry(segment.clone()).or_insert(if next_is_index {
                    Value::Array(Vec::new())
                } else {
                    Value::Object(Default::default())
                })
            }
            Value::Null => {
                // An empty key (`transforms:` with nothing after it): a list when this
                // segment is a number, else a map.
                if let Ok(index) = segment.parse::<usize>() {
                    if index != 0 {
                        return Err(format!(
                            "--set {}: `{here}` is empty, there is no {index}",
                            ov.raw
                        ));
                    }
                    *node = Value::Array(vec![Value::Object(Default::default())]);
                    match node {
                        Value::Array(items) => &mut items[0],
                        _ => unreachable!("just assigned a list"),
                    }
                } else {
                    *node = Value::Object(Default::default());
                    match node {
                        Value::Object(map) => map.entry(segment.clone()).or_insert(Value::Null),
                        _ => unreachable!("just assigned an object"),
                    }
                }
            }
            other => {
                return Err(format!(
                    "--set {}: `{here}` is a value ({other}), it has no `{segment}`",
                    ov.raw
                ))
            }
        };
        if last {
            *node = ov.value.clone();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(doc: &mut Value, raw: &str) -> Result<(), String> {
        apply(doc, &raw.parse()?)
    }

    #[test]
    fn input_is_refused_for_a_source_without_a_path() {
        let mut doc = json!({"source": {"type": "socket", "port": 9}});
        let error = apply(&mut doc, &Override::input("/tmp/b.txt")).unwrap_err();
        assert_eq!(
            error,
            "--input names the input file of a `file` or `replay` source; this pipeline's source is `socket`, which has none"
        );
        assert_eq!(doc, json!({"source": {"type": "socket", "port": 9}}));
    }

    #[test]
    fn input_sets_the_path_and_removes_fetch() {
        let mut doc = json!({"source": {"type": "file", "path": "data/a.txt", "fetch": {"url": "https://x"}}});
        apply(&mut doc, &Override::input("/tmp/b.txt")).unwrap();
        assert_eq!(
            doc,
            json!({"source": {"type": "file", "path": "/tmp/b.txt"}})
        );
    }

    #[test]
    fn an_index_into_a_list_not_there_yet_starts_it() {
        let mut doc = json!({"name": "t"});
        set(&mut doc, "transforms.0={type: limit, n: 3}").unwrap();
        assert_eq!(
            doc,
            json!({"name": "t", "transforms": [{"type": "limit", "n": 3}]})
        );
        let mut doc = json!({"name": "t"});
        let error = set(&mut doc, "transforms.1={type: limit, n: 3}").unwrap_err();
        assert!(error.contains("there is no 1"), "{error}");
        // `transforms:` written with nothing after it.
        let mut doc = json!({"name": "t", "transforms": null});
        set(&mut doc, "transforms.0={type: limit, n: 3}").unwrap();
        assert_eq!(
            doc,
            json!({"name": "t", "transforms": [{"type": "limit", "n": 3}]})
        );
    }

    #[test]
    fn values_are_read_as_yaml() {
        let o: Override = "cores=2".parse().unwrap();
        assert_eq!(o.value, json!(2));
        let o: Override = "transforms.3.where=count >= 100".parse().unwrap();
        assert_eq!(o.path, ["transforms", "3", "where"]);
        assert_eq!(o.value, json!("count >= 100"));
        let o: Override = "sort.by=[count desc, word]".parse().unwrap();
        assert_eq!(o.value, json!(["count desc", "word"]));
    }

    #[test]
    fn yaml_1_1_boolean_words_stay_texts_in_the_rewritten_file() {
        let o: Override = "transforms.0.columns.a=off".parse().unwrap();
        assert_eq!(o.value, json!("off"));
        let o: Override = "header=true".parse().unwrap();
        assert_eq!(o.value, json!(true));
        let text = "name: t\nsource: {type: file, path: x.csv}\ntransforms:\n  - {type: rename, columns: {a: off, b: y}}\n  - {type: select, columns: [n, yes]}\nsinks: [{type: csv, path: o.csv, header: no}]\n";
        let overrides = ["cores=1".parse().unwrap()];
        let loaded =
            crate::config::load_text(text, std::path::Path::new("t.yaml"), &overrides).unwrap();
        assert_eq!(
            loaded.document["transforms"],
            json!([{"type": "rename", "columns": {"a": "off", "b": "y"}},
                   {"type": "select", "columns": ["n", "yes"]}])
        );
        // A column named `n`, quoted where a field reads any scalar (`by`), stays one after
        // any `--set`: the rewritten file quotes it again, and `header: no` stays false.
        let text = "name: t\nsource: {type: file, path: x.csv, format: csv, columns: {\"n\": integer}}\ntransforms:\n  - {type: group_count, by: \"n\"}\nsinks: [{type: csv, path: o.csv, header: no}]\n";
        let loaded =
            crate::config::load_text(text, std::path::Path::new("t.yaml"), &overrides).unwrap();
        assert_eq!(loaded.document["transforms"][0]["by"], json!("n"));
        assert!(matches!(
            &loaded.config.sinks[0].value,
            crate::registry::SinkConfig::Csv(csv) if !csv.header
        ));
        // A block whose `type` is not its first key: `header: no` is read as false too.
        let text = "name: t\nsource: {type: file, path: x.txt}\nsinks:\n  - path: o.csv\n    type: csv\n    header: no\n";
        let loaded =
            crate::config::load_text(text, std::path::Path::new("t.yaml"), &overrides).unwrap();
        assert!(matches!(
            &loaded.config.sinks[0].value,
            crate::registry::SinkConfig::Csv(csv) if !csv.header
        ));
    }

    #[test]
    fn overrides_replace_index_and_append() {
        let mut doc = json!({"cores": 0, "transforms": [{"type": "a"}, {"type": "b"}]});
        set(&mut doc, "cores=4").unwrap();
        set(&mut doc, "transforms.1.n=5").unwrap();
        set(&mut doc, "transforms.2.type=limit").unwrap();
        set(&mut doc, "source.path=x.txt").unwrap();
        assert_eq!(
            doc,
            json!({"cores": 4, "transforms": [{"type": "a"}, {"type": "b", "n": 5},
                   {"type": "limit"}], "source": {"path": "x.txt"}})
        );
    }

    #[test]
    fn bad_paths_are_explained() {
        let mut doc = json!({"transforms": [{"type": "a"}], "cores": 1});
        assert!(set(&mut doc, "transforms.7.x=1")
            .unwrap_err()
            .contains("has 1 items"));
        assert!(set(&mut doc, "transforms.x.y=1")
            .unwrap_err()
            .contains("is a list"));
        assert!(set(&mut doc, "cores.x=1")
            .unwrap_err()
            .contains("is a value"));
        assert!("novalue"
            .parse::<Override>()
            .unwrap_err()
            .contains("PATH=VALUE"));
    }
}
