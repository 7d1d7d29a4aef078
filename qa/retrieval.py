"""Query → ranked `Hit`s: dense, BM25, or both fused; optionally reranked.

`Hit` is what every search returns. The ranking lives here so that `Index`
only stores things (vectors, BM25, passages) and answers low-level lookups.

Modes:

* ``dense``  — cosine of the query and passage embeddings (FAISS).
* ``bm25``   — BM25 over the passage text with its title (bm25s, stemmed, no stop words).
* ``hybrid`` — the default: dense cosine, BM25, each passage's best-sentence cosine and
  its coverage of the query's words, each z-scored over a shared candidate pool, then a
  weighted sum (`qa.fusion.DEFAULT_WEIGHTS`; chosen in ``scripts/retrieval_experiments.py``).
* ``rrf``    — reciprocal rank fusion of dense and BM25, for comparison.

A reranker (`CrossEncoderReranker`, or anything with a ``score`` method) can
reorder the top ``rerank_top`` hits of any mode.

One hit per paragraph: a long paragraph is indexed as overlapping sentence windows,
and by default a search keeps only each paragraph's best window (`one_per_paragraph`),
so the ``k`` hits are ``k`` different paragraphs. That window keeps its own text and offsets.

What a score means depends on the mode, and only ranks hits of one query:
``dense`` is a cosine in [-1, 1]; ``bm25`` a BM25 score (0 up, unbounded); ``hybrid`` a
weighted sum of z-scores over the query's candidate pool (about 100-200 passages), so 0 is a
passage as good as the pool's average, 1 is about one standard deviation better, and it can
be negative; ``rrf`` a sum of 1/(60 + rank). Use `Hit.score` to order and compare hits of the
same search, never as a probability or across queries: `qa.answering` gives a calibrated
confidence for answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from qa import fusion
from qa.documents import Source
from qa.errors import InputError
from qa.filters import as_filters
from qa.stores.base import LEXICAL_MODES, Store
from qa.updates import passage_key

if TYPE_CHECKING:
    from qa.filters import Filters

MODES = ("dense", "bm25", "hybrid", "rrf")
DEFAULT_MODE = "hybrid"
RERANK_TOP = 50


@dataclass(frozen=True)
class Hit:
    """One retrieved passage.

    Attributes:
        rank: 1-based position in the result list.
        score: higher is better, comparable only within one search. ``dense``: cosine in
            [-1, 1]; ``bm25``: BM25 (>= 0); ``hybrid``: weighted sum of the signals' z-scores over
            the query's candidate pool (0 = the pool's average, can be negative); ``rrf``: the
            reciprocal-rank sum; with a reranker, its score. See the module docstring.
        text: the passage text.
        passage_id: stable id of the passage (same text in the same document → same id).
        source: where the passage came from.
    """

    rank: int
    score: float
    text: str
    passage_id: str
    source: Source

    def __repr__(self) -> str:
        from qa.display import hit_repr

        return hit_repr(self)

    def _repr_html_(self) -> str:
        from qa.display import hit_html

        return hit_html(self)


class Hits(list[Hit]):
    """The hits of one search, best first: a plain ``list`` that also shows itself in Jupyter.

    Attributes:
        query: the query searched for ("" when unknown); its words are marked in the HTML view.
    """

    def __init__(self, hits: Iterable[Hit] = (), query: str = "") -> None:
        super().__init__(hits)
        self.query = query

    def _repr_html_(self) -> str:
        from qa.display import hits_html

        return hits_html(self, self.query or None)

    def to_dataframe(self) -> Any:
        """A pandas DataFrame, one row per hit (rank, score, text, passage_id and the source's fields).

        Raises:
            MissingDependencyError: pandas is not installed (``pip install pandas``).
        """
        from qa.display import hits_dataframe

        return hits_dataframe(self)


class Searchable(Store, Protocol):
    """A store that embeds queries with its model (what `qa.api.IndexAPI` adds to a store)."""

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray: ...


class Reranker(Protocol):
    """Scores (query, passage) pairs; higher is more relevant."""

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray: ...


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder`` from a local folder.

    No reranker model is bundled (none is on PyPI); point this at any folder saved
    with ``CrossEncoder.save(path)``, e.g. ms-marco-MiniLM-L-6-v2 copied from a
    machine with hub access::

        index.search(q, k=5, reranker=qa.retrieval.CrossEncoderReranker("models/ms-marco-MiniLM-L-6-v2"))
    """

    def __init__(self, path: str, *, batch_size: int = 32) -> None:
        from qa.embedding import load_cross_encoder

        self.model = load_cross_encoder(path)
        self.batch_size = batch_size

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        scores = self.model.predict([(query, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False)
        return np.asarray(scores, dtype=np.float32).reshape(len(texts), -1)[:, -1]


def check_queries(queries: Sequence[str], k: int) -> list[str]:
    """Validate user input once, with messages that say how to fix it."""
    if isinstance(queries, str):
        raise InputError("search_batch takes a list of queries; use search() for a single query")
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise InputError(f"k must be a positive integer, got {k!r}")
    cleaned = []
    for query in queries:
        if not isinstance(query, str) or not query.strip():
            raise InputError("query is empty; pass a question or some words to search for")
        cleaned.append(query.strip())
    return cleaned


def check_mode(mode: str | None) -> str:
    mode = mode or DEFAULT_MODE
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return mode


def search(
    index: Searchable,
    queries: Sequence[str],
    k: int = 5,
    *,
    mode: str | None = None,
    filters: Filters | None = None,
    reranker: Reranker | None = None,
    rerank_top: int = RERANK_TOP,
    per_paragraph: bool = True,
    **knobs: Any,
) -> list[Hits]:
    """Rank the index's passages for each query.

    Args:
        index: the index to search.
        queries: query texts.
        k: hits wanted per query; fewer come back only when fewer passages match.
        mode: one of `MODES`; `DEFAULT_MODE` when None.
        filters: only passages whose source matches, applied before the top-k cut.
        reranker: reorders the first ``max(k, rerank_top)`` hits.
        rerank_top: how many hits the reranker sees.
        per_paragraph: keep only the best window of each paragraph (`one_per_paragraph`);
            False returns every window that ranks.
        knobs: search-time knobs of approximate indexes (``ef_search``, ``nprobe``).

    Raises:
        InputError: an empty query, a bad ``k``, an unknown mode, or a mode the store cannot search.
    """
    queries = check_queries(queries, k)
    mode = check_mode(mode)
    if mode in LEXICAL_MODES and index.lexical_unavailable is not None:
        raise InputError(f"mode {mode!r} is not available here: {index.lexical_unavailable}")
    if not queries or not len(index):
        return [Hits(query=q) for q in queries]
    rows = index.select_rows(as_filters(filters))
    if rows is not None and not len(rows):
        return [Hits(query=q) for q in queries]
    wanted = max(k, rerank_top) if reranker is not None else k
    # Windows of one paragraph crowd each other out; fetch more, then merge them.
    fetch = min(len(index), wanted * 3 if per_paragraph else wanted)
    while True:
        results = _ranked(index, queries, fetch, mode, rows, knobs)
        if not per_paragraph:
            break
        results = [one_per_paragraph(hits) for hits in results]
        short = any(len(hits) < wanted and fetch < len(index) for hits in results)
        if not short:
            break
        fetch = min(len(index), fetch * 3)
    if reranker is not None:
        results = [_rerank(reranker, q, hits[:wanted])[:k] for q, hits in zip(queries, results, strict=True)]
    return [Hits(hits[:k], query=q) for q, hits in zip(queries, results, strict=True)]


def one_per_paragraph(hits: Sequence[Hit]) -> list[Hit]:
    """Keep the best-ranked hit of each paragraph (same document and paragraph), re-ranked 1, 2, …

    A long paragraph is indexed as overlapping windows; the best one stands for it and keeps
    its own text and offsets. Order and scores are unchanged.
    """
    seen: set[tuple[str, int]] = set()
    out: list[Hit] = []
    for hit in hits:
        key = (hit.source.doc_id, hit.source.paragraph)
        if key in seen:
            continue
        seen.add(key)
        out.append(
            hit if hit.rank == len(out) + 1 else Hit(len(out) + 1, hit.score, hit.text, hit.passage_id, hit.source)
        )
    return out


# The most whitespace two consecutive windows of one paragraph can have between them.
_SENTENCE_GAP = 8


def whole_paragraphs(hits: Sequence[Hit]) -> list[Hit]:
    """Join the overlapping windows of each paragraph among ``hits`` into one hit holding them all.

    For a reader handed "this paragraph": it then reads the paragraph as one passage, so its spans
    compare across what were window boundaries. Each joined hit takes the rank, score and id of
    its best window and the offsets of the joined text; hits are re-ranked 1, 2, … The whitespace
    between two windows that meet at a sentence boundary becomes as many spaces, so offsets into
    the joined text still index the source. Windows further apart (not all of a paragraph was
    handed over), or whose text is not their offsets' span, stay as they are.
    """
    groups: dict[tuple[str, int], list[Hit]] = {}
    for hit in hits:
        groups.setdefault((hit.source.doc_id, hit.source.paragraph), []).append(hit)
    out: list[Hit] = []
    for group in groups.values():
        joined = _join(sorted(group, key=lambda h: h.source.char_start)) if len(group) > 1 else None
        if joined is None:
            out.extend(group)
            continue
        best = group[0]
        text, start, end = joined
        source = replace(best.source, char_start=start, char_end=end)
        out.append(Hit(best.rank, best.score, text, best.passage_id, source))
    out.sort(key=lambda h: h.rank)
    return [Hit(rank, h.score, h.text, h.passage_id, h.source) for rank, h in enumerate(out, start=1)]


def _join(parts: Sequence[Hit]) -> tuple[str, int, int] | None:
    """(text, start, end) of windows sorted by offset, joined; None when they cannot be."""
    if any(len(h.text) != h.source.char_end - h.source.char_start for h in parts):
        return None
    text, end = parts[0].text, parts[0].source.char_end
    for part in parts[1:]:
        start = part.source.char_start
        if start > end + _SENTENCE_GAP:
            return None
        text += " " * (start - end) + part.text[max(0, end - start) :]
        end = max(end, part.source.char_end)
    return text, parts[0].source.char_start, end


def _ranked(
    index: Searchable, queries: Sequence[str], fetch: int, mode: str, rows: np.ndarray | None, knobs: dict[str, Any]
) -> list[list[Hit]]:
    if mode == "dense":
        scores, found = index.dense_search(index.embed_queries(queries), fetch, rows, **knobs)
        ranked = list(zip(scores, found, strict=True))
    elif mode == "bm25":
        scores, found = index.lexical_search(queries, fetch, rows)
        # Passages sharing no word with the query (score 0) are not BM25 results: a FAISS folder
        # would list them in row order, Milvus not at all, and neither order means anything.
        found = np.where(scores > 0, found, -1)
        ranked = list(zip(scores, found, strict=True))
    else:
        vectors = index.embed_queries(queries)
        ranked = [_fused(index, q, v, fetch, rows, mode, knobs) for q, v in zip(queries, vectors, strict=True)]
    return [_hits(index, s, r) for s, r in ranked]


def _fused(
    index: Store, query: str, vector: np.ndarray, k: int, rows: Any, mode: str, knobs: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Hybrid or RRF ranking of one query over the union of dense and BM25 candidates."""
    _, dense_rows = index.dense_search(vector[None, :], max(k, fusion.DEFAULT_POOL), rows, **knobs)
    bm25_scores, bm25_rows = index.lexical_search([query], max(k, fusion.DEFAULT_POOL), rows)
    # The pool holds passages sharing a word with the query (see search): the same pool on every store.
    dense_rows, bm25_rows = dense_rows[0][dense_rows[0] >= 0], bm25_rows[0][(bm25_rows[0] >= 0) & (bm25_scores[0] > 0)]
    if mode == "rrf":
        fused = fusion.rrf([dense_rows.tolist(), bm25_rows.tolist()])
        # Equal sums (rank r in one list only, say) go to the better dense rank, then BM25 rank: the
        # same order on every store, whatever its row numbers.
        dense_rank = {int(r): i for i, r in enumerate(dense_rows.tolist())}
        bm25_rank = {int(r): i for i, r in enumerate(bm25_rows.tolist())}
        last = len(dense_rank) + len(bm25_rank)
        best = sorted(fused, key=lambda row: (-fused[row], dense_rank.get(row, last), bm25_rank.get(row, last)))[:k]
        return np.array([fused[r] for r in best], dtype=np.float32), np.array(best, dtype=np.int64)
    candidates = np.union1d(dense_rows, bm25_rows).astype(np.int64)
    dense = index.passage_vectors(candidates) @ vector
    bm25, coverage = index.lexical_scores(query, candidates)
    sentence = index.best_sentence_scores(vector, candidates)
    signals = [dense, bm25, sentence, coverage]
    combined = fusion.fuse_scores(
        signals, fusion.DEFAULT_WEIGHTS, fusion.DEFAULT_NORMALISATION, fusion.DEFAULT_MIN_SPREADS
    )
    # Ties (e.g. a one-passage pool) fall back to the dense order, then the passage key (not the
    # row, whose meaning differs between stores).
    keys = np.array([passage_key(index.passage_at(int(r)).passage_id) for r in candidates], dtype=np.int64)
    order = np.lexsort((keys, -dense, -combined))[:k]
    return combined[order], candidates[order]


def _hits(index: Store, scores: np.ndarray, rows: np.ndarray) -> list[Hit]:
    hits: list[Hit] = []
    for score, row in zip(np.asarray(scores).tolist(), np.asarray(rows).tolist(), strict=True):
        if row < 0:  # FAISS pads with -1 when it has fewer than k results
            continue
        passage = index.passage_at(row)
        hits.append(Hit(len(hits) + 1, float(score), passage.text, passage.passage_id, passage.source))
    return hits


def _rerank(reranker: Reranker, query: str, hits: list[Hit]) -> list[Hit]:
    if not hits:
        return hits
    scores = np.asarray(reranker.score(query, [h.text for h in hits]), dtype=np.float64)
    order = sorted(range(len(hits)), key=lambda i: (-scores[i], hits[i].rank))
    return [
        Hit(rank, float(scores[i]), hits[i].text, hits[i].passage_id, hits[i].source)
        for rank, i in enumerate(order, start=1)
    ]
