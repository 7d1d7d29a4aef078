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
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import itertools
import json
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qa._version import __version__
from qa.errors import InputError
from qa.text import normalize_answer

if TYPE_CHECKING:
    from qa.answering import Answer
    from qa.documents import Passage
    from qa.embedding import Embedder
    from qa.index import Index
    from qa.retrieval import Hit

RECALL_KS = (1, 5, 10, 20)
SCIFACT_RECALL_KS = (1, 5, 10, 20, 100)
SQUAD_FILE = "dev-v1.1.json.zip"
#: A folder holding the data files, searched before ../shared/data.
DATA_DIR_ENV = "QA_DATA_DIR"
SCIFACT_FILE = "scifact.zip"
DATASETS = ("squad", "scifact")
SPLITS = ("heldout", "tune", "all")
# Held-out SQuAD articles: positions 0, 5, 10, …, 45 of the file's ``data`` list.
HELDOUT_EVERY = 5
# An answer is counted as right in the reliability table when its F1 is at least this.
ACCURATE_F1 = 0.5
CONFIDENCE_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# Bumped when the way eval corpora are turned into passages changes.
EVAL_CORPUS_VERSION = 1


# ---------------------------------------------------------------------------
# Answer metrics (official SQuAD v1.1 evaluation script, restated)


def _token_f1(prediction: str, gold: str) -> float:
    predicted = normalize_answer(prediction).split()
    expected = normalize_answer(gold).split()
    common = collections.Counter(predicted) & collections.Counter(expected)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(predicted)
    recall = same / len(expected)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str | None, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer, else 0.0.

    No answer (None) scores 0.0; so does an empty list of golds.
    """
    if prediction is None:
        return 0.0
    normalized = normalize_answer(prediction)
    return float(any(normalized == normalize_answer(g) for g in golds))


def f1_score(prediction: str | None, golds: Sequence[str]) -> float:
    """SQuAD token F1 of ``prediction`` against the best-matching gold answer (0.0 for no answer)."""
    if prediction is None or not golds:
        return 0.0
    return max(_token_f1(prediction, g) for g in golds)


# ---------------------------------------------------------------------------
# Retrieval metrics (binary relevance, BEIR / trec_eval definitions)


def dedupe(labels: Iterable[Hashable]) -> list[Hashable]:
    """Keep the first (best-ranked) occurrence of every label, in order."""
    seen: set[Hashable] = set()
    out: list[Hashable] = []
    for label in labels:
        if label not in seen:
            seen.add(label)
            out.append(label)
    return out


def recall_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Share of the relevant items found in the top ``k`` of ``ranked`` (BEIR's recall@k).

    With one relevant item this is 1.0 when it is in the top ``k``, else 0.0.
    ``ranked`` must hold distinct items (see `dedupe`).
    """
    if not relevant:
        raise ValueError("recall is undefined without relevant items")
    return len(set(ranked[:k]) & set(relevant)) / len(set(relevant))


def reciprocal_rank(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int = 10) -> float:
    """1 / rank of the first relevant item within the top ``k``, or 0.0 (MRR@k averages this)."""
    wanted = set(relevant)
    for rank, item in enumerate(ranked[:k], start=1):
        if item in wanted:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int = 10) -> float:
    """nDCG@k with binary gains, as trec_eval's ``ndcg_cut`` (used by BEIR) computes it.

    DCG = Σ 1/log2(rank + 1) over relevant items in the top ``k``; the ideal DCG
    puts all relevant items (at most ``k``) first.
    """
    wanted = set(relevant)
    if not wanted:
        raise ValueError("nDCG is undefined without relevant items")
    dcg = sum(1.0 / math.log2(rank + 1) for rank, item in enumerate(ranked[:k], start=1) if item in wanted)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(wanted), k) + 1))
    return dcg / ideal


# ---------------------------------------------------------------------------
# Data sets


@dataclass(frozen=True)
class Article:
    """One document of an evaluation corpus: its paragraphs in order."""

    doc_id: str
    title: str
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class Question:
    """One evaluation question.

    Attributes:
        qid: the data set's id of the question.
        text: the question (or claim) as asked.
        answers: gold answer texts; empty when the data set has none.
        gold: what counts as relevant. For ``unit`` data sets, unit keys
            (``"<doc_id>#<paragraph>"`` or ``"<doc_id>"``); for JSONL questions,
            passage ids or substrings of the relevant passages.
    """

    qid: str
    text: str
    answers: tuple[str, ...]
    gold: tuple[str, ...]


@dataclass(frozen=True)
class Dataset:
    """Questions with their gold, and the corpus they are asked against.

    ``articles`` is None when the questions run against an existing index.
    ``unit`` is ``"paragraph"`` or ``"document"``: what a gold item names.
    """

    name: str
    questions: tuple[Question, ...]
    articles: tuple[Article, ...] | None
    unit: str
    recall_ks: tuple[int, ...] = RECALL_KS
    data_path: str = ""
    data_sha256: str = ""
    description: str = ""
    gold_is_unit_key: bool = True


def unit_key(doc_id: str, paragraph: int | None = None) -> str:
    """The label of a judged unit: ``doc_id#paragraph`` for paragraphs, ``doc_id`` for documents."""
    return doc_id if paragraph is None else f"{doc_id}#{paragraph}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _clean(text: str) -> str:
    """One line of text: a paragraph must not contain the blank line that separates paragraphs."""
    return " ".join(text.split())


def _read_zip_member(path: Path, suffix: str) -> bytes:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(suffix)]
            if not names:
                raise InputError(f"{path} holds no {suffix} file; pass the data set zip as shipped with --data")
            return archive.read(names[0])
    except zipfile.BadZipFile:
        if path.name.endswith(suffix):
            return path.read_bytes()
        raise InputError(f"{path} is not a zip file; pass the data set as shipped with --data") from None


def load_squad(
    path: str | Path,
    *,
    split: str = "heldout",
    limit: int | None = None,
    limit_docs: int | None = None,
) -> Dataset:
    """SQuAD v1.1 dev as a `Dataset` (accepts the ``.zip`` as shipped or the ``.json``).

    Args:
        path: ``dev-v1.1.json.zip`` or ``dev-v1.1.json``.
        split: ``heldout`` (articles 0, 5, …, 45), ``tune`` (the other 38) or ``all``.
        limit: ask at most this many questions (the first ones of the split).
        limit_docs: keep only the first this many articles *of the split* as the
            corpus (a fast slice for tests; full runs search every paragraph).

    Raises:
        InputError: unknown split, or the file is not SQuAD v1.1.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    file = Path(path)
    try:
        data = json.loads(_read_zip_member(file, ".json"))["data"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{file} is not SQuAD v1.1 JSON (no 'data' list): {exc}") from exc
    chosen = [i for i in range(len(data)) if split == "all" or (i % HELDOUT_EVERY == 0) == (split == "heldout")]
    keep = set(chosen[:limit_docs]) if limit_docs is not None else set(range(len(data)))
    articles, questions = [], []
    for position, article in enumerate(data):
        if position not in keep:
            continue
        doc_id = article["title"]
        paragraphs = tuple(_clean(p["context"]) for p in article["paragraphs"])
        articles.append(Article(doc_id, article["title"].replace("_", " "), paragraphs))
        if position not in chosen:
            continue
        for number, paragraph in enumerate(article["paragraphs"], start=1):
            for qa_ in paragraph["qas"]:
                answers = tuple(dict.fromkeys(a["text"] for a in qa_["answers"]))
                questions.append(Question(qa_["id"], qa_["question"], answers, (unit_key(doc_id, number),)))
    return Dataset(
        name="squad",
        questions=tuple(questions[:limit] if limit is not None else questions),
        articles=tuple(articles),
        unit="paragraph",
        data_path=str(file),
        data_sha256=_sha256(file),
        description=f"SQuAD v1.1 dev, split {split}",
    )


def _abstract_sentences(printed: str) -> list[str]:
    """The abstract column is a printed list (numpy style: literals separated by
    newlines, not commas). Read each string literal on its own: ``literal_eval``
    of the whole would glue adjacent literals together without a space."""
    import ast
    import io
    import tokenize

    tokens = tokenize.generate_tokens(io.StringIO(printed).readline)
    return [ast.literal_eval(t.string) for t in tokens if t.type == tokenize.STRING]


def load_scifact(path: str | Path, *, limit: int | None = None, limit_docs: int | None = None) -> Dataset:
    """BEIR SciFact test as a `Dataset`: 5,183 abstracts, 300 claims, 339 qrels.

    A document's one paragraph is ``title + " " + abstract`` (sentences joined
    by spaces), which is how MTEB encodes BEIR corpora.

    Args:
        path: ``scifact.zip`` as shipped (``corpus_train.csv``, ``claims_validation.csv``).
        limit: ask at most this many claims (the first ones).
        limit_docs: keep a corpus of at most this many documents: the cited
            documents of the asked claims first, then others in file order.
    """
    import csv
    import io
    import zipfile

    file = Path(path)
    try:
        with zipfile.ZipFile(file) as archive:
            corpus = list(csv.DictReader(io.TextIOWrapper(archive.open("corpus_train.csv"), encoding="utf-8")))
            claims = list(csv.DictReader(io.TextIOWrapper(archive.open("claims_validation.csv"), encoding="utf-8")))
    except (zipfile.BadZipFile, KeyError) as exc:
        raise InputError(f"{file} is not the SciFact zip (corpus_train.csv, claims_validation.csv): {exc}") from exc
    questions: dict[str, Question] = {}
    for row in claims:
        if row["id"] not in questions:
            cited = tuple(dict.fromkeys(re.findall(r"\d+", row["cited_doc_ids"])))
            questions[row["id"]] = Question(row["id"], row["claim"], (), cited)
    asked = [q for q in questions.values() if q.gold][:limit]
    articles = [
        Article(
            row["doc_id"], row["title"], (_clean(f"{row['title']} {' '.join(_abstract_sentences(row['abstract']))}"),)
        )
        for row in corpus
    ]
    if limit_docs is not None:
        needed = {d for q in asked for d in q.gold}
        first = [a for a in articles if a.doc_id in needed]
        rest = [a for a in articles if a.doc_id not in needed]
        articles = first + rest[: max(0, limit_docs - len(first))]
    return Dataset(
        name="scifact",
        questions=tuple(asked),
        articles=tuple(articles),
        unit="document",
        recall_ks=SCIFACT_RECALL_KS,
        data_path=str(file),
        data_sha256=_sha256(file),
        description="BEIR SciFact test (300 claims, 339 qrels)",
    )


def load_questions(path: str | Path, *, limit: int | None = None) -> Dataset:
    """A JSONL file of questions, one object per line::

        {"question": "...", "answers": ["..."], "gold_passages": ["passage id or substring", ...]}

    ``answers`` and ``gold_passages`` are optional. Each gold entry is one
    relevant item: a passage id, or a substring of the relevant passage's text;
    every window of the paragraph it names counts as that item. A question with
    neither (both empty or absent) is one the corpus cannot answer: qa should withhold.

    Raises:
        InputError: the file is missing or a line is not such an object.
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: no such questions file")
    questions = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{file}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or not isinstance(record.get("question"), str):
            raise InputError(f'{file}:{number}: each line needs a "question" string')
        answers = record.get("answers", [])
        gold = record.get("gold_passages", [])
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(answers, list) or not isinstance(gold, list):
            raise InputError(f'{file}:{number}: "answers" and "gold_passages" must be lists of strings')
        qid = str(record.get("id", number))
        questions.append(Question(qid, record["question"], tuple(map(str, answers)), tuple(map(str, gold))))
    if not questions:
        raise InputError(f"{file} holds no questions")
    return Dataset(
        name=file.name,
        questions=tuple(questions[:limit]),
        articles=None,
        unit="paragraph",
        data_path=str(file),
        data_sha256=_sha256(file),
        description=f"questions from {file.name}",
        gold_is_unit_key=False,
    )


# ---------------------------------------------------------------------------
# The evaluation index (cached under indexes/, keyed by model and passages)


def _corpus_jsonl(articles: Sequence[Article]) -> str:
    lines = [
        json.dumps({"id": a.doc_id, "title": a.title, "text": "\n\n".join(a.paragraphs)}, ensure_ascii=False)
        for a in articles
    ]
    return "\n".join(lines) + "\n"


def _passage_key(passages: Sequence[Passage]) -> str:
    digest = hashlib.sha256(f"eval-corpus-v{EVAL_CORPUS_VERSION}".encode())
    for p in passages:
        digest.update(f"{p.passage_id}\t{p.source.doc_id}\t{p.source.paragraph}\t{p.text}\n".encode())
    return digest.hexdigest()


def eval_index(
    dataset: Dataset,
    *,
    model: str | Embedder | None = None,
    index_dir: str | Path | None = None,
    progress: bool = False,
    backend: str | None = None,
) -> Index:
    """The index of ``dataset``'s corpus, built with `qa.build_index` (so exactly as users get it).

    ``index_dir`` may also be a Milvus target (``milvus://HOST:PORT/C`` or ``FILE.db``): the
    corpus is then indexed there (exact search, like the FAISS folder), and evaluated the same way.
    When ``index_dir`` holds an index of the same model whose passages are
    identical (same ids, texts and paragraphs), it is loaded instead of rebuilt;
    otherwise the index is built and saved there. None keeps it in memory.

    Raises:
        InputError: the data set has no corpus, or a paragraph did not survive
            `qa`'s loader as one paragraph.
    """
    import tempfile

    from qa.embedding import DEFAULT_MODEL, get_embedder
    from qa.errors import QAError
    from qa.index import build_faiss_index, build_index, load_index
    from qa.store import is_milvus_target

    if dataset.articles is None:
        raise InputError(f"{dataset.name} has no corpus; evaluate it against an index with --index")
    embedder = get_embedder(model or DEFAULT_MODEL, backend=backend)
    milvus = index_dir is not None and is_milvus_target(index_dir)
    with tempfile.TemporaryDirectory(prefix="qa-eval-") as tmp:
        corpus = Path(tmp) / f"{dataset.name}.jsonl"
        corpus.write_text(_corpus_jsonl(dataset.articles), encoding="utf-8")
        from qa.documents import load_passages

        passages = load_passages([corpus], max_tokens=embedder.max_tokens, count_tokens=embedder.count_tokens)
        _check_paragraphs(dataset.articles, passages)
        key = _passage_key(passages)
        if index_dir is not None and (milvus or (Path(index_dir) / "manifest.json").exists()):
            try:
                cached = load_index(index_dir, model=embedder)
                if _passage_key(cached.passages) == key:
                    return cached  # type: ignore[return-value]
                if milvus:
                    cached.close()  # type: ignore[attr-defined]
            except QAError:
                pass  # stale or from another model: rebuild below
        if milvus:
            # Exact search, as the FAISS folder of an evaluation corpus (flat below 100k passages):
            # the evaluation compares retrieval modes, not approximations.
            built = build_index([corpus], index_dir, model=embedder, progress=progress, index_type="flat",
                                incremental=False)  # fmt: skip
            return built  # type: ignore[return-value]
        index = build_faiss_index([corpus], None, model=embedder, progress=progress)
    index.manifest["sources"] = [f"{dataset.description}: {Path(dataset.data_path).name} sha256 {dataset.data_sha256}"]
    if index_dir is not None:
        index.save(index_dir)
    return index


def _check_paragraphs(articles: Sequence[Article], passages: Sequence[Passage]) -> None:
    expected = {unit_key(a.doc_id, n) for a in articles for n in range(1, len(a.paragraphs) + 1)}
    found = {unit_key(p.source.doc_id, p.source.paragraph) for p in passages}
    if expected != found:
        odd = sorted(expected ^ found)[:3]
        raise InputError(f"qa's loader did not keep every paragraph as one unit (e.g. {odd}); cannot evaluate")


def default_index_dir(dataset: str, model: str, backend: str | None = None) -> Path:
    """``indexes/eval-<dataset>-<model>[-<backend>]`` in the working directory."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model).name if "/" in model else model)
    return Path("indexes") / (f"eval-{dataset}-{slug}" + (f"-{backend}" if backend else ""))


# ---------------------------------------------------------------------------
# Running an evaluation


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
class ReliabilityBin:
    """Answers whose confidence falls in [low, high): how many, and how often right (F1 ≥ 0.5)."""

    low: float
    high: float
    answers: int
    mean_confidence: float
    accuracy: float


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


def reliability(confidences: Sequence[float], f1s: Sequence[float]) -> tuple[ReliabilityBin, ...]:
    """Bin answered questions by confidence; accuracy is the share with F1 ≥ 0.5."""
    bins = []
    for low, high in itertools.pairwise(CONFIDENCE_BINS):
        last = high == CONFIDENCE_BINS[-1]
        inside = [(c, f) for c, f in zip(confidences, f1s, strict=True) if low <= c < high or (last and c == high)]
        bins.append(
            ReliabilityBin(
                low=low,
                high=high,
                answers=len(inside),
                mean_confidence=round(sum(c for c, _ in inside) / len(inside), 4) if inside else 0.0,
                accuracy=round(sum(f >= ACCURATE_F1 for _, f in inside) / len(inside), 4) if inside else 0.0,
            )
        )
    return tuple(bins)


def expected_calibration_error(confidences: Sequence[float], f1s: Sequence[float], bins: int = 10) -> float:
    """Expected calibration error: the answer-weighted mean gap between confidence and accuracy.

    Confidences fall into ``bins`` equal-width bins of [0, 1]; in each, |mean confidence -
    share with F1 >= 0.5| is weighted by the bin's share of the answers (Guo et al., 2017).
    """
    if not confidences:
        return 0.0
    groups: dict[int, list[tuple[float, float]]] = collections.defaultdict(list)
    for c, f in zip(confidences, f1s, strict=True):
        groups[min(bins - 1, max(0, int(c * bins)))].append((c, f))
    gap = sum(abs(sum(c for c, _ in group) - sum(f >= ACCURATE_F1 for _, f in group)) for group in groups.values())
    return gap / len(confidences)


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
    """Given-paragraph EM/F1: the reader (`qa.answering.read`) handed only the gold paragraph's passages.

    Returns None when `qa.answering` has no ``read(question, hits)`` entry point.
    """
    import inspect

    from qa import answering

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
        hits = gold_hits(index, dataset, q, qv, vectors, units, passages)
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


# ---------------------------------------------------------------------------
# Output


def format_report(report: EvalReport) -> str:
    """The report as tables for people."""
    lines = [
        f"qa {report.qa_version} eval · {report.description} · model {report.model} "
        f"({report.embedding_backend or 'unknown'} backend) · {report.seconds:.0f} s in all",
        f"command: {report.command}",
        f"corpus: {report.documents} documents, {report.units} {report.unit}s, {report.passages} passages "
        f"({report.data_path}, sha256 {report.data_sha256[:12]})",
        f"questions: {report.questions}",
        "",
    ]
    if report.retrieval:
        ks = sorted(report.retrieval[0].recall)
        header = ["mode", *(f"R@{k}" for k in ks), "MRR@10", "nDCG@10", "seconds"]
        rows = [
            [
                r.mode,
                *(f"{r.recall[k]:.4f}" for k in ks),
                f"{r.mrr_at_10:.4f}",
                f"{r.ndcg_at_10:.4f}",
                f"{r.seconds:.1f}",
            ]
            for r in report.retrieval
        ]
        lines += ["Retrieval (open, every question searches the whole corpus)", *_table(header, rows), ""]
    if report.answers:
        header = ["setting", "mode", "questions", "EM", "F1", "no-answer", "acc. answered", "forced EM", "forced F1"]
        header.append("seconds")
        rows = [
            [
                a.setting,
                a.mode,
                str(a.questions),
                f"{a.exact_match:.4f}",
                f"{a.f1:.4f}",
                f"{a.no_answer_rate:.4f}",
                f"{a.accuracy_when_answered:.4f}",
                f"{a.forced_exact_match:.4f}",
                f"{a.forced_f1:.4f}",
                f"{a.seconds:.1f}",
            ]
            for a in report.answers
        ]
        lines += ["Answers", *_table(header, rows), ""]
        for a in report.answers:
            header = ["confidence", "questions", "mean conf.", "accuracy (F1>=0.5)"]
            rows = [
                [
                    f"[{b.low:.1f}, {b.high:.1f}{']' if b.high == 1.0 else ')'}",
                    str(b.answers),
                    f"{b.mean_confidence:.3f}",
                    f"{b.accuracy:.3f}" if b.answers else "-",
                ]
                for b in a.reliability
            ]
            ece = a.expected_calibration_error
            title = f"Reliability ({a.setting}; no-answer rate {a.no_answer_rate:.4f}; ECE {ece:.4f})"
            lines += [title, *_table(header, rows), ""]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines).rstrip()


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rows)]


def report_json(report: EvalReport) -> str:
    """The report as one JSON object (``dataclasses.asdict``)."""
    return json.dumps(asdict(report), ensure_ascii=False, indent=2)


# ---------------------------------------------------------------------------
# Command line


def data_candidates(name: str) -> list[Path]:
    """Where ``qa eval`` looks for a data file: ``$QA_DATA_DIR``, then ``../shared/data`` beside
    the repo, then beside the working dir."""
    repo = Path(__file__).resolve().parent.parent
    places = [repo.parent / "shared" / "data" / name, Path.cwd().parent / "shared" / "data" / name]
    if os.environ.get(DATA_DIR_ENV):
        places.insert(0, Path(os.environ[DATA_DIR_ENV]) / name)
    return list(dict.fromkeys(p.resolve() for p in places))


def find_data(name: str, given: str | None) -> Path:
    """The data file: ``--data`` when given, else the first of `data_candidates` that exists.

    Raises:
        InputError: the file is missing; the message lists where it looked.
    """
    if given:
        path = Path(given)
        if not path.is_file():
            raise InputError(f"data file {path} not found; pass the path of {name} with --data")
        return path
    candidates = data_candidates(name)
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise InputError(f"{name} not found (looked at {looked}); pass its path with --data PATH or set {DATA_DIR_ENV}")


def add_eval_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to ``qa``'s subparsers."""
    sub: argparse.ArgumentParser = commands.add_parser(
        "eval",
        help="measure retrieval and answer quality on SQuAD, SciFact or your own questions",
        description="Retrieval (recall@k, MRR@10, nDCG@10, every mode side by side) and answer quality "
        "(SQuAD EM/F1, end to end and given the gold paragraph).",
    )
    sub.add_argument("dataset", metavar="DATASET", help="squad, scifact, or a .jsonl file of questions")
    sub.add_argument(
        "--data", metavar="PATH", help=f"data file (default: ../shared/data/{SQUAD_FILE} or {SCIFACT_FILE})"
    )
    sub.add_argument("--split", choices=SPLITS, default="heldout", help="SQuAD questions to ask (default: heldout)")
    sub.add_argument("--limit", type=int, metavar="N", help="ask at most N questions")
    sub.add_argument("--limit-docs", type=int, metavar="N", help="a corpus of N documents only (a fast slice)")
    sub.add_argument("--modes", metavar="M,M", help="retrieval modes to compare (default: all qa has)")
    sub.add_argument("-k", type=int, default=5, help="passages read per answer (default: 5)")
    sub.add_argument("--answer-mode", metavar="MODE", help="retrieval mode for end-to-end answers")
    sub.add_argument("--no-answers", action="store_true", help="retrieval metrics only")
    sub.add_argument("--model", help="embedding model (default: all-MiniLM-L6-v2)")
    sub.add_argument(
        "--index",
        metavar="DIR",
        help="index folder: the corpus for a .jsonl; the cache for squad/scifact "
        "(default: indexes/eval-<dataset>-<model>)",
    )
    sub.add_argument(
        "--corpus",
        metavar="PATH",
        action="append",
        help="for a .jsonl: index these files or folders first (in memory, or into --index) and ask over them",
    )
    sub.add_argument(
        "--backend", choices=("onnx", "onnx-int8", "torch"), help="embedding backend (default: the library's)"
    )
    sub.add_argument("--no-cache", action="store_true", help="build the eval index in memory, never save it")
    sub.add_argument("--json", action="store_true", help="print the report as one JSON object")
    sub.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    return sub


def _positive(value: int | None, flag: str) -> int | None:
    if value is not None and value <= 0:
        raise InputError(f"{flag} must be a positive integer, got {value}")
    return value


def command_line(args: argparse.Namespace) -> str:
    """The ``qa eval`` command that reproduces ``args`` (every option that was set, in a fixed order)."""
    parts = ["qa", "eval", args.dataset]
    for flag, value in (
        ("--data", args.data),
        ("--split", args.split if args.dataset == "squad" else None),
        ("--limit", args.limit),
        ("--limit-docs", args.limit_docs),
        ("--modes", args.modes),
        ("-k", args.k if args.k != 5 else None),
        ("--answer-mode", args.answer_mode),
        ("--model", args.model),
        ("--backend", args.backend),
        ("--index", args.index),
        *(("--corpus", c) for c in args.corpus or ()),
    ):
        if value is not None:
            parts += [flag, str(value)]
    parts += [
        flag
        for flag, on in (("--no-answers", args.no_answers), ("--no-cache", args.no_cache), ("--json", args.json))
        if on
    ]
    return shlex.join(parts)


def run_eval(args: argparse.Namespace) -> int:
    """``qa eval``: load the data set, build or reuse its index, evaluate, print."""
    from qa.embedding import DEFAULT_MODEL, default_backend

    started = time.perf_counter()
    limit = _positive(args.limit, "--limit")
    limit_docs = _positive(args.limit_docs, "--limit-docs")
    model = args.model or DEFAULT_MODEL
    name = args.dataset
    if name == "squad":
        dataset = load_squad(find_data(SQUAD_FILE, args.data), split=args.split, limit=limit, limit_docs=limit_docs)
    elif name == "scifact":
        dataset = load_scifact(find_data(SCIFACT_FILE, args.data), limit=limit, limit_docs=limit_docs)
    elif name.endswith(".jsonl") or Path(name).is_file():
        dataset = load_questions(name, limit=limit)
    else:
        raise InputError(f"unknown data set {name!r}; choose squad, scifact, or a .jsonl file of questions")
    say = (lambda _msg: None) if args.quiet or args.json else (lambda msg: print(f"qa: {msg}", file=sys.stderr))
    from qa.store import is_milvus_target

    milvus = is_milvus_target(args.index)
    index: Any
    if dataset.articles is None:
        from qa.index import build_index, load_index

        if args.corpus:
            say(f"indexing {', '.join(args.corpus)}")
            index = build_index(args.corpus, args.index, model=model, progress=not (args.quiet or args.json))
        else:
            index = load_index(args.index or "indexes/default")
    else:
        full = limit_docs is None
        backend = args.backend or default_backend()
        # A Milvus target is always used (it is where the user asked the index to live); a folder
        # caches the index of a whole data set only.
        folder: str | Path | None = args.index if milvus else None
        if folder is None and not args.no_cache and full:
            folder = Path(args.index or default_index_dir(name, model, backend))
        say(f"indexing {len(dataset.articles)} documents" + (f" (cached in {folder})" if folder else ""))
        index = eval_index(
            dataset, model=model, index_dir=folder, progress=not (args.quiet or args.json), backend=backend
        )
    modes = [m.strip() for m in args.modes.split(",") if m.strip()] if args.modes else None
    say(f"evaluating {len(dataset.questions)} questions over {len(index)} passages")
    command = command_line(args)
    report = evaluate(
        dataset,
        index,
        modes=modes,
        answers=not args.no_answers,
        k=args.k,
        answer_mode=args.answer_mode,
        command=command,
    )
    report = replace(report, seconds=round(time.perf_counter() - started, 1))
    print(report_json(report) if args.json else format_report(report))
    if milvus:
        index.close()
    return 0
