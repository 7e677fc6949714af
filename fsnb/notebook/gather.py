"""What the displays show, read from a store's parts (the renderers in
fsnb.notebook.render take it and never query)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fsnb.definitions import diff_views
from fsnb.notebook.render import ViewEntry, ViewInfo

if TYPE_CHECKING:
    from fsnb.definitions import ViewChange
    from fsnb.parts import StoreParts


def view_entries(parts: StoreParts) -> list[ViewEntry]:
    """Every feature view with its version, statistics and online row count."""
    entries = []
    for name in parts.registry.names():
        latest = parts.registry.latest(name)
        online = parts.online.count(name) if latest.view.online else None
        entries.append(ViewEntry(latest.view, latest.version, parts.registry.stats(name), online))
    return entries


def view_info(parts: StoreParts, name: str, sample: Any = None) -> ViewInfo:
    """One view's definition, statistics, version history (with what changed) and online rows;
    sample: its latest rows, read by the caller."""
    history: list[tuple[int, float, list[ViewChange] | None]] = []
    previous = None
    for v in parts.registry.versions(name):
        history.append((v.version, v.created_at, None if previous is None else diff_views(previous, v.view)))
        previous = v.view
    view = parts.registry.latest(name).view
    online = parts.online.count(name) if view.online else None
    return ViewInfo.of(view, history, parts.registry.stats(name), online, sample)
