"""Opt-out requests: filed in the app or the JSON API (bounded, rate-limited), stored beside the
bundle, listed and applied by the operator with `spacerini optout BUNDLE --requests/--apply`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from app_fixtures import app_docs
from click.testing import CliRunner

from spacerini.app.jsonapi import MAX_BODY_BYTES, Limiter, json_api_routes
from spacerini.app.requests import (
    MAX_CONTACT_CHARS,
    MAX_NAME_CHARS,
    REQUESTS_PER_CLIENT,
    OptoutRequestStore,
    apply_requests,
    default_requests_path,
)
from spacerini.cli import cli
from spacerini.errors import BundleError, QueryError, RateLimitedError, RequestNotFoundError
from spacerini.service import Service


@pytest.fixture
def svc(app_bundle: Any, tmp_path: Path) -> Service:
    return Service(app_bundle, flags_path=tmp_path / "flags.jsonl", requests_path=tmp_path / "requests.jsonl")


# ---------------------------------------------------------------------------------- store
def test_requests_are_stored_pending_beside_the_bundle(app_bundle: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPACERINI_OPTOUT_REQUESTS", raising=False)
    default = default_requests_path(app_bundle.path)
    assert default.parent == Path(app_bundle.path).resolve().parent and default.name.endswith(".optout-requests.jsonl")
    with pytest.raises(BundleError, match="inside the bundle"):
        OptoutRequestStore(Path(app_bundle.path) / "requests.jsonl", bundle_path=app_bundle.path)
    store = OptoutRequestStore(tmp_path / "r.jsonl", bundle_path=app_bundle.path)
    a = store.add(name=" Ada Lovelace ", contact="ada@example.org", message="please remove my repos")
    b = store.add(name="@grace", contact="https://example.org/grace")
    assert a["id"] != b["id"] and a["id"].startswith("r-") and a["name"] == "Ada Lovelace"
    assert [r["id"] for r in store.pending()] == [a["id"], b["id"]]
    store.mark(a["id"], "applied", removed=12)
    assert [r["id"] for r in store.pending()] == [b["id"]]
    assert store.get(a["id"])["status"] == "applied" and store.get(a["id"])["removed"] == 12
    assert (tmp_path / "r.jsonl").stat().st_mode & 0o077 == 0  # contact details: owner-only
    with pytest.raises(RequestNotFoundError, match="no opt-out request 'r-nope'"):
        store.get("r-nope")


def test_service_bounds_and_rate_limits_requests(svc: Service) -> None:
    cases = [
        (("", "me@example.org"), "name or handle is empty"),
        (("Ada", "  "), "contact is empty"),
        (("n" * (MAX_NAME_CHARS + 1), "me@example.org"), "limit is 200"),
        (("Ada", "c" * (MAX_CONTACT_CHARS + 1)), "limit is 320"),
        (("Ada", "me@example.org", "m" * 2_001), "limit is 2,000"),
    ]
    for args, message in cases:
        with pytest.raises(QueryError, match=message):
            svc.optout_request(*args, client="10.0.0.5")
    ids = [svc.optout_request("Ada Lovelace", "ada@example.org", client="10.0.0.5")["id"] for _ in range(REQUESTS_PER_CLIENT)]
    with pytest.raises(RateLimitedError, match="too many opt-out requests"):
        svc.optout_request("Ada Lovelace", "ada@example.org", client="10.0.0.5")
    svc.optout_request("Grace Hopper", "grace@example.org", client="10.0.0.6")
    assert [r["id"] for r in svc.requests.pending()][:REQUESTS_PER_CLIENT] == ids
    assert len(svc.requests.read()) == REQUESTS_PER_CLIENT + 1


# ------------------------------------------------------------------------------- JSON API
def test_json_route_files_a_request(svc: Service) -> None:
    from fastapi import FastAPI

    app = FastAPI(routes=json_api_routes(svc, limiter=Limiter(2, 8)))

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("198.51.100.4", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            out = [await client.post("/api/optout-request", json={"name": "Alan Turing", "contact": "alan@example.org"})]
            out.append(await client.post("/api/optout-request", json={"name": "Alan Turing"}))
            out.append(await client.post("/api/optout-request", content=b"name=Alan"))
            out.append(await client.post("/api/optout-request", content=b"{" + b" " * MAX_BODY_BYTES + b"}"))
            out.append(await client.get("/api/optout-request"))
            for _ in range(REQUESTS_PER_CLIENT):
                out.append(await client.post("/api/optout-request", json={"name": "Alan Turing", "contact": "a@example.org"}))
            return out

    filed, no_contact, not_json, too_big, get, *more = asyncio.run(scenario())
    assert filed.status_code == 200 and filed.json()["status"] == "pending"
    assert svc.requests.get(filed.json()["id"])["contact"] == "alan@example.org"
    assert no_contact.status_code == 400 and no_contact.json() == {"error": "the contact is empty"}
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    assert too_big.status_code == 400 and "larger than" in too_big.json()["error"]
    assert get.status_code == 405
    assert [r.status_code for r in more] == [200] * (REQUESTS_PER_CLIENT - 1) + [429]
    assert more[-1].headers["retry-after"].isdigit() and "too many" in more[-1].json()["error"]


# ----------------------------------------------------------------------------- operators
class RecordingOptout:
    def __init__(self, missing: set[str]) -> None:
        self.missing = missing
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, path: str, *, owners: list[str], request_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        from spacerini.errors import OwnerNotFoundError

        self.calls.append((path, {"owners": owners, "request_id": request_id, **kwargs}))
        if owners[0] in self.missing:
            raise OwnerNotFoundError(f"owner not found: no document of {owners[0]!r}")
        return {"removed": 12}


def test_apply_requests_marks_each_applied_or_not_found(app_bundle: Any, tmp_path: Path) -> None:
    store = OptoutRequestStore(tmp_path / "r.jsonl", bundle_path=app_bundle.path)
    ada = store.add(name="Ada Lovelace", contact="ada@example.org")["id"]
    ghost = store.add(name="Nobody Here", contact="n@example.org")["id"]
    other = store.add(name="Grace Hopper", contact="g@example.org")["id"]
    fake = RecordingOptout({"Nobody Here"})
    with pytest.raises(RequestNotFoundError):
        apply_requests(app_bundle.path, [ada, "r-unknown"], store=store, optout=fake)
    assert fake.calls == []  # an unknown id applies nothing
    results = apply_requests(app_bundle.path, [ada, ghost], store=store, optout=fake, progress=False)
    assert [(r["id"], r["status"]) for r in results] == [(ada, "applied"), (ghost, "not found")]
    assert fake.calls[0][1] == {"owners": ["Ada Lovelace"], "request_id": ada, "progress": False}
    assert [r["id"] for r in store.pending()] == [other]
    with pytest.raises(QueryError, match="already applied"):
        apply_requests(app_bundle.path, [ada], store=store, optout=fake)


def test_operator_lists_and_applies_requests_with_the_cli(tmp_path: Path) -> None:
    from spacerini.bundle import build_bundle, open_bundle

    bundle = build_bundle(app_docs(), tmp_path / "bundle", backends=["exact", "owners"], progress=False)
    store_path = tmp_path / "bundle.optout-requests.jsonl"
    assert default_requests_path(bundle.path) == store_path.resolve()
    svc = Service(bundle, flags_path=tmp_path / "flags.jsonl")
    turing = svc.optout_request("Alan Turing", "alan@example.org", "all my files", client="a")["id"]
    ghost = svc.optout_request("Nobody Here", "n@example.org", client="b")["id"]
    assert store_path.exists() and not list(Path(bundle.path).rglob("*.jsonl"))
    runner = CliRunner()
    listed = runner.invoke(cli, ["optout", str(bundle.path), "--requests"])
    assert listed.exit_code == 0, listed.output
    rows = listed.output.splitlines()
    assert rows[0].split()[:3] == ["id", "status", "filed"]
    assert turing in rows[1] and "Alan Turing" in rows[1] and "alan@example.org" in rows[1] and "pending" in rows[1]
    assert ghost in rows[2] and "2 pending" in rows[3]
    applied = runner.invoke(cli, ["optout", str(bundle.path), "--apply", f"{turing},{ghost}", "--json"])
    assert applied.exit_code == 2, applied.output  # one owner was not found: said, and in the exit status
    assert [(r["id"], r["status"]) for r in json.loads(applied.output)] == [(turing, "applied"), (ghost, "not found")]
    assert json.loads(applied.output)[0]["removed"] == 12
    after = open_bundle(bundle.path)
    assert len(after) == 37 - 12 and after.searcher("owners").owner("Alan Turing").total_docs == 0
    audit = json.dumps(after.manifest["audit_log"])
    assert turing in audit and "Alan Turing" not in audit
    assert "No pending opt-out requests" in runner.invoke(cli, ["optout", str(bundle.path), "--requests"]).output
    everything = json.loads(runner.invoke(cli, ["optout", str(bundle.path), "--requests", "--json"]).output)
    assert {r["id"]: r["status"] for r in everything} == {turing: "applied", ghost: "not found"}
    unknown = runner.invoke(cli, ["optout", str(bundle.path), "--apply", "r-nope"])
    assert unknown.exit_code == 2 and "no opt-out request 'r-nope'" in unknown.output
    # a named store must be one: a missing file, or a corpus file named by mistake, is an error
    # (both listed "No pending opt-out requests")
    for named, needle in ((tmp_path / "nope.jsonl", "no such request store"), (tmp_path / "corpus.jsonl", "not an opt-out request store")):
        if named.name == "corpus.jsonl":
            named.write_text('{"id": "d1", "contents": "text"}\n')
        result = runner.invoke(cli, ["optout", str(bundle.path), "--requests", "--requests-file", str(named)])
        assert result.exit_code == 2 and needle in result.output and "Traceback" not in result.output, result.output
    named_ok = runner.invoke(cli, ["optout", str(bundle.path), "--requests", "--requests-file", str(store_path), "--json"])
    assert named_ok.exit_code == 0 and {r["id"] for r in json.loads(named_ok.output)} == {turing, ghost}


@pytest.mark.parametrize(
    "content_type", ["text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
def test_a_body_another_site_could_post_without_asking_is_refused(svc: Service, content_type: str) -> None:
    """A page on any site could make its visitors' browsers file opt-out requests here: a
    form or a `text/plain` fetch needs no CORS preflight. JSON does."""
    from fastapi import FastAPI

    app = FastAPI(routes=json_api_routes(svc, limiter=Limiter(2, 8)))
    body = json.dumps({"name": "Grace Hopper", "contact": "grace@example.org"}).encode()

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/api/optout-request", content=body, headers={"Content-Type": content_type})

    refused = asyncio.run(post())
    assert refused.status_code == 400 and "Content-Type: application/json" in refused.json()["error"]
    assert not any(r.get("name") == "Grace Hopper" for r in svc.requests.pending())
