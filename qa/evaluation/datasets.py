"""The evaluation data sets, read in place, and where ``qa eval`` finds them.

* ``squad`` — SQuAD v1.1 dev. Every article is one document and each of its
  paragraphs is one passage; a question's gold is the paragraph it was asked
  on. Retrieval is open (all 2,067 paragraphs); ``split`` only chooses which
  questions are asked: ``heldout`` = articles at positions 0, 5, …, 45 of the
  file's ``data`` list, ``tune`` = the other 38.
* ``scifact`` — the BEIR SciFact test set: 5,183 abstracts (title + abstract),
  the 300 validation claims and their ``cited_doc_ids`` as qrels.
* a ``.jsonl`` file of ``{"question", "answers", "gold_passages"}`` over any index.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from qa.errors import InputError
from qa.integrity import sha256_file

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
        data_sha256=sha256_file(file),
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
        data_sha256=sha256_file(file),
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
        data_sha256=sha256_file(file),
        description=f"questions from {file.name}",
        gold_is_unit_key=False,
    )


# ---------------------------------------------------------------------------
# Where the data files are

def data_candidates(name: str) -> list[Path]:
    """Where ``qa eval`` looks for a data file: ``$QA_DATA_DIR``, then ``../shared/data`` beside
    the repo, then beside the working dir."""
    repo = Path(__file__).resolve().parents[2]
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
