"""The checks at the public methods' entrance: each bad argument is one line naming what
is wrong and how to fix it, raised before any store file is touched."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fsnb.errors import InvalidData, InvalidDefinition


def view_name(name: Any) -> str:
    if not isinstance(name, str):
        msg = f"a feature view name is a str, not {type(name).__name__} ({name!r})"
        raise InvalidDefinition(msg)
    return name


def column_name(what: str, name: Any) -> str:
    if not isinstance(name, str) or not name:
        msg = f"{what} must be a column name (a non-empty str), not {name!r}"
        raise InvalidDefinition(msg)
    return name


def flag(what: str, value: Any) -> None:
    if not isinstance(value, bool | np.bool_):
        msg = f"{what} must be True or False, not {value!r}"
        raise InvalidDefinition(msg)


def check_namespace(namespace: Any) -> None:
    if namespace is not None and not isinstance(namespace, Mapping):
        msg = f"namespace must be a dict of names to DataFrames (like globals()), not {type(namespace).__name__}"
        raise InvalidData(msg)


def check_version(version: Any) -> None:
    if version is not None and (isinstance(version, bool) or not isinstance(version, int | np.integer)):
        msg = f"version must be an int (1, 2, ...), not {version!r}"
        raise InvalidDefinition(msg)


def materialize_args(views: Any, progress: Any) -> None:
    if views is not None:
        if isinstance(views, str):
            msg = f"views is a list of names; write views=[{views!r}]"
            raise InvalidDefinition(msg)
        if not isinstance(views, list | tuple) or not all(isinstance(v, str) for v in views):
            msg = f"views must be a list of feature view names, not {views!r}"
            raise InvalidDefinition(msg)
    if progress is not None:
        flag("progress", progress)


def training_set_args(name: Any, frame: Any) -> None:
    import polars as pl

    if not isinstance(name, str) or not name.strip() or not name.isprintable():
        msg = f"a training set's name must be a non-empty one-line str, not {name!r}"
        raise InvalidDefinition(msg)
    if not isinstance(frame, pl.DataFrame):
        msg = f"record_training_set() takes the polars DataFrame get_historical_features returned, not {type(frame).__name__}"
        raise InvalidData(msg)


def is_column(value: Any) -> bool:
    """A list-like of values (list, tuple, NumPy array, Series, Arrow array), not one value."""
    if isinstance(value, str | bytes | Mapping):
        return False
    if isinstance(value, list | tuple):
        return True
    return getattr(value, "ndim", 1) == 1 and hasattr(value, "__len__") and hasattr(value, "__iter__")


def column_values(value: Any) -> list[Any]:
    for method in ("to_pylist", "to_list", "tolist"):
        convert = getattr(value, method, None)
        if callable(convert):
            return list(convert())
    return list(value)


PLAIN_KEYS = frozenset({int, str, float, bool, type(None)})
ROWS_HINT = "pass a list of dicts like [{'user_id': 42}], or a dict of columns like {'user_id': [42, 43]}"


def plain_rows(entity_rows: Any) -> bool:
    """One dict (or a list holding one) of plain Python values: the hot path, no checks needed."""
    row = entity_rows[0] if type(entity_rows) is list and len(entity_rows) == 1 else entity_rows
    return type(row) is dict and all(type(v) in PLAIN_KEYS for v in row.values())


def entity_rows(rows_in: Any) -> list[Mapping[str, Any]]:
    """Normalize get_online_features' entity_rows to a list of {key: value} rows."""
    if isinstance(rows_in, Mapping):
        columns = [k for k, v in rows_in.items() if is_column(v)]
        if not columns:
            rows: list[Any] = [rows_in]
        elif len(columns) != len(rows_in):
            single = next(k for k in rows_in if k not in columns)
            msg = f"entity_rows mixes columns ({columns[0]!r}) and single values ({single!r}); {ROWS_HINT}"
            raise InvalidData(msg)
        else:
            values = {k: column_values(v) for k, v in rows_in.items()}
            lengths = {k: len(v) for k, v in values.items()}
            if len(set(lengths.values())) > 1:
                msg = f"entity_rows columns differ in length ({lengths}); give every key one value per entity"
                raise InvalidData(msg)
            rows = [dict(zip(values, row, strict=True)) for row in zip(*values.values(), strict=True)]
    elif isinstance(rows_in, list | tuple):
        rows = list(rows_in)
    else:
        msg = f"entity_rows cannot be a {type(rows_in).__name__}; {ROWS_HINT}"
        raise InvalidData(msg)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            msg = f"entity row {i} is a {type(row).__name__}, not a dict; {ROWS_HINT}"
            raise InvalidData(msg)
        for key, value in row.items():
            if type(value) in PLAIN_KEYS:
                continue  # the common case, checked without isinstance calls (a hot path)
            if is_column(value) or isinstance(value, Mapping | set | frozenset):
                msg = f"entity row {i} gives '{key}' a {type(value).__name__}; each row holds one value per key ({ROWS_HINT})"
                raise InvalidData(msg)
    return rows
