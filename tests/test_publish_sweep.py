"""Publishing, the Hub, the builder and the remote loaders under bad input (a sweep's regressions).

The Hub is a fake HTTP server on 127.0.0.1 (``tests/hub_helpers.py``) that the real
``huggingface_hub`` client talks to; nothing here reaches the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spacerini.bundle import build_bundle, open_bundle
from spacerini.errors import BundleCorruptError, CorpusError, DeployError
from tests.hub_helpers import FakeHub, fake_hub

DATA = Path(__file__).resolve().parent / "data"
TOKEN = "hf_FAKEsweepTokenThatMustNeverShow0123"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/data/tiny.jsonl with the exact backend (no JVM)."""
    return build_bundle(DATA / "tiny.jsonl", tmp_path_factory.mktemp("sweep") / "b", backends=["exact"], progress=False).path


@pytest.fixture()
def copy(bundle: Path, tmp_path: Path) -> Path:
    """A copy of the bundle that a test may tamper with."""
    return Path(shutil.copytree(bundle, tmp_path / "t"))


@pytest.fixture()
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with fake_hub(monkeypatch) as fake:
        yield fake


def _edit_manifest(root: Path, change: Any) -> None:
    path = root / "spacerini.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


# ----------------------------------------------------------------- tampered bundles, info --verify
@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda m: m.update(checksums=[]), "'checksums' is not an object"),
        (lambda m: m["checksums"].update({next(iter(m["checksums"])): 5}), "is not {\"size\": N"),
        (lambda m: m.update(backends=[]), "'backends' is not an object"),
        (lambda m: m["backends"].update(exact=5), "'backends' is not an object"),
    ],
)
def test_a_malformed_manifest_is_one_line_naming_the_manifest(copy: Path, change: Any, says: str) -> None:
    _edit_manifest(copy, change)
    for verify in (False, True):
        with pytest.raises(BundleCorruptError) as caught:
            open_bundle(copy, verify=verify)
        message = str(caught.value)
        assert message.startswith(f"{copy / 'spacerini.json'}: ") and says in message and "\n" not in message


def test_checksums_naming_files_outside_the_bundle_are_refused(copy: Path, tmp_path: Path) -> None:
    """A manifest may not make a Space or a push carry a file from beside the bundle."""
    import hashlib

    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-OUTSIDE-THE-BUNDLE")
    entry = {"size": secret.stat().st_size, "sha256": hashlib.sha256(secret.read_bytes()).hexdigest()}
    for rel in ("../secret.txt", str(secret), "exact/../../secret.txt"):
        fresh = Path(shutil.copytree(copy, tmp_path / f"c{abs(hash(rel))}"))
        _edit_manifest(fresh, lambda m, rel=rel: m["checksums"].update({rel: entry}))
        with pytest.raises(BundleCorruptError, match="not a file inside the bundle"):
            open_bundle(fresh, verify=True)
        from spacerini.deploy import render_space

        with pytest.raises(BundleCorruptError):
            render_space(fresh, tmp_path / "space", spacerini_requirement="spacerini")
        assert not (tmp_path / "space").exists()


def test_verify_names_a_file_added_after_the_build(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli_helpers import run

    (copy / "exact" / "sa_00001.npy").write_bytes(b"added later")
    code, out, err = run(["info", str(copy), "--verify"], capsys)
    assert code == 2 and out == ""
    assert err == f"spacerini: error: {copy}: file exact/sa_00001.npy is not in the manifest (added after the build); remove it or rebuild the bundle\n"
    assert open_bundle(copy).info()["counts"]["docs"] == 25  # sizes alone still open it
    (copy / "exact" / "sa_00001.npy").unlink()
    (copy / "README.md").write_text("a Hub dataset repo's card")  # loose files at the top are not the bundle's
    (copy / ".gitattributes").write_text("*.npy filter=lfs")
    code, out, err = run(["info", str(copy), "--verify"], capsys)
    assert code == 0 and json.loads(out)["counts"]["docs"] == 25


def test_verify_passes_on_a_built_bundle_after_searches(bundle: Path) -> None:
    opened = open_bundle(bundle)
    assert opened.search("ranking", k=3)
    open_bundle(bundle, verify=True)  # searching leaves nothing behind in the bundle's folders


# ------------------------------------------------------------------------------ space --out
def test_space_out_never_replaces_or_sits_inside_a_bundle(copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli_helpers import run

    before = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*"))
    for out in (copy, copy.parent, copy / "space"):
        code, _, err = run(["space", str(copy), "--out", str(out), "--force"], capsys)
        assert code == 2 and err.count("\n") == 1 and "outside the bundle" in err, err
    assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*")) == before
    open_bundle(copy, verify=True)


@pytest.mark.parametrize("emoji", ["", " ", "ab", "search 🔎", "🔎\x00"])
def test_a_space_emoji_that_is_not_an_emoji_is_refused_before_anything_is_written(
    bundle: Path, tmp_path: Path, emoji: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.cli_helpers import run

    code, _, err = run(["space", str(bundle), "--out", str(tmp_path / "s"), "--emoji", emoji], capsys)
    assert code == 2 and err.count("\n") == 1 and "must be one emoji" in err, err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("emoji", ["🔎", "📚", "👩‍💻", "🇫🇷", "1️⃣"])
def test_space_emojis_of_several_code_points_are_taken(bundle: Path, tmp_path: Path, emoji: str) -> None:
    from spacerini.deploy import render_space

    out = render_space(bundle, tmp_path / "s", emoji=emoji)
    assert emoji in (out / "README.md").read_text(encoding="utf-8").split("---")[1]  # in the front matter


def test_force_replaces_only_a_rendered_space(bundle: Path, tmp_path: Path) -> None:
    from spacerini.deploy import render_space

    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("keep me")
    with pytest.raises(DeployError, match="not a rendered Space folder"):
        render_space(bundle, project, overwrite=True, spacerini_requirement="spacerini")
    assert (project / "notes.txt").read_text() == "keep me"
    space = render_space(bundle, tmp_path / "space", spacerini_requirement="spacerini")
    again = render_space(bundle, space, overwrite=True, title="Again", spacerini_requirement="spacerini")
    assert 'title: "Again"' in (again / "README.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------- repo ids
@pytest.mark.parametrize("repo_id", ["me/x--y", "me/x.git", "me/x-", "me/.x", "me/x.", "../x", "a/b/c", "me/" + "a" * 97, ""])
def test_repo_ids_the_hub_refuses_fail_before_anything_is_built(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from spacerini.hub import check_repo_id

    with pytest.raises(DeployError, match="not a Hugging Face repo id"):
        check_repo_id(repo_id)
    with pytest.raises(HFValidationError):  # the Hub client agrees
        validate_repo_id(repo_id)


def test_repo_ids_the_hub_takes_pass() -> None:
    from spacerini.hub import check_repo_id

    for repo_id in ("me/x", "Me-1/Data.v2", "org_a/b_", "me/" + "a" * 96):
        assert check_repo_id(repo_id) == repo_id


# ------------------------------------------------------------------------ the Hub: offline
@pytest.fixture()
def silent_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Hub (or proxy) that takes connections and never answers."""
    from spacerini.corpus import hf

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(hf, "_probe_cache", {})
    monkeypatch.setattr(hf, "PROBE_TIMEOUT", 0.5)
    import datasets.config
    import huggingface_hub.constants

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    try:
        yield url
    finally:
        server.close()


def test_deploy_push_and_hf_bundles_fail_at_once_when_the_hub_does_not_answer(
    silent_hub: str, bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spacerini.deploy
    from spacerini.deploy import deploy, push
    from spacerini.errors import BundleNotFoundError

    built: list[int] = []
    monkeypatch.setattr(spacerini.deploy, "spacerini_wheel", lambda: built.append(1))
    for call in (lambda: deploy(bundle, "me/space", token=TOKEN), lambda: push(bundle, "me/data", token=TOKEN)):
        raised = _within(10, call)  # the Hub client itself would wait for ever
        assert isinstance(raised, DeployError) and "does not answer" in str(raised) and TOKEN not in str(raised)
    assert built == []  # nothing was rendered before the Hub was found missing
    missing = _within(10, lambda: open_bundle("hf:me/not-cached-bundle"))
    assert isinstance(missing, BundleNotFoundError) and "not in the local Hugging Face cache" in str(missing)
    assert "\n" not in str(missing)


def _within(seconds: float, call: Any) -> BaseException | None:
    """What ``call`` raised, failing the test if it has not returned within ``seconds``."""
    import threading

    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still waiting for the Hub after {seconds} s"
    return outcome[0]


# --------------------------------------------------------------------- the Hub: real client
def test_deploy_against_a_fake_hub_ships_no_token_and_no_machine_paths(bundle: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from spacerini.deploy import deploy

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    deploy(bundle, "me/tiny-search", spacerini_requirement="spacerini @ git+https://example.org/spacerini.git")
    files = hub.commits["spaces/me/tiny-search"]
    assert {"README.md", "app.py", "requirements.txt", "packages.txt", "bundle/spacerini.json"} <= set(files)
    assert {f.removeprefix("bundle/") for f in files if f.startswith("bundle/")} == {
        "spacerini.json", *json.loads((bundle / "spacerini.json").read_text())["checksums"]
    }
    for name, data in files.items():
        assert TOKEN.encode() not in data, name
        assert str(bundle.parent).encode() not in data and str(DATA).encode() not in data, name
    posts = [(path.split("?")[0], auth) for method, path, auth in hub.requests if method == "POST"]
    assert [p for p, _ in posts if "validate-yaml" not in p] == [
        "/api/repos/create", "/api/spaces/me/tiny-search/preupload/main", "/api/spaces/me/tiny-search/commit/main"
    ]  # fmt: skip
    assert {auth for _, auth in posts} == {f"Bearer {TOKEN}"}  # the token goes to the Hub, and only there


def test_deploy_and_push_answer_with_the_address_of_the_hub_they_wrote_to(
    bundle: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HF_ENDPOINT set (a private Hub), the printed URLs and the card's link lead there."""
    from spacerini.deploy import deploy, push

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert push(bundle, "me/data") == f"{hub.url}/datasets/me/data"
    url = deploy(bundle, "me/follows", bundle_repo="me/data", spacerini_requirement="spacerini")
    assert url == f"{hub.url}/spaces/me/follows"
    card = hub.commits["spaces/me/follows"]["README.md"].decode()
    assert f"]({hub.url}/datasets/me/data)" in card and "huggingface.co" not in card


def test_hub_refusals_that_quote_the_token_never_show_it(
    bundle: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from spacerini.app.flags import HubSync
    from spacerini.deploy import push

    hub.fail_with = 401
    with pytest.raises(DeployError) as caught:
        push(bundle, "me/data", token=TOKEN)
    assert TOKEN not in str(caught.value) and "\n" not in str(caught.value)
    reports = bundle.parent / "flags.jsonl"
    reports.write_text('{"docid": "d01"}\n')
    sync = HubSync("me/flags", token=TOKEN, files={reports: "flags"})
    sync._dirty.add(reports)
    with caplog.at_level(logging.WARNING, logger="spacerini.app.flags"):
        assert sync.sync() == []
    logged = [r.getMessage() for r in caplog.records if r.name == "spacerini.app.flags"]
    assert logged and all("Bearer" not in m and TOKEN[:8] not in m and "\n" not in m for m in logged), logged


def test_cli_push_failure_is_one_line_on_stderr(bundle: Path, hub: FakeHub) -> None:
    """The Hub client's own request logs (the httpx2 logger) stay off the CLI's stderr."""
    hub.fail_with = 403
    env = {**os.environ, "HF_TOKEN": TOKEN, "HF_ENDPOINT": hub.url, "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("TRANSFORMERS_OFFLINE", None)  # the Hub client reads it as HF_HUB_OFFLINE
    done = subprocess.run(
        [sys.executable, "-m", "spacerini", "push", str(bundle), "--repo", "me/data"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("spacerini: error: pushing "), done.stderr
    assert TOKEN not in done.stderr


# ---------------------------------------------------------------------------- the builder
@pytest.mark.parametrize(
    "name",
    ["hf:{dir}", "{dir}", "hf:./{rel}", "{rel}", "~/{rel}", "hf:{dir}:x@train", "hf:a/b:c/d", "hf:x..y", "hf:😀"],
)
def test_the_builder_reads_no_folder_of_its_machine(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spacerini.app.builder import Builder

    private = tmp_path / "private"
    private.mkdir()
    (private / "a.jsonl").write_text('{"id": "1", "text": "a private note"}\n')
    monkeypatch.chdir(tmp_path)
    spec = name.format(dir=private, rel="private")
    with pytest.raises(CorpusError, match="not a Hugging Face dataset name") as caught:
        Builder(tmp_path / "work").inspect(spec, None)
    assert "private note" not in str(caught.value)


def test_the_builder_takes_hub_dataset_names(tmp_path: Path) -> None:
    from spacerini.app.builder import Builder

    b = Builder(tmp_path / "work")
    assert b.source_of("imdb", None) == "hf:imdb"
    assert b.source_of(" hf:stanfordnlp/imdb:plain_text@test ", None) == "hf:stanfordnlp/imdb:plain_text@test"


# ------------------------------------------------------------------------------ flags file
def test_flags_lines_that_are_not_reports_are_skipped_by_name(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from tests.cli_helpers import run

    path = tmp_path / "flags.jsonl"
    path.write_bytes(
        b'{"at": "2026-01-01T00:00:00+00:00", "docid": "d01", "reason": "other", "query": "q"}\n'
        b"[1, 2]\n\"text\"\n\xff\xfe{}\n{torn"
    )
    with caplog.at_level(logging.WARNING, logger="spacerini.app.flags"):
        code, out, err = run(["flags", str(bundle), "--flags", str(path)], capsys)
    assert code == 0 and "d01" in out and "1 reports" in out, err
    warned = [r.getMessage() for r in caplog.records if r.name == "spacerini.app.flags"]
    assert [m.split(": ", 1)[0] for m in warned] == [f"{path}:{n}" for n in (2, 3, 4, 5)], warned
    code, out, _ = run(["flags", str(bundle), "--flags", str(path), "--json"], capsys)
    assert code == 0 and [r["docid"] for r in json.loads(out)] == ["d01"]


# --------------------------------------------------------------------------- irds: caches
def _broken_docs(eager: bool) -> Any:
    """A docs handler whose cached archive is damaged (as an interrupted download leaves it)."""
    from ir_datasets.formats import BaseDocs

    class BrokenDocs(_BrokenDocs, BaseDocs):
        pass

    return BrokenDocs(eager)


class _BrokenDocs:
    def __init__(self, eager: bool) -> None:
        self.eager = eager

    def docs_iter(self) -> Iterator[Any]:
        import tarfile

        if self.eager:
            raise tarfile.ReadError("not a gzip file")
        return self._lazy()

    def _lazy(self) -> Iterator[Any]:
        import zipfile

        raise zipfile.BadZipFile("File is not a zip file")
        yield  # pragma: no cover


@pytest.mark.parametrize("eager", [True, False])
def test_a_damaged_irds_cache_is_one_line_naming_the_dataset(eager: bool, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import uuid

    import ir_datasets
    from ir_datasets.datasets.base import Dataset

    from tests.cli_helpers import run

    name = f"spacerini-test/broken-{uuid.uuid4().hex[:8]}"
    ir_datasets.registry.register(name, Dataset(_broken_docs(eager)))
    code, out, err = run(["index", f"irds:{name}", "--out", str(tmp_path / "b"), "--backends", "exact"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"spacerini: error: irds:{name}: ir_datasets could not read document 1 (")
    assert ("ReadError" if eager else "BadZipFile") in err and "fetch them again" in err
    assert not (tmp_path / "b").exists()


# ------------------------------------------------------------------ opt-outs reach the Hub
def test_a_push_after_an_optout_leaves_no_copy_of_the_removed_documents_on_the_hub(
    tmp_path: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A push used to add files without deleting the earlier generation's, and every earlier
    revision still served the documents an opt-out had removed."""
    from spacerini.bundle import optout
    from spacerini.deploy import deploy, push
    from spacerini.records import Doc

    secret = "zanzibar-unique-phrase"
    docs = [Doc(id=f"d{i}", text=f"text {i} " + (secret if i < 2 else "plain"), meta={"owner": "Jane Doe" if i < 2 else "Bob"}) for i in range(6)]
    path = build_bundle(docs, tmp_path / "b", backends=["exact", "owners"], progress=False).path
    push(path, "me/data", token=TOKEN)
    assert hub.squashed == []  # no opt-out yet: the history is left alone
    repo = hub.commits["datasets/me/data"]
    repo["README.md"] = b"the dataset card, not the bundle's"
    repo["docs/part-from-an-older-build.bin"] = b"old " + secret.encode()
    optout(path, owners=["jane doe"], progress=False)
    push(path, "me/data", token=TOKEN)
    listed = set(json.loads((path / "spacerini.json").read_text())["checksums"])
    assert set(repo) == {"README.md", "spacerini.json", *listed}  # the stale file is gone, the card stays
    assert not any(secret.encode() in data for data in repo.values())
    assert hub.squashed == ["datasets/me/data"]
    with caplog.at_level(logging.WARNING, logger="spacerini.deploy"):
        push(path, "me/data", token=TOKEN, keep_history=True)
    assert hub.squashed == ["datasets/me/data"] and "keeps its history" in caplog.text
    # a Space that holds the bundle itself is squashed too, and loses an earlier deploy's files
    hub.commits["spaces/me/s"] = {"bundle/docs/old.bin": b"old " + secret.encode()}
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    deploy(path, "me/s", spacerini_requirement="spacerini @ git+https://example.org/spacerini.git")
    assert not any(secret.encode() in data for data in hub.commits["spaces/me/s"].values())
    assert hub.squashed[-1] == "spaces/me/s"
    # nor a digest of what was removed: hashing a corpus's ids would tell whose documents left
    digests = {hashlib.sha256(d.encode()).hexdigest().encode() for d in ("d0", "d1")}
    assert digests <= {h.encode() for e in json.loads((path / "spacerini.json").read_text())["audit_log"] for h in e.get("removed_id_sha256", ())}
    for copy in (hub.commits["datasets/me/data"], hub.commits["spaces/me/s"]):
        assert not any(digest in data for data in copy.values() for digest in digests)
        manifest = json.loads(copy["spacerini.json" if "spacerini.json" in copy else "bundle/spacerini.json"])
        assert [e["removed"] for e in manifest["audit_log"] if e.get("action") == "optout"] == [2]


def test_an_optout_names_the_published_copies_that_still_hold_the_documents(
    tmp_path: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spacerini.bundle import optout
    from spacerini.deploy import deploy, push
    from spacerini.records import Doc

    docs = [Doc(id=f"d{i}", text=f"text {i}", meta={"owner": "Jane" if i < 2 else "Bob"}) for i in range(5)]
    path = build_bundle(docs, tmp_path / "b", backends=["exact", "owners"], progress=False).path
    push(path, "me/data", token=TOKEN)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    deploy(path, "me/s", spacerini_requirement="spacerini @ git+https://example.org/spacerini.git")
    record = tmp_path / ".b.published.json"
    assert record.is_file() and not (path / ".b.published.json").exists()
    assert TOKEN not in record.read_text()
    cli = [sys.executable, "-m", "spacerini", "optout", str(path), "--owner", "jane"]
    done = subprocess.run(cli, capture_output=True, text=True, env={**os.environ, "SPACERINI_NO_PROGRESS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "its published copies still hold the documents this opt-out removed" in done.stderr
    assert f"spacerini push {path} --repo me/data" in done.stderr and f"spacerini deploy {path} --space me/s" in done.stderr
    push(path, "me/data", token=TOKEN)  # the dataset is updated; the Space is not yet
    from spacerini.bundle.copies import stale_copies

    with open_bundle(path) as now:
        assert stale_copies(path, now.generation) == [f"spacerini deploy {path} --space me/s"]
    optout(path, owners=["bob"], progress=False)  # the Python API says it too (a warning), and it still works


def test_a_bundle_from_the_hub_cache_gets_no_copies_record_inside_the_cache(tmp_path: Path) -> None:
    """A record beside a bundle opened as hf:NAME would land in the cache's snapshots/ folder."""
    from spacerini.bundle.copies import read_copies, record_copy

    snapshot = tmp_path / "hub" / "datasets--me--b" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    record_copy(snapshot, "dataset", "me/other", 3)
    assert list(snapshot.parent.iterdir()) == [snapshot] and read_copies(snapshot) == []
    plain = tmp_path / "b"
    plain.mkdir()
    record_copy(plain, "dataset", "me/other", 3)
    assert [e["repo_id"] for e in read_copies(plain)] == ["me/other"]
