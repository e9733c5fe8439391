"""A Space serving a Hub bundle follows the dataset's new revisions without a restart."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from spacerini.bundle import build_bundle, open_bundle
from spacerini.hub import follow_hub_bundle
from spacerini.records import Doc


def test_a_bundle_opened_at_the_link_switches_to_a_new_revision(tmp_path: Path) -> None:
    first = build_bundle([Doc(id="a1", text="alpha revision text")], tmp_path / "rev1", progress=False).path
    second = build_bundle([Doc(id="b1", text="beta revision text")], tmp_path / "rev2", progress=False).path
    revisions = [first]
    asked: list[str] = []

    def resolve(spec: str) -> Path:  # stands in for the Hub download of the newest revision
        asked.append(spec)
        return revisions[-1]

    stop = threading.Event()
    try:
        link = follow_hub_bundle("hf:me/bundle", tmp_path / "live", interval=0.1, stop=stop, resolve=resolve)
        live = open_bundle(link)
        assert [h.docid for h in live.search("revision")] == ["a1"]
        revisions.append(second)  # an opt-out or rebuild pushed a new revision
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and [h.docid for h in live.search("revision")] != ["b1"]:
            time.sleep(0.1)
        assert [h.docid for h in live.search("revision")] == ["b1"]
        assert live.search("alpha") == [] and asked[0] == "hf:me/bundle"
        assert link.is_symlink() and link.resolve() == second.resolve()
    finally:
        stop.set()


def test_following_survives_a_failed_check_and_stores_stay_one_file_across_revisions(tmp_path: Path) -> None:
    """Any error but BundleNotFoundError ended the watcher for good (the Space then never saw the
    revision an opt-out pushed), and the request and report stores were named after the
    resolved snapshot, so each revision started new, empty ones."""
    from spacerini.app.flags import default_flags_path
    from spacerini.app.requests import default_requests_path

    first = build_bundle([Doc(id="a1", text="alpha revision text")], tmp_path / "rev1", progress=False).path
    second = build_bundle([Doc(id="b1", text="beta revision text")], tmp_path / "rev2", progress=False).path
    answers: list[object] = [first]

    def resolve(spec: str) -> Path:
        answer = answers[0] if len(answers) == 1 else answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    stop = threading.Event()
    try:
        link = follow_hub_bundle("hf:me/bundle", tmp_path / "live", interval=0.05, stop=stop, resolve=resolve)
        stores = (default_requests_path(link), default_flags_path(link))
        answers[:] = [OSError("disk full while downloading"), second]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and link.resolve() != second.resolve():
            time.sleep(0.05)
        assert link.resolve() == second.resolve()
        assert (default_requests_path(link), default_flags_path(link)) == stores
        assert stores[0] == tmp_path / "live.optout-requests.jsonl"
    finally:
        stop.set()


def _cache_revision(hub_dir: Path, repo_id: str, bundle: Path, sha: str) -> Path:
    """Puts ``bundle`` in a Hugging Face cache as a download leaves it: each file a blob named by
    its hash, linked from ``snapshots/SHA/``; ``refs/main`` names the revision."""
    import hashlib
    import os

    repo = hub_dir / f"datasets--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    snapshot = repo / "snapshots" / sha
    for file in sorted(p for p in bundle.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        target = snapshot / file.relative_to(bundle)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, target.parent), target)
    (repo / "refs" / "main").write_text(sha)
    return snapshot


def test_a_replaced_revision_leaves_the_cache_with_the_documents_it_held(tmp_path: Path) -> None:
    """The Space's Hub cache kept every replaced revision, with the documents an opt-out removed."""
    cache = tmp_path / "hub"
    docs = [Doc(id=f"d{i}", text=f"shared text {i}") for i in range(3)]
    first = build_bundle([*docs, Doc(id="gone", text="removed by an opt-out zanzibar")], tmp_path / "rev1", progress=False).path
    second = build_bundle(docs, tmp_path / "rev2", progress=False).path
    old = _cache_revision(cache, "me/b", first, "a" * 40)
    answers = [old]

    def resolve(spec: str) -> Path:
        return answers[-1]

    stop = threading.Event()
    try:
        link = follow_hub_bundle("hf:me/b", tmp_path / "live", interval=0.05, stop=stop, resolve=resolve, forget_after=0.2)
        live = open_bundle(link)
        assert [h.docid for h in live.search("zanzibar")] == ["gone"]
        answers.append(_cache_revision(cache, "me/b", second, "b" * 40))
        blob_dir = cache / "datasets--me--b" / "blobs"

        def blobs() -> list[bytes]:  # read while the deletion may still be removing blobs
            out = []
            for path in blob_dir.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    out.append(path.read_bytes())
            return out

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (old.exists() or any(b"zanzibar" in data for data in blobs())):
            time.sleep(0.05)
        assert not old.exists() and link.resolve() == answers[-1].resolve()
        assert blobs() and not any(b"zanzibar" in data for data in blobs())  # only the old revision held it
        live.reload()  # (a call switches within RELOAD_SECONDS; the old revision left the cache sooner here)
        assert live.search("zanzibar") == [] and len(live.search("shared")) == 3
    finally:
        stop.set()
    from spacerini.hub import forget_revision

    assert forget_revision(first) is False  # a folder outside the cache is never touched
    assert first.is_dir()
