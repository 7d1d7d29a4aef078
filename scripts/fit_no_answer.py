"""Fit `qa.answering.confidence` and its no-answer thresholds on SQuAD *tune* articles.

One logistic model per setting of `qa.answering.SETTINGS`, each on a 50/50 mix of questions
that can and cannot be answered from what the reader reads:

* ``retrieved`` (`qa.answering.answer`): a tune question searched over all 2,067 paragraphs, and
  the same question with its own article removed from the results (the corpus then holds no answer);
* ``given`` (`qa.answering.read`): the question handed its own paragraph, and handed instead the
  best-retrieved paragraph of another article (unanswerable in the same sense as above).

Each question is read by a span reader that was not trained on its article. ``--folds`` takes
readers trained with ``scripts/train_span_reader.py --fold K/N`` (cross-fitting: every tune
article is out of fold for one of them), so the fit sees the confidence of a reader on new
articles over all 38 tune articles; ``--span-reader-validation`` uses only the shipped reader's
3 validation articles. A reader's scores on questions it was trained on are too confident.

A logistic regression maps each candidate's `qa.answering.FEATURES` (reader span score and
logit, question–passage cosines, share of the question's words in the passage and in the
answer's sentence, retrieval rank, length, standing among the question's spans, the answer
sentence's cosine and the best one's, the question's words right around the span) to
P(answer right, F1 >= 0.5); the threshold is set by SQuAD
2.0's F1 on the mix (an answerable question scores the F1 of the answer given, or 0 if withheld;
an unanswerable one scores 1 if withheld, else 0): the lowest threshold within one standard
error of the best, since the curve is flat there and answering more costs nothing measurable.
Held-out articles are never read.

``--features FILE`` keeps the candidates' features (JSON): a second run with the same
file refits without reading the questions again.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/fit_no_answer.py --questions 1600 \
        --folds /tmp/soup-fold0 /tmp/soup-fold1 --features /tmp/fit-features.json
(the fold readers are made as the shipped one is, on half the tune articles each: for K in 0 and 1,
``scripts/train_span_reader.py --out /tmp/span-foldK --epochs 2 --distractors 0.5 --fold K/2
--evals-per-epoch 1 --val-questions 500``, the same with ``--all-answers --out /tmp/span-allans-foldK``,
then ``scripts/soup_span_readers.py /tmp/span-foldK /tmp/span-allans-foldK --out /tmp/soup-foldK
--val-questions 500``; about 15 minutes per training run on 2 cores.)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.answering import (  # noqa: E402
    CALIBRATION_FILE,
    FEATURES,
    READ_PASSAGES,
    SETTINGS,
    candidate_features,
    stored_embeddings,
)
from qa.evaluation import (  # noqa: E402
    SQUAD_FILE,
    Question,
    default_index_dir,
    eval_index,
    f1_score,
    find_data,
    load_squad,
    unit_key,
)
from qa.evaluation.runner import gold_hits, rows_by_unit  # noqa: E402
from qa.span_reader import SpanReader, default_span_reader, read_config  # noqa: E402

# Per setting: each candidate's features, its answer's F1, and (question number, answerable).
Rows = tuple[list[list[float]], list[float], list[tuple[int, bool]]]


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
    readers = parser.add_mutually_exclusive_group()
    readers.add_argument(
        "--folds",
        nargs="+",
        metavar="DIR",
        help="span readers trained with train_span_reader.py --fold K/N: each reads the questions of its held-out fold",
    )
    readers.add_argument(
        "--span-reader-validation",
        action="store_true",
        help="sample only the shipped span reader's validation articles (what it was not trained on)",
    )
    parser.add_argument("--out", default=str(CALIBRATION_FILE))
    parser.add_argument("--features", metavar="FILE", help="cache of the candidates' features (read if present)")
    args = parser.parse_args()

    cache = Path(args.features) if args.features else None
    key = {"features": list(FEATURES), "questions": args.questions, "folds": args.folds or []}
    if cache is not None and cache.exists():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if {k: saved.get(k) for k in key} != key:
            raise SystemExit(f"{cache} holds other features or another sample; delete it to recompute")
        data = {s: (v["rows"], v["f1"], [tuple(g) for g in v["groups"]]) for s, v in saved["settings"].items()}
    else:
        data = collect(
            str(find_data(SQUAD_FILE, args.data)),
            args.questions,
            plan_readers(args.folds, args.span_reader_validation),
            args.corpus_articles,
        )
        if cache is not None:
            settings = {s: {"rows": r, "f1": f, "groups": g} for s, (r, f, g) in data.items()}
            cache.write_text(json.dumps({**key, "settings": settings}), encoding="utf-8")
    models = {}
    for setting in SETTINGS:
        print(f"{setting}:")
        models[setting] = fit(*data[setting])
    questions = len({g for g, _ in data["retrieved"][2]})
    readers_used = (
        f"{len(args.folds)} span readers (train_span_reader.py --fold K/{len(args.folds)}), "
        "each on the tune articles it was not trained on"
        if args.folds
        else "the span reader, on its validation articles"
        if args.span_reader_validation
        else "the shipped span reader"
    )
    calibration = {
        **models["retrieved"],
        "given": models["given"],
        "fitted_on": f"SQuAD v1.1 dev tune split, {questions} questions read by {readers_used}; "
        "retrieved: x (answerable, own article removed); given: x (own paragraph, best one of another article)",
        "command": "python scripts/fit_no_answer.py " + " ".join(sys.argv[1:]),
    }
    Path(args.out).write_text(json.dumps(calibration, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(calibration, indent=2))
    return 0


def fit(rows: list[list[float]], f1s: list[float], groups: list[tuple[int, bool]]) -> dict[str, Any]:
    """The logistic model, its recalibration for a question's best candidate, and the threshold."""
    from sklearn.linear_model import LogisticRegression

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
    peak = int(np.argmax(utility))
    standard_error = float(scores[peak].std() / np.sqrt(scores.shape[1]))
    threshold = float(thresholds[int(np.flatnonzero(utility >= utility[peak] - standard_error)[0])])
    print(f"  best threshold {thresholds[peak]}: SQuAD 2.0 F1 {utility[peak]:.3f} ± {standard_error:.3f}")
    answered = [p >= threshold for (_, ok), (p, _) in best.items() if ok]
    rejected = [p < threshold for (_, ok), (p, _) in best.items() if not ok]
    chosen = float(utility[list(thresholds).index(threshold)])
    print(
        f"  threshold {threshold}: SQuAD 2.0 F1 {chosen:.3f} on the 50/50 tune mix; "
        f"answerable answered {np.mean(answered):.2f}, unanswerable rejected {np.mean(rejected):.2f}"
    )
    return {
        "weights": dict(zip(FEATURES, map(float, model.coef_[0]), strict=True)),
        "bias": float(model.intercept_[0]),
        "scale": scale,
        "shift": shift,
        "threshold": threshold,
    }


def _article(question: Question) -> str:
    """The doc id of the article a SQuAD question was asked on (its gold is ``doc_id#paragraph``)."""
    return question.gold[0].rsplit("#", 1)[0]


def plan_readers(folds: list[str] | None, validation_only: bool) -> list[tuple[set[str] | None, SpanReader]]:
    """(articles whose questions it reads, or None for all tune articles; the reader) pairs."""
    if folds:
        return [(set(read_config(f)["training"]["validation_articles"]), SpanReader(f)) for f in folds]
    if validation_only:
        return [(set(read_config()["training"]["validation_articles"]), default_span_reader())]
    return [(None, default_span_reader())]


def collect(
    data: str,
    n: int,
    readers: list[tuple[set[str] | None, SpanReader]],
    corpus_articles: int | None = None,
) -> dict[str, Rows]:
    """Features and answer F1 of every candidate, per setting, for ``n`` tune questions split over ``readers``."""
    dataset = load_squad(data, split="tune")
    sample: list[tuple[Question, SpanReader]] = []
    for articles, reader in readers:
        questions = [q for q in dataset.questions if articles is None or _article(q) in articles]
        picked = random.Random(0).sample(questions, min(n // len(readers), len(questions)))
        sample += [(q, reader) for q in picked]
    if corpus_articles is None:
        index = eval_index(dataset, index_dir=default_index_dir("squad", "all-MiniLM-L6-v2"), progress=True)
    else:
        asked = {_article(q) for q, _ in sample}
        tune = {_article(q) for q in dataset.questions}
        others = [a.doc_id for a in dataset.articles or () if a.doc_id in tune and a.doc_id not in asked]
        keep = asked | set(others[:corpus_articles])
        small = replace(dataset, articles=tuple(a for a in dataset.articles or () if a.doc_id in keep))
        index = eval_index(
            small, index_dir=default_index_dir(f"squad-fit-{len(keep)}", "all-MiniLM-L6-v2"), progress=True
        )
    passages = list(index.passages)
    vectors = index.vectors_of([p.passage_id for p in passages])
    units = rows_by_unit(index, dataset.unit)
    query_vectors = index.embed_queries([q.text for q, _ in sample])
    out: dict[str, Rows] = {s: ([], [], []) for s in SETTINGS}

    def add(setting: str, number: int, question: Question, answerable: bool, reader: SpanReader, **read: Any) -> None:
        rows, f1s, groups = out[setting]
        for span, features in candidate_features(question.text, reader=reader, **read):
            rows.append([features[name] for name in FEATURES])
            f1s.append(f1_score(span.text, question.answers) if answerable else 0.0)
            groups.append((number, answerable))

    started = time.perf_counter()
    for number, ((question, reader), query_vector) in enumerate(zip(sample, query_vectors, strict=True)):
        own_doc = _article(question)
        hits = index.search(question.text, k=40)
        for answerable in (True, False):
            pool = hits if answerable else [h for h in hits if h.source.doc_id != own_doc]
            chosen = pool[:READ_PASSAGES]
            known = stored_embeddings(index, question.text, chosen)  # as Index.ask reads them
            add("retrieved", number, question, answerable, reader, hits=chosen, known=known)
        # Handed a paragraph: its own, or (no answer, as above: the answer's article is not there)
        # the best-retrieved paragraph of another article: its windows, each a passage, embedded
        # afresh. (`qa.evaluation` hands the windows joined into one passage; fitted on joined
        # windows instead, the model picked as well in 2-fold cross-validation, forced F1 0.677
        # against 0.678, and worse on the shipped reader's validation articles, 72.7 against 74.1.)
        own = question.gold[0]
        elsewhere = [unit_key(h.source.doc_id, h.source.paragraph) for h in hits if h.source.doc_id != own_doc]
        for answerable, unit in [(True, own), *((False, u) for u in elsewhere[:1])]:
            handed = gold_hits(index, dataset, replace(question, gold=(unit,)), query_vector, vectors, units, passages)
            add("given", number, question, answerable, reader, hits=handed[:READ_PASSAGES], embedder=index.embedder)
        if number % 50 == 0:
            print(f"{number}/{len(sample)} questions, {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return out


if __name__ == "__main__":
    sys.exit(main())
