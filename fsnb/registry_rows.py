"""The registry's rows read back from its SQLite file: every field checked, so a damaged or
foreign row is a one-line StoreError naming the file, never a crash deep in a caller."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fsnb.definitions import FeatureView, check_name
from fsnb.errors import StoreError, one_line

REGISTRY_HINT = "restore it from a backup (it holds the store's definitions), or move the store away to start a new one"

SCHEMA = """
CREATE TABLE IF NOT EXISTS views (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL,
    definition_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS view_stats (
    name TEXT PRIMARY KEY,
    stats TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS training_sets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at REAL NOT NULL
);
-- An offline write in flight: written before its DuckDB transaction, removed after it.
-- A write that publishes a definition (a new version, or an in-place schema fix) keeps
-- it here, invisible to readers, until the offline store committed its rows.
CREATE TABLE IF NOT EXISTS pending_writes (
    token TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER,
    definition TEXT,
    definition_hash TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# What each table must have (a file that lacks them is not an fsnb registry).
COLUMNS = {
    "views": {"name", "version", "definition", "definition_hash", "created_at"},
    "view_stats": {"name", "stats", "updated_at"},
    "training_sets": {"id", "name", "fingerprint", "detail", "created_at"},
    "kv": {"key", "value"},
}


@dataclass(frozen=True)
class ViewVersion:
    view: FeatureView
    version: int
    created_at: float


def bad(path: Path, what: str, problem: str) -> StoreError:
    return StoreError(f"{path}: {what} is unreadable ({problem}); {REGISTRY_HINT}")


def view_row(path: Path, name: object, version: object, definition: object, created_at: object) -> ViewVersion:
    """One row of views, checked field by field (StoreError naming the file otherwise)."""
    what = f"the definition of {name!r:.60} version {version!r:.20}"
    try:
        check_name("feature view", name)  # type: ignore[arg-type]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            msg = "its version is not a positive integer"
            raise ValueError(msg)
        check_timestamp(created_at)
        if not isinstance(definition, str):
            msg = "the definition is not JSON text"
            raise ValueError(msg)
        view = FeatureView.from_dict(parse_json(definition))
        if view.name != name:
            msg = f"it defines '{view.name}'"
            raise ValueError(msg)
    except (ValueError, TypeError, RecursionError) as exc:
        raise bad(path, what, one_line(exc)) from None
    return ViewVersion(view, version, float(created_at))  # type: ignore[arg-type]


def stats_row(path: Path, name: str, stats: object, updated_at: object) -> dict[str, Any]:
    """One row of view_stats, checked (counts are non-negative integers, times ISO text)."""
    try:
        check_timestamp(updated_at)
        if not isinstance(stats, str):
            msg = "not JSON text"
            raise ValueError(msg)
        value = parse_json(stats)
        if not isinstance(value, dict):
            msg = "not a JSON object"
            raise ValueError(msg)
        for key in ("rows", "entities"):
            n = value.get(key)
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
                msg = f"'{key}' is not a count"
                raise ValueError(msg)
        for key in ("min_ts", "max_ts", "last_ingested"):
            t = value.get(key)
            if t is not None:
                if not isinstance(t, str):
                    msg = f"'{key}' is not a time"
                    raise ValueError(msg)
                datetime.fromisoformat(t)
    except (ValueError, TypeError, RecursionError) as exc:
        raise bad(path, f"the statistics of '{name}'", one_line(exc)) from None
    return value


def training_set_row(path: Path, name: object, fingerprint: object, detail: object, created_at: object) -> dict[str, Any]:
    try:
        if not isinstance(name, str):
            msg = "its name is not a string"
            raise ValueError(msg)
        if not isinstance(fingerprint, str) or not re.fullmatch(r"[0-9a-f]{8,128}", fingerprint):
            msg = "its fingerprint is not a hex digest"
            raise ValueError(msg)
        check_timestamp(created_at)
        if not isinstance(detail, str):
            msg = "its detail is not JSON text"
            raise ValueError(msg)
        value = parse_json(detail)
        if not isinstance(value, dict):
            msg = "its detail is not a JSON object"
            raise ValueError(msg)
        for key in ("features", "columns"):
            items = value.get(key)
            if items is not None and not (isinstance(items, list) and all(isinstance(i, str) for i in items)):
                msg = f"'{key}' is not a list of strings"
                raise ValueError(msg)
        rows = value.get("rows")
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 0):
            msg = "'rows' is not a count"
            raise ValueError(msg)
        views = value.get("views")
        if views is not None and not (
            isinstance(views, dict)
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in views.values())
        ):
            msg = "'views' is not a map of view versions"
            raise ValueError(msg)
    except (ValueError, TypeError, RecursionError) as exc:
        raise bad(path, f"the training set {name!r:.60}", one_line(exc)) from None
    reserved = {"name": name, "fingerprint": fingerprint, "created_at": float(created_at)}  # type: ignore[arg-type]
    return {**value, **reserved}


def parse_json(text: str) -> Any:
    """Parse JSON text from a store file: NaN and Infinity are not JSON, so they are refused."""

    def refuse(constant: str) -> None:
        msg = f"{constant} is not a JSON value"
        raise ValueError(msg)

    return json.loads(text, parse_constant=refuse)


def check_timestamp(value: object) -> float:
    """A time column (seconds since the epoch) as written by fsnb: a finite, plausible number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"a time stamp is {value!r:.40}, not a number of seconds"
        raise ValueError(msg)
    if not 0 <= value < 1e11:
        msg = f"a time stamp {value!r:.40} is out of range"
        raise ValueError(msg)
    return float(value)
