"""The plain HTTP JSON API, served beside Gradio's on the same server and port (a Space included).

    GET  /v1/search?q=QUERY&k=K[&mode=MODE&alpha=A&fusion=NAME]   (the defaults and the names: /v1/info)
         -> [{"rank", "id", "score", "text", "dense_score", "keyword_score"}, ...]   (what /search returns)
    POST /v1/search  {"queries": [...], "k": K, "mode"?, "alpha"?, "fusion"?}
         -> one such list per query, in order                                     (what /search_batch returns)
    GET  /v1/info    -> the model and index facts, the routes, the modes and fusion methods, the defaults, the limits

To add a route: an `async def handler(request, limiter) -> Response` here and a `Route` in `ROUTES`;
the server, `/v1/info` and the page's API tab pick it up.

Bad input is HTTP 400 with {"error": "<message>"}: the app's own checks and messages (inputs.py).
The handlers call `actions.search` / `search_many` directly, with no Gradio queue: each search runs
in a worker thread (at most `concurrency` at once, the rest wait without holding a thread), never
on the event loop, so concurrent requests run in parallel and the server stays responsive.

`lifespan` adds the routes to Gradio's FastAPI app as the server starts, before it takes requests:
`Blocks.launch(app_kwargs={"lifespan": lifespan(...)})` (see `ui.serve`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from .actions import search, search_many
from .engine import get_engine
from .inputs import DEFAULT_ALPHA, DEFAULT_FUSION, DEFAULT_K, FUSIONS, MAX_BATCH, MAX_K, MAX_QUERY_CHARS, MODES, InputError

log = logging.getLogger(__name__)

PREFIX = "/v1"
MAX_BODY_BYTES = 1 << 20   # 64 queries of 1,000 characters are ~64 KB of JSON; 1 MiB is plenty
DRAIN_BYTES = 64 << 20     # a larger body is cut off without reading it all
GET_PARAMS = ("q", "k", "mode", "alpha", "fusion")
POST_FIELDS = ("queries", "k", "mode", "alpha", "fusion")


def _json(data, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(message: str, status: int = 400) -> Response:
    return _json({"error": message}, status)


def info(engine=None) -> dict:
    """What GET /v1/info answers: `Engine.info()` (with `default_mode`, what a search without `mode` does) plus
    the modes this index allows, the hybrid defaults and the limits."""
    engine = engine or get_engine()
    return {**engine.info(), "routes": [f"{r.method} {PREFIX}{r.path}" for r in ROUTES],
            "modes": [m for m in MODES if m == "dense" or engine.has_keyword],
            "fusions": list(FUSIONS), "alpha": {"default": DEFAULT_ALPHA}, "fusion": {"default": DEFAULT_FUSION},
            "k": {"min": 1, "max": MAX_K, "default": DEFAULT_K}, "max_batch": MAX_BATCH, "max_query_chars": MAX_QUERY_CHARS}


def _get_args(request: Request) -> dict:
    """The query string -> search's arguments; unknown or repeated parameters are an InputError."""
    params = request.query_params
    unknown = [p for p in params if p not in GET_PARAMS]
    if unknown:
        raise InputError(f"unknown parameter {unknown[0]!r}; the parameters are {', '.join(GET_PARAMS)}.")
    repeated = [p for p in GET_PARAMS if len(params.getlist(p)) > 1]
    if repeated:
        raise InputError(f"give {repeated[0]!r} once, not {len(params.getlist(repeated[0]))} times.")
    if "q" not in params:
        raise InputError("Enter a query: add ?q=... to the URL, e.g. /v1/search?q=why+is+the+sky+blue&k=5.")
    return {"query": params["q"], "k": params.get("k", DEFAULT_K), "mode": params.get("mode"),
            "alpha": params.get("alpha", DEFAULT_ALPHA), "fusion": params.get("fusion", DEFAULT_FUSION)}


async def _read_body(request: Request) -> bytes:
    """The request body, refused (InputError) past MAX_BODY_BYTES. The rest of a too-large body is read
    and dropped (up to DRAIN_BYTES) before the answer, so the client sees the 413, not a reset connection."""
    size = request.headers.get("content-length")
    declared = int(size) if size is not None and size.isdigit() else None
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > DRAIN_BYTES:
            break
        if total <= MAX_BODY_BYTES and (declared is None or declared <= MAX_BODY_BYTES):
            chunks.append(chunk)
    if total > MAX_BODY_BYTES or (declared or 0) > MAX_BODY_BYTES:
        raise InputError(f"the body is too large: {max(total, declared or 0):,} bytes; the limit is {MAX_BODY_BYTES:,}.")
    return b"".join(chunks)


def _post_args(body: bytes) -> dict:
    """The JSON body -> search_many's arguments; anything else is an InputError saying what to send."""
    example = '{"queries": ["why is the sky blue"], "k": 5}'
    if not body.strip():
        raise InputError(f"the body is empty: send a JSON object like {example}.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InputError(f"the body is not valid JSON ({e}); send an object like {example}.") from None
    if not isinstance(data, dict):
        raise InputError(f"the body must be a JSON object like {example}, got {type(data).__name__}.")
    unknown = [f for f in data if f not in POST_FIELDS]
    if unknown:
        hint = ' (one query: GET /v1/search?q=..., or "queries": ["..."])' if unknown[0] == "query" else ""
        raise InputError(f"unknown field {unknown[0]!r}{hint}; the fields are {', '.join(POST_FIELDS)}.")
    if "queries" not in data:
        raise InputError(f'"queries" is missing: send a JSON object like {example}.')
    return {"queries": data["queries"], "k": data.get("k", DEFAULT_K), "mode": data.get("mode"),
            "alpha": data.get("alpha", DEFAULT_ALPHA), "fusion": data.get("fusion", DEFAULT_FUSION)}


async def _answer(limiter: anyio.CapacityLimiter, fn, arguments) -> Response:
    """Run `fn(**arguments())` (a search) in a worker thread and answer its JSON, 400 for bad input
    (in the arguments or found by the search's own checks)."""
    try:
        kwargs = arguments()
    except InputError as e:
        return _error(str(e))

    def work() -> Response:
        try:
            return _json(fn(**kwargs))
        except InputError as e:
            return _error(str(e))

    try:
        return await anyio.to_thread.run_sync(work, limiter=limiter)
    except Exception:  # noqa: BLE001 - a bug, not bad input: logged here, a JSON 500 for the client
        log.exception("%s failed", fn.__name__)
        return _error("internal error: the search failed; see the server log.", 500)


# -- the routes ------------------------------------------------------------------------------------
async def get_search(request: Request, limiter: anyio.CapacityLimiter) -> Response:
    """One query: ?q=...&k=10[&mode=&alpha=&fusion=] -> its ranked hits."""
    return await _answer(limiter, search, lambda: _get_args(request))


async def post_search(request: Request, limiter: anyio.CapacityLimiter) -> Response:
    """A batch: {"queries": [...], "k": ..., ...} -> one list of hits per query."""
    try:
        body = await _read_body(request)
    except InputError as e:
        return _error(str(e), 413)
    return await _answer(limiter, search_many, lambda: _post_args(body))


async def get_info(request: Request, limiter: anyio.CapacityLimiter) -> Response:
    """The model, the index, the routes, the modes it allows and the limits."""
    return _json(info())


Handler = Callable[[Request, anyio.CapacityLimiter], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    """One JSON route: what serves it, and how the API tab shows it (a curl example and what it answers)."""

    method: str        # "GET" or "POST"
    path: str          # under PREFIX, e.g. "/search"
    handler: Handler
    example: str       # the part of a curl command line after `curl `, with {url} for the server's address
    answers: str       # one line: what comes back


ROUTES: list[Route] = [
    Route("GET", "/search", get_search, '"{url}/v1/search?q=why+is+the+sky+blue&k=5"',
          'the hits, best first: [{"rank":1,"id":"...","score":0.93,"text":"...","dense_score":0.71,"keyword_score":8.2}, ...]'),
    Route("POST", "/search", post_search,
          '{url}/v1/search -H "Content-Type: application/json" -d \'{{"queries": ["query one", "query two"], "k": 5}}\'',
          "one list of hits per query"),
    Route("GET", "/info", get_info, "{url}/v1/info", "the model, the index, the routes, the modes and the default, the limits"),
]


def router(concurrency: int = 4) -> APIRouter:
    """The routes of `ROUTES` under PREFIX; at most `concurrency` searches run at once (the rest wait for a worker)."""
    limiter = anyio.CapacityLimiter(max(1, int(concurrency)))
    api = APIRouter(prefix=PREFIX)
    for route in ROUTES:
        api.add_api_route(route.path, _bound(route.handler, limiter), methods=[route.method])
    return api


def _bound(handler: Handler, limiter: anyio.CapacityLimiter):
    """`handler` as FastAPI calls it: with the request alone."""
    async def endpoint(request: Request) -> Response:
        return await handler(request, limiter)

    endpoint.__name__ = endpoint.__qualname__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def lifespan(concurrency: int = 4, then=None):
    """A FastAPI lifespan that adds the /v1 routes to the app as it starts, then runs `then` (another lifespan).

    Gradio's launch creates its FastAPI app itself and calls the `lifespan` given in `app_kwargs`
    with it at start-up, before the server accepts connections (gradio/route_utils.py,
    create_lifespan_handler), so the routes are there from the first request.
    """
    @contextlib.asynccontextmanager
    async def add_routes(app: FastAPI):
        if not any(getattr(r, "path", "").startswith(PREFIX + "/") for r in app.router.routes):
            app.include_router(router(concurrency))
        if then is None:
            yield None
        else:
            async with then(app) as state:
                yield state

    return add_routes


__all__ = ["DEFAULT_K", "MAX_BODY_BYTES", "PREFIX", "ROUTES", "Route", "info", "lifespan", "router"]
