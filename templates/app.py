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
#: The one bundle's corpus name (`&corpus=`), as `spacerini serve BUNDLE` names it.
CORPUS_NAME = {{corpus_name}}
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


#: Seconds between checks of the bundle's dataset repo for a new revision, by default and at least.
REFRESH_SECONDS, MIN_REFRESH_SECONDS = 300.0, 1.0


def refresh_interval() -> float:
    """``$SPACERINI_REFRESH_SECONDS``, or the default with a warning when it is not a number of
    seconds of at least ``MIN_REFRESH_SECONDS`` (0 or less would ask the Hub without a pause)."""
    import logging
    import math

    raw = os.environ.get("SPACERINI_REFRESH_SECONDS", "").strip()
    if not raw:
        return REFRESH_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value >= MIN_REFRESH_SECONDS:
        return value
    logging.getLogger("spacerini.space").warning(
        "SPACERINI_REFRESH_SECONDS=%r is not a number of seconds >= %g: checking for a new bundle every %g s",
        raw[:40], MIN_REFRESH_SECONDS, REFRESH_SECONDS,
    )  # fmt: skip
    return REFRESH_SECONDS


def bundle_path() -> Path:
    """The local bundle folder: ./bundle, or a link that follows the dataset repo's newest
    revision (checked every $SPACERINI_REFRESH_SECONDS, default 300), so that an opt-out pushed
    there reaches this Space without a restart."""
    if BUNDLE_REPO:
        from spacerini.hub import follow_hub_bundle

        return follow_hub_bundle("hf:" + BUNDLE_REPO, HERE / "bundle-live", interval=refresh_interval())
    return HERE / "bundle"


def open_served():  # noqa: ANN201 - spacerini.corpora.Corpora, imported late
    """The corpora to serve: the one bundle (downloaded first when it lives in a dataset repo),
    or those of corpora.json, each under its name."""
    from spacerini.corpora import open_bundles

    if CORPORA:
        return open_bundles({c["name"]: HERE / c["path"] for c in CORPORA}, redact_pii=REDACT_PII)
    return open_bundles({CORPUS_NAME: bundle_path()}, redact_pii=REDACT_PII)


def fail(exc: BaseException) -> None:
    """Ends the Space with one clear line (no traceback; a token in the message is masked) and
    exit status 1: a bundle that cannot be opened or downloaded is not fixed by restarting."""
    import sys

    from spacerini.errors import one_line

    line = one_line(exc)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        secret = os.environ.get(name)
        if secret:
            line = line.replace(secret, "***")
    where = f"the dataset repo {BUNDLE_REPO}" if BUNDLE_REPO else "this Space's folder"
    print(f"spacerini: error: cannot open the bundle from {where}: {line}", file=sys.stderr, flush=True)
    sys.exit(1)


def main() -> None:
    from spacerini.app import _log_to_stderr, serve
    from spacerini.errors import SpaceriniError

    _log_to_stderr()
    try:
        served = open_served()
    except SpaceriniError as exc:
        fail(exc)
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
