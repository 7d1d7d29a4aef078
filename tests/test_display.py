"""How results show themselves: short reprs, escaped HTML for Jupyter, a DataFrame of hits."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

import qa
from qa.answering import Alternative, Answer
from qa.display import hits_html, mark, query_terms, safe_url, source_html
from qa.retrieval import Hit, Hits

HOSTILE = (
    "Kitchen <i>notes</i>\n\n"
    'The secret ingredient <script>alert("x")</script> is smoked paprika, says chef Odile Marchetti.\n\n'
    "Chef Marchetti bakes bread <img src=x onerror=alert(1)> every morning at five.\n"
)


@pytest.fixture
def hostile_index(tmp_path: Path, fake_embedder: object) -> qa.Index:
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "kitchen.txt").write_text(HOSTILE, encoding="utf-8")
    return qa.build_index([folder], None, model=fake_embedder, progress=False)


def _answer(hit: Hit, text: str) -> Answer:
    start = hit.text.index(text)
    return Answer("what is the secret ingredient?", text, 0.7, (start, start + len(text)), (hit,))


def test_search_returns_a_plain_list_that_serialises_as_before(seed_dir: Path, fake_embedder: object) -> None:
    index = qa.build_index([seed_dir], None, model=fake_embedder, progress=False)
    hits = index.search("who mediated Turkey-Israel?", k=3)
    assert isinstance(hits, list) and isinstance(hits, Hits) and len(hits) == 3
    assert hits.query == "who mediated Turkey-Israel?"
    assert hits == list(hits) and hits[:2] == [hits[0], hits[1]]
    assert json.loads(json.dumps([asdict(h) for h in hits]))[0]["source"]["publisher"] == "i24NEWS"
    assert all(isinstance(batch, Hits) for batch in index.search_batch(["Baku", "Davos"], k=2))


def test_plain_reprs_stay_short(seed_dir: Path, fake_embedder: object) -> None:
    index = qa.build_index([seed_dir], None, model=fake_embedder, progress=False)
    hit = index.search("who mediated Turkey-Israel?", k=1)[0]
    assert len(repr(hit)) < 200 < len(hit.text) + len(str(asdict(hit.source)))
    assert repr(hit).startswith("Hit(rank=1, score=")
    answer = _answer(hit, "Azerbaijan")
    answer = replace(answer, alternatives=(Alternative("Turkey", 0.2, (0, 1), hit),))
    assert len(repr(answer)) < 200
    assert "'Azerbaijan'" in repr(answer) and "confidence=0.70" in repr(answer)


def test_html_escapes_every_piece_of_article_text(hostile_index: qa.Index) -> None:
    hits = hostile_index.search("secret ingredient bread", k=2)
    answer = _answer(next(h for h in hits if "paprika" in h.text), "smoked paprika")
    for html in (hits._repr_html_(), hits[0]._repr_html_(), hits[1]._repr_html_(), answer._repr_html_()):
        assert "<script>alert" not in html and "<img" not in html and "<i>notes" not in html
        assert "Kitchen &lt;i&gt;notes&lt;/i&gt;" in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in answer._repr_html_()
    assert "&lt;img src=x onerror=alert(1)&gt;" in hits._repr_html_()


def test_answer_html_marks_the_span_and_gives_the_source(seed_dir: Path, fake_embedder: object) -> None:
    index = qa.build_index([seed_dir], None, model=fake_embedder, progress=False)
    hit = next(h for h in index.search("who mediated Turkey-Israel?", k=5) if "mediated" in h.text)
    html = _answer(hit, "Azerbaijan")._repr_html_()
    assert re.findall(r"<mark>(.*?)</mark>", html) == ["Azerbaijan", "Azerbaijan"]  # quoted passage + table row
    s = hit.source
    assert f"<code>{s.path}:{s.char_start}-{s.char_end}</code>" in html
    assert "i24NEWS · Allied support: Jerusalem &amp; Baku" in html and f"paragraph {s.paragraph}" in html
    none = Answer("what is the boiling point of water on Mars?", None, 0.05, None, (hit,))
    assert "no answer found" in none._repr_html_() and "<mark>" not in none._repr_html_()


def test_search_html_marks_the_query_words() -> None:
    assert query_terms("Who mediated the Turkey-Israel talks?") == ["mediated", "turkey", "israel", "talks"]
    hits = Hits([], query="x")
    assert "no passages" in hits._repr_html_()
    source = qa.Source("d", "T", "P", "", "a.txt", 1, 0, 10)
    hit = Hit(1, 0.5, "Azerbaijan mediates between Turkey and Israel.", "p1", source)
    html = hits_html([hit], "who mediated Turkey-Israel?")
    marked = re.findall(r'<mark class="qa-term">(.*?)</mark>', html)
    assert marked == ["mediates", "Turkey", "Israel"]


def test_urls_become_links_only_when_http() -> None:
    web = qa.Source("d", "T", "P", "", "a.md", 2, 5, 9, url="https://example.com/a?x=1&y=<2>")
    html = source_html(web)
    assert 'href="https://example.com/a?x=1&amp;y=&lt;2&gt;"' in html and "a.md:5-9" not in html
    hostile = replace(web, url="javascript:alert(1)")
    assert safe_url(hostile.url) is None
    assert "href" not in source_html(hostile) and "<code>a.md:5-9</code>" in source_html(hostile)


def test_mark_handles_overlaps_and_out_of_range_spans() -> None:
    assert mark("a<b>c", [(1, 4, "")]) == "a<mark>&lt;b&gt;</mark>c"
    assert mark("abcdef", [(0, 3, ""), (2, 5, "qa-alt"), (10, 12, "")]) == (
        '<mark>abc</mark><mark class="qa-alt">de</mark>f'
    )


def test_to_dataframe_with_and_without_pandas(seed_dir: Path, fake_embedder: object,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    index = qa.build_index([seed_dir], None, model=fake_embedder, progress=False)
    hits = index.search("Baku", k=3)
    pytest.importorskip("pandas", reason="pandas is an extra (notebooks)")
    frame = hits.to_dataframe()
    assert list(frame["rank"]) == [1, 2, 3] and list(frame["passage_id"]) == [h.passage_id for h in hits]
    assert {"publisher", "title", "paragraph", "path", "char_start", "char_end", "url"} <= set(frame.columns)
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with pytest.raises(qa.MissingDependencyError, match="pip install pandas"):
        hits.to_dataframe()


def test_display_and_serve_import_nothing_heavy() -> None:
    import subprocess

    code = (
        "import sys; import qa, qa.cli, qa.display, qa.serve; qa.Hits; qa.Answer; "
        "print([m for m in ('fastapi', 'uvicorn', 'starlette', 'pandas', 'torch', 'faiss') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
