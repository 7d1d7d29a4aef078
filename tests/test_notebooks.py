"""The example notebooks run top to bottom, headless, on small data.

Both notebooks (plus a deliberately broken copy of one) run at the same time in
kernels of this interpreter, with ``QA_NOTEBOOK_SMALL=1`` so the evaluation uses
a small SQuAD slice. Needs the ``notebooks`` extra: ``pip install -e ".[notebooks]"``.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat", reason='notebook tests need: pip install -e ".[notebooks]"')
nbclient = pytest.importorskip("nbclient", reason='notebook tests need: pip install -e ".[notebooks]"')
pytest.importorskip("ipykernel", reason='notebook tests need: pip install -e ".[notebooks]"')
pytest.importorskip("matplotlib", reason='notebook tests need: pip install -e ".[notebooks]"')

from nbclient.exceptions import CellExecutionError  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("quickstart", "evaluation")
BROKEN = "quickstart (broken)"
CELL_TIMEOUT = 300


def _broken(nb: Any) -> Any:
    """A copy of ``nb`` with a failing cell inserted right after the first code cell."""
    nb = copy.deepcopy(nb)
    first = next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "code")
    cell = nbformat.v4.new_code_cell('raise RuntimeError("broken on purpose")')
    cell["id"] = "broken-on-purpose"
    nb.cells.insert(first + 1, cell)
    return nb


async def _run(nb: Any) -> float:
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    started = time.perf_counter()
    await client.async_execute()
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, float | BaseException]]:
    """name → (executed notebook, seconds taken or the exception it raised)."""
    notebooks = {name: nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4) for name in NAMES}
    notebooks[BROKEN] = _broken(notebooks["quickstart"])
    scratch = tmp_path_factory.mktemp("notebooks")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("QA_NOTEBOOK_SMALL", "1")
        env.setenv("QA_NOTEBOOK_INDEX", str(scratch / "seed-index"))  # never write the repository's indexes/
        env.setenv("HF_HUB_OFFLINE", "1")
        env.setenv("TRANSFORMERS_OFFLINE", "1")
        env.setenv("JUPYTER_PREFER_ENV_PATH", "1")  # this venv's kernelspec before a user-wide one
        env.setenv("MPLBACKEND", "agg")
        # Two kernels share the cores: one torch thread each (two threads per kernel is ~5x slower on a busy box).
        env.setenv("QA_BATCH_THREADS", "1")
        env.setenv("QA_QUERY_THREADS", "1")

        async def run_all() -> list[float | BaseException]:
            return await asyncio.gather(*(_run(nb) for nb in notebooks.values()), return_exceptions=True)

        started = time.perf_counter()
        outcomes = asyncio.run(run_all())
        print(f"notebooks executed in {time.perf_counter() - started:.0f}s (wall clock, in parallel)")
    return {name: (nb, outcome) for (name, nb), outcome in zip(notebooks.items(), outcomes, strict=True)}


def _outputs(nb: Any) -> list[dict[str, Any]]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_without_errors(runs: dict[str, tuple[Any, Any]], name: str) -> None:
    nb, outcome = runs[name]
    if isinstance(outcome, BaseException):
        pytest.fail(f"{name}.ipynb failed:\n{outcome}", pytrace=False)
    assert not [out for out in _outputs(nb) if out.get("output_type") == "error"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_draws_plots(runs: dict[str, tuple[Any, Any]], name: str) -> None:
    nb, outcome = runs[name]
    if isinstance(outcome, BaseException):
        pytest.skip(f"{name}.ipynb did not run (see test_notebook_runs_without_errors)")
    pngs = [out for out in _outputs(nb) if "image/png" in out.get("data", {})]
    assert pngs, f"{name}.ipynb produced no PNG plot"


def test_quickstart_highlights_the_answer(runs: dict[str, tuple[Any, Any]]) -> None:
    nb, outcome = runs["quickstart"]
    if isinstance(outcome, BaseException):
        pytest.skip("quickstart.ipynb did not run (see test_notebook_runs_without_errors)")
    answers = [
        out["data"]["text/html"]
        for out in _outputs(nb)
        if "who mediated Turkey-Israel?" in out.get("data", {}).get("text/html", "")
    ]
    assert answers, "no HTML output shows the answer to 'who mediated Turkey-Israel?'"
    marked = [m for html in answers for m in re.findall(r"<mark>(.*?)</mark>", html, flags=re.S)]
    assert any("Azerbaijan" in m or "Hajiyev" in m for m in marked), f"highlighted: {marked}"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_shows_hits_and_answers_through_the_library_html(
    runs: dict[str, tuple[Any, Any]], name: str
) -> None:
    """No helper of the notebook's own: hit tables and answers are qa.display's HTML (`_repr_html_`)."""
    nb, outcome = runs[name]
    if isinstance(outcome, BaseException):
        pytest.skip(f"{name}.ipynb did not run (see test_notebook_runs_without_errors)")
    shown = [out["data"]["text/html"] for out in _outputs(nb) if 'class="qa-result"' in out.get("data", {}).get(
        "text/html", "")]
    hit_tables = [h for h in shown if "passages for <b>" in h]
    answers = [h for h in shown if "</b> → " in h]
    assert hit_tables and answers, f"{name}.ipynb: {len(hit_tables)} hit tables, {len(answers)} answers from qa"
    assert all("<mark" in h for h in answers if "no answer found" not in h)
    sources = "".join(c.source for c in nb.cells)
    assert "<mark>" not in sources and "<table>" not in sources, "the notebook builds its own HTML again"


def test_a_failing_cell_fails_the_run(runs: dict[str, tuple[Any, Any]]) -> None:
    _, outcome = runs[BROKEN]
    assert isinstance(outcome, CellExecutionError), f"expected the broken notebook to fail, got {outcome!r}"
    assert "broken on purpose" in str(outcome)


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOKS / "build_notebooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", NAMES)
def test_notebook_matches_its_generator(name: str) -> None:
    """Cells are edited in build_notebooks.py; the .ipynb must not drift from it (outputs aside)."""
    expected = _generator().build(name)
    actual = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in actual.cells] == [(c.cell_type, c.source) for c in expected.cells], (
        f"notebooks/{name}.ipynb differs from notebooks/build_notebooks.py; run: python notebooks/build_notebooks.py"
    )


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_has_no_outputs(name: str) -> None:
    """What git would commit (the staged copy) carries no outputs: `make notebooks` output stays local."""
    try:
        staged = subprocess.run(
            ["git", "show", f":notebooks/{name}.ipynb"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"notebooks/{name}.ipynb is not tracked by git here")
    nb = json.loads(staged)
    dirty = [
        cell.get("id", i)
        for i, cell in enumerate(nb["cells"])
        if cell.get("outputs") or cell.get("execution_count") is not None
    ]
    assert not dirty, (
        f"the staged notebooks/{name}.ipynb has outputs in cells {dirty}; "
        f"run `python notebooks/build_notebooks.py` and `git add notebooks/` again"
    )
