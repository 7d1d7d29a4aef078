"""Loading articles: every format, attribution, offsets, windows, stable ids, bad input."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from qa.documents import load_passages, split_sentences
from qa.errors import InputError
from tests.conftest import SEED


def _slices_match(passages: list) -> None:  # type: ignore[type-arg]
    for p in passages:
        text = Path(p.source.path).read_text(encoding="utf-8")
        assert text[p.source.char_start : p.source.char_end] == p.text


def test_seed_format_header_title_and_paragraphs() -> None:
    passages = load_passages([SEED])
    first = passages[0]
    assert first.source.publisher == "i24NEWS"
    assert first.source.section == "Analysis & Opinion"
    assert first.source.title == "Allied support: Jerusalem & Baku help each other in Washington & Ankara | Analysis"
    assert first.source.doc_id == "000_400d80341ec88f4a"
    # The standfirst is paragraph 1; the title line is not a passage.
    assert first.text.startswith("Azerbaijan and Israel, who have been allies for 30 years")
    assert first.source.paragraph == 1
    assert not any(p.text.startswith("Allied support") for p in passages)
    assert {p.source.paragraph for p in passages} == set(range(1, 8))
    _slices_match(passages)


def test_seed_passages_slice_the_file_exactly(seed_dir: Path) -> None:
    _slices_match(load_passages(seed_dir))


def test_plain_txt_blank_line_paragraphs_and_short_title(tmp_path: Path) -> None:
    f = tmp_path / "story.txt"
    f.write_text(
        "Storm closes ports\n\nHeavy rain hit the coast on Monday.\nPorts were shut.\n\n\n"
        "Officials said trade resumes Friday.\n",
        encoding="utf-8",
    )
    passages = load_passages(f)
    assert [p.text for p in passages] == [
        "Heavy rain hit the coast on Monday.\nPorts were shut.",
        "Officials said trade resumes Friday.",
    ]
    assert passages[0].source.title == "Storm closes ports"
    assert [p.source.paragraph for p in passages] == [1, 2]
    _slices_match(passages)


def test_plain_txt_one_paragraph_per_line_and_long_first_line(tmp_path: Path) -> None:
    f = tmp_path / "wire.txt"
    first = "The central bank raised its key interest rate by a quarter point on Tuesday, citing inflation. " * 2
    f.write_text(f"{first.strip()}\nMarkets fell after the decision.\n", encoding="utf-8")
    passages = load_passages(f)
    assert passages[0].source.title == "wire"  # first line too long to be a title
    assert [p.text for p in passages] == [first.strip(), "Markets fell after the decision."]
    _slices_match(passages)


def test_crlf_offsets_match_text_mode_read(tmp_path: Path) -> None:
    f = tmp_path / "dos.txt"
    f.write_bytes("Title here\r\n\r\nFirst para.\r\n\r\nSecond para é.\r\n".encode())
    passages = load_passages(f)
    assert [p.text for p in passages] == ["First para.", "Second para é."]
    _slices_match(passages)


def test_markdown_front_matter_headings_and_sections(tmp_path: Path) -> None:
    f = tmp_path / "note.md"
    f.write_text(
        "---\ntitle: Budget talks stall\npublisher: Daily Ledger\ndate: 2025-02-03\n---\n"
        "# Budget talks stall\n\nLawmakers failed to agree on Tuesday.\n\n"
        "## Reaction\n\nUnions called the delay *reckless*.\nThey plan a strike.\n\n```\ncode is skipped\n```\n",
        encoding="utf-8",
    )
    passages = load_passages(f)
    assert [p.text for p in passages] == [
        "Lawmakers failed to agree on Tuesday.",
        "Unions called the delay *reckless*.\nThey plan a strike.",
    ]
    assert passages[0].source.title == "Budget talks stall"
    assert passages[0].source.publisher == "Daily Ledger"
    assert passages[0].source.date == "2025-02-03"
    assert passages[1].source.section == "Reaction"
    _slices_match(passages)


def test_markdown_heading_gives_title_without_front_matter(tmp_path: Path) -> None:
    f = tmp_path / "plain.md"
    f.write_text("# Drought deepens\n\nReservoirs are at 20 percent.\n", encoding="utf-8")
    passages = load_passages(f)
    assert passages[0].source.title == "Drought deepens"
    _slices_match(passages)


def test_html_paragraphs_and_metadata(tmp_path: Path) -> None:
    f = tmp_path / "page.html"
    f.write_text(
        '<html><head><title>Rail strike ends</title><meta property="og:site_name" content="Metro News">'
        "<script>var x = 1;</script></head><body><nav><p>Home | World</p></nav>"
        "<h1>Rail strike ends</h1><p>Drivers returned to work &amp; trains ran.</p>"
        "<p>The union won a <b>5%</b> raise.</p></body></html>",
        encoding="utf-8",
    )
    passages = load_passages(f)
    assert [p.text for p in passages] == ["Drivers returned to work & trains ran.", "The union won a 5% raise."]
    assert passages[0].source.title == "Rail strike ends"
    assert passages[0].source.publisher == "Metro News"


def test_html_news_page_keeps_the_story_and_its_metadata(tmp_path: Path) -> None:
    f = tmp_path / "storm.html"
    f.write_text(
        "<html><head><title>Storm hits coast | Daily Planet</title>"
        '<meta property="og:site_name" content="Daily Planet"><meta property="article:section" content="Weather">'
        '</head><body><ul><li>Most read: Cat rescued</li></ul><article><h1>Storm hits coast</h1>'
        '<time datetime="2025-03-02T08:00:00Z">2 March</time>'
        "<p>A storm made landfall near Port Lewis.</p><h2>Evacuations</h2><p>The mayor, Jane Ortiz, ordered "
        "evacuations.</p></article><ul><li>Related: Floods last year</li></ul></body></html>",
        encoding="utf-8",
    )
    passages = load_passages(f)
    # Only the story: the page's lists outside <article> are not passages.
    assert [p.text for p in passages] == [
        "A storm made landfall near Port Lewis.",
        "The mayor, Jane Ortiz, ordered evacuations.",
    ]
    s = passages[0].source
    # The page title's site suffix is not part of the title; the h1 is not a section.
    assert (s.title, s.publisher, s.section) == ("Storm hits coast", "Daily Planet", "Weather")
    assert s.date == "2025-03-02T08:00:00Z"
    assert passages[1].source.section == "Evacuations"


def test_jsonl_articles_with_metadata(tmp_path: Path) -> None:
    f = tmp_path / "feed.jsonl"
    rows = [
        {"id": "a1", "title": "Quake", "publisher": "Wire", "section": "World", "url": "http://x/1",
         "date": "2025-01-05", "text": "A quake struck at dawn.\n\nNo injuries were reported."},
        {"text": "An article without metadata."},
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    passages = load_passages(f)
    assert [p.text for p in passages] == ["A quake struck at dawn.", "No injuries were reported.",
                                          "An article without metadata."]
    a = passages[0].source
    assert (a.doc_id, a.title, a.publisher, a.section, a.url, a.date) == (
        "a1", "Quake", "Wire", "World", "http://x/1", "2025-01-05")
    assert passages[1].source.paragraph == 2
    assert passages[2].source.doc_id == "feed#2"
    for p in passages[:2]:
        assert rows[0]["text"][p.source.char_start : p.source.char_end] == p.text  # type: ignore[index]


def test_long_paragraph_becomes_overlapping_sentence_windows(tmp_path: Path) -> None:
    sentences = [f"Sentence number {i} talks about the harbour project and its many delays." for i in range(30)]
    f = tmp_path / "long.txt"
    f.write_text("Harbour\n\n" + " ".join(sentences) + "\n", encoding="utf-8")
    passages = load_passages(f, max_tokens=60)
    assert len(passages) > 3
    assert all(p.source.paragraph == 1 for p in passages)
    # Nothing is cut off: every sentence is inside some window, windows overlap.
    for s in sentences:
        assert any(s in p.text for p in passages)
    for a, b in itertools.pairwise(passages):
        assert b.source.char_start < a.source.char_end
    _slices_match(passages)


def test_real_tokenizer_keeps_passages_within_the_model_window(real_embedder) -> None:  # type: ignore[no-untyped-def]
    passages = load_passages(SEED, max_tokens=real_embedder.max_tokens, count_tokens=real_embedder.count_tokens)
    assert all(real_embedder.count_tokens(p.text) <= 128 for p in passages)
    assert len(passages) > 7  # the last, long paragraph was split


def test_ids_are_stable_and_survive_insertions(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("T\n\nOne.\n\nTwo.\n\nOne.\n", encoding="utf-8")
    first = load_passages(f)
    assert [p.passage_id for p in first] == [p.passage_id for p in load_passages(f)]
    assert len({p.passage_id for p in first}) == 3  # repeated text still gets distinct ids
    f.write_text("T\n\nZero.\n\nOne.\n\nTwo.\n\nOne.\n", encoding="utf-8")
    second = load_passages(f)
    assert [p.passage_id for p in second[1:]] == [p.passage_id for p in first]


def test_same_file_name_in_two_roots_gets_distinct_doc_ids(tmp_path: Path) -> None:
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "same.txt").write_text("Title\n\nSame words.\n", encoding="utf-8")
    passages = load_passages([tmp_path / "x", tmp_path / "y"])
    assert len({p.source.doc_id for p in passages}) == 2
    assert len({p.passage_id for p in passages}) == 2


def test_folder_is_recursive_and_skips_hidden_and_other_files(tmp_path: Path) -> None:
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "n.txt").write_text("T\n\nNested text.\n", encoding="utf-8")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "h.txt").write_text("T\n\nHidden.\n", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    with pytest.warns(UserWarning, match=r"\.git: hidden folder, skipped"):
        passages = load_passages(tmp_path)
    assert [p.text for p in passages] == ["Nested text."]
    assert passages[0].source.doc_id == "deep/er/n"


def test_missing_path_and_empty_folder_raise(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_passages(tmp_path / "nope")
    with pytest.raises(InputError, match="holds no"):
        load_passages(tmp_path)
    with pytest.raises(InputError, match="no paths"):
        load_passages([])


def test_empty_binary_and_non_utf8_files_are_skipped_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(b"abc\x00\x01\x02")
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 au lait\n".encode("latin-1"))
    (tmp_path / "good.txt").write_text("Title\n\nReadable text.\n", encoding="utf-8")
    with pytest.warns(UserWarning) as caught:
        passages = load_passages(tmp_path)
    messages = " ".join(str(w.message) for w in caught)
    assert "empty.txt: empty" in messages and "binary.txt: looks binary" in messages
    assert "latin1.txt: not UTF-8" in messages
    assert [p.text for p in passages] == ["Readable text."]


def test_only_unreadable_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    with pytest.warns(UserWarning), pytest.raises(InputError, match="no text found"):
        load_passages(tmp_path)


def test_bad_jsonl_line_is_skipped_with_a_warning_naming_the_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "ok"}\n{"title": "no text"}\n{not json\n', encoding="utf-8")
    with pytest.warns(UserWarning) as caught:
        passages = load_passages(f)
    assert [p.text for p in passages] == ["ok"]
    messages = [str(w.message) for w in caught]
    assert any("bad.jsonl:2" in m and '"text"' in m for m in messages)
    assert any("bad.jsonl:3" in m and "not valid JSON" in m for m in messages)


def test_sentence_splitter_respects_abbreviations_and_initials() -> None:
    text = 'Dr. Smith met U.S. officials in Jan. 2020. J. R. Doe agreed! "Fine," he said. 3 people left.'
    spans = split_sentences(text)
    assert [text[a:b] for a, b in spans] == [
        "Dr. Smith met U.S. officials in Jan. 2020.",
        "J. R. Doe agreed!",
        '"Fine," he said.',
        "3 people left.",
    ]
