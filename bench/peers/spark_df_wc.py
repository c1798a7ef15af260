# Copied from the project's shared material (shared/bench/peers/spark_df_wc.py), unchanged below this line but for the stop-word list's path (beside this file).
# Spark DataFrame word count (JVM-only, no Python UDFs): the fastest way a Spark user would write it.
import os
STOPWORDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'stopwords-english-nltk.txt')
import sys, time
t0 = time.time()
from pyspark.sql import SparkSession, functions as F
path, thr = sys.argv[1], int(sys.argv[2])
sw = open(STOPWORDS).read().split()
spark = SparkSession.builder.appName('wc').master('local[*]').config('spark.sql.shuffle.partitions', 4).getOrCreate()
spark.sparkContext.setLogLevel('ERROR')
t1 = time.time()
punct = r'[!"#$%&\'()*+,\-./:;<=>?@\[\\\]^_`{|}~]'
words = spark.read.text(path).select(F.explode(F.split(F.lower('value'), r'\s+')).alias('w')).select(F.regexp_replace('w', punct, '').alias('w'))
res = words.filter((F.col('w') != '') & ~F.col('w').isin(sw)).groupBy('w').count().filter(F.col('count') >= thr).orderBy(F.desc('count'), 'w').collect()
t2 = time.time()
for r in res[:30]: print(f"{r['w']}\t{r['count']}")
print(f'# startup {t1-t0:.2f}s job {t2-t1:.2f}s rows {len(res)}', file=sys.stderr)
