//! `runner schema`: a JSON Schema of the pipeline format, generated from the same config
//! structs the loader deserializes (their doc comments become descriptions), so it cannot
//! drift from what `runner validate` accepts. Editors use it to complete and check pipeline
//! files (`# yaml-language-server: $schema=...` in VS Code's YAML extension).

use serde_json::{Map, Value};

use crate::config::PipelineConfig;

/// The schema as JSON. Draft 7, which editors' YAML support handles best.
pub fn pipeline_schema() -> Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut schema = generator
        .into_root_schema_for::<PipelineConfig>()
        .to_value();
    if let Some(root) = schema.as_object_mut() {
        root.insert(
            "description".into(),
            "A runner pipeline: a source, transforms applied in order, and sinks.".into(),
        );
    }
    schema
}

/// The ways one component may be written: its config with `type: <tag>` ([`tagged_variant`]),
/// and as its type's key (`{select: [a]}` holding its `value_option`, or `{aggregate: {…}}`
/// holding its options without `type`), and as its bare name (`lowercase`) where it needs no
/// option.
pub(crate) fn variants(
    schema: schemars::Schema,
    tag: &str,
    summary: &str,
    value_option: Option<&str>,
) -> Vec<Value> {
    let options = schema.clone().to_value();
    let needs_nothing = options["required"]
        .as_array()
        .is_none_or(|required| required.is_empty());
    let held = match value_option {
        Some(option) => options["properties"][option].clone(),
        // `tokenize:` with nothing under it, where no option is required.
        None if needs_nothing => {
            serde_json::json!({ "anyOf": [options.clone(), { "type": "null" }] })
        }
        None => options.clone(),
    };
    let mut written = vec![
        tagged_variant(schema, tag, summary),
        serde_json::json!({
            "title": format!("{tag} (as its key)"),
            "description": summary,
            "type": "object",
            "properties": { tag: held },
            "required": [tag],
            "additionalProperties": false,
        }),
    ];
    if needs_nothing {
        written.push(serde_json::json!({ "const": tag, "description": summary }));
    }
    written
}

/// One component's config schema with `type: <tag>` added as a required constant (first, so
/// editors offer it first).
pub(crate) fn tagged_variant(schema: schemars::Schema, tag: &str, summary: &str) -> Value {
    let mut value = schema.to_value();
    let Some(object) = value.as_object_mut() else {
        return value;
    };
    let mut properties = Map::new();
    properties.insert(
        "type".into(),
        serde_json::json!({ "const": tag, "description": summary }),
    );
    if let Some(Value::Object(existing)) = object.remove("properties") {
        properties.extend(existing);
    }
    object.insert("properties".into(), Value::Object(properties));
    let mut required = vec![Value::from("type")];
    if let Some(Value::Array(existing)) = object.remove("required") {
        required.extend(existing);
    }
    object.insert("required".into(), Value::Array(required));
    object.insert("title".into(), tag.into());
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_saphyr::from_str(text).unwrap()
    }

    #[test]
    fn every_component_type_is_a_tagged_variant() {
        let schema = pipeline_schema();
        let text = schema.to_string();
        for component in crate::registry::all() {
            assert!(
                text.contains(&format!("\"const\":\"{}\"", component.name)),
                "{} is missing",
                component.name
            );
        }
        assert_eq!(schema["additionalProperties"], false);
    }

    #[test]
    fn accepts_a_pipeline_and_rejects_unknown_keys_and_types() {
        let schema = pipeline_schema();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let good = yaml("name: t\nschedule: '0 3 * * *'\nsource: {type: file, path: in.txt}\ntransforms: [{type: tokenize}, {type: group_count, by: word}]\nsinks: [{type: csv, path: o.csv}]\n");
        assert!(validator.is_valid(&good));
        let unknown_key = yaml(
            "name: t\nsource: {type: file, path: in.txt, colum: x}\nsinks: [{type: stdout}]\n",
        );
        assert!(!validator.is_valid(&unknown_key));
        let unknown_type =
            yaml("name: t\nsource: {type: files, path: in.txt}\nsinks: [{type: stdout}]\n");
        assert!(!validator.is_valid(&unknown_type));
        let missing_key = yaml("name: t\nsource: {type: file}\nsinks: [{type: stdout}]\n");
        assert!(!validator.is_valid(&missing_key));
        // Steps written as their type's key, as the loader takes them.
        let short = yaml("name: t\nsource: {file: {path: in.csv}}\ntransforms: [tokenize, {filter: word != 'a'}, {select: [word]}, {aggregate: {by: word, aggs: {n: count()}}}, {limit: 3}]\nsinks: [stdout, {csv: {path: o.csv}}]\n");
        assert!(validator.is_valid(&short));
        for wrong in [
            "[{select: [word], as: x}]",
            "[{limit: many}]",
            "[{aggregate: {by: word}}]",
            "[lowercase]",
            "[{sort: {by: word}}]",
            "[{aggregate: null}]",
        ] {
            let text = format!("name: t\nsource: {{type: file, path: in.txt}}\ntransforms: {wrong}\nsinks: [stdout]\n");
            assert!(!validator.is_valid(&yaml(&text)), "{wrong}");
        }
    }
}
