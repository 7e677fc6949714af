"""fsnb: a feature store that lives in the Jupyter notebook.

Public names load on first use so that ``import fsnb`` and ``%load_ext fsnb`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Aggregation",
    "FeatureStore",
    "FeatureView",
    "FsnbError",
    "InvalidData",
    "InvalidDefinition",
    "LeakageReport",
    "QueryError",
    "SchemaMismatch",
    "StoreBusy",
    "UnknownFeature",
    "UnknownFeatureView",
    "fingerprint",
    "load_ipython_extension",
    "unload_ipython_extension",
]

_LAZY = {
    "Aggregation": "fsnb.aggregation",
    "FeatureStore": "fsnb.store",
    "FeatureView": "fsnb.definitions",
    "FsnbError": "fsnb.errors",
    "InvalidData": "fsnb.errors",
    "InvalidDefinition": "fsnb.errors",
    "LeakageReport": "fsnb.leakage",
    "QueryError": "fsnb.errors",
    "SchemaMismatch": "fsnb.errors",
    "StoreBusy": "fsnb.errors",
    "UnknownFeature": "fsnb.errors",
    "UnknownFeatureView": "fsnb.errors",
    "fingerprint": "fsnb.fingerprint",
}

if TYPE_CHECKING:
    from fsnb.aggregation import Aggregation
    from fsnb.definitions import FeatureView
    from fsnb.errors import (
        FsnbError,
        InvalidData,
        InvalidDefinition,
        QueryError,
        SchemaMismatch,
        StoreBusy,
        UnknownFeature,
        UnknownFeatureView,
    )
    from fsnb.fingerprint import fingerprint
    from fsnb.leakage import LeakageReport
    from fsnb.store import FeatureStore


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'fsnb' has no attribute {name!r}"
        raise AttributeError(msg)
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def load_ipython_extension(ipython: Any) -> None:
    from fsnb.notebook.magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from fsnb.notebook.magics import unload

    unload(ipython)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    # fsnb.server imports jupyter_server: only the server loads it, never `import fsnb`.
    return [{"module": "fsnb.server"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "fsnb"}]
