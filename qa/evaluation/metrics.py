"""Metrics, as pure functions tested against hand-computed examples.

* answers: SQuAD v1.1 exact match and token F1 with the official normalisation
  (lower case, no punctuation, no articles, single spaces), max over the gold answers;
* retrieval: recall@k, MRR@k and nDCG@k with binary relevance, as BEIR (pytrec_eval) computes them;
* confidence: a reliability table and the expected calibration error.
"""

from __future__ import annotations

import collections
import itertools
import math
from collections.abc import Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass

from qa.text import normalize_answer

# An answer is counted as right in the reliability table when its F1 is at least this.
ACCURATE_F1 = 0.5
CONFIDENCE_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

# ---------------------------------------------------------------------------
# Answer metrics (official SQuAD v1.1 evaluation script, restated)


def _token_f1(prediction: str, gold: str) -> float:
    predicted = normalize_answer(prediction).split()
    expected = normalize_answer(gold).split()
    common = collections.Counter(predicted) & collections.Counter(expected)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(predicted)
    recall = same / len(expected)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str | None, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer, else 0.0.

    No answer (None) scores 0.0; so does an empty list of golds.
    """
    if prediction is None:
        return 0.0
    normalized = normalize_answer(prediction)
    return float(any(normalized == normalize_answer(g) for g in golds))


def f1_score(prediction: str | None, golds: Sequence[str]) -> float:
    """SQuAD token F1 of ``prediction`` against the best-matching gold answer (0.0 for no answer)."""
    if prediction is None or not golds:
        return 0.0
    return max(_token_f1(prediction, g) for g in golds)


# ---------------------------------------------------------------------------
# Retrieval metrics (binary relevance, BEIR / trec_eval definitions)



def dedupe(labels: Iterable[Hashable]) -> list[Hashable]:
    """Keep the first (best-ranked) occurrence of every label, in order."""
    seen: set[Hashable] = set()
    out: list[Hashable] = []
    for label in labels:
        if label not in seen:
            seen.add(label)
            out.append(label)
    return out


def recall_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Share of the relevant items found in the top ``k`` of ``ranked`` (BEIR's recall@k).

    With one relevant item this is 1.0 when it is in the top ``k``, else 0.0.
    ``ranked`` must hold distinct items (see `dedupe`).
    """
    if not relevant:
        raise ValueError("recall is undefined without relevant items")
    return len(set(ranked[:k]) & set(relevant)) / len(set(relevant))


def reciprocal_rank(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int = 10) -> float:
    """1 / rank of the first relevant item within the top ``k``, or 0.0 (MRR@k averages this)."""
    wanted = set(relevant)
    for rank, item in enumerate(ranked[:k], start=1):
        if item in wanted:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int = 10) -> float:
    """nDCG@k with binary gains, as trec_eval's ``ndcg_cut`` (used by BEIR) computes it.

    DCG = Σ 1/log2(rank + 1) over relevant items in the top ``k``; the ideal DCG
    puts all relevant items (at most ``k``) first.
    """
    wanted = set(relevant)
    if not wanted:
        raise ValueError("nDCG is undefined without relevant items")
    dcg = sum(1.0 / math.log2(rank + 1) for rank, item in enumerate(ranked[:k], start=1) if item in wanted)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(wanted), k) + 1))
    return dcg / ideal


# ---------------------------------------------------------------------------
# Confidence


@dataclass(frozen=True)
class ReliabilityBin:
    """Answers whose confidence falls in [low, high): how many, and how often right (F1 ≥ 0.5)."""

    low: float
    high: float
    answers: int
    mean_confidence: float
    accuracy: float


def reliability(confidences: Sequence[float], f1s: Sequence[float]) -> tuple[ReliabilityBin, ...]:
    """Bin answered questions by confidence; accuracy is the share with F1 ≥ 0.5."""
    bins = []
    for low, high in itertools.pairwise(CONFIDENCE_BINS):
        last = high == CONFIDENCE_BINS[-1]
        inside = [(c, f) for c, f in zip(confidences, f1s, strict=True) if low <= c < high or (last and c == high)]
        bins.append(
            ReliabilityBin(
                low=low,
                high=high,
                answers=len(inside),
                mean_confidence=round(sum(c for c, _ in inside) / len(inside), 4) if inside else 0.0,
                accuracy=round(sum(f >= ACCURATE_F1 for _, f in inside) / len(inside), 4) if inside else 0.0,
            )
        )
    return tuple(bins)


def expected_calibration_error(confidences: Sequence[float], f1s: Sequence[float], bins: int = 10) -> float:
    """Expected calibration error: the answer-weighted mean gap between confidence and accuracy.

    Confidences fall into ``bins`` equal-width bins of [0, 1]; in each, |mean confidence -
    share with F1 >= 0.5| is weighted by the bin's share of the answers (Guo et al., 2017).
    """
    if not confidences:
        return 0.0
    groups: dict[int, list[tuple[float, float]]] = collections.defaultdict(list)
    for c, f in zip(confidences, f1s, strict=True):
        groups[min(bins - 1, max(0, int(c * bins)))].append((c, f))
    gap = sum(abs(sum(c for c, _ in group) - sum(f >= ACCURATE_F1 for _, f in group)) for group in groups.values())
    return gap / len(confidences)
