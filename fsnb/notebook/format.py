"""The one formatting module: values, times, durations, counts and tables, as text and
as static HTML (inline styles, no scripts, nothing fetched: a saved notebook shows it as is)."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from fsnb.timeutil import format_duration, format_ttl

BOX = (
    "border:1px solid var(--jp-border-color2,#d0d7de);border-radius:6px;"
    "padding:8px 12px;margin:4px 0;font-size:13px;max-width:100%;box-sizing:border-box;min-width:0"
)
# Wide tables scroll inside their box (at any width, sidebar open or not), never cut.
SCROLL = "overflow-x:auto;max-width:100%"
MUTED = "color:var(--jp-ui-font-color2,#6e7781)"
CELL = "padding:2px 10px 2px 0;text-align:left;white-space:nowrap"
TABLE = "border-collapse:collapse;table-layout:auto;margin:0;width:max-content"
NOTHING = "—"  # a value that does not apply (no leak, no horizon)


def fmt(value: Any) -> str:
    """A short human form of one value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if value.is_integer() and abs(value) < 1e15:
            return f"{value:.1f}"  # keep 10.0 visibly a float
        return f"{value:.6g}"
    if isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
        if value.microsecond:
            text += f".{value.microsecond:06d}"
        return text + (" UTC" if value.tzinfo is not None else "")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return format_ttl(value)
    return str(value)


def fmt_time(iso: str | None) -> str:
    if not iso:
        return "-"
    try:
        return fmt(datetime.fromisoformat(iso))
    except ValueError:
        return iso


def span(lo: Any, hi: Any) -> str:
    """Two times as a range, or one time when both are the same."""
    return fmt(lo) if lo == hi else f"{fmt(lo)} → {fmt(hi)}"


def time_range(stats: Mapping[str, Any]) -> str:
    lo, hi = stats.get("min_ts"), stats.get("max_ts")
    if not lo:
        return "no data"
    return fmt_time(lo) if lo == hi else f"{fmt_time(lo)} → {fmt_time(hi)}"


def duration(value: timedelta | None) -> str:
    """A duration in its largest unit ("4d", "1.5h", "90s"); "—" for none."""
    return format_duration(value, NOTHING)


def percent(rate: float) -> str:
    if rate == 0:
        return "0%"
    if rate < 0.001:
        return "<0.1%"
    return f"{rate * 100:.1f}%"


def plural(n: int, noun: str) -> str:
    """"1 row", "2 rows", "1 entity", "3 entities"."""
    if n == 1:
        return f"{n:,} {noun}"
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u"):
        return f"{n:,} {noun[:-1]}ies"
    return f"{n:,} {noun}s"


def shorten(text: str, limit: int) -> str:
    """text on one line, at most limit characters (an ellipsis marks the cut)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escaped(value: Any) -> str:
    return html.escape(value if isinstance(value, str) else fmt(value))


def html_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, raw: bool = False) -> str:
    """A plain HTML table in a box that scrolls sideways when the table is wider than the
    page; values are escaped unless raw=True (already HTML)."""
    head = "".join(f'<th style="{CELL}">{html.escape(c)}</th>' for c in columns)
    body = []
    for row in rows:
        cells = []
        for v in row:
            if v is None:
                text = f'<span style="{MUTED}">null</span>'
            else:
                text = v if raw and isinstance(v, str) else escaped(v)
            cells.append(f'<td style="{CELL}">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    table = f'<table style="{TABLE}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    return f'<div class="fsnb-scroll" style="{SCROLL}">{table}</div>'


def text_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(c) for c in columns], *([fmt(v) for v in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def card(title: str, parts: Iterable[str]) -> str:
    inner = "".join(p for p in parts if p)
    return f'<div class="fsnb" style="{BOX}"><div style="font-weight:600;margin-bottom:4px">{title}</div>{inner}</div>'


def facts(pairs: Iterable[tuple[str, Any]]) -> str:
    items = [f'<span style="{MUTED}">{html.escape(k)}</span> {escaped(v)}' for k, v in pairs]
    return '<div style="margin:2px 0">' + " &nbsp;·&nbsp; ".join(items) + "</div>"


def section(title: str, content: str) -> str:
    return f'<div style="margin-top:6px"><div style="{MUTED};font-size:12px">{html.escape(title)}</div>{content}</div>'


def muted(text: str) -> str:
    return f'<div style="{MUTED}">{html.escape(text)}</div>'


def pre(text: str) -> str:
    return f'<div style="{SCROLL}"><pre style="margin:2px 0">{html.escape(text)}</pre></div>'


def rows_of(data: Any, limit: int) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and the first rows of an Arrow table or polars/pandas frame."""
    module = type(data).__module__.split(".")[0]
    if module == "pyarrow":
        head = data.slice(0, limit)
        cols = list(head.column_names)
        return cols, [tuple(r[c] for c in cols) for r in head.to_pylist()]
    if module == "pandas":
        head = data.head(limit)
        return [str(c) for c in head.columns], [tuple(r) for r in head.itertuples(index=False)]
    head = data.head(limit)
    return list(head.columns), head.rows()
