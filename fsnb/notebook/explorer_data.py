"""The leakage explorer's data: small frames cut from a LeakageReport's rows for the
charts (a sample for the overview, one entity's history for the timeline) and the texts
people read (times in UTC to the minute, keys with their names). No joins: the report
computed everything; this only selects, formats and labels.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import polars as pl

from fsnb.leakage_columns import HORIZON, LEAKED, NAIVE, NAIVE_TIME, PIT_TIME, format_duration

if TYPE_CHECKING:
    from fsnb.leakage import LeakageReport


def show(value: Any) -> str:
    """A value as people read it: times in UTC to the minute, floats to 4 digits."""
    if value is None:
        return "null"
    if isinstance(value, datetime):
        text = value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M") if value.tzinfo else value.strftime("%Y-%m-%d %H:%M")
        return text.removesuffix(" 00:00")
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def iso(value: Any) -> str:
    """A time as the ISO UTC text Vega-Lite reads (milliseconds, Z)."""
    from fsnb.timeutil import utc

    return utc(value).astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def keys_text(rows: pl.DataFrame, entity_columns: list[str]) -> pl.Series:
    """Each label row's entity key with its names: "user_id=42, region=eu"."""
    parts = [pl.lit(f"{k}=") + pl.col(k).cast(pl.String).fill_null("null") for k in entity_columns]
    return rows.select(pl.concat_str(parts, separator=", ").alias("entity")).to_series()


def overview_frame(
    report: LeakageReport, feature: str, keys: pl.Series, selected: int, sample: int
) -> tuple[pl.DataFrame, tuple[int, int]]:
    """At most ``sample`` label rows, four in five leaky when there are enough, evenly
    spaced in label order, plus the ``selected`` row; and how many of each were taken."""
    name = feature
    rows = report.rows.with_row_index("row")
    ts = report.timestamp_field
    frame = rows.select("row", pl.col(name + LEAKED).alias("leaked"))
    leaky = frame.filter(pl.col("leaked"))
    clean = frame.filter(~pl.col("leaked"))
    take_leaky = min(leaky.height, sample * 4 // 5)
    take_clean = min(clean.height, sample - take_leaky)
    take_leaky = min(leaky.height, sample - take_clean)
    chosen = pl.concat([_evenly(leaky, take_leaky), _evenly(clean, take_clean)])["row"]
    if selected not in set(chosen.to_list()):
        chosen = chosen.append(pl.Series([selected], dtype=chosen.dtype))
    picked = rows[chosen.sort()]
    time = _naive_utc(pl.col(ts), rows.schema[ts])
    data = picked.select(
        "row",
        (pl.col("row") + 1).alias("n"),
        time.dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("label_time"),
        time.dt.strftime("%Y-%m-%d %H:%M").alias("when"),
        pl.col(name + LEAKED).alias("leaked"),
        (pl.col(name + HORIZON).dt.total_seconds(fractional=True) / 86400).fill_null(0.0).alias("horizon_days"),
        pl.when(pl.col(name + LEAKED)).then(pl.lit("leaky")).otherwise(pl.lit("not leaky")).alias("status"),
    ).with_columns(
        keys.gather(picked["row"]).alias("entity"),
        _texts("pit_value", picked[name].to_list()),
        _texts("naive_value", picked[name + NAIVE].to_list()),
        pl.Series("horizon", ["+" + format_duration(h) if h is not None else "no" for h in picked[name + HORIZON].to_list()], dtype=pl.String),
    )
    return data, (take_leaky, take_clean)


def timeline_frame(report: LeakageReport, row: int, feature: str) -> pl.DataFrame:
    """Label row ``row``'s entity history of ``feature``, each point with the join that
    chose it (role) and its texts for the tooltip."""
    name = feature
    history = report.history(row, name)
    rec = report.rows.row(row, named=True)
    pit_time, naive_time = rec[name + PIT_TIME], rec[name + NAIVE_TIME]
    roles = []
    for t in history["event_time"].to_list():
        if pit_time is not None and t == pit_time and naive_time is not None and t == naive_time:
            roles.append("point-in-time = naive")
        elif pit_time is not None and t == pit_time:
            roles.append("point-in-time")
        elif naive_time is not None and t == naive_time:
            roles.append("naive")
        else:
            roles.append("history")
    return history.select(
        pl.col("event_time").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ"),
        # numbers on a quantitative axis; text or other values as categories
        pl.col("value").cast(pl.Float64 if report.feature(name).numeric else pl.String, strict=False),
        pl.Series("role", roles, dtype=pl.String),
        _texts("when", history["event_time"].to_list()),
        _texts("shown", history["value"].to_list()),
    )


def impact_metrics(report: LeakageReport) -> pl.DataFrame:
    """The summary's metric per feature and join, long (feature, join, value), for the
    side-by-side picture when the label is not binary."""
    measured = report.summary.filter(pl.col("naive_metric").is_not_null() & pl.col("pit_metric").is_not_null())
    return pl.concat(
        [
            measured.select("feature", pl.lit("naive join").alias("join"), pl.col("naive_metric").alias("value")),
            measured.select("feature", pl.lit("point-in-time").alias("join"), pl.col("pit_metric").alias("value")),
        ]
    )


def _texts(name: str, values: list[Any]) -> pl.Series:
    return pl.Series(name, [show(v) for v in values], dtype=pl.String)


def _evenly(frame: pl.DataFrame, count: int) -> pl.DataFrame:
    """``count`` rows spread evenly over the frame (deterministic, unlike a random sample)."""
    if count >= frame.height:
        return frame
    if count <= 0:
        return frame.head(0)
    step = frame.height / count
    return frame[[int(i * step) for i in range(count)]]


def _naive_utc(column: pl.Expr, dtype: Any) -> pl.Expr:
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return column.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return column.cast(pl.Datetime("us"))
