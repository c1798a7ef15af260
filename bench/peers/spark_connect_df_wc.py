# The hand-written PySpark DataFrame word count (spark_df_wc.py's job), sent through Spark
# Connect to the same server runner's Spark engine uses: `python spark_connect_df_wc.py
# sc://127.0.0.1:15002 PATH THRESHOLD`. Prints the top 30 as TSV, as bench/wordcount.yaml does.
import os, sys, time
STOPWORDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'stopwords-english-nltk.txt')
t0 = time.time()
from pyspark.sql import SparkSession, functions as F
remote, path, thr = sys.argv[1], os.path.abspath(sys.argv[2]), int(sys.argv[3])
sw = open(STOPWORDS).read().split()
spark = SparkSession.builder.remote(remote).getOrCreate()
t1 = time.time()
punct = r'[!"#$%&\'()*+,\-./:;<=>?@\[\\\]^_`{|}~]'
words = spark.read.text('file://' + path).select(F.explode(F.split(F.lower('value'), r'\s+')).alias('w')).select(F.regexp_replace('w', punct, '').alias('w'))
res = words.filter((F.col('w') != '') & ~F.col('w').isin(sw)).groupBy('w').count().filter(F.col('count') >= thr).orderBy(F.desc('count'), 'w').limit(30).collect()
t2 = time.time()
for r in res: print(f"{r['w']}\t{r['count']}")
print(f'# startup {t1-t0:.2f}s job {t2-t1:.2f}s rows {len(res)}', file=sys.stderr)
