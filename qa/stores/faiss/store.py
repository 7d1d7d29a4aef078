"""The FAISS index folder as a store: passages, their vectors in FAISS, BM25 and sentence vectors.

Rows are positions in corpus order. `commit` writes one new generation folder
(`qa.stores.faiss.generations`), with the rows in the order of a fresh build, so an updated
flat index is bit-for-bit the index a fresh build gives. Updates patch IVF indexes (remove +
add to the trained lists) and retrain them from the stored vectors once the corpus has grown
or shrunk `RETRAIN_FACTOR`-fold; HNSW graphs take additions, but FAISS cannot delete from
them, so a commit that removes or changes passages rebuilds the graph; flat indexes are
simply re-copied in row order.

**Filters** (`qa.filters.Filters`) become allowed rows (`select_rows`) before the top-k cut:
few rows are searched exactly with numpy, many with a FAISS ``IDSelectorBatch``; queries an
approximate index answers short are redone exactly.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.documents import Passage
from qa.embedding import Embedder
from qa.errors import InputError
from qa.filters import Filters
from qa.lexical import build_lexical, lexical_text
from qa.stores.faiss import ann as _ann
from qa.stores.faiss.ann import (
    RERANK_MIN,
    RETRAIN_FACTOR,
    build_ann,
    empty_result,
    faiss_threads,
    load_faiss,
    rerank_exact,
    resolve_index_type,
    search_params,
    top_positions,
)
from qa.stores.faiss.generations import MANIFEST, State, ids_of, lock, pause, read_folder, read_json, save_folder
from qa.stores.faiss.generations import write_generation as _write_generation
from qa.stores.sentences import SentenceVectors
from qa.updates import passage_key

if TYPE_CHECKING:
    from qa.lexical import BM25


class FaissStore:
    """Passages with their embeddings in FAISS, BM25 beside them; the FAISS half of `qa.index.Index`."""

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
        self._knobs: dict[str, Any] = {}
        self._staged: dict[int, tuple[Passage, np.ndarray, np.ndarray | None]] = {}
        self._deleted: set[int] = set()
        ids = ids_of(passages)
        ann = (build_ann(vectors, ids, spec) if len(ids) else None)
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
            sub = load_faiss().downcast_index(ann.index)
            self._vectors = load_faiss().rev_swig_ptr(sub.get_xb(), len(ids) * dim).reshape(len(ids), dim)
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
        """The FAISS id (`qa.updates.passage_key` of the passage id) of every row (a copy)."""
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
        return self._rows_of_ids(np.array([passage_key(p) for p in passage_ids], dtype=np.int64))

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

    # -- Filters -----------------------------------------------------------

    def select_rows(self, filters: Filters | Mapping[str, Any] | None) -> np.ndarray | None:
        """The rows a filtered search may return.

        Args:
            filters: a `Filters`, or a mapping of its fields; None or empty allows every row.

        Returns:
            Sorted int64 row numbers, or None when every row is allowed.
        """
        if filters is None:
            return None
        if isinstance(filters, Mapping):
            filters = Filters(**filters)
        if filters.empty:
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
            return empty_result(len(queries), width)
        small = allowed <= _ann.EXACT_FILTER_MAX and (rows is not None or self._spec["type"] == "flat")
        if small or self._faiss is None:
            # numpy over few rows: exact, and free of FAISS's OpenMP start-up cost (which, on a
            # busy machine, is far larger than the search itself).
            return self._exact(queries, width, rows)
        knob = {**self._spec.get("params", {}), **self._knobs}
        ef_search, nprobe = ef_search or knob.get("ef_search"), nprobe or knob.get("nprobe")
        factor = max(1, int(k_factor or knob.get("k_factor") or 1))
        faiss = load_faiss()
        selector = None if rows is None else faiss.IDSelectorBatch(self._ids[rows])
        params = search_params(self._faiss, selector=selector, ef_search=ef_search, nprobe=nprobe)
        fetch = min(allowed, max(width * factor, RERANK_MIN) if factor > 1 else width)
        with faiss_threads(faiss, len(queries)):
            found_scores, found = self._faiss.search(queries, fetch, params=params)
        if factor > 1:
            # Rerank with exact vectors: exact scores, and the candidates' best `width` in exact order.
            scores, out = rerank_exact(queries, self._vectors, self._rows_of_ids(found), width)
        else:
            scores, out = found_scores[:, :width].astype(np.float32), self._rows_of_ids(found[:, :width])
            scores[out < 0] = -np.inf
        short = np.flatnonzero((out >= 0).sum(axis=1) < width)
        if len(short):
            s, r = self._exact(queries[short], width, rows)
            scores[short], out[short] = s, r
        return scores, out

    def _exact(self, queries: np.ndarray, width: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over ``rows`` (or all rows): always exact, ties broken by lower passage key."""
        base = self._vectors if rows is None else self._vectors[rows]
        allowed = np.arange(len(self)) if rows is None else rows
        keys = self._ids[allowed]
        scores = np.empty((len(queries), width), dtype=np.float32)
        out = np.empty((len(queries), width), dtype=np.int64)
        # Blocks of queries keep the (queries × rows) score matrix small.
        base_t = np.asarray(base, dtype=np.float32).T
        step = max(1, 4_000_000 // max(1, len(allowed)))
        for start in range(0, len(queries), step):
            block = queries[start : start + step] @ base_t
            for i, line in enumerate(block):
                top = top_positions(line, width, keys)
                scores[start + i], out[start + i] = line[top], allowed[top]
        return scores, out

    # -- Lexical search ----------------------------------------------------

    @property
    def lexical(self) -> BM25 | None:
        """The BM25 index over the passage texts (built on first use for indexes saved without one)."""
        if self._lexical is None and self.passages:
            self._lexical = build_lexical(self.passages)
        return self._lexical

    def lexical_search(
        self, queries: Sequence[str], k: int, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """BM25 search among the allowed ``rows``.

        Returns:
            ``(scores, rows)`` of shape ``(len(queries), max(1, min(k, allowed)))``, best first,
            ties broken by lower passage key (as on every store); -1 rows (score -inf) only when no
            row is allowed.
        """
        allowed = len(self) if rows is None else len(rows)
        width = max(1, min(k, allowed))
        bm25 = self.lexical
        if allowed == 0 or bm25 is None:
            return empty_result(len(queries), width)
        candidates = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        keys = self._ids[candidates]
        scores = np.empty((len(queries), width), dtype=np.float32)
        out = np.empty((len(queries), width), dtype=np.int64)
        for i, query in enumerate(queries):
            line = bm25.scores(query)[candidates]
            top = top_positions(line, width, keys)
            scores[i], out[i] = line[top], candidates[top]
        return scores, out

    # -- Queries -----------------------------------------------------------


    def lexical_scores(self, query: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """BM25 scores and query-word coverage (`qa.lexical.BM25.coverage`) of ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        bm25 = self.lexical
        if bm25 is None:
            none = np.zeros(len(rows), dtype=np.float32)
            return none, none
        return bm25.scores(query)[rows], bm25.coverage(query, rows)

    @property
    def lexical_unavailable(self) -> str | None:
        return None

    @property
    def keeps_sentences(self) -> bool:
        return keeps_sentences(self._spec)

    def count(self, rows: Any = None) -> int:
        return len(self) if rows is None else len(rows)

    def passage_at(self, row: int) -> Passage:
        return self.passages[row]

    def close(self) -> None:
        """Nothing to release: the folder is read at load time (memory-mapped files close with the object)."""

    # -- Get by key ----------------------------------------------------------

    def held(self, doc_ids: Sequence[str] | None = None) -> list[Passage]:
        if doc_ids is None:
            return list(self.passages)
        wanted = set(doc_ids)
        return [p for p in self.passages if p.source.doc_id in wanted]

    def vectors_by_key(self, keys: Sequence[int]) -> dict[int, np.ndarray]:
        rows = self._rows_of_ids(np.asarray(keys, dtype=np.int64))
        found = rows >= 0
        vectors = self.passage_vectors(rows[found])
        return dict(zip(np.asarray(keys, dtype=np.int64)[found].tolist(), vectors, strict=True))

    def sentence_blocks(self, keys: Sequence[int]) -> dict[int, np.ndarray]:
        if self._sentences is None:
            return {}
        rows = self._rows_of_ids(np.asarray(keys, dtype=np.int64))
        return {int(k): self._sentences.block(int(r)) for k, r in zip(keys, rows.tolist(), strict=True) if r >= 0}

    # -- Writes: staged by key, committed as one generation in corpus order -----

    def write(self, passages: Sequence[Passage], vectors: np.ndarray, sentences: Sequence[np.ndarray | None]) -> None:
        for p, v, s in zip(passages, np.asarray(vectors, dtype=np.float32), sentences, strict=True):
            self._staged[passage_key(p.passage_id)] = (p, v, s)

    def delete(self, keys: Sequence[int]) -> None:
        for key in keys:
            self._staged.pop(int(key), None)
            self._deleted.add(int(key))

    def find_documents(self, targets: Sequence[str]) -> list[Passage]:
        """The passages that may belong to documents ``targets`` names (`qa.updates.names_document` decides)."""
        return list(self.passages)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the writer lock; first catch up with any generation another writer committed."""
        self._staged, self._deleted = {}, set()
        try:
            if self.path is None:
                yield
                return
            with lock(self.path):
                manifest_path = self.path / MANIFEST
                if manifest_path.exists():
                    on_disk = read_json(manifest_path).get("generation")
                    if on_disk != self.manifest.get("generation"):
                        self._adopt(*read_folder(self.path, lambda name, dim: None))
                yield
        finally:
            self._staged, self._deleted = {}, set()

    def _adopt(self, manifest: dict[str, Any], state: State) -> None:
        self.manifest = manifest
        self._set_state(
            state.passages, state.vectors, state.ids, state.ann, state.spec, state.lexical, state.dim, state.sentences
        )

    def commit(
        self, order: Sequence[str] | None, sources: list[str], *, index_type: str | None = None, batch_size: int = 64
    ) -> None:
        """Write the rows of ``order`` (staged ones, else the ones held) as the new state, if anything changed.

        Args:
            order: every passage id of the new state, in corpus order; None keeps the rows held (less
                the deleted ones) in their order, then the new ones in the order written.
            sources: the paths the corpus was read from.
            index_type: change the index type (vectors are reused); None keeps the current one.
            batch_size: sentences per embedding batch, where a new index type needs sentence vectors.
        """
        if order is None:
            kept = [p.passage_id for p in self.passages if passage_key(p.passage_id) not in self._deleted]
            order = [*kept, *(p.passage_id for p, _, _ in self._staged.values())]
            order = list(dict.fromkeys(order))
        keys = np.array([passage_key(p) for p in order], dtype=np.int64)
        rows = self._rows_of_ids(keys)
        passages: list[Passage] = []
        vectors = np.empty((len(keys), self._dim), dtype=np.float32)
        blocks: dict[str, np.ndarray] = {}
        for i, (key, row) in enumerate(zip(keys.tolist(), rows.tolist(), strict=True)):
            staged = self._staged.get(key)
            if staged is not None:
                passage, vectors[i], block = staged
                if block is not None:
                    blocks[passage.text] = block
            elif row >= 0:
                passage, vectors[i] = self.passages[row], self._vectors[row]
            else:
                raise KeyError(f"passage {order[i]} was neither written nor held")
            passages.append(passage)
        self._replace(passages, vectors, sources, index_type, blocks, batch_size)
        self._staged, self._deleted = {}, set()

    def _replace(
        self,
        passages: list[Passage],
        vectors: np.ndarray,
        sources: list[str],
        index_type: str | None,
        blocks: dict[str, np.ndarray],
        batch_size: int,
    ) -> None:
        """Compute the new state, write it (if saved), then switch to it; write nothing if nothing changed."""
        ids = ids_of(passages)
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
            return  # nothing changed: keep the current generation, write nothing
        ann = self._next_ann(vectors, ids, spec, patch)
        same_texts = len(passages) == len(self.passages) and all(
            a.text == b.text for a, b in zip(passages, self.passages, strict=True)
        )
        same_lexical = same_texts and all(
            lexical_text(a) == lexical_text(b) for a, b in zip(passages, self.passages, strict=True)
        )
        lexical = self._lexical if same_lexical else (build_lexical(passages) if passages else None)
        sentences: SentenceVectors | None
        if not keeps_sentences(spec):
            sentences = None
        elif same_texts and self._sentences is not None:
            sentences = self._sentences
        else:
            known = self._sentences.by_text(self.passages) if self._sentences is not None else {}
            known.update(blocks)
            sentences = SentenceVectors.embed(passages, self.embedder, self._dim, known=known, batch_size=batch_size)
        state = State(passages, vectors, ids, ann, spec, lexical, self._dim, sentences)
        if self.path is not None:
            pause()
            self.manifest = _write_generation(self.path, self.embedder.name, sources, state)
        else:
            self.manifest = {**self.manifest, "sources": sources}
        self._set_state(passages, vectors, ids, ann, spec, lexical, self._dim, sentences)

    def _next_ann(self, vectors: np.ndarray, ids: np.ndarray, spec: dict[str, Any], patch: bool) -> Any:
        """The FAISS structure for the new rows: the old one patched (IVF; HNSW adds only), or rebuilt."""
        if not len(ids):
            return None
        if patch:
            removed = np.setdiff1d(self._ids, ids, assume_unique=True)
            added = ~np.isin(ids, self._ids, assume_unique=True)
            faiss = load_faiss()
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
        state = State(
            self.passages, self._vectors, self._ids, self._faiss, self._spec, self.lexical, self._dim, self._sentences
        )
        self.manifest = save_folder(folder, self.embedder.name, list(self.manifest.get("sources") or []), state)
        self.path = folder
        return folder


def keeps_sentences(spec: dict[str, Any]) -> bool:
    """Whether an index of this recipe keeps sentence vectors."""
    # Sentence vectors hold ~4x as many vectors as the passages: worth it for exact indexes (at
    # most AUTO_FLAT_MAX passages unless asked), too much memory for the approximate ones.
    return spec["type"] == "flat"


def open_folder(path: str | os.PathLike[str], embedder_for: Any) -> tuple[dict[str, Any], State, Embedder]:
    """Read an index folder; ``embedder_for(name, dim)`` returns the query model, or raises when it does not fit."""
    got: list[Embedder] = []
    manifest, state = read_folder(Path(path), lambda name, dim: got.append(embedder_for(name, dim)))
    return manifest, state, got[-1]
