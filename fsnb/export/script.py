"""The pipeline script: its fixed parts (docstring, fingerprint check, main) around the
translated cells, assembled and compiled."""

from __future__ import annotations

from pathlib import Path

from fsnb.export.code import comment, docstring_text, indent, string
from fsnb.export.notebook import Cell, ExportError
from fsnb.export.translate import Translator

# -- the script ---------------------------------------------------------------------------
_HEADER = '''"""Pipeline exported from {notebook} by `fsnb export`.

Rebuilds the notebook's feature views and training sets in a fresh process, then
checks that each training set has the fingerprint it had when the notebook ran.
Exits non-zero, naming the training set, if its data changed.

    python {script} [--store PATH]    # default: $FSNB_STORE, else ./.fsnb
                     [--offline duckdb|spark] [--warehouse URI]    # default: the notebook's engine
"""
'''

_CHECK = '''

def check_fingerprints({sets}: dict[str, Any]) -> list[str]:
    """Print one line per training set; return the names whose data changed."""
    changed = []
    for name, expected in RECORDED_FINGERPRINTS.items():
        frame = {sets}.get(name)
        if frame is None:
            print(f"training set {{name!r}}: not built")
            changed.append(name)
            continue
        actual = fsnb.fingerprint(frame)
        if expected is None:
            verdict = "built (the notebook recorded no fingerprint)"
        elif actual == expected:
            verdict = "same as in the notebook"
        else:
            verdict = f"CHANGED (the notebook had {{expected}})"
            changed.append(name)
        print(f"training set {{name!r}}: {{frame.height}} rows x {{frame.width}} columns, fingerprint {{actual}}, {{verdict}}")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Rebuild the feature views and training sets of {{NOTEBOOK}}.")
    parser.add_argument("--store", default=None, help="the fsnb store directory (default: $FSNB_STORE, else ./.fsnb)")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="also fail (exit 1) when a training set has no fingerprint from the notebook to check",
    )
    parser.add_argument("--offline", default=OFFLINE_ENGINE, choices=fsnb.config.ENGINES,
                        help="the offline engine (default: the notebook's, else the store's fsnb.toml)")
    parser.add_argument("--warehouse", default=None,
                        help="with --offline spark: where the Delta tables live (default: the store's fsnb.toml, else STORE/warehouse)")
    args = parser.parse_args(argv)
    store_dir = fsnb.config.store_path(args.store)  # where fsnb looks for a store, as everywhere
    # Notebook code that opens fsnb.FeatureStore(None) follows --store too.
    os.environ[fsnb.config.STORE_ENV] = str(store_dir)
    try:
        warehouse = args.warehouse
        if args.offline == "spark" and warehouse is None and fsnb.config.load_config(store_dir).warehouse is None:
            warehouse = str(store_dir / "warehouse")
        with fsnb.FeatureStore(store_dir, offline=args.offline, warehouse=warehouse) as {store}:
            print(f"{{NOTEBOOK}}: rebuilding into the store at {{{store}.path}}")
            changed = check_fingerprints(build({store}))
    except fsnb.FsnbError as exc:
        print(f"error: {{exc}}", file=sys.stderr)
        return 1
    if changed:
        names = ", ".join(repr(name) for name in changed)
        print(
            f"error: training set {{names}} differs from the one {{NOTEBOOK}} built "
            "(fingerprint mismatch): its input data or feature definitions changed",
            file=sys.stderr,
        )
        return 1
    # Say what was verified; anything that was not is a warning (an error with --strict).
    total = len(RECORDED_FINGERPRINTS)
    unchecked = [name for name, expected in RECORDED_FINGERPRINTS.items() if not expected]
    if total and not unchecked:
        print(f"ok: {{total}} of {{total}} training set(s) checked against the notebook, all equal")
        return 0
    if not total:
        why = f"{{NOTEBOOK}} builds no training set with %training_set ... -o VAR"
    else:
        names = ", ".join(repr(name) for name in unchecked)
        why = f"the notebook recorded no fingerprint for training set {{names}} (run the notebook, then export again)"
    if len(unchecked) < total:
        print(f"ok: {{total - len(unchecked)}} of {{total}} training set(s) checked against the notebook, all equal")
        print(f"warning: not verified: {{why}}", file=sys.stderr)
    else:
        print(f"warning: nothing was verified: {{why}}", file=sys.stderr)
    return 1 if args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
'''


def script(path: Path, cells: list[Cell], headings: list[tuple[int, list[str]]], translator: Translator, script_name: str) -> str:
    """The whole script for the notebook at path (its cells translated by translator)."""
    body: list[str] = []
    heading_at = dict(headings)
    for cell in cells:
        code = translator.cell(cell)
        titles = heading_at.get(cell.index, [])
        if not code.strip():
            continue
        if body:
            body.append("")
        body.extend(f"    # {comment(t)}" for t in titles[:1])
        body.extend(indent(code))
    if not translator.training_sets:
        translator.warnings.append(
            "the notebook builds no training set with %training_set ... -o VAR, so the pipeline "
            "rebuilds it but has no fingerprint to check"
        )
    out = [_HEADER.format(notebook=docstring_text(path.name), script=docstring_text(script_name))]
    out.append("from __future__ import annotations\n")
    out.append("import argparse\nimport os\nimport sys\nfrom typing import Any\n")
    out.append("import fsnb\nimport fsnb.config\nimport fsnb.sources\n")
    if translator.hoisted:
        out.append("\n".join(dict.fromkeys(translator.hoisted)) + "\n")
    out.append(f"NOTEBOOK = {string(path.name)}")
    engine = string(translator.offline) if translator.offline else "None"  # a checked engine name, quoted
    out.append(f"OFFLINE_ENGINE = {engine}  # what the notebook's %fsnb open chose (None: the store's fsnb.toml decides)\n")
    out.append("# What fsnb.fingerprint() gave for each training set when the notebook ran.")
    if translator.training_sets:
        out.append("RECORDED_FINGERPRINTS: dict[str, str | None] = {")
        for ts in translator.training_sets.values():
            if ts.fingerprint:
                out.append(f"    {string(ts.name)}: {string(ts.fingerprint)},  # from {ts.source}")
            else:
                out.append(f"    {string(ts.name)}: None,  # not recorded: run the notebook, then export again")
        out.append("}\n")
    else:
        out.append("RECORDED_FINGERPRINTS: dict[str, str | None] = {}\n")
    for name, text in translator.constants.items():
        out.append(f"{name} = {string(text)}\n")
    sets = translator.sets
    out.append("")
    out.append(f"def build({translator.store}: fsnb.FeatureStore) -> dict[str, Any]:")
    out.append('    """The notebook\'s code, its fsnb magics as API calls; returns the training sets."""')
    out.append(f"    {sets}: dict[str, Any] = {{}}")
    out.append("")
    out.extend(body)
    out.append("")
    out.append(f"    return {sets}")
    out.append(_CHECK.format(sets=sets, store=translator.store))
    text = "\n".join(out)
    try:
        compile(text, script_name, "exec")
    except SyntaxError as exc:  # a bug of the translator, not the user's: say where
        msg = f"the exported script does not compile ({exc.msg} at line {exc.lineno}); please report this notebook"
        raise ExportError(msg) from None
    return text
