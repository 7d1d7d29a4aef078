"""Write (and optionally execute) the example notebooks from the cells below.

The notebooks are generated so that they can be reviewed as code and so that the
committed copies never carry stale outputs:

    python notebooks/build_notebooks.py            # write clean notebooks (no outputs)
    python notebooks/build_notebooks.py --check    # exit 1 if a notebook differs from this file
    python notebooks/build_notebooks.py --execute  # write, then run them in place (what `make notebooks` does)

Edit the cells here, not in Jupyter; then run the first command. Executed copies
(with plots) stay in your working tree; regenerate clean ones before committing.

Environment variables the notebooks read:
    QA_NOTEBOOK_SMALL=1   small data (the test suite sets it): 3 SQuAD articles, 60 questions
    QA_NOTEBOOK_INDEX     the seed index folder (default: indexes/default)
    QA_DATA_DIR           folder holding dev-v1.1.json.zip (default: ../shared/data beside the repo)
    QA_SEED_QUESTIONS     gold questions for the seed article (default: tests/seed_questions.jsonl)
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
NAMES = ("quickstart", "evaluation")
KERNEL = "python3"
CELL_TIMEOUT = 900  # seconds; the full (non-small) evaluation encodes a few hundred paragraphs


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(textwrap.dedent(text).strip())


# ---------------------------------------------------------------------------------------------
# quickstart.ipynb

QUICKSTART = [
    md(
        """
        # `qa` quickstart: search and ask over news articles

        `qa` splits articles into passages, embeds them with a small sentence model
        (all-MiniLM-L6-v2, bundled, fully offline), and answers questions with the passage
        and character offsets the answer came from.

        This notebook:

        1. loads (or builds) the index of the seed article in `seeds/`,
        2. searches it and asks questions, with the answer highlighted in its passage,
        3. shows where an answer came from, down to the characters in the source file,
        4. indexes a second folder of your own articles,
        5. plots how each retrieval mode scores the passages for one question.

        Run it with `make notebooks`, or open it with `jupyter lab notebooks/`
        (after `pip install -e ".[notebooks]"`).
        """
    ),
    code(
        """
        %matplotlib inline
        import json
        import os
        import tempfile
        from dataclasses import asdict
        from pathlib import Path

        import matplotlib.pyplot as plt
        import numpy as np
        from IPython.display import display

        import qa
        from qa.retrieval import MODES

        # Jupyter starts the kernel in notebooks/; the repository is one level up.
        ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
        SEEDS = ROOT / "seeds"
        INDEX_DIR = Path(os.environ.get("QA_NOTEBOOK_INDEX", ROOT / "indexes" / "default"))
        QUESTION = "who mediated Turkey-Israel?"

        print(f"qa {qa.__version__}; retrieval modes: {', '.join(MODES)}")
        """
    ),
    md(
        """
        ## 1. Load or build the seed index

        An index is a folder: the passage vectors (FAISS), the passages with their sources
        (JSON lines) and a `manifest.json` recording how it was built. `qa ask` on the command
        line builds `indexes/default` from `seeds/` on first use; here we do the same. The first
        build takes a few seconds, most of it loading the model; afterwards it just loads.
        """
    ),
    code(
        """
        def open_seed_index(folder: Path) -> qa.Index:
            \"\"\"Load the seed index from `folder`, or build it there if the folder does not exist yet.\"\"\"
            if not folder.exists():
                print(f"building {folder} from {SEEDS} ...")
                return qa.build_index([SEEDS], folder, progress=False)
            try:
                return qa.load_index(folder)
            except qa.QAError as exc:
                # e.g. written by another qa version: leave the folder alone and work in memory.
                print(f"cannot load {folder}: {exc}\\nbuilding the seed index in memory instead")
                return qa.build_index([SEEDS], None, progress=False)


        index = open_seed_index(INDEX_DIR)
        articles = {p.source.doc_id for p in index.passages}
        print(f"{index!r}: {len(index)} passages from {len(articles)} article(s)")
        """
    ),
    md(
        """
        ## 2. Search

        `index.search(query, k)` returns the `k` best passages as `Hit`s: `rank`, `score`
        (for the dense mode, the cosine similarity of question and passage), `text`,
        `passage_id` and `source`. The list it returns shows itself as a table in Jupyter,
        the query's words marked in each passage (its plain `repr` stays one short line per hit).
        """
    ),
    code(
        """
        hits = index.search(QUESTION, k=5)
        hits
        """
    ),
    md(
        """
        It is still a plain list of `Hit`s; with pandas installed, `hits.to_dataframe()` gives
        one row per hit with the source's fields as columns.
        """
    ),
    code(
        """
        print(repr(hits[0]))
        hits.to_dataframe()[["rank", "score", "paragraph", "char_start", "char_end", "text"]]
        """
    ),
    md(
        """
        ## 3. Ask

        `index.ask(question)` retrieves passages, then picks the answer inside them. The
        `Answer` holds the answer `text` (or `None` when the corpus holds no good enough
        answer), a `confidence` in [0, 1], the `evidence` hits (the one holding the answer
        first) and the `span`: where the answer sits in `evidence[0].text`. In Jupyter it shows
        the answer marked in its passage with the source, the other candidates, and every
        passage it read (the answer and the other candidates marked where they were found).
        """
    ),
    code(
        """
        answer = index.ask(QUESTION)
        answer
        """
    ),
    md(
        """
        A few more questions. The last one is not about this article at all: look at how
        low its confidence is (or that there is no answer).
        """
    ),
    code(
        """
        for question in [
            "Where did the presidents of Israel and Azerbaijan meet?",
            "Who visited Baku on December 11?",
            "Who did Hikmet Hajiyev meet in Jerusalem?",
            "What is the boiling point of water on Mars?",
        ]:
            display(index.ask(question))
        """
    ),
    md(
        """
        ## 4. Where did the answer come from?

        Every hit carries a `Source`: the article (`doc_id`, `title`, `publisher`, `section`,
        `url`, `date`), the file (`path`), the 1-based `paragraph`, and `char_start:char_end`,
        the passage's character offsets in the file's text. So the passage, and the answer
        inside it, can always be cut back out of the original file.
        """
    ),
    code(
        """
        evidence = answer.evidence[0]
        source = evidence.source
        print(json.dumps(asdict(source), indent=2, ensure_ascii=False))
        """
    ),
    code(
        """
        def source_file(source: qa.Source) -> Path:
            \"\"\"`Source.path` is as given when the index was built: absolute, or relative to where it was built.\"\"\"
            for candidate in (Path(source.path), ROOT / source.path):
                if candidate.exists():
                    return candidate
            raise FileNotFoundError(f"{source.path} (moved since the index was built?)")


        file_text = source_file(source).read_text(encoding="utf-8")
        passage = file_text[source.char_start : source.char_end]
        assert passage == evidence.text, "the offsets should cut out exactly the passage"

        start, end = (source.char_start + answer.span[0], source.char_start + answer.span[1])
        print(f"open({source.path!r}).read()[{source.char_start}:{source.char_end}] is the passage;")
        print(f"the answer is characters {start}:{end} of the file:\\n")
        print(file_text[start:end])
        """
    ),
    md(
        """
        ## 5. Index your own folder

        `qa.build_index` takes files and folders of `.txt`, `.md`, `.html` and `.jsonl`
        articles. Here we write two small made-up articles into a temporary folder (one
        Markdown file with front matter, one plain text file) and index them; the same from
        the shell is `qa index my-articles --index indexes/mine`.
        """
    ),
    code(
        '''
        work = tempfile.TemporaryDirectory(prefix="qa-quickstart-")
        my_articles = Path(work.name) / "my-articles"
        my_articles.mkdir()

        (my_articles / "harbour-wind-farm.md").write_text(
            """---
        title: Harbour wind farm gets the go-ahead
        publisher: The Harbour Gazette
        section: Business
        date: 2025-03-14
        url: https://example.com/harbour-wind-farm
        ---
        # Harbour wind farm gets the go-ahead

        The regional council approved a 40-turbine wind farm off the northern harbour on Tuesday,
        ending a three-year planning dispute with local fishing cooperatives.

        The project will be paid for by Nordvind Energy and a pension fund consortium, and is
        expected to deliver its first power to the grid in the winter of 2027.

        ## Fishing compensation

        Under the agreement, fishing cooperatives will receive compensation for the loss of
        trawling grounds and priority access to maintenance contracts.
        """,
            encoding="utf-8",
        )
        (my_articles / "library-reopens.txt").write_text(
            """City library reopens after flood repairs

        The central library reopened on Monday after eight months of repairs to flood damage
        in its basement archive.

        Librarian Marta Okafor said volunteers had dried and catalogued more than 12,000 rescued
        books, and that the rare maps collection will return to display in the autumn.
        """,
            encoding="utf-8",
        )

        mine = qa.build_index([my_articles], Path(work.name) / "my-index", progress=False)
        print(f"{mine!r}")
        mine.search("When will the wind farm produce electricity?", k=3)
        '''
    ),
    md(
        """
        Several folders can go into one index; every hit still says which article and
        publisher it came from. This one stays in memory (`index_dir=None`), and the
        Markdown front matter shows up in the source (`url`, `date`, `section`).
        """
    ),
    code(
        """
        both = qa.build_index([SEEDS, my_articles], None, progress=False)
        funding = both.ask("When will the wind farm deliver its first power to the grid?")
        display(funding)  # the source has a url, so the source line is a link
        print(json.dumps(asdict(funding.evidence[0].source), indent=2, ensure_ascii=False))
        """
    ),
    md(
        """
        ## 6. How each retrieval mode scores the passages

        Every passage of the seed article scored for one question, in each retrieval mode
        this version of `qa` has (`qa.retrieval.MODES`). Dense scores are cosine
        similarities; lexical (BM25) and fused scores have their own scales, so each mode
        gets its own axis. The best passage in each mode is drawn darker; ★ marks the passage
        `ask` took its answer from, which need not be the best-scoring one.
        """
    ),
    code(
        """
        def passage_labels(passages: list[qa.Passage]) -> list[str]:
            \"\"\"'¶3', or '¶3a', '¶3b' when a long paragraph was split into windows.\"\"\"
            counts: dict[int, int] = {}
            for p in passages:
                counts[p.source.paragraph] = counts.get(p.source.paragraph, 0) + 1
            seen: dict[int, int] = {}
            labels = []
            for p in passages:
                n = p.source.paragraph
                suffix = "abcdefghijklmnopqrstuvwxyz"[seen.get(n, 0)] if counts[n] > 1 else ""
                seen[n] = seen.get(n, 0) + 1
                labels.append(f"¶{n}{suffix}")
            return labels


        labels = passage_labels(index.passages)
        x = np.arange(len(index))
        fig, axes = plt.subplots(len(MODES), 1, figsize=(9, 1.2 + 2.2 * len(MODES)), sharex=True, squeeze=False)
        for ax, mode in zip(axes[:, 0], MODES, strict=True):
            by_id = {hit.passage_id: hit.score for hit in index.search(QUESTION, k=len(index), mode=mode)}
            scores = np.array([by_id.get(p.passage_id, np.nan) for p in index.passages])
            colors = ["tab:blue"] * len(x)
            if np.isfinite(scores).any():
                colors[int(np.nanargmax(scores))] = "navy"
            ax.bar(x, np.nan_to_num(scores), color=colors)
            answer_row = next(i for i, p in enumerate(index.passages) if p.passage_id == answer.evidence[0].passage_id)
            ax.annotate("★", (answer_row, np.nan_to_num(scores)[answer_row]), ha="center", va="bottom", fontsize=14)
            ax.margins(y=0.15)
            ax.set_ylabel(f"{mode}\\nscore")
            ax.axhline(0, color="grey", linewidth=0.5)
        axes[-1, 0].set_xticks(x, labels)
        axes[-1, 0].set_xlabel("passage (paragraph of the seed article)")
        axes[0, 0].set_title(f"Passage scores for {QUESTION!r}")
        fig.tight_layout()
        plt.show()
        """
    ),
    md(
        """
        ## Next

        * `notebooks/evaluation.ipynb` measures retrieval and answers on SQuAD and on gold
          questions about the seed article.
        * The same operations from the shell: `qa search "..."`, `qa ask "..." --json`,
          `qa index PATH... --index DIR`.
        """
    ),
    code(
        """
        work.cleanup()  # the temporary folder with your articles and their index
        """
    ),
]


# ---------------------------------------------------------------------------------------------
# evaluation.ipynb

EVALUATION = [
    md(
        """
        # Evaluating `qa`: retrieval recall, the embedding space, answer confidence

        This notebook runs `qa.evaluation` (the code behind `qa eval`) on two test beds and
        draws what the tables only summarise:

        * **SQuAD v1.1 dev** (Wikipedia): a slice of articles is the corpus; a question is
          retrieved correctly when its own paragraph is among the hits.
        * **The seed article** with hand-written gold questions (`tests/seed_questions.jsonl`):
          the right passage is one containing a gold snippet.

        Plots: recall@k for every retrieval mode `qa` has, a 2-D map of the passage
        embeddings with questions placed among them, and a reliability diagram — does
        `ask`'s confidence match how often it is right?

        SQuAD is read in place from `../shared/data/dev-v1.1.json.zip` beside the repository
        (or from `$QA_DATA_DIR`); without it the SQuAD parts are skipped. Open with
        `jupyter lab notebooks/` or run everything with `make notebooks`.
        """
    ),
    md(
        """
        ## Parameters

        The test suite sets `QA_NOTEBOOK_SMALL=1`: three held-out SQuAD articles cut to their
        first 10 paragraphs, 60 questions. `make notebooks` uses the ten held-out articles
        in full, and keeps that index in `indexes/notebook-squad-heldout` so the next run
        starts fast.
        """
    ),
    code(
        """
        import os

        SMALL = os.environ.get("QA_NOTEBOOK_SMALL", "") == "1"
        SQUAD_ARTICLES = 3 if SMALL else 10  # held-out articles that make the corpus
        PARAGRAPHS_PER_ARTICLE = 10 if SMALL else None  # None: every paragraph
        SQUAD_QUESTIONS = 60 if SMALL else 500  # questions searched
        QUESTIONS_TO_ASK = 30 if SMALL else 100  # `ask` is slower than `search`: answer a sample
        K_MAX = 10
        """
    ),
    code(
        """
        %matplotlib inline
        import time
        from dataclasses import replace
        from pathlib import Path

        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd
        from IPython.display import display

        import qa
        from qa import evaluation as ev
        from qa.retrieval import MODES

        ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
        DATA_DIR = Path(os.environ.get("QA_DATA_DIR", ROOT.parent / "shared" / "data"))
        SQUAD_ZIP = DATA_DIR / ev.SQUAD_FILE
        SEED_QUESTIONS = Path(os.environ.get("QA_SEED_QUESTIONS", ROOT / "tests" / "seed_questions.jsonl"))
        SQUAD_INDEX = None if SMALL else ROOT / "indexes" / "notebook-squad-heldout"  # None: in memory

        print(f"qa {qa.__version__}; retrieval modes: {', '.join(MODES)}; small data: {SMALL}")
        """
    ),
    md(
        """
        ## Data

        ### A SQuAD slice

        `ev.load_squad` reads the questions and paragraphs; `ev.eval_index` writes the
        paragraphs as a `.jsonl` corpus and indexes it with `qa.build_index`, exactly as a
        user's files would be. Each question's gold is the paragraph it was asked on
        (`"<article>#<paragraph>"`).
        """
    ),
    code(
        """
        squad = squad_index = None
        if not SQUAD_ZIP.exists():
            print(f"SQuAD not found at {SQUAD_ZIP}: skipping the SQuAD parts (set QA_DATA_DIR to its folder).")
        else:
            squad = ev.load_squad(SQUAD_ZIP, split="heldout", limit_docs=SQUAD_ARTICLES)
            if PARAGRAPHS_PER_ARTICLE is not None:  # cut every article short, and keep the questions on what is left
                kept = {ev.unit_key(a.doc_id, n) for a in squad.articles for n in range(1, PARAGRAPHS_PER_ARTICLE + 1)}
                squad = replace(
                    squad,
                    articles=tuple(replace(a, paragraphs=a.paragraphs[:PARAGRAPHS_PER_ARTICLE])
                                   for a in squad.articles),
                    questions=tuple(q for q in squad.questions if set(q.gold) <= kept),
                )
            # Spread the questions over all articles rather than taking the first article's.
            step = max(1, len(squad.questions) // SQUAD_QUESTIONS)
            squad = replace(squad, questions=squad.questions[::step][:SQUAD_QUESTIONS])
            started = time.perf_counter()
            squad_index = ev.eval_index(squad, index_dir=SQUAD_INDEX)
            paragraphs = sum(len(a.paragraphs) for a in squad.articles)
            print(
                f"SQuAD: {len(squad.articles)} articles ({', '.join(a.title for a in squad.articles)}), "
                f"{paragraphs} paragraphs -> {len(squad_index)} passages; {len(squad.questions)} questions; "
                f"index ready in {time.perf_counter() - started:.1f}s"
            )
        """
    ),
    md(
        """
        ### The seed article and its gold questions

        Each line of `tests/seed_questions.jsonl` is `{"question", "answers", "gold_passages"}`;
        `ev.load_questions` reads it, and a hit is relevant when its text contains one of the
        `gold_passages` snippets.
        """
    ),
    code(
        """
        seed_index = qa.build_index([ROOT / "seeds"], None, progress=False)  # in memory
        seed = None
        if not SEED_QUESTIONS.exists():
            print(f"no gold questions at {SEED_QUESTIONS}: skipping the seed-article evaluation.")
        else:
            seed = ev.load_questions(SEED_QUESTIONS)
            print(f"seed article: {len(seed_index)} passages, {len(seed.questions)} gold questions")

        beds = [(name, data, index) for name, data, index in
                (("SQuAD slice", squad, squad_index), ("seed article", seed, seed_index)) if data is not None]
        """
    ),
    md(
        """
        ## Retrieval: recall@k for each mode

        `ev.evaluate` searches every question once per retrieval mode and scores the
        rankings: recall@k (the share of questions whose gold passage is in the top *k*),
        MRR@10 and nDCG@10. Asking it for every k from 1 to 10 gives whole curves. Long
        paragraphs are split into windows; a ranking counts each paragraph once, at its best
        window. (The seed article has only a handful of passages, so its curves reach 1 quickly.)
        """
    ),
    code(
        """
        ks = tuple(range(1, K_MAX + 1))
        reports = {}
        for name, data, index in beds:
            reports[name] = ev.evaluate(replace(data, recall_ks=ks), index, answers=False)

        pd.DataFrame(
            [
                {"test bed": name, "mode": r.mode, "questions": r.questions, "R@1": r.recall[1], "R@5": r.recall[5],
                 "R@10": r.recall[10], "MRR@10": r.mrr_at_10, "nDCG@10": r.ndcg_at_10, "seconds": r.seconds}
                for name, report in reports.items()
                for r in report.retrieval
            ]
        ).round(3)
        """
    ),
    code(
        """
        fig, axes = plt.subplots(1, max(1, len(reports)), figsize=(5.5 * max(1, len(reports)), 4), squeeze=False)
        for ax, (name, report) in zip(axes[0], reports.items(), strict=False):  # one empty axis without data
            for r in report.retrieval:
                ax.plot(ks, [r.recall[k] for k in ks], marker="o", label=r.mode)
            ax.set_title(f"{name} ({report.questions} questions, {report.passages} passages)")
            ax.set_xlabel("k (passages retrieved)")
            ax.set_ylabel("recall@k")
            ax.set_xticks(ks)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(title="mode", loc="lower right")
        fig.tight_layout()
        plt.show()
        """
    ),
    md(
        """
        ## The embedding space

        Passage vectors are 384-dimensional; a PCA (an SVD of the centred vectors, plain numpy)
        projects them onto the two directions of largest variance. Passages are coloured by
        article. A few questions are projected with the same transform (stars), with a line
        to their gold passage: questions land near the passages that answer them, though two
        dimensions keep only part of the picture.
        """
    ),
    code(
        """
        def pca_2d(vectors: np.ndarray):
            \"\"\"Fit a 2-D PCA; returns the projection and the share of variance each axis keeps.\"\"\"
            mean = vectors.mean(axis=0)
            _, singular, vt = np.linalg.svd(vectors - mean, full_matrices=False)
            explained = singular**2 / np.sum(singular**2)
            return (lambda x: (x - mean) @ vt[:2].T), explained[:2]


        def is_gold(question: ev.Question, passage: qa.Passage) -> bool:
            \"\"\"Gold entries name a paragraph ("doc#3"), a passage id, or a snippet of the passage's text.\"\"\"
            unit = ev.unit_key(passage.source.doc_id, passage.source.paragraph)
            return any(g in (unit, passage.passage_id) or g in passage.text for g in question.gold)


        name, data, map_index = beds[0] if beds else ("seed article", None, seed_index)
        vectors = map_index.vectors
        project, explained = pca_2d(vectors)
        points = project(vectors)

        # Colour by article; the seed index has one article, so colour its paragraphs instead.
        groups = [p.source.title for p in map_index.passages]
        if len(set(groups)) == 1:
            groups = [f"paragraph {p.source.paragraph}" for p in map_index.passages]
        names = list(dict.fromkeys(groups))
        palette = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
        color_of = {group: palette(i % palette.N) for i, group in enumerate(names)}

        # Up to four questions, from different articles where there are several.
        shown, seen_docs = [], set()
        for question in (data.questions if data is not None else ()):
            golds = [row for row, p in enumerate(map_index.passages) if is_gold(question, p)]
            if golds and map_index.passages[golds[0]].source.doc_id not in seen_docs:
                shown.append((question.text, golds))
                seen_docs.add(map_index.passages[golds[0]].source.doc_id)
            if len(shown) == 4:
                break
        if not shown:  # no gold questions: the quickstart's question and its best passage
            question = "who mediated Turkey-Israel?"
            best = map_index.search(question, k=1)[0]
            shown = [(question, [row for row, p in enumerate(map_index.passages) if p.passage_id == best.passage_id])]

        fig, ax = plt.subplots(figsize=(9.5, 6.5))
        size = 28 if len(map_index) < 200 else 12
        for group in names:
            rows = [i for i, g in enumerate(groups) if g == group]
            ax.scatter(points[rows, 0], points[rows, 1], s=size, alpha=0.75, color=color_of[group], label=group)
        question_points = project(map_index.embedder.encode([q for q, _ in shown]))
        for (question, golds), (qx, qy) in zip(shown, question_points, strict=True):
            color = color_of[groups[golds[0]]]
            for g in golds:
                ax.plot([qx, points[g, 0]], [qy, points[g, 1]], color=color, linewidth=1, alpha=0.8)
            ax.scatter([qx], [qy], marker="*", s=320, color=color, edgecolor="black", zorder=5)
            ax.annotate(question if len(question) < 48 else question[:45] + "...", (qx, qy),
                        textcoords="offset points", xytext=(8, 6), fontsize=8)
        ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance)")
        ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of variance)")
        ax.set_title(f"{name}: {len(map_index)} passage embeddings; ★ = a question, line = its gold passage")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), title="article")
        fig.tight_layout()
        plt.show()
        """
    ),
    md(
        """
        ## Answers: accuracy and confidence

        `ev.evaluate_answers` puts a sample of questions through `index.ask` and scores the
        answers with SQuAD's exact match and F1 (a missing answer counts as wrong). A
        confidence is useful when it can be trusted: of the answers given with confidence
        around 0.7, about 70% should be right. `qa` counts an answer as right when its F1 is
        at least 0.5, bins the answers by confidence, and reports how often each bin was
        right: the reliability diagram below. Points on the diagonal are well calibrated; the
        bars show how many answers fall in each bin.
        """
    ),
    code(
        """
        answer_results = {}
        for name, data, index in beds:
            sample = tuple(q for q in data.questions if q.answers)[:QUESTIONS_TO_ASK]
            if sample:
                answer_results[name] = ev.evaluate_answers(index, replace(data, questions=sample))

        pd.DataFrame(
            [
                {"test bed": name, "asked": a.questions, "EM": a.exact_match, "F1": a.f1,
                 "no answer": a.no_answer_rate, "right when answered (F1 ≥ 0.5)": a.accuracy_when_answered,
                 "seconds": a.seconds}
                for name, a in answer_results.items()
            ]
        ).round(3)
        """
    ),
    md(
        """
        What those numbers are made of: one question from each test bed with its gold
        answers, the passages `search` finds for it, and what `ask` answers from them (the
        library's own display: the answer marked in its passage, with the source).
        """
    ),
    code(
        """
        for name, data, index in beds:
            question = next(q for q in data.questions if q.answers)
            print(f"{name}: {question.text!r}; gold answers: {', '.join(dict.fromkeys(question.answers))}")
            display(index.search(question.text, k=3))
            display(index.ask(question.text))
        """
    ),
    code(
        """
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        width = 0.2 / (len(answer_results) + 1)
        for i, (name, result) in enumerate(answer_results.items()):
            filled = [b for b in result.reliability if b.answers]
            answered = sum(b.answers for b in filled)
            # Expected calibration error: the answer-weighted gap between confidence and accuracy.
            gaps = sum(b.answers * abs(b.mean_confidence - b.accuracy) for b in filled)
            ece = gaps / answered if answered else float("nan")
            top.plot([b.mean_confidence for b in filled], [b.accuracy for b in filled], marker="o",
                     label=f"{name} ({answered} answered, ECE {ece:.2f})")
            bottom.bar([b.low + width * (i + 1) for b in result.reliability], [b.answers for b in result.reliability],
                       width=width, align="edge", label=name)
        top.set_ylabel("accuracy (share with F1 ≥ 0.5)")
        top.set_ylim(-0.02, 1.02)
        top.set_title("Reliability of ask() confidence")
        top.grid(alpha=0.3)
        top.legend(fontsize=8)
        bottom.set_xlabel("confidence")
        bottom.set_ylabel("answers")
        bottom.set_xlim(0, 1)
        bottom.set_xticks(ev.CONFIDENCE_BINS)
        fig.tight_layout()
        plt.show()
        """
    ),
    md(
        """
        ## Notes

        * A small slice makes retrieval easier than the full SQuAD dev set: `qa eval squad`
          searches all 2,067 paragraphs (MiniLM: about 0.63 top-1, 0.92 top-10).
        * `qa eval squad`, `qa eval scifact` and `qa eval tests/seed_questions.jsonl` print the
          same numbers as tables (or `--json`), with the command that reproduces them.
        """
    ),
]


# ---------------------------------------------------------------------------------------------


def build(name: str) -> nbformat.NotebookNode:
    """The clean notebook `name` (no outputs; stable cell ids so regenerating changes nothing)."""
    cells = {"quickstart": QUICKSTART, "evaluation": EVALUATION}[name]
    nb = new_notebook(
        cells=[nbformat.from_dict(dict(cell)) for cell in cells],
        metadata={
            "kernelspec": {"name": KERNEL, "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    for number, cell in enumerate(nb.cells):
        cell["id"] = f"{name}-{number:02d}"
    nbformat.validate(nb)
    return nb


def path_of(name: str) -> Path:
    return HERE / f"{name}.ipynb"


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def execute(nb: nbformat.NotebookNode, *, timeout: int = CELL_TIMEOUT) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel of this interpreter, in notebooks/; raises on the first failing cell."""
    from nbclient import NotebookClient

    # The venv's own kernelspec, not a "python3" the user registered elsewhere.
    os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": str(HERE)}})
    client.execute()
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="exit 1 unless the notebooks on disk are the clean ones")
    group.add_argument("--execute", action="store_true", help="write the notebooks, then execute them in place")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"notebooks to handle (default: {' '.join(NAMES)})")
    args = parser.parse_args(argv)
    args.names = args.names or list(NAMES)
    for name in args.names:
        if name not in NAMES:
            parser.error(f"unknown notebook {name!r}; choose from {', '.join(NAMES)}")
    status = 0
    for name in args.names:
        path, nb = path_of(name), build(name)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != render(nb):
                print(f"{path} is stale or has outputs; run: python notebooks/build_notebooks.py", file=sys.stderr)
                status = 1
            continue
        if args.execute:
            started = time.perf_counter()
            print(f"executing {path.name} ...", flush=True)
            execute(nb)
            print(f"  done in {time.perf_counter() - started:.0f}s", flush=True)
        path.write_text(render(nb), encoding="utf-8")
        print(f"wrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
