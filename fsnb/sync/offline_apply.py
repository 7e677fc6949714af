"""The offline consumer: apply log entries to the offline store (either engine).

Adjacent entries of one view and schema are written as one batch tagged with the run
of log positions they came from (``<log id>:<first>-<last>``); the offline table itself
tells which entries it already holds, and ``OfflineStore.write`` refuses a repeated tag,
so a replay after a crash writes nothing twice (docs/architecture.md, "Streaming").
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from fsnb.sync.log_state import INTENT, OFFLINE, crash_point
from fsnb.sync.views import EntryViews, conform, typed
from fsnb.validation import CheckedBatch

if TYPE_CHECKING:
    from fsnb.backends.sqlite_log import LogEntry
    from fsnb.parts import StoreParts


def apply_offline(parts: StoreParts, entries: Sequence[LogEntry]) -> None:
    """Write the entries to the offline store (the caller commits the offset)."""
    views = EntryViews(parts.registry)
    log = parts.log
    touched: set[str] = set()  # views written to
    offsets = [e.offset for e in entries]
    # Normally entries continue where the last commit left off and nothing needs
    # checking. A previous applier that died between writing and committing left its
    # intent; a replay or an out-of-order delivery starts at or before the commit: then
    # ask the offline tables which entries they already hold.
    check = (
        bool(log.get_setting(INTENT))
        or offsets[0] <= log.committed(OFFLINE)
        or any(b <= a for a, b in itertools.pairwise(offsets))
    )
    log.set_setting(INTENT, str(max(offsets)))
    with parts.offline.connect() as con:
        held: dict[str, list[tuple[int, int]]] = {}
        group: list[tuple[LogEntry, pa.Table]] = []

        def flush() -> None:
            if not group:
                return
            first, last = group[0][0].offset, group[-1][0].offset
            found = views.get(group[0][0].view, group[0][0].version, group[0][0].view_id)
            assert found is not None
            target = typed(parts.caches, *found, group[0][1])
            tables = [conform(t, target) for _, t in group]
            table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
            # The tag names a run of adjacent log positions, all of this view: it says
            # exactly which entries the rows came from.
            written = parts.engine.write(CheckedBatch(table, target, {}), entry=f"{log.log_id}:{first}-{last}")
            if written and parts.spark is not None:  # the DuckDB engine commits its statistics with the rows
                parts.registry.set_stats(target.name, parts.spark.stats(target))
            touched.add(target.name)
            group.clear()
            crash_point("mid_offline_apply")

        for entry in entries:
            found = views.get(entry.view, entry.version, entry.view_id)
            if found is None:
                continue
            if check:
                if entry.view not in held:
                    held[entry.view] = parts.engine.entry_runs(con, entry.view, log.log_id, min(offsets))
                if any(a <= entry.offset <= b for a, b in held[entry.view]):
                    continue  # already written (before a crash, or by an earlier delivery)
            table = entry.table()
            if group:
                prev, prev_table = group[-1]
                adjacent = entry.offset == prev.offset + 1
                same = (entry.view, entry.version) == (prev.view, prev.version) and table.schema == prev_table.schema
                if not (adjacent and same):
                    flush()
            group.append((entry, table))
        flush()
        # Each write above committed its statistics and mirrored them to the registry.
        session = parts.caches.producer
        if session is not None:
            session.stale.update(touched)
    crash_point("after_offline_apply")

