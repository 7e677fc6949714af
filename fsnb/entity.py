"""Entity values handed to get_online_features, typed against the view's key types.

A value is given as a Python or numpy scalar, or as a column (list, tuple, numpy
array, pandas/polars Series, Arrow array). Each is turned into what the online store
holds for a key of that type (DESIGN section 2): Python ints, strings and bools as
they are, dates as ISO text, timestamps as integer microseconds (nanoseconds for the
``_NS`` types) since the epoch in UTC. A value that cannot have the key's type is a
SchemaMismatch, never a lookup that silently finds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any

import numpy as np

from fsnb import types
from fsnb.errors import InvalidData, SchemaMismatch
from fsnb.timeutil import duration_us, is_ns

_LO, _HI = -(2**63), 2**63
_MISSING = object()
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NS_PER = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}

Encoder = Callable[[list[Any]], list[Any]]


def _refuse(column: str, duck_type: str, value: Any, why: str = "") -> SchemaMismatch:
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return SchemaMismatch(
        f"entity value {shown} ({type(value).__name__}) for '{column}' cannot be a {duck_type} key{why}; "
        f"pass a {_what(duck_type)}"
    )


def _what(duck_type: str) -> str:
    fam = types.family(duck_type)
    if fam == "int":
        return "Python or numpy integer"
    if fam == "string":
        return "string"
    if fam == "bool":
        return "bool"
    if duck_type.upper() == "DATE":
        return "datetime.date"
    return "datetime (naive means UTC) or pandas/numpy timestamp"


def encoder(column: str, duck_type: str | None) -> Encoder | None:
    """A function typing a list of one key column's values (None: use them as given)."""
    if duck_type is None:
        return None
    fam = types.family(duck_type)
    if fam == "int":
        def one_int(v: Any) -> Any:
            if v is None:
                return None
            if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
                if _LO <= v < _HI:
                    return int(v)
                raise _refuse(column, duck_type, v, " (out of the 64-bit range)")
            raise _refuse(column, duck_type, v)

        def ints(values: list[Any]) -> list[Any]:
            return [v if type(v) is int and _LO <= v < _HI else one_int(v) for v in values]

        return ints
    if fam == "string":
        def one_str(v: Any) -> Any:
            if v is None:
                return None
            if isinstance(v, str):
                return str(v)
            raise _refuse(column, duck_type, v)

        def strs(values: list[Any]) -> list[Any]:
            return [v if type(v) is str else one_str(v) for v in values]

        return strs
    if fam == "bool":
        def one_bool(v: Any) -> Any:
            if v is None or v is True or v is False:
                return v
            if isinstance(v, np.bool_):
                return bool(v)
            raise _refuse(column, duck_type, v)

        return lambda values: [one_bool(v) for v in values]
    if duck_type.upper() == "DATE":
        def one_date(v: Any) -> Any:
            if v is None:
                return None
            if isinstance(v, np.datetime64) and np.datetime_data(v.dtype)[0] == "D":
                v = v.astype(date)
            if isinstance(v, date) and not isinstance(v, datetime):
                return v.isoformat()
            raise _refuse(column, duck_type, v)

        return lambda values: [one_date(v) for v in values]
    if fam == "time":
        unit = 1 if is_ns(duck_type) else 1_000

        def one_time(v: Any) -> Any:
            if v is None:
                return None
            ns = _epoch_ns(v)
            if ns is None:
                raise _refuse(column, duck_type, v)
            if ns % unit:
                raise _refuse(column, duck_type, v, " (it has nanoseconds; the key keeps microseconds)")
            return ns // unit

        return lambda values: [one_time(v) for v in values]
    return None


def _epoch_ns(v: Any) -> int | None:
    """Nanoseconds since the epoch (UTC; naive means UTC) of a timestamp value, or None."""
    if isinstance(v, np.datetime64):
        if np.isnat(v):
            return None
        return int(v.astype("datetime64[ns]").astype(np.int64))
    value = getattr(v, "value", None)
    if isinstance(v, datetime) and type(v).__name__ == "Timestamp" and isinstance(value, int):
        return value  # pandas: exact nanoseconds, already UTC-based for aware and naive alike
    if isinstance(v, datetime):
        aware = v if v.tzinfo is not None else v.replace(tzinfo=timezone.utc)
        delta = aware - _EPOCH
        return duration_us(delta) * 1_000
    return None


def _column(value: Any) -> list[Any] | None:
    """The values of a column-like object as a Python list (None if value is a scalar)."""
    if isinstance(value, list):
        return value
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            return None
        if value.dtype.kind == "M":
            return list(value)  # keep numpy datetimes: they carry nanoseconds
        return value.tolist()  # type: ignore[no-any-return]
    module = type(value).__module__.split(".")[0]
    name = type(value).__name__
    if module == "pandas" and name in ("Series", "Index", "DatetimeIndex"):
        if value.hasnans:
            value = value.astype(object).where(value.notna(), None)
        return list(value) if value.dtype.kind == "M" else value.tolist()  # Timestamps keep nanoseconds
    if module == "polars" and name == "Series":
        value = value.to_arrow()
        module = "pyarrow"
    if module == "pyarrow" and hasattr(value, "to_pylist") and hasattr(value, "type"):
        import pyarrow as pa

        t = value.type
        if pa.types.is_timestamp(t):
            # Integers are exact (to_pylist would drop nanoseconds); naive means UTC.
            step = _NS_PER[t.unit]
            raw = value.cast(pa.int64()).to_pylist()
            return [None if v is None else np.datetime64(v * step, "ns") for v in raw]
        return value.to_pylist()  # type: ignore[no-any-return]
    return None


def key_columns(entity_rows: Any, columns: Sequence[str]) -> dict[str, list[Any]]:
    """One list of values per entity column, from rows (a sequence of mappings) or from
    a mapping of columns (or of scalars: one entity)."""
    if isinstance(entity_rows, Mapping):
        given = {k: _column(entity_rows[k]) for k in columns if k in entity_rows}
        as_columns = [k for k, v in given.items() if v is not None]
        if as_columns:
            scalars = [k for k, v in given.items() if v is None]
            if scalars:
                msg = f"entity_rows gives '{as_columns[0]}' as a column but '{scalars[0]}' as one value; give both as columns of equal length"
                raise InvalidData(msg)
            lengths = {len(v) for v in given.values() if v is not None}
            if len(lengths) > 1:
                msg = f"entity_rows columns differ in length ({', '.join(str(n) for n in sorted(lengths))}); give one value per entity in each"
                raise InvalidData(msg)
            missing = [k for k in columns if k not in given]
            if missing:
                msg = f"entity_rows lacks key '{missing[0]}'; give columns {list(columns)}"
                raise InvalidData(msg)
            return {k: v for k, v in given.items() if v is not None}
        entity_rows = [entity_rows]
    out: dict[str, list[Any]] = {}
    try:
        for k in columns:
            out[k] = [row[k] for row in entity_rows]
    except KeyError as exc:
        msg = f"entity row lacks key '{exc.args[0]}'; give every row {list(columns)}"
        raise InvalidData(msg) from None
    return out


class KeyPlan:
    """How to type the entity values of one feature list's readers (built once, reused).

    keys(entity_rows) gives the echoed key columns and, per reader, its typed key
    columns. One row of plain Python ints and strings (the common online call) takes
    a fast path that checks each value's type and builds nothing else.
    """

    def __init__(self, readers: Sequence[Any], columns: Sequence[str]) -> None:
        self.readers = readers
        self.columns = list(columns)
        self.specs: list[tuple[str, str | None]] = []
        self.reader_specs: list[list[int]] = []
        for reader in readers:
            key_types = reader.view.entity_types or {}
            refs = []
            for k in reader.view.entity_columns:
                spec = (k, key_types.get(k))
                if spec not in self.specs:
                    self.specs.append(spec)
                refs.append(self.specs.index(spec))
            self.reader_specs.append(refs)
        self.encoders = [encoder(k, t) for k, t in self.specs]
        one_type = len({k for k, _ in self.specs}) == len(self.specs)
        kinds = [_fast_kind(t) for _, t in self.specs]
        # The fast path: one key column (every reader types it alike), an int or a string.
        self.single: type | None = None
        if one_type and len(self.specs) == 1 and self.columns == [self.specs[0][0]]:
            self.single = kinds[0]

    def keys(self, entity_rows: Any) -> tuple[dict[str, list[Any]], list[list[list[Any]]]]:
        kind: Any = self.single
        if kind is not None:
            # One key column of ints or strings, one row of a plain Python value.
            row = entity_rows[0] if type(entity_rows) is list and len(entity_rows) == 1 else entity_rows
            if type(row) is dict:
                v: Any = row.get(self.columns[0], _MISSING)
                if type(v) is kind and (kind is str or _LO <= v < _HI):
                    one = [v]
                    return {self.columns[0]: one}, [[one]] * len(self.readers)
        given = key_columns(entity_rows, self.columns)
        typed: list[list[Any]] = []
        out: dict[str, list[Any]] = {}
        for (k, t), enc in zip(self.specs, self.encoders, strict=True):
            values = list(given[k]) if enc is None else enc(given[k])
            typed.append(values)
            if t is None or types.family(t) != "time":
                out.setdefault(k, values)
        for k in self.columns:
            out.setdefault(k, list(given[k]))
        return out, [[typed[i] for i in refs] for refs in self.reader_specs]


def _fast_kind(duck_type: str | None) -> type | None:
    if duck_type is None:
        return None
    fam = types.family(duck_type)
    return int if fam == "int" else str if fam == "string" else None
