"""A Milvus collection as a store: dense and BM25 search, sentence vectors, rows by passage key.

The only module (with `qa.stores.milvus.schema` and `targets`) that talks to pymilvus.
Rows are the passages' int64 keys (`qa.updates.passage_key`), not positions; ``passage_at(row)``
reads a passage from a cache filled by the searches themselves, or by key.

**BM25 on Milvus.** Each passage's BM25 weights over ``"title. text"`` live in a sparse-vector
field; a query is the sparse vector of its term counts, so the inner product is the BM25 score.
The weights are exactly those of `qa.lexical.BM25` (bm25s, Lucene's formula) over the same
passages: `commit` rebuilds them from the collection's texts whenever the passages changed,
since every weight depends on the corpus's document frequencies and average length, and keeps
the lexicon (term ids and document frequencies) in the meta collection. That makes a commit
O(collection) for BM25, like the FAISS folder's. Candidates are rescored from their stored
weights in the order `qa.lexical.BM25.scores` adds them, so scores are bit-for-bit bm25s's.
Servers without sparse vectors (Milvus < 2.4) keep dense search and refuse the lexical modes.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from qa._version import __version__
from qa.documents import Passage
from qa.embedding import Embedder, model_record
from qa.errors import InputError
from qa.filters import Filters
from qa.lexical import LEXICAL_RECIPE
from qa.stores.base import iter_batches
from qa.stores.milvus.filters import document_expression, filter_expression, in_list
from qa.stores.milvus.lexical import MilvusLexical
from qa.stores.milvus.schema import (
    _SCALARS,
    _VECTOR,
    CACHE_SIZE,
    DEFAULT_CONSISTENCY,
    FORMAT,
    FORMAT_VERSION,
    MAX_TOP_K,
    QUERY_BATCH,
    TIE_MARGIN,
    WRITE_BATCH,
    check_consistency,
    to_passage,
)
from qa.stores.milvus.targets import MilvusTarget
from qa.stores.milvus.writer import MilvusWriter
from qa.updates import passage_key


@dataclass(frozen=True)
class MilvusSelection:
    """What `MilvusIndex.select_rows` returns: the filter as a Milvus expression, for `dense_search`.

    ``len()`` is the number of passages the filter allows (one count query, made on first use).
    """

    expression: str
    counter: Callable[[str], int] = dataclasses.field(repr=False, compare=False)

    @functools.cached_property
    def _count(self) -> int:
        return self.counter(self.expression)

    def __len__(self) -> int:
        return self._count


class MilvusPassages(Sequence[Passage]):
    """``passages[row]`` for the rows (primary keys) `MilvusIndex.dense_search` returns.

    Iterating walks the whole collection in primary-key order (not file order); ``len``
    is the passage count. Positions and slices are not supported: rows are keys.
    """

    def __init__(self, index: MilvusStore) -> None:
        self._index = index

    @overload
    def __getitem__(self, row: int) -> Passage: ...
    @overload
    def __getitem__(self, row: slice) -> Sequence[Passage]: ...
    def __getitem__(self, row: int | slice) -> Passage | Sequence[Passage]:
        if isinstance(row, slice):
            raise TypeError("Milvus rows are primary keys, not positions; iterate instead of slicing")
        return self._index._passage_of(int(row))

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[Passage]:
        for entity in self._index._scan(_SCALARS):
            yield to_passage(entity)


class _DropMvccWarning(logging.Filter):
    # Servers before 2.4 do not return an iterator timestamp; pymilvus then uses the client's
    # clock (correct for Strong reads) but warns on every scan.
    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to get mvccTs" not in record.getMessage()


def _quiet_iterator_warning() -> None:
    logger = logging.getLogger("pymilvus.client.iterator.query_iterator")
    if not any(isinstance(f, _DropMvccWarning) for f in logger.filters):
        logger.addFilter(_DropMvccWarning())


class MilvusStore(MilvusLexical, MilvusWriter):
    """Passages with their embeddings (and BM25 weights, sentence vectors) in Milvus; the Milvus half of `MilvusIndex`.

    Build one with `build_milvus_index`, open one with `load_milvus_index`. Close it (or use
    ``with``) to release the connection; a Milvus Lite file can be open in one process at a time.
    """

    def __init__(
        self,
        client: Any,
        target: MilvusTarget,
        embedder: Embedder,
        manifest: dict[str, Any],
        *,
        consistency_level: str = DEFAULT_CONSISTENCY,
    ) -> None:
        """Wrap an open client and a checked manifest (use `build_milvus_index`/`load_milvus_index`)."""
        self._client = client
        self.target = target
        self.embedder = embedder
        self.manifest = manifest
        self.consistency_level = check_consistency(consistency_level)
        self._cache: OrderedDict[int, Passage] = OrderedDict()
        self._knobs: dict[str, int] = {}
        self._terms: tuple[dict[str, int], np.ndarray, int] | None = None
        self._changed = False

    # -- Description -------------------------------------------------------

    @property
    def dim(self) -> int:
        return int(self.manifest["model"]["dim"])

    @property
    def model_name(self) -> str:
        return str(self.manifest["model"]["name"])

    @property
    def index_type(self) -> dict[str, Any]:
        """How the vectors are indexed in Milvus: ``{"type", "params", "search_params"}`` (a copy)."""
        return json.loads(json.dumps(self.manifest["ann"]))

    @property
    def passages(self) -> MilvusPassages:
        """The passage of a row from `dense_search` is ``passages[row]``; iterating walks the collection."""
        return MilvusPassages(self)

    def __len__(self) -> int:
        return self._count_where("")

    def _count_where(self, expression: str) -> int:
        result = self._client.query(
            self.target.collection,
            filter=expression,
            output_fields=["count(*)"],
            consistency_level=self.consistency_level,
        )
        return int(result[0]["count(*)"])

    def __repr__(self) -> str:
        return f"<qa.MilvusIndex {self.target.name} ({self.manifest['ann']['type']}), model {self.model_name!r}>"

    def describe(self) -> dict[str, Any]:
        """The manifest plus where the index lives and how many passages it holds now."""
        return {
            **json.loads(json.dumps(self.manifest)),
            "backend": "milvus-lite" if self.target.lite else "milvus",
            "target": self.target.name,
            "collection": self.target.collection,
            "consistency_level": self.consistency_level,
            "count": len(self),
        }

    def close(self) -> None:
        """Release the connection (and, for Milvus Lite, the file)."""
        self._client.close()

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- Search ------------------------------------------------------------

    def select_rows(self, filters: Filters | Mapping[str, Any] | None) -> MilvusSelection | None:
        """The passages ``filters`` allow, as a Milvus expression for `dense_search` (None: all)."""
        expression = filter_expression(filters)
        return MilvusSelection(expression, self._count_where) if expression else None

    def set_search_knobs(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Default search-time knobs: HNSW ``ef_search`` and IVF ``nprobe`` (higher: slower, more exact)."""
        for name, value in (("ef_search", ef_search), ("nprobe", nprobe)):
            if value is not None:
                if value < 1:
                    raise InputError(f"{name} must be a positive integer, got {value}")
                self._knobs[name] = int(value)

    def dense_search(
        self,
        vectors: np.ndarray,
        k: int,
        rows: MilvusSelection | None = None,
        *,
        ef_search: int | None = None,
        nprobe: int | None = None,
        k_factor: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Inner-product search of query ``vectors`` among the passages ``rows`` selects.

        Args:
            vectors: ``(n, dim)`` float32 query vectors.
            k: results wanted per query (at most `MAX_TOP_K`).
            rows: a selection from `select_rows`; None allows every passage.
            ef_search, nprobe: search knobs (see `set_search_knobs`).
            k_factor: accepted for the FAISS signature and ignored: Milvus returns exact scores of its
                candidates, so there is nothing to rerank.

        Returns:
            ``(scores, rows)`` of shape ``(n, max(1, min(k, MAX_TOP_K)))``, best first; rows are primary keys
            (look them up in `passages`), -1 with score -inf where fewer passages match.
        """
        if isinstance(k, bool) or not isinstance(k, int):
            raise InputError(f"k must be a positive integer, got {k!r}")
        if rows is not None and not isinstance(rows, MilvusSelection):
            raise InputError("rows must come from MilvusIndex.select_rows (Milvus rows are not positions)")
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        # Like qa.index: at least one column, so an empty store or k=0 gives one padded column.
        width = max(1, min(k, MAX_TOP_K))
        scores = np.full((len(queries), width), -np.inf, dtype=np.float32)
        out = np.full((len(queries), width), -1, dtype=np.int64)
        if k < 1:
            return scores, out
        fetch = min(width + TIE_MARGIN, MAX_TOP_K)
        params = self._search_params(fetch, ef_search, nprobe)
        expression = rows.expression if rows is not None else ""
        for start in range(0, len(queries), QUERY_BATCH):
            block = queries[start : start + QUERY_BATCH]
            results = self._client.search(
                self.target.collection,
                data=block.tolist(),
                filter=expression,
                limit=fetch,
                output_fields=_SCALARS,
                search_params=params,
                anns_field=_VECTOR,
                consistency_level=self.consistency_level,
            )
            for i, hits in enumerate(results):
                found = np.array([float(h["distance"]) for h in hits], dtype=np.float32)
                keys = np.array([int(h["id"]) for h in hits], dtype=np.int64)
                top = np.lexsort((keys, -found))[:width]  # equal scores: lower key first, as on every store
                scores[start + i, : len(top)], out[start + i, : len(top)] = found[top], keys[top]
                for hit in hits:
                    self._remember(int(hit["id"]), to_passage(hit["entity"]))
        return scores, out

    def _search_params(self, k: int, ef_search: int | None, nprobe: int | None) -> dict[str, Any]:
        spec = self.manifest["ann"]
        params = dict(spec.get("search_params", {}))
        if spec["type"] == "hnsw":
            params["ef"] = max(k, ef_search or self._knobs.get("ef_search") or params.get("ef", 0))
        elif spec["type"] == "ivf":
            params["nprobe"] = nprobe or self._knobs.get("nprobe") or params.get("nprobe", 16)
        return {"metric_type": "IP", "params": params}

    # -- Passages by key ---------------------------------------------------

    def _remember(self, key: int, passage: Passage) -> None:
        self._cache[key] = passage
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def _passage_of(self, key: int) -> Passage:
        passage = self._cache.get(key)
        if passage is None:
            found = self._client.get(
                self.target.collection, ids=[key], output_fields=_SCALARS, consistency_level=self.consistency_level
            )
            if not found:
                raise IndexError(f"no passage with key {key} in {self.target.name}")
            passage = to_passage(found[0])
            self._remember(key, passage)
        return passage

    def get(self, passage_id: str) -> Passage | None:
        """The passage with this id, or None."""
        try:
            return self._passage_of(passage_key(passage_id))
        except IndexError:
            return None

    def _scan(self, fields: Sequence[str], expression: str = "") -> Iterator[dict[str, Any]]:
        """Every row matching ``expression`` (all rows by default), in pages."""
        return self._scan_collection(self.target.collection, fields, expression)

    # -- What this store can do --------------------------------------------

    @property
    def lexical_unavailable(self) -> str | None:
        if self.manifest.get("lexical"):
            return None
        return str(self.manifest.get("lexical_unavailable") or "this index keeps no BM25 weights; rebuild it")

    @property
    def keeps_sentences(self) -> bool:
        return True

    def count(self, rows: Any = None) -> int:
        return len(self) if rows is None else len(rows)

    # -- Get by key --------------------------------------------------------

    def passage_at(self, row: int) -> Passage:
        return self._passage_of(int(row))

    def held(self, doc_ids: Sequence[str] | None = None) -> list[Passage]:
        if doc_ids is None:
            return [to_passage(e) for e in self._scan(_SCALARS)]
        out: list[Passage] = []
        for batch in iter_batches(list(doc_ids), WRITE_BATCH):
            out.extend(to_passage(e) for e in self._scan(_SCALARS, in_list("doc_id", list(batch))))
        return out

    def find_documents(self, targets: Sequence[str]) -> list[Passage]:
        """The passages that may belong to documents ``targets`` names (`qa.updates.names_document` decides)."""
        return [to_passage(e) for e in self._scan(_SCALARS, document_expression(targets))]

    def vectors_by_key(self, keys: Sequence[int]) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for batch in iter_batches(list(keys), WRITE_BATCH):
            found = self._client.get(
                self.target.collection,
                ids=list(batch),
                output_fields=[_VECTOR],
                consistency_level=self.consistency_level,
            )
            for entity in found:
                out[int(entity["id"])] = np.asarray(entity[_VECTOR], dtype=np.float32)
        return out

    def passage_vectors(self, rows: np.ndarray) -> np.ndarray:
        keys = [int(r) for r in np.asarray(rows).tolist()]
        found = self.vectors_by_key(keys)
        return np.array([found[k] for k in keys], dtype=np.float32).reshape(len(keys), self.dim)

    def sentence_blocks(self, keys: Sequence[int]) -> dict[int, np.ndarray]:
        """Sentence vectors of the keys held; an empty block for a one-sentence passage."""
        keys = list(dict.fromkeys(int(k) for k in keys))
        parts: dict[int, list[tuple[int, list[float]]]] = {k: [] for k in keys}
        held: set[int] = set()
        for batch in iter_batches(keys, WRITE_BATCH):
            ids = [int(k) for k in batch]
            held.update(int(e["id"]) for e in self._client.query(
                self.target.collection, filter=f"id in {ids}", output_fields=["id"],
                consistency_level=self.consistency_level,
            ))  # fmt: skip
            for e in self._scan_collection(
                self.target.sentences_collection, ["passage", "position", _VECTOR], f"passage in {ids}"
            ):
                parts[int(e["passage"])].append((int(e["position"]), e[_VECTOR]))
        out: dict[int, np.ndarray] = {}
        for key in keys:
            if key not in held:
                continue
            rows = [vector for _, vector in sorted(parts[key], key=lambda item: item[0])]
            out[key] = np.asarray(rows, dtype=np.float32).reshape(len(rows), self.dim)
        return out

    def best_sentence_scores(self, vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Each row's best sentence cosine with ``vector``; its passage cosine for one-sentence passages."""
        rows = np.asarray(rows, dtype=np.int64)
        vector = np.asarray(vector, dtype=np.float32)
        out = self.passage_vectors(rows) @ vector
        blocks = self.sentence_blocks(rows.tolist())
        for i, key in enumerate(rows.tolist()):
            block = blocks.get(key)
            if block is not None and len(block):
                out[i] = float(np.max(block @ vector))
        return out.astype(np.float32)

    def _scan_collection(self, collection: str, fields: Sequence[str], expression: str) -> Iterator[dict[str, Any]]:
        _quiet_iterator_warning()
        iterator = self._client.query_iterator(
            collection,
            batch_size=WRITE_BATCH,
            filter=expression,
            output_fields=list(fields),
            consistency_level=self.consistency_level,
        )
        try:
            while True:
                page = iterator.next()
                if not page:
                    return
                yield from page
        finally:
            iterator.close()

    def flush(self) -> None:
        """Seal what was written so Milvus builds its index on it now (done after large builds)."""
        self._client.flush(self.target.collection)


def new_manifest(
    embedder: Embedder, dim: int, spec: dict[str, Any], sources: list[str], lexical: str | None
) -> dict[str, Any]:
    """The manifest of a new, empty index (``lexical``: why BM25 is unavailable, or None)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "qa_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model": model_record(embedder, dim),
        "ann": spec,
        "metric": "inner_product",
        "lexical": None if lexical else {"recipe": LEXICAL_RECIPE, "docs": 0, "chunks": 0},
        "lexical_unavailable": lexical,
        "sources": sources,
    }
