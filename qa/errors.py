"""Errors raised by `qa`. Each message says what went wrong and how to fix it."""

from __future__ import annotations


class QAError(Exception):
    """Base class for every error `qa` raises on purpose."""


class InputError(QAError, ValueError):
    """Bad input: a missing path, an empty folder, an empty query, a bad ``k``."""


class IndexLoadError(QAError):
    """An index folder is missing, foreign, corrupted, or from another format version."""


class ModelMismatchError(QAError):
    """The embedding model does not match the one the index was built with."""


class ModelNotFoundError(QAError):
    """A model could not be found locally (`qa` never downloads at run time)."""


class DiskFullError(QAError, OSError):
    """The disk filled up while writing an index; the write was undone and the previous index is intact."""


class MissingDependencyError(QAError, ImportError):
    """An optional package a feature needs is not installed (the message names the extra to install)."""
