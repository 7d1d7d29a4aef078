"""`qa serve`: the index over HTTP — a JSON API and a one-page search UI.

Routes (JSON unless said otherwise):

* ``GET /``                      the page: type a question, see the answer in its passage, hits below
* ``GET /health``                ``{"status": "ok", "passages": N, "model": ..., "version": ...}``
* ``POST /search`` ``{"query", "k", "mode"}`` (or ``GET /search?q=&k=&mode=``): ``{"query", "hits"}``,
  each hit exactly ``dataclasses.asdict(qa.Hit)``
* ``POST /ask`` ``{"question", "k", "mode", "min_confidence"}`` (or ``GET /ask?q=...``):
  ``dataclasses.asdict(qa.Answer)``, as ``qa ask --json`` prints it
* ``GET /openapi.json``          the schema (FastAPI's)

Safe by default: it binds 127.0.0.1; with a token (``--token`` or ``$QA_SERVE_TOKEN``)
every API route wants ``Authorization: Bearer <token>`` (401 otherwise; the page and
the schema hold no document text and stay open); bodies over `MAX_BODY_BYTES` get 413;
an empty or over-long query, or ``k`` outside 1..`MAX_K`, gets 400; every error is
``{"error": message}`` with its status. The page builds its DOM with ``textContent``
and a Content-Security-Policy allows only its own script, so text from an article
never runs.

The index is loaded once. Requests run in the server's thread pool; the search and
answer calls themselves take one lock in turn (`Service`), because they are CPU-bound
on the same cores anyway and it keeps every backend's caches and thread settings
consistent whatever they are.

fastapi and uvicorn are the ``serve`` extra; they are imported only here, inside functions.
"""

from __future__ import annotations

import hmac
import os
import sys
import threading
from dataclasses import asdict
from importlib import resources
from typing import TYPE_CHECKING, Any

from qa import __version__
from qa.errors import InputError, MissingDependencyError, QAError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from qa.store import Store

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
TOKEN_ENV = "QA_SERVE_TOKEN"
#: Bounds on a request: body bytes, query characters, hits.
MAX_BODY_BYTES = 16 * 1024
MAX_QUERY_CHARS = 1000
MAX_K = 50
#: Paths anyone may fetch even when a token is set: no document text in them.
PUBLIC_PATHS = frozenset({"/", "/app.js", "/app.css", "/openapi.json", "/favicon.ico"})
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " \
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"


class Service:
    """The loaded index behind the routes: validated, serialised calls returning JSON-ready dicts."""

    def __init__(self, index: Store) -> None:
        self.index = index
        self._lock = threading.Lock()

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "passages": len(self.index), "model": self.index.model_name, "version": __version__}

    def search(self, query: str, k: int = 5, mode: str | None = None) -> dict[str, Any]:
        """``{"query", "hits"}`` for ``index.search(query, k, mode=mode)``.

        Raises:
            InputError: an empty or over-long query, ``k`` out of bounds, an unknown mode.
        """
        _check(query, k)
        with self._lock:
            hits = self.index.search(query, k=k, mode=mode)
        return {"query": query, "hits": [asdict(h) for h in hits]}

    def ask(self, question: str, k: int = 5, mode: str | None = None,
            min_confidence: float | None = None) -> dict[str, Any]:
        """``asdict(index.ask(question, k=k, mode=mode))`` (``min_confidence`` when given).

        Raises:
            InputError: as for `search`, or ``min_confidence`` outside [0, 1].
        """
        _check(question, k)
        options: dict[str, Any] = {}
        if min_confidence is not None:
            if not 0.0 <= min_confidence <= 1.0:
                raise InputError(f"min_confidence must be between 0 and 1, got {min_confidence}")
            options["min_confidence"] = min_confidence
        with self._lock:
            answer = self.index.ask(question, k=k, mode=mode, **options)
        return asdict(answer)


def _check(query: str, k: int) -> None:
    if not query.strip():
        raise InputError("the query is empty; send a question or some words to search for")
    if len(query) > MAX_QUERY_CHARS:
        raise InputError(f"the query has {len(query)} characters; at most {MAX_QUERY_CHARS} are allowed")
    if isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InputError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")


def _static(name: str) -> bytes:
    return resources.files("qa").joinpath("static", name).read_bytes()


def create_app(index: Store, *, token: str | None = None) -> FastAPI:
    """The ASGI app serving ``index``.

    Args:
        index: a loaded index (`qa.load_index`), searched by every request.
        token: when set, API routes require ``Authorization: Bearer <token>``.

    Raises:
        MissingDependencyError: fastapi is not installed (``pip install 'qa[serve]'``).
    """
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, Response
        from pydantic import BaseModel, Field
        from starlette.exceptions import HTTPException as StarletteHTTPException
    except ImportError as exc:
        raise MissingDependencyError("qa serve needs fastapi and uvicorn: pip install 'qa[serve]'") from exc

    service = Service(index)

    class SearchRequest(BaseModel):
        query: str = Field(description=f"what to search for (1..{MAX_QUERY_CHARS} characters)")
        k: int = Field(5, strict=True, description=f"hits wanted, 1..{MAX_K}")
        mode: str | None = Field(None, description="dense, bm25, hybrid or rrf (default: hybrid)")

    class AskRequest(BaseModel):
        question: str = Field(description=f"the question (1..{MAX_QUERY_CHARS} characters)")
        k: int = Field(5, strict=True, description=f"passages to read, 1..{MAX_K}")
        mode: str | None = Field(None, description="retrieval mode (default: hybrid)")
        min_confidence: float | None = Field(None, description="withhold less confident answers (default: fitted)")

    app = FastAPI(
        title="qa",
        version=__version__,
        description="Semantic search and question answering over articles, with sources.",
        docs_url=None,  # Swagger UI loads from a CDN: nothing to offer offline
        redoc_url=None,
    )

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(QAError)
    async def _qa_error(_: Request, exc: QAError) -> JSONResponse:
        return error(400 if isinstance(exc, InputError) else 500, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        def field(loc: tuple[Any, ...]) -> str:
            # loc starts with where the value came from (body, query); the field name follows.
            names = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
            return ".".join(str(p) for p in names) or "body"

        problems = "; ".join(f"{field(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in exc.errors())
        return error(400, f"bad request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        print(f"qa serve: internal error: {exc!r}", file=sys.stderr)
        return error(500, "internal error; see the server's log")

    def page(name: str, media_type: str) -> Response:
        headers = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
                   "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
        return Response(_static(name), media_type=media_type, headers=headers)

    @app.get("/", include_in_schema=False)
    def index_page() -> Response:
        return page("index.html", "text/html; charset=utf-8")

    @app.get("/app.js", include_in_schema=False)
    def script() -> Response:
        return page("app.js", "text/javascript; charset=utf-8")

    @app.get("/app.css", include_in_schema=False)
    def style() -> Response:
        return page("app.css", "text/css; charset=utf-8")

    @app.get("/health")
    def health() -> dict[str, Any]:
        """The index is loaded: its passage count, model and the qa version."""
        return service.health()

    def search(request: SearchRequest) -> dict[str, Any]:
        """The ``k`` passages that best match ``query`` (each as ``asdict(qa.Hit)``)."""
        return service.search(request.query, request.k, request.mode)

    # With postponed annotations FastAPI would look "SearchRequest" up in the module, where
    # it does not exist (pydantic is imported lazily): hand it the class itself.
    search.__annotations__["request"] = SearchRequest
    app.post("/search")(search)

    @app.get("/search")
    def search_get(q: str = "", k: int = 5, mode: str | None = None) -> dict[str, Any]:
        """`POST /search` as a GET: ``/search?q=...&k=5``."""
        return service.search(q, k, mode)

    def ask(request: AskRequest) -> dict[str, Any]:
        """The answer to ``question`` with its evidence (``asdict(qa.Answer)``, as ``qa ask --json``)."""
        return service.ask(request.question, request.k, request.mode, request.min_confidence)

    ask.__annotations__["request"] = AskRequest
    app.post("/ask")(ask)

    @app.get("/ask")
    def ask_get(q: str = "", k: int = 5, mode: str | None = None,
                min_confidence: float | None = None) -> dict[str, Any]:
        """`POST /ask` as a GET: ``/ask?q=...``."""
        return service.ask(q, k, mode, min_confidence)

    # Added last, so it runs first: a request without the token is refused before any parsing.
    app.add_middleware(_Guard, token=token)
    return app


class _Guard:
    """ASGI middleware in front of the app: the bearer token, then the body size, before any routing."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.token is not None and scope["path"] not in PUBLIC_PATHS:
            given = headers.get(b"authorization", b"")
            scheme, _, value = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), self.token):
                await _reply(send, 401, "a bearer token is required: send 'Authorization: Bearer <token>'",
                             [(b"www-authenticate", b'Bearer realm="qa"')])
                return
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            await _reply(send, 413, f"the request body is over {MAX_BODY_BYTES} bytes")
            return
        # Read the body here, counting, so a chunked upload cannot grow past the bound either.
        body = bytearray()
        more = scope["method"] in ("POST", "PUT", "PATCH")
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY_BYTES:
                await _reply(send, 413, f"the request body is over {MAX_BODY_BYTES} bytes")
                return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _reply(send: Any, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    import json

    payload = json.dumps({"error": message}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                    *(headers or [])],
    })
    await send({"type": "http.response.body", "body": payload})


def run(index: Store, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None = None,
        quiet: bool = False) -> None:
    """Serve ``index`` until interrupted (what ``qa serve`` does after loading it).

    Args:
        index: the loaded index.
        host: the address to bind; loopback unless you mean to share it (then set a token).
        port: the TCP port.
        token: require ``Authorization: Bearer <token>`` on API routes; None reads ``$QA_SERVE_TOKEN``.
        quiet: no access log.

    Raises:
        MissingDependencyError: fastapi or uvicorn is not installed.
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingDependencyError("qa serve needs fastapi and uvicorn: pip install 'qa[serve]'") from exc
    token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
    app = create_app(index, token=token)
    if host not in _LOOPBACK and token is None:
        print(f"qa serve: warning: {host} is reachable from other machines and no token is set; "
              f"anyone who can reach it can query the index (use --token or ${TOKEN_ENV})", file=sys.stderr)
    # Load the model, the reader and the lexical index now, not on the first request.
    index.ask("warm up", k=1)
    shown = f"[{host}]" if ":" in host else host
    print(f"qa serve: {len(index)} passages on http://{shown}:{port}/"
          f"{' (bearer token required)' if token else ''}; Ctrl-C stops", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning" if quiet else "info", access_log=not quiet)
