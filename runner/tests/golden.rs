//! The chapter's answer: romeo.yaml on the play gives exactly these 25 rows, for any --cores.

mod common;
use common::*;

const EXPECTED: &str = "word,count
romeo,298
thou,277
juliet,178
thy,170
nurse,146
capulet,141
love,136
thee,135
shall,110
lady,109
friar,104
come,94
mercutio,83
good,80
benvolio,79
enter,75
go,75
i’ll,71
death,69
tybalt,69
night,68
lawrence,67
man,65
hath,64
one,60
";

fn run_romeo(cores: &str, out_dir: &std::path::Path) -> (String, String) {
    let play = romeo_text().expect("checked by the caller");
    let csv = out_dir.join(format!("romeo_{cores}.csv"));
    let output = runner()
        .args(["run", "pipelines/romeo.yaml", "--cores", cores])
        .arg("--set")
        .arg(format!("source.path={}", play.display()))
        .arg("--set")
        .arg(format!("sinks.1.path={}", csv.display()))
        // Every output into the temporary directory: tests never touch output/.
        .arg("--set")
        .arg(format!(
            "sinks.2.path={}",
            out_dir.join(format!("romeo_{cores}.png")).display()
        ))
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        String::from_utf8(output.stdout).unwrap(),
        std::fs::read_to_string(csv).unwrap(),
    )
}

/// Every file in the repository's output/ and data/ with its modification time.
fn user_files() -> Vec<(std::path::PathBuf, Option<std::time::SystemTime>)> {
    let mut files = Vec::new();
    for dir in ["output", "data"] {
        let Ok(entries) = std::fs::read_dir(repo_root().join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let modified = entry.metadata().ok().and_then(|m| m.modified().ok());
            files.push((entry.path(), modified));
        }
    }
    files.sort();
    files
}

#[test]
fn romeo_word_count_matches_the_chapter_for_every_core_count() {
    if romeo_text().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let before = user_files();
    let (stdout_1, csv_1) = run_romeo("1", dir.path());
    let (stdout_2, csv_2) = run_romeo("2", dir.path());
    let (stdout_8, csv_8) = run_romeo("8", dir.path());
    // The user's outputs stay theirs: the chart in output/ was rewritten here once.
    assert_eq!(user_files(), before, "a test wrote into output/ or data/");
    assert_eq!(csv_1, EXPECTED);
    assert_eq!(csv_2, EXPECTED);
    assert_eq!(csv_8, EXPECTED);
    assert_eq!(stdout_1, stdout_2);
    assert_eq!(stdout_1, stdout_8);
    let lines: Vec<&str> = stdout_1.lines().collect();
    assert_eq!(lines.len(), 25);
    assert_eq!(lines[0], "   romeo: 298");
    assert_eq!(lines[1], "    thou: 277");
    assert_eq!(lines[12], "mercutio: 83");
    assert_eq!(lines[24], "     one: 60");
}

#[test]
fn set_overrides_the_filter_threshold() {
    let Some(play) = romeo_text() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let output = runner()
        .args([
            "run",
            "pipelines/romeo.yaml",
            "--cores",
            "1",
            "--set",
            "transforms.3.where=count >= 100",
        ])
        .arg("--set")
        .arg(format!("source.path={}", play.display()))
        .arg("--set")
        .arg(format!(
            "sinks.1.path={}",
            dir.path().join("x.csv").display()
        ))
        .arg("--set")
        .arg(format!(
            "sinks.2.path={}",
            dir.path().join("x.png").display()
        ))
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 11, "{stdout}");
    assert_eq!(stdout.lines().last(), Some("  friar: 104"));
}
