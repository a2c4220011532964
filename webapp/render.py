"""Result cards as HTML: every piece of user or corpus text escaped, the query's words highlighted."""

from __future__ import annotations

import html
import re

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


def info_markdown(engine) -> str:
    """The info line above the page: model, tower, dim, index, passage count, modes."""
    i = engine.info()
    kw = "dense + keyword (BM25), hybrid by default" if i["keyword"] else "dense only"
    return (f"**Model:** {i['model']} · tower `{i['tower']}` · {i['dim']}-d vectors  \n"
            f"**Index:** {i['index']} · **{i['passages']:,} passages** · {kw}")
