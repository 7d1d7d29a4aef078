"""Index types at scale: flat vs HNSW vs IVF-SQ8 vs IVF-PQ on 1M passages of 384 dims, side by side.

Data: real all-MiniLM-L6-v2 vectors of SQuAD dev paragraphs (cached by other scripts in
/tmp/qa-cache/squad_paragraphs_minilm.npy; otherwise a few thousand SQuAD paragraphs are
encoded here), split into held-out *queries* (real vectors) and *bases*. The corpus tiles
the bases, mixed pairwise and with Gaussian noise, renormalised:
x = normalise(base[i % B] + w * base[j] + sigma * g / sqrt(d)), w ~ U(0, 0.6), j random.
Queries sit between many near-tied neighbours, so exact recall@10 is a demanding target.

For each type, measured with qa's own code (`qa.index.build_ann` + `Index.dense_search`, so
the exact reranking of approximate candidates is included): build time, FAISS index bytes
per passage (what must sit in RAM to search), recall@10 against exact search, and p50/p95
latency of single-query search on one thread. Approximate types also keep the exact
vectors on disk (vectors.npy, 4·dim bytes per passage, memory-mapped), from which they
rerank ``k * k_factor`` candidates.

Reproduce (≈10 GB RAM peak is the limit; this uses ~5 GB):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/scale.py            # 1M passages
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/scale.py --n 100000 # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

# OpenMP threads that spin while waiting are ruinous on a shared, oversubscribed machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CACHE = Path("/tmp/qa-cache/squad_paragraphs_minilm.npy")


def real_vectors(limit: int = 3000) -> tuple[np.ndarray, str]:
    if CACHE.exists():
        return np.load(CACHE).astype(np.float32), f"{CACHE} (cached MiniLM vectors of SQuAD dev paragraphs)"
    from qa.embedding import get_embedder
    from qa.evaluation import SQUAD_FILE, find_data

    with zipfile.ZipFile(find_data(SQUAD_FILE, None)) as z:
        data = json.loads(z.read(z.namelist()[0]))
    texts = [p["context"] for a in data["data"] for p in a["paragraphs"]][:limit]
    return get_embedder().encode(texts, progress=True), f"{len(texts)} SQuAD dev paragraphs encoded with MiniLM"


def tiled(bases: np.ndarray, n: int, sigma: float, seed: int = 0) -> np.ndarray:
    """Base i (cycled) plus a random fraction (0..0.6) of another random base, plus noise, renormalised.

    The mixing keeps neighbourhoods continuous: pure noisy copies would form tight cliques of
    n/B near-identical vectors, which no real corpus has and which break graph indexes.
    """
    rng = np.random.default_rng(seed)
    dim = bases.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        stop = min(n, start + step)
        block = bases[np.arange(start, stop) % len(bases)]
        other = bases[rng.integers(0, len(bases), stop - start)]
        block = block + rng.uniform(0, 0.6, (stop - start, 1)).astype(np.float32) * other
        block = block + (sigma / np.sqrt(dim)) * rng.standard_normal(block.shape, dtype=np.float32)
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def make_index(vectors: np.ndarray, ann: Any, spec: dict[str, Any]) -> Any:
    """An `Index` over bare vectors (no passages needed for dense search)."""
    from qa.index import Index

    index = Index.__new__(Index)
    index.embedder = None
    index.path = None
    index.manifest = {}
    index.last_update = None
    index._knobs = {}
    ids = np.arange(len(vectors), dtype=np.int64)
    index._set_state([None] * len(vectors), vectors, ids, ann, spec, None, vectors.shape[1], None)
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="passages (default 1M)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sigma", type=float, default=0.3, help="noise scale relative to a unit vector")
    parser.add_argument(
        "--types", default="flat,hnsw,ivf-sq8,ivf-pq", help="comma-separated; use ';' between FAISS factory strings"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the measurements as JSON")
    args = parser.parse_args()

    import faiss

    from qa.index import build_ann, resolve_index_type

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from compare import machine

    started_on = machine()  # load average before this run adds its own
    real, origin = real_vectors()
    queries, bases = real[: args.queries], real[args.queries :]
    print(
        f"data: {origin}; {len(bases)} bases tiled to {args.n:,} x {real.shape[1]} with noise sigma={args.sigma}; "
        f"{len(queries)} held-out real paragraph vectors as queries"
    )
    t = time.perf_counter()
    corpus = tiled(bases, args.n, args.sigma)
    ids = np.arange(args.n, dtype=np.int64)
    print(f"generated corpus in {time.perf_counter() - t:.1f}s")

    t = time.perf_counter()
    exact = faiss.IndexFlatIP(corpus.shape[1])
    exact.add(corpus)
    _, truth = exact.search(queries, 10)
    del exact
    print(f"exact top-10 for {len(queries)} queries in {time.perf_counter() - t:.1f}s (all threads)\n")

    rows: list[dict[str, Any]] = []
    for name in args.types.split(";" if ";" in args.types else ","):
        spec = resolve_index_type(name, args.n, corpus.shape[1])
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        t = time.perf_counter()
        ann = build_ann(corpus, ids, spec)
        build = time.perf_counter() - t
        with tempfile.NamedTemporaryFile(dir="/tmp", suffix=".faiss") as f:
            faiss.write_index(ann, f.name)
            size = os.path.getsize(f.name)
        index = make_index(corpus, ann, spec)
        variants: list[tuple[str, dict[str, int]]] = [("default", {})]
        if spec["type"] == "hnsw":
            variants += [("ef_search=64", {"ef_search": 64}), ("ef_search=512", {"ef_search": 512})]
        if "nprobe" in spec["params"]:
            variants += [("nprobe=8", {"nprobe": 8}), ("nprobe=64", {"nprobe": 64}), ("no rerank", {"k_factor": 1})]
            variants += [("k_factor=10", {"k_factor": 10}), ("nprobe=64 k_factor=100", {"nprobe": 64, "k_factor": 100})]
        faiss.omp_set_num_threads(1)  # single-query latency on one core
        for label, knobs in variants:
            index.dense_search(queries[:5], 10, **knobs)  # warm up
            times, found = [], []
            for q in queries:
                t = time.perf_counter()
                _, r = index.dense_search(q[None, :], 10, **knobs)
                times.append(time.perf_counter() - t)
                found.append(r[0])
            recall = float(
                np.mean([len(set(f.tolist()) & set(g.tolist())) / 10 for f, g in zip(found, truth, strict=True)])
            )
            row = {
                "type": name,
                "factory": spec["factory"],
                "knobs": label
                if label != "default"
                else json.dumps({k: v for k, v in spec["params"].items() if k in ("ef_search", "nprobe", "k_factor")}),
                "build_s": build,
                "bytes_per_passage": size / args.n,
                "recall@10": recall,
                "p50_ms": 1000 * float(np.percentile(times, 50)),
                "p95_ms": 1000 * float(np.percentile(times, 95)),
            }
            rows.append(row)
            print(
                f"  {name:8} {row['knobs']:36} build {build:7.1f}s  {row['bytes_per_passage']:7.0f} B/passage  "
                f"recall@10 {recall:.3f}  p50 {row['p50_ms']:7.2f} ms  p95 {row['p95_ms']:7.2f} ms",
                flush=True,
            )
        del index, ann

    print(f"\n{args.n:,} passages x {corpus.shape[1]} dims; latency = one query at a time, one thread")
    print("| type | factory | knobs | build s | FAISS bytes/passage | recall@10 vs exact | p50 ms | p95 ms |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['type']} | {r['factory']} | {r['knobs']} | {r['build_s']:.1f} | {r['bytes_per_passage']:.0f} | "
            f"{r['recall@10']:.3f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} |"
        )
    print(
        "\nApproximate types also keep vectors.npy on disk (4 x dim = 1536 bytes/passage), memory-mapped; "
        "reranking reads only k*k_factor rows per query."
    )
    command = (
        f"python benchmarks/scale.py --n {args.n} --queries {args.queries} --sigma {args.sigma} --types {args.types}"
    )
    print(f"reproduce: HF_HUB_OFFLINE=1 .venv/bin/{command}")
    if args.json:
        report = {
            "command": command,
            "machine": started_on,
            "data": f"{origin}; {len(bases)} bases tiled to {args.n:,} x {corpus.shape[1]}, sigma {args.sigma}; "
            f"{len(queries)} held-out real paragraph vectors as queries",
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
