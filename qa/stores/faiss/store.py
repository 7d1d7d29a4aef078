"""The FAISS index folder as a store: passages, their vectors in FAISS, BM25 and sentence vectors.

Rows are positions in corpus order. `commit` writes one new generation folder
(`qa.stores.faiss.generations`), with the rows in the order of a fresh build, so an updated
flat index is bit-for-bit the index a fresh build gives. Updates patch IVF indexes (remove +
add to the trained lists) and retrain them from the stored vectors once the corpus has grown
or shrunk `RETRAIN_FACTOR`-fold; HNSW graphs take additions, but FAISS cannot delete from
them, so a commit that removes or changes passages rebuilds the graph; flat indexes are
simply re-copied in row order.

**Filters** (`qa.filters.Filters`) become allowed rows (`select_rows`) before the top-k cut:
few rows are searched exactly with numpy, many with a FAISS ``IDSelectorBatch``; queries an
approximate index answers short are redone exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.documents import Passage
from qa.embedding import Embedder
from qa.stores.faiss.ann import (
    build_ann,
    load_faiss,
    resolve_index_type,
)
from qa.stores.faiss.generations import State, ids_of, read_folder
from qa.stores.faiss.search import FaissSearch
from qa.stores.faiss.writer import FaissWriter, _keeps_sentences
from qa.stores.sentences import SentenceVectors
from qa.updates import passage_key

if TYPE_CHECKING:
    from qa.lexical import BM25


class FaissStore(FaissSearch, FaissWriter):
    """Passages with their embeddings in FAISS, BM25 beside them; the FAISS half of `qa.index.Index`."""

    def __init__(
        self,
        passages: Sequence[Passage],
        vectors: np.ndarray,
        embedder: Embedder,
        *,
        path: str | os.PathLike[str] | None = None,
        manifest: dict[str, Any] | None = None,
        index_type: str | None = "flat",
        lexical: BM25 | None = None,
        sentences: SentenceVectors | None = None,
    ) -> None:
        """Hold ``passages`` and their ``vectors`` (row i is passage i) in an index of ``index_type``.

        Without ``sentences`` (see `SentenceVectors.embed`) hybrid search scores each passage's
        best sentence by the passage vector.

        Raises:
            ValueError: the counts differ, or two passages share an id.
        """
        if len(passages) != len(vectors):
            raise ValueError(f"{len(passages)} passages but {len(vectors)} vectors")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = int(vectors.shape[1]) if vectors.ndim == 2 else int(embedder.dim)
        spec = resolve_index_type(index_type, len(passages), dim)
        self.embedder = embedder
        self.path = Path(path) if path is not None else None
        self.manifest: dict[str, Any] = manifest or {}
        self._knobs: dict[str, Any] = {}
        self._staged: dict[int, tuple[Passage, np.ndarray, np.ndarray | None]] = {}
        self._deleted: set[int] = set()
        ids = ids_of(passages)
        ann = build_ann(vectors, ids, spec) if len(ids) else None
        self._set_state(list(passages), vectors, ids, ann, spec, lexical, dim, sentences)

    def _set_state(
        self,
        passages: list[Passage],
        vectors: np.ndarray,
        ids: np.ndarray,
        ann: Any,
        spec: dict[str, Any],
        lexical: BM25 | None,
        dim: int,
        sentences: SentenceVectors | None,
    ) -> None:
        """Replace the whole state at once, so a failed update leaves the previous state untouched."""
        if sentences is not None and len(sentences.offsets) != len(passages) + 1:
            raise ValueError(f"sentence vectors for {len(sentences.offsets) - 1} passages, not {len(passages)}")
        order = np.argsort(ids, kind="stable")
        if len(ids) and np.any(ids[order][1:] == ids[order][:-1]):
            raise ValueError("duplicate passage ids; every passage needs a distinct id")
        self.passages: list[Passage] = passages
        self._dim = dim
        self._ids = ids
        self._id_order = order
        self._ids_sorted = ids[order]
        self._faiss = ann
        self._spec = spec
        self._lexical = lexical
        self._sentences = sentences
        self._groups: dict[tuple[str, ...], list[int]] | None = None
        if ann is not None and spec["type"] == "flat":
            # Flat FAISS already holds the vectors in row order: view them instead of keeping a copy.
            sub = load_faiss().downcast_index(ann.index)
            self._vectors = load_faiss().rev_swig_ptr(sub.get_xb(), len(ids) * dim).reshape(len(ids), dim)
        else:
            self._vectors = vectors

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model_name(self) -> str:
        return str(self.manifest.get("model", {}).get("name") or self.embedder.name)

    @property
    def index_type(self) -> dict[str, Any]:
        """How the vectors are indexed: ``{"requested", "type", "factory", "params"}`` (a copy)."""
        return json.loads(json.dumps(self._spec))

    def __len__(self) -> int:
        return len(self.passages)

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"<qa.Index {len(self)} passages ({self._spec['type']}), model {self.model_name!r}{where}>"

    # -- Vectors -----------------------------------------------------------

    @property
    def vectors(self) -> np.ndarray:
        """All passage vectors, in passage order (a copy)."""
        return np.array(self._vectors, dtype=np.float32).reshape(len(self), self._dim)

    @property
    def ids(self) -> np.ndarray:
        """The FAISS id (`qa.updates.passage_key` of the passage id) of every row (a copy)."""
        return self._ids.copy()

    def row_of(self, passage_id: str) -> int | None:
        """The row of the passage with this id, or None if the index does not hold it."""
        rows = self._rows_of_passages([passage_id])
        return int(rows[0]) if rows[0] >= 0 else None

    def _rows_of_ids(self, ids: np.ndarray) -> np.ndarray:
        """Rows of FAISS ids (-1 for -1 or unknown ids); vectorised, no per-id dict."""
        if not len(self._ids):
            return np.full(ids.shape, -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self._ids_sorted, ids), 0, len(self._ids) - 1)
        found = (self._ids_sorted[pos] == ids) & (ids >= 0)
        return np.where(found, self._id_order[pos], -1).astype(np.int64)

    def passage_vectors(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of ``rows`` (a float32 copy of shape ``(len(rows), dim)``)."""
        return np.asarray(self._vectors[np.asarray(rows, dtype=np.int64)], dtype=np.float32).reshape(-1, self._dim)

    def _rows_of_passages(self, passage_ids: Sequence[str]) -> np.ndarray:
        return self._rows_of_ids(np.array([passage_key(p) for p in passage_ids], dtype=np.int64))

    @property
    def lexical_unavailable(self) -> str | None:
        return None

    @property
    def keeps_sentences(self) -> bool:
        return keeps_sentences(self._spec)

    def count(self, rows: Any = None) -> int:
        return len(self) if rows is None else len(rows)

    def passage_at(self, row: int) -> Passage:
        return self.passages[row]

    def close(self) -> None:
        """Nothing to release: the folder is read at load time (memory-mapped files close with the object)."""

    # -- Get by key ----------------------------------------------------------

    def held(self, doc_ids: Sequence[str] | None = None) -> list[Passage]:
        if doc_ids is None:
            return list(self.passages)
        wanted = set(doc_ids)
        return [p for p in self.passages if p.source.doc_id in wanted]

    def vectors_by_key(self, keys: Sequence[int]) -> dict[int, np.ndarray]:
        rows = self._rows_of_ids(np.asarray(keys, dtype=np.int64))
        found = rows >= 0
        vectors = self.passage_vectors(rows[found])
        return dict(zip(np.asarray(keys, dtype=np.int64)[found].tolist(), vectors, strict=True))

    def sentence_blocks(self, keys: Sequence[int]) -> dict[int, np.ndarray]:
        if self._sentences is None:
            return {}
        rows = self._rows_of_ids(np.asarray(keys, dtype=np.int64))
        return {int(k): self._sentences.block(int(r)) for k, r in zip(keys, rows.tolist(), strict=True) if r >= 0}

    def find_documents(self, targets: Sequence[str]) -> list[Passage]:
        """The passages that may belong to documents ``targets`` names (`qa.updates.names_document` decides)."""
        return list(self.passages)


def keeps_sentences(spec: dict[str, Any]) -> bool:
    """Whether an index of this recipe keeps sentence vectors (exact ones do; see `FaissWriter`)."""
    return _keeps_sentences(spec)


def open_folder(path: str | os.PathLike[str], embedder_for: Any) -> tuple[dict[str, Any], State, Embedder]:
    """Read an index folder; ``embedder_for(record)`` returns the query model, or raises when it does not fit."""
    got: list[Embedder] = []
    manifest, state = read_folder(Path(path), lambda record: got.append(embedder_for(record)))
    return manifest, state, got[-1]
