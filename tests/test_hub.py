"""A Space serving a Hub bundle follows the dataset's new revisions without a restart."""

from __future__ import annotations

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
