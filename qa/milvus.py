"""The `qa` index on Milvus: one collection per index, same passages, same hits as FAISS.

The only module that imports pymilvus (lazily, inside functions), so ``import qa`` and
the FAISS path never need it. Install with ``pip install "qa[milvus]"``.

Targets::

    milvus://HOST:PORT/COLLECTION        a Milvus server or cluster (gRPC, no TLS)
    milvus+https://HOST:PORT/COLLECTION  the same over TLS (hosted Milvus); token from $QA_MILVUS_TOKEN
    path/to/news.db                      Milvus Lite, in-process (collection ``qa_passages``)

**Layout.** The collection holds one row per passage: the int64 primary key
``qa.index.faiss_id(passage_id)`` (the same id FAISS uses), the passage id and text,
every `Source` field, four normalised filter keys (case-folded publisher and section,
the path without ``./``, the ISO date) and the unit vector, indexed with metric
``IP``. A second collection, ``<COLLECTION>_qa_meta``, holds the manifest (format
version, model name and dimension, index type, sources); opening checks it exactly
like the FAISS manifest. (Milvus Lite drops collection descriptions, so the manifest
cannot live there.)

**Rows.** `MilvusIndex.dense_search` returns primary keys as "rows";
``index.passages[row]`` is the passage (from a cache filled by the search itself, or
fetched by key), so `qa.retrieval` works unchanged. Rows are not positions.

**Supported on Milvus:** dense search (``mode="dense"``: the default here, while FAISS
indexes default to hybrid), filters (`qa.filters.Filters`, translated to Milvus boolean
expressions, applied before the top-k cut), rerankers, `ask`, `update` (make the collection
equal a set of paths, embedding only new texts), `add` (add or replace the documents of
some paths, touching nothing else: the operation that scales), `remove`, reopen.
**Not supported:** the ``bm25``, ``hybrid`` and ``rrf`` modes (they need the corpus-wide
BM25 index that lives in a FAISS index folder; use one for them), FAISS index types and
``k_factor`` (Milvus types are ``hnsw``, ``ivf``, ``flat``; knobs ``ef_search``, ``nprobe``),
changing the index type of an existing collection (rebuild with ``incremental=False``).
Writers are not serialised by `qa` (Milvus orders writes per primary key; the last wins).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import json
import logging
import os
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload
from urllib.parse import urlsplit

import numpy as np

from qa import __version__
from qa.documents import Passage, Source, load_passages
from qa.embedding import DEFAULT_MODEL, Embedder, get_embedder
from qa.errors import IndexLoadError, InputError, ModelMismatchError, QAError
from qa.filters import Filters, as_filters, parse_date
from qa.index import UpdateReport, faiss_id
from qa.retrieval import Hit, search
from qa.store import MILVUS_LITE_SUFFIX, MILVUS_SCHEMES, normalise_url

if TYPE_CHECKING:
    from qa.answering import Answer

FORMAT = "qa-milvus"
FORMAT_VERSION = 1
DEFAULT_COLLECTION = "qa_passages"
DEFAULT_PORT = 19530
META_SUFFIX = "_qa_meta"
TOKEN_ENV = "QA_MILVUS_TOKEN"
CONSISTENCY_LEVELS = ("Strong", "Bounded", "Session", "Eventually")
#: Strong: a search sees every write acknowledged before it (deletes included), as FAISS does.
#: It waits for the server's next time tick (200 ms by default); read-heavy services that can
#: tolerate a few seconds of staleness may choose "Bounded" (see benchmarks/milvus_bench.py).
DEFAULT_CONSISTENCY = "Strong"
#: Overrides the default level where no ``consistency_level`` is passed (e.g. for the CLI).
CONSISTENCY_ENV = "QA_MILVUS_CONSISTENCY"
INDEX_TYPES = ("hnsw", "ivf", "flat")
DEFAULT_INDEX_TYPE = "hnsw"
#: Milvus caps ``limit`` (top-k) per query at 16384.
MAX_TOP_K = 16_384
#: Milvus caps a VARCHAR at 65535 bytes.
MAX_VARCHAR = 65_535
#: Rows per insert call: ~2 MB of vectors and text, far below the 64 MB gRPC message limit.
WRITE_BATCH = 1_000
#: Queries per search call: keeps one request small when evaluating thousands of questions.
QUERY_BATCH = 256
#: Builds of at least this many passages end with a flush, so Milvus seals the segments and builds
#: the vector index at once (it would after ~10 idle minutes); smaller ones are searched exactly anyway.
FLUSH_MIN_ROWS = 10_000
#: Passages of recent hits kept in memory, so ``passages[row]`` after a search needs no round trip.
CACHE_SIZE = 10_000

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Every Source field is stored, so a field added to Source is stored too (and an older
# collection without it is refused on open rather than answered with half a source).
_SOURCE_FIELDS = tuple(f.name for f in dataclasses.fields(Source))
_INT_FIELDS = tuple(f.name for f in dataclasses.fields(Source) if f.type in ("int", int))
_TEXT_FIELDS = ("passage_id", "text", *(name for name in _SOURCE_FIELDS if name not in _INT_FIELDS))
_KEY_FIELDS = ("publisher_key", "section_key", "path_key", "date_key")
_SCALARS = [*_TEXT_FIELDS, *_INT_FIELDS]
_VECTOR = "vector"


class MilvusUnavailableError(QAError):
    """pymilvus / milvus-lite are not installed, or the Milvus server cannot be reached."""


# ---------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class MilvusTarget:
    """Where a Milvus index lives.

    Attributes:
        uri: what `pymilvus.MilvusClient` connects to (``http://host:port`` or a Lite file path).
        collection: the collection holding the passages.
        lite: True for a Milvus Lite file.
        name: the target as the user wrote it (for messages and the CLI).
    """

    uri: str
    collection: str
    lite: bool
    name: str

    @property
    def meta_collection(self) -> str:
        return self.collection + META_SUFFIX


def parse_target(target: str | os.PathLike[str], collection: str | None = None) -> MilvusTarget:
    """Read ``milvus://HOST:PORT/COLLECTION``, ``milvus+https://…`` or a Milvus Lite ``*.db`` path.

    Args:
        target: the index location.
        collection: the collection name; overrides the URL's, and names the collection in a Lite file.

    Raises:
        InputError: not a Milvus target, or a collection name Milvus would refuse.
    """
    text = normalise_url(os.fspath(target))
    if text.startswith(MILVUS_SCHEMES):
        parts = urlsplit(text)
        if not parts.hostname:
            raise InputError(f"{text!r} names no host; write milvus://HOST:PORT/COLLECTION")
        scheme = "https" if parts.scheme == "milvus+https" else "http"
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        uri = f"{scheme}://{host}:{parts.port or DEFAULT_PORT}"
        name = collection or parts.path.strip("/") or DEFAULT_COLLECTION
        lite = False
    elif text.rstrip("/").endswith(MILVUS_LITE_SUFFIX):
        uri = str(Path(text).expanduser().resolve())
        name = collection or DEFAULT_COLLECTION
        lite = True
    else:
        raise InputError(
            f"{text!r} is not a Milvus target; use milvus://HOST:PORT/COLLECTION or a Milvus Lite file ending in .db"
        )
    if not _NAME.fullmatch(name) or len(name) + len(META_SUFFIX) > 255:
        raise InputError(
            f"collection name {name!r} is not valid in Milvus; use letters, digits and underscores, "
            "starting with a letter, e.g. milvus://localhost:19530/news"
        )
    return MilvusTarget(uri, name, lite, text)


def _connect(target: MilvusTarget) -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise MilvusUnavailableError(
            f"Milvus support is optional and not installed ({exc}); install it with: pip install 'qa[milvus]'"
        ) from exc
    if target.lite:
        Path(target.uri).parent.mkdir(parents=True, exist_ok=True)
    try:
        return MilvusClient(uri=target.uri, token=os.environ.get(TOKEN_ENV, ""))
    except Exception as exc:  # pymilvus raises MilvusException, grpc errors, or ImportError for Lite
        where = f"the Milvus Lite file {target.uri}" if target.lite else f"the Milvus server at {target.uri}"
        hint = (
            "is milvus-lite installed (pip install 'qa[milvus]') and the file not open in another process?"
            if target.lite
            else "is it running and reachable? (start one locally with: milvus-server --data DIR)"
        )
        raise MilvusUnavailableError(f"cannot open {where}: {exc}; {hint}") from exc


# ---------------------------------------------------------------------------
# Filters → Milvus boolean expressions


def literal(value: str) -> str:
    """``value`` as a Milvus string literal: double-quoted, with quotes, backslashes and controls escaped."""
    # JSON string syntax is a subset of what the Milvus expression parser unquotes, except \uXXXX:
    # Milvus rejects it, and JSON writes other control characters only that way (as it does
    # lone surrogates, which are not UTF-8). No real field value holds them: refuse them.
    bad = next((c for c in value if (ord(c) < 32 and c not in "\t\n\r") or 0xD800 <= ord(c) <= 0xDFFF), None)
    if bad is not None:
        raise InputError(
            f"a filter value holds the control character U+{ord(bad):04X}, which a Milvus filter cannot "
            "express; remove it from the value"
        )
    return json.dumps(value, ensure_ascii=False)


def _normal_path(path: str) -> str:
    # Must agree with qa.filters._normal_path: "./seeds/x.txt" and "seeds/x.txt" are one file.
    path = path.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def _successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (None: no bound)."""
    while prefix:
        code = ord(prefix[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:
            code = 0xE000  # surrogates are not valid in UTF-8 strings
        if code <= 0x10FFFF:
            return prefix[:-1] + chr(code)
        prefix = prefix[:-1]
    return None


def _values(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _in(field: str, values: Sequence[str]) -> str:
    if not values:
        return "id < 0"  # an empty list matches nothing; no primary key is negative
    return f"{field} in [{', '.join(literal(v) for v in values)}]"


def filter_expression(filters: Filters | Mapping[str, Any] | None) -> str:
    """The Milvus boolean expression that keeps exactly the passages `Filters.matches` accepts.

    Returns:
        The expression, or ``""`` when every passage is allowed.

    Raises:
        InputError: a filter field this backend does not know how to translate.
    """
    filters = as_filters(filters)
    if filters is None:
        return ""
    known = {"publisher", "section", "doc_id", "path_prefix", "date_from", "date_to"}
    unknown = [f.name for f in dataclasses.fields(filters) if f.name not in known and getattr(filters, f.name)]
    if unknown:
        raise InputError(f"the Milvus backend cannot filter on {', '.join(unknown)} yet; use a FAISS index for that")
    parts: list[str] = []
    publishers = _values(filters.publisher)
    if publishers is not None:
        parts.append(_in("publisher_key", [p.casefold() for p in publishers]))
    sections = _values(filters.section)
    if sections is not None:
        parts.append(_in("section_key", [s.casefold() for s in sections]))
    doc_ids = _values(filters.doc_id)
    if doc_ids is not None:
        parts.append(_in("doc_id", doc_ids))
    if filters.path_prefix is not None:
        # A range, not LIKE: "_" and "%" are wildcards in LIKE and file names are full of "_".
        # VARCHARs compare bytewise, and UTF-8 byte order is code point order.
        prefix = _normal_path(filters.path_prefix)
        if prefix:
            upper = _successor(prefix)
            bound = f" and path_key < {literal(upper)}" if upper is not None else ""
            parts.append(f"(path_key >= {literal(prefix)}{bound})")
    start, end = parse_date(filters.date_from), parse_date(filters.date_to)
    if start is not None or end is not None:
        # date_key is "" when the source has no readable date, and "" sorts before every date.
        parts.append(f'date_key >= "{start.isoformat()}"' if start else 'date_key != ""')
        if end is not None:
            parts.append(f'date_key <= "{end.isoformat()}"')
    return " and ".join(parts)


@dataclass(frozen=True)
class MilvusSelection:
    """What `MilvusIndex.select_rows` returns: the filter as a Milvus expression, for `dense_search`.

    ``len()`` is the number of passages the filter allows (one count query, made on first use).
    """

    expression: str
    counter: Callable[[str], int] = dataclasses.field(repr=False, compare=False)

    @functools.cached_property
    def _count(self) -> int:
        return self.counter(self.expression)

    def __len__(self) -> int:
        return self._count


# ---------------------------------------------------------------------------
# Rows ↔ passages


def _row(passage: Passage, vector: np.ndarray | None = None) -> dict[str, Any]:
    s = passage.source
    date = parse_date(s.date)
    row: dict[str, Any] = {
        "id": faiss_id(passage.passage_id),
        "passage_id": passage.passage_id,
        "text": passage.text,
        **{name: getattr(s, name) for name in _SOURCE_FIELDS},
        "publisher_key": s.publisher.casefold(),
        "section_key": s.section.casefold(),
        "path_key": _normal_path(s.path),
        "date_key": date.isoformat() if date else "",
    }
    for name in (*_TEXT_FIELDS, *_KEY_FIELDS):
        if len(row[name].encode("utf-8")) > MAX_VARCHAR:
            raise InputError(
                f"{s.path} paragraph {s.paragraph}: field {name} is longer than Milvus allows "
                f"({MAX_VARCHAR} bytes); split the document or use a FAISS index"
            )
    if vector is not None:
        row[_VECTOR] = np.asarray(vector, dtype=np.float32).tolist()
    return row


def _passage(entity: Mapping[str, Any]) -> Passage:
    fields: dict[str, Any] = {name: entity[name] for name in _SOURCE_FIELDS}
    fields.update((name, int(fields[name])) for name in _INT_FIELDS)
    return Passage(entity["passage_id"], entity["text"], Source(**fields))


class MilvusPassages(Sequence[Passage]):
    """``passages[row]`` for the rows (primary keys) `MilvusIndex.dense_search` returns.

    Iterating walks the whole collection in primary-key order (not file order); ``len``
    is the passage count. Positions and slices are not supported: rows are keys.
    """

    def __init__(self, index: MilvusIndex) -> None:
        self._index = index

    @overload
    def __getitem__(self, row: int) -> Passage: ...
    @overload
    def __getitem__(self, row: slice) -> Sequence[Passage]: ...
    def __getitem__(self, row: int | slice) -> Passage | Sequence[Passage]:
        if isinstance(row, slice):
            raise TypeError("Milvus rows are primary keys, not positions; iterate instead of slicing")
        return self._index._passage_of(int(row))

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[Passage]:
        for entity in self._index._scan(_SCALARS):
            yield _passage(entity)


# ---------------------------------------------------------------------------
# The index


class MilvusIndex:
    """Passages with their embeddings in a Milvus collection; the same search, ask and updates as `qa.Index`.

    Build one with `build_milvus_index`, open one with `load_milvus_index`. Close it (or use
    ``with``) to release the connection; a Milvus Lite file can be open in one process at a time.
    """

    def __init__(
        self,
        client: Any,
        target: MilvusTarget,
        embedder: Embedder,
        manifest: dict[str, Any],
        *,
        consistency_level: str = DEFAULT_CONSISTENCY,
    ) -> None:
        """Wrap an open client and a checked manifest (use `build_milvus_index`/`load_milvus_index`)."""
        self._client = client
        self.target = target
        self.embedder = embedder
        self.manifest = manifest
        self.consistency_level = _check_consistency(consistency_level)
        self.last_update: UpdateReport | None = None
        self._cache: OrderedDict[int, Passage] = OrderedDict()
        self._knobs: dict[str, int] = {}

    # -- Description -------------------------------------------------------

    @property
    def dim(self) -> int:
        return int(self.manifest["model"]["dim"])

    @property
    def model_name(self) -> str:
        return str(self.manifest["model"]["name"])

    @property
    def index_type(self) -> dict[str, Any]:
        """How the vectors are indexed in Milvus: ``{"type", "params", "search_params"}`` (a copy)."""
        return json.loads(json.dumps(self.manifest["ann"]))

    @property
    def passages(self) -> MilvusPassages:
        """The passage of a row from `dense_search` is ``passages[row]``; iterating walks the collection."""
        return MilvusPassages(self)

    @property
    def lexical(self) -> None:
        """Milvus indexes have no BM25 index (see the module docstring)."""
        return None

    def __len__(self) -> int:
        return self._count_where("")

    def _count_where(self, expression: str) -> int:
        result = self._client.query(
            self.target.collection,
            filter=expression,
            output_fields=["count(*)"],
            consistency_level=self.consistency_level,
        )
        return int(result[0]["count(*)"])

    def __repr__(self) -> str:
        return f"<qa.MilvusIndex {self.target.name} ({self.manifest['ann']['type']}), model {self.model_name!r}>"

    def describe(self) -> dict[str, Any]:
        """The manifest plus where the index lives and how many passages it holds now."""
        return {
            **json.loads(json.dumps(self.manifest)),
            "backend": "milvus-lite" if self.target.lite else "milvus",
            "target": self.target.name,
            "collection": self.target.collection,
            "consistency_level": self.consistency_level,
            "count": len(self),
        }

    def close(self) -> None:
        """Release the connection (and, for Milvus Lite, the file)."""
        self._client.close()

    def __enter__(self) -> MilvusIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- Search ------------------------------------------------------------

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Unit query vectors from the index's model; refused if its dimension differs from the index's."""
        vectors = self.embedder.encode(list(queries), progress=False)
        if vectors.shape[1] != self.dim:
            raise ModelMismatchError(
                f"model {self.embedder.name!r} makes {vectors.shape[1]}-d vectors but {self.target.name} holds "
                f"{self.dim}-d vectors from {self.model_name!r}; open it with that model or rebuild it"
            )
        return vectors

    def select_rows(self, filters: Filters | Mapping[str, Any] | None) -> MilvusSelection | None:
        """The passages ``filters`` allow, as a Milvus expression for `dense_search` (None: all)."""
        expression = filter_expression(filters)
        return MilvusSelection(expression, self._count_where) if expression else None

    def set_search_knobs(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Default search-time knobs: HNSW ``ef_search`` and IVF ``nprobe`` (higher: slower, more exact)."""
        for name, value in (("ef_search", ef_search), ("nprobe", nprobe)):
            if value is not None:
                if value < 1:
                    raise InputError(f"{name} must be a positive integer, got {value}")
                self._knobs[name] = int(value)

    def dense_search(
        self,
        vectors: np.ndarray,
        k: int,
        rows: MilvusSelection | None = None,
        *,
        ef_search: int | None = None,
        nprobe: int | None = None,
        k_factor: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Inner-product search of query ``vectors`` among the passages ``rows`` selects.

        Args:
            vectors: ``(n, dim)`` float32 query vectors.
            k: results wanted per query (at most `MAX_TOP_K`).
            rows: a selection from `select_rows`; None allows every passage.
            ef_search, nprobe: search knobs (see `set_search_knobs`).
            k_factor: accepted for the FAISS signature and ignored: Milvus returns exact scores of its
                candidates, so there is nothing to rerank.

        Returns:
            ``(scores, rows)`` of shape ``(n, max(1, min(k, MAX_TOP_K)))``, best first; rows are primary keys
            (look them up in `passages`), -1 with score -inf where fewer passages match.
        """
        if isinstance(k, bool) or not isinstance(k, int):
            raise InputError(f"k must be a positive integer, got {k!r}")
        if rows is not None and not isinstance(rows, MilvusSelection):
            raise InputError("rows must come from MilvusIndex.select_rows (Milvus rows are not positions)")
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        # Like qa.index: at least one column, so an empty store or k=0 gives one padded column.
        width = max(1, min(k, MAX_TOP_K))
        scores = np.full((len(queries), width), -np.inf, dtype=np.float32)
        out = np.full((len(queries), width), -1, dtype=np.int64)
        if k < 1:
            return scores, out
        params = self._search_params(width, ef_search, nprobe)
        expression = rows.expression if rows is not None else ""
        for start in range(0, len(queries), QUERY_BATCH):
            block = queries[start : start + QUERY_BATCH]
            results = self._client.search(
                self.target.collection,
                data=block.tolist(),
                filter=expression,
                limit=width,
                output_fields=_SCALARS,
                search_params=params,
                anns_field=_VECTOR,
                consistency_level=self.consistency_level,
            )
            for i, hits in enumerate(results):
                for j, hit in enumerate(hits):
                    key = int(hit["id"])
                    scores[start + i, j], out[start + i, j] = float(hit["distance"]), key
                    self._remember(key, _passage(hit["entity"]))
        return scores, out

    def _search_params(self, k: int, ef_search: int | None, nprobe: int | None) -> dict[str, Any]:
        spec = self.manifest["ann"]
        params = dict(spec.get("search_params", {}))
        if spec["type"] == "hnsw":
            params["ef"] = max(k, ef_search or self._knobs.get("ef_search") or params.get("ef", 0))
        elif spec["type"] == "ivf":
            params["nprobe"] = nprobe or self._knobs.get("nprobe") or params.get("nprobe", 16)
        return {"metric_type": "IP", "params": params}

    def lexical_search(self, queries: Sequence[str], k: int, rows: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Not available on Milvus: BM25 lives in the FAISS index folder.

        Raises:
            InputError: always, saying what to use instead.
        """
        raise InputError(
            "BM25 and hybrid search are not available on the Milvus backend (qa keeps BM25 beside a FAISS "
            "index folder); use mode='dense' here, or build a FAISS index for bm25/hybrid"
        )

    def search(
        self, query: str, k: int = 5, *, mode: str | None = None, filters: Filters | None = None, **options: Any
    ) -> list[Hit]:
        """The ``k`` passages that best match ``query``, best first (see `qa.Index.search`).

        ``options`` go to `qa.retrieval.search`: a reranker, ``ef_search``, ``nprobe``.
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
    ) -> list[list[Hit]]:
        """`search` for many queries at once (embedded in one batch)."""
        mode = _check_mode(mode)
        return search(self, queries, k, mode=mode, **_filter_kwargs(filters), **options)  # type: ignore[arg-type]

    def ask(
        self, question: str, *, k: int = 5, mode: str | None = None, filters: Filters | None = None, **options: Any
    ) -> Answer:
        """Answer ``question`` from the passages, with evidence and confidence (see `qa.Index.ask`)."""
        from qa.answering import answer

        mode = _check_mode(mode)
        return answer(self, question, k=k, mode=mode, **_filter_kwargs(filters), **options)

    # -- Passages by key ---------------------------------------------------

    def _remember(self, key: int, passage: Passage) -> None:
        self._cache[key] = passage
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def _passage_of(self, key: int) -> Passage:
        passage = self._cache.get(key)
        if passage is None:
            found = self._client.get(
                self.target.collection, ids=[key], output_fields=_SCALARS, consistency_level=self.consistency_level
            )
            if not found:
                raise IndexError(f"no passage with key {key} in {self.target.name}")
            passage = _passage(found[0])
            self._remember(key, passage)
        return passage

    def get(self, passage_id: str) -> Passage | None:
        """The passage with this id, or None."""
        try:
            return self._passage_of(faiss_id(passage_id))
        except IndexError:
            return None

    def _scan(self, fields: Sequence[str], expression: str = "") -> Iterator[dict[str, Any]]:
        """Every row matching ``expression`` (all rows by default), in pages."""
        _quiet_iterator_warning()
        iterator = self._client.query_iterator(
            self.target.collection,
            batch_size=WRITE_BATCH,
            filter=expression,
            output_fields=list(fields),
            consistency_level=self.consistency_level,
        )
        try:
            while True:
                page = iterator.next()
                if not page:
                    return
                yield from page
        finally:
            iterator.close()

    # -- Updates -----------------------------------------------------------

    def update(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        *,
        progress: bool = False,
        batch_size: int = 64,
    ) -> UpdateReport:
        """Make the collection hold exactly the passages of ``paths``, as a fresh build would; embed only new texts.

        Reads every row's key and source once to find what changed; for a huge collection
        prefer `add` and `remove`, which touch only the documents named.

        Args:
            paths: the files and folders that make up the corpus now; by default the recorded ones.
            progress: show a progress bar while embedding.
            batch_size: passages per embedding batch.

        Raises:
            InputError: a path is missing or holds no readable text.
        """
        paths = self._paths(paths)
        passages = load_passages(paths, max_tokens=self.embedder.max_tokens, count_tokens=self.embedder.count_tokens)
        old = [_passage(e) for e in self._scan(_SCALARS)]
        return self._sync(passages, old, [str(p) for p in paths], progress, batch_size)

    def add(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        progress: bool = False,
        batch_size: int = 64,
    ) -> UpdateReport:
        """Add the documents of ``paths``, replacing documents of the same id; leave all others alone.

        Only the rows of those documents are read and written, so this scales with the
        documents added, not with the collection.

        Raises:
            InputError: a path is missing or holds no readable text.
        """
        paths = self._paths(paths)
        passages = load_passages(paths, max_tokens=self.embedder.max_tokens, count_tokens=self.embedder.count_tokens)
        doc_ids = list(dict.fromkeys(p.source.doc_id for p in passages))
        old: list[Passage] = []
        for start in range(0, len(doc_ids), WRITE_BATCH):
            old.extend(_passage(e) for e in self._scan(_SCALARS, _in("doc_id", doc_ids[start : start + WRITE_BATCH])))
        sources = list(dict.fromkeys([*self.manifest.get("sources", []), *(str(p) for p in paths)]))
        return self._sync(passages, old, sources, progress, batch_size)

    def remove(self, targets: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> UpdateReport:
        """Remove documents by doc id, file path, or folder path (everything under it).

        Raises:
            InputError: no document matches a target (the message lists what was given).
        """
        if isinstance(targets, (str, os.PathLike)):
            targets = [targets]
        wanted = [os.fspath(t) for t in targets]
        clauses = [_in("doc_id", wanted)]
        for target in wanted:
            for form in _path_forms(target):
                # The file itself, or anything under the folder (a range: see filter_expression).
                clauses.append(f"path_key == {literal(form)}")
                clauses.append(f"(path_key >= {literal(form + '/')} and path_key < {literal(form + '0')})")
        candidates = [_passage(e) for e in self._scan(_SCALARS, " or ".join(clauses))]
        matched, missing = [], set(wanted)
        for p in candidates:
            hit = next((t for t in wanted if _names_document(t, p.source)), None)
            if hit is not None:
                matched.append(p)
                missing.discard(hit)
        if missing:
            raise InputError(
                f"no document in the index matches {', '.join(sorted(missing))}; give a doc id, "
                "a file path or a folder as the index shows them (qa search --json prints both)"
            )
        keys = [faiss_id(p.passage_id) for p in matched]
        for start in range(0, len(keys), WRITE_BATCH):
            self._client.delete(self.target.collection, ids=keys[start : start + WRITE_BATCH])
        for key in keys:
            self._cache.pop(key, None)
        self.last_update = _report(matched, [], 0, len(self))
        return self.last_update

    def _paths(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None) -> list[Any]:
        if paths is None:
            paths = list(self.manifest.get("sources") or [])
            if not paths:
                raise InputError("this index does not record its source paths; pass the paths to update from")
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        return list(paths)

    def _sync(
        self, passages: list[Passage], old: list[Passage], sources: list[str], progress: bool, batch_size: int
    ) -> UpdateReport:
        """Write the difference between ``old`` (rows now) and ``passages`` (rows wanted), then record ``sources``."""
        wanted = {faiss_id(p.passage_id): p for p in passages}
        if len(wanted) != len(passages):
            raise ValueError("two passages share an id")
        held = {faiss_id(p.passage_id): p for p in old}
        # New keys, and kept keys whose source fields changed (Milvus rewrites whole rows).
        write = [key for key, p in wanted.items() if held.get(key) != p]
        drop = [key for key in held if key not in wanted]
        # Vectors are reused by text: from a row being rewritten, or any held row with the same text.
        text_key = {p.text: key for key, p in held.items()}
        reuse = list(dict.fromkeys(text_key[wanted[k].text] for k in write if wanted[k].text in text_key))
        stored = self._vectors_of(reuse)
        fresh = [t for t in dict.fromkeys(wanted[k].text for k in write) if t not in text_key]
        vectors: dict[str, np.ndarray] = {}
        if fresh:
            embedded = self.embedder.encode(fresh, batch_size=batch_size, progress=progress)
            if embedded.shape[1] != self.dim:
                raise ModelMismatchError(
                    f"model {self.embedder.name!r} makes {embedded.shape[1]}-d vectors but {self.target.name} "
                    f"holds {self.dim}-d vectors; rebuild the index with the new model"
                )
            vectors.update(zip(fresh, embedded, strict=True))
        for text, key in text_key.items():
            if key in stored:
                vectors[text] = stored[key]
        rows = [_row(wanted[key], vectors[wanted[key].text]) for key in write]
        # Upsert before delete: a crash in between leaves extra rows, never missing ones.
        for start in range(0, len(rows), WRITE_BATCH):
            self._client.upsert(self.target.collection, rows[start : start + WRITE_BATCH])
        for start in range(0, len(drop), WRITE_BATCH):
            self._client.delete(self.target.collection, ids=drop[start : start + WRITE_BATCH])
        for key in (*write, *drop):
            self._cache.pop(key, None)
        if sources != self.manifest.get("sources"):
            self.manifest = {**self.manifest, "sources": sources}
            _write_manifest(self._client, self.target, self.manifest)
        self.last_update = _report(old, passages, len(fresh), len(self))
        return self.last_update

    def vectors_of(self, passage_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of these passages, ``(len(passage_ids), dim)`` float32 (one round trip).

        Raises:
            KeyError: a passage id the collection does not hold.
        """
        keys = [faiss_id(p) for p in passage_ids]
        found = self._vectors_of(keys)
        missing = [p for p, key in zip(passage_ids, keys, strict=True) if key not in found]
        if missing:
            raise KeyError(f"passage {missing[0]} is not in {self.target.name}")
        return np.array([found[key] for key in keys], dtype=np.float32).reshape(len(keys), self.dim)

    def sentence_vectors_of(self, passage_ids: Sequence[str]) -> list[np.ndarray | None]:
        """None for every passage: Milvus collections keep passage vectors only."""
        return [None] * len(passage_ids)

    def _vectors_of(self, keys: list[int]) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for start in range(0, len(keys), WRITE_BATCH):
            found = self._client.get(
                self.target.collection,
                ids=keys[start : start + WRITE_BATCH],
                output_fields=[_VECTOR],
                consistency_level=self.consistency_level,
            )
            for entity in found:
                out[int(entity["id"])] = np.asarray(entity[_VECTOR], dtype=np.float32)
        return out

    def flush(self) -> None:
        """Seal what was written so Milvus builds its index on it now (done after large builds)."""
        self._client.flush(self.target.collection)


# ---------------------------------------------------------------------------
# Collections and the manifest


def _check_consistency(level: str | None) -> str:
    level = level or os.environ.get(CONSISTENCY_ENV) or DEFAULT_CONSISTENCY
    for known in CONSISTENCY_LEVELS:
        if level.lower() == known.lower():
            return known
    raise InputError(f"unknown consistency level {level!r}; use one of {', '.join(CONSISTENCY_LEVELS)}")


def _check_mode(mode: str | None) -> str:
    # FAISS indexes default to hybrid; here dense is the only mode, so it is the default.
    if mode not in (None, "dense"):
        raise InputError(
            f"mode {mode!r} is not available on the Milvus backend: only 'dense' is (BM25, hybrid and rrf "
            "need the BM25 index of a FAISS index folder)"
        )
    return "dense"


class _DropMvccWarning(logging.Filter):
    # Servers before 2.4 do not return an iterator timestamp; pymilvus then uses the client's
    # clock (correct for Strong reads) but warns on every scan.
    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to get mvccTs" not in record.getMessage()


def _quiet_iterator_warning() -> None:
    logger = logging.getLogger("pymilvus.client.iterator.query_iterator")
    if not any(isinstance(f, _DropMvccWarning) for f in logger.filters):
        logger.addFilter(_DropMvccWarning())


def _filter_kwargs(filters: Filters | None) -> dict[str, Any]:
    # Only pass filters on when given, as qa.index does.
    return {} if filters is None else {"filters": filters}


def index_spec(index_type: str | None) -> dict[str, Any]:
    """The Milvus index recipe for ``index_type`` (``hnsw``, ``ivf`` or ``flat``), recorded in the manifest.

    Raises:
        InputError: an unknown type.
    """
    name = (index_type or DEFAULT_INDEX_TYPE).strip().lower()
    if name in ("auto", "hnsw"):
        # The same graph as qa.index's "hnsw" type (M=32, efConstruction=64, ef=128).
        params = {"M": 32, "efConstruction": 64}
        return {"type": "hnsw", "milvus": "HNSW", "params": params, "search_params": {"ef": 128}}
    if name in ("ivf", "ivf-flat", "ivf_flat"):
        return {"type": "ivf", "milvus": "IVF_FLAT", "params": {"nlist": 1024}, "search_params": {"nprobe": 32}}
    if name == "flat":
        return {"type": "flat", "milvus": "FLAT", "params": {}, "search_params": {}}
    raise InputError(f"unknown Milvus index type {index_type!r}; use one of {', '.join(INDEX_TYPES)}")


def _create(client: Any, target: MilvusTarget, dim: int, spec: dict[str, Any], consistency_level: str) -> None:
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description="qa passages")
    schema.add_field("id", DataType.INT64, is_primary=True)
    for name in (*_TEXT_FIELDS, *_KEY_FIELDS):
        schema.add_field(name, DataType.VARCHAR, max_length=MAX_VARCHAR)
    for name in _INT_FIELDS:
        schema.add_field(name, DataType.INT64)
    schema.add_field(_VECTOR, DataType.FLOAT_VECTOR, dim=dim)
    index = client.prepare_index_params()
    index.add_index(field_name=_VECTOR, index_type=spec["milvus"], metric_type="IP", params=spec["params"])
    client.create_collection(target.collection, schema=schema, index_params=index, consistency_level=consistency_level)
    meta = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description="qa manifest")
    meta.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
    meta.add_field("value", DataType.VARCHAR, max_length=MAX_VARCHAR)
    meta.add_field("v", DataType.FLOAT_VECTOR, dim=2)  # Milvus requires a vector field in every collection
    meta_index = client.prepare_index_params()
    meta_index.add_index(field_name="v", index_type="FLAT", metric_type="L2", params={})
    # Created without index_params, so it is not loaded now (loading costs seconds on a server);
    # writes do not need it loaded, and opening an index loads it to read the manifest.
    client.create_collection(target.meta_collection, schema=meta, consistency_level="Strong")
    client.create_index(target.meta_collection, meta_index)


def _write_manifest(client: Any, target: MilvusTarget, manifest: dict[str, Any]) -> None:
    row = {"key": "manifest", "value": json.dumps(manifest), "v": [0.0, 0.0]}
    client.upsert(target.meta_collection, [row])


def _read_manifest(client: Any, target: MilvusTarget) -> dict[str, Any]:
    rebuild = f"rebuild it with: qa index PATH... --index {target.name}"
    if not client.has_collection(target.collection):
        raise IndexLoadError(f"no index at {target.name}; build one with: qa index PATH... --index {target.name}")
    if not client.has_collection(target.meta_collection):
        raise IndexLoadError(
            f"collection {target.collection!r} at {target.name} is not a qa index (no {target.meta_collection!r} "
            f"collection with its manifest); {rebuild}"
        )
    client.load_collection(target.meta_collection)
    found = client.get(target.meta_collection, ids=["manifest"], output_fields=["value"], consistency_level="Strong")
    try:
        manifest = json.loads(found[0]["value"])
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (IndexError, KeyError, ValueError) as exc:
        raise IndexLoadError(f"the manifest of {target.name} is missing or corrupted ({exc}); {rebuild}") from exc
    if manifest.get("format") != FORMAT:
        raise IndexLoadError(f"{target.name} is not a qa Milvus index (manifest format {manifest.get('format')!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexLoadError(
            f"{target.name} has index format version {manifest.get('format_version')!r} (written by qa "
            f"{manifest.get('qa_version', '?')}); this qa {__version__} reads version {FORMAT_VERSION}; {rebuild}"
        )
    try:
        int(manifest["model"]["dim"]), str(manifest["model"]["name"]), str(manifest["ann"]["type"])
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexLoadError(f"the manifest of {target.name} lacks a field ({exc}); {rebuild}") from exc
    return manifest


def _drop(client: Any, target: MilvusTarget) -> None:
    for name in (target.collection, target.meta_collection):
        if client.has_collection(name):
            client.drop_collection(name)


def _open(client: Any, target: MilvusTarget, model: str | Embedder | None, consistency_level: str) -> MilvusIndex:
    manifest = _read_manifest(client, target)
    name, dim = str(manifest["model"]["name"]), int(manifest["model"]["dim"])
    embedder = get_embedder(model if model is not None else name)
    if embedder.name != name:
        raise ModelMismatchError(
            f"{target.name} was built with model {name!r}, not {embedder.name!r}; load it without a model "
            f"(or with {name!r}), or rebuild the index with the new model"
        )
    if embedder.dim != dim:
        raise ModelMismatchError(
            f"model {embedder.name!r} makes {embedder.dim}-d vectors but {target.name} holds {dim}-d vectors"
        )
    fields = {f["name"]: f for f in client.describe_collection(target.collection)["fields"]}
    stored_dim = fields.get(_VECTOR, {}).get("params", {}).get("dim")
    if stored_dim is None or int(stored_dim) != dim or not all(f in fields for f in (*_SCALARS, *_KEY_FIELDS)):
        raise IndexLoadError(
            f"collection {target.collection!r} at {target.name} does not have the fields its manifest describes "
            f"(vector dim {stored_dim}, manifest {dim}); rebuild it with: qa index PATH... --index {target.name}"
        )
    client.load_collection(target.collection)
    return MilvusIndex(client, target, embedder, manifest, consistency_level=consistency_level)


# ---------------------------------------------------------------------------
# Public entry points


def load_milvus_index(
    target: str | os.PathLike[str],
    *,
    model: str | Embedder | None = None,
    consistency_level: str | None = None,
    collection: str | None = None,
) -> MilvusIndex:
    """Open a Milvus index, checking its manifest like `qa.load_index` checks a folder's.

    Args:
        target: ``milvus://HOST:PORT/COLLECTION``, ``milvus+https://…``, or a Milvus Lite ``*.db`` path.
        model: the embedding model for queries; by default the one the index was built with.
        consistency_level: ``Strong`` (searches see every acknowledged write, deletes included),
            ``Bounded`` (much faster on a server; may lag writes by seconds), ``Session`` or
            ``Eventually``; default $QA_MILVUS_CONSISTENCY, else ``Strong``.
        collection: the collection name, overriding the URL's (and naming one in a Lite file).

    Raises:
        MilvusUnavailableError: pymilvus is not installed or the server cannot be reached.
        IndexLoadError: no such collection, not a qa index, or another format version.
        ModelMismatchError: ``model`` is not the model the index was built with.
    """
    parsed = parse_target(target, collection)
    level = _check_consistency(consistency_level)
    if parsed.lite and not Path(parsed.uri).exists():
        raise IndexLoadError(f"no index at {parsed.name}; build one with: qa index PATH... --index {parsed.name}")
    client = _connect(parsed)
    try:
        return _open(client, parsed, model, level)
    except BaseException:
        client.close()
        raise


def build_milvus_index(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    target: str | os.PathLike[str],
    *,
    model: str | Embedder = DEFAULT_MODEL,
    progress: bool = True,
    batch_size: int = 64,
    index_type: str | None = None,
    incremental: bool = True,
    consistency_level: str | None = None,
    collection: str | None = None,
) -> MilvusIndex:
    """Load articles, embed their passages and store them in a Milvus collection.

    Passages, ids, texts and attribution come from `qa.documents.load_passages`, exactly
    as for a FAISS index. When the collection already holds a qa index of the same model
    this is `MilvusIndex.update` (only new texts are embedded); one of another model is
    dropped and rebuilt, with a warning; a collection that is not a qa index is refused.

    Args:
        paths: files or folders of articles; they define the whole corpus.
        target: ``milvus://HOST:PORT/COLLECTION``, ``milvus+https://…``, or a Milvus Lite ``*.db`` path.
        model: a bundled model name, a local sentence-transformers folder, or an `Embedder`.
        progress: show a progress bar while embedding.
        batch_size: passages per embedding batch.
        index_type: ``hnsw`` (default), ``ivf`` (IVF_FLAT) or ``flat``; fixed when the collection is created.
        incremental: False drops an existing qa collection and re-embeds everything.
        consistency_level: see `load_milvus_index`.
        collection: see `load_milvus_index`.

    Raises:
        InputError: a path is missing or holds no text, or the collection is not a qa index.
        MilvusUnavailableError: pymilvus is not installed or the server cannot be reached.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    parsed = parse_target(target, collection)
    level = _check_consistency(consistency_level)
    spec = index_spec(index_type)
    embedder = get_embedder(model)
    client = _connect(parsed)
    try:
        if client.has_collection(parsed.collection):
            if not client.has_collection(parsed.meta_collection):
                raise InputError(
                    f"collection {parsed.collection!r} at {parsed.name} exists and is not a qa index; choose "
                    "another collection name or drop it first"
                )
            try:
                existing = _open(client, parsed, embedder, level)
            except (IndexLoadError, ModelMismatchError) as exc:
                warnings.warn(f"rebuilding {parsed.name} from scratch: {exc}", stacklevel=2)
                _drop(client, parsed)
            else:
                if incremental:
                    existing.update(paths, progress=progress, batch_size=batch_size)
                    return existing
                _drop(client, parsed)
        passages = load_passages(paths, max_tokens=embedder.max_tokens, count_tokens=embedder.count_tokens)
        # Identical texts (the same wire paragraph in two articles) are embedded once.
        texts = list(dict.fromkeys(p.text for p in passages))
        unique = embedder.encode(texts, batch_size=batch_size, progress=progress)
        dim = int(unique.shape[1])
        row_of = {t: i for i, t in enumerate(texts)}
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "qa_version": __version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "model": {"name": embedder.name, "dim": dim},
            "ann": spec,
            "metric": "inner_product",
            "sources": [str(p) for p in paths],
        }
        _create(client, parsed, dim, spec, level)
        index = MilvusIndex(client, parsed, embedder, manifest, consistency_level=level)
        _insert(client, parsed, ((p, unique[row_of[p.text]]) for p in passages))
        # The manifest goes last: a build that dies before it leaves a collection load refuses.
        _write_manifest(client, parsed, manifest)
        if len(passages) >= FLUSH_MIN_ROWS:
            index.flush()
        index.last_update = _report([], passages, len(texts), len(passages))
        return index
    except BaseException:
        client.close()
        raise


def _insert(client: Any, target: MilvusTarget, items: Iterable[tuple[Passage, np.ndarray]]) -> None:
    batch: list[dict[str, Any]] = []
    for passage, vector in items:
        batch.append(_row(passage, vector))
        if len(batch) == WRITE_BATCH:
            client.insert(target.collection, batch)
            batch = []
    if batch:
        client.insert(target.collection, batch)


# ---------------------------------------------------------------------------
# Helpers


def _path_forms(target: str) -> list[str]:
    """The ways a stored (display) path may spell ``target``: as given, relative to the cwd, absolute."""
    forms = {_normal_path(target).rstrip("/")}
    absolute = Path(target).resolve()
    forms.add(absolute.as_posix())
    with contextlib.suppress(ValueError):
        forms.add(absolute.relative_to(Path.cwd().resolve()).as_posix())
    return sorted(f for f in forms if f)


def _names_document(target: str, source: Source) -> bool:
    # The same rule as qa.index: a doc id, the file, or a folder above it.
    if target == source.doc_id:
        return True
    given = Path(target).resolve()
    path = Path(source.path).resolve()
    return path == given or given in path.parents


def _report(old: Sequence[Passage], new: Sequence[Passage], embedded: int, total: int) -> UpdateReport:
    def documents(passages: Sequence[Passage]) -> dict[str, set[tuple[str, Source]]]:
        docs: dict[str, set[tuple[str, Source]]] = {}
        for p in passages:
            docs.setdefault(p.source.doc_id, set()).add((p.passage_id, p.source))
        return docs

    before, after = documents(old), documents(new)
    common = before.keys() & after.keys()
    changed = sum(1 for d in common if before[d] != after[d])
    return UpdateReport(
        added=len(after.keys() - before.keys()),
        updated=changed,
        removed=len(before.keys() - after.keys()),
        unchanged=len(common) - changed,
        embedded=embedded,
        passages=total,
    )
