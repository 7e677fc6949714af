# mypy: disable-error-code="untyped-decorator,no-untyped-call"
"""The IPython magics: parse a line with the one grammar (fsnb.notebook.grammar), call the library, show the result.

Only IPython's magic machinery and the SQLite registry are imported when the
extension loads; the store (DuckDB, polars, Arrow) opens on the first magic that
needs it, so ``%load_ext fsnb`` stays fast.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    cell_magic,
    line_magic,
    magics_class,
    needs_local_scope,
    output_can_be_silenced,
)

from fsnb.config import DEFAULT_STORE, store_path
from fsnb.errors import FsnbError, QueryError, closest, one_line
from fsnb.notebook import grammar
from fsnb.notebook.grammar import entity_row as _entity_row

if TYPE_CHECKING:
    from fsnb.store import FeatureStore

__all__ = ["DEFAULT_STORE", "FsnbMagics", "load", "store_path", "unload", "user_errors"]
F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Turn fsnb's errors, and the engines' errors about the user's data, SQL or store
    files, into one-line UsageErrors (no traceback wall). Anything else from fsnb's own
    code is a bug and keeps its traceback.

    A hint naming a library argument is shown with the magic's flag (``use --timestamp
    COL``, not ``pass timestamp_field=...``). DuckDB's message about the SQL of a cell
    keeps its lines (the ``LINE 1:`` line and the caret under the mistake)."""
    spell = grammar.flag_spelling(func.__name__)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UsageError as exc:
            raise UsageError(one_line(exc)) from None
        except QueryError as exc:
            raise UsageError(_query_message(exc)) from None
        except FsnbError as exc:
            raise UsageError(exc.message_for(spell)) from None
        except Exception as exc:
            prefix = _engine_error(exc)
            if prefix is None:
                raise
            raise UsageError(f"{prefix}{one_line(exc)}") from None

    return wrapper  # type: ignore[return-value]


def _query_message(exc: QueryError) -> str:
    """DuckDB's own message whole when it points at the SQL (its caret line), else one line."""
    detail = exc.detail
    if detail and "\nLINE " in detail and detail.rstrip().endswith("^"):
        return "DuckDB: " + "\n".join(line.rstrip() for line in detail.strip("\n").splitlines())
    return one_line(exc)


def _engine_error(exc: Exception) -> str | None:
    """The prefix naming the engine an error comes from, or None when it is not an engine's.

    Looked up in sys.modules so the engines are never imported for this: an error can
    only come from a module that is already loaded (``%load_ext fsnb`` stays light).
    """
    import sqlite3
    import sys

    engines = (
        ("duckdb", "Error", "DuckDB: "),
        ("pyarrow", "ArrowException", "Arrow: "),
        ("polars.exceptions", "PolarsError", "polars: "),
    )
    for module_name, class_name, prefix in engines:
        module = sys.modules.get(module_name)
        base = getattr(module, class_name, None) if module is not None else None
        if isinstance(base, type) and isinstance(exc, base):
            return prefix
    if isinstance(exc, sqlite3.Error):
        return "SQLite: "
    if isinstance(exc, OSError):
        return ""
    return None


@magics_class
class FsnbMagics(Magics):
    """%fsnb, %%feature_view, %training_set, %online_features, %materialize, %leakage."""

    def __init__(self, shell: Any, path: Path) -> None:
        super().__init__(shell)
        self.path = path
        self._store: FeatureStore | None = None

    # -- the store ------------------------------------------------------------------
    @property
    def store(self) -> FeatureStore:
        if self._store is None:
            from fsnb.store import FeatureStore

            self._store = FeatureStore(self.path)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def announce(self) -> str:
        """One line: where the store is and what it holds (read from the registry only)."""
        from fsnb.registry import Registry

        self.path.mkdir(parents=True, exist_ok=True)
        if self._store is not None:
            names = self._store.registry.names()
        else:
            registry = Registry(self.path / "registry.sqlite")
            try:
                names = registry.names()
            finally:
                registry.close()
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        held = f"{len(names)} feature view{'s' if len(names) != 1 else ''}" + (f": {shown}" if names else "")
        engine = ""
        if self._store is not None and self._store.config.offline == "spark":
            from fsnb.config import redact_url

            engine = f"; history in Delta tables at {redact_url(self._store.config.warehouse or '')}, queried by Spark"
        return f"fsnb: store at {self.path} ({held}{engine})"

    # -- helpers --------------------------------------------------------------------
    @property
    def namespace(self) -> dict[str, Any]:
        return self.shell.user_ns  # type: ignore[no-any-return,union-attr]

    def _labels(self, token: str, local_ns: Mapping[str, Any] | None) -> Any:
        """LABELS: a DataFrame/Arrow table in the notebook, or a Parquet/CSV path."""
        scopes = [local_ns or {}, self.namespace]
        for scope in scopes:
            if token in scope:
                return scope[token]
        from fsnb.sources import looks_like_path

        if looks_like_path(token):
            return token
        frames = [name for name, value in self.namespace.items() if not name.startswith("_") and _is_tabular(value)]
        msg = f"no DataFrame or file named '{token}'{closest(token, frames)}"
        raise UsageError(msg)

    def _store_output(self, var: str | None, value: Any) -> None:
        if var is not None:
            self.namespace[var] = value

    # -- %fsnb ----------------------------------------------------------------------
    @grammar.uses("fsnb")
    @output_can_be_silenced
    @line_magic
    @user_errors
    def fsnb(self, line: str) -> Any:
        args = grammar.parse("fsnb", line)
        from fsnb.notebook import gather, render

        if args.command == "open":
            store = self._open(store_path(args.target), args.online, args.log, args.offline, args.warehouse)
            print(self.announce())
            return store
        if args.command == "list":
            return render.ViewList.of(str(self.store.path), gather.view_entries(self.store.parts))
        if args.command == "show":
            stats = self.store.stats(args.target)  # an unknown name stops here
            sample = self.store.read(args.target, start=stats["max_ts"]).head(5) if stats.get("rows") else None
            return gather.view_info(self.store.parts, args.target, sample)
        return self.store

    def _open(self, path: Path, online: str | None, log: str | None, offline: str | None = None, warehouse: str | None = None) -> FeatureStore:
        """Make the store at path the session's store, or leave the current one in place.

        --online/--log URLs are checked (parsed, then each Redis server pinged) before
        anything is created, and written to fsnb.toml only once the store has opened
        with them. Any failure is one line, and the session keeps its previous store."""
        from fsnb.config import check_url, write_config
        from fsnb.parts import check_openable
        from fsnb.store import FeatureStore

        previous = self.path
        try:
            if path.is_dir():  # a broken fsnb.toml, a bad engine or URL: reported before anything is closed or opened
                check_openable(path, online=online, log=log, offline=offline, warehouse=warehouse)
            if online or log:
                from fsnb.backends.redis_common import check_reachable

                for what, url in (("online store URL", online), ("log URL", log)):
                    if url and check_url(url, f"the {what}") != "sqlite":
                        check_reachable(url)
            if path == previous:
                self.close()  # one DuckDB connection per file: reopen in place
            store = FeatureStore(path, online=online, log=log, offline=offline, warehouse=warehouse)
            if online or log or offline or warehouse:
                try:
                    write_config(path, store.config)  # what the store opened with: arguments over the old file
                except BaseException:
                    store.close()
                    raise
        except Exception as exc:
            reason = str(exc) if isinstance(exc, FsnbError) else one_line(exc)
            kept = f"the session keeps the store at {previous}"
            msg = f"cannot open the store at {path}: {reason}; {kept}"
            raise UsageError(msg) from None
        self.close()
        self.path, self._store = path, store
        return store

    # -- %%feature_view -------------------------------------------------------------
    @grammar.uses("feature_view")
    @needs_local_scope
    @cell_magic
    @user_errors
    def feature_view(self, line: str, cell: str, local_ns: Mapping[str, Any] | None = None) -> Any:
        args = grammar.parse("feature_view", line)
        body = cell.strip()
        if not body:
            msg = f"%%feature_view {args.name} has no SQL; write a query under it, e.g. SELECT * FROM events"
            raise UsageError(msg)
        from fsnb.definitions import FeatureView
        from fsnb.notebook import render
        from fsnb.sources import to_arrow

        # The whole definition is checked before the query runs.
        view = FeatureView(
            name=args.name,
            entities=args.entities,
            online=not args.offline_only,
            sync="stream" if args.stream else "materialize",
            query=body,
            aggregations=args.aggregations,
            **grammar.keywords("feature_view", args),
        )
        namespace = {**self.namespace, **(local_ns or {})}
        source: Any = namespace[body] if body.isidentifier() and body in namespace else body
        table = to_arrow(source, namespace)
        # The query's columns are the features: a column dropped from the SELECT leaves the view.
        system = set(view.system_columns)
        view = dataclasses.replace(view, features=[c for c in table.column_names if c not in system])
        registration = self.store.register(view, table, replace=True)
        sample: Any = table.slice(0, 5)
        if view.aggregations:  # sample values: each aggregation as of the first events' times
            sample = self.store.get_historical_features(sample, f"{view.name}:*", timestamp_field=view.timestamp_field)
        return render.RegisteredView(registration, sample)

    # -- %training_set --------------------------------------------------------------
    @grammar.uses("training_set")
    @needs_local_scope
    @output_can_be_silenced
    @line_magic
    @user_errors
    def training_set(self, line: str, local_ns: Mapping[str, Any] | None = None) -> Any:
        args = grammar.parse("training_set", line)
        from fsnb.notebook import render

        _check_output(args.output)
        labels = self._labels(args.labels, local_ns)
        options = grammar.keywords("training_set", args)  # timestamp_field=, full_feature_names=, ...
        ts = self.store.build_training_set(labels, args.features, **options)  # one join, one analysis
        frame = ts.frame
        fingerprint = None
        if args.output:
            self._store_output(args.output, frame)
            fingerprint = self.store.record_training_set(args.output, frame, args.features, labels=args.labels, **options)
        summary = render.TrainingSetSummary.of(
            frame, ts.output_names, args.timestamp, report=ts.report, name=args.output, fingerprint=fingerprint
        )
        render.show(summary)
        if args.explore:
            explorer = ts.report.explorer() if ts.report is not None else self._explorer(labels, args.features, args.timestamp)
            render.show(explorer)
        return frame

    # -- %online_features -----------------------------------------------------------
    @grammar.uses("online_features")
    @output_can_be_silenced
    @line_magic
    @user_errors
    def online_features(self, line: str) -> Any:
        args = grammar.parse("online_features", line)
        from fsnb.notebook import render

        _check_output(args.output)
        store = self.store
        key_types = _entity_types(store, args.features)
        rows = [_entity_row(text, key_types) for text in args.entity]
        result = render.OnlineFeatures(store.get_online_features(args.features, rows))
        self._store_output(args.output, result)
        return result

    # -- %materialize ---------------------------------------------------------------
    @grammar.uses("materialize")
    @output_can_be_silenced
    @line_magic
    @user_errors
    def materialize(self, line: str) -> Any:
        args = grammar.parse("materialize", line)
        from fsnb.notebook import render

        if args.view:
            for name in args.view:
                self.store.get_feature_view(name)
        options = grammar.keywords("materialize", args)  # start=, end=, views=
        if args.incremental:
            options.pop("start")  # the grammar refuses --start with --incremental
            written = self.store.materialize_incremental(**options)
        else:
            written = self.store.materialize(**options)
        return render.Materialized(written)

    # -- %leakage -------------------------------------------------------------------
    @grammar.uses("leakage")
    @needs_local_scope
    @output_can_be_silenced
    @line_magic
    @user_errors
    def leakage(self, line: str, local_ns: Mapping[str, Any] | None = None) -> Any:
        args = grammar.parse("leakage", line)
        labels = self._labels(args.labels, local_ns)
        return self._explorer(labels, args.features, args.timestamp)

    def _explorer(self, labels: Any, features: list[str], timestamp: str) -> Any:
        explain = getattr(self.store, "explain_leakage", None)
        if explain is None:
            msg = "this fsnb has no leakage analysis yet (store.explain_leakage); upgrade fsnb"
            raise UsageError(msg)
        return explain(labels, features, timestamp_field=timestamp).explorer()


def _check_output(var: str | None) -> None:
    """-o VAR names a Python variable (checked before anything runs)."""
    import keyword

    if var is not None and (not var.isidentifier() or keyword.iskeyword(var)):
        msg = f"-o needs a Python variable name, not {var!r}"
        raise UsageError(msg)


def _is_tabular(value: Any) -> bool:
    module = type(value).__module__.split(".")[0]
    return module in ("polars", "pandas", "pyarrow") and type(value).__name__ in ("DataFrame", "LazyFrame", "Table")


def _entity_types(store: FeatureStore, features: list[str]) -> dict[str, str]:
    types: dict[str, str] = {}
    for sel in store.resolve(features).selections:
        for key in sel.view.entity_columns:
            registered = (sel.view.entity_types or {}).get(key)
            if registered:
                types.setdefault(key, registered)
    return types


def load(shell: Any) -> FsnbMagics:
    """Register the magics and say where the store is (the store itself opens lazily)."""
    existing = shell.magics_manager.registry.get(FsnbMagics.__name__)
    if existing is not None:
        unload(shell)
    magics = FsnbMagics(shell, store_path())
    shell.register_magics(magics)
    try:
        print(magics.announce())
    except Exception as exc:  # a broken store path must not break the kernel
        print(f"fsnb: cannot open the store at {magics.path}: {one_line(exc)}; use %fsnb open PATH")
    return magics


def unload(shell: Any) -> None:
    """Remove the magics and close the store, so %reload_ext fsnb starts clean."""
    manager = shell.magics_manager
    magics = manager.registry.pop(FsnbMagics.__name__, None)
    if magics is None:
        return
    for kind, table in magics.magics.items():
        for name in table:
            manager.magics[kind].pop(name, None)
    magics.close()
