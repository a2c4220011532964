"""The Gradio page: search tab, optional upload tab, API tab, the `/search` and `/search_batch` endpoints."""

from __future__ import annotations

import html
import time
from pathlib import Path

from .actions import add_passages, search, search_many
from .demo import demo_queries
from .engine import Engine, get_engine, set_engine
from .inputs import InputError, clean_query
from .render import _error_html, info_markdown, render_results


def _gr():
    """gradio, imported on first use: `import app` and `import webapp` stay light for tests and scripts."""
    import gradio

    return gradio


def ui_search(query, k, mode_label, alpha, fusion_label):
    """The Search button: (results HTML, latency line). Bad input is shown, not raised."""
    engine = get_engine()
    mode = _MODE_LABELS.get(mode_label, "dense")
    fusion = "rrf" if fusion_label and fusion_label.startswith("rank") else "score"
    t0 = time.perf_counter()
    try:
        text = clean_query(query)
        results = search(text, k, mode, alpha, fusion, engine=engine)
    except InputError as e:
        return _error_html(str(e)), ""
    ms = (time.perf_counter() - t0) * 1000
    note = f"{len(results)} results in **{ms:.1f} ms** ({mode}"
    note += f", semantic weight {float(alpha):.2f}, {fusion} fusion)" if mode == "hybrid" else ")"
    if text != query.strip():
        note += " · control characters or extra spaces were removed from the query"
    return render_results(text, results, mode), note


def api_search(query: str, k: int = 10, mode: str = "dense", alpha: float = 0.5, fusion: str = "score") -> list[dict]:
    """Search one query. Returns [{rank, id, score, text, dense_score, keyword_score}, ...], best first.
    mode: dense | keyword | hybrid; alpha: semantic weight of hybrid (0 = keyword only, 1 = dense only);
    fusion: score (normalised scores) | rrf (reciprocal rank fusion)."""
    try:
        return search(query, k, mode, alpha, fusion)
    except InputError as e:
        raise _gr().Error(str(e), print_exception=False) from None


def api_search_batch(queries: list[str], k: int = 10, mode: str = "dense", alpha: float = 0.5,
                     fusion: str = "score") -> list[list[dict]]:
    """Search several queries in one call (up to 64): one ranked result list per query, in order."""
    try:
        return search_many(queries, k, mode, alpha, fusion)
    except InputError as e:
        raise _gr().Error(str(e), print_exception=False) from None


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
    except InputError as e:
        # Escaped: the message quotes the user's file, and Markdown would render "<TAB>" as a tag.
        return (f"**Not added:** {html.escape(str(e))} The index is unchanged ({len(engine.index):,} passages).",
                info_markdown(engine))
    return html.escape(msg), info_markdown(engine)


# -- the page --------------------------------------------------------------------------------------
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
    if examples is None:
        examples = [q["query"] for q in demo_queries()] if engine.index_name.startswith("demo corpus") else []
    with gr.Blocks(title="twotowers search") as demo:
        gr.Markdown("# twotowers: passage search\nA query tower and a passage tower map text to vectors; "
                    "the passages nearest to your question come back.")
        info = gr.Markdown(info_markdown(engine), elem_id="tt-info")
        with gr.Tab("Search"):
            with gr.Row(equal_height=True):
                query = gr.Textbox(label="Query", placeholder="Ask a question, e.g. why is the sky blue",
                                   scale=5, max_lines=1, elem_id="tt-query")
                k = gr.Number(value=10, label="top-k", precision=0, scale=1, min_width=90, elem_id="tt-k")
                button = gr.Button("Search", variant="primary", scale=1, elem_id="tt-search")
            if examples:
                ex = gr.Examples(examples=[[q] for q in examples], inputs=[query], label="Example queries (click to search)",
                                 examples_per_page=len(examples), api_visibility="private")
            with gr.Row(visible=engine.has_keyword):
                mode = gr.Radio(list(_MODE_LABELS), value="semantic (towers)", label="Mode", scale=2)
                alpha = gr.Slider(0, 1, value=0.5, step=0.05, scale=2,
                                  label="Hybrid: semantic weight (0 = keyword only, 1 = semantic only)")
                fusion = gr.Radio(["scores", "ranks (RRF)"], value="scores", label="Hybrid fusion", scale=1)
            latency = gr.Markdown(elem_id="tt-latency")
            results = gr.HTML(elem_id="tt-results")
            inputs, outputs = [query, k, mode, alpha, fusion], [results, latency]
            for trigger in (button.click, query.submit):
                trigger(ui_search, inputs, outputs, api_visibility="private", concurrency_id="search")
            if examples:
                ex.load_input_event.then(ui_search, inputs, outputs, api_visibility="private", concurrency_id="search")
        if allow_uploads:
            with gr.Tab("Your own passages"):
                gr.Markdown("Paste passages (one per line) or upload a file: `.txt` (one passage per line), "
                            "`.tsv` (`id<TAB>text`) or `.jsonl` (`{\"id\": ..., \"text\": ...}`). They are "
                            "encoded, added to the live index and saved; a bad file is refused whole.")
                pasted = gr.Textbox(label="Passages, one per line", lines=6)
                upload = gr.File(label="or a file", file_types=[".txt", ".tsv", ".jsonl"], type="filepath",
                                 elem_id="tt-upload")
                add = gr.Button("Add passages", variant="primary")
                status = gr.Markdown(elem_id="tt-add-status")
                add.click(ui_add, [pasted, upload], [status, info], api_visibility="private", concurrency_limit=1)
        with gr.Tab("API"):
            gr.Markdown(API_HELP)
        gr.api(api_search, api_name="search", concurrency_id="search")
        gr.api(api_search_batch, api_name="search_batch", concurrency_id="search")
    return demo


API_HELP = """
```python
from gradio_client import Client

client = Client("http://127.0.0.1:7860/")       # or the Space id, e.g. "OWNER/SPACE"
hits = client.predict("why is the sky blue", 5, api_name="/search")
# [{"rank": 1, "id": "...", "score": 0.71, "text": "...", "dense_score": 0.71, "keyword_score": None}, ...]
client.predict("rba rate", 10, "hybrid", 0.5, api_name="/search")        # mode, semantic weight
client.predict(["query one", "query two"], 5, api_name="/search_batch")  # one list per query
```
`k` is 1 to 100; an empty or over-long query, or a bad `k`, is an error with a message saying why.
"""


def serve(engine: Engine, host: str | None = None, port: int | None = None, allow_uploads: bool = False,
          concurrency: int = 4, **launch_kwargs) -> "gr.Blocks":
    """Build the page for `engine`, start the queue with `concurrency` parallel searches, and launch."""
    demo = build_demo(engine, allow_uploads)
    demo.queue(default_concurrency_limit=concurrency, max_size=256)
    demo.launch(server_name=host, server_port=port, css=CSS, max_file_size="20mb", **launch_kwargs)
    return demo
