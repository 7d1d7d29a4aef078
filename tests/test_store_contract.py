"""One contract every store passes: the FAISS folder, Milvus Lite and a real Milvus server.

Each test builds an index through the public API (`qa.build_index` / `qa.load_index`) on one
store and checks it against an in-memory FAISS index of the same passages: search in every
mode the store supports (and a one-line refusal of the others), filters, update, remove and
re-add, reopening, refusal of a mismatched model, and a random walk of adds, edits and deletes
that must always equal a fresh build. The real server is the PyPI ``milvus`` 2.3.5 (no sparse
vectors: dense only), started once for this module; it is never skipped.
"""

from __future__ import annotations

import random
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import qa
from qa.errors import IndexLoadError, InputError, ModelMismatchError
from qa.filters import Filters
from tests.conftest import SEED, HashEmbedder
from tests.milvus_server import MilvusServerError, milvus_server
from tests.test_living_index import QUERIES, _meta, _paragraph, _sentences_to_embed, _write_doc

MODES = ("dense", "bm25", "hybrid", "rrf")
STORES = ("faiss", "lite", "server")
#: The random walk on the real server is shorter: each step there costs seconds (Strong reads wait for a time tick).
SERVER_STEPS = 40


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        with milvus_server(tmp_path_factory.mktemp("contract-server")) as url:
            yield url
    except MilvusServerError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(params=STORES)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty place for an index on each store."""
    if request.param == "faiss":
        yield str(tmp_path / "index")
    elif request.param == "lite":
        yield str(tmp_path / "index.db")
    else:
        url = request.getfixturevalue("server_url")
        where = f"{url}/c_{uuid.uuid4().hex[:12]}"
        yield where
        from qa.milvus import _drop, parse_target
        from qa.stores.milvus.targets import connect

        client = connect(parse_target(where))
        _drop(client, parse_target(where))
        client.close()


class Opened:
    """Indexes to close at the end of a test (a Milvus Lite file allows one opener at a time)."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def __call__(self, index: Any) -> Any:
        self.items.append(index)
        return index

    def reopen(self, index: Any, where: str, **kwargs: Any) -> Any:
        _close(index)
        return self(qa.load_index(where, **kwargs))


def _close(index: Any) -> None:
    close = getattr(index, "close", None)
    if close is not None:
        close()


@pytest.fixture
def opened() -> Iterator[Opened]:
    keep = Opened()
    yield keep
    for index in keep.items:
        _close(index)


def _modes(index: Any) -> tuple[str, ...]:
    return MODES if index.lexical_unavailable is None else ("dense",)


def _ids(hits: list[qa.Hit]) -> list[str]:
    return [h.passage_id for h in hits]


def _same_results(index: Any, fresh: qa.Index, queries: list[str], k: int = 5, **options: Any) -> None:
    for mode in _modes(index):
        got = index.search_batch(queries, k, mode=mode, **options)
        want = fresh.search_batch(queries, k, mode=mode, **options)
        for a, b in zip(got, want, strict=True):
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5), (mode, options)
            if _ids(a) != _ids(b):
                # Only where the fake model's scores tie (a server's float arithmetic may order an exact
                # tie of numpy's either way): the same passages above the last score, the same scores.
                cut = b[-1].score + 1e-5
                assert {h.passage_id for h in a if h.score > cut} == {h.passage_id for h in b if h.score > cut}
                for x, y in zip(a, b, strict=True):
                    assert x.passage_id == y.passage_id or abs(x.score - y.score) < 1e-5, (mode, options)
            else:
                assert [h.source for h in a] == [h.source for h in b]


def _corpus(root: Path, rng: random.Random, n: int = 6) -> dict[str, tuple[list[str], dict[str, str]]]:
    corpus = root / "corpus"
    corpus.mkdir()
    docs = {}
    for i in range(n):
        docs[f"d{i}"] = ([_paragraph(rng) for _ in range(rng.randint(1, 5))], _meta(rng, f"d{i}"))
        _write_doc(corpus, f"d{i}", *docs[f"d{i}"])
    return docs


# ---------------------------------------------------------------------------


def test_search_in_every_supported_mode(target: str, opened: Opened) -> None:
    embedder = HashEmbedder()
    index = opened(qa.build_index([SEED.parent], target, model=embedder, progress=False))
    fresh = qa.build_index([SEED.parent], None, model=embedder, progress=False)
    assert len(index) == len(fresh) == 8
    questions = [
        "who mediated Turkey-Israel?",
        "Azerbaijan Israel allies for 30 years",
        "what did Hikmet Hajiyev say",
        "Washington",
    ]
    _same_results(index, fresh, questions)
    assert index.default_mode() in _modes(index)
    # (Answers are compared with the real model in tests/test_milvus.py: the default reader caches
    # passages by text across indexes, so a fake 64-d model here would poison it for later tests.)
    if index.lexical_unavailable is not None:
        # The 2.3 server has no sparse vectors: one line naming the version BM25 needs; dense still works.
        for mode in ("bm25", "hybrid", "rrf"):
            with pytest.raises(InputError, match=r"Milvus >= 2\.4") as caught:
                index.search(questions[0], mode=mode)
            assert "\n" not in str(caught.value)


def test_filters_apply_before_the_top_k_cut(target: str, opened: Opened, tmp_path: Path) -> None:
    rng = random.Random(3)
    _corpus(tmp_path, rng, n=10)
    embedder = HashEmbedder()
    index = opened(qa.build_index([tmp_path / "corpus"], target, model=embedder, progress=False))
    fresh = qa.build_index([tmp_path / "corpus"], None, model=embedder, progress=False)
    for filters in (
        Filters(publisher="wire"),
        Filters(publisher=["Daily", "herald"], section="world"),
        Filters(doc_id=["d1", "d3"]),
        Filters(date_from="2025-03-01", date_to="2025-07-19"),
        Filters(publisher="nobody"),
    ):
        _same_results(index, fresh, QUERIES, k=4, filters=filters)
        for hits in index.search_batch(QUERIES, 4, filters=filters):
            assert all(filters.matches(h.source) for h in hits)


def test_update_remove_readd_and_reopen(target: str, opened: Opened, tmp_path: Path) -> None:
    rng = random.Random(11)
    docs = _corpus(tmp_path, rng)
    corpus = tmp_path / "corpus"
    embedder = HashEmbedder()
    index = opened(qa.build_index([corpus], target, model=embedder, progress=False))
    # Change one document, add one, delete one: one update, only new texts embedded.
    docs["d0"][0].append(_paragraph(rng))
    _write_doc(corpus, "d0", *docs["d0"])
    _write_doc(corpus, "d9", [_paragraph(rng)], _meta(rng, "d9"))
    (corpus / "d1.md").unlink()
    report = index.update([corpus])
    assert (report.added, report.updated, report.removed) == (1, 1, 1)
    fresh = qa.build_index([corpus], None, model=HashEmbedder(), progress=False)
    assert report.passages == len(index) == len(fresh)
    _same_results(index, fresh, QUERIES)
    # Remove by doc id and by file path; a second remove of the same document is refused.
    report = index.remove(["d2", str(corpus / "d3.md")])
    assert (report.removed, report.passages) == (2, len(fresh) - sum(len(docs[d][0]) for d in ("d2", "d3")))
    with pytest.raises(InputError, match="no document in the index matches"):
        index.remove("d2")
    # Re-add from the same paths: back to a fresh build (the removed texts are embedded again: gone is gone).
    held = {p.text for p in index.passages}
    report = index.update([corpus])
    assert (report.added, report.removed, report.embedded) == (2, 0, len({p.text for p in fresh.passages} - held))
    _same_results(index, fresh, QUERIES)
    # Reopen: the same index from the store alone.
    index = opened.reopen(index, target, model=HashEmbedder())
    assert len(index) == len(fresh)
    _same_results(index, fresh, QUERIES)
    assert index.update([corpus]).embedded == 0


def test_refuses_a_mismatched_model(target: str, opened: Opened) -> None:
    index = opened(qa.build_index([SEED], target, model=HashEmbedder(), progress=False))
    _close(index)
    with pytest.raises(ModelMismatchError, match="built with model"):
        opened(qa.load_index(target, model=HashEmbedder(name="another-model")))
    with pytest.raises(ModelMismatchError):
        opened(qa.load_index(target, model=HashEmbedder(dim=32, name="test-hash-64")))
    with pytest.raises(IndexLoadError):
        opened(qa.load_index(target + "_missing" if "://" in target else target.replace("index", "nothing")))


def test_random_operations_match_a_fresh_build(
    target: str, opened: Opened, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """250 random adds, edits, copies, metadata changes and deletes (fewer on the server), each
    followed by an update that must equal a fresh build and embed only texts never seen."""
    monkeypatch.chdir(tmp_path)
    rng = random.Random(5)
    corpus = Path("corpus")
    corpus.mkdir()
    docs: dict[str, tuple[list[str], dict[str, str]]] = {}
    for i in range(5):
        docs[f"d{i}"] = ([_paragraph(rng) for _ in range(rng.randint(1, 5))], _meta(rng, f"d{i}"))
        _write_doc(corpus, f"d{i}", *docs[f"d{i}"])
    embedder = HashEmbedder()
    index = opened(qa.build_index([corpus], target, model=embedder, progress=False))
    seen = {p.text for p in index.passages}
    steps = SERVER_STEPS if target.startswith("milvus://") else 250
    next_name = 5
    for step in range(steps):
        op = rng.choice(["add", "change", "change", "delete", "copy", "meta", "none"])
        if op == "delete" and len(docs) <= 1:
            op = "add"
        name = rng.choice(sorted(docs))
        if op == "add":
            name = f"d{next_name}"
            next_name += 1
            docs[name] = ([_paragraph(rng) for _ in range(rng.randint(1, 5))], _meta(rng, name))
        elif op == "delete":
            del docs[name]
            (corpus / f"{name}.md").unlink()
        elif op == "change":
            paragraphs = docs[name][0]
            edit = rng.choice(["insert", "drop", "rewrite", "repeat"])
            if edit == "insert":
                paragraphs.insert(rng.randint(0, len(paragraphs)), _paragraph(rng))
            elif edit == "drop" and len(paragraphs) > 1:
                paragraphs.pop(rng.randrange(len(paragraphs)))
            elif edit == "repeat":
                paragraphs.append(rng.choice(paragraphs))
            else:
                paragraphs[rng.randrange(len(paragraphs))] = _paragraph(rng)
        elif op == "copy":
            docs[name][0].append(rng.choice(docs[rng.choice(sorted(docs))][0]))
        elif op == "meta":
            docs[name] = (docs[name][0], _meta(rng, name))
        if op in ("add", "change", "copy", "meta"):
            _write_doc(corpus, name, *docs[name])
        before = embedder.texts_encoded
        report = index.update([corpus])
        fresh = qa.build_index([corpus], None, model=HashEmbedder(), progress=False)
        new_texts = {p.text for p in fresh.passages} - seen
        assert report.embedded == len(new_texts)
        assert embedder.texts_encoded - before == len(new_texts) + _sentences_to_embed(new_texts)
        seen = {p.text for p in fresh.passages}
        assert report.passages == len(index) == len(fresh)
        assert sorted(index.passages, key=lambda p: p.passage_id) == sorted(fresh.passages, key=lambda p: p.passage_id)
        ids = [p.passage_id for p in fresh.passages]
        assert np.array_equal(index.vectors_of(ids), fresh.vectors_of(ids))
        for a, b in zip(index.sentence_vectors_of(ids), fresh.sentence_vectors_of(ids), strict=True):
            assert a is not None and b is not None and np.array_equal(a, b)
        if step % 10 == 0 or step == steps - 1:
            _same_results(index, fresh, QUERIES)
            _same_results(index, fresh, QUERIES[:2], filters=Filters(publisher="wire"))
        if step % 50 == 49:
            index = opened.reopen(index, target, model=embedder)


def test_an_index_folder_of_the_current_release_loads(tmp_path: Path) -> None:
    """A folder written by the release before the store split (format version 2) loads and searches the same."""
    folder = tmp_path / "legacy"
    shutil.copytree(Path(__file__).parent / "data" / "index-v2", folder)
    index = qa.load_index(folder, model=HashEmbedder())
    fresh = qa.build_index([SEED.parent], None, model=HashEmbedder(), progress=False)
    assert [p.passage_id for p in index.passages] == [p.passage_id for p in fresh.passages]
    for mode in MODES:
        got, want = index.search_batch(QUERIES, 5, mode=mode), fresh.search_batch(QUERIES, 5, mode=mode)
        assert [_ids(h) for h in got] == [_ids(h) for h in want], mode
