"""Windows: an over-long paragraph cut into overlapping runs of whole sentences that fit the model.

The embedding model reads a limited number of word pieces, so a paragraph longer than
that becomes several passages. `paragraph_windows` streams them: memory stays a few
windows and time linear whatever the paragraph's length, even for a 50 MB paragraph or
a "word" of base64 with no space in it. `TokenCounter` counts word pieces word by word.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from qa.sentences import iter_sentences

# all-MiniLM-L6-v2 was trained on 128 word pieces; it silently truncates at 256.
DEFAULT_MAX_TOKENS = 128
# Sentences carried over between consecutive windows of one long paragraph, so
# that an answer straddling a window boundary is still whole in one of them.
WINDOW_OVERLAP_SENTENCES = 1
# A window holds at most this many characters per token of the window. WordPiece reads a
# "word" of more than 100 characters as one unknown token, so a long run without spaces
# counts as little but means nothing to the model; capping characters splits it instead.
MAX_CHARS_PER_TOKEN = 16


class TokenCounter:
    """Counts word pieces of long text piece by piece, so no call ever sees more than a window.

    Word-piece tokenizers split on whitespace first, so the count of a text is the sum of
    the counts of its whitespace-separated words; counts of words are cached (natural
    text repeats its words), which keeps a 50 MB paragraph to one pass over its words.
    For tokenizers that are not additive the sums can be off by a piece per word boundary;
    windows stop at 128 pieces while the model reads 256, which absorbs that.

    Args:
        count: counts the word pieces of a text (a tokenizer's, or `approximate_token_count`).
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
        """The word pieces of ``text[start:end]``: the sum over its words."""
        return sum(pieces for _, _, pieces in self.words(text, start, end))


_WORD = re.compile(r"\S+")


def paragraph_windows(
    text: str, span: tuple[int, int], max_tokens: int, count_tokens: Callable[[str], int] | TokenCounter
) -> Iterator[tuple[int, int]]:
    """Split an over-long paragraph into overlapping windows of whole sentences.

    Every window has at most ``max_tokens`` word pieces and ``max_tokens * MAX_CHARS_PER_TOKEN``
    characters. A sentence longer than that is cut at spaces, and a "word" longer than that
    at characters. Streams: memory stays a few windows whatever the paragraph's length, and
    time is linear in it.

    Args:
        text: the text the paragraph's offsets index.
        span: the paragraph, (start, end) into ``text``.
        max_tokens: the most word pieces a window may hold.
        count_tokens: counts word pieces; pass one `TokenCounter` for many paragraphs to share its cache.

    Returns:
        An iterator of windows, (start, end) into ``text``: the paragraph itself when it fits.
    """
    counter = count_tokens if isinstance(count_tokens, TokenCounter) else TokenCounter(count_tokens)
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
    text: str, span: tuple[int, int], max_tokens: int, max_chars: int, counter: TokenCounter
) -> Iterator[tuple[int, int, int]]:
    """Sentences of ``text[span]`` as (start, end, pieces), each cut to fit one window."""
    for start, end in iter_sentences(text, *span):
        if end - start <= max_chars:
            tokens = counter.total(text, start, end)
            if tokens <= max_tokens:
                yield start, end, tokens
                continue
        yield from _word_chunks(text, (start, end), max_tokens, max_chars, counter)


def _word_chunks(
    text: str, span: tuple[int, int], max_tokens: int, max_chars: int, counter: TokenCounter
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

