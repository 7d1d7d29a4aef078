"""Who "he" and "she" are: the most recent person named before them, for the reader to read.

An extractive reader can only point at words of the passage, and a span model trained on
SQuAD never points at a pronoun: in "Turkish media claimed that he is playing a mediator
role", the mediator is whoever "he" is. `resolve_pronouns` writes that name in place of the
pronoun, so the reader reads "…claimed that Hajiyev is playing a mediator role…", and maps the
spans it finds back to the passage as written.

People are recognised the way news introduces them: a capitalised name right after a title or
role ("President Isaac Herzog", "Foreign Minister Gideon Saar", "Aliyev aide Hikmet Hajiyev");
later, their last name alone ("Hajiyev") is the same person. A pronoun stands for the most
recent such mention before it in the passage that is a subject, i.e. followed by its verb
("Hajiyev reported", not "…with Azerbaijani President Ilham Aliyev, with whom he…"): recency
and subjects first, the classic baselines of pronoun resolution. With none, it is left alone.
No gender, no parsing: a passage naming no titled person reads exactly as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qa.text import FUNCTION_WORDS

# Titles and roles news puts before a person's name (lower case).
TITLES = frozenset(
    "president vice minister premier chancellor king queen prince princess emperor pope sheikh sultan "
    "senator sen rep representative congressman congresswoman governor mayor ambassador envoy secretary "
    "spokesman spokeswoman spokesperson aide adviser advisor chairman chairwoman chair director ceo founder "
    "judge justice general gen colonel col admiral captain lieutenant commander officer chief head leader "
    "mr mrs ms dr prof professor sir dame lord lady bishop cardinal rabbi imam coach manager author "
    "writer journalist reporter analyst economist scientist researcher candidate deputy".split()
)
_PRONOUN = re.compile(r"\b(?:he|she|He|She)\b")
# A run of capitalised words ("Hikmet Hajiyev", "Foreign Minister Gideon Saar"), hyphens and
# apostrophes inside words allowed.
_NAME_RUN = re.compile(r"[A-Z][\w'’\-]*(?:\s+[A-Z][\w'’\-]*)*")
_WORD = re.compile(r"[\w'’\-]+")
# Words after a name that are not its verb ("Herzog and", "Saar of").
_NOT_VERBS = FUNCTION_WORDS | frozenset("a an and as at by for in into of on or the to with".split())


@dataclass(frozen=True)
class Resolved:
    """A passage with its pronouns replaced by names, and the way back to the passage as written.

    Attributes:
        text: what the reader reads.
        edits: per replaced pronoun: (start, end) of the name in ``text``, (start, end) of the
            pronoun in the original, (start, end) of the mention it stands for in the original.
    """

    text: str
    edits: tuple[tuple[tuple[int, int], tuple[int, int], tuple[int, int]], ...] = ()

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Where ``text[start:end]`` is in the passage as written.

        Inside one inserted name: that part of the mention it stands for ("Hajiyev" → the
        earlier "Hajiyev"). Across an inserted name: the same words with the pronoun.
        """
        for (a, b), _, (m, _) in self.edits:
            if a <= start and end <= b:
                return m + (start - a), m + (end - a)
        return self._position(start, True), self._position(end, False)

    def _position(self, at: int, is_start: bool) -> int:
        shift = 0
        for (a, b), (p, q), _ in self.edits:
            if at <= a:
                break
            if at < b:  # inside an inserted name: the pronoun's edge
                return p if is_start else q
            shift += (b - a) - (q - p)
        return at - shift


def _people(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, is a subject) of every mention of a titled person in ``text``, in order."""
    found: list[tuple[int, int, bool]] = []
    surnames: set[str] = set()
    for run in _NAME_RUN.finditer(text):
        words = list(_WORD.finditer(run.group()))
        before = _WORD.findall(text[max(0, run.start() - 30) : run.start()])
        titled = bool(before) and before[-1].lower() in TITLES
        # "Foreign Minister Gideon Saar": the person is what follows the last title word.
        last_title = max((i for i, w in enumerate(words) if w.group().lower() in TITLES), default=-1)
        person = words[last_title + 1 :]
        if not person:
            continue
        surname = re.sub(r"['’]s$", "", person[-1].group())  # "Trump’s victory": Trump
        if titled or last_title >= 0:
            surnames.add(surname)
        elif surname not in surnames:
            continue
        end = run.start() + person[-1].start() + len(surname)
        after = re.match(r" ([a-z]+)\b", text[end : end + 30])
        found.append((run.start() + person[0].start(), end, after is not None and after.group(1) not in _NOT_VERBS))
    return found


def resolve_pronouns(text: str) -> Resolved:
    """``text`` with each "he"/"she" replaced by the most recent titled person named before it."""
    people = _people(text)
    if not people:
        return Resolved(text)
    pieces: list[str] = []
    edits = []
    done = 0
    length = 0
    for pronoun in _PRONOUN.finditer(text):
        earlier = [p for p in people if p[1] <= pronoun.start() and p[2]]
        if not earlier:
            continue
        m_start, m_end, _ = earlier[-1]
        name = text[m_start:m_end]
        pieces.append(text[done : pronoun.start()])
        length += pronoun.start() - done
        edits.append(((length, length + len(name)), (pronoun.start(), pronoun.end()), (m_start, m_end)))
        pieces.append(name)
        length += len(name)
        done = pronoun.end()
    if not edits:
        return Resolved(text)
    pieces.append(text[done:])
    return Resolved("".join(pieces), tuple(edits))
