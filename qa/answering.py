"""Question + retrieved passages → `Answer` (span, evidence, confidence), or no answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from qa.documents import split_sentences
from qa.embedding import Embedder, get_embedder
from qa.retrieval import Hit

if TYPE_CHECKING:
    from qa.index import Index

# Below this retrieval score (cosine of question and best passage) the corpus is
# taken to hold no answer.
MIN_EVIDENCE_SCORE = 0.30


@dataclass(frozen=True)
class Answer:
    """The answer to a question, with the passages it rests on.

    Attributes:
        question: the question as asked.
        text: the answer, or None when the corpus holds no good enough answer.
        confidence: in [0, 1]; higher means more likely right.
        span: (start, end) of ``text`` within ``evidence[0].text``, or None.
        evidence: the passages consulted, the one holding the answer first.
    """

    question: str
    text: str | None
    confidence: float
    span: tuple[int, int] | None
    evidence: tuple[Hit, ...]


def answer(index: Index, question: str, *, k: int = 5, mode: str | None = None) -> Answer:
    """Answer ``question`` from ``index``: retrieve ``k`` passages, then read them."""
    return read(question, index.search(question, k=k, mode=mode), embedder=index.embedder)


def read(question: str, hits: Sequence[Hit], *, embedder: Embedder | None = None) -> Answer:
    """Answer ``question`` from given passages (no retrieval), e.g. to judge the reader alone.

    Args:
        question: the question.
        hits: the passages to read, best first (their scores are the retrieval evidence).
        embedder: the model for sentence similarity; the default model when None.
    """
    embedder = get_embedder(embedder)
    if not hits or hits[0].score < MIN_EVIDENCE_SCORE:
        confidence = max(0.0, hits[0].score) if hits else 0.0
        return Answer(question.strip(), None, round(confidence, 4), None, tuple(hits))
    best_hit, span, sentence_score = _best_sentence(embedder, question, hits[:3])
    evidence = (best_hit, *(h for h in hits if h is not best_hit))
    confidence = float(np.clip(sentence_score, 0.0, 1.0))
    return Answer(question.strip(), best_hit.text[span[0] : span[1]], round(confidence, 4), span, evidence)


def _best_sentence(embedder: Embedder, question: str, hits: Sequence[Hit]) -> tuple[Hit, tuple[int, int], float]:
    candidates = [(hit, span) for hit in hits for span in split_sentences(hit.text)]
    vectors = embedder.encode([question] + [hit.text[a:b] for hit, (a, b) in candidates])
    scores = vectors[1:] @ vectors[0]
    best = int(np.argmax(scores))
    hit, span = candidates[best]
    return hit, span, float(scores[best])
