//! The fused word-count loop must give exactly what the transforms give one by one
//! (`--no-fusion`), for every tokenizer setting, encoding policy and core count.

mod common;
use common::*;

use common::run_pipeline as run;

/// Text with everything the tokenizer treats specially, repeated so it spans several morsels.
fn tricky_input() -> Vec<u8> {
    let mut text = Vec::new();
    let lines: [&[u8]; 9] = [
        b"The cat, the CAT! The cat's hat -- and I'll go.\r\n",
        "ÉTÉ été \u{3000}ΟΔΟΣ ΟΣ-Α σ’ς i’ll I’LL\n".as_bytes(),
        b"tabs\tand\x0bvertical\x0cfeeds\x1cseparators\x1fhere\n",
        "non\u{a0}breaking\u{2003}em\u{85}next-line\n".as_bytes(),
        b"bad \xff\xfe bytes caf\xe9 here\n",
        b"'tis o'er -- \"quoted\" (parens) [brackets] {braces}\n",
        b"\n",
        b"a_very_long_token_that_is_longer_than_sixteen_bytes_and_then_some ok\n",
        b"don't won't shouldn't mustn't\n",
    ];
    for i in 0..40_000 {
        text.extend_from_slice(lines[i % lines.len()]);
    }
    text.extend_from_slice(b"no final newline");
    text
}

#[test]
fn fused_and_reference_paths_agree() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), tricky_input()).unwrap();
    for (tokenize, policy) in [
        ("{type: tokenize}", "replace"),
        ("{type: tokenize, strip_punctuation: edges}", "skip"),
        (
            "{type: tokenize, strip_punctuation: none, lowercase: false}",
            "replace",
        ),
        ("{type: tokenize, drop_empty: false}", "skip"),
    ] {
        for stopwords in ["  - {type: stopwords}\n", ""] {
            let p = write(
                dir.path(),
                "p.yaml",
                &format!(
                    "name: t\nsource:\n  type: file\n  path: in.txt\n  encoding_errors: {policy}\ntransforms:\n  - {tokenize}\n{stopwords}  - {{type: group_count, by: word}}\n  - {{type: sort, by: [count desc, word]}}\nsinks:\n  - {{type: stdout, format: tsv}}\n"
                ),
            );
            let reference = run(&p, &["--no-fusion", "--cores", "1"]);
            assert_eq!(reference.0, 0, "{}", reference.2);
            assert!(reference.1.lines().count() > 20, "{}", reference.1);
            for cores in ["1", "2", "3"] {
                let fused = run(&p, &["--cores", cores]);
                assert_eq!(fused.0, 0);
                assert_eq!(
                    fused.1, reference.1,
                    "{tokenize} {policy} {stopwords} --cores {cores}"
                );
                // The run's one-line summary (with its timing) differs; the warnings may not,
                // but for the place of the first bad line seen (morsels are read in parallel).
                let warnings = |stderr: &str| -> Vec<String> {
                    stderr
                        .lines()
                        .filter(|l| l.starts_with("warning:"))
                        .map(|l| l.split(" (the first seen: ").next().unwrap_or(l).to_owned())
                        .collect()
                };
                assert_eq!(
                    warnings(&fused.2),
                    warnings(&reference.2),
                    "warnings differ"
                );
            }
        }
    }
}

#[test]
fn fused_path_reports_encoding_failures_like_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), tricky_input()).unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource:\n  type: file\n  path: in.txt\n  encoding_errors: fail\ntransforms:\n  - type: tokenize\n  - type: group_count\n    by: word\nsinks:\n  - type: stdout\n",
    );
    let fused = run(&p, &[]);
    let reference = run(&p, &["--no-fusion"]);
    assert_eq!(fused.0, 1);
    assert_eq!(reference.0, 1);
    // Several workers may meet a bad line; each names its file and line.
    for stderr in [&fused.2, &reference.2] {
        assert!(
            stderr.contains("in.txt line ") && stderr.contains(": invalid UTF-8"),
            "{stderr}"
        );
    }
}

#[test]
fn an_empty_file_counts_no_words_on_either_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), b"").unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        "name: t\nsource:\n  type: file\n  path: in.txt\ntransforms:\n  - {type: tokenize}\n  - {type: stopwords}\n  - {type: group_count, by: word}\n  - {type: sort, by: count desc}\n  - {type: limit, n: 5}\nsinks:\n  - {type: stdout, format: tsv}\n",
    );
    for extra in [&[][..], &["--no-fusion"], &["--cores", "3"]] {
        let (code, stdout, stderr) = run(&p, extra);
        assert_eq!(code, 0, "{extra:?}: {stderr}");
        assert_eq!(stdout.trim(), "word\tcount", "{extra:?}");
    }
}
