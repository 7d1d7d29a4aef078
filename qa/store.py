"""What an index offers its users, and which backend a target names.

`Store` here is the user-facing protocol of what `qa.build_index`/`qa.load_index` return
(search, ask, update, remove): `qa.index.Index` (a FAISS folder) or `qa.milvus.MilvusIndex`.
The storage interface both are built on is `qa.stores.base.Store`. Dispatching on a target
(`uses_milvus`) is a pure string test, so it never imports a backend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from qa.errors import InputError
from qa.stores.milvus.targets import MILVUS_LITE_SUFFIX, MILVUS_SCHEMES, is_milvus_target, normalise_url

if TYPE_CHECKING:
    import numpy as np

    from qa.answering import Answer
    from qa.documents import Passage
    from qa.embedding import Embedder
    from qa.filters import Filters
    from qa.retrieval import Hits
    from qa.updates import UpdateReport

__all__ = ["MILVUS_LITE_SUFFIX", "MILVUS_SCHEMES", "Store", "is_milvus_target", "normalise_url", "uses_milvus"]


@runtime_checkable
class Store(Protocol):
    """The operations both index backends provide (structural: no base class to inherit)."""

    embedder: Embedder
    manifest: dict[str, Any]
    last_update: UpdateReport | None

    @property
    def dim(self) -> int:
        """The vector dimension."""
        ...

    @property
    def model_name(self) -> str:
        """The embedding model the vectors were made with."""
        ...

    @property
    def passages(self) -> Sequence[Passage]:
        """The passage of a row returned by `dense_search` is ``passages[row]``."""
        ...

    def __len__(self) -> int:
        """Passages in the store."""
        ...

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Unit ``(n, dim)`` float32 query vectors, refused if the model does not fit the store."""
        ...

    def vectors_of(self, passage_ids: Sequence[str]) -> np.ndarray:
        """The stored ``(n, dim)`` vectors of these passages (so answering need not embed them again)."""
        ...

    def sentence_vectors_of(self, passage_ids: Sequence[str]) -> list[np.ndarray | None]:
        """Each passage's stored sentence vectors, or None where the store keeps none."""
        ...

    def select_rows(self, filters: Filters | Mapping[str, Any] | None) -> Any:
        """A selection of the passages ``filters`` allow (None: all), for `dense_search`; ``len()`` counts them."""
        ...

    def dense_search(self, vectors: np.ndarray, k: int, rows: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, rows)`` of the best ``k`` inner products among the selected rows, best first."""
        ...

    def search(
        self, query: str, k: int = 5, *, mode: str | None = None, filters: Filters | None = None, **options: Any
    ) -> Hits:
        """The ``k`` passages that best match ``query``."""
        ...

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 5,
        *,
        mode: str | None = None,
        filters: Filters | None = None,
        **options: Any,
    ) -> list[Hits]:
        """`search` for many queries at once."""
        ...

    def ask(
        self, question: str, *, k: int = 5, mode: str | None = None, filters: Filters | None = None, **options: Any
    ) -> Answer:
        """Answer ``question`` from the passages."""
        ...

    def update(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None) -> UpdateReport:
        """Make the store hold exactly the passages of ``paths``, embedding only new texts."""
        ...

    def remove(self, targets: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> UpdateReport:
        """Remove documents by doc id, file path or folder."""
        ...


def uses_milvus(target: str | os.PathLike[str] | None, backend: str | None = None) -> bool:
    """Whether `qa.build_index`/`qa.load_index` should hand ``target`` to `qa.milvus`.

    Args:
        target: the index location.
        backend: ``"milvus"`` or ``"faiss"`` to choose explicitly; None decides by `is_milvus_target`.

    Raises:
        InputError: an unknown backend.
    """
    if backend is None:
        return is_milvus_target(target)
    if backend not in ("faiss", "milvus"):
        raise InputError(f"unknown backend {backend!r}; use 'faiss' (an index folder) or 'milvus'")
    return backend == "milvus"
