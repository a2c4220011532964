"""The twotowers search app (Gradio): type a question, get the passages the towers find.

    python app.py                                  # demo corpus + zero-shot MiniLM, no network needed
    python app.py --model-repo OWNER/NAME          # model + prebuilt index from the Hub
    TWOTOWERS_MODEL_REPO=OWNER/NAME python app.py  # the same (what the Space sets)
    python app.py --model DIR --index DIR --allow-uploads   # local dirs; add your own passages (this session)
    python app.py --model DIR --index DIR --save-uploads DIR2   # ... kept in DIR2 (DIR2 = DIR: in place)

The model and index are loaded once at start. `search(query, k)` is a plain function (tests import
it); the UI, the Gradio API endpoints `/search` and `/search_batch`, and the plain JSON routes on the
same port (webapp/http.py) go through it:

    curl "http://127.0.0.1:7860/v1/search?q=why+is+the+sky+blue&k=5"
    curl http://127.0.0.1:7860/v1/search -d '{"queries": ["why is the sky blue", "what is rba"], "k": 5}'
    curl http://127.0.0.1:7860/v1/info
    from gradio_client import Client
    Client("http://127.0.0.1:7860/").predict("why is the sky blue", 5, api_name="/search")

With no model given, the demo index (the zero-shot transformer tower over `demo/passages.jsonl`) is
built at first start and cached under `$TWOTOWERS_CACHE` (default `~/.cache/twotowers`), keyed by
the model's fingerprint and the corpus hash, so a changed model or corpus rebuilds it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from twotowers.cli import ArgumentParser, run_main

# The app's public functions, re-exported: tests, scripts and bench/app.py use `app.search`, `app.load_engine`, ...
from webapp.actions import SaveError, add_passages, search, search_many
from webapp.demo import DEMO_PASSAGES, DEMO_QUERIES, demo_model, demo_queries, load_demo_index, read_demo_corpus
from webapp.engine import Engine, get_engine, load_engine, set_engine, set_save_dir
from webapp.inputs import (FUSIONS, MAX_BATCH, MAX_K, MAX_PASSAGE_CHARS, MAX_QUERY_CHARS, MAX_UPLOAD_PASSAGES,
                           MODES, InputError, assign_ids, clean_k, clean_query, parse_passages)
from webapp.render import highlight, query_terms, render_results
from webapp.ui import CSS, api_search, api_search_batch, build_demo, serve, ui_add, ui_search


__all__ = ["CSS", "DEMO_PASSAGES", "DEMO_QUERIES", "FUSIONS", "MAX_BATCH", "MAX_K", "MAX_PASSAGE_CHARS",
           "MAX_QUERY_CHARS", "MAX_UPLOAD_PASSAGES", "MODES", "Engine", "InputError", "SaveError", "add_passages",
           "api_search", "api_search_batch", "assign_ids", "build_demo", "clean_k", "clean_query",
           "demo_model", "demo_queries", "get_engine", "highlight", "load_demo_index", "load_engine", "main",
           "parse_passages", "query_terms", "read_demo_corpus", "render_results", "search", "search_many",
           "serve", "set_engine", "set_save_dir", "ui_add", "ui_search"]


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(prog="python app.py", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-repo", help="Hub repo with the model and its index (default: $TWOTOWERS_MODEL_REPO "
                                        "unless --model is given)")
    p.add_argument("--revision", default=os.environ.get("TWOTOWERS_MODEL_REVISION") or None,
                   help="pin a revision (commit, branch or tag) of --model-repo (default: $TWOTOWERS_MODEL_REVISION, "
                        "which `hub deploy-space` sets)")
    p.add_argument("--model", help="local model dir (save_pretrained); without --index, indexes the demo corpus")
    p.add_argument("--index", help="local index dir (PassageIndex.save) built by --model")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the index files' checksums at start (an index you have just built or verified)")
    p.add_argument("--host", default=None, help="address to bind (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--allow-uploads", action="store_true",
                   help="show the 'Your own passages' tab (local use only; off on the public Space); added passages "
                        "live in memory for the session unless --save-uploads says where to keep them")
    p.add_argument("--save-uploads", metavar="DIR",
                   help="save the index with every added passage into DIR (implies --allow-uploads): an empty or new "
                        "directory, or the --index being served to update it in place; nothing else is replaced")
    p.add_argument("--concurrency", type=int, default=int(os.environ.get("TWOTOWERS_CONCURRENCY", "4")),
                   help="searches served in parallel, by the Gradio queue and by the /v1 routes each (default 4)")
    args = p.parse_args(argv)
    if args.model_repo and (args.model or args.index):
        p.error("give either --model-repo or --model/--index, not both")
    if args.concurrency < 1:
        p.error(f"--concurrency must be >= 1, got {args.concurrency}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if not (args.model_repo or args.model or args.index):
        args.model_repo = os.environ.get("TWOTOWERS_MODEL_REPO") or None  # what the Space sets
    t0 = time.perf_counter()
    try:
        engine = load_engine(args.model_repo, args.revision, args.model, args.index, verify=args.verify,
                             save_uploads=args.save_uploads)
    except (OSError, ValueError) as e:
        raise ValueError(f"could not load the model or index: {e}") from None
    logging.getLogger("app").info(f"loaded in {time.perf_counter() - t0:.1f} s: {json.dumps(engine.info())}")
    serve(engine, args.host, args.port, args.allow_uploads or args.save_uploads is not None, args.concurrency)


if __name__ == "__main__":
    sys.exit(run_main(main))
