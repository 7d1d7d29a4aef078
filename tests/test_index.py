"""The index: search correctness, save/load round trips, integrity checks, bad input."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import qa
from qa.errors import IndexLoadError, InputError, ModelMismatchError
from tests.conftest import SEED, HashEmbedder

QUESTION = "who mediated Turkey-Israel?"
ANSWERING = ("normalize Turkey-Israel relations", "mediator role between Israel and Turkey")


def _corpus(tmp_path: Path, n: int = 40) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    topics = ["harbour", "election", "vaccine", "drought", "railway", "budget", "festival", "wildfire"]
    for i in range(n):
        words = " ".join(f"{topics[(i + j) % len(topics)]} word{i * 7 % 13 + j}" for j in range(6))
        (folder / f"doc{i:03d}.txt").write_text(f"Title {i}\n\nStory {i}: {words}.\n\nMore on {topics[i % 8]}.\n")
    return folder


def test_faiss_results_equal_numpy_brute_force(tmp_path: Path, fake_embedder: HashEmbedder) -> None:
    index = qa.build_index(_corpus(tmp_path), None, model=fake_embedder, progress=False)
    vectors = index.vectors
    queries = ["harbour election", "vaccine drought word3", "budget", "festival wildfire word9"]
    for query, hits in zip(queries, index.search_batch(queries, k=10, mode="dense"), strict=True):
        scores = vectors @ fake_embedder.encode([query])[0]
        order = np.argsort(-scores, kind="stable")[:10]
        assert [h.score for h in hits] == pytest.approx(scores[order].tolist(), abs=1e-5)
        # Ties may come in any order; the set of top scores must match.
        assert {h.passage_id for h in hits if h.score > scores[order[-1]] + 1e-5} == {
            index.passages[i].passage_id for i in order if scores[i] > scores[order[-1]] + 1e-5
        }
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))


def test_save_load_round_trip_gives_identical_hits(tmp_path: Path, fake_embedder: HashEmbedder) -> None:
    built = qa.build_index(_corpus(tmp_path), tmp_path / "idx", model=fake_embedder, progress=False)
    loaded = qa.load_index(tmp_path / "idx", model=fake_embedder)
    assert len(loaded) == len(built)
    assert loaded.passages == built.passages
    np.testing.assert_array_equal(loaded.vectors, built.vectors)
    for query in ("harbour word3", "railway budget"):
        assert built.search(query, k=7) == loaded.search(query, k=7)


def test_manifest_is_complete(tmp_path: Path, fake_embedder: HashEmbedder) -> None:
    qa.build_index(_corpus(tmp_path, 3), tmp_path / "idx", model=fake_embedder, progress=False)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["format_version"] == qa.index.FORMAT_VERSION
    assert manifest["qa_version"] == qa.__version__
    assert manifest["model"] == {"name": fake_embedder.name, "dim": fake_embedder.dim, "backend": "custom"}
    assert manifest["count"] == 6
    for name, info in manifest["files"].items():
        assert (tmp_path / "idx" / name).stat().st_size == info["bytes"]
        assert len(info["sha256"]) == 64
    assert not any(p.suffix in (".pkl", ".pickle") for p in (tmp_path / "idx").rglob("*"))


@pytest.mark.parametrize("which", ["vectors", "passages"])
def test_a_flipped_byte_is_refused(tmp_path: Path, fake_embedder: HashEmbedder, which: str) -> None:
    qa.build_index(_corpus(tmp_path, 5), tmp_path / "idx", model=fake_embedder, progress=False)
    target = next(p for p in (tmp_path / "idx").rglob("*") if p.is_file() and p.name.startswith(which))
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(IndexLoadError, match="checksum"):
        qa.load_index(tmp_path / "idx", model=fake_embedder)


def test_wrong_format_version_and_count_mismatch_are_refused(tmp_path: Path, fake_embedder: HashEmbedder) -> None:
    folder = tmp_path / "idx"
    qa.build_index(_corpus(tmp_path, 4), folder, model=fake_embedder, progress=False)
    manifest_path = folder / "manifest.json"
    original = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**original, "format_version": 99}))
    with pytest.raises(IndexLoadError, match="format version 99"):
        qa.load_index(folder, model=fake_embedder)
    manifest_path.write_text(json.dumps({**original, "count": 3}))
    with pytest.raises(IndexLoadError, match="manifest says 3 passages"):
        qa.load_index(folder, model=fake_embedder)


def test_mismatched_model_is_refused(tmp_path: Path, fake_embedder: HashEmbedder) -> None:
    qa.build_index(_corpus(tmp_path, 4), tmp_path / "idx", model=fake_embedder, progress=False)
    with pytest.raises(ModelMismatchError, match="built with model"):
        qa.load_index(tmp_path / "idx", model=HashEmbedder(dim=32))
    same_name_other_dim = HashEmbedder(dim=32, name=fake_embedder.name)
    with pytest.raises(ModelMismatchError, match="32-d"):
        qa.load_index(tmp_path / "idx", model=same_name_other_dim)


def test_foreign_missing_and_corrupt_folders_are_refused(tmp_path: Path, fake_embedder: HashEmbedder) -> None:
    corpus = _corpus(tmp_path, 2)
    with pytest.raises(IndexLoadError, match="no index at"):
        qa.load_index(tmp_path / "absent")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("hello")
    with pytest.raises(IndexLoadError, match="not a qa index"):
        qa.load_index(foreign)
    # Building into a foreign folder must not clobber it.
    with pytest.raises(InputError, match="not a qa index"):
        qa.build_index(corpus, foreign, model=fake_embedder, progress=False)
    assert (foreign / "notes.txt").read_text() == "hello"
    folder = tmp_path / "idx"
    qa.build_index(corpus, folder, model=fake_embedder, progress=False)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(IndexLoadError, match="corrupted"):
        qa.load_index(folder, model=fake_embedder)


def test_truncated_file_is_refused(tmp_path: Path, fake_embedder: HashEmbedder) -> None:
    qa.build_index(_corpus(tmp_path, 5), tmp_path / "idx", model=fake_embedder, progress=False)
    target = next((tmp_path / "idx").rglob("vectors*"))
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(IndexLoadError):
        qa.load_index(tmp_path / "idx", model=fake_embedder)


def test_rebuild_replaces_the_index_and_leaves_no_temporary_files(tmp_path: Path, fake_embedder: HashEmbedder) -> None:
    corpus = _corpus(tmp_path, 6)
    folder = tmp_path / "indexes" / "idx"
    qa.build_index(corpus, folder, model=fake_embedder, progress=False)
    shutil.rmtree(corpus)
    corpus.mkdir()
    (corpus / "only.txt").write_text("Only\n\nA single new story about tides.\n")
    rebuilt = qa.build_index(corpus, folder, model=fake_embedder, progress=False)
    assert [p.text for p in qa.load_index(folder, model=fake_embedder).passages] == [p.text for p in rebuilt.passages]
    assert len(rebuilt) == 1
    leftovers = [p.name for p in folder.parent.iterdir() if p.name not in ("idx", ".idx.lock")]
    assert leftovers == []


def test_bad_queries_and_k(tmp_path: Path, fake_embedder: HashEmbedder) -> None:
    index = qa.build_index(_corpus(tmp_path, 3), None, model=fake_embedder, progress=False)
    for bad in ("", "   "):
        with pytest.raises(InputError, match="empty"):
            index.search(bad)
        with pytest.raises(InputError, match="empty"):
            index.ask(bad)
    for k in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="positive integer"):
            index.search("harbour", k=k)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="list of queries"):
        index.search_batch("harbour")  # type: ignore[arg-type]
    assert index.search_batch([], k=3) == []
    # k larger than the corpus returns what exists, never -1 ids.
    hits = index.search("harbour", k=1000)
    assert len(hits) == len(index) == 6
    assert len({h.passage_id for h in hits}) == 6


def test_results_are_frozen_dataclasses_that_serialise(tmp_path: Path, fake_embedder: HashEmbedder) -> None:
    index = qa.build_index(_corpus(tmp_path, 3), None, model=fake_embedder, progress=False)
    hit = index.search("harbour", k=1)[0]
    with pytest.raises(AttributeError):
        hit.score = 2.0  # type: ignore[misc]
    assert json.loads(json.dumps(asdict(hit)))["source"]["doc_id"] == hit.source.doc_id


# -- With the real model, on the seed article ------------------------------------


def test_seed_search_finds_the_answering_paragraph_with_exact_attribution(seed_index) -> None:  # type: ignore[no-untyped-def]
    hits = seed_index.search(QUESTION, k=3)
    assert any(any(a in h.text for a in ANSWERING) for h in hits)
    source_text = SEED.read_text(encoding="utf-8")
    for h in hits:
        s = h.source
        assert s.doc_id and s.title and s.publisher == "i24NEWS" and s.section == "Analysis & Opinion"
        assert s.path.endswith(SEED.name) and s.paragraph >= 1
        assert source_text[s.char_start : s.char_end] == h.text
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_seed_index_round_trip_with_real_model(seed_index, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    loaded = qa.load_index(seed_index.path)
    assert loaded.search(QUESTION, k=5) == seed_index.search(QUESTION, k=5)


def test_seed_ask_names_a_mediator_with_its_source(seed_index) -> None:  # type: ignore[no-untyped-def]
    answer = seed_index.ask(QUESTION)
    assert answer.text is not None
    assert "Azerbaijan" in answer.text or "Hajiyev" in answer.text
    assert 0.0 <= answer.confidence <= 1.0
    top = answer.evidence[0]
    assert top.source.publisher == "i24NEWS"
    assert answer.span is not None and top.text[answer.span[0] : answer.span[1]] == answer.text


def test_nothing_is_downloaded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The bundled model loads with the hub switched off and sockets refused."""
    import socket

    from qa.embedding import SentenceTransformerEmbedder

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vectors = SentenceTransformerEmbedder().encode(["offline check"])
    assert vectors.shape == (1, 384) and vectors.dtype == np.float32
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-5)


def test_best_sentence_scores_equal_brute_force_after_load(tmp_path: Path, fake_embedder: HashEmbedder) -> None:
    from qa.documents import split_sentences

    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "a.txt").write_text(
        "Harbour news\n\nThe harbour closed. Storms hit the coast on Monday. Ferries stopped.\n\n"
        "Budget talks stalled.\n\nThe vaccine rollout began. Clinics opened early.\n",
        encoding="utf-8",
    )
    built = qa.build_index([folder], tmp_path / "idx", model=fake_embedder, progress=False)
    loaded = qa.load_index(tmp_path / "idx", model=fake_embedder)
    rows = np.arange(len(loaded))
    for query in ("storms on the coast", "budget", "clinics vaccine"):
        vector = fake_embedder.encode([query])[0]
        expected = [
            max(float(fake_embedder.encode([p.text[a:b]])[0] @ vector) for a, b in split_sentences(p.text))
            for p in loaded.passages
        ]
        # float16 storage: a few parts in a thousand.
        np.testing.assert_allclose(loaded.best_sentence_scores(vector, rows), expected, atol=2e-3)
        got = loaded.best_sentence_scores(vector, rows)
        np.testing.assert_array_equal(got, built.best_sentence_scores(vector, rows))
    assert (tmp_path / "idx" / loaded.manifest["generation"] / "sentences.npy").exists()


def test_bm25_of_another_recipe_is_rebuilt_on_load(tmp_path: Path, fake_embedder: HashEmbedder) -> None:
    built = qa.build_index(_corpus(tmp_path, 6), tmp_path / "idx", model=fake_embedder, progress=False)
    manifest_path = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["lexical"] == qa.index.LEXICAL_RECIPE
    manifest_path.write_text(json.dumps({**manifest, "lexical": "text only (an older qa)"}))
    loaded = qa.load_index(tmp_path / "idx", model=fake_embedder)
    assert loaded._lexical is None  # the saved BM25 is not trusted...
    assert loaded.search("harbour word3", k=4, mode="bm25") == built.search("harbour word3", k=4, mode="bm25")
