"""BM25 on Milvus: query terms against the lexicon, sparse top-k, and exact rescoring of candidates.

Each passage's BM25 weights (those of `qa.lexical.BM25` over the same passages) live in a
sparse-vector field; a query is the sparse vector of its term counts, so the inner product is
the BM25 score. Candidates are rescored from their stored weights in the order
`qa.lexical.BM25.scores` adds them, so scores are bit-for-bit bm25s's, and equal scores are
ordered by passage key as on every store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.documents import Passage
from qa.errors import InputError
from qa.lexical import Tokenizer
from qa.stores.base import iter_batches
from qa.stores.milvus.schema import (
    _SCALARS,
    _TERMS,
    MAX_TOP_K,
    QUERY_BATCH,
    TIE_MARGIN,
    WRITE_BATCH,
    read_lexicon,
    to_passage,
)
from qa.stores.milvus.targets import MilvusTarget


class MilvusLexical:
    """The BM25 half of `qa.stores.milvus.store.MilvusStore`."""

    _client: Any
    target: MilvusTarget
    manifest: dict[str, Any]
    consistency_level: str
    _cache: OrderedDict[int, Passage]
    _terms: tuple[dict[str, int], np.ndarray, int] | None
    _changed: bool

    if TYPE_CHECKING:

        @property
        def lexical_unavailable(self) -> str | None: ...

        def _remember(self, key: int, passage: Passage) -> None: ...

        def _scan(self, fields: Sequence[str], expression: str = "") -> Iterator[dict[str, Any]]: ...

    # -- Lexical -------------------------------------------------------------

    def _lexicon(self) -> tuple[dict[str, int], np.ndarray, int]:
        """Term → id, document frequencies and document count of the committed BM25 weights."""
        if self._terms is None:
            lexical = self.manifest["lexical"]
            terms, df = read_lexicon(self._client, self.target, int(lexical["chunks"]))
            self._terms = ({t: i for i, t in enumerate(terms)}, df, int(lexical["docs"]))
        return self._terms

    def _query_terms(self, query: str) -> list[int]:
        vocab, _, _ = self._lexicon()
        return [vocab[t] for t in Tokenizer()([query])[0] if t in vocab]

    def _weights(self, keys: Sequence[int]) -> dict[int, dict[int, float]]:
        out: dict[int, dict[int, float]] = {}
        for batch in iter_batches(list(keys), WRITE_BATCH):
            found = self._client.get(
                self.target.collection,
                ids=[int(k) for k in batch],
                output_fields=[_TERMS],
                consistency_level=self.consistency_level,
            )
            for entity in found:
                out[int(entity["id"])] = {int(t): float(w) for t, w in dict(entity[_TERMS]).items()}
        return out

    def _bm25(self, terms: list[int], weights: Sequence[dict[int, float]]) -> np.ndarray:
        # Added term by term in query order, in float32, as qa.lexical.BM25.scores adds them.
        out = np.zeros(len(weights), dtype=np.float32)
        for t in terms:
            column = np.array([w.get(t, 0.0) for w in weights], dtype=np.float32)
            out += column
        return out

    def lexical_scores(self, query: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """BM25 scores and IDF-weighted query-word coverage of ``rows`` (as `qa.lexical.BM25.coverage`)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.lexical_unavailable is not None or not len(rows):
            none = np.zeros(len(rows), dtype=np.float32)
            return none, none
        found = self._weights(rows.tolist())
        weights = [found.get(int(r), {}) for r in rows.tolist()]
        terms = self._query_terms(query)
        vocab, df, n_docs = self._lexicon()
        coverage = np.zeros(len(rows), dtype=np.float64)
        distinct = list(dict.fromkeys(Tokenizer()([query])[0]))
        total = 0.0
        for term in distinct:
            t = vocab.get(term)
            count = 0 if t is None else int(df[t])
            idf = float(np.log1p((n_docs - count + 0.5) / (count + 0.5)))
            total += idf
            if t is not None and count:
                coverage += idf * np.array([t in w for w in weights], dtype=np.float64)
        coverage = coverage / total if total else coverage
        return self._bm25(terms, weights), coverage.astype(np.float32)

    def lexical_search(self, queries: Sequence[str], k: int, rows: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """BM25 top ``k`` among the selection: passages sharing a term with the query, best first.

        Returns:
            ``(scores, rows)`` of shape ``(len(queries), max(1, min(k, MAX_TOP_K)))``; -1 rows (score -inf)
            where fewer passages share a term with the query.

        Raises:
            InputError: the server has no sparse vectors (`lexical_unavailable` says which version it needs).
        """
        if self.lexical_unavailable is not None:
            raise InputError(self.lexical_unavailable)
        width = max(1, min(k, MAX_TOP_K))
        scores = np.full((len(queries), width), -np.inf, dtype=np.float32)
        out = np.full((len(queries), width), -1, dtype=np.int64)
        expression = rows.expression if rows is not None else ""
        sparse = []
        for query in queries:
            counts: dict[int, float] = {}
            for t in self._query_terms(query):
                counts[t] = counts.get(t, 0.0) + 1.0
            sparse.append(counts)
        asked = [i for i, s in enumerate(sparse) if s]
        for batch in iter_batches(asked, QUERY_BATCH):
            results = self._client.search(
                self.target.collection,
                data=[sparse[i] for i in batch],
                filter=expression,
                limit=min(width + TIE_MARGIN, MAX_TOP_K),
                output_fields=[_TERMS, *_SCALARS],
                search_params={"metric_type": "IP", "params": {"drop_ratio_search": 0.0}},
                anns_field=_TERMS,
                consistency_level=self.consistency_level,
            )
            for i, hits in zip(batch, results, strict=True):
                keys = np.array([int(h["id"]) for h in hits], dtype=np.int64)
                if not len(keys):
                    continue
                for h in hits:
                    self._remember(int(h["id"]), to_passage(h["entity"]))
                weights = [{int(t): float(w) for t, w in dict(h["entity"][_TERMS]).items()} for h in hits]
                exact = self._bm25(self._query_terms(queries[i]), weights)
                # Rescored exactly; ties go to the lower key (FAISS: the lower row).
                top = np.lexsort((keys, -exact))[:width]
                values = exact[top]
                scores[i, : len(top)], out[i, : len(top)] = values, keys[top]
        return scores, out
