"""Bundles under concurrency and in live use: the lock, generations, stale folders, opt-out."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from build_helpers import wait_until_indexing, write_big_corpus

from spacerini.bundle import MANIFEST, RELOAD_SECONDS, build_bundle, bundle_lock, open_bundle, optout
from spacerini.errors import BundleLockedError, OwnerNotFoundError
from spacerini.records import Doc

ENV = {**os.environ, "SPACERINI_NO_PROGRESS": "1"}


def default_signals() -> None:
    """In the child: default dispositions for the signals the tests send (a runner started in
    the background of a script inherits SIGINT ignored, which Python keeps ignored)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
BACKENDS = ["bm25", "exact", "owners"]


def _docs(n: int = 40, *, word: str = "search") -> list[Doc]:
    return [
        Doc(
            id=f"d{i:02d}",
            text=f"document {i} by owner{i % 20} about {word} engines token{i}",
            meta={"owner": f"Owner {i % 20}", "repo": f"org{i % 20}/repo"},
        )
        for i in range(n)
    ]


def _cli(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "spacerini", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
        preexec_fn=default_signals,
    )  # fmt: skip


def _ids(path: Path) -> set[str]:
    with open_bundle(path) as b:
        return {d.id for d in b.iter_docs()}


def _owned(owner: int) -> set[str]:
    return {f"d{i:02d}" for i in range(40) if i % 20 == owner}


@pytest.fixture()
def bundle_path(tmp_path: Path) -> Path:
    out = tmp_path / "b"
    build_bundle(_docs(), out, backends=BACKENDS, progress=False).close()
    return out


def test_two_optouts_at_once_both_hold(bundle_path: Path) -> None:
    first = _cli("optout", str(bundle_path), "--owner", "Owner 3")
    time.sleep(0.3)
    second = _cli("optout", str(bundle_path), "--owner", "Owner 17")
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    left = _ids(bundle_path)
    assert not left & (_owned(3) | _owned(17))
    assert len(left) == 36
    manifest = json.loads((bundle_path / MANIFEST).read_text())
    assert [e["removed"] for e in manifest["audit_log"]] == [2, 2]
    assert manifest["generation"] == 3


def test_a_second_command_waits_and_says_so_or_fails_with_no_wait(bundle_path: Path) -> None:
    with bundle_lock(bundle_path):
        refused = _cli("optout", str(bundle_path), "--owner", "Owner 3", "--no-wait")
        _, err = refused.communicate(timeout=120)
        assert refused.returncode == 2
        lines = err.decode().strip().splitlines()
        assert len(lines) == 1 and "another spacerini command is changing this bundle" in lines[0]
        with pytest.raises(BundleLockedError):
            build_bundle(_docs(3), bundle_path, progress=False, wait=False)
        waiting = _cli("optout", str(bundle_path), "--owner", "Owner 3")
        time.sleep(3)
        assert waiting.poll() is None  # still waiting for the lock
    _, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0
    assert "waiting for it to finish" in err.decode()
    assert not _ids(bundle_path) & _owned(3)


def test_open_bundle_follows_new_generations(bundle_path: Path, tmp_path: Path) -> None:
    live = open_bundle(bundle_path)
    assert live.generation == 1
    assert {h.docid for h in live.search("owner3", k=10)} == _owned(3)
    assert live.searcher("exact").count("owner3 ") == 2
    optout(bundle_path, owners=["Owner 3"], progress=False)
    time.sleep(RELOAD_SECONDS + 0.1)
    assert live.generation == 2
    assert live.search("owner3", k=10) == []
    assert live.searcher("exact").count("owner3 ") == 0
    assert "Owner 3" not in {m.owner for m in live.searcher("owners").owner("Owner 3").matches}
    assert live.manifest["audit_log"][-1]["removed"] == 2
    # A rebuild from another corpus: every backend switches together (and Owner 3's d03 stays out).
    build_bundle(_docs(5, word="quantum"), bundle_path, backends=BACKENDS, progress=False).close()
    assert live.reload() is True
    assert live.generation == 3 and len(live) == 4
    assert live.searcher("exact").count("quantum") == 4
    assert live.searcher("exact").count("search") == 0
    assert {h.docid for h in live.search("quantum", k=10)} == {"d00", "d01", "d02", "d04"}
    live.close()


def test_a_pinned_generation_never_mixes_with_the_next(bundle_path: Path) -> None:
    live = open_bundle(bundle_path)
    with live.pin() as snap:
        live.search("owner3")  # bm25 opened on generation 1
        build_bundle(_docs(5, word="quantum"), bundle_path, backends=BACKENDS, progress=False).close()
        # The open searcher keeps answering from generation 1 ...
        assert {h.docid for h in snap.search("owner3", k=10)} == _owned(3)
        # ... and a backend it had not opened is refused rather than read from generation 2.
        with pytest.raises(Exception, match="changed while it was being read"):
            snap.searcher("exact")
    assert live.searcher("exact").count("quantum") == 5  # the bundle itself retries on the new one
    live.close()


def _deleted_files_held(folder: Path) -> list[str]:
    """Deleted files under ``folder`` that this process still holds open or mapped."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.endswith("(deleted)") and target.startswith(str(folder)):
            held.append(target)
    with open("/proc/self/maps") as maps:
        held += [line.split(None, 5)[-1] for line in maps if "(deleted)" in line and str(folder) in line]
    return held


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_an_idle_bundle_closes_a_replaced_generation_without_another_call(
    bundle_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle server held the old generation's files (deleted, but open: the opted-out
    documents' bytes stay on disk and readable) until some call came after the grace period."""
    import spacerini.bundle.open as bundle_open

    monkeypatch.setattr(bundle_open, "RETIRE_SECONDS", 0.5)
    live = open_bundle(bundle_path)
    try:
        assert {h.docid for h in live.search("owner3", k=10)} == _owned(3)  # bm25 and the docstore
        assert live.searcher("exact").count("owner3 ") == 2
        optout(bundle_path, owners=["Owner 3"], progress=False)
        assert live.reload() is True
        assert _deleted_files_held(bundle_path.parent), "the old generation should still be open for its grace period"
        deadline = time.monotonic() + 20  # no call to the bundle meanwhile
        while _deleted_files_held(bundle_path.parent) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _deleted_files_held(bundle_path.parent) == []
        assert live.search("owner3", k=10) == [] and live.searcher("exact").count("owner3 ") == 0
    finally:
        live.close()


def test_stale_folders_of_dead_builds_are_removed(bundle_path: Path, tmp_path: Path) -> None:
    done = subprocess.run(["true"], check=True)
    assert done.returncode == 0
    dead_pid = 4_000_000  # above the kernel's pid_max: never a live process
    stale = tmp_path / f".b.building-{dead_pid}-abcd1234"
    (stale / "docs").mkdir(parents=True)
    (stale / "docs" / "docs.parquet").write_bytes(b"opted-out text")
    mine = tmp_path / f".b.building-{os.getpid()}-live0000"  # a live process: kept by open
    mine.mkdir()
    open_bundle(bundle_path).close()
    assert not stale.exists() and mine.exists()
    optout(bundle_path, owners=["Owner 1"], progress=False)  # under the lock every such folder is stale
    assert not mine.exists()


def test_kill_9_during_a_build_is_cleaned_up_by_the_next_open(bundle_path: Path, tmp_path: Path) -> None:
    big = write_big_corpus(tmp_path / "big.jsonl")
    proc = _cli("index", str(big), "--out", str(bundle_path))
    wait_until_indexing(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert list(tmp_path.glob(".b.building-*"))  # kill -9 runs no clean-up ...
    with open_bundle(bundle_path) as b:  # ... the next open does, and the old bundle is intact
        assert len(b) == 40
    assert not list(tmp_path.glob(".b.building-*"))
    # The Lucene JVM the build started (a child process) does not outlive it: it read the end of
    # its stream, or its folder was removed under it; either way it exits.
    deadline = time.monotonic() + 60
    while _processes_under(tmp_path):
        assert time.monotonic() < deadline, f"left running: {_processes_under(tmp_path)}"
        time.sleep(0.2)


def _processes_under(folder: Path) -> list[int]:
    """Pids of the processes whose command line names a path under ``folder``."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if str(folder) in " ".join(proc.info["cmdline"] or []):
            found.append(proc.info["pid"])
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_clean_up(bundle_path: Path, tmp_path: Path, sig: signal.Signals) -> None:
    big = write_big_corpus(tmp_path / "big.jsonl")
    before = (bundle_path / MANIFEST).read_text()
    proc = _cli("index", str(big), "--out", str(bundle_path))
    wait_until_indexing(tmp_path)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig
    assert err.decode().strip().splitlines()[-1].startswith("spacerini: interrupted")
    assert b"Traceback" not in err and b"\tat " not in err  # no Python or Java stack trace
    assert (bundle_path / MANIFEST).read_text() == before
    assert not list(tmp_path.glob(".b.building-*"))


def test_optout_of_an_unknown_owner_changes_nothing(bundle_path: Path) -> None:
    before = (bundle_path / MANIFEST).read_text()
    proc = _cli("optout", str(bundle_path), "--owner", "Nobody Here")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert len(err.decode().strip().splitlines()) == 1 and "no document" in err.decode()
    assert (bundle_path / MANIFEST).read_text() == before
    with pytest.raises(OwnerNotFoundError):
        optout(bundle_path, ids=["no-such-id"], progress=False)


def test_optout_matches_owner_names_as_the_lookup_does(bundle_path: Path) -> None:
    entry = optout(bundle_path, owners=["  owner   3 "], request_id="req-7", progress=False)
    assert entry["removed"] == 2
    assert not _ids(bundle_path) & _owned(3)
    import hashlib

    manifest = json.loads((bundle_path / MANIFEST).read_text())
    logged = manifest["audit_log"][-1]
    assert logged["request_id"] == "req-7"
    assert logged["removed_id_sha256"] == sorted(hashlib.sha256(d.encode()).hexdigest() for d in _owned(3))
    assert "Owner 3" not in json.dumps(manifest["audit_log"]) and '"d03"' not in json.dumps(manifest["audit_log"])


def test_an_owner_of_every_document_leaves_an_empty_bundle(tmp_path: Path) -> None:
    out = tmp_path / "solo"
    docs = [Doc(id=f"s{i}", text=f"solo text {i}", meta={"owner": "Jane Doe"}) for i in range(4)]
    build_bundle(docs, out, backends=["bm25", "exact", "bloom", "owners"], progress=False).close()
    entry = optout(out, owners=["Jane  Doe"], progress=False)
    assert entry["removed"] == 4
    with open_bundle(out) as b:
        assert len(b) == 0 and b.generation == 2
        assert b.search("solo") == []
        assert b.searcher("exact").count("solo") == 0
        assert b.searcher("bloom").member("solo text 1").coverage == 0.0
        assert b.searcher("owners").owner("Jane Doe").total_docs == 0


def test_a_rebuild_from_the_source_keeps_earlier_optouts(tmp_path: Path) -> None:
    """Rebuilding over a bundle (the same --out) used to bring back every document an opt-out had
    removed, since the source still holds them, and dropped the audit log."""
    source = tmp_path / "corpus.jsonl"
    rows = [{"id": f"d{i:02d}", "text": f"apples {i}", "owner": f"Owner {i % 5}"} for i in range(20)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "b"
    build = [sys.executable, "-m", "spacerini", "-q", "index", str(source), "--out", str(out), "--backends", "bm25,exact,owners"]
    subprocess.run(build, check=True, env=ENV, capture_output=True)
    optout(out, owners=["owner 1"], progress=False)
    optout(out, ids=["d02"], progress=False)
    removed = {f"d{i:02d}" for i in range(20) if i % 5 == 1} | {"d02"}
    log_before = json.loads((out / MANIFEST).read_text())["audit_log"]
    # the source gains a new document of the opted-out owner, and one of another owner
    rows += [{"id": "d20", "text": "apples new", "owner": "OWNER  1"}, {"id": "d21", "text": "apples too", "owner": "Owner 2"}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    done = subprocess.run(build, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "left out 6 document(s) that earlier opt-outs removed" in done.stderr
    kept = {r["id"] for r in rows} - removed - {"d20"}
    assert _ids(out) == kept
    with open_bundle(out) as b:
        assert {h.docid for h in b.search("apples", k=50)} == kept
        assert b.searcher("exact").count("apples") == len(kept)
        assert "Owner 1" not in {m.owner for m in b.searcher("owners").owner("Owner 1").matches}
        log = b.manifest["audit_log"]
    assert log[:2] == log_before and log[2]["action"] == "rebuild" and log[2]["optouts_reapplied"] == 6
    assert "Owner 1" not in json.dumps(log) and "owner 1" not in json.dumps(log)
    assert hashlib.sha256(b"owner 1").hexdigest() not in json.dumps(log)  # keyed: a guess cannot confirm who
    key = tmp_path / ".b.optout-key"
    assert key.is_file() and key.stat().st_mode & 0o077 == 0
    # without the key, what was removed stays out, new documents of the owner cannot be told, and it says so
    key.unlink()
    rows.append({"id": "d22", "text": "apples newest", "owner": "Owner 1"})
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    done = subprocess.run(build, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "their key" in done.stderr and "is gone" in done.stderr
    assert _ids(out) == kept | {"d22"}
    # the Python API too, and a rebuild of a bundle whose opt-outs removed everything is empty, not an error
    solo = tmp_path / "solo"
    docs = [Doc(id=f"s{i}", text=f"solo text {i}", meta={"owner": "Jane Doe"}) for i in range(3)]
    build_bundle(docs, solo, backends=["bm25", "owners"], progress=False).close()
    optout(solo, owners=["jane doe"], progress=False)
    with build_bundle(docs, solo, backends=["bm25", "owners"], progress=False) as again:
        assert len(again) == 0 and again.search("solo") == []
