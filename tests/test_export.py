"""fsnb export: notebooks become plain pipelines that rebuild their training sets and
fail, naming the training set, when its data changed."""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from fsnb.cli import main as cli_main
from fsnb.export import ExportError, export

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tests" / "data" / "pipeline_demo.ipynb"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


# -- helpers ------------------------------------------------------------------------------------
def write_notebook(path: Path, *cells: str, outputs: dict[int, list[Any]] | None = None) -> Path:
    nb = new_notebook()
    for i, source in enumerate(cells):
        if source.startswith("md:"):
            nb.cells.append(new_markdown_cell(source[3:]))
            continue
        cell = new_code_cell(source)
        cell.outputs = (outputs or {}).get(i, [])
        nb.cells.append(cell)
    nbformat.write(nb, str(path))
    return path


def kernel_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FSNB_STORE"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def execute_notebook(source: Path, workdir: Path) -> Path:
    """Run a notebook in a real kernel with workdir as its folder (so its store is
    workdir/.fsnb) and save it with its outputs there."""
    workdir.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(str(source), as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}})
    client.execute(env=kernel_env())
    saved = workdir / source.name
    nbformat.write(nb, str(saved))
    return saved


def fsnb_command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("fsnb")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "fsnb.cli"]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, env=kernel_env(), timeout=300)


def run_pipeline(script: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """python PIPELINE.py in a fresh process, in cwd, with no store configured."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True, env=kernel_env(), timeout=600
    )


def build_function(script: str) -> ast.FunctionDef:
    tree = ast.parse(script)
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build")


def load_module(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mutate_one_input(script_path: Path, workdir: Path) -> tuple[str, str]:
    """Change one number of the notebook's own code so that a training set changes.

    Tries the numeric literals inside build() (list elements first: data values), in
    process, and keeps the first change that alters a recorded fingerprint; returns
    (old line, new line)."""
    script = script_path.read_text()
    func = build_function(script)
    numbers = [
        n for n in ast.walk(func)
        if isinstance(n, ast.Constant) and type(n.value) in (int, float) and n.value not in (True, False)
    ]
    in_lists = {id(e) for node in ast.walk(func) if isinstance(node, ast.List | ast.Tuple) for e in node.elts}
    numbers.sort(key=lambda n: (id(n) not in in_lists, n.lineno, n.col_offset))
    lines = script.splitlines(keepends=True)
    for attempt, node in enumerate(numbers[:40]):
        line = lines[node.lineno - 1]
        old = line[node.col_offset : node.end_col_offset]
        new = repr(node.value + 1) if isinstance(node.value, int) else repr(node.value * 2 + 1)
        changed_line = line[: node.col_offset] + new + line[node.end_col_offset :]
        candidate = workdir / f"mutant_{attempt}.py"
        candidate.write_text("".join([*lines[: node.lineno - 1], changed_line, *lines[node.lineno :]]))
        module = load_module(candidate, f"mutant_{attempt}")
        store_dir = workdir / f"mutant_store_{attempt}"
        cwd = os.getcwd()
        os.chdir(workdir)
        try:
            import fsnb

            with fsnb.FeatureStore(store_dir) as store:
                try:
                    built = module.build(store)
                except Exception:
                    continue
            if any(
                expected and name in built and fsnb.fingerprint(built[name]) != expected
                for name, expected in module.RECORDED_FINGERPRINTS.items()
            ):
                candidate.replace(script_path)
                assert old != new
                return line.strip(), changed_line.strip()
        finally:
            os.chdir(cwd)
            shutil.rmtree(store_dir, ignore_errors=True)
    raise AssertionError(f"no single number in {script_path.name}'s build() changes a training set")


# -- the demo notebook, run for real ----------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return execute_notebook(DEMO, tmp_path_factory.mktemp("demo_notebook"))


@pytest.mark.notebook
def test_demo_notebook_round_trip(demo_run: Path, tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    result = fsnb_command("export", str(demo_run), "-o", str(script), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 feature views, 3 training sets (3 with a recorded fingerprint)" in result.stderr
    assert "dropped the shell command !echo done" in result.stderr
    text = script.read_text()
    recorded = {r["name"]: r["fingerprint"] for r in _store_records(demo_run.parent / ".fsnb")}
    assert set(recorded) == {"train", "late_train", "manual"}
    for name, fp in recorded.items():
        assert f'"{name}": "{fp[:16]}",  # from the notebook\'s store' in text

    # A fresh folder, a fresh process, the default ./.fsnb store: same training sets.
    first = run_pipeline(script, tmp_path / "fresh")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "training set 'train': 4 rows x 6 columns" in first.stdout
    assert "same as in the notebook" in first.stdout
    assert "ok: 3 of 3 training set(s) checked" in first.stdout
    assert "training set 'manual': 4 rows x 4 columns" in first.stdout
    assert (tmp_path / "fresh" / ".fsnb" / "registry.sqlite").exists()

    # Idempotent: a second run gives the same report and no new view versions.
    second = run_pipeline(script, tmp_path / "fresh")
    assert second.returncode == 0, second.stderr
    assert second.stdout.replace(str(tmp_path), "") == first.stdout.replace(str(tmp_path), "")
    listing = fsnb_command("list", "--store", str(tmp_path / "fresh" / ".fsnb"), cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "user_stats  v1" in listing.stdout and "user_country  v1" in listing.stdout

    # --store and $FSNB_STORE choose the store.
    other = run_pipeline(script, tmp_path / "fresh", "--store", str(tmp_path / "elsewhere"))
    assert other.returncode == 0 and (tmp_path / "elsewhere" / "registry.sqlite").exists()


@pytest.mark.notebook
def test_changed_input_fails_naming_the_training_set(demo_run: Path, tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    assert cli_main(["export", str(demo_run), "-o", str(script)]) == 0
    text = script.read_text()
    # login_count 2 on 2024-03-01 is what the 2024-03-03 label of user 42 sees.
    assert '"login_count": [2, 5, 9, 1]' in text
    script.write_text(text.replace('"login_count": [2, 5, 9, 1]', '"login_count": [3, 5, 9, 1]'))
    result = run_pipeline(script, tmp_path / "run")
    assert result.returncode == 1
    assert "training set 'train'" in result.stderr
    assert "late_train" not in result.stderr and "manual" not in result.stderr
    assert "fingerprint mismatch" in result.stderr
    assert "'train': 4 rows x 6 columns" in result.stdout and "CHANGED" in result.stdout
    # A value no label row can see (2024-03-04 lies between the label times) changes nothing.
    script.write_text(text.replace('"login_count": [2, 5, 9, 1]', '"login_count": [2, 6, 9, 1]'))
    assert run_pipeline(script, tmp_path / "run2").returncode == 0


@pytest.mark.notebook
def test_fingerprints_come_from_saved_outputs_without_the_store(demo_run: Path, tmp_path: Path) -> None:
    alone = tmp_path / "copied" / demo_run.name
    alone.parent.mkdir()
    shutil.copy(demo_run, alone)  # no .fsnb beside it
    pipeline = export(alone)
    from_store = export(demo_run)
    magic_sets = ["train", "late_train"]  # %training_set -o shows its fingerprint
    for name in magic_sets:
        assert pipeline.training_sets[name].fingerprint == from_store.training_sets[name].fingerprint
        assert pipeline.training_sets[name].source == "the notebook's saved output"
    # The API call showed nothing: without the store its fingerprint is unknown, and said so.
    assert pipeline.training_sets["manual"].fingerprint is None
    assert from_store.training_sets["manual"].fingerprint
    assert any("no fingerprint recorded for training set 'manual'" in w for w in pipeline.warnings)
    assert '"manual": None,  # not recorded' in pipeline.script


def _store_records(path: Path) -> list[dict[str, Any]]:
    from fsnb.registry import Registry

    registry = Registry(path / "registry.sqlite")
    try:
        return registry.training_sets()
    finally:
        registry.close()


# -- every notebook of the project ---------------------------------------------------------------
@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_project_notebook_exports_and_reproduces(notebook: Path, tmp_path: Path) -> None:
    """Each notebook of notebooks/ runs in a real kernel without an error (this is the one
    run of it in the suite), then its exported pipeline reproduces its training sets."""
    before = notebook.read_bytes()
    ran = execute_notebook(notebook, tmp_path / "notebook")  # raises CellExecutionError on any failing cell
    cells = nbformat.read(str(ran), as_version=4).cells
    assert [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"] == []
    assert all(c.get("execution_count") for c in cells if c.cell_type == "code" and c.source.strip())
    assert notebook.read_bytes() == before  # running a notebook never rewrites it
    script = tmp_path / "pipeline.py"
    result = fsnb_command("export", str(ran), "-o", str(script), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    pipeline = export(ran)
    assert all(t.fingerprint for t in pipeline.training_sets.values())

    first = run_pipeline(script, tmp_path / "fresh")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("same as in the notebook") == len(pipeline.training_sets)
    if notebook.name == "spark.ipynb":
        # The pipeline opened the notebook's engine: Delta tables under the fresh store's
        # default warehouse. What follows is engine-independent and checked on the others.
        assert (tmp_path / "fresh" / ".fsnb" / "warehouse" / "user_stats" / "_delta_log").is_dir()
        assert 'OFFLINE_ENGINE = "spark"' in script.read_text()
        return
    again = run_pipeline(script, tmp_path / "fresh")
    assert again.returncode == 0, again.stdout + again.stderr
    if not pipeline.training_sets:
        # Nothing recorded (the notebook uses no %training_set -o): it must still
        # rebuild, and the export must say that nothing is checked.
        assert "builds no training set" in result.stderr
        assert "warning: nothing was verified" in first.stderr and "ok:" not in first.stdout  # issue 11
        assert notebook.name != "quickstart.ipynb"
        return

    old, new = mutate_one_input(script, tmp_path)
    changed = run_pipeline(script, tmp_path / "changed")
    assert changed.returncode == 1, f"{old} -> {new}: {changed.stdout}"
    named = [n for n in pipeline.training_sets if f"training set '{n}'" in changed.stderr]
    assert named, changed.stderr


# -- translation, without a kernel ------------------------------------------------------------------
@pytest.fixture
def nb_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def test_feature_view_flags_become_feature_view_arguments(nb_dir: Path) -> None:
    path = write_notebook(
        nb_dir / "n.ipynb",
        "%load_ext fsnb",
        "%%feature_view clicks --entity user_id,item_id --timestamp ts --created ingested_at --ttl 12h "
        '--offline-only --stream --description "clicks per item"\nSELECT * FROM raw\n',
        "%%feature_view from_file --entity user_id\nevents.parquet",
        "%%feature_view from_frame --entity user_id\nevents_df",
    )
    script = export(path).script
    assert "%load_ext" not in script and "get_ipython" not in script
    assert 'CLICKS_SQL = "SELECT * FROM raw"' in script
    for piece in (
        '"clicks"',
        'entities=["user_id", "item_id"]',
        'timestamp_field="ts"',
        'created_timestamp_field="ingested_at"',
        'ttl="12h"',
        "online=False",
        'sync="stream"',
        'description="clicks per item"',
        "query=CLICKS_SQL",
        "fsnb.sources.run_sql(CLICKS_SQL, namespace=locals())",
        "fsnb.sources.to_arrow(FROM_FILE_SQL)",
        "events_df,",
        "replace=True",
    ):
        assert piece in script, piece


def test_line_magics_become_api_calls(nb_dir: Path) -> None:
    path = write_notebook(
        nb_dir / "n.ipynb",
        "%training_set labels v:a v:b -o train --timestamp label_ts --as-of-ingestion --full-names --explore",
        "x = %training_set labels.parquet v:*",
        "%training_set labels v:a",
        "%materialize --start 2024-01-01 --end 2024-02-01 --view v\n%materialize --incremental",
        "r = %online_features v:a v:b --entity user_id=42,region=eu --entity user_id='7',region=us",
        "%online_features v:a --entity user_id=1 -o served",
        "%fsnb open /somewhere/.fsnb\nviews = %fsnb list\nv = %fsnb show v\n%fsnb list",
        "s = %fsnb open other --online redis://127.0.0.1:6379/0 --log redis://127.0.0.1:6379/1",
        "report = %leakage labels v:a --timestamp label_ts\n%leakage labels v:a",
    )
    pipeline = export(path)
    assert any("the notebook's store used online redis://" in w for w in pipeline.warnings)
    script = pipeline.script
    for piece in (
        'train = store.get_historical_features(\n        labels,\n        ["v:a", "v:b"],\n'
        '        timestamp_field="label_ts",\n        full_feature_names=True,\n        as_of_ingestion=True,\n    )',
        'store.record_training_set("train", train, ["v:a", "v:b"])\n    training_sets["train"] = train',
        'x = store.get_historical_features("labels.parquet", ["v:*"])',
        'store.get_historical_features(labels, ["v:a"])\n',  # built without -o too (issue 11)
        'store.materialize(start="2024-01-01", end="2024-02-01", views=["v"])',
        "store.materialize_incremental()",
        '[{"user_id": 42, "region": "eu"}, {"user_id": 7, "region": "us"}]',
        'served = store.get_online_features(["v:a"], [{"user_id": 1}])',
        "# the notebook opened the store /somewhere/.fsnb here; this pipeline uses --store",
        "views = store.list_feature_views()",
        "# the notebook opened the store other (online redis://127.0.0.1:6379/0, log redis://127.0.0.1:6379/1) "
        "here; this pipeline uses --store\n    s = store",
        'v = store.get_feature_view("v")',
        'report = store.explain_leakage(labels, ["v:a"], timestamp_field="label_ts")',
        "# notebook only (the leakage explorer): %leakage labels v:a",
    ):
        assert piece in script, piece
    assert '"train": None,  # not recorded' in script


def test_notebook_code_is_kept_verbatim_and_display_lines_dropped(nb_dir: Path) -> None:
    code = 'import polars as pl\n\nfrom math import *\n\ntext = """line one\n  indented inside a string\n"""\nevents = pl.DataFrame({"a": [1]})\nevents\nevents.head()\ndisplay(events)\nx = 1; display(x)\nfor i in range(2):\n    display(i)\n!pip install nothing\n%timeit sum([1])\n%time y = 2'
    pipeline = export(write_notebook(nb_dir / "n.ipynb", code))
    script = pipeline.script
    body = ast.get_source_segment(script, build_function(script)) or ""
    assert 'text = """line one\n  indented inside a string\n"""' in body  # string content untouched
    assert '    events = pl.DataFrame({"a": [1]})' in body
    assert "\n    events\n" not in body and "display(" not in body
    assert "    events.head()" in body  # a call may have effects: kept
    assert "    x = 1; pass" in body
    assert "    for i in range(2):\n        pass" in body
    assert "# notebook only: !pip install nothing" in body
    assert "# notebook only: %timeit sum([1])" in body
    assert "    y = 2" in body
    assert script.index("from math import *") < script.index("def build(")
    assert any("!pip install nothing" in w for w in pipeline.warnings)
    # The script is valid Python whose layout a person would recognise.
    tree = ast.parse(script)
    assert ast.get_docstring(tree) and [f.name for f in tree.body if isinstance(f, ast.FunctionDef)] == [
        "build",
        "check_fingerprints",
        "main",
    ]


def test_names_taken_by_the_notebook_are_not_reused(nb_dir: Path) -> None:
    path = write_notebook(
        nb_dir / "n.ipynb",
        "store = 'my shop'\ntraining_sets = []",
        "%training_set labels v:a -o train",
        "s = %fsnb",
    )
    script = export(path).script
    assert "def build(feature_store: fsnb.FeatureStore)" in script
    assert "train = feature_store.get_historical_features(labels" in script
    assert 'built_training_sets["train"] = train' in script
    assert "s = feature_store" in script
    assert "store = 'my shop'" in script


def test_fingerprint_read_from_saved_html_or_text_output(nb_dir: Path) -> None:
    html = new_output("display_data", data={"text/html": "<table><tr><th>fingerprint</th><td>0123456789abcdef</td></tr></table>"})
    text = new_output("display_data", data={"text/plain": "training set t2: 3 rows\nfingerprint fedcba9876543210"})
    path = write_notebook(
        nb_dir / "n.ipynb",
        "%training_set labels v:a -o t1",
        "%training_set labels v:a -o t2",
        outputs={0: [html], 1: [text]},
    )
    sets = export(path).training_sets
    assert sets["t1"].fingerprint == "0123456789abcdef"
    assert sets["t2"].fingerprint == "fedcba9876543210"


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("print(%training_set labels v:a)", "a magic inside an expression cannot be exported"),
        ("x = [%materialize]", "a magic inside an expression cannot be exported"),
        ("%training_set labels", "%training_set: the following arguments are required: features"),
        ("%%feature_view v\nSELECT 1", "%%feature_view: the following arguments are required: --entity"),
        ("%%feature_view v --entity k\n", "has no SQL"),
        ("out = !ls", "write it with subprocess"),
        ("x = %who_ls", "has no plain-Python equivalent"),
        ("def f(:\n    pass", "cell 1 line 1"),
    ],
)
def test_untranslatable_cells_give_one_line_errors(nb_dir: Path, cell: str, message: str) -> None:
    path = write_notebook(nb_dir / "n.ipynb", cell)
    with pytest.raises(ExportError) as info:
        export(path)
    assert "\n" not in str(info.value)
    assert message in str(info.value)


def test_cli_errors_are_one_line_with_non_zero_exit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["export", str(tmp_path / "missing.ipynb"), "-o", str(tmp_path / "p.py")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("fsnb export: error: no notebook at") and "\n" not in err
    (tmp_path / "bad.ipynb").write_text("{not json")
    assert cli_main(["export", str(tmp_path / "bad.ipynb")]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert cli_main(["list", "--store", str(tmp_path / "nothing")]) == 1
    assert "no fsnb store at" in capsys.readouterr().err
    nb = write_notebook(tmp_path / "ok.ipynb", "x = 1")
    assert cli_main(["export", str(nb), "--store", str(tmp_path / "nothing")]) == 1
    assert "no fsnb store at" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli_main(["frobnicate"])
    assert info.value.code == 2


def test_cli_export_to_stdout_and_read_only_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import polars as pl

    import fsnb

    nb = write_notebook(tmp_path / "tiny.ipynb", "x = 1")
    assert cli_main(["export", str(nb)]) == 0
    out = capsys.readouterr().out
    assert out.startswith('"""Pipeline exported from tiny.ipynb') and "    x = 1" in out

    with fsnb.FeatureStore(tmp_path / "s") as store:
        frame = pl.DataFrame(
            {"user_id": [1, 2], "event_timestamp": [datetime(2024, 1, 1), datetime(2024, 1, 2)], "n": [3, 4]}
        )
        store.register(fsnb.FeatureView("counts", entities=["user_id"], ttl="7d", description="how many"), frame)
        store.record_training_set("ts", frame, ["counts:n"])
        # Read-only commands work while this process holds the store open.
        assert cli_main(["list", "--store", str(tmp_path / "s")]) == 0
        listing = capsys.readouterr().out
        assert "1 feature view" in listing and "counts  v1  keys user_id  1 features  2 rows" in listing
        assert f"ts  fingerprint {fsnb.fingerprint(frame)}" in listing
        assert cli_main(["show", "counts", "--store", str(tmp_path / "s")]) == 0
        shown = capsys.readouterr().out
        assert "counts (version 1 of 1)" in shown and "ttl        7d" in shown and "feature    n BIGINT" in shown
        assert cli_main(["show", "count", "--store", str(tmp_path / "s")]) == 1
        assert "did you mean 'counts'" in capsys.readouterr().err
    frame.write_parquet(tmp_path / "f.parquet")
    assert cli_main(["fingerprint", str(tmp_path / "f.parquet")]) == 0
    assert capsys.readouterr().out.split()[0] == fsnb.fingerprint(frame)


def test_recorded_fingerprint_found_in_the_store_the_notebook_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsnb.registry import Registry

    monkeypatch.delenv("FSNB_STORE", raising=False)
    (tmp_path / "custom").mkdir()
    registry = Registry(tmp_path / "custom" / "registry.sqlite")
    registry.record_training_set("t", "00112233445566778899", {"features": ["v:a"]})
    registry.record_training_set("stale", "ffffffffffffffff", {"features": ["v:old"]})
    registry.close()
    path = write_notebook(
        tmp_path / "n.ipynb",
        "%fsnb open custom",
        "%training_set labels v:a -o t",
        "%training_set labels v:new -o stale",
    )
    pipeline = export(path)
    assert pipeline.training_sets["t"].fingerprint == "0011223344556677"
    assert pipeline.training_sets["t"].source == "the notebook's store"
    # A record for other features is not this training set's.
    assert pipeline.training_sets["stale"].fingerprint is None
    # $FSNB_STORE is where a notebook without %fsnb open kept its store.
    plain = write_notebook(tmp_path / "plain.ipynb", "%training_set labels v:a -o t")
    assert export(plain).training_sets["t"].fingerprint is None
    monkeypatch.setenv("FSNB_STORE", str(tmp_path / "custom"))
    assert export(plain).training_sets["t"].fingerprint == "0011223344556677"
    assert export(plain, store=tmp_path / "custom").training_sets["t"].source == "the notebook's store"


@pytest.mark.parametrize("magic", ["fsnb", "feature_view", "training_set", "online_features", "materialize", "leakage"])
def test_export_parses_with_the_magics_own_parsers(magic: str) -> None:
    """One grammar: the magic method and export read the very same parser object."""
    from fsnb.notebook import grammar
    from fsnb.notebook.magics import FsnbMagics

    assert getattr(FsnbMagics, magic).parser is grammar.PARSERS[magic]


def test_a_flag_added_to_the_grammar_is_understood_by_export(nb_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import copy

    from fsnb.notebook import grammar

    parser = copy.deepcopy(grammar.PARSERS["training_set"])
    parser.add_argument("--max-age", default=None)
    monkeypatch.setitem(grammar.PARSERS, "training_set", parser)
    monkeypatch.setitem(grammar.KEYWORDS, "training_set", {**grammar.KEYWORDS["training_set"], "max_age": "max_age"})
    path = write_notebook(nb_dir / "n.ipynb", "%training_set labels v:a --max-age 3d -o t")
    assert 'store.get_historical_features(labels, ["v:a"], max_age="3d")' in export(path).script
    # and a mistake the grammar refuses is refused by export in the magic's words
    path = write_notebook(nb_dir / "m.ipynb", "%materialize --incremental --start 2024-01-01")
    with pytest.raises(ExportError, match="cell 1: %materialize: --incremental starts at each view's watermark"):
        export(path)


def test_every_cli_command_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    from fsnb.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    assert set(commands.choices) == {"export", "list", "show", "fingerprint"}
    helps = {a.dest: a.help for a in commands._choices_actions}
    assert all(helps.get(name) for name in commands.choices), helps
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    shown = capsys.readouterr().out
    assert all(name in shown for name in commands.choices)


# -- issue 11: no user text becomes code in the exported script --------------------------------------
def _chr_expression(code: str) -> str:
    """code as an expression of Unicode modifier letters that Python reads (NFKC) as chr(...)+..."""
    return "+".join(f"\u1d9c\u02b0\u02b3({ord(c)})" for c in code)  # ᶜʰʳ is chr


def injected_name(marker: Path) -> str:
    # ᵛᵃʳˢ(ᵉˣᵉᶜ(...)).ᵃ: .upper() leaves modifier letters alone and NFKC reads them as vars,
    # exec and chr, so "NAME_SQL = ..." at the top of the old script ran the payload on import
    payload = f"open({str(marker)!r}, 'w').write('ran')"
    return f"\u1d5b\u1d43\u02b3\u02e2(\u1d49\u02e3\u1d49\u1d9c({_chr_expression(payload)})).\u1d43"


def test_a_feature_view_name_never_becomes_code(nb_dir: Path) -> None:
    marker = nb_dir / "PWNED"
    path = write_notebook(nb_dir / "n.ipynb", f'%%feature_view "{injected_name(marker)}" --entity user_id\nSELECT 1 AS user_id')
    with pytest.raises(ExportError) as info:
        export(path)
    message = str(info.value)
    assert message.startswith("cell 1: feature view name") and "not valid" in message and "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize(
    ("cell", "what"),
    [
        ("%training_set labels v:a -o x=__import__('os').getcwd();y", "the -o variable"),
        ("%training_set labels v:a -o class", "the -o variable"),
        ("%training_set labels v:a -o \uff45\uff58\uff45\uff43", "the -o variable"),  # fullwidth 'exec'
        ("%online_features v:a --entity k=1 -o x=__import__('os').getcwd();y", "the -o variable"),
        ("%training_set \uff45\uff56\uff45\uff4e\uff54\uff53 v:a -o t", "the labels variable"),
        ("%%feature_view \u1d49\u02e3\u1d49\u1d9c --entity user_id\nSELECT 1", "feature view name"),
        ("%%feature_view 1abc --entity user_id\nSELECT 1", "feature view name"),
    ],
)
def test_names_in_magics_are_checked_ascii_identifiers(nb_dir: Path, cell: str, what: str) -> None:
    with pytest.raises(ExportError) as info:
        export(write_notebook(nb_dir / "n.ipynb", "x = 1", cell))
    assert str(info.value).startswith(f"cell 2: {what}") and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "a\rprint('ran')",  # Python reads a lone CR as a newline
        'a"""; print("ran"); """',
        "a\u2028b\u0085c\x0cd",  # separators str.splitlines() cuts
        "x\r\ny",
    ],
)
def test_user_text_is_written_as_exact_literals_and_comments(nb_dir: Path, text: str) -> None:
    on_a_line = "|".join(text.splitlines())  # a magic's line ends at any line break
    path = write_notebook(
        nb_dir / "n.ipynb",
        f"%%feature_view v --entity user_id --description {_shell_quote(on_a_line + chr(27))}\nSELECT 1 AS user_id -- {text}",
        f"%materialize --start {_shell_quote(on_a_line)}",
        f"%leakage labels {_shell_quote('v:' + on_a_line)}",
        f"!echo {on_a_line}",
    )
    script = export(path).script
    tree = ast.parse(script)
    values = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert on_a_line + chr(27) in values  # the --description, exactly
    assert on_a_line in values  # --start
    assert f"SELECT 1 AS user_id -- {text}".strip() in values  # the SQL body, exactly
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"]
    assert not any("ran" in ast.unparse(c) for c in calls)  # nothing of the text became a statement
    build = build_function(script)
    assert [type(n).__name__ for n in build.body] == ["Expr", "AnnAssign", "Expr", "Expr", "Return"]  # docstring, sets, register, materialize


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def test_a_notebook_file_name_cannot_close_the_docstring(nb_dir: Path) -> None:
    path = write_notebook(nb_dir / 'x"""; import os; os.getcwd(); """.ipynb', "x = 1")
    script = export(path).script
    tree = ast.parse(script)
    assert [type(n).__name__ for n in tree.body[:3]] == ["Expr", "ImportFrom", "Import"]
    assert 'x"""; import os' in ast.get_docstring(tree)


def test_online_key_nan_is_a_python_expression(nb_dir: Path) -> None:
    from fsnb.export import _value

    assert eval(_value(float("nan"))) != eval(_value(float("nan")))
    assert eval(_value(float("-inf"))) == float("-inf")


def test_training_set_without_output_is_built(nb_dir: Path, tmp_path: Path) -> None:
    # an error the magic raises (an unknown view) must be raised by the pipeline too
    path = write_notebook(
        nb_dir / "n.ipynb",
        "import polars as pl\nfrom datetime import datetime\n"
        "labels = pl.DataFrame({'user_id': [1], 'event_timestamp': [datetime(2024, 1, 2)]})",
        "%training_set labels nope:a",
    )
    script = tmp_path / "p.py"
    script.write_text(export(path).script)
    result = run_pipeline(script, tmp_path / "run")
    assert result.returncode == 1
    assert "nope" in result.stderr


def test_pipeline_says_plainly_when_nothing_was_verified(nb_dir: Path, tmp_path: Path) -> None:
    path = write_notebook(
        nb_dir / "n.ipynb",
        "import polars as pl\nfrom datetime import datetime\n"
        "events = pl.DataFrame({'user_id': [1], 'event_timestamp': [datetime(2024, 1, 1)], 'a': [5]})\n"
        "labels = pl.DataFrame({'user_id': [1], 'event_timestamp': [datetime(2024, 1, 2)]})",
        "%%feature_view v --entity user_id\nSELECT * FROM events",
        "%training_set labels v:a -o train",
    )
    script = tmp_path / "p.py"
    script.write_text(export(path).script)  # never ran: no fingerprint recorded
    result = run_pipeline(script, tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert "ok:" not in result.stdout and "all equal" not in result.stdout
    assert "warning: nothing was verified: the notebook recorded no fingerprint for training set 'train'" in result.stderr
    strict = run_pipeline(script, tmp_path / "run2", "--strict")
    assert strict.returncode == 1 and "nothing was verified" in strict.stderr


# -- issue 13: one grammar, one typed key, one store path ---------------------------------------------
def test_the_store_opened_by_an_assigned_fsnb_open_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `s = %fsnb open PATH` is the same magic as `%fsnb open PATH`: export reads it with the grammar
    from fsnb.registry import Registry

    monkeypatch.delenv("FSNB_STORE", raising=False)
    (tmp_path / "my store").mkdir()
    registry = Registry(tmp_path / "my store" / "registry.sqlite")
    registry.record_training_set("t", "00112233445566778899", {"features": ["v:a"]})
    registry.close()
    path = write_notebook(tmp_path / "n.ipynb", 's = %fsnb open "my store"', "%training_set labels v:a -o t")
    assert export(path).training_sets["t"].fingerprint == "0011223344556677"


def test_online_keys_are_typed_and_checked_as_the_magic_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import polars as pl

    import fsnb

    monkeypatch.delenv("FSNB_STORE", raising=False)
    with fsnb.FeatureStore(tmp_path / ".fsnb") as store:
        events = pl.DataFrame({"sku": ["007"], "n": [1], "event_timestamp": [datetime(2024, 1, 1)], "a": [5]})
        store.register(fsnb.FeatureView("v", entities=["sku", "n"]), events)
    good = write_notebook(tmp_path / "good.ipynb", "%online_features v:a --entity sku=007,n=42")
    assert '[{"sku": "007", "n": 42}]' in export(good).script
    for line, message in (
        ("%online_features v:a --entity sku=007,n=abc", "cell 1: %online_features: --entity n=abc: 'n' is BIGINT, so give a number"),
        ("%online_features v:a --entity sku=007", "lacks the key 'n'"),
        ("%online_features v:a --entity sku=1,n=2,sku=3", "gives 'sku' twice"),
    ):
        with pytest.raises(ExportError, match=message):
            export(write_notebook(tmp_path / "bad.ipynb", line))


def test_the_pipeline_and_the_cli_resolve_the_store_as_the_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an empty $FSNB_STORE means "not set" everywhere (FeatureStore(None) once took it as the working directory)
    import fsnb
    from fsnb.config import store_path

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FSNB_STORE", "")
    with fsnb.FeatureStore(None) as store:
        assert store.path == tmp_path / ".fsnb" == store_path()
    assert not (tmp_path / "registry.sqlite").exists()
    assert cli_main(["list"]) == 0
    assert store_path("s", base=tmp_path / "nb") == tmp_path / "nb" / "s"
    assert store_path(tmp_path / "abs", base=tmp_path / "nb") == tmp_path / "abs"
