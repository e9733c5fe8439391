"""Rendering of the Compare tab: one question asked of every corpus (:meth:`spacerini.corpora.Corpora.compare`).

Everything shown is escaped (:func:`spacerini.app.render.esc`); a top hit's snippet arrives
escaped with ``<mark>`` highlighting, redacted by the corpus's service where it redacts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spacerini.app.render import esc, provenance_html


def counts_frame(result: Mapping[str, Any]) -> Any:
    """The exact counts as a ``pandas.DataFrame`` (corpus, count) for the bar chart; a corpus
    without an exact backend is left out (its column in the table says why)."""
    import pandas as pd

    rows = [(c["name"], int(c["count"])) for c in result["corpora"] if c["count"] is not None]
    return pd.DataFrame(rows, columns=["corpus", "count"])


def render_comparison(result: Mapping[str, Any]) -> str:
    """The table: one column per corpus, one row per answer (count, top hit, coverage, owner)."""
    cols = list(result["corpora"])
    head = "".join(f"<th scope='col'>{esc(c['name'])}</th>" for c in cols)

    def cell(c: Mapping[str, Any], key: str, body: str) -> str:
        if key in (c.get("missing") or {}):
            return f"<td class='sp-missing'><i>not available: {esc(c['missing'][key])}</i></td>"
        if key in (c.get("errors") or {}):
            return f"<td class='sp-refused'><i>{esc(c['errors'][key])}</i></td>"
        return f"<td>{body}</td>"

    def top(c: Mapping[str, Any]) -> str:
        hit = c.get("top_hit")
        if not hit:
            return "<i>no hit</i>"
        title = (hit.get("fields") or {}).get("title") or ""
        return (
            f"<b>{esc(hit['docid'])}</b> <small>({esc(c.get('backend') or '')}, score {float(hit['score']):.3f})</small>"
            + (f"<br>{esc(title)}" if title else "")
            + f"<div class='sp-snippet'><pre>{hit.get('snippet') or ''}</pre></div>"
            + provenance_html(hit.get("meta") or {})
        )

    def owner(c: Mapping[str, Any]) -> str:
        if not c.get("owners"):
            return "<i>no matching owner</i>"
        return f"{int(c['owner_docs'] or 0):,} documents of " + ", ".join(esc(o) for o in c["owners"])

    rows = [
        ("Exact count", "count", lambda c: f"{int(c['count']):,}" if c["count"] is not None else ""),
        ("Top hit", "top_hit", top),
        ("Membership coverage", "coverage", lambda c: f"{100 * float(c['coverage'] or 0):.1f} %"),
        ("Owner lookup", "owner", owner),
    ]
    body = "".join(
        f"<tr><th scope='row'>{label}</th>" + "".join(cell(c, key, fn(c)) for c in cols) + "</tr>"
        for label, key, fn in rows
    )
    gens = " · ".join(f"{esc(c['name'])}: generation {int(c['generation'])}" for c in cols)
    return (
        f"<div class='sp-compare'><p>Query <code>{esc(result['query'])}</code></p>"
        f"<table class='sp-compare-table'><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<p><small>{gens}</small></p></div>"
    )
