"""A no-code builder: a Gradio page that turns a dataset or an uploaded file into a Space.

The user names a Hugging Face dataset (``hf:NAME[:CONFIG][@SPLIT]``) or uploads a JSONL, CSV,
TSV or Parquet file, picks the id and text fields (offered from the first record), the
backends, builds the bundle with a progress bar, tries searches, and then downloads the Space
folder as a zip or deploys it. The token field is a password field; the token is passed to
:func:`spacerini.deploy.deploy` and never logged or stored.

:class:`Builder` holds the steps as plain methods (tested without a browser);
:func:`build_builder_app` wires them to a page.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from spacerini.errors import CorpusError, QueryError, SpaceriniError

logger = logging.getLogger(__name__)

#: Largest upload accepted, in bytes.
DEFAULT_MAX_UPLOAD_BYTES = 50 * 2**20
#: Upload formats accepted.
UPLOAD_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
#: Backends offered, with the default selection.
BACKENDS: tuple[str, ...] = ("bm25", "exact", "bloom", "owners", "dense")
DEFAULT_BACKENDS: tuple[str, ...] = ("bm25", "exact")
#: A dataset id on the Hub (``NAME`` or ``OWNER/NAME``), and a config or split name.
_HUB_DATASET = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")
_HUB_PART = re.compile(r"^[\w.-]{1,100}$")


def first_record(source: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads the first record of a file or ``hf:`` dataset, to offer its field names.

    Raises:
        CorpusError: The source cannot be read or holds no record.
    """
    from spacerini.corpus import files, hf

    text = str(source)
    if text.startswith("hf:"):
        spec, dataset, _, _ = hf.open_source(text)
        records = hf.dataset_records(dataset, str(spec))()
    else:
        path = Path(text)
        if not path.is_file():
            raise CorpusError("no such file", path=text)
        fmt = files.format_of(path)
        if fmt is None:
            raise CorpusError(f"unknown file type: upload one of {', '.join(UPLOAD_SUFFIXES)}", path=path.name)
        records = files.reader_for(fmt)(path)
    for record, _name, _line in records:
        if not isinstance(record, dict):
            raise CorpusError(f"the first record is a {type(record).__name__}, not an object with fields", path=text)
        return dict(record)
    raise CorpusError("the source holds no records", path=text)


def guess_fields(record: dict[str, Any]) -> tuple[str | None, list[str]]:
    """The likely id field and text fields of a record (spacerini's own defaults)."""
    from spacerini.corpus import CONTENTS_CANDIDATES, ID_CANDIDATES

    id_field = next((c for c in ID_CANDIDATES if c in record), None)
    text = next((c for c in CONTENTS_CANDIDATES if c in record), None)
    if text is None:
        text = next((k for k, v in record.items() if isinstance(v, str) and k != id_field), None)
    return id_field, [text] if text else []


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:60] or "bundle"


class Builder:
    """The builder's steps over a work folder (bundles and rendered Spaces go there).

    Args:
        work_dir: Folder for built bundles (default: a new temporary folder).
        max_upload_bytes: Largest uploaded file accepted.
    """

    def __init__(self, work_dir: str | os.PathLike[str] | None = None, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> None:
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="spacerini-builder-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.max_upload_bytes = max_upload_bytes
        # The staging folder of each bundle's latest Space zip: a new zip replaces it, and all
        # go when the process ends (each holds a copy of the whole bundle).
        self._zips: dict[str, Path] = {}
        self._zips_lock = threading.Lock()
        atexit.register(self.remove_zips)

    def source_of(self, dataset: str | None, upload: str | None) -> str:
        """The source to build from: the uploaded file if any, else the ``hf:`` dataset name.

        Raises:
            CorpusError: Nothing given, a file too large or of the wrong type, or a dataset name
                without ``hf:``.
        """
        if upload:
            path = Path(upload)
            if not path.name.lower().endswith(UPLOAD_SUFFIXES):
                raise CorpusError(f"upload one of {', '.join(UPLOAD_SUFFIXES)}", path=path.name)
            size = path.stat().st_size
            if size > self.max_upload_bytes:
                raise CorpusError(
                    f"the file is {size / 2**20:.1f} MB; the builder accepts at most {self.max_upload_bytes / 2**20:.0f} MB "
                    "(use `spacerini index` for bigger corpora)",
                    path=path.name,
                )
            return str(path)
        name = (dataset or "").strip()
        if not name:
            raise CorpusError("name a Hugging Face dataset (hf:NAME[:CONFIG][@SPLIT]) or upload a file")
        if not name.startswith("hf:"):
            name = "hf:" + name
        from spacerini.corpus.hf import parse_hf

        spec = parse_hf(name)
        # The page may be open to others (--host): a name that reads this machine's folders is refused.
        local = spec.name.startswith(("/", ".", "~")) or "\\" in spec.name or Path(spec.name).expanduser().exists()
        if local or not _HUB_DATASET.match(spec.name) or not all(
            _HUB_PART.match(part) for part in (spec.config or "x", spec.split)
        ):
            raise CorpusError(
                f"{name!r} is not a Hugging Face dataset name: write hf:NAME or hf:OWNER/NAME[:CONFIG][@SPLIT]; "
                "the builder reads no folders of this machine (upload a file instead)"
            )
        return name

    def inspect(self, dataset: str | None, upload: str | None) -> dict[str, Any]:
        """Reads the first record; returns ``{"source", "columns", "id_field", "fields", "first"}``."""
        source = self.source_of(dataset, upload)
        record = first_record(source)
        id_field, fields = guess_fields(record)
        preview = {k: (v[:200] + "…" if isinstance(v, str) and len(v) > 200 else v) for k, v in record.items()}
        return {"source": source, "columns": list(record), "id_field": id_field, "fields": fields, "first": preview}

    def build(
        self,
        source: str,
        *,
        id_field: str | None,
        fields: list[str],
        backends: list[str],
        name: str | None = None,
        progress: bool = True,
    ) -> Any:
        """Builds a bundle in the work folder and returns it opened.

        Raises:
            QueryError: No text field or no backend chosen.
            SpaceriniError: The build failed (one clear line).
        """
        from spacerini.bundle import build_bundle

        if not fields:
            raise QueryError("pick at least one text field")
        if not backends:
            raise QueryError("pick at least one backend")
        label = _slug(name or Path(source.removeprefix("hf:")).stem)
        out = self.work_dir / "bundles" / f"{label}-{uuid.uuid4().hex[:6]}"
        logger.info("builder: building %s with %s", source, ", ".join(backends))
        return build_bundle(source, out, backends=backends, id_field=id_field or None, fields=fields, progress=progress)

    def space_zip(self, bundle: Any, *, title: str | None = None) -> Path:
        """Renders the Space folder for ``bundle`` and zips it; returns the zip's path."""
        from spacerini.deploy import render_space

        stage = Path(tempfile.mkdtemp(prefix="spacerini-space-"))  # the system temp folder, which Gradio may serve
        try:
            folder = render_space(bundle.path, stage / "space", title=title)
            archive = shutil.make_archive(str(stage / f"{_slug(title or bundle.path.name)}-space"), "zip", folder)
            shutil.rmtree(folder)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        with self._zips_lock:  # the previous zip of this bundle has been handed out already
            old, self._zips[str(bundle.path)] = self._zips.get(str(bundle.path)), stage
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return Path(archive)

    def remove_zips(self) -> None:
        """Deletes the staged Space zips (at exit; the page's copies are Gradio's to delete)."""
        with self._zips_lock:
            stages, self._zips = list(self._zips.values()), {}
        for stage in stages:
            shutil.rmtree(stage, ignore_errors=True)

    def deploy(self, bundle: Any, space_id: str, token: str | None, *, private: bool = False, title: str | None = None) -> str:
        """Deploys ``bundle`` as the Space ``space_id``; returns its URL."""
        from spacerini.deploy import deploy

        return deploy(bundle.path, (space_id or "").strip(), token=(token or "").strip() or None, private=private, title=title)


def build_builder_app(
    *, work_dir: str | os.PathLike[str] | None = None, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
) -> Any:
    """Builds the no-code builder page.

    Args:
        work_dir: Where built bundles and Space zips are kept (default: a temporary folder).
        max_upload_bytes: Largest uploaded file accepted.

    Returns:
        A ``gr.Blocks`` app (launch it with ``max_file_size`` set as well).
    """
    import gradio as gr

    from spacerini.app import _guard, render_hits
    from spacerini.errors import one_line

    builder = Builder(work_dir, max_upload_bytes=max_upload_bytes)
    bundles: dict[str, Any] = {}

    def inspect(dataset: str, upload: str | None) -> tuple[Any, Any, Any, str]:
        info = builder.inspect(dataset, upload)
        cols = info["columns"]
        return (
            info["source"],
            gr.update(choices=cols, value=info["id_field"]),
            gr.update(choices=cols, value=info["fields"]),
            "```json\n" + json.dumps(info["first"], ensure_ascii=False, indent=2, default=str)[:3000] + "\n```",
        )

    def build(source: str, id_field: str, fields: list[str], backends: list[str], title: str, progress: Any = gr.Progress(track_tqdm=True)) -> tuple[str, str]:  # noqa: B008 - Gradio's progress idiom
        if not source:
            raise QueryError("inspect a dataset or file first")
        progress(0, desc="building")
        bundle = builder.build(source, id_field=id_field, fields=list(fields or []), backends=list(backends or []), name=title or None)
        key = str(bundle.path)
        bundles[key] = bundle
        return key, f"Built **{len(bundle):,}** documents with {', '.join(bundle.backends)}. Try a search below."

    def current(key: str) -> Any:
        bundle = bundles.get(key or "")
        if bundle is None:
            raise QueryError("build a bundle first")
        return bundle

    def try_search(key: str, query: str) -> str:
        bundle = current(key)
        return render_hits(bundle.search(query, k=10), query=query, redact_pii=True)

    def make_zip(key: str, title: str) -> str:
        return str(builder.space_zip(current(key), title=title or None))

    def do_deploy(key: str, space_id: str, token: str, private: bool, title: str) -> str:
        try:
            url = builder.deploy(current(key), space_id, token, private=private, title=title or None)
        except SpaceriniError as exc:
            return f"Deployment failed: {one_line(exc)}"
        return f"Deployed: [{url}]({url})"

    # delete_cache: the copies of Space zips Gradio serves go after an hour (each is a whole bundle).
    with gr.Blocks(title="Spacerini builder", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown("## Spacerini builder\nTurn a dataset into a search engine and a Hugging Face Space, without code.")
        with gr.Row():
            dataset = gr.Textbox(label="Hugging Face dataset", placeholder="hf:NAME[:CONFIG][@SPLIT]", max_length=300, elem_id="sb-dataset")
            upload = gr.File(
                label=f"…or upload a file ({', '.join(UPLOAD_SUFFIXES)}; ≤ {max_upload_bytes // 2**20} MB)",
                file_types=list(UPLOAD_SUFFIXES),
                type="filepath",
                elem_id="sb-upload",
            )
        inspect_btn = gr.Button("Inspect the first record", elem_id="sb-inspect")
        source = gr.Textbox(label="Source", interactive=False, elem_id="sb-source")
        with gr.Row():
            id_field = gr.Dropdown(label="Id field", choices=[], allow_custom_value=True, elem_id="sb-id")
            fields = gr.Dropdown(label="Text fields", choices=[], multiselect=True, elem_id="sb-fields")
            backends = gr.CheckboxGroup(list(BACKENDS), value=list(DEFAULT_BACKENDS), label="Backends", elem_id="sb-backends")
        first = gr.Markdown(elem_id="sb-first")
        title = gr.Textbox(label="Title", max_length=60, elem_id="sb-title")
        build_btn = gr.Button("Build", variant="primary", elem_id="sb-build")
        key = gr.Textbox(visible=False)
        status = gr.Markdown(elem_id="sb-status")
        with gr.Row():
            query = gr.Textbox(label="Try a search", max_length=1_000, elem_id="sb-query", scale=4)
            search_btn = gr.Button("Search", elem_id="sb-search", scale=1)
        results = gr.HTML(elem_id="sb-results")
        with gr.Accordion("Share it", open=True):
            zip_btn = gr.Button("Download the Space folder (zip)", elem_id="sb-zip")
            zip_file = gr.File(label="Space folder", interactive=False, elem_id="sb-zip-file")
            with gr.Row():
                space_id = gr.Textbox(label="Space (OWNER/NAME)", max_length=200, elem_id="sb-space")
                token = gr.Textbox(label="Hugging Face token (write access)", type="password", max_length=200, elem_id="sb-token")
                private = gr.Checkbox(label="Private", value=False)
            deploy_btn = gr.Button("Deploy to Hugging Face Spaces", elem_id="sb-deploy")
            deploy_out = gr.Markdown(elem_id="sb-deploy-status")

        private_api = {"api_visibility": "private"}
        inspect_btn.click(_guard(inspect), [dataset, upload], [source, id_field, fields, first], **private_api)
        build_btn.click(_guard(build), [source, id_field, fields, backends, title], [key, status], **private_api)
        search_btn.click(_guard(try_search), [key, query], results, **private_api)
        query.submit(_guard(try_search), [key, query], results, **private_api)
        zip_btn.click(_guard(make_zip), [key, title], zip_file, **private_api)
        deploy_btn.click(_guard(do_deploy), [key, space_id, token, private, title], deploy_out, **private_api)
    app.queue(default_concurrency_limit=1, max_size=16)
    return app


def serve_builder(*, host: str = "127.0.0.1", port: int = 7860, block: bool = True, work_dir: str | None = None) -> Any:
    """Launches the builder page (loopback by default).

    Args:
        host: Interface to listen on.
        port: TCP port.
        block: Block until interrupted.
        work_dir: Where bundles are built (default: a temporary folder).
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    app = build_builder_app(work_dir=work_dir)
    app.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        share=False,
        ssr_mode=False,
        max_file_size=DEFAULT_MAX_UPLOAD_BYTES,
        show_error=True,
        quiet=not block,
    )
    return app
