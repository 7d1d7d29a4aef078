"""Writes to a FAISS index folder: rows staged by key, committed as one new generation in corpus order."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.documents import Passage
from qa.embedding import Embedder, model_record
from qa.lexical import build_lexical, lexical_text
from qa.stores.faiss.ann import RETRAIN_FACTOR, build_ann, load_faiss, resolve_index_type
from qa.stores.faiss.generations import MANIFEST, State, ids_of, lock, pause, read_folder, read_json, save_folder
from qa.stores.faiss.generations import write_generation as _write_generation
from qa.stores.sentences import SentenceVectors
from qa.updates import passage_key

if TYPE_CHECKING:
    from qa.lexical import BM25


class FaissWriter:
    """The write half of `qa.stores.faiss.store.FaissStore` (which holds the state it replaces)."""

    embedder: Embedder
    path: Path | None
    manifest: dict[str, Any]
    passages: list[Passage]
    _vectors: np.ndarray
    _ids: np.ndarray
    _faiss: Any
    _spec: dict[str, Any]
    _lexical: BM25 | None
    _dim: int
    _sentences: SentenceVectors | None
    _staged: dict[int, tuple[Passage, np.ndarray, np.ndarray | None]]
    _deleted: set[int]

    if TYPE_CHECKING:

        def _rows_of_ids(self, ids: np.ndarray) -> np.ndarray: ...

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
        ) -> None: ...

        @property
        def lexical(self) -> BM25 | None: ...

    # -- Writes: staged by key, committed as one generation in corpus order -----

    def write(self, passages: Sequence[Passage], vectors: np.ndarray, sentences: Sequence[np.ndarray | None]) -> None:
        for p, v, s in zip(passages, np.asarray(vectors, dtype=np.float32), sentences, strict=True):
            self._staged[passage_key(p.passage_id)] = (p, v, s)

    def delete(self, keys: Sequence[int]) -> None:
        for key in keys:
            self._staged.pop(int(key), None)
            self._deleted.add(int(key))

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the writer lock; first catch up with any generation another writer committed."""
        self._staged, self._deleted = {}, set()
        try:
            if self.path is None:
                yield
                return
            with lock(self.path):
                manifest_path = self.path / MANIFEST
                if manifest_path.exists():
                    on_disk = read_json(manifest_path).get("generation")
                    if on_disk != self.manifest.get("generation"):
                        self._adopt(*read_folder(self.path, lambda record: None))
                yield
        finally:
            self._staged, self._deleted = {}, set()

    def _adopt(self, manifest: dict[str, Any], state: State) -> None:
        self.manifest = manifest
        self._set_state(
            state.passages, state.vectors, state.ids, state.ann, state.spec, state.lexical, state.dim, state.sentences
        )

    def commit(
        self, order: Sequence[str] | None, sources: list[str], *, index_type: str | None = None, batch_size: int = 64
    ) -> None:
        """Write the rows of ``order`` (staged ones, else the ones held) as the new state, if anything changed.

        Args:
            order: every passage id of the new state, in corpus order; None keeps the rows held (less
                the deleted ones) in their order, then the new ones in the order written.
            sources: the paths the corpus was read from.
            index_type: change the index type (vectors are reused); None keeps the current one.
            batch_size: sentences per embedding batch, where a new index type needs sentence vectors.
        """
        if order is None:
            kept = [p.passage_id for p in self.passages if passage_key(p.passage_id) not in self._deleted]
            order = [*kept, *(p.passage_id for p, _, _ in self._staged.values())]
            order = list(dict.fromkeys(order))
        keys = np.array([passage_key(p) for p in order], dtype=np.int64)
        rows = self._rows_of_ids(keys)
        passages: list[Passage] = []
        vectors = np.empty((len(keys), self._dim), dtype=np.float32)
        blocks: dict[str, np.ndarray] = {}
        for i, (key, row) in enumerate(zip(keys.tolist(), rows.tolist(), strict=True)):
            staged = self._staged.get(key)
            if staged is not None:
                passage, vectors[i], block = staged
                if block is not None:
                    blocks[passage.text] = block
            elif row >= 0:
                passage, vectors[i] = self.passages[row], self._vectors[row]
            else:
                raise KeyError(f"passage {order[i]} was neither written nor held")
            passages.append(passage)
        self._replace(passages, vectors, sources, index_type, blocks, batch_size)
        self._staged, self._deleted = {}, set()

    def _replace(
        self,
        passages: list[Passage],
        vectors: np.ndarray,
        sources: list[str],
        index_type: str | None,
        blocks: dict[str, np.ndarray],
        batch_size: int,
    ) -> None:
        """Compute the new state, write it (if saved), then switch to it; write nothing if nothing changed."""
        ids = ids_of(passages)
        requested = index_type or self._spec.get("requested", "flat")
        spec = resolve_index_type(requested, len(passages), self._dim)
        trained_on = self._spec.get("params", {}).get("trained_on")
        patch = (
            self._faiss is not None
            and spec["type"] != "flat"  # flat is copied in row order: identical to a fresh build, and cheap
            and requested == self._spec.get("requested")
            and spec["type"] == self._spec["type"]
            and (not trained_on or trained_on / RETRAIN_FACTOR <= len(passages) <= trained_on * RETRAIN_FACTOR)
        )
        if patch:
            # Keep the trained recipe (nlist, codes) rather than re-deriving it from the new count.
            spec = json.loads(json.dumps(self._spec))
        unchanged = passages == self.passages and spec == self._spec and sources == self.manifest.get("sources")
        if unchanged and (self.path is None or self._lexical is not None):
            return  # nothing changed: keep the current generation, write nothing
        ann = self._next_ann(vectors, ids, spec, patch)
        same_texts = len(passages) == len(self.passages) and all(
            a.text == b.text for a, b in zip(passages, self.passages, strict=True)
        )
        same_lexical = same_texts and all(
            lexical_text(a) == lexical_text(b) for a, b in zip(passages, self.passages, strict=True)
        )
        lexical = self._lexical if same_lexical else (build_lexical(passages) if passages else None)
        sentences: SentenceVectors | None
        if not _keeps_sentences(spec):
            sentences = None
        elif same_texts and self._sentences is not None:
            sentences = self._sentences
        else:
            known = self._sentences.by_text(self.passages) if self._sentences is not None else {}
            known.update(blocks)
            sentences = SentenceVectors.embed(passages, self.embedder, self._dim, known=known, batch_size=batch_size)
        state = State(passages, vectors, ids, ann, spec, lexical, self._dim, sentences)
        if self.path is not None:
            pause()
            model = model_record(self.embedder, self._dim, self.manifest.get("model"))
            self.manifest = _write_generation(self.path, model, sources, state)
        else:
            self.manifest = {**self.manifest, "sources": sources}
        self._set_state(passages, vectors, ids, ann, spec, lexical, self._dim, sentences)

    def _next_ann(self, vectors: np.ndarray, ids: np.ndarray, spec: dict[str, Any], patch: bool) -> Any:
        """The FAISS structure for the new rows: the old one patched (IVF; HNSW adds only), or rebuilt."""
        if not len(ids):
            return None
        if patch:
            removed = np.setdiff1d(self._ids, ids, assume_unique=True)
            added = ~np.isin(ids, self._ids, assume_unique=True)
            faiss = load_faiss()
            try:
                patched = faiss.clone_index(self._faiss)  # the live index stays intact if writing fails
                if len(removed):
                    patched.remove_ids(faiss.IDSelectorBatch(removed))
                if added.any():
                    patched.add_with_ids(np.ascontiguousarray(vectors[added]), ids[added])
                return patched
            except RuntimeError:
                # HNSW cannot remove vectors (FAISS raises): rebuild the graph from the exact vectors.
                pass
        return build_ann(vectors, ids, spec)

    # -- Disk --------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to the folder ``path`` (created, or replaced atomically).

        Raises:
            InputError: ``path`` is a non-empty folder that is not a qa index.
            IndexLockedError: another writer held the lock past the timeout.
        """
        folder = Path(path)
        state = State(
            self.passages, self._vectors, self._ids, self._faiss, self._spec, self.lexical, self._dim, self._sentences
        )
        self.manifest = save_folder(
            folder,
            model_record(self.embedder, self._dim, self.manifest.get("model")),
            list(self.manifest.get("sources") or []),
            state,
        )
        self.path = folder
        return folder


def _keeps_sentences(spec: dict[str, Any]) -> bool:
    # Sentence vectors hold ~4x as many vectors as the passages: worth it for exact indexes (at
    # most AUTO_FLAT_MAX passages unless asked), too much memory for the approximate ones.
    return spec["type"] == "flat"
