"""The Gradio app: the pure search function, the page's handlers, bad input, uploads; marked slow, the API
through gradio_client on the running app and the real page in headless Chromium. A small mean-tower model
over the demo corpus keeps it fast; the default zero-shot transformer start (`python app.py`) is tested in
test_app_default.py (slow)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import app  # noqa: E402 - after the path

# Example queries the untrained mean tower also ranks first (the zero-shot transformer gets all 12).
MEAN_OK = ["why is the sky blue", "why does bread dough rise", "who invented the world wide web",
           "how does a heat pump heat a house"]
BAD_INPUTS = [  # (query, k, words the error message must contain)
    ("", 5, "empty"),
    ("   \t ", 5, "empty"),
    ("\x00\x07\x1b", 5, "empty"),
    ("\u200b\u200d", 5, "empty"),        # zero-width characters: no letters or digits
    ("\u2060 \ufeff ...", 5, "empty"),
    ("x" * 100_000, 5, "too long"),
    ("sky blue", 0, "from 1 to 100"),
    ("sky blue", -1, "from 1 to 100"),
    ("sky blue", 10**9, "from 1 to 100"),
    ("sky blue", "ten", "whole number"),
    ("sky blue", 2.5, "whole number"),
    ("sky blue", None, "whole number"),
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    import torch
    from twotowers import TwoTowers

    torch.manual_seed(0)  # the untrained mean tower's projection is random: fix it
    os.environ["TWOTOWERS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    engine = app.load_engine(model=TwoTowers(tower="mean"), log=lambda *_: None)
    app.set_engine(engine)  # what the UI handlers use
    return engine


@pytest.fixture(scope="module")
def server(engine):
    """The app in this process on a free localhost port, with the uploads tab."""
    port = _free_port()
    demo = app.serve(engine, "127.0.0.1", port, allow_uploads=True, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- pure functions ---------------------------------------------------------------------------------
@pytest.mark.slow  # a fresh process
def test_import_app_starts_no_server_and_loads_no_model():
    code = ("import sys, app, webapp.engine; assert webapp.engine._ENGINE is None; assert 'twotowers.model' not in sys.modules; "
            "assert 'torch' not in sys.modules and 'gradio' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_demo_corpus_and_queries_are_consistent():
    ids, texts, digest = app.read_demo_corpus()
    assert 300 <= len(ids) == len(set(ids)) == len(set(texts))
    assert len(digest) == 64
    queries = app.demo_queries()
    assert len(queries) >= 10
    assert {q["expected"] for q in queries} <= set(ids)
    # the quick starts' judged queries (demo/queries.tsv + qrels.tsv): every demo query among them, each judged
    from twotowers.collection import read_qrels, read_queries

    trec, qrels = read_queries(app.DEMO_PASSAGES.parent / "queries.tsv"), read_qrels(app.DEMO_PASSAGES.parent / "qrels.tsv")
    assert set(trec) == set(qrels) and {p for judged in qrels.values() for p in judged} <= set(ids)
    assert {q["query"] for q in queries} <= set(trec.values()) and len(trec) == len(set(trec.values())) >= 80


def test_search_returns_ranked_structured_results(engine):
    for query in MEAN_OK:
        expected = next(q["expected"] for q in app.demo_queries() if q["query"] == query)
        hits = app.search(query, 5, engine=engine)
        assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
        assert hits[0]["id"] == expected, (query, hits[0])
        assert set(hits[0]) >= {"rank", "id", "score", "text", "dense_score", "keyword_score"}
        scores = [h["score"] for h in hits]
        assert scores == sorted(scores, reverse=True)
        json.dumps(hits)  # what the API sends


def test_default_mode_is_hybrid_on_the_page_and_in_search(engine):
    """No mode given: the index's default (hybrid, where it has a BM25 side) in `search` and on the page,
    whose mode radio starts there."""
    from twotowers.index.fusion import DEFAULT_ALPHA
    from webapp.ui import _MODE_LABELS

    assert engine.default_mode == "hybrid" and engine.info()["default_mode"] == "hybrid"
    hits = app.search("is chocolate dangerous for dogs", 3, engine=engine)
    assert hits == app.search("is chocolate dangerous for dogs", 3, mode="hybrid", engine=engine)
    assert hits[0]["keyword_score"] is not None
    demo = app.build_demo(engine)
    (radio,) = [b for b in demo.blocks.values() if getattr(b, "label", None) == "Mode"]
    assert _MODE_LABELS[radio.value] == "hybrid"
    _, note = app.ui_search("is chocolate dangerous for dogs", 3, radio.value, DEFAULT_ALPHA, None)
    assert "(hybrid, semantic weight" in note


def test_search_many_matches_single_searches(engine):
    batch = app.search_many(MEAN_OK, 3, engine=engine)
    assert [[h["id"] for h in row] for row in batch] == [[h["id"] for h in app.search(q, 3, engine=engine)] for q in MEAN_OK]


def test_keyword_and_hybrid_modes_give_all_three_scores(engine):
    assert engine.has_keyword
    kw = app.search("Trans-Siberian Railway Vladivostok", 3, mode="keyword", engine=engine)
    assert kw[0]["id"] == "trains-05" and kw[0]["keyword_score"] > 0
    hy = app.search("is chocolate dangerous for dogs", 5, mode="hybrid", alpha=0.5, engine=engine)
    assert hy[0]["id"] == "pets-03"
    assert hy[0]["dense_score"] is not None and hy[0]["keyword_score"] is not None
    rrf = app.search("is chocolate dangerous for dogs", 5, mode="hybrid", alpha=0.5, fusion="rrf", engine=engine)
    assert rrf[0]["id"] == "pets-03"


@pytest.mark.parametrize("query,k,words", BAD_INPUTS)
def test_bad_input_is_a_clear_error(engine, query, k, words):
    with pytest.raises(app.InputError, match=words):
        app.search(query, k, engine=engine)


def test_control_characters_and_emoji_are_searched(engine):
    hits = app.search("why is the \x00sky\x1b blue \U0001F30D\u2600\ufe0f", 3, engine=engine)
    assert hits[0]["id"] == "physics-04"
    assert app.clean_query(" a\x00b\tc ") == "a b c"
    assert app.clean_query("\ud800sky") == "sky"  # a lone surrogate cannot be encoded: dropped
    assert app.clean_k("7") == 7 and app.clean_k(7.0) == 7


def test_highlight_marks_query_terms_and_escapes_html():
    html = app.highlight("Dogs <script>alert(1)</script> & the dog's bone", app.query_terms("dog <script>"))
    assert "<script" not in html and "</script" not in html and "&lt;" in html and "&amp;" in html
    assert "<mark>Dogs</mark>" in html and "<mark>dog</mark>" in html
    page = app.render_results("<b>x</b>", [{"rank": 1, "id": "<i>", "score": 0.5, "text": "<b>x</b> y",
                                             "dense_score": 0.5, "keyword_score": None}], "dense")
    assert "<b>" not in page and "<i>" not in page


# -- your own passages ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,data,words", [
    ("bad.tsv", "a\tfirst passage\nb second passage\n", "bad.tsv line 2: expected id<TAB>text"),
    ("bad.jsonl", '{"id": "a", "text": "ok"}\n{"id": "b", "text": \n', "bad.jsonl line 2: invalid JSON"),
    ("bad.jsonl", '{"id": "a", "text": "ok"}\n\n{"id": "a", "text": "again"}\n', "line 3: id 'a' repeats line 1"),
    ("bad.jsonl", '{"id": "a", "body": "ok"}\n', "line 1: expected 'text' field, found ['body', 'id']"),
    ("bad.jsonl", '{"id": true, "text": "ok"}\n', "line 1: 'text' must be a string and 'id' a string or number"),
    ("bad.txt", b"fine line\n\xff\xfe broken\n", "bad.txt line 2: not UTF-8"),
    ("bad.tsv", "a\t   \n", "bad.tsv line 1: the passage text is empty"),
    ("bad.tsv", "a\tok\nb\t\u200b\u200d\n", "bad.tsv line 2: the passage text is empty"),
    ("empty.txt", "\n\n", "no passages found"),
    ("notes.pdf", "x", "unsupported file type .pdf"),
])
def test_bad_upload_names_the_line(name, data, words):
    with pytest.raises(app.InputError) as e:
        app.parse_passages(name, data)
    assert words in str(e.value)


def test_bad_upload_leaves_index_unchanged(engine):
    before = len(engine.index)
    bad = "\n".join(f"fine passage number {i}" for i in range(50)) + "\n" + "x" * (app.MAX_PASSAGE_CHARS + 1)
    with pytest.raises(app.InputError, match="line 51"):
        app.add_passages("mine.txt", bad, engine)
    with pytest.raises(app.InputError, match="already in the index"):
        app.add_passages("mine.tsv", "physics-04\tA clash with a demo id.\n", engine)
    assert len(engine.index) == before
    status, _ = app.ui_add("", None)
    assert "Not added" in status and "unchanged" in status


def test_added_passages_are_searchable_and_saved(engine, tmp_path):
    from twotowers import PassageIndex

    app.set_save_dir(engine, tmp_path / "my-index")
    before = len(engine.index)
    try:
        msg = app.add_passages("mine.jsonl", '{"id": "quokka-1", "text": "Quokkas are small smiling marsupials '
                               'living on Rottnest Island near Perth."}\n{"text": "Wombats produce cube-shaped droppings."}\n',
                               engine)
    finally:
        engine.save_dir, engine.save_lock = None, None
    assert "Added 2 passages" in msg and f"Saved to `{tmp_path / 'my-index'}`" in msg and len(engine.index) == before + 2
    assert app.search("smiling quokkas on Rottnest Island", 3, mode="hybrid", engine=engine)[0]["id"] == "quokka-1"
    assert app.search("Wombats produce cube-shaped droppings.", 1, engine=engine)[0]["id"] == "mine-1"
    reloaded = PassageIndex.load(tmp_path / "my-index", model=engine.model)
    assert len(reloaded) == before + 2
    assert reloaded.search(["quokka rottnest"], k=1, mode="keyword")[0][0].id == "quokka-1"
    # without --save-uploads: in memory, and the message says so
    msg = app.add_passages("more.txt", "Koalas sleep most of the day in eucalyptus trees.\n", engine)
    assert "for this session only (start the app with --save-uploads DIR" in msg


def test_an_upload_the_disk_cannot_take_changes_neither_disk_nor_memory(engine, tmp_path, monkeypatch):
    from twotowers import PassageIndex
    from twotowers.writing import WriteError

    app.set_save_dir(engine, tmp_path / "saved")
    try:
        def full(self, directory, **kwargs):
            raise WriteError(f"disk full: could not write {directory}/.x.new/hnsw.bin (0 bytes free on its disk)")

        before, served = len(engine.index), engine.index
        with monkeypatch.context() as m:
            m.setattr(PassageIndex, "save", full)
            for _ in range(2):  # a retry fails the same way: nothing was half-added
                with pytest.raises(app.SaveError, match=r"Could not save the index to .*saved: disk full: could not write"):
                    app.add_passages("late.txt", "Platypuses lay eggs and have duck-like bills.\n", engine)
                assert engine.index is served and len(engine.index) == before
            status, _ = app.ui_add("Platypuses lay eggs and have duck-like bills.", None)
            assert status.startswith("**Not added:** Could not save the index to ") and "disk full" in status
            assert f"The index is unchanged ({before:,} passages)" in status
        hits = app.search("platypuses duck bills", 5, mode="keyword", engine=engine)
        assert not any("Platypuses" in h["text"] for h in hits)  # not live either
        msg = app.add_passages("late.txt", "Platypuses lay eggs and have duck-like bills.\n", engine)  # the disk is back
        assert "Added 1 passages" in msg and len(PassageIndex.load(tmp_path / "saved", engine.model)) == before + 1
    finally:
        engine.save_dir, engine.save_lock = None, None


def test_uploads_never_replace_an_index_the_user_did_not_name(engine, tmp_path):
    engine.index.save(tmp_path / "theirs")
    with pytest.raises(FileExistsError, match=r"--save-uploads .*theirs already holds an index: serve it with --index"):
        app.set_save_dir(engine, tmp_path / "theirs")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds files that are not part of a saved index \(todo.txt\)"):
        app.set_save_dir(engine, tmp_path / "notes")
    # the index being served, named again: updated in place, as asked
    assert app.set_save_dir(engine, tmp_path / "theirs", index_dir=tmp_path / "theirs") == (tmp_path / "theirs").resolve()
    engine.save_dir, engine.save_lock = None, None


def test_a_grown_index_gets_its_search_breadth_tuned_again(engine):
    before, n = len(engine.index), len(engine.index) // 10 + 1
    tuned = engine.index.meta["ef_tuning"]["count"]
    text = "\n".join(f"Extra passage number {i} about topic {i % 7} and item {i * 13}." for i in range(n))
    msg = app.add_passages("extra.txt", text, engine)
    assert len(engine.index) == before + n and before + n >= 1.1 * tuned
    assert f"ef re-tuned to {engine.index.ef}" in msg and engine.index.meta["ef_tuning"]["count"] == before + n


# -- the running app through gradio_client ---------------------------------------------------------
@pytest.mark.slow  # the running server
def test_api_search_returns_structured_results(client):
    hits = client.predict("why is the sky blue", 3, api_name="/search")
    assert isinstance(hits, list) and len(hits) == 3
    assert hits[0]["id"] == "physics-04" and "scatter" in hits[0]["text"] and hits[0]["rank"] == 1
    assert isinstance(hits[0]["score"], float)
    hybrid = client.predict("why is the sky blue", 3, "hybrid", 0.3, "rrf", api_name="/search")
    assert hybrid[0]["keyword_score"] is not None and hybrid[0]["dense_score"] is not None


@pytest.mark.slow  # the running server
def test_api_batch_endpoint(client):
    rows = client.predict(MEAN_OK, 2, api_name="/search_batch")
    assert len(rows) == len(MEAN_OK) and all(len(r) == 2 for r in rows)
    assert rows[0][0]["id"] == "physics-04" and rows[3][0]["id"] == "energy-06"


@pytest.mark.slow  # the running server
def test_api_bad_input_is_a_clear_error_and_server_keeps_serving(client):
    from gradio_client.exceptions import AppError

    for query, k, words in BAD_INPUTS:
        with pytest.raises(AppError, match=words):
            client.predict(query, k, api_name="/search")
    with pytest.raises(AppError, match="query 2: .*empty"):
        client.predict(["sky", " "], 3, api_name="/search_batch")
    assert client.predict("why is the sky blue \U0001F30D\x07", 1, api_name="/search")[0]["id"] == "physics-04"


@pytest.mark.slow  # the running server
def test_api_lists_only_the_documented_endpoints(client):
    endpoints = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/search", "/search_batch"} <= endpoints


@pytest.mark.slow  # the running server
def test_concurrent_api_calls_are_all_served(server):
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    clients = [Client(server, verbose=False) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        out = list(pool.map(lambda i: clients[i % 4].predict(MEAN_OK[i % 4], 1, api_name="/search"), range(12)))
    assert [r[0]["id"] for r in out[:4]] == ["physics-04", "baking-01", "internet-04", "energy-06"]


# -- the real page in headless Chromium ------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def open_page(playwright, url: str, width: int = 1200, height: int = 900):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url, wait_until="domcontentloaded")
    page.locator("#tt-query textarea, #tt-query input").first.wait_for(timeout=30_000)
    return browser, page


def run_query(page, query: str, k: int | None = None):
    box = page.locator("#tt-query textarea, #tt-query input").first
    box.fill(query)
    if k is not None:
        page.locator("#tt-k input").first.fill(str(k))
    page.locator("#tt-search").click()


@pytest.fixture(scope="module")
def browser_page(server):
    pw = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    with pw.sync_playwright() as p:
        browser, page = open_page(p, server)
        yield page
        browser.close()


@pytest.mark.slow  # a browser
def test_browser_search_shows_expected_passage(browser_page):
    page = browser_page
    assert "passages" in page.locator("#tt-info").inner_text()
    run_query(page, "why does bread dough rise", 5)
    hit = page.locator('#tt-results .tt-hit[data-id="baking-01"]')
    hit.wait_for(timeout=30_000)
    assert page.locator("#tt-results .tt-hit").count() == 5
    assert page.locator("#tt-results .tt-hit").first.get_attribute("data-id") == "baking-01"
    assert "dough" in hit.locator("mark").all_inner_texts()[0].lower() or hit.locator("mark").count() > 0
    assert "ms" in page.locator("#tt-latency").inner_text()


@pytest.mark.slow  # a browser
def test_browser_bad_input_shows_a_message_then_works(browser_page):
    page = browser_page
    run_query(page, "   ")
    page.locator("#tt-results .tt-error").wait_for(timeout=30_000)
    assert "empty" in page.locator("#tt-results .tt-error").inner_text()
    run_query(page, "why is the sky blue", 0)
    page.locator("#tt-results .tt-error").get_by_text("k must be from 1 to 100, got 0").wait_for(timeout=30_000)
    run_query(page, "<img src=x onerror=alert(1)> who invented the world wide web", 3)
    page.locator('#tt-results .tt-hit[data-id="internet-04"]').wait_for(timeout=30_000)
    assert page.locator("#tt-results img").count() == 0  # the query's HTML was escaped, not rendered


@pytest.mark.slow  # a browser
def test_browser_example_click_searches(browser_page):
    from playwright.sync_api import expect

    page = browser_page
    run_query(page, "why does bread dough rise", 3)  # so the example's results cannot be stale ones
    page.locator('#tt-results .tt-hit[data-id="baking-01"]').wait_for(timeout=30_000)
    page.get_by_text("who invented the world wide web", exact=True).first.click()
    expect(page.locator("#tt-query textarea, #tt-query input").first).to_have_value("who invented the world wide web")
    page.locator('#tt-results .tt-hit[data-id="internet-04"]').wait_for(timeout=30_000)


@pytest.mark.slow  # a browser
def test_browser_bad_upload_names_the_line(browser_page, engine, tmp_path):
    page = browser_page
    before = len(engine.index)
    bad = tmp_path / "broken.tsv"
    bad.write_text("u1\tA fine passage about owls.\nu2 has no tab\n", encoding="utf-8")
    page.get_by_role("tab", name="Your own passages").click()
    page.locator("#tt-upload input[type=file]").set_input_files(str(bad))
    page.get_by_role("button", name="Add passages").click()
    status = page.locator("#tt-add-status")
    status.get_by_text("broken.tsv line 2").wait_for(timeout=30_000)
    assert "unchanged" in status.inner_text() and len(engine.index) == before
    page.get_by_role("tab", name="Search").click()


def test_unreachable_model_repo_is_one_clear_line(capsys):
    from conftest import one_error_line, run_cli

    # tests run with HF_HUB_OFFLINE=1: nothing is downloaded
    status, _, err = run_cli(app.main, ["--model-repo", "nobody/no-such-model"], capsys)
    line = one_error_line(err)
    assert status == 1 and "could not load the model or index" in line and "nobody/no-such-model" in line
    for argv, match in ((["--index", "some-dir"], "--index needs --model"),
                        (["--model", "no-such-dir"], "--model no-such-dir: no such directory"),
                        (["--model-repo", "a/b", "--model", "x"], "give either --model-repo or --model/--index"),
                        (["--concurrency", "0"], "--concurrency must be >= 1")):
        status, _, err = run_cli(app.main, argv, capsys)
        assert status != 0 and match in one_error_line(err), err


def test_demo_index_cache_is_reused_rebuilt_when_broken_and_keyed_by_corpus(engine, tmp_path):
    corpus = tmp_path / "passages.jsonl"
    rows = [{"id": f"p{i}", "text": t} for i, t in enumerate(["Owls hunt at night.", "Tea is brewed with hot water.",
                                                                 "Glaciers carve valleys.", "Bikes have two wheels."])]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    logs = []
    index, first = app.load_demo_index(engine.model, tmp_path / "c", corpus, log=logs.append)
    assert len(index) == 4 and any("building" in m for m in logs)
    logs.clear()
    _, again = app.load_demo_index(engine.model, tmp_path / "c", corpus, log=logs.append)
    assert again == first and not logs  # loaded from the cache
    (first / "index.json").write_text("{ broken")
    index, again = app.load_demo_index(engine.model, tmp_path / "c", corpus, log=logs.append)
    assert again == first and len(index) == 4 and any("did not load" in m for m in logs)
    corpus.write_text(corpus.read_text() + json.dumps({"id": "p9", "text": "Rain falls."}) + "\n")
    index, second = app.load_demo_index(engine.model, tmp_path / "c", corpus, log=logs.append)
    assert second != first and len(index) == 5 and not first.exists()  # the old corpus' entry is gone


def test_example_queries_travel_with_the_model(engine, tmp_path):
    """A pushed model repo (or dir) ships examples.json; the page shows those, the demo its own."""
    assert engine.examples == [q["query"] for q in app.demo_queries()]
    model = engine.model
    model.save_pretrained(tmp_path / "m")
    engine.index.save(tmp_path / "m" / "index")
    (tmp_path / "m" / "examples.json").write_text(json.dumps({"queries": ["how tall is the eiffel tower", "  "]}))
    served = app.load_engine(model_dir=str(tmp_path / "m"), log=lambda *_: None)
    assert served.examples == ["how tall is the eiffel tower"]  # blanks dropped
