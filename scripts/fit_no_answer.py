"""Fit `qa.answering.confidence` and the no-answer threshold on SQuAD *tune* articles.

Answerable questions: tune questions searched over all 2,067 paragraphs. With
``--span-reader-validation``, only the questions of the span reader's validation articles
(``validation_articles`` in ``qa/data/span-reader/config.json``): that reader was trained on
the other tune articles, and its scores on questions it was trained on are more confident
than on new ones.
Unanswerable ones: the same questions with their own article removed from the
results (the corpus then holds no answer). A logistic regression maps each
candidate's `qa.answering.FEATURES` (reader span score, question–passage cosines,
share of the question's words in the passage and in the answer's sentence) to
P(answer right, F1 >= 0.5); the threshold is set by SQuAD 2.0's F1 on that 50/50 mix (an answerable
question scores the F1 of the answer given, or 0 if withheld; an unanswerable one scores 1
if withheld, else 0): the lowest threshold within one standard error of the best, since the
curve is flat there and answering more costs nothing measurable. Held-out articles are never read.

``--features FILE`` keeps the candidates' features (JSON): a second run with the same
file refits without reading the questions again.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/fit_no_answer.py --data ../shared/data/dev-v1.1.json.zip
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.answering import CALIBRATION_FILE, FEATURES, READ_PASSAGES, candidate_features, stored_embeddings  # noqa: E402
from qa.evaluation import SQUAD_FILE, default_index_dir, eval_index, f1_score, find_data, load_squad  # noqa: E402
from qa.span_reader import read_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="SQuAD v1.1 dev zip (default: $QA_DATA_DIR or ../shared/data)")
    parser.add_argument("--questions", type=int, default=800, help="tune questions sampled (seed 0)")
    parser.add_argument(
        "--corpus-articles",
        type=int,
        help="search only the sampled questions' articles and this many other tune articles (default: all 48); "
        "a cheaper index for a slow machine, with fewer distractors than qa eval's",
    )
    parser.add_argument(
        "--span-reader-validation",
        action="store_true",
        help="sample only the span reader's validation articles (what it was not trained on)",
    )
    parser.add_argument("--out", default=str(CALIBRATION_FILE))
    parser.add_argument("--features", metavar="FILE", help="cache of the candidates' features (read if present)")
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression

    cache = Path(args.features) if args.features else None
    if cache is not None and cache.exists():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved["features"] != list(FEATURES) or saved["questions"] != args.questions:
            raise SystemExit(f"{cache} holds other features or another sample; delete it to recompute")
        rows, f1s, groups = saved["rows"], saved["f1"], [tuple(g) for g in saved["groups"]]
    else:
        articles = set(read_config()["training"]["validation_articles"]) if args.span_reader_validation else None
        rows, f1s, groups = collect(
            str(find_data(SQUAD_FILE, args.data)), args.questions, articles, args.corpus_articles
        )
        if cache is not None:
            payload = {"features": list(FEATURES), "questions": args.questions, "rows": rows, "f1": f1s}
            cache.write_text(json.dumps({**payload, "groups": groups}), encoding="utf-8")
    labels = [int(f >= 0.5) for f in f1s]
    x, y = np.array(rows), np.array(labels)
    model = LogisticRegression(C=1.0).fit(x, y)
    # The logistic model scores every candidate; an answer is the *most* confident one of a
    # question, which is right less often than its score says (the max of noisy scores is high).
    # A second, one-feature logistic fit maps the best candidate's log-odds to how often it is
    # right, on the answerable questions (where "confidence = P(right)" is what users read).
    z = model.decision_function(x)
    top: dict[tuple[int, bool], int] = {}
    for i, group in enumerate(groups):
        if group not in top or z[i] > z[top[group]]:
            top[group] = i
    best_rows = [i for (_, answerable), i in top.items() if answerable]
    recal = LogisticRegression(C=1e6).fit(z[best_rows, None], y[best_rows])
    scale, shift = float(recal.coef_[0][0]), float(recal.intercept_[0])
    probabilities = 1.0 / (1.0 + np.exp(-(scale * z + shift)))

    # Decide per (question, condition) on the most confident span, as `read` does.
    best: dict[tuple[int, bool], tuple[float, float]] = {}
    for group, p, f1 in zip(groups, probabilities, f1s, strict=True):
        if group not in best or p > best[group][0]:
            best[group] = (float(p), f1)
    thresholds = np.round(np.arange(0.05, 0.95, 0.01), 2)
    scores = np.array(
        [[(f1 if p >= t else 0.0) if ok else float(p < t) for (_, ok), (p, f1) in best.items()] for t in thresholds]
    )
    utility = scores.mean(axis=1)
    # The curve is flat near its top; its argmax there is noise. The one-standard-error rule:
    # the lowest threshold (the one that answers most) within one standard error of the best.
    top = int(np.argmax(utility))
    standard_error = float(scores[top].std() / np.sqrt(scores.shape[1]))
    threshold = float(thresholds[int(np.flatnonzero(utility >= utility[top] - standard_error)[0])])
    print(f"best threshold {thresholds[top]}: SQuAD 2.0 F1 {utility[top]:.3f} ± {standard_error:.3f}")
    answered = [p >= threshold for (_, ok), (p, _) in best.items() if ok]
    rejected = [p < threshold for (_, ok), (p, _) in best.items() if not ok]
    chosen = float(utility[list(thresholds).index(threshold)])
    print(
        f"threshold {threshold}: SQuAD 2.0 F1 {chosen:.3f} on the 50/50 tune mix; "
        f"answerable answered {np.mean(answered):.2f}, unanswerable rejected {np.mean(rejected):.2f}"
    )
    calibration = {
        "weights": dict(zip(FEATURES, map(float, model.coef_[0]), strict=True)),
        "bias": float(model.intercept_[0]),
        "scale": scale,
        "shift": shift,
        "threshold": threshold,
        "fitted_on": "SQuAD v1.1 dev tune split"
        + (" (span reader validation articles)" if args.span_reader_validation else "")
        + ", "
        f"{len({g for g, _ in groups})} questions x (answerable, own article removed)",
        "command": "python scripts/fit_no_answer.py " + " ".join(sys.argv[1:]),
    }
    Path(args.out).write_text(json.dumps(calibration, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(calibration, indent=2))
    return 0


def collect(
    data: str, n: int, articles: set[str] | None = None, corpus_articles: int | None = None
) -> tuple[list[list[float]], list[float], list[tuple[int, bool]]]:
    """Features and answer F1 of every candidate, for ``n`` tune questions asked with and without their article.

    ``articles``: sample only questions of these article titles (all tune articles when None).
    """
    dataset = load_squad(data, split="tune")
    pool = [q for q in dataset.questions if articles is None or q.gold[0].rsplit("#", 1)[0] in articles]
    questions = random.Random(0).sample(pool, min(n, len(pool)))
    if corpus_articles is None:
        index = eval_index(dataset, index_dir=default_index_dir("squad", "all-MiniLM-L6-v2"), progress=True)
    else:
        asked = {q.gold[0].rsplit("#", 1)[0] for q in questions}
        tune = {q.gold[0].rsplit("#", 1)[0] for q in dataset.questions}
        others = [a.doc_id for a in dataset.articles or () if a.doc_id in tune and a.doc_id not in asked]
        keep = asked | set(others[:corpus_articles])
        small = replace(dataset, articles=tuple(a for a in dataset.articles or () if a.doc_id in keep))
        index = eval_index(
            small, index_dir=default_index_dir(f"squad-fit-{len(keep)}", "all-MiniLM-L6-v2"), progress=True
        )
    rows: list[list[float]] = []
    f1s: list[float] = []
    groups: list[tuple[int, bool]] = []  # (question number, answerable)
    started = time.perf_counter()
    for number, question in enumerate(questions):
        own_doc = question.gold[0].rsplit("#", 1)[0]
        hits = index.search(question.text, k=40)
        for answerable in (True, False):
            pool = hits if answerable else [h for h in hits if h.source.doc_id != own_doc]
            chosen = pool[:READ_PASSAGES]
            known = stored_embeddings(index, question.text, chosen)  # as Index.ask reads them
            for span, features in candidate_features(question.text, chosen, known=known):
                rows.append([features[name] for name in FEATURES])
                f1s.append(f1_score(span.text, question.answers) if answerable else 0.0)
                groups.append((number, answerable))
        if number % 50 == 0:
            print(f"{number}/{len(questions)} questions, {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return rows, f1s, groups


if __name__ == "__main__":
    sys.exit(main())
