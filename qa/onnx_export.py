"""Export a local sentence-transformers model to ONNX once, and keep the export in a cache.

The only part of the ONNX backend that needs torch: it runs on first use of a model
(seconds), never at query time. Exports live under ``$QA_CACHE_DIR`` (default
``~/.cache/qa``) in a folder named by the hash of the model's own files, so a changed
model gets a new export, and every file of an export is recorded with its sha256 in
``export.json`` (written last): an export that does not match is rebuilt.

Why not optimum / ``SentenceTransformer(backend="onnx")``: the only optimum-onnx release
on the registries (0.1.0) requires transformers < 4.58, which sentence-transformers 6
cannot run with. ``torch.onnx.export`` is what optimum wraps; quantisation is
onnxruntime's own ``quantize_dynamic``, the tool optimum's ORTQuantizer calls.

Three precisions: ``fp32`` and ``int8`` are graphs fused by ONNX Runtime's transformer
optimiser (operators only ONNX Runtime runs); ``bf16`` is the plain exported graph, which
OpenVINO reads and runs in bfloat16 on CPUs that have it (`qa.onnx_embedding`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qa.errors import ModelNotFoundError
from qa.integrity import sha256_file

CACHE_ENV = "QA_CACHE_DIR"
EXPORT_MANIFEST = "export.json"
#: Bumped when the export recipe changes, so old exports are redone rather than trusted.
EXPORT_RECIPE = 2
PRECISIONS = ("fp32", "int8", "bf16")
_lock = threading.Lock()


def cache_dir() -> Path:
    """Where exports are kept: ``$QA_CACHE_DIR`` or ``~/.cache/qa``."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "qa")
    return Path(root)


def model_fingerprint(model_path: Path) -> str:
    """A hash of the model folder's files (names and contents), ignoring exports kept inside it.

    Like git's index, the hash of a file is remembered with its size and mtime (in
    ``fingerprints.json`` in the cache), so a start-up does not read 90 MB of weights again.
    """
    files = sorted(p for p in model_path.rglob("*") if p.is_file())
    memo_file = cache_dir() / "fingerprints.json"
    try:
        memo = json.loads(memo_file.read_text(encoding="utf-8"))
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, ValueError):
        memo = {}
    digest = hashlib.sha256()
    changed = False
    for file in files:
        relative = file.relative_to(model_path).as_posix()
        if relative.startswith(("onnx/", "openvino/", ".")) or "/." in relative:
            continue
        stat = file.stat()
        key = f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        file_hash = memo.get(key)
        if not isinstance(file_hash, str):
            file_hash = memo[key] = sha256_file(file)
            changed = True
        digest.update(relative.encode("utf-8") + b"\0" + file_hash.encode("ascii") + b"\n")
    if changed:
        # Best effort: a read-only cache only costs the next start-up a re-read.
        with contextlib.suppress(OSError):
            memo_file.parent.mkdir(parents=True, exist_ok=True)
            temp = memo_file.with_name(f".{memo_file.name}.{uuid.uuid4().hex[:8]}")
            temp.write_text(json.dumps(memo, indent=0), encoding="utf-8")
            os.replace(temp, memo_file)
    return digest.hexdigest()


def _verified(folder: Path) -> dict[str, Any] | None:
    """The export manifest if every file it names is present with its checksum, else None."""
    try:
        manifest = json.loads((folder / EXPORT_MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("recipe") != EXPORT_RECIPE:
            return None
        for name, expected in manifest["files"].items():
            file = folder / name
            if not file.is_file() or file.stat().st_size != expected["bytes"]:
                return None
            if sha256_file(file) != expected["sha256"]:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return dict(manifest)


def ensure_export(model_path: Path, precision: str, *, fingerprint: str | None = None) -> tuple[Path, dict[str, Any]]:
    """The folder of a verified ONNX export of ``model_path`` at ``precision``, exporting it if needed.

    Args:
        model_path: a local sentence-transformers folder.
        precision: ``fp32``, ``int8`` (dynamic quantisation of the fp32 export) or ``bf16``
            (the unfused graph, for OpenVINO; the weights stay fp32 on disk).
        fingerprint: `model_fingerprint` of ``model_path`` when the caller has it.

    Returns:
        (folder, export manifest); the folder holds ``model.onnx`` and ``tokenizer.json``.

    Raises:
        ModelNotFoundError: the model cannot be exported (the message says why).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    fingerprint = fingerprint or model_fingerprint(model_path)
    with _lock:
        return _ensure_unlocked(model_path, precision, fingerprint)


def _ensure_unlocked(model_path: Path, precision: str, fingerprint: str) -> tuple[Path, dict[str, Any]]:
    def make(staging: Path) -> None:
        if precision == "int8":
            # Quantise the cached fp32 export rather than export twice.
            source, _ = _ensure_unlocked(model_path, "fp32", fingerprint)
            _quantize(source, staging, fingerprint)
        else:
            # OpenVINO does its own fusions, and cannot read ONNX Runtime's fused operators.
            _export(model_path, staging, fingerprint, precision=precision, fuse=precision == "fp32")

    return _cached(f"{fingerprint[:24]}-{precision}", make)


def ensure_cached(name: str, make: Callable[[Path], None]) -> tuple[Path, dict[str, Any]]:
    """The verified cache folder ``onnx/<name>``, made by ``make(staging_folder)`` when missing or damaged.

    ``make`` writes ``model.onnx`` and ``tokenizer.json`` and calls `write_export_manifest`
    last. For other ONNX models of qa's (the span reader) that follow the same rules.
    """
    with _lock:
        return _cached(name, make)


def _cached(name: str, make: Callable[[Path], None]) -> tuple[Path, dict[str, Any]]:
    folder = cache_dir() / "onnx" / name
    manifest = _verified(folder)
    if manifest is not None:
        return folder, manifest
    if folder.exists():
        # Damaged or from an older recipe: make it again from the installed model.
        shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        make(staging)
        try:
            os.rename(staging, folder)  # atomic: another process sees all of it or nothing
        except OSError:
            # Another process finished the same export first; theirs is as good as ours.
            if _verified(folder) is None:
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest = _verified(folder)
    if manifest is None:
        raise ModelNotFoundError(f"the ONNX export in {folder} does not verify; delete the folder and retry")
    return folder, manifest


def write_export_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Record ``model.onnx`` and ``tokenizer.json`` with their checksums: the last step of an export."""
    manifest["recipe"] = EXPORT_RECIPE
    manifest["files"] = {
        name: {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size}
        for name in ("model.onnx", "tokenizer.json")
    }
    manifest["id"] = uuid.uuid4().hex
    temp = out / f".{EXPORT_MANIFEST}.tmp"
    temp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(temp, out / EXPORT_MANIFEST)


def _quantize(source: Path, out: Path, fingerprint: str) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    manifest = json.loads((source / EXPORT_MANIFEST).read_text(encoding="utf-8"))
    # onnxruntime logs advice about pre-processing at WARNING on every run; it is not a problem here.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        import onnx

        # DefaultTensorType: the fused operators of the optimised graph carry no type information
        # the quantiser can read; their outputs are float.
        quantize_dynamic(
            str(source / "model.onnx"), str(out / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )  # fmt: skip
    finally:
        root.setLevel(level)
    shutil.copyfile(source / "tokenizer.json", out / "tokenizer.json")
    write_export_manifest(out, {**manifest, "precision": "int8", "model_fingerprint": fingerprint})


def _export(model_path: Path, out: Path, fingerprint: str, *, precision: str = "fp32", fuse: bool = True) -> None:
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        raise ModelNotFoundError(f"exporting a model to ONNX needs torch and sentence-transformers ({exc})") from exc

    # trust_remote_code stays off: a model folder named in a manifest must never run code.
    # Eager attention exports as the plain BERT graph that ONNX Runtime's optimiser fuses
    # (sdpa exports as a pattern it does not recognise): about 2x faster on this CPU.
    try:
        st = SentenceTransformer(
            str(model_path), device="cpu", trust_remote_code=False, model_kwargs={"attn_implementation": "eager"}
        )
    except (TypeError, ValueError):
        st = SentenceTransformer(str(model_path), device="cpu", trust_remote_code=False)
    # By class name: the modules moved between sentence-transformers releases.
    transformer: Any = next((m for m in st if type(m).__name__ == "Transformer"), None)
    pooling: Any = next((m for m in st if type(m).__name__ == "Pooling"), None)
    if transformer is None:
        raise ModelNotFoundError(f"{model_path} has no Transformer module; only transformer encoders export to ONNX")
    mode = "mean"
    if pooling is not None:
        modes = getattr(pooling, "pooling_mode", "mean")
        mode = str(modes if isinstance(modes, str) else "+".join(map(str, modes)))
        if mode not in ("mean", "cls"):
            raise ModelNotFoundError(f"{model_path} pools by {mode!r}; the ONNX backend supports mean and cls")
    tokenizer = transformer.tokenizer
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise ModelNotFoundError(f"{model_path} has no fast tokenizer (tokenizer.json); use --backend torch")
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    auto = transformer.auto_model.eval()
    names = ["input_ids", "attention_mask"]
    sample = tokenizer(["an example sentence", "two"], padding=True, return_tensors="pt")
    if "token_type_ids" in sample:
        names.append("token_type_ids")

    class _Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = auto

        def forward(self, *inputs: Any) -> Any:
            return self.model(**dict(zip(names, inputs, strict=True))).last_hidden_state

    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    axes["token_states"] = {0: "batch", 1: "tokens"}
    # The tracer warns about every data-dependent branch in the model; none applies to inference.
    with torch.no_grad(), contextlib.redirect_stdout(None), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Encoder(), tuple(sample[n] for n in names), str(out / "raw.onnx"), input_names=names,
            output_names=["token_states"], dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip
    if fuse:
        fused = fuse_transformer(out / "raw.onnx", out / "model.onnx", auto.config)
        (out / "raw.onnx").unlink(missing_ok=True)
    else:
        fused = {}
        os.replace(out / "raw.onnx", out / "model.onnx")
    write_export_manifest(out, {
        "recipe": EXPORT_RECIPE,
        "model_path": str(model_path),
        "model_fingerprint": fingerprint,
        "precision": precision,
        "inputs": names,
        "pooling": mode,
        "max_seq_length": int(st.max_seq_length or 512),
        "dim": int(auto.config.hidden_size),
        "fused_operators": fused,
    })  # fmt: skip


def fuse_transformer(raw: Path, out: Path, config: Any) -> dict[str, int]:
    """ONNX Runtime's transformer optimiser (attention, layer norm, GELU fusions) for BERT-like encoders.

    Returns the fused operator counts; a model it does not know is kept as exported (the counts are empty).
    """
    kind = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "distilbert": "bert", "mpnet": "bert"}.get(
        str(getattr(config, "model_type", "")), ""
    )
    if kind:
        try:
            from onnxruntime.transformers.optimizer import optimize_model

            model = optimize_model(
                str(raw), model_type=kind, num_heads=int(config.num_attention_heads),
                hidden_size=int(config.hidden_size),
            )  # fmt: skip
            model.save_model_to_file(str(out))
            return {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}
        except Exception:  # the optimiser raises whatever its graph passes raise; fall back to the plain graph
            out.unlink(missing_ok=True)
    shutil.copyfile(raw, out)
    return {}
