//! The plan's rules never change an answer: random pipelines (chains of the built-in row-wise
//! transforms, a count or none, then filters, sorts and limits) over random text (Unicode,
//! punctuation, CRLF, empty lines) give the same output with the rules (`runner run`) as
//! without them (`--no-fusion`), on 1, 2 and 8 cores, in batch runs and in streams.

mod common;
use common::*;

use std::io::Write;

/// A small deterministic generator (SplitMix64): the cases are the same on every run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const WORDS: &[&str] = &[
    "the",
    "The",
    "THE",
    "romeo",
    "Romeo,",
    "juliet",
    "Juliet's",
    "i’ll",
    "I’LL",
    "thou",
    "thy",
    "a",
    "I",
    "--",
    "'tis",
    "o'er",
    "\"quoted\"",
    "(parens)",
    "été",
    "ÉTÉ",
    "straße",
    "ΟΔΟΣ",
    "σ’ς",
    "日本語",
    "🌹rose",
    "naïve",
    "x",
    "zzz",
    "and",
    "of",
    "to",
    "a_long_token_past_sixteen_bytes",
    "İstanbul",
    "ǅemal",
];
const SPACES: &[&str] = &[" ", " ", " ", "  ", "\t", "\u{3000}", "\u{a0}", " -- "];

/// Random lines; `bytes` of them at least.
fn text(random: &mut Random, bytes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < bytes {
        let words = random.below(12);
        let mut line = String::new();
        for w in 0..words {
            if w > 0 {
                line.push_str(random.pick(SPACES));
            }
            line.push_str(random.pick(WORDS));
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(if random.chance(10) { b"\r\n" } else { b"\n" });
    }
    out
}

/// A random chain of steps on the `word` column, after the split.
fn word_steps(random: &mut Random) -> String {
    let mut steps = String::new();
    for _ in 0..random.below(4) {
        let step = match random.below(4) {
            0 => "  - {type: stopwords}\n".to_owned(),
            1 => "  - {type: lowercase, column: word}\n".to_owned(),
            2 => format!(
                "  - {{type: filter, where: \"{}\"}}\n",
                random.pick(&[
                    "word != 'the'",
                    "word >= 'm'",
                    "not (word in ['a', 'i', 'romeo'])",
                    "word < 'c' or word > 'x'",
                    "word != 'zzz' and word != ''",
                ])
            ),
            _ => "  - {type: stopwords, words: [romeo, thou]}\n".to_owned(),
        };
        steps.push_str(&step);
    }
    steps
}

/// A random batch pipeline reading `in.txt`.
fn batch_pipeline(random: &mut Random) -> String {
    let split = if random.chance(75) {
        format!(
            "  - {{type: tokenize, lowercase: {}, strip_punctuation: {}, drop_empty: {}}}\n",
            random.chance(60),
            random.pick(&["all", "edges", "none"]),
            random.chance(70)
        )
    } else {
        "  - {type: explode, column: line, separator: ' ', as: word}\n".to_owned()
    };
    let mut steps = split + &word_steps(random);
    if random.chance(80) {
        steps.push_str("  - {type: group_count, by: word}\n");
        if random.chance(40) {
            steps.push_str(&format!(
                "  - {{type: filter, where: 'count >= {}'}}\n",
                random.below(5) + 1
            ));
        }
        if random.chance(60) {
            steps.push_str("  - {type: sort, by: [count desc, word]}\n");
        }
    } else if random.chance(60) {
        // Without a count the sort takes every row (in bounded memory on both paths: an
        // external sort); the rest of the pipeline must still agree.
        steps.push_str(random.pick(&[
            "  - {type: sort, by: word}\n",
            "  - {type: sort, by: word desc}\n",
        ]));
    }
    if random.chance(40) {
        steps.push_str(&format!(
            "  - {{type: limit, n: {}}}\n",
            random.below(500) + 1
        ));
    }
    format!(
        "name: random\nsource:\n  type: file\n  path: in.txt\ntransforms:\n{steps}sinks:\n  - {{type: stdout, format: tsv}}\n"
    )
}

/// The output of a run that must succeed.
fn run(pipeline: &std::path::Path, extra: &[&str]) -> String {
    let (code, stdout, stderr) = run_pipeline(pipeline, extra);
    assert_eq!(
        code,
        0,
        "{}: {stderr}",
        std::fs::read_to_string(pipeline).unwrap()
    );
    stdout
}

#[test]
fn random_batch_pipelines_give_the_same_answer_with_and_without_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mut random = Random(15);
    let mut fused_cases = 0;
    for case in 0..24 {
        // Some inputs span several 1 MiB morsels.
        let size = if case % 3 == 0 { 2_500_000 } else { 20_000 };
        std::fs::write(dir.path().join("in.txt"), text(&mut random, size)).unwrap();
        let yaml = batch_pipeline(&mut random);
        let p = write(dir.path(), "p.yaml", &yaml);
        let reference = run(&p, &["--no-fusion", "--cores", "1"]);
        assert!(
            reference.lines().count() > 1 || yaml.contains("limit"),
            "{yaml}{reference}"
        );
        let plan = runner()
            .args(["plan", "--format", "json"])
            .arg(&p)
            .output()
            .unwrap();
        let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
        if !plan["physical"]["fusion"].is_null() {
            fused_cases += 1;
        }
        for extra in [
            &["--cores", "1"][..],
            &["--cores", "2"],
            &["--cores", "8"],
            &["--no-fusion", "--cores", "8"],
        ] {
            assert_eq!(run(&p, extra), reference, "case {case} {extra:?}:\n{yaml}");
        }
    }
    // The cases exercise the kernel, not only the plain operators.
    assert!(fused_cases >= 6, "only {fused_cases} cases were fused");
}

/// A server that sends `bytes` to the one client it accepts, then closes.
fn serve_once(bytes: Vec<u8>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        client.write_all(&bytes).unwrap();
    });
    port
}

/// The rows of the last epoch of a stream's tsv output (its first column is the epoch).
fn last_epoch(tsv: &str) -> Vec<String> {
    let rows: Vec<(&str, &str)> = tsv
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('\t'))
        .collect();
    let last = rows.iter().map(|(e, _)| e.parse::<u64>().unwrap()).max();
    let mut table: Vec<String> = rows
        .iter()
        .filter(|(e, _)| Some(e.parse::<u64>().unwrap()) == last)
        .map(|(_, row)| (*row).to_owned())
        .collect();
    table.sort();
    table
}

#[test]
fn random_stream_pipelines_give_the_same_answer_with_and_without_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mut random = Random(16);
    for case in 0..8 {
        let input = text(&mut random, 300_000);
        let steps = if case % 2 == 0 {
            String::new()
        } else {
            word_steps(&mut random)
        };
        for cores in ["1", "2", "8"] {
            let mut answers = Vec::new();
            for extra in [&[][..], &["--no-fusion"]] {
                let port = serve_once(input.clone());
                let yaml = format!(
                    "name: s\nmode: stream\ntrigger: {{available_now: true}}\nsource: {{type: socket, host: 127.0.0.1, port: {port}}}\ntransforms:\n  - {{type: explode, column: line, separator: ' ', as: word}}\n{steps}  - {{type: group_count, by: word}}\nsinks:\n  - {{type: stdout, format: tsv}}\n"
                );
                let p = write(dir.path(), "s.yaml", &yaml);
                let out = run(&p, &[&["--cores", cores][..], extra].concat());
                answers.push(last_epoch(&out));
            }
            assert!(answers[0].len() > 5, "case {case}: {:?}", answers[0]);
            assert_eq!(
                answers[0], answers[1],
                "stream case {case}, {cores} cores, steps:\n{steps}"
            );
        }
    }
}
