#!/usr/bin/env python3
"""Streaming benchmark: a burst of hashtag lines over TCP into runner's socket pipeline.

    python3 bench/stream.py                 # 4,000,000 lines of ~5 hashtags, 1 s trigger
    python3 bench/stream.py --lines 1000000 --trigger 500ms

A local server (this script) listens on 127.0.0.1, sends the whole burst as fast as the socket
takes it, and closes; runner (release build) connects, counts, and stops when the source ends.
Reports end-to-end lines/s, epochs, per-epoch timings from runner's --progress json, and peak
RSS, and checks the final counts are exact.
"""
import argparse, json, os, random, socket, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, 'target', 'release', 'runner')

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--lines', type=int, default=4_000_000)
    parser.add_argument('--trigger', default='1s')
    parser.add_argument('--no-build', action='store_true')
    parser.add_argument('--steady', action='store_true',
                        help='instead of a burst: 10,000 lines every 100 ms for 5 s with a 100 ms trigger; '
                             'reports per-epoch engine time and trigger delay')
    args = parser.parse_args()
    if args.steady:
        args.lines, args.trigger = 500_000, '100ms'
    if not args.no_build:
        subprocess.run(['cargo', 'build', '--release', '-q', '-p', 'runner'], cwd=ROOT, check=True)

    rnd = random.Random(7)
    tags = [f'tag{i}' for i in range(5000)]
    pattern = [' '.join(rnd.choice(tags[:200] if rnd.random() < 0.8 else tags) for _ in range(5)) for _ in range(10_000)]
    expected = {}
    for line in pattern:
        for tag in line.split(' '):
            expected[tag] = expected.get(tag, 0) + 1
    repeats = args.lines // len(pattern)
    burst = ('\n'.join(pattern) + '\n').encode() * repeats
    total_lines = repeats * len(pattern)

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    port = server.getsockname()[1]

    def serve():
        client, _ = server.accept()
        if args.steady:
            step = ('\n'.join(pattern) + '\n').encode()  # 10,000 lines
            next_send = time.perf_counter()
            for _ in range(repeats):
                client.sendall(step)
                next_send += 0.1
                time.sleep(max(0, next_send - time.perf_counter()))
        else:
            client.sendall(burst)
        client.close()
    threading.Thread(target=serve, daemon=True).start()

    with tempfile.TemporaryDirectory() as tmp:
        pipeline = os.path.join(tmp, 'burst.yaml')
        with open(pipeline, 'w') as f:
            f.write(f"""name: burst
mode: stream
source: {{type: socket, host: 127.0.0.1, port: {port}}}
transforms:
  - {{type: explode, column: line, separator: " ", as: hashtag}}
  - {{type: group_count, by: hashtag}}
trigger: {{processing_time: {args.trigger}}}
output_mode: complete
sinks:
  - {{type: csv, path: counts.csv}}
""")
        start = time.perf_counter()
        proc = subprocess.Popen([RUNNER, 'run', pipeline, '--progress', 'json'], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out = proc.stdout.read(); err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(err.decode())
        epochs = [json.loads(l) for l in err.decode().splitlines() if l.startswith('{')]
        counts = {}
        with open(os.path.join(tmp, 'counts.csv')) as f:
            next(f)
            for line in f:
                tag, count = line.rstrip('\n').rsplit(',', 1)
                counts[tag] = int(count)
    want = {tag: count * repeats for tag, count in expected.items()}
    if counts != want:
        sys.exit('counts differ from what was sent')
    rows = sum(e['numInputRows'] for e in epochs)
    busy = [e['durationMs']['triggerExecution'] for e in epochs]
    if args.steady:
        engine = sorted(e['durationMs']['engine'] for e in epochs[1:-1])
        delays = sorted(e['durationMs'].get('triggerDelay', 0) for e in epochs)
        per_epoch = sorted(e['numInputRows'] for e in epochs[1:-1])
        print('| epochs | rows/epoch (median) | engine ms median | engine ms max | trigger delay ms median | trigger delay ms max |')
        print('|---|---|---|---|---|---|')
        print(f'| {len(epochs)} | {per_epoch[len(per_epoch)//2]:,} | {engine[len(engine)//2]:.3f} | {engine[-1]:.3f} | {delays[len(delays)//2]:.3f} | {delays[-1]:.3f} |')
        return
    print(f'| lines | MB | wall s | lines/s | epochs | max epoch ms | peak RSS MB |')
    print(f'|---|---|---|---|---|---|---|')
    print(f'| {total_lines:,} | {len(burst)/1e6:.0f} | {elapsed:.2f} | {total_lines/elapsed:,.0f} | {len(epochs)} | {max(busy)} | {usage.ru_maxrss/1024:.0f} |')
    assert rows == total_lines, (rows, total_lines)

if __name__ == '__main__':
    main()
