"""The Gradio app that serves a bundle.

``build_app(bundle)`` returns a ``gr.Blocks``; ``serve(bundle)`` launches it. The app calls the
same Python API as the CLI and holds no search logic of its own. Document text is always
HTML-escaped (only ``<mark>`` highlighting is added), and the app serves no files.
"""

from __future__ import annotations

import html
import json
import logging
from typing import Any

from spacerini.errors import SpaceriniError

logger = logging.getLogger(__name__)

PAGE_SIZE = 10
#: Requests served at once; further ones queue (keeps memory and JVM use bounded).
CONCURRENCY = 4


def render_hits(hits: list[Any], *, total_hint: str = "") -> str:
    """Renders hits as HTML. Snippets are already escaped with ``<mark>`` added; the rest is escaped here."""
    if not hits:
        return "<p class='sp-empty'>No results.</p>"
    parts = [f"<div class='sp-results'>{html.escape(total_hint)}"]
    for h in hits:
        title = h.fields.get("title") or h.meta.get("path") or h.docid
        meta = []
        for key in ("package", "repo", "licence", "owner", "language", "swhid"):
            value = h.meta.get(key)
            if value:
                if key == "repo" and str(value).startswith(("https://", "http://")):
                    meta.append(
                        f"<a href='{html.escape(str(value), quote=True)}' target='_blank' rel='noopener noreferrer'>"
                        f"{html.escape(str(value))}</a>"
                    )
                else:
                    meta.append(f"<span class='sp-{key}'>{html.escape(str(value))}</span>")
        parts.append(
            "<div class='sp-hit'>"
            f"<div class='sp-head'><b>{h.rank}.</b> <code>{html.escape(str(title))}</code> "
            f"<small>id {html.escape(h.docid)} · score {h.score:.4f}</small></div>"
            f"<div class='sp-snippet'><pre>{h.snippet}</pre></div>"
            f"<div class='sp-meta'><small>{' · '.join(meta)}</small></div>"
            "</div>"
        )
    parts.append("</div>")
    return "\n".join(parts)


def build_app(bundle: Any) -> Any:
    """Builds the Gradio search page for ``bundle``.

    Args:
        bundle: An opened :class:`~spacerini.bundle.Bundle`.

    Returns:
        A ``gr.Blocks`` app with a named ``/search`` API endpoint.
    """
    import gradio as gr

    ranked = [b for b in ("bm25", "dense", "hybrid", "exact") if b in bundle.backends]
    default = bundle.default_backend()

    def do_search(query: str, backend: str, page: int) -> tuple[str, int, str]:
        page = max(1, int(page or 1))
        try:
            hits = bundle.search(query, k=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, backend=backend or default)
        except SpaceriniError as exc:
            raise gr.Error(str(exc)) from exc
        label = f"Page {page}"
        return render_hits(hits), page, label

    def api_search(query: str, backend: str = "", k: int = 10, offset: int = 0) -> str:
        """Returns the hits as a JSON string.

        A string rather than a JSON component: gradio_client treats any dict with a "path" key
        (which code provenance has) as a file to download.
        """
        try:
            hits = bundle.search(query, k=int(k), offset=int(offset), backend=backend or default)
        except SpaceriniError as exc:
            raise gr.Error(str(exc)) from exc
        return json.dumps({"query": query, "k": int(k), "offset": int(offset), "hits": [h.to_dict() for h in hits]})

    title = f"Spacerini · {bundle.path.name}"
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"## {html.escape(title)}\n{len(bundle):,} documents · backends: {', '.join(bundle.backends)}")
        with gr.Row():
            query = gr.Textbox(label="Query", placeholder="Search the corpus…", scale=5, max_length=10_000)
            backend = gr.Dropdown(choices=ranked, value=default, label="Backend", scale=1)
        with gr.Row():
            go = gr.Button("Search", variant="primary", elem_id="sp-search")
            prev_btn = gr.Button("◀ Previous", elem_id="sp-prev")
            next_btn = gr.Button("Next ▶", elem_id="sp-next")
            page_label = gr.Markdown("Page 1", elem_id="sp-page")
        page = gr.State(1)
        results = gr.HTML(elem_id="sp-results")

        go.click(lambda q, b: do_search(q, b, 1), [query, backend], [results, page, page_label], api_visibility="private")
        query.submit(lambda q, b: do_search(q, b, 1), [query, backend], [results, page, page_label], api_visibility="private")
        next_btn.click(
            lambda q, b, p: do_search(q, b, p + 1), [query, backend, page], [results, page, page_label], api_visibility="private"
        )
        prev_btn.click(
            lambda q, b, p: do_search(q, b, max(1, p - 1)), [query, backend, page], [results, page, page_label], api_visibility="private"
        )
        api_q = gr.Textbox(visible=False)
        api_b = gr.Textbox(visible=False)
        api_k = gr.Number(visible=False, value=10, precision=0)
        api_o = gr.Number(visible=False, value=0, precision=0)
        api_out = gr.Textbox(visible=False)
        api_btn = gr.Button(visible=False)
        api_btn.click(api_search, [api_q, api_b, api_k, api_o], api_out, api_name="search")
    app.queue(default_concurrency_limit=CONCURRENCY, max_size=256)
    return app


def serve(bundle: Any, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> Any:
    """Warms the bundle's default searcher, then launches the app.

    Args:
        bundle: An opened bundle.
        host: Interface to listen on (loopback by default).
        port: TCP port.
        block: Block until interrupted (False returns the running app, for tests).
    """
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    bundle.searcher(bundle.default_backend())  # start the JVM and map the index before the first request
    app = build_app(bundle)
    logger.info("serving %s on http://%s:%d", bundle.path, host, port)
    app.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        show_error=True,
        share=False,
        ssr_mode=False,
        max_file_size="1mb",
        quiet=False,
    )
    return app
