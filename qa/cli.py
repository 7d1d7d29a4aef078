"""The ``qa`` command: a thin skin over the Python API.

``--json`` prints exactly ``dataclasses.asdict`` of the results; without it the
output is for people. User mistakes print one line to stderr and exit 2;
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qa._version import __version__
from qa.backends import BACKENDS, DEFAULT_BACKEND

if TYPE_CHECKING:
    from qa.answering import Answer
    from qa.filters import Filters
    from qa.retrieval import Hit
    from qa.store import Store

DEFAULT_INDEX = "indexes/default"
DEFAULT_SOURCES = "seeds"

# Control characters (C0 but newline and tab, DEL, C1) in indexed text could drive the
# user's terminal (set its title, clear the screen, ...); people's output shows them escaped.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with terminal control characters shown as escapes (``\\x1b``), safe to print.

    Newlines and tabs are kept; everything else in Unicode category Cc becomes ``\\xNN``.

    Args:
        text: any text, e.g. a passage taken from an indexed document.

    Returns:
        The text with each control character replaced by its Python escape.
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qa",
        description="Semantic search and question answering over articles, with sources.",
        epilog='Start with: qa ask "who mediated Turkey-Israel?"  (builds the seed index on first use)',
    )
    parser.add_argument("--version", action="version", version=f"qa {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--index", default=DEFAULT_INDEX, metavar="DIR", help=f"index folder (default: {DEFAULT_INDEX})"
        )
        sub.add_argument("--quiet", "-q", action="store_true", help="no progress bars or notes on stderr")

    index = commands.add_parser("index", help="build an index from files and folders of articles")
    index.add_argument("paths", nargs="+", metavar="PATH", help=".txt/.md/.html/.jsonl files or folders")
    index.add_argument("--model", default=None, help="bundled model name or local sentence-transformers folder")
    index.add_argument(
        "--index-type",
        default=None,
        metavar="TYPE",
        help="auto (default for a new index), flat, hnsw, ivf-sq8, ivf-pq, or a FAISS factory string",
    )
    index.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help=f"how the model runs: {', '.join(BACKENDS)} (default for a new index: {DEFAULT_BACKEND}); "
        "an existing index keeps its own unless this is given",
    )
    common(index)

    remove = commands.add_parser("remove", help="remove documents from an index (by doc id, file or folder)")
    remove.add_argument("targets", nargs="+", metavar="DOC_OR_PATH", help="doc ids, file paths or folders")
    common(remove)

    def retrieval(sub: argparse.ArgumentParser) -> None:
        from qa.retrieval import DEFAULT_MODE, MODES

        sub.add_argument("--mode", choices=MODES, default=None, help=f"retrieval mode (default: {DEFAULT_MODE})")
        group = sub.add_argument_group("filters (applied before the top-k cut)")
        group.add_argument("--publisher", action="append", help="only this publisher (repeat for several)")
        group.add_argument("--section", action="append", help="only this section (repeat for several)")
        group.add_argument("--doc-id", action="append", help="only this document id (repeat for several)")
        group.add_argument("--path-prefix", help="only sources whose path starts with this")
        group.add_argument("--since", metavar="YYYY-MM-DD", help="only articles dated on or after this day")
        group.add_argument("--until", metavar="YYYY-MM-DD", help="only articles dated on or before this day")

    search = commands.add_parser("search", help="the passages that best match a query")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5, help="number of passages (default: 5)")
    search.add_argument("--json", action="store_true", help="print a JSON list of hits")
    retrieval(search)
    common(search)

    ask = commands.add_parser("ask", help="answer a question with its source")
    ask.add_argument("question")
    ask.add_argument("-k", type=int, default=5, help="passages to retrieve (default: 5)")
    ask.add_argument("--json", action="store_true", help="print the answer as one JSON object")
    ask.add_argument(
        "--min-confidence",
        type=float,
        metavar="P",
        help="withhold answers less confident than P (default: the fitted threshold; 0 always answers)",
    )
    retrieval(ask)
    common(ask)

    serve = commands.add_parser(
        "serve",
        help="serve the index over HTTP: a JSON API (/search, /ask, /health) and a search page at /",
        description="Serve the index over HTTP (needs the serve extra: pip install 'qa[serve]').",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    serve.add_argument(
        "--token",
        default=None,
        help="require 'Authorization: Bearer TOKEN' on every API call (default: $QA_SERVE_TOKEN, else none)",
    )
    common(serve)

    from qa.evaluation import add_eval_parser

    add_eval_parser(commands)
    return parser


def _open_index(args: argparse.Namespace) -> Store:
    from qa.index import build_index, load_index

    if args.index == DEFAULT_INDEX and not Path(args.index).exists():
        if not args.quiet:
            print(f"qa: no index yet; building {args.index} from {DEFAULT_SOURCES}/ ...", file=sys.stderr)
        return build_index([DEFAULT_SOURCES], args.index, progress=not args.quiet)
    # A string, not a Path: Path would fold "milvus://host" into "milvus:/host".
    return load_index(args.index)


def _cmd_index(args: argparse.Namespace) -> int:
    from qa.embedding import DEFAULT_MODEL, get_embedder
    from qa.index import build_index

    started = time.perf_counter()
    embedder = get_embedder(args.model, backend=args.backend)
    _ = embedder.max_tokens  # loads the model now, so the time printed below is the indexing alone
    loaded = time.perf_counter()
    kwargs: dict[str, Any] = {"index_type": args.index_type} if args.index_type else {}
    # The model by name: without --backend an existing index keeps the backend it was built with.
    index = build_index(
        args.paths, args.index, model=args.model or DEFAULT_MODEL, embedding_backend=args.backend,
        progress=not args.quiet, **kwargs,
    )  # fmt: skip
    documents = len({p.source.doc_id for p in index.passages})
    print(f"indexed {len(index)} passages from {documents} documents into {args.index} "
          f"in {time.perf_counter() - loaded:.2f}s (+{loaded - started:.1f}s model load)")
    if index.last_update is not None:
        print(index.last_update)
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    from qa.index import load_index

    report = load_index(args.index).remove(args.targets)
    print(report)
    return 0


def _filters(args: argparse.Namespace) -> Filters | None:
    from qa.filters import Filters

    filters = Filters(
        publisher=args.publisher,
        section=args.section,
        doc_id=args.doc_id,
        path_prefix=args.path_prefix,
        date_from=args.since,
        date_to=args.until,
    )
    return None if filters.empty else filters


def _cmd_search(args: argparse.Namespace) -> int:
    hits = _open_index(args).search(args.query, k=args.k, mode=args.mode, filters=_filters(args))
    if args.json:
        print(json.dumps([asdict(h) for h in hits], ensure_ascii=False, indent=2))
    else:
        for hit in hits:
            print(printable(_describe(hit)))
        if not hits:
            print("no passages")
    return 0


def _cmd_ask(args: argparse.Namespace) -> int:
    options = {} if args.min_confidence is None else {"min_confidence": args.min_confidence}
    answer = _open_index(args).ask(args.question, k=args.k, mode=args.mode, filters=_filters(args), **options)
    if args.json:
        print(json.dumps(asdict(answer), ensure_ascii=False, indent=2))
    else:
        print(printable(_describe_answer(answer)))
    return 0


def _describe(hit: Hit, marker: tuple[int, int] | None = None) -> str:
    from qa.paths import display_path

    s = hit.source
    text = hit.text
    if marker:
        text = f"{text[: marker[0]]}[{text[marker[0] : marker[1]]}]{text[marker[1] :]}"
    where = " · ".join(x for x in (s.publisher, s.title, f"paragraph {s.paragraph}") if x)
    # Stored paths are absolute (qa.paths); people read them relative to where they are.
    shown = display_path(s.path)
    return f"{hit.rank}. ({hit.score:.3f}) {where}\n   {shown}:{s.char_start}-{s.char_end}\n   {text}\n"


def _describe_answer(answer: Answer) -> str:
    if answer.text is None:
        lines = [f"No answer found in the corpus (confidence {answer.confidence:.2f}). Closest passages:", ""]
    else:
        lines = [f"Answer: {answer.text}  (confidence {answer.confidence:.2f})", ""]
    if answer.alternatives:
        others = "; ".join(f"{a.text} ({a.confidence:.2f}, paragraph {a.evidence.source.paragraph})"
                           for a in answer.alternatives)
        label = "Candidates it did not trust" if answer.text is None else "Also possible"
        lines[1:1] = [f"{label}: {others}", ""]
    for i, hit in enumerate(answer.evidence):
        lines.append(_describe(hit, answer.span if i == 0 and answer.text is not None else None))
    return "\n".join(lines).rstrip()


def _cmd_serve(args: argparse.Namespace) -> int:
    from qa.serve import run

    index = _open_index(args)
    run(index, host=args.host, port=args.port, token=args.token, quiet=args.quiet)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from qa.evaluation import run_eval

    return run_eval(args)


COMMANDS = {"index": _cmd_index, "remove": _cmd_remove, "search": _cmd_search, "ask": _cmd_ask, "eval": _cmd_eval,
            "serve": _cmd_serve}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``qa`` command; returns the exit code."""
    from qa import integrity
    from qa.errors import QAError

    args = _parser().parse_args(argv)
    integrity.forget_commits()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show_warning
        try:
            return COMMANDS[args.command](args)
        except QAError as exc:
            print(f"qa: error: {printable(str(exc))}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            done = integrity.commits_done()
            if done:  # past the commit point: the write happened, only what came after it was cut short
                where = ", ".join(str(manifest.parent) for manifest, _ in done)
                print(f"qa: interrupted after the update was committed: {where} holds the new index", file=sys.stderr)
            else:
                print("qa: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # `qa ask ... | head`: the reader left. Python's documented recipe: point stdout at
            # devnull so the flush at exit does not raise again, and exit as a closed pipe would.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141


def _show_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    print(f"qa: warning: {printable(str(message))}", file=sys.stderr)
