"""BM25 (qa.lexical) and fusion (qa.fusion): fast tests on real sentences and hand-computed numbers."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

from qa.errors import IndexLoadError, InputError
from qa.fusion import (
    DEFAULT_WEIGHTS,
    fuse_scores,
    normalise,
    rrf,
)
from qa.lexical import BM25, Tokenizer, top_k

SEED = Path(__file__).resolve().parent.parent / "seeds" / "000_400d80341ec88f4a.txt"


@pytest.fixture(scope="module")
def paragraphs() -> list[str]:
    """The seed article's body paragraphs (after the header and title lines)."""
    lines = [line for line in SEED.read_text(encoding="utf-8").splitlines() if line.strip()]
    body = [line for line in lines if not line.startswith("- ")][2:]
    assert len(body) >= 6
    return body


@pytest.fixture(scope="module")
def index(paragraphs: list[str]) -> BM25:
    return BM25.build(paragraphs)


def _para(paragraphs: list[str], needle: str) -> int:
    return next(i for i, p in enumerate(paragraphs) if needle in p)


# ------------------------------------------------------------------------------------------- BM25


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("Who visited Baku with Michael Tuchin?", "Bernie Kaminetsky"),
        ("Hikmet Hajiyev arrived in Jerusalem", "Hikmet Hajiyev arrived"),
        ("Begin-Sadat Center research paper", "Begin-Sadat"),
    ],
)
def test_obvious_document_ranks_first(index: BM25, paragraphs: list[str], query: str, needle: str) -> None:
    ids, scores = index.search([query], k=3)
    assert ids[0, 0] == _para(paragraphs, needle)
    assert scores[0, 0] > scores[0, 1] >= scores[0, 2]


def test_stemming_matches_word_forms(index: BM25, paragraphs: list[str]) -> None:
    # Snowball: "mediator", "mediation" and "mediated" all stem to "mediat". The article says "a mediator
    # role" in one paragraph and "mediated during crises" in another; "mediation" appears nowhere.
    assert Tokenizer()(["mediator mediation mediated"]) == [["mediat", "mediat", "mediat"]]
    ids, scores = index.search(["mediation"], k=3)
    assert set(ids[0, :2].tolist()) == {_para(paragraphs, "mediator role"), _para(paragraphs, "mediated during")}
    assert scores[0, 1] > 0 == scores[0, 2]
    # Without stemming the word forms do not meet.
    plain = BM25.build(paragraphs, tokenizer=Tokenizer(stem=False))
    assert not plain.scores("mediation").any()


def test_stop_words_are_ignored(index: BM25) -> None:
    assert Tokenizer()(["The president of the US"]) == [["presid", "us"]]
    only_stop = index.scores("the of and is it")
    assert not only_stop.any()
    np.testing.assert_array_equal(index.scores("the president of the"), index.scores("president"))


def test_unknown_words_score_zero_without_raising(index: BM25) -> None:
    ids, scores = index.search(["zzyzx qwxv", "", "!!!"], k=4)
    assert ids.shape == scores.shape == (3, 4)
    assert not scores.any()
    # Ties (all zero) are broken by document id, so the result is deterministic.
    np.testing.assert_array_equal(ids, np.tile(np.arange(4), (3, 1)))


def test_zero_scores_are_kept_after_positive_ones(index: BM25, paragraphs: list[str]) -> None:
    ids, scores = index.search(["Kaminetsky"], k=len(paragraphs))
    assert scores[0, 0] > 0 and (scores[0, 1:] == 0).all()
    assert sorted(ids[0].tolist()) == list(range(len(paragraphs)))


def test_k_larger_than_corpus(index: BM25, paragraphs: list[str]) -> None:
    ids, scores = index.search(["Azerbaijan Israel"], k=1000)
    assert ids.shape == (1, len(paragraphs)) == scores.shape
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert ((ids >= 0) & (ids < len(index))).all()
    assert (np.diff(scores[0]) <= 0).all()


def test_bad_arguments(index: BM25) -> None:
    with pytest.raises(InputError, match="at least 1"):
        index.search(["x"], k=0)
    with pytest.raises(InputError, match="wrap"):
        index.search("a single string", k=1)
    with pytest.raises(InputError, match="at least one text"):
        BM25.build([])
    with pytest.raises(InputError, match="method"):
        BM25.build(["a b"], method="tfidf")


def test_save_load_round_trip_without_pickle(index: BM25, paragraphs: list[str], tmp_path: Path) -> None:
    names = index.save(tmp_path)
    assert sorted(names) == sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        if name.endswith(".npz"):
            with np.load(tmp_path / name, allow_pickle=False) as z:
                assert all(z[key].dtype != object for key in z.files)
            with zipfile.ZipFile(tmp_path / name) as z:
                assert all(info.filename.endswith(".npy") for info in z.infolist())
        else:
            json.loads((tmp_path / name).read_text(encoding="utf-8"))
    loaded = BM25.load(tmp_path)
    assert len(loaded) == len(index) == len(paragraphs)
    queries = ["Who visited Baku?", "mediator between Turkey and Israel", "zzz"]
    for a, b in zip(index.search(queries, k=5), loaded.search(queries, k=5), strict=True):
        np.testing.assert_array_equal(a, b)


def test_load_errors_say_rebuild(tmp_path: Path, index: BM25) -> None:
    with pytest.raises(IndexLoadError, match="rebuild"):
        BM25.load(tmp_path)
    index.save(tmp_path)
    meta = json.loads((tmp_path / "bm25.json").read_text())
    meta["format_version"] = 999
    (tmp_path / "bm25.json").write_text(json.dumps(meta))
    with pytest.raises(IndexLoadError, match="rebuild"):
        BM25.load(tmp_path)


@pytest.mark.parametrize("method", ["lucene", "bm25+", "bm25l", "atire", "robertson"])
def test_variants_and_save_load(method: str, paragraphs: list[str], tmp_path: Path) -> None:
    index = BM25.build(paragraphs, method=method)
    index.save(tmp_path)
    q = ["Kaminetsky visited Baku"]
    np.testing.assert_array_equal(index.search(q, k=3)[0], BM25.load(tmp_path).search(q, k=3)[0])
    assert index.search(q, k=1)[0][0, 0] == _para(paragraphs, "Kaminetsky")


def test_lucene_score_by_hand() -> None:
    # Two docs; "cat" in doc 0 only: idf = ln(1 + (2 - 1 + 0.5) / (1 + 0.5)) = ln 2; tf = 1, |d| = avgdl.
    # Lucene (>= 8) drops BM25's constant (k1 + 1) numerator: score = idf * tf / (tf + k1).
    index = BM25.build(["cat sat", "dog ran"], k1=1.2, b=0.75)
    scores = index.scores("cat")
    assert scores[0] == pytest.approx(math.log(2) * 1 / (1 + 1.2))
    assert scores[1] == 0


def test_top_k_ties_and_order() -> None:
    ids, vals = top_k(np.array([0.5, 2.0, 0.5, 3.0, 0.5], dtype=np.float32), 3)
    assert ids.tolist() == [3, 1, 0]
    assert vals.tolist() == [3.0, 2.0, 0.5]
    assert top_k(np.array([1.0, 2.0]), 10)[0].tolist() == [1, 0]


# ------------------------------------------------------------------------------------------- fusion


def test_rrf_by_hand() -> None:
    fused = rrf([[7, 3], [3, 9]], k=60)
    assert fused[3] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[7] == pytest.approx(1 / 61)
    assert fused[9] == pytest.approx(1 / 62)
    assert max(fused, key=fused.__getitem__) == 3
    weighted = rrf([[1], [2]], k=0, weights=[2.0, 1.0])
    assert weighted == {1: 2.0, 2: 1.0}
    with pytest.raises(InputError):
        rrf([[1]], weights=[1.0, 2.0])


def test_normalise_by_hand() -> None:
    np.testing.assert_allclose(normalise(np.array([1.0, 3.0, 5.0]), "minmax"), [0.0, 0.5, 1.0])
    z = normalise(np.array([1.0, 3.0, 5.0]), "zscore")
    np.testing.assert_allclose(z, np.array([-2.0, 0.0, 2.0]) / math.sqrt(8 / 3), rtol=1e-6)
    # Constant scores (e.g. BM25 for a query of unknown words) contribute nothing instead of NaN.
    for method in ("minmax", "zscore"):
        assert not normalise(np.zeros(4), method).any()
    # Rows are independent along the last axis.
    np.testing.assert_allclose(normalise(np.array([[0.0, 2.0], [5.0, 10.0]]), "minmax"), [[0, 1], [0, 1]])
    with pytest.raises(InputError, match="minmax"):
        normalise(np.ones(2), "softmax")  # type: ignore[arg-type]
    # A least spread: scores that hardly differ stay close (0.02 apart is 0.2 of a spread of 0.1).
    np.testing.assert_allclose(normalise(np.array([0.30, 0.32]), "zscore", min_spread=0.1), [-0.1, 0.1], rtol=1e-5)
    np.testing.assert_allclose(normalise(np.array([0.30, 0.32]), "minmax", min_spread=0.1), [0.0, 0.2], rtol=1e-5)
    np.testing.assert_allclose(normalise(np.array([1.0, 3.0]), "zscore", min_spread=0.1), [-1.0, 1.0], rtol=1e-6)


def test_fuse_scores_by_hand() -> None:
    dense = np.array([0.9, 0.7, 0.5])  # minmax -> 1, 0.5, 0
    bm25 = np.array([0.0, 10.0, 5.0])  # minmax -> 0, 1, 0.5
    fused = fuse_scores([dense, bm25], [0.4, 0.6], "minmax")
    np.testing.assert_allclose(fused, [0.4, 0.2 + 0.6, 0.3], rtol=1e-6)
    with pytest.raises(InputError):
        fuse_scores([dense, bm25], [1.0])
    with pytest.raises(InputError):
        fuse_scores([dense, bm25[:2]], [0.5, 0.5])
    # With a least spread of 1 for the dense cosines, their 0.4 range counts for 0.4, not for 1.
    fused = fuse_scores([dense, bm25], [0.4, 0.6], "minmax", min_spreads=[1.0, 0.0])
    np.testing.assert_allclose(fused, [0.4 * 0.4, 0.4 * 0.2 + 0.6, 0.3], rtol=1e-6)
    with pytest.raises(InputError, match="min_spreads"):
        fuse_scores([dense, bm25], [0.4, 0.6], min_spreads=[0.1])


def test_coverage_is_the_idf_weighted_share_of_query_terms() -> None:
    bm25 = BM25.build(["storm hits harbour", "storm warning", "budget vote", "harbour budget storm"])
    # "storm" is in 3 of 4 documents, "harbour" in 2: idf = ln(1 + (N - df + 0.5) / (df + 0.5)).
    idf_storm, idf_harbour = math.log1p(1.5 / 3.5), math.log1p(2.5 / 2.5)
    got = bm25.coverage("Storms at the harbour?", np.arange(4))
    expected = [1.0, idf_storm / (idf_storm + idf_harbour), 0.0, 1.0]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # A word no document has counts as missing everywhere; a query of stop words covers nothing.
    assert bm25.coverage("harbour zebra", np.array([0]))[0] < 1.0
    assert bm25.coverage("the of", np.arange(4)).tolist() == [0.0] * 4
    assert len(DEFAULT_WEIGHTS) == 4
