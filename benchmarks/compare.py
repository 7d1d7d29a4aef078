"""`qa` against the plain script a user would otherwise write, in the same process and on the same machine.

The plain script is sentence-transformers ``encode`` + ``faiss.IndexFlatIP`` over the same
passages, with the library defaults a user gets (torch and faiss use every core). Runs of
`qa` and of the plain script are interleaved (qa, plain, qa, plain, …) so that load from
other processes hits both alike; every number is a median over the runs, and every table
prints the ratio qa / plain.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/compare.py throughput --runs 3
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/compare.py latency --queries 100
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/compare.py threads
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/compare.py coldstart --runs 5
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/compare.py memory

``--json FILE`` also writes the measurements (benchmarks/make_results.py reads them).

Sizes: *seed* is the seed index (seeds/); *SQuAD* is the 2,067 SQuAD dev paragraphs;
*100k* and *1M* tile SQuAD's real paragraph vectors with Gaussian noise
(x = normalise(v[i mod 2067] + 0.05·g)), which is fine for exact search: its cost does
not depend on the values. Query latency is embedding the query + searching + building hits.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.backends import BACKENDS  # names only: imports nothing

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
VECTOR_CACHE = Path("/tmp/qa-cache/bench-squad-paragraphs.npy")
# Other scripts of this repo cache the same vectors here (all-MiniLM-L6-v2, SQuAD dev paragraphs in file order).
SHARED_VECTOR_CACHE = Path("/tmp/qa-cache/squad_paragraphs_minilm.npy")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ---------------------------------------------------------------------------
# Shared pieces


def squad_zip() -> Path:
    """SQuAD v1.1 dev, found where `qa eval` looks ($QA_DATA_DIR, then ../shared/data)."""
    from qa.evaluation import SQUAD_FILE, find_data

    return find_data(SQUAD_FILE, None)


def squad_data() -> dict[str, Any]:
    with zipfile.ZipFile(squad_zip()) as archive:
        return json.loads(archive.read("dev-v1.1.json"))


def squad_paragraphs() -> list[str]:
    return [" ".join(p["context"].split()) for a in squad_data()["data"] for p in a["paragraphs"]]


def squad_questions(n: int) -> list[str]:
    questions = [q["question"] for a in squad_data()["data"] for p in a["paragraphs"] for q in p["qas"]]
    return questions[:: max(1, len(questions) // n)][:n]


def plain_model() -> Any:
    """What the plain script loads: the same bundled model, straight into sentence-transformers."""
    from sentence_transformers import SentenceTransformer

    from qa.embedding import resolve_model_path

    return SentenceTransformer(str(resolve_model_path("all-MiniLM-L6-v2")), device="cpu")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in header], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    import faiss
    import torch

    from qa import __version__

    return {
        "qa_version": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "faiss": faiss.__version__,
        "onnxruntime": _version("onnxruntime"),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }


def squad_vectors(paragraphs: list[str]) -> np.ndarray:
    """Real MiniLM vectors of the SQuAD paragraphs (cached in /tmp/qa-cache for re-runs)."""
    for cache in (VECTOR_CACHE, SHARED_VECTOR_CACHE):
        if cache.exists():
            vectors = np.load(cache).astype(np.float32)
            if vectors.shape == (len(paragraphs), 384):
                return vectors
    from qa.embedding import get_embedder

    vectors = get_embedder().encode(paragraphs, progress=True)
    VECTOR_CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.save(VECTOR_CACHE, vectors)
    return vectors


def tiled(vectors: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, vectors.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        block = vectors[np.arange(start, stop) % len(vectors)]
        block = block + 0.05 * rng.standard_normal(block.shape, dtype=np.float32)
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def qa_index_from(vectors: np.ndarray, texts: Sequence[str]) -> Any:
    """A `qa.index.Index` over given vectors (synthetic passages: ids are hashes of the row)."""
    from qa.documents import Passage, Source
    from qa.embedding import get_embedder
    from qa.index import Index

    passages = []
    for i in range(len(vectors)):
        pid = hashlib.blake2b(str(i).encode(), digest_size=8).hexdigest()
        text = texts[i % len(texts)]
        passages.append(Passage(pid, text, Source(f"doc{i // 5}", "", "", "", "bench", i % 5 + 1, 0, len(text))))
    return Index(passages, vectors, get_embedder())


# ---------------------------------------------------------------------------
# Indexing throughput


def bench_throughput(n: int, runs: int, backends: Sequence[str] = BACKENDS) -> dict[str, Any]:
    """`qa.build_index` with each embedding backend beside the plain script, interleaved run by run."""
    import faiss

    import qa
    from qa.embedding import DEFAULT_BACKEND, get_embedder

    paragraphs = squad_paragraphs()[:n]
    model = plain_model()
    tmp = Path(tempfile.mkdtemp(prefix="qa-bench-"))
    corpus = tmp / "squad.jsonl"
    corpus.write_text(json.dumps({"id": "squad", "text": "\n\n".join(paragraphs)}) + "\n", encoding="utf-8")
    warm = tmp / "warm.jsonl"
    warm.write_text(json.dumps({"id": "warm", "text": "\n\n".join(paragraphs[:64])}) + "\n", encoding="utf-8")
    for backend in backends:  # warm: export made, model loaded, first batches done
        qa.build_index([warm], None, progress=False, model=get_embedder(backend=backend))
    model.encode(paragraphs[:64])
    times: dict[str, list[float]] = {b: [] for b in (*backends, "plain")}
    passages: dict[str, int] = {}
    for _ in range(runs):
        for backend in backends:
            started = time.perf_counter()
            index = qa.build_index([corpus], None, progress=False, model=get_embedder(backend=backend))
            times[backend].append(time.perf_counter() - started)
            passages[backend] = len(index)
        started = time.perf_counter()
        vectors = model.encode(paragraphs, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        flat = faiss.IndexFlatIP(vectors.shape[1])
        flat.add(vectors)
        times["plain"].append(time.perf_counter() - started)
    plain_rate = len(paragraphs) / median(times["plain"])
    variants = {
        b: {
            "seconds": median(times[b]),
            "passages": passages.get(b, len(paragraphs)),
            "paragraphs_per_s": len(paragraphs) / median(times[b]),
            "ratio_over_plain": (len(paragraphs) / median(times[b])) / plain_rate,
        }
        for b in (*backends, "plain")
    }
    default = variants.get(DEFAULT_BACKEND, variants[backends[0]])
    return {
        "paragraphs": len(paragraphs),
        "runs": runs,
        "default_backend": DEFAULT_BACKEND,
        "variants": variants,
        # The default backend's numbers under the keys earlier results used.
        "qa_passages": default["passages"],
        "qa_seconds": default["seconds"],
        "plain_seconds": variants["plain"]["seconds"],
        "qa_paragraphs_per_s": default["paragraphs_per_s"],
        "plain_paragraphs_per_s": plain_rate,
        "ratio_qa_over_plain": default["ratio_over_plain"],
    }


def show_throughput(r: dict[str, Any]) -> str:
    variants = r.get("variants") or {
        "qa": {"passages": r["qa_passages"], "seconds": r["qa_seconds"], "paragraphs_per_s": r["qa_paragraphs_per_s"],
               "ratio_over_plain": r["ratio_qa_over_plain"]},
        "plain": {"passages": r["paragraphs"], "seconds": r["plain_seconds"],
                  "paragraphs_per_s": r["plain_paragraphs_per_s"], "ratio_over_plain": 1.0},
    }  # fmt: skip
    default = r.get("default_backend")
    rows = [
        [
            "plain (encode + IndexFlatIP)" if name == "plain" else
            f"qa build_index, --backend {name}" + (" (default)" if name == default else ""),
            r["paragraphs"],
            v["passages"],
            f"{v['seconds']:.1f}",
            f"{v['paragraphs_per_s']:.1f}",
            f"{v['ratio_over_plain']:.2f}",
        ]
        for name, v in variants.items()
    ]  # fmt: skip
    head = ["", "paragraphs", "passages embedded", "seconds (median)", "paragraphs/s", "ratio / plain"]
    return (
        f"{table(head, rows)}\n\nmedian of {r['runs']} runs, every variant and the plain script interleaved in "
        "each run; qa embeds each passage once (windows of at most 128 word pieces), its sentence vectors "
        "pooled from the same forward pass, and builds BM25 too"
    )


# ---------------------------------------------------------------------------
# Warm query latency


def squad_index() -> Any:
    """The real `qa` index of the SQuAD dev corpus (BM25 and sentence vectors included), as `qa eval` builds it.

    Reuses `qa eval`'s cached index in indexes/ when it is there (built in ~5 minutes otherwise).
    """
    from qa.embedding import DEFAULT_MODEL
    from qa.evaluation import default_index_dir, eval_index, load_squad

    dataset = load_squad(squad_zip())
    return eval_index(dataset, index_dir=ROOT / default_index_dir("squad", DEFAULT_MODEL), progress=True)


def _timed(fn: Callable[[str], Any], questions: Sequence[str]) -> list[float]:
    out = []
    for q in questions:
        started = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - started) * 1000)
    return out


def bench_latency(sizes: Sequence[str], n_queries: int) -> dict[str, Any]:
    """Warm latency of one query: qa's modes and `ask` against the plain script, interleaved per question.

    seed and SQuAD are real qa indexes (dense, BM25, sentence vectors, passages); 100k and 1M are
    synthetic (SQuAD vectors tiled with noise) and only dense search is timed on them.
    """
    import faiss

    import qa

    questions = squad_questions(n_queries)
    paragraphs = squad_paragraphs()
    model = plain_model()
    out: dict[str, Any] = {"queries": len(questions), "sizes": {}}
    for size in sizes:
        if size in ("seed", "squad"):
            index = qa.build_index([SEEDS], None, progress=False) if size == "seed" else squad_index()
            vectors = index.vectors
            texts = [p.text for p in index.passages]
            runs: dict[str, Callable[[str], Any]] = {
                "qa dense": lambda q, index=index: index.search(q, k=5, mode="dense"),
                "qa hybrid": lambda q, index=index: index.search(q, k=5, mode="hybrid"),
                "qa ask": lambda q, index=index: index.ask(q),
            }
        else:
            base = squad_vectors(paragraphs)
            vectors = tiled(base, {"100k": 100_000, "1m": 1_000_000}[size])
            index = qa_index_from(vectors, paragraphs)
            texts = paragraphs
            runs = {"qa dense": lambda q, index=index: index.search(q, k=5, mode="dense")}
        flat = faiss.IndexFlatIP(vectors.shape[1])
        flat.add(np.ascontiguousarray(vectors, dtype=np.float32))

        def plain_query(q: str, flat: Any = flat, texts: Sequence[str] = texts) -> list[str]:
            v = model.encode([q], normalize_embeddings=True, convert_to_numpy=True)
            _, ids = flat.search(v, 5)
            return [texts[i % len(texts)] for i in ids[0] if i >= 0]

        runs["plain dense"] = plain_query
        warm = squad_questions(n_queries + 5)[-5:]  # other questions: no answer is cached before it is timed
        for fn in runs.values():
            _timed(fn, warm)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for q in questions:  # interleaved: every setting answers question i before any answers i + 1
            for name, fn in runs.items():
                times[name] += _timed(fn, [q])
        out["sizes"][size] = {
            "passages": len(index),
            "ms": {name: {"p50": percentile(t, 50), "p95": percentile(t, 95)} for name, t in times.items()},
        }
        del index, flat, vectors
    return out


def show_latency(r: dict[str, Any]) -> str:
    rows = []
    for size, m in r["sizes"].items():
        plain = m["ms"]["plain dense"]
        for name, t in m["ms"].items():
            rows.append(
                [
                    size,
                    m["passages"],
                    name,
                    f"{t['p50']:.1f}",
                    f"{t['p95']:.1f}",
                    f"{t['p50'] / plain['p50']:.2f}",
                    f"{t['p95'] / plain['p95']:.2f}",
                ]
            )
    head = ["size", "passages", "what", "p50 ms", "p95 ms", "p50 / plain", "p95 / plain"]
    return (
        f"{table(head, rows)}\n\n{r['queries']} SQuAD questions per size, every setting interleaved per question, "
        "k=5. seed and squad are real qa indexes; 100k and 1m tile SQuAD's paragraph vectors with noise "
        "(dense only). `qa ask` = hybrid retrieval + reading the best 5 passages."
    )


# ---------------------------------------------------------------------------
# Threads: torch for query and batch encoding, faiss for search


def bench_threads(n_queries: int, batch: int) -> dict[str, Any]:
    import faiss
    import torch

    questions = squad_questions(n_queries)
    paragraphs = squad_paragraphs()[:batch]
    model = plain_model()
    model.encode(questions[:4])
    cores = os.cpu_count() or 1
    options = sorted({1, cores})
    out: dict[str, Any] = {"cores": cores, "query_ms": {}, "batch_per_s": {}, "faiss_1m_ms": {}}
    # Idle, and with another process spinning on one core (a second job on a shared 2-core
    # machine): the second condition is where torch's one-thread-per-core default hurts.
    query_ms: dict[str, dict[int, list[float]]] = {c: {t: [] for t in options} for c in CONDITIONS}
    batch_s: dict[str, dict[int, list[float]]] = {c: {t: [] for t in options} for c in CONDITIONS}
    for condition in CONDITIONS:
        with _busy_core(condition == "busy"):
            for q in questions:  # interleave thread settings per query
                for t in options:
                    torch.set_num_threads(t)
                    started = time.perf_counter()
                    model.encode([q], normalize_embeddings=True)
                    query_ms[condition][t].append((time.perf_counter() - started) * 1000)
            for _ in range(2):
                for t in options:
                    torch.set_num_threads(t)
                    started = time.perf_counter()
                    model.encode(paragraphs, batch_size=64)
                    batch_s[condition][t].append(time.perf_counter() - started)
    torch.set_num_threads(cores)
    base = squad_vectors(squad_paragraphs())
    vectors = tiled(base, 1_000_000)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    query_vectors = base[:: max(1, len(base) // n_queries)][:n_queries]
    search_ms: dict[int, list[float]] = {t: [] for t in options}
    for v in query_vectors:
        for t in options:
            faiss.omp_set_num_threads(t)
            started = time.perf_counter()
            flat.search(v[None, :], 5)
            search_ms[t].append((time.perf_counter() - started) * 1000)
    faiss.omp_set_num_threads(cores)
    for t in options:
        out["query_ms"][t] = {
            c: {"p50": percentile(query_ms[c][t], 50), "p95": percentile(query_ms[c][t], 95)} for c in CONDITIONS
        }
        out["batch_per_s"][t] = {c: len(paragraphs) / median(batch_s[c][t]) for c in CONDITIONS}
        out["faiss_1m_ms"][t] = {"p50": percentile(search_ms[t], 50), "p95": percentile(search_ms[t], 95)}
    out["queries"], out["batch"] = len(questions), len(paragraphs)
    return out


CONDITIONS = ("idle", "busy")


@contextlib.contextmanager
def _busy_core(on: bool) -> Iterator[None]:
    """While inside, another process keeps one core busy (when ``on``)."""
    if not on:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def show_threads(r: dict[str, Any]) -> str:
    rows = []
    for t in r["query_ms"]:
        for c in CONDITIONS:
            q, f = r["query_ms"][t][c], r["faiss_1m_ms"][t]
            search = [f"{f['p50']:.1f}", f"{f['p95']:.1f}"] if c == "idle" else ["", ""]
            rows.append([t, c, f"{q['p50']:.1f}", f"{q['p95']:.1f}", f"{r['batch_per_s'][t][c]:.1f}", *search])
    head = [
        "threads",
        "machine",
        "encode 1 query p50 ms",
        "p95 ms",
        f"batch encode ({r['batch']}) paragraphs/s",
        "faiss 1M search p50 ms",
        "p95 ms",
    ]
    note = (
        f"{r['queries']} queries per setting, settings interleaved; machine has {r['cores']} cores; "
        "busy = another process spinning on one core"
    )
    return f"{table(head, rows)}\n\n{note}  \n{recommend_threads(r)}"


def recommend_threads(r: dict[str, Any]) -> str:
    """The defaults the measurements support (thread counts are JSON keys: strings after a round trip).

    A query is latency, which must not collapse when the machine is shared: judged by its p95
    in the worse condition. A batch is throughput: judged by its mean over both conditions.
    """
    query = {int(t): max(v[c]["p95"] for c in CONDITIONS) for t, v in r["query_ms"].items()}
    batch = {int(t): statistics.fmean(v.values()) for t, v in r["batch_per_s"].items()}
    search = {int(t): v["p50"] for t, v in r["faiss_1m_ms"].items()}
    q_best = min(query, key=lambda t: query[t])
    b_best = max(batch, key=lambda t: batch[t])
    s_best = min(search, key=lambda t: search[t])
    return (
        f"supported defaults: query encoding {q_best} thread(s) (p95 in the worse condition {query[q_best]:.0f} ms vs "
        f"{max(query.values()):.0f} ms); batch encoding {b_best} thread(s) (mean {batch[b_best]:.1f} vs "
        f"{min(batch.values()):.1f} paragraphs/s); faiss search {s_best} thread(s) at 1M "
        f"(p50 {search[s_best]:.0f} ms vs {max(search.values()):.0f} ms)"
    )


# ---------------------------------------------------------------------------
# Cold start and memory: fresh processes


PLAIN_SCRIPT = """
import json, sys
import faiss
from sentence_transformers import SentenceTransformer
folder = sys.argv[1]
model = SentenceTransformer(json.load(open(folder + "/model.json"))["path"], device="cpu")
index = faiss.read_index(folder + "/vectors.faiss")
texts = json.load(open(folder + "/passages.json"))
v = model.encode([sys.argv[2]], normalize_embeddings=True)
scores, ids = index.search(v, 5)
print(texts[ids[0][0]])
"""


def _run(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one fresh process."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{argv} failed with status {status}")
    return wall, usage.ru_maxrss / 1024


def _prepare_plain(folder: Path, texts: Sequence[str], vectors: np.ndarray) -> None:
    import faiss

    from qa.embedding import resolve_model_path

    folder.mkdir(parents=True, exist_ok=True)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.write_index(flat, str(folder / "vectors.faiss"))
    (folder / "passages.json").write_text(json.dumps(list(texts)), encoding="utf-8")
    (folder / "model.json").write_text(json.dumps({"path": str(resolve_model_path("all-MiniLM-L6-v2"))}))
    (folder / "plain.py").write_text(PLAIN_SCRIPT, encoding="utf-8")


def bench_coldstart(runs: int, question: str) -> dict[str, Any]:
    """Fresh processes: `qa search` and `qa ask` on the seed index (default backend) beside the plain script."""
    import qa

    tmp = Path(tempfile.mkdtemp(prefix="qa-cold-"))
    index = qa.build_index([SEEDS], tmp / "qa-seed", progress=False)
    _prepare_plain(tmp / "plain-seed", [p.text for p in index.passages], index.vectors)
    qa_bin = str(Path(sys.executable).parent / "qa")
    commands = {
        "search": [qa_bin, "search", question, "--index", str(tmp / "qa-seed"), "--quiet"],
        "ask": [qa_bin, "ask", question, "--index", str(tmp / "qa-seed"), "--quiet"],
        "plain": [sys.executable, str(tmp / "plain-seed" / "plain.py"), str(tmp / "plain-seed"), question],
    }
    for argv in commands.values():
        _run(argv)  # warm the page cache for all
    measured: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            measured[name].append(_run(argv))
    out: dict[str, Any] = {
        "runs": runs,
        "question": question,
        "passages": len(index),
        "backend": index.manifest["model"].get("backend", ""),
    }
    for name in commands:
        out[f"{name}_seconds"] = median([w for w, _ in measured[name]])
        out[f"{name}_peak_mib"] = median([m for _, m in measured[name]])
    # Keys earlier results used: qa = ask.
    out.update(qa_seconds=out["ask_seconds"], qa_peak_mib=out["ask_peak_mib"], qa_command="ask")
    return out


def show_coldstart(r: dict[str, Any]) -> str:
    plain_s, plain_m = r["plain_seconds"], r["plain_peak_mib"]
    rows = []
    for name in ("search", "ask"):
        if f"{name}_seconds" in r:
            s, m = r[f"{name}_seconds"], r[f"{name}_peak_mib"]
            rows.append([f'qa {name} "{r["question"]}"', f"{s:.2f}", f"{m:.0f}", f"{s / plain_s:.2f}",
                         f"{m / plain_m:.2f}"])  # fmt: skip
    if not rows:  # results from before `qa search` was measured
        rows.append([f'qa ask "{r["question"]}"', f"{r['qa_seconds']:.2f}", f"{r['qa_peak_mib']:.0f}",
                     f"{r['qa_seconds'] / plain_s:.2f}", f"{r['qa_peak_mib'] / plain_m:.2f}"])  # fmt: skip
    rows.append(["plain script: import + load + encode + search", f"{plain_s:.2f}", f"{plain_m:.0f}", "1.00", "1.00"])
    head = ["fresh process (seed index)", "wall s (median)", "peak RSS MiB", "wall / plain", "RSS / plain"]
    backend = f"; the qa index was built with the {r['backend']} backend" if r.get("backend") else ""
    note = f"median of {r['runs']} interleaved runs{backend}; qa ask also reads the passages to extract an answer"
    return f"{table(head, rows)}\n\n{note}"


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def bench_memory() -> dict[str, Any]:
    """Index bytes per passage on disk, and peak RSS of a fresh process that answers one question."""
    tmp = Path(tempfile.mkdtemp(prefix="qa-mem-"))
    paragraphs = squad_paragraphs()
    vectors = squad_vectors(paragraphs)
    out: dict[str, Any] = {"sizes": {}}
    real = squad_index()
    real.save(tmp / "qa-squad")
    _prepare_plain(tmp / "plain-squad", paragraphs, vectors)
    out["sizes"]["squad"] = {
        "passages": len(real),
        "paragraphs": len(paragraphs),
        "qa_bytes_per_passage": _folder_bytes(tmp / "qa-squad") / len(real),
        "plain_bytes_per_passage": _plain_bytes(tmp / "plain-squad") / len(paragraphs),
        "what": "real index: vectors, sentence vectors, BM25, passages with sources",
    }
    question = squad_questions(1)[0]
    qa_bin = str(Path(sys.executable).parent / "qa")
    qa_argv = [qa_bin, "ask", question, "--index", str(tmp / "qa-squad"), "--quiet"]
    plain_argv = [sys.executable, str(tmp / "plain-squad" / "plain.py"), str(tmp / "plain-squad"), question]
    peaks: dict[str, list[float]] = {"qa": [], "plain": []}
    for _ in range(3):
        peaks["qa"].append(_run(qa_argv)[1])
        peaks["plain"].append(_run(plain_argv)[1])
    out["peak_rss_mib"] = {name: median(v) for name, v in peaks.items()}
    del real
    n = 100_000
    v = tiled(vectors, n)
    index = qa_index_from(v, paragraphs)
    index.save(tmp / "qa-100k")
    _prepare_plain(tmp / "plain-100k", [paragraphs[i % len(paragraphs)] for i in range(n)], v)
    out["sizes"]["100k"] = {
        "passages": n,
        "paragraphs": n,
        "qa_bytes_per_passage": _folder_bytes(tmp / "qa-100k") / n,
        "plain_bytes_per_passage": _plain_bytes(tmp / "plain-100k") / n,
        "what": "synthetic (SQuAD vectors tiled): vectors, BM25, passages; no sentence vectors",
    }
    return out


def _plain_bytes(folder: Path) -> int:
    return sum((folder / f).stat().st_size for f in ("vectors.faiss", "passages.json"))


def show_memory(r: dict[str, Any]) -> str:
    rows = [
        [
            name,
            m["passages"],
            f"{m['qa_bytes_per_passage']:.0f}",
            f"{m['plain_bytes_per_passage']:.0f}",
            f"{m['qa_bytes_per_passage'] / m['plain_bytes_per_passage']:.2f}",
            m["what"],
        ]
        for name, m in r["sizes"].items()
    ]
    head = ["corpus", "passages", "qa bytes/passage", "plain bytes/passage", "ratio", "qa index holds"]
    peak = r["peak_rss_mib"]
    return (
        f"{table(head, rows)}\n\nplain: faiss file + JSON list of texts (one vector per paragraph; qa splits long "
        "paragraphs into windows that fit the model).  \n"
        f"Peak RSS of a fresh process answering one question over the SQuAD index: qa ask {peak['qa']:.0f} MiB, "
        f"plain script {peak['plain']:.0f} MiB (ratio {peak['qa'] / peak['plain']:.2f}; qa also loads "
        "the span reader)."
    )


# ---------------------------------------------------------------------------


BENCHES: dict[str, tuple[Callable[[argparse.Namespace], dict[str, Any]], Callable[[dict[str, Any]], str]]] = {
    "throughput": (lambda a: bench_throughput(a.n, a.runs, a.backends.split(",")), show_throughput),
    "latency": (lambda a: bench_latency(a.sizes.split(","), a.queries), show_latency),
    "threads": (lambda a: bench_threads(a.queries, a.batch), show_threads),
    "coldstart": (lambda a: bench_coldstart(a.runs, a.question), show_coldstart),
    "memory": (lambda a: bench_memory(), show_memory),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench", choices=[*BENCHES, "all"])
    parser.add_argument("--n", type=int, default=2067, help="SQuAD paragraphs to index (throughput)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs (throughput, coldstart)")
    parser.add_argument("--queries", type=int, default=100, help="queries per setting (latency, threads)")
    parser.add_argument("--sizes", default="seed,squad,100k,1m", help="latency corpus sizes")
    parser.add_argument("--batch", type=int, default=256, help="paragraphs per batch-encoding run (threads)")
    parser.add_argument("--question", default="who mediated Turkey-Israel?")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="embedding backends to compare (throughput)")
    parser.add_argument("--json", metavar="FILE", help="also write the measurements as JSON")
    args = parser.parse_args(argv)
    command = "python benchmarks/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results: dict[str, Any] = {"command": command, "machine": machine()}
    for name in BENCHES if args.bench == "all" else [args.bench]:
        run, show = BENCHES[name]
        print(f"== {name}", flush=True)
        results[name] = run(args)
        print(show(results[name]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
