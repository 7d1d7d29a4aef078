"""The index: passages, their vectors in FAISS, BM25, and the folder that holds them.

The only module that imports faiss (lazily). On disk an index is a folder::

    indexes/default/
        manifest.json            # written last; names the generation below, with checksums
        gen-<id>/vectors.faiss   # the FAISS search structure (ids = faiss_id(passage_id))
        gen-<id>/vectors.npy     # exact float32 vectors, for approximate index types only
        gen-<id>/passages.jsonl  # one passage (text + source) per line, in row order
        gen-<id>/bm25/...        # the BM25 index over the same rows (qa.lexical)

**A living index.** `build_index` on a folder that already holds an index of the
same model, and `Index.update`, bring the index to exactly the state a fresh
build of the given paths would have — same passages in the same order, same ids,
same vectors — while embedding only passage texts the index has never seen
(vectors are reused by content). Passage ids hash (doc id, occurrence, text), so
an id a user holds stays valid until that passage's text changes or its document
goes away. `Index.remove` drops documents by id or path.

**Duplicates.** The same paragraph in two articles (wire copy run by two
publishers) stays two passages, each with its own id and source, so filters by
publisher or date and attribution stay exact; its text is embedded once.

**Index types.** ``flat`` (exact) up to `AUTO_FLAT_MAX` passages, then
`AUTO_LARGE_TYPE`; or ``hnsw``, ``ivf-sq8``, ``ivf-pq``, or any FAISS factory
string. Approximate types keep the exact vectors beside the search structure
(``vectors.npy``, memory-mapped on load) to rerank candidates, to answer
small filtered searches exactly, and to rebuild. See benchmarks/scale.py.
Updates patch IVF indexes (remove + add to the trained lists) and retrain them
from the stored vectors once the corpus has grown or shrunk `RETRAIN_FACTOR`-fold;
HNSW graphs take additions, but FAISS cannot delete from them, so an update
that removes or changes passages rebuilds the graph; flat indexes are simply
re-copied in row order. Only flat indexes are bit-for-bit a fresh build; the
approximate ones hold the same rows, ids and vectors, and may rank differently.

**Filters** (`qa.filters.Filters`) become allowed rows (`Index.select_rows`) before
the top-k cut: few rows are searched exactly with numpy, many with a FAISS
``IDSelectorBatch``; queries an approximate index answers short are redone exactly.

**Crash safety.** Every save writes a complete new ``gen-*`` folder, fsyncs it,
then atomically replaces ``manifest.json`` (the commit point), then deletes the
old generation. A crash at any moment leaves the old or the new manifest, each
naming complete, checksummed files. Writers are serialised by a lock file beside
the folder (``.<name>.lock``; a second writer waits up to $QA_LOCK_TIMEOUT seconds,
default 600, then fails with `IndexLockedError`); readers take no lock and retry if
a writer removed the generation they were about to read. An update whose result
equals the current state writes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import math
import os
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa import __version__, integrity
from qa.documents import Passage, Source, load_passages
from qa.embedding import DEFAULT_MODEL, Embedder, env_threads, get_embedder
from qa.errors import IndexLoadError, InputError, ModelMismatchError, QAError
from qa.filters import Filters, as_filters
from qa.retrieval import Hit, search
from qa.store import Store, uses_milvus

if TYPE_CHECKING:
    from qa.answering import Answer
    from qa.lexical import BM25

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
#: What the BM25 index was built from; an index whose manifest names another recipe rebuilds it.
LEXICAL_RECIPE = "title. text"
DEFAULT_INDEX = "indexes/default"
#: FAISS threads for a search (default: 1 for up to 4 queries, else every core).
SEARCH_THREADS_ENV = "QA_SEARCH_THREADS"

INDEX_TYPES = ("auto", "flat", "hnsw", "ivf-sq8", "ivf-pq")
#: ``index_type="auto"`` stays exact up to this many passages. Measured in benchmarks/scale.py on a
#: busy 2-core machine: exact search costs ~0.4-0.75 ms per 1k passages per query on one core
#: (18 ms at 50k, 750 ms at 1M), so up to 100k it costs no more than embedding the query itself.
AUTO_FLAT_MAX = 100_000
#: ...and above it uses this type: IVF lists of 8-bit scalar codes (1/4 of flat's memory) whose
#: candidates are reranked with the exact vectors; recall@10 against exact ≥ 0.97, ~1 ms/query.
AUTO_LARGE_TYPE = "ivf-sq8"
#: A filtered search whose allowed rows are at most this many (and any search of a flat index
#: this small) is answered by exact numpy search over just those rows: exact, and faster than
#: a FAISS scan with a selector.
EXACT_FILTER_MAX = 20_000
#: Approximate types that rerank fetch at least this many candidates (cheap: one dot product each).
RERANK_MIN = 100
#: IVF indexes are retrained (from the stored exact vectors) when the corpus grows or shrinks
#: by this factor since training; in between, new vectors are added to the trained lists.
RETRAIN_FACTOR = 4.0

LOCK_TIMEOUT_ENV = "QA_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 600.0
# Test hook: seconds to sleep between the steps of a write, so a test can kill a writer mid-way.
SLOW_WRITE_ENV = "QA_TEST_SLOW_WRITE"


class IndexLockedError(QAError):
    """Another process is writing the index and did not finish within the lock timeout."""


def _faiss() -> Any:
    # FAISS's OpenMP threads spin while idle by default; on a shared machine with fewer cores
    # than busy threads, that turns a 1 ms search into 50-100 ms. Passive waiting costs little.
    # (Read once, when FAISS's OpenMP starts; set OMP_WAIT_POLICY yourself to override.)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import faiss

    return faiss


@contextlib.contextmanager
def _faiss_threads(faiss: Any, queries: int) -> Iterator[None]:
    # benchmarks/compare.py threads: one query over 1M flat vectors took 62 ms on one thread and
    # 155 ms on two (2 cores): OpenMP start-up and contention outweigh the split for one query.
    # Many queries at once split well, so batches use every core.
    wanted = env_threads(SEARCH_THREADS_ENV, 1 if queries <= 4 else os.cpu_count() or 1)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(wanted)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def faiss_id(passage_id: str) -> int:
    """FAISS ids are int64: the passage id's 64 hash bits, less the sign bit."""
    return int(passage_id, 16) >> 1


@dataclass(frozen=True)
class UpdateReport:
    """What an update changed. Document counts, plus how many passage texts were embedded.

    Attributes:
        added: documents new to the index.
        updated: documents whose passages or metadata changed.
        removed: documents no longer in the index.
        unchanged: documents left exactly as they were.
        embedded: passage texts sent to the embedding model (0 when nothing changed).
        passages: passages in the index afterwards.
    """

    added: int
    updated: int
    removed: int
    unchanged: int
    embedded: int
    passages: int

    def __str__(self) -> str:
        return (
            f"{self.added} added, {self.updated} updated, {self.removed} removed, {self.unchanged} unchanged "
            f"documents; {self.embedded} passages embedded; {self.passages} passages in the index"
        )


@dataclass(frozen=True)
class SentenceVectors:
    """The vectors of every sentence of the multi-sentence passages, passage by passage.

    Row ``r``'s sentences are ``vectors[offsets[r]:offsets[r + 1]]``, in text order; a
    one-sentence passage has none stored (its passage vector is its sentence's vector).
    float16: it halves the memory of the biggest array in the index, and the best-sentence
    signal is a ranking feature, for which 3 significant digits are plenty.
    """

    offsets: np.ndarray
    vectors: np.ndarray

    def block(self, row: int) -> np.ndarray:
        return np.asarray(self.vectors[self.offsets[row] : self.offsets[row + 1]])

    @classmethod
    def embed(
        cls,
        passages: Sequence[Passage],
        embedder: Embedder,
        dim: int,
        *,
        known: Mapping[str, np.ndarray] | None = None,
        progress: bool = False,
        batch_size: int = 64,
    ) -> SentenceVectors:
        """Embed the sentences of ``passages``; ``known`` maps passage text → its sentence block to reuse.

        The model is touched only when some sentence is new (so removing documents needs no model).
        """
        from qa.documents import split_sentences

        known = known or {}
        blocks: list[np.ndarray | list[str]] = []
        for p in passages:
            reused = known.get(p.text)
            if reused is not None:
                blocks.append(reused)
                continue
            spans = split_sentences(p.text)
            blocks.append([p.text[a:b] for a, b in spans] if len(spans) > 1 else [])
        fresh = list(dict.fromkeys(t for b in blocks if isinstance(b, list) for t in b))
        encoded = embedder.encode(fresh, batch_size=batch_size, progress=progress) if fresh else np.zeros((0, dim))
        at = {t: i for i, t in enumerate(fresh)}
        parts = [
            encoded[[at[t] for t in b]].reshape(-1, dim) if isinstance(b, list) else b.reshape(-1, dim) for b in blocks
        ]
        offsets = np.zeros(len(passages) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(x) for x in parts])
        vectors = np.concatenate(parts).astype(np.float16) if parts else np.zeros((0, dim), dtype=np.float16)
        return cls(offsets, vectors)

    def by_text(self, passages: Sequence[Passage]) -> dict[str, np.ndarray]:
        """Passage text → its sentence block, for reuse by `embed` after an update."""
        return {p.text: self.block(row) for row, p in enumerate(passages)}


# ---------------------------------------------------------------------------
# Index types


def resolve_index_type(index_type: str | None, count: int, dim: int) -> dict[str, Any]:
    """The FAISS recipe for ``index_type`` at ``count`` passages of ``dim`` dimensions.

    Args:
        index_type: ``auto``, ``flat``, ``hnsw``, ``ivf-sq8``, ``ivf-pq``, or a FAISS
            factory string such as ``"IVF256,PQ32x8"`` or ``"HNSW16,Flat"``.
        count: number of passages to index.
        dim: vector dimension.

    Returns:
        ``{"requested", "type", "factory", "params"}``, recorded in the manifest.

    Raises:
        InputError: an unknown name or a factory string FAISS rejects.
    """
    requested = (index_type or "auto").strip()
    name = requested.lower()
    if name == "auto":
        name = "flat" if count <= AUTO_FLAT_MAX else AUTO_LARGE_TYPE
    if name == "flat":
        return {"requested": requested, "type": "flat", "factory": "IDMap2,Flat", "params": {}}
    if name == "hnsw":
        hnsw = {"M": 32, "ef_construction": 40, "ef_search": 128}
        return {"requested": requested, "type": "hnsw", "factory": "IDMap2,HNSW32,Flat", "params": hnsw}
    if name in ("ivf-sq8", "ivf-pq"):
        # ~sqrt(n) lists (a power of two), with at least 39 training points per list as FAISS asks.
        nlist = 2 ** max(0, round(math.log2(math.sqrt(max(count, 1)))))
        nlist = max(1, min(nlist, count // 39))
        # Small indexes probe every list (exact but for the codes); large ones ~3% of lists, at least 16.
        nprobe = min(nlist, max(16, nlist // 32))
        if name == "ivf-sq8":
            factory, k_factor = f"IVF{nlist},SQ8", 2
        else:
            # dim/4 sub-quantizers of 8 bits (96 bytes for 384-d); fewer bits when there is too
            # little data to train 256 centroids per sub-quantizer. "np": no polysemous training,
            # which costs minutes and serves only Hamming pre-filtering, which qa does not use.
            # PQ codes only shortlist: the best k * 50 are reranked with the exact vectors
            # (benchmarks/scale.py: at 1M, 100 candidates gave recall@10 0.79, 500 gave 0.94 with 48 bytes).
            m = _largest_divisor_at_most(dim, max(1, dim // 4))
            nbits = max(1, min(8, int(math.log2(max(count, 2) / 39)) if count >= 78 else 1))
            factory, k_factor = f"IVF{nlist},PQ{m}x{nbits}np", 50
        ivf_params = {"nlist": nlist, "nprobe": nprobe, "k_factor": k_factor}
        return {"requested": requested, "type": name, "factory": factory, "params": ivf_params}
    faiss = _faiss()
    try:
        probe = faiss.index_factory(dim, requested, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise InputError(
            f"unknown index type {requested!r}; use one of {', '.join(INDEX_TYPES)} or a FAISS factory string "
            "such as 'IVF1024,SQ8' or 'HNSW32,Flat'"
        ) from exc
    params: dict[str, Any] = {}
    if faiss.try_extract_index_ivf(probe) is not None:
        params = {"nprobe": 16, "k_factor": 4}
    elif _hnsw_of(probe) is not None:
        params = {"ef_search": 128}
    return {"requested": requested, "type": "factory", "factory": requested, "params": params}


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, limit + 1) if n % d == 0)


def _hnsw_of(index: Any) -> Any:
    faiss = _faiss()
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap):
        index = faiss.downcast_index(index.index)
    return index if isinstance(index, faiss.IndexHNSW) else None


def build_ann(vectors: np.ndarray, ids: np.ndarray, spec: dict[str, Any]) -> Any:
    """A FAISS index of ``spec`` (from `resolve_index_type`) holding ``vectors`` under ``ids``.

    IVF types are trained on (a sample of) ``vectors``; the spec's params gain ``trained_on``.
    """
    faiss = _faiss()
    dim = int(vectors.shape[1])
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    kind = spec["type"]
    if kind == "flat":
        base = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        base = faiss.IndexHNSWFlat(dim, spec["params"]["M"], faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = spec["params"]["ef_construction"]
    else:
        base = faiss.index_factory(dim, spec["factory"], faiss.METRIC_INNER_PRODUCT)
    if not base.is_trained:
        ivf = faiss.try_extract_index_ivf(base)
        # k-means quality saturates near 64 points per list; a fixed-seed sample keeps builds reproducible.
        cap = max(10_000, 64 * (ivf.nlist if ivf is not None else 1))
        sample = vectors
        if len(vectors) > cap:
            sample = vectors[np.sort(np.random.default_rng(0).choice(len(vectors), cap, replace=False))]
        try:
            base.train(sample)
        except RuntimeError as exc:  # FAISS: fewer training points than clusters, and the like
            reason = str(exc).rsplit("failed: ", 1)[-1].strip()
            raise InputError(
                f"index type {spec['requested']!r} cannot be trained on {len(vectors)} passages ({reason}); "
                "use --index-type flat or auto, or a factory string with fewer lists"
            ) from None
        spec["params"]["trained_on"] = len(vectors)
    try:
        if kind in ("flat", "hnsw"):
            raise RuntimeError("wrap in IDMap2")
        base.add_with_ids(vectors, ids)
        return base
    except RuntimeError:
        # Flat and HNSW keep no ids of their own: IDMap2 maps FAISS ids to rows and can reconstruct.
        index = faiss.IndexIDMap2(base)
        index.add_with_ids(vectors, ids)
        return index


def _search_params(index: Any, *, selector: Any = None, ef_search: int | None, nprobe: int | None) -> Any:
    faiss = _faiss()
    if faiss.try_extract_index_ivf(index) is not None:
        params = faiss.SearchParametersIVF()
        if nprobe:
            params.nprobe = int(nprobe)
    elif _hnsw_of(index) is not None:
        params = faiss.SearchParametersHNSW()
        if ef_search:
            params.efSearch = int(ef_search)
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    return params


# ---------------------------------------------------------------------------
# The index


class Index:
    """Passages with their embeddings; search and ask over them.

    Build one with `qa.build_index`, open a saved one with `qa.load_index`, keep it in
    step with changing files with `update` and `remove`.
    """

    def __init__(
        self,
        passages: Sequence[Passage],
        vectors: np.ndarray,
        embedder: Embedder,
        *,
        path: str | os.PathLike[str] | None = None,
        manifest: dict[str, Any] | None = None,
        index_type: str | None = "flat",
        lexical: BM25 | None = None,
        sentences: SentenceVectors | None = None,
    ) -> None:
        """Hold ``passages`` and their ``vectors`` (row i is passage i) in an index of ``index_type``.

        Without ``sentences`` (see `SentenceVectors.embed`) hybrid search scores each passage's
        best sentence by the passage vector.

        Raises:
            ValueError: the counts differ, or two passages share an id.
        """
        if len(passages) != len(vectors):
            raise ValueError(f"{len(passages)} passages but {len(vectors)} vectors")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = int(vectors.shape[1]) if vectors.ndim == 2 else int(embedder.dim)
        spec = resolve_index_type(index_type, len(passages), dim)
        self.embedder = embedder
        self.path = Path(path) if path is not None else None
        self.manifest: dict[str, Any] = manifest or {}
        self.last_update: UpdateReport | None = None
        self._knobs: dict[str, Any] = {}
        ids = _ids_of(passages)
        ann = _ann_or_none(vectors, ids, spec)
        self._set_state(list(passages), vectors, ids, ann, spec, lexical, dim, sentences)

    def _set_state(
        self,
        passages: list[Passage],
        vectors: np.ndarray,
        ids: np.ndarray,
        ann: Any,
        spec: dict[str, Any],
        lexical: BM25 | None,
        dim: int,
        sentences: SentenceVectors | None,
    ) -> None:
        """Replace the whole state at once, so a failed update leaves the previous state untouched."""
        if sentences is not None and len(sentences.offsets) != len(passages) + 1:
            raise ValueError(f"sentence vectors for {len(sentences.offsets) - 1} passages, not {len(passages)}")
        order = np.argsort(ids, kind="stable")
        if len(ids) and np.any(ids[order][1:] == ids[order][:-1]):
            raise ValueError("duplicate passage ids; every passage needs a distinct id")
        self.passages: list[Passage] = passages
        self._dim = dim
        self._ids = ids
        self._id_order = order
        self._ids_sorted = ids[order]
        self._faiss = ann
        self._spec = spec
        self._lexical = lexical
        self._sentences = sentences
        self._groups: dict[tuple[str, ...], list[int]] | None = None
        if ann is not None and spec["type"] == "flat":
            # Flat FAISS already holds the vectors in row order: view them instead of keeping a copy.
            sub = _faiss().downcast_index(ann.index)
            self._vectors = _faiss().rev_swig_ptr(sub.get_xb(), len(ids) * dim).reshape(len(ids), dim)
        else:
            self._vectors = vectors

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model_name(self) -> str:
        return str(self.manifest.get("model", {}).get("name") or self.embedder.name)

    @property
    def index_type(self) -> dict[str, Any]:
        """How the vectors are indexed: ``{"requested", "type", "factory", "params"}`` (a copy)."""
        return json.loads(json.dumps(self._spec))

    def __len__(self) -> int:
        return len(self.passages)

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"<qa.Index {len(self)} passages ({self._spec['type']}), model {self.model_name!r}{where}>"

    # -- Vectors -----------------------------------------------------------

    @property
    def vectors(self) -> np.ndarray:
        """All passage vectors, in passage order (a copy)."""
        return np.array(self._vectors, dtype=np.float32).reshape(len(self), self._dim)

    @property
    def ids(self) -> np.ndarray:
        """The FAISS id (`faiss_id` of the passage id) of every row (a copy)."""
        return self._ids.copy()

    def row_of(self, passage_id: str) -> int | None:
        """The row of the passage with this id, or None if the index does not hold it."""
        rows = self._rows_of_passages([passage_id])
        return int(rows[0]) if rows[0] >= 0 else None

    def _rows_of_ids(self, ids: np.ndarray) -> np.ndarray:
        """Rows of FAISS ids (-1 for -1 or unknown ids); vectorised, no per-id dict."""
        if not len(self._ids):
            return np.full(ids.shape, -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self._ids_sorted, ids), 0, len(self._ids) - 1)
        found = (self._ids_sorted[pos] == ids) & (ids >= 0)
        return np.where(found, self._id_order[pos], -1).astype(np.int64)

    def passage_vectors(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of ``rows`` (a float32 copy of shape ``(len(rows), dim)``)."""
        return np.asarray(self._vectors[np.asarray(rows, dtype=np.int64)], dtype=np.float32).reshape(-1, self._dim)

    def _rows_of_passages(self, passage_ids: Sequence[str]) -> np.ndarray:
        return self._rows_of_ids(np.array([faiss_id(p) for p in passage_ids], dtype=np.int64))

    def vectors_of(self, passage_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of these passages, ``(len(passage_ids), dim)`` float32.

        Raises:
            KeyError: a passage id the index does not hold.
        """
        rows = self._rows_of_passages(passage_ids)
        if (rows < 0).any():
            raise KeyError(f"passage {passage_ids[int(np.argmax(rows < 0))]} is not in this index")
        return self.passage_vectors(rows)

    def sentence_vectors_of(self, passage_ids: Sequence[str]) -> list[np.ndarray | None]:
        """Each passage's sentence vectors, ``(n_sentences, dim)`` float32 in `split_sentences` order.

        None for a multi-sentence passage of an index that keeps no sentence vectors.
        """
        rows = self._rows_of_passages(passage_ids)
        out: list[np.ndarray | None] = []
        for row in rows.tolist():
            block = self._sentences.block(row) if self._sentences is not None and row >= 0 else None
            if block is not None and len(block):
                out.append(block.astype(np.float32))
            elif block is not None:  # one sentence: its vector is the passage's
                out.append(self.passage_vectors(np.array([row])))
            else:
                out.append(None)
        return out

    def best_sentence_scores(self, vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """For each row, the best cosine between ``vector`` and one sentence of that passage.

        A one-sentence passage, or any passage of an index without sentence vectors
        (approximate types; see `build_faiss_index`), scores its passage vector.

        Args:
            vector: one ``(dim,)`` query vector.
            rows: passage rows.

        Returns:
            float32 array of shape ``(len(rows),)``.
        """
        rows = np.asarray(rows, dtype=np.int64)
        out = self.passage_vectors(rows) @ np.asarray(vector, dtype=np.float32)
        if self._sentences is None or not len(rows):
            return out.astype(np.float32)
        starts, stops = self._sentences.offsets[rows], self._sentences.offsets[rows + 1]
        has = np.flatnonzero(stops > starts)
        if len(has):
            counts = stops[has] - starts[has]
            # One gather + one matrix product for all candidates' sentences, then a max per passage.
            take = np.repeat(starts[has] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
            sims = np.asarray(self._sentences.vectors[take], dtype=np.float32) @ vector
            out[has] = np.maximum.reduceat(sims, np.cumsum(counts) - counts)
        return out.astype(np.float32)

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        vectors = self.embedder.encode(list(queries), progress=False)
        if vectors.shape[1] != self._dim:
            raise ModelMismatchError(
                f"model {self.embedder.name!r} makes {vectors.shape[1]}-d vectors but this index holds "
                f"{self._dim}-d vectors from {self.model_name!r}; load it with that model or rebuild the index"
            )
        return vectors

    # -- Filters -----------------------------------------------------------

    def select_rows(self, filters: Filters | Mapping[str, Any] | None) -> np.ndarray | None:
        """The rows a filtered search may return.

        Args:
            filters: a `Filters`, or a mapping of its fields; None or empty allows every row.

        Returns:
            Sorted int64 row numbers, or None when every row is allowed.
        """
        filters = as_filters(filters)
        if filters is None or filters.empty:
            return None
        if self._groups is None:
            # Passages of one article share their source fields: test each distinct source once.
            groups: dict[tuple[str, ...], list[int]] = {}
            for row, p in enumerate(self.passages):
                s = p.source
                groups.setdefault((s.doc_id, s.publisher, s.section, s.path, s.date), []).append(row)
            self._groups = groups
        allowed: list[int] = []
        for rows in self._groups.values():
            if filters.matches(self.passages[rows[0]].source):
                allowed.extend(rows)
        return np.array(sorted(allowed), dtype=np.int64)

    # -- Dense search ------------------------------------------------------

    def set_search_knobs(
        self, *, ef_search: int | None = None, nprobe: int | None = None, k_factor: int | None = None
    ) -> None:
        """Default search-time knobs for this index object (None keeps the recorded default).

        Args:
            ef_search: HNSW candidate list size; higher is slower and more exact.
            nprobe: IVF lists visited per query; higher is slower and more exact.
            k_factor: approximate types fetch ``k * k_factor`` candidates and rerank them
                with the exact vectors; 1 turns reranking off.
        """
        for name, value in (("ef_search", ef_search), ("nprobe", nprobe), ("k_factor", k_factor)):
            if value is not None:
                if value < 1:
                    raise InputError(f"{name} must be a positive integer, got {value}")
                self._knobs[name] = int(value)

    def dense_search(
        self,
        vectors: np.ndarray,
        k: int,
        rows: np.ndarray | None = None,
        *,
        ef_search: int | None = None,
        nprobe: int | None = None,
        k_factor: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Inner-product search of query ``vectors`` among the allowed ``rows``.

        Args:
            vectors: ``(n, dim)`` float32 query vectors.
            k: results wanted per query.
            rows: allowed rows (from `select_rows`); None allows all.
            ef_search, nprobe, k_factor: search knobs of approximate types (see `set_search_knobs`).

        Returns:
            ``(scores, rows)`` of shape ``(n, max(1, min(k, allowed)))``, best first; rows are -1
            (score -inf) only where fewer than that many rows are allowed. Whenever ``k`` allowed
            rows exist, every query gets ``k`` results: queries the approximate index answers
            short (a selective filter, a small nprobe) are answered again exactly.
        """
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        allowed = len(self) if rows is None else len(rows)
        width = max(1, min(k, allowed))
        if allowed == 0:
            return _empty(len(queries), width)
        small = allowed <= EXACT_FILTER_MAX and (rows is not None or self._spec["type"] == "flat")
        if small or self._faiss is None:
            # numpy over few rows: exact, and free of FAISS's OpenMP start-up cost (which, on a
            # busy machine, is far larger than the search itself).
            return self._exact(queries, width, rows)
        knob = {**self._spec.get("params", {}), **self._knobs}
        ef_search, nprobe = ef_search or knob.get("ef_search"), nprobe or knob.get("nprobe")
        factor = max(1, int(k_factor or knob.get("k_factor") or 1))
        faiss = _faiss()
        selector = None if rows is None else faiss.IDSelectorBatch(self._ids[rows])
        params = _search_params(self._faiss, selector=selector, ef_search=ef_search, nprobe=nprobe)
        fetch = min(allowed, max(width * factor, RERANK_MIN) if factor > 1 else width)
        with _faiss_threads(faiss, len(queries)):
            found_scores, found = self._faiss.search(queries, fetch, params=params)
        if factor > 1:
            # Rerank with exact vectors: exact scores, and the candidates' best `width` in exact order.
            scores, out = _rerank(queries, self._vectors, self._rows_of_ids(found), width)
        else:
            scores, out = found_scores[:, :width].astype(np.float32), self._rows_of_ids(found[:, :width])
            scores[out < 0] = -np.inf
        short = np.flatnonzero((out >= 0).sum(axis=1) < width)
        if len(short):
            s, r = self._exact(queries[short], width, rows)
            scores[short], out[short] = s, r
        return scores, out

    def _exact(self, queries: np.ndarray, width: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over ``rows`` (or all rows): always exact, ties broken by lower row."""
        base = self._vectors if rows is None else self._vectors[rows]
        allowed = np.arange(len(self)) if rows is None else rows
        scores = np.empty((len(queries), width), dtype=np.float32)
        out = np.empty((len(queries), width), dtype=np.int64)
        # Blocks of queries keep the (queries × rows) score matrix small.
        base_t = np.asarray(base, dtype=np.float32).T
        step = max(1, 4_000_000 // max(1, len(allowed)))
        for start in range(0, len(queries), step):
            block = queries[start : start + step] @ base_t
            for i, line in enumerate(block):
                top = _top(line, width)
                scores[start + i], out[start + i] = line[top], allowed[top]
        return scores, out

    # -- Lexical search ----------------------------------------------------

    @property
    def lexical(self) -> BM25 | None:
        """The BM25 index over the passage texts (built on first use for indexes saved without one)."""
        if self._lexical is None and self.passages:
            self._lexical = _build_lexical(self.passages)
        return self._lexical

    def lexical_search(
        self, queries: Sequence[str], k: int, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """BM25 search among the allowed ``rows``.

        Returns:
            ``(scores, rows)`` of shape ``(len(queries), max(1, min(k, allowed)))``, best first,
            ties broken by lower row; -1 rows (score -inf) only when no row is allowed.
        """
        from qa.lexical import top_k

        allowed = len(self) if rows is None else len(rows)
        width = max(1, min(k, allowed))
        bm25 = self.lexical
        if allowed == 0 or bm25 is None:
            return _empty(len(queries), width)
        if rows is None:
            found, scores = bm25.search(list(queries), width)
            return scores.astype(np.float32), found.astype(np.int64)
        scores = np.empty((len(queries), width), dtype=np.float32)
        out = np.empty((len(queries), width), dtype=np.int64)
        for i, query in enumerate(queries):
            top, values = top_k(bm25.scores(query)[rows], width)
            scores[i], out[i] = values, rows[top]
        return scores, out

    # -- Queries -----------------------------------------------------------

    def search(
        self, query: str, k: int = 5, *, mode: str | None = None, filters: Filters | None = None, **options: Any
    ) -> list[Hit]:
        """The ``k`` passages that best match ``query``, best first.

        Args:
            query: the query text.
            k: hits wanted.
            mode: retrieval mode (see `qa.retrieval.MODES`).
            filters: only passages whose source matches; applied before the top-k cut, so
                ``k`` hits come back whenever ``k`` passages match.
            options: passed to `qa.retrieval.search` (a reranker; the search knobs
                ``ef_search``, ``nprobe``, ``k_factor`` of approximate index types).

        Raises:
            InputError: the query is empty or ``k`` is not a positive integer.
        """
        if not isinstance(query, str):
            raise InputError("search takes one query string; use search_batch() for a list")
        return search(self, [query], k, mode=mode, **_filter_kwargs(filters), **options)[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 5,
        *,
        mode: str | None = None,
        filters: Filters | None = None,
        **options: Any,
    ) -> list[list[Hit]]:
        """`search` for many queries at once (embedded in one batch)."""
        return search(self, queries, k, mode=mode, **_filter_kwargs(filters), **options)

    def ask(
        self, question: str, *, k: int = 5, mode: str | None = None, filters: Filters | None = None, **options: Any
    ) -> Answer:
        """Answer ``question`` from the passages, with evidence and confidence.

        ``Answer.text`` is None when the corpus holds no good enough answer. ``filters``
        and ``options`` are as for `search`.
        """
        from qa.answering import answer

        return answer(self, question, k=k, mode=mode, **_filter_kwargs(filters), **options)

    # -- Updates -----------------------------------------------------------

    def update(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        *,
        progress: bool = False,
        batch_size: int = 64,
        index_type: str | None = None,
    ) -> UpdateReport:
        """Bring the index to exactly what a fresh build of ``paths`` would give, embedding only new texts.

        Documents whose files are gone are removed; changed ones get their new passages;
        passages whose text the index already holds reuse its vector. A saved index is
        written as a new generation (see the module docstring), under the writer lock.

        Args:
            paths: the files and folders that make up the corpus now; by default the ones
                the index was built from.
            progress: show a progress bar while embedding.
            batch_size: passages per embedding batch.
            index_type: change the index type (vectors are reused); None keeps the current one.

        Returns:
            What changed.

        Raises:
            InputError: a path is missing or holds no readable text.
            IndexLockedError: another writer held the lock past the timeout.
        """
        if paths is None:
            paths = list(self.manifest.get("sources") or [])
            if not paths:
                raise InputError("this index does not record its source paths; pass the paths to update from")
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        sources = [str(p) for p in paths]
        with self._writing():
            passages = load_passages(
                paths, max_tokens=self.embedder.max_tokens, count_tokens=self.embedder.count_tokens
            )
            return self._apply(passages, sources, progress, batch_size, index_type)

    def remove(self, targets: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> UpdateReport:
        """Remove documents by doc id, file path, or folder path (everything under it).

        A later `update` from the same paths adds the documents back if their files still exist.

        Returns:
            What changed (``removed`` counts documents).

        Raises:
            InputError: no document matches a target (the message lists what was given).
        """
        if isinstance(targets, (str, os.PathLike)):
            targets = [targets]
        wanted = [str(t) for t in targets]
        with self._writing():
            keep, missing = [], set(wanted)
            for p in self.passages:
                hit = next((t for t in wanted if _names_document(t, p.source)), None)
                if hit is None:
                    keep.append(p)
                else:
                    missing.discard(hit)
            if missing:
                raise InputError(
                    f"no document in the index matches {', '.join(sorted(missing))}; give a doc id, "
                    "a file path or a folder as the index shows them (qa search --json prints both)"
                )
            return self._apply(keep, list(self.manifest.get("sources") or []), False, 64, None)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the writer lock; first catch up with any generation another writer committed."""
        if self.path is None:
            yield
            return
        with _lock(self.path):
            manifest_path = self.path / MANIFEST
            if manifest_path.exists():
                on_disk = _read_json(manifest_path).get("generation")
                if on_disk != self.manifest.get("generation"):
                    self._adopt(load_faiss_index(self.path, model=self.embedder))
            yield

    def _adopt(self, other: Index) -> None:
        self.manifest = other.manifest
        self._set_state(
            other.passages,
            other._vectors,
            other._ids,
            other._faiss,
            other._spec,
            other._lexical,
            other._dim,
            other._sentences,
        )

    def _apply(
        self,
        passages: list[Passage],
        sources: list[str],
        progress: bool,
        batch_size: int,
        index_type: str | None,
    ) -> UpdateReport:
        """Compute the new state, write it (if saved), then switch to it."""
        old_rows = {text: row for row, text in enumerate(p.text for p in self.passages)}
        fresh = [t for t in dict.fromkeys(p.text for p in passages) if t not in old_rows]
        embedded = self.embedder.encode(fresh, batch_size=batch_size, progress=progress) if fresh else None
        vectors = np.empty((len(passages), self._dim), dtype=np.float32)
        source_rows = np.array([old_rows.get(p.text, -1) for p in passages], dtype=np.int64)
        reused = source_rows >= 0
        if reused.any():
            vectors[reused] = self._vectors[source_rows[reused]]
        if embedded is not None:
            if embedded.shape[1] != self._dim:
                raise ModelMismatchError(
                    f"model {self.embedder.name!r} makes {embedded.shape[1]}-d vectors but this index holds "
                    f"{self._dim}-d vectors; rebuild the index with the new model"
                )
            new_row = {t: i for i, t in enumerate(fresh)}
            where = np.flatnonzero(~reused)
            vectors[where] = embedded[[new_row[passages[i].text] for i in where]]
        ids = _ids_of(passages)
        requested = index_type or self._spec.get("requested", "flat")
        spec = resolve_index_type(requested, len(passages), self._dim)
        trained_on = self._spec.get("params", {}).get("trained_on")
        patch = (
            self._faiss is not None
            and spec["type"] != "flat"  # flat is copied in row order: identical to a fresh build, and cheap
            and requested == self._spec.get("requested")
            and spec["type"] == self._spec["type"]
            and (not trained_on or trained_on / RETRAIN_FACTOR <= len(passages) <= trained_on * RETRAIN_FACTOR)
        )
        if patch:
            # Keep the trained recipe (nlist, codes) rather than re-deriving it from the new count.
            spec = json.loads(json.dumps(self._spec))
        unchanged = passages == self.passages and spec == self._spec and sources == self.manifest.get("sources")
        if unchanged and (self.path is None or self._lexical is not None):
            # Nothing changed: keep the current generation, write nothing.
            self.last_update = _report(self.passages, passages, len(fresh))
            return self.last_update
        ann = self._next_ann(vectors, ids, spec, patch)
        same_texts = len(passages) == len(self.passages) and all(
            a.text == b.text for a, b in zip(passages, self.passages, strict=True)
        )
        same_lexical = same_texts and all(
            _lexical_text(a) == _lexical_text(b) for a, b in zip(passages, self.passages, strict=True)
        )
        lexical = self._lexical if same_lexical else (_build_lexical(passages) if passages else None)
        if not _keeps_sentences(spec):
            sentences = None
        elif same_texts and self._sentences is not None:
            sentences = self._sentences
        else:
            known = self._sentences.by_text(self.passages) if self._sentences is not None else None
            sentences = SentenceVectors.embed(passages, self.embedder, self._dim, known=known, batch_size=batch_size)
        report = _report(self.passages, passages, len(fresh))
        new_state = (passages, vectors, ids, ann, spec, lexical, self._dim, sentences)
        if self.path is not None:
            _pause()
            self.manifest = self._write_state(self.path, sources, *new_state)
        else:
            self.manifest = {**self.manifest, "sources": sources}
        self._set_state(*new_state)
        self.last_update = report
        return report

    def _next_ann(self, vectors: np.ndarray, ids: np.ndarray, spec: dict[str, Any], patch: bool) -> Any:
        """The FAISS structure for the new rows: the old one patched (IVF; HNSW adds only), or rebuilt."""
        if not len(ids):
            return None
        if patch:
            removed = np.setdiff1d(self._ids, ids, assume_unique=True)
            added = ~np.isin(ids, self._ids, assume_unique=True)
            faiss = _faiss()
            try:
                patched = faiss.clone_index(self._faiss)  # the live index stays intact if writing fails
                if len(removed):
                    patched.remove_ids(faiss.IDSelectorBatch(removed))
                if added.any():
                    patched.add_with_ids(np.ascontiguousarray(vectors[added]), ids[added])
                return patched
            except RuntimeError:
                # HNSW cannot remove vectors (FAISS raises): rebuild the graph from the exact vectors.
                pass
        return build_ann(vectors, ids, spec)

    # -- Disk --------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to the folder ``path`` (created, or replaced atomically).

        Raises:
            InputError: ``path`` is a non-empty folder that is not a qa index.
            IndexLockedError: another writer held the lock past the timeout.
        """
        folder = Path(path)
        integrity.check_target(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        sources = list(self.manifest.get("sources") or [])
        state = (
            sources,
            self.passages,
            self._vectors,
            self._ids,
            self._faiss,
            self._spec,
            self.lexical,
            self._dim,
            self._sentences,
        )
        with _lock(folder):
            if not integrity.may_replace(folder, MANIFEST):
                raise InputError(
                    f"{folder} exists and is not a qa index (no {MANIFEST} file); choose another --index folder "
                    "or remove it first"
                )
            for stale in folder.parent.glob(f".{folder.name}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)  # left by a writer that was killed
            if not folder.exists() or not any(folder.iterdir()):
                staging = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
                try:
                    staging.mkdir()
                    manifest = self._write_state(staging, *state)
                    if folder.exists():
                        folder.rmdir()
                    integrity.expect_commit(folder / MANIFEST, manifest["generation"])
                    os.rename(staging, folder)  # the commit point of a new index
                except BaseException as exc:
                    shutil.rmtree(staging, ignore_errors=True)
                    integrity.raise_if_disk_full(exc, folder)
                    raise
                _fsync_dir(folder.parent)
            else:
                manifest = self._write_state(folder, *state)
        self.manifest = manifest
        self.path = folder
        return folder

    def _write_state(
        self,
        folder: Path,
        sources: list[str],
        passages: list[Passage],
        vectors: np.ndarray,
        ids: np.ndarray,
        ann: Any,
        spec: dict[str, Any],
        lexical: BM25 | None,
        dim: int,
        sentences: SentenceVectors | None,
    ) -> dict[str, Any]:
        """Write one complete generation into ``folder`` and commit it; return the new manifest."""
        generation = f"gen-{_dt.datetime.now(_dt.UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        gen_dir = folder / generation
        temp = folder / f".{MANIFEST}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            gen_dir.mkdir()
            faiss = _faiss()
            names: list[str] = []
            if ann is not None:
                faiss.write_index(ann, str(gen_dir / VECTORS))
                names.append(VECTORS)
            _pause()
            if spec["type"] != "flat" and len(passages):
                np.save(gen_dir / EXACT_VECTORS, np.ascontiguousarray(vectors, dtype=np.float32))
                names.append(EXACT_VECTORS)
            with open(gen_dir / PASSAGES, "w", encoding="utf-8") as out:
                for p in passages:
                    out.write(json.dumps(asdict(p), ensure_ascii=False) + "\n")
            names.append(PASSAGES)
            if sentences is not None:
                np.save(gen_dir / SENTENCE_OFFSETS, sentences.offsets.astype(np.int64), allow_pickle=False)
                np.save(gen_dir / SENTENCE_VECTORS, np.asarray(sentences.vectors, np.float16), allow_pickle=False)
                names += [SENTENCE_OFFSETS, SENTENCE_VECTORS]
            _pause()
            if lexical is not None:
                (gen_dir / LEXICAL_DIR).mkdir()
                names.extend(f"{LEXICAL_DIR}/{name}" for name in lexical.save(gen_dir / LEXICAL_DIR))
            files = {}
            for name in names:
                file = gen_dir / name
                _fsync_file(file)
                files[f"{generation}/{name}"] = {"sha256": _sha256(file), "bytes": file.stat().st_size}
            if lexical is not None:
                _fsync_dir(gen_dir / LEXICAL_DIR)
            _fsync_dir(gen_dir)
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "qa_version": __version__,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "model": {"name": self.embedder.name, "dim": dim},
                "count": len(passages),
                "index_type": spec["factory"],
                "ann": spec,
                "lexical": LEXICAL_RECIPE if lexical is not None else None,
                "metric": "inner_product",
                "generation": generation,
                "files": files,
                "sources": sources,
            }
            _pause()
            temp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            _fsync_file(temp)
            integrity.expect_commit(folder / MANIFEST, generation)
            os.replace(temp, folder / MANIFEST)  # the commit point
            _fsync_dir(folder)
        except BaseException as exc:
            committed = False
            with contextlib.suppress(OSError, ValueError, QAError):
                committed = _read_json(folder / MANIFEST).get("generation") == generation
            if not committed:
                integrity.remove_strays(folder, [generation, temp.name])
                integrity.raise_if_disk_full(exc, folder)
            raise
        _pause()
        for stale in folder.iterdir():
            if stale.name.startswith("gen-") and stale.name != generation:
                shutil.rmtree(stale, ignore_errors=True)
            elif stale.name.startswith(f".{MANIFEST}.tmp-"):
                stale.unlink(missing_ok=True)
        return manifest


# ---------------------------------------------------------------------------
# Helpers


def _filter_kwargs(filters: Filters | None) -> dict[str, Any]:
    # Only pass filters on when given, so retrieval/answering without the parameter keep working.
    return {} if filters is None else {"filters": filters}


def _ids_of(passages: Sequence[Passage]) -> np.ndarray:
    return np.fromiter((faiss_id(p.passage_id) for p in passages), dtype=np.int64, count=len(passages))


def _ann_or_none(vectors: np.ndarray, ids: np.ndarray, spec: dict[str, Any]) -> Any:
    return build_ann(vectors, ids, spec) if len(ids) else None


def _keeps_sentences(spec: dict[str, Any]) -> bool:
    # Sentence vectors hold ~4x as many vectors as the passages: worth it for exact indexes (at
    # most AUTO_FLAT_MAX passages unless asked), too much memory for the approximate ones.
    return spec["type"] == "flat"


def _lexical_text(passage: Passage) -> str:
    # A paragraph rarely repeats its article's subject; the title puts it back for BM25
    # (a poor man's BM25F). Measured in scripts/retrieval_experiments.py.
    title = passage.source.title.strip()
    return f"{title}. {passage.text}" if title else passage.text


def _build_lexical(passages: Sequence[Passage]) -> BM25:
    from qa.lexical import BM25

    return BM25.build([_lexical_text(p) for p in passages])


def _empty(n: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, width), -np.inf, dtype=np.float32), np.full((n, width), -1, dtype=np.int64)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest scores, best first, ties broken by lower position."""
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
        cut = scores[part].min()
        above = np.flatnonzero(scores > cut)
        part = np.concatenate([above, np.flatnonzero(scores == cut)[: k - len(above)]])
    else:
        part = np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]


def _rerank(queries: np.ndarray, vectors: np.ndarray, cand: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores of candidate rows (-1 = none); the best ``width`` per query, ties by lower row."""
    scores = np.full((len(queries), width), -np.inf, dtype=np.float32)
    out = np.full((len(queries), width), -1, dtype=np.int64)
    for i, line in enumerate(cand):
        rows = np.unique(line[line >= 0])  # sorted, so ties go to the lower row
        if not len(rows):
            continue
        exact = np.asarray(vectors[rows], dtype=np.float32) @ queries[i]
        top = _top(exact, min(width, len(rows)))
        scores[i, : len(top)], out[i, : len(top)] = exact[top], rows[top]
    return scores, out


def _names_document(target: str, source: Source) -> bool:
    if target == source.doc_id:
        return True
    given = Path(target).resolve()
    path = Path(source.path).resolve()
    return path == given or given in path.parents


def _report(old: Sequence[Passage], new: Sequence[Passage], embedded: int) -> UpdateReport:
    def documents(passages: Sequence[Passage]) -> dict[str, list[tuple[str, Source]]]:
        docs: dict[str, list[tuple[str, Source]]] = {}
        for p in passages:
            docs.setdefault(p.source.doc_id, []).append((p.passage_id, p.source))
        return docs

    before, after = documents(old), documents(new)
    common = before.keys() & after.keys()
    changed = sum(1 for d in common if before[d] != after[d])
    return UpdateReport(
        added=len(after.keys() - before.keys()),
        updated=changed,
        removed=len(before.keys() - after.keys()),
        unchanged=len(common) - changed,
        embedded=embedded,
        passages=len(new),
    )


def _pause() -> None:
    delay = os.environ.get(SLOW_WRITE_ENV)
    if delay:
        time.sleep(float(delay))


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
    return integrity.read_json_object(path)


_held: dict[tuple[str, int], int] = {}


@contextlib.contextmanager
def _lock(folder: Path, timeout: float | None = None, *, reentrant: bool = False) -> Iterator[None]:
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


# ---------------------------------------------------------------------------
# Public entry points


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
            incremental=incremental, **backend_options,
        )  # fmt: skip
    if backend_options:
        raise InputError(f"options {sorted(backend_options)} apply to the Milvus backend only, not a FAISS index")
    return build_faiss_index(
        paths, index_dir, model=model, progress=progress, batch_size=batch_size, index_type=index_type,
        incremental=incremental,
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
) -> Index:
    """`build_index` for a FAISS index folder (or an in-memory index when ``index_dir`` is None)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    embedder = get_embedder(model)
    if index_dir is not None:
        integrity.check_target(Path(index_dir))
    # Under the writer lock from the "is there an index?" test to the commit: two writers creating
    # the same new index then run one after the other, and the second updates the first's index
    # (its report counting what it removed) instead of overwriting it unseen.
    with _lock(Path(index_dir), reentrant=True) if index_dir is not None else contextlib.nullcontext():
        if index_dir is not None and incremental and (Path(index_dir) / MANIFEST).exists():
            try:
                existing = load_faiss_index(index_dir, model=embedder)
            except (IndexLoadError, ModelMismatchError) as exc:
                warnings.warn(f"rebuilding {index_dir} from scratch: {exc}", stacklevel=2)
            else:
                existing.update(paths, progress=progress, batch_size=batch_size, index_type=index_type)
                return existing
        passages = load_passages(paths, max_tokens=embedder.max_tokens, count_tokens=embedder.count_tokens)
        # Identical texts (the same wire paragraph in two articles) are embedded once.
        texts = list(dict.fromkeys(p.text for p in passages))
        unique = embedder.encode(texts, batch_size=batch_size, progress=progress)
        row = {t: i for i, t in enumerate(texts)}
        vectors = unique[[row[p.text] for p in passages]]
        dim = int(unique.shape[1])
        spec = resolve_index_type(index_type, len(passages), dim)
        keep = _keeps_sentences(spec)
        sentences = SentenceVectors.embed(passages, embedder, dim, progress=progress) if keep else None
        index = Index(
            passages,
            vectors,
            embedder,
            manifest={"sources": [str(p) for p in paths]},
            index_type=index_type or "auto",
            lexical=_build_lexical(passages),
            sentences=sentences,
        )
        index.last_update = _report([], passages, len(texts))
        if index_dir is not None:
            index.save(index_dir)
        return index


def load_index(
    path: str | os.PathLike[str] = DEFAULT_INDEX,
    *,
    model: str | Embedder | None = None,
    backend: str | None = None,
    **backend_options: Any,
) -> Store:
    """Open a saved index, verifying it first.

    Args:
        path: the index folder, or a Milvus target (``milvus://HOST:PORT/COLLECTION``, ``*.db``).
        model: the embedding model to use for queries; by default the one the
            index was built with. A model of another name or dimension is refused.
        backend: ``"faiss"`` or ``"milvus"``; None decides from ``path``.
        backend_options: for Milvus, ``consistency_level`` and ``collection``.

    Raises:
        IndexLoadError: the folder is missing, not a qa index, from another
            format version, or its files do not match their checksums.
        ModelMismatchError: ``model`` is not the model the index was built with.
    """
    if uses_milvus(path, backend):
        from qa.milvus import load_milvus_index

        return load_milvus_index(path, model=model, **backend_options)
    if backend_options:
        raise InputError(f"options {sorted(backend_options)} apply to the Milvus backend only, not a FAISS index")
    return load_faiss_index(path, model=model)


def load_faiss_index(path: str | os.PathLike[str] = DEFAULT_INDEX, *, model: str | Embedder | None = None) -> Index:
    """`load_index` for a FAISS index folder."""
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"load_index takes an index folder or Milvus target, not {type(path).__name__}")
    folder = Path(path)
    rebuild = f"rebuild it with: qa index PATH... --index {folder}"
    if not folder.is_dir():
        integrity.check_target(folder)
        raise IndexLoadError(f"no index at {folder}; build one with: qa index PATH... --index {folder}")
    attempts = 5
    for attempt in range(attempts):
        try:
            manifest = _read_json(folder / MANIFEST)
        except FileNotFoundError as exc:
            raise IndexLoadError(f"{folder} is not a qa index (no {MANIFEST}); {rebuild}") from exc
        except (ValueError, UnicodeDecodeError, IndexLoadError) as exc:
            raise IndexLoadError(f"{folder / MANIFEST} is corrupted ({exc}); {rebuild}") from exc
        try:
            return _load(folder, manifest, model, rebuild)
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


def _generation_replaced(folder: Path, manifest: dict[str, Any]) -> bool:
    try:
        return _read_json(folder / MANIFEST).get("generation") != manifest.get("generation")
    except (OSError, ValueError, IndexLoadError):
        return False


def _load(folder: Path, manifest: dict[str, Any], model: str | Embedder | None, rebuild: str) -> Index:
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
    name, dim, count, generation = checked.model, checked.dim, checked.count, checked.generation
    files, spec, kind = checked.files, checked.ann, checked.ann["type"]
    for relative, expected in files.items():
        file = folder / relative
        if not (folder / generation).exists():
            raise FileNotFoundError(folder / generation)  # a writer may have replaced it: the caller retries
        size = integrity.regular_file(folder, relative, rebuild).st_size
        if size != expected["bytes"] or _sha256(file) != expected["sha256"]:
            raise IndexLoadError(f"{file} does not match its checksum in {MANIFEST}: the index is corrupted; {rebuild}")
    embedder = get_embedder(model if model is not None else name)
    if embedder.name != name:
        raise ModelMismatchError(
            f"{folder} was built with model {name!r}, not {embedder.name!r}; load it without a model "
            f"(or with {name!r}), or rebuild the index with the new model"
        )
    if model is not None and not isinstance(model, str) and embedder.dim != dim:
        raise ModelMismatchError(f"model {embedder.name!r} makes {embedder.dim}-d vectors but {folder} holds {dim}-d")
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
    ids = _ids_of(passages)
    faiss = _faiss()
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
    index = Index.__new__(Index)
    index.embedder = embedder
    index.path = folder
    index.manifest = manifest
    index.last_update = None
    index._knobs = {}
    index._set_state(passages, vectors, ids, ann, spec, lexical, dim, sentences)
    return index


def _files_read(files: Mapping[str, Any], generation: str) -> list[str]:
    """The files of ``generation`` that `_load` opens, given what the manifest lists."""
    from qa.lexical import ARRAYS_FILE, META_FILE

    names = [PASSAGES]
    if f"{generation}/{SENTENCE_OFFSETS}" in files:
        names.append(SENTENCE_VECTORS)
    if any(key.startswith(f"{generation}/{LEXICAL_DIR}/") for key in files):
        names += [f"{LEXICAL_DIR}/{ARRAYS_FILE}", f"{LEXICAL_DIR}/{META_FILE}"]
    return names


def _flat_vectors(ann: Any, ids: np.ndarray, dim: int, folder: Path, rebuild: str) -> tuple[np.ndarray, bool]:
    """Checks an IDMap2 index holds exactly the passages' ids; returns (vectors in row order, stored in row order).

    When the FAISS order is the row order the vectors are not copied out (the index is viewed instead).
    """
    empty = np.zeros((0, dim), dtype=np.float32)
    if ann is None:
        return empty, True
    faiss = _faiss()
    stored_ids = faiss.vector_to_array(faiss.downcast_index(ann).id_map).astype(np.int64)
    if np.array_equal(stored_ids, ids):
        return empty, True
    if set(stored_ids.tolist()) != set(ids.tolist()):
        raise IndexLoadError(f"{folder}: FAISS ids do not match the passages (rows and metadata drifted); {rebuild}")
    return np.vstack([ann.reconstruct(int(i)) for i in ids]).astype(np.float32), False
