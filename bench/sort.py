#!/usr/bin/env python3
"""A sort larger than memory's budget, measured: time and peak RSS of `runner run`.

    python3 bench/sort.py [--runs N]

Two inputs, written once into bench/corpora/ (not committed): 512 MiB of numbered 1 KiB lines
(`lines`), and the play x1000 (`romeo1000.txt`, from bench/make_corpus.py; 150 MB, 27 million
words after tokenizing). Three pipelines: every line sorted descending into a CSV file; every
word of the play sorted into a CSV file; the five largest lines (a top-k). GNU sort (an
external merge sort too) sorts the same lines the same way (`LC_ALL=C sort -r`: by bytes,
descending) alternately with runner, for scale. Needs a release build (`cargo build
--release`); peak RSS comes from wait4.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPORA = os.path.join(ROOT, "bench", "corpora")
RUNNER = os.path.join(ROOT, "target", "release", "runner")


def lines_corpus():
    path = os.path.join(CORPORA, "lines512.txt")
    if os.path.exists(path) and os.path.getsize(path) > 0:
        return path
    os.makedirs(CORPORA, exist_ok=True)
    filler = ("romeo and juliet, the most excellent and lamentable tragedy " * 17)[:1015]
    with open(path + ".tmp", "w") as out:
        for i in range(1 << 19):
            out.write(f"{filler} {i:07}\n")
    os.replace(path + ".tmp", path)
    return path


def romeo_corpus():
    path = os.path.join(CORPORA, "romeo1000.txt")
    if not os.path.exists(path):
        play = os.path.join(ROOT, "data", "RomeoAndJuliet.txt")
        subprocess.run(
            [sys.executable, os.path.join(ROOT, "bench", "make_corpus.py"), "romeo", "1000", path, play],
            check=True,
        )
    return path


def run(command):
    """Seconds and peak RSS (MB) of one command."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C"})
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        sys.exit(f"{command} failed ({status})")
    return seconds, usage.ru_maxrss / 1024


def main():
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 3
    if not os.path.exists(RUNNER):
        sys.exit("build first: cargo build --release")
    lines, romeo = lines_corpus(), romeo_corpus()
    work = tempfile.mkdtemp(prefix="runner-sort-bench-")
    cases = [
        ("512 MiB of 1 KiB lines, sorted", lines,
         "transforms:\n  - {type: sort, by: line desc}\nsinks:\n  - {type: csv, path: out.csv}\n",
         ["sort", "-r", "-o", os.path.join(work, "gnu.txt"), lines]),
        ("the play x1000 tokenized, 27 M words sorted", romeo,
         "transforms:\n  - {type: tokenize}\n  - {type: sort, by: word}\nsinks:\n  - {type: csv, path: out.csv}\n",
         None),
        ("512 MiB of lines, top 5", lines,
         "transforms:\n  - {type: sort, by: line desc}\n  - {type: limit, n: 5}\nsinks:\n  - {type: csv, path: out.csv}\n",
         None),
    ]
    print("| input | tool | median s | peak RSS MB |")
    print("|---|---|---|---|")
    for name, source, steps, peer in cases:
        pipeline = os.path.join(work, "sort.yaml")
        with open(pipeline, "w") as f:
            f.write(f"name: sort-bench\nsource: {{type: file, path: '{source}'}}\n{steps}")
        tools = {"runner": [RUNNER, "run", "-q", pipeline]}
        if peer:
            tools["GNU sort"] = peer
        results = {tool: [] for tool in tools}
        for _ in range(runs):
            for tool, command in tools.items():
                results[tool].append(run(command))
        for tool, measured in results.items():
            seconds = statistics.median(s for s, _ in measured)
            peak = max(m for _, m in measured)
            print(f"| {name} | {tool} | {seconds:.2f} | {peak:,.0f} |")

if __name__ == "__main__":
    main()
