"""The span reader: its training script, its shipped artefact, its spans on the seed article."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from qa.errors import ModelNotFoundError
from qa.span_reader import ARTEFACT_DIR, SpanReader, read_config, verify_artefact
from tests.conftest import ROOT, SEED, shared_data

QUESTION = "who mediated Turkey-Israel?"
MEDIATORS = ("Azerbaijan", "Hikmet Hajiyev", "Hajiyev")
# Three passages of the seed article, a question on each, and the span the shipped model
# finds (recorded from the artefact in qa/data/span-reader; retraining changes them).
EXPECTED = Path(__file__).parent / "span_reader_expected.json"


def _seed_paragraphs() -> list[str]:
    return [line for line in SEED.read_text(encoding="utf-8").splitlines()[5:] if line.strip()]


def _script(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _training_script():  # type: ignore[no-untyped-def]
    return _script("train_span_reader")


def test_distractor_paragraphs_are_labelled_no_answer() -> None:
    """A question read against another paragraph of its article: never one holding its answer."""
    import random

    from transformers import AutoTokenizer

    script = _training_script()
    Example = script.Example
    paragraphs = _seed_paragraphs()
    aide = next(p for p in paragraphs if "aide Hikmet Hajiyev" in p)
    other = next(p for p in paragraphs if "Hajiyev" not in p and "Ankara" not in p)
    examples = [
        Example("q0", 0, "What is it about?", other, 0, other.split()[0], (other.split()[0],)),
        Example("q1", 0, "Who is Aliyev's aide?", aide, aide.index("Hikmet"), "Hikmet Hajiyev", ("Hikmet Hajiyev",)),
        Example("q2", 0, "Where did Hajiyev go?", aide, aide.index("Ankara"), "Ankara", ("Ankara",)),
        Example("q3", 1, "Alone in its article?", "A lone paragraph.", 2, "lone", ("lone",)),
    ]  # fmt: skip
    distractors = script._distractors(examples, 1.0, random.Random(0))
    assert [d.qid for d in distractors] == ["q0", "q1", "q2"]  # q3's article has no other paragraph
    for d in distractors:
        own = next(e for e in examples if e.qid == d.qid)
        assert d.article == own.article and d.context != own.context and d.context in paragraphs
        assert not any(a in d.context for a in d.answers) and d.answer_start == -1
    assert script._distractors(examples, 0.0, random.Random(0)) == []
    tokenizer = AutoTokenizer.from_pretrained(str(script.base_model_dir()))
    windows = script.featurize(tokenizer, distractors, 96, 32)
    assert windows and all(w["start"] == w["end"] == 0 for w in windows)


def test_cross_fitting_folds_leave_every_tune_article_out_once() -> None:
    script = _training_script()
    articles = [1, 2, 3, 4, 6, 7, 8, 9, 11]
    folds = [script.validation_articles(articles, 3, f"{k}/3") for k in range(3)]
    assert set().union(*folds) == set(articles) and sum(map(len, folds)) == len(articles)
    assert len(script.validation_articles(articles, 3)) == 3
    for bad in ("3/3", "x/2", "1"):
        with pytest.raises(SystemExit, match="--fold"):
            script.validation_articles(articles, 3, bad)


@pytest.fixture(scope="module")
def smoke_reader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reader from a seconds-long training run (shared by the tests that need one)."""
    data = shared_data("dev-v1.1.json.zip")
    out = tmp_path_factory.mktemp("smoke") / "reader"
    # 8 questions seen 4 times with a high learning rate: seconds, and the loss must fall.
    args = ["--data", str(data), "--out", str(out), "--train-questions", "8", "--val-questions", "4"]
    args += ["--epochs", "4", "--batch-size", "4", "--max-length", "96", "--lr", "5e-4", "--warmup", "0"]
    args += ["--negatives", "0", "--freeze-layers", "4", "--log-every", "1", "--evals-per-epoch", "1"]
    assert _training_script().main(args) == 0
    return out


def test_training_smoke_run_loss_falls(smoke_reader: Path) -> None:
    out = smoke_reader
    config = json.loads((out / "config.json").read_text())
    losses = [loss for _, loss in config["training"]["loss_log"]]
    assert len(losses) >= 8
    assert sum(losses[-2:]) / 2 < 0.75 * sum(losses[:2]) / 2, losses
    # Never trains on held-out articles, and says which tune articles it validated on.
    assert config["training"]["validation_articles"]
    verify_artefact(out)
    # Only what differs from the base model: the unfrozen layers and the head.
    from safetensors import safe_open

    with safe_open(str(out / "weights.safetensors"), "pt") as f:
        names = set(f.keys())
    assert "qa_outputs.weight" in names
    assert not any(".embeddings." in n or ".layer.0." in n for n in names)


def test_soup_averages_readers_of_one_recipe_family(smoke_reader: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from qa.integrity import sha256_file

    data = shared_data("dev-v1.1.json.zip")
    a, b, out = smoke_reader, tmp_path / "b", tmp_path / "soup"
    # A second reader of the same recipe family: the first with other weights.
    shutil.copytree(a, b)
    save_file({k: (v.float() * 0.5).half() for k, v in load_file(str(a / "weights.safetensors")).items()},
              str(b / "weights.safetensors"))  # fmt: skip
    config_b = json.loads((b / "config.json").read_text())
    (b / "config.json").write_text(json.dumps({**config_b, "weights_sha256": sha256_file(b / "weights.safetensors")}))
    soup = _script("soup_span_readers")
    assert soup.main([str(a), str(b), "--out", str(out), "--data", str(data), "--val-questions", "4"]) == 0
    verify_artefact(out)
    config = read_config(out)
    assert len(config["soup"]) == 2 and config["training"]["validation_articles"]
    assert config["training"]["validation"][0]["at"] == "soup"
    ta, ts = load_file(str(a / "weights.safetensors")), load_file(str(out / "weights.safetensors"))
    assert set(ts) == set(ta) and "qa_outputs.weight" in ts
    for name in ts:  # the mean of w and w/2
        np.testing.assert_allclose(ts[name].float().numpy(), 0.75 * ta[name].float().numpy(), rtol=2e-3, atol=1e-4)
    # Readers that read other windows do not average.
    (b / "config.json").write_text(json.dumps({**config_b, "max_length": 64}))
    with pytest.raises(SystemExit, match="max_length"):
        soup.main([str(a), str(b), "--out", str(tmp_path / "bad"), "--data", str(data)])


def test_training_split_never_holds_heldout_articles() -> None:
    data = shared_data("dev-v1.1.json.zip")
    script = _training_script()
    tune, held, _ = script.load_examples(data)
    assert tune and held
    assert {e.article for e in tune}.isdisjoint({e.article for e in held})
    assert all(e.article % 5 == 0 for e in held)
    # The offsets survive the whitespace cleaning qa's loader applies.
    assert all(e.context[e.answer_start : e.answer_start + len(e.answer_text)] == e.answer_text for e in tune)


def test_artefact_is_small_matches_its_checksum_and_loads_without_pickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = read_config()
    weights = verify_artefact()
    assert weights.stat().st_size <= 25_000_000
    assert config["training"]["validation_articles"]
    # A damaged copy is refused with a message that says how to fix it.
    broken = tmp_path / "span-reader"
    shutil.copytree(ARTEFACT_DIR, broken)
    data = bytearray((broken / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (broken / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelNotFoundError, match="train_span_reader"):
        verify_artefact(broken)
    # Loading never unpickles: torch.load is never called.
    import torch

    def no_pickle(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load (pickle) was called")

    monkeypatch.setattr(torch, "load", no_pickle)
    # An empty cache: the reader is built from safetensors and exported to ONNX again here.
    monkeypatch.setenv("QA_CACHE_DIR", str(tmp_path / "cache"))
    reader = SpanReader().load()
    assert reader.read(QUESTION, _seed_paragraphs()[:6], top_n=1)
    assert list((tmp_path / "cache" / "onnx").glob("span-reader-*/model.onnx"))


def test_the_onnx_export_agrees_with_the_torch_model() -> None:
    import numpy as np
    import torch

    from qa.span_reader import load_torch_model

    loaded = SpanReader().load()._get()
    model, _ = load_torch_model()
    passages = _seed_paragraphs()[:4]
    for encoding in loaded.tokenizer.encode_batch([(QUESTION, p) for p in passages]):
        feed = {
            "input_ids": np.array([encoding.ids]),
            "attention_mask": np.array([encoding.attention_mask]),
            "token_type_ids": np.array([encoding.type_ids]),
        }
        starts, ends = loaded.session.run(["start_logits", "end_logits"], feed)
        with torch.no_grad():
            logits = model(**{name: torch.from_numpy(value) for name, value in feed.items()})
        np.testing.assert_allclose(starts, logits.start_logits.numpy(), atol=2e-3)
        np.testing.assert_allclose(ends, logits.end_logits.numpy(), atol=2e-3)


def test_spans_on_three_seed_passages_match_stored_expectations() -> None:
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    assert len(expected) == 3
    reader = SpanReader()
    for case in expected:
        spans = reader.read(case["question"], [case["passage"]], top_n=1)
        assert spans, case
        assert (spans[0].text, spans[0].start, spans[0].end) == (case["text"], case["start"], case["end"]), case
        assert case["passage"][spans[0].start : spans[0].end] == spans[0].text
        assert spans[0].score == pytest.approx(case["score"], abs=0.02)


def test_passage_spans_n_best_and_long_passages() -> None:
    reader = SpanReader()
    paragraphs = _seed_paragraphs()
    long_passage = " ".join(paragraphs[3:9])  # far beyond one window: read with a stride
    question = "Which research center published a paper on Azerbaijan's relationship with Israel?"
    per_passage = reader.passage_spans(question, [long_passage, "", paragraphs[0]], n_best=3)
    assert len(per_passage) == 3 and per_passage[1] == []
    best = per_passage[0]
    assert 1 <= len(best) <= 3
    # Ranked by logit: a probability is normalised within its window, a logit compares across windows.
    assert best == sorted(best, key=lambda s: -s.logit)
    # The answer sits past the first window: found by a later, overlapping one.
    name = long_passage.index("Begin-Sadat Center for Strategic Studies")
    assert name > 700
    assert name <= best[0].start < best[0].end <= name + len("Begin-Sadat Center for Strategic Studies")
    assert any(long_passage[s.start : s.end].startswith("Begin-Sadat Center") for s in best)
    assert all(0.0 <= s.probability <= 1.0 and 0.0 <= s.null_probability <= 1.0 for s in best)


def test_search_returns_no_paragraph_twice(seed_index) -> None:  # type: ignore[no-untyped-def]
    for mode in ("hybrid", "dense", "bm25", "rrf"):
        hits = seed_index.search(QUESTION, k=10, mode=mode)
        keys = [(h.source.doc_id, h.source.paragraph) for h in hits]
        assert len(keys) == len(set(keys)), (mode, keys)
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    # Windows of one paragraph are still there when asked for.
    windows = seed_index.search(QUESTION, k=30, mode="dense", per_paragraph=False)
    assert len({(h.source.doc_id, h.source.paragraph) for h in windows}) < len(windows)


def test_seed_mediator_answer_and_the_other_as_first_alternative(seed_index) -> None:  # type: ignore[no-untyped-def]
    """Hajiyev is the mediator only through "he is playing a mediator role" (see qa.coreference).

    His passage is only the 4th retrieved; what lifts him above the other names is that the
    confidence reads the pronoun's sentence and the words around it ("mediator", "Israel", "Turkey").
    """
    answer = seed_index.ask(QUESTION)
    assert answer.text in ("Azerbaijan", "Hikmet Hajiyev"), answer
    first = answer.alternatives[0].text
    if answer.text == "Azerbaijan":
        assert first in ("Hikmet Hajiyev", "Hajiyev"), [a.text for a in answer.alternatives]
    else:
        assert first == "Azerbaijan", [a.text for a in answer.alternatives]


def test_every_annotators_answer_is_a_target() -> None:
    """--all-answers labels each annotator's span; with one answer its loss is BERT's cross-entropy."""
    import torch
    from transformers import AutoTokenizer

    script = _training_script()
    aide = next(p for p in _seed_paragraphs() if "aide Hikmet Hajiyev" in p)
    full, short = aide.index("Hikmet Hajiyev"), aide.index("Hajiyev arrived")
    example = script.Example(
        "q", 0, "Who is Aliyev's aide?", aide, full, "Hikmet Hajiyev", ("Hikmet Hajiyev", "Hajiyev"),
        ((full, full + 14), (short, short + 7)),
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(str(script.base_model_dir()))
    (first,) = script.featurize(tokenizer, [example], 160, 48)
    (both,) = script.featurize(tokenizer, [example], 160, 48, all_answers=True)
    assert (first["start"], first["end"]) == (both["start"], both["end"])
    assert first["starts"] == [first["start"]] and len(both["starts"]) == 2 and both["ends"] == first["ends"]
    batch = script.collate([first])
    torch.manual_seed(0)
    starts, ends = torch.randn(1, len(first["input_ids"])), torch.randn(1, len(first["input_ids"]))
    ce = torch.nn.functional.cross_entropy
    expected = (ce(starts, batch["start_positions"]) + ce(ends, batch["end_positions"])) / 2
    assert float(script.any_answer_loss(starts, ends, batch)) == pytest.approx(float(expected), rel=1e-5)
    assert float(script.any_answer_loss(starts, ends, script.collate([both]))) < float(expected)


def test_whole_paragraphs_joins_a_paragraphs_windows_back_into_its_text(seed_index) -> None:  # type: ignore[no-untyped-def]
    from collections import Counter
    from dataclasses import replace

    from qa.retrieval import whole_paragraphs

    windows = seed_index.search(QUESTION, k=30, mode="dense", per_paragraph=False)
    counts = Counter((h.source.doc_id, h.source.paragraph) for h in windows)
    split = next(key for key, n in counts.items() if n > 1)  # the seed's one paragraph of two windows
    joined = whole_paragraphs(windows)
    assert [h.rank for h in joined] == list(range(1, len(joined) + 1))
    assert len(joined) == len(counts)  # one hit per paragraph
    whole = next(h for h in joined if (h.source.doc_id, h.source.paragraph) == split)
    parts = [h for h in windows if (h.source.doc_id, h.source.paragraph) == split]
    assert whole.passage_id == parts[0].passage_id and whole.score == parts[0].score  # its best window's
    text = Path(whole.source.path).read_text(encoding="utf-8")
    # The offsets still index the file: only the whitespace between windows is spaces.
    assert " ".join(whole.text.split()) == " ".join(text[whole.source.char_start : whole.source.char_end].split())
    assert len(whole.text) == whole.source.char_end - whole.source.char_start
    assert all(p.text in whole.text for p in parts)
    # Windows that do not meet (the first 20 characters of one, and the other) are not joined.
    first, last = sorted(parts, key=lambda h: h.source.char_start)
    start = first.source.char_start
    cut = replace(first, text=first.text[:20], source=replace(first.source, char_start=start, char_end=start + 20))
    assert len(whole_paragraphs([cut, last])) == 2
