"""How `qa` stores, matches and shows the paths of source files.

An index stores each source's path **absolute and resolved** (symlinks followed), so
that it names the same file whatever the working directory of ``qa index``, ``qa
remove`` or ``qa search`` is: re-indexing from another directory changes nothing, and
``open(hit.source.path)`` works from anywhere. People see paths relative to their
working directory when the file is under it (`display_path`).

The price is portability: an index copied to another machine, or a corpus moved to
another folder, keeps the old absolute paths until it is re-indexed from the new place
(doc ids and passage ids are relative to the folder given, so that re-index embeds
nothing again; it only rewrites the paths). Indexes written before this rule store
paths relative to where they were built; matching accepts those too.

This module imports nothing from `qa`: documents, filters, the stores and the CLI
all use it.
"""

from __future__ import annotations

import os
from pathlib import Path


def source_path(path: str | os.PathLike[str]) -> str:
    """The form an index stores: absolute, resolved, with forward slashes.

    Args:
        path: a file or folder path, relative to the working directory or absolute.

    Returns:
        The absolute resolved path as a POSIX string.
    """
    return Path(path).resolve().as_posix()


def display_path(path: str) -> str:
    """A stored path as people read it: relative to the working directory when under it.

    Args:
        path: a path as stored in an index (absolute, or relative for older indexes).

    Returns:
        ``seeds/a.txt`` for ``/home/me/seeds/a.txt`` run from ``/home/me``; the path
        unchanged when it is elsewhere or already relative.
    """
    if not os.path.isabs(path):
        return path
    try:
        return Path(path).relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return path


def normal_path(path: str) -> str:
    """``path`` with backslashes as slashes and without leading ``./`` (textual, no file system)."""
    path = path.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def prefix_forms(prefix: str) -> list[str]:
    """The stored forms a ``--path-prefix`` can take: as typed, and absolute.

    ``seeds/`` typed in ``/home/me`` matches sources stored as ``/home/me/seeds/...``
    (indexes of today) and as ``seeds/...`` (indexes written before paths were absolute).
    A trailing slash is kept, so ``seeds/`` does not match ``seeds2/``.

    Args:
        prefix: the prefix as the user gave it.

    Returns:
        One or two distinct non-empty prefixes; empty when ``prefix`` is empty.
    """
    typed = normal_path(prefix)
    if not typed:
        return []
    absolute = source_path(typed) if typed not in (".", "./") else source_path(".") + "/"
    if typed.endswith("/") and not absolute.endswith("/"):
        absolute += "/"
    return list(dict.fromkeys([typed, absolute]))


def path_has_prefix(stored: str, prefix: str) -> bool:
    """Whether a stored source path starts with ``prefix`` in any of its `prefix_forms`."""
    path = normal_path(stored)
    return any(path.startswith(form) for form in prefix_forms(prefix))


def names_path(target: str, stored: str) -> bool:
    """Whether ``target`` (a file or a folder, relative to the working directory or absolute)
    names the file stored as ``stored`` or a folder above it."""
    try:
        given = Path(target).resolve()
        path = Path(stored).resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return path == given or given in path.parents
