"""The `qa` index on Milvus: the same passages, search modes, ask and updates as a FAISS folder.

Install with ``pip install "qa[milvus]"``; pymilvus is imported only inside `qa.stores.milvus`.

Targets::

    milvus://HOST:PORT/COLLECTION        a Milvus server or cluster (gRPC, no TLS)
    milvus+https://HOST:PORT/COLLECTION  the same over TLS (hosted Milvus); token from $QA_MILVUS_TOKEN
    path/to/news.db                      Milvus Lite, in-process (collection ``qa_passages``)

`MilvusIndex` is `qa.api.IndexAPI` over `qa.stores.milvus.store.MilvusStore`: the collections are
described in `qa.stores.milvus.schema`. Every retrieval mode works where the server has sparse
vectors (Milvus ≥ 2.4 and Milvus Lite): BM25 weights live in a sparse-vector field and equal
bm25s's on the same passages, sentence vectors in a companion collection. On older servers
(the PyPI ``milvus`` 2.3 the tests start) ``dense`` is the default and only mode; ``bm25``,
``hybrid`` and ``rrf`` are refused in one line naming the version they need.

Also supported: filters (Milvus boolean expressions, applied before the top-k cut),
rerankers, `ask`, `update` (make the collection equal a set of paths, embedding only new
texts), `add` (add or replace the documents of some paths, touching nothing else),
`remove`, reopen. **Not supported:** FAISS index types and ``k_factor`` (Milvus types are
``hnsw``, ``ivf``, ``flat``; knobs ``ef_search``, ``nprobe``), changing the index type of an
existing collection (rebuild with ``incremental=False``). Writers are not serialised by `qa`
(Milvus orders writes per primary key; the last wins).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qa.api import IndexAPI
from qa.documents import load_passages
from qa.embedding import DEFAULT_MODEL, Embedder, embedder_for_index, get_embedder
from qa.errors import IndexLoadError, InputError, ModelMismatchError
from qa.paths import source_path
from qa.stores.milvus.filters import filter_expression, literal
from qa.stores.milvus.schema import (
    CACHE_SIZE,
    CONSISTENCY_ENV,
    CONSISTENCY_LEVELS,
    DEFAULT_CONSISTENCY,
    DEFAULT_INDEX_TYPE,
    FLUSH_MIN_ROWS,
    FORMAT,
    FORMAT_VERSION,
    INDEX_TYPES,
    MAX_TOP_K,
    MAX_VARCHAR,
    QUERY_BATCH,
    WRITE_BATCH,
    check_consistency,
    check_fields,
    create,
    drop,
    index_spec,
    read_manifest,
    sparse_supported,
)
from qa.stores.milvus.store import MilvusPassages, MilvusSelection, MilvusStore, new_manifest
from qa.stores.milvus.targets import (
    DEFAULT_COLLECTION,
    DEFAULT_PORT,
    META_SUFFIX,
    TOKEN_ENV,
    MilvusTarget,
    MilvusUnavailableError,
    connect,
    parse_target,
)

__all__ = [
    "CACHE_SIZE",
    "CONSISTENCY_ENV",
    "CONSISTENCY_LEVELS",
    "DEFAULT_COLLECTION",
    "DEFAULT_CONSISTENCY",
    "DEFAULT_INDEX_TYPE",
    "DEFAULT_PORT",
    "FLUSH_MIN_ROWS",
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_TYPES",
    "MAX_TOP_K",
    "MAX_VARCHAR",
    "META_SUFFIX",
    "QUERY_BATCH",
    "TOKEN_ENV",
    "WRITE_BATCH",
    "MilvusIndex",
    "MilvusPassages",
    "MilvusSelection",
    "MilvusTarget",
    "MilvusUnavailableError",
    "build_milvus_index",
    "filter_expression",
    "index_spec",
    "literal",
    "load_milvus_index",
    "parse_target",
]

#: Kept for callers of the old private name.
_drop = drop


class MilvusIndex(IndexAPI, MilvusStore):
    """Passages with their embeddings in Milvus; the same search, ask and updates as `qa.Index`.

    Build one with `build_milvus_index`, open one with `load_milvus_index`. Close it (or use
    ``with``) to release the connection; a Milvus Lite file can be open in one process at a time.
    """


def _open(
    client: Any,
    target: MilvusTarget,
    model: str | Embedder | None,
    consistency_level: str,
    embedding_backend: str | None = None,
) -> MilvusIndex:
    manifest = read_manifest(client, target)
    dim = int(manifest["model"]["dim"])
    embedder = embedder_for_index(manifest["model"], model, embedding_backend, target.name)
    if embedder.dim != dim:
        raise ModelMismatchError(
            f"model {embedder.name!r} makes {embedder.dim}-d vectors but {target.name} holds {dim}-d vectors"
        )
    check_fields(client, target, dim, bool(manifest.get("lexical")))
    client.load_collection(target.collection)
    client.load_collection(target.sentences_collection)
    return MilvusIndex(client, target, embedder, manifest, consistency_level=consistency_level)


def load_milvus_index(
    target: str | os.PathLike[str],
    *,
    model: str | Embedder | None = None,
    consistency_level: str | None = None,
    collection: str | None = None,
    embedding_backend: str | None = None,
) -> MilvusIndex:
    """Open a Milvus index, checking its manifest like `qa.load_index` checks a folder's.

    Args:
        target: ``milvus://HOST:PORT/COLLECTION``, ``milvus+https://…``, or a Milvus Lite ``*.db`` path.
        model: the embedding model for queries; by default the one the index was built with.
        consistency_level: ``Strong`` (searches see every acknowledged write, deletes included),
            ``Bounded`` (much faster on a server; may lag writes by seconds), ``Session`` or
            ``Eventually``; default $QA_MILVUS_CONSISTENCY, else ``Strong``.
        collection: the collection name, overriding the URL's (and naming one in a Lite file).
        embedding_backend: how to run the model for queries (see `qa.load_index`).

    Raises:
        MilvusUnavailableError: pymilvus is not installed or the server cannot be reached.
        IndexLoadError: no such collection, not a qa index, or another format version.
        ModelMismatchError: ``model`` is not the model the index was built with.
    """
    parsed = parse_target(target, collection)
    level = check_consistency(consistency_level)
    if parsed.lite and not Path(parsed.uri).exists():
        raise IndexLoadError(f"no index at {parsed.name}; build one with: qa index PATH... --index {parsed.name}")
    client = connect(parsed)
    try:
        return _open(client, parsed, model, level, embedding_backend)
    except BaseException:
        client.close()
        raise


def build_milvus_index(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    target: str | os.PathLike[str],
    *,
    model: str | Embedder = DEFAULT_MODEL,
    progress: bool = True,
    batch_size: int = 64,
    index_type: str | None = None,
    incremental: bool = True,
    consistency_level: str | None = None,
    collection: str | None = None,
    embedding_backend: str | None = None,
) -> MilvusIndex:
    """Load articles, embed their passages and store them in Milvus collections.

    Passages, ids, texts and attribution come from `qa.documents.load_passages`, exactly
    as for a FAISS index. When the collection already holds a qa index of the same model
    this is `MilvusIndex.update` (only new texts are embedded); one of another model or an
    older format is dropped and rebuilt, with a warning; a collection that is not a qa index
    is refused.

    Args:
        paths: files or folders of articles; they define the whole corpus.
        target: ``milvus://HOST:PORT/COLLECTION``, ``milvus+https://…``, or a Milvus Lite ``*.db`` path.
        model: a bundled model name, a local sentence-transformers folder, or an `Embedder`.
        progress: show a progress bar while embedding.
        batch_size: passages per embedding batch.
        index_type: ``hnsw`` (default), ``ivf`` (IVF_FLAT) or ``flat``; fixed when the collection is created.
        incremental: False drops an existing qa collection and re-embeds everything.
        consistency_level: see `load_milvus_index`.
        collection: see `load_milvus_index`.
        embedding_backend: how the model runs (see `qa.build_index`).

    Raises:
        InputError: a path is missing or holds no text, or the collection is not a qa index.
        MilvusUnavailableError: pymilvus is not installed or the server cannot be reached.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    parsed = parse_target(target, collection)
    level = check_consistency(consistency_level)
    spec = index_spec(index_type)
    embedder = get_embedder(model, backend=embedding_backend)
    client = connect(parsed)
    try:
        if client.has_collection(parsed.collection):
            if not client.has_collection(parsed.meta_collection):
                raise InputError(
                    f"collection {parsed.collection!r} at {parsed.name} exists and is not a qa index; choose "
                    "another collection name or drop it first"
                )
            try:
                existing = _open(client, parsed, model, level, embedding_backend)
            except (IndexLoadError, ModelMismatchError) as exc:
                warnings.warn(f"rebuilding {parsed.name} from scratch: {exc}", stacklevel=2)
                drop(client, parsed)
            else:
                if incremental:
                    existing.update(paths, progress=progress, batch_size=batch_size)
                    return existing
                drop(client, parsed)
        passages = load_passages(paths, max_tokens=embedder.max_tokens, count_tokens=embedder.count_tokens)
        dim = int(embedder.dim)
        lexical = sparse_supported(client)
        manifest = new_manifest(embedder, dim, spec, [], lexical)
        create(client, parsed, dim, spec, level, lexical is None)
        index = MilvusIndex(client, parsed, embedder, manifest, consistency_level=level)
        with index.writing():
            # The manifest goes last: a build that dies before it leaves collections load refuses.
            index._sync([], passages, [source_path(p) for p in paths], None, progress, batch_size, {})
        if len(passages) >= FLUSH_MIN_ROWS:
            index.flush()
        return index
    except BaseException:
        client.close()
        raise
