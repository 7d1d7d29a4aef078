"""Write benchmarks/RESULTS.md and the README's "Results" section from measured runs.

Every number in the file comes from the JSON a command wrote; the command is printed
next to its table. By default the runs happen here (tens of minutes on 2 cores);
``--reuse`` only re-renders from the JSON files already in ``--out``.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/make_results.py            # run everything, then write
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/make_results.py --reuse    # re-render only
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# name → the command that produces benchmarks/results/<name>.json (run from the repo root)
RUNS: dict[str, list[str]] = {
    "scifact_plain": ["python", "benchmarks/scifact_plain.py", "--json", "{out}"],
    "eval_scifact": ["qa", "eval", "scifact", "--json"],
    "eval_squad": ["qa", "eval", "squad", "--split", "heldout", "--json"],
    "eval_seed": ["qa", "eval", "tests/seed_questions.jsonl", "--corpus", "seeds", "--json"],
    "embedding_quality_squad": [
        "python", "benchmarks/embedding_quality.py", "--dataset", "squad", "--json", "{out}",
    ],
    "throughput": ["python", "benchmarks/compare.py", "throughput", "--json", "{out}"],
    "throughput_quiet": [
        "python", "benchmarks/compare.py", "throughput", "--backends", "openvino-bf16,onnx,onnx-int8", "--runs", "3",
        "--json", "{out}",
    ],
    "latency": ["python", "benchmarks/compare.py", "latency", "--json", "{out}"],
    "threads": ["python", "benchmarks/compare.py", "threads", "--json", "{out}"],
    "coldstart": ["python", "benchmarks/compare.py", "coldstart", "--runs", "5", "--json", "{out}"],
    "memory": ["python", "benchmarks/compare.py", "memory", "--json", "{out}"],
    "scale": ["python", "benchmarks/scale.py", "--json", "{out}"],
    "milvus": ["python", "benchmarks/milvus_bench.py", "--server", "--json", "{out}"],
}
README = ROOT / "README.md"
# The README's Results section sits between these lines; everything between them is rewritten.
README_START = "<!-- results: written by benchmarks/make_results.py; do not edit by hand -->"
README_END = "<!-- end of results -->"
SPEED = {
    "throughput": "Indexing throughput (SQuAD paragraphs) with torch too: one run, from before openvino-bf16 existed",
    "throughput_quiet": "Indexing throughput, the torch-free backends only, on a quiet machine",
    "latency": "Warm query latency (embed the query + search + hits)",
    "coldstart": "Cold start (a fresh process answers one question)",
    "memory": "Index bytes per passage",
    "threads": "Threads (torch for encoding, faiss for search)",
}


def _argv(words: list[str], out: Path) -> list[str]:
    exe = {"python": sys.executable, "qa": str(BIN / "qa")}
    return [exe.get(w, w.replace("{out}", str(out))) for w in words]


def run(name: str, out_dir: Path) -> None:
    out = out_dir / f"{name}.json"
    argv = _argv(RUNS[name], out)
    print(f"make_results: {shlex.join(RUNS[name]).replace('{out}', str(out.relative_to(ROOT)))}", file=sys.stderr)
    if "{out}" in RUNS[name]:
        subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    else:
        result = subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
        out.write_text(result.stdout, encoding="utf-8")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _load(out_dir: Path, name: str) -> dict[str, Any] | None:
    path = out_dir / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _command(report: dict[str, Any], name: str) -> str:
    # The runs write their JSON to absolute paths; shown relative, the command works in any clone.
    return str(report.get("command") or shlex.join(RUNS[name])).replace(f"{ROOT}/", "")


def _took(report: dict[str, Any]) -> str:
    seconds = report.get("seconds")
    return f"; the whole run, index build included, took {seconds / 60:.1f} min" if seconds else ""


def render_eval(report: dict[str, Any], name: str) -> list[str]:
    lines = [
        f"Reproduce: `{_command(report, name)}`  ",
        f"qa {report['qa_version']}, model {report['model']} ({report.get('embedding_backend') or 'torch'} "
        f"backend{_took(report)}); corpus {report['documents']} documents, "
        f"{report['units']} {report['unit']}s, {report['passages']} passages; {report['questions']} questions; "
        f"data sha256 {report['data_sha256'][:12]}.",
        "",
    ]
    ks = sorted(int(k) for k in report["retrieval"][0]["recall"])
    rows = [
        [r["mode"], *(f"{r['recall'][str(k)]:.3f}" for k in ks), f"{r['mrr_at_10']:.3f}", f"{r['ndcg_at_10']:.3f}"]
        for r in report["retrieval"]
    ]
    lines += [_table(["mode", *(f"recall@{k}" for k in ks), "MRR@10", "nDCG@10"], rows), ""]
    end_to_end = [a for a in report["answers"] if a["setting"] == "end-to-end"]
    if end_to_end:
        # One glance: what each retrieval mode finds, and what the reader makes of the default's.
        a = end_to_end[0]
        recalls = {r["mode"]: [f"{r['recall'][k]:.3f}" for k in ("1", "5")] for r in report["retrieval"]}
        rows = [[mode, *recall, "–", "–"] for mode, recall in recalls.items()]
        if a["mode"] in recalls:
            scores = [f"{100 * a['exact_match']:.1f}", f"{100 * a['f1']:.1f}"]
            rows.append([f"**{a['mode']} + reader**", *recalls[a["mode"]], *scores])
        lines += [_table(["", "recall@1", "recall@5", "answer EM", "answer F1"], rows), ""]
    if report["answers"]:
        rows = [
            [
                a["setting"],
                a["mode"],
                a["questions"],
                f"{a['exact_match']:.3f}",
                f"{a['f1']:.3f}",
                f"{a['no_answer_rate']:.3f}",
                f"{a['forced_exact_match']:.3f}",
                f"{a['forced_f1']:.3f}",
            ]
            for a in report["answers"]
        ]
        head = ["answers", "retrieval", "questions", "EM", "F1", "no-answer rate", "forced EM", "forced F1"]
        lines += [_table(head, rows), ""]
        # Questions with no answer have no accuracy to bin: their row above says how many were withheld.
        for a in (a for a in report["answers"] if a["setting"] != "unanswerable"):
            rows = [
                [
                    f"{b['low']:.1f}–{b['high']:.1f}",
                    b["answers"],
                    f"{b['mean_confidence']:.2f}",
                    f"{b['accuracy']:.2f}" if b["answers"] else "–",
                ]
                for b in a["reliability"]
            ]
            lines += [
                f"Reliability, {a['setting']}: every question's best candidate, answered or withheld, by "
                f"confidence (accuracy = share with F1 ≥ 0.5; no-answer rate {a['no_answer_rate']:.3f}"
                + (
                    f"; expected calibration error {a['expected_calibration_error']:.3f}"
                    if "expected_calibration_error" in a
                    else ""
                )
                + "):",
                "",
                _table(["confidence", "questions", "mean confidence", "accuracy"], rows),
                "",
            ]
    lines += [f"_{n}_" for n in report.get("notes", [])]
    return [*lines, ""]


def render(out_dir: Path) -> str:
    sections = [
        "## Results",
        "",
        "Every table below was written by `benchmarks/make_results.py` from the JSON its command printed; "
        "nothing is typed in by hand. Quality numbers are deterministic; speed numbers depend on the "
        "machine and its load (a shared 2-core VM here).",
        "",
    ]
    plain = _load(out_dir, "scifact_plain")
    scifact = _load(out_dir, "eval_scifact")
    squad = _load(out_dir, "eval_squad")
    if squad:
        sections += ["### Quality: SQuAD v1.1 dev, held-out articles (open retrieval over all 2,067 paragraphs)", ""]
        sections += render_eval(squad, "eval_squad")
    if scifact:
        sections += ["### Quality: BEIR SciFact (300 claims, 5,183 abstracts)", ""]
        sections += render_eval(scifact, "eval_scifact")
    seed = _load(out_dir, "eval_seed")
    if seed:
        sections += [
            "### Quality: the seed article, gold questions written here "
            "(nothing is fitted on them; their misses point at general faults, whose fixes are checked on SQuAD tune)",
            "",
        ]
        sections += render_eval(seed, "eval_seed")
    if plain or scifact:
        sections += [
            "### Check against the published number",
            "",
            "MTEB publishes nDCG@10 = 0.645 for all-MiniLM-L6-v2 on SciFact; the bar is ±0.01.",
            "",
        ]
        rows = []
        if plain:
            rows.append(
                [
                    f"plain script (`{_command(plain, 'scifact_plain')}`)",
                    f"{plain['ndcg_at_10']:.4f}",
                    f"{plain['recall_at_100']:.4f}",
                ]
            )
        if scifact:
            labels = {
                "plain-dense": "`qa eval`'s plain-dense row (one vector per document, cut at 256 word pieces)",
                "dense": "`qa eval`'s dense mode (qa's windows of whole sentences, best window per document)",
            }
            for r in scifact["retrieval"]:
                if r["mode"] in labels:
                    rows.append([labels[r["mode"]], f"{r['ndcg_at_10']:.4f}", f"{r['recall']['100']:.4f}"])
        sections += [_table(["run", "nDCG@10", "recall@100"], rows), ""]
    quality = _load(out_dir, "embedding_quality_squad")
    if quality:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import embedding_quality

        sections += [
            "### Quality by embedding backend (SQuAD held-out)",
            "",
            f"Reproduce: `{_command(quality, 'embedding_quality_squad')}`  ",
            "`X/separate` embeds each sentence as a text of its own (before issue 11); plain `X` pools the "
            "sentence vectors from the passage's forward pass. `mixed` queries an fp32 index with int8 query "
            "vectors, which qa refuses to do silently.",
            "",
            embedding_quality.show(quality),
            "",
        ]
    speed = {name: data for name in SPEED if (data := _load(out_dir, name))}
    if speed:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import compare as bench

        sections += [
            "### Speed: qa against the plain script (sentence-transformers encode + faiss.IndexFlatIP)",
            "",
            "Same process, same passages, same machine, runs interleaved; medians. The machine is a shared "
            "2-core VM that other jobs kept busy, so absolute times are pessimistic; the ratios are the point.",
            "",
        ]
        for name, title in SPEED.items():
            if name not in speed:
                continue
            data = speed[name]
            m = data["machine"]
            sections += [
                f"#### {title}",
                "",
                f"Reproduce: `{_command(data, name)}`  ",
                f"qa {m['qa_version']}, torch {m['torch']}, faiss {m['faiss']}, {m['cpus']} cores, "
                f"load average at start {', '.join(f'{x:.1f}' for x in m['load_average'])}.",
                "",
                bench.BENCHES[name.removesuffix("_quiet")][1](data[name.removesuffix("_quiet")]),
                "",
            ]
    scale = _load(out_dir, "scale")
    if scale:
        sections += render_scale(scale)
    milvus = _load(out_dir, "milvus")
    if milvus:
        sections += render_milvus(milvus)
    return "\n".join(sections).rstrip() + "\n"


def _machine_line(data: dict[str, Any]) -> str:
    m = data["machine"]
    return (
        f"qa {m['qa_version']}, torch {m['torch']}, faiss {m['faiss']}, {m['cpus']} cores, "
        f"load average at start {', '.join(f'{x:.1f}' for x in m['load_average'])}."
    )


def render_scale(data: dict[str, Any]) -> list[str]:
    rows = [
        [
            r["type"],
            f"`{r['factory']}`",
            r["knobs"],
            f"{r['build_s']:.0f}",
            f"{r['bytes_per_passage']:.0f}",
            f"{r['recall@10']:.3f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p95_ms']:.2f}",
        ]
        for r in data["rows"]
    ]
    head = ["type", "FAISS factory", "knobs", "build s", "FAISS bytes/passage", "recall@10 vs exact", "p50", "p95"]
    return [
        "### Scale: index types at 1M passages",
        "",
        f"Reproduce: `{_command(data, 'scale')}`  ",
        _machine_line(data),
        "",
        f"Data: {data['data']}. Latency (p50/p95, ms) is one query at a time on one thread, through "
        "`Index.dense_search` (approximate candidates reranked with the exact vectors included).",
        "",
        _table(head, rows),
        "",
        "_Approximate types also keep the exact vectors on disk (vectors.npy, 1,536 bytes/passage), "
        "memory-mapped: only the k × k_factor candidates a query reranks are read._",
        "",
    ]


def render_milvus(data: dict[str, Any]) -> list[str]:
    rows = []
    for t in data["targets"]:
        for level, m in t["levels"].items():
            rows.append(
                [
                    t["target"],
                    t["index"],
                    f"{t['rows']:,}",
                    f"{t['insert_s']:.1f} ({t['rows_per_s']:,.0f} rows/s)",
                    f"{t['indexed_s']:.1f}",
                    level,
                    f"{m['p50_ms']:.1f}",
                    f"{m['p95_ms']:.1f}",
                    f"{m['filtered_p50_ms']:.1f}",
                    f"{m['recall@10']:.3f}",
                ]
            )
    head = [
        "target", "index", "rows", "insert s", "flush + index s", "consistency", "p50 ms", "p95 ms",
        "filtered p50 ms", "recall@10 vs FAISS exact",
    ]  # fmt: skip
    return [
        "### Scaling out: the Milvus backend at 100k passages",
        "",
        f"Reproduce: `{_command(data, 'milvus')}`  ",
        _machine_line(data),
        "",
        f"Data: {data['data']}. Every row is a full qa passage (text and attribution). FAISS flat (exact) on the "
        f"same vectors, one thread: p50 {data['faiss_flat_p50_ms']:.1f} ms. Filtered: a publisher filter keeping "
        "1/8 of the rows.",
        "",
        _table(head, rows),
        "",
    ]


def splice_readme(results: str, readme: Path = README) -> None:
    """Replace the README's Results section (between the marker lines) with ``results``."""
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise SystemExit(f"{readme} lacks the marker lines {README_START!r} / {README_END!r}")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    body = results.replace("## Results\n", "", 1).strip()
    readme.write_text(f"{head}{README_START}\n{body}\n{README_END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run the benchmarks and write RESULTS.md")
    parser.add_argument("--reuse", action="store_true", help="only re-render from existing JSON")
    parser.add_argument("--only", help=f"comma list of runs to (re)do: {','.join(RUNS)}")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder of the JSON results")
    parser.add_argument("--md", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not args.reuse:
        for name in args.only.split(",") if args.only else RUNS:
            run(name, out_dir)
    results = render(out_dir)
    Path(args.md).write_text(results, encoding="utf-8")
    splice_readme(results)
    print(f"wrote {args.md} and the Results section of {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
