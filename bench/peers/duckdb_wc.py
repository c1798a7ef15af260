# Copied from the project's shared material (shared/bench/peers/duckdb_wc.py), unchanged below this line but for the stop-word list's path (beside this file).
import os
STOPWORDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'stopwords-english-nltk.txt')
import sys, time, duckdb
path, thr = sys.argv[1], int(sys.argv[2])
t0 = time.time()
con = duckdb.connect()
sw = open(STOPWORDS).read().split()
con.execute("CREATE TABLE stop AS SELECT unnest($1::VARCHAR[]) AS w", [sw])
q = r"""
WITH lines AS (SELECT line FROM read_csv($1, header=false, delim=E'\x01', quote='', escape='', columns={'line':'VARCHAR'}, auto_detect=false, strict_mode=false, null_padding=true, parallel=false) WHERE line IS NOT NULL),
words AS (SELECT regexp_replace(unnest(regexp_split_to_array(lower(line), '\s+')), '[!"#$%&''()*+,\-./:;<=>?@\[\\\]^_`{|}~]', '', 'g') AS w FROM lines)
SELECT w, count(*) AS c FROM words WHERE w NOT IN (SELECT w FROM stop) AND w <> '' GROUP BY w HAVING count(*) >= $2 ORDER BY c DESC, w
"""
rows = con.execute(q, [path, thr]).fetchall()
t1 = time.time()
for w, c in rows[:30]: print(f'{w}\t{c}')
print(f'# rows {len(rows)} time {t1-t0:.2f}s', file=sys.stderr)
