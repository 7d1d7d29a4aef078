"""Question + retrieved passages → `Answer` (span, evidence, confidence), or no answer.

A reader (`qa.reader`) proposes answer spans inside the best passages, each with
the probability that it is right *if the passage holds the answer*. Whether the
corpus holds an answer at all is a second question, answered by how closely the
question matches the passages (the embedding model's cosine, which unlike fused
retrieval scores means the same thing in every mode). The confidence combines
the two, and below `NO_ANSWER_BELOW` `Answer.text` is None.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qa.embedding import Embedder, get_embedder
from qa.retrieval import Hit

if TYPE_CHECKING:
    from qa.index import Index
    from qa.reader import Reader, Span

# How many of the retrieved passages the reader reads. More finds answers that
# retrieval ranked lower, at ~30 ms per extra passage (benchmarks/latency.py).
READ_PASSAGES = 5
ALTERNATIVES = 4

CALIBRATION_FILE = Path(__file__).resolve().parent / "data" / "no-answer.json"
# Used only until scripts/fit_no_answer.py has written CALIBRATION_FILE.
_FALLBACK_CALIBRATION: dict[str, Any] = {
    "weights": {"span": 4.0, "cosine": 6.0, "max_cosine": 0.0},
    "bias": -4.5,
    "threshold": 0.2,
}


@dataclass(frozen=True)
class Alternative:
    """Another plausible answer, with the passage it comes from."""

    text: str
    confidence: float
    span: tuple[int, int]
    evidence: Hit


@dataclass(frozen=True)
class Answer:
    """The answer to a question, with the passages it rests on.

    Attributes:
        question: the question as asked.
        text: the answer, or None when the corpus holds no good enough answer.
        confidence: in [0, 1]; roughly the probability that ``text`` is right
            (for a None answer: that of the best rejected candidate).
        span: (start, end) of ``text`` within ``evidence[0].text``, or None.
        evidence: the passages consulted, the one holding the answer first.
        alternatives: other candidate answers, best first, each with its passage.
    """

    question: str
    text: str | None
    confidence: float
    span: tuple[int, int] | None
    evidence: tuple[Hit, ...]
    alternatives: tuple[Alternative, ...] = ()


def _calibration() -> dict[str, Any]:
    if CALIBRATION_FILE.exists():
        data: dict[str, Any] = json.loads(CALIBRATION_FILE.read_text(encoding="utf-8"))
        return data
    return _FALLBACK_CALIBRATION


def confidence(span_score: float, cosine: float, max_cosine: float) -> float:
    """P(answer right) from the reader's span score and the question–passage cosines.

    A logistic model fitted by ``scripts/fit_no_answer.py`` on SQuAD tune articles
    only, with unanswerable questions made by removing the question's article
    from the corpus.
    """
    cal = _calibration()
    w = cal["weights"]
    z = cal["bias"] + w["span"] * span_score + w["cosine"] * cosine + w["max_cosine"] * max_cosine
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def answer(
    index: Index,
    question: str,
    *,
    k: int = 5,
    mode: str | None = None,
    reader: Reader | None = None,
    **search_options: Any,
) -> Answer:
    """Answer ``question`` from ``index``: retrieve ``k`` passages, then read the best of them."""
    hits = index.search(question, k=k, mode=mode, **search_options)
    return read(question, hits, reader=reader, embedder=index.embedder)


def candidate_features(
    question: str,
    hits: Sequence[Hit],
    *,
    reader: Reader | None = None,
    embedder: Embedder | None = None,
) -> list[tuple[Span, tuple[float, float, float]]]:
    """The reader's spans over ``hits``, each with the inputs of `confidence`:
    (span score, cosine of the question and the span's passage, best such cosine)."""
    if not hits:
        return []
    if reader is None:
        from qa.reader import default_reader

        reader = default_reader()
    embedder = get_embedder(embedder)
    vectors = embedder.encode([question, *(h.text for h in hits)])
    cosines = (vectors[1:] @ vectors[0]).astype(float)
    max_cosine = float(cosines.max())
    spans = reader.read(question, [h.text for h in hits], cosines.tolist(), top_n=ALTERNATIVES + 1)
    return [(s, (s.score, float(cosines[s.passage_index]), max_cosine)) for s in spans]


def read(
    question: str,
    hits: Sequence[Hit],
    *,
    reader: Reader | None = None,
    embedder: Embedder | None = None,
    passages: int = READ_PASSAGES,
) -> Answer:
    """Answer ``question`` from given passages (no retrieval), e.g. to judge the reader alone.

    Args:
        question: the question.
        hits: the passages to read, best first.
        reader: extracts answer spans; the default `qa.reader.FeatureReader` when None.
        embedder: the model for question–passage similarity; the default model when None.
        passages: how many of ``hits`` to read.
    """
    question = question.strip()
    hits = tuple(hits)
    if not hits:
        return Answer(question, None, 0.0, None, ())
    read_hits = hits[:passages]
    candidates = candidate_features(question, read_hits, reader=reader, embedder=embedder)
    scored = sorted(((confidence(*features), s) for s, features in candidates), key=lambda pair: -pair[0])
    if not scored:
        return Answer(question, None, 0.0, None, hits)
    best_confidence, best = scored[0]
    best_hit = read_hits[best.passage_index]
    evidence = (best_hit, *(h for h in hits if h is not best_hit))
    alternatives = tuple(
        Alternative(s.text, round(c, 4), (s.start, s.end), read_hits[s.passage_index]) for c, s in scored[1:]
    )
    if best_confidence < float(_calibration()["threshold"]):
        return Answer(question, None, round(best_confidence, 4), None, evidence, alternatives)
    return Answer(question, best.text, round(best_confidence, 4), (best.start, best.end), evidence, alternatives)

