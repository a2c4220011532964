"""The Gradio page: search tab, optional upload tab, API tab, the `/search` and `/search_batch` endpoints."""

# No `from __future__ import annotations` here: gr.api reads the endpoints' return annotation as is
# (inspect.signature, not get_type_hints), and a string "list[Hit]" would be described as Any.
import html
import inspect
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from twotowers.index.fusion import describe_fusions

from .actions import Hit, SaveError, add_passages, search, search_many
from .engine import Engine, get_engine, set_engine
from .inputs import (DEFAULT_ALPHA, DEFAULT_FUSION, DEFAULT_K, FUSIONS, MAX_BATCH, MAX_K, MAX_QUERY_CHARS, MODES,
                     InputError, clean_query)
from .render import _error_html, info_markdown, render_results

if TYPE_CHECKING:  # the annotations only; gradio itself is imported on first use
    import gradio as gr

log = logging.getLogger(__name__)


def _gr():
    """gradio, imported on first use: `import app` and `import webapp` stay light for tests and scripts."""
    import gradio

    return gradio


def ui_search(query, k, mode_label, alpha, fusion_label):
    """The Search button: (results HTML, latency line). Bad input is shown, not raised."""
    engine = get_engine()
    mode = _MODE_LABELS.get(mode_label)  # None: the engine's default
    fusion = _fusion_labels().get(fusion_label, DEFAULT_FUSION)
    t0 = time.perf_counter()
    try:
        text = clean_query(query)
        mode = mode or engine.default_mode
        results = search(text, k, mode, alpha, fusion, engine=engine)
    except InputError as e:
        return _error_html(str(e)), ""
    ms = (time.perf_counter() - t0) * 1000
    note = f"{len(results)} results in **{ms:.1f} ms** ({mode}"
    note += f", semantic weight {float(alpha):.2f}, {fusion} fusion)" if mode == "hybrid" else ")"
    if text != query.strip():
        note += " · control characters or extra spaces were removed from the query"
    return render_results(text, results, mode), note


Mode = Literal[MODES]  # Literal["dense", "keyword", "hybrid"], from the index's own list
Fusion = Literal[tuple(FUSIONS)]  # the fusion registry's names (refreshed by `_read_registries`)

_SEARCH_ARGS = """
        k: how many passages to return%(per_query)s, 1 to %(max_k)d
        mode: dense = the towers (semantic), keyword = BM25, hybrid = both fused; none = the index's default (hybrid where it has BM25, else dense)
        alpha: hybrid only: the semantic weight, 0 = keyword only, 1 = dense only
        fusion: hybrid only: %(fusions)s"""


def api_search(query: str, k: int = DEFAULT_K, mode: Mode | None = None, alpha: float = DEFAULT_ALPHA,
               fusion: Fusion = DEFAULT_FUSION) -> list[Hit]:
    """Search one query: its top-k passages, best first.

    Args:
        query: the question or keywords, up to %(max_chars)s characters%(args)s
    Returns:
        the hits, best first: rank (1 = best), id, score (what ranked it), text, dense_score and keyword_score (None where the mode did not compute it)
    """
    try:
        return search(query, k, mode, alpha, fusion)
    except InputError as e:
        raise _gr().Error(str(e), print_exception=False) from None


def api_search_batch(queries: list[str], k: int = DEFAULT_K, mode: Mode | None = None, alpha: float = DEFAULT_ALPHA,
                     fusion: Fusion = DEFAULT_FUSION) -> list[list[Hit]]:
    """Search several queries in one call (up to %(max_batch)d): one ranked hit list per query, in order.

    Args:
        queries: 1 to %(max_batch)d queries; an error names the bad one, e.g. "query 2: ..."%(args)s
    Returns:
        one list of hits per query, as /search returns them
    """
    try:
        return search_many(queries, k, mode, alpha, fusion)
    except InputError as e:
        raise _gr().Error(str(e), print_exception=False) from None


_API_DOCS = {fn: fn.__doc__ for fn in (api_search, api_search_batch)}  # templates: filled from the registries


def _read_registries() -> None:
    """The API functions' fusion hint and argument docs from `FUSIONS` as it is now: a fusion method added
    there shows in `view_api`, the page and the API tab with no change here."""
    global Fusion
    Fusion = Literal[tuple(FUSIONS)]
    for fn, doc in _API_DOCS.items():
        per_query = " per query" if fn is api_search_batch else ""
        values = {"max_k": MAX_K, "max_batch": MAX_BATCH, "max_chars": f"{MAX_QUERY_CHARS:,}",
                  "fusions": describe_fusions(), "per_query": per_query}
        fn.__doc__ = doc % {**values, "args": _SEARCH_ARGS % values}
        fn.__annotations__["fusion"] = Fusion


_read_registries()


def _describe_api(blocks, dependency, fn, returns_label: str) -> None:
    """Show the docstring's argument and return lines, and a name for the result, in `Client.view_api()`.

    gr.api derives each parameter's type from the type hints but leaves its description empty and
    labels the result "1st"; view_api prints a schema's "additional_description" beside the type
    and the output component's label as the result's name, so set those.
    """
    from gradio.utils import get_function_description

    _, params, returns = get_function_description(fn)
    names = list(inspect.signature(fn).parameters)
    described = [(bid, params.get(name, "")) for bid, name in zip(dependency["inputs"], names)]
    described += [(bid, " ".join(returns)) for bid in dependency["outputs"][:1]]
    for block_id, text in described:
        component = blocks.blocks.get(block_id)
        schema = getattr(component, "_api_info", None)
        if text and isinstance(schema, dict):
            component._api_info = {**schema, "additional_description": text}
    for block_id in dependency["outputs"][:1]:
        if block_id in blocks.blocks:
            blocks.blocks[block_id].label = returns_label


def ui_add(pasted, file):
    """The "Add passages" button: (status markdown, info markdown)."""
    engine = get_engine()
    try:
        if file is not None:
            path = Path(file if isinstance(file, str) else file.name)
            data = path.read_bytes()
            name = path.name
        elif pasted and pasted.strip():
            data, name = pasted, "pasted text"
        else:
            raise InputError("Paste some passages (one per line) or choose a .txt, .tsv or .jsonl file.")
        msg = add_passages(name, data, engine)
    except (InputError, SaveError) as e:
        # Escaped: the message quotes the user's file, and Markdown would render "<TAB>" as a tag.
        return (f"**Not added:** {html.escape(str(e))} The index is unchanged ({len(engine.index):,} passages).",
                info_markdown(engine))
    except Exception as e:  # noqa: BLE001 - a bug: said on the page (Gradio would show a bare "Error") and logged
        log.exception("adding passages failed")
        return (f"**Not added:** internal error ({html.escape(type(e).__name__)}: {html.escape(str(e))}); see the "
                f"server log. The index is unchanged ({len(engine.index):,} passages).", info_markdown(engine))
    return html.escape(msg), info_markdown(engine)


# -- the page --------------------------------------------------------------------------------------
def _fusion_labels() -> dict[str, str]:
    """The page's fusion choices: each method's label (the registry's) -> its name."""
    return {f.label: name for name, f in FUSIONS.items()}


_MODE_LABELS = {"semantic (towers)": "dense", "keyword (BM25)": "keyword", "hybrid": "hybrid"}

CSS = """
.tt-results { display: flex; flex-direction: column; gap: 10px; }
.tt-hit { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px 14px; }
.tt-meta { font-size: 0.85em; color: var(--body-text-color-subdued); margin-bottom: 4px; }
.tt-rank { font-weight: 700; color: var(--body-text-color); margin-right: 6px; }
.tt-id { font-size: 0.85em; margin-left: 6px; }
.tt-text mark { background: #fde68a; color: inherit; padding: 0 2px; border-radius: 3px; }
.tt-error { border: 1px solid #dc2626; color: #b91c1c; border-radius: 8px; padding: 10px 14px; }
.tt-empty { color: var(--body-text-color-subdued); }
"""


def build_demo(engine: Engine, allow_uploads: bool = False, examples: list[str] | None = None) -> "gr.Blocks":
    """The Blocks app for `engine` (set as the engine `search` uses)."""
    gr = _gr()
    set_engine(engine)
    _read_registries()
    if examples is None:
        examples = list(engine.examples)
    with gr.Blocks(title="twotowers search") as demo:
        gr.Markdown("# twotowers: passage search\nA query tower and a passage tower map text to vectors; "
                    "the passages nearest to your question come back.")
        info = gr.Markdown(info_markdown(engine), elem_id="tt-info")
        with gr.Tab("Search"):
            with gr.Row(equal_height=True):
                query = gr.Textbox(label="Query", placeholder="Ask a question, e.g. why is the sky blue",
                                   scale=5, max_lines=1, elem_id="tt-query")
                k = gr.Number(value=DEFAULT_K, label="top-k", precision=0, scale=1, min_width=90, elem_id="tt-k")
                button = gr.Button("Search", variant="primary", scale=1, elem_id="tt-search")
            if examples:
                ex = gr.Examples(examples=[[q] for q in examples], inputs=[query], label="Example queries (click to search)",
                                 examples_per_page=len(examples), api_visibility="private")
            with gr.Row(visible=engine.has_keyword):
                mode = gr.Radio(list(_MODE_LABELS), label="Mode", scale=2,
                                value=next(k for k, v in _MODE_LABELS.items() if v == engine.default_mode))
                alpha = gr.Slider(0, 1, value=DEFAULT_ALPHA, step=0.05, scale=2,
                                  label="Hybrid: semantic weight (0 = keyword only, 1 = semantic only)")
                fusion = gr.Radio(list(_fusion_labels()), label="Hybrid fusion", scale=1,
                                  value=FUSIONS[DEFAULT_FUSION].label)
            latency = gr.Markdown(elem_id="tt-latency")
            results = gr.HTML(elem_id="tt-results")
            inputs, outputs = [query, k, mode, alpha, fusion], [results, latency]
            for trigger in (button.click, query.submit):
                trigger(ui_search, inputs, outputs, api_visibility="private", concurrency_id="search")
            if examples:
                ex.load_input_event.then(ui_search, inputs, outputs, api_visibility="private", concurrency_id="search")
        if allow_uploads:
            with gr.Tab("Your own passages"):
                kept = (f"saved to `{engine.save_dir}`" if engine.save_dir is not None else
                        "kept for this session only (start the app with `--save-uploads DIR` to keep them)")
                gr.Markdown("Paste passages (one per line) or upload a file: `.txt` (one passage per line), "
                            "`.tsv` (`id<TAB>text`) or `.jsonl` (`{\"id\": ..., \"text\": ...}`). They are "
                            f"encoded, added to the live index and {kept}; a bad file is refused whole.")
                pasted = gr.Textbox(label="Passages, one per line", lines=6)
                upload = gr.File(label="or a file", file_types=[".txt", ".tsv", ".jsonl"], type="filepath",
                                 elem_id="tt-upload")
                add = gr.Button("Add passages", variant="primary")
                status = gr.Markdown(elem_id="tt-add-status")
                add.click(ui_add, [pasted, upload], [status, info], api_visibility="private", concurrency_limit=1)
        with gr.Tab("API"):
            gr.Markdown(api_help())
        for fn, name, result in ((api_search, "search", "hits"), (api_search_batch, "search_batch", "hits_per_query")):
            _describe_api(demo, gr.api(fn, api_name=name, concurrency_id="search"), fn, result)
    return demo


def api_help(url: str = "http://127.0.0.1:7860") -> str:
    """The API tab: the JSON routes (webapp/http.py `ROUTES`), Gradio's client, and what the arguments may be
    (the search modes and fusion methods as the registries list them now)."""
    from .http import ROUTES

    curls = "\n".join(f"curl {r.example.format(url=url)}\n# -> {r.answers}" for r in ROUTES)
    modes = ", ".join(f"`{m}`" for m in MODES)
    return f"""
**Plain HTTP (JSON)**, on this same server and port: no client library needed.

```bash
{curls}
curl "{url}/v1/search?q=rba+rate&k=10&mode=hybrid&alpha=0.5&fusion={DEFAULT_FUSION}"
```
Bad input is HTTP 400 with `{{"error": "..."}}` saying what to change. On a Space, use its URL
(`https://OWNER-SPACE.hf.space/v1/search?q=...`).

**Python, through Gradio's client** (`pip install gradio_client`):

```python
from gradio_client import Client

client = Client("{url}/")       # or the Space id, e.g. "OWNER/SPACE"
hits = client.predict("why is the sky blue", 5, api_name="/search")
# [{{"rank": 1, "id": "...", "score": 0.93, "text": "...", "dense_score": 0.71, "keyword_score": 8.2}}, ...]
client.predict("rba rate", 10, "hybrid", 0.5, api_name="/search")        # mode, semantic weight
client.predict(["query one", "query two"], 5, api_name="/search_batch")  # one list per query
client.view_api()                                                        # the arguments and the hit's fields
```
`k` is 1 to {MAX_K} (default {DEFAULT_K}); `mode` is {modes} (the last two where the index has a keyword side;
without `mode`, hybrid where it has one, else dense); `fusion` (hybrid only): {describe_fusions()}; up to
{MAX_BATCH} queries per batch, {MAX_QUERY_CHARS:,} characters per query. An empty or over-long query, or a
bad `k`, is an error with a message saying why.
"""


def serve(engine: Engine, host: str | None = None, port: int | None = None, allow_uploads: bool = False,
          concurrency: int = 4, **launch_kwargs) -> "gr.Blocks":
    """Build the page for `engine`, start the queue with `concurrency` parallel searches, and launch.

    The plain JSON routes (webapp/http.py: /v1/search, /v1/info) are served by the same server, with
    at most `concurrency` of their searches at once too (beside the queue's). Server-side rendering
    is off unless asked for: with it (the default on Spaces, GRADIO_SSR_MODE=True) a Node proxy
    fronts the port and sends only Gradio's own paths to Python, so /v1/* would not reach us.
    """
    from . import http

    demo = build_demo(engine, allow_uploads)
    demo.queue(default_concurrency_limit=concurrency, max_size=256)
    app_kwargs = dict(launch_kwargs.pop("app_kwargs", None) or {})
    app_kwargs["lifespan"] = http.lifespan(concurrency, then=app_kwargs.get("lifespan"))
    launch_kwargs.setdefault("ssr_mode", False)
    demo.launch(server_name=host, server_port=port, css=CSS, max_file_size="20mb", app_kwargs=app_kwargs,
                **launch_kwargs)
    return demo
