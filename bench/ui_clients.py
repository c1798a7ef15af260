#!/usr/bin/env python3
"""Does the live page slow a stream down? The same steady stream three ways: without `--ui`,
with `--ui` and no browser, and with `--ui` followed by 50 Server-Sent-Events clients plus one
client that never reads its socket. Compares the epochs' durations from `--progress json`.

    python3 bench/ui_clients.py                # 10,000 lines every 100 ms for 10 s, 100 ms trigger
    python3 bench/ui_clients.py --seconds 30 --runs 3

The clients are raw sockets read by one thread (selectors), so the clients themselves cost
little CPU; each one reads every event the page would get (`epoch`, `result`, `state`).
"""
import argparse, json, os, random, re, selectors, socket, statistics, subprocess, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, 'target', 'release', 'runner')


def feed(server, pattern, seconds):
    client, _ = server.accept()
    step = ('\n'.join(pattern) + '\n').encode()
    next_send = time.perf_counter()
    for _ in range(int(seconds * 10)):
        client.sendall(step)
        next_send += 0.1
        time.sleep(max(0, next_send - time.perf_counter()))
    client.close()


def sse_clients(address, count, stop):
    """`count` clients reading /events, and one that sends its request and never reads."""
    host, port = address
    request = f'GET /events HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n'.encode()
    sel = selectors.DefaultSelector()
    received = [0]
    sockets = []
    for _ in range(count):
        s = socket.create_connection(address)
        s.sendall(request)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        sockets.append(s)
    stuck = socket.create_connection(address)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(request)

    def read():
        while not stop.is_set():
            for key, _ in sel.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                received[0] += data.count(b'\nevent: epoch') + data.startswith(b'event: epoch')
        for s in sockets + [stuck]:
            s.close()
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return received, thread


def one_run(mode, seconds, trigger):
    rnd = random.Random(7)
    tags = [f'tag{i}' for i in range(5000)]
    pattern = [' '.join(rnd.choice(tags[:200] if rnd.random() < 0.8 else tags) for _ in range(5)) for _ in range(10_000)]
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    port = server.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = os.path.join(tmp, 'steady.yaml')
        with open(pipeline, 'w') as f:
            f.write(f"""name: steady
mode: stream
source: {{type: socket, host: 127.0.0.1, port: {port}}}
transforms:
  - {{type: explode, column: line, separator: " ", as: hashtag}}
  - {{type: group_count, by: hashtag}}
trigger: {{processing_time: {trigger}}}
sinks:
  - {{type: csv, path: counts.csv}}
""")
        args = [RUNNER, 'run', pipeline, '--progress', 'json']
        if mode != 'no page':
            args += ['--ui', '127.0.0.1:0']
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines = []
        stop = threading.Event()
        clients = None
        # The page's address comes first on stderr; the clients connect before any data flows.
        if mode != 'no page':
            first = proc.stderr.readline()
            lines.append(first)
            url = re.search(r'http://([\d.]+):(\d+)/', first)
            if mode == '50 clients + 1 stuck':
                clients = sse_clients((url.group(1), int(url.group(2))), 50, stop)
        threading.Thread(target=feed, args=(server, pattern, seconds), daemon=True).start()
        lines += proc.stderr.readlines()
        proc.wait()
        stop.set()
        epochs = [json.loads(l) for l in lines if l.startswith('{')]
        # The first and last epochs are partial: steady epochs only.
        steady = [e for e in epochs[1:-1] if e['numInputRows'] > 0]
        seen = clients[0][0] if clients else None
        return {
            'mode': mode,
            'epochs': len(epochs),
            'engine': statistics.median(e['durationMs']['engine'] for e in steady),
            'total': statistics.median(e['durationMs']['triggerExecution'] for e in steady),
            'p90': sorted(e['durationMs']['triggerExecution'] for e in steady)[int(len(steady) * 0.9)],
            'client_epochs': seen,
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seconds', type=float, default=10)
    parser.add_argument('--trigger', default='100ms')
    parser.add_argument('--runs', type=int, default=2)
    parser.add_argument('--no-build', action='store_true')
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(['cargo', 'build', '--release', '-q', '-p', 'runner'], cwd=ROOT, check=True)
    print('| run | page | epochs | engine ms median | epoch ms median | epoch ms p90 | epochs each client got |')
    print('|---|---|---|---|---|---|---|')
    for run in range(args.runs):
        for mode in ('no page', 'page, no clients', '50 clients + 1 stuck'):
            r = one_run(mode, args.seconds, args.trigger)
            got = '–' if r['client_epochs'] is None else f"{r['client_epochs'] / 50:.0f}"
            print(f"| {run + 1} | {r['mode']} | {r['epochs']} | {r['engine']:.3f} | {r['total']:.3f} | {r['p90']:.3f} | {got} |", flush=True)


if __name__ == '__main__':
    main()
