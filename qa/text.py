"""Text utilities every layer may use: answer normalisation (answering and evaluation share it).

The bottom layer of `qa`: it imports nothing from the package, so reading, answering
and evaluation can all depend on it without depending on each other.
"""

from __future__ import annotations

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, drop the articles a/an/the, collapse whitespace.

    Exactly the normalisation of the official SQuAD v1.1 ``evaluate-v1.1.py``.

    Args:
        text: an answer, predicted or gold.

    Returns:
        The normalised text.
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())
