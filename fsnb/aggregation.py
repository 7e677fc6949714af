"""Window aggregation definitions: plain data, no storage (docs/architecture.md, "Point-in-time rules": window aggregations).

An ``Aggregation`` names a function over a column of a view's raw events and a window;
for a label (k, t) its value is the function over k's events with event time in
(t - window, t]. The window is parsed once into a ``timedelta`` and also kept as
written, because it is part of the feature's default name (``amount_sum_7d``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, get_args

from fsnb import types
from fsnb.errors import InvalidDefinition
from fsnb.sqlnames import check_name

if TYPE_CHECKING:
    from fsnb.definitions import FeatureView

Function = Literal["count", "sum", "mean", "min", "max", "stddev"]
FUNCTIONS: tuple[str, ...] = get_args(Function)

_WINDOW_RE = re.compile(r"^([1-9][0-9]{0,8})(w|d|h|m|s)$")
_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
# Long enough for any feature, short enough that a window in nanoseconds (and a label
# time minus it) stays inside a 64-bit integer for every engine.
MAX_WINDOW = timedelta(days=36500)
_HINTS = {"avg": "mean", "average": "mean", "std": "stddev", "stdev": "stddev", "stddev_samp": "stddev",
          "total": "sum", "minimum": "min", "maximum": "max", "cnt": "count"}
_FLAG_RE = re.compile(
    r"^\s*(?P<fn>[A-Za-z_]+)\s*\(\s*(?P<col>\*|[^()\s]*)\s*\)\s+(?P<win>\S+)(?:\s+[Aa][Ss]\s+(?P<name>\S+))?\s*$"
)
_FLAG_EXAMPLE = "write it like 'sum(amount) 7d', 'mean(amount) 30d' or 'count(*) 1d as txn_count_1d'"


def parse_window(window: timedelta | str) -> tuple[timedelta, str]:
    """'7d'/'12h'/'90m'/'45s'/'2w' (or a timedelta of whole seconds) -> (timedelta, text)."""
    if isinstance(window, timedelta):
        seconds = window.total_seconds()
        if window <= timedelta(0) or window > MAX_WINDOW or window % timedelta(seconds=1):
            msg = f"window {window} must be a positive whole number of seconds, at most {MAX_WINDOW.days} days"
            raise InvalidDefinition(msg)
        whole = int(seconds)
        unit = next(u for u in ("d", "h", "m", "s") if whole % _UNIT_SECONDS[u] == 0)
        return window, f"{whole // _UNIT_SECONDS[unit]}{unit}"
    if not isinstance(window, str):
        msg = f"window must be a string like '7d' or a timedelta, not {type(window).__name__}"
        raise InvalidDefinition(msg)
    text = window.strip()
    match = _WINDOW_RE.match(text)
    if not match:
        msg = f"cannot read window {window!r}; write a whole number and a unit, like '7d', '12h', '90m', '45s' or '2w'"
        raise InvalidDefinition(msg)
    amount, unit = match.groups()
    delta = timedelta(seconds=int(amount) * _UNIT_SECONDS[unit])
    if delta > MAX_WINDOW:
        msg = f"window {text!r} is longer than {MAX_WINDOW.days} days; use a shorter window"
        raise InvalidDefinition(msg)
    return delta, text


def _function_hint(function: str) -> str:
    hint = _HINTS.get(function.lower())
    return f"; did you mean '{hint}'?" if hint else ""


@dataclass(frozen=True)
class Aggregation:
    """``function`` of ``column`` over each key's events in (t - window, t].

    ``column=None`` counts events (only with ``count``); ``count`` of a column counts
    its non-null values. The feature is named ``name``, else ``{column}_{function}_{window}``
    (``count_{window}`` for events), with the window as written.
    """

    column: str | None
    function: Function
    window: timedelta = field(compare=True)
    name: str = ""
    window_text: str = field(default="", compare=False, repr=False)

    def __init__(self, column: str | None, function: str, window: timedelta | str, name: str | None = None) -> None:
        if not isinstance(function, str) or function not in FUNCTIONS:
            shown = function if isinstance(function, str) else type(function).__name__
            msg = f"unknown aggregation function {shown!r}; use one of {', '.join(FUNCTIONS)}{_function_hint(str(shown))}"
            raise InvalidDefinition(msg)
        if column is None:
            if function != "count":
                msg = f"{function} needs a column: Aggregation('amount', {function!r}, ...); only count may have column=None"
                raise InvalidDefinition(msg)
        else:
            check_name("aggregation column", column)
        delta, text = parse_window(window)
        if name is None:
            name = f"count_{text}" if column is None else f"{column}_{function}_{text}"
        check_name("feature", name)
        object.__setattr__(self, "column", column)
        object.__setattr__(self, "function", function)
        object.__setattr__(self, "window", delta)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "window_text", text)

    def __repr__(self) -> str:
        return f"Aggregation({self.column!r}, {self.function!r}, {self.window_text!r}, name={self.name!r})"

    @property
    def counts_events(self) -> bool:
        return self.column is None

    def output_type(self, column_type: str | None) -> str:
        """The DuckDB type of the feature, given the column's type (None for events)."""
        if self.function == "count":
            return "BIGINT"
        if self.function in ("mean", "stddev"):
            return "DOUBLE"
        if self.function == "sum":
            return "BIGINT" if column_type is not None and types.family(column_type) == "int" else "DOUBLE"
        return column_type or "VARCHAR"

    def check_column_type(self, view_name: str, column_type: str) -> None:
        """Raise when the function cannot apply to a column of this DuckDB type."""
        fam = types.family(column_type)
        if self.function in ("sum", "mean", "stddev") and fam not in ("int", "float"):
            msg = (
                f"{self.function}({self.column}) in '{view_name}' needs a numeric column, but '{self.column}' is "
                f"{column_type}; aggregate a number column or use count/min/max"
            )
            raise InvalidDefinition(msg)
        if self.function in ("min", "max") and fam not in ("int", "float", "string", "time", "bool"):
            msg = (
                f"{self.function}({self.column}) in '{view_name}' needs a column that can be ordered, but "
                f"'{self.column}' is {column_type}; use count or aggregate another column"
            )
            raise InvalidDefinition(msg)

    # -- persistence ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "function": self.function, "window": self.window_text, "name": self.name}

    @classmethod
    def from_dict(cls, data: Any) -> Aggregation:
        """Rebuild from to_dict's output, trusting nothing (registry files may be crafted)."""
        if not isinstance(data, Mapping):
            msg = f"an aggregation must be a mapping with column, function, window and name, not {type(data).__name__}"
            raise InvalidDefinition(msg)
        wanted = {"column", "function", "window", "name"}
        if set(data) != wanted:
            extra = sorted(map(str, set(data) - wanted))
            missing = sorted(wanted - set(data))
            what = f"unexpected key '{extra[0]}'" if extra else f"missing key '{missing[0]}'"
            msg = f"malformed aggregation ({what}); it needs exactly column, function, window and name"
            raise InvalidDefinition(msg)
        column, function, window, name = data["column"], data["function"], data["window"], data["name"]
        if column is not None and not isinstance(column, str):
            msg = f"malformed aggregation: column must be a name or null, not {type(column).__name__}"
            raise InvalidDefinition(msg)
        for label, value in (("function", function), ("window", window), ("name", name)):
            if not isinstance(value, str):
                msg = f"malformed aggregation: {label} must be a string, not {type(value).__name__}"
                raise InvalidDefinition(msg)
        agg = cls(column, function, window, name=name)
        if agg.window_text != window:
            msg = f"malformed aggregation: window {window!r} is not written the way fsnb writes it; use {agg.window_text!r}"
            raise InvalidDefinition(msg)
        return agg


def parse_aggregate_flag(text: str) -> Aggregation:
    """``--aggregate "sum(amount) 7d"`` / ``"count(*) 1d as txn_count_1d"`` -> Aggregation."""
    match = _FLAG_RE.match(text) if isinstance(text, str) else None
    if not match:
        msg = f"cannot read --aggregate {text!r}; {_FLAG_EXAMPLE}"
        raise InvalidDefinition(msg)
    function = match["fn"].lower()
    column_text = match["col"]
    if function not in FUNCTIONS:
        msg = f"--aggregate {text!r}: unknown function '{match['fn']}'; use one of {', '.join(FUNCTIONS)}{_function_hint(function)}"
        raise InvalidDefinition(msg)
    if column_text in ("", "*"):
        if function != "count":
            msg = f"--aggregate {text!r}: {function} needs a column, like '{function}(amount) {match['win']}'; only count takes '*'"
            raise InvalidDefinition(msg)
        column = None
    else:
        column = column_text
    try:
        return Aggregation(column, function, match["win"], name=match["name"])
    except InvalidDefinition as exc:
        msg = f"--aggregate {text!r}: {exc}"
        raise InvalidDefinition(msg) from None


def check_stored_columns(view_name: str, aggregations: Sequence[Aggregation], stored: Mapping[str, str]) -> dict[str, str]:
    """The stored type of each column the aggregations read (stored: column -> DuckDB type
    of the view's offline history), each checked against its function; one error naming
    an aggregation whose column is not stored."""
    column_types: dict[str, str] = {}
    for agg in aggregations:
        if agg.column is None:
            continue
        if agg.column not in stored:
            msg = f"aggregation '{agg.name}' reads '{agg.column}', which '{view_name}' does not store; ingest it or fix the aggregation"
            raise InvalidDefinition(msg)
        agg.check_column_type(view_name, stored[agg.column])
        column_types[agg.column] = stored[agg.column]
    return column_types


def check_aggregations(view_name: str, aggregations: list[Aggregation], reserved: set[str]) -> tuple[Aggregation, ...]:
    """Validate a view's aggregation list: Aggregation objects, unique output names."""
    out: list[Aggregation] = []
    for agg in aggregations:
        if not isinstance(agg, Aggregation):
            msg = f"aggregations of '{view_name}' must be fsnb.Aggregation objects, not {type(agg).__name__}"
            raise InvalidDefinition(msg)
        if agg.name in reserved:
            msg = f"aggregation '{agg.name}' of '{view_name}' has the name of a key, timestamp or column; pass name=..."
            raise InvalidDefinition(msg)
        if any(a.name == agg.name for a in out):
            msg = f"'{view_name}' has two aggregations named '{agg.name}'; give one of them name=..."
            raise InvalidDefinition(msg)
        out.append(agg)
    return tuple(out)


# -- on a FeatureView (definitions.py calls these; no import back, docs/architecture.md) --
def check_view_aggregations(view: FeatureView) -> tuple[Aggregation, ...] | None:
    """The view's aggregations, validated against the rest of its definition."""
    aggs = view.aggregations
    if aggs is None:
        return None
    if isinstance(aggs, Aggregation) or not isinstance(aggs, list | tuple):
        msg = f"aggregations of '{view.name}' must be a list of fsnb.Aggregation, not {type(aggs).__name__}"
        raise InvalidDefinition(msg)
    if not aggs:
        return None
    if view.ttl is not None:
        msg = f"'{view.name}' has aggregations and a ttl; drop the ttl (each aggregation's window bounds it)"
        raise InvalidDefinition(msg)
    raw = view.feature_names
    reserved = {*view.system_columns, *raw}
    out = check_aggregations(view.name, list(aggs), reserved)
    columns = {*raw, view.timestamp_field, *([view.created_timestamp_field] if view.created_timestamp_field else [])}
    types = view.feature_types
    for agg in out:
        if agg.column is None:
            continue
        if view.features is not None and agg.column not in columns:
            msg = (
                f"aggregation '{agg.name}' of '{view.name}' reads '{agg.column}', which is not a column of its events "
                f"({', '.join(raw) or 'none'}); add it to features or fix the aggregation"
            )
            raise InvalidDefinition(msg)
        column_type = types.get(agg.column)
        if column_type is not None:
            agg.check_column_type(view.name, column_type)  # at first ingest, when the types become known
    return out


def aggregations_from_dict(value: Any) -> list[Aggregation] | None:
    """A definition's "aggregations" entry (absent or a list of Aggregation.to_dict())."""
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        msg = f"'aggregations' must be a non-empty JSON array of aggregations, not {value!r:.40}"
        raise InvalidDefinition(msg)
    return [Aggregation.from_dict(item) for item in value]


def describe(agg: Aggregation) -> str:
    """The aggregation as the magic's --aggregate flag writes it: 'sum(amount) 7d as amount_sum_7d'."""
    return f"{agg.function}({agg.column or '*'}) {agg.window_text} as {agg.name}"


def served_features(view: FeatureView) -> tuple[str, ...]:
    """The feature names a view serves: its aggregations' names, else its features."""
    if view.aggregations:
        return tuple(a.name for a in view.aggregations)
    return view.feature_names


def served_types(view: FeatureView) -> dict[str, str | None]:
    """Name -> DuckDB type of what the view serves (None while an event column's type is unknown)."""
    if not view.aggregations:
        return view.feature_types
    raw = view.feature_types
    out: dict[str, str | None] = {}
    for a in view.aggregations:
        known = a.column is None or raw.get(a.column) is not None or a.function in ("count", "mean", "stddev")
        out[a.name] = a.output_type(raw.get(a.column) if a.column else None) if known else None
    return out


def schema_rows(view: FeatureView, rows: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """A view's (column, role, type) rows with its event columns and its aggregations."""
    out = [(c, "event column" if role == "feature" else role, t) for c, role, t in rows]
    served = served_types(view)
    for agg in view.aggregations or ():
        what = f"{agg.function}({agg.column or '*'}) over {agg.window_text}"
        out.append((agg.name, f"aggregation: {what}", served.get(agg.name) or "?"))
    return out
