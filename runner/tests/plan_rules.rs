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
            // The most frequent words in word order: a second sort of the first one's rows.
            if random.chance(30) {
                steps.push_str("  - {type: limit, n: 50}\n  - {type: sort, by: word}\n");
            }
        }
    } else if random.chance(60) {
        // Without a count the sort takes every row (in bounded memory on both paths: an
        // external sort); the rest of the pipeline must still agree.
        steps.push_str(random.pick(&[
            "  - {type: sort, by: word}\n",
            "  - {type: sort, by: word desc}\n",
        ]));
        // A second sort takes the first one's rows as it merges them (perhaps cut by a
        // limit, or filtered, between).
        if random.chance(50) {
            steps.push_str(random.pick(&[
                "",
                "  - {type: limit, n: 700}\n",
                "  - {type: filter, where: 'length(word) > 2'}\n",
            ]));
            steps.push_str(random.pick(&[
                "  - {type: sort, by: [word desc]}\n",
                "  - {type: with_column, name: n, expr: 'length(word)'}\n  - {type: sort, by: [n desc]}\n",
            ]));
        }
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
    let (mut fused_cases, mut sorted_twice) = (0, 0);
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
        sorted_twice += usize::from(yaml.matches("type: sort").count() == 2);
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
    assert!(sorted_twice >= 3, "only {sorted_twice} cases sorted twice");
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

const REGIONS: &[&str] = &[
    "north",
    "south",
    "nord-øst",
    "центр",
    "日本",
    "a_region_name_longer_than_sixteen",
    "x y",
];

/// A random CSV of sales: `region,product,amount,price,note,at` (a timestamp, now and then
/// not one), with empty fields (nulls), CRLF
/// and blank lines, a few lone carriage returns, and `quoted` blocks of lines whose note is quoted (which the kernel hands to
/// the source's reader; with a delimiter inside quotes in even `case`s). Prices are quarters, so float sums are exact in any order. `bad`: a
/// line whose amount does not parse, at a random place; `huge`: some amounts near `i64::MAX / 4`
/// (their sum overflows, an error either way).
fn sales_csv(random: &mut Random, bytes: usize, case: usize, shape: Shape) -> Vec<u8> {
    let Shape {
        quoted,
        bad,
        huge,
        lone_cr,
        blank_lines,
    } = shape;
    let mut out = b"region,product,amount,price,note,at\n".to_vec();
    let mut bad_at = bad.then(|| random.below(bytes));
    let mut quoting = false;
    while out.len() < bytes {
        if random.chance(1) {
            quoting = quoted && !quoting;
        }
        if blank_lines && random.chance(2) {
            out.extend_from_slice(random.pick(&["\n", "  \n", "\r\n", "\t\n"]).as_bytes());
            continue;
        }
        // A file with a bad line has no other (which one a failing run names is then certain).
        let region = if !bad && random.chance(5) {
            ""
        } else {
            random.pick(REGIONS)
        };
        let product = format!("p{}", random.below(40));
        let amount = match random.below(20) {
            0 => String::new(),
            1 if huge => format!("{}", i64::MAX / 4 - random.below(10) as i64),
            2 => format!("+{}", random.below(50)),
            _ => format!("{}", random.below(2000) as i64 - 1000),
        };
        let price = match random.below(20) {
            0 => String::new(),
            1 => "1e2".to_owned(),
            _ => format!("{}", (random.below(4000) as f64 - 2000.0) / 4.0),
        };
        let region = if quoting && random.chance(50) {
            format!("\"{region}\"")
        } else {
            region.to_owned()
        };
        let note = if quoting && random.chance(50) {
            match case % 2 {
                0 => "\"said \"\"hi\"\", then left\"".to_owned(),
                _ => "\"said \"\"hi\"\" then left\"".to_owned(),
            }
        } else if lone_cr && random.chance(1) {
            // Arrow's reader ends a record at a lone carriage return.
            "cr\rinside".to_owned()
        } else {
            random.pick(&["", "plain", "été"]).to_owned()
        };
        let at = match random.below(200) {
            0 if !bad => "soon",
            1 => "",
            2 => "1714521600",
            _ => "2024-05-01T10:00:00Z",
        };
        let end = if random.chance(10) { "\r\n" } else { "\n" };
        let amount = match bad_at {
            Some(at) if out.len() >= at => {
                bad_at = None;
                "12x".to_owned()
            }
            _ => amount,
        };
        out.extend_from_slice(
            format!("{region},{product},{amount},{price},{note},{at}{end}").as_bytes(),
        );
    }
    out
}

/// What a random CSV holds besides plain records.
#[derive(Clone, Copy)]
struct Shape {
    quoted: bool,
    bad: bool,
    huge: bool,
    /// Lone carriage returns (on small inputs only: the unfused reader then reads a morsel's
    /// lines one by one, slowly).
    lone_cr: bool,
    /// Blank lines. Without them (and quotes and lone carriage returns) every line is a
    /// record, which the kernel splits at a stride and keys by their bytes in place.
    blank_lines: bool,
}

fn csv_aggregate_pipeline(random: &mut Random, on_error: &str, group_count: bool) -> String {
    let region = random.pick(&["text", "text?"]);
    // A declared column no aggregate reads is checked all the same.
    let at = random.pick(&["", ", at: timestamp?"]);
    let keys = [
        &[][..],
        &["region"],
        &["product"],
        &["region", "product"],
        &["amount", "region"],
    ][random.below(5)];
    let all = [
        "count()",
        "count(amount)",
        "sum(amount)",
        "avg(price)",
        "sum(price)",
        "min(price)",
        "max(region)",
        "count_distinct(product)",
        "first(region)",
        "last(amount)",
        "avg(amount)",
    ];
    let mut aggs = Vec::new();
    for (i, call) in all.iter().enumerate() {
        if random.chance(35) || (aggs.is_empty() && i == all.len() - 1) {
            aggs.push(format!("a{i}: {call}"));
        }
    }
    let after = random.pick(&[
        "",
        "  - {type: limit, n: 5}\n",
        "  - {type: filter, where: a10 is not null or true}\n",
    ]);
    let after = if after.contains("a10") && !aggs.iter().any(|a| a.starts_with("a10:")) {
        ""
    } else {
        after
    };
    // Filters by one column's value run inside the kernel too.
    let filters = random.pick(&[
        "",
        "  - {type: filter, where: amount > 0}\n",
        "  - {type: filter, where: region != 'north'}\n",
        "  - {type: filter, where: price between -100 and 100}\n  - {type: filter, where: \"product like 'p1%'\"}\n",
        "  - {type: stopwords, column: region, words: [north, центр, '']}\n",
    ]);
    // `group_count`, the shorthand, by one text column.
    let step = if group_count {
        let after = if after.contains("a10") { "" } else { after };
        format!(
            "  - {{type: group_count, by: {}}}\n{after}",
            random.pick(&["region", "product"])
        )
    } else {
        format!(
            "  - type: aggregate\n    by: [{}]\n    aggs: {{{}}}\n{after}",
            keys.join(", "),
            aggs.join(", ")
        )
    };
    format!(
        "name: random-csv\nsource:\n  type: file\n  path: sales.csv\n  format: csv\n  on_error: {on_error}\n  columns: {{region: {region}, product: text, amount: integer?, price: float?{at}}}\ntransforms:\n{filters}{step}sinks:\n  - {{type: stdout, format: jsonl}}\n"
    )
}

#[test]
fn random_csv_aggregates_give_the_same_answer_with_and_without_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let mut random = Random(19);
    let (mut fused_cases, mut counted_cases, mut filtered_cases) = (0, 0, 0);
    for case in 0..18 {
        // Some inputs span several pieces, some of them quoted (read by Arrow's reader).
        let size = if case % 3 == 0 { 3_000_000 } else { 30_000 };
        let bad = case % 4 == 1;
        let huge = case % 6 == 3;
        let shape = Shape {
            quoted: case % 3 == 2,
            bad,
            huge,
            lone_cr: !bad && case % 3 == 1,
            blank_lines: case % 2 == 1,
        };
        let csv = sales_csv(&mut random, size, case, shape);
        std::fs::write(dir.path().join("sales.csv"), csv).unwrap();
        let on_error = if bad && case % 8 == 1 { "fail" } else { "skip" };
        let yaml = csv_aggregate_pipeline(&mut random, on_error, case % 4 == 2);
        let p = write(dir.path(), "p.yaml", &yaml);
        let plan = runner()
            .args(["plan", "--format", "json"])
            .arg(&p)
            .output()
            .unwrap();
        let plan: serde_json::Value = serde_json::from_slice(&plan.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{yaml}", String::from_utf8_lossy(&plan.stderr)));
        if plan["physical"]["fusion"]["kernel"] == "csv_aggregate" {
            fused_cases += 1;
            counted_cases += usize::from(yaml.contains("group_count"));
            filtered_cases += usize::from(
                yaml.contains("type: filter, where: amount")
                    || yaml.contains("type: filter, where: region")
                    || yaml.contains("type: filter, where: price")
                    || yaml.contains("type: stopwords"),
            );
        }
        let reference = run_pipeline(&p, &["--no-fusion", "--cores", "1"]);
        if on_error == "fail" {
            assert_eq!(reference.0, 1, "{yaml}{}", reference.2);
            assert!(reference.2.contains("12x"), "{}", reference.2);
        } else if huge && yaml.contains("sum(amount)") {
            assert!(
                reference.0 == 0 || reference.2.contains("overflow"),
                "{}",
                reference.2
            );
        } else {
            assert_eq!(reference.0, 0, "{yaml}{}", reference.2);
            assert!(!reference.1.is_empty(), "{yaml}");
        }
        for extra in [&["--cores", "1"][..], &["--cores", "2"], &["--cores", "8"]] {
            let (code, stdout, stderr) = run_pipeline(&p, extra);
            assert_eq!(code, reference.0, "case {case} {extra:?}: {stderr}\n{yaml}");
            assert_eq!(stdout, reference.1, "case {case} {extra:?}:\n{yaml}");
            if code != 0 {
                assert_eq!(stderr, reference.2, "case {case} {extra:?}:\n{yaml}");
            }
        }
    }
    assert!(fused_cases >= 12, "only {fused_cases} cases were fused");
    assert!(
        counted_cases >= 2,
        "only {counted_cases} cases were group_counts"
    );
    assert!(
        filtered_cases >= 3,
        "only {filtered_cases} fused cases had filters"
    );
}

/// Hundreds of thousands of groups, most rows a new key: each worker's table passes the size
/// at which the kernel hands keys straight to the state, on 1 and 2 cores, and later rows meet
/// keys already there. Adjacent keys (read as one span), keys apart, and a `group_count`, each
/// the same with and without the kernel.
#[test]
fn csv_aggregates_of_many_groups_give_the_same_answer_with_and_without_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let distinct = 800_000;
    let mut csv = String::from("shop,user,amount,price,day\n");
    for i in 0..900_000usize {
        let user = match i % 97 {
            0 => String::new(),
            _ => format!("u{}", i % distinct),
        };
        let shop = ["north", "south", "øst"][i % 3];
        csv.push_str(&format!(
            "{shop},{user},{},{}.5,d{}\n",
            i % 1000,
            i % 10,
            i % 5
        ));
    }
    std::fs::write(dir.path().join("sales.csv"), csv).unwrap();
    let columns = "{shop: text, user: text?, amount: integer, price: float, day: text}";
    for steps in [
        "{type: aggregate, by: [shop, user], aggs: {n: count(), total: sum(amount), mean: avg(price)}}",
        "{type: aggregate, by: [user, day], aggs: {total: sum(amount)}}",
        "{type: group_count, by: user}",
    ] {
        let yaml = format!(
            "name: groups\nsource: {{type: file, path: sales.csv, format: csv, columns: {columns}}}\ntransforms:\n  - {steps}\nsinks:\n  - {{type: stdout, format: jsonl}}\n"
        );
        let p = write(dir.path(), "p.yaml", &yaml);
        let reference = run(&p, &["--no-fusion", "--cores", "1"]);
        assert!(reference.lines().count() > distinct / 2, "{steps}");
        for cores in ["1", "2"] {
            assert_eq!(run(&p, &["--cores", cores]), reference, "{steps} on {cores} cores");
        }
    }
}
