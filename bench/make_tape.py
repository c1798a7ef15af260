#!/usr/bin/env python3
"""Writes a synthetic Mastodon stream tape (the format of the mastodon source's `record_to`):
invented accounts and statuses with Zipf-distributed hashtags, a few deletes, edits and unknown
events, at a few statuses per second. No real toot is copied.

    python3 bench/make_tape.py pipelines/tapes/sample.jsonl --statuses 600 --seconds 60
    python3 bench/make_tape.py pipelines/tapes/trending.jsonl --statuses 1200 --seconds 2400 \
        --jitter 90 --late-every 40

`--jitter S` puts each status's `created_at` up to S seconds before it arrives (out of order),
and `--late-every N` every Nth one 15 minutes before (later than a watermark lets in): the
tape of the event-time window pipelines.
"""
import argparse, json, random

TAGS = ['Rust', 'Python', 'AI', 'Mastodon', 'OpenSource', 'Linux', 'Fediverse', 'Photography',
        'Music', 'Climate', 'Science', 'Books', 'Art', 'News', 'Privacy', 'DevOps', 'Security',
        'JavaScript', 'GoLang', 'Kotlin', 'WebDev', 'Cats', 'Dogs', 'Coffee', 'Gardening',
        'Café', 'Spark', 'DataScience', 'MachineLearning', 'Cycling']
WORDS = 'the a streaming count of today with new old good small fast slow data week'.split()

def stamp(t):
    t = max(0, int(t))
    return f'2025-01-15T{12 + t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}.000Z'

def status(rnd, n, t, event_t=None):
    k = rnd.choice([0, 1, 1, 2, 2, 3])
    weights = [1 / (i + 1) for i in range(len(TAGS))]
    tags = list(dict.fromkeys(rnd.choices(TAGS, weights, k=k)))
    user = f'user{rnd.randint(1, 300)}'
    domain = rnd.choice(['', '@example.social', '@fedi.example'])
    words = ' '.join(rnd.choices(WORDS, k=rnd.randint(3, 9)))
    links = ' '.join(f'<a href="https://example.social/tags/{x.lower()}" class="mention hashtag" rel="tag">#<span>{x}</span></a>' for x in tags)
    sid = str(113000000000000000 + n)
    return {
        'id': sid, 'created_at': stamp(t if event_t is None else event_t),
        'in_reply_to_id': None, 'sensitive': False, 'spoiler_text': '', 'visibility': 'public',
        'language': rnd.choice(['en', 'en', 'en', 'de', 'fr', None]),
        'uri': f'https://example.social/users/{user}/statuses/{sid}',
        'url': f'https://example.social/@{user}/{sid}',
        'content': f'<p>{words} {links}</p>', 'reblog': None,
        'account': {'id': str(109000000000000000 + n % 300), 'username': user, 'acct': user + domain, 'display_name': user.title(), 'bot': False},
        'media_attachments': [], 'mentions': [],
        'tags': [{'name': x, 'url': f'https://example.social/tags/{x.lower()}'} for x in tags],
        'emojis': [], 'card': None, 'poll': None, 'filtered': [],
    }

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out')
    parser.add_argument('--statuses', type=int, default=600)
    parser.add_argument('--seconds', type=float, default=60.0)
    parser.add_argument('--seed', type=int, default=2025)
    parser.add_argument('--jitter', type=float, default=0.0)
    parser.add_argument('--late-every', type=int, default=0)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    with open(args.out, 'w', encoding='utf-8') as out:
        for n in range(args.statuses):
            t = round(args.seconds * n / args.statuses, 3)
            event_t = None
            if args.jitter:
                event_t = t - rnd.uniform(0, args.jitter)
            if args.late_every and n % args.late_every == args.late_every - 1:
                event_t = t - 15 * 60
            out.write(json.dumps({'event': 'update', 'data': json.dumps(status(rnd, n, t, event_t), ensure_ascii=False, separators=(',', ':')), 't': t}, ensure_ascii=False) + '\n')
            if n % 50 == 25:
                out.write(json.dumps({'event': 'delete', 'data': str(113000000000000000 + n - 10), 't': t}) + '\n')
            if n % 120 == 60:
                out.write(json.dumps({'event': 'status.update', 'data': json.dumps(status(rnd, n - 5, t)), 't': t}) + '\n')
            if n % 200 == 100:
                out.write(json.dumps({'event': 'announcement', 'data': '{}', 't': t}) + '\n')

if __name__ == '__main__':
    main()
