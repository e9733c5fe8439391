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


def test_probe_sees_a_listening_endpoint(online_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hf.hub_reachable()


def test_offline_already(online_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not hf._offline_already()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hf._offline_already()
