"""Shared fixtures for the app tests: one small code bundle and one server per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from app_fixtures import app_docs, free_port


@pytest.fixture(scope="session")
def app_bundle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from spacerini.bundle import build_bundle

    out = tmp_path_factory.mktemp("app") / "bundle"
    return build_bundle(
        app_docs(),
        out,
        backends=["bm25", "exact", "bloom", "owners"],
        backend_params={"bloom": {"width": 20, "stride": 1}},
        progress=False,
    )


@pytest.fixture(scope="session")
def flags_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flags") / "flags.jsonl"


@pytest.fixture(scope="session")
def app_server(app_bundle: Any, flags_file: Path) -> Iterator[str]:
    """Serves the app bundle on a free loopback port; yields its URL."""
    from spacerini.app import serve

    port = free_port()
    app = serve(app_bundle, port=port, block=False, flags_path=flags_file)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()
