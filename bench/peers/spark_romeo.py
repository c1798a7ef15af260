# Copied from the project's shared material (shared/bench/peers/spark_romeo.py), unchanged below this line but for the stop-word list's path (beside this file).
# The Spark chapter's RDD word count, as written in its notebook (stop words loaded from a file instead of nltk.download).
import os
STOPWORDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'stopwords-english-nltk.txt')
import sys, time
t0 = time.time()
from pyspark import SparkConf, SparkContext
from textblob.utils import strip_punc
from operator import add, itemgetter
path = sys.argv[1]; threshold = int(sys.argv[2]) if len(sys.argv) > 2 else 60
stop_words = open(STOPWORDS).read().split()
conf = SparkConf().setAppName('RomeoAndJulietCounter').setMaster('local[*]')
sc = SparkContext(conf=conf)
sc.setLogLevel('ERROR')
t1 = time.time()
tokenized = sc.textFile(path).flatMap(lambda line: line.lower().split()).map(lambda word: strip_punc(word, all=True))
filtered = tokenized.filter(lambda word: word not in stop_words)
word_counts = filtered.map(lambda word: (word, 1)).reduceByKey(add)
filtered_counts = word_counts.filter(lambda item: item[1] >= threshold)
sorted_items = sorted(filtered_counts.collect(), key=itemgetter(1), reverse=True)
t2 = time.time()
for word, count in sorted_items:
    print(f'{word}\t{count}')
sc.stop()
print(f'# startup {t1-t0:.2f}s job {t2-t1:.2f}s', file=sys.stderr)
