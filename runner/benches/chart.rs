//! How long the chart sink takes to draw the default chart: 20 bars, 1280x720, PNG encoded.
//! `cargo bench -p runner --bench chart`

use criterion::{criterion_group, criterion_main, Criterion};
use runner::sinks::chart::{render_png, Bar, ChartSpec, Orientation, Palette};

fn bars() -> Vec<Bar> {
    let words = [
        "romeo", "thou", "juliet", "thy", "nurse", "capulet", "love", "thee", "shall", "lady",
        "friar", "come", "mercutio", "good", "benvolio", "enter", "go", "i’ll", "death", "tybalt",
    ];
    words
        .iter()
        .enumerate()
        .map(|(i, w)| Bar::integer(*w, 298 - i as i64 * 11))
        .collect()
}

fn spec(orientation: Orientation) -> ChartSpec {
    ChartSpec {
        title: "Top words in Romeo and Juliet".into(),
        x_name: "word".into(),
        y_name: "count".into(),
        width: 1280,
        height: 720,
        orientation,
        palette: Palette::Cool,
    }
}

fn chart(c: &mut Criterion) {
    let bars = bars();
    c.bench_function("chart 20 bars 1280x720 vertical", |b| {
        b.iter(|| render_png(&bars, &spec(Orientation::Vertical)).unwrap())
    });
    c.bench_function("chart 20 bars 1280x720 horizontal", |b| {
        b.iter(|| render_png(&bars, &spec(Orientation::Horizontal)).unwrap())
    });
}

criterion_group!(benches, chart);
criterion_main!(benches);
