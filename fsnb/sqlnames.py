"""Quoting and naming for SQL built by fsnb: identifiers are always quoted, never pasted."""

from __future__ import annotations

from collections.abc import Iterable


def q(identifier: str) -> str:
    """Quote one SQL identifier (DuckDB and SQLite share the double-quote rule)."""
    return '"' + identifier.replace('"', '""') + '"'


def qlist(identifiers: Iterable[str], prefix: str = "") -> str:
    return ", ".join(f"{prefix}{q(i)}" for i in identifiers)


def offline_table(view_name: str) -> str:
    return q(f"fv__{view_name}")


def online_table(view_name: str) -> str:
    return q(f"ov__{view_name}")


# System columns kept next to the user's columns in the offline store.
SEQ = "_fsnb_seq"  # global ingestion order: "ingested last wins" on ties
INGESTED_AT = "_fsnb_ingested_at"  # when fsnb stored the row (as_of_ingestion without created)
ENTRY = "_fsnb_entry"  # streaming log entry id (dedupes replays); NULL for batch ingest
SYSTEM_COLUMNS = (SEQ, INGESTED_AT, ENTRY)

# The offline store's own tables: one row of bookkeeping per view, and per view the
# distinct entity keys it holds (counts entities incrementally).
OFFLINE_META = "_fsnb_offline_meta"
# Event and created times in the offline store keep nanoseconds, so they compare exactly.
EVENT_TIME_TYPE = "TIMESTAMPTZ_NS"


def keys_table(view_name: str) -> str:
    return q(f"_fsnb_keys__{view_name}")
