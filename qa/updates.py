"""Keeping an index equal to its sources: the update plan and the update report, for every store.

An update makes a store hold exactly the passages of a fresh build, embedding only passage
texts the store has never seen (vectors are reused by content). What differs between stores
is how rows are written; what to write, what to drop, what to embed and how to report it is
decided here, once (`plan_update`, `report`). `qa.api.IndexAPI` runs the plan against a store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qa.documents import Passage, Source
from qa.paths import names_path


def passage_key(passage_id: str) -> int:
    """The int64 key of a passage in every store (FAISS ids, Milvus primary keys).

    The passage id's 64 hash bits, less the sign bit.
    """
    return int(passage_id, 16) >> 1


#: The name this key had when only FAISS used it.
faiss_id = passage_key


@dataclass(frozen=True)
class UpdateReport:
    """What an update changed. Document counts, plus how many passage texts were embedded.

    Attributes:
        added: documents new to the index.
        updated: documents whose passages or metadata changed.
        removed: documents no longer in the index.
        unchanged: documents left exactly as they were.
        embedded: passage texts sent to the embedding model (0 when nothing changed).
        passages: passages in the index afterwards.
    """

    added: int
    updated: int
    removed: int
    unchanged: int
    embedded: int
    passages: int

    def __str__(self) -> str:
        return (
            f"{self.added} added, {self.updated} updated, {self.removed} removed, {self.unchanged} unchanged "
            f"documents; {self.embedded} passages embedded; {self.passages} passages in the index"
        )


@dataclass(frozen=True)
class UpdatePlan:
    """The rows to write and drop to turn the rows held into the rows wanted.

    Attributes:
        write: passages to write (new keys, and kept keys whose text or source changed), in wanted order.
        drop: keys held but not wanted.
        fresh: distinct texts no held row has: the only ones to embed.
        reuse: text → key of a held row with that text (its vectors are reused).
    """

    write: tuple[Passage, ...]
    drop: tuple[int, ...]
    fresh: tuple[str, ...]
    reuse: dict[str, int]

    @property
    def empty(self) -> bool:
        """True when the store already holds exactly the wanted rows."""
        return not self.write and not self.drop


def plan_update(held: Sequence[Passage], wanted: Sequence[Passage]) -> UpdatePlan:
    """What to write, drop and embed so that a store holding ``held`` holds ``wanted``.

    Args:
        held: the passages the store holds now (any order).
        wanted: the passages a fresh build would hold.

    Returns:
        The plan.

    Raises:
        ValueError: two wanted passages share an id.
    """
    want = {passage_key(p.passage_id): p for p in wanted}
    if len(want) != len(wanted):
        raise ValueError("duplicate passage ids; every passage needs a distinct id")
    have = {passage_key(p.passage_id): p for p in held}
    write = tuple(p for key, p in want.items() if have.get(key) != p)
    drop = tuple(key for key in have if key not in want)
    text_key: dict[str, int] = {}
    for key, p in have.items():
        text_key.setdefault(p.text, key)
    needed = dict.fromkeys(p.text for p in write)
    fresh = tuple(t for t in needed if t not in text_key)
    reuse = {t: text_key[t] for t in needed if t in text_key}
    return UpdatePlan(write, drop, fresh, reuse)


def names_document(target: str, source: Source) -> bool:
    """Whether ``target`` (a doc id, a file path, or a folder above the file) names this source's document."""
    # Stored paths are absolute (qa.paths), so a relative or absolute target matches from any cwd.
    return target == source.doc_id or names_path(target, source.path)


def report(old: Sequence[Passage], new: Sequence[Passage], embedded: int, total: int | None = None) -> UpdateReport:
    """Compare the passages before and after an update, document by document.

    A document counts as updated when its passages (ids, in order) or their sources changed.

    Args:
        old: passages before.
        new: passages after.
        embedded: texts that were embedded.
        total: passages in the index afterwards (default ``len(new)``).
    """

    def documents(passages: Sequence[Passage]) -> dict[str, list[tuple[str, Source]]]:
        docs: dict[str, list[tuple[str, Source]]] = {}
        for p in passages:
            docs.setdefault(p.source.doc_id, []).append((p.passage_id, p.source))
        # Order within a document by passage position, so stores that list rows by key agree.
        return {d: sorted(rows, key=lambda r: (r[1].paragraph, r[1].char_start, r[0])) for d, rows in docs.items()}

    before, after = documents(old), documents(new)
    common = before.keys() & after.keys()
    changed = sum(1 for d in common if before[d] != after[d])
    return UpdateReport(
        added=len(after.keys() - before.keys()),
        updated=changed,
        removed=len(before.keys() - after.keys()),
        unchanged=len(common) - changed,
        embedded=embedded,
        passages=len(new) if total is None else total,
    )
