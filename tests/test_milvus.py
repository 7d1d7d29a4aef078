"""The Milvus backend: the same behaviour as the FAISS index, on Milvus Lite and on a real Milvus server.

The real server is the PyPI package ``milvus`` (2.3.5: the standalone server binary with
embedded etcd), started here on 127.0.0.1:19530 and stopped at the end of the module.
If it cannot start, the tests that need it fail with the reason; they are never skipped.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import qa
from qa.errors import IndexLoadError, InputError, ModelMismatchError
from qa.filters import Filters
from qa.store import Store, is_milvus_target
from tests.conftest import SEED, HashEmbedder
from tests.milvus_server import MilvusServerError, milvus_server

try:
    import pymilvus  # noqa: F401
except ImportError:  # pragma: no cover - make test installs the extra
    pytest.fail("pymilvus is not installed; run: pip install -e '.[milvus]' (make test does)", pytrace=False)

from qa.milvus import (
    MilvusIndex,
    build_milvus_index,
    filter_expression,
    load_milvus_index,
    parse_target,
)

QUESTIONS = [json.loads(line)["question"] for line in (Path(__file__).parent / "seed_questions.jsonl").open()]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Milvus standalone server for this module."""
    try:
        with milvus_server(tmp_path_factory.mktemp("milvus-server")) as url:
            yield url
    except MilvusServerError as exc:
        pytest.fail(str(exc), pytrace=False)


# ---------------------------------------------------------------------------
# Building on either Milvus variant


@pytest.fixture(params=["lite", "server"])
def milvus_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty Milvus target: a Milvus Lite file, or a new collection on the real server."""
    if request.param == "lite":
        yield str(tmp_path / "index.db")
        return
    url = request.getfixturevalue("server_url")
    target = f"{url}/t_{uuid.uuid4().hex[:12]}"
    yield target
    from pymilvus import MilvusClient

    client = MilvusClient(uri=parse_target(target).uri)
    for name in (parse_target(target).collection, parse_target(target).meta_collection):
        if client.has_collection(name):
            client.drop_collection(name)
    client.close()


@pytest.fixture
def opened() -> Iterator[Callable[[MilvusIndex], MilvusIndex]]:
    """Registers Milvus indexes to close at the end of the test (a Lite file allows one opener)."""
    indexes: list[MilvusIndex] = []

    def keep(index: MilvusIndex) -> MilvusIndex:
        indexes.append(index)
        return index

    yield keep
    for index in indexes:
        with contextlib.suppress(Exception):
            index.close()


def _corpus(tmp_path: Path) -> Path:
    """Articles with varied publishers, sections, dates and paths (and quotes and backslashes in names)."""
    folder = tmp_path / "corpus"
    (folder / "world").mkdir(parents=True)
    (folder / "sport_news").mkdir()
    publishers = ["Reuters", "AP", 'Le "Monde" \\ Diplo', "i24NEWS"]
    topics = ["harbour", "election", "vaccine", "drought", "railway", "budget", "festival", "wildfire"]
    lines = []
    for i in range(24):
        words = " ".join(f"{topics[(i + j) % 8]} word{i * 7 % 13 + j}" for j in range(6))
        record = {
            "id": f"wire-{i}" if i != 5 else 'wire "5" \\ odd',
            "title": f"Story {i}",
            "publisher": publishers[i % 4],
            "section": ["World", "Sport", "Business"][i % 3],
            "date": f"2025-01-{i + 1:02d}" if i % 5 else "",
            "text": f"Story {i}: {words}.\n\nMore on {topics[i % 8]} and {topics[(i + 3) % 8]}.",
        }
        lines.append(json.dumps(record, ensure_ascii=False))
    (folder / "world" / "wire.jsonl").write_text("\n".join(lines) + "\n")
    for i in range(6):
        (folder / "sport_news" / f"match_{i}.txt").write_text(
            f"Match {i}\n\nThe railway derby {i} ended in a drought of goals.\n\nFans sang about the harbour {i}.\n"
        )
    return folder


def _ids(hits: list[qa.Hit]) -> list[str]:
    return [h.passage_id for h in hits]


def _same_hits(a: list[qa.Hit], b: list[qa.Hit]) -> None:
    """Same passages with identical attribution, scores equal to float32 precision.

    Passages with equal scores may come in either order, so positions are compared by score.
    """
    assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
    assert [h.rank for h in a] == [h.rank for h in b]
    last = a[-1].score if a else 0.0
    by_id = {h.passage_id: h for h in b}
    for hit in a:
        if hit.score > last + 1e-5:  # the last score may be a tie cut differently
            twin = by_id[hit.passage_id]
            assert (twin.text, twin.source) == (hit.text, hit.source)


# ---------------------------------------------------------------------------
# Behaviour, identical to FAISS


@pytest.fixture(scope="module", params=["lite", "server"])
def seed_milvus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, real_embedder):  # type: ignore[no-untyped-def]
    """The seed article indexed with the real model on Milvus Lite, or on the real server."""
    if request.param == "lite":
        target = str(tmp_path_factory.mktemp("seed-lite") / "seed.db")
    else:
        target = request.getfixturevalue("server_url") + "/seed_" + uuid.uuid4().hex[:8]
    index = build_milvus_index([SEED.parent], target, model=real_embedder, progress=False)
    yield index
    if request.param == "server":
        from qa.milvus import _drop

        _drop(index._client, index.target)
    index.close()


def test_seed_search_equals_faiss(seed_index, seed_milvus) -> None:  # type: ignore[no-untyped-def]
    assert len(seed_milvus) == len(seed_index)
    # Every mode on Milvus Lite; dense only (the default there) on the 2.3 server, which has no sparse vectors.
    modes = ["dense"] if seed_milvus.lexical_unavailable else ["dense", "bm25", "hybrid", "rrf"]
    assert seed_milvus.default_mode() == ("dense" if seed_milvus.lexical_unavailable else "hybrid")
    for mode in modes:
        for faiss_hits, milvus_hits in zip(
            seed_index.search_batch(QUESTIONS, k=5, mode=mode), seed_milvus.search_batch(QUESTIONS, k=5, mode=mode),
            strict=True,
        ):
            assert _ids(milvus_hits) == _ids(faiss_hits), mode  # distinct scores on the seed: the same order
            _same_hits(milvus_hits, faiss_hits)
    source_text = SEED.read_text(encoding="utf-8")
    for hit in seed_milvus.search(QUESTIONS[0], k=3):
        assert source_text[hit.source.char_start : hit.source.char_end] == hit.text


def test_seed_ask_equals_faiss(seed_index, seed_milvus) -> None:  # type: ignore[no-untyped-def]
    # Every seed question in the store's default mode (hybrid on Milvus Lite, dense on the 2.3 server).
    mode = seed_milvus.default_mode()
    for question in QUESTIONS:
        faiss_answer, milvus_answer = seed_index.ask(question, mode=mode), seed_milvus.ask(question)
        assert (milvus_answer.text, milvus_answer.span) == (faiss_answer.text, faiss_answer.span)
        assert milvus_answer.confidence == pytest.approx(faiss_answer.confidence, abs=1e-4)
        assert [h.passage_id for h in milvus_answer.evidence] == [h.passage_id for h in faiss_answer.evidence]
        assert [h.source for h in milvus_answer.evidence] == [h.source for h in faiss_answer.evidence]


FILTERS = [
    Filters(publisher="reuters"),
    Filters(publisher=['le "monde" \\ diplo', "AP"], section="world"),
    Filters(doc_id=['wire "5" \\ odd', "wire-7"]),
    Filters(doc_id=[]),
    Filters(date_from="2025-01-04", date_to="2025-01-12"),
    Filters(date_to="2025-01-09"),
    Filters(path_prefix="corpus/sport_news"),
    Filters(path_prefix="corpus/sport_"),
    Filters(path_prefix="corpus/sport_news/match_1"),
    Filters(path_prefix="corpus/spor%"),
    Filters(publisher="nobody"),
]


def test_filtered_dense_search_and_delete_equal_faiss(
    tmp_path: Path, milvus_target: str, opened: Callable[[MilvusIndex], MilvusIndex], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # paths are stored as typed: corpus/...
    embedder = HashEmbedder()
    _corpus(tmp_path)
    faiss = qa.build_index(["corpus"], None, model=embedder, progress=False)
    index = opened(build_milvus_index(["corpus"], milvus_target, model=embedder, progress=False))
    queries = ["harbour election", "railway drought goals", "vaccine word3"]
    vectors = embedder.encode(queries)

    def same(filters: Filters | None) -> None:
        allowed = faiss.select_rows(filters)
        n_allowed = len(faiss) if allowed is None else len(allowed)
        f_scores, f_rows = faiss.dense_search(vectors, 6, allowed)
        m_scores, m_rows = index.dense_search(vectors, 6, index.select_rows(filters))
        for fs, fr, ms, mr in zip(f_scores, f_rows, m_scores, m_rows, strict=True):
            found = [(s, index.passages[r].passage_id) for s, r in zip(ms, mr, strict=True) if r >= 0]
            expected = [(s, faiss.passages[r].passage_id) for s, r in zip(fs, fr, strict=True) if r >= 0]
            assert len(found) == len(expected) == min(6, n_allowed), filters
            assert [s for s, _ in found] == pytest.approx([s for s, _ in expected], abs=1e-5)
            cut = expected[-1][0] if expected else 0.0
            assert {p for s, p in found if s > cut + 1e-5} == {p for s, p in expected if s > cut + 1e-5}
            for _, pid in found:
                passage = index.passages[faiss_id_of(pid)]
                assert filters is None or filters.matches(passage.source)

    for filters in [None, *FILTERS]:
        same(filters)
    # Delete: a removed document is gone from every search at once (Strong consistency).
    for store in (faiss, index):
        report = store.remove(["wire-7", "corpus/sport_news/match_2.txt"])
        assert (report.removed, report.passages) == (2, len(faiss))
    assert len(index) == len(faiss)
    for filters in [None, Filters(doc_id=["wire-7", "wire-8"]), Filters(path_prefix="corpus/sport_news")]:
        same(filters)
    with pytest.raises(InputError, match="no document in the index matches"):
        index.remove("wire-7")


def faiss_id_of(passage_id: str) -> int:
    from qa.index import faiss_id

    return faiss_id(passage_id)


def test_filtered_search_through_the_public_api_equals_faiss(
    tmp_path: Path, opened: Callable[[MilvusIndex], MilvusIndex], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _corpus(tmp_path)
    embedder = HashEmbedder()
    faiss = qa.build_index(["corpus"], None, model=embedder, progress=False)
    index = opened(build_milvus_index(["corpus"], str(tmp_path / "f.db"), model=embedder, progress=False))
    for filters in FILTERS[:3]:
        _same_hits(
            index.search("harbour election", k=4, filters=filters),
            faiss.search("harbour election", 4, filters=filters),
        )


def test_update_add_and_reopen(
    tmp_path: Path, milvus_target: str, opened: Callable[[MilvusIndex], MilvusIndex], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    corpus = _corpus(tmp_path)
    embedder = HashEmbedder()
    index = opened(build_milvus_index(["corpus"], milvus_target, model=embedder, progress=False))
    faiss = qa.build_index(["corpus"], tmp_path / "faiss", model=embedder, progress=False)
    # Change one file, delete one, add one: update reaches what a fresh build gives, embedding only new text.
    (corpus / "sport_news" / "match_0.txt").write_text("Match 0\n\nA new report on the harbour festival.\n")
    (corpus / "sport_news" / "match_1.txt").unlink()
    (corpus / "world" / "late.md").write_text("# Late\n\nA late story about a vaccine budget.\n")
    embedder.texts_encoded = 0
    report = index.update()
    assert embedder.texts_encoded == report.embedded == 2
    expected = faiss.update()
    assert (report.added, report.updated, report.removed, report.unchanged, report.passages) == (
        expected.added,
        expected.updated,
        expected.removed,
        expected.unchanged,
        expected.passages,
    )
    fresh = qa.build_index(["corpus"], None, model=embedder, progress=False)
    assert sorted(index.passages, key=lambda p: p.passage_id) == sorted(fresh.passages, key=lambda p: p.passage_id)
    assert index.update().embedded == 0  # nothing changed: nothing embedded, nothing written
    # add: documents of new paths join, replacing documents of the same id; others stay.
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "tide.txt").write_text("Tide\n\nThe spring tide flooded the harbour road.\n")
    added = index.add([extra])
    assert (added.added, added.passages) == (1, len(fresh) + 1)
    assert index.search("spring tide flooded", k=1)[0].source.doc_id == "tide"
    # Reopen after close: the same hits; the manifest (model, sources) is read back and checked.
    before = index.search_batch(["harbour festival", "vaccine budget"], k=5)
    index.close()
    again = opened(load_milvus_index(milvus_target, model=embedder))
    assert again.search_batch(["harbour festival", "vaccine budget"], k=5) == before
    # Sources are recorded absolute (qa.paths), so an update without paths works from any directory.
    assert again.manifest["sources"] == [(tmp_path / "corpus").resolve().as_posix(), extra.resolve().as_posix()]
    assert again.describe()["count"] == len(fresh) + 1


# ---------------------------------------------------------------------------
# Opening, refusing, selecting


def test_opening_checks_the_manifest(tmp_path: Path, opened: Callable[[MilvusIndex], MilvusIndex]) -> None:
    target = str(tmp_path / "m.db")
    with pytest.raises(IndexLoadError, match="no index at"):
        load_milvus_index(target)
    opened(build_milvus_index([SEED], target, model=HashEmbedder(), progress=False)).close()
    with pytest.raises(ModelMismatchError, match="built with model"):
        load_milvus_index(target, model=HashEmbedder(dim=32))
    with pytest.raises(ModelMismatchError, match="32-d"):
        load_milvus_index(target, model=HashEmbedder(dim=32, name="test-hash-64"))
    with pytest.raises(IndexLoadError, match="no index at"):
        load_milvus_index(target, model=HashEmbedder(), collection="other")
    # A collection that is not a qa index is refused, never overwritten.
    from pymilvus import MilvusClient

    client = MilvusClient(uri=parse_target(target).uri)
    client.create_collection("foreign", dimension=4)
    client.close()
    with pytest.raises(IndexLoadError, match="not a qa index"):
        load_milvus_index(target, model=HashEmbedder(), collection="foreign")
    with pytest.raises(InputError, match="not a qa index"):
        build_milvus_index([SEED], target, model=HashEmbedder(), collection="foreign", progress=False)
    index = opened(load_milvus_index(target, model=HashEmbedder()))
    assert isinstance(index, Store)
    # Milvus Lite has sparse vectors: BM25 and hybrid work (the 2.3 server's refusal: tests/test_store_contract.py).
    assert index.search("harbour", mode="bm25") == qa.build_index([SEED], None, model=HashEmbedder()).search(
        "harbour", mode="bm25"
    )
    assert "backend" in index.describe() and {k: index.describe()["model"][k] for k in ("name", "dim")} == {
        "name": "test-hash-64",
        "dim": 64,
    }


def test_both_backends_are_stores(seed_index) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(seed_index, Store)


def test_targets_and_filter_expressions() -> None:
    assert is_milvus_target("milvus://db.example:19530/news") and is_milvus_target("data/news.db")
    assert not is_milvus_target("indexes/default") and not is_milvus_target(None)
    target = parse_target("milvus://db.example/news")
    assert (target.uri, target.collection, target.lite) == ("http://db.example:19530", "news", False)
    assert parse_target("milvus+https://h:443/c").uri == "https://h:443"
    assert parse_target("x/news.db").lite and parse_target("x/news.db").collection == "qa_passages"
    for bad in ("milvus://h/bad-name", "milvus://h/1abc", "indexes/default"):
        with pytest.raises(InputError):
            parse_target(bad)
    assert filter_expression(None) == filter_expression(Filters()) == ""
    expr = filter_expression(Filters(publisher='A "B" \\ C', path_prefix="./seeds/x_", date_to="2025-02-01"))
    here = Path.cwd().resolve().as_posix()  # a prefix matches stored paths as typed and absolute (qa.paths)
    assert expr == (
        'publisher_key in ["a \\"b\\" \\\\ c"] and ((path_key >= "seeds/x_" and path_key < "seeds/x`") or '
        f'(path_key >= "{here}/seeds/x_" and path_key < "{here}/seeds/x`")) '
        'and date_key != "" and date_key <= "2025-02-01"'
    )


def test_import_qa_never_imports_pymilvus() -> None:
    code = (
        "import sys, qa, qa.store, qa.milvus; qa.build_index; qa.load_index; "
        "assert not [m for m in sys.modules if m.startswith(('pymilvus', 'milvus'))], sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- Selecting Milvus through qa.build_index / qa.load_index and the CLI (wired in qa/index.py) --


def test_public_entry_points_and_cli_select_milvus(
    seed_index, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    from qa.cli import main

    monkeypatch.chdir(tmp_path)
    built = qa.build_index([SEED.parent], "news.db", model=seed_index.embedder, progress=False)
    assert isinstance(built, MilvusIndex) and len(built) == len(seed_index)
    built.close()
    assert main(["search", QUESTIONS[0], "--index", "news.db", "--json", "-k", "3"]) == 0
    hits = json.loads(capsys.readouterr().out)
    expected = seed_index.search(QUESTIONS[0], k=3)  # hybrid on both
    assert [h["passage_id"] for h in hits] == [h.passage_id for h in expected]
    assert [h["source"]["char_start"] for h in hits] == [h.source.char_start for h in expected]
    # An explicit backend wins over the name: a folder called x.db can still be a FAISS index.
    faiss = qa.build_index([SEED], "folder.db", model=seed_index.embedder, progress=False, backend="faiss")
    assert not isinstance(faiss, MilvusIndex) and (tmp_path / "folder.db" / "manifest.json").exists()
    reopened = qa.load_index("news.db", backend="milvus")
    assert isinstance(reopened, MilvusIndex)
    reopened.close()
