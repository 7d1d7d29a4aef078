"""The store interface: the few operations by passage key that every index backend provides.

Everything above it (`qa.retrieval`: dense, BM25, fusion and its signals; `qa.api`: search,
ask, update planning and reports) is written once against this interface and never asks which
store it talks to. Two stores implement it: the FAISS index folder (`qa.stores.faiss.store`)
and a Milvus collection (`qa.stores.milvus.store`).

**Rows.** Searches return *rows*: opaque int64 handles that go back into the store's other
operations (``passage_at``, ``passage_vectors``, ``lexical_scores``, ``best_sentence_scores``).
FAISS rows are positions ``0..len-1``; Milvus rows are the passage keys
(`qa.updates.passage_key`), so callers must not assume positions. ``-1`` pads (score
``-inf``) where fewer results exist.

**Selections.** ``select_rows(filters)`` returns what a filtered search may return (sorted rows
for FAISS, a boolean expression for Milvus), or None for everything; ``len()`` of a selection
counts the passages it allows.

**Writes.** ``write`` and ``delete`` stage rows by key; ``commit`` makes them durable (FAISS: one
new generation folder, rows in the order given; Milvus: the manifest, and the BM25 weights
re-derived from the new corpus statistics).

The operations, grouped:

==================  ===============================================================
write / delete      write or replace rows by passage key (vectors, sentence vectors, source); drop keys
commit              make staged writes durable, with the corpus order and the source paths
get                 passages, vectors and sentence vectors by key (``held``, ``vectors_by_key``, ``sentence_blocks``)
dense top-k         ``dense_search(vectors, k, selection)``
lexical top-k       ``lexical_search(queries, k, selection)``; ``lexical_scores`` of given rows
count               ``count(selection)``
close               release files and connections
==================  ===============================================================
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from qa.documents import Passage
    from qa.embedding import Embedder
    from qa.filters import Filters

#: Modes that need lexical (BM25) search from the store.
LEXICAL_MODES = ("bm25", "hybrid", "rrf")


@runtime_checkable
class Store(Protocol):
    """The operations `qa.retrieval` and `qa.api` use; both backends provide them (structural typing)."""

    embedder: Embedder
    manifest: dict[str, Any]

    @property
    def dim(self) -> int:
        """The vector dimension."""
        ...

    @property
    def model_name(self) -> str:
        """The embedding model the vectors were made with."""
        ...

    @property
    def lexical_unavailable(self) -> str | None:
        """None when the store can search BM25; else one line saying why not and what it needs."""
        ...

    @property
    def keeps_sentences(self) -> bool:
        """Whether the store keeps sentence vectors for the best-sentence signal."""
        ...

    def __len__(self) -> int:
        """Passages in the store."""
        ...

    # -- write --------------------------------------------------------------

    def write(self, passages: Sequence[Passage], vectors: np.ndarray, sentences: Sequence[np.ndarray | None]) -> None:
        """Write or replace these rows by passage key (``sentences[i]``: passage i's sentence vectors, or None)."""
        ...

    def delete(self, keys: Sequence[int]) -> None:
        """Drop the rows of these passage keys."""
        ...

    def commit(self, order: Sequence[str], sources: list[str], **options: Any) -> None:
        """Make staged writes durable; ``order`` lists every passage id in corpus order."""
        ...

    def writing(self) -> Any:
        """A context manager held around a read-plan-write update (the FAISS writer lock; no-op on Milvus)."""
        ...

    # -- get ------------------------------------------------------------------

    def held(self, doc_ids: Sequence[str] | None = None) -> list[Passage]:
        """The passages held (of these documents only, when given)."""
        ...

    def vectors_by_key(self, keys: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored passage vectors of the keys the store holds."""
        ...

    def sentence_blocks(self, keys: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored sentence vectors (``(n, dim)``, empty for one-sentence passages) of the keys that have them."""
        ...

    def passage_at(self, row: int) -> Passage:
        """The passage of a row a search returned."""
        ...

    def passage_vectors(self, rows: np.ndarray) -> np.ndarray:
        """The ``(len(rows), dim)`` float32 vectors of rows a search returned."""
        ...

    # -- search ----------------------------------------------------------------

    def select_rows(self, filters: Filters | Mapping[str, Any] | None) -> Any:
        """A selection of the passages ``filters`` allow (None: all); ``len()`` counts them."""
        ...

    def dense_search(
        self, vectors: np.ndarray, k: int, rows: Any = None, **knobs: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, rows)`` of the best ``k`` inner products among the selection, best first."""
        ...

    def lexical_search(self, queries: Sequence[str], k: int, rows: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, rows)`` of the best ``k`` BM25 scores among the selection, best first."""
        ...

    def lexical_scores(self, query: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """BM25 scores and IDF-weighted query-word coverage of these rows (zeros without BM25)."""
        ...

    def best_sentence_scores(self, vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Each row's best sentence cosine with ``vector`` (its passage cosine where no sentences are kept)."""
        ...

    def count(self, rows: Any = None) -> int:
        """Passages in the selection (all by default)."""
        ...

    def close(self) -> None:
        """Release files and connections."""
        ...


def iter_batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
