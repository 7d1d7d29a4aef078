"""Retrieval quality of each embedding backend, and of one-pass against separate sentence vectors.

Every variant builds the SQuAD dev index (or SciFact's) exactly as `qa eval` does, then
runs the same held-out questions through the dense and hybrid modes. ``mixed`` queries
an fp32 (``onnx``) index with int8 query vectors: what mixing precisions would cost,
which `qa` refuses to do silently.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/embedding_quality.py --dataset squad \\
        --variants openvino-bf16,onnx-int8,onnx-int8/separate,onnx,mixed \\
        --json benchmarks/results/embedding_quality_squad.json

Variants: ``BACKEND`` (one forward pass gives passage and sentence vectors),
``BACKEND/separate`` (sentences embedded as texts of their own, as before issue 11).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import machine


class _Separate:
    """Hides an embedder's one-pass sentence pooling, so sentences are embedded on their own."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    name = property(lambda self: self._inner.name)
    dim = property(lambda self: self._inner.dim)
    max_tokens = property(lambda self: self._inner.max_tokens)
    backend = property(lambda self: self._inner.backend)

    def count_tokens(self, text: str) -> int:
        return int(self._inner.count_tokens(text))

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> Any:
        return self._inner.encode(texts, batch_size=batch_size, progress=progress)


def run(dataset_name: str, variants: Sequence[str], limit: int | None) -> dict[str, Any]:
    from qa.embedding import get_embedder
    from qa.evaluation import SCIFACT_FILE, SQUAD_FILE, evaluate, find_data, load_scifact, load_squad
    from qa.index import build_faiss_index

    if dataset_name == "squad":
        dataset = load_squad(find_data(SQUAD_FILE, None), split="heldout", limit=limit)
    else:
        dataset = load_scifact(find_data(SCIFACT_FILE, None), limit=limit)
    import tempfile

    from qa.evaluation.corpus import _corpus_jsonl

    rows = []
    built: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        corpus.write_text(_corpus_jsonl(dataset.articles or []), encoding="utf-8")
        for variant in variants:
            backend, _, how = variant.partition("/")
            if variant == "mixed":
                index = built.get("onnx") or build_faiss_index([corpus], None, model=get_embedder(backend="onnx"))
                built["onnx"] = index
                index.embedder = get_embedder(backend="onnx-int8")  # deliberately bypasses the check
                seconds = float("nan")
            else:
                embedder: Any = get_embedder(backend=backend)
                _ = embedder.dim  # export and load outside the timed build
                if how == "separate":
                    embedder = _Separate(embedder)
                started = time.perf_counter()
                index = build_faiss_index([corpus], None, model=embedder, progress=False)
                seconds = time.perf_counter() - started
                if not how:
                    built[backend] = index
            report = evaluate(dataset, index, modes=["dense", "hybrid"], answers=False)
            for r in report.retrieval:
                rows.append({
                    "variant": variant, "mode": r.mode, "recall": {str(k): v for k, v in r.recall.items()},
                    "mrr_at_10": r.mrr_at_10, "ndcg_at_10": r.ndcg_at_10, "build_seconds": seconds,
                })  # fmt: skip
            print(f"{variant}: built in {seconds:.0f}s; " + "; ".join(
                f"{r.mode} R@1 {r.recall[1]:.3f} R@5 {r.recall[5]:.3f} nDCG@10 {r.ndcg_at_10:.3f}"
                for r in report.retrieval), file=sys.stderr, flush=True)  # fmt: skip
    return {"dataset": dataset.description, "questions": len(dataset.questions), "rows": rows, "machine": machine()}


def show(result: dict[str, Any]) -> str:
    lines = [f"{result['dataset']}: {result['questions']} questions",
             "| variant | mode | recall@1 | recall@5 | nDCG@10 | build s |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["rows"]:
        lines.append(
            f"| {r['variant']} | {r['mode']} | {r['recall']['1']:.3f} | {r['recall']['5']:.3f} | "
            f"{r['ndcg_at_10']:.3f} | {r['build_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("squad", "scifact"), default="squad")
    parser.add_argument("--variants", default="openvino-bf16,onnx-int8,onnx-int8/separate,onnx,mixed")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    result = run(args.dataset, [v for v in args.variants.split(",") if v], args.limit)
    result["command"] = "python benchmarks/embedding_quality.py " + " ".join(argv or sys.argv[1:])
    print(show(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
