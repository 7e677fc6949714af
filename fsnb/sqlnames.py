"""Quoting and naming for SQL built by fsnb: identifiers are always quoted, never pasted."""

from __future__ import annotations

import re
from collections.abc import Iterable

from fsnb.errors import InvalidDefinition

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_RE = re.compile(r"^_+fsnb", re.IGNORECASE)  # fsnb's own columns (validation.RESERVED)


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        shown = repr(name) if isinstance(name, str) else f"{name!r} ({type(name).__name__})"
        msg = f"{kind} name {shown} is not valid; use letters, digits and '_' (not starting with a digit)"
        raise InvalidDefinition(msg)
    if kind != "feature view" and _RESERVED_RE.match(name):
        msg = f"{kind} name {name!r} is reserved: fsnb's own columns start with '_fsnb'; rename it"
        raise InvalidDefinition(msg)
    return name


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
