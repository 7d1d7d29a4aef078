"""Issue 14, the index-folder side: what a damaged or hostile folder, a full disk, two writers
and a Ctrl-C do. Each case ends in one line and exit 2 (or the truth), never a traceback.

The fake embedder stands in for the model (plumbing only): `fake_models` makes every model
name the CLI or the loader asks for resolve to it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import qa
import qa.embedding
import qa.index as qi
import qa.stores.faiss.ann as faiss_ann
import qa.stores.faiss.generations as generations
from qa import integrity
from qa.cli import main
from qa.errors import DiskFullError, IndexLoadError, InputError
from tests.conftest import SEED, HashEmbedder

QUERY = "who mediated Turkey-Israel?"


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> HashEmbedder:
    embedder = HashEmbedder()

    def get(model: Any = None, **_: Any) -> Any:
        return model if isinstance(model, HashEmbedder) else embedder

    monkeypatch.setattr(qi, "get_embedder", get)
    monkeypatch.setattr(qa.embedding, "get_embedder", get)
    return embedder


@pytest.fixture
def built(tmp_path: Path, fake_models: HashEmbedder) -> Path:
    """An index of the seed article, built through the CLI."""
    folder = tmp_path / "idx"
    assert main(["index", str(SEED), "--index", str(folder), "--quiet"]) == 0
    return folder


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def _write_manifest(folder: Path, manifest: dict[str, Any] | str) -> None:
    text = manifest if isinstance(manifest, str) else json.dumps(manifest, indent=2)
    (folder / "manifest.json").write_text(text, encoding="utf-8")


def _generation(folder: Path) -> str:
    return str(_manifest(folder)["generation"])


def _resign(folder: Path, relative: str) -> None:
    """Update the manifest's checksum of ``relative``, as someone who edits a file on purpose would."""
    manifest = _manifest(folder)
    data = (folder / relative).read_bytes()
    manifest["files"][relative] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    _write_manifest(folder, manifest)


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("qa: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _search(folder: Path) -> int:
    return main(["search", QUERY, "--json", "-k", "2", "--index", str(folder)])


# ---------------------------------------------------------------------------
# 1. a missing generation file


@pytest.mark.parametrize("missing", ["passages.jsonl", "vectors.faiss", "bm25/bm25.json", "."])
def test_missing_generation_file_is_one_line_and_qa_index_rebuilds(
    built: Path, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    target = built / _generation(built) / missing
    if missing == ".":
        import shutil

        shutil.rmtree(target)
    else:
        target.unlink()
    capsys.readouterr()
    assert _search(built) == 2
    _one_line_error(capsys, "missing", "incomplete", "qa index")
    assert main(["index", str(SEED), "--index", str(built), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "rebuilding" in err and "Traceback" not in err
    assert _search(built) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert [p.name for p in built.iterdir() if p.name.startswith("gen-")] == [_generation(built)]


def test_a_lost_manifest_is_one_line_and_qa_index_rebuilds(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (built / "manifest.json").unlink()
    capsys.readouterr()
    assert _search(built) == 2
    _one_line_error(capsys, "no manifest.json", "qa index")
    assert main(["index", str(SEED), "--index", str(built), "--quiet"]) == 0
    assert _search(built) == 0
    assert [p.name for p in built.iterdir() if p.name.startswith("gen-")] == [_generation(built)]


def test_a_folder_of_the_users_files_is_never_replaced(
    tmp_path: Path, fake_models: HashEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n", encoding="utf-8")
    (folder / "manifest.json").mkdir()
    capsys.readouterr()
    assert main(["index", str(SEED), "--index", str(folder), "--quiet"]) == 2
    _one_line_error(capsys, "not a qa index")
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "notes.txt"]


# ---------------------------------------------------------------------------
# 2. the manifest is never trusted with paths


class _Opens:
    """Records every path opened through Python (builtins.open, io.open, os.open) while active."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[Path] = []
        real_open, real_os_open = open, os.open

        def spy_open(file: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(file, (str, os.PathLike)):
                self.paths.append(Path(os.path.abspath(file)))
            return real_open(file, *args, **kwargs)

        def spy_os_open(path: Any, *args: Any, **kwargs: Any) -> int:
            self.paths.append(Path(os.path.abspath(path)))
            return real_os_open(path, *args, **kwargs)

        monkeypatch.setattr("builtins.open", spy_open)
        monkeypatch.setattr("io.open", spy_open)
        monkeypatch.setattr(os, "open", spy_os_open)

    def outside(self, folder: Path) -> list[Path]:
        root = Path(os.path.abspath(folder))
        return [p for p in self.paths if root not in p.parents and p != root]


def _canary(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    canary = tmp_path / "canary.txt"
    canary.write_text("secret\n", encoding="utf-8")
    data = canary.read_bytes()
    return canary, {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


@pytest.mark.parametrize("how", ["dotdot", "absolute", "dotdot-inside-generation"])
def test_a_file_named_outside_the_folder_is_never_opened(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    canary, entry = _canary(tmp_path)
    manifest = _manifest(built)
    gen = manifest["generation"]
    name = {
        "dotdot": "../canary.txt",
        "absolute": str(canary),
        "dotdot-inside-generation": f"{gen}/../../canary.txt",
    }[how]
    manifest["files"][name] = entry
    _write_manifest(built, manifest)
    capsys.readouterr()
    opens = _Opens(monkeypatch)
    assert _search(built) == 2
    _one_line_error(capsys, "not a plain relative path" if how != "dotdot" else "")
    assert canary not in opens.paths
    assert not opens.outside(built)


def test_generation_cannot_point_at_another_index(
    built: Path, tmp_path: Path, fake_models: HashEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    qa.build_index([SEED], other, model=fake_models, progress=False)
    other_gen = _generation(other)
    manifest = _manifest(other)
    # As a path: "../other/gen-…".
    files = {f"../other/{k}": v for k, v in manifest["files"].items()}
    _write_manifest(built, {**manifest, "generation": f"../other/{other_gen}", "files": files})
    capsys.readouterr()
    assert _search(built) == 2
    _one_line_error(capsys, "generation")
    # As a symlink inside the folder named like a generation.
    (built / "gen-elsewhere").symlink_to(other / other_gen, target_is_directory=True)
    files = {k.replace(other_gen, "gen-elsewhere", 1): v for k, v in manifest["files"].items()}
    _write_manifest(built, {**manifest, "generation": "gen-elsewhere", "files": files})
    assert _search(built) == 2
    _one_line_error(capsys, "symbolic link")
    # An empty file list does not skip the check: what is read must be listed.
    _write_manifest(built, {**manifest, "generation": "gen-elsewhere", "files": {}})
    assert _search(built) == 2
    _one_line_error(capsys, "not listed")


def _run_with_watchdog(argv: list[str], seconds: float = 60) -> int:
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"qa {' '.join(argv)} hung (a FIFO or device was opened)"
    return result[0]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero-symlink", "dev-zero-named", "manifest-fifo"])
def test_fifos_and_devices_are_refused_without_hanging(
    built: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    gen = _generation(built)
    passages = built / gen / "passages.jsonl"
    manifest = _manifest(built)
    if kind == "fifo":
        passages.unlink()
        os.mkfifo(passages)
        manifest["files"][f"{gen}/passages.jsonl"]["bytes"] = 0
        _write_manifest(built, manifest)
    elif kind == "dev-zero-symlink":
        passages.unlink()
        passages.symlink_to("/dev/zero")
    elif kind == "dev-zero-named":
        manifest["files"]["/dev/zero"] = {"sha256": "0" * 64, "bytes": 0}
        _write_manifest(built, manifest)
    else:
        (built / "manifest.json").unlink()
        os.mkfifo(built / "manifest.json")
    capsys.readouterr()
    assert _run_with_watchdog(["search", QUERY, "--index", str(built)]) == 2
    _one_line_error(capsys)
    # qa index on the same folder does not hang either, and rebuilds.
    assert _run_with_watchdog(["index", str(SEED), "--index", str(built), "--quiet"]) == 0
    assert _run_with_watchdog(["search", QUERY, "--index", str(built)]) == 0


def test_check_relative_accepts_only_plain_paths_inside_the_generation() -> None:
    gen = "gen-20260101T000000-abcdef12"
    assert str(integrity.check_relative(f"{gen}/bm25/bm25.json", gen, "m")) == f"{gen}/bm25/bm25.json"
    for bad in ["/etc/passwd", f"{gen}/../x", f"{gen}//x", f"./{gen}/x", f"{gen}\\x", "gen-other/x", gen, "", 3, None]:
        with pytest.raises(IndexLoadError):
            integrity.check_relative(bad, gen, "m")


# ---------------------------------------------------------------------------
# 8. a full disk


@pytest.fixture
def fault() -> Any:
    """A monkeypatch of its own, so a test can lift the fault it injects before checking the result."""
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def _no_space(*_: Any, **__: Any) -> Any:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _corpus_with_extra(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / SEED.name).write_bytes(SEED.read_bytes())
    (corpus / "extra.md").write_text("# Cats\n\nCats sleep most of the day in warm places.\n", encoding="utf-8")
    return corpus


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder.parent)) for p in folder.parent.rglob("*") if ".lock" not in p.name)


@pytest.mark.parametrize("where", ["passages", "manifest-temp", "faiss", "numpy"])
def test_full_disk_is_one_line_and_the_previous_index_is_intact(
    built: Path,
    tmp_path: Path,
    fault: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    corpus = _corpus_with_extra(tmp_path)
    before = _listing(built)
    manifest_before = (built / "manifest.json").read_bytes()
    if where == "passages":
        def full_on_passages(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if str(file).endswith("passages.jsonl") and "w" in mode:
                _no_space()
            return open(file, mode, *args, **kwargs)

        fault.setattr(generations, "open", full_on_passages, raising=False)
    elif where == "manifest-temp":
        real = Path.write_text

        def half_then_full(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
            if self.name.startswith(".manifest.json.tmp-"):
                real(self, data[:10], *args, **kwargs)  # a partial temp file, as a real full disk leaves
                _no_space()
            return real(self, data, *args, **kwargs)

        fault.setattr(Path, "write_text", half_then_full)
    elif where == "faiss":
        faiss = faiss_ann.load_faiss()

        def full(*_: Any) -> None:
            raise RuntimeError(f"Error in faiss::write_index: write error: 0 != 1 ({os.strerror(errno.ENOSPC)})")

        fault.setattr(faiss, "write_index", full)
    else:
        fault.setattr(np, "save", _no_space)
    capsys.readouterr()
    assert main(["index", str(corpus), "--index", str(built), "--quiet"]) == 2
    _one_line_error(capsys, "disk is full", "previous index", "intact")
    fault.undo()
    assert _listing(built) == before, "stray files left behind"
    assert (built / "manifest.json").read_bytes() == manifest_before
    assert _search(built) == 0


def test_full_disk_on_a_new_index_leaves_nothing(
    tmp_path: Path, fake_models: HashEmbedder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "new" / "idx"
    monkeypatch.setattr(np, "save", _no_space)
    capsys.readouterr()
    assert main(["index", str(SEED), "--index", str(folder), "--quiet"]) == 2
    _one_line_error(capsys, "disk is full")
    assert not folder.exists()
    assert [p.name for p in folder.parent.iterdir()] == [".idx.lock"]


def test_disk_full_is_told_apart_from_other_errors() -> None:
    assert integrity.is_disk_full(OSError(errno.ENOSPC, "x"))
    assert integrity.is_disk_full(OSError(errno.EDQUOT, "x"))
    assert integrity.is_disk_full(RuntimeError(f"fwrite failed ({os.strerror(errno.ENOSPC)})"))
    assert not integrity.is_disk_full(OSError(errno.EACCES, "x"))
    assert not integrity.is_disk_full(RuntimeError("something else"))
    with pytest.raises(DiskFullError, match="intact"):
        integrity.raise_if_disk_full(OSError(errno.ENOSPC, "x"), Path("idx"))
    integrity.raise_if_disk_full(ValueError("x"), Path("idx"))  # not a full disk: returns


# ---------------------------------------------------------------------------
# 9. two writers creating the same new index


class _SlowEmbedder(HashEmbedder):
    def __init__(self, started: threading.Event) -> None:
        super().__init__()
        self.started = started

    def encode(self, texts: Any, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.started.set()
        time.sleep(0.5)
        return super().encode(texts, batch_size=batch_size, progress=progress)


def test_two_writers_creating_the_same_new_index_both_tell_the_truth(tmp_path: Path) -> None:
    first_corpus = tmp_path / "a"
    first_corpus.mkdir()
    (first_corpus / SEED.name).write_bytes(SEED.read_bytes())
    second_corpus = tmp_path / "b"
    second_corpus.mkdir()
    for i in range(3):
        (second_corpus / f"n{i}.md").write_text(f"# Note {i}\n\nNote number {i} is about cats.\n", encoding="utf-8")
    folder = tmp_path / "idx"
    started = threading.Event()
    reports: dict[str, qi.UpdateReport | None] = {}

    def first() -> None:
        slow = _SlowEmbedder(started)
        reports["first"] = qa.build_index([first_corpus], folder, model=slow, progress=False).last_update

    def second() -> None:
        started.wait(30)
        reports["second"] = qa.build_index([second_corpus], folder, model=HashEmbedder(), progress=False).last_update

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    first_report, second_report = reports["first"], reports["second"]
    assert first_report is not None and second_report is not None
    assert (first_report.added, first_report.removed) == (1, 0)
    # The second writer found the first one's index and replaced its document: its report says so.
    assert (second_report.added, second_report.removed) == (3, 1)
    on_disk = qa.load_index(folder, model=HashEmbedder())
    assert len({p.source.doc_id for p in on_disk.passages}) == 3


def test_the_writer_lock_is_reentrant_in_one_thread_only(tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    with generations.lock(folder, reentrant=True), generations.lock(folder):  # the same thread: no deadlock
        blocked: list[BaseException] = []

        def other() -> None:
            try:
                with generations.lock(folder, timeout=0.2):
                    pass
            except BaseException as exc:  # recorded for the assertion below
                blocked.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join(10)
        assert blocked and isinstance(blocked[0], qi.IndexLockedError)


# ---------------------------------------------------------------------------
# 10. bad values: one line and exit 2


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(manifest: dict[str, Any]) -> None:
        keys = path.split(".")
        target = manifest
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


MANIFEST_EDITS: dict[str, Callable[[dict[str, Any]], None] | str] = {
    "count-1e400": "count",
    "dim-1e400": "model.dim",
    "files-list": _set("files", ["a", "b"]),
    "files-string": _set("files", "gen-x/passages.jsonl"),
    "generation-null": _set("generation", None),
    "ann-type": _set("ann.type", "quantum"),
    "ann-not-object": _set("ann", 7),
    "count-bool": _set("count", True),
    "model-null": _set("model", None),
    "sha-not-hex": "sha",
}


@pytest.mark.parametrize("case", sorted(MANIFEST_EDITS))
def test_bad_manifest_values_are_one_line(built: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    edit = MANIFEST_EDITS[case]
    if isinstance(edit, str):
        text = (built / "manifest.json").read_text(encoding="utf-8")
        if edit == "count":
            text = text.replace('"count": 8', '"count": 1e400')
        elif edit == "model.dim":
            text = text.replace('"dim": 64', '"dim": 1e400')
        else:
            text = text.replace('"sha256": "', '"sha256": "zz', 1)
        assert "1e400" in text or "zz" in text
        _write_manifest(built, text)
    else:
        manifest = _manifest(built)
        edit(manifest)
        _write_manifest(built, manifest)
    capsys.readouterr()
    assert _search(built) == 2
    _one_line_error(capsys)
    assert main(["index", str(SEED), "--index", str(built), "--quiet"]) == 0  # and qa index rebuilds
    assert _search(built) == 0


def test_a_deeply_nested_manifest_is_one_line(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = json.dumps(_manifest(built))
    _write_manifest(built, manifest[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    capsys.readouterr()
    assert _search(built) == 2
    _one_line_error(capsys, "nested")


def test_resigned_bm25_json_with_missing_keys_is_one_line(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    relative = f"{_generation(built)}/bm25/bm25.json"
    meta = json.loads((built / relative).read_text(encoding="utf-8"))
    del meta["vocab"], meta["tokenizer"]
    (built / relative).write_text(json.dumps(meta), encoding="utf-8")
    _resign(built, relative)
    capsys.readouterr()
    assert _search(built) == 2
    _one_line_error(capsys, "BM25")


@pytest.mark.parametrize("bad_id", ["not-hex!", "0123456789abcdef01", 42])
def test_a_non_hex_passage_id_is_one_line(built: Path, capsys: pytest.CaptureFixture[str], bad_id: Any) -> None:
    relative = f"{_generation(built)}/passages.jsonl"
    lines = (built / relative).read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[0])
    record["passage_id"] = bad_id
    lines[0] = json.dumps(record)
    (built / relative).write_text("\n".join(lines) + "\n", encoding="utf-8")
    _resign(built, relative)
    capsys.readouterr()
    assert _search(built) == 2
    _one_line_error(capsys, "passage_id")


def test_an_ivf_type_with_more_lists_than_passages_is_one_line(
    tmp_path: Path, fake_models: HashEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "idx"
    capsys.readouterr()
    assert main(["index", str(SEED), "--index", str(folder), "--index-type", "IVF64,Flat", "--quiet"]) == 2
    _one_line_error(capsys, "IVF64,Flat", "training points", "flat")
    assert not folder.exists()


def test_index_naming_a_file_is_one_line(
    tmp_path: Path, fake_models: HashEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("not an index\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["index", str(SEED), "--index", str(file), "--quiet"]) == 2
    _one_line_error(capsys, "is a file")
    assert main(["search", QUERY, "--index", str(file)]) == 2
    _one_line_error(capsys, str(file), "is a file")
    assert file.read_text(encoding="utf-8") == "not an index\n"


def test_bad_python_arguments_raise_qa_errors(built: Path, fake_models: HashEmbedder) -> None:
    from qa.milvus import filter_expression

    with pytest.raises(InputError, match="control character U\\+0001"):
        filter_expression(qa.Filters(publisher="i24\x01NEWS"))
    with pytest.raises(InputError, match="control character"):
        filter_expression(qa.Filters(path_prefix="seeds/\x1b[2J"))
    assert filter_expression(qa.Filters(publisher="tab\there")) == 'publisher_key in ["tab\\there"]'
    with pytest.raises(InputError, match="date_from"):
        qa.Filters(date_from=5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="publisher"):
        qa.Filters(publisher=[1, 2])  # type: ignore[list-item]
    index = qa.load_index(built)
    with pytest.raises(InputError, match="filters must be"):
        index.search(QUERY, filters="x")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown filter fields"):
        index.search(QUERY, filters={"author": "x"})  # type: ignore[arg-type]
    assert index.search(QUERY, k=1, filters={"publisher": "i24NEWS"})  # type: ignore[arg-type]
    with pytest.raises(InputError, match="NoneType"):
        qa.load_index(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# 11. Ctrl-C after the commit point


def test_ctrl_c_after_the_commit_says_the_update_was_committed(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = _corpus_with_extra(tmp_path)
    real = generations.fsync_dir

    def interrupt_after_commit(path: Path) -> None:
        real(path)
        if Path(path) == built:  # fsync of the folder right after the manifest was replaced
            raise KeyboardInterrupt

    monkeypatch.setattr(generations, "fsync_dir", interrupt_after_commit)
    capsys.readouterr()
    assert main(["index", str(corpus), "--index", str(built), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "committed" in err and str(built) in err and len(err.splitlines()) == 1, err
    monkeypatch.undo()
    assert len({p.source.doc_id for p in qa.load_index(built, model=HashEmbedder()).passages}) == 2


def test_ctrl_c_before_the_commit_says_only_interrupted(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = _corpus_with_extra(tmp_path)
    before = _listing(built)
    real = generations._fsync_file

    def interrupt_before_commit(path: Path) -> None:
        if Path(path).name.startswith(".manifest.json.tmp-"):
            raise KeyboardInterrupt
        real(path)

    monkeypatch.setattr(generations, "_fsync_file", interrupt_before_commit)
    capsys.readouterr()
    assert main(["index", str(corpus), "--index", str(built), "--quiet"]) == 130
    assert capsys.readouterr().err.strip() == "qa: interrupted"
    assert _listing(built) == before
