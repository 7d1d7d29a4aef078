"""The `qa` facade: `Index`, `build_index` and `load_index`, over any store.

An index is a store (`qa.stores.base.Store`: a FAISS folder or a Milvus collection) with
`qa.api.IndexAPI` mixed in: the same search, ask and updates on every store. `Index` is
the FAISS folder (`qa.stores.faiss`); `qa.milvus.MilvusIndex` is a Milvus collection.
`build_index` and `load_index` choose by the target (`qa.store.uses_milvus`).

**A living index.** `build_index` on a folder that already holds an index of the
same model, and `Index.update`, bring the index to exactly the state a fresh
build of the given paths would have — same passages in the same order, same ids,
same vectors — while embedding only passage texts the index has never seen
(vectors are reused by content; `qa.updates`). Passage ids hash (doc id, occurrence,
text), so an id a user holds stays valid until that passage's text changes or its
document goes away. `Index.remove` drops documents by id or path.

**Duplicates.** The same paragraph in two articles (wire copy run by two
publishers) stays two passages, each with its own id and source, so filters by
publisher or date and attribution stay exact; its text is embedded once.

The folder layout, crash safety and locks: `qa.stores.faiss.generations`; index types:
`qa.stores.faiss.ann`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa import integrity
from qa.api import IndexAPI
from qa.documents import load_passages
from qa.embedding import DEFAULT_MODEL, Embedder, embed_passages, embedder_for_index, get_embedder
from qa.errors import IndexLoadError, InputError, ModelMismatchError
from qa.lexical import LEXICAL_RECIPE, build_lexical
from qa.paths import source_path
from qa.store import Store, uses_milvus
from qa.stores.faiss.ann import (
    AUTO_FLAT_MAX,
    AUTO_LARGE_TYPE,
    EXACT_FILTER_MAX,
    INDEX_TYPES,
    RERANK_MIN,
    RETRAIN_FACTOR,
    SEARCH_THREADS_ENV,
    build_ann,
    resolve_index_type,
)
from qa.stores.faiss.generations import (
    DEFAULT_INDEX,
    DEFAULT_LOCK_TIMEOUT,
    EXACT_VECTORS,
    FORMAT,
    FORMAT_VERSION,
    LEXICAL_DIR,
    LOCK_TIMEOUT_ENV,
    MANIFEST,
    PASSAGES,
    SENTENCE_OFFSETS,
    SENTENCE_VECTORS,
    SLOW_WRITE_ENV,
    VECTORS,
    IndexLockedError,
    lock,
)
from qa.stores.faiss.store import FaissStore, keeps_sentences, open_folder
from qa.stores.sentences import SentenceVectors
from qa.updates import UpdateReport, faiss_id, report

__all__ = [
    "AUTO_FLAT_MAX",
    "AUTO_LARGE_TYPE",
    "DEFAULT_INDEX",
    "DEFAULT_LOCK_TIMEOUT",
    "EXACT_FILTER_MAX",
    "EXACT_VECTORS",
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_TYPES",
    "LEXICAL_DIR",
    "LEXICAL_RECIPE",
    "LOCK_TIMEOUT_ENV",
    "MANIFEST",
    "PASSAGES",
    "RERANK_MIN",
    "RETRAIN_FACTOR",
    "SEARCH_THREADS_ENV",
    "SENTENCE_OFFSETS",
    "SENTENCE_VECTORS",
    "SLOW_WRITE_ENV",
    "VECTORS",
    "Index",
    "IndexLockedError",
    "SentenceVectors",
    "UpdateReport",
    "build_ann",
    "build_faiss_index",
    "build_index",
    "faiss_id",
    "load_faiss_index",
    "load_index",
    "resolve_index_type",
]


class Index(IndexAPI, FaissStore):
    """Passages with their embeddings in a FAISS index folder; search and ask over them.

    Build one with `qa.build_index`, open a saved one with `qa.load_index`, keep it in
    step with changing files with `update` and `remove`.
    """

    def update(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        *,
        progress: bool = False,
        batch_size: int = 64,
        index_type: str | None = None,
        **options: Any,
    ) -> UpdateReport:
        """`qa.api.IndexAPI.update`; ``index_type`` changes the index type (vectors are reused)."""
        if index_type is not None:
            options["index_type"] = index_type
        return super().update(paths, progress=progress, batch_size=batch_size, **options)


def build_index(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    index_dir: str | os.PathLike[str] | None = DEFAULT_INDEX,
    *,
    model: str | Embedder = DEFAULT_MODEL,
    progress: bool = True,
    batch_size: int = 64,
    index_type: str | None = None,
    incremental: bool = True,
    backend: str | None = None,
    embedding_backend: str | None = None,
    **backend_options: Any,
) -> Store:
    """Load articles, embed their passages and save the index.

    ``index_dir`` names a FAISS index folder, or a Milvus index: a ``milvus://HOST:PORT/COLLECTION``
    URL or a Milvus Lite ``*.db`` path (see `qa.milvus`; needs ``pip install "qa[milvus]"``).

    When ``index_dir`` already holds a valid index of the same model, this is an
    incremental update (`Index.update`): the result is identical to a fresh build, but
    only passage texts the index has not seen are embedded. ``index.last_update``
    says what changed.

    Args:
        paths: files or folders of ``.txt``/``.md``/``.html``/``.jsonl`` articles; they
            define the whole corpus (documents of other paths are removed).
        index_dir: folder to write (replaced atomically if it holds an index);
            None keeps the index in memory only.
        model: a bundled model name, a local sentence-transformers folder, or an `Embedder`.
        progress: show a progress bar while embedding.
        batch_size: passages per embedding batch.
        index_type: ``auto`` (flat up to `AUTO_FLAT_MAX` passages), ``flat``, ``hnsw``,
            ``ivf-sq8``, ``ivf-pq`` or a FAISS factory string; None means ``auto`` for a
            new index and the recorded type for an existing one.
        incremental: False re-embeds everything even when ``index_dir`` holds an index.
        backend: ``"faiss"`` or ``"milvus"``; None decides from ``index_dir`` (`qa.store.uses_milvus`).
        embedding_backend: how the model runs, one of `qa.backends.BACKENDS`: ``openvino-bf16``,
            ``onnx`` (fp32), ``onnx-int8`` or ``torch``; recorded in the manifest, and queries use
            the same. None keeps an existing index's backend, and gives a new one `qa.backends.DEFAULT_BACKEND`.
        backend_options: for Milvus, ``consistency_level`` and ``collection`` (`qa.milvus.build_milvus_index`).

    Returns:
        The index, ready to search: an `Index` (FAISS) or a `qa.milvus.MilvusIndex`.

    Raises:
        InputError: a path is missing or holds no readable text, or an option the backend lacks.
        ModelNotFoundError: the model is not on this machine.
        IndexLockedError: another writer held the lock past the timeout.
    """
    if uses_milvus(index_dir, backend):
        from qa.milvus import build_milvus_index

        if index_dir is None:
            raise InputError("a Milvus index needs a target: milvus://HOST:PORT/COLLECTION or a path ending in .db")
        return build_milvus_index(
            paths, index_dir, model=model, progress=progress, batch_size=batch_size, index_type=index_type,
            incremental=incremental, embedding_backend=embedding_backend, **backend_options,
        )  # fmt: skip
    if backend_options:
        raise InputError(f"options {sorted(backend_options)} apply to the Milvus backend only, not a FAISS index")
    return build_faiss_index(
        paths, index_dir, model=model, progress=progress, batch_size=batch_size, index_type=index_type,
        incremental=incremental, embedding_backend=embedding_backend,
    )  # fmt: skip


def build_faiss_index(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    index_dir: str | os.PathLike[str] | None = DEFAULT_INDEX,
    *,
    model: str | Embedder = DEFAULT_MODEL,
    progress: bool = True,
    batch_size: int = 64,
    index_type: str | None = None,
    incremental: bool = True,
    embedding_backend: str | None = None,
) -> Index:
    """`build_index` for a FAISS index folder (or an in-memory index when ``index_dir`` is None)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    embedder = get_embedder(model, backend=embedding_backend)
    if index_dir is not None:
        integrity.check_target(Path(index_dir))
    # Under the writer lock from the "is there an index?" test to the commit: two writers creating
    # the same new index then run one after the other, and the second updates the first's index
    # (its report counting what it removed) instead of overwriting it unseen.
    with lock(Path(index_dir), reentrant=True) if index_dir is not None else contextlib.nullcontext():
        if index_dir is not None and incremental and (Path(index_dir) / MANIFEST).exists():
            try:
                # A model name (not an Embedder) and no backend: keep the backend the index was built with.
                existing = load_faiss_index(index_dir, model=model, embedding_backend=embedding_backend)
            except (IndexLoadError, ModelMismatchError) as exc:
                warnings.warn(f"rebuilding {index_dir} from scratch: {exc}", stacklevel=2)
            else:
                existing.update(paths, progress=progress, batch_size=batch_size, index_type=index_type)
                return existing
        passages = load_passages(paths, max_tokens=embedder.max_tokens, count_tokens=embedder.count_tokens)
        # Identical texts (the same wire paragraph in two articles) are embedded once.
        texts = list(dict.fromkeys(p.text for p in passages))
        spec = resolve_index_type(index_type, len(passages), embedder.dim)
        keep_sentences = keeps_sentences(spec)
        # One forward pass gives each passage's vector and its sentences' vectors.
        unique, blocks = embed_passages(
            embedder, texts, with_sentences=keep_sentences, batch_size=batch_size, progress=progress
        )
        row = {t: i for i, t in enumerate(texts)}
        vectors = unique[[row[p.text] for p in passages]]
        dim = int(unique.shape[1])
        sentences = SentenceVectors.embed(passages, embedder, dim, known=blocks) if keep_sentences else None
        index = Index(
            passages,
            vectors,
            embedder,
            manifest={"sources": [source_path(p) for p in paths]},
            index_type=index_type or "auto",
            lexical=build_lexical(passages),
            sentences=sentences,
        )
        index.last_update = report([], passages, len(texts))
        if index_dir is not None:
            index.save(index_dir)
        return index


def load_index(
    path: str | os.PathLike[str] = DEFAULT_INDEX,
    *,
    model: str | Embedder | None = None,
    backend: str | None = None,
    embedding_backend: str | None = None,
    **backend_options: Any,
) -> Store:
    """Open a saved index, verifying it first.

    Args:
        path: the index folder, or a Milvus target (``milvus://HOST:PORT/COLLECTION``, ``*.db``).
        model: the embedding model to use for queries; by default the one the
            index was built with. A model of another name or dimension is refused.
        backend: ``"faiss"`` or ``"milvus"``; None decides from ``path``.
        embedding_backend: how to run the model for queries; by default the backend that built
            the index. One of another precision (int8 against fp32) is refused.
        backend_options: for Milvus, ``consistency_level`` and ``collection``.

    Raises:
        IndexLoadError: the folder is missing, not a qa index, from another
            format version, or its files do not match their checksums.
        ModelMismatchError: ``model`` is not the model the index was built with.
    """
    if uses_milvus(path, backend):
        from qa.milvus import load_milvus_index

        return load_milvus_index(path, model=model, embedding_backend=embedding_backend, **backend_options)
    if backend_options:
        raise InputError(f"options {sorted(backend_options)} apply to the Milvus backend only, not a FAISS index")
    return load_faiss_index(path, model=model, embedding_backend=embedding_backend)


def load_faiss_index(
    path: str | os.PathLike[str] = DEFAULT_INDEX,
    *,
    model: str | Embedder | None = None,
    embedding_backend: str | None = None,
) -> Index:
    """`load_index` for a FAISS index folder."""
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"load_index takes an index folder or Milvus target, not {type(path).__name__}")
    folder = Path(path)

    def embedder_for(record: dict[str, Any]) -> Embedder:
        return embedder_for_index(record, model, embedding_backend, str(folder))

    manifest, state, embedder = open_folder(folder, embedder_for)
    index = Index.__new__(Index)
    FaissStore.__init__(index, [], np.zeros((0, state.dim), dtype=np.float32), embedder, path=folder, manifest=manifest)
    index._adopt(manifest, state)
    return index
