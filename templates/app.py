"""Hugging Face Space entry point, rendered by `spacerini space`: serves a Spacerini bundle."""

import json
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

#: Dataset repo holding the bundle (None: the bundle is in ./bundle next to this file).
BUNDLE_REPO = "{{bundle_repo}}" or None
#: Redact personal information on display.
REDACT_PII = "{{redact_pii}}" != "False"
HERE = Path(__file__).resolve().parent
#: Corpora served side by side, in order ([{"name", "path"}]); none: the one bundle.
CORPORA = json.loads((HERE / "corpora.json").read_text(encoding="utf-8")) if (HERE / "corpora.json").is_file() else []


def install_spacerini() -> None:
    """Installs the spacerini wheel in ./wheels unless spacerini can be imported already.

    Spacerini is on no package index, and the Spaces builder installs requirements.txt before
    the rest of this folder is copied in, so requirements.txt pins only its dependencies.
    """
    import importlib.util

    wheels = sorted((HERE / "wheels").glob("spacerini-*.whl"))
    if not wheels or importlib.util.find_spec("spacerini") is not None:
        return
    import site
    import subprocess
    import sys

    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed"]
    subprocess.run([*pip, "--disable-pip-version-check", "--quiet", str(wheels[-1])], check=True)
    importlib.invalidate_caches()
    if importlib.util.find_spec("spacerini") is None:  # pip made the user site just now
        site.addsitedir(site.getusersitepackages())


install_spacerini()


def bundle_path() -> Path:
    """The local bundle folder: ./bundle, or a link that follows the dataset repo's newest
    revision (checked every $SPACERINI_REFRESH_SECONDS, default 300), so that an opt-out pushed
    there reaches this Space without a restart."""
    if BUNDLE_REPO:
        from spacerini.hub import follow_hub_bundle

        interval = float(os.environ.get("SPACERINI_REFRESH_SECONDS", "300"))
        return follow_hub_bundle("hf:" + BUNDLE_REPO, HERE / "bundle-live", interval=interval)
    return HERE / "bundle"


def main() -> None:
    from spacerini.app import serve
    from spacerini.bundle import open_bundle

    if CORPORA:
        from spacerini.corpora import open_bundles

        served = open_bundles({c["name"]: HERE / c["path"] for c in CORPORA}, redact_pii=REDACT_PII)
    else:
        served = open_bundle(bundle_path())
    serve(
        served,
        host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        redact_pii=REDACT_PII,
        # None lets Spacerini choose, as `spacerini flags` does: $SPACERINI_FLAGS, else the Space's
        # persistent /data, else a Hub dataset named in $SPACERINI_FLAGS_DATASET.
        flags_path=os.environ.get("SPACERINI_FLAGS") or None,
    )


if __name__ == "__main__":
    main()
