"""Writes to a Milvus index: upserts and deletes by passage key, and the commit that re-derives BM25.

Every BM25 weight depends on the corpus's document frequencies and average length, so a
commit after any change rebuilds the weights of every row from the collection's texts
(`qa.lexical.BM25`, as the FAISS folder does) and stores the lexicon in the meta collection:
O(collection) per commit, like the FAISS folder's BM25.
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.documents import Passage
from qa.lexical import BM25, LEXICAL_RECIPE, lexical_text
from qa.stores.base import iter_batches
from qa.stores.milvus.schema import (
    _SCALARS,
    _TERMS,
    _VECTOR,
    EMPTY_TERMS,
    WRITE_BATCH,
    lexicon_rows,
    to_passage,
    to_row,
    write_meta,
)
from qa.stores.milvus.targets import MilvusTarget
from qa.updates import passage_key


class MilvusWriter:
    """The write half of `qa.stores.milvus.store.MilvusStore`."""

    _client: Any
    target: MilvusTarget
    manifest: dict[str, Any]
    consistency_level: str
    _cache: OrderedDict[int, Passage]
    _terms: tuple[dict[str, int], np.ndarray, int] | None
    _changed: bool

    if TYPE_CHECKING:

        @property
        def lexical_unavailable(self) -> str | None: ...

        def _remember(self, key: int, passage: Passage) -> None: ...

        def _scan(self, fields: Sequence[str], expression: str = "") -> Iterator[dict[str, Any]]: ...

    # -- Writes --------------------------------------------------------------

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """No lock: Milvus orders writes per primary key (the last one wins)."""
        self._changed = False
        return contextlib.nullcontext()

    def write(self, passages: Sequence[Passage], vectors: np.ndarray, sentences: Sequence[np.ndarray | None]) -> None:
        """Upsert the passages' rows and replace their sentence rows."""
        lexical = bool(self.manifest.get("lexical"))
        items = list(zip(passages, np.asarray(vectors, dtype=np.float32), sentences, strict=True))
        for batch in iter_batches(items, WRITE_BATCH):
            rows = []
            for passage, vector, _ in batch:
                row = to_row(passage, vector)
                if lexical:
                    row[_TERMS] = EMPTY_TERMS  # the real weights are written by commit
                rows.append(row)
            self._client.upsert(self.target.collection, rows)
            keys = [passage_key(p.passage_id) for p, _, _ in batch]
            self._client.delete(self.target.sentences_collection, filter=f"passage in {keys}")
            sentence_rows = [
                {"passage": passage_key(p.passage_id), "position": j, _VECTOR: np.asarray(v, np.float32).tolist()}
                for p, _, block in batch
                if block is not None
                for j, v in enumerate(np.asarray(block, dtype=np.float16).astype(np.float32))
            ]
            for part in iter_batches(sentence_rows, WRITE_BATCH):
                self._client.insert(self.target.sentences_collection, list(part))
            for key in keys:
                self._cache.pop(key, None)
        self._changed = self._changed or bool(items)

    def delete(self, keys: Sequence[int]) -> None:
        """Drop the rows (and sentence rows) of these keys."""
        for batch in iter_batches([int(k) for k in keys], WRITE_BATCH):
            self._client.delete(self.target.collection, ids=list(batch))
            self._client.delete(self.target.sentences_collection, filter=f"passage in {list(batch)}")
            for key in batch:
                self._cache.pop(key, None)
        self._changed = self._changed or bool(keys)

    def commit(self, order: Sequence[str] | None, sources: list[str], **options: Any) -> None:
        """Re-derive the BM25 weights if the passages changed, then record ``sources`` (``order`` is not kept)."""
        manifest = dict(self.manifest)
        if self._changed and manifest.get("lexical"):
            manifest["lexical"] = self._reweigh()
        if sources != manifest.get("sources") or manifest != self.manifest:
            manifest["sources"] = sources
            self.manifest = manifest
            write_meta(self._client, self.target, {"manifest": json.dumps(manifest)})
        self._changed = False

    def _reweigh(self) -> dict[str, Any]:
        """Rewrite every row's BM25 weights for the corpus as it is now; return the manifest's lexical record."""
        rows = list(self._scan(["id", *_SCALARS, _VECTOR]))
        rows.sort(key=lambda r: int(r["id"]))
        self._terms = None
        if not rows:
            return {"recipe": LEXICAL_RECIPE, "docs": 0, "chunks": 0}
        bm25 = BM25.build([lexical_text(to_passage(r)) for r in rows])
        weights: list[dict[int, float]] = [{} for _ in rows]
        data, indices, indptr = bm25.arrays()
        for t in range(len(indptr) - 1):
            for doc, w in zip(indices[indptr[t] : indptr[t + 1]].tolist(), data[indptr[t] : indptr[t + 1]].tolist(),
                              strict=True):  # fmt: skip
                weights[doc][t] = w
        for batch in iter_batches(list(range(len(rows))), WRITE_BATCH):
            upserts = []
            for i in batch:
                row = to_row(to_passage(rows[i]), np.asarray(rows[i][_VECTOR], dtype=np.float32))
                row[_TERMS] = weights[i] or EMPTY_TERMS
                upserts.append(row)
            self._client.upsert(self.target.collection, upserts)
        terms = bm25.terms()
        lexicon = lexicon_rows(terms, np.diff(indptr))
        write_meta(self._client, self.target, lexicon)
        return {"recipe": LEXICAL_RECIPE, "docs": len(rows), "chunks": len(lexicon), "params": bm25.params}
