"""Metadata filters: which passages a search may return.

A `Filters` value is tested against each passage's `Source`. The index turns it
into the set of allowed rows *before* the top-k cut (see `qa.index.Index.select_rows`),
so a filtered search returns ``k`` hits whenever ``k`` matching passages exist.

    Filters(publisher="i24NEWS", date_from="2025-01-01")
    Filters(doc_id=["a1", "a2"], path_prefix="seeds/world/")

Every field left as None matches everything; the fields that are set must all
match (AND). A field given a list matches any of its values (OR).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qa.documents import Source
from qa.errors import InputError
from qa.paths import normal_path, path_has_prefix

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def parse_date(value: str | _dt.date | None) -> _dt.date | None:
    """The calendar date at the start of ``value`` (``2025-01-21``, ``2025-01-21T10:00:00Z``), or None.

    Times and time zones are ignored: news dates are compared by day.
    """
    if value is None or isinstance(value, _dt.date):
        return value.date() if isinstance(value, _dt.datetime) else value
    match = _DATE.match(value.strip())
    if not match:
        return None
    try:
        return _dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def _values(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class Filters:
    """Conditions on a passage's source; all set fields must hold.

    Attributes:
        publisher: publisher name(s), compared case-insensitively.
        section: section name(s), compared case-insensitively.
        doc_id: document id(s), compared exactly.
        path_prefix: the source path starts with this (``seeds/`` or ``seeds/world``).
        date_from: earliest date, inclusive (``YYYY-MM-DD`` or a `datetime.date`).
        date_to: latest date, inclusive. With either date set, passages without a
            readable date are excluded.
    """

    publisher: str | Sequence[str] | None = None
    section: str | Sequence[str] | None = None
    doc_id: str | Sequence[str] | None = None
    path_prefix: str | None = None
    date_from: str | _dt.date | None = None
    date_to: str | _dt.date | None = None

    def __post_init__(self) -> None:
        for name in ("publisher", "section", "doc_id"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str) and (
                not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value)
            ):
                raise InputError(f"{name} must be a string or a list of strings, not {value!r:.60}")
        if self.path_prefix is not None and not isinstance(self.path_prefix, str):
            raise InputError(f"path_prefix must be a string, not {self.path_prefix!r:.60}")
        for name in ("date_from", "date_to"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, _dt.date)):
                raise InputError(f"{name} must be a YYYY-MM-DD string or a datetime.date, not {value!r:.60}")
            if value is not None and parse_date(value) is None:
                raise InputError(f"{name} {value!r} is not a date; write it as YYYY-MM-DD, e.g. 2025-01-21")
        start, end = parse_date(self.date_from), parse_date(self.date_to)
        if start and end and start > end:
            raise InputError(f"date_from {start} is after date_to {end}; swap them")

    @property
    def empty(self) -> bool:
        """True when no field is set (every passage matches)."""
        return all(
            v is None
            for v in (self.publisher, self.section, self.doc_id, self.path_prefix, self.date_from, self.date_to)
        )

    def matches(self, source: Source) -> bool:
        """Whether a passage with this source passes every set condition."""
        publishers = _values(self.publisher)
        if publishers is not None and source.publisher.casefold() not in {p.casefold() for p in publishers}:
            return False
        sections = _values(self.section)
        if sections is not None and source.section.casefold() not in {s.casefold() for s in sections}:
            return False
        doc_ids = _values(self.doc_id)
        if doc_ids is not None and source.doc_id not in doc_ids:
            return False
        if self.path_prefix is not None and not path_has_prefix(source.path, self.path_prefix):
            return False
        if self.date_from is not None or self.date_to is not None:
            date = parse_date(source.date)
            if date is None:
                return False
            start, end = parse_date(self.date_from), parse_date(self.date_to)
            if (start and date < start) or (end and date > end):
                return False
        return True


def as_filters(value: Filters | Mapping[str, Any] | None) -> Filters | None:
    """``value`` as a `Filters`: a `Filters`, a mapping of its fields, or None.

    Raises:
        InputError: another type (such as a string), or a mapping with unknown or bad fields.
    """
    if value is None or isinstance(value, Filters):
        return value
    if not isinstance(value, Mapping):
        raise InputError(f"filters must be a qa.Filters or a dict of its fields, not {type(value).__name__}")
    known = {f.name for f in dataclasses.fields(Filters)}
    unknown = sorted(str(k) for k in value if k not in known)
    if unknown:
        raise InputError(f"unknown filter fields {', '.join(unknown)}; use {', '.join(sorted(known))}")
    return Filters(**value)


def _normal_path(path: str) -> str:
    # "./seeds/x.txt" and "seeds/x.txt" name the same file; compare without the "./".
    return normal_path(path)
