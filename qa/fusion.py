"""Combining retrievers: rank fusion (RRF) and normalised score fusion. Pure numpy, no models.

Why score fusion by default: reciprocal-rank fusion throws away *how much* better
the top hit is than the rest, and on SQuAD that margin is the useful signal — a
BM25 hit on a rare name scores far above everything else. Normalising each
retriever's scores over a shared candidate pool and taking a weighted sum keeps
it. See `DEFAULT_WEIGHTS` for the measured comparison.

Typical use, with score vectors over all passages (dense cosine, BM25, and
optionally each passage's best-sentence cosine)::

    ranked = hybrid_rank([dense, bm25, best_sentence], DEFAULT_WEIGHTS, k=10)
    ranked.indices, ranked.scores
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from qa.errors import InputError

Normalisation = Literal["minmax", "zscore"]

# ---------------------------------------------------------------------------------------------
# The default recipe, chosen in scripts/retrieval_experiments.py with qa's own index: weights picked
# by SQuAD paragraph recall@1 on the 38 tune articles only (all 2,067 paragraphs searched), SciFact
# nDCG@10 printed beside them as a check; the held-out articles are judged once, by `qa eval`.
# RESULTS-PLACEHOLDER
# ---------------------------------------------------------------------------------------------
#: Weights of (dense passage cosine, BM25, best-sentence cosine, query-word coverage) after
#: normalisation. Without sentence vectors the passage cosine stands in for the best sentence.
DEFAULT_WEIGHTS: tuple[float, float, float, float] = (0.2, 0.3, 0.5, 0.2)
#: How each signal is put on a common scale over the candidate pool (z-score: one outlier does not squash the rest).
DEFAULT_NORMALISATION: Normalisation = "zscore"
#: Candidates taken from the top of each signal; their union is the pool that is normalised and re-ranked.
DEFAULT_POOL = 100
#: Reciprocal-rank-fusion constant from Cormack et al. (2009); only used by `rrf`.
RRF_K = 60


@dataclass(frozen=True)
class Ranking:
    """Fused results for one query, best first.

    Attributes:
        indices: int64 document ids.
        scores: float32 fused scores (comparable within one query only).
    """

    indices: np.ndarray
    scores: np.ndarray


def rrf(rankings: Sequence[Sequence[int]], k: int = RRF_K, weights: Sequence[float] | None = None) -> dict[int, float]:
    """Reciprocal rank fusion: ``score(d) = sum_i w_i / (k + rank_i(d))`` with ranks starting at 1.

    Args:
        rankings: one list of document ids per retriever, best first.
        k: damping constant; larger flattens the difference between top ranks.
        weights: one per ranking (default all 1).

    Returns:
        ``{doc_id: score}`` for every document in any ranking; sort by value, descending, to rank.

    Raises:
        InputError: ``k`` is negative or ``weights`` has the wrong length.
    """
    if k < 0:
        raise InputError(f"rrf needs k >= 0, got {k}")
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise InputError(f"rrf got {len(rankings)} rankings but {len(weights)} weights; pass one weight per ranking")
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, doc in enumerate(ranking, start=1):
            fused[int(doc)] = fused.get(int(doc), 0.0) + weight / (k + rank)
    return fused


def normalise(scores: np.ndarray, method: Normalisation = DEFAULT_NORMALISATION, axis: int = -1) -> np.ndarray:
    """Put scores on a common scale along ``axis``.

    ``minmax`` maps to [0, 1]; ``zscore`` subtracts the mean and divides by the
    standard deviation. z-scores are less at the mercy of one outlier at either
    end of the pool than min-max. A constant row (e.g. BM25 for a query with no
    known word) becomes all zeros, so it contributes nothing rather than NaN.

    Args:
        scores: float array; normalised independently along ``axis``.
        method: ``"minmax"`` or ``"zscore"``.
        axis: the axis holding one query's candidates.

    Returns:
        float32 array of the same shape.

    Raises:
        InputError: unknown ``method``.
    """
    x = np.asarray(scores, dtype=np.float64)
    if method == "minmax":
        lo = x.min(axis=axis, keepdims=True)
        span = x.max(axis=axis, keepdims=True) - lo
        out = np.divide(x - lo, span, out=np.zeros_like(x), where=span > 0)
    elif method == "zscore":
        mean = x.mean(axis=axis, keepdims=True)
        std = x.std(axis=axis, keepdims=True)
        out = np.divide(x - mean, std, out=np.zeros_like(x), where=std > 0)
    else:
        raise InputError(f"unknown normalisation {method!r}; use 'minmax' or 'zscore'")
    return out.astype(np.float32)


def fuse_scores(
    signals: Sequence[np.ndarray],
    weights: Sequence[float],
    method: Normalisation = DEFAULT_NORMALISATION,
) -> np.ndarray:
    """Weighted sum of normalised scores of the same candidates.

    Args:
        signals: one array per retriever, each of shape ``(n_candidates,)`` (or ``(n_queries, n_candidates)``),
            element ``i`` of every array scoring the same candidate.
        weights: one per signal; they need not sum to 1 (only ratios matter for ranking).
        method: normalisation applied to each signal over the candidates first.

    Returns:
        float32 fused scores, same shape as one signal.

    Raises:
        InputError: mismatched lengths or shapes.
    """
    if len(signals) != len(weights) or not signals:
        raise InputError(f"fuse_scores got {len(signals)} signals and {len(weights)} weights; pass one weight each")
    shape = np.shape(signals[0])
    fused = np.zeros(shape, dtype=np.float32)
    for signal, weight in zip(signals, weights, strict=True):
        if np.shape(signal) != shape:
            raise InputError(f"all signals must score the same candidates: shapes {shape} and {np.shape(signal)}")
        if weight:
            fused += np.float32(weight) * normalise(signal, method)
    return fused


def candidate_pool(signals: Sequence[np.ndarray], size: int = DEFAULT_POOL) -> np.ndarray:
    """Union of the top ``size`` documents of each full score vector, as sorted int64 ids.

    Normalising over this pool rather than the whole corpus keeps the statistics
    about plausible answers: the long tail of unrelated documents (all BM25 = 0)
    would otherwise dominate the mean and the minimum.
    """
    if size < 1:
        raise InputError(f"pool size must be at least 1, got {size}")
    ids: list[np.ndarray] = []
    for s in signals:
        s = np.asarray(s)
        n = min(size, len(s))
        ids.append(np.argpartition(-s, n - 1)[:n] if n < len(s) else np.arange(len(s)))
    return np.unique(np.concatenate(ids)).astype(np.int64)


def hybrid_rank(
    signals: Sequence[np.ndarray],
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    *,
    k: int = 10,
    pool: int = DEFAULT_POOL,
    method: Normalisation = DEFAULT_NORMALISATION,
) -> Ranking:
    """Rank documents for one query by fusing full score vectors.

    Args:
        signals: score arrays of shape ``(n_docs,)``, in the order of ``weights`` — by default
            (dense cosine, BM25, best-sentence cosine). Pass two with two weights to skip the sentence signal.
        weights: one per signal.
        k: results wanted; at most the pool size is returned.
        pool: candidates taken from the top of each signal (see `candidate_pool`).
        method: normalisation over the pool.

    Returns:
        `Ranking` of ``min(k, pool size)`` documents, best first; ties broken by lower id.

    Raises:
        InputError: mismatched signals/weights, or ``k`` < 1.
    """
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    if len(signals) != len(weights):
        raise InputError(f"hybrid_rank got {len(signals)} signals and {len(weights)} weights; pass one weight each")
    candidates = candidate_pool([s for s, w in zip(signals, weights, strict=True) if w] or signals[:1], pool)
    fused = fuse_scores([np.asarray(s)[candidates] for s in signals], weights, method)
    order = np.lexsort((candidates, -fused))[:k]
    return Ranking(indices=candidates[order], scores=fused[order])


def best_sentence_scores(sentence_scores: np.ndarray, owner: np.ndarray, n_docs: int, fill: float = -1.0) -> np.ndarray:
    """Each document's best sentence score: ``out[d] = max(sentence_scores[owner == d])``.

    A passage that answers a question usually does so in one sentence, and a
    whole-passage embedding dilutes that sentence with the others; the maximum
    sentence cosine recovers it.

    Args:
        sentence_scores: ``(n_sentences,)`` or ``(n_queries, n_sentences)`` scores (e.g. cosines).
        owner: ``(n_sentences,)`` document id of each sentence.
        n_docs: number of documents.
        fill: score of a document with no sentence (cosine's minimum by default).

    Returns:
        float32 array ``(n_docs,)`` or ``(n_queries, n_docs)``.

    Raises:
        InputError: ``owner`` does not match the sentence axis, or names a document >= ``n_docs``.
    """
    s = np.asarray(sentence_scores, dtype=np.float32)
    owner = np.asarray(owner, dtype=np.int64)
    if s.shape[-1] != len(owner):
        raise InputError(f"{s.shape[-1]} sentence scores but {len(owner)} owners; pass one owner per sentence")
    if len(owner) and (owner.min() < 0 or owner.max() >= n_docs):
        raise InputError(f"sentence owners must be document ids in [0, {n_docs})")
    out = np.full((*s.shape[:-1], n_docs), fill, dtype=np.float32)
    if not len(owner):
        return out
    if np.all(owner[1:] >= owner[:-1]):
        # Sentences stored passage by passage (the usual layout): one vectorised reduceat.
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        out[..., owner[starts]] = np.maximum.reduceat(s, starts, axis=-1)
    else:
        for i, d in enumerate(owner):
            out[..., d] = np.maximum(out[..., d], s[..., i])
    return out
