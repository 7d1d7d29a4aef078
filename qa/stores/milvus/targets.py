"""Where a Milvus index lives: ``milvus://HOST:PORT/COLLECTION``, ``milvus+https://…``, or a Milvus Lite file.

Pure string handling (no pymilvus import) but for `connect`, which imports it when called.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from qa.errors import InputError, QAError

#: URL schemes of a Milvus server or cluster: ``milvus://HOST:PORT/COLLECTION`` (plain gRPC)
#: and ``milvus+https://HOST:PORT/COLLECTION`` (TLS, e.g. the hosted service).
MILVUS_SCHEMES = ("milvus://", "milvus+https://")
#: A local path with this suffix is a Milvus Lite database (in-process, one file/folder).
MILVUS_LITE_SUFFIX = ".db"
DEFAULT_COLLECTION = "qa_passages"


DEFAULT_PORT = 19530


META_SUFFIX = "_qa_meta"


TOKEN_ENV = "QA_MILVUS_TOKEN"


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: The companion collection holding each passage's sentence vectors (the best-sentence signal).
SENTENCES_SUFFIX = "_qa_sentences"


class MilvusUnavailableError(QAError):
    """pymilvus / milvus-lite are not installed, or the Milvus server cannot be reached."""


@dataclass(frozen=True)
class MilvusTarget:
    """Where a Milvus index lives.

    Attributes:
        uri: what `pymilvus.MilvusClient` connects to (``http://host:port`` or a Lite file path).
        collection: the collection holding the passages.
        lite: True for a Milvus Lite file.
        name: the target as the user wrote it (for messages and the CLI).
    """

    uri: str
    collection: str
    lite: bool
    name: str

    @property
    def meta_collection(self) -> str:
        return self.collection + META_SUFFIX

    @property
    def sentences_collection(self) -> str:
        return self.collection + SENTENCES_SUFFIX


def is_milvus_target(target: str | os.PathLike[str] | None) -> bool:
    """True when ``target`` names a Milvus index (a ``milvus://`` URL or a Milvus Lite ``*.db`` path).

    Pure string test, so dispatching on it never imports pymilvus.
    """
    if target is None:
        return False
    text = normalise_url(os.fspath(target))
    return text.startswith(MILVUS_SCHEMES) or text.rstrip("/").endswith(MILVUS_LITE_SUFFIX)


def normalise_url(text: str) -> str:
    """``milvus:/host:port/c`` (what ``str(Path("milvus://host:port/c"))`` gives) back to ``milvus://…``."""
    for scheme in MILVUS_SCHEMES:
        single = scheme[:-1]
        if text.startswith(single) and not text.startswith(scheme):
            return scheme + text[len(single) :]
    return text


def parse_target(target: str | os.PathLike[str], collection: str | None = None) -> MilvusTarget:
    """Read ``milvus://HOST:PORT/COLLECTION``, ``milvus+https://…`` or a Milvus Lite ``*.db`` path.

    Args:
        target: the index location.
        collection: the collection name; overrides the URL's, and names the collection in a Lite file.

    Raises:
        InputError: not a Milvus target, or a collection name Milvus would refuse.
    """
    text = normalise_url(os.fspath(target))
    if text.startswith(MILVUS_SCHEMES):
        parts = urlsplit(text)
        if not parts.hostname:
            raise InputError(f"{text!r} names no host; write milvus://HOST:PORT/COLLECTION")
        scheme = "https" if parts.scheme == "milvus+https" else "http"
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        uri = f"{scheme}://{host}:{parts.port or DEFAULT_PORT}"
        name = collection or parts.path.strip("/") or DEFAULT_COLLECTION
        lite = False
    elif text.rstrip("/").endswith(MILVUS_LITE_SUFFIX):
        uri = str(Path(text).expanduser().resolve())
        name = collection or DEFAULT_COLLECTION
        lite = True
    else:
        raise InputError(
            f"{text!r} is not a Milvus target; use milvus://HOST:PORT/COLLECTION or a Milvus Lite file ending in .db"
        )
    if not _NAME.fullmatch(name) or len(name) + len(SENTENCES_SUFFIX) > 255:
        raise InputError(
            f"collection name {name!r} is not valid in Milvus; use letters, digits and underscores, "
            "starting with a letter, e.g. milvus://localhost:19530/news"
        )
    return MilvusTarget(uri, name, lite, text)


def connect(target: MilvusTarget) -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise MilvusUnavailableError(
            f"Milvus support is optional and not installed ({exc}); install it with: pip install 'qa[milvus]'"
        ) from exc
    if target.lite:
        Path(target.uri).parent.mkdir(parents=True, exist_ok=True)
    try:
        return MilvusClient(uri=target.uri, token=os.environ.get(TOKEN_ENV, ""))
    except Exception as exc:  # pymilvus raises MilvusException, grpc errors, or ImportError for Lite
        where = f"the Milvus Lite file {target.uri}" if target.lite else f"the Milvus server at {target.uri}"
        hint = (
            "is milvus-lite installed (pip install 'qa[milvus]') and the file not open in another process?"
            if target.lite
            else "is it running and reachable? (start one locally with: milvus-server --data DIR)"
        )
        raise MilvusUnavailableError(f"cannot open {where}: {exc}; {hint}") from exc
