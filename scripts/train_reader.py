"""Train the FeatureReader's candidate ranker and calibration from SQuAD v1.1 dev.

Usage:
    python scripts/train_reader.py --data ../shared/data/dev-v1.1.json.zip

Split: the held-out articles are those at positions 0, 5, 10, ... of the file's
``data`` list; everything fitted (ranker, calibration, model choice) uses only
the other articles. Prints grouped cross-validation numbers on the tune
articles, then held-out given-paragraph EM/F1 and a reliability table, and
writes ``qa/data/reader-lgbm.txt`` plus ``qa/data/reader-lgbm.json``.
Deterministic: fixed seeds, single-threaded LightGBM.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("QA_BATCH_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qa import reader as R
from qa.evaluation import exact_match, f1_score
from qa.text import normalize_answer

PARAMS: dict[str, Any] = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [1],
    "learning_rate": 0.07,
    "num_leaves": 31,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "lambdarank_truncation_level": 20,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
    "seed": 13,
    "verbose": -1,
}
ROUNDS = 300


def load(path: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith(".json"))
        data = json.loads(z.read(name))["data"]
    held = [a for i, a in enumerate(data) if i % 5 == 0]
    tune = [a for i, a in enumerate(data) if i % 5 != 0]
    return tune, held


def prepare(articles: list[dict[str, Any]], embedder: Any, cache: Path | None, tag: str) -> dict[str, Any]:
    """The slow part: spaCy parses and MiniLM vectors of every paragraph and question (optionally cached)."""
    from spacy.tokens import DocBin

    nlp = R._nlp()
    if cache and (cache / f"{tag}.npz").exists():
        z = np.load(cache / f"{tag}.npz", allow_pickle=False)
        docs = list(DocBin().from_bytes((cache / f"{tag}.docs").read_bytes()).get_docs(nlp.vocab))
        qdocs = list(DocBin().from_bytes((cache / f"{tag}.qdocs").read_bytes()).get_docs(nlp.vocab))
        return {"docs": docs, "qdocs": qdocs, "sent": z["sent"], "q": z["q"]}
    paras = [p["context"] for a in articles for p in a["paragraphs"]]
    questions = [qa["question"] for a in articles for p in a["paragraphs"] for qa in p["qas"]]
    t0 = time.time()
    docs = list(nlp.pipe(paras, batch_size=32))
    qdocs = list(nlp.pipe(questions, batch_size=256))
    print(f"  [{tag}] parsed {len(docs)} paragraphs, {len(qdocs)} questions in {time.time() - t0:.0f}s", flush=True)
    sents = [p[a:b] for p in paras for a, b in (R.split_sentences(p) or [(0, len(p))])]
    sent = embedder.encode(sents, batch_size=128)
    q = embedder.encode(questions, batch_size=128)
    print(f"  [{tag}] embedded {len(sents)} sentences and the questions in {time.time() - t0:.0f}s", flush=True)
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
        keep = ["TAG", "POS", "MORPH", "LEMMA", "DEP", "ENT_IOB", "ENT_TYPE", "HEAD", "SENT_START"]
        (cache / f"{tag}.docs").write_bytes(DocBin(attrs=keep, docs=docs).to_bytes())
        (cache / f"{tag}.qdocs").write_bytes(DocBin(attrs=keep, docs=qdocs).to_bytes())
        np.savez(cache / f"{tag}.npz", sent=sent, q=q)
    return {"docs": docs, "qdocs": qdocs, "sent": sent, "q": q}


def build(articles: list[dict[str, Any]], prep: dict[str, Any]) -> list[dict[str, Any]]:
    """Features and labels for every question, given its own paragraph."""
    nlp = R._nlp()
    out = []
    pi_glob, s_off, q_off = 0, 0, 0
    for ai, art in enumerate(articles):
        for para in art["paragraphs"]:
            p = R._Passage(nlp, para["context"], doc=prep["docs"][pi_glob])
            p.set_embeddings(prep["sent"][s_off : s_off + len(p.sents)])
            pi_glob += 1
            s_off += len(p.sents)
            for qa in para["qas"]:
                q = R.analyse_question(nlp, qa["question"], doc=prep["qdocs"][q_off])
                qv = prep["q"][q_off]
                q_off += 1
                feats = R.question_features(q, [p], qv)[0]
                golds = [a["text"] for a in qa["answers"]]
                out.append(
                    {"article": ai, "feats": feats.astype(np.float32),
                     "f1": np.array([f1_score(t, golds) for t in p.cand_text]),
                     "em": np.array([exact_match(t, golds) for t in p.cand_text]),
                     "texts": p.cand_text, "golds": golds, "question": qa["question"]}
                )  # fmt: skip
    assert s_off == len(prep["sent"]) and q_off == len(prep["q"])
    return out


def grades(q: dict[str, Any]) -> np.ndarray:
    # Graded relevance for lambdarank: exact > mostly right > partly right > wrong.
    g = np.zeros(len(q["f1"]), dtype=np.int32)
    g[q["f1"] > 0.2] = 1
    g[q["f1"] >= 0.6] = 2
    g[q["em"] > 0] = 3
    return g


def train(items: list[dict[str, Any]], params: dict[str, Any], rounds: int) -> Any:
    import lightgbm as lgb

    items = [q for q in items if len(q["f1"])]
    X = np.vstack([q["feats"] for q in items])
    y = np.concatenate([grades(q) for q in items])
    group = [len(q["f1"]) for q in items]
    ds = lgb.Dataset(X, y, group=group, feature_name=R.FEATURES, categorical_feature=R.CATEGORICAL, free_raw_data=False)
    return lgb.train(params, ds, num_boost_round=rounds)


def predict(booster: Any, items: list[dict[str, Any]]) -> list[np.ndarray]:
    return [booster.predict(q["feats"]) if len(q["f1"]) else np.zeros(0) for q in items]


def top1(
    items: list[dict[str, Any]], scores: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per question: EM, F1 of the top candidate, its raw score and lead over the runner-up."""
    em, fs, raw, margin = [], [], [], []
    for q, s in zip(items, scores, strict=True):
        if not len(s):
            em.append(0.0), fs.append(0.0), raw.append(-5.0), margin.append(-5.0)
            continue
        order = np.argsort(-s, kind="stable")
        b = order[0]
        em.append(float(q["em"][b]))
        fs.append(float(q["f1"][b]))
        raw.append(float(s[b]))
        # Lead over the best candidate with a different answer text.
        nb = normalize_answer(q["texts"][b])
        other = next((s[i] for i in order[1:] if normalize_answer(q["texts"][i]) != nb), s[b] - 5.0)
        margin.append(float(s[b] - other))
    return np.array(em), np.array(fs), np.array(raw), np.array(margin)


def fit_calibration(raw: np.ndarray, margin: np.ndarray, correct: np.ndarray) -> list[float]:
    """Logistic regression (Newton, light L2) of correctness on raw score and margin."""
    X = np.column_stack([raw, np.clip(margin, -5, 5), np.ones(len(raw))])
    w = np.zeros(3)
    for _ in range(50):
        p = 1 / (1 + np.exp(-(X @ w)))
        grad = X.T @ (p - correct) + 1e-3 * w
        hess = X.T @ (X * (p * (1 - p))[:, None]) + 1e-3 * np.eye(3)
        w -= np.linalg.solve(hess, grad)
    return [float(x) for x in w]


def reliability(prob: np.ndarray, correct: np.ndarray, bins: int = 10) -> str:
    """Score bins vs. observed accuracy, and the expected calibration error."""
    lines = ["  score bin     n   mean score  accuracy"]
    which = np.minimum((prob * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.sum():
            gap = abs(prob[m].mean() - correct[m].mean())
            ece += gap * m.sum() / len(prob)
            lo, hi = b / bins, (b + 1) / bins
            lines.append(f"  {lo:.1f}-{hi:.1f}  {m.sum():5d}   {prob[m].mean():.3f}      {correct[m].mean():.3f}")
    lines.append(f"  expected calibration error: {ece:.3f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True, help="SQuAD v1.1 dev zip or json")
    ap.add_argument("--out", default=str(R.DEFAULT_MODEL), help="where to write the LightGBM text model")
    ap.add_argument("--cache", default="", help="optional scratch folder for parsed features (outside the repo)")
    ap.add_argument("--folds", type=int, default=3)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from qa.embedding import get_embedder

    embedder = get_embedder()
    tune_art, held_art = load(args.data)
    cache = Path(args.cache) if args.cache else None
    tune_prep = prepare(tune_art, embedder, cache, "tune")
    held_prep = prepare(held_art, embedder, cache, "held")
    t0 = time.time()
    tune, held = build(tune_art, tune_prep), build(held_art, held_prep)
    print(f"features in {time.time() - t0:.0f}s")
    print(f"tune questions {len(tune)}, held-out questions {len(held)}")
    oracle = np.mean([q["f1"].max() if len(q["f1"]) else 0 for q in held])
    print(f"held-out candidate-pool oracle F1: {100 * oracle:.1f}")

    # Grouped CV over tune articles: model quality and out-of-fold scores for calibration.
    art = np.array([q["article"] for q in tune])
    oof: list[np.ndarray] = [np.zeros(0)] * len(tune)
    for k in range(args.folds):
        test_idx = np.nonzero(art % args.folds == k)[0]
        train_idx = np.nonzero(art % args.folds != k)[0]
        booster = train([tune[i] for i in train_idx], PARAMS, ROUNDS)
        for i, s in zip(test_idx, predict(booster, [tune[i] for i in test_idx]), strict=True):
            oof[i] = s
    em, fs, raw, margin = top1(tune, oof)
    print(f"tune {args.folds}-fold CV (given paragraph): EM {100 * em.mean():.1f}  F1 {100 * fs.mean():.1f}")
    correct = (fs >= 0.5).astype(np.float64)
    coef = fit_calibration(raw, margin, correct)
    print(f"calibration (raw, margin, bias): {coef}")

    booster = train(tune, PARAMS, ROUNDS)
    t0 = time.time()
    hs = predict(booster, held)
    pred_ms = 1000 * (time.time() - t0) / len(held)
    em, fs, raw, margin = top1(held, hs)
    print(f"HELD-OUT (given paragraph): EM {100 * em.mean():.1f}  F1 {100 * fs.mean():.1f}  "
          f"(ranker predict {pred_ms:.1f} ms/question)")  # fmt: skip
    prob = R.calibrate(raw, margin, coef)
    print("held-out reliability (correct = F1 >= 0.5 with gold):")
    print(reliability(prob, (fs >= 0.5).astype(np.float64)))
    for thr in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
        m = prob >= thr
        print(f"  answer when score >= {thr:.1f}: coverage {m.mean():.2f}, accuracy {((fs >= 0.5)[m]).mean():.3f}")

    imp = sorted(zip(R.FEATURES, booster.feature_importance("gain"), strict=True), key=lambda x: -x[1])
    print("top features by gain:", ", ".join(f"{n}={g:.0f}" for n, g in imp[:15]))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(out))
    meta = {
        "format_version": R.FORMAT_VERSION,
        "features": R.FEATURES,
        "categorical": R.CATEGORICAL,
        "calibration": coef,
        "calibration_target": "P(token F1 >= 0.5 with gold) from (raw score, margin over best other answer, 1)",
        "trained_on": "SQuAD v1.1 dev, articles whose position % 5 != 0",
        "params": PARAMS,
        "rounds": ROUNDS,
        "held_out": {"em": round(100 * float(em.mean()), 2), "f1": round(100 * float(fs.mean()), 2)},
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
