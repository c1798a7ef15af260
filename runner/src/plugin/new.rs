//! `runner plugin new NAME`: writes a plugin crate that builds and passes its test as is.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const CARGO_TOML: &str = include_str!("../templates/plugin_Cargo.toml");
const LIB_RS: &str = include_str!("../templates/plugin_lib.rs");
const README: &str = include_str!("../templates/plugin_README.md");

/// What `create` wrote.
#[derive(Debug)]
pub struct NewPlugin {
    /// The crate's directory.
    pub path: PathBuf,
    /// Whether the crate is a member of a runner checkout's workspace (`plugins/NAME`), so
    /// cargo builds it with `-p NAME` from there; else it is a workspace of its own.
    pub in_workspace: bool,
}

/// The SDK this runner was built with, written beside a crate made outside a checkout (so it
/// builds anywhere, and its ABI is this runner's).
const SDK_CARGO_TOML: &str = include_str!("../../../plugins/sdk/Cargo.toml");
const SDK_LIB_RS: &str = include_str!("../../../plugins/sdk/src/lib.rs");
const SDK_HEADER: &str = include_str!("../../../plugins/sdk/include/runner_plugin.h");
/// Where a crate made outside a checkout keeps its copy of the SDK.
const VENDORED_SDK: &str = "runner-plugin";

/// The SDK's manifest standing alone: the values it takes from runner's workspace written
/// out (kept the same by a test).
fn sdk_manifest() -> String {
    SDK_CARGO_TOML
        .replace("edition.workspace = true", "edition = \"2021\"")
        .replace(
            "license.workspace = true",
            "license = \"MIT OR Apache-2.0\"",
        )
        .replace("rust-version.workspace = true", "rust-version = \"1.89\"")
        .replace("\n[lints]\nworkspace = true\n", "\n")
}

/// Where the SDK is: `plugins/sdk` above `dir` (with whether `dir` is that checkout's
/// `plugins/`, a member of its workspace); `None` outside a checkout.
fn find_sdk(dir: &Path) -> Option<(PathBuf, bool)> {
    let absolute = std::env::current_dir().ok()?.join(dir);
    for ancestor in absolute.ancestors() {
        let candidate = ancestor.join("plugins/sdk");
        if candidate.join("Cargo.toml").is_file() {
            let member =
                absolute.canonicalize().ok() == ancestor.join("plugins").canonicalize().ok();
            return Some((candidate, member));
        }
        let candidate = ancestor.join("sdk");
        if ancestor.file_name().is_some_and(|n| n == "plugins")
            && candidate.join("Cargo.toml").is_file()
        {
            let member = absolute.canonicalize().ok() == ancestor.canonicalize().ok();
            return Some((candidate, member));
        }
    }
    None
}

/// The shortest way to write `to` from `from` (both absolute).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for part in &to[common..] {
        path.push(part.as_os_str());
    }
    path
}

/// Writes `dir/name/`.
pub fn create(name: &str, dir: &Path) -> Result<NewPlugin> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(Error::invalid(format!("`{name}` is not a plugin name: use lowercase letters, digits and _, starting with a letter")));
    }
    let crate_dir = dir.join(name);
    if crate_dir.exists() {
        return Err(Error::invalid(format!(
            "{} already exists",
            crate_dir.display()
        )));
    }
    let fail = |source| Error::Output {
        path: crate_dir.clone(),
        source,
    };
    std::fs::create_dir_all(crate_dir.join("src")).map_err(fail)?;
    let absolute_crate = crate_dir.canonicalize().map_err(fail)?;
    let (sdk_path, in_workspace) = match find_sdk(dir) {
        Some((sdk, in_workspace)) => {
            let sdk = sdk.canonicalize().unwrap_or(sdk);
            (relative(&absolute_crate, &sdk), in_workspace)
        }
        None => {
            // Outside a checkout: a copy of the SDK this runner was built with, inside the
            // crate (a path on the machine runner was built on would break anywhere else).
            let sdk = crate_dir.join(VENDORED_SDK);
            for (file, text) in [
                ("Cargo.toml", sdk_manifest()),
                ("src/lib.rs", SDK_LIB_RS.to_owned()),
                ("include/runner_plugin.h", SDK_HEADER.to_owned()),
            ] {
                let path = sdk.join(file);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(fail)?;
                }
                std::fs::write(path, text).map_err(fail)?;
            }
            (PathBuf::from(VENDORED_SDK), false)
        }
    };
    // Outside a runner checkout's plugins/, the crate is its own workspace (so that a cargo
    // workspace it happens to sit in does not claim it).
    let workspace = if in_workspace {
        String::new()
    } else {
        "\n# A workspace of its own, not a member of any other.\n[workspace]\n".to_owned()
    };
    let fill = |template: &str| {
        template
            .replace("{name}", name)
            .replace("{sdk}", &sdk_path.display().to_string())
            .replace("{workspace}", &workspace)
    };
    for (file, template) in [
        ("Cargo.toml", CARGO_TOML),
        ("src/lib.rs", LIB_RS),
        ("README.md", README),
    ] {
        std::fs::write(crate_dir.join(file), fill(template)).map_err(fail)?;
    }
    Ok(NewPlugin {
        path: crate_dir,
        in_workspace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDK's rustdoc shows the template as its doctest (so `cargo test --doc` builds it
    /// against the SDK); this keeps the two the same text.
    #[test]
    fn the_sdks_doctest_is_the_template() {
        let sdk = include_str!("../../../plugins/sdk/src/lib.rs");
        let doc: Vec<&str> = sdk
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .map(|l| {
                l.strip_prefix("//! ")
                    .unwrap_or(l.trim_start_matches("//!"))
            })
            .collect();
        let start = doc
            .iter()
            .position(|l| *l == "use std::sync::Arc;")
            .expect("the SDK's doc example starts with the template's imports");
        let end = doc
            .iter()
            .position(|l| l.starts_with("export_transform!"))
            .expect("the SDK's doc example exports the plugin");
        let example = doc[start..=end].join("\n");
        let from = LIB_RS.find("use std::sync::Arc;").unwrap();
        let marker = "export_transform!(Plugin, name = \"{name}\");";
        let to = LIB_RS.find(marker).unwrap() + marker.len();
        assert_eq!(example, LIB_RS[from..to].replace("{name}", "shout"));
    }

    #[test]
    fn relative_paths_climb_and_descend() {
        assert_eq!(
            relative(Path::new("/r/plugins/x"), Path::new("/r/plugins/sdk")),
            Path::new("../sdk")
        );
        assert_eq!(
            relative(Path::new("/tmp/a/b"), Path::new("/r/plugins/sdk")),
            Path::new("../../../r/plugins/sdk")
        );
    }

    #[test]
    fn a_crate_in_a_checkouts_plugins_is_a_member_and_elsewhere_its_own_workspace() {
        let checkout = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(checkout.path().join("plugins/sdk")).unwrap();
        std::fs::write(checkout.path().join("plugins/sdk/Cargo.toml"), "[package]").unwrap();
        let member = create("inside", &checkout.path().join("plugins")).unwrap();
        assert!(member.in_workspace);
        let manifest = std::fs::read_to_string(member.path.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("path = \"../sdk\"") && !manifest.contains("[workspace]"));
        std::fs::create_dir_all(checkout.path().join("elsewhere")).unwrap();
        let alone = create("outside", &checkout.path().join("elsewhere")).unwrap();
        assert!(!alone.in_workspace);
        let manifest = std::fs::read_to_string(alone.path.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("path = \"../../plugins/sdk\"") && manifest.contains("[workspace]")
        );
        // Outside any checkout: the SDK's copy inside the crate, no path of this machine.
        let nowhere = tempfile::tempdir().unwrap();
        let alone = create("apart", nowhere.path()).unwrap();
        assert!(!alone.in_workspace);
        let manifest = std::fs::read_to_string(alone.path.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("path = \"runner-plugin\"") && manifest.contains("[workspace]"),
            "{manifest}"
        );
        let sdk = alone.path.join("runner-plugin");
        assert_eq!(
            std::fs::read_to_string(sdk.join("src/lib.rs")).unwrap(),
            SDK_LIB_RS
        );
        assert!(sdk.join("include/runner_plugin.h").is_file());
        assert_eq!(
            std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap(),
            sdk_manifest()
        );
    }

    /// The SDK's copy stands alone with the workspace's own values.
    #[test]
    fn the_sdks_copy_takes_the_workspaces_values() {
        let manifest = sdk_manifest();
        assert!(!manifest.contains("workspace"), "{manifest}");
        let root = include_str!("../../../Cargo.toml");
        for key in ["edition", "license", "rust-version"] {
            let line = manifest
                .lines()
                .find(|l| l.starts_with(&format!("{key} = ")))
                .unwrap();
            assert!(
                root.lines().any(|l| l == line),
                "{line} is not the workspace's"
            );
        }
    }

    #[test]
    fn names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(create("Bad-Name", dir.path())
            .unwrap_err()
            .to_string()
            .contains("not a plugin name"));
    }
}
