"""The `qa` command, through `main(argv)` and as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qa.cli import main
from tests.conftest import ROOT, SEED

QUESTION = "who mediated Turkey-Israel?"


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("cli") / "idx"
    assert main(["index", str(SEED.parent), "--index", str(folder), "--quiet"]) == 0
    return str(folder)


def test_search_json_is_a_list_of_hits_with_attribution(cli_index: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["search", QUESTION, "--json", "-k", "3", "--index", cli_index]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3
    assert set(hits[0]) == {"rank", "score", "text", "passage_id", "source"}
    assert any("normalize Turkey-Israel relations" in h["text"] or "mediator role between Israel and Turkey"
               in h["text"] for h in hits)
    text = SEED.read_text(encoding="utf-8")
    for h in hits:
        s = h["source"]
        assert all(s[f] not in ("", None) for f in
                   ("doc_id", "title", "publisher", "section", "path", "paragraph", "char_start", "char_end"))
        assert text[s["char_start"] : s["char_end"]] == h["text"]


def test_ask_json_has_the_contract_keys(cli_index: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["ask", QUESTION, "--json", "--index", cli_index]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert {"question", "text", "confidence", "span", "evidence"} <= set(answer)
    assert answer["question"] == QUESTION
    assert "Azerbaijan" in answer["text"] or "Hajiyev" in answer["text"]
    start, end = answer["span"]
    assert answer["evidence"][0]["text"][start:end] == answer["text"]


def test_ask_for_people_names_answer_and_source(cli_index: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["ask", QUESTION, "--index", cli_index]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Answer: ")
    assert "i24NEWS" in out and "Allied support" in out and "paragraph" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search", "   ", "--index", "{idx}"], "query is empty"),
        (["search", "x", "-k", "0", "--index", "{idx}"], "positive integer"),
        (["search", "x", "--index", "{missing}"], "no index at"),
        (["index", "{missing}", "--index", "{tmp}/new"], "no such file"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(
    argv: list[str], message: str, cli_index: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    filled = [a.format(idx=cli_index, missing=tmp_path / "missing", tmp=tmp_path) for a in argv]
    capsys.readouterr()
    assert main(filled) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.startswith("qa: error: ")


def test_help_is_fast_and_imports_nothing_heavy() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); import qa, qa.cli; "
        "heavy = [m for m in ('torch', 'faiss', 'sentence_transformers', 'spacy', 'bm25s') if m in sys.modules]; "
        "print(heavy, time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy, seconds = out.rsplit(" ", 1)
    assert heavy == "[]"
    assert float(seconds) < 0.5
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "qa", "--help"], capture_output=True, check=True)
    assert time.perf_counter() - started < 2.0  # includes interpreter start-up


def test_console_script_runs_ask_end_to_end(tmp_path: Path) -> None:
    """As a user would: a fresh process, a seeds/ folder, no index yet."""
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / SEED.name).write_bytes(SEED.read_bytes())
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "qa", "ask", QUESTION, "--json"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["evidence"][0]["source"]["publisher"] == "i24NEWS"
    assert (tmp_path / "indexes" / "default" / "manifest.json").exists()
    assert ROOT.name  # the repo itself was not touched
