"""`qa.filters.Filters` as Milvus boolean expressions, and the expressions that find documents to remove."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qa.errors import InputError
from qa.filters import Filters, as_filters, parse_date
from qa.paths import prefix_forms


def literal(value: str) -> str:
    """``value`` as a Milvus string literal: double-quoted, with quotes, backslashes and controls escaped."""
    # JSON string syntax is a subset of what the Milvus expression parser unquotes, except \uXXXX:
    # Milvus rejects it, and JSON writes other control characters only that way (as it does
    # lone surrogates, which are not UTF-8). No real field value holds them: refuse them.
    bad = next((c for c in value if (ord(c) < 32 and c not in "\t\n\r") or 0xD800 <= ord(c) <= 0xDFFF), None)
    if bad is not None:
        raise InputError(
            f"a filter value holds the control character U+{ord(bad):04X}, which a Milvus filter cannot "
            "express; remove it from the value"
        )
    return json.dumps(value, ensure_ascii=False)


def normal_path(path: str) -> str:
    # Must agree with qa.filters._normal_path: "./seeds/x.txt" and "seeds/x.txt" are one file.
    path = path.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (None: no bound)."""
    while prefix:
        code = ord(prefix[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:
            code = 0xE000  # surrogates are not valid in UTF-8 strings
        if code <= 0x10FFFF:
            return prefix[:-1] + chr(code)
        prefix = prefix[:-1]
    return None


def _values(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def in_list(field: str, values: Sequence[str]) -> str:
    if not values:
        return "id < 0"  # an empty list matches nothing; no primary key is negative
    return f"{field} in [{', '.join(literal(v) for v in values)}]"


def filter_expression(filters: Filters | Mapping[str, Any] | None) -> str:
    """The Milvus boolean expression that keeps exactly the passages `Filters.matches` accepts.

    Returns:
        The expression, or ``""`` when every passage is allowed.

    Raises:
        InputError: a filter field this backend does not know how to translate.
    """
    filters = as_filters(filters)
    if filters is None:
        return ""
    known = {"publisher", "section", "doc_id", "path_prefix", "date_from", "date_to"}
    unknown = [f.name for f in dataclasses.fields(filters) if f.name not in known and getattr(filters, f.name)]
    if unknown:
        raise InputError(f"the Milvus backend cannot filter on {', '.join(unknown)} yet; use a FAISS index for that")
    parts: list[str] = []
    publishers = _values(filters.publisher)
    if publishers is not None:
        parts.append(in_list("publisher_key", [p.casefold() for p in publishers]))
    sections = _values(filters.section)
    if sections is not None:
        parts.append(in_list("section_key", [s.casefold() for s in sections]))
    doc_ids = _values(filters.doc_id)
    if doc_ids is not None:
        parts.append(in_list("doc_id", doc_ids))
    if filters.path_prefix is not None:
        # A range, not LIKE: "_" and "%" are wildcards in LIKE and file names are full of "_".
        # VARCHARs compare bytewise, and UTF-8 byte order is code point order.
        # As typed and absolute (qa.paths.prefix_forms): stored paths are absolute, older ones relative.
        ranges = []
        for prefix in prefix_forms(filters.path_prefix):
            upper = successor(prefix)
            bound = f" and path_key < {literal(upper)}" if upper is not None else ""
            ranges.append(f"(path_key >= {literal(prefix)}{bound})")
        if ranges:
            parts.append(f"({' or '.join(ranges)})")
    start, end = parse_date(filters.date_from), parse_date(filters.date_to)
    if start is not None or end is not None:
        # date_key is "" when the source has no readable date, and "" sorts before every date.
        parts.append(f'date_key >= "{start.isoformat()}"' if start else 'date_key != ""')
        if end is not None:
            parts.append(f'date_key <= "{end.isoformat()}"')
    return " and ".join(parts)


def path_forms(target: str) -> list[str]:
    """The ways a stored (display) path may spell ``target``: as given, relative to the cwd, absolute."""
    forms = {normal_path(target).rstrip("/")}
    absolute = Path(target).resolve()
    forms.add(absolute.as_posix())
    with contextlib.suppress(ValueError):
        forms.add(absolute.relative_to(Path.cwd().resolve()).as_posix())
    return sorted(f for f in forms if f)


def document_expression(targets: Sequence[str]) -> str:
    """Rows that may belong to the documents ``targets`` names: by doc id, file path, or folder."""
    clauses = [in_list("doc_id", list(targets))]
    for target in targets:
        for form in path_forms(target):
            # The file itself, or anything under the folder (a range: see filter_expression).
            clauses.append(f"path_key == {literal(form)}")
            clauses.append(f"(path_key >= {literal(form + '/')} and path_key < {literal(form + '0')})")
    return " or ".join(clauses)
