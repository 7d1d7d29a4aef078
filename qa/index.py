"""The index: passages, their vectors in FAISS, and the folder that holds them.

The only module that imports faiss (lazily). On disk an index is a folder::

    indexes/default/
        manifest.json          # written last; names the generation below
        gen-<id>/vectors.faiss # FAISS IndexIDMap2 over an exact inner-product index
        gen-<id>/passages.jsonl

A save writes a complete new ``gen-*`` folder, then atomically replaces
``manifest.json``, then removes the old generation. A crash at any moment
leaves either the old or the new manifest, each pointing at complete files.
A brand-new index is written to a temporary folder that is renamed into place.
`load_index` checks the manifest: format version, checksums, counts, model.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa import __version__
from qa.documents import Passage, Source, load_passages
from qa.embedding import DEFAULT_MODEL, Embedder, get_embedder
from qa.errors import IndexLoadError, InputError, ModelMismatchError
from qa.retrieval import Hit, search

if TYPE_CHECKING:
    import faiss

    from qa.answering import Answer

FORMAT = "qa-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
PASSAGES = "passages.jsonl"
DEFAULT_INDEX = "indexes/default"


def _faiss() -> Any:
    import faiss

    return faiss


def faiss_id(passage_id: str) -> int:
    """FAISS ids are int64: the passage id's 64 hash bits, less the sign bit."""
    return int(passage_id, 16) >> 1


class Index:
    """Passages with their embeddings; search and ask over them.

    Build one with `qa.build_index`, open a saved one with `qa.load_index`.
    """

    def __init__(
        self,
        passages: Sequence[Passage],
        vectors: np.ndarray,
        embedder: Embedder,
        *,
        path: str | os.PathLike[str] | None = None,
        manifest: dict[str, Any] | None = None,
    ) -> None:
        if len(passages) != len(vectors):
            raise ValueError(f"{len(passages)} passages but {len(vectors)} vectors")
        self.passages: list[Passage] = list(passages)
        self.embedder = embedder
        self.path = Path(path) if path is not None else None
        self.manifest = manifest or {}
        self._dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
        self._faiss = self._make_faiss(np.ascontiguousarray(vectors, dtype=np.float32))
        self._row_of_id = {faiss_id(p.passage_id): row for row, p in enumerate(self.passages)}
        if len(self._row_of_id) != len(self.passages):
            raise ValueError("duplicate passage ids; every passage needs a distinct id")

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model_name(self) -> str:
        return str(self.manifest.get("model", {}).get("name") or self.embedder.name)

    def __len__(self) -> int:
        return len(self.passages)

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"<qa.Index {len(self)} passages, model {self.model_name!r}{where}>"

    # -- FAISS -------------------------------------------------------------

    def _make_faiss(self, vectors: np.ndarray) -> faiss.Index:
        faiss = _faiss()
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(self._dim))
        if len(vectors):
            ids = np.fromiter((faiss_id(p.passage_id) for p in self.passages), dtype=np.int64, count=len(vectors))
            index.add_with_ids(vectors, ids)
        return index

    @property
    def vectors(self) -> np.ndarray:
        """All passage vectors, in passage order (a copy)."""
        if not len(self):
            return np.zeros((0, self._dim), dtype=np.float32)
        ids = np.fromiter((faiss_id(p.passage_id) for p in self.passages), dtype=np.int64, count=len(self))
        return np.vstack([self._faiss.reconstruct(int(i)) for i in ids]).astype(np.float32)

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        vectors = self.embedder.encode(list(queries), progress=False)
        if vectors.shape[1] != self._dim:
            raise ModelMismatchError(
                f"model {self.embedder.name!r} makes {vectors.shape[1]}-d vectors but this index holds "
                f"{self._dim}-d vectors from {self.model_name!r}; load it with that model or rebuild the index"
            )
        return vectors

    def dense_search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner-product search. Returns (scores, rows) of shape (n, k); rows are -1 where empty."""
        k = max(1, min(k, len(self)))
        if not len(self):
            n = len(vectors)
            return np.full((n, 1), -np.inf, dtype=np.float32), np.full((n, 1), -1, dtype=np.int64)
        scores, ids = self._faiss.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        rows = np.array([[self._row_of_id.get(int(i), -1) for i in line] for line in ids], dtype=np.int64)
        return scores, rows

    # -- Queries -----------------------------------------------------------

    def search(self, query: str, k: int = 5, *, mode: str | None = None) -> list[Hit]:
        """The ``k`` passages that best match ``query``, best first.

        Raises:
            InputError: the query is empty or ``k`` is not a positive integer.
        """
        if not isinstance(query, str):
            raise InputError("search takes one query string; use search_batch() for a list")
        return search(self, [query], k, mode=mode)[0]

    def search_batch(self, queries: Sequence[str], k: int = 5, *, mode: str | None = None) -> list[list[Hit]]:
        """`search` for many queries at once (embedded in one batch)."""
        return search(self, queries, k, mode=mode)

    def ask(self, question: str, *, k: int = 5, mode: str | None = None) -> Answer:
        """Answer ``question`` from the passages, with evidence and confidence.

        ``Answer.text`` is None when the corpus holds no good enough answer.
        """
        from qa.answering import answer

        return answer(self, question, k=k, mode=mode)

    # -- Disk --------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to the folder ``path`` (created, or replaced atomically)."""
        folder = Path(path)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _lock(folder):
            if folder.exists() and any(folder.iterdir()) and not (folder / MANIFEST).exists():
                raise InputError(
                    f"{folder} exists and is not a qa index (no {MANIFEST}); choose another --index folder "
                    "or remove it first"
                )
            if not folder.exists() or not any(folder.iterdir()):
                staging = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
                staging.mkdir()
                try:
                    self._write(staging)
                    if folder.exists():
                        folder.rmdir()
                    os.rename(staging, folder)
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
                _fsync_dir(folder.parent)
            else:
                self._write(folder)
        self.path = folder
        return folder

    def _write(self, folder: Path) -> None:
        generation = f"gen-{_dt.datetime.now(_dt.UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        gen_dir = folder / generation
        gen_dir.mkdir()
        try:
            faiss = _faiss()
            faiss.write_index(self._faiss, str(gen_dir / VECTORS))
            with open(gen_dir / PASSAGES, "w", encoding="utf-8") as out:
                for p in self.passages:
                    out.write(json.dumps(asdict(p), ensure_ascii=False) + "\n")
            files = {}
            for name in (VECTORS, PASSAGES):
                file = gen_dir / name
                _fsync_file(file)
                files[f"{generation}/{name}"] = {"sha256": _sha256(file), "bytes": file.stat().st_size}
            _fsync_dir(gen_dir)
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "qa_version": __version__,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "model": {"name": self.embedder.name, "dim": self._dim},
                "count": len(self),
                "index_type": "IDMap2,Flat",
                "metric": "inner_product",
                "generation": generation,
                "files": files,
                "sources": self.manifest.get("sources", []),
            }
            temp = folder / f".{MANIFEST}.tmp-{uuid.uuid4().hex[:8]}"
            temp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            _fsync_file(temp)
            os.replace(temp, folder / MANIFEST)  # the commit point
            _fsync_dir(folder)
        except BaseException:
            if not (folder / MANIFEST).exists() or _read_json(folder / MANIFEST).get("generation") != generation:
                shutil.rmtree(gen_dir, ignore_errors=True)
            raise
        self.manifest = manifest
        for stale in folder.iterdir():
            if stale.name.startswith("gen-") and stale.name != generation:
                shutil.rmtree(stale, ignore_errors=True)
            elif stale.name.startswith(f".{MANIFEST}.tmp-"):
                stale.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# Helpers for the folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[None]:
    """Serialise writers of one index folder; the second one waits."""
    lock_path = folder.parent / f".{folder.name}.lock"
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------
# Public entry points


def build_index(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    index_dir: str | os.PathLike[str] | None = DEFAULT_INDEX,
    *,
    model: str | Embedder = DEFAULT_MODEL,
    progress: bool = True,
    batch_size: int = 64,
) -> Index:
    """Load articles, embed their passages and save the index.

    Args:
        paths: files or folders of ``.txt``/``.md``/``.html``/``.jsonl`` articles.
        index_dir: folder to write (replaced atomically if it holds an index);
            None keeps the index in memory only.
        model: a bundled model name, a local sentence-transformers folder, or an `Embedder`.
        progress: show a progress bar while embedding.
        batch_size: passages per embedding batch.

    Returns:
        The index, ready to search.

    Raises:
        InputError: a path is missing or holds no readable text.
        ModelNotFoundError: the model is not on this machine.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    embedder = get_embedder(model)
    passages = load_passages(paths, max_tokens=embedder.max_tokens, count_tokens=embedder.count_tokens)
    vectors = embedder.encode([p.text for p in passages], batch_size=batch_size, progress=progress)
    index = Index(passages, vectors, embedder, manifest={"sources": [str(p) for p in paths]})
    if index_dir is not None:
        index.save(index_dir)
    return index


def load_index(path: str | os.PathLike[str] = DEFAULT_INDEX, *, model: str | Embedder | None = None) -> Index:
    """Open a saved index, verifying it first.

    Args:
        path: the index folder.
        model: the embedding model to use for queries; by default the one the
            index was built with. A model of another name or dimension is refused.

    Raises:
        IndexLoadError: the folder is missing, not a qa index, from another
            format version, or its files do not match their checksums.
        ModelMismatchError: ``model`` is not the model the index was built with.
    """
    folder = Path(path)
    rebuild = f"rebuild it with: qa index PATH... --index {folder}"
    if not folder.is_dir():
        raise IndexLoadError(f"no index at {folder}; build one with: qa index PATH... --index {folder}")
    for attempt in range(2):
        try:
            manifest = _read_json(folder / MANIFEST)
        except FileNotFoundError as exc:
            raise IndexLoadError(f"{folder} is not a qa index (no {MANIFEST}); {rebuild}") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise IndexLoadError(f"{folder / MANIFEST} is corrupted ({exc}); {rebuild}") from exc
        try:
            return _load(folder, manifest, model, rebuild)
        except FileNotFoundError:
            # A writer replaced the generation between our reading the manifest
            # and opening its files: read the new manifest once more.
            if attempt:
                raise
    raise AssertionError("unreachable")


def _load(folder: Path, manifest: dict[str, Any], model: str | Embedder | None, rebuild: str) -> Index:
    if manifest.get("format") != FORMAT:
        raise IndexLoadError(f"{folder} is not a qa index ({MANIFEST} has no 'format': '{FORMAT}'); {rebuild}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexLoadError(
            f"{folder} has index format version {version!r} (written by qa {manifest.get('qa_version', '?')}); "
            f"this qa {__version__} reads version {FORMAT_VERSION}; {rebuild}"
        )
    try:
        model_info = manifest["model"]
        name, dim, count = str(model_info["name"]), int(model_info["dim"]), int(manifest["count"])
        generation = str(manifest["generation"])
        files: dict[str, dict[str, Any]] = manifest["files"]
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexLoadError(f"{folder / MANIFEST} lacks a field ({exc}); {rebuild}") from exc
    for relative, expected in files.items():
        file = folder / relative
        if not file.exists():
            raise FileNotFoundError(file)
        if file.stat().st_size != expected.get("bytes") or _sha256(file) != expected.get("sha256"):
            raise IndexLoadError(f"{file} does not match its checksum in {MANIFEST}: the index is corrupted; {rebuild}")
    embedder = get_embedder(model if model is not None else name)
    if embedder.name != name:
        raise ModelMismatchError(
            f"{folder} was built with model {name!r}, not {embedder.name!r}; load it without a model "
            f"(or with {name!r}), or rebuild the index with the new model"
        )
    if model is not None and not isinstance(model, str) and embedder.dim != dim:
        raise ModelMismatchError(f"model {embedder.name!r} makes {embedder.dim}-d vectors but {folder} holds {dim}-d")
    passages = []
    with open(folder / generation / PASSAGES, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            passages.append(Passage(record["passage_id"], record["text"], Source(**record["source"])))
    faiss = _faiss()
    stored = faiss.read_index(str(folder / generation / VECTORS))
    if stored.ntotal != count or len(passages) != count or stored.d != dim:
        raise IndexLoadError(
            f"{folder}: manifest says {count} passages of {dim}-d vectors, files hold {len(passages)} passages "
            f"and {stored.ntotal} {stored.d}-d vectors; {rebuild}"
        )
    index = Index.__new__(Index)
    index.passages = passages
    index.embedder = embedder
    index.path = folder
    index.manifest = manifest
    index._dim = dim
    index._faiss = stored
    index._row_of_id = {faiss_id(p.passage_id): row for row, p in enumerate(passages)}
    return index
