"""How results look: short reprs, HTML for Jupyter, a DataFrame of hits.

`qa.Hit`, `qa.Answer` and the `qa.retrieval.Hits` list that ``search`` returns
delegate their ``_repr_html_`` here, so a notebook shows a table of hits (the
query's words marked) or an answer highlighted in its passage, with its source.
Every piece of document text goes through `html.escape`: an article holding
``<script>`` shows that text, it never runs. A source's url becomes a link only
when it is ``http(s)://``; otherwise the line gives the file and its offsets.

This module imports nothing heavy (pandas only inside `hits_dataframe`) and no
other part of `qa` but `qa.errors`: results are read by their fields.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from qa.errors import MissingDependencyError

#: Characters of passage text a plain ``repr`` keeps.
REPR_TEXT_CHARS = 60
#: Spans of ``text`` to mark: (start, end, css class or "" for a plain <mark>).
Marks = Sequence[tuple[int, int, str]]


# Words too common to be worth marking in a passage.
_STOP_WORDS = frozenset(
    "a an and are as at be been by did do does for from had has have how in into is it its of on or that the "
    "their them they this to was were what when where which who whom whose why will with".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)
_STYLE = (
    "<style>"
    ".qa-result{font-family:inherit;text-align:left}"
    ".qa-result table{border-collapse:collapse;width:100%}"
    ".qa-result th,.qa-result td{text-align:left;vertical-align:top;padding:4px 8px;border-bottom:1px solid #ddd}"
    ".qa-result mark{background:#ffe066;padding:0 2px}"
    ".qa-result mark.qa-alt{background:#e2e8f0}"
    ".qa-result mark.qa-term{background:#fff3bf}"
    ".qa-result .qa-source{color:#555;font-size:90%}"
    "</style>"
)


class _SourceLike(Protocol):
    # Read-only properties, so frozen dataclasses match.
    @property
    def title(self) -> str: ...
    @property
    def publisher(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def paragraph(self) -> int: ...
    @property
    def char_start(self) -> int: ...
    @property
    def char_end(self) -> int: ...


class _HitLike(Protocol):
    @property
    def rank(self) -> int: ...
    @property
    def score(self) -> float: ...
    @property
    def text(self) -> str: ...
    @property
    def passage_id(self) -> str: ...
    @property
    def source(self) -> Any: ...


# ---------------------------------------------------------------------------------------------
# Plain text


def shorten(text: str, limit: int = REPR_TEXT_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def where(source: _SourceLike) -> str:
    """'publisher · title · paragraph N', skipping empty parts."""
    return " · ".join(x for x in (source.publisher, source.title, f"paragraph {source.paragraph}") if x)


def hit_repr(hit: _HitLike) -> str:
    """A one-line repr of a hit: rank, score, where it comes from, the start of its text."""
    return (
        f"Hit(rank={hit.rank}, score={hit.score:.3f}, source={shorten(where(hit.source))!r}, "
        f"text={shorten(hit.text)!r})"
    )


def answer_repr(answer: Any) -> str:
    """A one-line repr of an answer: question, answer text, confidence, how much evidence."""
    return (
        f"Answer(question={shorten(answer.question)!r}, text={answer.text!r}, "
        f"confidence={answer.confidence:.2f}, evidence=<{len(answer.evidence)} hits>, "
        f"alternatives=<{len(answer.alternatives)}>)"
    )


# ---------------------------------------------------------------------------------------------
# HTML pieces


def mark(text: str, marks: Marks = ()) -> str:
    """HTML for ``text`` with the given spans wrapped in ``<mark>``; everything escaped.

    Overlapping spans keep the earlier (then the longer) one; spans outside the text are ignored.
    """
    out: list[str] = []
    cursor = 0
    for start, end, css in sorted(marks, key=lambda m: (m[0], -m[1])):
        start, end = max(start, cursor), min(end, len(text))
        if end <= start:
            continue
        out.append(html.escape(text[cursor:start]))
        opening = f'<mark class="{html.escape(css)}">' if css else "<mark>"
        out.append(f"{opening}{html.escape(text[start:end])}</mark>")
        cursor = end
    out.append(html.escape(text[cursor:]))
    return "".join(out)


def query_terms(query: str) -> list[str]:
    """The words of ``query`` worth marking in a passage (no stop words), lower-cased."""
    return [w for w in dict.fromkeys(m.group(0).lower() for m in _WORD.finditer(query)) if w not in _STOP_WORDS]


def term_marks(text: str, terms: Iterable[str]) -> list[tuple[int, int, str]]:
    """Spans of ``text`` that are one of ``terms`` or share its stem ("mediated" ~ "mediate", "mediators")."""
    stems = {_stem(t) for t in terms if t}
    marks = []
    for match in _WORD.finditer(text):
        word = match.group(0).lower()
        if word not in _STOP_WORDS and _stem(word) in stems:
            marks.append((match.start(), match.end(), "qa-term"))
    return marks


def _stem(word: str) -> str:
    # A crude suffix strip: enough to mark "mediated" for "mediate" without a stemmer.
    for suffix in ("ing", "ed", "es", "s", "e"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def safe_url(url: str) -> str | None:
    """``url`` when it is an http(s) link (never ``javascript:`` or ``data:``), else None."""
    return url if re.match(r"https?://", url.strip(), flags=re.I) else None


def source_html(source: _SourceLike, *, describe: bool = True) -> str:
    """The source line: publisher · title · paragraph (unless ``describe`` is False), then a link to
    the url or the path and offsets."""
    parts = [html.escape(where(source))] if describe else []
    url = safe_url(getattr(source, "url", "") or "")
    if url:
        parts.append(f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener noreferrer">'
                     f"{html.escape(url)}</a>")
    else:
        parts.append(f"<code>{html.escape(source.path)}:{source.char_start}-{source.char_end}</code>")
    return f'<span class="qa-source">{" — ".join(parts)}</span>'


def hits_table(hits: Sequence[_HitLike], marks: Mapping[str, Marks] | None = None, *, query: str | None = None) -> str:
    """An HTML table of hits: rank, score, publisher, title, paragraph, passage (marked), source.

    Args:
        hits: the hits, shown in the order given.
        marks: passage id → spans of that hit's text to mark (an answer and its alternatives).
        query: when given, its words are marked in every passage without other marks.
    """
    terms = query_terms(query) if query else []
    rows = []
    for hit in hits:
        s = hit.source
        spans = (marks or {}).get(hit.passage_id) or term_marks(hit.text, terms)
        rows.append(
            "<tr>"
            f"<td>{hit.rank}</td><td>{hit.score:.3f}</td><td>{html.escape(s.publisher)}</td>"
            f"<td>{html.escape(s.title)}</td><td>{s.paragraph}</td>"
            f"<td>{mark(hit.text, spans)}<br>{source_html(s, describe=False)}</td>"
            "</tr>"
        )
    head = "".join(f"<th>{name}</th>" for name in ("rank", "score", "publisher", "title", "paragraph", "passage"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# ---------------------------------------------------------------------------------------------
# What _repr_html_ returns


def hit_html(hit: _HitLike) -> str:
    """HTML for one hit (a one-row table)."""
    return f'<div class="qa-result">{_STYLE}{hits_table([hit])}</div>'


def hits_html(hits: Sequence[_HitLike], query: str | None = None) -> str:
    """HTML for a list of hits, the query's words marked in each passage."""
    if not hits:
        caption = f"no passages for <b>{html.escape(query)}</b>" if query else "no passages"
        return f'<div class="qa-result"><p>{caption}</p></div>'
    caption = f"<p>{len(hits)} passages for <b>{html.escape(query)}</b></p>" if query else ""
    return f'<div class="qa-result">{_STYLE}{caption}{hits_table(hits, query=query)}</div>'


def answer_html(answer: Any) -> str:
    """HTML for an answer: the answer and confidence, its passage with the span marked, the source,
    the other candidates, then every passage read (answer and candidates marked where they were found)."""
    q = html.escape(answer.question)
    marks: dict[str, list[tuple[int, int, str]]] = {}
    for alt in answer.alternatives:
        marks.setdefault(alt.evidence.passage_id, []).append((alt.span[0], alt.span[1], "qa-alt"))
    parts = [f'<div class="qa-result">{_STYLE}']
    if answer.text is None or answer.span is None or not answer.evidence:
        parts.append(f"<p><b>{q}</b> → no answer found in the corpus (confidence {answer.confidence:.2f})</p>")
    else:
        best = answer.evidence[0]
        start, end = answer.span
        marks.setdefault(best.passage_id, []).insert(0, (start, end, ""))
        parts.append(
            f"<p><b>{q}</b> → <b>{html.escape(answer.text)}</b> (confidence {answer.confidence:.2f})</p>"
            f"<blockquote>{mark(best.text, [(start, end, '')])}<br>{source_html(best.source)}</blockquote>"
        )
    if answer.alternatives:
        label = "Candidates it did not trust" if answer.text is None else "Also possible"
        others = "; ".join(
            f"{html.escape(a.text)} ({a.confidence:.2f}, paragraph {a.evidence.source.paragraph})"
            for a in answer.alternatives
        )
        parts.append(f"<p>{label}: {others}</p>")
    if answer.evidence:
        ordered = sorted(answer.evidence, key=lambda h: h.rank)
        parts.append(hits_table(ordered, marks=marks, query=answer.question))
    parts.append("</div>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# DataFrame


def hits_dataframe(hits: Sequence[_HitLike]) -> Any:
    """A pandas DataFrame with one row per hit: rank, score, text, passage_id, then the source's fields.

    Raises:
        MissingDependencyError: pandas is not installed (it is an extra: ``pip install 'qa[notebooks]'``).
    """
    try:
        import pandas as pd  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingDependencyError(
            "to_dataframe() needs pandas, which qa does not install by itself; "
            "run: pip install pandas  (or pip install 'qa[notebooks]')"
        ) from exc
    columns = ["rank", "score", "text", "passage_id", "doc_id", "publisher", "title", "section", "paragraph",
               "path", "char_start", "char_end", "url", "date"]
    rows = []
    for hit in hits:
        s = hit.source
        rows.append([hit.rank, hit.score, hit.text, hit.passage_id, s.doc_id, s.publisher, s.title, s.section,
                     s.paragraph, s.path, s.char_start, s.char_end, getattr(s, "url", ""), getattr(s, "date", "")])
    return pd.DataFrame(rows, columns=columns)
