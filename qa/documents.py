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
* ``.html`` / ``.htm`` — ``<p>``, ``<li>``, ``<blockquote>`` and heading text.
* ``.jsonl`` — one article per line: ``text`` plus optional ``id``, ``title``,
  ``publisher``, ``section``, ``url``, ``date``.

Files that are empty, binary or not UTF-8 are skipped with a warning that names
them; a path that does not exist, or a set of paths that yields no passage at
all, raises `qa.errors.InputError`.
"""

from __future__ import annotations

import hashlib
import html
import html.parser
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from qa.errors import InputError

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".jsonl")

# all-MiniLM-L6-v2 was trained on 128 word pieces; it silently truncates at 256.
DEFAULT_MAX_TOKENS = 128
# Sentences carried over between consecutive windows of one long paragraph, so
# that an answer straddling a window boundary is still whole in one of them.
WINDOW_OVERLAP_SENTENCES = 1
# A first line longer than this is a paragraph, not a title.
MAX_TITLE_CHARS = 150


@dataclass(frozen=True)
class Source:
    """Where a passage came from.

    ``char_start``/``char_end`` index the source file's text (for ``.txt`` and
    ``.md``: ``open(path, encoding="utf-8").read()[char_start:char_end]`` is the
    passage text); for ``.jsonl`` they index the article's ``text`` field, and
    for HTML they index the decoded text of the page as `qa` extracted it.
    ``paragraph`` is 1-based; the title line is not counted.
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
_BOUNDARY = re.compile(r"""[.!?]+["'”’)\]]*\s+(?=["'“‘(\[]?[A-Z0-9])""")


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Split ``text[start:end]`` into sentences.

    Returns (start, end) offsets into ``text`` with surrounding whitespace
    trimmed. Rule-based (no model): it does not split after common
    abbreviations ("Dr.", "U.S.") or single initials ("J. Smith").
    """
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    cursor = start
    for match in _BOUNDARY.finditer(text, start, end):
        stop = match.start()
        word = re.search(r"([\w.]+)$", text[cursor : stop + 1])
        token = word.group(1).lower().rstrip(".") if word else ""
        if token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
            continue
        cut = match.end()
        spans.append((cursor, cut))
        cursor = cut
    spans.append((cursor, end))
    return [s for s in (_strip(text, a, b) for a, b in spans) if s[1] > s[0]]


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
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
        spans.append((cursor, cursor + len(line.rstrip("\r\n"))))
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


_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
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


class _HTMLText(html.parser.HTMLParser):
    """Collects the text of block elements; ignores scripts, styles and navigation.

    Blocks inside ``<article>`` or ``<main>`` are marked, so that a news page's story can
    be kept apart from its "related stories" lists and teasers.
    """

    BLOCKS = frozenset({"p", "li", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "td", "pre"})
    SKIP = frozenset({"script", "style", "nav", "footer", "header", "aside", "noscript", "template", "form"})
    MAIN = frozenset({"article", "main"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str, bool]] = []  # (tag, text, inside <article>/<main>)
        self.title = ""
        self.meta: dict[str, str] = {}
        self.times: list[str] = []  # datetime attributes of <time> elements, in order
        self._stack: list[str] = []
        self._buffer: list[str] = []
        self._skip = 0
        self._main = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            d = {k: v or "" for k, v in attrs}
            key = d.get("property") or d.get("name") or d.get("itemprop") or ""
            if key and d.get("content"):
                self.meta.setdefault(key.lower(), d["content"])
        elif tag == "time":
            when = dict(attrs).get("datetime")
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
        elif tag in self.BLOCKS and self._stack:
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
    parser.feed(raw)
    parser.close()
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


def _parse_jsonl(text: str, path: str, doc_id: str) -> Iterator[_Article]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc.msg}); each line must be one JSON object") from exc
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InputError(f'{path}:{number}: each line needs a "text" string, e.g. {{"id": "a1", "text": "..."}}')
        body = record["text"]
        yield _Article(
            doc_id=str(record.get("id") or f"{doc_id}#{number}"),
            path=path,
            text=body,
            paragraphs=_paragraph_spans(body),
            title=str(record.get("title") or ""),
            publisher=str(record.get("publisher") or ""),
            section=str(record.get("section") or ""),
            url=str(record.get("url") or ""),
            date=str(record.get("date") or ""),
        )


# ---------------------------------------------------------------------------
# Articles into passages


def passage_id(doc_id: str, text: str, occurrence: int) -> str:
    """A stable id: the same text in the same document keeps its id across
    re-indexing, even when paragraphs are inserted or removed around it.
    ``occurrence`` tells apart identical passages within one document."""
    digest = hashlib.blake2b(f"{doc_id}\x1f{occurrence}\x1f{text}".encode(), digest_size=8).hexdigest()
    return digest


def _windows(
    text: str, span: tuple[int, int], max_tokens: int, count_tokens: Callable[[str], int]
) -> list[tuple[int, int]]:
    """Split an over-long paragraph into overlapping windows of whole sentences."""
    if count_tokens(text[span[0] : span[1]]) <= max_tokens:
        return [span]
    sentences = split_sentences(text, *span)
    # A single sentence longer than the window is cut at word boundaries.
    pieces: list[tuple[int, int]] = []
    for s in sentences:
        if count_tokens(text[s[0] : s[1]]) <= max_tokens:
            pieces.append(s)
        else:
            pieces.extend(_word_chunks(text, s, max_tokens, count_tokens))
    windows: list[tuple[int, int]] = []
    i = 0
    while i < len(pieces):
        j = i + 1
        while j < len(pieces) and count_tokens(text[pieces[i][0] : pieces[j][1]]) <= max_tokens:
            j += 1
        windows.append((pieces[i][0], pieces[j - 1][1]))
        if j >= len(pieces):
            break
        i = max(i + 1, j - WINDOW_OVERLAP_SENTENCES)
    return windows


def _word_chunks(
    text: str, span: tuple[int, int], max_tokens: int, count_tokens: Callable[[str], int]
) -> list[tuple[int, int]]:
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text[span[0] : span[1]])]
    words = [(span[0] + a, span[0] + b) for a, b in words]
    chunks: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        j = i + 1
        while j < len(words) and count_tokens(text[words[i][0] : words[j][1]]) <= max_tokens:
            j += 1
        chunks.append((words[i][0], words[j - 1][1]))
        i = j
    return chunks


def _passages(
    article: _Article, max_tokens: int, count_tokens: Callable[[str], int]
) -> Iterator[Passage]:
    seen: dict[str, int] = {}
    for number, span in enumerate(article.paragraphs, start=1):
        section = article.sections[number - 1] if article.sections else article.section
        for start, end in _windows(article.text, span, max_tokens, count_tokens):
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

    Raises:
        InputError: a path does not exist, or a folder holds no supported file.
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
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in SUPPORTED_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise InputError(f"{path}: folder holds no {'/'.join(SUPPORTED_SUFFIXES)} files")
        for file in files:
            yield file, path


def _display_path(path: Path) -> str:
    """The path as the user would type it: relative to the working directory when inside it."""
    absolute = path.resolve()
    try:
        return absolute.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(absolute)


def _read_text(path: Path) -> str | None:
    data = path.read_bytes()
    if not data.strip():
        warnings.warn(f"{path}: empty file, skipped", stacklevel=3)
        return None
    if b"\x00" in data[:8192]:
        warnings.warn(f"{path}: looks binary, skipped", stacklevel=3)
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"{exc.reason} at byte {exc.start}"
        warnings.warn(f"{path}: not UTF-8 ({reason}), skipped; re-save it as UTF-8", stacklevel=3)
        return None
    # Keep offsets identical to open(path, encoding="utf-8").read(): universal
    # newlines turn \r\n into \n, and a BOM stays as U+FEFF.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_articles(paths: Sequence[str | os.PathLike[str]]) -> Iterator[_Article]:
    for file, root in iter_files(paths):
        text = _read_text(file)
        if text is None:
            continue
        shown = _display_path(file)
        relative = file.relative_to(root) if file != root else Path(file.name)
        doc_id = relative.with_suffix("").as_posix()
        suffix = file.suffix.lower()
        if suffix == ".jsonl":
            yield from _parse_jsonl(text, shown, doc_id)
        elif suffix in (".md", ".markdown"):
            yield _parse_md(text, shown, doc_id)
        elif suffix in (".html", ".htm"):
            yield _parse_html(text, shown, doc_id)
        else:
            yield _parse_txt(text, shown, doc_id)


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
    counter = count_tokens or approximate_token_count
    passages = [p for article in load_articles(paths) for p in _passages(article, max_tokens, counter)]
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
