"""FAISS recipes: which index type a count of passages gets, how it is built and searched.

The only module (with `qa.stores.faiss.generations`, which reads and writes the files) that
imports faiss, lazily. ``flat`` (exact) up to `AUTO_FLAT_MAX` passages, then `AUTO_LARGE_TYPE`;
or ``hnsw``, ``ivf-sq8``, ``ivf-pq``, or any FAISS factory string. Approximate types keep the
exact vectors beside the search structure to rerank candidates (see benchmarks/scale.py).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from qa.embedding import env_threads
from qa.errors import InputError

#: FAISS threads for a search (default: 1 for up to 4 queries, else every core).
SEARCH_THREADS_ENV = "QA_SEARCH_THREADS"


INDEX_TYPES = ("auto", "flat", "hnsw", "ivf-sq8", "ivf-pq")


#: ``index_type="auto"`` stays exact up to this many passages. Measured in benchmarks/scale.py on a
#: busy 2-core machine: exact search costs ~0.4-0.75 ms per 1k passages per query on one core
#: (18 ms at 50k, 750 ms at 1M), so up to 100k it costs no more than embedding the query itself.
AUTO_FLAT_MAX = 100_000


#: ...and above it uses this type: IVF lists of 8-bit scalar codes (1/4 of flat's memory) whose
#: candidates are reranked with the exact vectors; recall@10 against exact ≥ 0.97, ~1 ms/query.
AUTO_LARGE_TYPE = "ivf-sq8"


#: A filtered search whose allowed rows are at most this many (and any search of a flat index
#: this small) is answered by exact numpy search over just those rows: exact, and faster than
#: a FAISS scan with a selector.
EXACT_FILTER_MAX = 20_000


#: Approximate types that rerank fetch at least this many candidates (cheap: one dot product each).
RERANK_MIN = 100


#: IVF indexes are retrained (from the stored exact vectors) when the corpus grows or shrinks
#: by this factor since training; in between, new vectors are added to the trained lists.
RETRAIN_FACTOR = 4.0


def load_faiss() -> Any:
    # FAISS's OpenMP threads spin while idle by default; on a shared machine with fewer cores
    # than busy threads, that turns a 1 ms search into 50-100 ms. Passive waiting costs little.
    # (Read once, when FAISS's OpenMP starts; set OMP_WAIT_POLICY yourself to override.)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import faiss

    return faiss


@contextlib.contextmanager
def faiss_threads(faiss: Any, queries: int) -> Iterator[None]:
    # benchmarks/compare.py threads: one query over 1M flat vectors took 62 ms on one thread and
    # 155 ms on two (2 cores): OpenMP start-up and contention outweigh the split for one query.
    # Many queries at once split well, so batches use every core.
    wanted = env_threads(SEARCH_THREADS_ENV, 1 if queries <= 4 else os.cpu_count() or 1)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(wanted)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def resolve_index_type(index_type: str | None, count: int, dim: int) -> dict[str, Any]:
    """The FAISS recipe for ``index_type`` at ``count`` passages of ``dim`` dimensions.

    Args:
        index_type: ``auto``, ``flat``, ``hnsw``, ``ivf-sq8``, ``ivf-pq``, or a FAISS
            factory string such as ``"IVF256,PQ32x8"`` or ``"HNSW16,Flat"``.
        count: number of passages to index.
        dim: vector dimension.

    Returns:
        ``{"requested", "type", "factory", "params"}``, recorded in the manifest.

    Raises:
        InputError: an unknown name or a factory string FAISS rejects.
    """
    requested = (index_type or "auto").strip()
    name = requested.lower()
    if name == "auto":
        name = "flat" if count <= AUTO_FLAT_MAX else AUTO_LARGE_TYPE
    if name == "flat":
        return {"requested": requested, "type": "flat", "factory": "IDMap2,Flat", "params": {}}
    if name == "hnsw":
        hnsw = {"M": 32, "ef_construction": 40, "ef_search": 128}
        return {"requested": requested, "type": "hnsw", "factory": "IDMap2,HNSW32,Flat", "params": hnsw}
    if name in ("ivf-sq8", "ivf-pq"):
        # ~sqrt(n) lists (a power of two), with at least 39 training points per list as FAISS asks.
        nlist = 2 ** max(0, round(math.log2(math.sqrt(max(count, 1)))))
        nlist = max(1, min(nlist, count // 39))
        # Small indexes probe every list (exact but for the codes); large ones ~3% of lists, at least 16.
        nprobe = min(nlist, max(16, nlist // 32))
        if name == "ivf-sq8":
            factory, k_factor = f"IVF{nlist},SQ8", 2
        else:
            # dim/4 sub-quantizers of 8 bits (96 bytes for 384-d); fewer bits when there is too
            # little data to train 256 centroids per sub-quantizer. "np": no polysemous training,
            # which costs minutes and serves only Hamming pre-filtering, which qa does not use.
            # PQ codes only shortlist: the best k * 50 are reranked with the exact vectors
            # (benchmarks/scale.py: at 1M, 100 candidates gave recall@10 0.79, 500 gave 0.94 with 48 bytes).
            m = largest_divisor_at_most(dim, max(1, dim // 4))
            nbits = max(1, min(8, int(math.log2(max(count, 2) / 39)) if count >= 78 else 1))
            factory, k_factor = f"IVF{nlist},PQ{m}x{nbits}np", 50
        ivf_params = {"nlist": nlist, "nprobe": nprobe, "k_factor": k_factor}
        return {"requested": requested, "type": name, "factory": factory, "params": ivf_params}
    faiss = load_faiss()
    try:
        probe = faiss.index_factory(dim, requested, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise InputError(
            f"unknown index type {requested!r}; use one of {', '.join(INDEX_TYPES)} or a FAISS factory string "
            "such as 'IVF1024,SQ8' or 'HNSW32,Flat'"
        ) from exc
    params: dict[str, Any] = {}
    if faiss.try_extract_index_ivf(probe) is not None:
        params = {"nprobe": 16, "k_factor": 4}
    elif hnsw_of(probe) is not None:
        params = {"ef_search": 128}
    return {"requested": requested, "type": "factory", "factory": requested, "params": params}


def largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, limit + 1) if n % d == 0)


def hnsw_of(index: Any) -> Any:
    faiss = load_faiss()
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap):
        index = faiss.downcast_index(index.index)
    return index if isinstance(index, faiss.IndexHNSW) else None


def build_ann(vectors: np.ndarray, ids: np.ndarray, spec: dict[str, Any]) -> Any:
    """A FAISS index of ``spec`` (from `resolve_index_type`) holding ``vectors`` under ``ids``.

    IVF types are trained on (a sample of) ``vectors``; the spec's params gain ``trained_on``.
    """
    faiss = load_faiss()
    dim = int(vectors.shape[1])
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    kind = spec["type"]
    if kind == "flat":
        base = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        base = faiss.IndexHNSWFlat(dim, spec["params"]["M"], faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = spec["params"]["ef_construction"]
    else:
        base = faiss.index_factory(dim, spec["factory"], faiss.METRIC_INNER_PRODUCT)
    if not base.is_trained:
        ivf = faiss.try_extract_index_ivf(base)
        # k-means quality saturates near 64 points per list; a fixed-seed sample keeps builds reproducible.
        cap = max(10_000, 64 * (ivf.nlist if ivf is not None else 1))
        sample = vectors
        if len(vectors) > cap:
            sample = vectors[np.sort(np.random.default_rng(0).choice(len(vectors), cap, replace=False))]
        try:
            base.train(sample)
        except RuntimeError as exc:  # FAISS: fewer training points than clusters, and the like
            reason = str(exc).rsplit("failed: ", 1)[-1].strip()
            raise InputError(
                f"index type {spec['requested']!r} cannot be trained on {len(vectors)} passages ({reason}); "
                "use --index-type flat or auto, or a factory string with fewer lists"
            ) from None
        spec["params"]["trained_on"] = len(vectors)
    try:
        if kind in ("flat", "hnsw"):
            raise RuntimeError("wrap in IDMap2")
        base.add_with_ids(vectors, ids)
        return base
    except RuntimeError:
        # Flat and HNSW keep no ids of their own: IDMap2 maps FAISS ids to rows and can reconstruct.
        index = faiss.IndexIDMap2(base)
        index.add_with_ids(vectors, ids)
        return index


def search_params(index: Any, *, selector: Any = None, ef_search: int | None, nprobe: int | None) -> Any:
    faiss = load_faiss()
    if faiss.try_extract_index_ivf(index) is not None:
        params = faiss.SearchParametersIVF()
        if nprobe:
            params.nprobe = int(nprobe)
    elif hnsw_of(index) is not None:
        params = faiss.SearchParametersHNSW()
        if ef_search:
            params.efSearch = int(ef_search)
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    return params


def empty_result(n: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, width), -np.inf, dtype=np.float32), np.full((n, width), -1, dtype=np.int64)


def top_positions(scores: np.ndarray, k: int, keys: np.ndarray | None = None) -> np.ndarray:
    """Positions of the ``k`` largest scores, best first.

    Ties are broken by lower ``keys[position]`` (the passage keys, so every store orders equal
    scores alike), or by lower position without keys.
    """
    order_keys = np.arange(len(scores)) if keys is None else np.asarray(keys)
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
        cut = scores[part].min()
        above = np.flatnonzero(scores > cut)
        ties = np.flatnonzero(scores == cut)
        ties = ties[np.argsort(order_keys[ties], kind="stable")][: k - len(above)]
        part = np.concatenate([above, ties])
    else:
        part = np.arange(len(scores))
    return part[np.lexsort((order_keys[part], -scores[part]))]


def rerank_exact(
    queries: np.ndarray, vectors: np.ndarray, cand: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores of candidate rows (-1 = none); the best ``width`` per query, ties by lower row."""
    scores = np.full((len(queries), width), -np.inf, dtype=np.float32)
    out = np.full((len(queries), width), -1, dtype=np.int64)
    for i, line in enumerate(cand):
        rows = np.unique(line[line >= 0])  # sorted, so ties go to the lower row
        if not len(rows):
            continue
        exact = np.asarray(vectors[rows], dtype=np.float32) @ queries[i]
        top = top_positions(exact, min(width, len(rows)))
        scores[i, : len(top)], out[i, : len(top)] = exact[top], rows[top]
    return scores, out
