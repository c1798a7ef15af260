#!/usr/bin/env python3
"""Records benchmarks and reference answers: runner against Polars and DuckDB on the same files.

    python3 bench/records.py bench      # CSV aggregates (8,000 and 9.4 million groups) and a
                                        # JSON lines filter + group, timed; --only TEXT picks cases
    python3 bench/records.py check      # every aggregate on random data, checked against DuckDB

`bench` generates (deterministically, into bench/corpora/, not committed) a CSV of 10 million
rows x 5 columns and 5 million JSON lines, builds runner in release, and runs each tool
alternately, printing a Markdown table of median wall time, MB/s, peak RSS and time relative to
runner. Every tool must give the same groups and values (floats to 1e-9 relative); the script
stops if one disagrees.

`check` writes random CSV files with nulls, empty groups, Unicode keys and large integers, and
compares every runner aggregate with DuckDB's answer row for row; an i64 sum that overflows must
be an error in runner (DuckDB widens to HUGEINT).

Polars and DuckDB are installed with pip into bench/.venv on first use.
"""
import argparse, json, math, os, random, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPORA = os.path.join(ROOT, 'bench', 'corpora')
VENV = os.path.join(ROOT, 'bench', '.venv')
RUNNER = os.path.join(ROOT, 'target', 'release', 'runner')
PY = os.path.join(VENV, 'bin', 'python')

REGIONS = ['north', 'south', 'east', 'west', 'центр', 'nord-øst', 'sud', 'oeste']


def venv():
    if not os.path.exists(PY):
        subprocess.run([sys.executable, '-m', 'venv', VENV], check=True)
        subprocess.run([os.path.join(VENV, 'bin', 'pip'), 'install', '-q', 'polars', 'duckdb'], check=True)


def make_csv(path, rows):
    """region (8 values), product (1,000), amount (int), price (float), at (RFC 3339)."""
    rng = random.Random(42)
    with open(path, 'w', encoding='utf-8', newline='') as f:
        f.write('region,product,amount,price,at\n')
        base = 1_714_521_600
        chunk = []
        for i in range(rows):
            chunk.append('%s,p%04d,%d,%.2f,%s\n' % (
                REGIONS[rng.randrange(8)], rng.randrange(1000), rng.randrange(1, 500),
                rng.random() * 100, time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(base + i % 86400))))
            if len(chunk) == 100_000:
                f.write(''.join(chunk))
                chunk = []
        f.write(''.join(chunk))


def make_jsonl(path, rows):
    rng = random.Random(7)
    langs = ['en', 'de', 'fr', 'es', 'ja', 'pt', None]
    with open(path, 'w', encoding='utf-8') as f:
        chunk = []
        for i in range(rows):
            obj = {'id': str(10**17 + i), 'lang': langs[rng.randrange(7)],
                   'account': {'acct': 'user%d' % rng.randrange(50_000), 'bot': rng.random() < 0.1},
                   'favourites': rng.randrange(0, 1000), 'text': 'status number %d' % i}
            chunk.append(json.dumps(obj, ensure_ascii=False) + '\n')
            if len(chunk) == 100_000:
                f.write(''.join(chunk))
                chunk = []
        f.write(''.join(chunk))


def corpus(name, make, rows):
    os.makedirs(CORPORA, exist_ok=True)
    path = os.path.join(CORPORA, name)
    if not os.path.exists(path):
        print(f'generating {path} ...', file=sys.stderr)
        make(path + '.tmp', rows)
        os.replace(path + '.tmp', path)
    return path


# Runs a command and reports its wall time and peak RSS on the last line of stderr. The tools
# are started from this small process, not from the script: a child forked from a process that
# holds millions of parsed answers would count that process's memory as its own peak.
LAUNCHER = '''
import os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
sys.stderr.write(f"\\nmeasured {time.perf_counter() - start} {usage.ru_maxrss}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
'''


def measured(cmd, cwd=None):
    proc = subprocess.run([sys.executable, '-c', LAUNCHER, *cmd], capture_output=True, cwd=cwd)
    err = proc.stderr.decode(errors='replace')
    if proc.returncode != 0:
        sys.exit(f'{" ".join(cmd[:4])} failed ({proc.returncode}): {err[-2000:]}')
    _, elapsed, peak = err.strip().splitlines()[-1].split()
    return float(elapsed), int(peak) / 1024, proc.stdout.decode()


def rows_of(jsonl_text):
    """Rows printed as JSON lines, as sorted tuples with floats rounded for comparison."""
    out = []
    for line in jsonl_text.splitlines():
        if line.strip():
            out.append(tuple(json.loads(line).values()))
    return sorted(out, key=lambda r: tuple('' if v is None else str(v) for v in r))


def same(a, b):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if len(x) != len(y):
            return False
        for u, v in zip(x, y):
            if isinstance(u, float) or isinstance(v, float):
                if u is None or v is None or not math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif u != v:
                return False
    return True


POLARS_CSV = '''
import polars as pl, sys
df = pl.read_csv(sys.argv[1]).group_by("region", "product").agg(
    pl.col("amount").sum().alias("total"), pl.col("price").mean().alias("mean"))
df.sort("region", "product").write_ndjson(sys.stdout)
'''
DUCKDB_CSV = '''
import duckdb, sys, json
rows = duckdb.sql(f"SELECT region, product, sum(amount)::BIGINT AS total, avg(price) AS mean FROM read_csv('{sys.argv[1]}') GROUP BY ALL ORDER BY ALL").fetchall()
sys.stdout.write("".join(json.dumps(dict(zip(["region", "product", "total", "mean"], r)), ensure_ascii=False) + "\\n" for r in rows))
'''
POLARS_GROUPS = '''
import polars as pl, sys
df = pl.read_csv(sys.argv[1]).group_by("product", "at").agg(pl.col("amount").sum().alias("total"))
df.sort("product", "at").write_ndjson(sys.stdout)
'''
DUCKDB_GROUPS = '''
import duckdb, sys
duckdb.sql("SET enable_progress_bar = false")  # it would print into the output
duckdb.sql(f"""COPY (SELECT product, "at", sum(amount)::BIGINT AS total FROM read_csv('{sys.argv[1]}', types={{'at': 'VARCHAR'}}) GROUP BY ALL ORDER BY ALL) TO '/dev/stdout' (FORMAT json)""")
'''
DUCKDB_GROUPS_LIMITED = DUCKDB_GROUPS.replace(
    'duckdb.sql("SET enable_progress_bar = false")',
    'duckdb.sql("SET enable_progress_bar = false"); duckdb.sql("SET memory_limit = \'512MiB\'")')
POLARS_JSON = '''
import polars as pl, sys
df = pl.read_ndjson(sys.argv[1]).filter(pl.col("favourites") >= 500).group_by("lang").agg(pl.len().alias("n"))
df.sort("lang").write_ndjson(sys.stdout)
'''
DUCKDB_JSON = '''
import duckdb, sys, json
rows = duckdb.sql(f"SELECT lang, count(*) AS n FROM read_json('{sys.argv[1]}', format='newline_delimited') WHERE favourites >= 500 GROUP BY ALL ORDER BY ALL").fetchall()
sys.stdout.write("".join(json.dumps(dict(zip(["lang", "n"], r)), ensure_ascii=False) + "\\n" for r in rows))
'''
RUNNER_CSV = '''name: bench-csv
source: {type: file, path: %s, format: csv, columns: {region: text, product: text, amount: integer, price: float}}
transforms:
  - type: aggregate
    by: [region, product]
    aggs: {total: sum(amount), mean: avg(price)}
sinks:
  - {type: stdout, format: jsonl}
'''
RUNNER_GROUPS = '''name: bench-groups
source: {type: file, path: %s, format: csv, columns: {product: text, amount: integer, at: text}}
transforms:
  - type: aggregate
    by: [product, at]
    aggs: {total: sum(amount)}
sinks:
  - {type: stdout, format: jsonl}
'''
RUNNER_GROUPS_LIMITED = RUNNER_GROUPS.replace(
    'aggs: {total: sum(amount)}', 'aggs: {total: sum(amount)}\n    memory_limit: 512MiB')
RUNNER_JSON = '''name: bench-jsonl
source: {type: file, path: %s, format: jsonl, columns: {lang: text?, favourites: integer}}
transforms:
  - {type: filter, where: favourites >= 500}
  - {type: aggregate, by: lang, aggs: {n: count()}}
sinks:
  - {type: stdout, format: jsonl}
'''


def bench(args):
    venv()
    subprocess.run(['cargo', 'build', '--release', '-q', '-p', 'runner'], cwd=ROOT, check=True)
    cases = [
        ('csv 10M x 5, aggregate by 2 keys (sum, avg)', corpus('sales10m.csv', make_csv, args.csv_rows), RUNNER_CSV, POLARS_CSV, DUCKDB_CSV),
        ('jsonl 5M, filter + group by 1 key', corpus('statuses5m.jsonl', make_jsonl, args.json_rows), RUNNER_JSON, POLARS_JSON, DUCKDB_JSON),
        ('csv 10M x 5, aggregate by product + timestamp (9.4M groups, sum)', corpus('sales10m.csv', make_csv, args.csv_rows), RUNNER_GROUPS, POLARS_GROUPS, DUCKDB_GROUPS),
        # Both with a memory limit of 512 MiB, past which they spill to disk (Polars has none).
        ('csv 10M x 5, 9.4M groups, memory limited to 512 MiB', corpus('sales10m.csv', make_csv, args.csv_rows), RUNNER_GROUPS_LIMITED, None, DUCKDB_GROUPS_LIMITED),
    ]
    if args.only:
        cases = [case for case in cases if args.only in case[0]]
    table = ['| input | tool | median s | MB/s | peak RSS MB | time vs runner |', '|---|---|---|---|---|---|']
    with tempfile.TemporaryDirectory() as tmp:
        for title, path, pipeline, polars, duck in cases:
            yaml = os.path.join(tmp, 'p.yaml')
            with open(yaml, 'w') as f:
                f.write(pipeline % json.dumps(path))
            tools = {
                'runner': [RUNNER, 'run', yaml, '--quiet', '--cores', str(args.cores)],
                'polars': [PY, '-c', polars, path] if polars else None,
                'duckdb': [PY, '-c', duck, path],
            }
            tools = {tool: cmd for tool, cmd in tools.items() if cmd}
            times = {t: [] for t in tools}
            rss = {}
            answers = {}
            for _ in range(args.runs):
                for tool, cmd in tools.items():
                    elapsed, peak, out = measured(cmd, cwd=tmp)  # DuckDB spills into .tmp here
                    times[tool].append(elapsed)
                    rss[tool] = max(rss.get(tool, 0), peak)
                    if tool not in answers:  # the answers of the first run are compared
                        answers[tool] = rows_of(out)
            for tool in tools:
                if not same(answers[tool], answers['runner']):
                    sys.exit(f'{tool} disagrees with runner on {title}: {answers[tool][:3]} vs {answers["runner"][:3]}')
            size = os.path.getsize(path) / 1e6
            base = statistics.median(times['runner'])
            for tool in tools:
                m = statistics.median(times[tool])
                table.append(f'| {title} | {tool} | {m:.2f} | {size / m:.0f} | {rss[tool]:.0f} | {m / base:.1f}x |')
    print('\n'.join(table))


AGGS = {
    'n': ('count()', 'count(*)'),
    'amounts': ('count(amount)', 'count(amount)'),
    'total': ('sum(amount)', 'sum(amount)::BIGINT'),
    'mean': ('avg(price)', 'avg(price)'),
    'low': ('min(price)', 'min(price)'),
    'high': ('max(name)', 'max(name)'),
    'kinds': ('count_distinct(amount)', 'count(DISTINCT amount)'),
    'big': ('max(amount)', 'max(amount)'),
}


def check(args):
    venv()
    subprocess.run(['cargo', 'build', '--release', '-q', '-p', 'runner'], cwd=ROOT, check=True)
    rng = random.Random(args.seed)
    names = ['ana', 'bo', 'zoë', 'Ωmega', '日本', '', 'x' * 40]
    compared = overflowed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in range(args.cases):
            path = os.path.join(tmp, f'data{case}.csv')
            # Some cases with huge integers (their sums leave i64 in runner: an error there,
            # exactly where DuckDB's exact sum does not fit BIGINT either).
            big = 0.01 if case % 3 == 0 else 0.0
            with open(path, 'w', encoding='utf-8') as f:
                f.write('key,name,amount,price\n')
                for _ in range(rng.randrange(0, 3000)):
                    key = rng.choice(['a', 'b', 'c', '', 'ü', '🦀']) if rng.random() > 0.05 else ''
                    name = rng.choice(names)
                    amount = '' if rng.random() < 0.1 else str(rng.randrange(-2**62, 2**62) if rng.random() < big else rng.randrange(-1000, 1000))
                    price = '' if rng.random() < 0.1 else repr(rng.uniform(-1e6, 1e6))
                    f.write(f'"{key}","{name}",{amount},{price}\n')
            yaml = os.path.join(tmp, 'p.yaml')
            with open(yaml, 'w') as f:
                aggs = ', '.join(f'{k}: "{v[0]}"' for k, v in AGGS.items())
                f.write(f'name: check\nsource: {{type: file, path: {json.dumps(path)}, format: csv, columns: {{key: text?, name: text?, amount: integer?, price: float?}}}}\n'
                        f'transforms:\n  - {{type: aggregate, by: key, aggs: {{{aggs}}}}}\nsinks:\n  - {{type: stdout, format: jsonl}}\n')
            proc = subprocess.run([RUNNER, 'run', yaml, '--quiet'], capture_output=True, text=True)
            sql = ', '.join(f'{v[1]} AS {k}' for k, v in AGGS.items())
            duck = subprocess.run([PY, '-c', f'''
import duckdb, json, sys
try:
    rows = duckdb.sql("SELECT key, {sql} FROM read_csv('{path}', header=true, all_varchar=false, types={{'key':'VARCHAR','name':'VARCHAR','amount':'BIGINT','price':'DOUBLE'}}) GROUP BY key ORDER BY key NULLS FIRST").fetchall()
except (duckdb.OutOfRangeException, duckdb.ConversionException) as e:
    print("OVERFLOW"); sys.exit(0)
for r in rows: print(json.dumps(dict(zip(["key"] + {list(AGGS)!r}, r)), ensure_ascii=False))
'''], capture_output=True, text=True)
            if duck.returncode != 0:
                sys.exit(f'case {case}: DuckDB failed: {duck.stderr[-1500:]}')
            if duck.stdout.strip() == 'OVERFLOW':
                if proc.returncode == 0 or 'integer overflow' not in proc.stderr:
                    sys.exit(f'case {case}: DuckDB overflowed, runner gave exit {proc.returncode}: {proc.stderr[-500:]}')
                overflowed += 1
                continue
            if proc.returncode != 0:
                # Both sum exactly: runner must fail exactly where DuckDB's total leaves BIGINT.
                sys.exit(f'case {case}: runner failed where DuckDB did not: {proc.stderr[-1000:]}')
            # Empty CSV strings are null in both; runner prints keys in key order, nulls first.
            ours, theirs = rows_of(proc.stdout), rows_of(duck.stdout)
            if not same(ours, theirs):
                sys.exit(f'case {case}: runner and DuckDB differ\nrunner: {ours[:5]}\nduckdb: {theirs[:5]}')
            compared += 1
        print(f'{args.cases} random cases: {compared} compared row for row, every aggregate equal to DuckDB\'s; '
              f'{overflowed} where both reported that a sum leaves i64')
        if compared < args.cases // 2:
            sys.exit('too few cases compared')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    b = sub.add_parser('bench')
    b.add_argument('--runs', type=int, default=3)
    b.add_argument('--cores', type=int, default=os.cpu_count())
    b.add_argument('--csv-rows', type=int, default=10_000_000)
    b.add_argument('--json-rows', type=int, default=5_000_000)
    b.add_argument('--only', help='run the cases whose title holds this text')
    c = sub.add_parser('check')
    c.add_argument('--cases', type=int, default=50)
    c.add_argument('--seed', type=int, default=1)
    args = parser.parse_args()
    bench(args) if args.command == 'bench' else check(args)


if __name__ == '__main__':
    main()
