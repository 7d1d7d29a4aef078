"""``qa eval``: its arguments, the command line that reproduces a run, and the run itself."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from qa.backends import BACKENDS
from qa.errors import InputError
from qa.evaluation.corpus import default_index_dir, eval_index
from qa.evaluation.datasets import SCIFACT_FILE, SPLITS, SQUAD_FILE, find_data, load_questions, load_scifact, load_squad
from qa.evaluation.report import format_report, report_json
from qa.evaluation.runner import evaluate


def add_eval_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to ``qa``'s subparsers."""
    sub: argparse.ArgumentParser = commands.add_parser(
        "eval",
        help="measure retrieval and answer quality on SQuAD, SciFact or your own questions",
        description="Retrieval (recall@k, MRR@10, nDCG@10, every mode side by side) and answer quality "
        "(SQuAD EM/F1, end to end and given the gold paragraph).",
    )
    sub.add_argument("dataset", metavar="DATASET", help="squad, scifact, or a .jsonl file of questions")
    sub.add_argument(
        "--data", metavar="PATH", help=f"data file (default: ../shared/data/{SQUAD_FILE} or {SCIFACT_FILE})"
    )
    sub.add_argument("--split", choices=SPLITS, default="heldout", help="SQuAD questions to ask (default: heldout)")
    sub.add_argument("--limit", type=int, metavar="N", help="ask at most N questions")
    sub.add_argument("--limit-docs", type=int, metavar="N", help="a corpus of N documents only (a fast slice)")
    sub.add_argument("--modes", metavar="M,M", help="retrieval modes to compare (default: all qa has)")
    sub.add_argument("-k", type=int, default=5, help="passages read per answer (default: 5)")
    sub.add_argument("--answer-mode", metavar="MODE", help="retrieval mode for end-to-end answers")
    sub.add_argument("--no-answers", action="store_true", help="retrieval metrics only")
    sub.add_argument("--model", help="embedding model (default: all-MiniLM-L6-v2)")
    sub.add_argument(
        "--index",
        metavar="DIR",
        help="index folder: the corpus for a .jsonl; the cache for squad/scifact "
        "(default: indexes/eval-<dataset>-<model>)",
    )
    sub.add_argument(
        "--corpus",
        metavar="PATH",
        action="append",
        help="for a .jsonl: index these files or folders first (in memory, or into --index) and ask over them",
    )
    sub.add_argument("--backend", choices=BACKENDS, help="embedding backend (default: the library's)")
    sub.add_argument("--no-cache", action="store_true", help="build the eval index in memory, never save it")
    sub.add_argument("--json", action="store_true", help="print the report as one JSON object")
    sub.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    return sub


def _positive(value: int | None, flag: str) -> int | None:
    if value is not None and value <= 0:
        raise InputError(f"{flag} must be a positive integer, got {value}")
    return value


def command_line(args: argparse.Namespace) -> str:
    """The ``qa eval`` command that reproduces ``args`` (every option that was set, in a fixed order)."""
    parts = ["qa", "eval", args.dataset]
    for flag, value in (
        ("--data", args.data),
        ("--split", args.split if args.dataset == "squad" else None),
        ("--limit", args.limit),
        ("--limit-docs", args.limit_docs),
        ("--modes", args.modes),
        ("-k", args.k if args.k != 5 else None),
        ("--answer-mode", args.answer_mode),
        ("--model", args.model),
        ("--backend", args.backend),
        ("--index", args.index),
        *(("--corpus", c) for c in args.corpus or ()),
    ):
        if value is not None:
            parts += [flag, str(value)]
    parts += [
        flag
        for flag, on in (("--no-answers", args.no_answers), ("--no-cache", args.no_cache), ("--json", args.json))
        if on
    ]
    return shlex.join(parts)


def run_eval(args: argparse.Namespace) -> int:
    """``qa eval``: load the data set, build or reuse its index, evaluate, print."""
    from qa.embedding import DEFAULT_MODEL, default_backend

    started = time.perf_counter()
    limit = _positive(args.limit, "--limit")
    limit_docs = _positive(args.limit_docs, "--limit-docs")
    model = args.model or DEFAULT_MODEL
    name = args.dataset
    if name == "squad":
        dataset = load_squad(find_data(SQUAD_FILE, args.data), split=args.split, limit=limit, limit_docs=limit_docs)
    elif name == "scifact":
        dataset = load_scifact(find_data(SCIFACT_FILE, args.data), limit=limit, limit_docs=limit_docs)
    elif name.endswith(".jsonl") or Path(name).is_file():
        dataset = load_questions(name, limit=limit)
    else:
        raise InputError(f"unknown data set {name!r}; choose squad, scifact, or a .jsonl file of questions")
    say = (lambda _msg: None) if args.quiet or args.json else (lambda msg: print(f"qa: {msg}", file=sys.stderr))
    from qa.store import is_milvus_target

    milvus = is_milvus_target(args.index)
    index: Any
    if dataset.articles is None:
        from qa.index import build_index, load_index

        if args.corpus:
            say(f"indexing {', '.join(args.corpus)}")
            index = build_index(args.corpus, args.index, model=model, progress=not (args.quiet or args.json))
        else:
            index = load_index(args.index or "indexes/default")
    else:
        full = limit_docs is None
        backend = args.backend or default_backend()
        # A Milvus target is always used (it is where the user asked the index to live); a folder
        # caches the index of a whole data set only.
        folder: str | Path | None = args.index if milvus else None
        if folder is None and not args.no_cache and full:
            folder = Path(args.index or default_index_dir(name, model, backend))
        say(f"indexing {len(dataset.articles)} documents" + (f" (cached in {folder})" if folder else ""))
        index = eval_index(
            dataset, model=model, index_dir=folder, progress=not (args.quiet or args.json), backend=backend
        )
    modes = [m.strip() for m in args.modes.split(",") if m.strip()] if args.modes else None
    say(f"evaluating {len(dataset.questions)} questions over {len(index)} passages")
    command = command_line(args)
    report = evaluate(
        dataset,
        index,
        modes=modes,
        answers=not args.no_answers,
        k=args.k,
        answer_mode=args.answer_mode,
        command=command,
    )
    report = replace(report, seconds=round(time.perf_counter() - started, 1))
    print(report_json(report) if args.json else format_report(report))
    if milvus:
        index.close()
    return 0
