"""Shared fixtures: the seed article, a fast fake embedder, the real bundled model."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "seeds" / "000_400d80341ec88f4a.txt"


class HashEmbedder:
    """Bag of hashed, lower-cased words → unit vector. Deterministic and instant;
    shares words ⇒ similar vectors, which is enough to test plumbing."""

    def __init__(self, dim: int = 64, name: str | None = None) -> None:
        self._dim = dim
        self._name = name or f"test-hash-{dim}"
        self.calls = 0
        self.texts_encoded = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return 128

    def count_tokens(self, text: str) -> int:
        return len(re.findall(r"\w+|[^\w\s]", text))

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.calls += 1
        self.texts_encoded += len(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, h % self._dim] += 1.0 if (h >> 32) & 1 else -1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else np.eye(1, self._dim, 0, dtype=np.float32)[0]
        return out


@pytest.fixture
def fake_embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def seed_dir(tmp_path: Path) -> Path:
    """A private copy of seeds/ so tests can add files next to it."""
    folder = tmp_path / "seeds"
    folder.mkdir()
    shutil.copy(SEED, folder / SEED.name)
    return folder


@pytest.fixture(scope="session")
def real_embedder():  # type: ignore[no-untyped-def]
    """The bundled all-MiniLM-L6-v2 (loaded once per test session)."""
    from qa.embedding import get_embedder

    return get_embedder()


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory: pytest.TempPathFactory, real_embedder):  # type: ignore[no-untyped-def]
    """The seed article indexed with the real model, saved in a temp folder."""
    import qa

    folder = tmp_path_factory.mktemp("idx") / "seed"
    return qa.build_index([SEED.parent], folder, model=real_embedder, progress=False)


def shared_data(name: str) -> Path:
    from qa.evaluation import DATA_DIR_ENV, data_candidates

    path = next((p for p in data_candidates(name) if p.exists()), None)
    if path is None:
        # A clone away from ../shared (a fresh clone in /tmp): say how to point the tests at the data.
        pytest.skip(f"evaluation data {name} not found in ../shared/data beside the repo; set {DATA_DIR_ENV}")
    return path
