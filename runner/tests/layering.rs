//! The layers of the crate, checked on its source: the data model imports nothing of the
//! crate's; the components (sources, transforms, sinks) and the settings layer under them never
//! import the pipeline loader, the plan, the executors, the summary or the events — they
//! declare what they are, and the layers above read that. Of the Spark engine they use only its
//! vocabulary (`spark::frame`, `spark::words`), never the translation or the execution.

fn sources_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(sources_under(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn components_and_the_data_model_stay_below_the_plan_and_the_executors() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let data = std::fs::read_to_string(src.join("data.rs")).unwrap();
    assert!(!data.contains("crate::"), "data.rs imports from the crate");
    let above = [
        "crate::config::",
        "crate::plan",
        "crate::exec",
        "crate::explain",
        "crate::summary",
        "crate::events",
        "crate::registry",
    ];
    let mut checked = 0;
    for layer in ["sources", "transforms", "sinks", "settings"] {
        for file in sources_under(&src.join(layer)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for module in above {
                assert!(!text.contains(module), "{} uses {module}", file.display());
            }
            // Of the Spark engine, only the vocabulary components describe themselves in.
            for (at, _) in text.match_indices("crate::spark::") {
                let rest = &text[at + "crate::spark::".len()..];
                assert!(
                    rest.starts_with("frame") || rest.starts_with("words"),
                    "{} uses the Spark engine above its frame and words",
                    file.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 15, "only {checked} files checked");
}
