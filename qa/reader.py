"""What a reader is: anything that finds answer spans to a question inside given passages.

`Span` is one answer candidate and `Reader` the protocol every reader follows. The default
reader is the span model fine-tuned here (`qa.span_reader.SpanReader`); `TransformersReader`
plugs in a user's own extractive QA model folder instead.

torch and transformers load only when a `TransformersReader` is made, so ``import qa.reader``
stays instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from qa.documents import split_sentences
from qa.errors import InputError, ModelNotFoundError
from qa.text import normalize_answer


@dataclass(frozen=True)
class Span:
    """One answer candidate.

    Attributes:
        text: the answer text, exactly ``passages[passage_index][start:end]``.
        start: character offset of the answer in its passage.
        end: character offset one past the answer.
        score: in [0, 1]; roughly the probability that the answer is right.
        passage_index: which of the given passages the answer comes from.
        sentence: (start, end) of the sentence holding the answer, in the same passage (for a
            name read in place of "he" or "she", `qa.coreference`, the pronoun's sentence).
        logit: the model's start + end logit, or None for a reader without one. Unlike
            ``score``, which is normalised within the model's window, it compares spans across
            the windows of a long passage.
    """

    text: str
    start: int
    end: int
    score: float
    passage_index: int
    sentence: tuple[int, int]
    logit: float | None = None


class Reader(Protocol):
    """Anything that extracts answer spans from passages."""

    def read(
        self,
        question: str,
        passages: Sequence[str],
        passage_scores: Sequence[float] | None = None,
        *,
        top_n: int = 5,
        per_passage: bool = False,
        question_vector: np.ndarray | None = None,
        sentence_vectors: Sequence[np.ndarray | None] | None = None,
    ) -> list[Span]:
        """Best answer candidates over all passages, best first.

        Answer texts are distinct (after SQuAD normalisation), or with ``per_passage``
        distinct within each passage, so the same answer may come back once per passage.
        ``question_vector`` and ``sentence_vectors`` (per passage, its sentences' unit vectors in
        `qa.documents.split_sentences` order, or None) are embeddings the caller already has;
        a reader that uses embeddings takes them instead of computing them.
        """
        ...


# --------------------------------------------------------------------------- transformers adapter


class TransformersReader:
    """An extractive QA model (``AutoModelForQuestionAnswering``) from a local folder, loaded offline."""

    def __init__(self, path: str, *, max_length: int = 384, stride: int = 128, max_answer_tokens: int = 30) -> None:
        """Load the tokenizer and model.

        Args:
            path: a folder holding the model's config, weights and tokenizer files.
            max_length: tokens per window (question + passage piece).
            stride: overlap between consecutive windows of a long passage, in tokens.
            max_answer_tokens: longest answer considered.

        Raises:
            ModelNotFoundError: the folder does not exist or holds no loadable model.
        """
        import os

        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ModelNotFoundError(f"QA model {path!r} is not a local folder; qa never downloads models")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self._model = AutoModelForQuestionAnswering.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(f"cannot load a QA model from {folder}: {exc}") from exc
        if not getattr(self._tokenizer, "is_fast", False):
            raise ModelNotFoundError(f"{folder} needs a fast tokenizer (tokenizer.json) for character offsets")
        self._model.eval()
        self._max_length = max_length
        self._stride = stride
        self._max_answer = max_answer_tokens

    def read(
        self,
        question: str,
        passages: Sequence[str],
        passage_scores: Sequence[float] | None = None,
        *,
        top_n: int = 5,
        per_passage: bool = False,
        question_vector: np.ndarray | None = None,
        sentence_vectors: Sequence[np.ndarray | None] | None = None,
    ) -> list[Span]:
        """Best answer candidates over all passages, best first (distinct answer texts).

        Args:
            question: the question.
            passages: texts that may hold the answer.
            passage_scores: ignored beyond tie-breaking; the model scores spans itself.
            top_n: how many spans to return at most.
            per_passage: distinct answer texts within each passage rather than overall.
            question_vector, sentence_vectors: ignored (the model reads the text itself).

        Returns:
            Up to ``top_n`` spans; ``score`` is the span's probability under the model's
            start and end softmaxes within its window (not calibrated on data).
        """
        import torch

        if not question.strip():
            raise InputError("the question is empty")
        found: list[tuple[float, int, int, int, float]] = []
        for pi, text in enumerate(passages):
            if not text.strip():
                continue
            enc = self._tokenizer(
                question,
                text,
                truncation="only_second",
                max_length=self._max_length,
                stride=self._stride,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
                padding=True,
                return_tensors="pt",
            )
            offsets = enc.pop("offset_mapping").tolist()
            enc.pop("overflow_to_sample_mapping", None)
            seq_ids = [enc.sequence_ids(i) for i in range(len(offsets))]
            with torch.no_grad():
                inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
                out = self._model(**inputs)
            start_p = torch.softmax(out.start_logits, dim=-1).numpy()
            end_p = torch.softmax(out.end_logits, dim=-1).numpy()
            start_l, end_l = out.start_logits.numpy(), out.end_logits.numpy()
            for w in range(len(offsets)):
                ctx = [i for i, s in enumerate(seq_ids[w]) if s == 1]
                if not ctx:
                    continue
                lo, hi = ctx[0], ctx[-1] + 1
                sp, ep = start_p[w][lo:hi], end_p[w][lo:hi]
                # Outer product restricted to end >= start and a maximum length.
                grid = np.triu(np.outer(sp, ep)) - np.triu(np.outer(sp, ep), k=self._max_answer)
                flat = np.argsort(-grid, axis=None)[: top_n * 3]
                for f in flat:
                    i, j = divmod(int(f), grid.shape[1])
                    prob = float(grid[i, j])
                    a, b = offsets[w][lo + i][0], offsets[w][lo + j][1]
                    if prob <= 0 or b <= a:
                        continue
                    found.append((prob, pi, int(a), int(b), float(start_l[w][lo + i] + end_l[w][lo + j])))
        found.sort(key=lambda x: -x[4])  # by logit, as `qa.span_reader.SpanReader` ranks
        spans: list[Span] = []
        seen: set[tuple[str, int]] = set()
        for prob, pi, a, b, logit in found:
            text = passages[pi]
            key = (normalize_answer(text[a:b]) or text[a:b], pi if per_passage else -1)
            if key in seen:
                continue
            seen.add(key)
            sentence = next(((s, e) for s, e in split_sentences(text) if s <= a < e), (0, len(text)))
            spans.append(Span(text[a:b], a, b, min(1.0, max(0.0, prob)), pi, sentence, logit))
            if len(spans) >= top_n:
                break
        return spans
