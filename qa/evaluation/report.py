"""An `EvalReport` printed for people (tables) or for tools (one JSON object)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

from qa.evaluation.runner import EvalReport


def format_report(report: EvalReport) -> str:
    """The report as tables for people."""
    lines = [
        f"qa {report.qa_version} eval · {report.description} · model {report.model} "
        f"({report.embedding_backend or 'unknown'} backend) · {report.seconds:.0f} s in all",
        f"command: {report.command}",
        f"corpus: {report.documents} documents, {report.units} {report.unit}s, {report.passages} passages "
        f"({report.data_path}, sha256 {report.data_sha256[:12]})",
        f"questions: {report.questions}",
        "",
    ]
    if report.retrieval:
        ks = sorted(report.retrieval[0].recall)
        header = ["mode", *(f"R@{k}" for k in ks), "MRR@10", "nDCG@10", "seconds"]
        rows = [
            [
                r.mode,
                *(f"{r.recall[k]:.4f}" for k in ks),
                f"{r.mrr_at_10:.4f}",
                f"{r.ndcg_at_10:.4f}",
                f"{r.seconds:.1f}",
            ]
            for r in report.retrieval
        ]
        lines += ["Retrieval (open, every question searches the whole corpus)", *_table(header, rows), ""]
    if report.answers:
        header = ["setting", "mode", "questions", "EM", "F1", "no-answer", "acc. answered", "forced EM", "forced F1"]
        header.append("seconds")
        rows = [
            [
                a.setting,
                a.mode,
                str(a.questions),
                f"{a.exact_match:.4f}",
                f"{a.f1:.4f}",
                f"{a.no_answer_rate:.4f}",
                f"{a.accuracy_when_answered:.4f}",
                f"{a.forced_exact_match:.4f}",
                f"{a.forced_f1:.4f}",
                f"{a.seconds:.1f}",
            ]
            for a in report.answers
        ]
        lines += ["Answers", *_table(header, rows), ""]
        for a in report.answers:
            header = ["confidence", "questions", "mean conf.", "accuracy (F1>=0.5)"]
            rows = [
                [
                    f"[{b.low:.1f}, {b.high:.1f}{']' if b.high == 1.0 else ')'}",
                    str(b.answers),
                    f"{b.mean_confidence:.3f}",
                    f"{b.accuracy:.3f}" if b.answers else "-",
                ]
                for b in a.reliability
            ]
            ece = a.expected_calibration_error
            title = f"Reliability ({a.setting}; no-answer rate {a.no_answer_rate:.4f}; ECE {ece:.4f})"
            lines += [title, *_table(header, rows), ""]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines).rstrip()


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rows)]


def report_json(report: EvalReport) -> str:
    """The report as one JSON object (``dataclasses.asdict``)."""
    return json.dumps(asdict(report), ensure_ascii=False, indent=2)
