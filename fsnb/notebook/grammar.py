# mypy: disable-error-code="untyped-decorator,no-untyped-call"
"""The grammar of the six magics, declared once with IPython's ``magic_arguments``.

The magics (fsnb.notebook.magics) parse their lines here, ``fsnb export`` parses the
notebook's magic lines with the same parsers, and ``%magic?`` shows the help built from
them. What a line means is here too, so the magic and the exported pipeline agree:

- ``parse(name, line)``: split like a shell, parse, then the checks argparse cannot
  express (``--incremental`` with ``--start``, ``%fsnb open`` without a path, ...);
- ``KEYWORDS``: the flags that are plain keyword arguments of the library call the magic
  makes (the magic passes them, export writes them, a hint naming the keyword is shown
  with the flag: ``flag_spelling``);
- ``entity_row``: ``--entity user_id=42,region=7`` typed by the keys' registered types.

Every mistake is an IPython ``UsageError`` (one line); export turns it into its own.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic_arguments import MagicArgumentParser, argument, magic_arguments

from fsnb.errors import closest

F = TypeVar("F", bound=Callable[..., Any])
NAMES = ("fsnb", "feature_view", "training_set", "online_features", "materialize", "leakage")
CELL_MAGICS = ("feature_view",)
FSNB_COMMANDS = ("open", "list", "show")
_FEATURES = "feature references view:feature or view:*"
_LABELS = "a DataFrame in the notebook (or a Parquet/CSV path) with entity keys and a time column"
_LABEL_TIME = "the labels' time column (default event_timestamp)"


# -- the grammars (a function's docstring is its magic's description) -------------------------
@magic_arguments()
@argument("command", nargs="?", default="store", help="open PATH | list | show NAME (default: describe the store)")
@argument("target", nargs="?", help="the PATH of open, the NAME of show")
@argument("--online", default=None, metavar="URL", help="with open: serve online features from Redis (redis://host:port/db)")
@argument("--log", default=None, metavar="URL", help="with open: keep the streaming log in Redis (redis://host:port/db)")
@argument("--offline", default=None, metavar="ENGINE", help="with open: the offline engine, duckdb (default) or spark")
@argument("--warehouse", default=None, metavar="URI", help="with open --offline spark: where the Delta tables live")
def fsnb(line: str) -> None:
    """Open a store, list its feature views or show one.

    %fsnb open PATH    open (or create) the store in directory PATH
                       [--online redis://...] [--log redis://...]: remembered in PATH/fsnb.toml
                       [--offline spark --warehouse URI]: history in Delta tables, queried by Spark
    %fsnb list         every feature view with its size and time range
    %fsnb show NAME    one view: schema, statistics, versions and sample rows
    %fsnb              the current store
    """


# The name '%feature_view' makes the usage line read %%feature_view (IPython adds one '%').
@magic_arguments("%feature_view")
@argument("name", help="the feature view's name")
@argument("--entity", required=True, metavar="COLS", help="entity key column(s); a,b is a composite key")
@argument("--timestamp", default="event_timestamp", metavar="COL", help="event time column (default event_timestamp)")
@argument("--created", default=None, metavar="COL", help="optional created/ingestion time column (ties, as-of-ingestion)")
@argument("--ttl", default=None, help="how long a value stays valid: 30d, 12h, 90m, 45s (default: forever)")
@argument("--offline-only", action="store_true", help="keep the view out of the online store")
@argument("--stream", action="store_true", help="sync through the log (store.push) instead of materialization")
@argument("--description", default="", metavar="TEXT", help="what the view holds")
@argument("--aggregate", action="append", default=None, metavar="SPEC",
          help="a window aggregation of the events, like 'sum(amount) 7d' or 'count(*) 1d as txn_count_1d' (repeatable)")
def feature_view(line: str, cell: str) -> None:
    """Define (or redefine) a feature view from the one DuckDB query in the cell.

    The cell is one query (SELECT, WITH, FROM, VALUES), a file path or a DataFrame's
    name. The SQL may name polars/pandas DataFrames and Arrow tables of the notebook and
    files ('events.parquet', read_csv('x.csv')). Running the cell again makes the
    view's rows exactly the query's result; a changed definition becomes a new version.
    """


@magic_arguments()
@argument("labels", help=_LABELS)
@argument("features", nargs="+", help=_FEATURES)
@argument("-o", dest="output", default=None, help="store the polars result in this variable (and record its fingerprint)")
@argument("--timestamp", default="event_timestamp", metavar="COL", help=_LABEL_TIME)
@argument("--as-of-ingestion", action="store_true", help="only use rows already ingested (created) at each label time")
@argument("--full-names", action="store_true", help="name columns view__feature")
@argument("--explore", action="store_true", help="also open the leakage explorer on these labels and features")
def training_set(line: str) -> None:
    """Join features to label rows point-in-time correctly; show shape, null rates and leakage."""


@magic_arguments()
@argument("features", nargs="+", help=_FEATURES)
@argument("--entity", action="append", required=True, metavar="KEY=VALUE[,KEY=VALUE]",
          help="one entity row, e.g. user_id=42 or user_id=42,region=7; repeat for more rows")
@argument("-o", dest="output", default=None, help="store the result in this variable")
def online_features(line: str) -> None:
    """The latest served value of each feature for the given entities (None if unknown or expired)."""


@magic_arguments()
@argument("--start", default=None, help="only rows with event time at or after this (ISO date/time)")
@argument("--end", default=None, help="only rows with event time at or before this (default: now)")
@argument("--incremental", action="store_true", help="copy only what changed since each view's watermark")
@argument("--view", action="append", default=None, help="materialize only this view (repeatable)")
def materialize(line: str) -> None:
    """Copy the latest feature values from the offline store into the online store."""


@magic_arguments()
@argument("labels", help=_LABELS)
@argument("features", nargs="+", help=_FEATURES)
@argument("--timestamp", default="event_timestamp", metavar="COL", help=_LABEL_TIME)
def leakage(line: str) -> None:
    """The leakage explorer: what a naive latest-record join would have leaked, row by row."""


_SPECS: dict[str, Any] = {
    "fsnb": fsnb,
    "feature_view": feature_view,
    "training_set": training_set,
    "online_features": online_features,
    "materialize": materialize,
    "leakage": leakage,
}
PARSERS: dict[str, MagicArgumentParser] = {name: spec.parser for name, spec in _SPECS.items()}

# For each magic: flag (argparse dest) -> the keyword argument of the library call it stands for.
KEYWORDS: dict[str, dict[str, str]] = {
    "fsnb": {"online": "online", "log": "log"},
    "feature_view": {
        "timestamp": "timestamp_field",
        "created": "created_timestamp_field",
        "ttl": "ttl",
        "description": "description",
    },
    "training_set": {"timestamp": "timestamp_field", "full_names": "full_feature_names", "as_of_ingestion": "as_of_ingestion"},
    "online_features": {},
    "materialize": {"start": "start", "end": "end", "view": "views"},
    "leakage": {"timestamp": "timestamp_field"},
}
# Library arguments a magic spells with a flag that is not a plain keyword (for hints only).
_OTHER_FLAGS: dict[str, dict[str, str]] = {"feature_view": {"entities": "entity"}}


def uses(name: str) -> Callable[[F], F]:
    """Give a magic method its grammar: the parser (``method.parser``, where IPython and
    completers look) and the help that ``%magic?`` shows."""
    spec = _SPECS[name]

    def attach(method: F) -> F:
        method.parser = spec.parser  # type: ignore[attr-defined]
        method.__doc__ = spec.__doc__
        return method

    return attach


# -- parsing -----------------------------------------------------------------------------------
def split(line: str) -> list[str]:
    """A magic's line split like a shell would (quotes group words and are removed)."""
    line = line.strip()
    if line.endswith(";"):  # `%magic ...;` silences the output (IPython does that part)
        line = line[:-1]
    try:
        return shlex.split(line)
    except ValueError as exc:
        msg = f"cannot read the line: {exc}; close the quote"
        raise UsageError(msg) from None


def parse(name: str, line: str) -> argparse.Namespace:
    """The magic's line parsed and checked (UsageError, one line, on any mistake)."""
    args = PARSERS[name].parse_args(split(line))
    check = _CHECKS.get(name)
    if check is not None:
        check(args)
    return args


def keywords(name: str, args: argparse.Namespace, *, changed: bool = False) -> dict[str, Any]:
    """The library keyword arguments the parsed flags stand for (changed=True: only the
    flags given a value other than their default)."""
    defaults = {a.dest: a.default for a in PARSERS[name]._actions}
    out = {}
    for dest, kw in KEYWORDS[name].items():
        value = getattr(args, dest)
        if not changed or value != defaults.get(dest):
            out[kw] = value
    return out


def flag_spelling(name: str) -> Callable[[str, str], str | None]:
    """spell(argument, value) for an error's hint: 'use --timestamp COL' for the library
    argument timestamp_field in %training_set (None when the magic has no such flag)."""
    flags = {kw: dest for dest, kw in KEYWORDS[name].items()} | _OTHER_FLAGS.get(name, {})
    actions = {a.dest: a for a in PARSERS[name]._actions if a.option_strings}

    def spell(argument_name: str, value: str) -> str | None:
        action = actions.get(flags.get(argument_name, ""))
        if action is None:
            return None
        flag = max(action.option_strings, key=len)
        if action.nargs == 0:
            return f"use {flag}"
        return f"use {flag} {action.metavar or action.dest.upper()}"

    return spell


def _check_fsnb(args: argparse.Namespace) -> None:
    if args.command == "open":
        if not args.target:
            msg = "%fsnb open needs a directory: %fsnb open PATH"
            raise UsageError(msg)
        return
    if args.offline or args.warehouse:
        msg = "--offline and --warehouse go with open: %fsnb open PATH --offline spark --warehouse URI"
        raise UsageError(msg)
    if args.online or args.log:
        msg = "--online and --log go with open: %fsnb open PATH --online redis://host:port/0"
        raise UsageError(msg)
    if args.command == "list" and args.target:
        msg = f"%fsnb list takes no argument (got {args.target!r}); use %fsnb show {args.target}"
        raise UsageError(msg)
    if args.command == "show" and not args.target:
        msg = "%fsnb show needs a feature view name: %fsnb show NAME"
        raise UsageError(msg)
    if args.command not in ("store", *FSNB_COMMANDS):
        hint = closest(args.command, FSNB_COMMANDS)
        msg = f"unknown %fsnb command '{args.command}'{hint} (use open PATH, list or show NAME)"
        raise UsageError(msg)


def _check_feature_view(args: argparse.Namespace) -> None:
    args.entities = split_list(args.entity, "--entity")
    from fsnb.aggregation import parse_aggregate_flag
    from fsnb.errors import InvalidDefinition

    try:
        args.aggregations = [parse_aggregate_flag(text) for text in args.aggregate] if args.aggregate else None
    except InvalidDefinition as exc:
        raise UsageError(str(exc)) from None


def _check_materialize(args: argparse.Namespace) -> None:
    if args.incremental and args.start:
        msg = "--incremental starts at each view's watermark; drop --start (or drop --incremental)"
        raise UsageError(msg)


_CHECKS: dict[str, Callable[[argparse.Namespace], None]] = {
    "fsnb": _check_fsnb,
    "feature_view": _check_feature_view,
    "materialize": _check_materialize,
}


def split_list(text: str, what: str) -> list[str]:
    items = [p.strip() for p in text.split(",")]
    if not all(items):
        msg = f"{what} {text!r} has an empty name; write it like a,b"
        raise UsageError(msg)
    return items


# -- --entity KEY=VALUE ---------------------------------------------------------------------------
def entity_row(text: str, key_types: Mapping[str, str]) -> dict[str, Any]:
    """Parse 'user_id=42,region=7' into typed key values (key_types: the keys' registered
    DuckDB types; empty when unknown, then digits are an int and the rest text)."""
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
        row[key] = typed_key(key, value, key_types.get(key))
    missing = [k for k in key_types if k not in row]
    if missing:
        msg = f"--entity {text!r} lacks the key '{missing[0]}'; give {','.join(f'{k}=...' for k in key_types)}"
        raise UsageError(msg)
    return row


def typed_key(key: str, value: str, duck_type: str | None) -> Any:
    """One --entity value as the key's registered type reads it (quotes keep it text)."""
    from fsnb.types import family

    kind = family(duck_type) if duck_type else None
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
        if kind in (None, "string"):
            return value
        # Quotes say "text"; a text value can never equal a number or boolean key.
        msg = f"--entity {key}=\"{value}\": '{key}' is {duck_type}, and quotes make the value text; drop the quotes"
        raise UsageError(msg)
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
