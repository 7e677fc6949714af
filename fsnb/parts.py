"""The parts of one store, opened once and handed to the modules that need them.

``FeatureStore`` is a facade over a ``StoreParts``; sync, materialization, retrieval
and leakage analysis receive the parts (or narrower pieces), never the facade, and
keep their per-store state in ``StoreParts.caches`` rather than on anyone's object
(docs/architecture.md, "Parts, not the owner").
"""

from __future__ import annotations

import re
import threading
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fsnb.backends.duckdb_offline import OfflineStore
from fsnb.commit import RegistryJournal
from fsnb.config import ENGINES, StoreConfig, load_config
from fsnb.errors import FsnbError, StoreBusy, StoreError
from fsnb.registry import Registry

if TYPE_CHECKING:
    import duckdb

    from fsnb.backends.contracts import FeatureLog, OnlineBackend, OnlineReader
    from fsnb.backends.spark_offline import SparkOfflineStore
    from fsnb.sync.log_state import ProducerSession

REGISTRY_FILE = "registry.sqlite"
OFFLINE_FILE = "offline.duckdb"
ONLINE_FILE = "online.sqlite"
LOG_FILE = "log.sqlite"
ENGINE_KEY = "offline_engine"  # registry setting: the engine that holds the store's history


@dataclass
class Caches:
    """What a store remembers between calls; cleared when definitions or data change."""

    # online readers per feature list: (registry version, readers, entity columns, all tables exist)
    readers: dict[tuple[str, ...], tuple[int, list[OnlineReader], list[str], bool]] = field(default_factory=dict)
    key_plans: dict[tuple[str, ...], Any] = field(default_factory=dict)  # online key typing per feature list
    checked: dict[tuple[str, Any], Any] = field(default_factory=dict)  # schema-only batch checks (streaming)
    registry_checked: float = float("-inf")  # when the registry change counter was last read
    registry_seen: int = 0
    producer: ProducerSession | None = None  # the open FeatureStore.producer() block, if any
    _scratch: threading.local = field(default_factory=threading.local)

    def forget_readers(self) -> None:
        self.readers.clear()
        self.key_plans.clear()

    def scratch(self) -> duckdb.DuckDBPyConnection:
        """This thread's in-memory DuckDB, for checking and encoding batches with every
        store file closed (a DuckDB connection serves one call at a time)."""
        con = getattr(self._scratch, "con", None)
        if con is None:
            import duckdb

            con = duckdb.connect()
            con.execute("SET TimeZone = 'UTC'")
            self._scratch.con = con
        return con


@dataclass
class StoreParts:
    """A store's directory, configuration and backends."""

    path: Path
    config: StoreConfig
    registry: Registry
    offline: OfflineStore  # the offline.duckdb file: the store's write lock, and history on the DuckDB engine
    online: OnlineBackend
    caches: Caches = field(default_factory=Caches)
    spark: SparkOfflineStore | None = None  # the Spark engine, when config.offline == "spark"
    _log: FeatureLog | None = None
    _log_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def log(self) -> FeatureLog:
        """The feature log, opened on first use (one object, whichever thread asks first)."""
        log = self._log
        if log is None:
            with self._log_lock:
                if self._log is None:
                    self._log = open_log(self)
                log = self._log
        return log

    @property
    def engine(self) -> OfflineStore | SparkOfflineStore:
        """The offline engine: where each view's history is written, read and joined."""
        return self.offline if self.spark is None else self.spark

    @property
    def has_log(self) -> bool:
        """True when the store has (or is configured for) a feature log."""
        return (self.path / LOG_FILE).exists() or self.config.log not in (None, "sqlite")

    def store_id(self) -> tuple[str, bool]:
        """The store's id (names its keys in shared backends), and True when it is new and not yet kept."""
        return _store_id(self.registry)

    def keep_store_id(self) -> str:
        value, new = self.store_id()
        if new:
            self.registry.set("store_id", value)
        return value

    def close(self) -> None:
        self.registry.close()
        self.online.close()
        if self._log is not None:
            self._log.close()
            self._log = None


def open_parts(
    path: Path,
    *,
    online: str | None,
    log: str | None,
    lock_timeout: float,
    offline: str | None = None,
    warehouse: str | None = None,
    spark: Any = None,
) -> StoreParts:
    """Open (or create) the store in directory path: registry, offline, online; the log lazily.

    offline="spark" (or ``[offline] engine = "spark"`` in fsnb.toml) keeps the history in
    Delta tables under warehouse, queried by spark (else the active session, else a local
    one, started on first use); offline.duckdb then holds no rows: it is the store's write
    lock and the place where one-row-per-entity results are staged (docs/spark.md)."""
    if path.exists() and not path.is_dir():
        msg = f"store path {path} is a file; fsnb needs a directory (it creates it if missing)"
        raise FsnbError(msg)
    # Checked before anything is created: a refused engine or warehouse leaves no directory.
    config = load_config(path, online=online, log=log, offline=offline, warehouse=warehouse)
    path.mkdir(parents=True, exist_ok=True)
    registry = Registry(path / REGISTRY_FILE)
    try:
        _check_engine(registry, config.offline)
    except StoreError:
        registry.close()
        raise
    duck = OfflineStore(path / OFFLINE_FILE, lock_timeout=lock_timeout)
    engine = None
    if config.offline == "spark":
        from fsnb.backends.spark_offline import SparkOfflineStore

        assert config.warehouse is not None  # load_config refuses spark without one
        engine = SparkOfflineStore(config.warehouse, spark, duck=duck)
    duck.journal = RegistryJournal(registry, duck if engine is None else engine)
    if registry.pending_writes():
        # A writer died mid-write (or is writing now, and holds the offline store).
        with suppress(StoreBusy), duck.connect(timeout=0):
            pass
    return StoreParts(path, config, registry, duck, _open_online(path, config, registry), spark=engine)


def check_openable(path: Path, *, online: str | None = None, log: str | None = None,
                   offline: str | None = None, warehouse: str | None = None) -> None:
    """What open_parts would refuse before creating anything (the configuration, the
    engine of an existing store), asked without writing a file: %fsnb open runs it before
    it lets go of the session's store."""
    config = load_config(path, online=online, log=log, offline=offline, warehouse=warehouse)
    if (path / REGISTRY_FILE).is_file():
        registry = Registry(path / REGISTRY_FILE, readonly=True)
        try:
            _check_engine(registry, config.offline, record=False)
        finally:
            registry.close()


def _check_engine(registry: Registry, engine: str, *, record: bool = True) -> None:
    """Refuse to open a store's views on the other engine (their history would look empty);
    a store without views takes the engine it is opened with."""
    recorded = registry.get(ENGINE_KEY) or "duckdb"
    if recorded not in ENGINES:
        msg = f"{registry.path}: the offline engine {recorded!r:.40} is not one fsnb wrote; restore the file from a backup"
        raise StoreError(msg)
    if recorded == engine:
        return
    if registry.names():
        where = "Delta tables (the Spark engine)" if recorded == "spark" else "offline.duckdb (the DuckDB engine)"
        msg = (
            f"the store {registry.path.parent} keeps its history in {where}; open it with offline={recorded!r} "
            f"(or drop offline= and let its fsnb.toml decide)"
        )
        raise StoreError(msg)
    if record:
        registry.set(ENGINE_KEY, engine)


def _store_id(registry: Registry) -> tuple[str, bool]:
    value = registry.get("store_id")
    if value is None:
        return uuid.uuid4().hex[:12], True
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{12}", value):  # it names Redis keys
        msg = f"{registry.path}: the store id {value!r:.40} is not one fsnb wrote; restore the file from a backup"
        raise StoreError(msg)
    return value, False


def _open_online(path: Path, config: StoreConfig, registry: Registry) -> OnlineBackend:
    url = config.online
    if url is None or url == "sqlite":
        from fsnb.backends.sqlite_online import OnlineStore

        return OnlineStore(path / ONLINE_FILE)
    from fsnb.backends.redis_online import RedisOnlineStore

    store_id, new = _store_id(registry)
    backend = RedisOnlineStore(url, namespace=store_id)
    if new:  # kept only once the backend answered: a refused URL leaves the registry as it was
        registry.set("store_id", store_id)
    return backend


def open_log(parts: StoreParts) -> FeatureLog:
    """The one place that picks the log backend."""
    url = parts.config.log
    if url in (None, "sqlite"):
        from fsnb.backends.sqlite_log import SqliteLog

        return SqliteLog(parts.path)
    from fsnb.backends.redis_log import RedisLog

    store_id, new = parts.store_id()
    log = RedisLog(str(url), namespace=store_id, directory=parts.path)
    if new:  # kept only once the backend answered
        parts.registry.set("store_id", store_id)
    return log
