"""qa: semantic search and question answering over articles, with sources.

    import qa
    index = qa.build_index(["seeds"], "indexes/default")
    index.search("who mediated Turkey-Israel?", k=5)   # list[qa.Hit]
    index.ask("who mediated Turkey-Israel?")            # qa.Answer

Heavy libraries (torch, sentence-transformers, faiss) load on first use, so
``import qa`` is instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from qa._version import __version__

# name → module that defines it; resolved on first access (PEP 562).
_EXPORTS = {
    "build_index": "qa.index",
    "load_index": "qa.index",
    "Index": "qa.index",
    "Hit": "qa.retrieval",
    "Source": "qa.documents",
    "Passage": "qa.documents",
    "load_passages": "qa.documents",
    "Answer": "qa.answering",
    "Embedder": "qa.embedding",
    "Filters": "qa.filters",
    "QAError": "qa.errors",
    "InputError": "qa.errors",
    "IndexLoadError": "qa.errors",
    "ModelMismatchError": "qa.errors",
    "ModelNotFoundError": "qa.errors",
    "MissingDependencyError": "qa.errors",
    "Hits": "qa.retrieval",
}

__all__ = [
    "Answer",
    "Embedder",
    "Filters",
    "Hit",
    "Hits",
    "Index",
    "IndexLoadError",
    "InputError",
    "MissingDependencyError",
    "ModelMismatchError",
    "ModelNotFoundError",
    "Passage",
    "QAError",
    "Source",
    "__version__",
    "build_index",
    "load_index",
    "load_passages",
]

if TYPE_CHECKING:
    from qa.answering import Answer
    from qa.documents import Passage, Source, load_passages
    from qa.embedding import Embedder
    from qa.errors import (
        IndexLoadError,
        InputError,
        MissingDependencyError,
        ModelMismatchError,
        ModelNotFoundError,
        QAError,
    )
    from qa.filters import Filters
    from qa.index import Index, build_index, load_index
    from qa.retrieval import Hit, Hits


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'qa' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
