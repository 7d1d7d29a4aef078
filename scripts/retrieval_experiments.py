"""Choose the hybrid fusion weights with qa's own index, on SQuAD *tune* articles, checked on SciFact.

Every signal comes from the index `qa eval` builds (passage windows, BM25 over "title. text",
sentence vectors), through the same calls `qa.retrieval` makes: the candidate pool is the union
of the top `qa.fusion.DEFAULT_POOL` dense and BM25 rows; each signal is z-scored over the pool; the
weighted sum ranks it. The grid is scored by paragraph recall@1 on the 38 tune articles (all
2,067 paragraphs searched); SciFact nDCG@10 is printed beside every row so that a weight that
only suits SQuAD shows. Held-out SQuAD articles are never read here.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/retrieval_experiments.py           # ~15 min the first time
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/retrieval_experiments.py --quick   # the default and a few others
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa import evaluation as ev  # noqa: E402
from qa import fusion  # noqa: E402
from qa.embedding import DEFAULT_MODEL  # noqa: E402

SIGNALS = ("dense", "bm25", "sentence", "coverage")


def pools(index: Any, dataset: ev.Dataset) -> list[dict[str, Any]]:
    """Per question: its candidate rows, the four signals over them, and the relevant units."""
    questions = [q for q in dataset.questions if q.gold]
    vectors = index.embed_queries([q.text for q in questions])
    by_document = dataset.unit == "document"
    unit = np.array([ev.unit_key(p.source.doc_id, None if by_document else p.source.paragraph) for p in index.passages])
    out = []
    started = time.perf_counter()
    for i, (q, v) in enumerate(zip(questions, vectors, strict=True)):
        _, dense_rows = index.dense_search(v[None, :], fusion.DEFAULT_POOL)
        _, bm25_rows = index.lexical_search([q.text], fusion.DEFAULT_POOL)
        rows = np.union1d(dense_rows[0][dense_rows[0] >= 0], bm25_rows[0][bm25_rows[0] >= 0]).astype(np.int64)
        signals = {
            "dense": index.passage_vectors(rows) @ v,
            "bm25": index.lexical.scores(q.text)[rows],
            "sentence": index.best_sentence_scores(v, rows),
            "coverage": index.lexical.coverage(q.text, rows),
        }
        out.append({"rows": rows, "units": unit[rows], "signals": signals, "relevant": set(q.gold)})
        if i % 2000 == 0:
            seconds = time.perf_counter() - started
            print(f"  {dataset.name}: {i}/{len(questions)} questions, {seconds:.0f}s", file=sys.stderr)
    return out


def score(
    records: Sequence[dict[str, Any]],
    weights: Sequence[float],
    min_spreads: Sequence[float] = fusion.DEFAULT_MIN_SPREADS,
) -> dict[str, float]:
    """recall@1, recall@5 and nDCG@10 over units, for one weighting of `SIGNALS`."""
    r1 = r5 = ndcg = 0.0
    for rec in records:
        signals = [rec["signals"][n] for n in SIGNALS]
        fused = fusion.fuse_scores(signals, weights, fusion.DEFAULT_NORMALISATION, min_spreads)
        order = np.lexsort((rec["rows"], -fused))
        ranked = ev.dedupe(rec["units"][order].tolist())
        r1 += ev.recall_at_k(ranked, rec["relevant"], 1)
        r5 += ev.recall_at_k(ranked, rec["relevant"], 5)
        ndcg += ev.ndcg_at_k(ranked, rec["relevant"], 10)
    n = len(records)
    return {"r1": r1 / n, "r5": r5 / n, "ndcg10": ndcg / n}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squad", help="SQuAD v1.1 dev zip (default: $QA_DATA_DIR or ../shared/data)")
    parser.add_argument("--scifact", help="SciFact zip (default: $QA_DATA_DIR or ../shared/data)")
    parser.add_argument("--quick", action="store_true", help="only the default and a few reference weightings")
    args = parser.parse_args()

    squad = ev.load_squad(ev.find_data(ev.SQUAD_FILE, args.squad), split="tune")
    scifact = ev.load_scifact(ev.find_data(ev.SCIFACT_FILE, args.scifact))
    print("building or loading the evaluation indexes (cached under indexes/)", file=sys.stderr)
    records = {
        "squad": pools(ev.eval_index(squad, index_dir=ev.default_index_dir("squad", DEFAULT_MODEL)), squad),
        "scifact": pools(ev.eval_index(scifact, index_dir=ev.default_index_dir("scifact", DEFAULT_MODEL)), scifact),
    }
    reference = [
        (1.0, 0.0, 0.0, 0.0),
        (0.0, 1.0, 0.0, 0.0),
        (0.5, 0.5, 0.0, 0.0),
        (0.2, 0.4, 0.4, 0.0),
        fusion.DEFAULT_WEIGHTS,
    ]
    grid = list(dict.fromkeys(reference))
    if not args.quick:
        steps = {
            "dense": (0.1, 0.2, 0.3),
            "bm25": (0.3, 0.4, 0.5),
            "sentence": (0.3, 0.4, 0.5),
            "coverage": (0.0, 0.1, 0.2, 0.3),
        }
        grid += [w for w in itertools.product(*(steps[n] for n in SIGNALS)) if w not in grid]
    print(f"{'weights (' + ', '.join(SIGNALS) + ')':44} SQuAD tune R@1   R@5    SciFact nDCG@10")
    rows = []
    for weights in grid:
        sq, sf = score(records["squad"], weights), score(records["scifact"], weights)
        rows.append((sq["r1"], weights, sq, sf))
        mark = "  <- default" if tuple(weights) == tuple(fusion.DEFAULT_WEIGHTS) else ""
        print(f"{weights!s:44} {sq['r1']:.4f}  {sq['r5']:.4f}   {sf['ndcg10']:.4f}{mark}", flush=True)
    # The default weights with every signal z-scored as it is (no `DEFAULT_MIN_SPREADS`).
    sq, sf = score(records["squad"], fusion.DEFAULT_WEIGHTS, (0.0,) * len(SIGNALS)), score(
        records["scifact"], fusion.DEFAULT_WEIGHTS, (0.0,) * len(SIGNALS)
    )
    print(f"{'default, no least spread':44} {sq['r1']:.4f}  {sq['r5']:.4f}   {sf['ndcg10']:.4f}")
    best = max(rows, key=lambda r: r[0])
    _, weights, sq, sf = best
    print(f"best on SQuAD tune: {weights} R@1 {sq['r1']:.4f} R@5 {sq['r5']:.4f}, SciFact nDCG@10 {sf['ndcg10']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
