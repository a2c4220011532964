"""The twotowers search app (Gradio): type a question, get the passages the towers find.

    python app.py                                  # demo corpus + zero-shot MiniLM, no network needed
    python app.py --model-repo OWNER/NAME          # model + prebuilt index from the Hub
    TWOTOWERS_MODEL_REPO=OWNER/NAME python app.py  # the same (what the Space sets)
    python app.py --model DIR --index DIR --allow-uploads   # local dirs; add your own passages

The model and index are loaded once at start. `search(query, k)` is a plain function (tests import
it); the UI and the API endpoints `/search` and `/search_batch` go through it:

    from gradio_client import Client
    Client("http://127.0.0.1:7860/").predict("why is the sky blue", 5, api_name="/search")

With no model given, the demo index (the zero-shot transformer tower over `demo/passages.jsonl`) is
built at first start and cached under `$TWOTOWERS_CACHE` (default `~/.cache/twotowers`), keyed by
the model's fingerprint and the corpus hash, so a changed model or corpus rebuilds it.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path


ROOT = Path(__file__).resolve().parent
DEMO_PASSAGES = ROOT / "demo" / "passages.jsonl"
DEMO_QUERIES = ROOT / "demo" / "queries.json"

MAX_QUERY_CHARS = 1000   # queries are truncated to 64 tokens anyway; longer input is a mistake
MAX_K = 100
MAX_BATCH = 64           # queries per /search_batch call
MAX_UPLOAD_PASSAGES = 20_000
MAX_PASSAGE_CHARS = 20_000
MODES = ("dense", "keyword", "hybrid")
FUSIONS = ("score", "rrf")


# -- loading ---------------------------------------------------------------------------------------
class _RWLock:
    """Many searches at once, or one writer (adding passages) alone."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False

    def read(self):
        return _Held(self, write=False)

    def write(self):
        return _Held(self, write=True)

    def _acquire(self, write: bool):
        with self._cond:
            if write:
                self._cond.wait_for(lambda: not self._writing and self._readers == 0)
                self._writing = True
            else:
                self._cond.wait_for(lambda: not self._writing)
                self._readers += 1

    def _release(self, write: bool):
        with self._cond:
            if write:
                self._writing = False
            else:
                self._readers -= 1
            self._cond.notify_all()


class _Held:
    def __init__(self, lock: _RWLock, write: bool):
        self.lock, self.write = lock, write

    def __enter__(self):
        self.lock._acquire(self.write)

    def __exit__(self, *exc):
        self.lock._release(self.write)


@dataclass
class Engine:
    """What the app serves: a model, its passage index, and where to save added passages."""

    model: object                 # twotowers.TwoTowers
    index: object                 # twotowers.PassageIndex
    model_name: str               # where the model came from, for the info line
    index_name: str
    save_dir: Path | None = None  # where `add_passages` saves the grown index
    lock: _RWLock = field(default_factory=_RWLock)

    @property
    def has_keyword(self) -> bool:
        """Whether the index has a BM25 side, i.e. keyword and hybrid modes work."""
        return getattr(self.index, "keyword", None) is not None

    def info(self) -> dict:
        return {"model": self.model_name, "tower": self.model.tower_name, "dim": self.model.dim, "index": self.index_name,
                "passages": len(self.index), "keyword": self.has_keyword}


def cache_root() -> Path:
    """`$TWOTOWERS_CACHE`, else `$XDG_CACHE_HOME/twotowers`, else `~/.cache/twotowers`."""
    if os.environ.get("TWOTOWERS_CACHE"):
        return Path(os.environ["TWOTOWERS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "twotowers"


def read_demo_corpus(path: Path = DEMO_PASSAGES) -> tuple[list[str], list[str], str]:
    """demo/passages.jsonl -> (ids, texts, sha256 of the file)."""
    data = path.read_bytes()
    ids, texts = parse_passages(path.name, data)
    if None in ids:
        raise ValueError(f"{path}: every demo passage needs an id")
    return ids, texts, hashlib.sha256(data).hexdigest()


def demo_queries(path: Path = DEMO_QUERIES) -> list[dict]:
    """[{"query": ..., "expected": passage id}, ...] shipped with the demo corpus."""
    return json.loads(path.read_text(encoding="utf-8"))


def demo_model():
    """The zero-shot default: an untrained transformer tower is all-MiniLM-L6-v2 as it ships."""
    from twotowers import TwoTowers

    return TwoTowers(tower="transformer", projection_dim=None).eval()


def load_demo_index(model, cache: Path | None = None, corpus: Path = DEMO_PASSAGES, log=print):
    """The demo corpus indexed by `model`: loaded from the cache, or built and cached.

    The cache dir is named by the model fingerprint and the corpus hash, so a stale index is never
    loaded; one that fails to load (half-written, old format) is rebuilt.
    """
    from twotowers import PassageIndex

    ids, texts, corpus_hash = read_demo_corpus(corpus)
    parent = (cache or cache_root()) / "demo-index"
    target = parent / f"{model.fingerprint()[:16]}-{corpus_hash[:16]}"
    if target.is_dir():
        try:
            index = PassageIndex.load(target, model=model)
            if len(index) == len(ids):
                return index, target
            log(f"cached demo index {target} holds {len(index)} passages, expected {len(ids)}: rebuilding")
        except Exception as e:  # noqa: BLE001 - any broken cache is rebuilt, never fatal
            log(f"cached demo index {target} did not load ({type(e).__name__}: {e}): rebuilding")
    t0 = time.perf_counter()
    log(f"building the demo index: {len(ids)} passages (first start only) ...")
    index = PassageIndex.build(model, ids, texts, keyword=True, show_progress=False)
    parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target, then rename: a crash never leaves a half-written cache entry.
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=parent))
    try:
        index.save(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        log(f"could not cache the demo index in {parent} ({e}); it will be rebuilt next start")
    for old in parent.iterdir():
        # Another model's entry for this corpus stays (switching models back needs no rebuild); an
        # entry for an older corpus, or a build that crashed over an hour ago, is dead weight.
        crashed = old.name.startswith(".building-") and time.time() - old.stat().st_mtime > 3600
        stale = not old.name.startswith(".") and not old.name.endswith(corpus_hash[:16])
        if old.is_dir() and old != target and (crashed or stale):
            shutil.rmtree(old, ignore_errors=True)
    log(f"demo index built in {time.perf_counter() - t0:.1f} s, cached in {target}")
    return index, target


def load_engine(model_repo: str | None = None, revision: str | None = None, model_dir: str | None = None,
                index_dir: str | None = None, cache: Path | None = None, model=None, log=print) -> Engine:
    """Load what the app serves, once: a Hub repo, local dirs, or the embedded demo.

    `model` (a TwoTowers) overrides the demo's zero-shot model, e.g. a small one in tests.
    """
    from twotowers import PassageIndex, TwoTowers
    from twotowers.pretrained import INDEX_SUBFOLDER, load_pretrained

    if model_repo:
        # One snapshot of one revision holds both, so the index always matches the model.
        log(f"loading model and index from the Hub repo {model_repo}{'@' + revision if revision else ''} ...")
        model, index = load_pretrained(model_repo, revision=revision)
        return Engine(model, index, model_repo, f"{model_repo} (prebuilt)", cache_root() / "my-index")
    if index_dir and not model_dir:
        raise ValueError("--index needs --model (the model whose passage tower built it)")
    for flag, d in (("--model", model_dir), ("--index", index_dir)):
        if d and not Path(d).is_dir():
            raise FileNotFoundError(f"{flag} {d}: no such directory" + (" (for a Hub repo use --model-repo)" if flag == "--model" else ""))
    if model_dir and not index_dir and (Path(model_dir) / INDEX_SUBFOLDER).is_dir():
        index_dir = str(Path(model_dir) / INDEX_SUBFOLDER)  # a `hub push --dry-run` tree: model + index/
    if model_dir:
        model = TwoTowers.from_pretrained(model_dir)
        name = str(model_dir)
    elif model is None:
        log("loading the zero-shot transformer tower (all-MiniLM-L6-v2) ...")
        model = demo_model()
        name = "all-MiniLM-L6-v2, zero-shot (untrained transformer tower)"
    else:
        name = f"{model.tower_name} tower (given)"
    if index_dir:
        index = PassageIndex.load(index_dir, model=model)
        return Engine(model, index, name, str(index_dir), Path(index_dir))
    index, where = load_demo_index(model, cache, log=log)
    return Engine(model, index, name, f"demo corpus ({DEMO_PASSAGES.relative_to(ROOT)})",
                  (cache or cache_root()) / "my-index")


_ENGINE: Engine | None = None
_ENGINE_LOCK = threading.Lock()


def set_engine(engine: Engine | None) -> None:
    """Make `engine` the one `search` and the UI use."""
    global _ENGINE
    _ENGINE = engine


def get_engine() -> Engine:
    """The loaded engine; the embedded demo is loaded on first use if nothing was set."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = load_engine()
        return _ENGINE


# -- input checks ----------------------------------------------------------------------------------
class InputError(ValueError):
    """Bad input from a user: the message says what to change."""


def clean_query(query) -> str:
    """Validate one query -> the text to search. Control characters become spaces; emoji stay."""
    if query is None:
        raise InputError("Enter a query: it is empty.")
    if not isinstance(query, str):
        raise InputError(f"The query must be text, got {type(query).__name__}.")
    if len(query) > MAX_QUERY_CHARS:
        raise InputError(f"The query is too long: {len(query):,} characters; the limit is {MAX_QUERY_CHARS:,}.")
    # Cc: control characters (NUL, escape, ...); Cs: lone surrogates, which no encoder accepts.
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cs") else c for c in query)
    text = " ".join(text.split())
    if not text:
        raise InputError("Enter a query: it is empty (only spaces or control characters).")
    return text


def clean_k(k) -> int:
    """top-k: a whole number from 1 to MAX_K (floats like 5.0 and strings like "5" are accepted)."""
    value = k
    if isinstance(k, str):
        try:
            value = float(k.strip())
        except ValueError:
            raise InputError(f"k must be a whole number from 1 to {MAX_K}, got {k!r}.") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (float("inf"), float("-inf")):
        raise InputError(f"k must be a whole number from 1 to {MAX_K}, got {k!r}.")
    if value != int(value):
        raise InputError(f"k must be a whole number from 1 to {MAX_K}, got {k!r}.")
    value = int(value)
    if not 1 <= value <= MAX_K:
        raise InputError(f"k must be from 1 to {MAX_K}, got {value:,}.")
    return value


def clean_mode(mode, alpha, fusion, engine: Engine) -> tuple[str, float, str]:
    mode = (mode or "dense").strip().lower() if isinstance(mode, str) else mode
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
    if mode != "dense" and not engine.has_keyword:
        raise InputError(f"mode {mode!r} needs an index with a keyword (BM25) side; this one has none.")
    try:
        alpha = float(0.5 if alpha is None else alpha)
    except (TypeError, ValueError):
        raise InputError(f"alpha (the semantic weight) must be a number from 0 to 1, got {alpha!r}.") from None
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha (the semantic weight) must be from 0 to 1, got {alpha}.")
    fusion = fusion or "score"
    if fusion not in FUSIONS:
        raise InputError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}.")
    return mode, alpha, fusion


# -- search ----------------------------------------------------------------------------------------
def _hit_dict(rank: int, hit) -> dict:
    def num(x):
        return None if x is None else round(float(x), 6)

    return {"rank": rank, "id": str(hit.id), "score": num(hit.score), "text": hit.text,
            "dense_score": num(getattr(hit, "dense_score", None)),
            "keyword_score": num(getattr(hit, "keyword_score", None))}


def search_many(queries: list, k=10, mode="dense", alpha=0.5, fusion="score", engine: Engine | None = None) -> list[list[dict]]:
    """Several queries in one encode -> per query, a ranked list of result dicts (see `search`)."""
    engine = engine or get_engine()
    if not isinstance(queries, (list, tuple)):
        raise InputError(f"queries must be a list of strings, got {type(queries).__name__}.")
    if not queries:
        raise InputError("queries is empty: give at least one query.")
    if len(queries) > MAX_BATCH:
        raise InputError(f"too many queries: {len(queries)}; the limit is {MAX_BATCH} per call.")
    texts = []
    for i, q in enumerate(queries):
        try:
            texts.append(clean_query(q))
        except InputError as e:
            raise InputError(f"query {i + 1}: {e}") from None
    k = clean_k(k)
    mode, alpha, fusion = clean_mode(mode, alpha, fusion, engine)
    with engine.lock.read():
        hits = engine.index.search(texts, k=k, mode=mode, alpha=alpha, fusion=fusion)
    return [[_hit_dict(r + 1, h) for r, h in enumerate(row)] for row in hits]


def search(query: str, k=10, mode="dense", alpha=0.5, fusion="score", engine: Engine | None = None) -> list[dict]:
    """One query -> ranked results: [{rank, id, score, text, dense_score, keyword_score}, ...].

    `mode` is "dense" (the towers), "keyword" (BM25) or "hybrid"; `alpha` is the semantic weight
    of hybrid (0 = keyword only, 1 = towers only). Bad input raises `InputError` with a message
    meant for the user.
    """
    return search_many([query], k, mode, alpha, fusion, engine)[0]


# -- rendering -------------------------------------------------------------------------------------
_WORD = re.compile(r"\w+")
_STOP = frozenset(  # common English function words: not worth a highlight
    "a about above after again against all am an and any are as at be because been before being below between "
    "both but by can could did do does doing down during each few for from further had has have having he her "
    "here hers him his how i if in into is it its itself just me more most much many my no nor not now of off "
    "on once only or other our ours out over own same she should so some such than that the their theirs them "
    "then there these they this those through to too under until up very was we were what when where which "
    "while who whom why will with would you your yours".split())


def _norm(word: str) -> str:
    w = word.lower()
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def query_terms(query: str) -> set[str]:
    """The words of a query worth highlighting: no stopwords, no single letters."""
    return {_norm(w) for w in _WORD.findall(query) if len(w) > 1 and w.lower() not in _STOP}


def highlight(text: str, terms: set[str]) -> str:
    """HTML-escaped `text` with each word matching a query term wrapped in <mark>."""
    out, pos = [], 0
    for m in _WORD.finditer(text):
        if _norm(m.group()) in terms:
            out.append(html.escape(text[pos:m.start()]))
            out.append(f"<mark>{html.escape(m.group())}</mark>")
            pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def render_results(query: str, results: list[dict], mode: str) -> str:
    """Result cards as HTML; every piece of user or corpus text is escaped."""
    if not results:
        return '<div class="tt-empty">No passages matched.</div>'
    terms = query_terms(query)
    cards = []
    for r in results:
        text = r["text"] if len(r["text"]) <= 3000 else r["text"][:3000] + " …"
        if mode == "hybrid":
            parts = [f"combined {r['score']:.3f}"]
            parts.append("dense " + ("–" if r["dense_score"] is None else f"{r['dense_score']:.3f}"))
            parts.append("keyword " + ("–" if r["keyword_score"] is None else f"{r['keyword_score']:.2f}"))
            scores = " · ".join(parts)
        else:
            scores = f"{'BM25' if mode == 'keyword' else 'cosine'} {r['score']:.3f}"
        cards.append(
            f'<div class="tt-hit" data-id="{html.escape(r["id"])}">'
            f'<div class="tt-meta"><span class="tt-rank">#{r["rank"]}</span> '
            f'<span class="tt-score">{scores}</span> <code class="tt-id">{html.escape(r["id"])}</code></div>'
            f'<div class="tt-text">{highlight(text, terms)}</div></div>')
    return '<div class="tt-results">' + "".join(cards) + "</div>"


def _error_html(message: str) -> str:
    return f'<div class="tt-error" role="alert">{html.escape(message)}</div>'


def info_markdown(engine: Engine) -> str:
    i = engine.info()
    kw = "dense + keyword (BM25)" if i["keyword"] else "dense only"
    return (f"**Model:** {i['model']} · tower `{i['tower']}` · {i['dim']}-d vectors  \n"
            f"**Index:** {i['index']} · **{i['passages']:,} passages** · {kw}")


# -- UI and API handlers ---------------------------------------------------------------------------
def _gr():
    """gradio, imported on first use: `import app` stays light for tests and scripts."""
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


# -- your own passages -----------------------------------------------------------------------------
def _decode_lines(name: str, data: bytes) -> list[str]:
    lines = data.split(b"\n")
    out = []
    for i, raw in enumerate(lines, 1):
        try:
            out.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as e:
            raise InputError(f"{name} line {i}: not UTF-8 text ({e.reason} at byte {e.start}).") from None
    if out and out[0].startswith("\ufeff"):
        out[0] = out[0][1:]  # a byte-order mark from some editors
    return out


def _check_passage(name: str, lineno: int, text) -> str:
    if not isinstance(text, str):
        raise InputError(f"{name} line {lineno}: the text must be a string, got {type(text).__name__}.")
    text = " ".join("".join(" " if unicodedata.category(c) in ("Cc", "Cs") else c for c in text).split())
    if not text:
        raise InputError(f"{name} line {lineno}: the passage text is empty.")
    if len(text) > MAX_PASSAGE_CHARS:
        raise InputError(f"{name} line {lineno}: the passage is {len(text):,} characters; the limit is {MAX_PASSAGE_CHARS:,}.")
    return text


def parse_passages(name: str, data: bytes | str) -> tuple[list[str | None], list[str]]:
    """A .txt, .tsv or .jsonl file (or pasted text, name "pasted text") -> (ids, texts), all checked.

    .txt / pasted text: one passage per non-empty line, id None (see `assign_ids`). .tsv: `id<TAB>text` per line. .jsonl: one `{"id": ..., "text": ...}` object per line
    ("id" optional). Any bad line raises `InputError` naming the file and line; nothing is returned.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", errors="surrogatepass")
    suffix = Path(name).suffix.lower()
    if suffix not in (".txt", ".tsv", ".jsonl") and name != "pasted text":
        raise InputError(f"{name}: unsupported file type {suffix or '(none)'}; use .txt, .tsv or .jsonl.")
    ids, texts, seen = [], [], {}
    for lineno, line in enumerate(_decode_lines(name, data), 1):
        if not line.strip():
            continue
        if suffix == ".tsv":
            if "\t" not in line:
                raise InputError(f"{name} line {lineno}: expected id<TAB>text, found no tab.")
            pid, text = line.split("\t", 1)
            pid = pid.strip()
        elif suffix == ".jsonl":
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{name} line {lineno}: not valid JSON ({e.msg} at column {e.colno}).") from None
            if not isinstance(row, dict) or "text" not in row:
                raise InputError(f'{name} line {lineno}: expected an object with a "text" field.')
            pid, text = row.get("id"), row["text"]
            if pid is not None and (isinstance(pid, bool) or not isinstance(pid, (str, int))):
                raise InputError(f'{name} line {lineno}: "id" must be a string or an integer.')
            pid = None if pid is None else str(pid).strip()
        else:
            pid, text = None, line
        if pid is not None:
            if not pid:
                raise InputError(f"{name} line {lineno}: the id is empty.")
            if pid in seen:
                raise InputError(f"{name} line {lineno}: id {pid!r} repeats line {seen[pid]}.")
            seen[pid] = lineno
        ids.append(pid)
        texts.append(_check_passage(name, lineno, text))
        if len(texts) > MAX_UPLOAD_PASSAGES:
            raise InputError(f"{name}: more than {MAX_UPLOAD_PASSAGES:,} passages; split the file.")
    if not texts:
        raise InputError(f"{name}: no passages found (the file is empty).")
    return ids, texts


def assign_ids(ids: list[str | None], taken: set[str], prefix: str = "mine") -> list[str]:
    """Fill the missing ids with `{prefix}-N`, skipping every id in `taken` or in `ids`."""
    used = set(taken) | {i for i in ids if i is not None}
    out, n = [], 0
    for pid in ids:
        if pid is None:
            n += 1
            while f"{prefix}-{n}" in used:
                n += 1
            pid = f"{prefix}-{n}"
            used.add(pid)
        out.append(pid)
    return out


def _ids_in_index(index, wanted: set[str], prefix: str) -> set[str]:
    """Which of `wanted`, and which `{prefix}-*` ids, the index already holds (one pass, little memory)."""
    start = prefix + "-"
    return {p for p in map(str, getattr(index, "ids", ())) if p in wanted or p.startswith(start)}


def add_passages(name: str, data: bytes | str, engine: Engine | None = None) -> str:
    """Parse, check against the index, encode, add and save. Returns a summary line.

    Everything is checked before the index is touched: a bad file raises `InputError` and leaves
    the index as it was.
    """
    engine = engine or get_engine()
    with engine.lock.write():
        ids, texts = parse_passages(name, data)
        existing = _ids_in_index(engine.index, {i for i in ids if i is not None}, "mine")
        dup = [p for p in ids if p is not None and p in existing]
        if dup:
            raise InputError(f"{name}: id {dup[0]!r} is already in the index ({len(dup)} such ids); use new ids.")
        ids = assign_ids(ids, existing)
        t0 = time.perf_counter()
        engine.index.add(ids, texts)
        where = ""
        if engine.save_dir is not None:
            engine.save_dir.mkdir(parents=True, exist_ok=True)
            engine.index.save(engine.save_dir)
            where = f" Saved to `{engine.save_dir}`."
        return (f"Added {len(texts):,} passages from {name} in {time.perf_counter() - t0:.1f} s; "
                f"the index now holds {len(engine.index):,}.{where}")


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


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-repo", help="Hub repo with the model and its index (default: $TWOTOWERS_MODEL_REPO "
                                        "unless --model is given)")
    p.add_argument("--revision", default=os.environ.get("TWOTOWERS_MODEL_REVISION") or None,
                   help="pin a revision (commit, branch or tag) of --model-repo")
    p.add_argument("--model", help="local model dir (save_pretrained); without --index, indexes the demo corpus")
    p.add_argument("--index", help="local index dir (PassageIndex.save) built by --model")
    p.add_argument("--host", default=None, help="address to bind (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--allow-uploads", action="store_true",
                   help="show the 'Your own passages' tab (local use only; off on the public Space)")
    p.add_argument("--concurrency", type=int, default=int(os.environ.get("TWOTOWERS_CONCURRENCY", "4")),
                   help="searches served in parallel (default 4)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.model_repo and (args.model or args.index):
        raise SystemExit("give either --model-repo or --model/--index, not both")
    if not (args.model_repo or args.model or args.index):
        args.model_repo = os.environ.get("TWOTOWERS_MODEL_REPO") or None  # what the Space sets
    t0 = time.perf_counter()
    try:
        engine = load_engine(args.model_repo, args.revision, args.model, args.index)
    except (OSError, ValueError) as e:
        raise SystemExit(f"could not load the model or index: {e}") from None
    print(f"loaded in {time.perf_counter() - t0:.1f} s: {json.dumps(engine.info())}", flush=True)
    serve(engine, args.host, args.port, args.allow_uploads, args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
