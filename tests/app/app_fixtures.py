"""Data and helpers shared by the app tests (imported by conftest and the test modules)."""

from __future__ import annotations

import socket
from typing import Any

from spacerini.records import Doc

#: Documents of the app bundle: code with provenance, one owner per repo, a hostile document.
FUNCS = [
    "def read_json(path):\n    with open(path, encoding='utf-8') as fh:\n        return json.load(fh)\n",
    "def write_json(path, data):\n    with open(path, 'w', encoding='utf-8') as fh:\n        json.dump(data, fh, indent=2)\n",
    "class LRUCache:\n    def __init__(self, capacity):\n        self.capacity = capacity\n        self.data = OrderedDict()\n",
    "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
]
OWNERS = ["Ada Lovelace", "Grace Hopper", "Alan Turing"]
HOSTILE_TEXT = "parser <script>alert('xss')</script> <img src=x onerror=alert(1)> parser contact bob.smith@gmail.com"


def app_docs() -> list[Doc]:
    docs = []
    for i in range(36):
        owner = OWNERS[i % 3]
        repo = f"https://github.com/{owner.split()[1].lower()}/repo{i % 3}"
        body = FUNCS[i % len(FUNCS)] + f"\n# parser helper number {i}\nvalue_{i} = parse_tokens('item {i}')\n"
        docs.append(
            Doc(
                id=f"f{i:02d}",
                text=body,
                fields={"title": f"module_{i}.py"},
                meta={
                    "repo": repo,
                    "path": f"src/module_{i}.py",
                    "owner": owner,
                    "licence": ["MIT", "Apache-2.0", "BSD-3-Clause"][i % 3] if i % 4 else "MIT",
                    "language": "Python" if i % 6 else "Cython",
                    "swhid": f"swh:1:cnt:{i:040x}",
                },
            )
        )
    docs.append(
        Doc(
            id="evil",
            text=HOSTILE_TEXT,
            fields={"title": "<img src=x onerror=alert(2)>", "note": "<script>alert(3)</script>"},
            meta={"repo": "javascript:alert(4)", "path": "<b>evil</b>.py", "owner": "Mallory", "licence": "<MIT>"},
        )
    )
    return docs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_get(svc: Any, path: str, **params: Any) -> Any:
    """``GET path`` on the JSON routes of ``svc`` (in process, no server), as an httpx response."""
    import asyncio

    import httpx
    from fastapi import FastAPI

    from spacerini.app.jsonapi import Limiter, json_api_routes

    app = FastAPI(routes=json_api_routes(svc, limiter=Limiter(1, 4)))

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.get(path, params=params)

    return asyncio.run(call())
