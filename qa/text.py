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


# Words that say how a question is put, not what it is about: the BM25 stop list (Lucene's 33
# words) keeps "did", "from", "after", "many", so "Where did the presidents meet?" asked five
# things of a passage where four say it all. Used for question-word coverage (`qa.answering`).
FUNCTION_WORDS = frozenset(
    "about above after again against all also am among another any around because been before being below "
    "between both can could did do does doing done during each either else ever every few from further had has "
    "have having he her here hers him his how i its itself least less many me more much must my neither nor "
    "off once only other our ours out over own same shall she should so some than those though through too "
    "under until up upon us very we were what when where whether which while who whom whose why within without "
    "would yet you your".split()
)

# Past forms the stemmer cannot bring back to their verb ("met" is not "meet" to Snowball), for the
# verbs news and encyclopaedias use most. Left out on purpose: forms that are also common nouns
# or adjectives of another meaning (ground, rose, left, lay, wound, saw, born, found).
_IRREGULAR = {
    "arise": "arose arisen", "bear": "bore borne", "beat": "beaten", "become": "became", "begin": "began begun",
    "bind": "bound", "bite": "bitten", "blow": "blew blown", "break": "broke broken", "bring": "brought",
    "build": "built", "buy": "bought", "catch": "caught", "choose": "chose chosen", "come": "came",
    "deal": "dealt", "dig": "dug", "draw": "drew drawn", "drink": "drank drunk", "drive": "drove driven",
    "eat": "ate eaten", "fall": "fell fallen", "feed": "fed", "feel": "felt", "fight": "fought", "flee": "fled",
    "fly": "flew flown", "forbid": "forbade forbidden", "forget": "forgot forgotten", "freeze": "froze frozen",
    "get": "got gotten", "give": "gave given", "go": "went gone", "grow": "grew grown", "hang": "hung",
    "hear": "heard", "hide": "hid hidden", "hold": "held", "keep": "kept", "know": "knew known", "lead": "led",
    "lend": "lent", "lose": "lost", "make": "made", "mean": "meant", "meet": "met", "pay": "paid",
    "ride": "rode ridden", "rise": "risen", "run": "ran", "say": "said", "seek": "sought", "sell": "sold",
    "send": "sent", "shake": "shook shaken", "shoot": "shot", "sing": "sang sung", "sink": "sank sunk",
    "sit": "sat", "sleep": "slept", "speak": "spoke spoken", "spend": "spent", "stand": "stood",
    "steal": "stole stolen", "strike": "struck stricken", "swear": "swore sworn", "swim": "swam swum",
    "take": "took taken", "teach": "taught", "tear": "tore torn", "tell": "told", "think": "thought",
    "throw": "threw thrown", "understand": "understood", "wake": "woke woken", "wear": "wore worn",
    "win": "won", "withdraw": "withdrew withdrawn", "write": "wrote written", "overthrow": "overthrew overthrown",
    "undertake": "undertook undertaken", "uphold": "upheld", "withhold": "withheld", "rebuild": "rebuilt",
}  # fmt: skip
_BASE_FORMS = {form: verb for verb, forms in _IRREGULAR.items() for form in forms.split()}


def base_form(word: str) -> str:
    """The verb of an irregular past form ("met" → "meet", "won" → "win"); any other word unchanged.

    Args:
        word: one lower-case word.
    """
    return _BASE_FORMS.get(word, word)
