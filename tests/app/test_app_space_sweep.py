"""A rendered Space and the serve/demo commands, run as their users run them: `python app.py` in
a clean environment (SPACE_ID set, the Hub offline), and `python -m spacerini` with bad input."""

from __future__ import annotations

import json
import logging
import os
import runpy
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from app_fixtures import app_docs, free_port

from spacerini.deploy import render_space


def space_env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a Space: a fresh HOME, SPACE_ID, the Hub offline, no token."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "SPACE_ID": "me/space",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "SPACERINI_FLAGS": str(tmp_path / "flags.jsonl"),
    }
    return env | extra


def corpora_of_running_space(folder: Path, env: dict[str, str], port: int) -> dict[str, Any]:
    """Starts ``python app.py`` in ``folder`` and returns its ``GET /api/corpora`` (the JSON
    routes answer before Gradio is imported), then stops it."""
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=folder, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/corpora", timeout=10)
                if answer.status_code == 200:
                    return answer.json()
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the Space did not answer within 90 s"
            time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def fake_hub_cache(hf_home: Path, repo_id: str, bundle: Path, revision: str = "a" * 40) -> Path:
    """Puts ``bundle`` in the Hugging Face cache as the newest revision of a dataset repo, as a
    download leaves it (what ``snapshot_download`` finds offline)."""
    repo = hf_home / "hub" / f"datasets--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    shutil.copytree(bundle, repo / "snapshots" / revision)
    (repo / "refs" / "main").write_text(revision)
    return repo / "snapshots" / revision


# ----------------------------------------------------------------------------------- the Space
def test_a_one_bundle_space_names_its_corpus_as_serve_does(app_bundle: Any, tmp_path: Path) -> None:
    """`spacerini serve B` calls the corpus B's folder name (`--name B=X`: X), and so must the
    Space rendered from B: a client's `&corpus=` works on both. It was `bundle` (the Space's
    folder) or `bundle-live` (a bundle followed from a dataset repo) on the Space."""
    from spacerini.app.jsonapi import as_corpora
    from spacerini.service import Service

    served_locally = as_corpora(Service(app_bundle)).names
    assert served_locally == [app_bundle.path.name]

    named = render_space(app_bundle.path, tmp_path / "named", names={str(app_bundle.path): "Code"},
                         spacerini_requirement="spacerini")  # fmt: skip
    port = free_port()
    listing = corpora_of_running_space(named, space_env(tmp_path, port), port)
    assert listing["default"] == "Code" and [c["name"] for c in listing["corpora"]] == ["Code"]
    assert listing["corpora"][0]["docs"] == len(app_bundle)

    # A bundle too big for the Space repo: downloaded from the dataset repo (here: found in the
    # offline cache), still named after the bundle, not after the link that follows the repo.
    followed = render_space(app_bundle.path, tmp_path / "followed", bundle_repo="me/code-bundle",
                            spacerini_requirement="spacerini")  # fmt: skip
    fake_hub_cache(tmp_path / "hf", "me/code-bundle", app_bundle.path)
    port = free_port()
    listing = corpora_of_running_space(followed, space_env(tmp_path, port), port)
    assert [c["name"] for c in listing["corpora"]] == served_locally
    assert (followed / "bundle-live").is_symlink()


def test_a_space_whose_bundle_repo_cannot_be_reached_says_so_in_one_line(app_bundle: Any, tmp_path: Path) -> None:
    """Offline with nothing cached: one `spacerini: error:` line naming the repo and exit status 1,
    at once, not a traceback (nor a hang)."""
    space = render_space(app_bundle.path, tmp_path / "space", bundle_repo="me/missing-bundle",
                         spacerini_requirement="spacerini")  # fmt: skip
    token = "hf_NotARealTokenButSecret0123456789"
    env = space_env(tmp_path, free_port(), HF_TOKEN=token)
    done = subprocess.run([sys.executable, "app.py"], cwd=space, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("spacerini: error:")]
    assert len(errors) == 1 and "me/missing-bundle" in errors[0], done.stderr
    assert "Traceback" not in done.stderr and token not in done.stderr + done.stdout
    assert not (space / "bundle-live").exists()


@pytest.mark.parametrize(
    ("value", "interval", "warned"),
    [("", 300.0, False), ("2.5", 2.5, False), ("0", 300.0, True), ("-1", 300.0, True), ("nan", 300.0, True),
     ("inf", 300.0, True), ("soon", 300.0, True)],  # fmt: skip
)
def test_the_refresh_interval_is_never_zero_or_broken(
    app_bundle: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    value: str, interval: float, warned: bool,
) -> None:  # fmt: skip
    """SPACERINI_REFRESH_SECONDS=0 (or less) made the watcher ask the Hub in a loop without a
    pause, `inf` or `nan` killed it (Event.wait raises), and text crashed the Space at start:
    each now logs a warning and keeps the default."""
    space = tmp_path / "space"
    if not space.exists():
        render_space(app_bundle.path, space, bundle_repo="me/code-bundle", spacerini_requirement="spacerini")
    monkeypatch.setenv("SPACERINI_REFRESH_SECONDS", value)
    app = runpy.run_path(str(space / "app.py"), run_name="space_app")
    with caplog.at_level(logging.WARNING, logger="spacerini.space"):
        assert app["refresh_interval"]() == interval
    assert bool(caplog.records) is warned


# ------------------------------------------------------------------------------ serve and demo
def test_serve_refuses_a_flags_file_it_cannot_write(app_bundle: Any, tmp_path: Path) -> None:
    """`serve --flags` somewhere unwritable: one line before serving, not a server whose every
    "flag this result" fails."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cmd = [sys.executable, "-m", "spacerini", "serve", str(app_bundle.path), "--port", str(free_port()),
           "--flags", str(blocker / "flags.jsonl")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"spacerini: error: {blocker / 'flags.jsonl'}: no such folder {blocker}; create it or choose another place"
    ]


def test_demo_checks_the_port_before_building(tmp_path: Path) -> None:
    """`demo --port P` with P taken fails at once, before a build of minutes, leaving nothing."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = tmp_path / "demo"
        cmd = [sys.executable, "-m", "spacerini", "demo", "--out", str(out), "--port", str(port)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"spacerini: error: cannot serve on 127.0.0.1:{port}: Address already in use; choose another --port or --host"
    ]
    assert not out.exists() and not list(tmp_path.glob(".demo*"))


@pytest.mark.parametrize("rebuild", [False, True])
def test_demo_never_replaces_a_bundle_of_another_corpus(tmp_path: Path, rebuild: bool) -> None:
    """`demo --out MYBUNDLE` (a bundle of another corpus, lacking a demo backend) rebuilt it with
    the Python source, deleting the user's bundle; now it is one error and the bundle is kept."""
    from spacerini.bundle import build_bundle, open_bundle
    from spacerini.demo import demo_bundle
    from spacerini.errors import BundleError

    mine = build_bundle(app_docs(), tmp_path / "mine", backends=["exact"], progress=False)
    before = json.loads((mine.path / "spacerini.json").read_text())
    mine.close()
    with pytest.raises(BundleError, match="holds a bundle of another corpus.*not the demo bundle"):
        demo_bundle(out=tmp_path / "mine", rebuild=rebuild, max_bytes=50_000, progress=False)
    after = open_bundle(tmp_path / "mine")
    assert after.manifest["created"] == before["created"] and len(after) == len(app_docs())
