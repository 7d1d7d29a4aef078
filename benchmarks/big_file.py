"""One huge one-line file (issue 14, item 5): peak memory and time, measured by ``/usr/bin/time -v``.

Bars: a 50 MB one-line file parses and windows with peak RSS well under 1.5 GB, in time
linear in its size; text without sentence punctuation is not several times slower; a
full ``qa index`` of a 1 MB one-line file costs per MB no more than 2x an ordinary 1 MB
corpus (a full index of 50 MB with the real model would take hours on 2 cores, so the
index is measured at 1 MB and the parse + windowing at 50 MB).

    python benchmarks/big_file.py                      # everything below, printing each command
    python benchmarks/big_file.py --mb 50 --index-mb 1 --json benchmarks/results/big_file.json
    python benchmarks/big_file.py make one-line 50 /tmp/big.txt
    python benchmarks/big_file.py parse /tmp/big.txt   # parse + windows with the real tokenizer
    python benchmarks/big_file.py index-stub /tmp/big.txt  # a whole build_index, vectors from a stub

``index-stub`` runs everything `qa.build_index` does at 50 MB (windows counted by the real
tokenizer, passage and sentence vectors, FAISS, BM25, writing the index) with 384-d vectors
from a hash instead of the model, so memory is measured at full size in minutes, not hours.

The text is SQuAD v1.1 dev paragraphs ($QA_DATA_DIR or ../shared/data), repeated: "one-line"
joins them with spaces on one line, "no-punct" is the same without sentence punctuation,
"ordinary" writes one article per file, paragraphs separated by blank lines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent


def _paragraphs() -> list[str]:
    from qa.evaluation import find_data

    path = find_data("dev-v1.1.json.zip", None)
    with zipfile.ZipFile(path) as z:
        data = json.loads(z.read(z.namelist()[0]))
    return [" ".join(p["context"].split()) for a in data["data"] for p in a["paragraphs"]]


def make(kind: str, mb: float, out: Path) -> None:
    """Write ``mb`` megabytes of SQuAD text as ``kind`` (one-line, no-punct, ordinary) at ``out``."""
    paragraphs = _paragraphs()
    target = int(mb * 1_000_000)
    if kind == "ordinary":
        out.mkdir(parents=True, exist_ok=True)
        written, n = 0, 0
        while written < target:
            article = "\n\n".join(paragraphs[(n * 7 + i) % len(paragraphs)] for i in range(7))
            (out / f"article_{n:05d}.txt").write_text(f"Article {n}\n\n{article}\n", encoding="utf-8")
            written += len(article.encode())
            n += 1
        return
    with open(out, "w", encoding="utf-8") as f:
        written, i = 0, 0
        while written < target:
            text = paragraphs[i % len(paragraphs)]
            if kind == "no-punct":
                text = re.sub(r"[.!?;:]", "", text)
            f.write(text + " ")
            written += len(text.encode()) + 1
            i += 1
        f.write("\n")


def parse(path: Path) -> dict[str, float]:
    """Load passages from ``path`` with the bundled model's tokenizer counting word pieces."""
    from qa.documents import load_passages
    from qa.embedding import get_embedder

    embedder = get_embedder()
    _ = embedder.max_tokens  # loads the model (and its tokenizer) before the clock starts
    started = time.perf_counter()
    passages = load_passages(path, max_tokens=embedder.max_tokens, count_tokens=embedder.count_tokens)
    seconds = time.perf_counter() - started
    size = sum(f.stat().st_size for f in ([path] if path.is_file() else path.rglob("*.txt"))) / 1e6
    longest = max(embedder.count_tokens(p.text) for p in passages[:: max(1, len(passages) // 2000)])
    result = {"mb": size, "passages": len(passages), "seconds": seconds, "s_per_mb": seconds / size,
              "max_tokens_sampled": longest}
    print(json.dumps(result))
    return result


class StubEmbedder:
    """all-MiniLM-L6-v2's tokenizer and shape, but vectors from a hash of the text (no network, no torch work)."""

    def __init__(self) -> None:
        from qa.embedding import get_embedder

        self._real = get_embedder()
        self.name = "stub-384"
        self.dim = 384
        self.max_tokens = self._real.max_tokens

    def count_tokens(self, text: str) -> int:
        return self._real.count_tokens(text)

    def encode(self, texts, *, batch_size: int = 64, progress: bool = False):  # type: ignore[no-untyped-def]
        import numpy as np

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = np.random.default_rng(hash(text) & 0xFFFFFFFF).standard_normal(self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def index_stub(path: Path) -> dict[str, float]:
    """A full `qa.build_index` of ``path`` into a temporary folder, with `StubEmbedder` vectors."""
    from qa.index import build_index

    embedder = StubEmbedder()
    _ = embedder.count_tokens("warm up")
    with tempfile.TemporaryDirectory(prefix="qa-big-index-") as folder:
        started = time.perf_counter()
        index = build_index([path], Path(folder) / "index", model=embedder, progress=False)  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
    size = path.stat().st_size / 1e6
    result = {"mb": size, "passages": len(index), "seconds": seconds, "s_per_mb": seconds / size}
    print(json.dumps(result))
    return result


def _timed(command: list[str]) -> dict[str, float | str]:
    """Run ``command`` under /usr/bin/time -v; its peak RSS and wall time."""
    shown = "/usr/bin/time -v " + shlex.join(command)
    print(f"$ {shown}", flush=True)
    run = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, cwd=ROOT)
    if run.returncode:
        sys.exit(f"failed ({run.returncode}): {run.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))  # type: ignore[union-attr]
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", run.stderr).group(1)  # type: ignore[union-attr]
    seconds = sum(float(x) * 60**i for i, x in enumerate(reversed(wall.split(":"))))
    out = run.stdout.strip().splitlines()
    result: dict[str, float | str] = {"command": shown, "peak_rss_mb": rss / 1024, "wall_s": seconds,
                                      "load_average_after": os.getloadavg()[0], "output": out[-1] if out else ""}
    print(f"  peak RSS {rss / 1024:.0f} MB, wall {seconds:.1f} s; {result['output']}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    m = sub.add_parser("make", help="write a test file or folder")
    m.add_argument("kind", choices=("one-line", "no-punct", "ordinary"))
    m.add_argument("mb", type=float)
    m.add_argument("out", type=Path)
    p = sub.add_parser("parse", help="parse + window one file or folder with the real tokenizer")
    p.add_argument("path", type=Path)
    i = sub.add_parser("index-stub", help="a full build_index of one file, vectors from a hash stub")
    i.add_argument("path", type=Path)
    parser.add_argument("--mb", type=float, default=50, help="size of the big one-line files (default 50)")
    parser.add_argument("--index-mb", type=float, default=1, help="size for the full qa index runs (0: skip)")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    if args.command == "make":
        make(args.kind, args.mb, args.out)
        return 0
    if args.command == "parse":
        parse(args.path)
        return 0
    if args.command == "index-stub":
        index_stub(args.path)
        return 0

    python = sys.executable
    results: dict[str, object] = {"load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="qa-big-") as tmp:
        folder = Path(tmp)
        for kind in ("one-line", "no-punct"):
            big = folder / f"{kind}.txt"
            make(kind, args.mb, big)
            results[f"parse {kind} {args.mb:g} MB"] = _timed([python, str(HERE), "parse", str(big)])
        results[f"index-stub one-line {args.mb:g} MB"] = _timed(
            [python, str(HERE), "index-stub", str(folder / "one-line.txt")])
        if args.index_mb:
            for kind in ("ordinary", "one-line"):
                path = folder / f"index-{kind}" if kind == "ordinary" else folder / f"index-{kind}.txt"
                make(kind, args.index_mb, path)
                results[f"qa index {kind} {args.index_mb:g} MB"] = _timed(
                    [python, "-m", "qa", "index", str(path), "--index", str(folder / f"idx-{kind}"), "--quiet"])
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
