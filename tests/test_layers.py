"""The layers of `qa` (pyproject.toml's import-linter contracts) hold, and a forbidden import breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    # lint-imports reads the contracts from pyproject.toml in the working directory and imports
    # nothing: it parses the sources it finds on the path.
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "qa", tree / "qa", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_layers_hold(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_store_importing_answering_fails_the_lint(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    store = tree / "qa" / "stores" / "faiss" / "store.py"
    # Even inside a function, where it would not run at import time.
    store.write_text(
        store.read_text(encoding="utf-8") + "\n\ndef _peek() -> None:\n    from qa.answering import answer  # noqa\n",
        encoding="utf-8",
    )
    result = _lint(tree)
    assert result.returncode != 0
    assert "qa.stores is not allowed to import qa.answering" in result.stdout
    assert "qa.stores.faiss.store -> qa.answering" in result.stdout


def test_evaluation_imported_by_the_core_fails_the_lint(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    reader = tree / "qa" / "reader.py"
    reader.write_text(
        reader.read_text(encoding="utf-8").replace(
            "from qa.text import normalize_answer", "from qa.evaluation import normalize_answer"
        ),
        encoding="utf-8",
    )
    result = _lint(tree)
    assert result.returncode != 0
    assert "qa.reader is not allowed to import qa.evaluation" in result.stdout
