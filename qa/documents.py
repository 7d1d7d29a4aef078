"""Articles in, passages with source attribution out.

A *document* is one article; a *passage* is one paragraph of it, or a window of
sentences when the paragraph is longer than the embedding model can read.
Every passage remembers exactly where it came from (`Source`), so answers can
always be traced back to the file.

This module owns the passage types and their ids, finding and reading the files, and
`load_passages`, which ties the steps together. The steps live beside it:

* `qa.parsers` — each supported format (``.txt``, ``.md``, ``.html``, ``.jsonl``) into
  an article and its paragraphs;
* `qa.windows` — a paragraph too long for the model into overlapping sentence windows;
* `qa.sentences` — sentence splitting and the tokenizer-free token estimate.

Their public names used before the split (`split_sentences`, `approximate_token_count`,
`DEFAULT_MAX_TOKENS`, ...) stay importable from here.

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
import os
import stat
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from qa.errors import InputError
from qa.parsers import MAX_TITLE_CHARS, Article, lines_within, parse_html, parse_jsonl, parse_markdown, parse_txt
from qa.paths import source_path
from qa.sentences import approximate_token_count, split_sentences
from qa.windows import (
    DEFAULT_MAX_TOKENS,
    MAX_CHARS_PER_TOKEN,
    WINDOW_OVERLAP_SENTENCES,
    TokenCounter,
    paragraph_windows,
)

# Every public name this module had before its parsers, windows and sentences moved out.
__all__ = [
    "DEFAULT_MAX_TOKENS",
    "INDEX_FORMAT",
    "INDEX_MANIFEST",
    "MAX_CHARS_PER_TOKEN",
    "MAX_TITLE_CHARS",
    "SUPPORTED_SUFFIXES",
    "WINDOW_OVERLAP_SENTENCES",
    "Passage",
    "Source",
    "approximate_token_count",
    "iter_files",
    "lines_within",
    "load_articles",
    "load_passages",
    "passage_id",
    "split_sentences",
]

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".jsonl")

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


# ---------------------------------------------------------------------------
# Articles into passages


def passage_id(doc_id: str, text: str, occurrence: int) -> str:
    """A stable id: the same text in the same document keeps its id across
    re-indexing, even when paragraphs are inserted or removed around it.
    ``occurrence`` tells apart identical passages within one document."""
    digest = hashlib.blake2b(f"{doc_id}\x1f{occurrence}\x1f{text}".encode(), digest_size=8).hexdigest()
    return digest


def _passages(
    article: Article, max_tokens: int, count_tokens: Callable[[str], int] | TokenCounter
) -> Iterator[Passage]:
    seen: dict[str, int] = {}
    counter = count_tokens if isinstance(count_tokens, TokenCounter) else TokenCounter(count_tokens)
    for number, span in enumerate(article.paragraphs, start=1):
        section = article.sections[number - 1] if article.sections else article.section
        for start, end in paragraph_windows(article.text, span, max_tokens, counter):
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


def load_articles(paths: Sequence[str | os.PathLike[str]]) -> Iterator[Article]:
    """Read and parse every supported file under ``paths``, by its suffix, before splitting into passages.

    Args:
        paths: files or folders, walked as `iter_files` walks them.

    Returns:
        An iterator of articles in file order (a JSONL file gives one per valid line);
        files that cannot be read are skipped with a warning.

    Raises:
        InputError: as `iter_files` raises it.
    """
    for file, root in iter_files(paths):
        text = _read_text(file)
        if text is None:
            continue
        stored = source_path(file)
        relative = file.relative_to(root) if file != root else Path(file.name)
        doc_id = relative.with_suffix("").as_posix()
        suffix = file.suffix.lower()
        if suffix == ".jsonl":
            yield from parse_jsonl(text, stored, doc_id, str(file))
            continue
        if suffix in (".md", ".markdown"):
            article = parse_markdown(text, stored, doc_id)
        elif suffix in (".html", ".htm"):
            article = parse_html(text, stored, doc_id)
        else:
            article = parse_txt(text, stored, doc_id)
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
    counter = TokenCounter(count_tokens or approximate_token_count)
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
