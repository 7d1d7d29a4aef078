"""Parsers: the text of one file, in one of the supported formats, into `Article`s.

Each parser finds an article's paragraphs as (start, end) offsets into the text it
returns, and the metadata its format carries. Cutting paragraphs into passages, and
reading files off disk, is `qa.documents`'s job.

* ``.txt`` (`parse_txt`) — either the seed format (leading ``- `` header lines give
  publisher, section and breadcrumb; then the title line; then one paragraph per line),
  or plain text (paragraphs separated by blank lines, or one per line when there are none).
* ``.md`` (`parse_markdown`) — YAML-ish front matter (``title:``, ``publisher:``,
  ``section:``, ``date:``, ``url:``) is read, headings give the title and the section.
* ``.html`` / ``.htm`` (`parse_html`) — ``<p>``, ``<li>``, ``<blockquote>`` and heading
  text, parsed by lxml's HTML parser (end tags may be omitted, as HTML allows); page
  metadata from ``<meta>``, ``<title>`` and ``<time>``.
* ``.jsonl`` (`parse_jsonl`) — one article per line: ``text`` plus optional ``id``,
  ``title``, ``publisher``, ``section``, ``url``, ``date``.

Input the parsers cannot use (a JSONL line that is not a record, an HTML page past the
parser's limits) is skipped with a warning that names it.
"""

from __future__ import annotations

import html
import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa.sentences import strip_span

# A first line longer than this is a paragraph, not a title.
MAX_TITLE_CHARS = 150


@dataclass
class Article:
    """An article as parsed from one file or JSONL line, before splitting.

    Not frozen: it is a step on the way to `qa.documents.Passage`s, filled in as it is
    built (the JSONL parser sets ``paragraphs`` once a record checks out, the loader ``where``).
    """

    doc_id: str
    path: str
    text: str  # the text that offsets refer to
    paragraphs: list[tuple[int, int]]  # (start, end) into ``text``
    title: str = ""
    publisher: str = ""
    section: str = ""
    url: str = ""
    date: str = ""
    # Optional per-paragraph section (markdown headings); same length as paragraphs.
    sections: list[str] = field(default_factory=list)
    # How warnings name it: the path, or path:line for a JSONL record.
    where: str = ""


def _paragraph_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Paragraphs separated by blank lines; one per line if there are none."""
    end = len(text) if end is None else end
    body = text[start:end]
    separator = r"\n[ \t]*\n" if re.search(r"\n[ \t]*\n", body.strip()) else r"\n"
    spans: list[tuple[int, int]] = []
    cursor = start
    for match in re.finditer(separator, body):
        spans.append(strip_span(text, cursor, start + match.start()))
        cursor = start + match.end()
    spans.append(strip_span(text, cursor, end))
    return [s for s in spans if s[1] > s[0]]


def _line_spans(text: str) -> list[tuple[int, int]]:
    """Every line of ``text`` as a span, without its line break (blank lines included, a leading BOM not)."""
    spans, cursor = [], 0
    for line in text.splitlines(keepends=True):
        # A byte order mark is not part of the first line's content (a seed header "- " after it).
        skip = 1 if cursor == 0 and line.startswith("\ufeff") else 0
        spans.append((cursor + skip, cursor + len(line.rstrip("\r\n"))))
        cursor += len(line)
    return spans


def lines_within(text: str, span: tuple[int, int]) -> Iterator[tuple[int, int]]:
    """Line spans inside ``text[span[0]:span[1]]``."""
    cursor = span[0]
    while cursor < span[1]:
        newline = text.find("\n", cursor, span[1])
        stop = span[1] if newline < 0 else newline
        yield cursor, stop
        cursor = stop + 1


def parse_txt(text: str, path: str, doc_id: str) -> Article:
    """A ``.txt`` article: the seed format when it opens with ``- `` header lines, else plain text.

    Plain text takes a short first line that does not end like a sentence as its title,
    else the file's name.

    Args:
        text: the file's text (offsets index it).
        path: the file's path, as stored in each passage's source.
        doc_id: the document id.

    Returns:
        The article, its paragraphs as offsets into ``text``.
    """
    lines = _line_spans(text)
    nonblank = [(a, b) for a, b in lines if text[a:b].strip()]
    if nonblank and text[nonblank[0][0] : nonblank[0][1]].startswith("- "):
        return _parse_seed(text, path, doc_id, nonblank)
    paragraphs = _paragraph_spans(text)
    title = Path(path).stem
    if paragraphs:
        first_line = strip_span(text, *next(iter(lines_within(text, paragraphs[0]))))
        candidate = text[first_line[0] : first_line[1]]
        if len(candidate) <= MAX_TITLE_CHARS and not candidate.endswith((".", "?", "!", ":", ";", ",")):
            title = candidate
            rest = strip_span(text, first_line[1], paragraphs[0][1])
            paragraphs = ([rest] if rest[1] > rest[0] else []) + paragraphs[1:]
    return Article(doc_id=doc_id, path=path, text=text, paragraphs=paragraphs, title=title)


def _parse_seed(text: str, path: str, doc_id: str, lines: list[tuple[int, int]]) -> Article:
    header: list[str] = []
    i = 0
    while i < len(lines) and text[lines[i][0] : lines[i][1]].startswith("- "):
        header.append(text[lines[i][0] + 2 : lines[i][1]].strip())
        i += 1
    title = text[lines[i][0] : lines[i][1]].strip() if i < len(lines) else ""
    breadcrumb = header[2] if len(header) > 2 else ""
    return Article(
        doc_id=doc_id,
        path=path,
        text=text,
        paragraphs=[strip_span(text, a, b) for a, b in lines[i + 1 :]],
        title=title or breadcrumb or Path(path).stem,
        publisher=header[0] if header else "",
        section=header[1] if len(header) > 1 else "",
    )


_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")


def parse_markdown(text: str, path: str, doc_id: str) -> Article:
    """A Markdown article: front matter for metadata, headings for the title and sections.

    Headings and fenced code are not paragraphs; blank lines separate paragraphs.

    Args:
        text: the file's text (offsets index it).
        path: the file's path, as stored in each passage's source.
        doc_id: the document id.

    Returns:
        The article, with one section per paragraph (the heading above it).
    """
    meta: dict[str, str] = {}
    body_start = 0
    front = _FRONT_MATTER.match(text)
    if front:
        for line in front.group(1).splitlines():
            key, sep, value = line.partition(":")
            if sep:
                meta[key.strip().lower()] = value.strip().strip("\"'")
        body_start = front.end()
    title = meta.get("title", "")
    section = meta.get("section", "")
    paragraphs: list[tuple[int, int]] = []
    sections: list[str] = []
    # Headings and fenced code are not passages; blank lines separate paragraphs.
    block: list[tuple[int, int]] = []
    in_fence = False

    def flush() -> None:
        if block:
            span = strip_span(text, block[0][0], block[-1][1])
            if span[1] > span[0]:
                paragraphs.append(span)
                sections.append(section)
            block.clear()

    for a, b in lines_within(text, (body_start, len(text))):
        line = text[a:b].rstrip("\r")
        if line.lstrip().startswith(("```", "~~~")):
            flush()
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        heading = _HEADING.match(line)
        if heading:
            flush()
            level, words = len(heading.group(1)), heading.group(2).strip()
            if not title:
                title = words
            elif level >= 2 or words != title:
                section = words
            continue
        if not line.strip():
            flush()
        else:
            block.append((a, a + len(line)))
    flush()
    return Article(
        doc_id=doc_id,
        path=path,
        text=text,
        paragraphs=paragraphs,
        sections=sections,
        title=title or Path(path).stem,
        publisher=meta.get("publisher", meta.get("source", "")),
        section=meta.get("section", ""),
        url=meta.get("url", ""),
        date=meta.get("date", ""),
    )


class _HTMLText:
    """Collects the text of block elements; ignores scripts, styles and navigation.

    Blocks inside ``<article>`` or ``<main>`` are marked, so that a news page's story can
    be kept apart from its "related stories" lists and teasers. Driven by `_html_events`
    over the tree an HTML parser built, so omitted end tags (``<p>One<p>Two``) close
    where the HTML standard says, not where a hand-rolled tag stack guesses.
    """

    BLOCKS = frozenset({"p", "li", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "td", "pre"})
    SKIP = frozenset({"script", "style", "nav", "footer", "header", "aside", "noscript", "template", "form"})
    MAIN = frozenset({"article", "main"})

    def __init__(self) -> None:
        self.blocks: list[tuple[str, str, bool]] = []  # (tag, text, inside <article>/<main>)
        self.title = ""
        self.meta: dict[str, str] = {}
        self.times: list[str] = []  # datetime attributes of <time> elements, in order
        self._stack: list[str] = []
        self._buffer: list[str] = []
        self._skip = 0
        self._main = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: dict[str, str]) -> None:
        if tag == "meta":
            key = attrs.get("property") or attrs.get("name") or attrs.get("itemprop") or ""
            if key and attrs.get("content"):
                self.meta.setdefault(key.lower(), attrs["content"])
        elif tag == "time":
            when = attrs.get("datetime")
            if when:
                self.times.append(when)
        if tag in self.SKIP:
            self._skip += 1
        elif tag in self.MAIN:
            self._main += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self.BLOCKS and not self._skip:
            self._flush()
            self._stack.append(tag)
        elif tag == "br":
            self._buffer.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self.MAIN:
            self._flush()
            self._main = max(0, self._main - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in self.BLOCKS and self._stack and not self._skip:
            self._flush()
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip and self._stack:
            self._buffer.append(data)

    def _flush(self) -> None:
        words = " ".join("".join(self._buffer).split())
        if words and self._stack:
            self.blocks.append((self._stack[-1], words, self._main > 0))
        self._buffer = []


# Characters XML (and so lxml) cannot hold; HTML text never means them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _html_events(raw: str, into: _HTMLText) -> list[str]:
    """Parse ``raw`` with lxml's HTML parser and replay the tree as start/data/end events.

    Returns:
        The limits the parser hit (elements nested deeper than it follows), for a warning.
    """
    from lxml import etree
    from lxml import html as lxml_html

    raw = _NOT_XML.sub("\ufffd", raw.lstrip("\ufeff"))
    if not raw.strip():
        return []
    # Bytes with the encoding named: lxml refuses a str that declares an encoding (XHTML's
    # "<?xml ... encoding=...?>"), and the text is already decoded, whatever <meta charset> says.
    # huge_tree: text nodes over 10 MB and nesting past 256 levels are kept (up to libxml2's 2048).
    parser = lxml_html.HTMLParser(remove_comments=True, remove_pis=True, huge_tree=True, encoding="utf-8")
    root = etree.fromstring(raw.encode("utf-8"), parser)
    limits = sorted({e.message for e in parser.error_log if e.type_name == "ERR_RESOURCE_LIMIT"})
    if root is None:
        return limits
    # iterwalk is iterative (no recursion limit) and visits each node twice: start and end.
    for event, element in etree.iterwalk(root, events=("start", "end")):
        tag = element.tag
        if not isinstance(tag, str):  # a comment or processing instruction lxml kept
            if event == "end" and element.tail:
                into.handle_data(element.tail)
            continue
        tag = tag.lower()
        if event == "start":
            into.handle_starttag(tag, {str(k).lower(): v for k, v in element.attrib.items()})
            if element.text:
                into.handle_data(element.text)
        else:
            into.handle_endtag(tag)
            if element.tail:
                into.handle_data(element.tail)
    return limits


_DATE_META = ("article:published_time", "datepublished", "date", "pubdate", "publishdate", "dc.date", "dcterms.date")
_PUBLISHER_META = ("og:site_name", "publisher", "article:publisher", "application-name", "dc.publisher")


def _strip_site_name(title: str, publisher: str) -> str:
    """ "Storm hits coast | Daily Planet" → "Storm hits coast" (the page title's site suffix)."""
    for sep in (" | ", " - ", " – ", " — ", " :: "):
        head, found, tail = title.rpartition(sep)
        if found and head and (not publisher or tail.strip().lower() == publisher.strip().lower()):
            return head.strip()
    return title


def parse_html(raw: str, path: str, doc_id: str) -> Article:
    """An HTML page's story: its block elements' text, and metadata from ``<meta>``, ``<title>``, ``<time>``.

    Inside ``<article>``/``<main>`` when the page has them, so teasers and "related
    stories" around the story are left out.

    Args:
        raw: the page, decoded.
        path: the file's path, as stored in each passage's source (and named in warnings).
        doc_id: the document id.

    Returns:
        The article; its ``text`` is the blocks' text, whitespace collapsed, joined by blank
        lines, and offsets index that text, not ``raw``.
    """
    parser = _HTMLText()
    for limit in _html_events(raw, parser):
        warnings.warn(f"{path}: the HTML parser stopped at a limit ({limit}); text past it is left out", stacklevel=3)
    meta = parser.meta
    publisher = next((meta[k] for k in _PUBLISHER_META if meta.get(k)), "")
    blocks = parser.blocks
    if any(inside for _, _, inside in blocks):
        blocks = [b for b in blocks if b[2]]  # the story, not the page around it
    h1 = next((words for tag, words, _ in blocks if tag == "h1"), "")
    page_title = " ".join(parser.title.split())
    title = meta.get("og:title") or h1 or _strip_site_name(page_title, publisher)
    # The passage text is decoded text, so offsets refer to a text rendering of
    # the page (blocks joined by blank lines), not to the raw HTML.
    text_parts: list[str] = []
    paragraphs: list[tuple[int, int]] = []
    sections: list[str] = []
    section = meta.get("article:section", "")
    cursor = 0
    for tag, words, _ in blocks:
        if tag[0] == "h" and tag[1:].isdigit():
            if tag != "h1":
                section = words
            continue
        paragraphs.append((cursor, cursor + len(words)))
        sections.append(section)
        text_parts.append(words)
        cursor += len(words) + 2
    return Article(
        doc_id=doc_id,
        path=path,
        text="\n\n".join(text_parts),
        paragraphs=paragraphs,
        sections=sections,
        title=html.unescape(title) or Path(path).stem,
        publisher=publisher,
        section=meta.get("article:section", ""),
        url=meta.get("og:url", ""),
        date=next((meta[k] for k in _DATE_META if meta.get(k)), parser.times[0] if parser.times else ""),
    )


_JSONL_FIELDS = ("title", "publisher", "section", "url", "date")


def parse_jsonl(text: str, path: str, doc_id: str, shown: str = "") -> Iterator[Article]:
    """One article per valid line; a bad line is skipped with a warning naming ``shown:line``.

    Args:
        text: the file's text.
        path: the file's path, as stored in each passage's source.
        doc_id: the file's document id; a record without ``id`` gets ``doc_id#line``.
        shown: how warnings name the file (defaults to ``path``).

    Returns:
        An iterator of articles, one per valid record; offsets index the record's ``text``.
    """
    for number, line in enumerate(text.splitlines(), start=1):
        if number == 1:
            line = line.lstrip("\ufeff")
        if not line.strip():
            continue
        where = f"{shown or path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            warnings.warn(f"{where}: not valid JSON ({exc.msg}), line skipped; each line must be one JSON object",
                          stacklevel=2)
            continue
        except RecursionError:
            warnings.warn(f"{where}: JSON nested too deeply, line skipped; each line must be one flat JSON object",
                          stacklevel=2)
            continue
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            warnings.warn(f'{where}: no "text" string, line skipped; write e.g. {{"id": "a1", "text": "..."}}',
                          stacklevel=2)
            continue
        article = Article(
            doc_id=_jsonl_field(record.get("id") or None) or f"{doc_id}#{number}",
            path=path,
            text=record["text"],
            paragraphs=[],
            title=_jsonl_field(record.get("title")),
            publisher=_jsonl_field(record.get("publisher")),
            section=_jsonl_field(record.get("section")),
            url=_jsonl_field(record.get("url")),
            date=_jsonl_field(record.get("date")),
            where=where,
        )
        bad = next((name for name, value in _strings(article) if not _encodable(value)), None)
        if bad is not None:
            # A lone surrogate ("\ud800" in JSON) cannot be tokenized or written out as UTF-8.
            warnings.warn(f'{where}: "{bad}" holds an unpaired surrogate (not text), line skipped', stacklevel=2)
            continue
        article.paragraphs = _paragraph_spans(article.text)
        yield article


def _jsonl_field(value: Any) -> str:
    # Numbers and booleans read as text; nested objects are not metadata.
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value)


def _strings(article: Article) -> Iterator[tuple[str, str]]:
    yield "id", article.doc_id
    yield "text", article.text
    for name in _JSONL_FIELDS:
        yield name, getattr(article, name)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
