"""Compare lexical, dense and hybrid retrieval on SQuAD v1.1 dev and SciFact (issue 4).

Reproduces the numbers quoted in ``qa/fusion.py``::

    HF_HUB_OFFLINE=1 QA_BATCH_THREADS=1 .venv/bin/python scripts/fusion_experiments.py

Data are read in place from the zips (``--squad``, ``--scifact``); embeddings are
cached as ``.npy`` (plus a ``.json`` of the texts in order) under ``--cache``
(default ``/tmp/qa-cache``) and reused when the texts match. First run encodes
~70k texts with all-MiniLM-L6-v2 (tens of minutes on 2 shared cores).

SQuAD protocol: retrieval always searches all 2,067 paragraphs; held-out
articles are positions 0, 5, ..., 45 of ``data``; weights are chosen on the
other 38 articles ("tune") only. SciFact: 300 claims of claims_validation.csv,
339 (claim, cited doc) pairs, documents are title + abstract; nDCG@10 BEIR style.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import sys
import time
import tokenize
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("QA_BATCH_THREADS", "1")
os.environ.setdefault("QA_QUERY_THREADS", "1")

SQUAD_ZIP = Path("/work/shared/data/dev-v1.1.json.zip")
SCIFACT_ZIP = Path("/work/shared/data/scifact.zip")
CACHE = Path("/tmp/qa-cache")
HELD_OUT_STEP = 5


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Corpus:
    """A retrieval benchmark: passages (with titles and sentences) and queries with relevant passage ids."""

    name: str
    titles: list[str]
    passages: list[str]
    sentences: list[list[str]]  # per passage, in order
    queries: list[str]
    relevant: list[set[int]]  # per query
    held_out: np.ndarray  # bool per query (SQuAD); all True for SciFact


def load_squad(path: Path = SQUAD_ZIP) -> Corpus:
    """SQuAD v1.1 dev: 2,067 paragraphs, 10,570 questions, gold = the question's paragraph."""
    from qa.documents import split_sentences

    with zipfile.ZipFile(path) as z:
        data = json.load(z.open("dev-v1.1.json"))["data"]
    titles, passages, sentences, queries, relevant, held = [], [], [], [], [], []
    for a, article in enumerate(data):
        title = article["title"].replace("_", " ")
        for para in article["paragraphs"]:
            pid = len(passages)
            text = para["context"]
            titles.append(title)
            passages.append(text)
            sentences.append([text[s:e] for s, e in split_sentences(text)])
            for qa in para["qas"]:
                queries.append(qa["question"])
                relevant.append({pid})
                held.append(a % HELD_OUT_STEP == 0)
    return Corpus("squad", titles, passages, sentences, queries, relevant, np.array(held))


def _abstract_sentences(printed: str) -> list[str]:
    """The abstract column is a printed numpy array of strings: ``['a.'\\n 'b.']`` with no commas.

    ``ast.literal_eval`` would concatenate adjacent literals into one string, so
    read each string token separately.
    """
    out: list[str] = []
    import ast

    for tok in tokenize.generate_tokens(io.StringIO(printed).readline):
        if tok.type == tokenize.STRING:
            out.append(ast.literal_eval(tok.string))
    return out


def load_scifact(path: Path = SCIFACT_ZIP) -> Corpus:
    """SciFact (BEIR test equivalent): 5,183 title + abstract documents, 300 claims, 339 qrels."""
    with zipfile.ZipFile(path) as z:
        corpus = list(csv.DictReader(io.TextIOWrapper(z.open("corpus_train.csv"), encoding="utf-8")))
        claims = list(csv.DictReader(io.TextIOWrapper(z.open("claims_validation.csv"), encoding="utf-8")))
    ids = {row["doc_id"]: i for i, row in enumerate(corpus)}
    titles = [row["title"] for row in corpus]
    sentences = [_abstract_sentences(row["abstract"]) for row in corpus]
    # BEIR convention: a document is its title followed by its abstract, for both retrievers.
    passages = [f"{t}. {' '.join(s)}" for t, s in zip(titles, sentences)]
    by_claim: dict[str, tuple[str, set[int]]] = {}
    for row in claims:
        cited = {ids[d] for d in row["cited_doc_ids"].strip("[]").replace(",", " ").split() if d in ids}
        text, rel = by_claim.setdefault(row["id"], (row["claim"], set()))
        rel |= cited
    queries = [t for t, r in by_claim.values() if r]
    relevant = [r for _, r in by_claim.values() if r]
    return Corpus("scifact", titles, passages, sentences, queries, relevant, np.ones(len(queries), bool))


# --------------------------------------------------------------------------- embeddings


def cached_encode(texts: Sequence[str], name: str, cache: Path = CACHE) -> np.ndarray:
    """Encode ``texts`` with the default embedder, reusing ``cache/name.npy`` when its ``.json`` order matches."""
    cache.mkdir(parents=True, exist_ok=True)
    npy, order = cache / f"{name}.npy", cache / f"{name}.json"
    digest = hashlib.sha1("\x00".join(texts).encode()).hexdigest()
    if npy.exists() and order.exists():
        meta = json.loads(order.read_text())
        if meta.get("sha1") == digest:
            return np.load(npy, allow_pickle=False)
        print(f"cache {npy} is for other texts; re-encoding", file=sys.stderr)
    from qa.embedding import get_embedder

    t0 = time.time()
    vecs = get_embedder().encode(list(texts), batch_size=64, progress=True)
    print(f"encoded {len(texts)} texts for {name} in {time.time() - t0:.0f}s", file=sys.stderr)
    tmp = cache / f"{name}.{os.getpid()}.tmp.npy"
    np.save(tmp, vecs.astype(np.float32), allow_pickle=False)
    tmp.replace(npy)
    order.write_text(json.dumps({"sha1": digest, "model": "all-MiniLM-L6-v2", "texts": list(texts)}))
    return vecs


@dataclass(frozen=True)
class Vectors:
    passages: np.ndarray  # (n_passages, d)  passage text (SciFact: already "title. abstract")
    titled: np.ndarray | None  # (n_passages, d)  "title. passage" (SQuAD only)
    queries: np.ndarray  # (n_queries, d)
    sentences: np.ndarray  # (n_sentences, d), all passages' sentences concatenated
    sentence_owner: np.ndarray  # (n_sentences,) passage index of each sentence


def corpus_vectors(c: Corpus, cache: Path = CACHE) -> Vectors:
    flat = [s for sents in c.sentences for s in sents]
    owner = np.repeat(np.arange(len(c.passages)), [len(s) for s in c.sentences])
    unit = "paragraphs" if c.name == "squad" else "corpus"
    return Vectors(
        passages=cached_encode(c.passages, f"{c.name}_{unit}_minilm", cache),
        titled=(
            cached_encode([f"{t}. {p}" for t, p in zip(c.titles, c.passages)], f"{c.name}_{unit}_titled_minilm", cache)
            if c.name == "squad"
            else None
        ),
        queries=cached_encode(c.queries, f"{c.name}_queries_minilm", cache),
        sentences=cached_encode(flat, f"{c.name}_sentences_minilm", cache),
        sentence_owner=owner,
    )


if __name__ == "__main__" and sys.argv[1:2] == ["--encode-only"]:
    for loader in (load_squad, load_scifact):
        if sys.argv[2:] and loader.__name__ != f"load_{sys.argv[2]}":
            continue
        c = loader()
        print(c.name, len(c.passages), len(c.queries), sum(map(len, c.relevant)), sum(map(len, c.sentences)))
        corpus_vectors(c)
    sys.exit(0)
