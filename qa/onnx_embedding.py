"""Sentence embeddings with ONNX Runtime and the `tokenizers` library: no torch at run time.

`OnnxEmbedder` runs an export made by `qa.onnx_export` (made once per model and
precision, the only step that needs torch). Pooling and normalisation are the
sentence-transformers recipe written out: the mean (or the CLS state) of the last
hidden states over the attention mask, then unit length. The vectors agree with
sentence-transformers' torch output at cosine >= 0.999 for fp32 (tests/test_onnx.py).

One forward pass also gives sentence vectors: `encode_with_sentences` pools each
sentence's tokens inside its passage window, so the best-sentence signal costs no
second pass through the model.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.backends import PRECISION
from qa.errors import ModelNotFoundError

logger = logging.getLogger(__name__)
# Each precision this module runs has one backend name (torch is the other fp32 one).
_BACKEND_OF = {precision: backend for backend, precision in PRECISION.items() if backend != "torch"}

PROGRESS_MIN_TEXTS = 64


class OnnxEmbedder:
    """A sentence-transformers model exported to ONNX.

    ``fp32`` and dynamic ``int8`` run on ONNX Runtime, ``bf16`` on OpenVINO.
    """

    def __init__(
        self,
        name: str,
        model_path: Path | Callable[[], Path],
        precision: str = "int8",
        *,
        query_threads: int = 1,
        batch_threads: int | None = None,
    ) -> None:
        self._name = name
        self._model_path = model_path
        self.precision = precision
        self._query_threads = query_threads
        self._batch_threads = batch_threads or os.cpu_count() or 1
        self._lock = threading.Lock()
        self._state: dict[str, Any] | None = None
        self._sessions: dict[int, Any] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def backend(self) -> str:
        return _BACKEND_OF[self.precision]

    def _loaded(self) -> dict[str, Any]:
        with self._lock:
            if self._state is None:
                from tokenizers import Tokenizer

                from qa.onnx_export import ensure_export

                # Resolved on first use: opening an index to remove documents needs no model.
                path = self._model_path() if callable(self._model_path) else self._model_path
                folder, manifest = ensure_export(path, self.precision)
                counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
                counter.no_truncation()
                counter.no_padding()
                encoder = Tokenizer.from_file(str(folder / "tokenizer.json"))
                encoder.no_padding()
                encoder.enable_truncation(int(manifest["max_seq_length"]))
                self._state = {"folder": folder, "manifest": manifest, "counter": counter, "encoder": encoder}
            return self._state

    def _session(self, threads: int) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
        """A callable from one text's inputs to its token states, made once per thread count."""
        state = self._loaded()
        with self._lock:
            if threads not in self._sessions:
                model = state["folder"] / "model.onnx"
                try:
                    if self.precision == "bf16":
                        self._sessions[threads] = _openvino_runner(model, threads, self._batch_threads)
                    else:
                        self._sessions[threads] = _onnxruntime_runner(model, threads)
                except ModelNotFoundError:
                    raise
                except Exception as exc:  # both runtimes raise their own untyped errors
                    raise ModelNotFoundError(f"cannot load the ONNX export in {state['folder']}: {exc}") from exc
            return self._sessions[threads]

    @property
    def dim(self) -> int:
        return int(self._loaded()["manifest"]["dim"])

    @property
    def max_tokens(self) -> int:
        # Same rule as the torch backend: all-MiniLM-L6-v2 was trained on 128 word pieces.
        return min(int(self._loaded()["manifest"]["max_seq_length"]), 128)

    def count_tokens(self, text: str) -> int:
        return len(self._loaded()["counter"].encode(text, add_special_tokens=False).ids)

    def export_info(self) -> dict[str, Any]:
        """What the manifest records about this backend: precision and, once loaded, the export's checksum."""
        if self._state is None:
            return {"precision": self.precision}
        return {"precision": self.precision, "onnx_sha256": self._state["manifest"]["files"]["model.onnx"]["sha256"]}

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        vectors, _ = self._run(texts, None, progress=progress)
        return vectors

    def encode_with_sentences(
        self,
        texts: Sequence[str],
        sentence_spans: Sequence[Sequence[tuple[int, int]]],
        *,
        batch_size: int = 64,
        progress: bool = False,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Passage vectors and, from the same forward pass, one vector per given sentence span.

        Args:
            texts: passages.
            sentence_spans: for each passage, character spans ``(start, end)`` of its sentences.

        Returns:
            ``(vectors, sentences)``: ``vectors`` is ``(len(texts), dim)``; ``sentences[i]`` is
            ``(len(sentence_spans[i]), dim)``, each row the unit-length mean of that sentence's
            token states in passage ``i``'s window (its passage vector if the sentence lost all
            its tokens to truncation).
        """
        if len(sentence_spans) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(sentence_spans)} lists of sentence spans")
        vectors, sentences = self._run(texts, sentence_spans, progress=progress)
        assert sentences is not None
        return vectors, sentences

    def _run(
        self,
        texts: Sequence[str],
        spans: Sequence[Sequence[tuple[int, int]]] | None,
        *,
        progress: bool,
    ) -> tuple[np.ndarray, list[np.ndarray] | None]:
        state = self._loaded()
        dim = int(state["manifest"]["dim"])
        if not texts:
            return np.zeros((0, dim), dtype=np.float32), ([] if spans is not None else None)
        encodings = state["encoder"].encode_batch(list(texts))
        # One text per run, never a padded batch. Dynamic int8 scales activations over the whole
        # input tensor, so a text run beside others (or padded to their length) would get a slightly
        # different vector; alone, a vector is a function of its text: an update equals a fresh
        # build, and a stored vector equals `encode` of its text. It costs nothing: with one run per
        # core at a time, single texts were as fast as batches of 4-16 and 5% faster than 64 (fp32,
        # SQuAD windows). ``batch_size`` is the `Embedder` protocol's and has nothing to size here.
        # Several texts: one single-threaded run per core at a time keeps both cores busier than one
        # run split across them (no waiting on each other inside every layer).
        workers = min(self._batch_threads, len(texts))
        session = self._session(1 if workers > 1 else self._query_threads if len(texts) <= 4 else self._batch_threads)
        inputs = state["manifest"]["inputs"]
        cls_pooling = state["manifest"]["pooling"] == "cls"
        out = np.zeros((len(texts), dim), dtype=np.float32)
        sentence_out: list[np.ndarray] | None = [np.zeros((0, dim), np.float32)] * len(texts) if spans else None

        def run(row: int) -> None:
            e = encodings[row]
            mask = np.array([e.attention_mask], dtype=np.int64)
            feed = {"input_ids": np.array([e.ids], dtype=np.int64), "attention_mask": mask,
                    "token_type_ids": np.array([e.type_ids], dtype=np.int64)}  # fmt: skip
            states = session({name: feed[name] for name in inputs})
            if cls_pooling:
                pooled = states[:, 0, :]
            else:
                weights = mask[:, :, None].astype(np.float32)
                pooled = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            out[row] = _unit(pooled)[0]
            if spans and sentence_out is not None:
                sentence_out[row] = _pool_sentences(states[0], e.offsets, mask[0], spans[row], out[row])

        bar = None
        if progress and len(texts) >= PROGRESS_MIN_TEXTS:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="Embedding", unit="passage")
        try:
            if workers > 1:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qa-embed") as pool:
                    for _ in pool.map(run, range(len(texts))):
                        if bar is not None:
                            bar.update(1)
            else:
                for row in range(len(texts)):
                    run(row)
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return out, sentence_out


def _onnxruntime_runner(model: Path, threads: int) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No busy-waiting between calls: idle threads spinning on 2 cores starve whatever
    # else runs in the process (a torch model, a web server) and on the machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return lambda feed: session.run(None, feed)[0]


def _openvino_runner(model: Path, threads: int, workers: int) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """OpenVINO in bfloat16 where the CPU computes it natively (AVX512-BF16, AMX), else fp32.

    bf16 keeps fp32's exponent, so vectors agree with fp32 at cosine >= 0.9999 (tests/test_onnx.py),
    where int8 costs recall; on this 2-core EPYC a SQuAD build takes 28 s against fp32 ONNX's 37 s.
    """
    try:
        import openvino as ov
    except ImportError as exc:
        raise ModelNotFoundError(
            f"the openvino-bf16 backend needs OpenVINO ({exc}); pip install openvino, or use --backend onnx"
        ) from exc
    core = ov.Core()
    native = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if not native:
        # Emulated bf16 is slower than fp32; the vectors differ from bf16 ones by rounding only.
        logger.warning("this CPU has no native bfloat16; the openvino-bf16 backend computes in fp32")
    # With one thread per run, one stream per worker: each worker's runs go to a stream of their own.
    streams = workers if threads == 1 else 1
    compiled = core.compile_model(core.read_model(str(model)), "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16" if native else "f32",
        "NUM_STREAMS": str(streams),
        "INFERENCE_NUM_THREADS": str(streams * threads),
    })  # fmt: skip
    local = threading.local()

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:  # an infer request is not thread-safe: one per calling thread
            request = local.request = compiled.create_infer_request()
        return np.asarray(request.infer(feed)[0])

    return run


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _pool_sentences(
    states: np.ndarray,
    offsets: Sequence[tuple[int, int]],
    mask: np.ndarray,
    spans: Sequence[tuple[int, int]],
    fallback: np.ndarray,
) -> np.ndarray:
    """The unit mean of the token states inside each character span."""
    if not spans:
        return np.zeros((0, states.shape[-1]), dtype=np.float32)
    n = len(offsets)
    starts = np.fromiter((a for a, _ in offsets), dtype=np.int64, count=n)
    ends = np.fromiter((b for _, b in offsets), dtype=np.int64, count=n)
    real = (ends > starts) & (mask[:n] > 0)  # special tokens have empty offsets
    result = np.empty((len(spans), states.shape[-1]), dtype=np.float32)
    for j, (a, b) in enumerate(spans):
        inside = real & (starts < b) & (ends > a)
        result[j] = states[:n][inside].mean(axis=0) if inside.any() else fallback
    return _unit(result)
