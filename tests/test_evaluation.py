"""qa.evaluation: metrics against hand-computed values, loaders, and a small real slice."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from qa import evaluation as ev
from qa.cli import main
from qa.errors import InputError
from qa.index import Index
from qa.text import normalize_answer
from tests.conftest import shared_data

# ---------------------------------------------------------------------------
# SQuAD answer metrics (cases follow the official evaluate-v1.1.py normalisation)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Cat!", "cat"),
        ("  a  An THE  ", ""),
        ("Hello, World.", "hello world"),
        ("theory of the atom", "theory of atom"),  # "the" inside a word stays
        ("Denver Broncos'", "denver broncos"),
        ("1,000 km", "1000 km"),  # punctuation removed, not replaced by a space
        ("an apple a day", "apple day"),
        ("tab\tand\nnewline", "tab and newline"),
    ],
)
def test_normalize_answer_matches_official_script(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_exact_match_takes_the_best_gold() -> None:
    assert ev.exact_match("the Denver Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert ev.exact_match("Broncos!", ["Denver Broncos", "Broncos"]) == 1.0
    assert ev.exact_match("Denver", ["Denver Broncos"]) == 0.0
    assert ev.exact_match(None, ["x"]) == 0.0


def test_f1_by_hand() -> None:
    # prediction {cat, sat}, gold {cat, sat, on, mat}: P = 1, R = 1/2, F1 = 2/3
    assert ev.f1_score("the cat sat", ["cat sat on the mat"]) == pytest.approx(2 / 3)
    # max over golds
    assert ev.f1_score("the cat sat", ["dog", "cat sat"]) == 1.0
    # repeated tokens count with multiplicity: pred {a1,a1,b}, gold {a1,b,b}: common 2, P = R = 2/3
    assert ev.f1_score("x x y", ["x y y"]) == pytest.approx(2 / 3)
    assert ev.f1_score("nothing shared", ["other words"]) == 0.0
    assert ev.f1_score(None, ["x"]) == 0.0
    assert ev.f1_score("the", ["a"]) == 0.0  # both normalise to nothing


# ---------------------------------------------------------------------------
# Retrieval metrics


def test_rank_metrics_by_hand() -> None:
    ranked = ["a", "b", "c", "d"]
    relevant = {"b", "d"}
    assert ev.recall_at_k(ranked, relevant, 1) == 0.0
    assert ev.recall_at_k(ranked, relevant, 2) == 0.5
    assert ev.recall_at_k(ranked, relevant, 10) == 1.0
    assert ev.reciprocal_rank(ranked, relevant, 10) == 0.5
    assert ev.reciprocal_rank(ranked, relevant, 1) == 0.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3)
    assert ev.ndcg_at_k(ranked, relevant, 10) == pytest.approx(dcg / ideal)
    assert ev.ndcg_at_k(["x", "y"], {"z"}, 10) == 0.0
    assert ev.ndcg_at_k(["z"], {"z"}, 10) == 1.0


def test_ndcg_ideal_is_capped_at_k() -> None:
    # 3 relevant, k = 2, both top-2 relevant ⇒ perfect
    assert ev.ndcg_at_k(["a", "b", "x"], {"a", "b", "c"}, 2) == pytest.approx(1.0)
    # beyond the cut-off does not count
    assert ev.ndcg_at_k(["x", "y", "a"], {"a"}, 2) == 0.0


def test_dedupe_keeps_best_rank() -> None:
    assert ev.dedupe(["p1", "p1", "p2", "p1", "p3"]) == ["p1", "p2", "p3"]


def test_reliability_bins() -> None:
    bins = ev.reliability([0.1, 0.15, 0.9, 1.0], [1.0, 0.0, 0.6, 0.2])
    assert [b.answers for b in bins] == [2, 0, 0, 0, 2]
    assert bins[0].accuracy == 0.5
    assert bins[-1].accuracy == 0.5
    assert bins[-1].mean_confidence == pytest.approx(0.95)


# ---------------------------------------------------------------------------
# Plumbing with the fake embedder


def _toy_dataset() -> ev.Dataset:
    articles = (
        ev.Article("cats", "Cats", ("Cats purr when they are content.", "Cats sleep sixteen hours a day.")),
        ev.Article("dogs", "Dogs", ("Dogs bark at the postman every morning.",)),
    )
    questions = (
        ev.Question("q1", "how long do cats sleep a day", ("sixteen hours",), ("cats#2",)),
        ev.Question("q2", "who do dogs bark at", ("the postman",), ("dogs#1",)),
    )
    return ev.Dataset("toy", questions, articles, "paragraph", description="toy")


def _stub_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader that answers q1 right (confidence 0.9) and gives no answer to anything else,
    so the answer plumbing is tested apart from the trained reader."""
    from qa import answering

    def read(question: str, hits, **_: object):  # type: ignore[no-untyped-def]
        if "cats sleep" in question:
            start = hits[0].text.find("sixteen hours")
            return answering.Answer(question, "sixteen hours", 0.9, (start, start + 13), tuple(hits))
        return answering.Answer(question, None, 0.1, None, tuple(hits))

    monkeypatch.setattr(answering, "read", read)
    monkeypatch.setattr(Index, "ask", lambda self, q, k=5, mode=None: read(q, self.search(q, k=k, mode=mode)))


def test_evaluate_with_fake_embedder(fake_embedder, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _stub_reader(monkeypatch)
    dataset = _toy_dataset()
    index = ev.eval_index(dataset, model=fake_embedder, index_dir=None)
    assert len(index) == 3
    report = ev.evaluate(dataset, index, command="test")
    dense = report.retrieval[0]
    assert dense.questions == 2
    assert set(dense.recall) == set(ev.RECALL_KS)
    assert dense.recall[20] == 1.0  # the corpus has 3 passages
    assert [a.setting for a in report.answers] == ["end-to-end", "given-paragraph"]
    for result in report.answers:
        assert result.exact_match == 0.5 and result.f1 == 0.5
        assert result.no_answer_rate == 0.5
        assert result.accuracy_when_answered == 1.0
        # Every question's best candidate is binned: the withheld one (0.1) too.
        assert [b.answers for b in result.reliability] == [1, 0, 0, 0, 1]
        assert result.forced_f1 == 0.5  # the withheld question had no candidate at all
    assert json.loads(ev.report_json(report))["qa_version"]
    assert "R@1" in ev.format_report(report)


def test_eval_index_is_cached_and_reused(fake_embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dataset = _toy_dataset()
    folder = tmp_path / "eval-toy"
    first = ev.eval_index(dataset, model=fake_embedder, index_dir=folder)
    calls = fake_embedder.texts_encoded
    second = ev.eval_index(dataset, model=fake_embedder, index_dir=folder)
    assert fake_embedder.texts_encoded == calls  # nothing re-embedded
    assert [p.passage_id for p in second.passages] == [p.passage_id for p in first.passages]


def test_gold_hits_are_the_gold_paragraph(fake_embedder) -> None:  # type: ignore[no-untyped-def]
    dataset = _toy_dataset()
    index = ev.eval_index(dataset, model=fake_embedder, index_dir=None)
    question = dataset.questions[0]
    hits = ev.gold_hits(index, dataset, question, index.embed_queries([question.text])[0], index.vectors)
    assert [(h.source.doc_id, h.source.paragraph) for h in hits] == [("cats", 2)]


def test_jsonl_questions_by_substring_and_id(fake_embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    toy = _toy_dataset()
    index = ev.eval_index(toy, model=fake_embedder, index_dir=None)
    dog_id = next(p.passage_id for p in index.passages if p.source.doc_id == "dogs")
    file = tmp_path / "q.jsonl"
    file.write_text(
        json.dumps(
            {
                "question": "how long do cats sleep",
                "answers": ["sixteen hours"],
                "gold_passages": ["sleep sixteen hours"],
            }
        )
        + "\n"
        + json.dumps({"question": "who do dogs bark at", "gold_passages": [dog_id]})
        + "\n",
        encoding="utf-8",
    )
    dataset = ev.load_questions(file)
    assert len(dataset.questions) == 2
    result = ev.evaluate_retrieval(index, dataset, "dense")
    assert result.recall[20] == 1.0
    rankings = ev.ranked_labels(index, dataset, dataset.questions, 3, "dense")
    assert ("gold", 0) in rankings[0]


def test_bad_jsonl_line_is_an_input_error(tmp_path: Path) -> None:
    file = tmp_path / "q.jsonl"
    file.write_text('{"answers": []}\n', encoding="utf-8")
    with pytest.raises(InputError, match="question"):
        ev.load_questions(file)


def test_missing_data_file_exits_2_and_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.zip"
    assert main(["eval", "squad", "--data", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "--data" in err
    assert len(err.strip().splitlines()) == 1


def test_default_data_lookup_names_the_places(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ev.datasets, "data_candidates", lambda name: [Path("/nowhere") / name])
    with pytest.raises(InputError, match=r"/nowhere/dev-v1.1.json.zip.*--data"):
        ev.find_data(ev.SQUAD_FILE, None)


# ---------------------------------------------------------------------------
# Real data: loaders on the full files, and a small slice with the real model


def test_squad_split_is_fixed() -> None:
    path = shared_data(ev.SQUAD_FILE)
    heldout = ev.load_squad(path, split="heldout")
    tune = ev.load_squad(path, split="tune")
    assert heldout.articles is not None and tune.articles is not None
    # the corpus is always every paragraph; the split only chooses questions
    assert sum(len(a.paragraphs) for a in heldout.articles) == 2067
    assert len(heldout.questions) + len(tune.questions) == 10570
    held_docs = {q.gold[0].split("#")[0] for q in heldout.questions}
    assert len(held_docs) == 10 and "Super_Bowl_50" in held_docs
    assert not held_docs & {q.gold[0].split("#")[0] for q in tune.questions}


def test_scifact_matches_beir_test_set() -> None:
    data = ev.load_scifact(shared_data(ev.SCIFACT_FILE))
    assert data.articles is not None
    assert len(data.articles) == 5183
    assert len(data.questions) == 300
    assert sum(len(q.gold) for q in data.questions) == 339
    doc = next(a for a in data.articles if a.doc_id == "4983")
    # sentences of the printed list are joined by spaces, not glued together
    assert "(1.4 +/- 0.24 versus" in doc.paragraphs[0]
    assert doc.paragraphs[0].startswith("Microstructural development of human newborn")


def test_recall_equals_hand_check_on_squad_slice(real_embedder) -> None:  # type: ignore[no-untyped-def]
    from qa.retrieval import MODES

    dataset = ev.load_squad(shared_data(ev.SQUAD_FILE), split="heldout", limit=40, limit_docs=1)
    index = ev.eval_index(dataset, model=real_embedder, index_dir=None)
    questions = [q.text for q in dataset.questions]
    for mode in MODES:
        result = ev.evaluate_retrieval(index, dataset, mode)
        # By hand: walk the hits of a plain search_batch; the first hit of the gold paragraph
        # gives its rank among distinct paragraphs. (k = 40 is deep enough for 20 distinct
        # paragraphs here, and small enough that fused modes use their usual candidate pool.)
        batches = index.search_batch(questions, k=40, mode=mode)
        for k in ev.RECALL_KS:
            found = 0
            for question, hits in zip(dataset.questions, batches, strict=True):
                seen: list[tuple[str, int]] = []
                for hit in hits:
                    key = (hit.source.doc_id, hit.source.paragraph)
                    if key not in seen:
                        seen.append(key)
                gold_doc, gold_paragraph = question.gold[0].rsplit("#", 1)
                found += (gold_doc, int(gold_paragraph)) in seen[:k]
            assert result.recall[k] == pytest.approx(found / len(dataset.questions)), (mode, k)
        assert result.recall[20] > 0.8, mode  # one article: the gold paragraph is near the top


def test_cli_scifact_slice_json(capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_data(ev.SCIFACT_FILE)
    code = main(["eval", "scifact", "--data", str(path), "--limit", "5", "--limit-docs", "12", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["questions"] == 5
    assert report["documents"] == 12
    assert report["command"].startswith("qa eval scifact")
    assert report["model"] == "all-MiniLM-L6-v2"
    assert {r["mode"] for r in report["retrieval"]} >= {"dense"}
    assert set(report["retrieval"][0]["recall"]) == {str(k) for k in ev.SCIFACT_RECALL_KS}
    assert report["answers"] == []  # claims have no answers


def test_index_type_is_the_library_index(fake_embedder) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(ev.eval_index(_toy_dataset(), model=fake_embedder, index_dir=None), Index)


def test_plain_dense_is_one_vector_per_unit_by_hand(fake_embedder) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    dataset = _toy_dataset()
    index = ev.eval_index(dataset, model=fake_embedder, index_dir=None)
    result = ev.evaluate_plain_dense(index, dataset)
    units = [("cats#1", "Cats purr when they are content."), ("cats#2", "Cats sleep sixteen hours a day."),
             ("dogs#1", "Dogs bark at the postman every morning.")]  # fmt: skip
    vectors = fake_embedder.encode([t for _, t in units])
    first = []
    for q in dataset.questions:
        scores = vectors @ fake_embedder.encode([q.text])[0]
        first.append(units[int(np.argmax(scores))][0] == q.gold[0])
    assert result.mode == ev.PLAIN_DENSE and result.recall[1] == sum(first) / len(first)
    report = ev.evaluate(dataset, index, answers=False)
    assert [r.mode for r in report.retrieval][-1] == ev.PLAIN_DENSE


def test_cli_eval_of_own_questions_over_a_folder(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import ROOT

    gold = ROOT / "tests" / "seed_questions.jsonl"
    argv = ["eval", str(gold), "--corpus", str(ROOT / "seeds"), "--modes", "dense,hybrid", "--limit", "6", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["command"].endswith(f"--corpus {ROOT / 'seeds'} --json")
    assert [r["mode"] for r in report["retrieval"]] == ["dense", "hybrid"]
    assert report["retrieval"][1]["questions"] == 6
    assert [a["setting"] for a in report["answers"]] == ["end-to-end", "given-paragraph"]


def test_expected_calibration_error_by_hand() -> None:
    from qa.evaluation import expected_calibration_error

    # Bin [0.9, 1.0): confidences 0.95, 0.95, one right -> gap |1.9 - 1| = 0.9;
    # bin [0.1, 0.2): 0.15, wrong -> 0.15; over 3 answers: 1.05 / 3.
    assert expected_calibration_error([0.95, 0.95, 0.15], [1.0, 0.0, 0.0]) == pytest.approx(0.35)
    assert expected_calibration_error([0.7, 0.7], [1.0, 1.0]) == pytest.approx(0.3)
    assert expected_calibration_error([], []) == 0.0
