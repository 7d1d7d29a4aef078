"""The Milvus collections of one index, and how passages become rows.

* ``<C>``: one row per passage: the int64 primary key `qa.updates.passage_key` (the same key
  FAISS uses), the passage id and text, every `Source` field, four normalised filter keys
  (case-folded publisher and section, the path without ``./``, the ISO date), the unit vector
  (metric ``IP``) and, where the server has sparse vectors (Milvus ≥ 2.4, Milvus Lite), the
  passage's BM25 weights over its ``"title. text"`` (`qa.lexical.lexical_text`) as a sparse vector.
* ``<C>_qa_sentences``: one row per sentence of the multi-sentence passages: the passage key,
  the sentence's position and its vector (float16-rounded, as the FAISS folder keeps them).
* ``<C>_qa_meta``: the manifest (format version, model, index type, sources) and the BM25
  lexicon (each term's id and document frequency, in JSON chunks). Milvus Lite drops collection
  descriptions, so they cannot live there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from qa._version import __version__
from qa.documents import Passage, Source
from qa.errors import IndexLoadError, InputError
from qa.filters import parse_date
from qa.stores.milvus.filters import normal_path
from qa.stores.milvus.targets import MilvusTarget
from qa.updates import passage_key

FORMAT = "qa-milvus"
# 2: BM25 weights (sparse vectors) where the server has them, and the sentences collection.
FORMAT_VERSION = 2
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
#: Extra results fetched so that equal scores at the cut are ordered by passage key, as on every store.
TIE_MARGIN = 16


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


# Every Source field is stored, so a field added to Source is stored too (and an older
# collection without it is refused on open rather than answered with half a source).
_SOURCE_FIELDS = tuple(f.name for f in dataclasses.fields(Source))


_INT_FIELDS = tuple(f.name for f in dataclasses.fields(Source) if f.type in ("int", int))


_TEXT_FIELDS = ("passage_id", "text", *(name for name in _SOURCE_FIELDS if name not in _INT_FIELDS))


_KEY_FIELDS = ("publisher_key", "section_key", "path_key", "date_key")


_SCALARS = [*_TEXT_FIELDS, *_INT_FIELDS]


_VECTOR = "vector"

_TERMS = "terms"
#: Sparse vectors need at least one non-zero weight: a passage with no BM25 term gets this
#: dimension, which no query ever has (term ids count up from 0).
EMPTY_TERMS = {4_000_000_000: 1.0}
#: Bytes of lexicon JSON per meta row (below Milvus's VARCHAR limit).
LEXICON_CHUNK = 60_000
#: The first server version with sparse vectors.
SPARSE_SINCE = (2, 4)


def to_row(passage: Passage, vector: np.ndarray | None = None) -> dict[str, Any]:
    s = passage.source
    date = parse_date(s.date)
    row: dict[str, Any] = {
        "id": passage_key(passage.passage_id),
        "passage_id": passage.passage_id,
        "text": passage.text,
        **{name: getattr(s, name) for name in _SOURCE_FIELDS},
        "publisher_key": s.publisher.casefold(),
        "section_key": s.section.casefold(),
        "path_key": normal_path(s.path),
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


def to_passage(entity: Mapping[str, Any]) -> Passage:
    fields: dict[str, Any] = {name: entity[name] for name in _SOURCE_FIELDS}
    fields.update((name, int(fields[name])) for name in _INT_FIELDS)
    return Passage(entity["passage_id"], entity["text"], Source(**fields))


def check_consistency(level: str | None) -> str:
    level = level or os.environ.get(CONSISTENCY_ENV) or DEFAULT_CONSISTENCY
    for known in CONSISTENCY_LEVELS:
        if level.lower() == known.lower():
            return known
    raise InputError(f"unknown consistency level {level!r}; use one of {', '.join(CONSISTENCY_LEVELS)}")


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


def sparse_supported(client: Any) -> str | None:
    """None when the server searches sparse vectors (Milvus Lite, Milvus ≥ 2.4); else why not, in one line."""
    try:
        version = str(client.get_server_version())
    except Exception:  # older servers or proxies without the call: assume the feature is missing
        version = "unknown"
    if version.startswith("milvus_lite"):  # Milvus Lite 3.x ("milvus_lite-3.2.2")
        return None
    # A server says "v2.4.3"; the PyPI milvus 2.3.5 standalone says "v2.3.5-lite".
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    if len(numbers) == 2 and numbers >= SPARSE_SINCE:
        return None
    return (
        f"BM25 needs sparse vectors, which need Milvus >= {'.'.join(map(str, SPARSE_SINCE))} (or Milvus Lite); "
        f"this server is {version}; use mode='dense' here, or a newer server"
    )


def create(
    client: Any, target: MilvusTarget, dim: int, spec: dict[str, Any], consistency_level: str, lexical: bool
) -> None:
    """Create the passages, sentences and meta collections (see the module docstring)."""
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
    if lexical:
        schema.add_field(_TERMS, DataType.SPARSE_FLOAT_VECTOR)
        index.add_index(field_name=_TERMS, index_type="SPARSE_INVERTED_INDEX", metric_type="IP", params={})
    client.create_collection(target.collection, schema=schema, index_params=index, consistency_level=consistency_level)
    sentences = MilvusClient.create_schema(auto_id=True, enable_dynamic_field=False, description="qa sentences")
    sentences.add_field("id", DataType.INT64, is_primary=True)
    sentences.add_field("passage", DataType.INT64)
    sentences.add_field("position", DataType.INT64)
    sentences.add_field(_VECTOR, DataType.FLOAT_VECTOR, dim=dim)
    sentence_index = client.prepare_index_params()
    sentence_index.add_index(field_name=_VECTOR, index_type="FLAT", metric_type="IP", params={})
    client.create_collection(
        target.sentences_collection, schema=sentences, index_params=sentence_index, consistency_level=consistency_level
    )
    meta = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description="qa manifest")
    meta.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
    meta.add_field("value", DataType.VARCHAR, max_length=MAX_VARCHAR)
    meta.add_field("v", DataType.FLOAT_VECTOR, dim=2)  # Milvus requires a vector field in every collection
    meta_index = client.prepare_index_params()
    meta_index.add_index(field_name="v", index_type="FLAT", metric_type="L2", params={})
    client.create_collection(target.meta_collection, schema=meta, index_params=meta_index, consistency_level="Strong")


def drop(client: Any, target: MilvusTarget) -> None:
    """Drop every collection of the index."""
    for name in (target.collection, target.sentences_collection, target.meta_collection):
        if client.has_collection(name):
            client.drop_collection(name)


def write_meta(client: Any, target: MilvusTarget, values: Mapping[str, str]) -> None:
    """Upsert ``key → value`` rows of the meta collection."""
    rows = [{"key": key, "value": value, "v": [0.0, 0.0]} for key, value in values.items()]
    if rows:
        client.upsert(target.meta_collection, rows)


def lexicon_rows(terms: list[str], df: np.ndarray) -> dict[str, str]:
    """The lexicon (term of id i is ``terms[i]``, with document frequency ``df[i]``) as meta rows."""
    rows: dict[str, str] = {}
    chunk: list[list[Any]] = []
    size = 0
    for term, count in zip(terms, df.tolist(), strict=True):
        item = [term, int(count)]
        size += len(json.dumps(item, ensure_ascii=False).encode("utf-8")) + 1
        chunk.append(item)
        if size >= LEXICON_CHUNK:
            rows[f"lexicon-{len(rows)}"] = json.dumps(chunk, ensure_ascii=False)
            chunk, size = [], 0
    if chunk:
        rows[f"lexicon-{len(rows)}"] = json.dumps(chunk, ensure_ascii=False)
    return rows


def read_lexicon(client: Any, target: MilvusTarget, chunks: int) -> tuple[list[str], np.ndarray]:
    """The lexicon `lexicon_rows` wrote in ``chunks`` rows."""
    keys = [f"lexicon-{i}" for i in range(chunks)]
    found = {r["key"]: r["value"] for r in client.get(target.meta_collection, ids=keys, output_fields=["value"])}
    terms: list[str] = []
    df: list[int] = []
    for key in keys:
        if key not in found:
            raise IndexLoadError(
                f"the BM25 lexicon of {target.name} is incomplete ({key} missing); "
                f"rebuild it with: qa index PATH... --index {target.name}"
            )
        for term, count in json.loads(found[key]):
            terms.append(term)
            df.append(count)
    return terms, np.asarray(df, dtype=np.int64)


def read_manifest(client: Any, target: MilvusTarget) -> dict[str, Any]:
    """The checked manifest of the index at ``target``.

    Raises:
        IndexLoadError: no such collection, not a qa index, another format version, or a missing field.
    """
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
    if not client.has_collection(target.sentences_collection):
        raise IndexLoadError(f"{target.name} lacks its {target.sentences_collection!r} collection; {rebuild}")
    return manifest


def check_fields(client: Any, target: MilvusTarget, dim: int, lexical: bool) -> None:
    """Refuse a collection whose fields are not the ones the manifest describes."""
    fields = {f["name"]: f for f in client.describe_collection(target.collection)["fields"]}
    stored_dim = fields.get(_VECTOR, {}).get("params", {}).get("dim")
    wanted = (*_SCALARS, *_KEY_FIELDS, *((_TERMS,) if lexical else ()))
    if stored_dim is None or int(stored_dim) != dim or not all(f in fields for f in wanted):
        raise IndexLoadError(
            f"collection {target.collection!r} at {target.name} does not have the fields its manifest describes "
            f"(vector dim {stored_dim}, manifest {dim}); rebuild it with: qa index PATH... --index {target.name}"
        )
