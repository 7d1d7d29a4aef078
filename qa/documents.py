"""Articles in, passages with source attribution out.

A *document* is one article; a *passage* is one paragraph of it, or a window of
sentences when the paragraph is longer than the embedding model can read.
Every passage remembers exactly where it came from (`Source`), so answers can
always be traced back to the file.

Supported inputs:

* ``.txt`` — either the seed format (leading ``- `` header lines give publisher,
  section and breadcrumb; then the title line; then one paragraph per line), or
  plain text (paragraphs separated by blank lines, or one per line when there
  are none).
* ``.md`` — YAML-ish front matter (``title:``, ``publisher:``, ``section:``,
  ``date:``, ``url:``) is read, headings give the title and the section.
* ``.html`` / ``.htm`` — ``<p>``, ``<li>``, ``<blockquote>`` and heading text, parsed
  by lxml's HTML parser (end tags may be omitted, as HTML allows).
* ``.jsonl`` — one article per line: ``text`` plus optional ``id``, ``title``,
  ``publisher``, ``section``, ``url``, ``date``.

Files are UTF-8 (a byte order mark is allowed) or UTF-16/UTF-32 with a byte order
mark. Files that are empty, binary, in another encoding or give no text, JSONL
records that are not valid, and folders that are qa indexes or hidden are skipped
with a warning that names them; a path that does not exist, or a set of paths that
yields no passage at all, raises `qa.errors.InputError`.

Source paths are stored absolute (see `qa.paths`).
"""

from __future__ import annotations

import codecs
import hashlib
import html
import json
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qa.errors import InputError
from qa.paths import source_path

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".jsonl")

# all-MiniLM-L6-v2 was trained on 128 word pieces; it silently truncates at 256.
DEFAULT_MAX_TOKENS = 128
# Sentences carried over between consecutive windows of one long paragraph, so
# that an answer straddling a window boundary is still whole in one of them.
WINDOW_OVERLAP_SENTENCES = 1
# A first line longer than this is a paragraph, not a title.
MAX_TITLE_CHARS = 150
# A window holds at most this many characters per token of the window. WordPiece reads a
# "word" of more than 100 characters as one unknown token, so a long run without spaces
# counts as little but means nothing to the model; capping characters splits it instead.
MAX_CHARS_PER_TOKEN = 16
# Index folders are skipped when walking a corpus; they hold this file (see qa.index).
INDEX_MANIFEST = "manifest.json"
INDEX_FORMAT = "qa-index"


@dataclass(frozen=True)
class Source:
    """Where a passage came from.

    ``char_start``/``char_end`` index the source file's text (for ``.txt`` and
    ``.md``: ``open(path, encoding="utf-8").read()[char_start:char_end]`` is the
    passage text; a UTF-8 byte order mark counts as the character U+FEFF, as that
    ``open`` reads it; for a UTF-16/UTF-32 file use ``encoding="utf-16"``/``"utf-32"``);
    for ``.jsonl`` they index the article's ``text`` field, and for HTML they index
    the text of the page as `qa` extracted it: the blocks' text, whitespace collapsed,
    joined by blank lines (not the raw HTML, so not the file).
    ``paragraph`` is 1-based; the title line is not counted. ``path`` is absolute.
    """

    doc_id: str
    title: str
    publisher: str
    section: str
    path: str
    paragraph: int
    char_start: int
    char_end: int
    url: str = ""
    date: str = ""


@dataclass(frozen=True)
class Passage:
    """One retrievable unit of text with its attribution."""

    passage_id: str
    text: str
    source: Source


@dataclass
class _Article:
    """An article as parsed from one file or JSONL line, before splitting."""

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


# ---------------------------------------------------------------------------
# Sentences


_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt gen col lt sgt capt gov sen rep rev hon pres inc ltd co corp bros vs etc al "
    "fig no nos vol pp ed eds jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k u.n e.g i.e a.m p.m "
    "approx dept est".split(" ")
)
# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) and
# whitespace, when the next sentence starts with an upper-case letter, digit or
# an opening quote.
# Possessive quantifiers and the look-behind keep it linear on runs of "!!!!" or spaces.
_BOUNDARY = re.compile(r"""(?<![.!?])[.!?]++["'”’)\]]*+\s++(?=["'“‘(\[]?[A-Z0-9])""")
# The word before a boundary, to spot abbreviations; abbreviations are short, so looking
# back this far is enough and keeps a paragraph full of "Dr." linear.
_LOOKBACK = 40


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Split ``text[start:end]`` into sentences.

    Returns (start, end) offsets into ``text`` with surrounding whitespace
    trimmed. Rule-based (no model): it does not split after common
    abbreviations ("Dr.", "U.S.") or single initials ("J. Smith").
    """
    return list(_iter_sentences(text, start, len(text) if end is None else end))


def _iter_sentences(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    cursor = start
    for match in _BOUNDARY.finditer(text, start, end):
        stop = match.start()
        word = re.search(r"([\w.]+)$", text[max(cursor, stop - _LOOKBACK) : stop + 1])
        token = word.group(1).lower().rstrip(".") if word else ""
        if token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
            continue
        cut = match.end()
        span = _strip(text, cursor, cut)
        if span[1] > span[0]:
            yield span
        cursor = cut
    span = _strip(text, cursor, end)
    if span[1] > span[0]:
        yield span


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    # U+FEFF too: a byte order mark stays in the text (offsets match open()), never in a passage.
    while start < end and (text[start].isspace() or text[start] == "\ufeff"):
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def approximate_token_count(text: str) -> int:
    """A cheap upper-ish estimate of word pieces: words and punctuation marks,
    plus one extra piece for every long word (which WordPiece tends to split)."""
    tokens = re.findall(r"\w+|[^\w\s]", text)
    return len(tokens) + sum(len(t) > 8 for t in tokens)


# ---------------------------------------------------------------------------
# Parsing files into articles


def _paragraph_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Paragraphs separated by blank lines; one per line if there are none."""
    end = len(text) if end is None else end
    body = text[start:end]
    separator = r"\n[ \t]*\n" if re.search(r"\n[ \t]*\n", body.strip()) else r"\n"
    spans: list[tuple[int, int]] = []
    cursor = start
    for match in re.finditer(separator, body):
        spans.append(_strip(text, cursor, start + match.start()))
        cursor = start + match.end()
    spans.append(_strip(text, cursor, end))
    return [s for s in spans if s[1] > s[0]]


def _line_spans(text: str) -> list[tuple[int, int]]:
    spans, cursor = [], 0
    for line in text.splitlines(keepends=True):
        # A byte order mark is not part of the first line's content (a seed header "- " after it).
        skip = 1 if cursor == 0 and line.startswith("\ufeff") else 0
        spans.append((cursor + skip, cursor + len(line.rstrip("\r\n"))))
        cursor += len(line)
    return spans


def _parse_txt(text: str, path: str, doc_id: str) -> _Article:
    lines = _line_spans(text)
    nonblank = [(a, b) for a, b in lines if text[a:b].strip()]
    if nonblank and text[nonblank[0][0] : nonblank[0][1]].startswith("- "):
        return _parse_seed(text, path, doc_id, nonblank)
    paragraphs = _paragraph_spans(text)
    title = Path(path).stem
    if paragraphs:
        first_line = _strip(text, *next(iter(lines_within(text, paragraphs[0]))))
        candidate = text[first_line[0] : first_line[1]]
        if len(candidate) <= MAX_TITLE_CHARS and not candidate.endswith((".", "?", "!", ":", ";", ",")):
            title = candidate
            rest = _strip(text, first_line[1], paragraphs[0][1])
            paragraphs = ([rest] if rest[1] > rest[0] else []) + paragraphs[1:]
    return _Article(doc_id=doc_id, path=path, text=text, paragraphs=paragraphs, title=title)


def lines_within(text: str, span: tuple[int, int]) -> Iterator[tuple[int, int]]:
    """Line spans inside ``text[span[0]:span[1]]``."""
    cursor = span[0]
    while cursor < span[1]:
        newline = text.find("\n", cursor, span[1])
        stop = span[1] if newline < 0 else newline
        yield cursor, stop
        cursor = stop + 1


def _parse_seed(text: str, path: str, doc_id: str, lines: list[tuple[int, int]]) -> _Article:
    header: list[str] = []
    i = 0
    while i < len(lines) and text[lines[i][0] : lines[i][1]].startswith("- "):
        header.append(text[lines[i][0] + 2 : lines[i][1]].strip())
        i += 1
    title = text[lines[i][0] : lines[i][1]].strip() if i < len(lines) else ""
    breadcrumb = header[2] if len(header) > 2 else ""
    return _Article(
        doc_id=doc_id,
        path=path,
        text=text,
        paragraphs=[_strip(text, a, b) for a, b in lines[i + 1 :]],
        title=title or breadcrumb or Path(path).stem,
        publisher=header[0] if header else "",
        section=header[1] if len(header) > 1 else "",
    )


_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")


def _parse_md(text: str, path: str, doc_id: str) -> _Article:
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
            span = _strip(text, block[0][0], block[-1][1])
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
    return _Article(
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


def _parse_html(raw: str, path: str, doc_id: str) -> _Article:
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
    return _Article(
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


def _parse_jsonl(text: str, path: str, doc_id: str, shown: str = "") -> Iterator[_Article]:
    """One article per valid line; a bad line is skipped with a warning naming ``shown:line``."""
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
        article = _Article(
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


def _strings(article: _Article) -> Iterator[tuple[str, str]]:
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


# ---------------------------------------------------------------------------
# Articles into passages


def passage_id(doc_id: str, text: str, occurrence: int) -> str:
    """A stable id: the same text in the same document keeps its id across
    re-indexing, even when paragraphs are inserted or removed around it.
    ``occurrence`` tells apart identical passages within one document."""
    digest = hashlib.blake2b(f"{doc_id}\x1f{occurrence}\x1f{text}".encode(), digest_size=8).hexdigest()
    return digest


class _TokenCounter:
    """Counts word pieces of long text piece by piece, so no call ever sees more than a window.

    Word-piece tokenizers split on whitespace first, so the count of a text is the sum of
    the counts of its whitespace-separated words; counts of words are cached (natural
    text repeats its words), which keeps a 50 MB paragraph to one pass over its words.
    For tokenizers that are not additive the sums can be off by a piece per word boundary;
    windows stop at 128 pieces while the model reads 256, which absorbs that.
    """

    CACHE_LIMIT = 1 << 18

    def __init__(self, count: Callable[[str], int]) -> None:
        self.count = count
        self._words: dict[str, int] = {}

    def words(self, text: str, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """(start, end, pieces) of each whitespace-separated word of ``text[start:end]``."""
        cache = self._words
        for match in _WORD.finditer(text, start, end):
            word = match.group()
            pieces = cache.get(word)
            if pieces is None:
                if len(cache) >= self.CACHE_LIMIT:
                    cache.clear()
                pieces = cache[word] = self.count(word)
            yield match.start(), match.end(), pieces

    def total(self, text: str, start: int, end: int) -> int:
        return sum(pieces for _, _, pieces in self.words(text, start, end))


_WORD = re.compile(r"\S+")


def _windows(
    text: str, span: tuple[int, int], max_tokens: int, count_tokens: Callable[[str], int] | _TokenCounter
) -> Iterator[tuple[int, int]]:
    """Split an over-long paragraph into overlapping windows of whole sentences.

    Every window has at most ``max_tokens`` word pieces and ``max_tokens * MAX_CHARS_PER_TOKEN``
    characters. A sentence longer than that is cut at spaces, and a "word" longer than that
    at characters. Streams: memory stays a few windows whatever the paragraph's length, and
    time is linear in it.
    """
    counter = count_tokens if isinstance(count_tokens, _TokenCounter) else _TokenCounter(count_tokens)
    max_chars = max_tokens * MAX_CHARS_PER_TOKEN
    if span[1] - span[0] <= max_chars and counter.count(text[span[0] : span[1]]) <= max_tokens:
        yield span
        return
    # Greedy: as many pieces (sentences, or parts of an over-long one) as fit; the next window
    # starts again from the last piece of this one, so an answer on the boundary is whole in one.
    window: list[tuple[int, int, int]] = []
    tokens = 0
    for piece in _pieces(text, span, max_tokens, max_chars, counter):
        if window and (tokens + piece[2] > max_tokens or piece[1] - window[0][0] > max_chars):
            yield window[0][0], window[-1][1]
            window = window[-WINDOW_OVERLAP_SENTENCES:] if len(window) > WINDOW_OVERLAP_SENTENCES else []
            tokens = sum(p[2] for p in window)
            if window and (tokens + piece[2] > max_tokens or piece[1] - window[0][0] > max_chars):
                # The carried-over sentence and this one do not fit together: it stands alone.
                yield window[0][0], window[-1][1]
                window, tokens = [], 0
        window.append(piece)
        tokens += piece[2]
    if window:
        yield window[0][0], window[-1][1]


def _pieces(
    text: str, span: tuple[int, int], max_tokens: int, max_chars: int, counter: _TokenCounter
) -> Iterator[tuple[int, int, int]]:
    """Sentences of ``text[span]`` as (start, end, pieces), each cut to fit one window."""
    for start, end in _iter_sentences(text, *span):
        if end - start <= max_chars:
            tokens = counter.total(text, start, end)
            if tokens <= max_tokens:
                yield start, end, tokens
                continue
        yield from _word_chunks(text, (start, end), max_tokens, max_chars, counter)


def _word_chunks(
    text: str, span: tuple[int, int], max_tokens: int, max_chars: int, counter: _TokenCounter
) -> Iterator[tuple[int, int, int]]:
    """A sentence too long for one window, as consecutive runs of whole words that fit."""
    chunk: tuple[int, int, int] | None = None
    for start, end, pieces in counter.words(text, *span):
        if pieces > max_tokens or end - start > max_chars:
            if chunk:
                yield chunk
                chunk = None
            yield from _char_chunks(text, start, end, max_tokens, max_chars, counter.count)
        elif chunk and chunk[2] + pieces <= max_tokens and end - chunk[0] <= max_chars:
            chunk = (chunk[0], end, chunk[2] + pieces)
        else:
            if chunk:
                yield chunk
            chunk = (start, end, pieces)
    if chunk:
        yield chunk


def _char_chunks(
    text: str, start: int, end: int, max_tokens: int, max_chars: int, count: Callable[[str], int]
) -> Iterator[tuple[int, int, int]]:
    """One "word" longer than a window (a URL list, base64, text without spaces), cut at characters."""
    while start < end:
        stop = min(end, start + max_chars)
        pieces = count(text[start:stop])
        while pieces > max_tokens and stop - start > 1:
            stop = start + (stop - start) // 2
            pieces = count(text[start:stop])
        yield start, stop, pieces
        start = stop


def _passages(
    article: _Article, max_tokens: int, count_tokens: Callable[[str], int] | _TokenCounter
) -> Iterator[Passage]:
    seen: dict[str, int] = {}
    counter = count_tokens if isinstance(count_tokens, _TokenCounter) else _TokenCounter(count_tokens)
    for number, span in enumerate(article.paragraphs, start=1):
        section = article.sections[number - 1] if article.sections else article.section
        for start, end in _windows(article.text, span, max_tokens, counter):
            text = article.text[start:end]
            occurrence = seen.get(text, 0)
            seen[text] = occurrence + 1
            yield Passage(
                passage_id=passage_id(article.doc_id, text, occurrence),
                text=text,
                source=Source(
                    doc_id=article.doc_id,
                    title=article.title,
                    publisher=article.publisher,
                    section=section or article.section,
                    path=article.path,
                    paragraph=number,
                    char_start=start,
                    char_end=end,
                    url=article.url,
                    date=article.date,
                ),
            )


# ---------------------------------------------------------------------------
# Public entry points


def iter_files(paths: Sequence[str | os.PathLike[str]]) -> Iterator[tuple[Path, Path]]:
    """Yield (file, root) for every supported file under ``paths``, sorted.

    Walking a folder skips hidden files, and skips with a warning hidden folders
    (``.git``) and qa index folders (a folder holding a qa ``manifest.json``, whose
    ``passages.jsonl`` would otherwise be indexed into itself). Symbolic links to
    folders are not followed; anything that is not a regular file is left out.

    Raises:
        InputError: a path does not exist or is not a file or folder, or a folder holds no supported file.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise InputError("no paths given; pass a file or folder of .txt/.md/.html/.jsonl articles")
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_file():
            yield path, path.parent
            continue
        if not path.is_dir():
            raise InputError(f"{path}: not a regular file or folder (a device, pipe or socket); pass articles")
        files = sorted(_walk(path))
        if not files:
            raise InputError(f"{path}: folder holds no {'/'.join(SUPPORTED_SUFFIXES)} files")
        for file in files:
            yield file, path


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        if _is_index_folder(here):
            warnings.warn(f"{here}: a qa index folder, skipped (an index is not an article)", stacklevel=3)
            dirs.clear()
            continue
        for name in sorted(dirs):
            if name.startswith("."):
                warnings.warn(f"{here / name}: hidden folder, skipped", stacklevel=3)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            file = here / name
            if not name.startswith(".") and file.suffix.lower() in SUPPORTED_SUFFIXES and _is_regular(file):
                yield file


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _is_index_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a qa index's manifest (read a little, and only if it is a regular file)."""
    manifest = folder / INDEX_MANIFEST
    if not _is_regular(manifest):
        return False
    try:
        with manifest.open("rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return f'"{INDEX_FORMAT}"'.encode() in head


# Byte order marks that name an encoding other than UTF-8, longest first (UTF-32-LE starts like UTF-16-LE).
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _read_text(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        warnings.warn(f"{path}: cannot be read ({exc.strerror or exc}), skipped", stacklevel=3)
        return None
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    if encoding is not None:
        # The codec drops the mark, as open(path, encoding="utf-16") does, so offsets match that read.
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            warnings.warn(f"{path}: starts with a {encoding.upper()} byte order mark but is not {encoding.upper()} "
                          f"({exc.reason} at byte {exc.start}), skipped; re-save it as UTF-8", stacklevel=3)
            return None
        if not text.strip():
            warnings.warn(f"{path}: empty file, skipped", stacklevel=3)
            return None
        return text.replace("\r\n", "\n").replace("\r", "\n")
    if not data.strip():
        warnings.warn(f"{path}: empty file, skipped", stacklevel=3)
        return None
    if b"\x00" in data[:8192]:
        warnings.warn(f"{path}: looks binary, skipped (text must be UTF-8, or UTF-16 with a byte order mark)",
                      stacklevel=3)
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"{exc.reason} at byte {exc.start}"
        warnings.warn(f"{path}: not UTF-8 ({reason}), skipped; re-save it as UTF-8", stacklevel=3)
        return None
    del data
    # Keep offsets identical to open(path, encoding="utf-8").read(): universal
    # newlines turn \r\n into \n, and a BOM stays as U+FEFF.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_articles(paths: Sequence[str | os.PathLike[str]]) -> Iterator[_Article]:
    for file, root in iter_files(paths):
        text = _read_text(file)
        if text is None:
            continue
        stored = source_path(file)
        relative = file.relative_to(root) if file != root else Path(file.name)
        doc_id = relative.with_suffix("").as_posix()
        suffix = file.suffix.lower()
        if suffix == ".jsonl":
            yield from _parse_jsonl(text, stored, doc_id, str(file))
            continue
        if suffix in (".md", ".markdown"):
            article = _parse_md(text, stored, doc_id)
        elif suffix in (".html", ".htm"):
            article = _parse_html(text, stored, doc_id)
        else:
            article = _parse_txt(text, stored, doc_id)
        article.where = str(file)
        yield article


def load_passages(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    count_tokens: Callable[[str], int] | None = None,
) -> list[Passage]:
    """Load files and folders (recursively) into passages.

    Args:
        paths: files or folders of ``.txt``/``.md``/``.html``/``.jsonl`` articles.
        max_tokens: the longest passage, in the embedding model's word pieces;
            longer paragraphs become overlapping windows of whole sentences.
        count_tokens: counts word pieces; defaults to a tokenizer-free estimate.

    Returns:
        Passages in file order, then paragraph order.

    Raises:
        InputError: a path is missing, a folder is empty, or nothing readable was found.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    counter = _TokenCounter(count_tokens or approximate_token_count)
    passages: list[Passage] = []
    for article in load_articles(paths):
        before = len(passages)
        passages.extend(_passages(article, max_tokens, counter))
        if len(passages) == before:
            what = "markup, scripts or navigation only" if article.path.endswith((".html", ".htm")) else "no paragraphs"
            warnings.warn(f"{article.where or article.path}: no text to index ({what}), skipped", stacklevel=2)
    if not passages:
        shown = ", ".join(str(p) for p in paths)
        raise InputError(f"no text found in {shown}; the files are empty or unreadable (see warnings above)")
    return _unique_doc_ids(passages)


def _unique_doc_ids(passages: list[Passage]) -> list[Passage]:
    """Two inputs with the same doc id (e.g. `a/x.txt` and `b/x.txt` given as two
    roots) would merge into one article; make the later ones distinct."""
    owner: dict[str, str] = {}
    renamed: dict[tuple[str, str], str] = {}
    out: list[Passage] = []
    for p in passages:
        key = (p.source.doc_id, p.source.path)
        first = owner.setdefault(p.source.doc_id, p.source.path)
        if first == p.source.path:
            out.append(p)
            continue
        if key not in renamed:
            renamed[key] = f"{p.source.doc_id}@{hashlib.blake2b(p.source.path.encode(), digest_size=4).hexdigest()}"
        doc_id = renamed[key]
        # The occurrence counter restarts per document, so recompute it.
        out.append(p)
        out[-1] = replace(p, source=replace(p.source, doc_id=doc_id))
    return _reassign_ids(out) if renamed else out


def _reassign_ids(passages: Iterable[Passage]) -> list[Passage]:
    seen: dict[tuple[str, str], int] = {}
    out = []
    for p in passages:
        key = (p.source.doc_id, p.text)
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        out.append(replace(p, passage_id=passage_id(p.source.doc_id, p.text, occurrence)))
    return out
