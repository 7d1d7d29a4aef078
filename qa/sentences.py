"""Sentences: rule-based sentence splitting, span trimming, and a tokenizer-free token estimate.

The bottom of the documents layer: the parsers trim their paragraph spans with
`strip_span`, the windows cut over-long paragraphs at `iter_sentences` boundaries, and
the reader and the stores split passages with `split_sentences`. Everything here works
on ``(start, end)`` offsets into one text, so a sentence can always be traced back to
the characters of its file. It imports nothing from `qa`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

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
    return list(iter_sentences(text, start, len(text) if end is None else end))


def iter_sentences(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """`split_sentences` one sentence at a time, for a paragraph too long to hold its list.

    Args:
        text: the text the offsets index.
        start: where to start splitting.
        end: where to stop.

    Returns:
        An iterator of (start, end) offsets into ``text``, trimmed as `strip_span` trims.
    """
    cursor = start
    for match in _BOUNDARY.finditer(text, start, end):
        stop = match.start()
        word = re.search(r"([\w.]+)$", text[max(cursor, stop - _LOOKBACK) : stop + 1])
        token = word.group(1).lower().rstrip(".") if word else ""
        if token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
            continue
        cut = match.end()
        span = strip_span(text, cursor, cut)
        if span[1] > span[0]:
            yield span
        cursor = cut
    span = strip_span(text, cursor, end)
    if span[1] > span[0]:
        yield span


def strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Narrow ``(start, end)`` past the whitespace (and byte order mark) at its ends.

    Args:
        text: the text the offsets index.
        start: the span's first character.
        end: one past its last character.

    Returns:
        The trimmed (start, end); empty (``start == end``) when the span held only whitespace.
    """
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
