#!/usr/bin/env python3
"""Benchmark runner against the tools users would pick instead, on the same files, alternately.

    python3 bench/bench.py                    # runner only (builds it in release first)
    python3 bench/bench.py --with-peers       # also DuckDB, Polars (pip, into bench/.venv)
    python3 bench/bench.py --with-peers --with-spark   # and PySpark (needs Java 17)
    python3 bench/bench.py --runs 5 --inputs romeo romeo1000 zipf512 --cores 1 2
    python3 bench/bench.py --with-spark-connect      # runner on Spark vs PySpark, same server

Corpora come from bench/make_corpus.py (deterministic) and are written to
bench/corpora/ (not committed). Every tool must print the same top words; the script stops if
one disagrees. Prints a Markdown table: median wall time of the whole process, MB/s, peak RSS,
and time relative to runner.
"""
import argparse, os, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPORA = os.path.join(ROOT, 'bench', 'corpora')
VENV = os.path.join(ROOT, 'bench', '.venv')
RUNNER = os.path.join(ROOT, 'target', 'release', 'runner')
PLAY = os.path.join(ROOT, 'data', 'RomeoAndJuliet.txt')

# name -> (how to make it, threshold for `count >= N`)
INPUTS = {
    'romeo': (None, 60),
    'romeo1000': (['romeo', '1000'], 60_000),
    'romeo4000': (['romeo', '4000'], 240_000),
    'zipf512': (['zipf', '512'], 1_000),
}


def corpus(name):
    make, _ = INPUTS[name]
    if make is None:
        path = os.path.join(ROOT, 'data', 'RomeoAndJuliet.txt')
        return path if os.path.exists(path) else PLAY
    os.makedirs(CORPORA, exist_ok=True)
    path = os.path.join(CORPORA, name + '.txt')
    if not os.path.exists(path):
        print(f'generating {path} ...', file=sys.stderr)
        subprocess.run([sys.executable, os.path.join(ROOT, 'bench', 'make_corpus.py'), make[0], make[1], path], check=True)
    return path


def run_measured(cmd, env=None):
    """Runs cmd under /usr/bin/time-like accounting: returns (seconds, peak RSS MB, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    # communicate() reaps the child itself, so read the pipes first and reap with wait4.
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f'{" ".join(cmd[:3])} failed ({proc.returncode}): {err.decode(errors="replace")[-2000:]}')
    return elapsed, usage.ru_maxrss / 1024, out.decode()


def rows(text):
    """The (word, count) rows a tool printed, ignoring headers and comments."""
    result = []
    for line in text.splitlines():
        parts = line.split('\t')
        if len(parts) == 2 and parts[1].isdigit():
            result.append((parts[0], int(parts[1])))
    return result


def tools(args):
    found = {}
    for cores in args.cores:
        found[f'runner --cores {cores}'] = lambda path, thr, cores=cores: [
            RUNNER, 'run', os.path.join(ROOT, 'bench', 'wordcount.yaml'), '-q', '--cores', str(cores),
            '--set', f'source.path={path}', '--set', f'transforms.3.where=count >= {thr}']
    # The plan's variants, on the most cores: a filter on the word before the count (fused by
    # the rule), and every step run as itself (--no-fusion: the general operators).
    cores = args.cores[-1]
    found[f'runner + filter before count, --cores {cores}'] = lambda path, thr: [
        RUNNER, 'run', os.path.join(ROOT, 'bench', 'wordcount_filtered.yaml'), '-q', '--cores', str(cores),
        '--set', f'source.path={path}', '--set', f'transforms.4.where=count >= {thr}']
    found[f'runner --no-fusion --cores {cores}'] = lambda path, thr: [
        RUNNER, 'run', os.path.join(ROOT, 'bench', 'wordcount.yaml'), '-q', '--no-fusion', '--cores', str(cores),
        '--set', f'source.path={path}', '--set', f'transforms.3.where=count >= {thr}']
    if args.with_peers:
        python = os.path.join(VENV, 'bin', 'python')
        peers = os.path.join(ROOT, 'bench', 'peers')
        found['DuckDB'] = lambda path, thr: [python, os.path.join(peers, 'duckdb_wc.py'), path, str(thr)]
        found['Polars'] = lambda path, thr: [python, os.path.join(peers, 'polars_wc.py'), path, str(thr)]
        if args.with_spark:
            found['PySpark RDD'] = lambda path, thr: [python, os.path.join(peers, 'spark_romeo.py'), path, str(thr)]
            found['Spark DataFrame'] = lambda path, thr: [python, os.path.join(peers, 'spark_df_wc.py'), path, str(thr)]
    if args.with_spark_connect:
        remote = args.spark_remote
        found['runner --engine spark (Spark Connect)'] = lambda path, thr: [
            RUNNER, 'run', os.path.join(ROOT, 'bench', 'wordcount.yaml'), '-q', '--remote', remote,
            '--set', f'source.path={os.path.abspath(path)}', '--set', f'transforms.3.where=count >= {thr}']
        python = args.spark_python
        peers = os.path.join(ROOT, 'bench', 'peers')
        found['PySpark DataFrame (Spark Connect)'] = lambda path, thr: [
            python, os.path.join(peers, 'spark_connect_df_wc.py'), remote, path, str(thr)]
        # The chapter's RDD code: Spark Connect has no RDDs, so it runs in classic local mode
        # (its own JVM, started by the job) with the same pyspark.
        found['PySpark RDD, the chapter (classic local[*])'] = lambda path, thr: [
            'env', f'PYSPARK_PYTHON={python}', python, os.path.join(peers, 'spark_romeo.py'), path, str(thr)]
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--inputs', nargs='+', default=['romeo', 'romeo1000', 'zipf512'], choices=list(INPUTS))
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--cores', nargs='+', type=int, default=[os.cpu_count() or 1])
    parser.add_argument('--with-peers', action='store_true')
    parser.add_argument('--with-spark', action='store_true')
    parser.add_argument('--with-spark-connect', action='store_true',
                        help='runner --engine spark and a PySpark DataFrame job through the same '
                             'Spark Connect server (bench/spark-connect.sh starts it if needed)')
    parser.add_argument('--spark-remote', default='sc://127.0.0.1:15002')
    parser.add_argument('--no-build', action='store_true')
    args = parser.parse_args()
    if args.with_spark_connect:
        subprocess.run(['bash', os.path.join(ROOT, 'bench', 'spark-connect.sh'), 'start'], check=True)
        args.spark_python = subprocess.run(
            ['bash', os.path.join(ROOT, 'bench', 'spark-connect.sh'), 'python'],
            check=True, capture_output=True, text=True).stdout.strip()
        # The chapter's code strips punctuation with TextBlob.
        if subprocess.run([args.spark_python, '-c', 'import textblob'], capture_output=True).returncode != 0:
            subprocess.run([args.spark_python, '-m', 'pip', 'install', '-q', 'textblob'], check=True)

    if not args.no_build:
        subprocess.run(['cargo', 'build', '--release', '-q', '-p', 'runner'], cwd=ROOT, check=True)
    if args.with_peers and not os.path.exists(os.path.join(VENV, 'bin', 'python')):
        subprocess.run([sys.executable, '-m', 'venv', VENV], check=True)
        packages = ['duckdb', 'polars'] + (['pyspark', 'textblob'] if args.with_spark else [])
        subprocess.run([os.path.join(VENV, 'bin', 'pip'), 'install', '-q'] + packages, check=True)
    env = dict(os.environ, PYSPARK_PYTHON=os.path.join(VENV, 'bin', 'python'), SPARK_LOCAL_IP='127.0.0.1')

    table = ['| input | tool | median s | MB/s | peak RSS MB | time vs runner |', '|---|---|---|---|---|---|']
    for name in args.inputs:
        path = corpus(name)
        threshold = INPUTS[name][1]
        size_mb = os.path.getsize(path) / 1e6
        subprocess.run(['cat', path], stdout=subprocess.DEVNULL, check=True)  # page cache
        candidates = tools(args)
        times = {tool: [] for tool in candidates}
        rss = {tool: 0.0 for tool in candidates}
        answers = {}
        for _ in range(args.runs):
            for tool, command in candidates.items():  # alternate: every tool sees the same load
                seconds, peak, out = run_measured(command(path, threshold), env)
                times[tool].append(seconds)
                rss[tool] = max(rss[tool], peak)
                answers[tool] = rows(out)
        reference = answers[next(iter(candidates))]
        for tool, answer in answers.items():
            # The chapter's RDD code orders by count only: its ties may come in another order.
            same = sorted(answer) == sorted(reference) if 'RDD' in tool else answer == reference
            if not same:
                sys.exit(f'{tool} disagrees on {name}:\n{answer[:5]}\nvs\n{reference[:5]}')
        # Ratios are against the fused word count with the most cores.
        base = statistics.median(times[f'runner --cores {args.cores[-1]}'])
        for tool in candidates:
            median = statistics.median(times[tool])
            table.append(f'| {name} ({size_mb:.1f} MB) | {tool} | {median:.3f} | {size_mb / median:,.0f} | {rss[tool]:.0f} | {median / base:.1f}× |')
        print(f'{name}: all {len(candidates)} tools agree on {len(reference)} rows', file=sys.stderr)
    print('\n'.join(table))


if __name__ == '__main__':
    main()
