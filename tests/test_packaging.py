"""The wheel carries what a non-editable install needs: templates, the helper jar, the model."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import spacerini.deploy as deploy

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_carries_templates_helper_jar_and_model(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("spacerini-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (*deploy.TEMPLATE_FILES, *deploy.DOCKER_FILES):
        assert any(n.endswith(f".data/data/share/spacerini/templates/{template}") for n in names), template
    assert "spacerini/jars/spacerini-helpers.jar" in names
    assert "spacerini/model/weights/model.safetensors" in names
    assert "spacerini/model/weights/tokenizer.json" in names


def test_templates_are_found_under_the_install_prefix(tmp_path, monkeypatch):
    """A wheel install has no source tree: the templates come from <prefix>/share/spacerini."""
    prefix = tmp_path / "prefix"
    share = prefix / "share" / "spacerini" / "templates"
    share.mkdir(parents=True)
    for template in (*deploy.TEMPLATE_FILES, *deploy.DOCKER_FILES):
        (share / template).write_text(
            (ROOT / "templates" / template).read_text(encoding="utf-8"), encoding="utf-8"
        )
    site = tmp_path / "site-packages" / "spacerini" / "deploy"
    site.mkdir(parents=True)
    monkeypatch.delenv("SPACERINI_TEMPLATES", raising=False)
    monkeypatch.setattr(deploy, "__file__", str(site / "__init__.py"))
    monkeypatch.setattr(sys, "prefix", str(prefix))
    assert deploy.templates_dir() == share
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "elsewhere"))
    with pytest.raises(deploy.DeployError, match="templates are missing"):
        deploy.templates_dir()
