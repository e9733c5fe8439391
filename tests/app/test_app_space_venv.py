"""A rendered Space installs from its own folder into a fresh virtual environment and answers a search.

To stay offline and fast, the fresh venv gets no dependencies of its own: a ``.pth`` file adds a
copy of the project's site-packages *without spacerini* (symlinks to every other entry). So the
pinned ``requirements.txt`` must be satisfied by what is there (pip checks it, offline), and
spacerini can only come from the Space's ``wheels/`` folder, which its ``app.py`` installs at start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from app_fixtures import free_port

pytestmark = pytest.mark.slow


def make_venv(folder: Path, shadow: Path) -> Path:
    """A venv seeing the project's site-packages except spacerini (its editable install and metadata)."""
    ours = Path(sysconfig.get_paths()["purelib"])
    shadow.mkdir()
    for entry in ours.iterdir():
        name = entry.name.lower()
        if name.startswith(("__editable__", "spacerini")):
            continue
        (shadow / entry.name).symlink_to(entry)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    Path(purelib, "project-deps.pth").write_text(f"import site; site.addsitedir({str(shadow)!r})\n")
    return python


def where_is_spacerini(python: Path, cwd: Path) -> dict[str, Any]:
    code = (
        "import importlib.util, importlib.metadata as m, json; s = importlib.util.find_spec('spacerini');"
        "print(json.dumps({'file': s and s.origin, 'version': s and m.version('spacerini')}))"
    )
    done = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True, cwd=cwd)
    return json.loads(done.stdout)


def test_rendered_space_installs_and_runs_in_a_fresh_venv(app_bundle: Any, tmp_path: Path) -> None:
    from spacerini import __version__
    from spacerini.deploy import render_space

    space = render_space(app_bundle.path, tmp_path / "space")
    wheels = sorted(p.name for p in (space / "wheels").iterdir())
    assert wheels == [f"spacerini-{__version__}-py3-none-any.whl"]
    lines = [line for line in (space / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    # Only pins (and the torch CPU index): no spacerini==VERSION, which no index serves, and no
    # path, which the Spaces builder could not see (it installs this file before copying the rest).
    assert all("==" in line or line.startswith("--extra-index-url ") for line in lines), lines
    assert not any(line.lower().startswith("spacerini") for line in lines)

    python = make_venv(tmp_path / "venv", tmp_path / "deps")
    assert where_is_spacerini(python, space) == {"file": None, "version": None}
    # Every pinned requirement resolves offline against the environment: nothing left to download.
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    resolved = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-index", "--dry-run", "-r", "requirements.txt"],
        cwd=space, env=env, capture_output=True, text=True,
    )
    assert resolved.returncode == 0, resolved.stdout + resolved.stderr
    assert "Would install" not in resolved.stdout, resolved.stdout

    port = free_port()
    env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
    log = (tmp_path / "space.log").open("w")
    proc = subprocess.Popen([str(python), "app.py"], cwd=space, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        answer = None
        while answer is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the Space did not start:\n" + (tmp_path / "space.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/search?q=fibonacci&k=3", timeout=10) as r:
                    answer = json.loads(r.read())
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        assert [h["docid"] for h in answer["hits"]] == [h.docid for h in app_bundle.search("fibonacci", k=3)]
        assert answer["hits"], answer
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    # The app ran the spacerini its wheel installed into the fresh venv, not the source tree's.
    installed = where_is_spacerini(python, space)
    assert installed["version"] == __version__
    assert Path(installed["file"]).resolve().is_relative_to((tmp_path / "venv").resolve()), installed
    assert (space / "flags.jsonl").exists() is False  # nothing flagged, nothing written
