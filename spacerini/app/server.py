"""The app's HTTP server: the JSON routes answer first, the Gradio page joins when it is built.

Importing Gradio and building the page take seconds (about 3 s on a quiet 2-core machine, most of
``spacerini serve``'s start-up), and nothing in the JSON routes needs Gradio. So :func:`spacerini.app.serve`
starts this server before Gradio is imported:

* :class:`FrontApp` (an ASGI app) answers ``/api/...`` from its own small FastAPI app at once, and
  everything else (the page, ``/config``, Gradio's ``/gradio_api/...`` protocol) with ``503``, a
  ``Retry-After`` and a page that reloads itself, until the Gradio app is built;
* then ``Blocks.launch`` runs as usual, but the server it would start on the same port is this one
  (:func:`gradio_serves_here`): the app it creates is adopted (its lifespan runs in this server's
  event loop), and from then on the page, the queue, the named endpoints (``gradio_client``) and
  ``/openapi.json`` are Gradio's, exactly as when Gradio ran the server itself.

:class:`FrontServer` is a uvicorn server that runs in the calling thread (``block=True``: it
handles Ctrl-C) or in a thread of its own, and stops on ``close()`` (which ``Blocks.close()``
calls, as it calls Gradio's own server's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from spacerini.errors import UsageError

__all__ = ["FrontApp", "FrontServer", "bind", "gradio_serves_here"]

logger = logging.getLogger(__name__)

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]

#: What the page answers while Gradio is being built (it reloads itself every second).
STARTING_PAGE = (
    b"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='1'>"
    b"<title>Starting</title></head><body><p>The app is starting: this page reloads in a moment. "
    b"The JSON API (<code>/api/search?q=...</code>) already answers.</p></body></html>"
)
STARTING_JSON = b'{"error": "the app is starting; try again in a moment (the JSON routes under /api/ already answer)"}'


class FrontApp:
    """Routes ``/api/...`` to the JSON app and the rest to Gradio's app once it is adopted.

    Args:
        api: The ASGI app of the JSON routes (:func:`spacerini.app.jsonapi.json_api_routes`).
    """

    def __init__(self, api: ASGIApp) -> None:
        self.api = api
        self.page: ASGIApp | None = None
        self._page_lifespan: asyncio.Task[None] | None = None
        self._page_shutdown: asyncio.Event | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        path = str(scope.get("path", ""))
        if path == "/api" or path.startswith("/api/"):
            await self.api(scope, receive, send)
        elif self.page is not None:
            await self.page(scope, receive, send)
        elif kind == "http":
            await _starting(scope, send)
        # a websocket before the page exists is closed unanswered

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop_page()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def adopt(self, app: ASGIApp) -> None:
        """Runs ``app``'s lifespan startup in this event loop, then routes the page to it.

        Raises:
            RuntimeError: The app's startup failed.
        """
        started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        shutdown = self._page_shutdown = asyncio.Event()
        sent_startup = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_startup
            if not sent_startup:
                sent_startup = True
                return {"type": "lifespan.startup"}
            await shutdown.wait()
            return {"type": "lifespan.shutdown"}

        async def send(message: MutableMapping[str, Any]) -> None:
            kind = message["type"]
            if kind.startswith("lifespan.startup") and not started.done():
                started.set_result(kind if kind.endswith("complete") else str(message.get("message", kind)))

        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}

        async def run() -> None:
            try:
                await app(scope, receive, send)
            finally:
                if not started.done():
                    started.set_result("the app's lifespan ended before its startup")

        self._page_lifespan = asyncio.get_running_loop().create_task(run())
        outcome = await started
        if outcome != "lifespan.startup.complete":
            raise RuntimeError(f"the Gradio app did not start: {outcome}")
        self.page = app

    async def _stop_page(self) -> None:
        if self._page_shutdown is not None and self._page_lifespan is not None:
            self._page_shutdown.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._page_lifespan, timeout=10)


async def _starting(scope: MutableMapping[str, Any], send: Any) -> None:
    accepts_html = any(k == b"accept" and b"text/html" in v for k, v in scope.get("headers", []))
    body, kind = (STARTING_PAGE, b"text/html; charset=utf-8") if accepts_html or scope.get("path") == "/" else (
        STARTING_JSON, b"application/json")  # fmt: skip
    await send({
        "type": "http.response.start", "status": 503,
        "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode()), (b"retry-after", b"1")],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port``.

    Raises:
        UsageError: The port is taken or the address cannot be used (one line).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP: asyncio then sets TCP_NODELAY
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot serve on {host}:{port}: {exc.strerror or exc}; choose another --port or --host") from None
    sock.set_inheritable(True)
    return sock


def _uvicorn_server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        loop: asyncio.AbstractEventLoop | None = None

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().startup(sockets=sockets)

    return Server


class FrontServer:
    """A uvicorn server for ``app`` on a socket from :func:`bind`.

    Args:
        app: The ASGI app.
        sock: The bound socket.
    """

    def __init__(self, app: ASGIApp, sock: socket.socket) -> None:
        import uvicorn

        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        self._server = _uvicorn_server_class()(config)
        self._sock = sock
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's event loop (once :attr:`started`)."""
        loop = self._server.loop
        if loop is None:
            raise RuntimeError("the server has not started")
        return loop

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    def run(self) -> None:
        """Serves in this thread until :meth:`close` (or Ctrl-C in the main thread)."""
        self._server.run(sockets=[self._sock])

    def run_in_thread(self, timeout: float = 30) -> None:
        """Serves in a daemon thread; returns once the server listens.

        Raises:
            RuntimeError: It did not start in ``timeout`` seconds.
        """

        def target() -> None:
            try:
                self.run()
            except BaseException as exc:  # noqa: BLE001 - reported by the waiting caller
                self.failure = exc

        self._thread = threading.Thread(target=target, name="spacerini-server", daemon=True)
        self._thread.start()
        self.wait_started(timeout)

    def wait_started(self, timeout: float = 30) -> None:
        """Waits until the server listens.

        Raises:
            RuntimeError: It stopped or did not start in ``timeout`` seconds.
        """
        import time

        deadline = time.monotonic() + timeout
        while not self.started:
            if self.failure is not None or (self._thread is not None and not self._thread.is_alive()):
                raise RuntimeError(f"the server did not start: {self.failure!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start in {timeout:.0f} s")
            time.sleep(0.005)

    def call(self, coro: Awaitable[Any], timeout: float = 120) -> Any:
        """Runs ``coro`` in the server's event loop from another thread; returns its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        """Stops the server (and waits for its thread, when it has one)."""
        self._server.should_exit = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=15)


_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def gradio_serves_here(front: FrontApp, server: FrontServer, host: str, port: int) -> Iterator[None]:
    """While inside, ``Blocks.launch`` serves its app from ``server`` instead of starting its own.

    ``launch`` builds its FastAPI app, then calls ``gradio.http_server.start_server(app, ...)``,
    which binds the port and runs uvicorn. Here that call adopts the app into ``front``
    (:meth:`FrontApp.adopt`, in the server's loop) and returns this server, which is already
    listening on that port; everything else ``launch`` does (the queue, the startup events it
    asks for over HTTP, the state it keeps for ``close()``) is unchanged.
    """
    from gradio import http_server

    url_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host in ("::", "[::]") else host)
    url_host = f"[{url_host}]" if ":" in url_host and not url_host.startswith("[") else url_host

    def start_server(app: Any, server_name: str | None = None, server_port: int | None = None, **_: Any) -> Any:
        server.call(front.adopt(app))
        return host, port, f"http://{url_host}:{port}/", server

    with _PATCH_LOCK:
        original = http_server.start_server
        http_server.start_server = start_server
        try:
            yield
        finally:
            http_server.start_server = original
