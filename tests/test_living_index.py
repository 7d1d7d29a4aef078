"""A living index: incremental updates equal fresh builds, crash safety, locks, filters, index types."""

from __future__ import annotations

import inspect
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import qa.index as qi
import qa.stores.faiss.ann as faiss_ann
from qa.documents import Passage, Source, split_sentences
from qa.errors import IndexLoadError, InputError
from qa.filters import Filters
from qa.index import Index, IndexLockedError, build_index, load_index
from qa.stores.faiss.generations import lock

TESTS = Path(__file__).resolve().parent
# The fake embedder of conftest.py, as a class: these tests need many fresh instances.
sys.path.insert(0, str(TESTS))
HashEmbedder = __import__("conftest").HashEmbedder
WORDS = (
    "azerbaijan israel turkey baku ankara washington president minister talks mediation energy pipeline gas "
    "election court ruling budget bank inflation rates market storm flood harvest vaccine hospital school "
    "strike union factory export tariff border treaty summit envoy ceasefire rebels satellite launch"
).split()
QUERIES = ["azerbaijan israel mediation", "bank inflation rates", "storm flood harvest", "border treaty summit"]


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))).capitalize() + "."


def _paragraph(rng: random.Random) -> str:
    # One sentence or several: several-sentence passages carry sentence vectors too.
    return " ".join(_sentence(rng) for _ in range(rng.choice([1, 1, 2, 3])))


def _sentences_to_embed(texts: set[str]) -> int:
    """Distinct sentences of the multi-sentence texts: what the index embeds beside the passages."""
    found = {t[a:b] for t in texts for a, b in split_sentences(t)} if texts else set()
    singles = {t for t in texts if len(split_sentences(t)) == 1}
    return len(found - singles) if found else 0


def _write_doc(folder: Path, name: str, paragraphs: list[str], meta: dict[str, str]) -> None:
    front = "".join(f"{k}: {v}\n" for k, v in {"title": f"Story {name}", **meta}.items())
    (folder / f"{name}.md").write_text(f"---\n{front}---\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")


def _meta(rng: random.Random, name: str) -> dict[str, str]:
    return {
        "title": f"Story {name}",
        "publisher": rng.choice(["Wire", "Daily", "Herald"]),
        "section": rng.choice(["World", "Business"]),
        "date": f"2025-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
    }


def _assert_same(index: Index, fresh: Index) -> None:
    """Same rows, ids, vectors, metadata, and the same dense, BM25 and filtered results."""
    assert index.passages == fresh.passages
    assert np.array_equal(index.ids, fresh.ids)
    assert np.array_equal(index.vectors, fresh.vectors)
    queries = fresh.embed_queries(QUERIES)
    for rows in (None, fresh.select_rows(Filters(publisher="wire"))):
        if rows is not None:
            assert np.array_equal(index.select_rows(Filters(publisher="wire")), rows)
            if not len(rows):
                continue
        a, b = index.dense_search(queries, 5, rows), fresh.dense_search(queries, 5, rows)
        assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0])
        a, b = index.lexical_search(QUERIES, 5, rows), fresh.lexical_search(QUERIES, 5, rows)
        assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0])
    every_row = np.arange(len(fresh))
    for q in queries:
        assert np.array_equal(index.best_sentence_scores(q, every_row), fresh.best_sentence_scores(q, every_row))
    assert index.search_batch(QUERIES, 5, mode="hybrid") == fresh.search_batch(QUERIES, 5, mode="hybrid")


# ---------------------------------------------------------------------------
# Incremental updates


def test_random_operations_match_a_fresh_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rng = random.Random(5)
    corpus = Path("corpus")
    corpus.mkdir()
    docs: dict[str, tuple[list[str], dict[str, str]]] = {}
    for i in range(5):
        docs[f"d{i}"] = ([_paragraph(rng) for _ in range(rng.randint(1, 5))], _meta(rng, f"d{i}"))
        _write_doc(corpus, f"d{i}", *docs[f"d{i}"])
    embedder = HashEmbedder()
    index = build_index([corpus], "index", model=embedder, progress=False)
    seen_texts = {p.text for p in index.passages}
    next_name = 5
    counts = {"add": 0, "change": 0, "delete": 0, "copy": 0, "meta": 0, "none": 0}
    for step in range(250):
        op = rng.choice(["add", "change", "change", "delete", "copy", "meta", "none"])
        if op == "delete" and len(docs) <= 1:
            op = "add"
        counts[op] += 1
        if op == "add":
            name = f"d{next_name}"
            next_name += 1
            docs[name] = ([_paragraph(rng) for _ in range(rng.randint(1, 5))], _meta(rng, name))
        elif op == "delete":
            name = rng.choice(sorted(docs))
            del docs[name]
            (corpus / f"{name}.md").unlink()
        elif op == "change":
            name = rng.choice(sorted(docs))
            paragraphs = docs[name][0]
            edit = rng.choice(["insert", "drop", "rewrite", "repeat"])
            if edit == "insert":
                paragraphs.insert(rng.randint(0, len(paragraphs)), _paragraph(rng))
            elif edit == "drop" and len(paragraphs) > 1:
                paragraphs.pop(rng.randrange(len(paragraphs)))
            elif edit == "repeat":  # the same paragraph twice in one article
                paragraphs.append(rng.choice(paragraphs))
            else:
                paragraphs[rng.randrange(len(paragraphs))] = _paragraph(rng)
        elif op == "copy":  # the same paragraph in two articles (syndicated copy)
            a, b = rng.choice(sorted(docs)), rng.choice(sorted(docs))
            docs[b][0].append(rng.choice(docs[a][0]))
        elif op == "meta":
            name = rng.choice(sorted(docs))
            docs[name] = (docs[name][0], _meta(rng, name))
        if op in ("add", "change", "copy", "meta"):
            _write_doc(corpus, name if op != "copy" else b, *docs[name if op != "copy" else b])
        before = embedder.texts_encoded
        report = index.update([corpus])
        encoded = embedder.texts_encoded - before
        fresh = build_index([corpus], None, model=HashEmbedder(), progress=False)
        _assert_same(index, fresh)
        new_texts = {p.text for p in fresh.passages} - seen_texts
        assert report.embedded == len(new_texts)
        # Only new texts are embedded: the new passages, and the sentences of the new multi-sentence ones.
        assert encoded == len(new_texts) + _sentences_to_embed(new_texts)
        seen_texts = {p.text for p in fresh.passages}
        assert report.passages == len(fresh)
        assert report.added + report.updated + report.unchanged == len(docs)
        if op == "none":
            assert (report.added, report.updated, report.removed, report.embedded) == (0, 0, 0, 0)
        if step % 50 == 49:
            _assert_same(load_index("index", model=HashEmbedder()), fresh)
    assert min(counts.values()) > 10, counts


def test_reindexing_an_unchanged_folder_embeds_nothing(tmp_path: Path, seed_dir: Path) -> None:
    embedder = HashEmbedder()
    first = build_index([seed_dir], tmp_path / "index", model=embedder, progress=False)
    assert first.last_update is not None and first.last_update.added == 1
    encoded = embedder.texts_encoded
    started = time.perf_counter()
    again = build_index([seed_dir], tmp_path / "index", model=embedder, progress=False)
    elapsed = time.perf_counter() - started
    assert embedder.texts_encoded == encoded
    assert again.last_update == qi.UpdateReport(0, 0, 0, 1, 0, len(first))
    assert again.manifest["generation"] == first.manifest["generation"]  # nothing rewritten
    assert elapsed < 1.0
    # A new article: only its passages are embedded.
    _write_doc(seed_dir, "extra", ["Brand new paragraph about bank inflation rates."], {"publisher": "Daily"})
    report = build_index([seed_dir], tmp_path / "index", model=embedder, progress=False).last_update
    assert report is not None
    assert (report.added, report.unchanged, report.embedded) == (1, 1, 1)
    assert embedder.texts_encoded == encoded + 1


def test_same_text_in_two_articles_is_kept_twice_and_embedded_once(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    shared = "Officials said the ceasefire talks will resume on Monday in Baku."
    _write_doc(corpus, "a", [shared, "Only in A."], {"publisher": "Wire"})
    _write_doc(corpus, "b", ["Only in B.", shared], {"publisher": "Herald"})
    embedder = HashEmbedder()
    index = build_index([corpus], tmp_path / "index", model=embedder, progress=False)
    copies = [p for p in index.passages if p.text == shared]
    assert {p.source.publisher for p in copies} == {"Wire", "Herald"}
    assert len({p.passage_id for p in copies}) == 2
    assert embedder.texts_encoded == 3  # the shared text once
    query = index.embed_queries([shared])
    for publisher in ("Wire", "Herald"):
        _, rows = index.dense_search(query, 1, index.select_rows(Filters(publisher=publisher)))
        assert index.passages[rows[0, 0]].source.publisher == publisher
    # Re-ingesting the same files adds nothing.
    assert index.update([corpus]).passages == 4 == len(index)


def test_remove_by_doc_id_path_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c" / "world").mkdir(parents=True)
    for name, folder in (("a", "c"), ("b", "c/world"), ("d", "c/world")):
        _write_doc(tmp_path / folder, name, [f"Paragraph of {name} about storm flood."], {})
    index = build_index(["c"], "index", model=HashEmbedder(), progress=False)
    doc_ids = {p.source.doc_id for p in index.passages}
    assert doc_ids == {"a", "world/b", "world/d"}
    ids_before = {p.passage_id for p in index.passages}
    assert index.remove("a").removed == 1
    assert index.remove(["c/world/b.md"]).removed == 1
    assert {p.source.doc_id for p in load_index("index", model=HashEmbedder()).passages} == {"world/d"}
    assert {p.passage_id for p in index.passages} <= ids_before  # survivors keep their ids
    assert index.remove("c/world").removed == 1 and len(index) == 0
    empty = load_index("index", model=HashEmbedder())
    assert len(empty) == 0 and empty.dense_search(np.ones((1, 64), np.float32), 3)[1].tolist() == [[-1]]
    with pytest.raises(InputError, match="no document"):
        index.remove("nope")


def test_real_model_update_matches_fresh_build(tmp_path: Path, seed_dir: Path, real_embedder) -> None:  # type: ignore[no-untyped-def]
    index = build_index([seed_dir], tmp_path / "index", model=real_embedder, progress=False)
    text = "Azerbaijan's gas exports to Europe rose sharply last year, officials in Baku said."
    _write_doc(seed_dir, "gas", [text], {"publisher": "Daily", "date": "2025-02-01"})
    report = index.update([seed_dir])
    assert (report.added, report.unchanged, report.embedded) == (1, 1, 1)
    fresh = build_index([seed_dir], None, model=real_embedder, progress=False)
    assert index.passages == fresh.passages
    assert np.allclose(index.vectors, fresh.vectors, atol=1e-5)
    hits = load_index(tmp_path / "index").search("How much gas does Azerbaijan export to Europe?", k=1)
    assert hits[0].text == text


# ---------------------------------------------------------------------------
# Filters


def _synthetic(n: int, rare_every: int, dim: int = 32, index_type: str = "flat") -> Index:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    passages = []
    for i in range(n):
        rare = i % rare_every == 0
        source = Source(
            doc_id=f"doc{i // 10}",
            title="t",
            publisher="Rare Gazette" if rare else "Common Times",
            section="World" if i % 2 else "Business",
            path=f"{'rare' if rare else 'common'}/doc{i // 10}.md",
            paragraph=i % 10 + 1,
            char_start=0,
            char_end=1,
            date=f"2025-01-{i % 28 + 1:02d}",
        )
        passages.append(Passage(f"{2 * i + 2:016x}", f"passage {i}", source))
    return Index(passages, vectors, HashEmbedder(dim), index_type=index_type)


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf-sq8", "ivf-pq"])
def test_filtered_search_returns_k_when_k_rows_match(index_type: str, monkeypatch: pytest.MonkeyPatch) -> None:
    index = _synthetic(3000, rare_every=200, index_type=index_type)  # 15 rare passages: 0.5%
    rows = index.select_rows(Filters(publisher="rare gazette"))
    assert rows is not None and len(rows) == 15
    queries = np.random.default_rng(1).standard_normal((5, 32)).astype(np.float32)
    expected = (queries @ index.vectors[rows].T).argsort(axis=1)[:, ::-1][:, :10]
    for exact_max in (qi.EXACT_FILTER_MAX, 0):  # numpy over allowed rows, then FAISS with a selector
        monkeypatch.setattr(faiss_ann, "EXACT_FILTER_MAX", exact_max)
        scores, found = index.dense_search(queries, 10, rows)
        assert found.shape == (5, 10) and np.isin(found, rows).all()
        if exact_max or index_type == "flat":
            assert np.array_equal(found, rows[expected])
        else:  # approximate types: k allowed results, mostly the exact ones
            assert np.mean([len(set(f) & set(e)) for f, e in zip(found, rows[expected], strict=True)]) >= 7
        assert np.all(np.diff(scores, axis=1) <= 1e-6)
    _, found = index.dense_search(queries, 50, rows)
    assert found.shape == (5, 15)  # all 15, no padding, when fewer than k match


def test_filter_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    index = _synthetic(600, rare_every=100)

    def count(**kw: object) -> int:
        rows = index.select_rows(Filters(**kw))  # type: ignore[arg-type]
        return len(index) if rows is None else len(rows)

    assert count() == 600 and index.select_rows(None) is None
    assert count(publisher="RARE GAZETTE") == 6
    assert count(publisher=["Rare Gazette", "Common Times"]) == 600
    assert count(section="world") == 300
    assert count(doc_id="doc3") == 10 and count(doc_id=["doc3", "doc4"]) == 20
    assert count(path_prefix="rare/") == 6 and count(path_prefix="./common") == 594
    assert count(date_from="2025-01-27") == 42  # days 27 and 28: 21 full cycles of 28 days
    assert count(date_from="2025-01-01", date_to="2025-01-01T23:59:00Z") == 22
    assert count(publisher="Rare Gazette", section="Business") == 6
    assert index.select_rows({"publisher": "Rare Gazette"}) is not None
    with pytest.raises(InputError, match="YYYY-MM-DD"):
        Filters(date_from="yesterday")
    with pytest.raises(InputError, match="swap"):
        Filters(date_from="2025-02-01", date_to="2025-01-01")
    undated = Source(doc_id="x", title="x", publisher="x", section="x", path="x", paragraph=1, char_start=0, char_end=1)
    assert not Filters(date_from="2025-01-01").matches(undated)


def test_lexical_search_honours_rows(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    for i in range(30):
        _write_doc(
            corpus, f"n{i}", [f"Storm flood harvest report number {i}."], {"publisher": "Rare" if i == 7 else "X"}
        )
    index = build_index([corpus], None, model=HashEmbedder(), progress=False)
    rows = index.select_rows(Filters(publisher="rare"))
    _, found = index.lexical_search(["storm flood"], 5, rows)
    assert found[0].tolist() == rows.tolist() and found.shape == (1, 1)
    _, all_rows = index.lexical_search(["storm flood"], 5)
    assert all_rows.shape == (1, 5)
    assert index.lexical_search(["storm"], 5, np.array([], dtype=np.int64))[1].tolist() == [[-1]]


def test_search_and_ask_take_filters(tmp_path: Path) -> None:
    """Needs qa.retrieval.search(..., filters=) (wired by the lead)."""
    corpus = tmp_path / "c"
    corpus.mkdir()
    for i in range(200):
        _write_doc(
            corpus, f"n{i:03d}", [f"Storm flood harvest report number {i}."], {"publisher": "Rare" if i == 7 else "X"}
        )
    index = build_index([corpus], None, model=HashEmbedder(), progress=False)
    hits = index.search("storm flood", k=3, filters=Filters(publisher="Rare"))
    assert [h.source.publisher for h in hits] == ["Rare"]
    hits = index.search("storm flood", k=5, filters=Filters(publisher="X"))
    assert len(hits) == 5 and all(h.source.publisher == "X" for h in hits)


# ---------------------------------------------------------------------------
# Index types


@pytest.mark.parametrize("index_type", ["hnsw", "ivf-sq8", "ivf-pq", "IVF4,Flat", "HNSW8,Flat"])
def test_index_types_update_and_round_trip(tmp_path: Path, index_type: str) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    rng = random.Random(2)
    for i in range(40):
        _write_doc(corpus, f"n{i:02d}", [_paragraph(rng) for _ in range(3)], {"publisher": "X"})
    index = build_index([corpus], tmp_path / "index", model=HashEmbedder(), progress=False, index_type=index_type)
    assert index.manifest["ann"]["requested"] == index_type
    (corpus / "n03.md").unlink()
    _write_doc(corpus, "n05", ["A rewritten paragraph about the border treaty summit."], {"publisher": "X"})
    _write_doc(corpus, "zz", ["A new paragraph about satellite launch envoy."], {"publisher": "Y"})
    report = build_index([corpus], tmp_path / "index", model=HashEmbedder(), progress=False).last_update
    assert report is not None and (report.added, report.updated, report.removed, report.embedded) == (1, 1, 1, 2)
    loaded = load_index(tmp_path / "index", model=HashEmbedder())
    fresh = build_index([corpus], None, model=HashEmbedder(), progress=False)
    assert loaded.index_type["requested"] == index_type and loaded.index_type == index.index_type
    assert loaded.passages == fresh.passages and np.array_equal(loaded.vectors, fresh.vectors)
    # Every passage finds itself first (exact reranking of approximate candidates).
    _, rows = loaded.dense_search(loaded.vectors[:20], 1)
    assert rows[:, 0].tolist() == list(range(20))
    assert loaded._faiss.ntotal == len(fresh)


def test_auto_index_type_switches_above_threshold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faiss_ann, "AUTO_FLAT_MAX", 100)
    corpus = tmp_path / "c"
    corpus.mkdir()
    for i in range(30):
        _write_doc(
            corpus, f"n{i:02d}", [f"Paragraph {i} {j} about {WORDS[(i + j) % len(WORDS)]}." for j in range(3)], {}
        )
    index = build_index([corpus], tmp_path / "index", model=HashEmbedder(), progress=False)
    assert index.index_type["type"] == "flat" and index.index_type["requested"] == "auto"
    for i in range(30, 40):
        _write_doc(
            corpus, f"n{i:02d}", [f"Paragraph {i} {j} about {WORDS[(i + j) % len(WORDS)]}." for j in range(3)], {}
        )
    index.update()
    assert index.index_type["type"] == qi.AUTO_LARGE_TYPE and len(index) == 120
    assert load_index(tmp_path / "index", model=HashEmbedder()).index_type["type"] == qi.AUTO_LARGE_TYPE
    with pytest.raises(InputError, match="factory string"):
        build_index([corpus], None, model=HashEmbedder(), progress=False, index_type="Bogus99")


def test_search_knobs() -> None:
    index = _synthetic(3000, rare_every=1000, index_type="ivf-sq8")
    queries = index.vectors[:50]
    assert index.index_type["params"]["nprobe"] >= 1
    for knobs in ({"nprobe": 1, "k_factor": 1}, {"nprobe": 64}, {"ef_search": 10}):
        _, rows = index.dense_search(queries, 5, **knobs)
        assert (rows >= 0).all() and rows[:, 0].tolist() == list(range(50))
    index.set_search_knobs(nprobe=2)
    with pytest.raises(InputError):
        index.set_search_knobs(nprobe=0)


# ---------------------------------------------------------------------------
# Integrity, crashes, locks


def test_truncated_or_corrupted_files_are_detected(tmp_path: Path, seed_dir: Path) -> None:
    build_index([seed_dir], tmp_path / "good", model=HashEmbedder(), progress=False, index_type="ivf-sq8")
    files = [*json.loads((tmp_path / "good" / "manifest.json").read_text())["files"], "manifest.json"]
    assert any(f.endswith("vectors.npy") for f in files) and any("/bm25/" in f for f in files)
    for i, name in enumerate(files):
        for damage in ("truncate", "flip"):
            copy = tmp_path / f"bad{i}{damage}"
            shutil.copytree(tmp_path / "good", copy)
            data = (copy / name).read_bytes()
            if damage == "truncate":
                (copy / name).write_bytes(data[: len(data) // 2])
            else:
                flipped = bytearray(data)
                flipped[len(data) // 3] ^= 0x55
                (copy / name).write_bytes(bytes(flipped))
            with pytest.raises(IndexLoadError, match=r"corrupted|rebuild"):
                load_index(copy, model=HashEmbedder())


def test_index_saved_without_bm25_or_index_type_still_loads(tmp_path: Path, seed_dir: Path) -> None:
    build_index([seed_dir], tmp_path / "index", model=HashEmbedder(), progress=False)
    manifest_path = tmp_path / "index" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if "/bm25/" not in k}
    del manifest["ann"]
    manifest_path.write_text(json.dumps(manifest))
    index = load_index(tmp_path / "index", model=HashEmbedder())
    assert index._lexical is None and index.index_type["type"] == "flat"
    _, rows = index.lexical_search(["Azerbaijan Israel"], 3)
    assert index.lexical is not None and rows.shape == (1, 3)


# The child runs without pytest (faster start): the fake embedder's source is pasted in.
_CHILD = """
import hashlib, re, sys, time
import numpy as np
from collections.abc import Sequence
from qa.index import load_index
{embedder}
index = load_index(sys.argv[1], model=HashEmbedder())
print("ready", flush=True)
started = time.perf_counter()
for _ in range(int(sys.argv[3])):
    index.update([sys.argv[2]])
print(f"done {{time.perf_counter() - started}}", flush=True)
"""


def _child_script(folder: Path) -> Path:
    script = folder / "child.py"
    script.write_text(_CHILD.format(embedder=textwrap.dedent(inspect.getsource(HashEmbedder))))
    return script


def _child(script: Path, index: Path, corpus: Path, slow: float, repeat: int = 1) -> subprocess.Popen[str]:
    env = {**os.environ, qi.SLOW_WRITE_ENV: str(slow), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen(
        [sys.executable, str(script), str(index), str(corpus), str(repeat)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=index.parent,
    )


def _state(index: Index) -> tuple[frozenset[str], list[str]]:
    """The passage ids, and the ids of the top dense hits of two queries."""
    _, rows = index.dense_search(index.embed_queries(QUERIES[:2]), 3)
    return frozenset(p.passage_id for p in index.passages), [index.passages[r].passage_id for r in rows.ravel()]


def test_sigkill_at_any_moment_leaves_old_or_new_state(tmp_path: Path) -> None:
    rng = random.Random(11)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(60):
        _write_doc(corpus, f"n{i:02d}", [_paragraph(rng) for _ in range(4)], _meta(rng, str(i)))
    build_index([corpus], tmp_path / "base" / "index", model=HashEmbedder(), progress=False, index_type="ivf-sq8")
    old = _state(load_index(tmp_path / "base" / "index", model=HashEmbedder()))
    for i in range(0, 60, 3):
        (corpus / f"n{i:02d}.md").unlink()
    for i in range(60, 80):
        _write_doc(corpus, f"n{i:02d}", [_paragraph(rng) for _ in range(4)], _meta(rng, str(i)))
    new = _state(build_index([corpus], None, model=HashEmbedder(), progress=False, index_type="ivf-sq8"))
    assert old[0] != new[0]
    script = _child_script(tmp_path)

    # How long one update takes with the slowed writes, measured in a child like the trials.
    shutil.copytree(tmp_path / "base", tmp_path / "calibrate")
    probe = _child(script, tmp_path / "calibrate" / "index", corpus, 0.02)
    out, _ = probe.communicate(timeout=60)
    duration = float(out.split("done ")[1])

    trials = 16

    def trial(n: int) -> str:
        folder = tmp_path / f"trial{n}"
        shutil.copytree(tmp_path / "base", folder)
        child = _child(script, folder / "index", corpus, 0.02)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        # Kill times spread over the whole update and past its end (parallel trials run slower).
        time.sleep(duration * 2.0 * (n + random.Random(n).random()) / trials)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        state = _state(load_index(folder / "index", model=HashEmbedder()))
        assert state in (old, new), f"trial {n}: a state that is neither old nor new"
        return "old" if state == old else "new"

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(trial, range(trials)))
    assert {"old", "new"} <= set(outcomes), outcomes
    # After a crash the next writer cleans up and succeeds.
    for n in range(3):
        index = load_index(tmp_path / f"trial{n}" / "index", model=HashEmbedder())
        index.update([corpus])
        assert _state(load_index(tmp_path / f"trial{n}" / "index", model=HashEmbedder())) == new
        assert len(list((tmp_path / f"trial{n}" / "index").glob("gen-*"))) == 1


def test_two_writers_are_serialised_and_readers_see_whole_states(tmp_path: Path) -> None:
    rng = random.Random(3)
    corpus_a, corpus_b = tmp_path / "a", tmp_path / "b"
    for folder, n in ((corpus_a, 30), (corpus_b, 40)):
        folder.mkdir()
        for i in range(n):
            _write_doc(folder, f"n{i:02d}", [_paragraph(rng) for _ in range(3)], {})
    states = {_state(build_index([c], None, model=HashEmbedder(), progress=False))[0] for c in (corpus_a, corpus_b)}
    index_dir = tmp_path / "w" / "index"
    build_index([corpus_a], index_dir, model=HashEmbedder(), progress=False)
    script = _child_script(tmp_path)
    # Two writers at once, each rewriting the index 4 times with slow writes, while we read.
    writers = [_child(script, index_dir, c, 0.01, repeat=4) for c in (corpus_a, corpus_b)]
    loads = 0
    while any(w.poll() is None for w in writers):
        assert frozenset(p.passage_id for p in load_index(index_dir, model=HashEmbedder()).passages) in states
        loads += 1
    assert all(w.returncode == 0 for w in writers) and loads > 0
    assert frozenset(p.passage_id for p in load_index(index_dir, model=HashEmbedder()).passages) in states


def test_a_writer_that_cannot_get_the_lock_fails_clearly(
    tmp_path: Path, seed_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = build_index([seed_dir], tmp_path / "index", model=HashEmbedder(), progress=False)
    monkeypatch.setenv(qi.LOCK_TIMEOUT_ENV, "0.2")
    with lock(tmp_path / "index"), pytest.raises(IndexLockedError, match=f"pid {os.getpid()}.*QA_LOCK_TIMEOUT"):
        index.update([seed_dir])
    assert index.update([seed_dir]).unchanged == 1  # fine once the lock is free


# ---------------------------------------------------------------------------
# CLI


def test_cli_reindex_prints_counts_and_embeds_nothing(
    tmp_path: Path,
    seed_dir: Path,
    real_embedder,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    from qa.cli import main

    argv = ["index", str(seed_dir), "--index", str(tmp_path / "index"), "-q"]
    assert main(argv) == 0
    assert "1 added, 0 updated, 0 removed, 0 unchanged documents" in capsys.readouterr().out
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "0 added, 0 updated, 0 removed, 1 unchanged documents; 0 passages embedded" in out
    seconds = float(out.split(" in ")[1].split("s ")[0])  # "indexed N passages ... in 0.12s (+0.0s model load)"
    assert seconds < 1.0


def test_cli_remove(tmp_path: Path, seed_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qa.cli import main

    build_index([seed_dir], tmp_path / "index", model=HashEmbedder(), progress=False)
    assert main(["remove", "nope", "--index", str(tmp_path / "index")]) == 2
    assert capsys.readouterr().err.startswith("qa: error: no document in the index matches nope")
    assert main(["remove", "000_400d80341ec88f4a", "--index", str(tmp_path / "index")]) == 0
    assert "1 removed" in capsys.readouterr().out
    assert len(load_index(tmp_path / "index", model=HashEmbedder())) == 0
