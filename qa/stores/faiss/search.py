"""Searching a FAISS index folder: filters to rows, dense top-k (exact or FAISS), BM25 top-k, signals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.documents import Passage
from qa.errors import InputError
from qa.filters import Filters, as_filters
from qa.lexical import build_lexical
from qa.stores.faiss import ann as _ann
from qa.stores.faiss.ann import (
    RERANK_MIN,
    empty_result,
    faiss_threads,
    load_faiss,
    rerank_exact,
    search_params,
    top_positions,
)
from qa.stores.sentences import SentenceVectors

if TYPE_CHECKING:
    from qa.lexical import BM25


class FaissSearch:
    """The search half of `qa.stores.faiss.store.FaissStore` (which holds the state it reads).

    Rows are positions in corpus order. Filters become allowed rows before the top-k cut: few
    rows are searched exactly with numpy, many with a FAISS ``IDSelectorBatch``; queries an
    approximate index answers short are redone exactly. Equal scores are ordered by passage key.
    """

    passages: list[Passage]
    _vectors: np.ndarray
    _ids: np.ndarray
    _faiss: Any
    _spec: dict[str, Any]
    _lexical: BM25 | None
    _dim: int
    _sentences: SentenceVectors | None
    _knobs: dict[str, Any]
    _groups: dict[tuple[str, ...], list[int]] | None

    if TYPE_CHECKING:

        def __len__(self) -> int: ...

        def _rows_of_ids(self, ids: np.ndarray) -> np.ndarray: ...

        def passage_vectors(self, rows: np.ndarray) -> np.ndarray: ...

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
