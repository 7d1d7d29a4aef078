"""What every index backend offers, and which backend a target names.

Retrieval, answering, evaluation and the CLI talk to a `Store`: the FAISS folder
(`qa.index.Index`) or a Milvus collection (`qa.milvus.MilvusIndex`). The protocol is
the few operations both provide; nothing here imports a backend.

The contract around rows: `select_rows` returns a *selection* (sorted row numbers for
FAISS, a Milvus boolean expression for Milvus) that goes back into `dense_search` and
whose ``len()`` is the number of passages allowed (not free on Milvus: a count query);
`dense_search` returns row numbers whose passages are
``store.passages[row]``; ``-1`` pads (score ``-inf``) where fewer results exist.
FAISS rows are positions ``0..len-1``; Milvus rows are the int64 primary keys
(`qa.index.faiss_id` of the passage id), so callers must not assume positions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from qa.answering import Answer
    from qa.documents import Passage
    from qa.embedding import Embedder
    from qa.filters import Filters
    from qa.updates import UpdateReport
    from qa.retrieval import Hit

#: URL schemes of a Milvus server or cluster: ``milvus://HOST:PORT/COLLECTION`` (plain gRPC)
#: and ``milvus+https://HOST:PORT/COLLECTION`` (TLS, e.g. the hosted service).
MILVUS_SCHEMES = ("milvus://", "milvus+https://")
#: A local path with this suffix is a Milvus Lite database (in-process, one file/folder).
MILVUS_LITE_SUFFIX = ".db"


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
    ) -> list[Hit]:
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
    ) -> list[list[Hit]]:
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


def is_milvus_target(target: str | os.PathLike[str] | None) -> bool:
    """True when ``target`` names a Milvus index (a ``milvus://`` URL or a Milvus Lite ``*.db`` path).

    Pure string test, so dispatching on it never imports pymilvus.
    """
    if target is None:
        return False
    text = normalise_url(os.fspath(target))
    return text.startswith(MILVUS_SCHEMES) or text.rstrip("/").endswith(MILVUS_LITE_SUFFIX)


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
        from qa.errors import InputError

        raise InputError(f"unknown backend {backend!r}; use 'faiss' (an index folder) or 'milvus'")
    return backend == "milvus"


def normalise_url(text: str) -> str:
    """``milvus:/host:port/c`` (what ``str(Path("milvus://host:port/c"))`` gives) back to ``milvus://…``."""
    for scheme in MILVUS_SCHEMES:
        single = scheme[:-1]
        if text.startswith(single) and not text.startswith(scheme):
            return scheme + text[len(single) :]
    return text
