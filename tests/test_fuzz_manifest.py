"""Fuzzing the index loader with hypothesis: whatever a folder's manifest and files hold.

Each example copies a real small index (the seed article, fake embedder), damages it —
manifest values of any JSON type and size, file names that climb out of the folder or are
absolute, nesting, deleted/flipped/truncated files, files replaced by symlinks, FIFOs or
folders, checksums re-signed so the damage reaches the parsers — and loads it. Properties:

- loading returns an index that searches, or raises a `qa.errors.QAError`; nothing else;
- loading never opens a path outside the folder (every ``open``/``os.open`` is watched,
  and a canary file outside is named by the mutations);
- nothing hangs (an alarm fails the example after 20 s: a FIFO or device was opened);
- `qa.build_index` on the damaged folder rebuilds it (with a warning) into a working index.

The default profile keeps `make test` quick (60 examples); ``QA_FUZZ_PROFILE=long`` runs 2,000:

    QA_FUZZ_PROFILE=long pytest tests/test_fuzz_manifest.py --hypothesis-show-statistics

``QA_FUZZ_TRACE=FILE`` appends each example to FILE before it runs (to find one that hangs).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qa
from qa.errors import QAError
from tests.conftest import SEED, HashEmbedder

settings.register_profile(
    "qa-manifest",
    max_examples=60,
    deadline=None,  # a shared 2-core machine stalls now and then; the alarm below bounds each example
    database=None,  # no .hypothesis folder in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("qa-manifest-long", parent=settings.get_profile("qa-manifest"), max_examples=2_000)
FUZZ = settings.get_profile("qa-manifest-long" if os.environ.get("QA_FUZZ_PROFILE") == "long" else "qa-manifest")

EMBEDDER = HashEmbedder()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz") / "template"
    index = qa.build_index([SEED], folder, model=EMBEDDER, progress=False)
    index.search("Turkey", k=2)  # imports everything a load and search use, before opens are watched
    qa.load_index(folder, model=EMBEDDER).search("Turkey", k=2)
    return folder


# -- What a mutation can put in a manifest -------------------------------------------------

OUTSIDE = "../canary.txt"  # the canary file sits beside the index folder
paths = st.sampled_from(
    [OUTSIDE, "/etc/hostname", "/dev/zero", "..", ".", "", "gen-x/../../canary.txt", "gen-x", "manifest.json",
     "GEN/passages.jsonl", "GEN/../../canary.txt", "GEN//passages.jsonl", "GEN/./passages.jsonl", "GEN\\x",
     "GEN/passages.jsonl\x00", "GEN/bm25", "GEN"]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    paths,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
fields = st.sampled_from(
    ["format", "format_version", "model", "model.name", "model.dim", "count", "generation", "files", "ann",
     "ann.type", "ann.factory", "ann.params", "ann.params.nprobe", "lexical", "sources", "FILE", "FILE.sha256",
     "FILE.bytes"]
)
manifest_edits = st.one_of(
    st.tuples(st.just("set"), fields, values),
    st.tuples(st.just("delete"), fields, st.none()),
    st.tuples(st.just("rename-file"), paths, st.booleans()),  # bool: sign it with the canary's checksum
    st.tuples(st.just("nest"), st.integers(min_value=1, max_value=200_000), st.none()),
    st.tuples(st.just("raw"), st.binary(max_size=64), st.none()),
)
file_edits = st.tuples(
    st.sampled_from(["delete", "flip", "truncate", "empty", "symlink-canary", "symlink-dev-zero", "fifo", "folder",
                     "garbage"]),
    st.integers(min_value=0, max_value=10_000),  # which file (modulo), and which byte
    st.binary(min_size=1, max_size=64),
)


def _plain(path: Path) -> bool:
    # Only a regular file is read or written by the mutations: a FIFO would block them, and
    # writing through a symlink would change the canary.
    return path.is_file() and not path.is_symlink()


def _files_of(folder: Path) -> list[str]:
    if not _plain(folder / "manifest.json"):
        return ["manifest.json"]
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        return [*sorted(manifest["files"]), "manifest.json"]
    except (OSError, ValueError, KeyError, TypeError):
        return ["manifest.json"]


def _sha(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _apply_manifest_edit(folder: Path, edit: tuple[Any, ...], canary: Path) -> None:
    manifest_path = folder / "manifest.json"
    if not _plain(manifest_path):
        return
    if edit[0] == "raw":
        manifest_path.write_bytes(edit[1])
        return
    if edit[0] == "nest":
        try:
            text = manifest_path.read_text(encoding="utf-8").rstrip()[:-1]
        except ValueError:
            return  # an earlier edit wrote bytes that are not UTF-8
        manifest_path.write_text(text + ', "deep": ' + "[" * edit[1] + "]" * edit[1] + "}", encoding="utf-8")
        return
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return  # an earlier edit replaced the manifest
    if not isinstance(manifest, dict):
        return
    gen = str(manifest.get("generation"))
    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    if edit[0] == "rename-file":
        if files:
            old = sorted(files)[0]
            new = edit[1].replace("GEN", gen)
            files[new] = _sha(canary) if edit[2] else files.pop(old)
        manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
        return
    keys = edit[1].split(".")
    if keys[0] == "FILE":
        if not files:
            return
        keys = ["files", sorted(files)[0], *keys[1:]]
    target: Any = manifest
    for key in keys[:-1]:
        if not isinstance(target, dict) or not isinstance(target.get(key), dict):
            return
        target = target[key]
    if edit[0] == "delete":
        target.pop(keys[-1], None)
    else:
        value = edit[2]
        target[keys[-1]] = value.replace("GEN", gen) if isinstance(value, str) else value
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")


def _apply_file_edit(folder: Path, edit: tuple[str, int, bytes], canary: Path) -> None:
    how, which, data = edit
    names = _files_of(folder)
    path = folder / names[which % len(names)]
    if not _plain(path):
        return
    if how == "delete":
        path.unlink()
    elif how == "flip":
        raw = bytearray(path.read_bytes())
        if raw:
            raw[which % len(raw)] ^= 0xFF
            path.write_bytes(bytes(raw))
    elif how == "truncate":
        raw = path.read_bytes()
        path.write_bytes(raw[: which % (len(raw) + 1)])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(data)
    elif how in ("symlink-canary", "symlink-dev-zero"):
        path.unlink()
        path.symlink_to(canary if how == "symlink-canary" else Path("/dev/zero"))
    elif how == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif how == "folder":
        path.unlink()
        path.mkdir()


def _resign(folder: Path) -> None:
    """Recompute every checksum the manifest lists, so damage inside files reaches the parsers."""
    if not _plain(folder / "manifest.json"):
        return
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        for name in list(manifest["files"]):
            file = folder / name
            if _plain(file) and folder.resolve() in file.resolve().parents:
                manifest["files"][name] = _sha(file)
        (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        pass  # a manifest too damaged to re-sign stays as it is


# -- Watching what loading does ---------------------------------------------------------------


class _Timeout(Exception):
    pass


@contextmanager
def _watch(opened: list[str]) -> Iterator[None]:
    """Record every path opened through Python; fail after 20 s (a FIFO or a device was opened)."""
    import builtins
    import io

    real_open, real_os_open = builtins.open, os.open

    # Only opens that succeed count: a refused symlink (O_NOFOLLOW) reads nothing.
    def spy_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)):
            opened.append(os.fspath(file))
        return handle

    def spy_os_open(path: Any, *args: Any, **kwargs: Any) -> int:
        fd = real_os_open(path, *args, **kwargs)
        opened.append(os.fspath(path))
        return fd

    def alarm(*_: Any) -> None:
        raise _Timeout("loading hung: a FIFO or device was opened")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(20)
    builtins.open, io.open, os.open = spy_open, spy_open, spy_os_open  # type: ignore[assignment]
    try:
        yield
    finally:
        builtins.open, io.open, os.open = real_open, real_open, real_os_open  # type: ignore[assignment]
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _outside(opened: list[str], folder: Path) -> list[str]:
    root = os.path.realpath(folder)
    lock = os.path.realpath(folder.parent / f".{folder.name}.lock")
    bad = []
    for path in opened:
        real = os.path.realpath(path)
        if real == lock or real.endswith((".py", ".pyc", ".so")):  # the writer lock; lazy imports
            continue
        if real != root and not real.startswith(root + os.sep):
            bad.append(path)
    return bad


@FUZZ
@given(
    manifest=st.lists(manifest_edits, max_size=3),
    files=st.lists(file_edits, max_size=2),
    resign=st.booleans(),
)
def test_loading_a_damaged_index_raises_only_qa_errors_and_stays_inside(
    template: Path, manifest: list[tuple[Any, ...]], files: list[tuple[str, int, bytes]], resign: bool
) -> None:
    if os.environ.get("QA_FUZZ_TRACE"):
        with open(os.environ["QA_FUZZ_TRACE"], "a") as trace:
            print(repr((manifest, files, resign))[:2000], file=trace, flush=True)
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "idx"
        shutil.copytree(template, folder, symlinks=True)
        canary = Path(work) / "canary.txt"
        canary.write_text("outside the index\n", encoding="utf-8")
        for edit in files:
            _apply_file_edit(folder, edit, canary)
        if resign:
            _resign(folder)
        for medit in manifest:
            _apply_manifest_edit(folder, medit, canary)
        opened: list[str] = []
        loaded = None
        with _watch(opened):
            try:
                loaded = qa.load_index(folder, model=EMBEDDER)
                loaded.search("Turkey mediation", k=3)
            except QAError:
                pass
        assert not _outside(opened, folder), f"opened outside the index: {_outside(opened, folder)}"
        if loaded is None:
            # qa index on the same folder: a damaged index is rebuilt from scratch, with a warning.
            # Only a manifest.json that is a folder is refused (it may be the user's): in one line.
            with _watch(opened), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    rebuilt = qa.build_index([SEED], folder, model=EMBEDDER, progress=False)
                except QAError:
                    assert (folder / "manifest.json").is_dir()
                else:
                    assert len(rebuilt) == len(qa.load_index(folder, model=EMBEDDER))
                    assert rebuilt.search("Turkey mediation", k=3)
        assert canary.read_text(encoding="utf-8") == "outside the index\n"
