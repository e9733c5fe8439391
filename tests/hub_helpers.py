"""A fake Hugging Face Hub on 127.0.0.1 for tests: answers the reachability probe, creates repos,
takes small commits (``upload_folder`` of regular files, deletions), lists a repo's files and
squashes histories, recording every request."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeHub:
    """What the fake Hub saw: each request as ``(method, path, authorization)``, and the files
    of each commit by repo (``{"spaces/me/x": {path: bytes}}``)."""

    url: str = ""
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)
    #: An HTTP status every API call (not the probe) answers with, quoting the token back.
    fail_with: int | None = None
    #: Repos (``"datasets/me/x"``) whose history was squashed, in order.
    squashed: list[str] = field(default_factory=list)


def _handler(hub: FakeHub) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("content-length") or 0))

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            if status >= 400:  # a careless server or proxy that quotes the request back
                self.send_header("x-error-message", f"refused {self.headers.get('authorization')}")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def do_HEAD(self) -> None:  # noqa: N802 - the http.server API
            hub.requests.append(("HEAD", self.path, self.headers.get("authorization")))
            self._send(200, {})

        def do_GET(self) -> None:  # noqa: N802
            hub.requests.append(("GET", self.path, self.headers.get("authorization")))
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) >= 6 and parts[0] == "api" and parts[4] == "tree":  # list_repo_files
                files = hub.commits.get("/".join(parts[1:4]), {})
                self._send(200, [{"type": "file", "path": p, "size": len(b), "oid": "0" * 40} for p, b in sorted(files.items())])
                return
            self._send(404, {"error": "not here"})

        def do_POST(self) -> None:  # noqa: N802
            body = self._body()
            hub.requests.append(("POST", self.path, self.headers.get("authorization")))
            if hub.fail_with is not None:
                self._send(hub.fail_with, {"error": f"bad credentials: {self.headers.get('authorization')}"})
                return
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[:2] == ["api", "validate-yaml"]:  # the Hub checks a README's front matter
                self._send(200, {})
            elif parts[:3] == ["api", "repos", "create"]:
                spec = json.loads(body)
                hub.created.append(spec)
                kind = spec.get("type") or "model"
                self._send(200, {"url": f"{hub.url}/{kind}s/{spec.get('organization')}/{spec['name']}"})
            elif len(parts) >= 6 and parts[0] == "api" and parts[4] == "preupload":
                files = json.loads(body).get("files", [])
                self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
            elif len(parts) >= 6 and parts[0] == "api" and parts[4] == "commit":
                repo = "/".join(parts[1:4])
                store = hub.commits.setdefault(repo, {})
                for line in body.decode().splitlines():
                    op = json.loads(line)
                    if op.get("key") == "file":
                        value = op["value"]
                        store[value["path"]] = base64.b64decode(value["content"])
                    elif op.get("key") == "deletedFile":
                        store.pop(op["value"]["path"], None)
                self._send(200, {"commitUrl": f"{hub.url}/{repo}/commit/{'0' * 40}", "commitOid": "0" * 40})
            elif len(parts) >= 6 and parts[0] == "api" and parts[4] == "super-squash":
                hub.squashed.append("/".join(parts[1:4]))
                self._send(200, {})
            else:
                self._send(404, {"error": f"no route {self.path}"})

    return Handler


@contextmanager
def fake_hub(monkeypatch: Any) -> Iterator[FakeHub]:
    """Runs a fake Hub on 127.0.0.1 and points ``HF_ENDPOINT`` and ``huggingface_hub`` at it."""
    import huggingface_hub.constants

    from spacerini.corpus import hf

    hub = FakeHub()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(hf, "_probe_cache", {})
    for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
