#!/usr/bin/env python3
"""What a pass-through plugin costs in the romeo x1000 word count: the same pipeline without a
plugin, with the Rust pass-through (plugins/faulty with no fault) and with the C one
(plugins/c_passthrough), all on the unfused path (a plugin between tokenize and group_count
stops the fused loop, so the fair comparison is --no-fusion on both sides). Alternates runs and
prints medians.

    python3 bench/plugin_overhead.py [--runs 5]
"""
import argparse, os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', type=int, default=5)
    args = parser.parse_args()
    subprocess.run(['cargo', 'build', '--release', '-q', '-p', 'runner', '-p', 'faulty'], cwd=ROOT, check=True)
    corpus = os.path.join(ROOT, 'bench', 'corpora', 'romeo1000.txt')
    if not os.path.exists(corpus):
        os.makedirs(os.path.dirname(corpus), exist_ok=True)
        subprocess.run([sys.executable, os.path.join(ROOT, 'bench', 'make_corpus.py'), 'romeo', '1000', corpus], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        c_lib = os.path.join(tmp, 'libc_passthrough.so')
        subprocess.run(['cc', '-shared', '-fPIC', '-O2', '-D_GNU_SOURCE', '-I', os.path.join(ROOT, 'plugins/sdk/include'),
                        '-o', c_lib, os.path.join(ROOT, 'plugins/c_passthrough/passthrough.c')], check=True)
        def pipeline(name, plugin):
            step = f'  - {{type: plugin, path: {plugin}}}\n' if plugin else ''
            path = os.path.join(tmp, name + '.yaml')
            with open(path, 'w') as f:
                f.write(f"name: {name}\nsource: {{type: file, path: {corpus}}}\ntransforms:\n  - {{type: tokenize}}\n  - {{type: stopwords}}\n{step}"
                        "  - {type: group_count, by: word}\n  - {type: filter, where: count >= 60000}\n  - {type: sort, by: [count desc, word]}\n"
                        "sinks:\n  - {type: stdout, format: tsv}\n")
            return path
        cases = {
            'no plugin': pipeline('none', None),
            'Rust pass-through plugin': pipeline('rust', os.path.join(ROOT, 'target/release/libfaulty.so')),
            'C pass-through plugin': pipeline('c', c_lib),
        }
        times = {case: [] for case in cases}
        outputs = {}
        for _ in range(args.runs):
            for case, path in cases.items():
                start = time.perf_counter()
                out = subprocess.run([os.path.join(ROOT, 'target/release/runner'), 'run', path, '--no-fusion', '-q'], capture_output=True, check=True).stdout
                times[case].append(time.perf_counter() - start)
                outputs[case] = out
        if len(set(outputs.values())) != 1:
            sys.exit('the outputs differ')
        base = statistics.median(times['no plugin'])
        print('| pipeline (romeo x1000, --no-fusion) | median s | vs no plugin |')
        print('|---|---|---|')
        for case in cases:
            median = statistics.median(times[case])
            print(f'| {case} | {median:.3f} | {100 * (median / base - 1):+.1f} % |')

if __name__ == '__main__':
    main()
