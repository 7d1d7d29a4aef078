"""The published-number check: plain all-MiniLM-L6-v2 dense retrieval on BEIR SciFact.

No `qa` code on the retrieval path: sentence-transformers ``encode`` of every document
(whole, as MTEB does: the model truncates at its max_seq_length of 256 word pieces),
``faiss.IndexFlatIP``, then nDCG@10 and recall@100 as BEIR computes them. MTEB publishes
nDCG@10 = 0.645 for this model; `qa eval scifact` must land within ±0.01 of it.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/scifact_plain.py --json results/scifact_plain.json

``--document`` chooses how a document becomes text: ``title-space`` (MTEB: title + " " + text),
``abstract`` (no title) or ``title-sep`` (title + " [SEP] " + text).
Only the data loading is shared with `qa` (the loader for the zip as shipped).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CACHE = Path("/tmp/qa-cache")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="plain MiniLM + FAISS on SciFact (the MTEB check)")
    parser.add_argument("--data", help="SciFact zip (default: $QA_DATA_DIR or ../shared/data)")
    parser.add_argument("--document", choices=("title-space", "abstract", "title-sep"), default="title-space")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--cache", action="store_true", help="cache document vectors in /tmp/qa-cache")
    args = parser.parse_args(argv)

    import faiss
    from sentence_transformers import SentenceTransformer

    from qa.embedding import resolve_model_path
    from qa.evaluation import SCIFACT_FILE, find_data, load_scifact, ndcg_at_k, recall_at_k

    data = load_scifact(find_data(SCIFACT_FILE, args.data))
    assert data.articles is not None
    titles = [a.title for a in data.articles]
    abstracts = [a.paragraphs[0][len(a.title) + 1 :] for a in data.articles]
    texts = {
        "title-space": [f"{t} {a}" for t, a in zip(titles, abstracts, strict=True)],
        "abstract": abstracts,
        "title-sep": [f"{t} [SEP] {a}" for t, a in zip(titles, abstracts, strict=True)],
    }[args.document]
    model = SentenceTransformer(str(resolve_model_path("all-MiniLM-L6-v2")), device="cpu")
    cache = CACHE / f"scifact-plain-{args.document}-{data.data_sha256[:12]}.npy"
    started = time.perf_counter()
    if args.cache and cache.exists():
        vectors = np.load(cache)
    else:
        vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        if args.cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, vectors)
    encode_s = time.perf_counter() - started
    queries = model.encode([q.text for q in data.questions], normalize_embeddings=True, convert_to_numpy=True)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    _, ids = flat.search(queries, 100)
    doc_ids = [a.doc_id for a in data.articles]
    ndcg, recall = [], []
    for question, row in zip(data.questions, ids, strict=True):
        ranked = [doc_ids[i] for i in row]
        ndcg.append(ndcg_at_k(ranked, question.gold, 10))
        recall.append(recall_at_k(ranked, question.gold, 100))
    result = {
        "command": "python benchmarks/scifact_plain.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "document": args.document,
        "max_seq_length": model.max_seq_length,
        "documents": len(texts),
        "queries": len(data.questions),
        "ndcg_at_10": float(np.mean(ndcg)),
        "recall_at_100": float(np.mean(recall)),
        "encode_seconds": encode_s,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
