//! The pipeline loader: bytes → a validated pipeline or an error, never a panic or a hang.
//! Runs what `runner validate` runs: `config::load_text` (YAML, overrides none, empty file and
//! no-sinks checks) then `exec::build` (every component built against its input schema).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A file in a directory that does not exist: relative paths in the pipeline resolve nowhere.
    let path = Path::new("/nonexistent-runner-fuzz/pipeline.yaml");
    let loaded = match runner::config::load_text(text, path, &[]) {
        Ok(loaded) => loaded,
        Err(error) => {
            // Rendering the message (with its YAML snippet) must not panic either.
            let _ = error.to_string();
            return;
        }
    };
    // Building a `plugin` step loads a shared library named in the file (the feature's trust
    // boundary), so those pipelines are only parsed.
    if loaded
        .config
        .transforms
        .iter()
        .any(|step| step.value.type_name() == "plugin")
    {
        return;
    }
    if let Err(error) = runner::exec::build(&loaded, Some(1)) {
        let _ = error.to_string();
    }
});
