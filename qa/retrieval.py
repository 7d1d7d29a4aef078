"""Query → ranked `Hit`s.

`Hit` is what every search returns. The ranking itself (dense today, BM25 and
fusion where the index has them) lives here so that `Index` only stores things.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from qa.documents import Source
from qa.errors import InputError

if TYPE_CHECKING:
    from qa.index import Index

MODES = ("dense",)
DEFAULT_MODE = "dense"


@dataclass(frozen=True)
class Hit:
    """One retrieved passage.

    Attributes:
        rank: 1-based position in the result list.
        score: higher is better; for ``dense`` the cosine similarity in [-1, 1].
        text: the passage text.
        passage_id: stable id of the passage (same text in the same document → same id).
        source: where the passage came from.
    """

    rank: int
    score: float
    text: str
    passage_id: str
    source: Source


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


def search(index: Index, queries: Sequence[str], k: int = 5, *, mode: str | None = None) -> list[list[Hit]]:
    """Rank the index's passages for each query.

    Returns at most ``k`` hits per query (fewer when the index is smaller).
    """
    queries = check_queries(queries, k)
    check_mode(mode)
    if not queries:
        return []
    vectors = index.embed_queries(queries)
    scores, rows = index.dense_search(vectors, min(k, len(index)))
    return [_hits(index, s, r) for s, r in zip(scores, rows, strict=True)]


def _hits(index: Index, scores: np.ndarray, rows: np.ndarray) -> list[Hit]:
    hits: list[Hit] = []
    for score, row in zip(scores.tolist(), rows.tolist(), strict=True):
        if row < 0:  # FAISS pads with -1 when it has fewer than k results
            continue
        passage = index.passages[row]
        hits.append(Hit(len(hits) + 1, float(score), passage.text, passage.passage_id, passage.source))
    return hits
