"""The ``fsnb`` command line: a thin layer over the library.

    fsnb export NOTEBOOK.ipynb -o PIPELINE.py [--store PATH]
    fsnb list [--store PATH]
    fsnb show NAME [--store PATH]
    fsnb fingerprint FILE

Read-only commands open only the SQLite registry, so they work while a kernel holds
the store's DuckDB file. Errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fsnb.errors import FsnbError, StoreError, one_line


def _store_dir(value: str | None) -> Path:
    from fsnb.config import store_path

    path = store_path(value or None)
    if not (path / "registry.sqlite").exists():
        msg = f"no fsnb store at {path}; pass --store PATH (or set $FSNB_STORE)"
        raise FsnbError(msg)
    return path


@contextmanager
def _registry(value: str | None) -> Iterator[Any]:
    """The store's registry, read-only (list/show never create or change a file); what a
    damaged registry raises becomes one line naming the file."""
    from fsnb.registry import Registry

    path = _store_dir(value) / "registry.sqlite"
    try:
        registry = Registry(path, readonly=True)
        try:
            yield registry
        finally:
            registry.close()
    except FsnbError:
        raise
    except (sqlite3.Error, ValueError, TypeError, KeyError, AttributeError) as exc:
        msg = f"cannot read {path}: {one_line(exc)}; the file is damaged or not an fsnb registry"
        raise StoreError(msg) from None


def cmd_export(args: argparse.Namespace) -> int:
    from fsnb.export import export, write

    if args.output in (None, "-"):
        pipeline = export(args.notebook, store=args.store)
        sys.stdout.write(pipeline.script)
    else:
        pipeline = write(args.notebook, args.output, store=args.store)
        print(f"wrote {args.output}: {pipeline.summary()}; run it with: python {args.output}", file=sys.stderr)
    for warning in pipeline.warnings:
        print(f"fsnb export: note: {warning}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _registry(args.store) as registry:
        names = registry.names()
        print(f"store {registry.path.parent}: {len(names)} feature view{'s' if len(names) != 1 else ''}")
        for name in names:
            latest = registry.latest(name)
            view, stats = latest.view, registry.stats(name)
            where = "online+offline" if view.online else "offline only"
            rows = stats.get("rows")
            print(
                f"  {name}  v{latest.version}  keys {','.join(view.entity_columns)}  "
                f"{len(view.feature_names)} features  {rows if rows is not None else 0} rows  {where}"
            )
        for name, problem in registry.broken().items():  # listed, so that it can be restored or deleted
            print(f"  {name}  UNREADABLE: {problem}")
        sets = registry.training_sets()
        for name, problem in registry.broken_training_sets().items():
            print(f"  training set {name}  UNREADABLE: {problem}")
        if sets:
            print(f"{len(sets)} training set{'s' if len(sets) != 1 else ''}")
        for record in sets:
            when = datetime.fromtimestamp(record["created_at"], tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            print(f"  {record['name']}  fingerprint {record['fingerprint'][:16]}  {record.get('rows', '?')} rows  {when}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from fsnb.definitions import format_ttl

    with _registry(args.store) as registry:
        latest = registry.latest(args.name)
        view, stats = latest.view, registry.stats(args.name)
        versions = [v.version for v in registry.versions(args.name)]
        print(f"{view.name} (version {latest.version} of {len(versions)})")
        if view.description:
            print(f"  {view.description}")
        print(f"  entities   {', '.join(view.entity_columns)}")
        print(f"  timestamp  {view.timestamp_field}" + (f" (created: {view.created_timestamp_field})" if view.created_timestamp_field else ""))
        print(f"  ttl        {format_ttl(view.ttl)}")
        print(f"  serving    {'online, ' + view.sync if view.online else 'offline only'}")
        for feature, duck_type in view.feature_types.items():
            print(f"  feature    {feature} {duck_type or ''}".rstrip())
        for key in ("rows", "entities", "min_ts", "max_ts"):
            if key in stats:
                print(f"  {key:<10} {stats[key]}")
        if view.query:
            print("  query:")
            for line in view.query.splitlines():
                print(f"    {line}")
    return 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from fsnb.fingerprint import fingerprint
    from fsnb.sources import to_arrow

    for path in args.files:
        print(f"{fingerprint(to_arrow(Path(path)))}  {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from fsnb import __version__

    parser = argparse.ArgumentParser(prog="fsnb", description="fsnb: a feature store that lives in the Jupyter notebook.")
    parser.add_argument("--version", action="version", version=f"fsnb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    store_help = "the store directory (default: $FSNB_STORE, else ./.fsnb)"

    p = sub.add_parser("export", help="turn a notebook into a Python pipeline that checks its training sets",
                       description="Write NOTEBOOK's code and fsnb magics as a plain Python script that rebuilds "
                       "its feature views and training sets and checks their fingerprints.")
    p.add_argument("notebook", help="the .ipynb file")
    p.add_argument("-o", "--output", help="the script to write (default: standard output)")
    p.add_argument("--store", default=None,
                   help="the store the notebook used, for its recorded fingerprints (default: the notebook's "
                   "%%fsnb open PATH, $FSNB_STORE or .fsnb beside the notebook)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("list", help="the store's feature views and training sets")
    p.add_argument("--store", default=None, help=store_help)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="one feature view's definition and statistics")
    p.add_argument("name", help="the feature view")
    p.add_argument("--store", default=None, help=store_help)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("fingerprint", help="fsnb.fingerprint of Parquet/CSV files")
    p.add_argument("files", nargs="+", help="Parquet or CSV files")
    p.set_defaults(func=cmd_fingerprint)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command: 0 on success, 1 with one line on stderr on any error (2: bad usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except FsnbError as exc:
        message = one_line(exc)
    except OSError as exc:
        message = f"{exc.strerror or one_line(exc)}: {exc.filename or ''}".rstrip(": ")
    except sqlite3.Error as exc:
        message = f"cannot read the store ({one_line(exc)}); check the path and the files' permissions"
    except Exception as exc:  # a bug or a damaged file: still one line, never a traceback
        message = f"unexpected {type(exc).__name__}: {one_line(exc)}"
    print(f"fsnb {args.command}: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
