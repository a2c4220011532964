"""The search app's parts (app.py is the entry point; the library `twotowers` never imports these).

inputs   what a user may send, checked: queries, k, mode, uploaded passages (`InputError` says why not)
demo     the embedded demo: its corpus, queries, zero-shot model, and the cached index of it
engine   what the app serves (model + index + a read/write lock), loaded once
actions  search and add passages: plain functions, the UI and the API go through them
render   result cards as escaped HTML with the query's words highlighted
ui       the Gradio page, its handlers and API endpoints, and `serve`
http     the plain JSON routes beside Gradio's on the same server: GET/POST /v1/search, GET /v1/info
"""
