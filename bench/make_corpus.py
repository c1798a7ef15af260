#!/usr/bin/env python3
# Copied from the project's shared material (shared/bench/make_corpus.py), unchanged below this line.
"""Deterministic benchmark corpora.
  romeo N OUT  : Romeo and Juliet repeated N times (small vocabulary, ~4k distinct words)
  zipf MB OUT  : synthetic English-like text, Zipf-distributed over a 1M-word vocabulary mixed
                 with Romeo's words, punctuation and mixed case (large vocabulary, cache-hostile)
"""
import random, sys, string
def romeo(n, out, src):
    data = open(src, 'rb').read()
    with open(out, 'wb') as f:
        for _ in range(n): f.write(data)
def zipf(mb, out, src):
    rnd = random.Random(42)
    base = open(src, encoding='utf-8').read().split()
    letters = string.ascii_lowercase
    vocab = list(dict.fromkeys(w for w in base))
    while len(vocab) < 1_000_000:
        k = rnd.randint(3, 12)
        vocab.append(''.join(rnd.choice(letters) for _ in range(k)))
    # Zipf weights via cumulative table
    import bisect, itertools
    weights = [1.0 / (i + 1) ** 1.05 for i in range(len(vocab))]
    cum = list(itertools.accumulate(weights)); total = cum[-1]
    punct = ['', '', '', '', ',', '.', ';', '!', '?', "'s", '--']
    target = mb * 1024 * 1024; written = 0
    with open(out, 'w', encoding='utf-8') as f:
        while written < target:
            words = []
            for _ in range(rnd.randint(4, 14)):
                w = vocab[bisect.bisect_left(cum, rnd.random() * total)]
                if rnd.random() < 0.1: w = w.capitalize()
                words.append(w + rnd.choice(punct))
            line = ' '.join(words) + '\n'
            f.write(line); written += len(line.encode('utf-8'))
if __name__ == '__main__':
    kind, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    src = sys.argv[4] if len(sys.argv) > 4 else __import__('os').path.join(__import__('os').path.dirname(__import__('os').path.abspath(__file__)), '..', 'data', 'RomeoAndJuliet.txt')
    {'romeo': romeo, 'zipf': zipf}[kind](n, out, src)
