"""Turn a notebook into a plain Python pipeline (``fsnb export NOTEBOOK.ipynb -o PIPELINE.py``).

The script keeps the notebook's own code cells verbatim, turns each fsnb magic into
the API call it stands for, drops what only makes sense in a notebook (``display``,
shell escapes, other magics), and records the fingerprint each ``%training_set -o
VAR`` had when the notebook ran: from the notebook's store (its registry's
training-set records) or, failing that, from the cell's saved output. Running the
script rebuilds everything in a fresh process and fails if a training set changed.

The magic lines are parsed by the magics' own grammar (``fsnb.notebook.grammar``,
IPython's ``magic_arguments``), imported when an export runs. The parts:
``notebook`` (reading cells, the store, fingerprints), ``translate`` (cells and magics
to statements), ``code`` (literals, names, splicing), ``script`` (the script around them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fsnb.export.code import literal as _value  # noqa: F401 - kept for callers of the old module
from fsnb.export.notebook import ExportError, TrainingSet, names_used, notebook_store, read_notebook

__all__ = ["ExportError", "Pipeline", "TrainingSet", "export", "write"]


@dataclass
class Pipeline:
    """What export() produced: the script's text and what it contains."""

    notebook: Path
    script: str
    views: list[str] = field(default_factory=list)
    training_sets: dict[str, TrainingSet] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        views = len(dict.fromkeys(self.views))
        sets = len(self.training_sets)
        checked = sum(1 for t in self.training_sets.values() if t.fingerprint)
        return (
            f"{views} feature view{'s' if views != 1 else ''}, {sets} training set{'s' if sets != 1 else ''}"
            f" ({checked} with a recorded fingerprint)"
        )


def export(notebook: str | os.PathLike[str], *, store: str | os.PathLike[str] | None = None, script_name: str | None = None) -> Pipeline:
    """Translate a notebook into a pipeline script (see the module docstring)."""
    from fsnb.config import store_path
    from fsnb.export.script import script
    from fsnb.export.translate import Translator

    path = Path(notebook).expanduser().resolve()
    cells, headings = read_notebook(path)
    chosen = store_path(store) if store is not None else notebook_store(path, cells)
    if store is not None and not (store_path(store) / "registry.sqlite").exists():
        msg = f"no fsnb store at {chosen}; pass the directory the notebook used (e.g. its .fsnb)"
        raise ExportError(msg)
    translator = Translator(path, chosen, names_used(cells))
    text = script(path, cells, headings, translator, script_name or path.with_suffix(".py").name)
    return Pipeline(path, text, translator.views, translator.training_sets, translator.warnings)


def write(notebook: str | os.PathLike[str], output: str | os.PathLike[str], *, store: str | os.PathLike[str] | None = None) -> Pipeline:
    """export() and write the script to output."""
    target = Path(output)
    pipeline = export(notebook, store=store, script_name=target.name)
    target.write_text(pipeline.script, encoding="utf-8")
    return pipeline
