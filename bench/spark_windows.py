#!/usr/bin/env python3
"""Event-time windows as Spark computes them: the reference runner's windows are tested against.

    python3 bench/spark_windows.py tape DIR        # writes the test tape: DIR/epoch-NNN.jsonl
    python3 bench/spark_windows.py spark DIR OUT   # runs it through PySpark, writes OUT (JSON)

`tape` is deterministic (seeded): hashtag events with out-of-order and late event times,
microsecond timestamps, events on window boundaries and a row without a time, one file per
epoch. `spark` reads the files as a stream with `maxFilesPerTrigger=1` and `availableNow`
(one file per micro-batch, as runner's file source takes them with `max_files_per_trigger: 1`)
for each scenario below, and records per batch: the input rows, the watermark, the rows Spark
dropped as late, and the rows `foreachBatch` received. It also runs the same windows as batch
jobs over all the files. Needs `pyspark` (4.0) and Java 17:

    python3 -m venv bench/.venv-spark && bench/.venv-spark/bin/pip install pyspark==4.0.1
    bench/.venv-spark/bin/python bench/spark_windows.py spark runner/tests/data/windows/tape \
        runner/tests/data/windows/spark.json

The committed expected data (runner/tests/data/windows/) was made by exactly these commands.
"""

import json
import os
import random
import sys
from datetime import datetime, timedelta, timezone

TAGS = ["rust", "spark", "flink", "arrow", "duckdb", "polars"]
BASE = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)

# name -> (size, slide, offset, watermark, output mode); durations as Spark writes them.
SCENARIOS = {
    "tumbling_append": ("10 minutes", None, None, "2 minutes", "append"),
    "sliding_append": ("10 minutes", "5 minutes", None, "2 minutes", "append"),
    "sliding_update": ("10 minutes", "5 minutes", None, "2 minutes", "update"),
    "uneven_append": ("10 minutes", "3 minutes", "1 minute", "2 minutes", "append"),
    "tumbling_complete": ("10 minutes", None, None, "2 minutes", "complete"),
}


def stamp(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tape(out_dir):
    rng = random.Random(20261202)
    os.makedirs(out_dir, exist_ok=True)
    epochs = 10
    for epoch in range(epochs):
        lines = []
        # The stream's clock moves 4 minutes an epoch; events are spread around it.
        now = BASE + timedelta(minutes=4 * epoch)
        for _ in range(24):
            t = now + timedelta(microseconds=rng.randrange(0, 4 * 60 * 1_000_000))
            lines.append({"created_at": stamp(t), "tag": rng.choice(TAGS)})
        # Out of order: a little behind the clock, mostly within the watermark's 2 minutes.
        for _ in range(6):
            t = now - timedelta(microseconds=rng.randrange(0, 3 * 60 * 1_000_000))
            lines.append({"created_at": stamp(t), "tag": rng.choice(TAGS)})
        if epoch >= 3:
            # Late: far behind, each with its own tag so that Spark's count of dropped rows
            # (taken after partial aggregation per window and tag) counts events.
            for i, tag in enumerate(rng.sample(TAGS, 2)):
                t = now - timedelta(minutes=16 + 7 * i, seconds=rng.randrange(0, 60))
                lines.append({"created_at": stamp(t), "tag": tag})
        # Exactly on window boundaries (a window's start belongs to it, its end does not).
        if epoch % 3 == 1:
            edge = BASE + timedelta(minutes=5 * epoch)
            lines.append({"created_at": stamp(edge), "tag": "edge"})
        if epoch == 5:
            lines.append({"created_at": None, "tag": "no_time"})
            lines.append({"tag": "missing_time"})
        rng.shuffle(lines)
        with open(os.path.join(out_dir, f"epoch-{epoch:03}.jsonl"), "w") as f:
            for line in lines:
                f.write(json.dumps(line, separators=(",", ":")) + "\n")


def micros(t):
    # Spark hands timestamps to Python as naive datetimes in the session time zone (UTC here).
    return (t.replace(tzinfo=timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


def window_column(F, size, slide, offset):
    if slide is None:
        return F.window("created_at", size)
    if offset is None:
        return F.window("created_at", size, slide)
    return F.window("created_at", size, slide, offset)


def rows_of(df):
    rows = [
        [micros(r["window"]["start"]), micros(r["window"]["end"]), r["tag"], r["count"]]
        for r in df.collect()
    ]
    return sorted(rows)


def spark(tape_dir, out_path):
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("runner-windows-reference")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    schema = "created_at TIMESTAMP, tag STRING"
    files = sorted(os.listdir(tape_dir))
    # Spark's file stream takes files oldest first (by modification time, which a checkout does
    # not keep): copy them with times in name order.
    import shutil
    import tempfile

    ordered = tempfile.mkdtemp(prefix="runner-spark-tape-")
    for i, name in enumerate(files):
        shutil.copy(os.path.join(tape_dir, name), os.path.join(ordered, name))
        os.utime(os.path.join(ordered, name), (1_700_000_000 + i, 1_700_000_000 + i))
    tape_dir = ordered
    result = {"spark": spark.version, "files": files, "streams": {}, "batches": {}}
    for name, (size, slide, offset, watermark, mode) in SCENARIOS.items():
        emitted = {}

        def collect(df, batch_id, emitted=emitted):
            emitted[batch_id] = rows_of(df)

        stream = (
            spark.readStream.schema(schema)
            .option("maxFilesPerTrigger", 1)
            .json(tape_dir)
            .withWatermark("created_at", watermark)
            .groupBy(window_column(F, size, slide, offset), "tag")
            .count()
        )
        query = (
            stream.writeStream.outputMode(mode)
            .foreachBatch(collect)
            .trigger(availableNow=True)
            .option("checkpointLocation", os.path.join("/tmp", f"runner-spark-windows-{os.getpid()}-{name}"))
            .start()
        )
        query.awaitTermination()
        epochs = []
        for progress in query.recentProgress:
            batch = progress["batchId"]
            state = progress["stateOperators"][0] if progress["stateOperators"] else {}
            epochs.append(
                {
                    "epoch": batch,
                    "input_rows": progress["numInputRows"],
                    "watermark": progress.get("eventTime", {}).get("watermark"),
                    "dropped": state.get("numRowsDroppedByWatermark", 0),
                    "state_rows": state.get("numRowsTotal"),
                    "rows": emitted.get(batch, []),
                }
            )
        result["streams"][name] = {
            "size": size,
            "slide": slide,
            "offset": offset,
            "watermark": watermark,
            "mode": mode,
            "epochs": epochs,
        }
        if slide is None or name.endswith("_append"):
            batch = (
                spark.read.schema(schema)
                .json(tape_dir)
                .groupBy(window_column(F, size, slide, offset), "tag")
                .count()
            )
            result["batches"][name] = {"size": size, "slide": slide, "offset": offset, "rows": rows_of(batch)}
    spark.stop()
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "tape":
        tape(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "spark":
        spark(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
