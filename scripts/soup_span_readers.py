"""Average span readers trained by ``train_span_reader.py`` into one (a "model soup").

Readers fine-tuned from the same base model on the same split, with different recipes, sit
in one basin of the loss: the average of their weights reads better than either and costs
nothing at run time (same size, same speed). The shipped reader is the soup of two runs:

    python scripts/train_span_reader.py --out /tmp/span-a --epochs 2 --distractors 0.5
    python scripts/train_span_reader.py --out /tmp/span-b --epochs 2 --distractors 0.5 --all-answers
    python scripts/soup_span_readers.py /tmp/span-a /tmp/span-b --out qa/data/span-reader

Validation F1 of each ingredient and of the soup, on their shared validation articles (the
same scoring as training's): 74.7, 74.3 and the soup's in ``training.validation`` of its
config.json. The ingredients' configs are kept under ``soup`` in that file.

A third ingredient, the first recipe reading the data in another order (``--order-seed 14``;
ingredients share ``--seed``, so they start from one initial head), scored 74.3 alone and lifted
the soup to 77.1 on these validation articles, but lowered it on both fold splits (67.6 against
68.5, 59.9 against 60.1, ``--fold K/2 --val-questions 500``): over the three, F1 68.2 either way
and EM 0.7 lower, so the shipped soup keeps two.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train_span_reader as trainer

from qa.evaluation import SQUAD_FILE, find_data
from qa.integrity import sha256_file
from qa.span_reader import read_config, verify_artefact

# What the ingredients must share for their average to mean anything.
SHARED = ("format_version", "base_model_sha256", "architecture", "max_length", "stride", "max_answer_tokens")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="artefact folders written by train_span_reader.py")
    parser.add_argument("--out", required=True, help="folder for the averaged artefact")
    parser.add_argument("--data", help="dev-v1.1.json.zip (default: found like qa eval finds it)")
    parser.add_argument("--val-questions", type=int, help="validate on only the first N validation questions")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    started = time.time()
    if len(args.folders) < 2:
        raise SystemExit("a soup needs at least two readers")
    configs = [read_config(f) for f in args.folders]
    for name in SHARED:
        if len({json.dumps(c[name]) for c in configs}) > 1:
            raise SystemExit(f"the readers differ in {name}; only readers of one base model and window size average")
    splits = {json.dumps(c["training"]["validation_articles"]) for c in configs}
    if len(splits) > 1:
        raise SystemExit("the readers were validated on different articles; train them on the same split")
    states = [load_file(str(verify_artefact(f))) for f in args.folders]
    if len({tuple(sorted(s)) for s in states}) > 1:
        raise SystemExit("the readers trained different layers (--freeze-layers); they do not average")
    soup = {k: (sum(s[k].float() for s in states) / len(states)).half().contiguous() for k in states[0]}

    data = find_data(SQUAD_FILE, args.data)
    tune, _, titles = trainer.load_examples(data)
    wanted = set(configs[0]["training"]["validation_articles"])
    val = [e for e in tune if titles[e.article] in wanted][: args.val_questions]
    base = trainer.base_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    val_f = trainer.featurize(tokenizer, val, int(configs[0]["max_length"]), int(configs[0]["stride"]))
    model = AutoModelForQuestionAnswering.from_pretrained(str(base))
    scores = []
    for state in (*states, soup):
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        scores.append(trainer.score(model, val, val_f))
    for folder, (em, f1) in zip([*args.folders, "soup"], scores, strict=True):
        print(f"{folder}: validation EM {em:.1f} F1 {f1:.1f} ({len(val)} questions)", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / "weights.safetensors"
    tmp = out / "weights.safetensors.tmp"
    save_file(soup, str(tmp), metadata={"format": "qa-span-reader", "version": str(trainer.FORMAT_VERSION)})
    tmp.replace(weights)
    em, f1 = scores[-1]
    training: dict[str, Any] = {
        **configs[0]["training"],
        "chosen": f"uniform average of {len(states)} readers",
        "validation": [{"at": "soup", "val_em": round(em, 2), "val_f1": round(f1, 2)}],
        "validation_questions": len(val),
        "minutes": round((time.time() - started) / 60, 1),
        "command": "python scripts/soup_span_readers.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    for dropped in ("loss_log", "all_answers", "steps", "planned_steps"):
        training.pop(dropped, None)
    report = {
        **{name: configs[0][name] for name in ("format_version", "base_model", "base_model_sha256", "architecture")},
        "weights": weights.name,
        "weights_sha256": sha256_file(weights),
        **{name: configs[0][name] for name in ("max_length", "stride", "max_answer_tokens")},
        "training": training,
        "soup": [
            {
                "weights_sha256": c["weights_sha256"],
                "val_f1": round(s[1], 2),
                "command": c["training"].get("command"),
                "training": {k: v for k, v in c["training"].items() if k != "loss_log"},
            }
            for c, s in zip(configs, scores, strict=False)
        ],
    }
    (out / "config.json.tmp").write_text(json.dumps(report, indent=2) + "\n")
    (out / "config.json.tmp").replace(out / "config.json")
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB); soup validation F1 {f1:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
