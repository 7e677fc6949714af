"""The jupyter-server extension behind JupyterLab's "Feature Store" sidebar.

``GET {base_url}fsnb/api/store?path=notebooks/.fsnb`` answers read-only JSON about
one store: its feature views (definition, statistics, online freshness) and its
training sets. ``path`` is relative to the server's root directory (an absolute
path is accepted when it lies inside the root); anything that resolves outside
the root is refused.

Only SQLite files are read, through the backends' read-only opens: the registry
(which mirrors each view's offline statistics in ``view_stats``), the online store's
watermarks (``sqlite_online.read_last_updates``) and the feature log's consumer
offsets (``sqlite_log.read_view_lag``). DuckDB is never opened here: its file lock belongs to the kernel that
writes the store, and SQLite in WAL mode lets readers proceed during its writes.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from fsnb import aggregation, aggregation_views
from fsnb.backends.sqlite_log import LOG_FILE, read_view_lag
from fsnb.backends.sqlite_online import ONLINE_FILE, read_last_updates
from fsnb.definitions import format_ttl
from fsnb.errors import FsnbError, StoreError, one_line
from fsnb.registry import Registry, ViewSummary
from fsnb.sqlite_util import readonly_mode

REGISTRY_FILE = "registry.sqlite"
API_PATH = "fsnb/api/store"
T = TypeVar("T")


class StoreNotFound(LookupError):
    """The requested directory holds no fsnb store."""


class OutsideRoot(PermissionError):
    """The requested path resolves outside the server's root directory."""


def _inside(root_dir: Path, path: Path) -> bool:
    return path == root_dir or root_dir in path.parents


def resolve_store_path(root: str | Path, requested: str) -> Path:
    """The absolute store directory for a ``path`` query argument, refusing escapes from root.

    ``requested`` is a file-system path, taken literally: ``%2F`` is three characters of a
    name (tornado has already decoded the query string once), never a separator."""
    root_dir = Path(root).expanduser().resolve()
    if not requested or "\x00" in requested:
        msg = "give the store directory as ?path=, relative to the server root (e.g. notebooks/.fsnb)"
        raise ValueError(msg)
    candidate = Path(requested).expanduser()
    if not candidate.is_absolute():
        candidate = root_dir / requested.lstrip("/")
    resolved = candidate.resolve()
    if not _inside(root_dir, resolved):
        msg = f"store path {requested!r} is outside the server root; open a store below {root_dir}"
        raise OutsideRoot(msg)
    return resolved


def store_file(root_dir: Path, store_dir: Path, name: str) -> Path | None:
    """store_dir/name with its symlinks resolved, or None when there is no such file.

    Refused (OutsideRoot) when the file, or the ``-wal``/``-shm`` that SQLite would open
    beside it, resolves outside the server root; a StoreError when it is not a regular
    file (a directory, a FIFO that would block the server)."""
    link = store_dir / name
    if not link.exists() and not link.is_symlink():
        return None
    target = link.resolve()
    for path in (target, Path(f"{target}-wal").resolve(), Path(f"{target}-shm").resolve()):
        if not _inside(root_dir, path):
            msg = f"{name} in the store links to {path}, outside the server root; fsnb reads only files below {root_dir}"
            raise OutsideRoot(msg)
    if not target.exists():
        return None  # a dangling link inside the root: as if the file were missing
    if not target.is_file():
        msg = f"{link} is not a regular file; an fsnb store keeps {name} as a SQLite file"
        raise StoreError(msg)
    return target


def describe_store(store_dir: Path, root: str | Path | None = None) -> dict[str, Any]:
    """Views, statistics, online freshness and training sets of the store in store_dir.

    Every file is opened read-only and never created (fsnb.registry.readonly_mode); each
    one, symlinks resolved, must lie below root (default: store_dir itself)."""
    root_dir = Path(root if root is not None else store_dir).expanduser().resolve()
    registry_file = store_file(root_dir, store_dir, REGISTRY_FILE)
    if registry_file is None:
        msg = f"no fsnb store in {store_dir}"
        raise StoreNotFound(msg)
    online_file = store_file(root_dir, store_dir, ONLINE_FILE)
    log_file = store_file(root_dir, store_dir, LOG_FILE)
    for _attempt in range(3):
        # Read without a writer's -wal (immutable: nothing created), a writer may start
        # and checkpoint into the main file mid-read: read again, through its -wal then.
        quiet = [f for f in (registry_file, online_file, log_file) if f is not None and readonly_mode(f) == "immutable"]
        description = _describe(registry_file, online_file, log_file)
        if not any(Path(f"{f}-wal").exists() for f in quiet):
            break
    return description


def _read(path: Path, read: Callable[[], T]) -> T:
    """read(), with anything a damaged file raises turned into one line naming the file."""
    try:
        return read()
    except FsnbError:
        raise
    except (sqlite3.Error, ValueError, TypeError, KeyError, AttributeError) as exc:
        msg = f"cannot read {path}: {one_line(exc)}; the file is damaged or not an fsnb store file"
        raise StoreError(msg) from None


def _describe(registry_file: Path, online_file: Path | None, log_file: Path | None) -> dict[str, Any]:
    unreadable: list[dict[str, str]] = []

    def read_registry() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        registry = Registry(registry_file, readonly=True)
        try:
            with registry.snapshot():  # views and training sets as of one commit
                views = [_view_json(summary) for summary in registry.summaries()]
                training_sets = [_training_set_json(record) for record in registry.training_sets()]
                # A view whose rows cannot be read is listed as such; the others still show.
                unreadable.extend({"name": n, "error": e} for n, e in sorted(registry.broken().items()))
        finally:
            registry.close()
        return views, training_sets

    views, training_sets = _read(registry_file, read_registry)
    online = {} if online_file is None else _read(online_file, lambda: read_last_updates(online_file))
    stream_views = [v["name"] for v in views if v["stream"]]
    log = {} if log_file is None else _read(log_file, lambda: read_view_lag(log_file, stream_views))
    for view in views:
        name = view["name"]
        lag, pushed = log.get(name, (None, None))
        updates = [t for t in (online.get(name), pushed) if t is not None]
        view["online_last_update"] = _iso(max(updates)) if updates else None
        view["log_lag"] = lag
    return {"views": views, "training_sets": training_sets, "unreadable": unreadable, "generated_at": _iso(_now())}


def _view_json(summary: ViewSummary) -> dict[str, Any]:
    view, stats = summary.latest.view, summary.stats
    entity_types = dict(view.entity_types or {})
    return {
        "name": view.name,
        "version": summary.latest.version,
        "versions": summary.versions,
        "defined_at": _iso(summary.latest.created_at),
        "description": view.description,
        "entities": [{"name": e, "type": entity_types.get(e)} for e in view.entity_columns],
        "timestamp_field": view.timestamp_field,
        "created_timestamp_field": view.created_timestamp_field,
        "features": [{"name": f, "type": t} for f, t in aggregation.served_types(view).items()],
        "aggregations": aggregation_views.view_json(view),  # None for an ordinary view
        "ttl": None if view.ttl is None else format_ttl(view.ttl),
        "online": bool(view.online),
        "stream": view.sync == "stream",
        "sync": view.sync,
        "rows": stats.get("rows", 0),
        "entity_count": stats.get("entities"),
        "min_ts": stats.get("min_ts"),
        "max_ts": stats.get("max_ts"),
        "last_ingested": stats.get("last_ingested"),
        "stats_updated_at": _iso(summary.stats_updated_at),
    }


def _training_set_json(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": record["name"],
        "fingerprint": record["fingerprint"],
        "created_at": _iso(record["created_at"]),
        "features": record.get("features", []),
        "rows": record.get("rows"),
    }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(float(ts), timezone.utc).isoformat()


def _now() -> float:
    return datetime.now(timezone.utc).timestamp()


class StoreHandler(APIHandler):
    """GET: JSON description of the store at ?path=."""

    auth_resource = "contents"

    @web.authenticated
    @authorized("read")  # type: ignore[untyped-decorator]
    async def get(self) -> None:
        requested = self.get_query_argument("path", "")
        root = self.settings.get("server_root_dir") or self.contents_manager.root_dir
        try:
            store_dir = resolve_store_path(root, requested)
        except OutsideRoot as exc:
            return self._fail(403, str(exc))
        except ValueError as exc:
            return self._fail(400, str(exc))
        try:
            # sqlite3 blocks: keep the server's event loop free.
            description = await asyncio.get_running_loop().run_in_executor(None, describe_store, store_dir, root)
        except StoreNotFound:
            msg = f"no fsnb store at {requested!r}; run %load_ext fsnb in a notebook there, or create fsnb.FeatureStore(path)"
            return self._fail(404, msg)
        except OutsideRoot as exc:
            return self._fail(403, str(exc))
        except FsnbError as exc:
            return self._fail(500, f"cannot read the store at {requested!r}: {one_line(exc)}")
        except sqlite3.Error as exc:
            msg = f"cannot read the store at {requested!r} ({one_line(exc)}); check the files' permissions"
            return self._fail(500, msg)
        except Exception as exc:  # never tornado's HTML page: the sidebar shows this message
            self.log.exception("fsnb: reading %s failed", store_dir)
            return self._fail(500, f"fsnb could not read the store at {requested!r}: {type(exc).__name__}: {one_line(exc)}")
        description["path"] = requested
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(description))
        return None

    def _fail(self, status: int, message: str) -> None:
        # Written here rather than raised as HTTPError: tornado would %-format the message.
        self.log.info("fsnb: %s %s", status, message)
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message}))


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "fsnb.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    web_app = serverapp.web_app
    route = url_path_join(web_app.settings["base_url"], API_PATH)
    web_app.add_handlers(".*$", [(route, StoreHandler)])
    serverapp.log.info("fsnb: store endpoint at %s", route)
