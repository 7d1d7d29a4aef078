"""What every index offers its users, written once over the store interface (`qa.stores.base.Store`).

`qa.index.Index` (a FAISS folder) and `qa.milvus.MilvusIndex` (a Milvus collection) are
this class mixed into their store: search, search_batch and ask (through `qa.retrieval`
and `qa.answering`), updates (`qa.updates` decides what to write, drop and embed; the
store writes it) and the query-side model check. Nothing here knows which store it runs on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.documents import Passage, load_passages
from qa.embedding import embed_passages
from qa.errors import InputError, ModelMismatchError
from qa.paths import source_path
from qa.retrieval import DEFAULT_MODE, Hits, search
from qa.stores.sentences import SentenceVectors
from qa.updates import UpdateReport, names_document, passage_key, plan_update, report

if TYPE_CHECKING:
    from qa.answering import Answer
    from qa.embedding import Embedder
    from qa.filters import Filters

Paths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


class IndexAPI:
    """Search, ask and update, for any store this class is mixed into (it must come first in the bases)."""

    last_update: UpdateReport | None = None

    if TYPE_CHECKING:
        # Provided by the store this class is mixed into (`qa.stores.base.Store`).
        embedder: Embedder
        manifest: dict[str, Any]

        @property
        def dim(self) -> int: ...

        @property
        def model_name(self) -> str: ...

        @property
        def lexical_unavailable(self) -> str | None: ...

        @property
        def keeps_sentences(self) -> bool: ...

        def __len__(self) -> int: ...

        def writing(self) -> Any: ...

        def held(self, doc_ids: Sequence[str] | None = None) -> list[Passage]: ...

        def find_documents(self, targets: Sequence[str]) -> list[Passage]: ...

        def vectors_by_key(self, keys: Sequence[int]) -> dict[int, np.ndarray]: ...

        def sentence_blocks(self, keys: Sequence[int]) -> dict[int, np.ndarray]: ...

        def write(
            self, passages: Sequence[Passage], vectors: np.ndarray, sentences: Sequence[np.ndarray | None]
        ) -> None: ...

        def delete(self, keys: Sequence[int]) -> None: ...

        def commit(self, order: Sequence[str] | None, sources: list[str], **options: Any) -> None: ...

    # -- Queries -----------------------------------------------------------

    def default_mode(self) -> str:
        """``hybrid`` where the store can search BM25, else ``dense``."""
        return DEFAULT_MODE if self.lexical_unavailable is None else "dense"

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Unit ``(n, dim)`` float32 query vectors, refused if the model does not fit the index."""
        vectors = self.embedder.encode(list(queries), progress=False)
        if vectors.shape[1] != self.dim:
            raise ModelMismatchError(
                f"model {self.embedder.name!r} makes {vectors.shape[1]}-d vectors but this index holds "
                f"{self.dim}-d vectors from {self.model_name!r}; load it with that model or rebuild the index"
            )
        return vectors

    def search(
        self, query: str, k: int = 5, *, mode: str | None = None, filters: Filters | None = None, **options: Any
    ) -> Hits:
        """The ``k`` passages that best match ``query``, best first.

        Args:
            query: the query text.
            k: hits wanted.
            mode: retrieval mode (see `qa.retrieval.MODES`); by default `default_mode`.
            filters: only passages whose source matches; applied before the top-k cut, so
                ``k`` hits come back whenever ``k`` passages match.
            options: passed to `qa.retrieval.search` (a reranker; the search knobs
                ``ef_search``, ``nprobe``, ``k_factor`` of approximate index types).

        Raises:
            InputError: the query is empty, ``k`` is not a positive integer, or the store lacks the mode.
        """
        if not isinstance(query, str):
            raise InputError("search takes one query string; use search_batch() for a list")
        return self.search_batch([query], k, mode=mode, filters=filters, **options)[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 5,
        *,
        mode: str | None = None,
        filters: Filters | None = None,
        **options: Any,
    ) -> list[Hits]:
        """`search` for many queries at once (embedded in one batch)."""
        return search(self, queries, k, mode=mode or self.default_mode(), filters=filters, **options)  # type: ignore[arg-type]  # self is a store

    def ask(
        self, question: str, *, k: int = 5, mode: str | None = None, filters: Filters | None = None, **options: Any
    ) -> Answer:
        """Answer ``question`` from the passages, with evidence and confidence.

        ``Answer.text`` is None when the corpus holds no good enough answer. ``filters``
        and ``options`` are as for `search`.
        """
        from qa.answering import answer

        extra: dict[str, Any] = {} if filters is None else {"filters": filters}
        return answer(self, question, k=k, mode=mode or self.default_mode(), **extra, **options)

    def vectors_of(self, passage_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of these passages, ``(len(passage_ids), dim)`` float32.

        Raises:
            KeyError: a passage id the index does not hold.
        """
        keys = [passage_key(p) for p in passage_ids]
        found = self.vectors_by_key(keys)
        for pid, key in zip(passage_ids, keys, strict=True):
            if key not in found:
                raise KeyError(f"passage {pid} is not in this index")
        return np.array([found[key] for key in keys], dtype=np.float32).reshape(len(keys), self.dim)

    def sentence_vectors_of(self, passage_ids: Sequence[str]) -> list[np.ndarray | None]:
        """Each passage's sentence vectors, ``(n_sentences, dim)`` float32 in `split_sentences` order.

        None for a passage of an index that keeps no sentence vectors.
        """
        keys = [passage_key(p) for p in passage_ids]
        blocks = self.sentence_blocks(keys)
        singles = [k for k in keys if k in blocks and not len(blocks[k])]
        passage_vectors = self.vectors_by_key(singles) if singles else {}
        out: list[np.ndarray | None] = []
        for key in keys:
            block = blocks.get(key)
            if block is None:
                out.append(None)
            elif len(block):
                out.append(np.asarray(block, dtype=np.float32))
            else:  # one sentence: its vector is the passage's
                out.append(np.asarray(passage_vectors[key], dtype=np.float32).reshape(1, -1))
        return out

    # -- Updates -----------------------------------------------------------

    def update(
        self, paths: Paths | None = None, *, progress: bool = False, batch_size: int = 64, **options: Any
    ) -> UpdateReport:
        """Bring the index to exactly what a fresh build of ``paths`` would give, embedding only new texts.

        Documents whose files are gone are removed; changed ones get their new passages;
        passages whose text the index already holds reuse its vectors.

        Args:
            paths: the files and folders that make up the corpus now; by default the recorded ones.
            progress: show a progress bar while embedding.
            batch_size: passages per embedding batch.
            options: for the store's commit (FAISS: ``index_type``, to change the index type).

        Returns:
            What changed (also kept in ``last_update``).

        Raises:
            InputError: a path is missing or holds no readable text.
            IndexLockedError: another writer held a FAISS folder's lock past the timeout.
        """
        paths = self._paths(paths)
        with self.writing():
            wanted = self._load(paths)
            order = [p.passage_id for p in wanted]
            sources = [source_path(p) for p in paths]
            return self._sync(self.held(), wanted, sources, order, progress, batch_size, options)

    def add(self, paths: Paths, *, progress: bool = False, batch_size: int = 64) -> UpdateReport:
        """Add the documents of ``paths``, replacing documents of the same id; leave all others alone.

        Only the rows of those documents are read and written on Milvus, so this scales with the
        documents added, not with the collection.

        Raises:
            InputError: a path is missing or holds no readable text.
        """
        paths = self._paths(paths)
        with self.writing():
            wanted = self._load(paths)
            held = self.held(list(dict.fromkeys(p.source.doc_id for p in wanted)))
            sources = list(dict.fromkeys([*self.manifest.get("sources", []), *(source_path(p) for p in paths)]))
            return self._sync(held, wanted, sources, None, progress, batch_size, {})

    def remove(self, targets: Paths) -> UpdateReport:
        """Remove documents by doc id, file path, or folder path (everything under it).

        A later `update` from the same paths adds the documents back if their files still exist.

        Returns:
            What changed (``removed`` counts documents).

        Raises:
            InputError: no document matches a target (the message lists what was given).
        """
        if isinstance(targets, (str, os.PathLike)):
            targets = [targets]
        wanted = [os.fspath(t) for t in targets]
        with self.writing():
            matched, missing = [], set(wanted)
            for p in self.find_documents(wanted):
                hit = next((t for t in wanted if names_document(t, p.source)), None)
                if hit is not None:
                    matched.append(p)
                    missing.discard(hit)
            if missing:
                raise InputError(
                    f"no document in the index matches {', '.join(sorted(missing))}; give a doc id, "
                    "a file path or a folder as the index shows them (qa search --json prints both)"
                )
            sources = list(self.manifest.get("sources") or [])
            return self._sync(matched, [], sources, None, False, 64, {})

    def _paths(self, paths: Paths | None) -> list[str | os.PathLike[str]]:
        if paths is None:
            paths = list(self.manifest.get("sources") or [])
            if not paths:
                raise InputError("this index does not record its source paths; pass the paths to update from")
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        return list(paths)

    def _load(self, paths: Sequence[str | os.PathLike[str]]) -> list[Passage]:
        embedder = self.embedder
        return load_passages(paths, max_tokens=embedder.max_tokens, count_tokens=embedder.count_tokens)

    def _sync(
        self,
        held: Sequence[Passage],
        wanted: Sequence[Passage],
        sources: list[str],
        order: Sequence[str] | None,
        progress: bool,
        batch_size: int,
        options: dict[str, Any],
    ) -> UpdateReport:
        """Write, drop and embed what `qa.updates.plan_update` says, commit, and report."""
        plan = plan_update(held, wanted)
        dim: int = self.dim
        stored = self.vectors_by_key(list(dict.fromkeys(plan.reuse.values())))
        by_text = {text: stored[key] for text, key in plan.reuse.items() if key in stored}
        fresh = [t for t in dict.fromkeys(p.text for p in plan.write) if t not in by_text]
        keep_sentences = bool(plan.write) and self.keeps_sentences
        new_blocks: dict[str, np.ndarray] = {}
        if fresh:
            # One forward pass gives each new passage's vector and its sentences' vectors.
            embedded, new_blocks = embed_passages(
                self.embedder,
                fresh,
                with_sentences=keep_sentences,
                batch_size=batch_size,
                progress=progress,
            )
            if embedded.shape[1] != dim:
                raise ModelMismatchError(
                    f"model {self.embedder.name!r} makes {embedded.shape[1]}-d vectors but this index holds "
                    f"{dim}-d vectors; rebuild the index with the new model"
                )
            by_text.update(zip(fresh, embedded, strict=True))
        vectors = np.array([by_text[p.text] for p in plan.write], dtype=np.float32).reshape(len(plan.write), dim)
        blocks: list[np.ndarray | None] = [None] * len(plan.write)
        if keep_sentences:
            known_blocks = self.sentence_blocks(list(dict.fromkeys(plan.reuse.values())))
            known = {text: known_blocks[key] for text, key in plan.reuse.items() if key in known_blocks}
            known.update(new_blocks)
            sentences = SentenceVectors.embed(plan.write, self.embedder, dim, known=known, batch_size=batch_size)
            blocks = list(sentences.blocks())
        if plan.write:
            self.write(plan.write, vectors, blocks)
        if plan.drop:
            self.delete(list(plan.drop))
        self.commit(order, sources, batch_size=batch_size, **options)
        self.last_update = report(held, wanted, len(fresh), len(self))
        return self.last_update
