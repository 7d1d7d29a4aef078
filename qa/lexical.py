"""Lexical (BM25) retrieval: the keyword half of hybrid search.

The only module that imports ``bm25s`` and ``Stemmer`` (PyStemmer), and only
when an index is built or loaded. Dense retrieval misses rare names, numbers and
exact terms that BM25 matches directly; `qa.fusion` combines the two.

Tokenisation (same for passages and queries): lower-case, words of two or more
word characters (``\\b\\w\\w+\\b``, the scikit-learn / bm25s pattern), English stop
words removed (the bm25s list), then the Snowball English stemmer, so that
"mediated" and "mediation" both become "mediat". Scoring is Lucene's BM25
(``k1=1.2, b=0.75`` by default; see the measurements below).

`qa.index` indexes each passage as ``f"{title}. {passage}"``: a passage rarely repeats
its article's subject (SQuAD tune recall@1 of BM25 0.778 → 0.783, hybrid 0.837 → 0.842).

Saved indexes contain only ``.npz`` arrays and ``.json`` — never pickle — so
loading an index cannot execute code.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.documents import Passage
from qa.errors import IndexLoadError, InputError

# Measured with whole SQuAD paragraphs by scripts/fusion_experiments.py (in git history before
# the switch to scripts/retrieval_experiments.py) (SQuAD tune R@1 / held-out R@1 / SciFact nDCG@10):
# k1=1.2 b=0.75 0.789/0.724/0.679; k1=1.5 0.784/0.717/0.686; k1=0.9 0.795/0.728/0.680; k1=0.9 b=0.4
# 0.785/0.716/0.676; bm25+ and atire = lucene within 0.001; bm25l 0.780/0.713/0.686. Stemming matters
# (without: 0.770/0.712/0.663); keeping stop words is neutral (0.792/0.728/0.682). k1=1.2 sits between
# SQuAD's and SciFact's optima.
DEFAULT_K1 = 1.2
DEFAULT_B = 0.75
DEFAULT_METHOD = "lucene"
METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")

FORMAT_VERSION = 1
ARRAYS_FILE = "bm25.npz"
META_FILE = "bm25.json"

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
#: What the BM25 index of a store is built from; a store whose manifest names another recipe rebuilds it.
LEXICAL_RECIPE = "title. text"


@dataclass(frozen=True)
class Tokenizer:
    """Text → BM25 terms. Frozen and JSON-serialisable so a saved index re-tokenises queries identically.

    Attributes:
        stem: apply the Snowball English stemmer (PyStemmer) to every token.
        stopwords: drop English stop words (the bm25s list) before stemming.
    """

    stem: bool = True
    stopwords: bool = True

    def __call__(self, texts: Iterable[str]) -> list[list[str]]:
        """Tokenise each text; a text with no usable word gives an empty list."""
        stop = _stopwords() if self.stopwords else frozenset()
        stemmer = _stemmer() if self.stem else None
        out: list[list[str]] = []
        for text in texts:
            words = [w for w in _TOKEN.findall(text.lower()) if w not in stop]
            out.append(stemmer.stemWords(words) if stemmer is not None and words else words)
        return out


_STOPWORDS: frozenset[str] | None = None
_STEMMER: Any = None


def _stopwords() -> frozenset[str]:
    global _STOPWORDS
    if _STOPWORDS is None:
        from bm25s.stopwords import STOPWORDS_EN

        _STOPWORDS = frozenset(STOPWORDS_EN)
    return _STOPWORDS


def _stemmer() -> Any:
    global _STEMMER
    if _STEMMER is None:
        import Stemmer

        _STEMMER = Stemmer.Stemmer("english")
    return _STEMMER


class BM25:
    """A BM25 index over a fixed list of texts; document ids are positions in that list.

    Build with `BM25.build`, query with `search`, persist with `save` / `load`.
    Scores are exhaustive (every document is scored), so ``search`` is exact.
    """

    def __init__(
        self,
        *,
        vocab: dict[str, int],
        data: np.ndarray,
        indices: np.ndarray,
        indptr: np.ndarray,
        n_docs: int,
        nonoccurrence: np.ndarray | None,
        tokenizer: Tokenizer,
        params: dict[str, Any],
    ) -> None:
        """Use `build` or `load`; this stores already-computed arrays (CSC: one column per term)."""
        self._vocab = vocab
        self._data = data
        self._indices = indices
        self._indptr = indptr
        self._n_docs = n_docs
        self._nonoccurrence = nonoccurrence
        self.tokenizer = tokenizer
        self.params = params

    # ------------------------------------------------------------------ build

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        *,
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        method: str = DEFAULT_METHOD,
        delta: float = 0.5,
        tokenizer: Tokenizer | None = None,
    ) -> BM25:
        """Index ``texts``.

        Args:
            texts: the documents; their positions are the ids `search` returns.
            k1: term-frequency saturation (higher: repeated words count for more).
            b: length normalisation, 0 (none) to 1 (full).
            method: one of `METHODS` (bm25s's variants); ``"lucene"`` is the default.
            delta: the extra term of ``bm25l`` / ``bm25+``; ignored otherwise.
            tokenizer: how to turn text into terms; default stems and drops stop words.

        Returns:
            The index.

        Raises:
            InputError: ``texts`` is empty, or a parameter is out of range.
        """
        if isinstance(texts, str):
            raise InputError("BM25.build needs a sequence of texts, not one string; wrap it in a list")
        if len(texts) == 0:
            raise InputError("BM25.build needs at least one text to index")
        if method not in METHODS:
            raise InputError(f"unknown BM25 method {method!r}; choose one of {', '.join(METHODS)}")
        if k1 < 0 or not 0 <= b <= 1:
            raise InputError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        tokenizer = tokenizer or Tokenizer()
        docs = tokenizer(texts)
        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(t, len(vocab)) for t in doc] for doc in docs]
        # bm25s scores documents with no term at all through an empty-string token; adding it
        # also keeps the vocabulary non-empty when every text is made of stop words.
        vocab.setdefault("", len(vocab))

        import bm25s

        engine = bm25s.BM25(k1=k1, b=b, delta=delta, method=method, dtype="float32", int_dtype="int32")
        engine.index((ids, vocab), show_progress=False, create_empty_token=False)
        scores = engine.scores
        nonocc = getattr(engine, "nonoccurrence_array", None)
        return cls(
            vocab=vocab,
            data=np.asarray(scores["data"], dtype=np.float32),
            indices=np.asarray(scores["indices"], dtype=np.int32),
            indptr=np.asarray(scores["indptr"], dtype=np.int64),
            n_docs=int(scores["num_docs"]),
            nonoccurrence=None if nonocc is None else np.asarray(nonocc, dtype=np.float32),
            tokenizer=tokenizer,
            params={"k1": k1, "b": b, "method": method, "delta": delta},
        )

    def __len__(self) -> int:
        """Number of indexed documents."""
        return self._n_docs

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The score matrix, one column per term: ``(data, indices, indptr)``; term ``t``'s documents are
        ``indices[indptr[t]:indptr[t + 1]]`` with scores ``data[...]`` (so its document frequency is the slice length).
        """
        return self._data, self._indices, self._indptr

    def terms(self) -> list[str]:
        """The vocabulary: term of id ``i`` is ``terms()[i]``."""
        return sorted(self._vocab, key=self._vocab.__getitem__)

    # ------------------------------------------------------------------ query

    def term_ids(self, query: str) -> np.ndarray:
        """The vocabulary ids of ``query``'s terms (repeats kept, unknown terms dropped)."""
        terms = self.tokenizer([query])[0]
        return np.array([self._vocab[t] for t in terms if t in self._vocab], dtype=np.int64)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query``: float32 array of shape ``(len(self),)``.

        A query with no indexed term scores every document 0 (it does not raise).
        """
        out = np.zeros(self._n_docs, dtype=np.float32)
        terms = self.term_ids(query)
        for t in terms:
            lo, hi = self._indptr[t], self._indptr[t + 1]
            # A repeated query term counts once per occurrence, as in Lucene and bm25s.
            out[self._indices[lo:hi]] += self._data[lo:hi]
        if self._nonoccurrence is not None and len(terms):
            out += self._nonoccurrence[terms].sum()
        return out

    def coverage(self, query: str, rows: np.ndarray) -> np.ndarray:
        """IDF-weighted share of ``query``'s distinct terms that each of ``rows`` contains, in [0, 1].

        BM25 rewards a short passage that repeats two of three query words about as much as
        a longer one holding all three; a passage that answers a question usually holds all of
        its key words (Lucene's classic "coord" factor). Unknown terms count as missing.

        Args:
            query: the query text.
            rows: document ids to score.

        Returns:
            float32 array of shape ``(len(rows),)``; all zeros when the query has no term.
        """
        rows = np.asarray(rows, dtype=np.int64)
        terms = self.tokenizer([query])[0]
        distinct = list(dict.fromkeys(terms))
        out = np.zeros(len(rows), dtype=np.float64)
        if not distinct:
            return out.astype(np.float32)
        total = 0.0
        for term in distinct:
            t = self._vocab.get(term)
            df = 0 if t is None else int(self._indptr[t + 1] - self._indptr[t])
            idf = float(np.log1p((self._n_docs - df + 0.5) / (df + 0.5)))
            total += idf
            if t is not None and df:
                out += idf * np.isin(rows, self._indices[self._indptr[t] : self._indptr[t + 1]])
        return (out / total).astype(np.float32)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` documents per query, best first.

        Args:
            queries: query strings.
            k: results wanted per query; more than the corpus holds gives all documents.

        Returns:
            ``(indices, scores)``: int64 and float32 arrays of shape ``(len(queries), min(k, len(self)))``.
            Every index is a real document. Documents scoring 0 (no shared term) are kept,
            after all positive ones; ties are broken by document id, so results are deterministic.

        Raises:
            InputError: ``k`` < 1, or ``queries`` is a single string.
        """
        if isinstance(queries, str):
            raise InputError("search takes a sequence of queries; wrap a single query in a list")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        k = min(k, self._n_docs)
        idx = np.empty((len(queries), k), dtype=np.int64)
        val = np.empty((len(queries), k), dtype=np.float32)
        for row, query in enumerate(queries):
            idx[row], val[row] = top_k(self.scores(query), k)
        return idx, val

    # ------------------------------------------------------------------ persistence

    def save(self, folder: Path) -> list[str]:
        """Write the index into an existing ``folder``; return the file names written.

        Files: ``bm25.npz`` (the score matrix, no object arrays) and ``bm25.json``
        (vocabulary, parameters, tokenizer settings).

        Raises:
            InputError: ``folder`` does not exist or is not a directory.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"{folder} is not an existing folder; create it before saving the BM25 index")
        arrays: dict[str, np.ndarray] = {"data": self._data, "indices": self._indices, "indptr": self._indptr}
        if self._nonoccurrence is not None:
            arrays["nonoccurrence"] = self._nonoccurrence
        np.savez(folder / ARRAYS_FILE, **arrays)  # type: ignore[arg-type]
        vocab = sorted(self._vocab, key=self._vocab.__getitem__)
        meta = {
            "format_version": FORMAT_VERSION,
            "n_docs": self._n_docs,
            "params": self.params,
            "tokenizer": {"stem": self.tokenizer.stem, "stopwords": self.tokenizer.stopwords},
            "vocab": vocab,  # term of id i is vocab[i]
        }
        (folder / META_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        return [ARRAYS_FILE, META_FILE]

    @classmethod
    def load(cls, folder: Path) -> BM25:
        """Read an index written by `save` (never unpickles anything).

        Raises:
            IndexLoadError: the files are missing, corrupted, or from another format version;
                rebuild the index with `BM25.build` and save it again.
        """
        folder = Path(folder)
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            with np.load(folder / ARRAYS_FILE, allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
        except FileNotFoundError as exc:
            raise IndexLoadError(f"no BM25 index in {folder} ({exc.filename} is missing); rebuild the index") from exc
        except (ValueError, OSError, RecursionError, EOFError, zipfile.BadZipFile) as exc:
            raise IndexLoadError(f"BM25 index in {folder} is unreadable ({exc}); rebuild the index") from exc
        version = meta.get("format_version") if isinstance(meta, dict) else None
        if version != FORMAT_VERSION:
            raise IndexLoadError(
                f"BM25 index in {folder} has format version {version}, "
                f"this qa reads version {FORMAT_VERSION}; rebuild the index"
            )
        try:
            vocab = {term: i for i, term in enumerate(meta["vocab"])}
            indptr = arrays["indptr"]
            n_docs = int(meta["n_docs"])
            consistent = len(indptr) == len(vocab) + 1 and not (
                len(arrays["indices"]) and int(arrays["indices"].max()) >= n_docs
            )
            if consistent:
                return cls(
                    vocab=vocab,
                    data=arrays["data"],
                    indices=arrays["indices"],
                    indptr=indptr,
                    n_docs=n_docs,
                    nonoccurrence=arrays.get("nonoccurrence"),
                    tokenizer=Tokenizer(**meta["tokenizer"]),
                    params=meta["params"],
                )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise IndexLoadError(
                f"BM25 index in {folder} lacks or garbles a field ({type(exc).__name__}: {exc}); rebuild the index"
            ) from exc
        raise IndexLoadError(f"BM25 index in {folder} is inconsistent (vocabulary vs arrays); rebuild the index")


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest ``scores``, best first, ties broken by lower index.

    Args:
        scores: 1-d array of scores.
        k: how many; clipped to ``len(scores)``.

    Returns:
        ``(indices int64, values float32)`` of length ``min(k, len(scores))``.
    """
    k = min(k, len(scores))
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
        # argpartition picks arbitrary members of a tie at the cut; re-pick deterministically.
        cut = scores[part].min()
        above = np.flatnonzero(scores > cut)
        ties = np.flatnonzero(scores == cut)[: k - len(above)]
        part = np.concatenate([above, ties])
    else:
        part = np.arange(len(scores))
    order = np.lexsort((part, -scores[part]))
    best = part[order]
    return best.astype(np.int64), scores[best].astype(np.float32)


def lexical_text(passage: Passage) -> str:
    """What BM25 indexes for a passage: ``"title. text"`` (the recipe `LEXICAL_RECIPE` names)."""
    # A paragraph rarely repeats its article's subject; the title puts it back for BM25
    # (a poor man's BM25F). Measured in scripts/retrieval_experiments.py.
    title = passage.source.title.strip()
    return f"{title}. {passage.text}" if title else passage.text


def build_lexical(passages: Sequence[Passage]) -> BM25:
    """The BM25 index over ``passages`` (`lexical_text` of each)."""
    return BM25.build([lexical_text(p) for p in passages])
