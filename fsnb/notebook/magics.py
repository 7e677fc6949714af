# mypy: disable-error-code="untyped-decorator,no-untyped-call"
"""The IPython magics: parse a line with ``magic_arguments``, call the library, show the result.

Only IPython's magic machinery and the SQLite registry are imported when the
extension loads; the store (DuckDB, polars, Arrow) opens on the first magic that
needs it, so ``%load_ext fsnb`` stays fast.
"""

from __future__ import annotations

import dataclasses
import functools
import os
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
from IPython.core.magic_arguments import argument, magic_arguments

from fsnb.errors import FsnbError, closest, one_line

if TYPE_CHECKING:
    from fsnb.store import FeatureStore

DEFAULT_STORE = ".fsnb"
F = TypeVar("F", bound=Callable[..., Any])


def store_path(path: str | os.PathLike[str] | None = None) -> Path:
    """Where the extension keeps its store: PATH, else $FSNB_STORE, else ./.fsnb."""
    chosen = path if path is not None else os.environ.get("FSNB_STORE") or DEFAULT_STORE
    return Path(chosen).expanduser().resolve()


def user_errors(func: F) -> F:
    """Turn fsnb's errors, and the engines' errors about the user's data, SQL or store
    files, into one-line UsageErrors (no traceback wall). Anything else from fsnb's own
    code is a bug and keeps its traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UsageError as exc:
            raise UsageError(one_line(exc)) from None
        except FsnbError as exc:
            raise UsageError(one_line(exc)) from None
        except Exception as exc:
            prefix = _engine_error(exc)
            if prefix is None:
                raise
            raise UsageError(f"{prefix}{one_line(exc)}") from None

    return wrapper  # type: ignore[return-value]


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


def parse_argstring(magic: Any, line: str) -> Any:
    """Parse a magic's line like a shell would (quotes group words and are removed)."""
    import shlex

    line = line.strip()
    if line.endswith(";"):  # `%magic ...;` silences the output (IPython does that part)
        line = line[:-1]
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        msg = f"cannot read the line: {exc}; close the quote"
        raise UsageError(msg) from None
    return magic.parser.parse_args(argv)


def _split_list(text: str, what: str) -> list[str]:
    items = [p.strip() for p in text.split(",")]
    if not all(items):
        msg = f"{what} {text!r} has an empty name; write it like a,b"
        raise UsageError(msg)
    return items


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
        return f"fsnb: store at {self.path} ({held})"

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
        if var is None:
            return
        _check_output(var)
        self.namespace[var] = value

    # -- %fsnb ----------------------------------------------------------------------
    @magic_arguments()
    @argument("command", nargs="?", default="store", help="open PATH | list | show NAME (default: describe the store)")
    @argument("target", nargs="?", help="the PATH of open, the NAME of show")
    @argument("--online", default=None, metavar="URL", help="with open: serve online features from Redis (redis://host:port/db)")
    @argument("--log", default=None, metavar="URL", help="with open: keep the streaming log in Redis (redis://host:port/db)")
    @output_can_be_silenced
    @line_magic
    @user_errors
    def fsnb(self, line: str) -> Any:
        """Open a store, list its feature views or show one.

        %fsnb open PATH    open (or create) the store in directory PATH
                           [--online redis://...] [--log redis://...]: remembered in PATH/fsnb.toml
        %fsnb list         every feature view with its size and time range
        %fsnb show NAME    one view: schema, statistics, versions and sample rows
        %fsnb              the current store
        """
        args = parse_argstring(self.fsnb, line)
        from fsnb.notebook import display

        if args.command == "open":
            if not args.target:
                msg = "%fsnb open needs a directory: %fsnb open PATH"
                raise UsageError(msg)
            store = self._open(store_path(args.target), args.online, args.log)
            print(self.announce())
            return store
        if args.online or args.log:
            msg = "--online and --log go with open: %fsnb open PATH --online redis://host:port/0"
            raise UsageError(msg)
        if args.command == "list":
            if args.target:
                msg = f"%fsnb list takes no argument (got {args.target!r}); use %fsnb show {args.target}"
                raise UsageError(msg)
            return display.ViewList.of(self.store)
        if args.command == "show":
            if not args.target:
                msg = "%fsnb show needs a feature view name: %fsnb show NAME"
                raise UsageError(msg)
            return display.ViewInfo.of(self.store, args.target)
        if args.command == "store":
            return self.store
        commands = ["open", "list", "show"]
        msg = f"unknown %fsnb command '{args.command}'{closest(args.command, commands)} (use open PATH, list or show NAME)"
        raise UsageError(msg)

    def _open(self, path: Path, online: str | None, log: str | None) -> FeatureStore:
        """Make the store at path the session's store, or leave the current one in place.

        --online/--log URLs are checked (parsed, then each Redis server pinged) before
        anything is created, and written to fsnb.toml only once the store has opened
        with them. Any failure is one line, and the session keeps its previous store."""
        from fsnb.config import StoreConfig, check_url, load_config, write_config
        from fsnb.store import FeatureStore

        previous = self.path
        try:
            current = StoreConfig()
            if online or log:
                from fsnb.backends.redis_online import check_reachable

                current = load_config(path) if path.is_dir() else current
                for what, url in (("online store URL", online), ("log URL", log)):
                    if url and check_url(url, f"the {what}") != "sqlite":
                        check_reachable(url)
            if path == previous:
                self.close()  # one DuckDB connection per file: reopen in place
            store = FeatureStore(path, online=online, log=log)
            if online or log:
                try:
                    write_config(path, StoreConfig(online or current.online, log or current.log))
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
    @magic_arguments()
    @argument("name", help="the feature view's name")
    @argument("--entity", required=True, help="entity key column(s); a,b is a composite key")
    @argument("--timestamp", default="event_timestamp", help="event time column (default event_timestamp)")
    @argument("--created", default=None, help="optional created/ingestion time column (ties, as-of-ingestion)")
    @argument("--ttl", default=None, help="how long a value stays valid: 30d, 12h, 90m, 45s (default: forever)")
    @argument("--offline-only", action="store_true", help="keep the view out of the online store")
    @argument("--stream", action="store_true", help="sync through the log (store.push) instead of materialization")
    @argument("--description", default="", help="what the view holds")
    @needs_local_scope
    @cell_magic
    @user_errors
    def feature_view(self, line: str, cell: str, local_ns: Mapping[str, Any] | None = None) -> Any:
        """Define (or redefine) a feature view from the DuckDB SQL in the cell.

        The SQL may name polars/pandas DataFrames and Arrow tables of the notebook and
        files ('events.parquet', read_csv('x.csv')). Running the cell again makes the
        view's rows exactly the query's result; a changed definition becomes a new version.
        """
        args = parse_argstring(self.feature_view, line)
        body = cell.strip()
        if not body:
            msg = f"%%feature_view {args.name} has no SQL; write a query under it, e.g. SELECT * FROM events"
            raise UsageError(msg)
        from fsnb.definitions import FeatureView
        from fsnb.notebook import display
        from fsnb.sources import to_arrow

        entities = _split_list(args.entity, "--entity")
        # The whole definition is checked before the query runs.
        view = FeatureView(
            name=args.name,
            entities=entities,
            timestamp_field=args.timestamp,
            created_timestamp_field=args.created,
            ttl=args.ttl,
            online=not args.offline_only,
            sync="stream" if args.stream else "materialize",
            description=args.description,
            query=body,
        )
        namespace = {**self.namespace, **(local_ns or {})}
        source: Any = namespace[body] if body.isidentifier() and body in namespace else body
        table = to_arrow(source, namespace)
        # The query's columns are the features: a column dropped from the SELECT leaves the view.
        system = set(view.system_columns)
        view = dataclasses.replace(view, features=[c for c in table.column_names if c not in system])
        registration = self.store.register(view, table, replace=True)
        return display.RegisteredView(registration, table.slice(0, 5))

    # -- %training_set --------------------------------------------------------------
    @magic_arguments()
    @argument("labels", help="a DataFrame in the notebook (or a Parquet/CSV path) with entity keys and a time column")
    @argument("features", nargs="+", help="feature references view:feature or view:*")
    @argument("-o", dest="output", default=None, help="store the polars result in this variable (and record its fingerprint)")
    @argument("--timestamp", default="event_timestamp", help="the labels' time column (default event_timestamp)")
    @argument("--as-of-ingestion", action="store_true", help="only use rows already ingested (created) at each label time")
    @argument("--full-names", action="store_true", help="name columns view__feature")
    @argument("--explore", action="store_true", help="also open the leakage explorer on these labels and features")
    @needs_local_scope
    @output_can_be_silenced
    @line_magic
    @user_errors
    def training_set(self, line: str, local_ns: Mapping[str, Any] | None = None) -> Any:
        """Join features to label rows point-in-time correctly; show shape, null rates and leakage."""
        args = parse_argstring(self.training_set, line)
        from fsnb.notebook import display

        _check_output(args.output)
        labels = self._labels(args.labels, local_ns)
        frame = self.store.get_historical_features(
            labels,
            args.features,
            timestamp_field=args.timestamp,
            full_feature_names=args.full_names,
            as_of_ingestion=args.as_of_ingestion,
        )
        fingerprint = None
        if args.output:
            self._store_output(args.output, frame)
            fingerprint = self.store.record_training_set(
                args.output,
                frame,
                args.features,
                labels=args.labels,
                timestamp_field=args.timestamp,
                as_of_ingestion=args.as_of_ingestion,
                full_feature_names=args.full_names,
            )
        summary = display.TrainingSetSummary.of(
            self.store, frame, labels, args.features, args.timestamp,
            full_names=args.full_names, name=args.output, fingerprint=fingerprint,
        )
        display.show(summary)
        if args.explore:
            display.show(self._explorer(labels, args.features, args.timestamp))
        return frame

    # -- %online_features -----------------------------------------------------------
    @magic_arguments()
    @argument("features", nargs="+", help="feature references view:feature or view:*")
    @argument("--entity", action="append", required=True, metavar="KEY=VALUE[,KEY=VALUE]",
              help="one entity row, e.g. user_id=42 or user_id=42,region=7; repeat for more rows")
    @argument("-o", dest="output", default=None, help="store the result in this variable")
    @output_can_be_silenced
    @line_magic
    @user_errors
    def online_features(self, line: str) -> Any:
        """The latest served value of each feature for the given entities (None if unknown or expired)."""
        args = parse_argstring(self.online_features, line)
        from fsnb.notebook import display

        _check_output(args.output)
        store = self.store
        key_types = _entity_types(store, args.features)
        rows = [_entity_row(text, key_types) for text in args.entity]
        result = display.OnlineFeatures(store.get_online_features(args.features, rows))
        self._store_output(args.output, result)
        return result

    # -- %materialize ---------------------------------------------------------------
    @magic_arguments()
    @argument("--start", default=None, help="only rows with event time at or after this (ISO date/time)")
    @argument("--end", default=None, help="only rows with event time at or before this (default: now)")
    @argument("--incremental", action="store_true", help="copy only what changed since each view's watermark")
    @argument("--view", action="append", default=None, help="materialize only this view (repeatable)")
    @output_can_be_silenced
    @line_magic
    @user_errors
    def materialize(self, line: str) -> Any:
        """Copy the latest feature values from the offline store into the online store."""
        args = parse_argstring(self.materialize, line)
        from fsnb.notebook import display

        if args.incremental and args.start:
            msg = "--incremental starts at each view's watermark; drop --start (or drop --incremental)"
            raise UsageError(msg)
        if args.view:
            for name in args.view:
                self.store.get_feature_view(name)
        if args.incremental:
            written = self.store.materialize_incremental(args.end, views=args.view)
        else:
            written = self.store.materialize(args.start, args.end, views=args.view)
        return display.Materialized(written)

    # -- %leakage -------------------------------------------------------------------
    @magic_arguments()
    @argument("labels", help="a DataFrame in the notebook (or a Parquet/CSV path) with entity keys and a time column")
    @argument("features", nargs="+", help="feature references view:feature or view:*")
    @argument("--timestamp", default="event_timestamp", help="the labels' time column (default event_timestamp)")
    @needs_local_scope
    @output_can_be_silenced
    @line_magic
    @user_errors
    def leakage(self, line: str, local_ns: Mapping[str, Any] | None = None) -> Any:
        """The leakage explorer: what a naive latest-record join would have leaked, row by row."""
        args = parse_argstring(self.leakage, line)
        labels = self._labels(args.labels, local_ns)
        return self._explorer(labels, args.features, args.timestamp)

    def _explorer(self, labels: Any, features: list[str], timestamp: str) -> Any:
        explain = getattr(self.store, "explain_leakage", None)
        if explain is None:
            msg = "this fsnb has no leakage analysis yet (store.explain_leakage); upgrade fsnb"
            raise UsageError(msg)
        return explain(labels, features, timestamp_field=timestamp).explorer()


def _check_output(var: str | None) -> None:
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


def _entity_row(text: str, key_types: Mapping[str, str]) -> dict[str, Any]:
    """Parse 'user_id=42,region=7' into typed key values."""
    row: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            msg = f"--entity {text!r}: write each key as NAME=VALUE, e.g. --entity user_id=42"
            raise UsageError(msg)
        if key in row:
            msg = f"--entity {text!r} gives '{key}' twice; give each key once per row (repeat --entity for more rows)"
            raise UsageError(msg)
        if key_types and key not in key_types:
            msg = f"--entity names '{key}', which is not an entity key of these features{closest(key, key_types)}"
            raise UsageError(msg)
        row[key] = _typed_key(key, value, key_types.get(key))
    missing = [k for k in key_types if k not in row]
    if missing:
        msg = f"--entity {text!r} lacks the key '{missing[0]}'; give {','.join(f'{k}=...' for k in key_types)}"
        raise UsageError(msg)
    return row


def _typed_key(key: str, value: str, duck_type: str | None) -> Any:
    from fsnb.types import family

    kind = family(duck_type) if duck_type else None
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
        if kind in (None, "string"):
            return value
    try:
        if kind == "int" or (kind is None and value.lstrip("-").isdigit()):
            number = int(value)
            if not -(2**63) <= number < 2**63:
                msg = f"--entity {key}={value}: the number is out of range for a {duck_type or 'BIGINT'} key"
                raise UsageError(msg)
            return number
        if kind == "float":
            return float(value)
    except ValueError:
        msg = f"--entity {key}={value}: '{key}' is {duck_type}, so give a number"
        raise UsageError(msg) from None
    if kind == "bool":
        return value.lower() in ("1", "true", "yes")
    return value


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
