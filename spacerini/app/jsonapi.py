"""A plain JSON HTTP API served beside the Gradio app, for programmatic clients.

Gradio's named endpoints (``/search``, ``/count``...) go through its queue: a call is a POST
that joins the queue and a second request that reads the answer from a server-sent event
stream, with a session per caller. These routes answer the same capabilities in one GET with a
JSON object (the same dict the named endpoint returns as a string). Each takes ``&corpus=NAME``
when the app serves several corpora (default: the first):

* ``GET /api/search?q=TEXT&backend=bm25&k=10&offset=0`` (``&snippets=false``: no snippets):
  :meth:`~spacerini.service.Service.search`;
* ``GET /api/count?q=TEXT``: :meth:`~spacerini.service.Service.count`;
* ``GET /api/find?q=TEXT&k=10&offset=0``: :meth:`~spacerini.service.Service.find`;
* ``GET /api/owner?name=NAME&limit=100``: :meth:`~spacerini.service.Service.owner`;
* ``GET /api/stats``: :meth:`~spacerini.service.Service.stats`;
* ``GET /api/corpora``: the corpora served (name, documents, backends, generation);
* ``GET /api/compare?q=TEXT``: every corpus side by side (:meth:`~spacerini.corpora.Corpora.compare`);
* ``GET /api/ui/search`` and ``GET /api/ui/find``: the Search and Exact tabs' pages, rendered
  (the page's own buttons call them; see :func:`ui_routes`);
* ``POST /api/optout-request`` with a JSON body ``{"name", "contact", "message"}`` (owners
  backend): :meth:`~spacerini.service.Service.optout_request`, its id and status;
* ``POST /api/member`` with ``{"text"}`` (bloom or exact backend): "is this text in the corpus?",
  :meth:`~spacerini.service.Service.member`; ``POST /api/trace`` with ``{"text", "min_len"}``
  (exact backend): :meth:`~spacerini.service.Service.trace`. A text is pasted code or prose, too
  long for a query string, hence a body (at most :data:`MAX_TEXT_BODY_BYTES`).

The limits are the app's: query length, ``k`` and ``offset`` are checked by the service (and the
bundle), a route exists only when the bundle has the backend, at most ``concurrency`` calls run
at once and at most ``max_waiting`` wait for a turn; a call beyond that is refused at once with
``503`` and ``Retry-After``. Bad input answers ``400`` with ``{"error": "one line"}`` (and writes
one log line), a client over its allowance of opt-out requests ``429`` with ``Retry-After``; an
unexpected failure answers ``500`` without a traceback.

:class:`NoFilesMiddleware` guards the whole server (Gradio's routes too): the app has no upload
or file component, so Gradio's upload, file and proxy routes answer ``403``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request  # resolved by FastAPI from this module's globals

from spacerini.errors import QueryError, RateLimitedError, SpaceriniError, one_line
from spacerini.records import to_json

__all__ = ["Busy", "Limiter", "NoFilesMiddleware", "json_api_routes", "ui_routes"]

#: Largest JSON body a POST route reads, in bytes.
MAX_BODY_BYTES = 16_384
#: Largest JSON body of ``/api/member`` and ``/api/trace``: the service's longest text (100,000
#: characters) in UTF-8 and JSON escapes.
MAX_TEXT_BODY_BYTES = 1_048_576

logger = logging.getLogger(__name__)


class Busy(SpaceriniError, RuntimeError):
    """Too many calls are running and waiting: the call was refused."""


class Limiter:
    """Runs blocking calls in worker threads, ``concurrency`` at a time, with a bounded wait line.

    Used from one event loop (the server's); the counters need no lock there.

    Args:
        concurrency: Calls that run at once.
        max_waiting: Calls that may wait for a turn; one more is refused with :class:`Busy`.
    """

    def __init__(self, concurrency: int, max_waiting: int) -> None:
        self.concurrency = max(1, int(concurrency))
        self.max_waiting = max(0, int(max_waiting))
        self._slots = asyncio.Semaphore(self.concurrency)
        self.waiting = 0
        self.running = 0
        self.refused = 0

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Calls ``fn(*args)`` in a worker thread when a slot is free.

        Raises:
            Busy: All slots are taken and ``max_waiting`` calls already wait.
        """
        from starlette.concurrency import run_in_threadpool

        if self._slots.locked() and self.waiting >= self.max_waiting:
            self.refused += 1
            raise Busy(f"the server is busy ({self.concurrency} calls running, {self.waiting} waiting); try again")
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            return await run_in_threadpool(fn, *args)
        finally:
            self.running -= 1
            self._slots.release()


def json_api_routes(svc: Any, *, limiter: Limiter, prefix: str = "/api") -> list[Any]:
    """The JSON routes for ``svc``, to pass to FastAPI (``routes=``) or include in a router.

    Every route takes ``&corpus=NAME`` (default: the first corpus); a route exists when at
    least one corpus can answer it, and asking a corpus that cannot answers ``400`` naming the
    backend it lacks. ``GET /api/corpora`` lists the corpora and ``GET /api/compare?q=TEXT``
    (``&text=`` for membership, ``&owner=`` for the owner lookup, both defaulting to ``q``)
    asks all of them (:meth:`~spacerini.corpora.Corpora.compare`).

    Args:
        svc: The app's :class:`~spacerini.service.Service`, or a
            :class:`~spacerini.corpora.Corpora` of several.
        limiter: Bounds the calls running and waiting (shared by every route).
        prefix: Path prefix of the routes.

    Returns:
        FastAPI route objects.
    """
    from fastapi import APIRouter
    from fastapi.responses import JSONResponse

    corpora = as_corpora(svc)
    router = APIRouter(prefix=prefix)
    caps = {cap for name in corpora for cap in corpora[name].capabilities}

    async def answer(fn: Callable[..., Any], *args: Any) -> JSONResponse:
        try:
            return JSONResponse(to_json(await limiter.run(fn, *args)))
        except Busy as exc:
            return JSONResponse({"error": one_line(exc)}, status_code=503, headers={"Retry-After": "1"})
        except RateLimitedError as exc:
            logger.info("refused %s: %s", _name(fn), one_line(exc))
            return JSONResponse({"error": public_message(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after)})
        except SpaceriniError as exc:
            logger.info("refused %s: %s", _name(fn), one_line(exc)[:300])
            return JSONResponse({"error": public_message(exc)}, status_code=400)
        except Exception:  # noqa: BLE001 - logged here; the client gets no traceback
            logger.exception("JSON API call failed")
            return JSONResponse({"error": "internal error"}, status_code=500)

    def on(corpus: str, method: str, **kwargs: Any) -> Callable[..., Any]:
        """``Service.method`` of ``corpus``, looked up when the call runs (so that a bad name
        answers 400 like any other bad input)."""

        def call(*args: Any) -> Any:
            return functools.partial(getattr(corpora.service(corpus), method), **kwargs)(*args)

        call.__name__ = method
        return call

    # Numbers arrive as strings so that the service gives its own one-line range errors. Each
    # route says response_model=None: its return annotation is a string FastAPI cannot resolve,
    # which made /openapi.json fail.
    get = functools.partial(router.get, response_model=None)
    if "search" in caps:

        @get("/search")
        async def search(
            q: str = "", backend: str = "", k: str = "10", offset: str = "0", snippets: str = "true", corpus: str = ""
        ) -> JSONResponse:
            try:
                with_snippets = _flag(snippets, "snippets")
            except QueryError as exc:
                logger.info("refused search: %s", one_line(exc))
                return JSONResponse({"error": one_line(exc)}, status_code=400)
            return await answer(on(corpus, "search", snippets=with_snippets), q, backend, k, offset)

    if "exact" in caps:

        @get("/count")
        async def count(q: str = "", corpus: str = "") -> JSONResponse:
            return await answer(on(corpus, "count"), q)

        @get("/find")
        async def find(q: str = "", k: str = "10", offset: str = "0", corpus: str = "") -> JSONResponse:
            return await answer(on(corpus, "find"), q, k, offset)

    if "owner" in caps:
        from spacerini.app.flags import client_key

        @get("/owner")
        async def owner(name: str = "", limit: str = "100", corpus: str = "") -> JSONResponse:
            return await answer(on(corpus, "owner"), name, limit)

        @router.post("/optout-request", response_model=None)
        async def optout_request(request: Request, corpus: str = "") -> JSONResponse:
            try:
                body = await _json_body(request)
            except QueryError as exc:
                logger.info("refused optout_request: %s", one_line(exc))
                return JSONResponse({"error": one_line(exc)}, status_code=400)
            fields = [body.get(k, "") for k in ("name", "contact", "message")]
            return await answer(on(corpus, "optout_request", client=client_key(request)), *fields)

    for cap, route in (("member", "/member"), ("trace", "/trace")):
        if cap in caps:
            router.add_api_route(route, _text_route(cap, on, answer), methods=["POST"], response_model=None)

    @get("/stats")
    async def stats(corpus: str = "") -> JSONResponse:
        return await answer(on(corpus, "stats"))

    @get("/corpora")
    async def corpora_list() -> JSONResponse:
        return await answer(lambda: {"default": corpora.default, "corpora": corpora.corpora()})

    @get("/compare")
    async def compare(q: str = "", text: str = "", owner: str = "", backend: str = "") -> JSONResponse:
        def compare_columns(query: str) -> Any:
            return public_comparison(corpora.compare(query, text=text or None, owner=owner or None, backend=backend))

        return await answer(compare_columns, q)

    return list(router.routes) + ui_routes(corpora, limiter=limiter, prefix=prefix)


def ui_routes(svc: Any, *, limiter: Limiter, prefix: str = "/api") -> list[Any]:
    """The page's own routes: ``GET /api/ui/search?q=&backend=&page=&corpus=`` and
    ``GET /api/ui/find?q=&page=&corpus=`` answer the Search and Exact tabs' buttons with
    ``{"html", "page", "label"}`` (and ``"ids"``, the results' document ids, for search), the
    same HTML the tabs render (:func:`spacerini.app.search_page`, :func:`spacerini.app.find_page`),
    through the same service, redaction and limits as every other route. The page calls them
    from the browser (one GET per click) instead of Gradio's queue and event stream.

    Args:
        svc: The app's :class:`~spacerini.service.Service`, or a :class:`~spacerini.corpora.Corpora`.
        limiter: Bounds the calls running and waiting.
        prefix: Path prefix of the routes.

    Returns:
        FastAPI route objects (none when no corpus can search or count).
    """
    from fastapi import APIRouter
    from fastapi.responses import JSONResponse

    from spacerini.app import find_page, search_page

    corpora = as_corpora(svc)
    router = APIRouter(prefix=prefix + "/ui")
    caps = {cap for name in corpora for cap in corpora[name].capabilities}

    async def answer(fn: Callable[..., Any], *args: Any) -> JSONResponse:
        try:
            return JSONResponse(await limiter.run(fn, corpora, *args))
        except Busy as exc:
            return JSONResponse({"error": one_line(exc)}, status_code=503, headers={"Retry-After": "1"})
        except SpaceriniError as exc:
            logger.info("refused %s: %s", _name(fn), one_line(exc)[:300])
            return JSONResponse({"error": public_message(exc)}, status_code=400)
        except Exception:  # noqa: BLE001 - logged here; the visitor sees no Python text
            logger.exception("%s failed", _name(fn))
            from spacerini.app import INTERNAL_ERROR

            return JSONResponse({"error": INTERNAL_ERROR}, status_code=500)

    get = functools.partial(router.get, response_model=None)
    if "search" in caps:

        @get("/search")
        async def ui_search(q: str = "", backend: str = "", page: str = "1", corpus: str = "") -> JSONResponse:
            return await answer(search_page, corpus, q, backend, page)

    if "exact" in caps:

        @get("/find")
        async def ui_find(q: str = "", page: str = "1", corpus: str = "") -> JSONResponse:
            return await answer(find_page, corpus, q, page)

    return list(router.routes)


#: An absolute POSIX path in a message: a ``/`` that starts no URL and ends no word, then its parts.
_PATH = re.compile(r"(?<![\w/.:~-])/(?:[^\s/'\"<>`]+/)*[^\s/'\"<>`:,;()]*")


def scrub_paths(text: str) -> str:
    """``text`` with each absolute path of this machine replaced by its last part
    (``/srv/bundles/c4/bloom: cannot read`` -> ``bloom: cannot read``).

    A path counts when its first part exists here (``/srv``, ``/home``, ``/tmp``...), so that
    routes such as ``/api/search`` named in a message stay as they are.
    """

    def name(match: re.Match[str]) -> str:
        path = match.group(0)
        parts = [p for p in path.split("/") if p]
        if len(parts) < 2 or not os.path.exists("/" + parts[0]):
            return path
        return parts[-1]

    return _PATH.sub(name, text)


def public_message(exc: BaseException) -> str:
    """What a visitor is told of a refusal: its first line (:func:`~spacerini.errors.one_line`)
    without this machine's paths (a corrupt or changing bundle names its files in its errors)."""
    return scrub_paths(one_line(exc))


def public_comparison(result: Any) -> Any:
    """A comparison's JSON (:meth:`~spacerini.corpora.Corpora.compare`) with the refusals of
    its columns told as :func:`public_message` tells them."""
    data = to_json(result)
    for column in data.get("corpora") or ():
        for key in ("errors", "missing"):
            if isinstance(column.get(key), dict):
                column[key] = {k: scrub_paths(str(v)) for k, v in column[key].items()}
    return data


def as_corpora(svc: Any) -> Any:
    """``svc`` as a :class:`~spacerini.corpora.Corpora` (one service becomes a collection of one,
    named after its bundle's folder)."""
    from spacerini.corpora import Corpora, default_name

    if isinstance(svc, Corpora):
        return svc
    return Corpora({default_name(getattr(svc.bundle, "path", "corpus")): svc})


def _name(fn: Any) -> str:
    return str(getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", "call"))


#: The spellings a true/false query parameter takes (FastAPI's own, plus empty: the default).
_TRUE = frozenset({"", "1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def _flag(value: str, name: str) -> bool:
    """A true/false query parameter (parsed here, so that a bad one answers 400 with one line
    rather than FastAPI's 422 and its own error shape).

    Raises:
        QueryError: Neither true nor false.
    """
    text = value.strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise QueryError(f"{name} must be true or false, not {value[:20]!r}")


def _text_route(cap: str, on: Callable[..., Any], answer: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """``POST /api/member`` or ``/api/trace``: the text (and ``min_len``) from a JSON body."""
    from fastapi.responses import JSONResponse

    async def route(request: Request, corpus: str = "") -> JSONResponse:
        try:
            body = await _json_body(request, limit=MAX_TEXT_BODY_BYTES, example='{"text": "..."}')
            text = body.get("text", "")
            if not isinstance(text, str):
                raise QueryError(f"\"text\" must be a string, not {type(text).__name__}")
        except QueryError as exc:
            logger.info("refused %s: %s", cap, one_line(exc))
            return JSONResponse({"error": one_line(exc)}, status_code=400)
        if cap == "trace":
            return await answer(on(corpus, "trace"), text, body.get("min_len", 32))
        return await answer(on(corpus, "member"), text)

    route.__name__ = f"api_{cap}"
    return route


#: The body types a cross-site page can POST without a CORS preflight (forms, ``text/plain``).
_SIMPLE_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})


async def _json_body(
    request: Any, *, limit: int = MAX_BODY_BYTES, example: str = '{"name": ..., "contact": ...}'
) -> dict[str, Any]:
    """A POST's JSON object, read up to ``limit`` bytes.

    A body sent as a form or as plain text is refused: those are the types another site's page
    can make a visitor's browser POST here without asking (no CORS preflight), so that any page
    could file opt-out requests from its visitors' addresses. ``application/json`` (or no type,
    as scripts send) is read.

    Raises:
        QueryError: A form or plain-text body, too large, not JSON, or not an object.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in _SIMPLE_TYPES:
        raise QueryError(
            f"the request body is sent as {kind}: send JSON with the header Content-Type: application/json "
            "(curl: -H 'Content-Type: application/json')"
        )
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise QueryError(f"the request body is larger than {limit:,} bytes")
    try:
        body = json.loads(data or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise QueryError(f"the request body is not JSON: send {example}") from None
    if not isinstance(body, dict):
        raise QueryError("the request body must be a JSON object")
    return body


# ------------------------------------------------------------------------------ no files
#: Gradio routes that take uploads or serve files or other servers' content; the app has no
#: upload, file or recording component, so none of them has a use here. ``process_recording``
#: takes an anonymous upload, writes it to a temporary file and runs ffmpeg on it with the
#: caller's filter options.
_FILE_ROUTES = re.compile(r"^/(?:gradio_api/)?(?:upload|file=|file/|proxy=|process_recording)")


def unknown_endpoint_handlers() -> dict[Any, Callable[..., Any]]:
    """Exception handlers for the server: a call to a Gradio endpoint that does not exist
    (``/gradio_api/call/NAME`` with an unknown NAME) answers ``404`` with one line, where Gradio
    answers ``500 Internal Server Error`` and logs a traceback."""
    from fastapi.responses import JSONResponse

    try:
        from gradio.route_utils import FnIndexInferError
    except ImportError:  # another Gradio: its own answer stands
        return {}

    async def unknown(request: Any, exc: Exception) -> Any:
        logger.info("refused call to %s: %s", request.url.path, one_line(exc))
        return JSONResponse({"error": f"no such endpoint: {one_line(exc)}; see /gradio_api/info"}, status_code=404)

    return {FnIndexInferError: unknown}


class NoFilesMiddleware:
    """Answers ``403`` to Gradio's upload, file and proxy routes (an ASGI middleware).

    Without it a public app takes anonymous uploads (``POST /gradio_api/upload``) and serves them
    back with their absolute temporary path (``GET /gradio_api/file=/tmp/gradio/...``).

    Args:
        app: The ASGI app to guard.
    """

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and self.refused(str(scope.get("path", "")), str(scope.get("root_path", ""))):
            body = json.dumps({"error": "this app takes no uploads and serves no files"}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    @staticmethod
    def refused(path: str, root_path: str = "") -> bool:
        """True for a path (under ``root_path``) of an upload, file or proxy route."""
        path = re.sub("/{2,}", "/", path)
        if root_path and path.startswith(root_path.rstrip("/") + "/"):
            path = path[len(root_path.rstrip("/")) :]
        return bool(_FILE_ROUTES.match(path))
