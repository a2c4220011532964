"""The plain HTTP JSON API (/v1/search, /v1/info): its routes in this process (FastAPI's test client, no
server), and, marked slow, on the running app through a real HTTP client beside the self-describing Gradio
API (/search's types in view_api). The same small untrained mean tower as test_app.py; its fixtures start
the app in this process."""

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from twotowers.index.fusion import DEFAULT_ALPHA, DEFAULT_FUSION, FUSIONS

sys.path.insert(0, str(Path(__file__).resolve().parent))

import app  # noqa: E402
from test_app import MEAN_OK, client, engine, server  # noqa: E402,F401 - the running app's fixtures


@pytest.fixture(scope="module")
def http(engine):
    """The /v1 routes on a FastAPI app in this process, called through its test client (no server, no port)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from webapp.http import router

    api = FastAPI()
    api.include_router(router(concurrency=4))
    with TestClient(api) as test_client:
        yield test_client


def call(server, path: str, params: dict | list | None = None, body: bytes | dict | list | None = None,
         method: str | None = None) -> tuple[int, object, dict]:
    """One request -> (status, decoded JSON body, headers); 4xx and 5xx are answers here, not exceptions.
    `server`: the running app's URL, or the `http` fixture's test client."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    if not isinstance(server, str):
        resp = server.request(method or ("POST" if data is not None else "GET"), path, params=params, content=data,
                              headers={"Content-Type": "application/json"} if data is not None else {})
        return resp.status_code, resp.json(), dict(resp.headers)
    url = server.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params is not None else "")
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


# -- GET /v1/search: one query ---------------------------------------------------------------------
def test_get_search_returns_ranked_hits(http):
    status, hits, headers = call(http, "/v1/search", {"q": "why is the sky blue", "k": 3})
    assert status == 200 and headers["content-type"] == "application/json"
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["id"] == "physics-04"
    assert set(hits[0]) == {"rank", "id", "score", "text", "dense_score", "keyword_score"}
    assert hits[0]["keyword_score"] is not None  # no mode: the index's default, hybrid
    assert hits == call(http, "/v1/search", {"q": "why is the sky blue", "k": 3, "mode": "hybrid"})[1]
    status, hits, _ = call(http, "/v1/search", {"q": "why is the sky blue", "k": 3, "mode": "dense"})
    assert hits[0]["keyword_score"] is None and hits[0]["dense_score"] == hits[0]["score"]
    status, hits, _ = call(http, "/v1/search", {"q": "why does bread dough rise"})
    assert status == 200 and len(hits) == 10 and hits[0]["id"] == "baking-01"  # k defaults to 10


@pytest.mark.slow  # the running server
@pytest.mark.parametrize("params", [
    {"q": "why is the sky blue", "k": 5},
    {"q": "is chocolate dangerous for dogs", "k": 4, "mode": "hybrid", "alpha": 0.3, "fusion": "rrf"},
    {"q": "Trans-Siberian Railway Vladivostok", "k": 3, "mode": "keyword"},
    {"q": "why is the \x00sky blue \U0001F30D", "k": 2},
])
def test_get_search_equals_gradio_client_search(server, client, params):
    status, hits, _ = call(server, "/v1/search", params)
    args = [params["q"], params["k"], params.get("mode"), params.get("alpha", DEFAULT_ALPHA),
            params.get("fusion", DEFAULT_FUSION)]
    assert status == 200 and hits == client.predict(*args, api_name="/search") == app.search(*args)


# -- POST /v1/search: a batch ----------------------------------------------------------------------
def test_post_batch_returns_one_list_per_query(http):
    status, rows, _ = call(http, "/v1/search", body={"queries": MEAN_OK, "k": 2})
    assert status == 200 and len(rows) == len(MEAN_OK) and all(len(r) == 2 for r in rows)
    assert [r[0]["id"] for r in rows] == ["physics-04", "baking-01", "internet-04", "energy-06"]
    assert rows == app.search_many(MEAN_OK, 2)
    body = {"queries": ["is chocolate dangerous for dogs"], "k": 3, "mode": "hybrid", "alpha": 0.5, "fusion": "rrf"}
    status, rows, _ = call(http, "/v1/search", body=body)
    assert status == 200 and rows == app.search_many(**body)
    assert rows[0][0]["id"] == "pets-03" and rows[0][0]["keyword_score"] is not None


# -- bad input: 400 and the app's message ----------------------------------------------------------
@pytest.mark.parametrize("params,args", [  # the query string; the same input as app.search's arguments
    ({"q": ""}, ("",)),
    ({"q": "  \t "}, ("  \t ",)),
    ({"q": "\u200b\u200d"}, ("\u200b\u200d",)),  # invisible: no letters or digits
    ({"q": "\ufeff ..."}, ("\ufeff ...",)),
    ({"q": "x" * 1001}, ("x" * 1001,)),
    ({"q": "sky blue", "k": 0}, ("sky blue", 0)),
    ({"q": "sky blue", "k": -1}, ("sky blue", -1)),
    ({"q": "sky blue", "k": "ten"}, ("sky blue", "ten")),
    ({"q": "sky blue", "k": "2.5"}, ("sky blue", "2.5")),
    ({"q": "sky blue", "k": 10**9}, ("sky blue", 10**9)),
    ({"q": "sky blue", "mode": "semantic"}, ("sky blue", 10, "semantic")),
    ({"q": "sky blue", "mode": "hybrid", "fusion": "max"}, ("sky blue", 10, "hybrid", 0.5, "max")),
    ({"q": "sky blue", "mode": "hybrid", "alpha": "2"}, ("sky blue", 10, "hybrid", "2")),
    ({"q": "sky blue", "mode": "hybrid", "alpha": "half"}, ("sky blue", 10, "hybrid", "half")),
])
def test_get_bad_input_is_400_with_the_apps_message(http, engine, params, args):
    with pytest.raises(app.InputError) as e:
        app.search(*args, engine=engine)
    expected = str(e.value)
    assert "query 1" not in expected
    assert call(http, "/v1/search", params)[:2] == (400, {"error": expected})


@pytest.mark.parametrize("params,words", [
    ({}, "Enter a query: add ?q="),
    ({"k": 5}, "Enter a query"),
    ({"q": "sky", "top_k": 5}, "unknown parameter 'top_k'; the parameters are q, k, mode, alpha, fusion"),
    ([("q", "sky"), ("q", "blue")], "give 'q' once"),
])
def test_get_missing_or_unknown_parameters_are_400(http, params, words):
    status, body, _ = call(http, "/v1/search", params)
    assert status == 400 and list(body) == ["error"] and words in body["error"]


@pytest.mark.parametrize("body,words", [
    (b"{not json", "the body is not valid JSON"),
    (b'{"queries": ["sky"],}', "the body is not valid JSON"),
    (b"", "the body is empty"),
    (b'["sky"]', "the body must be a JSON object"),
    ({"k": 5}, '"queries" is missing'),
    ({"query": "sky"}, "unknown field 'query' (one query: GET /v1/search?q="),
    ({"queries": ["sky"], "top_k": 5}, "unknown field 'top_k'"),
    ({"queries": "sky"}, "queries must be a list of strings, got str."),
    ({"queries": {"a": "sky"}}, "queries must be a list of strings, got dict."),
    ({"queries": []}, "queries is empty"),
    ({"queries": ["sky"] * (app.MAX_BATCH + 1)}, f"too many queries: {app.MAX_BATCH + 1}; the limit is {app.MAX_BATCH}"),
    ({"queries": ["sky", " "]}, "query 2: Enter a query: it is empty"),
    ({"queries": ["sky", "\u200b\u200d"]}, "query 2: Enter a query: it is empty (no letters or digits"),
    ({"queries": ["sky", 7]}, "query 2: The query must be text, got int."),
    ({"queries": ["sky"], "k": 0}, "k must be from 1 to 100, got 0."),
    ({"queries": ["sky"], "k": "ten"}, "k must be a whole number from 1 to 100, got 'ten'."),
    ({"queries": ["sky"], "k": None}, "k must be a whole number"),
    ({"queries": ["sky"], "mode": "bm25"}, "mode must be one of dense, keyword, hybrid, got 'bm25'."),
    ({"queries": ["sky"], "mode": "hybrid", "fusion": "max"}, f"fusion must be one of {', '.join(FUSIONS)}, got 'max'."),
])
def test_post_bad_input_is_400_with_a_message(http, body, words):
    status, answer, _ = call(http, "/v1/search", body=body, method="POST")
    assert status == 400 and list(answer) == ["error"] and words in answer["error"], answer


def test_post_too_large_body_is_refused(http):
    status, answer, _ = call(http, "/v1/search", body=b'{"queries": ["' + b"x" * (2 << 20) + b'"]}')
    assert status == 413 and "too large" in answer["error"]


class _IndexView:
    """The fixture's index, seen through a wrapper: without its BM25 side, or with a slow search."""

    def __init__(self, index, keyword=True, delay: float = 0.0):
        self._index, self._delay = index, delay
        self.keyword = index.keyword if keyword else None

    def __getattr__(self, name):
        return getattr(self._index, name)

    def __len__(self):
        return len(self._index)

    def search(self, *args, **kwargs):
        time.sleep(self._delay)
        return self._index.search(*args, **kwargs)


@pytest.fixture
def swap_index(engine):
    """Serve `engine` with another index for one test (the routes use the engine the app serves)."""
    def swap(view):
        app.set_engine(app.Engine(engine.model, view, engine.model_name, engine.index_name))
    yield swap
    app.set_engine(engine)


def test_keyword_mode_without_bm25_is_400_and_info_says_dense_only(http, engine, swap_index):
    swap_index(_IndexView(engine.index, keyword=False))
    status, body, _ = call(http, "/v1/search", {"q": "sky", "mode": "keyword"})
    assert status == 400 and body["error"] == "mode 'keyword' needs an index with a keyword (BM25) side; this one has none."
    status, info, _ = call(http, "/v1/info")
    assert status == 200 and info["modes"] == ["dense"] and info["keyword"] is False and info["default_mode"] == "dense"
    hit = call(http, "/v1/search", {"q": "why is the sky blue", "k": 1})[1][0]  # no mode: dense, the only one
    assert hit["id"] == "physics-04" and hit["keyword_score"] is None


# -- concurrency: searches in parallel, the event loop free ----------------------------------------
@pytest.mark.slow  # the running server
def test_concurrent_searches_run_in_parallel_off_the_event_loop(server, engine, swap_index):
    swap_index(_IndexView(engine.index, delay=0.6))  # every search takes 0.6 s more (a sleep: no CPU)
    info_times = []

    def poll_info():  # while the searches run, the event loop still answers at once
        for _ in range(3):
            t0 = time.perf_counter()
            assert call(server, "/v1/info")[0] == 200
            info_times.append(time.perf_counter() - t0)
            time.sleep(0.1)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(5) as pool:
        poller = pool.submit(lambda: (time.sleep(0.15), poll_info()))
        answers = list(pool.map(lambda q: call(server, "/v1/search", {"q": q, "k": 1}), MEAN_OK))
        poller.result()
    wall = time.perf_counter() - t0
    assert [a[1][0]["id"] for a in answers] == ["physics-04", "baking-01", "internet-04", "energy-06"]
    assert wall < 1.6, f"4 searches of 0.6 s took {wall:.2f} s: not run in parallel (serve's concurrency is 4)"
    assert max(info_times) < 0.4, f"/v1/info took {max(info_times):.2f} s while searches ran: the event loop is blocked"


# -- GET /v1/info ----------------------------------------------------------------------------------
def test_info_gives_model_index_modes_and_limits(http, engine):
    status, info, _ = call(http, "/v1/info")
    assert status == 200
    assert {k: info[k] for k in engine.info()} == engine.info()
    assert info["passages"] == len(engine.index) and info["tower"] == "mean" and info["keyword"] is True
    assert info["modes"] == ["dense", "keyword", "hybrid"] and info["fusions"] == list(FUSIONS)
    assert info["routes"] == ["GET /v1/search", "POST /v1/search", "GET /v1/info"]
    assert info["default_mode"] == "hybrid" and info["fusion"]["default"] in FUSIONS  # what a search without mode does
    assert info["k"] == {"min": 1, "max": app.MAX_K, "default": 10}
    assert info["max_batch"] == app.MAX_BATCH and info["max_query_chars"] == app.MAX_QUERY_CHARS


@pytest.mark.slow  # the running server
def test_unknown_v1_route_is_404_and_gradio_still_serves(server, client):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server + "v1/nothing", timeout=30)
    assert e.value.code == 404
    assert "<html" in urllib.request.urlopen(server, timeout=30).read(4000).decode().lower()
    assert client.predict("why is the sky blue", 1, api_name="/search")[0]["id"] == "physics-04"


# -- the Gradio API describes itself ---------------------------------------------------------------
@pytest.mark.slow  # the running server
def test_view_api_shows_types_choices_and_docs(client):
    text = client.view_api(return_format="str", print_info=False)
    assert 'predict(query, k, mode, alpha, fusion, api_name="/search") -> hits' in text
    assert 'predict(queries, k, mode, alpha, fusion, api_name="/search_batch") -> hits_per_query' in text
    assert "mode: None | Literal['dense', 'keyword', 'hybrid']" in text and "none = the index's default" in text and f"fusion: Literal[{', '.join(map(repr, FUSIONS))}]" in text
    hit = ("dict(rank: int, id: str, score: float, text: str, dense_score: None | float, "
           "keyword_score: None | float)")
    assert f"hits: list[{hit}]" in text and f"hits_per_query: list[list[{hit}]]" in text
    assert "how many passages to return, 1 to 100" in text and "the semantic weight" in text
    from typing import get_args

    from webapp.ui import Fusion, Mode

    assert get_args(Mode) == app.MODES and get_args(Fusion) == tuple(app.FUSIONS)  # the hints name what inputs.py accepts
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/search"]
    assert [p["parameter_name"] for p in info["parameters"]] == ["query", "k", "mode", "alpha", "fusion"]
    assert info["parameters"][2]["type"]["oneOf"] == [{"type": "null"}, {"enum": ["dense", "keyword", "hybrid"]}]
    assert info["parameters"][2]["parameter_default"] is None  # the index's default mode
    assert info["description"].startswith("Search one query")


@pytest.mark.slow  # the running server
def test_single_query_errors_have_no_batch_prefix(client):
    from gradio_client.exceptions import AppError

    for blank in ("   ", "\u200b\u200d"):  # zero-width characters are as empty as spaces
        with pytest.raises(AppError) as e:
            client.predict(blank, 3, api_name="/search")
        assert str(e.value) == ("Enter a query: it is empty (no letters or digits, only spaces, punctuation or "
                                "invisible characters).")
    with pytest.raises(AppError) as e:
        client.predict(None, 3, api_name="/search")
    assert str(e.value) == "Enter a query: it is empty."
    with pytest.raises(app.InputError, match=r"^Enter a query: it is empty\.$"):
        app.search(None)
    with pytest.raises(AppError, match=r"^query 2: Enter a query"):
        client.predict(["sky", ""], 3, api_name="/search_batch")


def test_api_tab_documents_the_http_routes():
    from webapp.ui import api_help

    text = api_help()
    assert "curl \"http://127.0.0.1:7860/v1/search?q=" in text and '"queries"' in text and "/v1/info" in text


@pytest.mark.slow  # the running server
def test_routes_are_served_even_where_ssr_is_the_default(engine, monkeypatch):
    """Spaces set GRADIO_SSR_MODE=True; with it a Node proxy fronts the port and answers /v1/* with the page.
    serve() turns SSR off unless asked, so the JSON routes are reachable on a Space too."""
    from test_app import _free_port

    monkeypatch.setenv("GRADIO_SSR_MODE", "True")
    port = _free_port()
    demo = app.serve(engine, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        assert demo.ssr_mode is False
        status, info, headers = call(f"http://127.0.0.1:{port}/", "/v1/info")
        assert status == 200 and headers["content-type"] == "application/json" and info["tower"] == "mean"
    finally:
        demo.close()
