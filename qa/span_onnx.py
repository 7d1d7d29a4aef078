"""The span reader's model on ONNX Runtime: answers read without importing torch.

`qa.span_reader` assembles its model from the bundled base model plus the shipped artefact
(torch, once); this module exports that model to ONNX into qa's cache (`qa.onnx_export`,
same rules: keyed by the checksums of what it was made from, verified on load, remade when
damaged) and runs it with `tokenizers` + `onnxruntime`. Logits agree with torch's to float
rounding (tests/test_span_reader.py), so answers are the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.errors import ModelNotFoundError
from qa.onnx_export import ensure_cached, write_export_manifest

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class Windows:
    """Question + passage windows, as the model reads them.

    Attributes:
        passage: for each window, the index of its passage.
        start_logits, end_logits: ``(windows, tokens)``.
        offsets: per window, per token, (start, end) characters in its passage.
        context: per window, per token, True where the token belongs to the passage.
    """

    passage: list[int]
    start_logits: np.ndarray
    end_logits: np.ndarray
    offsets: list[list[tuple[int, int]]]
    context: list[np.ndarray]


def export_span_model(key: str, build: Callable[[], tuple[Any, Any]]) -> Path:
    """The cache folder of the ONNX span model named ``key``, exporting it with ``build()`` if needed.

    Args:
        key: names the export; it must change whenever the weights do (hash them into it).
        build: returns ``(torch model, transformers fast tokenizer)``; called only to export.
    """

    def make(out: Path) -> None:
        import contextlib
        import warnings

        import torch

        model, tokenizer = build()
        tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
        sample = tokenizer(["a question?"], ["a passage to read"], return_tensors="pt")

        class _Logits(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
                return out.start_logits, out.end_logits

        axes = {name: {0: "windows", 1: "tokens"} for name in (*_INPUTS, "start_logits", "end_logits")}
        with torch.no_grad(), contextlib.redirect_stdout(None), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Logits(), tuple(sample[n] for n in _INPUTS), str(out / "model.onnx"), input_names=list(_INPUTS),
                output_names=["start_logits", "end_logits"], dynamic_axes=axes, opset_version=17, dynamo=False,
            )  # fmt: skip
        write_export_manifest(out, {"kind": "span-reader", "key": key})

    folder, _ = ensure_cached(f"span-reader-{key}", make)
    return folder


class OnnxSpanModel:
    """Start/end logits for question + passage windows, from an export made by `export_span_model`."""

    def __init__(self, folder: Path, *, max_length: int, stride: int, threads: int) -> None:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length, stride=stride, strategy="only_second")
        self._tokenizer = tokenizer
        self._folder = folder
        self._threads = threads
        self._session: Any = None
        self._lock = threading.Lock()

    def _run(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = self._threads
                options.inter_op_num_threads = 1
                try:
                    self._session = ort.InferenceSession(
                        str(self._folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
                    )
                except Exception as exc:  # onnxruntime raises its own untyped errors
                    raise ModelNotFoundError(f"ONNX Runtime cannot load {self._folder}: {exc}") from exc
        start, end = self._session.run(None, feed)
        return np.asarray(start, dtype=np.float32), np.asarray(end, dtype=np.float32)

    def windows(self, question: str, passages: Sequence[str]) -> Windows:
        """Tokenise ``question`` with each passage (a stride over long ones) and score every window."""
        encodings = self._tokenizer.encode_batch([(question, p) for p in passages])
        flat = [(i, w) for i, e in enumerate(encodings) for w in (e, *e.overflowing)]
        width = max(len(w.ids) for _, w in flat)
        feed = {name: np.zeros((len(flat), width), dtype=np.int64) for name in _INPUTS}
        for row, (_, w) in enumerate(flat):
            n = len(w.ids)
            feed["input_ids"][row, :n] = w.ids
            feed["attention_mask"][row, :n] = w.attention_mask
            feed["token_type_ids"][row, :n] = w.type_ids
        start, end = self._run(feed)
        return Windows(
            passage=[i for i, _ in flat],
            start_logits=start,
            end_logits=end,
            offsets=[list(w.offsets) for _, w in flat],
            context=[np.array([s == 1 for s in w.sequence_ids], dtype=bool) for _, w in flat],
        )
