"""Corpus loading: any supported source becomes a re-iterable stream of :class:`~spacerini.records.Doc`.

Sources:

* a file: ``.jsonl``/``.json`` (JSON lines, or one top-level JSON array), ``.jsonl.gz``/``.json.gz``,
  ``.parquet``, ``.csv``, ``.tsv`` (a header row first; or, for TSV, ``id<TAB>text`` lines with
  no header, as MS MARCO's ``collection.tsv``: recognised when the first line is two cells, an id
  and a text with spaces, and names no known column);
* a folder of such files (recursive, sorted; hidden files ignored);
* a folder of source code with ``format="code"`` (one document per code file, with provenance);
* ``hf:NAME[:CONFIG][@SPLIT]`` - a Hugging Face dataset, streamed; ``hf:/path`` or a plain path to
  a folder written by ``Dataset.save_to_disk``;
* ``irds:NAME`` - the documents of an ir_datasets dataset, from its local cache (never downloaded:
  :mod:`spacerini.corpus.irds`);
* a ``datasets.Dataset``/``IterableDataset``, an iterable of dicts, or a callable returning one.

Example:
    >>> from spacerini.corpus import load_corpus
    >>> corpus = load_corpus("tests/data/corpus_docs.jsonl", progress=False)
    >>> next(iter(corpus)).id
    'd1'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from spacerini.corpus.base import CONTENTS_CANDIDATES, ID_CANDIDATES, Corpus, TableCorpus, iterable_records
from spacerini.corpus.default import python_source_corpus
from spacerini.errors import CorpusError, CorpusNotFoundError
from spacerini.progress import wanted

__all__ = [
    "CONTENTS_CANDIDATES",
    "FORMATS",
    "ID_CANDIDATES",
    "Corpus",
    "load_corpus",
    "python_source_corpus",
]

#: Values accepted by ``format=``.
FORMATS: tuple[str, ...] = ("jsonl", "json", "parquet", "csv", "tsv", "code", "hf", "irds")


def load_corpus(
    source: str | Path | Iterable[Any] | Callable[[], Iterable[Any]],
    *,
    format: str | None = None,
    id_field: str | None = None,
    fields: Sequence[str] | str | None = None,
    progress: bool = True,
    owner: str | None = None,
    max_file_bytes: int | None = None,
) -> Corpus:
    """Opens a corpus source as a re-iterable, streaming :class:`Corpus` of documents.

    The source is checked when it is opened: a missing file, an empty source, or a first record
    without an id or contents field fails here, before any index is built. Later records are
    checked as they stream.

    Args:
        source: A path (file or folder), ``"hf:NAME[:CONFIG][@SPLIT]"``, ``"irds:NAME"``, a ``datasets.Dataset`` or
            ``IterableDataset`` (or a ``DatasetDict``, whose "train" split is read), an iterable of
            dicts or of :class:`~spacerini.records.Doc`, or a callable that returns a fresh one.
        format: Force a format ("jsonl", "json", "parquet", "csv", "tsv", "code", "hf", "irds") instead
            of guessing from the file names.
        id_field: The id column (default: the first of "id", "docid", "_id", "doc_id" present).
        fields: The contents columns, joined with ``"\\n"`` into ``Doc.text`` (default: the first
            of "contents", "text", "content", "body" present). A string is split on commas.
        progress: Show a progress bar (on stderr) while iterating.
        owner: For ``format="code"``: the owner recorded in each document's meta.
        max_file_bytes: For ``format="code"``: skip (and count) files larger than this
            (default 1 MB).

    Returns:
        The corpus; iterate it (as many times as needed) to stream its documents.

    Raises:
        CorpusNotFoundError: The file, folder or dataset does not exist.
        EmptyCorpusError: The source holds no records (or a folder no data files).
        MissingFieldError: The first record has no id or contents field.
        MalformedRecordError: The first record cannot be parsed.
        CorpusError: An unsupported extension or format, or options that do not fit the source.
    """
    if format is not None and format not in FORMATS:
        raise CorpusError(f"unknown format {format!r}: choose from {', '.join(FORMATS)}")
    if isinstance(fields, str):
        fields = [name.strip() for name in fields.split(",") if name.strip()]
    if fields is not None and not fields:
        raise CorpusError("fields is empty: name at least one contents column")
    if format != "code" and (owner is not None or max_file_bytes is not None):
        raise CorpusError("owner= and max_file_bytes= apply only to format='code'")

    progress = wanted(progress)
    if isinstance(source, str | Path):
        return _load_path(
            source,
            format=format,
            id_field=id_field,
            fields=fields,
            progress=progress,
            owner=owner,
            max_file_bytes=max_file_bytes,
        )
    if format not in (None, "hf"):
        raise CorpusError(f"format={format!r} needs a path; got a {type(source).__name__}")

    from spacerini.corpus import hf

    if hf.is_dataset_dict(source):
        source = hf.pick_split(source)
    if hf.is_dataset_object(source):
        name = hf.describe_dataset(source)
        return TableCorpus(
            hf.dataset_records(source, name),
            source=name,
            format="dataset",
            id_field=id_field,
            fields=fields,
            progress=progress,
            total=hf.dataset_total(source),
        )
    if callable(source):
        factory = source
        name = f"<python callable {getattr(factory, '__name__', type(factory).__name__)}>"

        def records() -> Any:
            for number, row in enumerate(factory(), start=1):
                yield row, name, number

        return TableCorpus(
            records, source=name, format="python", id_field=id_field, fields=fields, progress=progress
        )
    if isinstance(source, Iterable) and not isinstance(source, str | bytes | dict):
        name = f"<python {type(source).__name__}>"
        total = len(source) if isinstance(source, Sequence) else None
        return TableCorpus(
            iterable_records(source, name),
            source=name,
            format="python",
            id_field=id_field,
            fields=fields,
            progress=progress,
            total=total,
            rescan=iter(source) is not source,
        )
    raise CorpusError(
        f"cannot load a corpus from a {type(source).__name__}: pass a path, 'hf:NAME', a datasets.Dataset "
        "or an iterable of dicts"
    )


def _load_path(
    source: str | Path,
    *,
    format: str | None,
    id_field: str | None,
    fields: Sequence[str] | None,
    progress: bool,
    owner: str | None,
    max_file_bytes: int | None,
) -> Corpus:
    from spacerini.corpus import files, hf

    text = str(source)
    if format == "irds" or text.startswith("irds:"):
        from spacerini.corpus import irds

        name, records, total = irds.open_docs(text)
        return TableCorpus(
            records,
            source=f"irds:{name}",
            format="irds",
            id_field=id_field,
            fields=fields,
            progress=progress,
            total=total,
            extra={"dataset": name},
        )
    if format == "hf" or text.startswith("hf:"):
        spec, dataset, saved, split = hf.open_source(text)
        if saved is not None:
            return _saved_dataset(dataset, saved, split, text, id_field, fields, progress)
        return TableCorpus(
            hf.dataset_records(dataset, str(spec)),
            source=str(spec),
            format="hf",
            id_field=id_field,
            fields=fields,
            progress=progress,
            extra={"dataset": spec.name, "config": spec.config, "split": spec.split},
        )

    path = Path(source).expanduser()
    if not path.exists():
        raise CorpusNotFoundError(
            "no such file or folder (for a Hugging Face dataset use hf:NAME[:CONFIG][@SPLIT])", path=text
        )
    if format == "code":
        from spacerini.corpus.code import DEFAULT_MAX_FILE_BYTES, CodeCorpus

        return CodeCorpus(
            path,
            owner=owner,
            max_file_bytes=DEFAULT_MAX_FILE_BYTES if max_file_bytes is None else max_file_bytes,
            progress=progress,
            source=text,
        )
    if path.is_dir():
        if hf.is_saved_dataset(path):
            dataset, split = hf.load_saved(path, None)
            return _saved_dataset(dataset, path, split, text, id_field, fields, progress)
        listed = files.list_data_files(path, fmt=format)
        kinds = sorted({kind for _, kind in listed})
        total = None
        if kinds == ["parquet"]:
            counts = [files.parquet_rows(file) for file, _ in listed]
            total = None if None in counts else sum(c for c in counts if c is not None)
        return TableCorpus(
            files.file_records(listed),
            source=text,
            format=kinds[0] if len(kinds) == 1 else "mixed",
            id_field=id_field,
            fields=fields,
            progress=progress,
            total=total,
            extra=files.describe_files(path, listed),
            empty_path=text,
        )

    kind = format or files.format_of(path)
    if kind is None:
        raise CorpusError(
            f"unsupported file type {''.join(path.suffixes) or '(no extension)'}: use one of "
            f"{', '.join(sorted(files.SUFFIXES))}, pass --format jsonl|json|parquet|csv|tsv, "
            "or --format code for a folder of source code",
            path=text,
        )
    files.check_file(path)
    total = files.parquet_rows(path) if kind == "parquet" else None
    return TableCorpus(
        files.file_records([(path, kind)]),
        source=text,
        format=kind,
        id_field=id_field,
        fields=fields,
        progress=progress,
        total=total,
        empty_path=text,
    )


def _saved_dataset(
    dataset: Any,
    folder: Path,
    chosen: str,
    text: str,
    id_field: str | None,
    fields: Sequence[str] | None,
    progress: bool,
) -> Corpus:
    from spacerini.corpus import hf

    return TableCorpus(
        hf.dataset_records(dataset, text),
        source=text,
        format="hf",
        id_field=id_field,
        fields=fields,
        progress=progress,
        total=hf.dataset_total(dataset),
        extra={"dataset": str(folder), "config": None, "split": chosen},
    )
