"""Fuzzing the document parsers (every format) with hypothesis.

Whatever the bytes of a file, loading it either gives passages or raises `qa.errors.QAError`
(warnings allowed), and every passage's offsets slice its text out of what the format
promises: the file as ``open(path, encoding=...)`` reads it for ``.txt``/``.md``, the
record's ``text`` for ``.jsonl``, the extracted text for HTML.

The default profile keeps `make test` quick (50 examples a test, bounded per example);
``QA_FUZZ_PROFILE=long`` runs 2,000 examples a test:

    QA_FUZZ_PROFILE=long pytest tests/test_fuzz_documents.py --hypothesis-show-statistics
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.documents import (
    DEFAULT_MAX_TOKENS,
    MAX_CHARS_PER_TOKEN,
    Passage,
    approximate_token_count,
    load_passages,
)
from qa.errors import QAError
from qa.parsers import parse_html

settings.register_profile(
    "default",
    max_examples=50,
    deadline=5_000,  # ms per example: a shared 2-core machine stalls now and then
    database=None,  # no .hypothesis folder in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long", parent=settings.get_profile("default"), max_examples=2_000, deadline=None
)
FUZZ = settings.get_profile(os.environ.get("QA_FUZZ_PROFILE", "default"))

# Characters that stress parsers: controls, BOM, separators Python's splitlines knows,
# surrogates are not here (they cannot be in a file; JSON escapes of them are, below).
awkward = st.sampled_from(
    list("\x00\x01\x07\x0b\x0c\x1b\x1c\x1e\x7f\x85\x9b\u2028\u2029\ufeff\ufffe\r\n\t -#<>&;\"'.!?")
)
text = st.text(st.one_of(st.characters(exclude_categories=("Cs",)), awkward), max_size=400)
words = st.text(st.sampled_from(list("abcdefghij ABC.!?,;:-\n")), max_size=200)
line_words = st.text(st.sampled_from(list("abcdefghij ABC.!?,;:-")), max_size=40)


@contextmanager
def _file(name: str, data: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        yield path


def _load(path: Path) -> list[Passage]:
    """Passages, or [] when qa refused the input with its own error; anything else fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return load_passages(path)
        except QAError:
            return []


def _check_window(p: Passage) -> None:
    assert p.text and p.text == p.text.strip()
    assert len(p.text) <= DEFAULT_MAX_TOKENS * MAX_CHARS_PER_TOKEN
    assert approximate_token_count(p.text) <= DEFAULT_MAX_TOKENS


def _check_file_offsets(passages: list[Passage], encoding: str = "utf-8") -> None:
    for p in passages:
        with open(p.source.path, encoding=encoding) as f:
            assert f.read()[p.source.char_start : p.source.char_end] == p.text
        _check_window(p)


@FUZZ
@given(st.binary(max_size=600), st.sampled_from([".txt", ".md", ".html", ".jsonl"]))
def test_any_bytes_in_any_format_give_passages_or_a_qa_error(data: bytes, suffix: str) -> None:
    with _file("f" + suffix, data) as path:
        passages = _load(path)
        if suffix in (".txt", ".md") and passages and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
            _check_file_offsets(passages)


@FUZZ
@given(text, st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"]), st.booleans())
def test_plain_text_offsets_slice_the_file(body: str, encoding: str, crlf: bool) -> None:
    if crlf:
        body = body.replace("\n", "\r\n")
    with _file("a.txt", body.encode(encoding)) as path:
        passages = _load(path)
        # utf-8-sig wrote a BOM that open(encoding="utf-8") reads as U+FEFF; the offsets count it.
        _check_file_offsets(passages, "utf-8" if encoding.startswith("utf-8") else encoding)


@FUZZ
@given(
    st.lists(st.text(st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=30), max_size=4),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=60),
    st.lists(words, max_size=6),
    st.booleans(),
)
def test_seed_format_offsets_slice_the_file(header: list[str], title: str, paragraphs: list[str], bom: bool) -> None:
    body = ("\ufeff" if bom else "") + "".join(f"- {h}\n" for h in header) + title + "\n" + "\n".join(paragraphs)
    with _file("seed.txt", body.encode("utf-8")) as path:
        passages = _load(path)
        _check_file_offsets(passages)
        if header and passages:
            assert passages[0].source.publisher == header[0].strip()


@FUZZ
@given(
    st.booleans(),
    st.dictionaries(st.sampled_from(["title", "publisher", "section", "date", "url", "x"]), line_words, max_size=4),
    st.lists(st.one_of(words, st.sampled_from(["# Title", "## Part", "```", "~~~", "", "---", "#"]), text),
             max_size=12),
)
def test_markdown_offsets_slice_the_file(bom: bool, front: dict[str, str], lines: list[str]) -> None:
    head = "---\n" + "".join(f"{k}: {v}\n" for k, v in front.items()) + "---\n"
    body = ("\ufeff" if bom else "") + (head if front else "") + "\n".join(lines)
    with _file("a.md", body.encode("utf-8")) as path:
        passages = _load(path)
        _check_file_offsets(passages)
        if front.get("title", "").strip() and passages:
            assert passages[0].source.title == front["title"].strip()


TAGS = ["p", "li", "ul", "blockquote", "h1", "h2", "td", "pre", "div", "span", "article", "main", "nav", "script",
        "style", "title", "head", "body", "html", "br", "time", "template", "table", "tr", "b"]


@st.composite
def html_pages(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 30))):
        kind = draw(st.integers(0, 5))
        tag = draw(st.sampled_from(TAGS))
        if kind == 0:
            parts.append(f"<{tag}>")
        elif kind == 1:
            parts.append(f"</{tag}>")
        elif kind == 2:
            key = draw(st.sampled_from(["og:title", "og:site_name", "article:section", "article:published_time"]))
            parts.append(f'<meta property="{key}" content="{draw(words)}">')
        elif kind == 3:
            parts.append(draw(st.sampled_from(["&amp;", "&#0;", "&#xd800;", "&bogus;", "<!--", "-->", "<![CDATA[",
                                               "<?xml version='1.0' encoding='utf-8'?>", "<!DOCTYPE html>", "<"])))
        else:
            parts.append(draw(text))
    return "".join(parts)


@FUZZ
@given(html_pages(), st.booleans())
def test_html_offsets_slice_the_extracted_text(page: str, bom: bool) -> None:
    article = parse_html(("\ufeff" if bom else "") + page, "/x/a.html", "a")
    # The contract (qa.documents.Source): blocks' text joined by blank lines.
    assert article.text == "\n\n".join(article.text[a:b] for a, b in article.paragraphs)
    with _file("a.html", page.encode("utf-8")) as path:
        passages = _load(path)
        for p in passages:
            assert article.text[p.source.char_start : p.source.char_end] == p.text
            _check_window(p)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def jsonl_lines(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 4))
    if kind == 0:  # a well-formed article
        record = {"text": draw(text)}
        for key in draw(st.lists(st.sampled_from(["id", "title", "publisher", "section", "url", "date"]), max_size=3)):
            record[key] = draw(json_values)
        return json.dumps(record, ensure_ascii=draw(st.booleans()))
    if kind == 1:  # any JSON value
        return json.dumps(draw(json_values))
    if kind == 2:  # a lone surrogate, escaped
        field = draw(st.sampled_from(["text", "title", "id", "publisher"]))
        record = {"text": "ok", field: "x" + chr(draw(st.integers(0xD800, 0xDFFF)))}
        return json.dumps(record)  # ensure_ascii writes it as \\udXXX
    if kind == 3:  # deep nesting
        depth = draw(st.integers(1, 50_000))
        return '{"text": "t", "x": ' + "[" * depth + "]" * draw(st.sampled_from([0, depth])) + "}"
    return draw(text)  # not JSON


@FUZZ
@given(st.lists(jsonl_lines(), max_size=8), st.booleans())
def test_jsonl_offsets_slice_the_record_text(lines: list[str], bom: bool) -> None:
    body = ("\ufeff" if bom else "") + "\n".join(lines)
    with _file("a.jsonl", body.encode("utf-8", "surrogatepass")) as path:
        passages = _load(path)
        records = {}
        for number, line in enumerate(body.splitlines(), start=1):
            try:
                records[number] = json.loads(line.lstrip("\ufeff"))
            except (ValueError, RecursionError):
                continue
        texts = [r["text"] for r in records.values() if isinstance(r, dict) and isinstance(r.get("text"), str)]
        for p in passages:
            assert any(t[p.source.char_start : p.source.char_end] == p.text for t in texts)
            p.text.encode("utf-8")
            p.source.title.encode("utf-8")
            _check_window(p)


@FUZZ
@given(st.lists(st.text(st.sampled_from(list("ab .,!?\n")), max_size=40) | st.just("x" * 5000), max_size=5))
def test_long_and_unpunctuated_paragraphs_become_windows_that_fit(chunks: list[str]) -> None:
    with _file("long.txt", ("Title\n\n" + " ".join(c * 60 for c in chunks)).encode("utf-8")) as path:
        _check_file_offsets(_load(path))
