"""The app over loopback: named API endpoints, errors, file serving and escaping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(app_server: str) -> Any:
    from gradio_client import Client

    return Client(app_server, verbose=False)


def test_every_capability_is_a_named_endpoint(client: Any, app_bundle: Any) -> None:
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/search", "/count", "/find", "/member", "/owner", "/optout_request", "/stats"} <= names
    hits = json.loads(client.predict("parser helper", "bm25", 5, 5, api_name="/search"))["hits"]
    assert [h["docid"] for h in hits] == [h.docid for h in app_bundle.search("parser helper", k=5, offset=5)]
    assert json.loads(client.predict("json.load", api_name="/count")) == {"query": "json.load", "count": 9, "generation": 1}
    found = json.loads(client.predict("json.load", 4, 4, api_name="/find"))
    assert found["count"] == 9 and [h["rank"] for h in found["hits"]] == [5, 6, 7, 8]
    assert found["hits"][0]["meta"]["path"].startswith("src/")  # provenance comes back as data, not a file
    member = json.loads(client.predict("def fibonacci(n):\n    a, b = 0, 1\n", api_name="/member"))
    assert member["coverage"] > 0.9 and member["spans"]
    owner = json.loads(client.predict("Alan Turing", 5, api_name="/owner"))
    assert owner["matches"][0]["docs"] == 12 and len(owner["matches"][0]["files"]) == 5
    stats = json.loads(client.predict(api_name="/stats"))
    assert stats["docs"] == len(app_bundle)


def test_errors_are_one_line(client: Any) -> None:
    with pytest.raises(Exception, match="the query is empty"):
        client.predict("", "", 5, 0, api_name="/search")
    with pytest.raises(Exception, match="no 'dense'|not available"):
        client.predict("parser", "dense", 5, 0, api_name="/search")
    with pytest.raises(Exception, match="limit is 10,000"):
        client.predict("x" * 10_001, api_name="/count")


def test_no_files_are_served(app_server: str, app_bundle: Any) -> None:
    manifest = Path(app_bundle.path).resolve() / "spacerini.json"
    for target in ("/etc/passwd", str(manifest), str(Path(app_bundle.path) / "docs" / "records.bin")):
        for route in ("gradio_api/file=", "file="):
            r = httpx.get(app_server + route + target, timeout=10)
            assert r.status_code in (403, 404), (route, target, r.status_code)
            assert "root:" not in r.text and "format_version" not in r.text


def test_hostile_document_is_escaped_in_the_page_api(client: Any) -> None:
    hit = next(h for h in json.loads(client.predict("script alert", "", 10, 0, api_name="/search"))["hits"] if h["docid"] == "evil")
    assert "<script>" not in hit["snippet"] and "<img" not in hit["snippet"]
    assert hit["fields"]["note"] == "<script>alert(3)</script>"  # data stays data; the page escapes it


def test_optout_request_endpoint_files_a_pending_request(client: Any, app_bundle: Any) -> None:
    from spacerini.app.requests import OptoutRequestStore, default_requests_path

    filed = json.loads(client.predict("Grace Hopper", "grace@example.org", "", api_name="/optout_request"))
    assert filed["status"] == "pending" and filed["id"].startswith("r-")
    store = OptoutRequestStore(default_requests_path(app_bundle.path), bundle_path=app_bundle.path)
    assert store.get(filed["id"])["name"] == "Grace Hopper"
    with pytest.raises(Exception, match="the contact is empty"):
        client.predict("Grace Hopper", "", "", api_name="/optout_request")
