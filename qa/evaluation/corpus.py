"""The index an evaluation searches: built with `qa.build_index` from the data set's own corpus
(so exactly as users get it), cached under ``indexes/`` and keyed by model and passages."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from qa.errors import InputError
from qa.evaluation.datasets import Article, Dataset, unit_key

if TYPE_CHECKING:
    from qa.documents import Passage
    from qa.embedding import Embedder
    from qa.index import Index

# Bumped when the way eval corpora are turned into passages changes.
EVAL_CORPUS_VERSION = 1



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
