"""Sentence vectors for the best-sentence signal, kept by every store beside its passage vectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from qa.documents import Passage
from qa.embedding import Embedder


@dataclass(frozen=True)
class SentenceVectors:
    """The vectors of every sentence of the multi-sentence passages, passage by passage.

    Row ``r``'s sentences are ``vectors[offsets[r]:offsets[r + 1]]``, in text order; a
    one-sentence passage has none stored (its passage vector is its sentence's vector).
    float16: it halves the memory of the biggest array in the index, and the best-sentence
    signal is a ranking feature, for which 3 significant digits are plenty.
    """

    offsets: np.ndarray
    vectors: np.ndarray

    def block(self, row: int) -> np.ndarray:
        return np.asarray(self.vectors[self.offsets[row] : self.offsets[row + 1]])

    @classmethod
    def embed(
        cls,
        passages: Sequence[Passage],
        embedder: Embedder,
        dim: int,
        *,
        known: Mapping[str, np.ndarray] | None = None,
        progress: bool = False,
        batch_size: int = 64,
    ) -> SentenceVectors:
        """Embed the sentences of ``passages``; ``known`` maps passage text → its sentence block to reuse.

        The model is touched only when some sentence is new (so removing documents needs no model).
        """
        from qa.documents import split_sentences

        known = known or {}
        blocks: list[np.ndarray | list[str]] = []
        for p in passages:
            reused = known.get(p.text)
            if reused is not None:
                blocks.append(reused)
                continue
            spans = split_sentences(p.text)
            blocks.append([p.text[a:b] for a, b in spans] if len(spans) > 1 else [])
        fresh = list(dict.fromkeys(t for b in blocks if isinstance(b, list) for t in b))
        encoded = embedder.encode(fresh, batch_size=batch_size, progress=progress) if fresh else np.zeros((0, dim))
        # float16 now, not after gathering: the gathered copies are the biggest arrays of a large build.
        encoded = encoded.astype(np.float16)
        at = {t: i for i, t in enumerate(fresh)}
        parts = [
            encoded[[at[t] for t in b]].reshape(-1, dim) if isinstance(b, list) else b.reshape(-1, dim) for b in blocks
        ]
        offsets = np.zeros(len(passages) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(x) for x in parts])
        empty = np.zeros((0, dim), dtype=np.float16)
        vectors = np.concatenate(parts).astype(np.float16, copy=False) if parts else empty
        return cls(offsets, vectors)

    def by_text(self, passages: Sequence[Passage]) -> dict[str, np.ndarray]:
        """Passage text → its sentence block, for reuse by `embed` after an update."""
        return {p.text: self.block(row) for row, p in enumerate(passages)}

    @classmethod
    def from_blocks(cls, blocks: Sequence[np.ndarray], dim: int) -> SentenceVectors:
        """Join per-passage blocks (``(n_sentences, dim)``, empty for one-sentence passages)."""
        offsets = np.zeros(len(blocks) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(b) for b in blocks])
        parts = [np.asarray(b, dtype=np.float16).reshape(-1, dim) for b in blocks]
        vectors = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float16)
        return cls(offsets, vectors)

    def blocks(self) -> list[np.ndarray]:
        """Every passage's block, in row order."""
        return [self.block(row) for row in range(len(self.offsets) - 1)]
