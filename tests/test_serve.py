"""`qa serve` against a real uvicorn process on 127.0.0.1, and its page in headless Chromium.

One server (started with ``python -m qa serve``, with a token) serves the seed article
plus a hostile article whose text holds ``<script>`` and ``<img onerror=...>``; the
tests compare its JSON with the Python API on the same index, check the 400/401/413
answers, fire 50 concurrent requests, and drive the page with Chromium (Debian's
``chromium`` + ``chromium-driver`` through selenium; the set-up installs them with
apt-get when missing and fails, never skips, when it cannot).

``QA_SERVE_SCREENSHOT=docs/serve.png pytest tests/test_serve.py -k page`` (or
``make screenshot``) also copies the page's screenshot there for the README.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, SEED

pytestmark = pytest.mark.slow

TOKEN = "test-token-5b1f"
QUESTION = "who mediated Turkey-Israel?"
STARTUP_TIMEOUT = 300  # seconds: model load on a busy 2-core machine
HOSTILE = """Kitchen <i>notes</i> from the test kitchen

The secret ingredient <script>window.__qaPwned = "script";</script> is smoked paprika, says chef Odile Marchetti.

Chef Marchetti bakes sourdough bread <img src=x onerror="window.__qaPwned = 'img'"> every morning at five o'clock.
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(
    url: str, body: Any = None, *, token: str | None = TOKEN, raw: bytes | None = None, timeout: float = 120
) -> tuple[int, Any]:
    """(status, parsed JSON body) of a GET, or a POST when ``body``/``raw`` is given."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("serve-corpus")
    (folder / "kitchen-notes.txt").write_text(HOSTILE, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def index_dir(hostile_dir: Path, real_embedder: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import qa

    folder = tmp_path_factory.mktemp("serve-index") / "index"
    # The seed article by a relative path when the tests run from the repository (as make test
    # does), so sources read "seeds/000_...txt" like the README's, in the screenshot too.
    seeds = os.path.relpath(SEED.parent) if Path.cwd() == ROOT else str(SEED.parent)
    qa.build_index([seeds, hostile_dir], folder, model=real_embedder, progress=False)
    return folder


@pytest.fixture(scope="module")
def index(index_dir: Path, real_embedder: Any) -> Any:
    """The same index the server loads, through the Python API."""
    import qa

    return qa.load_index(index_dir)


@pytest.fixture(scope="module")
def server(index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``qa serve`` process (uvicorn) on 127.0.0.1 and a free port; yields its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "QA_SERVE_TOKEN": TOKEN}
    command = [sys.executable, "-m", "qa", "serve", "--index", str(index_dir), "--port", str(port), "--quiet"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"qa serve exited with {process.returncode}:\n{log.read_text()}", pytrace=False)
            try:
                if _request(f"{base}/health", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"qa serve did not answer within {STARTUP_TIMEOUT}s:\n{log.read_text()}", pytrace=False)
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _same_hits(served: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [h["passage_id"] for h in served] == [h["passage_id"] for h in expected]
    assert [h["score"] for h in served] == pytest.approx([h["score"] for h in expected], rel=1e-5, abs=1e-6)
    strip = [{k: v for k, v in h.items() if k != "score"} for h in served]
    assert strip == [{k: v for k, v in h.items() if k != "score"} for h in expected]


def _same_answer(served: dict[str, Any], expected: dict[str, Any]) -> None:
    for key in ("question", "text", "span"):
        assert served[key] == expected[key], key
    assert served["confidence"] == pytest.approx(expected["confidence"], abs=1e-6)
    _same_hits(served["evidence"], expected["evidence"])
    assert [(a["text"], a["span"], a["evidence"]["passage_id"]) for a in served["alternatives"]] == [
        (a["text"], a["span"], a["evidence"]["passage_id"]) for a in expected["alternatives"]
    ]


# ---------------------------------------------------------------------------------------------- API


def test_search_and_ask_match_the_python_api(server: str, index: Any) -> None:
    for query in (QUESTION, "Where did the presidents of Israel and Azerbaijan meet?"):
        expected = _json([asdict(h) for h in index.search(query, k=5)])
        status, body = _request(f"{server}/search", {"query": query, "k": 5})
        assert status == 200, body
        assert body["query"] == query
        _same_hits(body["hits"], expected)
        status, body = _request(f"{server}/search?q={urllib.request.quote(query)}&k=5")
        assert status == 200, body
        _same_hits(body["hits"], expected)

    expected_answer = _json(asdict(index.ask(QUESTION)))
    assert expected_answer["text"] in ("Azerbaijan", "Hikmet Hajiyev")
    status, body = _request(f"{server}/ask", {"question": QUESTION})
    assert status == 200, body
    _same_answer(body, expected_answer)
    status, body = _request(f"{server}/ask?q={urllib.request.quote(QUESTION)}")
    assert status == 200, body
    _same_answer(body, expected_answer)


def test_health_and_schema(server: str, index: Any) -> None:
    status, body = _request(f"{server}/health")
    assert (status, body["status"], body["passages"]) == (200, "ok", len(index))
    status, schema = _request(f"{server}/openapi.json", token=None)
    assert status == 200
    assert {"/search", "/ask", "/health"} <= set(schema["paths"])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/search", {"query": "", "k": 5}),
        ("/search", {"query": "   ", "k": 5}),
        ("/search", {"query": QUESTION, "k": 0}),
        ("/search", {"query": QUESTION, "k": -1}),
        ("/search", {"query": QUESTION, "k": 51}),
        ("/search", {"query": QUESTION, "k": "five"}),
        ("/search", {"query": QUESTION, "k": True}),
        ("/search", {"query": "x" * 1001}),
        ("/search", {"query": QUESTION, "mode": "telepathy"}),
        ("/search", {"k": 5}),
        ("/ask", {"question": ""}),
        ("/ask", {"question": QUESTION, "k": 0}),
        ("/ask", {"question": QUESTION, "k": 10_000}),
        ("/ask", {"question": QUESTION, "min_confidence": 3}),
        ("/search?q=", None),
        ("/search?q=x&k=0", None),
        ("/search?q=x&k=abc", None),
        ("/ask?q=", None),
    ],
)
def test_bad_requests_get_400_with_a_json_error(server: str, path: str, body: Any) -> None:
    status, payload = _request(f"{server}{path}", body)
    assert status == 400, payload
    assert isinstance(payload["error"], str) and payload["error"]


def test_malformed_and_oversized_bodies(server: str) -> None:
    status, payload = _request(f"{server}/search", raw=b'{"query": ')
    assert status == 400 and "error" in payload
    status, payload = _request(f"{server}/search", raw=json.dumps({"query": "x" * 20_000}).encode())
    assert status == 413 and "error" in payload
    status, payload = _request(f"{server}/no-such-route")
    assert status == 404 and "error" in payload


@pytest.mark.parametrize("path", ["/search?q=Baku", "/ask?q=who%20visited%20Baku", "/health"])
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_api_calls_need_the_token(server: str, path: str, token: str | None) -> None:
    status, payload = _request(f"{server}{path}", token=token)
    assert status == 401, payload
    assert "token" in payload["error"]


def test_the_page_needs_no_token_and_forbids_inline_script(server: str) -> None:
    with urllib.request.urlopen(f"{server}/", timeout=30) as response:
        page = response.read().decode()
        csp = response.headers["Content-Security-Policy"]
    assert response.status == 200 and 'id="question"' in page
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_50_concurrent_requests_are_all_answered(server: str, index: Any) -> None:
    lines = (ROOT / "tests" / "seed_questions.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["question"] for line in lines][:10]
    expected_answers = {q: _json(asdict(index.ask(q))) for q in questions}
    expected_hits = {q: _json([asdict(h) for h in index.search(q, k=5)]) for q in questions}
    jobs = [("/ask" if i % 2 else "/search", questions[i % len(questions)]) for i in range(50)]

    def call(job: tuple[str, str]) -> tuple[float, int, Any]:
        path, question = job
        body = {"question": question} if path == "/ask" else {"query": question, "k": 5}
        started = time.perf_counter()
        status, payload = _request(f"{server}{path}", body, timeout=600)
        return time.perf_counter() - started, status, payload

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(call, jobs))
    wall = time.perf_counter() - started
    assert [status for _, status, _ in results] == [200] * len(jobs), [p for _, s, p in results if s != 200][:3]
    for (path, question), (_, _, payload) in zip(jobs, results, strict=True):
        if path == "/ask":
            _same_answer(payload, expected_answers[question])
        else:
            _same_hits(payload["hits"], expected_hits[question])
    latencies = sorted(seconds for seconds, _, _ in results)
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * len(latencies)) - 1]
    print(f"\n50 concurrent requests (25 /ask, 25 /search): p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
          f"all done in {wall:.1f}s")


# --------------------------------------------------------------------------------------- the page


def _ensure_chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installing Debian's packages when they are missing."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"], check=True, env=env,
                       capture_output=True)
        browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.fail("the page test needs Debian's chromium and chromium-driver: "
                    "sudo apt-get install -y chromium chromium-driver", pytrace=False)
    return browser, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail('the page test needs selenium: pip install -e ".[dev]"', pytrace=False)
    chromium, chromedriver = _ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1100,1300",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look for drivers online
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _ask_in_page(browser: Any, server: str, question: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server}/")
    token = browser.find_element(By.ID, "token")
    if not token.get_attribute("value"):
        browser.find_element(By.CSS_SELECTOR, "#token-box summary").click()
        token.send_keys(TOKEN)
    box = browser.find_element(By.ID, "question")
    box.clear()
    box.send_keys(question)
    browser.find_element(By.ID, "ask-button").click()
    WebDriverWait(browser, 180).until(ec.visibility_of_element_located((By.ID, "hits")))


def test_page_in_chromium_highlights_the_answer_with_its_source(
    browser: Any, server: str, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    _ask_in_page(browser, server, QUESTION)
    answer = browser.find_element(By.ID, "answer-text").text
    highlighted = [m.text for m in browser.find_elements(By.CSS_SELECTOR, "#answer-passage mark")]
    source = browser.find_element(By.ID, "answer-source").text
    hits = browser.find_elements(By.CSS_SELECTOR, "#hit-list > li")
    screenshot = tmp_path / "serve.png"
    browser.save_screenshot(str(screenshot))
    if os.environ.get("QA_SERVE_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["QA_SERVE_SCREENSHOT"])

    assert answer in ("Azerbaijan", "Hikmet Hajiyev")
    assert highlighted == [answer], highlighted
    assert "i24NEWS" in source and "paragraph" in source and f"{SEED.name}:" in source, source
    assert len(hits) == 5
    assert any(m.text == answer for m in browser.find_elements(By.CSS_SELECTOR, "#hit-list mark"))
    assert screenshot.stat().st_size > 10_000  # a rendered page, not a blank one


def test_page_shows_markup_from_an_article_as_text(browser: Any, server: str) -> None:
    from selenium.webdriver.common.by import By

    _ask_in_page(browser, server, "What is the secret ingredient, and what does Chef Marchetti bake?")
    page_text = browser.find_element(By.TAG_NAME, "body").text
    assert '<script>window.__qaPwned = "script";</script>' in page_text
    assert "<img src=x onerror=" in page_text
    assert "Kitchen <i>notes</i> from the test kitchen" in page_text
    assert browser.execute_script("return window.__qaPwned === undefined")
    assert browser.find_elements(By.TAG_NAME, "img") == []
    assert browser.find_elements(By.CSS_SELECTOR, "#hit-list i, #hit-list script, #answer script") == []
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 1  # the page's own /app.js


def test_answer_repr_html_escapes_article_markup(index: Any) -> None:
    answer = index.ask("What is the secret ingredient?", min_confidence=0)
    hits = index.search("Chef Marchetti bakes sourdough bread every morning", k=3)
    for rendered in (answer._repr_html_(), hits._repr_html_(), hits[0]._repr_html_()):
        assert "<script>window" not in rendered and "<img " not in rendered and "<i>notes" not in rendered
    assert "&lt;script&gt;window.__qaPwned" in answer._repr_html_()
    assert "&lt;img src=x onerror=" in hits._repr_html_()
