#!/usr/bin/env python3
"""Event-time windows, measured: a batch over a JSON-lines file and a stream over a socket.

    python3 bench/windows.py batch     # 10 million events from a file, windowed count
    python3 bench/windows.py stream    # 50 million events over TCP, 1-minute windows
    python3 bench/windows.py all

Each event is a JSON line with a timestamp and three fields:
`{"created_at":"2026-12-01T00:00:00.123Z","tag":"rust","user":"u123","n":7}`, a thousand per
second of event time, slightly out of order. The corpora are written once into
bench/corpora/ (not committed). Needs a release build (`cargo build --release`). Peak memory
is read from /proc while runner runs (the stream's is also sampled along the way, to show it
stays flat as final windows are freed).
"""

import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPORA = os.path.join(ROOT, "bench", "corpora")
RUNNER = os.path.join(ROOT, "target", "release", "runner")
TAGS = ["rust", "python", "spark", "flink", "arrow", "duckdb", "polars", "kafka", "linux",
        "cats", "coffee", "music", "art", "books", "news", "climate", "science", "ai",
        "mastodon", "privacy"]
START = int(datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp())


def corpus(path, events):
    """Writes `events` lines, 1000 per second of event time, up to 5 s out of order."""
    if os.path.exists(path) and os.path.getsize(path) > 0:
        return
    os.makedirs(CORPORA, exist_ok=True)
    rng = random.Random(2026)
    tags = [rng.choice(TAGS) for _ in range(4096)]
    users = [f"u{rng.randrange(100000)}" for _ in range(4096)]
    jitter = [rng.randrange(0, 5000) for _ in range(4096)]
    temp = path + ".tmp"
    with open(temp, "w") as out:
        block = []
        for i in range(events):
            ms = i - jitter[i & 4095] if i > 5000 else i
            second, milli = divmod(ms, 1000)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(START + second))
            block.append(
                f'{{"created_at":"{stamp}.{milli:03d}Z","tag":"{tags[(i * 7) & 4095]}","user":"{users[i & 4095]}","n":{i % 10}}}\n'
            )
            if len(block) == 100_000:
                out.write("".join(block))
                block.clear()
        out.write("".join(block))
    os.replace(temp, path)


def peak_rss_while(process, samples=None):
    """Peak resident memory of `process` (MB), polled from /proc until it exits."""
    peak = 0
    while process.poll() is None:
        try:
            with open(f"/proc/{process.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = int(line.split()[1]) // 1024
                    if samples is not None and line.startswith("VmRSS:"):
                        samples.append((time.time(), int(line.split()[1]) // 1024))
        except FileNotFoundError:
            break
        time.sleep(0.2)
    return peak


def batch():
    path = os.path.join(CORPORA, "events10m.jsonl")
    corpus(path, 10_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = os.path.join(tmp, "windows.yaml")
        with open(pipeline, "w") as f:
            f.write(f"""name: windows-batch
source:
  type: file
  path: {path}
  format: jsonl
  columns: {{created_at: timestamp, tag: text, user: text, n: integer}}
transforms:
  - type: group_count
    by: tag
    window: {{column: created_at, size: 1m}}
sinks:
  - {{type: csv, path: {tmp}/out.csv}}
""")
        best = None
        for _ in range(3):
            started = time.time()
            process = subprocess.Popen([RUNNER, "run", pipeline, "--quiet"])
            peak = peak_rss_while(process)
            seconds = time.time() - started
            assert process.returncode == 0, process.returncode
            if best is None or seconds < best[0]:
                best = (seconds, peak)
        rows = sum(1 for _ in open(os.path.join(tmp, "out.csv"))) - 1
    seconds, peak = best
    print(f"batch: 10,000,000 events, {rows} window rows: {seconds:.2f} s, "
          f"{10_000_000 / seconds / 1e6:.2f} M events/s, peak RSS {peak} MB (best of 3)")


def stream():
    path = os.path.join(CORPORA, "events50m.jsonl")
    corpus(path, 50_000_000)
    size = os.path.getsize(path)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def serve():
        connection, _ = server.accept()
        with open(path, "rb") as f:
            connection.sendfile(f)
        connection.close()

    threading.Thread(target=serve, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = os.path.join(tmp, "windows.yaml")
        with open(pipeline, "w") as f:
            f.write(f"""name: windows-stream
mode: stream
output_mode: append
source:
  type: socket
  host: 127.0.0.1
  port: {port}
  format: jsonl
  columns: {{created_at: timestamp, tag: text, user: text, n: integer}}
transforms:
  - type: group_count
    by: tag
    window: {{column: created_at, size: 1m}}
    watermark: 1m
sinks:
  - {{type: file, path: {tmp}/out.jsonl, format: jsonl}}
""")
        samples = []
        started = time.time()
        process = subprocess.Popen([RUNNER, "run", pipeline, "--quiet"])
        peak = peak_rss_while(process, samples)
        seconds = time.time() - started
        assert process.returncode == 0, process.returncode
        rows = sum(1 for _ in open(os.path.join(tmp, "out.jsonl")))
    quarters = []
    if samples:
        t0, t1 = samples[0][0], samples[-1][0]
        for q in (0.25, 0.5, 0.75, 1.0):
            at = t0 + (t1 - t0) * q
            quarters.append(min(samples, key=lambda s: abs(s[0] - at))[1])
    print(f"stream: 50,000,000 events ({size / 1e9:.1f} GB) over TCP, {rows} final window rows: "
          f"{seconds:.1f} s, {50_000_000 / seconds / 1e6:.2f} M events/s, peak RSS {peak} MB; "
          f"RSS at 25/50/75/100% of the run: {'/'.join(map(str, quarters))} MB")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("batch", "all"):
        batch()
    if what in ("stream", "all"):
        stream()
