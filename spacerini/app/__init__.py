"""The Gradio app that serves a bundle.

``build_app(bundle)`` returns a ``gr.Blocks`` with one tab per capability the bundle has:

* **Search** (bm25 / dense / hybrid / exact): highlighted snippets, stored fields, provenance
  (repo, path, licence, SWHID) with links, pagination, and "flag this result";
* **Exact**: occurrence count and paginated snippets (exact backend);
* **Membership**: which spans of a pasted text are in the corpus, with their sources;
* **Am I in the corpus?**: an owner's repos and files, how to opt out, and a form that files an
  opt-out request (pending until the operator applies it: ``spacerini optout BUNDLE --requests``);
* **Trace**: attribution of generated code (exact backend, when ``spacerini.model`` is present);
* **Stats**: counts, sizes, licence and language breakdowns, preprocessing reports.

Every capability is also a named API endpoint (``/search``, ``/count``, ``/find``, ``/member``,
``/owner``, ``/optout_request``, ``/trace``, ``/stats``) answering a JSON *string*: gradio_client treats any dict
with a ``"path"`` key (which code provenance has) as a file to download. :func:`serve` also
mounts plain JSON routes (``GET /api/search?q=...``, see :mod:`spacerini.app.jsonapi`) on the
same server: one round trip per call, without Gradio's queue and event stream. The page's own
Search and Exact buttons (first, previous and next page) use such a route too
(``GET /api/ui/search``, ``/api/ui/find``: the rendered page, from a ``js`` handler in the
browser): through Gradio's queue (a join, then an event stream) a click cost 1.5-2.5x a JSON
call under 16 clients (``benchmarks/RESULTS.md``, issue 16).

The app holds no search logic (see :class:`~spacerini.service.Service`), HTML-escapes all
document text (only ``<mark>`` highlighting and http(s) links are added), redacts PII on
display unless told not to, serves no files and takes no uploads. Visitors see only the app's
own one-line error messages; reports and requests are bounded and rate-limited per client.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spacerini.app.render import render_hits
from spacerini.bundle import MAX_QUERY_CHARS  # the longest query a search box takes
from spacerini.errors import SpaceriniError, one_line
from spacerini.records import to_json

if TYPE_CHECKING:  # spacerini.service imports the app's stores (spacerini.app.flags/requests)
    from spacerini.service import Service

__all__ = ["build_app", "serve", "render_hits", "PAGE_SIZE", "CONCURRENCY"]

logger = logging.getLogger(__name__)

PAGE_SIZE = 10
#: Requests served at once by Gradio's queue; further ones queue (keeps memory and JVM use
#: bounded). The JSON routes take at most this many too (:data:`JSON_CONCURRENCY`).
CONCURRENCY = 4
#: JSON calls served at once: no more than the cores. A search is mostly Python (the GIL): with
#: 16 clients on 2 cores, 4 worker threads answered 84 searches a second and 2 answered 167
#: (medians of 3 runs, load 11-13, benchmarks/RESULTS.md), the threads taking the GIL from each
#: other and from the event loop. Further calls wait their turn.
JSON_CONCURRENCY = max(1, min(CONCURRENCY, os.cpu_count() or 1))
#: Requests waiting in the queue before new ones are turned away (Gradio's queue and the JSON
#: routes each).
QUEUE_SIZE = 256
#: Sessions whose UI state is kept (oldest dropped first). Gradio keeps a copy of the page config
#: per session (~0.2 MB here) and every bare REST call opens a new session, so the default of
#: 10,000 would let memory grow by ~2 GB under API traffic.
SESSION_CAPACITY = 512
#: Gradio's queue summarises its last ``GRADIO_ANALYTICS_MAX_EVENTS`` events (10,000 by default)
#: in a pandas DataFrame after *every* event, for its monitoring page: under load that was most
#: of the server's time (tens of ms per call, growing with the events kept). Unless these
#: variables are set, the app keeps the last 1,000 events and summarises them every 1,000.
QUEUE_ANALYTICS_ENV = {"GRADIO_ANALYTICS_MAX_EVENTS": "1000", "GRADIO_ANALYTICS_CACHE_FREQUENCY": "1000"}

CSS = """
.sp-hit { border-bottom: 1px solid #ddd; padding: .4em 0; }
.sp-snippet pre, .sp-member-text { white-space: pre-wrap; word-break: break-word; margin: .2em 0; }
.sp-meta i { color: #777; font-style: normal; }
mark { background: #ffe066; }
.sp-error { color: #b00020; }
.sp-compare-table { table-layout: fixed; width: 100%; border-collapse: collapse; }
.sp-compare-table td, .sp-compare-table th { vertical-align: top; overflow-wrap: anywhere; padding: .3em; }
.sp-compare-table thead th:first-child { width: 9em; }
"""


#: What a visitor sees when something unexpected fails (the details go to the server log).
INTERNAL_ERROR = "internal error: the request failed; the details are in the server log"


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turns a SpaceriniError into ``gr.Error`` with its one-line message (HTML-escaped: Gradio
    renders it as HTML) and one log line; any other exception into :data:`INTERNAL_ERROR`, its
    traceback logged once. Gradio prints no traceback of its own for either."""
    import functools

    import gradio as gr

    from spacerini.app.jsonapi import public_message

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SpaceriniError as exc:
            logger.info("refused %s: %s", fn.__name__, one_line(exc)[:300])
            message = public_message(exc)  # without the server's paths
            raise gr.Error(html.escape(message, quote=False), print_exception=False) from None
        except Exception:  # noqa: BLE001 - logged here; the visitor sees no Python text
            logger.exception("%s failed", fn.__name__)
            raise gr.Error(INTERNAL_ERROR, print_exception=False) from None

    return wrapper


def _with_request(fn: Callable[..., Any], gr: Any) -> Callable[..., Any]:
    """Marks ``fn``'s ``request`` parameter as ``gr.Request`` so that Gradio passes the request
    (the annotations here are strings that Gradio cannot resolve, since ``gr`` is imported late)."""
    fn.__annotations__["request"] = gr.Request
    return fn


def build_app(
    bundle: Any,
    *,
    redact_pii: bool = True,
    flags_path: str | os.PathLike[str] | None = None,
    requests_path: str | os.PathLike[str] | None = None,
) -> Any:
    """Builds the Gradio app for ``bundle``, or for several corpora side by side.

    Its ``launch`` refuses uploads and serves no files (see
    :class:`~spacerini.app.jsonapi.NoFilesMiddleware`). With several corpora each tab has a
    corpus selector (default: the first corpus) and a **Compare** tab asks all of them at once.

    Args:
        bundle: An opened :class:`~spacerini.bundle.Bundle`, or a
            :class:`~spacerini.corpora.Corpora` (whose services carry their own redaction and
            report files: ``redact_pii``, ``flags_path`` and ``requests_path`` are then unused).
        redact_pii: Redact emails, keys, passwords and public IP addresses in everything the app
            shows or returns (the stored documents are not changed).
        flags_path: JSONL file for "flag this result" reports (default: a per-bundle file in
            the user-data folder; never inside the bundle).
        requests_path: JSONL file for opt-out requests (default: beside the bundle).

    Returns:
        A ``gr.Blocks`` app, queued with ``CONCURRENCY`` workers.
    """
    import gradio as gr

    corpora = _as_corpora(bundle, redact_pii, flags_path, requests_path)
    svc = corpora.service()
    caps = [c for c in _CAPS if any(c in corpora[name].capabilities for name in corpora)]
    title = f"Spacerini · {', '.join(corpora.names)}"
    redacting = [name for name in corpora if corpora[name].redact_pii]

    def header() -> str:
        return f"## {html.escape(title)}\n" + " · ".join(_summary(name, corpora[name]) for name in corpora) + (
            " · PII redacted on display" if len(redacting) == len(corpora) else
            f" · PII redacted on display in {', '.join(html.escape(n) for n in redacting)}" if redacting else ""
        )  # fmt: skip

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        heading = gr.Markdown(header())
        # Filled again on every page load, so that a page opened after an opt-out or a rebuild
        # shows the generation in use (they were fixed when the app started).
        live: list[tuple[list[Any], Callable[[], list[Any]]]] = [([heading], lambda: [header()])]
        with gr.Tabs():
            if len(corpora) > 1:
                _compare_tab(gr, corpora)
            if "search" in caps:
                _search_tab(gr, corpora)
            if "exact" in caps:
                _exact_tab(gr, corpora)
            if "member" in caps:
                _member_tab(gr, corpora)
            if "owner" in caps:
                _owner_tab(gr, corpora)
            if "trace" in caps:
                _trace_tab(gr, corpora)
            live += _stats_tab(gr, corpora)
        _api(gr, corpora, caps)

        def refresh() -> list[Any]:
            return [value for _, fill in live for value in fill()]

        app.load(
            _guard(refresh), None, [c for components, _ in live for c in components], queue=False,
            api_visibility="private",
        )  # fmt: skip
    _queue(app)
    app.spacerini_service = svc  # the default corpus's, for tests and embedding
    app.spacerini_corpora = corpora
    app.launch = _launch_without_files(app.launch, corpora)
    return app


#: The tabs' capabilities, in tab order (a tab is shown when any corpus has it).
_CAPS = ("search", "exact", "member", "owner", "trace", "stats")


def _as_corpora(bundle: Any, redact_pii: bool, flags_path: Any, requests_path: Any) -> Any:
    """``bundle`` itself when it is already a :class:`~spacerini.corpora.Corpora`, else one corpus
    served by a :class:`~spacerini.service.Service` with these settings."""
    from spacerini.app.jsonapi import as_corpora
    from spacerini.corpora import Corpora
    from spacerini.service import Service

    if isinstance(bundle, Corpora):
        return bundle
    return as_corpora(
        Service(
            bundle,
            redact_pii=redact_pii,
            flags_path=Path(flags_path) if flags_path else None,
            requests_path=Path(requests_path) if requests_path else None,
        )
    )


def _summary(name: str, svc: Any) -> str:
    bundle = svc.bundle
    return f"**{html.escape(name)}**: {len(bundle):,} documents ({', '.join(bundle.backends)})"


def _corpus_picker(gr: Any, corpora: Any, prefix: str, cap: str | None = None) -> Any:
    """The tab's corpus selector: hidden with one corpus; lists the corpora that can answer the tab."""
    names = [n for n in corpora if cap is None or cap in corpora[n].capabilities] or corpora.names
    return gr.Dropdown(
        choices=names, value=names[0], label="Corpus", visible=len(corpora) > 1, elem_id=f"{prefix}-corpus",
        scale=1, min_width=160,
    )  # fmt: skip


def _launch_without_files(launch: Callable[..., Any], corpora: Any) -> Callable[..., Any]:
    """``launch`` with :class:`~spacerini.app.jsonapi.NoFilesMiddleware` added to the server,
    Gradio's run history turned off (it would use the host's Hugging Face token for visitors), and
    the page's own routes (:func:`~spacerini.app.jsonapi.ui_routes`) unless routes are given
    (:func:`serve` gives all the JSON routes, which include them)."""
    import functools
    import inspect

    from starlette.middleware import Middleware

    from spacerini.app.jsonapi import Limiter, NoFilesMiddleware, ui_routes, unknown_endpoint_handlers

    takes_run_history = "run_history" in inspect.signature(launch).parameters

    @functools.wraps(launch)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if takes_run_history:
            # Gradio's run history (on by default) answers a visitor whose request reaches the
            # server over loopback (a local reverse proxy, a tunnel, a browser on the host) with
            # the host's own Hugging Face token: it lists, creates, reads and writes buckets with
            # it. The app records no runs and lends no token.
            kwargs["run_history"] = False
        app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
        app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), Middleware(NoFilesMiddleware)]
        app_kwargs["exception_handlers"] = {**unknown_endpoint_handlers(), **app_kwargs.get("exception_handlers", {})}
        if "routes" not in app_kwargs:
            app_kwargs["routes"] = ui_routes(corpora, limiter=Limiter(CONCURRENCY, QUEUE_SIZE))
        return launch(*args, app_kwargs=app_kwargs, **kwargs)

    return wrapper


def _queue(app: Any) -> None:
    """Queues ``app`` with the app's limits; Gradio reads its analytics settings from the
    environment when the queue is made, so :data:`QUEUE_ANALYTICS_ENV` is set just for that."""
    added = [k for k in QUEUE_ANALYTICS_ENV if k not in os.environ]
    for key in added:
        os.environ[key] = QUEUE_ANALYTICS_ENV[key]
    try:
        app.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    finally:
        for key in added:
            os.environ.pop(key, None)


# -------------------------------------------------------------------------------------- tabs
class _Pager:
    """A row with the tab's main button, ◀ Previous, Next ▶ and a page label, plus the page shown
    (a hidden number, so that the page's own script can read it)."""

    def __init__(self, gr: Any, prefix: str, go_label: str, *, go_id: str) -> None:
        with gr.Row():
            self.go = gr.Button(go_label, variant="primary", elem_id=go_id)
            self.prev = gr.Button("◀ Previous", elem_id=f"{prefix}-prev", size="sm")
            self.next = gr.Button("Next ▶", elem_id=f"{prefix}-next", size="sm")
            self.label = gr.Markdown("Page 1", elem_id=f"{prefix}-page")
        self.page = gr.Number(1, visible=False, precision=0, elem_id=f"{prefix}-page-number")

    def wire_route(self, route: str, params: list[str], inputs: list[Any], outputs: list[Any], *, submit: Any) -> None:
        """Page 1 on the button or Enter in ``submit``, then the next and previous pages (page 1 at
        least), each answered by the browser itself from the JSON route ``/api/ui/<route>``
        (:func:`_page_js`): one GET, without Gradio's queue and event stream."""
        for trigger in (self.go.click, submit.submit):
            trigger(None, [*inputs, self.page], outputs, js=_page_js(route, params, 0), api_visibility="private")
        self.next.click(None, [*inputs, self.page], outputs, js=_page_js(route, params, 1), api_visibility="private")
        self.prev.click(None, [*inputs, self.page], outputs, js=_page_js(route, params, -1), api_visibility="private")


def _page_js(route: str, params: list[str], step: int) -> str:
    """The browser-side handler of a pager button: asks ``/api/ui/<route>`` for page 1
    (``step`` 0) or the page ``step`` away from the one shown, and returns the outputs the route
    gives (``html``, ``page``, ``label``, and for search the result ids of the flag box).

    A refusal (one line from the service, e.g. an empty query) is shown in the results area,
    HTML-escaped; the page number and label are left as they were.
    """
    names = json.dumps(params)
    return f"""async (...values) => {{
  const names = {names};
  const page = {step} === 0 ? 1 : Math.max(1, Math.round(Number(values[names.length]) || 1) + ({step}));
  const root = String((window.gradio_config && window.gradio_config.root) || window.location.href).replace(/[?#].*$/, "");
  const url = new URL("api/ui/{route}", root.endsWith("/") ? root : root + "/");
  names.forEach((name, i) => url.searchParams.set(name, values[i] == null ? "" : String(values[i])));
  url.searchParams.set("page", String(page));
  let answer;
  try {{
    const response = await fetch(url, {{ headers: {{ Accept: "application/json" }} }});
    answer = await response.json();
  }} catch (error) {{
    answer = {{ error: "the server did not answer; try again" }};
  }}
  if (answer.error !== undefined) {{
    const text = String(answer.error).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    return ["<p class='sp-error'>" + text + "</p>"];
  }}
  const out = [answer.html, answer.page, answer.label];
  if (answer.ids !== undefined) {{
    out.push({{ __type__: "update", choices: answer.ids.map((id) => [id, id]), value: answer.ids.length ? answer.ids[0] : null }});
  }}
  return out;
}}"""


def search_page(corpora: Any, corpus: str, query: str, backend: str, page: Any) -> dict[str, Any]:
    """One page of the Search tab: the rendered hits, the page number, its label and the result
    ids (for the flag box). Answers ``GET /api/ui/search`` (the page's own calls).

    Raises:
        SpaceriniError: Bad input (from the service), one line.
    """
    svc = corpora.service(corpus)
    page = _page_number(page)
    if backend not in svc.ranked_backends:  # the corpus changed under a backend it lacks
        backend = ""
    result = svc.search(query, backend, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    hits = svc.hits(result)
    html_out = render_hits(hits, total_hint=f"{result['backend']} · page {page}", query=query, page=page)
    return {"html": html_out, "page": page, "label": f"Page {page}", "ids": [h.docid for h in hits]}


def find_page(corpora: Any, corpus: str, text: str, page: Any) -> dict[str, Any]:
    """One page of the Exact tab: the count and occurrences rendered, the page number and its
    label. Answers ``GET /api/ui/find``.

    Raises:
        SpaceriniError: Bad input (from the service), one line.
    """
    from spacerini.app.render import render_exact

    page = _page_number(page)
    result = corpora.service(corpus).find(text, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    html_out = render_exact(result["count"], result["hits"], page=page, page_size=PAGE_SIZE, query=text)
    return {"html": html_out, "page": page, "label": f"Page {page}"}


def _page_number(page: Any) -> int:
    """A page number from a form or query string (1 at least).

    Raises:
        QueryError: Not a whole number (a page past the last offset is refused by the service).
    """
    from spacerini.errors import QueryError

    try:
        number = int(str(page).strip() or 1)
    except ValueError:
        raise QueryError(f"the page must be a whole number, not {str(page)[:20]!r}") from None
    return max(1, number)


#: Characters that Markdown reads as markup (links, images, emphasis, code, headings, HTML).
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:])")


def markdown_text(value: Any) -> str:
    """``value`` as literal text inside a ``gr.Markdown``: HTML-escaped, then every Markdown
    character backslash-escaped, so that a document id or a reason such as
    ``![x](https://tracker/pixel.png)`` is shown as written, not rendered (an image fetched from
    another site by every visitor who flags that document, or a link)."""
    return _MARKDOWN.sub(r"\\\1", html.escape(str(value), quote=False).replace("\n", " "))


def flag_receipt(rec: Any) -> str:
    """The Markdown thanking a visitor for a report: the document id and the reason as text."""
    return f"Thank you: result {markdown_text(rec['docid'])} was flagged ({markdown_text(rec['reason'])})."


def _search_tab(gr: Any, corpora: Any) -> None:
    from spacerini.app.flags import client_key

    def flag(corpus: str, query: str, docid: str, reason: str, request: Any = None) -> str:
        rec = corpora.service(corpus).flag(query, docid or "", reason, client=client_key(request))
        return flag_receipt(rec)

    _with_request(flag, gr)

    with gr.Tab("Search", id="search"):
        with gr.Row():
            corpus = _corpus_picker(gr, corpora, "sp", "search")
            ranked = corpora.service(corpus.value).ranked_backends
            query = gr.Textbox(
                label="Query", placeholder="Search the corpus…", scale=5, max_length=MAX_QUERY_CHARS, elem_id="sp-query"
            )
            backend = gr.Dropdown(choices=ranked, value=ranked[0], label="Backend", scale=1, elem_id="sp-backend")
        pager = _Pager(gr, "sp", "Search", go_id="sp-search")
        results = gr.HTML(elem_id="sp-results")
        with gr.Accordion("Flag a result", open=False, elem_id="sp-flag-box"):
            with gr.Row():
                flag_id = gr.Dropdown(choices=[], label="Result (document id)", allow_custom_value=True, elem_id="sp-flag-id")
                from spacerini.app.flags import REASONS

                reason = gr.Dropdown(choices=list(REASONS), value=REASONS[0], label="Reason", allow_custom_value=True)
                flag_btn = gr.Button("Flag this result", elem_id="sp-flag")
            flag_out = gr.Markdown(elem_id="sp-flag-status")
        pager.wire_route(
            "search", ["corpus", "q", "backend"], [corpus, query, backend], [results, pager.page, pager.label, flag_id],
            submit=query,
        )  # fmt: skip
        flag_btn.click(_guard(flag), [corpus, query, flag_id, reason], flag_out, api_visibility="private")

        def backends_of(name: str) -> Any:
            choices = corpora.service(name).ranked_backends
            return gr.update(choices=choices, value=choices[0])

        corpus.change(_guard(backends_of), [corpus], [backend], api_visibility="private")


def _exact_tab(gr: Any, corpora: Any) -> None:
    with gr.Tab("Exact", id="exact"):
        with gr.Row():
            corpus = _corpus_picker(gr, corpora, "sp-exact", "exact")
            text = gr.Textbox(
                label="Exact text (substring, whitespace and case included)", max_length=MAX_QUERY_CHARS,
                elem_id="sp-exact-query", scale=5,
            )  # fmt: skip
        pager = _Pager(gr, "sp-exact", "Count and find", go_id="sp-exact-go")
        out = gr.HTML(elem_id="sp-exact-results")
        pager.wire_route("find", ["corpus", "q"], [corpus, text], [out, pager.page, pager.label], submit=text)


def _member_tab(gr: Any, corpora: Any) -> None:
    from spacerini.app.render import render_member

    def run(corpus: str, text: str) -> str:
        return render_member(text, corpora.service(corpus).member(text))

    with gr.Tab("Membership", id="member"):
        gr.Markdown("Paste text or code: the spans found in the corpus are highlighted, with the documents that hold them.")
        corpus = _corpus_picker(gr, corpora, "sp-member", "member")
        text = gr.Textbox(label="Text or code", lines=10, max_length=_max_text(corpora), elem_id="sp-member-text")
        go = gr.Button("Check", variant="primary", elem_id="sp-member-go")
        out = gr.HTML(elem_id="sp-member-results")
        go.click(_guard(run), [corpus, text], out, api_visibility="private")


def _owner_tab(gr: Any, corpora: Any) -> None:
    from spacerini.app.flags import client_key
    from spacerini.app.render import render_owner
    from spacerini.app.requests import MAX_CONTACT_CHARS, MAX_MESSAGE_CHARS, MAX_NAME_CHARS, OPTOUT_HOWTO

    def ask(corpus: str, name: str, contact: str, note: str, request: Any = None) -> str:
        rec = corpora.service(corpus).optout_request(name, contact, note, client=client_key(request))
        return (
            f"Thank you: your request **{html.escape(rec['id'])}** was filed and is pending. "
            "Keep this id to ask the operator about it."
        )

    _with_request(ask, gr)

    with gr.Tab("Am I in the corpus?", id="owner"):
        gr.Markdown("Type an owner or author name (case, accents and small typos do not matter).")
        with gr.Row():
            corpus = _corpus_picker(gr, corpora, "sp-owner", "owner")
            name = gr.Textbox(label="Owner name", max_length=MAX_NAME_CHARS, elem_id="sp-owner-name", scale=5)
        go = gr.Button("Look up", variant="primary", elem_id="sp-owner-go")
        out = gr.HTML(elem_id="sp-owner-results")

        def look_up(corpus: str, n: str) -> str:
            return render_owner(corpora.service(corpus).owner(n))

        go.click(_guard(look_up), [corpus, name], out, api_visibility="private")
        name.submit(_guard(look_up), [corpus, name], out, api_visibility="private")
        with gr.Accordion("Ask for removal", open=False, elem_id="sp-optout-box"):
            gr.Markdown(OPTOUT_HOWTO, elem_id="sp-optout-howto")
            with gr.Row():
                who = gr.Textbox(label="Your name or handle (as in the corpus)", max_length=MAX_NAME_CHARS, elem_id="sp-optout-name")
                contact = gr.Textbox(label="How to reach you (email or profile)", max_length=MAX_CONTACT_CHARS, elem_id="sp-optout-contact")
            note = gr.Textbox(label="Note (optional)", lines=2, max_length=MAX_MESSAGE_CHARS, elem_id="sp-optout-note")
            send = gr.Button("Request removal", elem_id="sp-optout-go")
            status = gr.Markdown(elem_id="sp-optout-status")
        send.click(_guard(ask), [corpus, who, contact, note], status, api_visibility="private")


def _trace_tab(gr: Any, corpora: Any) -> None:
    from spacerini.app.render import render_trace

    def run(corpus: str, text: str, min_len: float) -> str:
        return render_trace(to_json(corpora.service(corpus).trace(text, int(min_len))), text)

    with gr.Tab("Trace", id="trace"):
        gr.Markdown("Paste generated code: each verbatim span is traced to the corpus files (and licences) that hold it.")
        corpus = _corpus_picker(gr, corpora, "sp-trace", "trace")
        text = gr.Textbox(label="Code", lines=10, max_length=_max_text(corpora), elem_id="sp-trace-text")
        min_len = gr.Slider(8, 200, value=32, step=1, label="Shortest span (characters)")
        go = gr.Button("Trace", variant="primary", elem_id="sp-trace-go")
        out = gr.HTML(elem_id="sp-trace-results")
        go.click(_guard(run), [corpus, text, min_len], out, api_visibility="private")


def _max_text(corpora: Any) -> int:
    return max(corpora[name].max_text for name in corpora)


def _compare_tab(gr: Any, corpora: Any) -> None:
    from spacerini.app.compare import counts_frame, render_comparison
    from spacerini.app.jsonapi import public_comparison

    def run(query: str, text: str, owner: str) -> tuple[Any, str]:
        result = public_comparison(corpora.compare(query, text=text or None, owner=owner or None))
        return counts_frame(result), render_comparison(result)

    with gr.Tab("Compare", id="compare"):
        gr.Markdown(
            "One question for every corpus: the exact count, the top hit, the membership coverage of a "
            "pasted text and the owner lookup, side by side."
        )
        query = gr.Textbox(label="Query (counted exactly and searched)", max_length=MAX_QUERY_CHARS, elem_id="sp-compare-query")
        with gr.Accordion("Membership text and owner (default: the query)", open=False):
            text = gr.Textbox(label="Text or code to check", lines=4, max_length=_max_text(corpora), elem_id="sp-compare-text")
            owner = gr.Textbox(label="Owner name", max_length=200, elem_id="sp-compare-owner")
        go = gr.Button("Compare", variant="primary", elem_id="sp-compare-go")
        import pandas as pd

        # In the corpora's order, from zero: Gradio's default y axis starts at the smallest bar,
        # which hides it (and every bar, when there is only one value).
        chart = gr.BarPlot(
            pd.DataFrame({"corpus": corpora.names, "count": [0] * len(corpora)}), x="corpus", y="count",
            title="Exact count per corpus", elem_id="sp-compare-counts", sort=corpora.names, y_lim=[0, None],
        )  # fmt: skip
        table = gr.HTML(elem_id="sp-compare-table")
        go.click(_guard(run), [query, text, owner], [chart, table], api_visibility="private")
        query.submit(_guard(run), [query, text, owner], [chart, table], api_visibility="private")


def _stats_tab(gr: Any, corpora: Any) -> list[tuple[list[Any], Callable[[], list[Any]]]]:
    """The Stats tab; returns each panel's components with what fills them (on every page load)."""
    with gr.Tab("Stats", id="stats"):
        if len(corpora) == 1:
            return [_stats_panel(gr, corpora.service(), "")]
        panels = []
        with gr.Tabs(elem_id="sp-stats-corpus"):  # the corpus selector of this tab
            for i, name in enumerate(corpora):
                with gr.Tab(name, id=f"stats-{i}"):
                    panels.append(_stats_panel(gr, corpora[name], "" if i == 0 else f"-{i}"))
        return panels


def _stats_panel(gr: Any, svc: Service, suffix: str) -> tuple[list[Any], Callable[[], list[Any]]]:
    """One corpus's stats; element ids end in ``suffix`` (empty for the default corpus). Returns
    its components and a function that gives their values for the generation in use (the
    service computes the stats once per generation).

    The charts are those of ``spacerini analyze`` (:mod:`spacerini.audit.plots`), inline SVG:
    their axes start at zero, so a corpus with a single licence or language shows its bar (a
    Gradio BarPlot started its axis at the smallest bar and drew a single category blank).
    """
    from spacerini.audit import plots

    rendered: dict[str, Any] = {}  # the values for the stats record in use (the charts are drawn once)

    def values() -> list[Any]:
        s = svc.stats()  # one record per bundle revision, kept by the service
        if rendered.get("for") is s:
            return rendered["values"]
        charts = [_chart(plots, title, s[key]) for key, title in (("licences", "Licences"), ("languages", "Languages"))]
        out = [
            f"**{s['docs']:,}** documents · **{_size(s['text_bytes'])}** of text · bundle "
            f"**{_size(s['bundle_bytes'])}** on disk · backends: {', '.join(s['backends'])} · built {s['created'] or '?'}",
            *charts,
            gr.update(value=s["preprocess"] or None, visible=bool(s["preprocess"])),
            gr.update(visible=not s["preprocess"]),
            gr.update(visible=bool(s["audit_log"])),
            s["audit_log"] or None,
        ]
        rendered.update({"for": s, "values": out})
        return out

    first = values()
    summary = gr.Markdown(first[0], elem_id=f"sp-stats-summary{suffix}")
    with gr.Row():
        licences = gr.HTML(first[1], elem_id=f"sp-licences{suffix}")
        languages = gr.HTML(first[2], elem_id=f"sp-languages{suffix}")
    s = svc.stats()
    with gr.Accordion("Preprocessing report", open=bool(s["preprocess"])):
        report = gr.JSON(s["preprocess"] or None, elem_id=f"sp-preprocess{suffix}", visible=bool(s["preprocess"]))
        none = gr.Markdown("No preprocessing steps were applied when this bundle was built.", visible=not s["preprocess"])
    with gr.Accordion("Audit log (opt-outs)", open=False, visible=bool(s["audit_log"])) as audit:
        log = gr.JSON(s["audit_log"] or None, elem_id=f"sp-audit-log{suffix}")
    return [summary, licences, languages, report, none, audit, log], values


def _chart(plots: Any, title: str, counts: Any) -> str:
    """A breakdown's bar chart as inline SVG. Its labels are corpus text (licence and language
    names): matplotlib read a label with two ``$`` as TeX math, and a malformed one stopped the
    chart, the Stats tab and with them the whole app from being built; :func:`plots.bar_chart`
    draws them as text now. A chart that still fails is logged and shown as a table of escaped
    names, so one chart cannot take the app down."""
    pairs = [(str(k), int(v)) for k, v in counts]
    fig = None
    try:
        fig = plots.bar_chart(title, pairs)  # its labels are drawn as text, "$" included
        return str(plots.svg_text(fig))
    except Exception:  # noqa: BLE001 - one chart must not take the app down
        logger.warning("the %s chart could not be drawn; shown as a table", title, exc_info=True)
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:,}</td></tr>" for k, v in pairs)
        return f"<table class='sp-chart-table'><caption>{html.escape(title)}</caption>{rows}</table>"
    finally:
        if fig is not None:
            plots.close(fig)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


# --------------------------------------------------------------------------------------- api
def _api(gr: Any, corpora: Any, caps: list[str]) -> None:
    """Named API endpoints returning JSON strings.

    They are ``gr.api`` endpoints, typed by their signatures, not hidden components: every
    Gradio session (each bare REST call opens one) copies the config of every component, so
    fewer components make each call cheaper. Each takes a last ``corpus`` parameter (default:
    the first corpus); ``/corpora`` lists the corpora and ``/compare`` asks all of them.
    """

    def endpoint(fn: Callable[..., str], name: str) -> None:
        gr.api(_guard(fn), api_name=name, api_description=(fn.__doc__ or "").strip() or None)

    def dumps(value: Any) -> str:
        return json.dumps(to_json(value), ensure_ascii=False)

    svc = corpora.service
    if "search" in caps:

        def search(query: str, backend: str = "", k: int = 10, offset: int = 0, corpus: str = "") -> str:
            """Ranked search: hits with snippets, stored fields and provenance (a JSON string)."""
            return dumps(svc(corpus).search(query, backend, k, offset))

        endpoint(search, "search")
    if "exact" in caps:

        def count(text: str, corpus: str = "") -> str:
            """Exact occurrences of a text (a JSON string)."""
            return dumps(svc(corpus).count(text))

        def find(text: str, k: int = 10, offset: int = 0, corpus: str = "") -> str:
            """The count and one page of exact occurrences with provenance (a JSON string)."""
            return dumps(svc(corpus).find(text, k, offset))

        endpoint(count, "count")
        endpoint(find, "find")
    if "member" in caps:

        def member(text: str, corpus: str = "") -> str:
            """Which spans of a text are in the corpus, with their sources (a JSON string)."""
            return dumps(svc(corpus).member(text))

        endpoint(member, "member")
    if "owner" in caps:

        def owner(name: str, limit: int = 100, corpus: str = "") -> str:
            """"Am I in the corpus?": an owner's repos and files, and how to opt out (a JSON string)."""
            return dumps(svc(corpus).owner(name, limit))

        def optout_request(name: str, contact: str, message: str = "", corpus: str = "", request: Any = None) -> str:
            """Files a request to remove an owner's documents: its id and status (a JSON string)."""
            from spacerini.app.flags import client_key

            return dumps(svc(corpus).optout_request(name, contact, message, client=client_key(request)))

        endpoint(owner, "owner")
        endpoint(_with_request(optout_request, gr), "optout_request")
    if "trace" in caps:

        def trace(text: str, min_len: int = 32, corpus: str = "") -> str:
            """Traces a text back to the documents that hold its spans (a JSON string)."""
            return dumps(svc(corpus).trace(text, min_len))

        endpoint(trace, "trace")

    def stats(corpus: str = "") -> str:
        """Counts, sizes, licence and language breakdowns, preprocessing reports (a JSON string)."""
        return dumps(svc(corpus).stats())

    def corpora_list() -> str:
        """The corpora served: name, documents, backends, generation (a JSON string)."""
        return dumps({"default": corpora.default, "corpora": corpora.corpora()})

    def compare(query: str, text: str = "", owner: str = "", backend: str = "") -> str:
        """Every corpus side by side: exact count, top hit, membership coverage, owner lookup (a JSON string)."""
        from spacerini.app.jsonapi import public_comparison

        return dumps(public_comparison(corpora.compare(query, text=text or None, owner=owner or None, backend=backend)))

    endpoint(stats, "stats")
    endpoint(corpora_list, "corpora")
    endpoint(compare, "compare")


# ------------------------------------------------------------------------------------- serve
def serve(
    bundle: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    block: bool = True,
    redact_pii: bool = True,
    flags_path: str | os.PathLike[str] | None = None,
    requests_path: str | os.PathLike[str] | None = None,
) -> Any:
    """Serves the app: the JSON routes at once, the page when Gradio has built it.

    The server starts before Gradio is imported (:mod:`spacerini.app.server`): ``GET /api/...``
    answers within about a second of the start (a first search waits for the JVM and the index,
    warmed up right away), and the page, the named endpoints and Gradio's protocol join on the
    same port when the app is built (until then they answer ``503`` with ``Retry-After``). With
    ``block=False`` the call returns only once the whole app is up.

    The server serves no files and takes no uploads (:class:`~spacerini.app.jsonapi.NoFilesMiddleware`;
    also ``allowed_paths`` is empty and the bundle folder is blocked), and shows visitors only
    its own one-line error messages.

    Args:
        bundle: An opened bundle, or a :class:`~spacerini.corpora.Corpora` of several
            (:func:`spacerini.open_bundles`), served side by side in one app and one process.
        host: Interface to listen on (loopback by default; ``0.0.0.0`` on a Space).
        port: TCP port.
        block: Block until interrupted (False returns the running app, for tests).
        redact_pii: Redact PII on display (see :func:`build_app`).
        flags_path: JSONL file for "flag this result" reports.
        requests_path: JSONL file for opt-out requests (default: beside the bundle).

    Returns:
        The launched ``gr.Blocks`` (``block=True``: once the server has stopped); its JSON
        routes' :class:`~spacerini.app.jsonapi.Limiter` is ``app.spacerini_limiter``.

    Raises:
        UsageError: The port cannot be used.
    """
    from fastapi import FastAPI

    from spacerini.app.jsonapi import Limiter, NoFilesMiddleware, json_api_routes
    from spacerini.app.server import FrontApp, FrontServer, bind
    from spacerini.memory import start_trimming

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    _log_to_stderr()
    start_trimming()  # freed heap pages go back to the OS: RSS stays flat over many requests
    corpora = _as_corpora(bundle, redact_pii, flags_path, requests_path)
    bundles = [corpora[name].bundle for name in corpora]
    limiter = Limiter(JSON_CONCURRENCY, QUEUE_SIZE)
    routes = json_api_routes(corpora, limiter=limiter)
    api = FastAPI(routes=routes, openapi_url=None, docs_url=None, redoc_url=None)
    front = FrontApp(api)
    server = FrontServer(NoFilesMiddleware(front), bind(host, port))
    built: dict[str, Any] = {}

    def page() -> Any:
        app = build_app(corpora)
        app.spacerini_limiter = limiter
        _launch(app, front, server, bundles, routes, host=host, port=port, quiet=not block)
        built["app"] = app
        logger.info("the page is ready on http://%s:%d", host, port)
        return app

    if not block:
        server.run_in_thread()
        # The JVM, the index and the ranking kernel warm up in a thread while Gradio is imported
        # and the page is built; the caller gets a warm app, and no thread is left inside the JVM.
        warm = threading.Thread(target=_warm_up, args=(bundles,), name="spacerini-warm-up", daemon=True)
        warm.start()
        try:
            app = page()
        except BaseException:
            server.close()
            raise
        warm.join()
        return app

    def later() -> None:
        # The first search comes before the page: warm up, then import Gradio and build the page
        # (both hold the GIL; the JSON routes answer meanwhile).
        try:
            server.wait_started()
            _warm_up(bundles)
            page()
        except BaseException as exc:  # noqa: BLE001 - re-raised by serve() once the server stops
            built["error"] = exc
            server.close()

    logger.info("serving %s on http://%s:%d (the JSON routes now, the page when it is built)",
                ", ".join(str(b.path) for b in bundles), host, port)  # fmt: skip
    threading.Thread(target=later, name="spacerini-page", daemon=True).start()
    server.run()
    if "error" in built:
        raise built["error"]
    app = built.get("app")
    if app is not None:
        app.close(verbose=False)
    return app


def _launch(
    app: Any, front: Any, server: Any, bundles: list[Any], routes: list[Any], *, host: str, port: int, quiet: bool
) -> None:
    """``app.launch`` with the app's settings, served by ``server`` (already listening on
    ``host:port``) instead of a server of Gradio's own (:func:`~spacerini.app.server.gradio_serves_here`)."""
    from spacerini.app.server import gradio_serves_here

    with gradio_serves_here(front, server, host, port):
        app.launch(
            server_name=host,
            server_port=port,
            prevent_thread_lock=True,
            show_error=False,  # only gr.Error messages (ours, one line each) reach the visitor
            share=False,
            ssr_mode=False,
            max_file_size="1mb",
            allowed_paths=[],
            blocked_paths=[str(Path(b.path).resolve()) for b in bundles],
            footer_links=["api"],
            state_session_capacity=SESSION_CAPACITY,
            quiet=quiet,
            css=CSS,
            app_kwargs={"routes": routes},
        )


def _warm_up(bundles: list[Any]) -> None:
    """Opens each bundle's default searcher (JVM, index) and runs one search (the ranking kernel,
    the snippet classes), so that the first visitor does not wait for them."""
    for each in bundles:
        try:
            each.search("warm up", k=1, snippets=True)
        except SpaceriniError:
            pass  # a bundle without a ranked backend still serves its other tabs
        except Exception:  # noqa: BLE001 - the same failure reaches the first request, which reports it
            logger.warning("warming up %s failed", getattr(each, "path", "the bundle"), exc_info=True)


def _log_to_stderr() -> None:
    """Shows the app's INFO lines (refused calls, reports) on stderr when nothing set up logging
    (a Space runs ``app.py`` directly)."""
    root = logging.getLogger()
    ours = logging.getLogger("spacerini")
    if not root.handlers and not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)
