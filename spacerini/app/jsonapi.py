"""A plain JSON HTTP API served beside the Gradio app, for programmatic clients.

Gradio's named endpoints (``/search``, ``/count``...) go through its queue: a call is a POST
that joins the queue and a second request that reads the answer from a server-sent event
stream, with a session per caller. These routes answer the same capabilities in one GET with a
JSON object (the same dict the named endpoint returns as a string):

* ``GET /api/search?q=TEXT&backend=bm25&k=10&offset=0`` (``&snippets=false``: no snippets):
  :meth:`~spacerini.app.service.AppService.search`;
* ``GET /api/count?q=TEXT``: :meth:`~spacerini.app.service.AppService.count`;
* ``GET /api/find?q=TEXT&k=10&offset=0``: :meth:`~spacerini.app.service.AppService.find`;
* ``GET /api/owner?name=NAME&limit=100``: :meth:`~spacerini.app.service.AppService.owner`;
* ``GET /api/stats``: :meth:`~spacerini.app.service.AppService.stats`.

The limits are the app's: query length, ``k`` and ``offset`` are checked by the service (and the
bundle), a route exists only when the bundle has the backend, at most ``concurrency`` calls run
at once and at most ``max_waiting`` wait for a turn; a call beyond that is refused at once with
``503`` and ``Retry-After``. Bad input answers ``400`` with ``{"error": "one line"}``; an
unexpected failure answers ``500`` without a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from spacerini.errors import SpaceriniError, one_line

__all__ = ["Busy", "Limiter", "json_api_routes"]

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

    Args:
        svc: The app's :class:`~spacerini.app.service.AppService`.
        limiter: Bounds the calls running and waiting (shared by every route).
        prefix: Path prefix of the routes.

    Returns:
        FastAPI route objects.
    """
    from fastapi import APIRouter
    from fastapi.responses import JSONResponse

    router = APIRouter(prefix=prefix)
    caps = svc.capabilities

    async def answer(fn: Callable[..., Any], *args: Any) -> JSONResponse:
        try:
            return JSONResponse(await limiter.run(fn, *args))
        except Busy as exc:
            return JSONResponse({"error": one_line(exc)}, status_code=503, headers={"Retry-After": "1"})
        except SpaceriniError as exc:
            return JSONResponse({"error": one_line(exc)}, status_code=400)
        except Exception:  # noqa: BLE001 - logged here; the client gets no traceback
            logger.exception("JSON API call failed")
            return JSONResponse({"error": "internal error"}, status_code=500)

    # Numbers arrive as strings so that the service gives its own one-line range errors.
    if "search" in caps:

        @router.get("/search")
        async def search(
            q: str = "", backend: str = "", k: str = "10", offset: str = "0", snippets: bool = True
        ) -> JSONResponse:
            return await answer(functools.partial(svc.search, snippets=snippets), q, backend, k, offset)

    if "exact" in caps:

        @router.get("/count")
        async def count(q: str = "") -> JSONResponse:
            return await answer(svc.count, q)

        @router.get("/find")
        async def find(q: str = "", k: str = "10", offset: str = "0") -> JSONResponse:
            return await answer(svc.find, q, k, offset)

    if "owner" in caps:

        @router.get("/owner")
        async def owner(name: str = "", limit: str = "100") -> JSONResponse:
            return await answer(svc.owner, name, limit)

    @router.get("/stats")
    async def stats() -> JSONResponse:
        return await answer(svc.stats)

    return list(router.routes)
