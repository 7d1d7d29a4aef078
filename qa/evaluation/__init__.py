"""Evaluation you can trust: retrieval and answer metrics on public data sets.

Metrics (pure functions, tested against hand-computed examples):

* retrieval: recall@k (k = 1, 5, 10, 20, and 100 for SciFact), MRR@10 and
  nDCG@10 with binary relevance, computed the way BEIR (pytrec_eval) does;
* answers: SQuAD v1.1 exact match and token F1 with the official normalisation
  (lower case, no punctuation, no articles, single spaces), max over the gold answers.

Data sets:

* ``squad`` — SQuAD v1.1 dev. Every article is one document and each of its
  paragraphs is one passage; a question's gold is the paragraph it was asked
  on. Retrieval is open (all 2,067 paragraphs); ``split`` only chooses which
  questions are asked: ``heldout`` = articles at positions 0, 5, …, 45 of the
  file's ``data`` list, ``tune`` = the other 38.
* ``scifact`` — the BEIR SciFact test set: 5,183 abstracts (title + abstract),
  the 300 validation claims and their ``cited_doc_ids`` as qrels.
* a ``.jsonl`` file of ``{"question", "answers", "gold_passages"}`` over any index.

The unit that is judged is a *paragraph* (SQuAD, JSONL) or a *document*
(SciFact). `qa` splits paragraphs longer than the model's 128 word pieces into
overlapping sentence windows; every window of a unit counts as that unit, and a
ranking is de-duplicated by unit, keeping each unit's best rank, before any
metric is computed (so ranks are positions among distinct units).

Heavy libraries load only when an evaluation runs; ``qa --help`` stays instant.

Modules: `qa.evaluation.metrics` (pure functions), `qa.evaluation.datasets` (loaders, where the data
is), `qa.evaluation.corpus` (the evaluation index), `qa.evaluation.runner` (`evaluate`),
`qa.evaluation.report` (printing) and `qa.evaluation.cli` (``qa eval``). Every public name is
importable from ``qa.evaluation`` itself.
"""

from __future__ import annotations

from qa.evaluation.cli import add_eval_parser, command_line, run_eval
from qa.evaluation.corpus import EVAL_CORPUS_VERSION, default_index_dir, eval_index
from qa.evaluation.datasets import (
    DATA_DIR_ENV,
    DATASETS,
    HELDOUT_EVERY,
    RECALL_KS,
    SCIFACT_FILE,
    SCIFACT_RECALL_KS,
    SPLITS,
    SQUAD_FILE,
    Article,
    Dataset,
    Question,
    data_candidates,
    find_data,
    load_questions,
    load_scifact,
    load_squad,
    unit_key,
)
from qa.evaluation.metrics import (
    ACCURATE_F1,
    CONFIDENCE_BINS,
    ReliabilityBin,
    dedupe,
    exact_match,
    expected_calibration_error,
    f1_score,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
    reliability,
)
from qa.evaluation.report import format_report, report_json
from qa.evaluation.runner import (
    PLAIN_DENSE,
    AnswerResult,
    EvalReport,
    RetrievalResult,
    best_guess,
    evaluate,
    evaluate_answers,
    evaluate_plain_dense,
    evaluate_reader,
    evaluate_retrieval,
    evaluate_unanswerable,
    gold_hits,
    ranked_labels,
    rows_by_unit,
)

__all__ = [
    "ACCURATE_F1", "CONFIDENCE_BINS", "DATASETS", "DATA_DIR_ENV", "EVAL_CORPUS_VERSION", "HELDOUT_EVERY",
    "PLAIN_DENSE", "RECALL_KS", "SCIFACT_FILE", "SCIFACT_RECALL_KS", "SPLITS", "SQUAD_FILE",
    "AnswerResult", "Article", "Dataset", "EvalReport", "Question", "ReliabilityBin", "RetrievalResult",
    "add_eval_parser", "best_guess", "command_line", "data_candidates", "dedupe", "default_index_dir",
    "eval_index", "evaluate", "evaluate_answers", "evaluate_plain_dense", "evaluate_reader",
    "evaluate_retrieval", "evaluate_unanswerable", "exact_match", "expected_calibration_error",
    "f1_score", "find_data", "format_report", "gold_hits", "load_questions", "load_scifact", "load_squad",
    "ndcg_at_k", "ranked_labels", "recall_at_k", "reciprocal_rank", "reliability", "report_json",
    "rows_by_unit", "run_eval", "unit_key",
]  # fmt: skip
