"""Running an evaluation: every retrieval mode side by side, then answers end to end and given the
gold paragraph, into one `EvalReport`.

The unit that is judged is a *paragraph* (SQuAD, JSONL) or a *document*
(SciFact). `qa` splits paragraphs longer than the model's 128 word pieces into
overlapping sentence windows; every window of a unit counts as that unit, and a
ranking is de-duplicated by unit, keeping each unit's best rank, before any
metric is computed (so ranks are positions among distinct units).
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qa._version import __version__
from qa.errors import InputError
from qa.evaluation.datasets import Dataset, Question, unit_key
from qa.evaluation.metrics import (
    ACCURATE_F1,
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

if TYPE_CHECKING:
    from qa.answering import Answer
    from qa.documents import Passage
    from qa.index import Index
    from qa.retrieval import Hit



@dataclass(frozen=True)
class RetrievalResult:
    """Retrieval quality of one mode, averaged over the questions that have gold."""

    mode: str
    questions: int
    recall: dict[int, float]
    mrr_at_10: float
    ndcg_at_10: float
    seconds: float


@dataclass(frozen=True)
class AnswerResult:
    """Answer quality in one setting.

    ``setting`` is ``end-to-end`` (open retrieval, then `Index.ask`) or
    ``given-paragraph`` (the reader alone, handed the gold paragraph).
    EM and F1 count a no-answer as wrong; the ``forced_`` ones score the best candidate of
    every question, answered or withheld (what qa would score if it never abstained). The
    reliability table bins every question's best candidate by its confidence, so it also
    shows how often the withheld ones would have been right.
    """

    setting: str
    mode: str
    questions: int
    exact_match: float
    f1: float
    no_answer_rate: float
    accuracy_when_answered: float
    forced_exact_match: float
    forced_f1: float
    reliability: tuple[ReliabilityBin, ...]
    seconds: float
    #: `expected_calibration_error` of every question's best candidate (10 equal-width bins).
    expected_calibration_error: float = 0.0


@dataclass(frozen=True)
class EvalReport:
    """Everything one ``qa eval`` run measured, and how to reproduce it."""

    command: str
    qa_version: str
    model: str
    dataset: str
    description: str
    data_path: str
    data_sha256: str
    documents: int
    passages: int
    units: int
    unit: str
    questions: int
    retrieval: tuple[RetrievalResult, ...]
    answers: tuple[AnswerResult, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: How the model ran for the index (`qa.embedding.BACKENDS`), as its manifest records.
    embedding_backend: str = ""
    #: Wall time of the whole run, building the index included (``qa eval`` fills it in).
    seconds: float = 0.0


def _labeler(dataset: Dataset) -> Callable[[Question, Hit], Hashable]:
    """Hit → the label that is judged (its unit, or for JSONL gold, the gold entry it satisfies)."""
    per_document = dataset.unit == "document"

    def unit_of(hit: Hit) -> str:
        return unit_key(hit.source.doc_id, None if per_document else hit.source.paragraph)

    if dataset.gold_is_unit_key:
        return lambda _question, hit: unit_of(hit)

    def label(question: Question, hit: Hit) -> Hashable:
        for i, entry in enumerate(question.gold):
            if entry in (hit.passage_id, unit_of(hit)) or entry in hit.text:
                return ("gold", i)
        return ("unit", unit_of(hit))

    return label


def _relevant(dataset: Dataset, question: Question) -> set[Hashable]:
    if dataset.gold_is_unit_key:
        return set(question.gold)
    return {("gold", i) for i in range(len(question.gold))}


def ranked_labels(
    index: Index, dataset: Dataset, questions: Sequence[Question], depth: int, mode: str
) -> list[list[Hashable]]:
    """Each question's ranking as de-duplicated labels, at least ``depth`` deep when the index allows.

    Searches deeper when windows of the same unit crowd the top results.
    """
    label = _labeler(dataset)
    units = len({unit_key(p.source.doc_id, p.source.paragraph) for p in index.passages}) or 1
    per_unit = len(index) / units
    k = min(len(index), max(depth, math.ceil(depth * per_unit * 1.5)))
    pending = list(range(len(questions)))
    out: list[list[Hashable]] = [[] for _ in questions]
    while pending:
        batches = index.search_batch([questions[i].text for i in pending], k=k, mode=mode)
        again = []
        for i, hits in zip(pending, batches, strict=True):
            out[i] = dedupe(label(questions[i], h) for h in hits)
            if len(out[i]) < depth and len(hits) >= k and k < len(index):
                again.append(i)
        pending, k = again, min(len(index), k * 2)
    return out


def evaluate_retrieval(index: Index, dataset: Dataset, mode: str) -> RetrievalResult:
    """recall@k, MRR@10 and nDCG@10 of one retrieval ``mode`` over the questions that have gold."""
    questions = [q for q in dataset.questions if q.gold]
    if not questions:
        raise InputError(f"{dataset.name}: no question has gold passages; nothing to judge retrieval by")
    started = time.perf_counter()
    rankings = ranked_labels(index, dataset, questions, max(*dataset.recall_ks, 10), mode)
    seconds = time.perf_counter() - started
    return _retrieval_result(mode, rankings, [_relevant(dataset, q) for q in questions], dataset, seconds)


#: The retrieval a plain script gets (sentence-transformers ``encode`` of each whole unit, which the
#: model cuts at its max_seq_length, and exact cosine): compared beside qa's modes.
PLAIN_DENSE = "plain-dense"


def evaluate_plain_dense(index: Index, dataset: Dataset) -> RetrievalResult:
    """recall@k, MRR@10 and nDCG@10 of one vector per judged unit (its whole text), as a plain script does.

    This is the number published elsewhere for the model (MTEB's SciFact nDCG@10 0.645 for
    all-MiniLM-L6-v2): qa's own ``dense`` mode embeds windows that fit the model, so it differs.

    Raises:
        InputError: the data set has no corpus (a ``.jsonl`` of questions over an index).
    """
    import numpy as np

    if dataset.articles is None:
        raise InputError(f"{PLAIN_DENSE} needs the data set's own corpus; {dataset.name} has none")
    questions = [q for q in dataset.questions if q.gold]
    started = time.perf_counter()
    keys, texts = [], []
    for a in dataset.articles:
        if dataset.unit == "document":
            keys.append(unit_key(a.doc_id))
            texts.append("\n\n".join(a.paragraphs))
        else:
            for number, paragraph in enumerate(a.paragraphs, start=1):
                keys.append(unit_key(a.doc_id, number))
                texts.append(paragraph)
    # Progress: the whole corpus is encoded again (minutes for SQuAD or SciFact).
    vectors = index.embedder.encode(texts, progress=len(texts) > 1000)
    query_vectors = index.embed_queries([q.text for q in questions])
    depth = max(*dataset.recall_ks, 10)
    rankings: list[list[Hashable]] = []
    for qv in query_vectors:
        scores = vectors @ qv
        top = np.argsort(-scores, kind="stable")[:depth]
        rankings.append([keys[i] for i in top])
    seconds = time.perf_counter() - started
    return _retrieval_result(PLAIN_DENSE, rankings, [_relevant(dataset, q) for q in questions], dataset, seconds)


def _retrieval_result(
    mode: str,
    rankings: Sequence[Sequence[Hashable]],
    relevant: Sequence[set[Hashable]],
    dataset: Dataset,
    seconds: float,
) -> RetrievalResult:
    n = len(rankings)
    pairs = list(zip(rankings, relevant, strict=True))
    return RetrievalResult(
        mode=mode,
        questions=n,
        recall={k: sum(recall_at_k(r, g, k) for r, g in pairs) / n for k in dataset.recall_ks},
        mrr_at_10=sum(reciprocal_rank(r, g, 10) for r, g in pairs) / n,
        ndcg_at_10=sum(ndcg_at_k(r, g, 10) for r, g in pairs) / n,
        seconds=round(seconds, 2),
    )



def best_guess(answer: Answer) -> str | None:
    """The answer's text, or when it was withheld, its best rejected candidate (None if there was none)."""
    if answer.text is not None:
        return answer.text
    return answer.alternatives[0].text if answer.alternatives else None


def _score_answers(
    setting: str, mode: str, answers: Sequence[Answer], questions: Sequence[Question], seconds: float
) -> AnswerResult:
    em = [exact_match(a.text, q.answers) for a, q in zip(answers, questions, strict=True)]
    f1 = [f1_score(a.text, q.answers) for a, q in zip(answers, questions, strict=True)]
    guesses = [best_guess(a) for a in answers]
    forced_em = [exact_match(g, q.answers) for g, q in zip(guesses, questions, strict=True)]
    forced_f1 = [f1_score(g, q.answers) for g, q in zip(guesses, questions, strict=True)]
    answered = [i for i, a in enumerate(answers) if a.text is not None]
    n = len(questions)
    return AnswerResult(
        setting=setting,
        mode=mode,
        questions=n,
        exact_match=sum(em) / n,
        f1=sum(f1) / n,
        no_answer_rate=1 - len(answered) / n,
        accuracy_when_answered=sum(f1[i] >= ACCURATE_F1 for i in answered) / len(answered) if answered else 0.0,
        forced_exact_match=sum(forced_em) / n,
        forced_f1=sum(forced_f1) / n,
        reliability=reliability([a.confidence for a in answers], forced_f1),
        seconds=round(seconds, 2),
        expected_calibration_error=round(expected_calibration_error([a.confidence for a in answers], forced_f1), 4),
    )


def evaluate_answers(index: Index, dataset: Dataset, *, k: int = 5, mode: str | None = None) -> AnswerResult:
    """End-to-end EM/F1: every question goes through `Index.ask` (open retrieval, then the reader)."""
    from qa.retrieval import check_mode

    questions = [q for q in dataset.questions if q.answers]
    started = time.perf_counter()
    answers = [index.ask(q.text, k=k, mode=mode) for q in questions]
    return _score_answers("end-to-end", check_mode(mode), answers, questions, time.perf_counter() - started)


def evaluate_unanswerable(index: Index, dataset: Dataset, *, k: int = 5, mode: str | None = None) -> AnswerResult:
    """Questions the corpus cannot answer (no answers, no gold): withholding is right (SQuAD 2.0's scoring).

    EM and F1 are the share withheld; the forced ones are 0 (any answer is wrong).
    """
    from qa.retrieval import check_mode

    questions = [q for q in dataset.questions if not q.answers and not q.gold]
    started = time.perf_counter()
    answers = [index.ask(q.text, k=k, mode=mode) for q in questions]
    withheld = sum(a.text is None for a in answers) / len(questions)
    return AnswerResult(
        setting="unanswerable",
        mode=check_mode(mode),
        questions=len(questions),
        exact_match=withheld,
        f1=withheld,
        no_answer_rate=withheld,
        accuracy_when_answered=0.0,
        forced_exact_match=0.0,
        forced_f1=0.0,
        reliability=reliability([a.confidence for a in answers], [0.0] * len(answers)),
        seconds=round(time.perf_counter() - started, 2),
        expected_calibration_error=round(
            expected_calibration_error([a.confidence for a in answers], [0.0] * len(answers)), 4
        ),
    )


def _passage_list(index: Index) -> list[Passage]:
    # A FAISS folder's rows are positions in its list; a Milvus index lists its passages by key.
    return index.passages if isinstance(index.passages, list) else list(index.passages)


def rows_by_unit(index: Index, unit: str) -> dict[str, list[int]]:
    """Unit key → the rows of ``index.passages`` that belong to it (all windows of a paragraph or document)."""
    rows: dict[str, list[int]] = collections.defaultdict(list)
    for row, p in enumerate(_passage_list(index)):
        rows[unit_key(p.source.doc_id, None if unit == "document" else p.source.paragraph)].append(row)
    return dict(rows)


def gold_hits(
    index: Index,
    dataset: Dataset,
    question: Question,
    query_vector: Any,
    vectors: Any,
    units: dict[str, list[int]] | None = None,
    passages: Sequence[Passage] | None = None,
) -> list[Hit]:
    """The gold passages of ``question`` as `Hit`s, scored by dense similarity, best first.

    Rows are positions in ``passages`` (default: the index's passages, listed), and ``vectors``
    holds their vectors in that order. ``units`` is `rows_by_unit` of the index, computed once by
    callers that ask many questions.
    """
    from qa.retrieval import Hit

    passages = passages if passages is not None else _passage_list(index)

    if dataset.gold_is_unit_key:
        by_unit = units if units is not None else rows_by_unit(index, dataset.unit)
        candidates = sorted(row for key in dict.fromkeys(question.gold) for row in by_unit.get(key, ()))
    else:
        label = _labeler(dataset)
        relevant = _relevant(dataset, question)
        candidates = [
            row
            for row, p in enumerate(passages)
            if label(question, Hit(0, 0.0, p.text, p.passage_id, p.source)) in relevant
        ]
    rows = [(float(vectors[row] @ query_vector), passages[row]) for row in candidates]
    rows.sort(key=lambda item: -item[0])
    return [Hit(rank, score, p.text, p.passage_id, p.source) for rank, (score, p) in enumerate(rows, start=1)]


def evaluate_reader(index: Index, dataset: Dataset) -> AnswerResult | None:
    """Given-paragraph EM/F1: the reader (`qa.answering.read`) handed only the gold paragraph, its
    windows joined into one passage (`qa.retrieval.whole_paragraphs`).

    Returns None when `qa.answering` has no ``read(question, hits)`` entry point.
    """
    import inspect

    from qa import answering
    from qa.retrieval import whole_paragraphs

    read = getattr(answering, "read", None)
    if read is None:
        return None
    takes_embedder = "embedder" in inspect.signature(read).parameters
    questions = [q for q in dataset.questions if q.answers and q.gold]
    if not questions:
        return None
    started = time.perf_counter()
    query_vectors = index.embed_queries([q.text for q in questions])
    passages = _passage_list(index)
    vectors = index.vectors_of([p.passage_id for p in passages])
    units = rows_by_unit(index, dataset.unit) if dataset.gold_is_unit_key else None
    answers = []
    for q, qv in zip(questions, query_vectors, strict=True):
        # The paragraph as one passage, as a reader handed "this paragraph" reads it.
        hits = whole_paragraphs(gold_hits(index, dataset, q, qv, vectors, units, passages))
        answers.append(read(q.text, hits, embedder=index.embedder) if takes_embedder else read(q.text, hits))
    return _score_answers("given-paragraph", "gold", answers, questions, time.perf_counter() - started)


def evaluate(
    dataset: Dataset,
    index: Index,
    *,
    modes: Sequence[str] | None = None,
    answers: bool = True,
    k: int = 5,
    answer_mode: str | None = None,
    command: str = "",
) -> EvalReport:
    """Run every retrieval mode side by side, then the answer metrics, on ``dataset``.

    Args:
        dataset: questions and gold (see `load_squad`, `load_scifact`, `load_questions`).
        index: the corpus; for SQuAD/SciFact use `eval_index`.
        modes: retrieval modes to compare; by default every mode `qa.retrieval.MODES` has, plus
            `PLAIN_DENSE` (what a plain script gets) when the data set brings its corpus.
        answers: also measure end-to-end and given-paragraph EM/F1 (when the data has answers).
        k: passages `Index.ask` reads.
        answer_mode: retrieval mode for end-to-end answers (the library default when None).
        command: the command line, recorded in the report.
    """
    from qa import retrieval

    if not modes:
        modes = (*retrieval.MODES, PLAIN_DENSE) if dataset.articles is not None else retrieval.MODES
    for mode in modes:
        if mode != PLAIN_DENSE:
            retrieval.check_mode(mode)
    notes = []
    results = tuple(
        evaluate_plain_dense(index, dataset) if mode == PLAIN_DENSE else evaluate_retrieval(index, dataset, mode)
        for mode in modes
    )
    answer_results: list[AnswerResult] = []
    if answers and any(q.answers for q in dataset.questions):
        answer_results.append(evaluate_answers(index, dataset, k=k, mode=answer_mode))
        given = evaluate_reader(index, dataset)
        if given is None:
            notes.append("given-paragraph EM/F1 skipped: qa.answering has no read(question, hits)")
        else:
            answer_results.append(given)
    if answers and dataset.articles is None and any(not q.answers and not q.gold for q in dataset.questions):
        answer_results.append(evaluate_unanswerable(index, dataset, k=k, mode=answer_mode))
    units = {
        unit_key(p.source.doc_id, None if dataset.unit == "document" else p.source.paragraph) for p in index.passages
    }
    notes.append(
        f"rankings are de-duplicated by {dataset.unit} (best window wins) before scoring; "
        "EM/F1 count a no-answer as wrong; forced EM/F1 score every question's best candidate, withheld or not; "
        "reliability bins every question's best candidate by confidence (accuracy = share with F1 >= 0.5; "
        "the no-answer threshold is the confidence below which qa withholds)"
    )
    return EvalReport(
        command=command,
        qa_version=__version__,
        model=index.model_name,
        dataset=dataset.name,
        description=dataset.description,
        data_path=dataset.data_path,
        data_sha256=dataset.data_sha256,
        documents=len({p.source.doc_id for p in index.passages}),
        passages=len(index),
        units=len(units),
        unit=dataset.unit,
        questions=len(dataset.questions),
        retrieval=results,
        answers=tuple(answer_results),
        notes=tuple(notes),
        embedding_backend=str(index.manifest.get("model", {}).get("backend") or getattr(index.embedder, "backend", "")),
    )
