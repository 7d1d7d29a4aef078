"""Question + retrieved passages → `Answer` (span, evidence, confidence), or no answer.

A reader proposes answer spans inside the best passages: by default the span model
fine-tuned here on the bundled MiniLM (`qa.span_reader.SpanReader`), whose score is a
span's probability against every other span of its window and "no answer". Whether the
corpus holds an answer at all is a second question, answered by how closely the
question matches the passage: the embedding model's cosine (which, unlike fused
retrieval scores, means the same thing in every mode and every corpus) and how many
of the question's words the passage and the answer's sentence contain ("What currency
does Azerbaijan use?" over an article that never says "currency"). A logistic model
of these (`confidence`, fitted by ``scripts/fit_no_answer.py``) gives the confidence;
below its threshold `Answer.text` is None. There is one model for passages found by a search
(`answer`) and one for passages the caller hands over (`read`): a paragraph handed over is
taken to be about the question, so a weak match with it is less of a sign that it is silent.

Alternatives are other spans of the kind of answer the question asks for (a name for
"who", a date for "when", a number for "how many"), never one the question already names
(or abbreviates), nor one that only repeats a better one with words of the question.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from qa.coreference import Resolved, resolve_pronouns
from qa.documents import split_sentences
from qa.embedding import Embedder, embed_passages, get_embedder
from qa.retrieval import Hit
from qa.text import FUNCTION_WORDS, base_form, normalize_answer

if TYPE_CHECKING:
    from qa.reader import Reader, Span


class Store(Protocol):
    """What answering needs of an index (`qa.index.Index` and `qa.milvus.MilvusIndex` have it)."""

    embedder: Embedder

    def search(self, query: str, k: int = 5, *, mode: str | None = None, **options: Any) -> list[Hit]: ...

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray: ...

    def vectors_of(self, passage_ids: Sequence[str]) -> np.ndarray: ...

    def sentence_vectors_of(self, passage_ids: Sequence[str]) -> list[np.ndarray | None]: ...

# How many of the retrieved passages the reader reads. On 800 SQuAD tune questions the best
# answer's F1 was 0.611 reading 3, 0.603 reading 5 and 0.595 reading 8 (more distractors than
# answers), but 0.608 reading 5 once the confidence knows each passage's retrieval rank; 5 also
# finds the alternatives further down (the seed's second mediator is its 4th passage).
READ_PASSAGES = 5
ALTERNATIVES = 4

CALIBRATION_FILE = Path(__file__).resolve().parent / "data" / "no-answer.json"
#: The inputs of `confidence`, in the order of `candidate_features`.
FEATURES = (
    "span",
    "cosine",
    "max_cosine",
    "coverage",
    "sentence_coverage",
    "passage_rank",
    "words",
    "span_rank",
    "sentence_cosine",
    "max_sentence_cosine",
    "near_coverage",
)
# Used only until scripts/fit_no_answer.py has written CALIBRATION_FILE.
_FALLBACK_CALIBRATION: dict[str, Any] = {
    "weights": {
        "span": 4.0,
        "cosine": 4.0,
        "max_cosine": 1.0,
        "coverage": 2.0,
        "sentence_coverage": 1.0,
        "passage_rank": 0.5,
        "words": 0.0,
        "span_rank": -0.3,
        "sentence_cosine": 2.0,
        "max_sentence_cosine": 1.0,
        "near_coverage": 1.0,
    },
    "bias": -7.0,
    "threshold": 0.3,
}


@dataclass(frozen=True)
class Alternative:
    """Another plausible answer, with the passage it comes from."""

    text: str
    confidence: float
    span: tuple[int, int]
    evidence: Hit


@dataclass(frozen=True)
class Answer:
    """The answer to a question, with the passages it rests on.

    Attributes:
        question: the question as asked.
        text: the answer, or None when the corpus holds no good enough answer.
        confidence: in [0, 1]; roughly the probability that ``text`` is right
            (for a None answer: that of the best rejected candidate).
        span: (start, end) of ``text`` within ``evidence[0].text``, or None.
        evidence: the passages consulted, the one holding the answer first.
        alternatives: other candidate answers, best first, each with its passage; when
            ``text`` is None, every candidate, the best rejected one first.
    """

    question: str
    text: str | None
    confidence: float
    span: tuple[int, int] | None
    evidence: tuple[Hit, ...]
    alternatives: tuple[Alternative, ...] = ()

    def __repr__(self) -> str:
        from qa.display import answer_repr

        return answer_repr(self)

    def _repr_html_(self) -> str:
        from qa.display import answer_html

        return answer_html(self)


#: Where the passages read come from, each with its own fitted confidence: ``retrieved`` by a
#: search of a corpus that may not hold the answer (`answer`), or ``given`` by a caller who hands
#: over the passages to read (`read`). A weak question–passage match is evidence against an answer
#: found by search; in a paragraph handed over to be read, what the reader finds in it counts more.
SETTINGS = ("retrieved", "given")


@functools.lru_cache(maxsize=1)
def _calibrations() -> dict[str, dict[str, Any]]:
    if CALIBRATION_FILE.exists():
        data: dict[str, Any] = json.loads(CALIBRATION_FILE.read_text(encoding="utf-8"))
        if set(data.get("weights", {})) == set(FEATURES):
            given = data.get("given", {})
            return {"retrieved": data, "given": given if set(given.get("weights", {})) == set(FEATURES) else data}
    return {"retrieved": _FALLBACK_CALIBRATION, "given": _FALLBACK_CALIBRATION}


def _calibration(setting: str) -> dict[str, Any]:
    if setting not in SETTINGS:
        from qa.errors import InputError

        raise InputError(f"unknown setting {setting!r}; choose one of {', '.join(SETTINGS)}")
    return _calibrations()[setting]


def confidence(features: Mapping[str, float], setting: str = "retrieved") -> float:
    """P(answer right) from a candidate's `FEATURES` (see `candidate_features`), in ``setting`` (`SETTINGS`).

    A logistic model per setting, fitted by ``scripts/fit_no_answer.py`` on SQuAD tune articles
    only, each question read by a span reader that was not trained on its article (cross-fitting).
    ``retrieved``: half the questions are asked with their article removed from the corpus.
    ``given``: half are handed the best-retrieved paragraph of another article instead of their own.
    Then rescaled so that a question's most confident answer is right about as often as its
    confidence says.

    Raises:
        InputError: an unknown ``setting``.
    """
    cal = _calibration(setting)
    z = cal["bias"] + sum(weight * features[name] for name, weight in cal["weights"].items())
    # Recalibrated for the best candidate of a question (see scripts/fit_no_answer.py).
    z = cal.get("scale", 1.0) * z + cal.get("shift", 0.0)
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def no_answer_threshold(setting: str = "retrieved") -> float:
    """Answers less confident than this are withheld (`Answer.text` is None) in ``setting`` (`SETTINGS`)."""
    return float(_calibration(setting)["threshold"])


def _terms(text: str) -> set[str]:
    """The content words of ``text``, stemmed as BM25 stems them: question words ("who"), auxiliaries
    and other `FUNCTION_WORDS` dropped, irregular past forms back to their verb ("met" → "meet")."""
    from qa.lexical import Tokenizer

    words = [base_form(w) for w in Tokenizer(stem=False)([text])[0] if w not in FUNCTION_WORDS]
    return set(Tokenizer(stopwords=False)([" ".join(words)])[0]) if words else set()


_NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million "
    "billion trillion dozen dozens hundreds thousands millions billions half quarter first second third".split()
)
_DATE_WORDS = frozenset(
    "january february march april may june july august september october november december jan feb mar apr jun "
    "jul aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday century centuries "
    "decade decades year years month months week weeks day days today yesterday tomorrow ago bc ad bce ce "
    "spring summer autumn fall winter morning evening night era age period".split()
)
_NUMBER_QUESTION = re.compile(
    r"\bhow (many|much|long|old|far|large|big|tall|high|deep|wide|often|heavy)\b"
    r"|\bwhat (percentage|percent|proportion|number|amount|fraction|share)\b"
)
_DATE_QUESTION = re.compile(r"\bwhen\b|\b(what|which|in what) (year|date|day|month|century|decade|era|time)\b")
_NAME_QUESTION = re.compile(r"\b(who|whom|whose|where)\b")
_WORD = re.compile(r"[^\W_]+")


def default_reader() -> Reader:
    """The reader used when none is given: the span model fine-tuned here (`qa.span_reader.SpanReader`)."""
    from qa.span_reader import default_span_reader

    return default_span_reader()


def expected_type(question: str) -> str | None:
    """What kind of answer ``question`` asks for: ``number``, ``date``, ``name`` or None (anything).

    Rules on the question's words: "how many/much/long…" and "what percentage…" want a
    number, "when" and "what year…" a date, "who/whom/whose/where" a name.
    """
    q = question.lower()
    if _NUMBER_QUESTION.search(q):
        return "number"
    if _DATE_QUESTION.search(q):
        return "date"
    if _NAME_QUESTION.search(q):
        return "name"
    return None


def fits_type(text: str, kind: str | None, question: str = "") -> bool:
    """Whether ``text`` can be an answer of ``kind`` (see `expected_type`): a number holds a digit or
    a number word, a date a digit or a calendar word, a name a capitalised word that ``question``
    does not already name ("Turkey-Israel relations" names nobody new for "who mediated Turkey-Israel?")."""
    if kind is None:
        return True
    words = _WORD.findall(text)
    lower = {w.lower() for w in words}
    if kind == "number":
        return any(ch.isdigit() for ch in text) or bool(lower & _NUMBER_WORDS)
    if kind == "date":
        return any(ch.isdigit() for ch in text) or bool(lower & _DATE_WORDS)
    asked = {w.lower() for w in _WORD.findall(question)}
    return any(w[0].isupper() and w.lower() not in asked for w in words)


_PERSON_QUESTION = re.compile(r"\b(who|whom|whose)\b")
_ACRONYM = re.compile(r"[A-Z][A-Z0-9&.\-]*[A-Z0-9]")


def _abbreviates_asked(passage: str, start: int, end: int, asked: set[str]) -> bool:
    """Whether ``passage[start:end]`` is an acronym in brackets right after two or more words that all
    name something the question names: "DEIK" in "president of the Turkish Foreign Economic Relations
    Board (DEIK)" is the board the question asks about, not the person it asks for. (No answer to a
    who-question of SQuAD's 8,046 tune questions is such an acronym; answers in brackets after question
    words are common for other questions: dates, glosses, chemical formulas.)"""
    if not (start > 0 and end < len(passage) and passage[start - 1] in "([" and passage[end] in ")]"):
        return False
    if not _ACRONYM.fullmatch(passage[start:end]):
        return False
    before = [t for t in (_terms(w) for w in _WORD.findall(passage[: start - 1])[-8:]) if t]
    named = 0
    for terms in reversed(before):
        if not terms <= asked:
            break
        named += 1
    return named >= 2


def coverage(question_terms: set[str], text: str) -> float:
    """Share of the question's content words (stemmed, no stop words) that ``text`` contains."""
    return len(question_terms & _terms(text)) / len(question_terms) if question_terms else 1.0


def answer(
    index: Store,
    question: str,
    *,
    k: int = 5,
    mode: str | None = None,
    reader: Reader | None = None,
    min_confidence: float | None = None,
    **search_options: Any,
) -> Answer:
    """Answer ``question`` from ``index``: retrieve ``k`` passages, then read the best `READ_PASSAGES`.

    The passages' vectors (and their sentences', where the index keeps them) come from the
    index: reading embeds nothing but the question. ``min_confidence`` is as for `read`.
    """
    hits = index.search(question, k=k, mode=mode, **search_options)
    known = stored_embeddings(index, question, hits[:READ_PASSAGES])
    return read(
        question,
        hits,
        reader=reader,
        embedder=index.embedder,
        known=known,
        min_confidence=min_confidence,
        setting="retrieved",
    )


def stored_embeddings(index: Store, question: str, hits: Sequence[Hit]) -> Embeddings:
    """The question's vector, and the vectors the index holds for ``hits`` and their sentences."""
    ids = [h.passage_id for h in hits]
    return Embeddings(
        question=index.embed_queries([question.strip()])[0],
        passages=index.vectors_of(ids),
        sentences=index.sentence_vectors_of(ids),
    )


@dataclass(frozen=True)
class Embeddings:
    """Vectors the caller already has for a question and its passages (unit length, the index's model).

    Attributes:
        question: ``(dim,)``.
        passages: ``(n, dim)``, one row per passage read.
        sentences: per passage read, its sentences' vectors in `qa.documents.split_sentences` order,
            or None where they are not stored.
    """

    question: np.ndarray
    passages: np.ndarray
    sentences: Sequence[np.ndarray | None]


def candidate_features(
    question: str,
    hits: Sequence[Hit],
    *,
    reader: Reader | None = None,
    embedder: Embedder | None = None,
    known: Embeddings | None = None,
) -> list[tuple[Span, dict[str, float]]]:
    """The reader's spans over ``hits``, each with the inputs of `confidence` (`FEATURES`):
    the span's score, the cosine of the question and the span's passage, the best such cosine,
    the share of the question's words in the span's passage and in its sentence, the
    passage's retrieval rank, the span's length in words, its rank by the reader's logit,
    the cosine of the question and the span's sentence, the best such cosine, and the share
    of the question's words among the five words either side of the span.

    Spans the question already names are left out. An answer found in several passages comes
    back once per passage: which occurrence is the evidence is decided by `confidence`, which
    weighs how well each passage fits the question.
    ``known`` spares embedding what the index already holds (see `answer`).
    """
    if not hits:
        return []
    if reader is None:
        reader = default_reader()
    if known is None or len(known.passages) != len(hits):
        model = get_embedder(embedder)
        vectors, blocks = embed_passages(model, [h.text for h in hits], with_sentences=True)
        known = Embeddings(model.encode([question])[0], vectors, [blocks.get(h.text) for h in hits])
    sentence_cosines = _sentence_cosines(known, [h.text for h in hits], embedder)
    cosines = (known.passages @ known.question).astype(float)
    max_cosine = float(cosines.max())
    # "He is playing a mediator role": the reader reads the name "he" stands for (qa.coreference).
    resolved = [resolve_pronouns(h.text) for h in hits]
    spans = reader.read(
        question,
        [r.text for r in resolved],
        cosines.tolist(),
        top_n=(ALTERNATIVES + 1) * len(hits),
        per_passage=True,
        question_vector=known.question,
        sentence_vectors=known.sentences,
    )
    asked = _terms(question)
    person = bool(_PERSON_QUESTION.search(question.lower()))
    max_sentence_cosine = max(float(c.max()) for c, _ in sentence_cosines)
    passage_coverage = [coverage(asked, h.text) for h in hits]
    out = []
    for read_span in spans:
        s = _as_written(read_span, resolved[read_span.passage_index], hits[read_span.passage_index].text)
        named = _terms(s.text)
        passage = hits[s.passage_index].text
        if (named and named <= asked) or (person and _abbreviates_asked(passage, s.start, s.end, asked)):
            # The question already names it: Israel is not who mediated Turkey-Israel. A gold
            # answer is wholly named in its question for 0.8% of SQuAD's tune questions.
            continue
        sentence = passage[s.sentence[0] : s.sentence[1]]
        features = {
            "span": s.score,
            "cosine": float(cosines[s.passage_index]),
            "max_cosine": max_cosine,
            "coverage": passage_coverage[s.passage_index],
            "sentence_coverage": coverage(asked, sentence),
            # 1 for the best-retrieved passage, 1/2 for the next, ...: retrieval's own vote.
            "passage_rank": 1.0 / (1 + s.passage_index),
            # The span model likes long spans ("Azerbaijan, being Israel's and Turkey's ally");
            # answers are short. The fit learns what length costs, in tenths of up to 20 words.
            "words": min(len(s.text.split()), 20) / 10,
            # How well the span's own sentence, and the words right around the span, match the
            # question: a passage about the question can hold other names in other sentences. In
            # 2-fold cross-validation of the fit on 1,600 SQuAD tune questions, the two cosines and
            # the five words either side raised the forced F1 of the pick in a handed paragraph
            # from 0.678 to 0.685 (50/50 mix 0.754 to 0.763) and left it as it was over retrieved
            # passages (0.608 to 0.607; mix 0.740 to 0.745). Ten words either side did as well.
            # Both are taken where the reader read the span: for a name read in place of "he",
            # around the pronoun (`qa.coreference`).
            "sentence_cosine": _cosine_at(sentence_cosines[s.passage_index], s.sentence[0]),
            "max_sentence_cosine": max_sentence_cosine,
            "near_coverage": coverage(
                asked, _around(resolved[s.passage_index].text, read_span.start, read_span.end, 5)
            ),
        }
        out.append((s, features))
    # Where the reader puts the span among this question's candidates: its probability is
    # normalised within one window, its logit compares across windows and passages. log(1 + rank
    # by logit), 0 for the reader's best. On SQuAD tune questions read by cross-fitted readers
    # (2-fold cross-validation of the fit) it raised the F1 of the pick from 0.594 to 0.608 over
    # retrieved passages and from 0.673 to 0.678 in a handed paragraph.
    logits = [_logit(s) for s, _ in out]
    for rank, i in enumerate(sorted(range(len(out)), key=lambda i: -logits[i])):
        out[i][1]["span_rank"] = math.log1p(rank)
    return out


def _sentence_cosines(
    known: Embeddings, texts: Sequence[str], embedder: Embedder | None
) -> list[tuple[np.ndarray, list[tuple[int, int]]]]:
    """Per passage, the question's cosine with each of its sentences, and the sentences' offsets.

    The sentence vectors are the index's where it keeps them (`Embeddings.sentences`), else
    embedded here as the index embeds them (`qa.embedding.embed_passages`).
    """
    blocks = list(known.sentences)
    missing = [i for i, b in enumerate(blocks) if b is None]
    if missing:
        _, found = embed_passages(get_embedder(embedder), [texts[i] for i in missing], with_sentences=True)
        for i in missing:
            blocks[i] = found.get(texts[i])
    out = []
    for i, text in enumerate(texts):
        block = blocks[i]
        sentences = split_sentences(text)
        if block is None or len(block) != len(sentences) or not len(block):
            # One sentence (or none stored): the passage's own vector is its sentence's.
            out.append((np.array([float(known.passages[i] @ known.question)]), [(0, len(text))]))
        else:
            out.append(((np.asarray(block) @ known.question).astype(float), sentences))
    return out


def _cosine_at(cosines: tuple[np.ndarray, list[tuple[int, int]]], offset: int) -> float:
    """The cosine of the sentence holding ``offset`` (the last sentence starting at or before it)."""
    values, sentences = cosines
    at = max((i for i, (a, _) in enumerate(sentences) if a <= offset), default=0)
    return float(values[at])


def _around(text: str, start: int, end: int, words: int) -> str:
    """The ``words`` words before ``text[start:end]`` and the ``words`` after it, without it."""
    before = [m.group() for m in _WORD.finditer(text, 0, start)][-words:]
    after = [m.group() for m in _WORD.finditer(text, end)][:words]
    return " ".join(before + after)


def _logit(span: Span) -> float:
    """The span's start + end logit; for a reader without logits, its log-probability stands in."""
    return span.logit if span.logit is not None else math.log(max(span.score, 1e-9))


def _as_written(span: Span, resolved: Resolved, passage: str) -> Span:
    """``span`` of the text the reader read, moved to ``passage`` as written (see `qa.coreference`)."""
    if not resolved.edits:
        return span
    start, end = resolved.to_original(span.start, span.end)
    return replace(span, text=passage[start:end], start=start, end=end, sentence=resolved.to_original(*span.sentence))


def _appositive_of(longer: Span, shorter: Span) -> bool:
    """Whether ``longer`` is ``shorter`` followed by a comma and more (an appositive or a clause)."""
    return (
        longer.passage_index == shorter.passage_index
        and longer.start == shorter.start
        and longer.end > shorter.end
        and longer.text[len(shorter.text) :].startswith(",")
    )


def read(
    question: str,
    hits: Sequence[Hit],
    *,
    reader: Reader | None = None,
    embedder: Embedder | None = None,
    passages: int = READ_PASSAGES,
    known: Embeddings | None = None,
    min_confidence: float | None = None,
    setting: str = "given",
) -> Answer:
    """Answer ``question`` from given passages (no retrieval), e.g. to judge the reader alone.

    Args:
        question: the question.
        hits: the passages to read, best first.
        reader: extracts answer spans; `default_reader` when None.
        embedder: the model for question–passage similarity; the default model when None.
        passages: how many of ``hits`` to read.
        known: the question's and the read passages' vectors, if the caller has them.
        min_confidence: withhold answers less confident than this (`Answer.text` None); by
            default ``no_answer_threshold(setting)``, fitted for passages that hold the answer
            half the time. 0 always answers when there is any candidate.
        setting: ``given`` (the default) for passages handed over to be read, ``retrieved`` for
            the results of a search (as `answer` reads them): which fitted confidence to use
            (see `SETTINGS`).

    Raises:
        InputError: ``min_confidence`` outside [0, 1], or an unknown ``setting``.
    """
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        from qa.errors import InputError

        raise InputError(f"min_confidence must be in [0, 1], got {min_confidence}")
    threshold = no_answer_threshold(setting) if min_confidence is None else min_confidence
    question = question.strip()
    hits = tuple(hits)
    if not hits:
        return Answer(question, None, 0.0, None, ())
    read_hits = hits[:passages]
    candidates = candidate_features(question, read_hits, reader=reader, embedder=embedder, known=known)
    scored: list[tuple[float, Span]] = []
    seen: set[str] = set()
    said: list[set[str]] = []  # the content words of each answer kept
    asked = _terms(question)
    names = expected_type(question) == "name"
    # Best first; an answer met in several passages keeps its most confident occurrence, and a
    # span overlapping a better one in the same passage ("crises" inside "crises between them")
    # is that answer with other edges, not another answer. Nor is one that adds nothing to a
    # better one but words of the question ("Azerbaijan and Israel" after "Azerbaijan" for
    # "who mediated Turkey-Israel?") or that a better one holds ("30" after "30 years").
    for c, s in sorted(((confidence(f, setting), s) for s, f in candidates), key=lambda pair: -pair[0]):
        key = normalize_answer(s.text) or s.text
        described = next((n for n, (_, t) in enumerate(scored) if _appositive_of(t, s)), None) if names else None
        if described is not None and key not in seen:
            # "Azerbaijan, being Israel's and Turkey's ally" for a who-question: the name before
            # the comma answers, what follows describes it; the name keeps the better confidence.
            # (For every kind of question it cost 3 F1 on validation paragraphs: "Paris, France".)
            scored[described] = (scored[described][0], s)
            seen.add(key)
        overlaps = any(t.passage_index == s.passage_index and t.start < s.end and s.start < t.end for _, t in scored)
        adds = _terms(s.text) - asked
        if key not in seen and not overlaps and not any(adds <= words for words in said):
            seen.add(key)
            said.append(adds)
            scored.append((c, s))
    if scored:
        # The best answer is the model's; the others must at least be the kind of thing asked for.
        kind = expected_type(question)
        scored = [scored[0], *(pair for pair in scored[1:] if fits_type(pair[1].text, kind, question))]
    scored = scored[: ALTERNATIVES + 1]
    if not scored:
        return Answer(question, None, 0.0, None, hits)
    best_confidence, best = scored[0]
    best_hit = read_hits[best.passage_index]
    evidence = (best_hit, *(h for h in hits if h is not best_hit))
    alternatives = tuple(
        Alternative(s.text, round(c, 4), (s.start, s.end), read_hits[s.passage_index]) for c, s in scored
    )
    if best_confidence < threshold:
        return Answer(question, None, round(best_confidence, 4), None, evidence, alternatives)
    alternatives = alternatives[1:]
    return Answer(question, best.text, round(best_confidence, 4), (best.start, best.end), evidence, alternatives)
