"""Pronouns read as the person they stand for, and spans mapped back to the passage as written."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from qa.coreference import resolve_pronouns

AIDE = (
    "Two days later, Aliyev aide Hikmet Hajiyev arrived in Jerusalem to meet with President Herzog, "
    "Foreign Minister Gideon Saar, and other Israeli officials. After his return to Baku, Hajiyev reported "
    "to the Azerbaijani president and departed to Ankara. Turkish media claimed that he is playing a "
    "mediator role between Israel and Turkey."
)
MEETING = (
    "President Isaac Herzog arranged the meeting with Azerbaijani President Ilham Aliyev, with whom he has "
    "long established friendly relations."
)


def test_he_is_the_most_recent_titled_person_who_is_a_subject() -> None:
    resolved = resolve_pronouns(AIDE)
    assert "Turkish media claimed that Hajiyev is playing a mediator role" in resolved.text
    # Not the object just before the pronoun: Herzog arranged, Aliyev is "with whom".
    assert "with whom Isaac Herzog has long" in resolve_pronouns(MEETING).text


def test_a_passage_without_titled_people_reads_as_written() -> None:
    text = "Nikola Tesla was an inventor. He was born in 1856, and he moved to New York in 1884."
    resolved = resolve_pronouns(text)
    assert resolved.text == text and resolved.edits == ()
    assert resolved.to_original(0, 12) == (0, 12)


def test_spans_map_back_to_the_passage_as_written() -> None:
    resolved = resolve_pronouns(AIDE)
    at = resolved.text.index("Hajiyev is playing")
    # The inserted name is the earlier mention of the person.
    start, end = resolved.to_original(at, at + len("Hajiyev"))
    assert AIDE[start:end] == "Hajiyev" and end < AIDE.index(" he ")
    # A span across the insertion keeps the pronoun; one after it shifts back.
    begin = resolved.text.index("Turkish media")
    start, end = resolved.to_original(begin, resolved.text.index(" between"))
    assert AIDE[start:end] == "Turkish media claimed that he is playing a mediator role"
    after = resolved.text.index("Israel and Turkey")
    start, end = resolved.to_original(after, after + len("Israel and Turkey"))
    assert AIDE[start:end] == "Israel and Turkey"


@given(st.integers(0, 10_000), st.integers(1, 40))
def test_text_outside_the_inserted_names_maps_to_the_same_words(offset: int, length: int) -> None:
    resolved = resolve_pronouns(AIDE)
    (inserted, _, _) = resolved.edits[0]
    start = offset % (len(resolved.text) - 1)
    end = min(len(resolved.text), start + length)
    if start < inserted[1] and inserted[0] < end:
        return  # touches the name read in place of "he": tested above
    a, b = resolved.to_original(start, end)
    assert AIDE[a:b] == resolved.text[start:end]
