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
