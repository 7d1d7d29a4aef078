"""The ONNX embedding backends: agreement with torch, the export cache, backend checks, no torch at query time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SEED

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "who mediated Turkey-Israel?"


def _seed_paragraphs() -> list[str]:
    from qa.documents import load_passages

    return [p.text for p in load_passages([SEED])]


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    from qa.embedding import get_embedder

    return get_embedder(backend="torch").encode(_seed_paragraphs())


def test_onnx_fp32_agrees_with_sentence_transformers(torch_vectors: np.ndarray) -> None:
    from qa.embedding import get_embedder

    vectors = get_embedder(backend="onnx").encode(_seed_paragraphs())
    assert vectors.dtype == np.float32 and vectors.shape == torch_vectors.shape
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (vectors * torch_vectors).sum(axis=1)
    assert cosines.min() >= 0.999, cosines


def test_onnx_int8_stays_close_to_torch(torch_vectors: np.ndarray) -> None:
    from qa.embedding import get_embedder

    cosines = (get_embedder(backend="onnx-int8").encode(_seed_paragraphs()) * torch_vectors).sum(axis=1)
    assert cosines.min() >= 0.97, cosines


def test_openvino_bf16_agrees_with_fp32(torch_vectors: np.ndarray) -> None:
    """bfloat16 keeps fp32's exponent: its vectors are fp32's to rounding, unlike int8's."""
    from qa.embedding import get_embedder

    embedder = get_embedder(backend="openvino-bf16")
    vectors = embedder.encode(_seed_paragraphs())
    assert vectors.dtype == np.float32 and vectors.shape == torch_vectors.shape
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors * torch_vectors).sum(axis=1).min() >= 0.999
    fp32 = get_embedder(backend="onnx").encode(_seed_paragraphs())
    assert (vectors * fp32).sum(axis=1).min() >= 0.9999
    assert embedder.export_info()["precision"] == "bf16"


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8", "openvino-bf16"])
def test_a_vector_depends_on_its_text_alone(backend: str) -> None:
    """Whatever it is encoded with: so an update equals a fresh build, and a stored vector equals `encode`.

    Dynamic int8 scales activations over the whole input, so int8 runs one text at a time.
    """
    from qa.embedding import get_embedder

    embedder = get_embedder(backend=backend)
    texts = [*_seed_paragraphs(), "A short one.", "Azerbaijan mediated between Turkey and Israel. " * 12]
    together = embedder.encode(texts)
    alone = np.stack([embedder.encode([t])[0] for t in texts])
    reordered = embedder.encode(texts[::-1])[::-1]
    tolerance = 0 if backend == "onnx-int8" else 1e-5  # float runs may move the last bits only
    np.testing.assert_allclose(together, reordered, rtol=0, atol=tolerance)
    np.testing.assert_allclose(together, alone, rtol=0, atol=tolerance)


def test_sentence_vectors_come_from_the_same_pass() -> None:
    """One forward pass: the passage vectors are `encode`'s, and each sentence gets a unit vector of its own."""
    from qa.documents import split_sentences
    from qa.embedding import embed_passages, get_embedder

    embedder = get_embedder(backend="onnx")
    texts = _seed_paragraphs()
    vectors, blocks = embed_passages(embedder, texts, with_sentences=True)
    np.testing.assert_allclose(vectors, embedder.encode(texts), atol=1e-5)
    for text in texts:
        spans = split_sentences(text)
        block = blocks[text]
        assert block.shape == ((len(spans), 384) if len(spans) > 1 else (0, 384))
        if len(block):
            np.testing.assert_allclose(np.linalg.norm(block, axis=1), 1.0, atol=1e-5)
            # Pooled in context, a sentence still means what it says alone.
            alone = embedder.encode([text[a:b] for a, b in spans])
            assert ((block * alone).sum(axis=1)).min() > 0.7


def test_a_damaged_export_is_detected_and_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qa import onnx_export
    from qa.embedding import resolve_model_path
    from qa.integrity import sha256_file

    model = resolve_model_path("all-MiniLM-L6-v2")
    fingerprint = onnx_export.model_fingerprint(model)
    source, _ = onnx_export.ensure_export(model, "fp32", fingerprint=fingerprint)
    # A private cache holding a copy of the fp32 export, so only the int8 step is redone here.
    monkeypatch.setenv(onnx_export.CACHE_ENV, str(tmp_path))
    shutil.copytree(source, tmp_path / "onnx" / source.name)
    folder, manifest = onnx_export.ensure_export(model, "int8", fingerprint=fingerprint)
    good = manifest["files"]["model.onnx"]["sha256"]
    with open(folder / "model.onnx", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00garbage\x00")
    assert onnx_export._verified(folder) is None
    rebuilt, again = onnx_export.ensure_export(model, "int8", fingerprint=fingerprint)
    assert rebuilt == folder and onnx_export._verified(folder) is not None
    assert again["files"]["model.onnx"]["sha256"] == sha256_file(folder / "model.onnx")
    assert again["id"] != manifest["id"]  # really re-made, not the damaged file accepted
    assert len(again["files"]["model.onnx"]["sha256"]) == len(good)
    (folder / "export.json").unlink()  # a half-written export (no manifest) is redone too
    assert onnx_export.ensure_export(model, "int8", fingerprint=fingerprint)[1]["id"] != again["id"]


def test_the_manifest_records_the_backend_and_queries_use_it(tmp_path: Path) -> None:
    import qa
    from qa.errors import ModelMismatchError

    folder = tmp_path / "int8"
    qa.build_index([SEED], folder, progress=False, embedding_backend="onnx-int8")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"]["backend"] == "onnx-int8" and manifest["model"]["precision"] == "int8"
    assert len(manifest["model"]["onnx_sha256"]) == 64
    assert qa.load_index(folder).embedder.backend == "onnx-int8"  # type: ignore[attr-defined]
    with pytest.raises(ModelMismatchError, match=r"int8.*fp32.*--backend"):
        qa.load_index(folder, embedding_backend="torch")
    # Same precision is the same vector space: torch may query an fp32 ONNX index.
    fp32 = tmp_path / "fp32"
    qa.build_index([SEED], fp32, progress=False, embedding_backend="onnx")
    hits = qa.load_index(fp32, embedding_backend="torch").search(QUESTION, k=3, mode="dense")
    assert hits[0].source.paragraph == qa.load_index(fp32).search(QUESTION, k=3, mode="dense")[0].source.paragraph
    # bf16 is close to fp32 but not the same numbers: explained, not mixed.
    bf16 = tmp_path / "bf16"
    qa.build_index([SEED], bf16, progress=False, embedding_backend="openvino-bf16")
    assert json.loads((bf16 / "manifest.json").read_text())["model"]["precision"] == "bf16"
    assert qa.load_index(bf16).embedder.backend == "openvino-bf16"  # type: ignore[attr-defined]
    with pytest.raises(ModelMismatchError, match=r"openvino-bf16.*bf16.*onnx.*fp32.*--backend onnx"):
        qa.load_index(bf16, embedding_backend="onnx")


def test_cli_index_backend_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qa.cli import main

    folder = tmp_path / "idx"
    assert main(["index", str(SEED), "--index", str(folder), "--backend", "onnx", "--quiet"]) == 0
    assert json.loads((folder / "manifest.json").read_text())["model"]["backend"] == "onnx"
    # Re-indexing without --backend keeps the index's own backend: nothing is re-embedded.
    assert main(["index", str(SEED), "--index", str(folder), "--quiet"]) == 0
    assert "0 passages embedded" in capsys.readouterr().out
    assert json.loads((folder / "manifest.json").read_text())["model"]["backend"] == "onnx"


@pytest.mark.parametrize("backend", ["onnx-int8", "openvino-bf16"])
def test_an_onnx_index_searches_and_answers_without_torch(tmp_path: Path, backend: str) -> None:
    import qa

    folder = tmp_path / "idx"
    qa.build_index([SEED], folder, progress=False, embedding_backend=backend)
    # The span reader's one-time ONNX export (the only step that needs torch), as a machine's
    # first `qa ask` makes it; the cache is shared with the subprocess through $QA_CACHE_DIR.
    from qa.span_reader import ensure_span_export

    ensure_span_export()
    script = (
        "import sys, qa\n"
        f"index = qa.load_index({str(folder)!r})\n"
        f"hits = index.search({QUESTION!r}, k=3)\n"
        "assert hits and hits[0].source.title, hits\n"
        "searched = 'torch' in sys.modules\n"
        f"answer = index.ask({QUESTION!r})\n"
        "print(searched, 'torch' in sys.modules, len(hits), answer.text is not None, index.embedder.backend)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "3", "True", backend], out.stdout


def test_unsafe_model_folders_are_refused(tmp_path: Path) -> None:
    """A model named in a manifest never runs its own code and never unpickles weights."""
    from qa.embedding import resolve_model_path
    from qa.errors import ModelNotFoundError

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (pickled / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ModelNotFoundError, match="safetensors"):
        resolve_model_path(str(pickled))
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "evil.Model"}}))
    (remote / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="own code"):
        resolve_model_path(str(remote))


def test_model_aliases_name_one_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The documented alias sentence-transformers/all-MiniLM-L6-v2 is the same model: no rebuild."""
    from qa.cli import main

    folder = tmp_path / "idx"
    assert main(["index", str(SEED), "--index", str(folder), "--quiet"]) == 0
    capsys.readouterr()
    argv = ["index", str(SEED), "--index", str(folder), "--model", "sentence-transformers/all-MiniLM-L6-v2"]
    assert main([*argv, "--quiet"]) == 0
    assert "0 passages embedded" in capsys.readouterr().out
