"""Combining retrievers: rank fusion (RRF) and normalised score fusion. Pure numpy, no models.

Why score fusion by default: reciprocal-rank fusion throws away *how much* better
the top hit is than the rest, and on SQuAD that margin is the useful signal — a
BM25 hit on a rare name scores far above everything else. Normalising each
retriever's scores over a shared candidate pool and taking a weighted sum keeps
it. See `DEFAULT_WEIGHTS` for the measured comparison.

`qa.retrieval` gathers the candidates (the union of the dense and BM25 top
`DEFAULT_POOL`) and the four signals over them, then calls `fuse_scores` with
`DEFAULT_WEIGHTS` and `DEFAULT_MIN_SPREADS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from qa.errors import InputError

Normalisation = Literal["minmax", "zscore"]

# ---------------------------------------------------------------------------------------------
# The default recipe, chosen in scripts/retrieval_experiments.py with qa's own index: weights picked
# by SQuAD paragraph recall@1 on the 38 tune articles only (all 2,067 paragraphs searched), SciFact
# nDCG@10 printed beside them as a check; the held-out articles are judged once, by `qa eval`.
# Measured (scripts/retrieval_experiments.py; SQuAD tune paragraph R@1 / R@5, SciFact nDCG@10):
#   dense                                             0.664 / 0.880   0.681
#   BM25 (title + text)                               0.783 / 0.930   0.673
#   z-score(dense 0.5, BM25 0.5)                      0.825 / 0.958   0.727
#   z-score(0.2, 0.4, best sentence 0.4)              0.842 / 0.964   0.734
#   z-score(0.2, 0.3, 0.5, coverage 0.2)  <- default  0.853 / 0.966   0.736
# The 108-point grid around it is flat (R@1 0.836-0.853, SciFact 0.718-0.738): no weight there
# is a knife edge. Pools of 20-300 candidates per retriever changed R@1 by < 0.01 (earlier runs).
# ---------------------------------------------------------------------------------------------
#: Weights of (dense passage cosine, BM25, best-sentence cosine, query-word coverage) after
#: normalisation. Without sentence vectors the passage cosine stands in for the best sentence.
DEFAULT_WEIGHTS: tuple[float, float, float, float] = (0.2, 0.3, 0.5, 0.2)
#: How each signal is put on a common scale over the candidate pool (z-score: one outlier does not squash the rest).
DEFAULT_NORMALISATION: Normalisation = "zscore"
#: The least spread each signal is divided by (see `normalise`): 0.1 for the two cosines, none for BM25 and
#: coverage. Cosines all within a few hundredths of each other are not the dense model's opinion but noise
#: (a pool of one article's few paragraphs, or a short question the model barely places: "Who is the
#: Strategic Affairs Minister?" scores the seed's paragraphs 0.26-0.36), and z-scores would stretch them
#: into as strong a vote as a wide BM25 margin. Paragraph R@1 on 1,500 SQuAD tune questions searched
#: within their own article / over all 2,067 tune paragraphs, and SciFact nDCG@10 as the check, for a
#: least cosine spread of 0 (plain z-scores): 0.862 / 0.843 / 0.733; 0.1: 0.865 / 0.844 / 0.733;
#: 0.15: 0.868 / 0.846 / 0.722; 0.2: 0.867 / 0.843; 0.3: 0.860 / 0.835. 0.15 gains 0.3 more on SQuAD
#: and costs SciFact 1.0, so 0.1.
DEFAULT_MIN_SPREADS: tuple[float, float, float, float] = (0.1, 0.0, 0.1, 0.0)
#: Candidates taken from the top of dense and of BM25; their union is the pool that is normalised and
#: re-ranked. Pools of 20-300 changed SQuAD recall@1 by < 0.01; 100 keeps the cost flat.
DEFAULT_POOL = 100
#: Reciprocal-rank-fusion constant from Cormack et al. (2009); only used by `rrf`.
RRF_K = 60


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


def normalise(
    scores: np.ndarray, method: Normalisation = DEFAULT_NORMALISATION, axis: int = -1, min_spread: float = 0.0
) -> np.ndarray:
    """Put scores on a common scale along ``axis``.

    ``minmax`` maps to [0, 1]; ``zscore`` subtracts the mean and divides by the
    standard deviation. z-scores are less at the mercy of one outlier at either
    end of the pool than min-max. A constant row (e.g. BM25 for a query with no
    known word) becomes all zeros, so it contributes nothing rather than NaN.

    Args:
        scores: float array; normalised independently along ``axis``.
        method: ``"minmax"`` or ``"zscore"``.
        axis: the axis holding one query's candidates.
        min_spread: the spread (range for ``minmax``, standard deviation for ``zscore``) is taken
            to be at least this, so that scores that hardly differ stay close after scaling.

    Returns:
        float32 array of the same shape.

    Raises:
        InputError: unknown ``method``.
    """
    x = np.asarray(scores, dtype=np.float64)
    if method == "minmax":
        lo = x.min(axis=axis, keepdims=True)
        span = np.maximum(x.max(axis=axis, keepdims=True) - lo, min_spread)
        out = np.divide(x - lo, span, out=np.zeros_like(x), where=span > 0)
    elif method == "zscore":
        mean = x.mean(axis=axis, keepdims=True)
        std = np.maximum(x.std(axis=axis, keepdims=True), min_spread)
        out = np.divide(x - mean, std, out=np.zeros_like(x), where=std > 0)
    else:
        raise InputError(f"unknown normalisation {method!r}; use 'minmax' or 'zscore'")
    return out.astype(np.float32)


def fuse_scores(
    signals: Sequence[np.ndarray],
    weights: Sequence[float],
    method: Normalisation = DEFAULT_NORMALISATION,
    min_spreads: Sequence[float] | None = None,
) -> np.ndarray:
    """Weighted sum of normalised scores of the same candidates.

    Args:
        signals: one array per retriever, each of shape ``(n_candidates,)`` (or ``(n_queries, n_candidates)``),
            element ``i`` of every array scoring the same candidate.
        weights: one per signal; they need not sum to 1 (only ratios matter for ranking).
        method: normalisation applied to each signal over the candidates first.
        min_spreads: one per signal, its least spread (`normalise`); default none.

    Returns:
        float32 fused scores, same shape as one signal.

    Raises:
        InputError: mismatched lengths or shapes.
    """
    if len(signals) != len(weights) or not signals:
        raise InputError(f"fuse_scores got {len(signals)} signals and {len(weights)} weights; pass one weight each")
    if min_spreads is None:
        min_spreads = [0.0] * len(signals)
    if len(min_spreads) != len(signals):
        raise InputError(f"fuse_scores got {len(signals)} signals and {len(min_spreads)} min_spreads; pass one each")
    shape = np.shape(signals[0])
    fused = np.zeros(shape, dtype=np.float32)
    for signal, weight, spread in zip(signals, weights, min_spreads, strict=True):
        if np.shape(signal) != shape:
            raise InputError(f"all signals must score the same candidates: shapes {shape} and {np.shape(signal)}")
        if weight:
            fused += np.float32(weight) * normalise(signal, method, min_spread=spread)
    return fused
