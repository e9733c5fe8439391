"""Flagged results: bounded, rate-limited, about real documents, readable by operators and kept
on a Space (persistent storage or a Hub dataset; the Hub is a recorder here, no network)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from spacerini.app import flags as flags_mod
from spacerini.app.flags import (
    FLAGS_PER_CLIENT,
    MAX_FLAG_QUERY_CHARS,
    MAX_REASON_CHARS,
    Destination,
    HubSync,
    RateLimiter,
    client_key,
    persistent_destination,
)
from spacerini.cli import cli
from spacerini.errors import QueryError, RateLimitedError
from spacerini.service import Service


@pytest.fixture
def svc(app_bundle: Any, tmp_path: Path) -> Service:
    return Service(app_bundle, flags_path=tmp_path / "flags.jsonl", requests_path=tmp_path / "requests.jsonl")


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


# --------------------------------------------------------------------------- what is taken
def test_flags_are_rate_limited_per_client(svc: Service) -> None:
    for i in range(FLAGS_PER_CLIENT):
        svc.flag("parser", f"f{i:02d}", "other", client="10.0.0.1")
    with pytest.raises(RateLimitedError, match=f"at most {FLAGS_PER_CLIENT} per 60 seconds") as info:
        svc.flag("parser", "f20", "other", client="10.0.0.1")
    assert 1 <= info.value.retry_after <= 60
    svc.flag("parser", "f20", "other", client="10.0.0.2")  # another client is not held back
    assert [r["docid"] for r in lines(svc.flags.path)][-2:] == [f"f{FLAGS_PER_CLIENT - 1:02d}", "f20"]
    assert len(lines(svc.flags.path)) == FLAGS_PER_CLIENT + 1


def test_rate_limiter_window_slides_and_memory_is_bounded() -> None:
    limiter = RateLimiter(2, 60, what="reports", max_clients=3)
    limiter.check("a", now=0)
    limiter.check("a", now=30)
    with pytest.raises(RateLimitedError, match="try again in 1 s"):
        limiter.check("a", now=59)
    limiter.check("a", now=60.5)  # the first one left the window
    for c in "bcde":
        limiter.check(c, now=61)
    assert len(limiter._seen) == 3 and "a" not in limiter._seen


def test_flags_are_size_bounded_and_about_documents_of_the_bundle(svc: Service) -> None:
    cases = [
        (("q" * (MAX_FLAG_QUERY_CHARS + 1), "f01", "other"), "limit is 2,000"),
        (("parser", "f01", "r" * (MAX_REASON_CHARS + 1)), "limit is 500"),
        (("parser", "no-such-doc", "other"), "no document 'no-such-doc'"),
        (("parser", "d" * 5_000, "other"), "limit is 1,000"),
        (("parser", "  ", "other"), "pick a result"),
    ]
    for args, message in cases:
        with pytest.raises(QueryError, match=message):
            svc.flag(*args, client="10.0.0.9")
    assert lines(svc.flags.path) == []
    for _ in range(FLAGS_PER_CLIENT):  # refused reports did not use up the allowance
        svc.flag("parser", "evil", "harmful content", client="10.0.0.9")


def test_client_key_trusts_forwarded_for_only_behind_the_space_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    class Req:
        headers = {"x-forwarded-for": "6.6.6.6, 203.0.113.7"}
        client = type("C", (), {"host": "10.1.2.3"})()

    monkeypatch.delenv("SPACE_ID", raising=False)
    assert client_key(Req()) == "10.1.2.3"
    monkeypatch.setenv("SPACE_ID", "me/space")
    assert client_key(Req()) == "203.0.113.7"  # the address the proxy saw, not the one the client wrote
    assert client_key(None) == "local"


# ----------------------------------------------------------------------------- operators
def test_flags_command_prints_a_table_and_json(svc: Service, app_bundle: Any) -> None:
    svc.flag("json load", "f01", "licence problem", client="x")
    svc.flag("multi\nline\tquery", "evil", "personal information", client="y")
    runner = CliRunner()
    table = runner.invoke(cli, ["flags", str(app_bundle.path), "--flags", str(svc.flags.path)])
    assert table.exit_code == 0, table.output
    rows = table.output.splitlines()
    assert rows[0].split() == ["when", "docid", "reason", "query"]
    assert "f01" in rows[1] and "licence problem" in rows[1] and "json load" in rows[1]
    assert "evil" in rows[2] and "multi line query" in rows[2]
    assert rows[-1].startswith("2 reports")
    as_json = runner.invoke(cli, ["flags", str(app_bundle.path), "--flags", str(svc.flags.path), "--json"])
    assert as_json.exit_code == 0 and [r["docid"] for r in json.loads(as_json.output)] == ["f01", "evil"]
    empty = runner.invoke(cli, ["flags", str(app_bundle.path), "--flags", str(svc.flags.path.parent / "none.jsonl")])
    assert empty.exit_code == 0 and "No flagged results" in empty.output
    typo = runner.invoke(cli, ["flags", str(svc.flags.path.parent / "no-such-bundle")])
    assert typo.exit_code == 2 and "not a Spacerini bundle" in typo.output


# ------------------------------------------------------------------------------ on a Space
def test_persistent_destination_prefers_space_storage_then_a_dataset(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    missing = tmp_path / "no-data"
    space = {"SPACE_ID": "me/search"}
    hub = {"SPACERINI_FLAGS_DATASET": "me/search-flags", "HF_TOKEN": "hf_x"}
    assert persistent_destination(environ=space, data_dir=data) == Destination(data / "spacerini")
    assert persistent_destination(environ={**space, **hub}, data_dir=data) == Destination(data / "spacerini")
    to_hub = persistent_destination(environ={**space, **hub}, data_dir=missing)
    assert to_hub is not None and to_hub.dataset == "me/search-flags" and to_hub.token == "hf_x"
    assert "hf_x" not in repr(to_hub)
    assert persistent_destination(environ={**space, "SPACERINI_FLAGS_DATASET": "me/f"}, data_dir=missing) is None  # no token
    assert persistent_destination(environ=space, data_dir=missing) is None
    assert persistent_destination(environ={}, data_dir=data) is None  # not a Space: /data means nothing


class RecordingApi:
    def __init__(self, fail: int = 0) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail

    def create_repo(self, repo_id: str, **kwargs: Any) -> None:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def upload_file(self, **kwargs: Any) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("network is unreachable")
        kwargs["content"] = Path(kwargs["path_or_fileobj"]).read_text()
        self.calls.append(("upload_file", kwargs))


def test_a_space_without_storage_uploads_reports_to_the_dataset(
    app_bundle: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPACE_ID", "me/search")
    monkeypatch.setenv("SPACERINI_FLAGS_DATASET", "me/search-flags")
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    monkeypatch.delenv("SPACERINI_FLAGS", raising=False)
    monkeypatch.delenv("SPACERINI_OPTOUT_REQUESTS", raising=False)
    monkeypatch.setattr(flags_mod, "SPACE_DATA_DIR", tmp_path / "no-data")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    svc = Service(app_bundle)
    assert svc.hub is not None and svc.hub.dataset == "me/search-flags"
    assert tmp_path / "tmp" / "spacerini-stores" in svc.flags.path.parents
    api = svc.hub._api = RecordingApi(fail=1)
    svc.hub.every = 3600  # the test calls sync itself
    svc.flag("parser", "f01", "other", client="a")
    assert svc.hub.sync() == []  # the network failed: kept for the next sync
    svc.optout_request("Ada Lovelace", "ada@example.org", client="a")
    uploaded = svc.hub.sync()
    assert sorted(p.split("/")[0] for p in uploaded) == ["flags", "optout-requests"]
    assert api.calls[0] == ("create_repo", {"repo_id": "me/search-flags", "repo_type": "dataset", "private": True, "exist_ok": True})
    uploads = {c["path_in_repo"].split("/")[0]: c for _, c in api.calls[1:]}
    assert json.loads(uploads["flags"]["content"])["docid"] == "f01"
    assert uploads["flags"]["repo_type"] == "dataset" and uploads["flags"]["repo_id"] == "me/search-flags"
    assert json.loads(uploads["optout-requests"]["content"])["name"] == "Ada Lovelace"
    assert svc.hub.sync() == []  # nothing changed since
    svc.hub.close()


def test_a_space_with_storage_keeps_reports_in_data(app_bundle: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("SPACE_ID", "me/search")
    monkeypatch.setenv("SPACERINI_FLAGS_DATASET", "me/search-flags")
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    monkeypatch.delenv("SPACERINI_FLAGS", raising=False)
    monkeypatch.delenv("SPACERINI_OPTOUT_REQUESTS", raising=False)
    monkeypatch.setattr(flags_mod, "SPACE_DATA_DIR", tmp_path / "data")
    svc = Service(app_bundle)
    assert svc.hub is None
    svc.flag("parser", "f02", "other", client="a")
    assert tmp_path / "data" / "spacerini" in svc.flags.path.parents and lines(svc.flags.path)[0]["docid"] == "f02"
    runner = CliRunner()  # the operator's command finds the same file
    listed = runner.invoke(cli, ["flags", str(app_bundle.path), "--json"])
    assert listed.exit_code == 0 and [r["docid"] for r in json.loads(listed.output)] == ["f02"]


def test_hub_sync_names_are_per_process(tmp_path: Path) -> None:
    f = tmp_path / "flags.jsonl"
    a = HubSync("me/d", token="t", files={f: "flags"}, api=RecordingApi())
    b = HubSync("me/d", token="t", files={f: "flags"}, api=RecordingApi())
    assert a.targets[f] != b.targets[f] and a.targets[f].startswith("flags/") and a.targets[f].endswith(".jsonl")


def test_a_flag_reason_cannot_forge_log_lines(svc: Service, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="spacerini.app.flags"):
        svc.flag("parser", "f01", "spam\nERROR spacerini.app: the admin token is hf_x", client="10.0.0.9")
    [record] = [r for r in caplog.records if r.getMessage().startswith("flagged")]
    assert "\n" not in record.getMessage() and "\\n" in record.getMessage()
