"""A rendered Space starts in a fresh virtual environment and answers a search.

To stay offline and fast, the fresh venv gets no packages of its own: a ``.pth`` file adds the
project's site-packages. The test checks that every pinned requirement of the Space is what that
environment provides, then runs the Space's own ``app.py`` and queries it with gradio_client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import pytest
from app_fixtures import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def make_venv(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    # `import site; site.addsitedir(...)` also processes the .pth files there (the editable install).
    Path(purelib, "spacerini-parent.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return python


def test_rendered_space_runs_in_a_fresh_venv(app_bundle: Any, tmp_path: Path) -> None:
    from spacerini.deploy import render_space

    space = render_space(app_bundle.path, tmp_path / "space", spacerini_requirement=str(ROOT))
    python = make_venv(tmp_path / "venv")
    reqs = [line for line in (space / "requirements.txt").read_text().splitlines() if line and not line.startswith(("#", "-"))]
    assert reqs[0] == str(ROOT)
    pins = dict(line.split("==") for line in reqs[1:])
    check = (
        "import json, sys, importlib.metadata as m, spacerini;"
        "pins = json.loads(sys.argv[1]);"
        "print(json.dumps({'bad': {n: m.version(n) for n, v in pins.items() if m.version(n) != v}, 'src': spacerini.__file__}))"
    )
    out = subprocess.run([str(python), "-c", check, json.dumps(pins)], check=True, capture_output=True, text=True, cwd=tmp_path)
    result = json.loads(out.stdout)
    assert result["bad"] == {}
    assert Path(result["src"]).resolve().is_relative_to(ROOT)

    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("PYTHONPATH", None)
    log = (tmp_path / "space.log").open("w")
    proc = subprocess.Popen([str(python), "app.py"], cwd=space, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        from gradio_client import Client

        deadline = time.monotonic() + 90
        client = None
        while client is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the Space did not start:\n" + (tmp_path / "space.log").read_text()[-3000:])
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.5)
        hits = json.loads(client.predict("fibonacci", "", 3, 0, api_name="/search"))["hits"]
        assert [h["docid"] for h in hits] == [h.docid for h in app_bundle.search("fibonacci", k=3)]
        assert json.loads(client.predict("def fibonacci(n)", api_name="/count"))["count"] == 9
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    assert (space / "flags.jsonl").exists() is False  # nothing flagged, nothing written
