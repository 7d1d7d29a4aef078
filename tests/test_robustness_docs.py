"""Issue 14, the input side: what a file, a folder or a record can do to `qa index`, one test per item."""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path

import pytest

from qa.cli import main, printable
from qa.documents import (
    DEFAULT_MAX_TOKENS,
    MAX_CHARS_PER_TOKEN,
    Passage,
    approximate_token_count,
    load_passages,
)
from qa.errors import InputError
from qa.filters import Filters
from qa.index import build_index, load_index
from qa.parsers import parse_html
from tests.conftest import SEED, HashEmbedder


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught]


def _slices_file(passages: list[Passage], encoding: str = "utf-8") -> None:
    for p in passages:
        with open(p.source.path, encoding=encoding) as f:
            assert f.read()[p.source.char_start : p.source.char_end] == p.text


# -- item 3: an index folder (or a hidden folder) inside the corpus is not indexed


def test_index_folder_inside_the_corpus_is_skipped_with_a_warning(seed_dir: Path) -> None:
    inside = seed_dir / "idx"
    first = build_index([seed_dir], inside, model=HashEmbedder(), progress=False)
    (seed_dir / ".git").mkdir()
    (seed_dir / ".git" / "HEAD.txt").write_text("ref: refs/heads/main\n", encoding="utf-8")
    with pytest.warns(UserWarning) as caught:
        again = build_index([seed_dir], inside, model=HashEmbedder(), progress=False)
    assert len(again) == len(first) == 8  # passages.jsonl was not read as articles
    assert again.last_update is not None and again.last_update.added == 0
    messages = _messages(caught)
    assert any(m.startswith(f"{inside}: a qa index folder, skipped") for m in messages)
    assert any(m.startswith(f"{seed_dir / '.git'}: hidden folder, skipped") for m in messages)
    # A folder that merely holds a file called manifest.json is still a corpus.
    (seed_dir / "notes").mkdir()
    (seed_dir / "notes" / "manifest.json").write_text('{"name": "not an index"}', encoding="utf-8")
    (seed_dir / "notes" / "a.txt").write_text("Notes\n\nThe river flooded the valley.\n", encoding="utf-8")
    with pytest.warns(UserWarning):
        assert any(p.source.doc_id == "notes/a" for p in load_passages(seed_dir))


# -- item 4: HTML through a parser that follows the standard


def test_html_omitted_end_tags_keep_every_paragraph(tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    page.write_text("<html><body><p>First.<p>Second.</body>", encoding="utf-8")
    assert [p.text for p in load_passages(page)] == ["First.", "Second."]
    page.write_text("<ul><li>One item<li>Last item</ul><blockquote>Quoted", encoding="utf-8")
    assert [p.text for p in load_passages(page)] == ["One item", "Last item", "Quoted"]


TAG_SOUP = [
    "<p>First.<p>Second.</body>",
    "<ul><li>a<li>b<li>c</ul>",
    "<p>one<div>block</div>two",
    "<article><h2>Part<p>x &amp; y<p>z</article><p>outside",
    "<table><tr><td>cell one<td>cell two</table>",
    "<p>before<script>var a = '<p>not text';</script>after",
    "<main><p>story</main><aside><p>teaser</aside>",
    "<li>item with <b>bold <i>nested</b> text</i> after",
    "<p>line<br>break<br/>again",
    "<?xml version='1.0' encoding='utf-8'?><html><body><p>xhtml &amp; text</p></body></html>",
    "<blockquote><p>quoted para<p>second quoted</blockquote>",
    "<p>a<p>b</p></p>c",
    "<nav><ul><li>menu</ul></nav><p>body text",
]


def _blocks(root: object) -> list[tuple[str, str, bool]]:
    from lxml import etree

    from qa.parsers import _HTMLText

    collector = _HTMLText()
    for event, element in etree.iterwalk(root, events=("start", "end")):
        if not isinstance(element.tag, str):
            continue
        tag = element.tag.split("}")[-1].lower()  # html5lib's tree is namespaced
        if event == "start":
            collector.handle_starttag(tag, dict(element.attrib))
            if element.text:
                collector.handle_data(element.text)
        else:
            collector.handle_endtag(tag)
            if element.tail:
                collector.handle_data(element.tail)
    return collector.blocks


@pytest.mark.parametrize("page", TAG_SOUP)
def test_html_blocks_match_the_html5_reference_parser(page: str) -> None:
    """lxml's parser (fast) gives the blocks html5lib (the HTML standard's algorithm, slow) gives."""
    import html5lib

    from qa.parsers import _html_events, _HTMLText

    ours = _HTMLText()
    _html_events(page, ours)
    reference = html5lib.parse(page, treebuilder="lxml")
    assert ours.blocks == _blocks(reference)


def test_html_nested_past_the_parser_limit_says_so(tmp_path: Path) -> None:
    page = tmp_path / "deep.html"
    page.write_text("<p>Shallow text." + "<div>" * 500 + "<p>Deep text." + "<div>" * 5000 + "<p>Too deep.",
                    encoding="utf-8")
    with pytest.warns(UserWarning, match=r"deep.html: the HTML parser stopped at a limit \(Excessive depth"):
        passages = load_passages(page)
    assert [p.text for p in passages] == ["Shallow text.", "Deep text."]


def test_html_keeps_scoping_metadata_and_its_offset_contract() -> None:
    page = """<html><head><title>Storm hits coast | Daily Planet</title>
    <meta property="og:site_name" content="Daily Planet"><meta property="article:section" content="Weather">
    <meta property="article:published_time" content="2025-01-21T08:00:00Z"></head>
    <body><nav><p>Home<p>World</nav><article><h1>Storm hits coast<p>Winds reached 150 km/h.
    <h2>Damage</h2><p>Roofs were torn off.<li>Power cut</article><footer><p>(c) Daily Planet</footer></body></html>"""
    article = parse_html(page, "/x/storm.html", "storm")
    assert article.title == "Storm hits coast"
    assert (article.publisher, article.section, article.date) == ("Daily Planet", "Weather", "2025-01-21T08:00:00Z")
    texts = [article.text[a:b] for a, b in article.paragraphs]
    assert texts == ["Winds reached 150 km/h.", "Roofs were torn off.", "Power cut"]
    assert article.sections == ["Weather", "Damage", "Damage"]
    # The documented contract: offsets index the blocks' text joined by blank lines.
    assert article.text == "\n\n".join(texts)


def test_html_parsing_is_fast_enough(tmp_path: Path) -> None:
    page = tmp_path / "big.html"
    para = "<p>The quick brown fox &amp; friends jumped over <a href='#'>the lazy</a> dog, said Dr. Smith.\n"
    page.write_text("<html><body><article>" + para * 20_000 + "</article></body></html>", encoding="utf-8")
    started = time.perf_counter()
    passages = load_passages(page)
    assert len(passages) == 20_000
    assert time.perf_counter() - started < 20  # 1.8 MB of HTML; about 1 s on an idle core


# -- item 5: a huge one-line file, a sentence without punctuation, a word longer than a window


def _window_ok(p: Passage, count=approximate_token_count) -> bool:  # type: ignore[no-untyped-def]
    return count(p.text) <= DEFAULT_MAX_TOKENS and len(p.text) <= DEFAULT_MAX_TOKENS * MAX_CHARS_PER_TOKEN


def _timed_passages(path: Path) -> tuple[float, list[Passage]]:
    started = time.perf_counter()
    passages = load_passages(path)
    return time.perf_counter() - started, passages


def test_one_line_file_parses_in_linear_time_and_every_window_fits(tmp_path: Path) -> None:
    sentence = "The committee approved the budget for the new bridge after a long debate. "
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text(sentence * 4_000, encoding="utf-8")  # 0.3 MB, one line
    large.write_text(sentence * 32_000, encoding="utf-8")  # 2.4 MB, one line
    t_small, _ = _timed_passages(small)
    t_large, passages = _timed_passages(large)
    assert all(_window_ok(p) for p in passages)
    _slices_file(passages[:50] + passages[-50:])
    assert t_large < 8 * t_small * 2.0 + 1.0  # 8x the text, at most ~2x the per-MB time
    # The same words without sentence punctuation are cut at spaces, not 7x slower.
    bare = tmp_path / "bare.txt"
    bare.write_text(sentence.replace(". ", " ") * 32_000, encoding="utf-8")
    t_bare, bare_passages = _timed_passages(bare)
    assert all(_window_ok(p) for p in bare_passages)
    assert t_bare < 2.0 * t_large + 0.5


def test_a_word_longer_than_a_window_is_split_not_cut(tmp_path: Path) -> None:
    f = tmp_path / "blob.txt"
    word = ("abcdefghij" * 20_000)[:200_000]
    f.write_text(f"Blob\n\n{word}\n", encoding="utf-8")
    passages = load_passages(f)
    pieces = [p for p in passages if p.source.paragraph == 1]
    assert "".join(p.text for p in pieces) == word  # every character is in exactly one window
    assert all(_window_ok(p) for p in pieces)
    _slices_file(passages)


@pytest.mark.slow
def test_real_tokenizer_windows_of_a_long_word_and_a_long_sentence_fit(real_embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "long.txt"
    text = "x" * 50_000 + " " + "https://example.com/a/b?c=d&e=f" * 500 + " " + "and so it went on " * 3_000
    f.write_text(f"Title\n\n{text}\n", encoding="utf-8")
    passages = load_passages(f, max_tokens=real_embedder.max_tokens, count_tokens=real_embedder.count_tokens)
    assert all(real_embedder.count_tokens(p.text) <= real_embedder.max_tokens for p in passages)
    assert all(len(p.text) <= real_embedder.max_tokens * MAX_CHARS_PER_TOKEN for p in passages)
    _slices_file(passages)


# -- item 6: byte order marks


def test_utf8_bom_in_every_format(tmp_path: Path) -> None:
    bom = "\ufeff"
    (tmp_path / "a.jsonl").write_text(bom + json.dumps({"id": "j1", "text": "Jsonl text."}) + "\n", encoding="utf-8")
    (tmp_path / "b.md").write_text(bom + "---\ntitle: Front\npublisher: Wire\n---\nMarkdown body.\n", encoding="utf-8")
    seed = SEED.read_text(encoding="utf-8")
    (tmp_path / "c.txt").write_text(bom + seed, encoding="utf-8")
    (tmp_path / "d.html").write_text(bom + "<p>Html text.</p>", encoding="utf-8")
    passages = load_passages(tmp_path)
    by_doc = {}
    for p in passages:
        by_doc.setdefault(p.source.doc_id, []).append(p)
    assert [p.text for p in by_doc["j1"]] == ["Jsonl text."]
    md = by_doc["b"]
    assert [p.text for p in md] == ["Markdown body."] and md[0].source.title == "Front"
    assert md[0].source.publisher == "Wire"
    c = by_doc["c"]
    plain = load_passages(SEED)
    assert c[0].source.publisher == plain[0].source.publisher == "i24NEWS"
    assert [p.text for p in c] == [p.text for p in plain]  # header lines are not passages
    assert [p.text for p in by_doc["d"]] == ["Html text."]
    _slices_file(md + c)  # the BOM counts as one character, as open(encoding="utf-8") reads it


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le"])
def test_utf16_and_utf32_with_a_bom_are_decoded(tmp_path: Path, encoding: str) -> None:
    f = tmp_path / "wide.txt"
    text = "Wide file\n\nThe first paragraph.\r\n\r\nThe second paragraph, café.\n"
    f.write_bytes("\ufeff".encode(encoding) + text.encode(encoding))
    passages = load_passages(f)
    assert [p.text for p in passages] == ["The first paragraph.", "The second paragraph, café."]
    assert passages[0].source.title == "Wide file"
    _slices_file(passages, encoding="utf-16" if "16" in encoding else "utf-32")


def test_utf16_without_a_bom_names_the_encodings_it_reads(tmp_path: Path) -> None:
    f = tmp_path / "nobom.txt"
    f.write_bytes("Some text here.\n".encode("utf-16-le"))
    (tmp_path / "ok.txt").write_text("Readable\n\nA fine paragraph.\n", encoding="utf-8")
    with pytest.warns(UserWarning, match=r"nobom.txt: looks binary, skipped \(text must be UTF-8, or UTF-16 with a"):
        load_passages(tmp_path)


# -- item 7: one bad record never aborts a run


def test_bad_records_are_skipped_with_a_warning_naming_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    lines = [
        json.dumps({"id": "good1", "text": "The first good article."}),
        "[" * 100_000 + "]" * 100_000,  # RecursionError inside json
        '{"id": "s1", "text": "lone \\ud800 surrogate"}',
        '{"id": "s2", "text": "fine", "title": "lone \\udfff"}',
        json.dumps({"id": "good2", "text": "The second good article."}),
    ]
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    folder = tmp_path / "index"
    with pytest.warns(UserWarning) as caught:
        index = build_index([f], folder, model=HashEmbedder(), progress=False)
    assert sorted({p.source.doc_id for p in index.passages}) == ["good1", "good2"]
    messages = _messages(caught)
    assert any(m.startswith(f"{f}:2: JSON nested too deeply") for m in messages)
    assert any(m.startswith(f'{f}:3: "text" holds an unpaired surrogate') for m in messages)
    assert any(m.startswith(f'{f}:4: "title" holds an unpaired surrogate') for m in messages)
    assert len(load_index(folder, model=HashEmbedder())) == len(index)  # written whole and readable


@pytest.mark.slow
def test_cli_index_of_only_bad_files_fails_in_one_line_after_its_warnings(
    tmp_path: Path, real_embedder, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "bad.jsonl").write_text("{" * 100_000 + "\n" + '{"text": "\\udc00"}\n', encoding="utf-8")
    (corpus / "front.md").write_text("---\ntitle: Only front matter\n---\n", encoding="utf-8")
    (corpus / "script.html").write_text("<script>document.write('hi')</script>", encoding="utf-8")
    capsys.readouterr()
    assert main(["index", str(corpus), "--index", str(tmp_path / "index"), "-q"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith("qa: error: no text found in") and "see warnings above" in err[-1]
    warned = err[:-1]
    assert all(line.startswith("qa: warning: ") for line in warned) and len(warned) == 4
    assert any(f"{corpus / 'bad.jsonl'}:1: not valid JSON" in line for line in warned)
    assert any(f"{corpus / 'bad.jsonl'}:2: \"text\" holds an unpaired surrogate" in line for line in warned)
    assert any(f"{corpus / 'front.md'}: no text to index" in line for line in warned)
    assert any(f"{corpus / 'script.html'}: no text to index" in line for line in warned)
    assert not (tmp_path / "index").exists()  # never a half-written index


# -- item 12: control characters in people's output


def test_search_and_ask_escape_control_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import qa.cli

    corpus = tmp_path / "c"
    corpus.mkdir()
    evil = "Evil\x1b]0;pwned\x07 title"
    (corpus / "a.jsonl").write_text(json.dumps({
        "id": "a", "title": evil, "publisher": "Bad\x9bPub",
        "text": "Azerbaijan mediated.\x1b[2J The screen is cleared\x08\x08 here.",
    }) + "\n", encoding="utf-8")
    index = build_index([corpus], tmp_path / "index", model=HashEmbedder(), progress=False)
    monkeypatch.setattr(qa.cli, "_open_index", lambda args: index)
    assert main(["search", "Azerbaijan mediated", "--index", "x"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out and "\x08" not in out
    assert "Evil\\x1b]0;pwned\\x07 title" in out and "mediated.\\x1b[2J" in out and "Bad\\x9bPub" in out
    assert main(["search", "Azerbaijan mediated", "--index", "x", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["source"]["title"] == evil  # JSON stays exact (json.dumps escapes controls itself)
    assert main(["ask", "who mediated?", "--index", "x", "--min-confidence", "0"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[2J" in out
    assert printable("tab\tand\nnewline\r\x7f") == "tab\tand\nnewline\\x0d\\x7f"


# -- item 13: paths resolve the same from any working directory


def test_paths_resolve_the_same_from_anywhere(
    tmp_path: Path, seed_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (seed_dir / "world").mkdir()
    (seed_dir / "world" / "b.txt").write_text("World news\n\nThe river flooded the valley.\n", encoding="utf-8")
    work, elsewhere = tmp_path, tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    index = build_index(["seeds"], "index", model=HashEmbedder(), progress=False)
    stored = {p.source.path for p in index.passages}
    assert stored == {(seed_dir / SEED.name).resolve().as_posix(), (seed_dir / "world/b.txt").resolve().as_posix()}
    assert index.manifest["sources"] == [seed_dir.resolve().as_posix()]
    # Displayed relative to the working directory when under it.
    import qa.cli

    monkeypatch.setattr(qa.cli, "_open_index", lambda args: index)
    assert main(["search", "river flooded", "-k", "1", "--index", "index"]) == 0
    assert "\n   seeds/world/b.txt:" in capsys.readouterr().out

    monkeypatch.chdir(elsewhere)
    again = build_index([seed_dir], work / "index", model=HashEmbedder(), progress=False)
    assert again.last_update is not None
    assert (again.last_update.updated, again.last_update.unchanged) == (0, 2)  # nothing "updated" from another cwd
    assert len(again.search("river flooded", k=3, filters=Filters(path_prefix=str(seed_dir / "world")))) == 1
    assert len(again.search("river flooded", k=3, filters=Filters(path_prefix="../seeds/world/"))) == 1
    assert again.search("river", k=3, filters=Filters(path_prefix=str(seed_dir) + "/wor"))
    loaded = load_index(work / "index", model=HashEmbedder())
    assert loaded.update().unchanged == 2  # the recorded sources are absolute too
    assert loaded.remove(str(seed_dir / "world" / "b.txt")).removed == 1
    assert loaded.remove("../seeds").removed == 1 and len(loaded) == 0


def test_old_relative_paths_still_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from qa.documents import Source

    monkeypatch.chdir(tmp_path)
    source = Source("a", "T", "P", "S", "seeds/world/a.txt", 1, 0, 1)
    assert Filters(path_prefix="seeds/world").matches(source)
    absolute = replace(source, path=str(tmp_path / "seeds/world/a.txt"))
    assert Filters(path_prefix=str(tmp_path / "seeds" / "world")).matches(absolute)
    assert not Filters(path_prefix="seeds/world/").matches(replace(source, path="seeds/worldwide/a.txt"))


# -- item 15: files that give no text are skipped with a warning


def test_files_without_text_are_skipped_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "script.html").write_text("<html><head><script>alert(1)</script></head><body><nav><p>Home</nav>"
                                          "</body></html>", encoding="utf-8")
    (tmp_path / "front.md").write_text("---\ntitle: Only front matter\n---\n", encoding="utf-8")
    (tmp_path / "heading.md").write_text("# Just a heading\n", encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught, pytest.raises(InputError, match="see warnings above"):
        warnings.simplefilter("always")
        load_passages(tmp_path)
    messages = _messages(caught)
    assert any(m.startswith(f"{tmp_path / 'script.html'}: no text to index (markup, scripts") for m in messages)
    assert any(m.startswith(f"{tmp_path / 'front.md'}: no text to index") for m in messages)
    assert any(m.startswith(f"{tmp_path / 'heading.md'}: no text to index") for m in messages)
    shutil.copy(SEED, tmp_path / SEED.name)
    with pytest.warns(UserWarning, match="no text to index"):
        assert len(load_passages(tmp_path)) == 8


@pytest.mark.slow
def test_real_count_tokens_is_exact_and_never_capped_by_truncation(real_embedder) -> None:  # type: ignore[no-untyped-def]
    from qa.embedding import get_embedder

    reference = get_embedder(backend="torch")
    tokenizer = reference.model.tokenizer  # type: ignore[attr-defined]
    texts = ["Turkey-Israel", "Hikmet Hajiyev's", "x" * 5_000, "héllo wörld 東京 🙂 " * 60, SEED.read_text("utf-8")]
    for embedder in (real_embedder, reference):
        embedder.encode(["a long text " * 200])  # leaves truncation at 256 on a shared tokenizer
        for text in texts:
            expected = len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
            assert embedder.count_tokens(text) == expected
        assert embedder.count_tokens(SEED.read_text("utf-8")) > 256
