"""The FAISS index folder on disk: generations, the manifest, checksums and the writer lock.

    indexes/default/
        manifest.json            # written last; names the generation below, with checksums
        gen-<id>/vectors.faiss   # the FAISS search structure (ids = passage keys)
        gen-<id>/vectors.npy     # exact float32 vectors, for approximate index types only
        gen-<id>/passages.jsonl  # one passage (text + source) per line, in row order
        gen-<id>/sentences.npy   # sentence vectors (float16), flat indexes only
        gen-<id>/bm25/...        # the BM25 index over the same rows (qa.lexical)

**Crash safety.** Every save writes a complete new ``gen-*`` folder, fsyncs it,
then atomically replaces ``manifest.json`` (the commit point), then deletes the
old generation. A crash at any moment leaves the old or the new manifest, each
naming complete, checksummed files. Writers are serialised by a lock file beside
the folder (``.<name>.lock``; a second writer waits up to $QA_LOCK_TIMEOUT seconds,
default 600, then fails with `IndexLockedError`); readers take no lock and retry if
a writer removed the generation they were about to read.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa import integrity
from qa._version import __version__
from qa.documents import Passage, Source
from qa.errors import IndexLoadError, InputError, QAError
from qa.integrity import sha256_file
from qa.lexical import LEXICAL_RECIPE
from qa.stores.faiss.ann import build_ann, load_faiss
from qa.stores.sentences import SentenceVectors

FORMAT = "qa-index"


# 2: sentence vectors stored with flat indexes (version 1 embedded them lazily at query time).
FORMAT_VERSION = 2


MANIFEST = "manifest.json"


VECTORS = "vectors.faiss"


EXACT_VECTORS = "vectors.npy"


PASSAGES = "passages.jsonl"


SENTENCE_VECTORS = "sentences.npy"


SENTENCE_OFFSETS = "sentence_offsets.npy"


LEXICAL_DIR = "bm25"


DEFAULT_INDEX = "indexes/default"


LOCK_TIMEOUT_ENV = "QA_LOCK_TIMEOUT"


DEFAULT_LOCK_TIMEOUT = 600.0


# Test hook: seconds to sleep between the steps of a write, so a test can kill a writer mid-way.
SLOW_WRITE_ENV = "QA_TEST_SLOW_WRITE"


class IndexLockedError(QAError):
    """Another process is writing the index and did not finish within the lock timeout."""


@dataclass(frozen=True)
class State:
    """Everything one generation holds; a store swaps its whole state at once."""

    passages: list[Passage]
    vectors: np.ndarray
    ids: np.ndarray
    ann: Any
    spec: dict[str, Any]
    lexical: Any
    dim: int
    sentences: SentenceVectors | None


def pause() -> None:
    delay = os.environ.get(SLOW_WRITE_ENV)
    if delay:
        time.sleep(float(delay))


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` (a regular file of bounded size; `qa.integrity.read_json_object`)."""
    return integrity.read_json_object(path)


_held: dict[tuple[str, int], int] = {}


@contextlib.contextmanager
def lock(folder: Path, timeout: float | None = None, *, reentrant: bool = False) -> Iterator[None]:
    """Serialise writers of one index folder: the second waits up to ``timeout`` seconds, then fails.

    The timeout defaults to $QA_LOCK_TIMEOUT, else `DEFAULT_LOCK_TIMEOUT`. The lock is an
    ``flock`` on a file beside the folder, so the kernel releases it when a writer dies.
    Taken with ``reentrant=True``, the same thread may take it again inside (build_faiss_index
    holds it across `Index.update` and `Index.save`); otherwise a second taking waits, as
    another process would.
    """
    if timeout is None:
        try:
            timeout = float(os.environ.get(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT))
        except ValueError:
            timeout = DEFAULT_LOCK_TIMEOUT
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.parent / f".{folder.name}.lock"
    key = (os.path.realpath(lock_path), threading.get_ident())
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    with open(lock_path, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise IndexLockedError(
                        f"another qa process (pid {holder}) is writing {folder}; wait for it to finish and "
                        f"retry, or raise ${LOCK_TIMEOUT_ENV} (seconds to wait, now {timeout:g})"
                    ) from None
                time.sleep(0.02)
        try:
            if reentrant:
                _held[key] = 1
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            _held.pop(key, None)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _generation_replaced(folder: Path, manifest: dict[str, Any]) -> bool:
    try:
        return read_json(folder / MANIFEST).get("generation") != manifest.get("generation")
    except (OSError, ValueError, IndexLoadError):
        return False


def _flat_vectors(ann: Any, ids: np.ndarray, dim: int, folder: Path, rebuild: str) -> tuple[np.ndarray, bool]:
    """Checks an IDMap2 index holds exactly the passages' ids; returns (vectors in row order, stored in row order).

    When the FAISS order is the row order the vectors are not copied out (the index is viewed instead).
    """
    empty = np.zeros((0, dim), dtype=np.float32)
    if ann is None:
        return empty, True
    faiss = load_faiss()
    stored_ids = faiss.vector_to_array(faiss.downcast_index(ann).id_map).astype(np.int64)
    if np.array_equal(stored_ids, ids):
        return empty, True
    if set(stored_ids.tolist()) != set(ids.tolist()):
        raise IndexLoadError(f"{folder}: FAISS ids do not match the passages (rows and metadata drifted); {rebuild}")
    return np.vstack([ann.reconstruct(int(i)) for i in ids]).astype(np.float32), False


def write_generation(folder: Path, model: dict[str, Any], sources: list[str], state: State) -> dict[str, Any]:
    """Write one complete generation of ``state`` into ``folder`` and commit it; return the new manifest."""
    generation = f"gen-{_dt.datetime.now(_dt.UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    gen_dir = folder / generation
    temp = folder / f".{MANIFEST}.tmp-{uuid.uuid4().hex[:8]}"
    passages, spec, lexical, sentences = state.passages, state.spec, state.lexical, state.sentences
    try:
        gen_dir.mkdir()
        faiss = load_faiss()
        names: list[str] = []
        if state.ann is not None:
            faiss.write_index(state.ann, str(gen_dir / VECTORS))
            names.append(VECTORS)
        pause()
        if spec["type"] != "flat" and len(passages):
            np.save(gen_dir / EXACT_VECTORS, np.ascontiguousarray(state.vectors, dtype=np.float32))
            names.append(EXACT_VECTORS)
        with open(gen_dir / PASSAGES, "w", encoding="utf-8") as out:
            for p in passages:
                out.write(json.dumps(asdict(p), ensure_ascii=False) + "\n")
        names.append(PASSAGES)
        if sentences is not None:
            np.save(gen_dir / SENTENCE_OFFSETS, sentences.offsets.astype(np.int64), allow_pickle=False)
            np.save(gen_dir / SENTENCE_VECTORS, np.asarray(sentences.vectors, np.float16), allow_pickle=False)
            names += [SENTENCE_OFFSETS, SENTENCE_VECTORS]
        pause()
        if lexical is not None:
            (gen_dir / LEXICAL_DIR).mkdir()
            names.extend(f"{LEXICAL_DIR}/{name}" for name in lexical.save(gen_dir / LEXICAL_DIR))
        files = {}
        for name in names:
            file = gen_dir / name
            _fsync_file(file)
            files[f"{generation}/{name}"] = {"sha256": sha256_file(file), "bytes": file.stat().st_size}
        if lexical is not None:
            fsync_dir(gen_dir / LEXICAL_DIR)
        fsync_dir(gen_dir)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "qa_version": __version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "model": model,
            "count": len(passages),
            "index_type": spec["factory"],
            "ann": spec,
            "lexical": LEXICAL_RECIPE if lexical is not None else None,
            "metric": "inner_product",
            "generation": generation,
            "files": files,
            "sources": sources,
        }
        pause()
        temp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _fsync_file(temp)
        integrity.expect_commit(folder / MANIFEST, generation)
        os.replace(temp, folder / MANIFEST)  # the commit point
        fsync_dir(folder)
    except BaseException as exc:
        committed = False
        with contextlib.suppress(OSError, ValueError, QAError):
            committed = read_json(folder / MANIFEST).get("generation") == generation
        if not committed:
            integrity.remove_strays(folder, [generation, temp.name])
            integrity.raise_if_disk_full(exc, folder)
        raise
    pause()
    for stale in folder.iterdir():
        if stale.name.startswith("gen-") and stale.name != generation:
            shutil.rmtree(stale, ignore_errors=True)
        elif stale.name.startswith(f".{MANIFEST}.tmp-"):
            stale.unlink(missing_ok=True)
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of the index folder ``folder``.

    Raises:
        IndexLoadError: no folder, no manifest, or an unreadable one (the message says how to rebuild).
    """
    rebuild = f"rebuild it with: qa index PATH... --index {folder}"
    if not folder.is_dir():
        integrity.check_target(folder)
        raise IndexLoadError(f"no index at {folder}; build one with: qa index PATH... --index {folder}")
    try:
        return read_json(folder / MANIFEST)
    except FileNotFoundError as exc:
        raise IndexLoadError(f"{folder} is not a qa index (no {MANIFEST}); {rebuild}") from exc
    except (ValueError, UnicodeDecodeError, IndexLoadError) as exc:
        raise IndexLoadError(f"{folder / MANIFEST} is corrupted ({exc}); {rebuild}") from exc


def read_folder(folder: Path, check_model: Any) -> tuple[dict[str, Any], State]:
    """Read the committed generation of ``folder``, retrying if a writer replaces it meanwhile.

    Args:
        folder: the index folder.
        check_model: called with the manifest's model record (`qa.embedding.model_record`) before
            any large file is read; raises when the caller's model does not fit.

    Raises:
        IndexLoadError: not a qa index, another format version, or files that fail their checks.
    """
    rebuild = f"rebuild it with: qa index PATH... --index {folder}"
    attempts = 5
    for attempt in range(attempts):
        manifest = read_manifest(folder)
        try:
            return manifest, read_generation(folder, manifest, check_model)
        except (FileNotFoundError, IndexLoadError) as exc:
            # A writer may have committed a new generation and deleted this one between our
            # reading the manifest and its files: then read the new manifest. Otherwise the
            # error is real.
            if attempt == attempts - 1 or not _generation_replaced(folder, manifest):
                if isinstance(exc, FileNotFoundError):  # deleted, or a partial copy
                    raise IndexLoadError(f"{exc} is missing: the index is incomplete; {rebuild}") from exc
                raise
            time.sleep(0.01 * (attempt + 1))
        except QAError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError, EOFError) as exc:
            # Files that match their checksums but not their format (a re-signed file): damage too.
            raise IndexLoadError(f"{folder} is damaged ({type(exc).__name__}: {exc}); {rebuild}") from exc
    raise AssertionError("unreachable")


def read_generation(folder: Path, manifest: dict[str, Any], check_model: Any) -> State:
    """Read and verify the generation ``manifest`` names (see `read_folder`)."""
    rebuild = f"rebuild it with: qa index PATH... --index {folder}"
    if manifest.get("format") != FORMAT:
        raise IndexLoadError(f"{folder} is not a qa index ({MANIFEST} has no 'format': '{FORMAT}'); {rebuild}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexLoadError(
            f"{folder} has index format version {version!r} (written by qa {manifest.get('qa_version', '?')}); "
            f"this qa {__version__} reads version {FORMAT_VERSION}; {rebuild}"
        )
    # Indexes written before index types existed are exact (IDMap2 over flat).
    legacy = {"requested": "flat", "type": "flat", "factory": "IDMap2,Flat", "params": {}}
    try:
        checked = integrity.check_manifest(manifest, str(folder / MANIFEST), legacy)
    except IndexLoadError as exc:
        raise IndexLoadError(f"{exc}; {rebuild}") from exc
    model_info = dict(manifest["model"])
    dim, count, generation = checked.dim, checked.count, checked.generation
    files, spec, kind = checked.files, checked.ann, checked.ann["type"]
    for relative, expected in files.items():
        file = folder / relative
        if not (folder / generation).exists():
            raise FileNotFoundError(folder / generation)  # a writer may have replaced it: the caller retries
        size = integrity.regular_file(folder, relative, rebuild).st_size
        if size != expected["bytes"] or sha256_file(file) != expected["sha256"]:
            raise IndexLoadError(f"{file} does not match its checksum in {MANIFEST}: the index is corrupted; {rebuild}")
    check_model(model_info)
    gen_dir = folder / generation
    passages = []
    # Everything read below is listed, so it was checked above: a regular file inside the folder.
    integrity.require_listed(files, generation, _files_read(files, generation), f"{folder / MANIFEST}; {rebuild}")
    try:
        with integrity.open_regular(gen_dir / PASSAGES, "r", encoding="utf-8") as f:
            for line in f:
                pid, text, source = integrity.passage_record(json.loads(line), str(gen_dir / PASSAGES))
                passages.append(Passage(pid, text, Source(**source)))
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise IndexLoadError(f"{gen_dir / PASSAGES} is unreadable ({exc}); {rebuild}") from exc
    ids = ids_of(passages)
    faiss = load_faiss()
    ann = None
    if f"{generation}/{VECTORS}" in files:
        try:
            ann = faiss.read_index(str(gen_dir / VECTORS))
        except RuntimeError as exc:
            raise IndexLoadError(f"{gen_dir / VECTORS} is unreadable by FAISS ({exc}); {rebuild}") from exc
    stored = 0 if ann is None else int(ann.ntotal)
    if stored != count or len(passages) != count or (ann is not None and ann.d != dim):
        raise IndexLoadError(
            f"{folder}: manifest says {count} passages of {dim}-d vectors, files hold {len(passages)} passages "
            f"and {stored} {getattr(ann, 'd', dim)}-d vectors; {rebuild}"
        )
    if kind == "flat" or f"{generation}/{EXACT_VECTORS}" not in files:
        vectors, in_row_order = _flat_vectors(ann, ids, dim, folder, rebuild)
        if not in_row_order:
            spec = {"requested": "flat", "type": "flat", "factory": "IDMap2,Flat", "params": {}}
            ann = build_ann(vectors, ids, spec)
    else:
        # Memory-mapped: only the rows a search reranks are read from disk.
        vectors = np.load(gen_dir / EXACT_VECTORS, mmap_mode="r", allow_pickle=False)
        if vectors.shape != (count, dim):
            raise IndexLoadError(f"{gen_dir / EXACT_VECTORS} holds {vectors.shape}, expected {(count, dim)}; {rebuild}")
    lexical = None
    # BM25 built from other text than qa builds it from now is left out, and rebuilt (in seconds,
    # from the passages) on first use.
    saved_lexical = any(key.startswith(f"{generation}/{LEXICAL_DIR}/") for key in files)
    if saved_lexical and manifest.get("lexical") == LEXICAL_RECIPE:
        from qa.lexical import BM25

        lexical = BM25.load(gen_dir / LEXICAL_DIR)
        if len(lexical) != count:
            raise IndexLoadError(f"{gen_dir / LEXICAL_DIR} holds {len(lexical)} documents, not {count}; {rebuild}")
    sentences = None
    if f"{generation}/{SENTENCE_OFFSETS}" in files:
        offsets = np.load(gen_dir / SENTENCE_OFFSETS, allow_pickle=False)
        # Memory-mapped like the exact vectors: a query reads only its candidates' sentences.
        sentence_vectors = np.load(gen_dir / SENTENCE_VECTORS, mmap_mode="r", allow_pickle=False)
        if offsets.shape != (count + 1,) or int(offsets[-1]) != len(sentence_vectors):
            raise IndexLoadError(f"{gen_dir / SENTENCE_OFFSETS} does not fit {count} passages; {rebuild}")
        sentences = SentenceVectors(offsets, sentence_vectors)
    return State(passages, vectors, ids, ann, spec, lexical, dim, sentences)


def ids_of(passages: Sequence[Passage]) -> np.ndarray:
    """The int64 key (`qa.updates.passage_key`) of every passage, in row order."""
    return np.fromiter((int(p.passage_id, 16) >> 1 for p in passages), dtype=np.int64, count=len(passages))


def save_folder(folder: Path, model: dict[str, Any], sources: list[str], state: State) -> dict[str, Any]:
    """Write ``state`` to the folder ``folder`` (created, or replaced atomically) under the writer lock.

    Raises:
        InputError: ``folder`` is a non-empty folder that is not a qa index.
        IndexLockedError: another writer held the lock past the timeout.
    """
    integrity.check_target(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with lock(folder):
        if not integrity.may_replace(folder, MANIFEST):
            raise InputError(
                f"{folder} exists and is not a qa index (no {MANIFEST} file); choose another --index folder "
                "or remove it first"
            )
        for stale in folder.parent.glob(f".{folder.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a writer that was killed
        if folder.exists() and any(folder.iterdir()):
            return write_generation(folder, model, sources, state)
        staging = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            staging.mkdir()
            manifest = write_generation(staging, model, sources, state)
            if folder.exists():
                folder.rmdir()
            integrity.expect_commit(folder / MANIFEST, manifest["generation"])
            os.rename(staging, folder)  # the commit point of a new index
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            integrity.raise_if_disk_full(exc, folder)
            raise
        fsync_dir(folder.parent)
    return manifest


def _files_read(files: dict[str, Any], generation: str) -> list[str]:
    """The files of ``generation`` that `read_generation` opens, given what the manifest lists."""
    from qa.lexical import ARRAYS_FILE, META_FILE

    names = [PASSAGES]
    if f"{generation}/{SENTENCE_OFFSETS}" in files:
        names.append(SENTENCE_VECTORS)
    if any(key.startswith(f"{generation}/{LEXICAL_DIR}/") for key in files):
        names += [f"{LEXICAL_DIR}/{ARRAYS_FILE}", f"{LEXICAL_DIR}/{META_FILE}"]
    return names
