"""``hf:NAME`` with no network: offline mode is turned on for the load, so it fails at once."""

from __future__ import annotations

import socket
import time

import pytest

from spacerini.corpus import hf, load_corpus
from spacerini.errors import CorpusNotFoundError


@pytest.fixture()
def online_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline mode off everywhere (as on a user's machine), the probe's cache empty."""
    import datasets.config
    import huggingface_hub.constants

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    monkeypatch.setattr(hf, "_probe_cache", {})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: connecting is refused


def test_unreachable_hub_fails_at_once(online_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    assert not hf.hub_reachable()
    started = time.perf_counter()
    with pytest.raises(CorpusNotFoundError) as caught:
        load_corpus("hf:spacerini-tests/not-cached-xyz@train", progress=False)
    elapsed = time.perf_counter() - started
    message = str(caught.value)
    assert message.startswith(
        "hf:spacerini-tests/not-cached-xyz is not in the local cache and the Hub cannot be reached: "
    ), message
    assert "\n" not in message
    assert elapsed < 5, elapsed
    # Offline mode was for the load only.
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False and datasets.config.HF_HUB_OFFLINE is False
    import os

    assert "HF_HUB_OFFLINE" not in os.environ and "HF_DATASETS_OFFLINE" not in os.environ


def test_probe_sees_an_answering_endpoint(online_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import http.server
    import threading

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 - the http.server API
            self.send_response(404)  # any answer counts: the Hub is there
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert hf.hub_reachable()
    finally:
        server.shutdown()
        server.server_close()


def test_a_hub_that_accepts_but_never_answers_is_unreachable(online_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy or server that takes the connection and then says nothing (the Hub client waits
    for it without a timeout) counts as no network, so hf: loads go offline at once."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        started = time.perf_counter()
        assert not hf.hub_reachable(timeout=0.5)
        with pytest.raises(CorpusNotFoundError, match="Hub cannot be reached"):
            load_corpus("hf:spacerini-tests/not-cached-xyz@train", progress=False)
        assert time.perf_counter() - started < 5


def test_offline_already(online_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not hf._offline_already()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hf._offline_already()
