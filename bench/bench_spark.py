"""The Spark engine's point-in-time join against a hand-written Spark SQL query giving the same rows.

Data (generated in Spark, never on the driver): --features rows over --entities keys
(random event times over a year) ingested as a Spark DataFrame into a Delta table by
SparkOfflineStore, and --labels label rows (random keys and times) in Parquet. Both
sides run in one local SparkSession on the same files and produce every label row once,
ordered by its row number, with the chosen row's features; each result is computed in
full into Spark's no-op sink (nothing collected). The two results are checked equal
(row count and an order-independent hash of every row). Runs alternate; the best of
--repeat is kept, after one warm-up run of each.

The hand-written side is the usual Spark SQL answer to "as-of join" (Spark SQL has
none): union labels and features, and `last(..., true)` over a window per key ordered
by time, labels after features at equal times, ties by ingestion order.

Usage: python bench/bench_spark.py [--labels N] [--features N] [--entities N] [--repeat R]
       [--grow 1000000,5000000,10000000] [--partitions P] [--json]
--grow runs N labels x N feature rows for each N and reports how both sides grow.
Target (DESIGN section 8): fsnb <= 1.5x the hand-written query.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from typing import Any

from common import print_result

TARGET = 1.5

HAND_WRITTEN = """
WITH u AS (
  SELECT user_id, event_timestamp AS t, 0 AS kind, _fsnb_seq AS seq, CAST(NULL AS BIGINT) AS row,
         named_struct('clicks', clicks, 'score', score) AS f
  FROM feats
  UNION ALL
  SELECT user_id, event_timestamp, 1, NULL, row, NULL FROM labels
), w AS (
  SELECT row, kind, last(f, true) OVER (
    PARTITION BY user_id ORDER BY t, kind, seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS f
  FROM u
)
SELECT row AS __fsnb_row, f.clicks AS clicks, f.score AS score FROM w WHERE kind = 1 ORDER BY row
"""


def _setup(spark: Any, tmp: str, labels: int, features: int, entities: int) -> tuple[Any, Any, Any, float]:
    import duckdb
    from pyspark.sql import functions as F

    import fsnb
    from fsnb.backends.spark_offline import SparkOfflineStore
    from fsnb.selection import ViewSelection

    start = 1_704_067_200_000_000  # 2024-01-01 in microseconds
    year = 365 * 86_400 * 1_000_000
    feats = spark.range(features).select(
        (F.rand(1) * entities).cast("long").alias("user_id"),
        F.timestamp_micros((F.lit(start) + F.rand(2) * year).cast("long")).alias("event_timestamp"),
        (F.rand(3) * 1000).cast("long").alias("clicks"),
        F.rand(4).alias("score"),
    )
    engine = SparkOfflineStore(f"{tmp}/warehouse", spark)
    batch = engine.check_frame(duckdb.connect(), fsnb.FeatureView("user_stats", entities=["user_id"]), feats)
    t = time.perf_counter()
    engine.write(batch)
    ingest_s = time.perf_counter() - t
    spark.range(labels).select(
        F.col("id").alias("row"),
        (F.rand(5) * entities).cast("long").alias("user_id"),
        F.timestamp_micros((F.lit(start) + F.rand(6) * year).cast("long")).alias("event_timestamp"),
    ).write.parquet(f"{tmp}/labels")
    label_frame = spark.read.parquet(f"{tmp}/labels")
    label_frame.createOrReplaceTempView("labels")
    stored = engine._snapshot(engine._table("user_stats"), "user_stats")
    stored.createOrReplaceTempView("feats")
    ours = engine.point_in_time(
        label_frame.select(F.col("row").alias("__fsnb_row"), F.col("event_timestamp").alias("__fsnb_t"), "user_id"),
        [ViewSelection(batch.view, ["clicks", "score"], ["clicks", "score"])],
        {"user_id": "BIGINT"},
    )
    raw = spark.sql(HAND_WRITTEN)
    return ours, raw, engine, ingest_s


def _timed(frame: Any) -> float:
    t = time.perf_counter()
    frame.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - t


def _fingerprint(frame: Any) -> tuple[int, int, int]:
    from pyspark.sql import functions as F

    row = frame.agg(
        F.count(F.lit(1)),
        F.sum(F.xxhash64("__fsnb_row", "clicks", "score") % (1 << 32)),
        F.count("clicks"),
    ).collect()[0]
    return int(row[0]), int(row[1] or 0), int(row[2])


def run_size(spark: Any, labels: int, features: int, entities: int, repeat: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        ours, raw, _, ingest_s = _setup(spark, tmp, labels, features, entities)
        same = _fingerprint(ours)
        assert same == _fingerprint(raw), "the two queries disagree"
        assert same[0] == labels
        _timed(raw), _timed(ours)  # warm-up: JIT, file listing, broadcast decisions
        raw_runs, our_runs = [], []
        for _ in range(repeat):
            raw_runs.append(_timed(raw))
            our_runs.append(_timed(ours))
    raw_s, our_s = min(raw_runs), min(our_runs)
    return {
        "size": f"{labels:,} labels x {features:,} feature rows ({entities:,} entities)",
        "raw_s": round(raw_s, 2),
        "fsnb_s": round(our_s, 2),
        "time_ratio": round(our_s / raw_s, 2),
        "ingest_s": round(ingest_s, 2),
        "rows_with_features": same[2],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--grow", type=str, default="", help="comma-separated sizes N: N labels x N rows each")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from fsnb.backends.spark_util import local_session

    spark = local_session(args.partitions, {"spark.driver.memory": "4g"})
    if args.grow:
        sizes = [int(s) for s in args.grow.split(",") if s]
        steps = []
        for n in sizes:
            steps.append(run_size(spark, n, n, args.entities, args.repeat))
            print(json.dumps(steps[-1]), file=sys.stderr, flush=True)  # progress: big sizes take minutes
        first = steps[0]
        result: dict[str, object] = {
            "bench": "spark_point_in_time_growth",
            "steps": steps,
            "raw_growth": [round(float(s["raw_s"]) / float(first["raw_s"]), 2) for s in steps],  # type: ignore[arg-type]
            "fsnb_growth": [round(float(s["fsnb_s"]) / float(first["fsnb_s"]), 2) for s in steps],  # type: ignore[arg-type]
            "ok": all(float(s["time_ratio"]) <= TARGET for s in steps),  # type: ignore[arg-type]
            "target": f"time <= {TARGET}x at every size",
        }
    else:
        step = run_size(spark, args.labels, args.features, args.entities, args.repeat)
        result = {"bench": "spark_point_in_time", **step, "ok": float(step["time_ratio"]) <= TARGET,  # type: ignore[arg-type]
                  "target": f"time <= {TARGET}x"}
    spark.stop()
    print_result(result, args.json)


if __name__ == "__main__":
    main()
