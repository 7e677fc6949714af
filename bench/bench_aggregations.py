"""Window aggregations: fsnb's planner against a hand-written DuckDB query, and the online read.

Data: --events transactions (amount, 5% null) over --entities keys, random times over a
year, stored by fsnb's register (and, for the raw side, as a plain DuckDB table), and
--labels label rows (random keys and times). Features: sum(amount) 7d, mean(amount) 30d,
count(*) 1d, each over (t - window, t]. Both sides read the same labels from Parquet and
return a polars frame with every label row in input order; each runs in its own fresh
process (best of --repeat, interleaved), writes its values to Parquet after the clock
stops, and the values are checked equal (counts exactly, sums/means to 1e-9).

The hand-written query puts the labels into the event stream and reads each window with
a RANGE frame over the timestamps (INTERVAL 'w' - 1 microsecond preceding: the open end);
it is also timed over integer epoch microseconds (raw_epoch_s), and "ok" checks the
target against the faster of the two.
--asof also times the other natural plan (running sums per key read with ASOF at t and at
t - window), for information.

Online: the view's recent events are materialized into SQLite at the end of the year, and
one entity's three aggregations are read --reads times (random keys): p50 and p99.

Usage: python bench/bench_aggregations.py [--full] [--labels N] [--events N] [--entities N] [--repeat R] [--json]
Defaults are a quick size; --full is 1M labels x 10M events (100K keys).
Targets (DESIGN section 8): time <= 2x the hand-written query; online p50 < 100 us.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import polars as pl
from common import print_result

TIME_TARGET = 2.0
ONLINE_P50_US = 100.0

SETUP = textwrap.dedent(
    """
    import sys, numpy as np, polars as pl, duckdb, fsnb
    out, n_labels, n_events, n_entities = sys.argv[1], *map(int, sys.argv[2:5])
    rng = np.random.default_rng(15)
    start = np.datetime64("2024-01-01T00:00:00", "us").astype(np.int64)
    year = 365 * 86_400 * 1_000_000
    amount = np.round(rng.random(n_events) * 100, 2)
    events = pl.DataFrame({
        "user_id": rng.integers(0, n_entities, n_events),
        "ts": pl.Series(start + rng.integers(0, year, n_events)).cast(pl.Datetime("us", "UTC")),
        "amount": pl.Series(amount).set(pl.Series(rng.random(n_events) < 0.05), None),
    })
    labels = pl.DataFrame({
        "user_id": rng.integers(0, n_entities, n_labels),
        "event_timestamp": pl.Series(start + rng.integers(0, year, n_labels)).cast(pl.Datetime("us", "UTC")),
        "label": rng.integers(0, 2, n_labels),
    })
    labels.write_parquet(f"{out}/labels.parquet")
    store = fsnb.FeatureStore(f"{out}/store")
    store.register(fsnb.FeatureView("txns", entities=["user_id"], timestamp_field="ts"), events)
    store.close()
    con = duckdb.connect(f"{out}/raw.duckdb")
    con.register("events", events.to_arrow())
    con.execute("CREATE TABLE txns AS SELECT * FROM events")
    con.close()
    """
)

RAW = textwrap.dedent(
    """
    import sys, time, duckdb, numpy as np, polars as pl, pyarrow as pa
    out, which = sys.argv[1], sys.argv[2]
    labels = pl.read_parquet(f"{out}/labels.parquet")
    WINDOWED = '''
    WITH s AS (
      SELECT user_id, ts, amount, 1 AS ev, NULL::BIGINT AS row FROM txns
      UNION ALL SELECT user_id, event_timestamp, NULL, NULL, row FROM l)
    SELECT
      CAST(sum(amount) OVER (PARTITION BY user_id ORDER BY ts
           RANGE BETWEEN INTERVAL 7 DAYS - INTERVAL 1 MICROSECOND PRECEDING AND CURRENT ROW) AS DOUBLE) AS amount_sum_7d,
      avg(amount) OVER (PARTITION BY user_id ORDER BY ts
           RANGE BETWEEN INTERVAL 30 DAYS - INTERVAL 1 MICROSECOND PRECEDING AND CURRENT ROW) AS amount_mean_30d,
      count(ev) OVER (PARTITION BY user_id ORDER BY ts
           RANGE BETWEEN INTERVAL 1 DAY - INTERVAL 1 MICROSECOND PRECEDING AND CURRENT ROW) AS count_1d
    FROM s QUALIFY ev IS NULL ORDER BY row
    '''
    # The same query over integer epoch microseconds: "1 microsecond before" becomes an
    # integer offset, and RANGE frames over BIGINT measured much faster than over TIMESTAMPTZ.
    D = 86_400_000_000
    EPOCH = f'''
    WITH s AS (
      SELECT user_id, epoch_us(ts) AS t, amount, 1 AS ev, NULL::BIGINT AS row FROM txns
      UNION ALL SELECT user_id, epoch_us(event_timestamp), NULL, NULL, row FROM l)
    SELECT
      CAST(sum(amount) OVER (PARTITION BY user_id ORDER BY t RANGE BETWEEN {7 * D - 1} PRECEDING AND CURRENT ROW) AS DOUBLE)
        AS amount_sum_7d,
      avg(amount) OVER (PARTITION BY user_id ORDER BY t RANGE BETWEEN {30 * D - 1} PRECEDING AND CURRENT ROW)
        AS amount_mean_30d,
      count(ev) OVER (PARTITION BY user_id ORDER BY t RANGE BETWEEN {D - 1} PRECEDING AND CURRENT ROW) AS count_1d
    FROM s QUALIFY ev IS NULL ORDER BY row
    '''
    ASOF = '''
    WITH p AS (
      SELECT user_id, ts, count(*) OVER w AS n, count(amount) OVER w AS na, sum(amount) OVER w AS sa FROM txns
      WINDOW w AS (PARTITION BY user_id ORDER BY ts RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))
    SELECT
      CASE WHEN coalesce(u.na, 0) > coalesce(a.na, 0) THEN u.sa - coalesce(a.sa, 0) END AS amount_sum_7d,
      (u.sa - coalesce(b.sa, 0)) / nullif(coalesce(u.na, 0) - coalesce(b.na, 0), 0) AS amount_mean_30d,
      coalesce(u.n, 0) - coalesce(c.n, 0) AS count_1d
    FROM l
    ASOF LEFT JOIN p u ON l.user_id = u.user_id AND l.event_timestamp >= u.ts
    ASOF LEFT JOIN p a ON l.user_id = a.user_id AND l.event_timestamp - INTERVAL 7 DAYS >= a.ts
    ASOF LEFT JOIN p b ON l.user_id = b.user_id AND l.event_timestamp - INTERVAL 30 DAYS >= b.ts
    ASOF LEFT JOIN p c ON l.user_id = c.user_id AND l.event_timestamp - INTERVAL 1 DAY >= c.ts
    ORDER BY l.row
    '''
    t = time.perf_counter()
    con = duckdb.connect(f"{out}/raw.duckdb", read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    keys = labels.select("user_id", "event_timestamp").to_arrow().append_column("row", pa.array(np.arange(labels.height)))
    con.register("l", keys)
    result = pl.from_arrow(con.sql({"windowed": WINDOWED, "epoch": EPOCH, "asof": ASOF}[which]).to_arrow_table())
    frame = labels.hstack(result)
    con.close()
    elapsed = time.perf_counter() - t
    frame.write_parquet(f"{out}/raw_{which}.parquet")
    print(elapsed, frame.height)
    """
)

FSNB = textwrap.dedent(
    """
    import sys, time, numpy as np, polars as pl, pyarrow as pa
    from fsnb import FeatureStore
    from fsnb.aggregation import Aggregation
    from fsnb.aggregation_sql import aggregate
    out = sys.argv[1]
    labels = pl.read_parquet(f"{out}/labels.parquet")
    aggs = [Aggregation("amount", "sum", "7d"), Aggregation("amount", "mean", "30d"), Aggregation(None, "count", "1d")]
    t = time.perf_counter()
    store = FeatureStore(f"{out}/store")
    view = store.get_feature_view("txns")
    # what get_historical_features hands an engine: row ids, label time, keys
    arrow = labels.select("user_id", "event_timestamp").to_arrow().rename_columns(["user_id", "__fsnb_t"])
    arrow = arrow.append_column("__fsnb_row", pa.array(np.arange(labels.height, dtype=np.int64)))
    with store.offline.connect() as con:
        result = aggregate(con, arrow, view, aggs, dict(view.entity_types))
    frame = labels.hstack(pl.from_arrow(result).drop("__fsnb_row"))
    elapsed = time.perf_counter() - t
    store.close()
    frame.write_parquet(f"{out}/fsnb.parquet")
    print(elapsed, frame.height)
    """
)

ONLINE = textwrap.dedent(
    """
    import sys, time, random, statistics
    from datetime import datetime, timezone
    from fsnb import FeatureStore
    from fsnb.aggregation import Aggregation
    from fsnb.online_windows import WindowStore
    out, n_entities, reads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    aggs = [Aggregation("amount", "sum", "7d"), Aggregation("amount", "mean", "30d"), Aggregation(None, "count", "1d")]
    store = FeatureStore(f"{out}/store")
    view = store.get_feature_view("txns")
    now = int(datetime(2024, 12, 31, tzinfo=timezone.utc).timestamp() * 1_000_000)
    windows = WindowStore(f"{out}/windows.sqlite")
    t = time.perf_counter()
    with store.offline.connect() as con:
        kept = windows.materialize(con, view, aggs, now_us=now)
    materialize_s = time.perf_counter() - t
    rng = random.Random(1)
    keys = [rng.randrange(n_entities) for _ in range(reads)]
    for k in keys[:1000]:
        windows.read(view, aggs, {"user_id": k}, now_us=now)  # warm the page cache
    times = []
    for k in keys:
        t = time.perf_counter_ns()
        windows.read(view, aggs, {"user_id": k}, now_us=now)
        times.append(time.perf_counter_ns() - t)
    times.sort()
    print(times[len(times) // 2] / 1000, times[int(len(times) * 0.99)] / 1000, kept, materialize_s)
    """
)


def _run(code: str, *args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1].split()


def _check_equal(tmp: str, which: str) -> None:
    ours = pl.read_parquet(f"{tmp}/fsnb.parquet")
    raw = pl.read_parquet(f"{tmp}/raw_{which}.parquet")
    assert ours["count_1d"].cast(pl.Int64).equals(raw["count_1d"].cast(pl.Int64)), f"count_1d differs from {which}"
    for col in ("amount_sum_7d", "amount_mean_30d"):
        a, b = ours[col], raw[col].cast(pl.Float64)
        assert a.is_null().equals(b.is_null()), f"{col}: nulls differ from {which}"
        both = pl.DataFrame({"a": a, "b": b}).drop_nulls()
        worst = both.select(((pl.col("a") - pl.col("b")).abs() / pl.col("b").abs().clip(1.0)).max()).item()
        assert worst is None or worst <= 1e-9, f"{col} differs from {which} by {worst}"


def run(labels: int, events: int, entities: int, repeat: int, reads: int, asof: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-c", SETUP, tmp, str(labels), str(events), str(entities)], check=True)
        raw_runs, epoch_runs, asof_runs, ours_runs = [], [], [], []
        for _ in range(repeat):  # interleaved, so drift on a noisy machine hits both sides
            raw_runs.append(float(_run(RAW, tmp, "windowed")[0]))
            ours_runs.append(float(_run(FSNB, tmp)[0]))
            epoch_runs.append(float(_run(RAW, tmp, "epoch")[0]))
            if asof:
                asof_runs.append(float(_run(RAW, tmp, "asof")[0]))
        for which in ("windowed", "epoch", *(("asof",) if asof else ())):
            _check_equal(tmp, which)
        p50, p99, kept, mat_s = _run(ONLINE, tmp, str(entities), str(reads))
    raw_t, ours_t = min(raw_runs), min(ours_runs)
    result: dict[str, object] = {
        "bench": "aggregations",
        "size": f"{labels:,} labels x {events:,} events ({entities:,} keys); sum 7d, mean 30d, count 1d",
        "raw_s": round(raw_t, 3),
        "fsnb_s": round(ours_t, 3),
        "time_ratio": round(ours_t / raw_t, 2),
        "raw_epoch_s": round(min(epoch_runs), 3),
        "time_ratio_vs_epoch": round(ours_t / min(epoch_runs), 2),
    }
    if asof:
        result["raw_asof_prefix_s"] = round(min(asof_runs), 3)
    result.update({
        "online_p50_us": round(float(p50), 1),
        "online_p99_us": round(float(p99), 1),
        "online_events_kept": int(kept),
        "online_materialize_s": round(float(mat_s), 2),
        "ok": ours_t / min(raw_t, min(epoch_runs)) <= TIME_TARGET and float(p50) < ONLINE_P50_US,
        "target": f"time <= {TIME_TARGET}x, online p50 < {ONLINE_P50_US:g} us",
    })
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="1M labels x 10M events, 100K keys")
    parser.add_argument("--labels", type=int)
    parser.add_argument("--events", type=int)
    parser.add_argument("--entities", type=int)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--asof", action="store_true", help="also time the running-sum + ASOF plan")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    labels, events, entities = (1_000_000, 10_000_000, 100_000) if args.full else (100_000, 1_000_000, 10_000)
    result = run(args.labels or labels, args.events or events, args.entities or entities, args.repeat, args.reads, args.asof)
    print_result(result, args.json)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
