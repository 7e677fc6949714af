"""fsnb.sync sits below the facade: its modules take the store's parts, import nothing
above them (the store, the notebook layer, the analysis) and form no circle among
themselves (docs/architecture.md). The whole-package check is test_architecture.py."""

from __future__ import annotations

from test_architecture import _cycles, _graph, _modules

ABOVE = ("fsnb.store", "fsnb.notebook", "fsnb.leakage", "fsnb.export", "fsnb.cli", "fsnb.server", "fsnb.demo")


def _sync_graph() -> dict[str, set[str]]:
    return {name: deps for name, deps in _graph().items() if name.startswith("fsnb.sync")}


def test_sync_modules_import_nothing_above_them() -> None:
    graph = _sync_graph()
    assert len(graph) >= 8  # the split modules were found
    upward = {name: sorted(d for d in deps if d.startswith(ABOVE)) for name, deps in graph.items()}
    assert {name: deps for name, deps in upward.items() if deps} == {}


def test_sync_modules_form_no_circle() -> None:
    graph = _sync_graph()
    inner = {name: {d for d in deps if d in graph} for name, deps in graph.items()}
    assert _cycles(inner) == []


def test_sync_modules_never_receive_the_feature_store() -> None:
    mentions = [name for name, path in _modules().items() if name.startswith("fsnb.sync") and "FeatureStore" in path.read_text()]
    assert mentions == []
