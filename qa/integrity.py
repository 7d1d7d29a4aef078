"""What an index folder may make `qa` do: checks that keep a damaged or hostile folder harmless.

A manifest is data written by `qa`, but a folder can be copied half-way, edited by hand,
or built to attack: every value it holds is checked for shape, type and bounds before
use, and every file it names is opened only if it is a regular file strictly inside the
index folder (no absolute path, no ``..``, no symlink, no FIFO or device, which would
escape the folder or hang the reader). Whatever fails becomes one `IndexLoadError`.

Writers use the rest: `raise_if_disk_full` turns "no space left on device" into one
`DiskFullError` that says the previous index is intact, `remove_strays` deletes a failed
write's half files, and `expect_commit`/`commits_done` let the CLI tell, after a Ctrl-C,
whether an update had already been committed.

A low layer: imports only `qa.errors` and the standard library, so every store can use it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from qa.errors import DiskFullError, IndexLoadError, InputError


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file's bytes, read in blocks (model weights are tens of MB)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


#: A manifest is a few KB (one entry per file plus the source paths); anything far larger is not one.
MAX_MANIFEST_BYTES = 64 << 20
#: Bounds on the numbers a manifest may hold (far above any real index, far below overflow).
MAX_COUNT = 1 << 40
MAX_DIM = 1 << 16
#: What `qa.index` writes as a generation folder name: ``gen-<UTC time>-<8 hex>``.
GENERATION = re.compile(r"gen-[A-Za-z0-9_-]{1,100}")
SHA256 = re.compile(r"[0-9a-f]{64}")
#: Passage ids are 64-bit blake2b digests in hex (`qa.documents.passage_id`).
PASSAGE_ID = re.compile(r"[0-9a-f]{1,16}")
ANN_TYPES = ("flat", "hnsw", "ivf-sq8", "ivf-pq", "factory")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class ManifestFields:
    """The values of a manifest that loading relies on, checked for type and bounds.

    Attributes:
        model: the embedding model's name.
        dim: vector dimension, 1..`MAX_DIM`.
        count: passages in the index, 0..`MAX_COUNT`.
        generation: the generation folder, one safe path component (`GENERATION`).
        files: relative path (inside ``generation``) → ``{"sha256", "bytes"}``.
        ann: the index-type spec (``type`` is one of `ANN_TYPES`).
    """

    model: str
    dim: int
    count: int
    generation: str
    files: dict[str, dict[str, Any]]
    ann: dict[str, Any]


def _int(value: Any, name: str, low: int, high: int, where: str) -> int:
    # bool is an int to Python, and 1e400 is inf to json: both are refused rather than coerced.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise IndexLoadError(f"{where}: {name} must be a whole number from {low} to {high}, not {_show(value)}")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


#: Every top-level field a FAISS manifest of this format holds.
MANIFEST_KEYS = frozenset({
    "format", "format_version", "qa_version", "created", "model", "count", "index_type", "ann", "lexical",
    "metric", "generation", "files", "sources",
})  # fmt: skip


def check_manifest(manifest: Mapping[str, Any], where: str, legacy_ann: Mapping[str, Any]) -> ManifestFields:
    """Check the fields a manifest must hold, and their types and bounds.

    Args:
        manifest: the parsed ``manifest.json`` (format and version already checked).
        where: what to name in messages (the manifest's path).
        legacy_ann: the spec to assume when the manifest predates index types (no ``ann``).

    Returns:
        The checked values.

    Raises:
        IndexLoadError: a field is missing, of the wrong type, out of bounds, or names a path
            that is not a plain relative path inside the generation folder.
    """
    unknown = sorted(set(manifest) - MANIFEST_KEYS)
    if unknown:
        # A key this format never writes is damage (a flipped byte in a key name), not a newer field:
        # newer fields come with a new format version.
        raise IndexLoadError(f"{where}: unknown field {_show(unknown[0])}; the manifest is damaged")
    if manifest.get("metric", "inner_product") != "inner_product":
        raise IndexLoadError(f"{where}: 'metric' must be 'inner_product', not {_show(manifest.get('metric'))}")
    model = manifest.get("model")
    if not isinstance(model, Mapping) or not isinstance(model.get("name"), str) or not model["name"]:
        raise IndexLoadError(f"{where}: 'model' must be an object with a 'name' string, not {_show(model)}")
    if not isinstance(model.get("backend", ""), str):
        raise IndexLoadError(f"{where}: 'model.backend' must be a string, not {_show(model.get('backend'))}")
    dim = _int(model.get("dim"), "model.dim", 1, MAX_DIM, where)
    count = _int(manifest.get("count"), "count", 0, MAX_COUNT, where)
    generation = manifest.get("generation")
    if not isinstance(generation, str) or not GENERATION.fullmatch(generation):
        raise IndexLoadError(
            f"{where}: 'generation' must name a gen-* folder inside the index, not {_show(generation)}"
        )
    files = manifest.get("files")
    if not isinstance(files, Mapping):
        raise IndexLoadError(f"{where}: 'files' must be an object of path → checksum, not {type(files).__name__}")
    checked: dict[str, dict[str, Any]] = {}
    for relative, entry in files.items():
        check_relative(relative, generation, where)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("sha256"), str):
            raise IndexLoadError(f"{where}: the entry of {relative!r} must hold 'sha256' and 'bytes'")
        if not SHA256.fullmatch(entry["sha256"]):
            raise IndexLoadError(f"{where}: the sha256 of {relative!r} is not 64 hex digits")
        size = _int(entry.get("bytes"), f"the size of {relative!r}", 0, 1 << 50, where)
        checked[relative] = {"sha256": entry["sha256"], "bytes": size}
    ann = manifest.get("ann")
    if ann is None:
        ann = dict(legacy_ann)
    if not isinstance(ann, Mapping) or ann.get("type") not in ANN_TYPES:
        kind = ann.get("type") if isinstance(ann, Mapping) else ann
        raise IndexLoadError(f"{where}: 'ann.type' must be one of {', '.join(ANN_TYPES)}, not {_show(kind)}")
    if not isinstance(ann.get("factory"), str) or not isinstance(ann.get("params", {}), Mapping):
        raise IndexLoadError(f"{where}: 'ann' must hold a 'factory' string and a 'params' object")
    return ManifestFields(model["name"], dim, count, generation, checked, dict(ann))


def check_relative(relative: Any, generation: str, where: str) -> PurePosixPath:
    """A manifest's file name, refused unless it is a plain relative path inside ``generation``.

    Raises:
        IndexLoadError: an absolute path, ``..``, ``.``, an empty part, a backslash or NUL,
            or a path outside the generation folder.
    """
    if not isinstance(relative, str) or not relative or "\\" in relative or "\0" in relative:
        raise IndexLoadError(f"{where}: file name {_show(relative)} is not a relative path")
    parts = relative.split("/")
    if relative.startswith("/") or any(p in ("", ".", "..") for p in parts) or len(parts) < 2:
        raise IndexLoadError(f"{where}: file name {relative!r} is not a plain relative path inside the index")
    if parts[0] != generation:
        raise IndexLoadError(f"{where}: file {relative!r} is outside the generation {generation!r} it names")
    return PurePosixPath(relative)


def require_listed(files: Mapping[str, Any], generation: str, names: list[str], where: str) -> None:
    """Refuse a manifest that does not list (and so checksum) a file of ``generation`` the loader reads.

    Raises:
        IndexLoadError: one of ``names`` is not in ``files``.
    """
    for name in names:
        if f"{generation}/{name}" not in files:
            raise IndexLoadError(f"{generation}/{name} is not listed in {where}")


def regular_file(folder: Path, relative: str, hint: str = "") -> os.stat_result:
    """The ``lstat`` of ``folder/relative`` after checking every part of the path below ``folder``.

    Each component is looked at with ``lstat``, so no symlink is followed: the file is
    inside ``folder`` for real. ``folder`` itself may be a symlink (the user's choice).

    Raises:
        IndexLoadError: the file is missing, or it or a folder on its way is a symlink,
            or it is not a regular file (a FIFO or a device would hang or never end).
            ``hint`` (how to fix it) ends the message.
    """
    hint = f"; {hint}" if hint else ""
    current = folder
    parts = relative.split("/")
    for i, part in enumerate(parts):
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            raise IndexLoadError(
                f"{current} is missing: the index is incomplete (a deleted file or a partial copy){hint}"
            ) from None
        except OSError as exc:
            raise IndexLoadError(f"{current} cannot be read ({exc.strerror}){hint}") from None
        last = i == len(parts) - 1
        if stat.S_ISLNK(info.st_mode):
            raise IndexLoadError(f"{current} is a symbolic link; an index holds only its own files{hint}")
        if not last and not stat.S_ISDIR(info.st_mode):
            raise IndexLoadError(f"{current} is not a folder{hint}")
        if last and not stat.S_ISREG(info.st_mode):
            raise IndexLoadError(f"{current} is not a regular file (a FIFO, device or folder){hint}")
    return info


def open_regular(path: Path, mode: str = "rb", **kwargs: Any) -> IO[Any]:
    """Open ``path`` for reading only if it is a regular file, never following a symlink at its end.

    ``O_NONBLOCK`` makes opening a FIFO return at once instead of waiting for a writer;
    the type is then checked on the open descriptor, so nothing can swap the file in between.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IndexLoadError: ``path`` is a symlink, FIFO, device or folder.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise IndexLoadError(f"{path} is not a regular file") from None
        raise IndexLoadError(f"{path} cannot be read ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IndexLoadError(f"{path} is not a regular file (a FIFO, device or folder)")
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def read_json_object(path: Path, limit: int = MAX_MANIFEST_BYTES) -> dict[str, Any]:
    """A JSON object read from a regular file of at most ``limit`` bytes.

    Raises:
        FileNotFoundError: no file at ``path``.
        IndexLoadError: not a regular file, too large, or too deeply nested to parse.
        ValueError: not JSON (including not UTF-8), or not an object.
    """
    with open_regular(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise IndexLoadError(f"{path} is larger than {limit} bytes: not a qa manifest")
    try:
        parsed = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise IndexLoadError(f"{path} is nested too deeply to be a qa manifest") from None
    if not isinstance(parsed, dict):
        raise ValueError("not a JSON object")
    return parsed


def check_target(folder: Path) -> None:
    """Refuse an index target that exists but is not a folder (``--index`` naming a file).

    Raises:
        InputError: ``folder`` is a file (or a FIFO, a device...).
    """
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file, not an index folder; give --index a folder (new or existing)")


def passage_record(record: Any, where: str) -> tuple[str, str, dict[str, Any]]:
    """``(passage_id, text, source fields)`` of one stored passage line, checked for type.

    Raises:
        IndexLoadError: not an object, a passage id that is not hex (`check_passage_id`),
            a text that is not a string, or a source that is not an object.
    """
    if not isinstance(record, dict):
        raise IndexLoadError(f"{where}: a line is not a JSON object")
    passage_id = check_passage_id(record.get("passage_id"), where)
    text, source = record.get("text"), record.get("source")
    if not isinstance(text, str) or not isinstance(source, dict):
        raise IndexLoadError(f"{where}: passage {passage_id} lacks a 'text' string or a 'source' object")
    return passage_id, text, source


def may_replace(folder: Path, manifest: str) -> bool:
    """Whether a writer may put an index in ``folder``: absent, empty, holding a manifest, or holding
    nothing but what a qa index holds (``gen-*`` folders, temp manifests: an index whose manifest
    was lost). Anything else may be the user's own files, which a writer must not touch."""
    if not folder.is_dir():
        return True
    if os.path.lexists(folder / manifest):
        return not (folder / manifest).is_dir() or (folder / manifest).is_symlink()
    return all(GENERATION.fullmatch(p.name) or p.name.startswith(f".{manifest}.tmp-") for p in folder.iterdir())


def check_passage_id(value: Any, where: str) -> str:
    """A stored passage id, refused unless it is 1-16 lower-case hex digits (a 64-bit id).

    Raises:
        IndexLoadError: another type or form.
    """
    if not isinstance(value, str) or not PASSAGE_ID.fullmatch(value):
        raise IndexLoadError(f"{where}: passage_id {_show(value)} is not a hex id of up to 16 digits")
    return value


# ---------------------------------------------------------------------------
# Writers: full disks, stray files, commits


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or quota) is full: an ``OSError`` ENOSPC/EDQUOT, or a
    library's error (FAISS raises ``RuntimeError``) whose message carries that reason."""
    if isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and exc.errno in _NO_SPACE):
        return True
    text = str(exc)
    return isinstance(exc, (OSError, RuntimeError)) and any(os.strerror(code) in text for code in _NO_SPACE)


def raise_if_disk_full(exc: BaseException, folder: Path) -> None:
    """Re-raise a full-disk error of a write that did not commit as one `DiskFullError`.

    Call it from the handler of a write that has already removed its half-written files.

    Raises:
        DiskFullError: when `is_disk_full` (chained to ``exc``); otherwise returns.
    """
    if is_disk_full(exc):
        raise DiskFullError(
            f"the disk is full: the write to {folder} was undone and the previous index there (if any) is "
            "intact; free some space and run the command again"
        ) from exc


def remove_strays(folder: Path, names: Iterator[str] | list[str]) -> None:
    """Delete what a failed write left in ``folder``: files or folders named ``names`` (errors ignored)."""
    for name in names:
        path = folder / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass


# Bounded: a long-lived process (a server) writing many times keeps only the latest few notes.
_expected: deque[tuple[Path, str]] = deque(maxlen=16)


def expect_commit(manifest: Path, generation: str) -> None:
    """Note, just before the commit point, that ``manifest`` is about to name ``generation``.

    `commits_done` then tells whether the commit happened, even if an interrupt came
    between the commit and any bookkeeping after it.
    """
    _expected.append((manifest, generation))


def commits_done() -> list[tuple[Path, str]]:
    """The ``(manifest, generation)`` pairs noted by `expect_commit` that the manifests on disk now name."""
    done = []
    for manifest, generation in _expected:
        try:
            if read_json_object(manifest).get("generation") == generation:
                done.append((manifest, generation))
        except (OSError, ValueError, IndexLoadError):
            continue
    return done


def forget_commits() -> None:
    """Clear the notes of `expect_commit` (at the start of a command)."""
    _expected.clear()
