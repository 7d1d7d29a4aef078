"""The Milvus backend at 100k passages: insert time, p50 query latency, recall@10 against FAISS exact.

Data: the same as benchmarks/scale.py — real all-MiniLM-L6-v2 vectors of SQuAD dev paragraphs,
200 held out as queries, the rest tiled with mixing and noise to ``--n`` passages. Every
passage is a full qa row (text and all attribution fields), written with qa's own code
(`qa.milvus`), so insert time includes the scalar fields a real index stores.

Measured per target:
- insert: rows/s through `MilvusIndex` writes (batches of `qa.milvus.WRITE_BATCH`), then the
  time until Milvus reports the vector index built on every row (flush + index build);
- p50/p95 latency of one query at a time through `MilvusIndex.dense_search` (k=10, passage text
  and attribution returned), per consistency level, with and without a filter keeping 1/8 of rows;
- recall@10 of the unfiltered search against exact inner-product search (FAISS ``IndexFlatIP``).
FAISS flat latency on the same machine is printed for reference.

Reproduce::

    .venv/bin/python benchmarks/milvus_bench.py                      # Milvus Lite in a temp folder
    .venv/bin/python benchmarks/milvus_bench.py --server             # Lite, then a real server started here
    .venv/bin/python benchmarks/milvus_bench.py --target milvus://HOST:19530/bench   # a server of yours
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import real_vectors, tiled  # the shared benchmark data (same folder)

PUBLISHERS = ("Reuters", "AP", "AFP", "i24NEWS", "BBC", "DPA", "Kyodo", "EFE")


class _Vectors:
    """A stand-in embedder: the benchmark inserts precomputed vectors and queries with them."""

    name = "bench-precomputed-minilm"
    dim = 384
    max_tokens = 128

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def encode(self, texts: Any, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        raise NotImplementedError("the benchmark passes vectors directly")


def passages(n: int) -> list[Any]:
    from qa.documents import Passage, Source

    out = []
    for i in range(n):
        source = Source(
            doc_id=f"doc-{i // 8}",
            title=f"Article {i // 8}",
            publisher=PUBLISHERS[i % 8],
            section=("World", "Business", "Sport")[i % 3],
            path=f"archive/{i // 10_000:03d}/doc-{i // 8}.txt",
            paragraph=i % 8 + 1,
            char_start=(i % 8) * 400,
            char_end=(i % 8) * 400 + 380,
            date=f"2024-{i % 12 + 1:02d}-{i % 28 + 1:02d}",
        )
        # Passage ids are 16 hex digits; 2*i makes the Milvus key (faiss_id) equal to i.
        out.append(Passage(format(2 * i, "016x"), f"Paragraph {i % 8 + 1} of article {i // 8}. " * 6, source))
    return out


def run(
    target: str, corpus: np.ndarray, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    import qa.milvus as qm
    from qa.filters import Filters

    parsed = qm.parse_target(target)
    client = qm._connect(parsed)
    qm._drop(client, parsed)
    spec = qm.index_spec(args.index_type)
    qm._create(client, parsed, corpus.shape[1], spec, "Strong")
    manifest = {
        "format": qm.FORMAT,
        "format_version": qm.FORMAT_VERSION,
        "model": {"name": _Vectors.name, "dim": corpus.shape[1]},
        "ann": spec,
        "metric": "inner_product",
        "sources": [],
    }
    index = qm.MilvusIndex(client, parsed, _Vectors(), manifest)  # type: ignore[arg-type]
    rows = passages(len(corpus))
    t = time.perf_counter()
    qm._insert(client, parsed, zip(rows, corpus, strict=True))
    qm._write_manifest(client, parsed, manifest)
    insert_s = time.perf_counter() - t
    print(f"  inserted in {insert_s:.1f}s", flush=True)
    t = time.perf_counter()
    index.flush()
    print(f"  flushed in {time.perf_counter() - t:.1f}s", flush=True)
    info: dict[str, Any] = {}
    while time.perf_counter() - t < args.index_timeout:
        info = client.describe_index(parsed.collection, "vector")
        if int(info.get("indexed_rows", 0)) >= len(corpus) and int(info.get("pending_index_rows", 0)) == 0:
            break
        time.sleep(2)
    else:
        print(f"  index not reported finished after {args.index_timeout:.0f}s: {info}", flush=True)
    client.load_collection(parsed.collection)
    indexed_s = time.perf_counter() - t

    def latencies(filters: Filters | None) -> tuple[list[float], np.ndarray]:
        selection = index.select_rows(filters)
        times, found = [], np.empty((len(queries), 10), dtype=np.int64)
        for i, q in enumerate(queries):
            start = time.perf_counter()
            _, keys = index.dense_search(q[None, :], 10, selection)
            times.append(time.perf_counter() - start)
            found[i] = keys[0]
        return times, found

    print(
        f"{target} [{spec['milvus']} {spec['params']}, search {spec['search_params']}]\n"
        f"  insert {len(corpus):,} rows: {insert_s:.1f}s ({len(corpus) / insert_s:,.0f} rows/s); "
        f"flush + index built: {indexed_s:.1f}s"
    )
    result: dict[str, Any] = {
        "target": "Milvus Lite (a .db file)" if parsed.lite else target,
        "index": f"{spec['milvus']} {spec['params']}",
        "rows": len(corpus),
        "insert_s": insert_s,
        "rows_per_s": len(corpus) / insert_s,
        "indexed_s": indexed_s,
        "levels": {},
    }
    for level in args.consistency.split(","):
        index.consistency_level = level
        latencies(None)  # warm-up: caches, connection
        plain, found = latencies(None)
        filtered, _ = latencies(Filters(publisher="Reuters"))
        recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
        print(
            f"  {level}: query k=10 p50 {np.median(plain) * 1e3:.1f} ms, p95 {np.percentile(plain, 95) * 1e3:.1f} ms; "
            f"with a publisher filter (1/8 of rows) p50 {np.median(filtered) * 1e3:.1f} ms; "
            f"recall@10 vs FAISS exact {recall:.3f}",
            flush=True,
        )
        result["levels"][level] = {
            "p50_ms": float(np.median(plain) * 1e3),
            "p95_ms": float(np.percentile(plain, 95) * 1e3),
            "filtered_p50_ms": float(np.median(filtered) * 1e3),
            "recall@10": float(recall),
        }
    if not args.keep:
        qm._drop(client, parsed)
    index.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sigma", type=float, default=0.3)
    parser.add_argument("--target", action="append", help="milvus://HOST:PORT/COLLECTION or a .db path (repeatable)")
    parser.add_argument("--index-type", default="hnsw", help="hnsw, ivf or flat")
    parser.add_argument("--consistency", default="Strong,Bounded", help="levels to measure, comma-separated")
    parser.add_argument("--keep", action="store_true", help="keep the collection afterwards")
    parser.add_argument("--index-timeout", type=float, default=900, help="seconds to wait for the index build")
    parser.add_argument("--json", metavar="FILE", help="also write the measurements as JSON")
    parser.add_argument(
        "--server", action="store_true", help="also start a real Milvus server (milvus==2.3.5) here and measure it"
    )
    args = parser.parse_args()

    import faiss
    from compare import machine

    started_on = machine()  # load average before this run adds its own
    real, origin = real_vectors()
    queries, bases = real[: args.queries], real[args.queries :]
    corpus = tiled(bases, args.n, args.sigma)
    print(f"data: {origin}; tiled to {args.n:,} x {corpus.shape[1]}; {len(queries)} held-out queries")
    exact = faiss.IndexFlatIP(corpus.shape[1])
    exact.add(corpus)
    _, truth = exact.search(queries, 10)
    faiss.omp_set_num_threads(1)
    times = []
    for q in queries:
        start = time.perf_counter()
        exact.search(q[None, :], 10)
        times.append(time.perf_counter() - start)
    print(f"FAISS flat (exact), 1 thread: p50 {np.median(times) * 1e3:.1f} ms")
    results = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        targets = list(args.target or [str(Path(tmp) / "bench.db")])
        if args.server:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from tests.milvus_server import milvus_server

            targets.append(stack.enter_context(milvus_server(Path(tmp) / "server")) + "/bench")
        for target in targets:
            results.append(run(target, corpus, queries, truth, args))
    if args.json:
        report = {
            "command": "python benchmarks/milvus_bench.py " + " ".join(sys.argv[1:]),
            "machine": started_on,
            "data": f"{origin}; tiled to {args.n:,} x {corpus.shape[1]}; {len(queries)} held-out queries",
            "faiss_flat_p50_ms": float(np.median(times) * 1e3),
            "targets": results,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
