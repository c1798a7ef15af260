//! The documentation: the generated reference is current, every link in `README.md` and
//! `docs/` resolves (files and heading anchors, offline), nothing links outside the repository
//! except public web pages, and the README stays short.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

#[test]
fn the_committed_reference_pages_are_what_the_code_generates() {
    let root = common::repo_root();
    let output = common::runner()
        .args(["docs", "--check", "--out"])
        .arg(root.join("docs/reference"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\nRegenerate them with `cargo run -- docs --out docs/reference`.",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn docs_writes_pages_that_then_check_clean() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reference");
    common::runner()
        .args(["docs", "--out"])
        .arg(&out)
        .assert()
        .success();
    assert!(out.join("sources/file.md").is_file());
    assert!(out.join("cli.md").is_file());
    common::runner()
        .args(["docs", "--check", "--out"])
        .arg(&out)
        .assert()
        .success();
    std::fs::write(out.join("sinks/csv.md"), "edited by hand\n").unwrap();
    let output = common::runner()
        .args(["docs", "--check", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("csv.md differs"), "{stderr}");
}

#[test]
fn the_readme_is_short() {
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 200,
        "README.md has {lines} lines; the details belong in docs/"
    );
}

/// Every Markdown file the links are checked in: the README and everything under docs/.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md")];
    let mut folders = vec![root.join("docs")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// A file's heading anchors as GitHub makes them, and the links it holds.
struct Parsed {
    anchors: BTreeSet<String>,
    links: Vec<String>,
}

fn parse(text: &str) -> Parsed {
    let mut anchors = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut links = Vec::new();
    let mut heading: Option<String> = None;
    for event in Parser::new_ext(text, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::End(TagEnd::Heading(_)) => {
                let slug = github_slug(&heading.take().unwrap_or_default());
                let count = seen.entry(slug.clone()).or_insert(0);
                anchors.insert(if *count == 0 {
                    slug.clone()
                } else {
                    format!("{slug}-{count}")
                });
                *count += 1;
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::Start(Tag::Link { dest_url, .. })
            | Event::Start(Tag::Image { dest_url, .. }) => links.push(dest_url.to_string()),
            Event::Html(html) | Event::InlineHtml(html) => {
                // `<a id="...">` anchors, used sparingly.
                for part in html.split("id=\"").skip(1) {
                    if let Some(id) = part.split('"').next() {
                        anchors.insert(id.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    Parsed { anchors, links }
}

/// GitHub's anchor for a heading: lowercase, punctuation other than `-` and `_` removed,
/// spaces as `-`.
fn github_slug(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// `a/b/../c` → `a/c`, without touching the file system; `None` when it climbs above `root`.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// Every link of `files` (paths under `root`) that does not resolve: a missing file or heading,
/// a path leaving `root`, or a scheme other than a public web page's.
fn broken_links(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let parsed: BTreeMap<PathBuf, Parsed> = files
        .iter()
        .map(|f| {
            let relative = f.strip_prefix(root).unwrap().to_path_buf();
            (relative, parse(&std::fs::read_to_string(f).unwrap()))
        })
        .collect();
    let mut broken = Vec::new();
    for (file, page) in &parsed {
        for link in &page.links {
            if link.starts_with("https://")
                || link.starts_with("http://")
                || link.starts_with("mailto:")
            {
                continue;
            }
            if link.contains("://") {
                broken.push(format!(
                    "{}: `{link}` is neither a public page nor a file here",
                    file.display()
                ));
                continue;
            }
            let (target, fragment) = match link.split_once('#') {
                Some((target, fragment)) => (target, Some(fragment)),
                None => (link.as_str(), None),
            };
            let target_path = if target.is_empty() {
                Some(file.clone())
            } else {
                normalise(&file.parent().unwrap_or(Path::new("")).join(target))
            };
            let Some(target_path) = target_path else {
                broken.push(format!(
                    "{}: `{link}` leaves the repository",
                    file.display()
                ));
                continue;
            };
            if !root.join(&target_path).exists() {
                broken.push(format!("{}: `{link}`: no such file", file.display()));
                continue;
            }
            if let Some(fragment) = fragment {
                match parsed.get(&target_path) {
                    Some(target_page) if !target_page.anchors.contains(fragment) => broken.push(
                        format!("{}: `{link}`: no heading makes that anchor", file.display()),
                    ),
                    _ => {}
                }
            }
        }
    }
    broken
}

#[test]
fn every_link_in_the_docs_resolves_inside_the_repository() {
    let root = common::repo_root();
    let files = markdown_files(&root);
    assert!(files.len() > 10, "{files:?}");
    let broken = broken_links(&root, &files);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_checker_finds_missing_files_anchors_and_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("docs")).unwrap();
    std::fs::write(root.join("docs/a.md"), "# Title\n\n## Some `code` here\n").unwrap();
    std::fs::write(
        root.join("README.md"),
        "[ok](docs/a.md#some-code-here) [top](#intro) [web](https://example.org/x)\n\n\
         # Intro\n\n[gone](docs/b.md) [anchor](docs/a.md#nothing) [out](../shared/x.md)\n\
         ![img](docs/missing.png) [ftp](ftp://host/file)\n",
    )
    .unwrap();
    let files = vec![root.join("README.md"), root.join("docs/a.md")];
    let broken = broken_links(root, &files);
    assert_eq!(broken.len(), 5, "{broken:#?}");
    for expected in [
        "docs/b.md`: no such file",
        "a.md#nothing`: no heading",
        "../shared/x.md` leaves",
        "missing.png`: no such file",
        "ftp://host/file` is neither",
    ] {
        assert!(
            broken.iter().any(|b| b.contains(expected)),
            "{expected}: {broken:#?}"
        );
    }
}

#[test]
fn slugs_are_githubs() {
    assert_eq!(
        github_slug("Results into a database"),
        "results-into-a-database"
    );
    assert_eq!(
        github_slug("Does the page slow a stream down?"),
        "does-the-page-slow-a-stream-down"
    );
    assert_eq!(github_slug("fetch"), "fetch");
    assert_eq!(
        github_slug("Records: CSV, JSON lines"),
        "records-csv-json-lines"
    );
    assert_eq!(github_slug("runner plugin new"), "runner-plugin-new");
    assert_eq!(github_slug("Word count — fused"), "word-count--fused");
    assert_eq!(
        normalise(Path::new("docs/../README.md")),
        Some(PathBuf::from("README.md"))
    );
    assert_eq!(normalise(Path::new("../shared/x.md")), None);
}
