#!/usr/bin/env python3
"""A line server for pipelines/hashtags_socket.yaml: listens on 127.0.0.1:9876 and sends each
client lines of space-separated hashtags (like the chapter's forwarder), at --rate lines/s.

    python3 bench/hashtag_server.py --rate 5000 &
    cargo run --release -- run pipelines/hashtags_socket.yaml
"""
import argparse, random, socket, threading, time

TAGS = ('rust python spark ai ml data mastodon opensource linux cloud devops security '
        'javascript golang kotlin webdev science climate music art photography books '
        'news fediverse privacy').split()

def serve(client, rate, seed):
    rnd = random.Random(seed)
    weights = [1.0 / (i + 1) for i in range(len(TAGS))]
    batch = max(1, rate // 20)
    try:
        while True:
            lines = (' '.join(rnd.choices(TAGS, weights, k=rnd.randint(1, 5))) for _ in range(batch))
            client.sendall(('\n'.join(lines) + '\n').encode())
            time.sleep(batch / rate)
    except OSError:
        pass
    finally:
        client.close()

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=9876)
    parser.add_argument('--rate', type=int, default=1000, help='lines per second per client')
    args = parser.parse_args()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((args.host, args.port))
    server.listen()
    print(f'serving hashtag lines on {args.host}:{args.port} at {args.rate}/s', flush=True)
    seed = 0
    while True:
        client, peer = server.accept()
        seed += 1
        threading.Thread(target=serve, args=(client, args.rate, seed), daemon=True).start()

if __name__ == '__main__':
    main()
