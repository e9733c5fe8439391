"""The ``spacerini`` command line (also ``python -m spacerini``).

The commands are a contract (see shared/DESIGN.md). Every command calls the Python API and holds
no logic of its own. Errors are one line on stderr with exit status 2; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import re
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from spacerini.errors import SpaceriniError

EXIT_ERROR = 2


def _echo_json(data: Any) -> None:
    from spacerini.records import to_json

    text = json.dumps(to_json(data), ensure_ascii=False, indent=None)
    # A path with bytes that are not UTF-8 holds lone surrogates (surrogate escapes): as JSON
    # escapes they keep the document valid UTF-8, and json.loads gives the same str back.
    click.echo(_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _shown(name: str) -> str:
    """``name`` (a path) for a text that is written as UTF-8: bytes that are not UTF-8 become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


#: ``--json`` of the commands whose JSON is their answer's record (others say what theirs holds).
_json_flag = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")

#: Commands that write a bundle, a report or a folder (an interrupted one says nothing was left half-written).
_WRITING_COMMANDS = frozenset(
    {"index", "optout", "merge", "analyze", "contamination", "space", "demo", "model", "push", "deploy", "search"}
)


#: Parameters that name a file or folder: an empty one is refused (it would mean the current folder).
_PATH_PARAMS = frozenset({
    "bundle", "bundles", "source", "testset", "out", "out_dir", "bundle_path", "trace_bundle", "queries", "output",
    "qrels", "ids_file", "optout_file", "flags_path", "requests_file",
})  # fmt: skip


class _Command(click.Command):
    """A command whose path parameters may not be empty: ``--out ""`` would write into the current
    folder and ``BUNDLE ""`` would open it."""

    def invoke(self, ctx: click.Context) -> Any:
        for param in self.params:
            if param.name not in _PATH_PARAMS or "TEXT" in (param.metavar or ""):  # TEXT|FILE: a text
                continue
            value = ctx.params.get(param.name)
            if any(isinstance(v, str) and not v.strip() for v in (value if isinstance(value, tuple) else (value,))):
                raise click.BadParameter("is empty: give a path", ctx=ctx, param=param)
        return super().invoke(ctx)


class _CommandGroup(click.Group):
    command_class = _Command


class _Group(_CommandGroup):
    """Turns every error into one line on stderr (exit 2) unless --debug was given."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            # Only the commands that write say what became of their output (serve just stops).
            writes = ctx.invoked_subcommand in _WRITING_COMMANDS
            done = "nothing half-written was kept" if writes else "stopped"
            click.echo(f"spacerini: interrupted ({signal.Signals(signum).name}); {done}", err=True)
            ctx.exit(128 + int(signum))
        except BrokenPipeError:
            # The reader went away (`spacerini search ... | head`): stop quietly, as Unix tools do,
            # and keep Python from reporting the pipe again when it flushes stdout at exit.
            with contextlib.suppress(AttributeError, ValueError, OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(141)
        except SpaceriniError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            _error_line(str(exc))
            ctx.exit(EXIT_ERROR)
        except OSError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if exc.filename is None and _writing_stdout(exc):  # > /dev/full: not the bundle's disk
                exc.filename = "standard output"
            _error_line(f"{_os_error(exc)} (run with --debug for the traceback)")
            ctx.exit(EXIT_ERROR)
        except Exception as exc:  # noqa: BLE001 - the CLI never shows a traceback without --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            # pathlib before Python 3.13 reports a link loop (ELOOP) as a RuntimeError
            loop = _LINK_LOOP.fullmatch(str(exc)) if isinstance(exc, RuntimeError) else None
            if loop is not None:
                _error_line(_os_error(OSError(errno.ELOOP, os.strerror(errno.ELOOP), loop[1])))
                ctx.exit(EXIT_ERROR)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            _error_line(f"{type(exc).__name__}: {first} (run with --debug for the traceback)")
            ctx.exit(EXIT_ERROR)


def _error_line(message: str) -> None:
    """The one line of an error on stderr; bytes of a path that are not UTF-8 are shown as ``\\xff``."""
    try:
        raw = message.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        raw = message.encode("utf-8", "backslashreplace")
    click.echo(f"spacerini: error: {raw.decode('utf-8', 'backslashreplace')}", err=True)


#: What to do about a file-system error, by its errno.
_OS_HINTS = {
    errno.ENOENT: "check the path",
    errno.EACCES: "check its permissions or choose another place",
    errno.EPERM: "check its permissions or choose another place",
    errno.EROFS: "choose a place on a writable file system",
    errno.ENOSPC: "free some space or choose another disk",
    errno.EDQUOT: "free some space or choose another disk",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "give a file, not a folder",
    errno.EBADF: "give the command somewhere to write (> FILE, or > /dev/null to discard)",
    errno.EEXIST: "a file or link of that name is in the way; remove it or choose another name",
    errno.ELOOP: "a symbolic link in the path points back at itself; fix or remove the link",
}

_LINK_LOOP = re.compile(r"Symlink loop from '(.*)'")


def _writing_stdout(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by ``click.echo`` writing to standard output."""
    import click.utils

    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code is click.utils.echo.__code__ and not frame.f_locals.get("err"):
            return True
        tb = tb.tb_next
    return False


class _ClosedOutput(io.TextIOBase):
    """Standard output of a process started with it closed (``>&-``): a command's output written to
    it is an error, where ``click.echo`` would drop it without a word. What libraries print (a
    server's banner) is dropped, as before."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        import click.utils

        if sys._getframe(1).f_code is click.utils.echo.__code__:
            raise OSError(errno.EBADF, "it is closed")
        return len(text)


def _os_error(exc: OSError) -> str:
    """One line for a file-system error: the path, what the system said, what to do."""
    if exc.strerror is None:
        return f"{type(exc).__name__}: {exc}"
    where = f"{exc.filename}: " if exc.filename is not None else ""
    hint = _OS_HINTS.get(exc.errno or 0)
    return f"{where}{exc.strerror}" + (f"; {hint}" if hint else "")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.version_option(package_name="spacerini")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Spacerini: turn a corpus into a search engine you can use and share."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["quiet"] = quiet
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "httpx2", "urllib3", "filelock", "fsspec", "datasets", "huggingface_hub", "faiss"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _progress() -> bool:
    """Whether to show progress bars: not with -q/--quiet, nor when SPACERINI_NO_PROGRESS is set."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    if root is not None and root.obj and root.obj.get("quiet"):
        return False
    from spacerini.progress import wanted

    return wanted(True)


def _backend_options(*, search: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Adds one flag per backend option that declares one (:mod:`spacerini.backends.options`)."""
    from spacerini.backends.options import cli_flags

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for flag in reversed(cli_flags(search=search)):
            kind: Any = click.STRING
            if flag.choices:
                kind = click.Choice(list(flag.choices))
            elif flag.type is int:
                kind = click.IntRange(flag.minimum, flag.maximum)
            elif flag.type is float:
                kind = click.FloatRange(flag.minimum, flag.maximum)
            command = click.option(flag.flag, f"opt__{flag.backend}__{flag.name}", default=None, type=kind, help=flag.help)(
                command
            )
        return command

    return decorate


def _backend_params(flags: dict[str, Any], names: list[str]) -> dict[str, dict[str, Any]]:
    """Groups the backend-option flags given by backend; flags of a backend not built are an error."""
    from spacerini.backends.options import cli_flags

    flag_of = {(f.backend, f.name): f.flag for f in cli_flags()}
    params: dict[str, dict[str, Any]] = {}
    for key, value in flags.items():
        if value is None:
            continue
        _, backend, name = key.split("__", 2)
        params.setdefault(backend, {})[name] = value
    for backend, given in params.items():
        if backend not in names:
            shown = "/".join(flag_of[(backend, name)] for name in given)
            raise click.UsageError(f"{shown} apply to the {backend} backend, which is not in --backends")
    return params


# ---------------------------------------------------------------------------------- index
@cli.command()
@click.argument("source")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Bundle folder to write.")
@click.option("--fields", default=None, help="Comma-separated fields joined with a newline into the contents.")
@click.option("--id-field", default=None, help="Field holding the document id (default: id/docid/_id).")
@click.option("--backends", default="bm25", show_default=True, help="Comma-separated: bm25,exact,bloom,owners,dense.")
@click.option(
    "--format", "fmt", default=None,
    help="Source format: jsonl, json, parquet, csv, tsv, or code (SOURCE - needs it unless it is JSON or Parquet).",
)
@click.option("--owner", default=None, help="Owner recorded for every file of a code folder (--format code).")
@click.option("--max-file-bytes", default=None, type=click.IntRange(1), help="Skip (and count) larger code files.")
@click.option(
    "--preprocess",
    default=None,
    help="Comma-separated steps applied in order: dedup, near-dedup, pii, licence, quality, language, optout.",
)
@click.option(
    "--preprocess-opt",
    "preprocess_opts",
    multiple=True,
    metavar="STEP.OPTION=VALUE",
    help="Step option, repeatable, e.g. near-dedup.threshold=0.85, pii.mode=display (redact when shown, not when"
    " indexed) or pii.kinds=EMAIL,KEY,PASSWORD,IP_ADDRESS,PHONE (phone numbers only when named).",
)
@click.option("--optout", "optout_file", default=None, type=click.Path(dir_okay=False), help="File of ids to leave out (one per line).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 256))
@_backend_options()
@click.option("--shards", default=None, type=click.IntRange(1), help="Split the corpus into N contiguous shards (answers equal the unsharded ones; at most one per document).")
@click.option("--shard-size", default=None, help="Or split by size: documents (50000) or bytes of text (2GB, 512MiB).")
@click.option("--engine", default="local", show_default=True, type=click.Choice(["local", "ray"]), help="Where shard indexes are built (ray: the [distributed] extra).")
@click.option("--ray-address", default=None, help="Ray cluster to join with --engine ray (default: start one on this machine).")
@click.option("--memory-budget", default=None, help="Memory each Ray worker may use, e.g. 2GB (--engine ray).")
@click.option("--no-wait", is_flag=True, help="Fail at once if another command is changing the bundle (default: wait for it).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest summary as JSON.")
def index(
    source: str,
    out: str,
    fields: str | None,
    id_field: str | None,
    backends: str,
    fmt: str | None,
    owner: str | None,
    max_file_bytes: int | None,
    preprocess: str | None,
    preprocess_opts: tuple[str, ...],
    optout_file: str | None,
    threads: int,
    shards: int | None,
    shard_size: str | None,
    engine: str,
    ray_address: str | None,
    memory_budget: str | None,
    no_wait: bool,
    as_json: bool,
    **backend_flags: Any,
) -> None:
    """Build a bundle from SOURCE: a file, a folder, a code folder (--format code), hf:NAME[:CONFIG][@SPLIT] or irds:NAME.

    SOURCE - reads the corpus from standard input (give --format unless it is JSON or Parquet):
    spacerini index - --format csv --out BUNDLE < corpus.csv
    """
    from spacerini.bundle import build_bundle

    names = _split(backends)
    if not names:  # --backends "": not a silent default
        raise click.UsageError("--backends names no backend: give one or more of bm25,exact,bloom,owners,dense")
    if fields is not None and not _split(fields):
        raise click.UsageError("--fields names no field: give the fields to join, e.g. --fields title,text")
    params = _backend_params(backend_flags, names)
    steps = _split(preprocess) or []
    step_options: dict[str, Any] = {}
    if preprocess_opts:
        from spacerini.preprocess import parse_step_options

        step_options = parse_step_options(preprocess_opts)
    if optout_file is not None:
        from spacerini.preprocess import canonical_name

        if "optout" not in {canonical_name(s) for s in steps}:  # "opt-out", "opt_out" too
            steps.insert(0, "optout")
        step_options.setdefault("optout", {})["ids_file"] = optout_file
    from spacerini.corpus import load_corpus

    code_options = {k: v for k, v in {"owner": owner, "max_file_bytes": max_file_bytes}.items() if v is not None}
    corpus: Any
    if source == "-":  # spooled into the build's temporary folder by build_bundle
        if fmt == "code" or code_options:
            raise click.UsageError(
                "--format code, --owner and --max-file-bytes read a folder of source code, which standard input "
                "cannot hold: give the folder instead of -"
            )
        _check_stdin()
        corpus = sys.stdin
    else:
        corpus = load_corpus(
            source, format=fmt, id_field=id_field, fields=_split(fields), progress=_progress(), **code_options
        )
    _check_writable(out, parents=True)  # before the corpus is read, not when the bundle is published
    if "bm25" in names:
        from spacerini.java import java_path

        java_path(Path(out).expanduser().absolute())  # Lucene writes there: a name Java can open
    with _disk_of(out):  # a full disk names the bundle, not no file
        bundle = build_bundle(
            corpus,
            out,
            format=fmt if source == "-" else None,
            id_field=id_field if source == "-" else None,
            fields=_split(fields) if source == "-" else None,
            backends=names,
            backend_params=params,
            preprocess=steps,
            preprocess_options=step_options,
            threads=threads,
            progress=_progress(),
            wait=not no_wait,
            shards=shards,
            shard_size=shard_size,
            engine=engine,
            ray_address=ray_address,
            memory_budget=memory_budget,
        )
    info = bundle.info()
    layout = info.get("shards") or []
    in_shards = f" in {len(layout)} shards" if len(layout) > 1 else ""
    summary = f"Built {bundle.path}: {len(bundle):,} documents{in_shards}, backends {', '.join(bundle.backends)}"
    with _done_anyway(summary):
        if as_json:
            _echo_json(info)
        else:
            click.echo(summary)


@contextlib.contextmanager
def _done_anyway(summary: str) -> Any:
    """The output of a command whose work is done (a bundle built): where standard output cannot
    take it (closed with ``>&-``, a full disk, a reader gone), ``summary`` goes to stderr instead
    (not with -q) and the command still succeeds, as its result is there."""
    try:
        yield
    except OSError as exc:
        if not _writing_stdout(exc):
            raise
        # What stays in stdout's buffer would fail again when Python flushes it at exit.
        with contextlib.suppress(AttributeError, ValueError, OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        root = click.get_current_context().find_root()
        if not (root.obj and root.obj.get("quiet")):
            with contextlib.suppress(OSError):
                click.echo(summary, err=True)


# --------------------------------------------------------------------------------- search
@cli.command()
@click.argument("bundle")
@click.argument("query", required=False)
@click.option("--k", default=None, type=click.IntRange(1), help="Hits per query (default 10; 1000 with --queries).")
@click.option("--offset", default=0, show_default=True, type=int, help="Skip this many hits (pagination).")
@click.option(
    "--backend", default=None, type=click.Choice(["bm25", "dense", "hybrid", "exact"]), help="bm25 (default), dense, hybrid or exact."
)
@click.option(
    "--queries", type=click.Path(dir_okay=False),
    help="TSV file of qid<TAB>text (or irds:NAME, or - for standard input) for a batch run.",
)
@click.option("--output", type=click.Path(dir_okay=False), help="TREC run file to write (with --queries); - for standard output.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 256))
@click.option("--run-tag", default="spacerini", show_default=True)
@click.option("--hybrid-method", default=None, type=click.Choice(["rrf", "weighted"]), help="Fusion for --backend hybrid.")
@click.option("--alpha", default=None, type=click.FloatRange(0, 1), help="BM25 weight for --hybrid-method weighted.")
@_backend_options(search=True)
@_json_flag
def search(
    bundle: str,
    query: str | None,
    k: int | None,
    offset: int,
    backend: str | None,
    queries: str | None,
    output: str | None,
    threads: int,
    run_tag: str,
    hybrid_method: str | None,
    alpha: float | None,
    as_json: bool,
    **backend_flags: Any,
) -> None:
    """Search BUNDLE for QUERY, or run a batch of --queries into a TREC --output run.

    A QUERY that starts with - follows --, as in grep: spacerini search BUNDLE -- "-x y".
    --queries - reads the qid<TAB>text lines from standard input.
    """
    from spacerini.bundle import open_bundle

    if queries is None and query is None:
        raise click.UsageError('give a QUERY, or --queries QUERIES.tsv --output RUN.trec')
    if queries is not None and query is not None:
        raise click.UsageError("give either a QUERY or --queries, not both")
    if queries is not None and output is None and not as_json:
        raise click.UsageError("--queries needs --output RUN.trec (or --json)")
    # Options the other mode would ignore: a user who gave them expects them to act.
    if queries is None and output is not None:
        raise click.UsageError("--output writes the TREC run of --queries QUERIES.tsv; a single QUERY prints its hits (add --json for JSON)")
    if queries is not None and offset:
        raise click.UsageError("--offset pages the hits of a single QUERY; a --queries run ranks from the first hit (drop --offset)")
    tag_given = click.get_current_context().get_parameter_source("run_tag") is not click.core.ParameterSource.DEFAULT
    if tag_given and output is None:
        raise click.UsageError("--run-tag names the run written to --output; add --queries QUERIES.tsv --output RUN.trec")
    if output == "-" and as_json:
        raise click.UsageError("--output - writes the run to standard output, where --json goes too: choose one")
    _check_hybrid_options(backend, hybrid_method, alpha)
    if output is not None and output != "-":
        _check_writable(output)  # before the batch runs, not after
    b = open_bundle(bundle)
    _search_options(b, hybrid_method, alpha, backend_flags)
    if queries is not None:
        from spacerini.eval import read_queries, write_trec_run

        with _file_or_stdin(queries) as queries_file:
            qs = read_queries(queries_file)
            with _query_file_errors(queries_file):
                if as_json:
                    results: Any = b.batch_search(qs, k=k or 1000, backend=backend, threads=threads)
                else:  # a run needs only (docid, score): bm25 writes it straight from its arrays
                    results = b.batch_search_trec(qs, k=k or 1000, backend=backend, threads=threads)
        if output is not None:
            try:
                n = write_trec_run(results, output, tag=run_tag)
            except OSError as exc:  # the run goes through a temporary file: name the user's path
                raise click.FileError(output, hint=f"{exc.strerror or exc}; choose a file in a folder you can write to") from None
            if not as_json:
                where = "standard output" if output == "-" else output
                click.echo(f"Wrote {n:,} lines for {len(qs):,} queries to {where}", err=True)
        if as_json:
            _echo_json({qid: [h.to_dict() for h in hits] for qid, hits in results.items()})
        return
    page = _service(b).search(query or "", backend=backend or "", k=k or 10, offset=offset)
    if as_json:
        _echo_json(page)
        return
    if not page["hits"]:
        click.echo("No results.")
    for h in page["hits"]:
        _echo_hit(h["rank"], h["docid"], h.get("fields") or {}, h.get("meta") or {}, h["snippet"], score=h["score"])


@contextlib.contextmanager
def _query_file_errors(path: str) -> Any:
    """Names the file and line of the query that a batch refused (a backend knows only its qid)."""
    from spacerini.errors import MalformedRecordError, QueryError

    try:
        yield
    except QueryError as exc:
        from spacerini.eval import query_line

        line = query_line(path, exc.qid) if exc.qid is not None else None
        if line is None:
            raise
        raise MalformedRecordError(str(exc), path=path, line=line) from exc


def _service(bundle: Any) -> Any:
    """The one service the app uses too: it redacts on display for a bundle built with
    ``--preprocess pii --preprocess-opt pii.mode=display``, and refuses PII queries there."""
    from spacerini.display import pii_display_mode
    from spacerini.service import Service

    return Service(
        bundle, redact_pii=pii_display_mode(bundle.manifest), max_k=10_000, max_offset=100_000, max_text=50_000_000
    )


def _echo_hit(
    rank: int, docid: str, fields: Any, meta: Any, snippet: str, *, score: float | None = None, where: str = ""
) -> None:
    """One hit as text: rank, score, docid (once), title, then provenance and the snippet."""
    title = fields.get("title") or ""
    path = meta.get("path") or ""
    head = f"{rank:>4}  " + (f"{score:>9.4f}  " if score is not None else "") + f"{docid}{where}"
    if title and title not in (docid, path):
        head += f"  {title}"
    click.echo(head.rstrip())
    provenance = []
    repo = meta.get("repo")
    if repo or (path and path != docid):
        provenance.append(f"{repo or ''}{':' if repo and path else ''}{path if path != docid or repo else ''}")
    for key in ("licence", "swhid"):
        if meta.get(key):
            provenance.append(str(meta[key]))
    if provenance:
        click.echo(f"      {'  '.join(provenance)}")
    click.echo(f"      {_plain(snippet)}")


def _check_writable(path: str, *, parents: bool = False) -> None:
    """Fails early, naming ``path``, when a file (or a folder) cannot be written there: before the
    work whose result would be lost. A file is created and deleted in the folder to find out, as
    ``os.access`` says yes to root everywhere (``/proc``, a read-only mount). With ``parents``
    (a folder the command creates, with its missing parents), the nearest folder that exists is
    the one checked."""
    import tempfile

    target = Path(path).expanduser()
    folder = target.absolute().parent
    while parents and not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise _unwritable(path, f"no such folder {folder}; create it or choose another place")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".spacerini-probe-"):
            pass
    except OSError as exc:
        raise _unwritable(path, f"cannot write in {folder} ({exc.strerror or exc}); choose another place") from None
    if target.exists() and not os.access(target, os.W_OK):
        raise _unwritable(path, "permission denied; choose a place you can write to")


@contextlib.contextmanager
def _disk_of(path: str) -> Any:
    """Names ``path`` in a full-disk error that names no file (a write to an open file)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and path and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            exc.filename = path
        raise


def _unwritable(path: str, why: str) -> SpaceriniError:
    from spacerini.errors import UsageError

    return UsageError(f"{path}: {why}")


def _check_hybrid_options(backend: str | None, method: str | None, alpha: float | None) -> None:
    """Refuses fusion options that would be ignored: a search the user believes fused is not."""
    if (method is not None or alpha is not None) and backend != "hybrid":
        shown = " and ".join(f for f, v in (("--hybrid-method", method), ("--alpha", alpha)) if v is not None)
        raise click.UsageError(
            f"{shown}: only for --backend hybrid, and this search uses {backend or 'the default backend'}; add --backend hybrid"
        )
    if alpha is not None and alpha != alpha:  # NaN passes click's range check
        raise click.UsageError("--alpha must be a number in [0, 1], not nan")
    if method == "rrf" and alpha is not None:
        raise click.UsageError("--alpha weighs BM25 in --hybrid-method weighted; RRF takes no weight: drop one of them")


def _search_options(bundle: Any, method: str | None, alpha: float | None, flags: dict[str, Any]) -> None:
    from spacerini.backends.options import cli_flags

    flag_of = {(f.backend, f.name): f.flag for f in cli_flags(search=True)}
    given: dict[str, dict[str, Any]] = {}
    for key, value in flags.items():
        if value is not None:
            _, backend, name = key.split("__", 2)
            given.setdefault(backend, {})[name] = value
    for backend, options in given.items():
        if backend not in bundle.backends:
            shown = "/".join(flag_of[(backend, name)] for name in options)
            raise click.UsageError(f"{shown} apply to the {backend} backend, which {bundle.path} was built without")
        bundle.configure(backend, **options)
    if method is not None:
        bundle.hybrid_params["method"] = method
    if alpha is not None:
        bundle.hybrid_params["alpha"] = alpha
        bundle.hybrid_params.setdefault("method", "weighted")


def _plain(snippet: str) -> str:
    import html
    import re

    text = re.sub(r"</?mark>", "**", snippet)
    return " ".join(html.unescape(text).split())[:200]


# ----------------------------------------------------------------------------------- eval
@cli.command(name="eval")
@click.argument("bundle")
@click.option(
    "--queries", required=True, type=click.Path(dir_okay=False), help="TSV: qid<TAB>text, irds:NAME, or - for standard input."
)
@click.option(
    "--qrels", default=None, type=click.Path(dir_okay=False), help="TREC qrels file, or irds:NAME (default: --queries' irds:NAME)."
)
@click.option("--metrics", default=None, help="Comma-separated ir-measures names (default nDCG@10,AP,R@100), or trec_eval's (ndcg_cut_10,map).")
@click.option("--k", default=1000, show_default=True, type=click.IntRange(1, 10_000), help="Hits per query.")
@click.option("--backend", default=None, help="bm25 (default), dense or hybrid.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 256))
@click.option("--hybrid-method", default=None, type=click.Choice(["rrf", "weighted"]), help="Fusion for --backend hybrid.")
@click.option("--alpha", default=None, type=click.FloatRange(0, 1), help="BM25 weight for --hybrid-method weighted.")
@_backend_options(search=True)
@_json_flag
def eval_cmd(
    bundle: str,
    queries: str,
    qrels: str | None,
    metrics: str | None,
    k: int,
    backend: str | None,
    threads: int,
    hybrid_method: str | None,
    alpha: float | None,
    as_json: bool,
    **backend_flags: Any,
) -> None:
    """Evaluate BUNDLE on --queries against --qrels (nDCG@10, MAP, R@100 by default)."""
    from spacerini.bundle import open_bundle
    from spacerini.eval import evaluate, read_qrels, read_queries

    if qrels is None:
        if not queries.startswith("irds:"):
            raise click.UsageError("--qrels is required (a TREC qrels file), unless --queries is irds:NAME")
        qrels = queries
    _check_hybrid_options(backend, hybrid_method, alpha)
    b = open_bundle(bundle)
    _search_options(b, hybrid_method, alpha, backend_flags)
    with _file_or_stdin(queries) as queries_file:
        judged, judgments = read_queries(queries_file), read_qrels(qrels)
        with _query_file_errors(queries_file):
            scores = evaluate(b, judged, judgments, metrics=metrics, k=k, backend=backend, threads=threads)
    if as_json:
        _echo_json(scores)
        return
    for name, value in scores.items():
        label = "MAP" if name == "AP" else name
        click.echo(f"{label:<9} {value:.4f}")  # a space even after a long name: P(rel=2)@5 0.2400


# ------------------------------------------------------------------------- exact / member
@cli.command()
@click.argument("bundle")
@click.argument("text")
@_json_flag
def count(bundle: str, text: str, as_json: bool) -> None:
    """Count exact occurrences of TEXT in BUNDLE (overlapping ones included).

    A TEXT that starts with - follows --, as in grep: spacerini count BUNDLE -- "-x".
    """
    from spacerini.bundle import open_bundle

    result = _service(open_bundle(bundle)).count(text)
    if as_json:
        _echo_json(result)
    else:
        click.echo(result["count"])


@cli.command()
@click.argument("bundle")
@click.argument("text")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0))
@_json_flag
def find(bundle: str, text: str, k: int, offset: int, as_json: bool) -> None:
    """Find exact occurrences of TEXT: documents, offsets and context.

    A TEXT that starts with - follows --, as in grep: spacerini find BUNDLE -- "-x".
    """
    from spacerini.bundle import open_bundle

    page = _service(open_bundle(bundle)).find(text, k, offset)
    if as_json:
        _echo_json(page)
        return
    if not page["hits"]:
        click.echo("No occurrences.")
    for h in page["hits"]:
        _echo_hit(h["rank"], h["docid"], {}, h.get("meta") or {}, h["snippet"], where=f" @{h['offset']}")


def _check_stdin() -> None:
    """Before a SOURCE of ``-`` is read: standard input must be open, and a person typing the text
    at a terminal is told how to end it (rather than a command that seems to hang)."""
    from spacerini.errors import QueryError

    if sys.stdin is None:
        raise QueryError("-: standard input is closed; pipe the text in, or pass a file path instead of -")
    with contextlib.suppress(AttributeError, ValueError, OSError):
        if sys.stdin.isatty():
            click.echo("spacerini: reading the text from the terminal; end it with Ctrl-D", err=True)


@contextlib.contextmanager
def _file_or_stdin(path: str) -> Any:
    """``path``; for ``-``, standard input copied to a temporary file (the readers take a path, and
    an error about one query of a batch reads the file again for its line), named ``<stdin>`` in
    errors."""
    if path != "-":
        yield path
        return
    import shutil
    import tempfile

    from spacerini.bundle.build import STDIN_NAME
    from spacerini.errors import CorpusError

    _check_stdin()
    with tempfile.TemporaryDirectory(prefix="spacerini-stdin-") as folder:
        file = os.path.join(folder, "stdin")
        with open(file, "wb") as copy:
            shutil.copyfileobj(getattr(sys.stdin, "buffer", sys.stdin), copy)
        try:
            yield file
        except SpaceriniError as exc:
            if isinstance(exc, CorpusError) and exc.path == file:
                exc.path = STDIN_NAME
            exc.args = tuple(a.replace(file, STDIN_NAME) if isinstance(a, str) else a for a in exc.args)
            raise


def _read_text_arg(source: str) -> str:
    from spacerini.errors import QueryError

    if source == "-":
        _check_stdin()
    data = sys.stdin.buffer.read() if source == "-" else _read_file_bytes(source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QueryError(f"{source}: not UTF-8 text (byte {exc.start}); pass a text or code file") from exc


def _read_file_bytes(path: str) -> bytes:
    from spacerini.errors import CorpusNotFoundError

    p = Path(path)
    if p.is_dir():
        raise CorpusNotFoundError("is a folder, not a file; pass a file path or - for standard input", path=path)
    if not p.exists():
        raise CorpusNotFoundError("no such file; pass a file path or - for standard input", path=path)
    try:
        return p.read_bytes()  # a regular file, or a device or pipe (/dev/stdin, <(cmd))
    except OSError as exc:
        raise CorpusNotFoundError(f"cannot be read ({exc.strerror}); pass a file path or - for standard input", path=path) from exc


@cli.command()
@click.argument("bundle")
@click.argument("source")
@_json_flag
def member(bundle: str, source: str, as_json: bool) -> None:
    """Which spans of the text in SOURCE (a file, or - for stdin) are in the corpus."""
    from spacerini.bundle import open_bundle
    from spacerini.service import MEMBER_MIN_LEN

    text = _read_text_arg(source)
    result = _service(open_bundle(bundle)).member(text)
    if as_json:
        _echo_json(result)
        return
    click.echo(f"coverage: {result['coverage']:.1%} of {len(text):,} characters ({result['method']})")
    if result["method"] == "bloom sketch" and not result.get("ngrams_checked"):
        click.echo(
            "  the text is shorter than the sketch's n-grams, so nothing was checked; "
            "for a short string use `spacerini count BUNDLE TEXT`"
        )
    elif result["method"] == "exact" and len(text) < MEMBER_MIN_LEN:
        click.echo(
            f"  spans of {MEMBER_MIN_LEN}+ characters are listed and the text is shorter; "
            "for a short string use `spacerini count BUNDLE TEXT`"
        )
    for span in result["spans"]:
        sources = ", ".join(src["docid"] for src in span.get("sources", []))
        click.echo(f"  [{span['start']}:{span['end']}] {span['text'][:60]!r}" + (f"  in {sources}" if sources else ""))


@cli.command()
@click.argument("bundle")
@click.argument("name")
@_json_flag
def owner(bundle: str, name: str, as_json: bool) -> None:
    """Am I in the corpus? Repositories and files of owner NAME (case- and typo-tolerant)."""
    from spacerini.bundle import open_bundle

    result = _service(open_bundle(bundle)).owner(name, 1_000)
    if as_json:
        _echo_json(result)
        return
    if not result["matches"]:
        click.echo(f"No owner matching {name!r} in this corpus.")
    for m in result["matches"]:
        click.echo(f"{m['owner']} (match {m['score']:.2f}): {m['docs']} files")
        for repo, c in m["repos"][:20]:
            click.echo(f"  {repo or '(no repo)'}: {c} files")
    if result.get("optout_instructions"):
        click.echo(result["optout_instructions"])


@cli.command(name="optout")
@click.argument("bundle")
@click.option("--owner", "owners", multiple=True, help="Owner whose documents are removed (repeatable).")
@click.option(
    "--ids", "ids_file", type=click.Path(dir_okay=False),
    help="File of document ids to remove, one per line (- for standard input).",
)
@click.option(
    "--requests", "list_requests", is_flag=True,
    help="List the opt-out requests filed in the app (pending ones; with --json, all).",
)
@click.option(
    "--apply", "apply_ids", default=None,
    help="Apply these filed requests (comma-separated ids): remove each requester's documents.",
)
@click.option(
    "--requests-file", default=None, type=click.Path(dir_okay=False), help="The request store (default: beside BUNDLE).",
)
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 256))
@click.option("--no-wait", is_flag=True, help="Fail at once if another command is changing the bundle (default: wait for it).")
@_json_flag
def optout_cmd(
    bundle: str,
    owners: tuple[str, ...],
    ids_file: str | None,
    list_requests: bool,
    apply_ids: str | None,
    requests_file: str | None,
    threads: int,
    no_wait: bool,
    as_json: bool,
) -> None:
    """Remove an owner's documents (--owner NAME) or listed ids (--ids FILE, or - for standard input) from every
    backend of BUNDLE.

    --requests lists the opt-out requests people filed in the app; --apply ID[,ID] applies them.
    """
    if list_requests or apply_ids is not None:
        _optout_requests(
            bundle, apply_ids=apply_ids, requests_file=requests_file, threads=threads, wait=not no_wait, as_json=as_json
        )
        return
    from spacerini.bundle import optout

    if not owners and ids_file is None:
        raise click.UsageError("give --owner NAME and/or --ids FILE")
    ids: set[str] = set()
    if ids_file is not None:
        from spacerini.preprocess import read_optout_file

        with _file_or_stdin(ids_file) as path:
            ids = read_optout_file(path)
            if not ids and not owners:
                from spacerini.errors import CorpusError

                raise CorpusError("the opt-out file lists no ids (one id per line; # starts a comment)", path=path)
    with _disk_of(bundle):
        entry = optout(
            bundle, owners=list(owners), ids=sorted(ids), threads=threads, progress=_progress(), wait=not no_wait
        )
    if as_json:
        _echo_json(entry)
    else:
        missing = [
            f"{entry[key]:,} of {entry[total]:,} listed {what}"
            for key, total, what in (("ids_not_found", "ids", "ids"), ("owners_not_found", "owners", "owners"))
            if entry.get(key)
        ]
        note = f" ({' and '.join(missing)} not in it)" if missing else ""
        n = entry["removed"]
        click.echo(f"Removed {n:,} document{'' if n == 1 else 's'} from {bundle}{note}; recorded in its audit log.")


def _bundle_dir(bundle: str) -> Path:
    """BUNDLE as a path, checked to be a bundle (so that a typo is an error, not an empty list)."""
    from spacerini.bundle import MANIFEST
    from spacerini.errors import BundleNotFoundError

    root = Path(bundle)
    if not (root / MANIFEST).is_file():
        raise BundleNotFoundError(f"{root}: not a Spacerini bundle ({MANIFEST} is missing)")
    return root


def _optout_requests(
    bundle: str, *, apply_ids: str | None, requests_file: str | None, threads: int, wait: bool, as_json: bool
) -> None:
    """``optout --requests`` lists filed requests; ``--apply ID[,ID]`` applies them."""
    from spacerini.app.flags import persistent_destination
    from spacerini.app.requests import (
        OptoutRequestStore,
        apply_requests,
        default_requests_path,
        requests_table,
    )

    path = requests_file or default_requests_path(_bundle_dir(bundle), persistent_destination())
    if requests_file is not None:  # named: it must be a request store, not any file
        from spacerini.app.flags import read_jsonl
        from spacerini.errors import CorpusError, CorpusNotFoundError

        if not Path(requests_file).is_file():
            raise CorpusNotFoundError("no such request store; check the path (the default is beside BUNDLE)", path=requests_file)
        records = read_jsonl(Path(requests_file))
        if records and not any(isinstance(r, dict) and isinstance(r.get("id"), str) and "name" in r for r in records):
            raise CorpusError(
                "not an opt-out request store: none of its lines is a request (the app files them in "
                "BUNDLE.optout-requests.jsonl beside the bundle)",
                path=requests_file,
            )
    store = OptoutRequestStore(Path(path), bundle_path=Path(bundle))
    if apply_ids is not None:
        results = apply_requests(
            bundle, _split(apply_ids) or [], store=store, threads=threads, progress=_progress(), wait=wait
        )
        if as_json:
            _echo_json(results)
        for r in [] if as_json else results:
            detail = f"{r['removed']:,} documents removed" if r["status"] == "applied" else r.get("error", "")
            click.echo(f"{r['id']}: {r['status']} ({detail})")
        if any(r["status"] != "applied" for r in results):  # an owner not found, or a failure: say so in the exit status
            click.get_current_context().exit(EXIT_ERROR)
        return
    if as_json:
        _echo_json(store.read())
        return
    pending = store.pending()
    if not pending:
        click.echo(f"No pending opt-out requests in {store.path}.")
        return
    click.echo(requests_table(pending))
    click.echo(f"{len(pending)} pending; apply with: spacerini optout {bundle} --apply ID[,ID]")


@cli.command()
@click.argument("bundle")
@click.option("--flags", "flags_path", default=None, type=click.Path(dir_okay=False), help="The report file (default: the app's).")
@click.option("--json", "as_json", is_flag=True, help="One JSON list of the reports.")
def flags(bundle: str, flags_path: str | None, as_json: bool) -> None:
    """List the results people flagged in the app serving BUNDLE (oldest first)."""
    from spacerini.app.flags import FlagStore, default_flags_path, flags_table, persistent_destination

    path = Path(flags_path) if flags_path else default_flags_path(_bundle_dir(bundle), persistent_destination())
    records = FlagStore(path, bundle_path=Path(bundle)).read()
    if as_json:
        _echo_json(records)
    elif not records:
        click.echo(f"No flagged results in {path}.")
    else:
        click.echo(flags_table(records))
        click.echo(f"{len(records)} reports in {path}")


@cli.command()
@click.argument("bundle")
@click.option("--no-wait", is_flag=True, help="Fail at once if another command is changing the bundle (default: wait for it).")
@_json_flag
def merge(bundle: str, no_wait: bool, as_json: bool) -> None:
    """Merge a sharded BUNDLE's BM25 shards into one Lucene index (plain pyserini opens bundle/lucene)."""
    from spacerini.bundle.merge import merge_bm25

    with _disk_of(bundle):
        entry = merge_bm25(bundle, wait=not no_wait, progress=_progress())
    if as_json:
        _echo_json(entry)
    else:
        click.echo(
            f"Merged {entry['stats']['merged_from_shards']} BM25 shards of {bundle} into one Lucene index "
            f"({entry['docs']:,} documents)"
        )


# ---------------------------------------------------------------------------------- audit
@cli.command()
@click.argument("bundle")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder for report.html, PNG charts and analysis.json.")
@click.option("--top-k", default=20, show_default=True, type=click.IntRange(0, 10_000), help="N-grams listed per n (1..3).")
@click.option("--skip", default=None, help="Comma-separated sections to leave out: pii, near-dup, ngrams.")
@click.option("--no-redact", is_flag=True, help="Show the corpus's PII in n-grams and breakdowns as stored (redacted by default).")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def analyze(bundle: str, out: str, top_k: int, skip: str | None, no_redact: bool, as_json: bool) -> None:
    """Report what is in BUNDLE: sizes, lengths, top n-grams, duplicates, PII, breakdowns (DIR/report.html)."""
    from spacerini.audit.analyze import REPORT_FILES, write_report
    from spacerini.audit.analyze import analyze as run_analysis
    from spacerini.audit.plots import check_report_folder

    check_report_folder(out, REPORT_FILES, bundle=bundle)  # before the pass: a bad --out fails at once
    _check_writable(out, parents=True)
    analysis, lengths = run_analysis(
        bundle, top_k=top_k, skip=skip, progress=_progress(), keep_lengths=True, redact_pii=not no_redact
    )
    with _disk_of(out):
        path = write_report(analysis, lengths, out, title=f"Corpus report: {_shown(Path(bundle).name)}")
    if as_json:
        _echo_json(analysis.to_dict())
        return
    q = analysis.quality
    click.echo(f"{analysis.docs:,} documents, {analysis.bytes:,} bytes, {analysis.tokens:,} tokens")
    for kind in ("exact", "near"):
        rep = analysis.duplicates.get(kind, {})
        if "docs_pct" in rep:
            click.echo(f"{kind} duplicates: {rep['docs_pct']}% of documents, {rep['bytes_pct']}% of bytes in {rep['clusters']:,} clusters")
    if analysis.pii:
        click.echo(f"PII: {analysis.pii['docs_with_pii']:,} documents; " + (", ".join(f"{k} {v:,}" for k, v in analysis.pii["found"].items()) or "none found"))
    click.echo(f"empty: {q['empty_docs']:,}, very short: {q['short_docs']:,}, boilerplate: {100 * q['boilerplate_share']:.2f}% of bytes")
    click.echo(f"Report: {path}")


@cli.command()
@click.argument("bundle")
@click.argument("testset")
@click.option("--field", default="text", show_default=True, help="Test set column holding the text to check.")
@click.option("--id-field", default=None, help="Test set id column (default: id, qid, ... else the row number).")
@click.option("--ngram", default=13, show_default=True, type=click.IntRange(1, 100), help="Words per n-gram.")
@click.option("--min-overlap", default=0.5, show_default=True, type=click.FloatRange(0, 1, min_open=True), help="Overlap at which an example is contaminated.")
@click.option("--limit", default=None, type=click.IntRange(1), help="Check only the first N examples.")
@click.option("--out", "out", default=None, type=click.Path(file_okay=False), help="Also write contamination.json/.html and overlap.png here.")
@click.option("--no-redact", is_flag=True, help="Show PII in the matched texts as stored (redacted by default).")
@click.option("--json", "as_json", is_flag=True, help='Print {"examples": [...], "summary": {...}}.')
def contamination(
    bundle: str, testset: str, field: str, id_field: str | None, ngram: int, min_overlap: float, limit: int | None,
    out: str | None, no_redact: bool, as_json: bool,
) -> None:  # fmt: skip
    """Which examples of TESTSET (JSONL/CSV/Parquet file, hf:NAME, or irds:NAME: its queries) appear verbatim in BUNDLE (needs the exact backend)."""
    from spacerini.audit.contamination import REPORT_FILES, write_report
    from spacerini.audit.contamination import contamination as check
    from spacerini.audit.plots import check_report_folder

    if out:
        check_report_folder(out, REPORT_FILES, bundle=bundle)  # before the check: a bad --out fails at once
        _check_writable(out, parents=True)
    report = check(
        bundle, testset, field=field, id_field=id_field, ngram=ngram, min_overlap=min_overlap, limit=limit,
        progress=_progress(), redact_pii=not no_redact,
    )  # fmt: skip
    with _disk_of(out or ""):
        path = write_report(report, out) if out else None
    if as_json:
        _echo_json(report.to_dict())
        return
    for r in report.examples:
        where = f" in {r.doc}" if r.doc else ""
        click.echo(f"{r.id}\t{'CONTAMINATED' if r.contaminated else 'clean'}\toverlap {r.overlap:.3f}\tlongest match {r.longest_match} chars{where}")
    s = report.summary
    click.echo(f"{s['contaminated']:,} of {s['examples']:,} examples contaminated ({100 * s['contaminated_fraction']:.2f}%; {s['ngram']}-gram overlap >= {s['min_overlap']})")
    if path is not None:
        click.echo(f"Report: {path}")


# ------------------------------------------------------------------------- info / serve
@cli.command()
@click.argument("bundle")
@click.option("--verify", is_flag=True, help="Check every file's SHA-256.")
@click.option("--json", "as_json", is_flag=True, help="Accepted as by the other commands: the output is JSON anyway.")
def info(bundle: str, verify: bool, as_json: bool) -> None:
    """Print BUNDLE's manifest summary as JSON."""
    from spacerini.bundle import open_bundle

    _echo_json(open_bundle(bundle, verify=verify).info())


@cli.command()
@click.argument("bundles", nargs=-1, required=True)
@click.option("--name", "names", multiple=True, metavar="BUNDLE=LABEL",
              help="Name a corpus (repeatable; default: its folder name), e.g. --name ./c4=C4.")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--no-redact", is_flag=True, help="Show PII as stored (it is redacted on display by default).")
@click.option("--flags", "flags_path", default=None, type=click.Path(dir_okay=False), help="JSONL file for flagged results.")
@click.option("--engine", default="local", show_default=True, type=click.Choice(["local", "ray"]), help="Where a sharded bundle's BM25 and exact shards are searched (ray: in Ray actors; the [distributed] extra).")
@click.option("--ray-address", default=None, help="Ray cluster to join with --engine ray (default: start one on this machine).")
def serve(
    bundles: tuple[str, ...], names: tuple[str, ...], port: int, host: str, no_redact: bool, flags_path: str | None,
    engine: str, ray_address: str | None,
) -> None:  # fmt: skip
    """Serve BUNDLES as a search app at http://HOST:PORT.

    Several bundles are served side by side in one app (one process, one JVM): each tab gets a
    corpus selector (default: the first bundle), a Compare tab asks all of them at once, and the
    JSON routes take &corpus=NAME (GET /api/corpora lists them, GET /api/compare?q= compares).
    """
    from spacerini.app import serve as serve_app
    from spacerini.bundle import open_bundle

    _distinct_bundles(bundles)
    if flags_path is not None:
        _check_writable(flags_path, parents=True)  # else every report would fail while serving
    if len(bundles) == 1 and not names:
        opened = open_bundle(bundles[0], engine=engine, ray_address=ray_address)
        try:
            serve_app(opened, host=host, port=port, redact_pii=not no_redact, flags_path=flags_path)
        finally:
            opened.close()  # kills the shard actors and stops a Ray that --engine ray started here
        return
    from spacerini.corpora import open_bundles, parse_names

    corpora = open_bundles(list(bundles), names=parse_names(names, bundles), redact_pii=not no_redact,
                           flags_path=flags_path, engine=engine, ray_address=ray_address)  # fmt: skip
    try:
        serve_app(corpora, host=host, port=port)
    finally:
        corpora.close()


@cli.command()
@click.argument("bundles", nargs=-1, required=True)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Space folder to write.")
@click.option("--name", "names", multiple=True, metavar="BUNDLE=LABEL", help="Name a corpus (repeatable).")
@click.option("--sdk", type=click.Choice(["gradio", "docker"]), default="gradio", show_default=True,
              help="docker adds a Dockerfile that runs the same app (a Docker Space, or self-hosting).")
@click.option("--title", default=None)
@click.option("--emoji", default="🔎", show_default=True)
@click.option("--bundle-repo", default=None, help="Dataset repo OWNER/NAME the Space downloads the bundle from.")
@click.option("--no-redact", is_flag=True, help="Do not redact PII on display in the Space.")
@click.option("--force", is_flag=True, help="Replace an existing Space folder.")
def space(bundles: tuple[str, ...], out: str, names: tuple[str, ...], sdk: str, title: str | None, emoji: str,
          bundle_repo: str | None, no_redact: bool, force: bool) -> None:  # fmt: skip
    """Render a ready Hugging Face Space folder (README front matter, app.py, requirements) for BUNDLES.

    Several bundles make one Space that serves them side by side (see `spacerini serve`).
    """
    from spacerini.corpora import parse_names
    from spacerini.deploy import render_space

    _distinct_bundles(bundles)
    _check_writable(out, parents=True)  # before the wheel is built
    with _disk_of(out):
        path = render_space(
            list(bundles) if len(bundles) > 1 else bundles[0], out, title=title, emoji=emoji, bundle_repo=bundle_repo,
            redact_pii=not no_redact, overwrite=force, names=parse_names(names, bundles), sdk=sdk,
        )  # fmt: skip
    click.echo(f"Space folder written to {path}")


def _distinct_bundles(bundles: tuple[str, ...]) -> None:
    """Refuses one bundle given twice (``B ./B/``, or ``B`` and a link to it): it would be opened
    twice and shown as two corpora that are one."""
    seen: dict[Any, str] = {}
    for given in bundles:
        key: Any = given
        if ":" not in given or Path(given).exists():  # not hf:NAME: the folder itself
            try:
                st = os.stat(given)
                key = (st.st_dev, st.st_ino)
            except OSError:  # missing or unreadable: opening it names the problem
                key = os.path.realpath(os.path.expanduser(given))
        if key in seen:
            same = f"{given} is given twice" if seen[key] == given else f"{seen[key]} and {given} are the same bundle"
            raise click.UsageError(f"{same}: give each bundle once")
        seen[key] = given


_KEEP_HISTORY = (
    "After opt-outs, keep the repo's earlier revisions (by default its history is squashed, so that none of them "
    "still holds the removed documents)."
)


@cli.command()
@click.argument("bundle")
@click.option("--space", "space_id", required=True, help="OWNER/NAME of the Space to create or update.")
@click.option("--private", is_flag=True)
@click.option("--keep-history", is_flag=True, help=_KEEP_HISTORY)
def deploy(bundle: str, space_id: str, private: bool, keep_history: bool) -> None:
    """Create (or update) a Hugging Face Space serving BUNDLE (token from HF_TOKEN or `hf auth login`)."""
    from spacerini.deploy import deploy as deploy_space

    click.echo(deploy_space(bundle, space_id, private=private, keep_history=keep_history))


@cli.command()
@click.argument("bundle")
@click.option("--repo", "repo_id", required=True, help="Dataset repo OWNER/NAME.")
@click.option("--private", is_flag=True)
@click.option("--keep-history", is_flag=True, help=_KEEP_HISTORY)
def push(bundle: str, repo_id: str, private: bool, keep_history: bool) -> None:
    """Upload BUNDLE as a dataset repo; open it anywhere with open_bundle("hf:OWNER/NAME")."""
    from spacerini.deploy import push as push_bundle

    click.echo(push_bundle(bundle, repo_id, private=private, keep_history=keep_history))


@cli.command()
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535))
@click.option("--host", default="127.0.0.1", show_default=True)
def builder(port: int, host: str) -> None:
    """A no-code page: pick a dataset or upload a file, build a bundle, try it, download or deploy a Space."""
    from spacerini.app.builder import serve_builder

    serve_builder(host=host, port=port)


@cli.command()
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Where the demo bundle lives.")
@click.option("--rebuild", is_flag=True, help="Build the demo bundle again even if it exists.")
@click.option("--build-only", is_flag=True, help="Build (or check) the bundle, then exit without serving.")
def demo(port: int, host: str, out: str | None, rebuild: bool, build_only: bool) -> None:
    """Build the embedded default bundle (Python source on this machine) if needed, then serve it."""
    from spacerini.app import serve as serve_app
    from spacerini.demo import demo_bundle

    if out is not None:
        _check_writable(out, parents=True)
    if not build_only:  # a port in use fails now, not after a build of minutes
        from spacerini.app.server import bind

        bind(host, port).close()
    bundle = demo_bundle(out=out, rebuild=rebuild, progress=_progress())
    click.echo(f"Demo bundle: {bundle.path} ({len(bundle):,} documents)", err=True)
    if not build_only:
        serve_app(bundle, host=host, port=port)


# ---------------------------------------------------------------------------------- model
@cli.group(cls=_CommandGroup)
def model() -> None:
    """The bundled StarCoder-style code model: generate, trace, info, train, membership."""


@model.command(name="generate")
@click.argument("prompt")
@click.option("--suffix", default=None, help="Code after the cursor: fill in the middle (FIM).")
@click.option("--max-new-tokens", default=64, show_default=True, type=click.IntRange(1, 4096))
@click.option("--temperature", default=0.8, show_default=True, type=click.FloatRange(0, 10))
@click.option("--top-p", default=0.95, show_default=True, type=click.FloatRange(0, 1, min_open=True))
@click.option("--seed", default=None, type=int, help="Make sampling deterministic.")
@click.option("--model", "model_name", default=None, help="A causal LM name (local cache) or path instead of the shipped one.")
@click.option(
    "--trace", "trace_bundle", default=None, metavar="BUNDLE",
    help="Then trace the generated text back to BUNDLE's documents (spans found verbatim, with licences).",
)
@click.option("--min-len", default=32, show_default=True, type=click.IntRange(1), help="With --trace: shortest span reported (characters).")
@_json_flag
def model_generate(
    prompt: str,
    suffix: str | None,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int | None,
    model_name: str | None,
    trace_bundle: str | None,
    min_len: int,
    as_json: bool,
) -> None:
    """Continue PROMPT (or infill between PROMPT and --suffix); with --trace, attribute what it wrote."""
    from spacerini.model import generate

    bundle = None
    if trace_bundle is not None:
        from spacerini.bundle import open_bundle
        from spacerini.model.tracing import require_exact

        bundle = open_bundle(trace_bundle)  # opened and checked first: a bad bundle fails before the model loads
        require_exact(bundle)  # even when the model then writes nothing to trace
    text = generate(
        prompt,
        suffix=suffix,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        model=model_name,
    )
    result = None
    if bundle is not None:
        from spacerini.model.tracing import TraceResult

        # The generated text only, not the prompt; a model that stops at once wrote nothing to trace.
        result = (
            _trace(bundle, text, min_len)
            if text
            else TraceResult(chars=0, spans=(), coverage=0.0, licences=(), min_len=min_len)
        )
    if as_json:
        _echo_json({"prompt": prompt, "suffix": suffix, "text": text, **({"trace": result.to_dict()} if result else {})})
        return
    click.echo(prompt + text + (suffix or ""))
    if result is not None:
        from spacerini.model import render_trace

        click.echo(f"--- trace of the {len(text):,} generated characters in {trace_bundle}")
        click.echo(render_trace(result))


@model.command(name="info")
@click.option("--model", "model_name", default=None, help="A causal LM name (local cache) or path.")
@_json_flag
def model_info_cmd(model_name: str | None, as_json: bool) -> None:
    """Architecture, parameter count and FIM support of the model."""
    from spacerini.model import model_info

    info = model_info(model_name)
    if as_json:
        _echo_json(info)
    else:
        for key, value in info.items():
            click.echo(f"{key:<14}{value}")


@model.command(name="trace")
@click.argument("bundle")
@click.argument("source")
@click.option("--min-len", default=32, show_default=True, type=click.IntRange(1), help="Shortest span reported (characters).")
@_json_flag
def model_trace(bundle: str, source: str, min_len: int, as_json: bool) -> None:
    """Trace the code in SOURCE (a file, or - for stdin) back to BUNDLE's documents, with licences."""
    from spacerini.bundle import open_bundle
    from spacerini.model import render_trace

    result = _trace(open_bundle(bundle), _read_text_arg(source), min_len)
    if as_json:
        _echo_json(result.to_dict())
    else:
        click.echo(render_trace(result))


def _trace(bundle: Any, text: str, min_len: int) -> Any:
    """Traces ``text``; through the service (which redacts the sources and traces around the PII
    of the text) when the bundle redacts on display, as the app does."""
    from spacerini.display import pii_display_mode
    from spacerini.model import trace

    if pii_display_mode(bundle.manifest):
        return _service(bundle).trace(text, min_len=min_len)
    return trace(bundle, text, min_len=min_len)


@model.command(name="train")
@click.option("--bundle", "bundle_path", required=True, type=click.Path(file_okay=False), help="Bundle to train on.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Model and checkpoint folder.")
@click.option("--steps", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1))
@click.option("--seq-len", default=512, show_default=True, type=click.IntRange(16, 512),
              help="Tokens per sequence (at most the model's 512 positions).")
@click.option("--lr", default=1e-3, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--no-resume", is_flag=True, help="Start again instead of resuming from the last checkpoint.")
@click.option("--time-limit", default=None, type=click.FloatRange(0), help="Stop (with a checkpoint) after this many seconds.")
@click.option("--device", default=None, help="Torch device, e.g. cpu or cuda (default: the best one).")
@click.option("--threads", default=None, type=click.IntRange(1, 256), help="CPU threads for torch (default: torch's own).")
@click.option(
    "--adapt-threads", is_flag=True,
    help="On a CPU, keep choosing between 1 and --threads threads by timing steps (for shared machines).",
)
@click.option("--doc-fraction", default=1.0, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Share of the documents trained on per epoch (a hash sample).")
@click.option("--fixed-sample", is_flag=True, help="The same --doc-fraction sample every epoch (a small set seen several times).")
@click.option("--sequence-shuffle", default=0, show_default=True, type=click.IntRange(0),
              help="Packed sequences held in a shuffle buffer, so a batch mixes files (0: packing order).")
@_json_flag
def model_train(
    bundle_path: str,
    out_dir: str,
    steps: int,
    batch_size: int,
    seq_len: int,
    lr: float,
    seed: int,
    no_resume: bool,
    time_limit: float | None,
    device: str | None,
    threads: int | None,
    adapt_threads: bool,
    doc_fraction: float,
    fixed_sample: bool,
    sequence_shuffle: int,
    as_json: bool,
) -> None:
    """Train (or resume training) the code model on a bundle's documents, with FIM."""
    from spacerini.model import train

    _check_writable(out_dir, parents=True)
    report = train(
        bundle_path,
        out_dir,
        steps=steps,
        batch_size=batch_size,
        seq_len=seq_len,
        lr=lr,
        seed=seed,
        resume=not no_resume,
        progress=_progress(),
        time_limit=time_limit,
        device=device,
        threads=threads,
        adapt_threads=adapt_threads,
        doc_fraction=doc_fraction,
        fixed_sample=fixed_sample,
        sequence_shuffle=sequence_shuffle,
    )
    if as_json:
        _echo_json(report)
    else:
        click.echo(f"Trained to step {report.get('steps', '?')}; model saved in {out_dir}")


@model.command(name="membership")
@click.argument("source", metavar="TEXT|FILE")
@click.option("--bundle", "bundle_path", default=None, help="Also give the exact answer from this bundle's corpus.")
@click.option("--model", "model_name", default=None, help="A causal LM folder or cached name instead of the shipped one.")
@click.option("--k", "k", default=0.2, show_default=True, type=float, help="Share of tokens Min-K% and Min-K%++ average.")
@click.option("--max-tokens", default=None, type=click.IntRange(1), help="Score only the first N tokens.")
@click.option("--device", default=None, help="Torch device, e.g. cpu or cuda (default: the best one).")
@_json_flag
def model_membership(
    source: str, bundle_path: str | None, model_name: str | None, k: float, max_tokens: int | None,
    device: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Was TEXT (or the text of FILE; - for stdin) in the model's training data? Model-based
    scores (loss, zlib ratio, Min-K% Prob, Min-K%++), and the exact answer of --bundle."""
    from spacerini.errors import QueryError
    from spacerini.model.membership import MAX_SCORED_CHARS, exact_answer, read_text_or_file, score_text

    if source == "-":
        _check_stdin()
    text = read_text_or_file(source)
    service = None
    if bundle_path is not None:
        from spacerini.bundle import open_bundle

        service = _service(open_bundle(bundle_path))  # opened first: a bad bundle fails before the model loads
    # the exact answer first: text the bundle refuses (too long) fails at once, not after scoring
    exact = exact_answer(service, text) if service is not None else None
    if max_tokens is None and len(text) > MAX_SCORED_CHARS:
        raise QueryError(
            f"the text has {len(text):,} characters, more than the {MAX_SCORED_CHARS:,} scored at once "
            "(some 15 s of CPU per 100,000 on 2 cores); pass --max-tokens N to score its beginning, or split it"
        )
    scores = score_text(text, model=model_name, k=k, max_tokens=max_tokens, device=device, progress=_progress())
    if as_json:
        _echo_json({"scores": scores, "member_scores": scores.oriented(), "exact": exact})
        return
    pct = f"{k * 100:.3g}%"  # k=0.001 is Min-0.1%, not Min-0%
    click.echo(f"tokens           {scores.tokens:,} ({scores.chars:,} characters)")
    click.echo(f"loss             {scores.loss:.4f}  mean NLL per token (perplexity {scores.perplexity:.1f}); lower: more likely a member")
    click.echo(f"zlib             {scores.zlib:.6f}  loss / {scores.zlib_bytes:,} zlib bytes; lower: more likely a member")
    click.echo(f"min_k            {scores.min_k:.4f}  Min-{pct} Prob; higher: more likely a member")
    click.echo(f"min_k_plus_plus  {scores.min_k_plus_plus:.4f}  Min-{pct}++; higher: more likely a member")
    click.echo("The model's scores are not calibrated: compare them with texts known not to be members.")
    if exact is not None:
        if exact.verbatim is None:
            head = "verbatim: unknown (no exact backend)"
        else:
            head = f"verbatim: {'yes' if exact.verbatim else 'no'} ({exact.count:,} occurrences)"
        click.echo(
            f"exact ({bundle_path}): {head}; coverage {exact.coverage:.1%} ({exact.method}), "
            f"longest match {exact.longest_match:,} characters"
        )


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so that a build removes its temporary folder."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated(signum)


def _handle_termination() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C (clean-up runs) instead of killing the process."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):  # not the main thread, or no such signal
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _raise_terminated)


#: Arguments that take free text, which may start with "-" (then it follows "--", as in grep).
_TEXT_ARGUMENTS = ("query", "text", "name", "prompt")


def _dash_hint(exc: click.NoSuchOption, argv: list[str]) -> str:
    """For ``spacerini count B "-x"``: how to pass a text that starts with "-" (after ``--``)."""
    ctx, token = exc.ctx, exc.option_name
    if ctx is None or token.startswith("--"):  # "--kk" is a mistyped option, not a text
        return ""
    # click names only the first letter of "-bloom filter" ("-b"): show the whole argument.
    token = next((a for a in argv if a.startswith(token)), token)
    args = [p for p in ctx.command.params if isinstance(p, click.Argument)]
    text = next((p for p in args if p.name in _TEXT_ARGUMENTS), None)
    if text is None:
        return ""
    before = [p.human_readable_name for p in args[: args.index(text)]]
    example = " ".join([ctx.command_path, *before, "--", shlex.quote(token)])
    return f"; a {text.human_readable_name} that starts with - follows --, as in grep: `{example}`"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: usage errors too are one line on stderr with exit status 2."""
    _handle_termination()
    # A path named in the output may hold bytes that are not UTF-8 (surrogate escapes): they are
    # written back as they were, as ls does, and not a UnicodeEncodeError after the work is done.
    if sys.stdout is None:
        sys.stdout = _ClosedOutput()
    with contextlib.suppress(AttributeError, ValueError):
        if sys.stdout.errors == "strict":
            sys.stdout.reconfigure(errors="surrogateescape")
    try:
        rc = cli.main(args=argv, prog_name="spacerini", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("spacerini: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # `spacerini --help | head -1`: as a command's output does (_Group)
        with contextlib.suppress(AttributeError, ValueError, OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except OSError as exc:  # --help or --version written to a full disk or a closed output
        if "--debug" in (sys.argv[1:] if argv is None else argv):
            raise  # re-raised by _Group for --debug (a BundleNotFoundError is an OSError): the traceback
        if exc.filename is None and _writing_stdout(exc):
            exc.filename = "standard output"
        _error_line(_os_error(exc))
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            dash = ""
            if isinstance(exc, click.NoSuchOption):
                dash = _dash_hint(exc, sys.argv[1:] if argv is None else argv)
            hint = f" (see `{exc.ctx.command_path} --help`{dash})"
        _error_line(f"{exc.format_message()}{hint}")
        sys.exit(EXIT_ERROR)
    sys.exit(rc if isinstance(rc, int) else 0)
