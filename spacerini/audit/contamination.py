"""Which examples of a benchmark appear in a bundle's corpus (``spacerini contamination``).

Each example's text (the ``field`` column of a JSONL/JSON/CSV/TSV/Parquet file, a folder of
them, or an ``hf:`` dataset) is split into word tokens (:mod:`spacerini.audit.ngrams`: runs of
ASCII letters, digits, ``_`` and non-ASCII characters; case kept) and checked against the
bundle's exact index (the suffix array of ``exact/``), so the answers are exact, not sampled:

* **n-gram overlap**: the fraction of the example's word n-grams (``n = 13`` by default, as
  GPT-3 and WIMBD) found verbatim in the corpus. An n-gram is the example's own text from the
  first character of its first token to the last character of its last token, punctuation and
  spacing included, so "found" means that exact string occurs in some document. An example with
  fewer than ``n`` tokens has one n-gram: its whole token span.
* **longest match**: the longest span of the example, starting at a token, that occurs verbatim
  in the corpus (the earliest of equally long ones), in characters and in whole tokens, with the
  first document (in corpus order) that holds it.
* **contaminated**: ``overlap >= min_overlap`` (default :data:`MIN_OVERLAP` = 0.5).

Why 0.5: GPT-3 marked an example dirty when any single 13-gram collided, which also flags
clean examples that share one stock phrase with the web (the GPT-3 paper found many such false
positives); exact whole-example matching (WIMBD's) misses an example with one word changed.
Half the 13-grams found means long stretches of the example are in the corpus, verbatim, while
a paraphrase (reworded every few words) falls to near 0. ``any_ngram`` (GPT-3's test) is
reported too, to compare.

Both sweeps cost about ``2 x tokens`` suffix-array lookups per example: the match from token
``i + 1`` ends no earlier than the one from token ``i`` (matching statistics).
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spacerini.backends.exact import match_runs, run_lengths
from spacerini.errors import (
    BackendNotAvailableError,
    CorpusError,
    CorpusNotFoundError,
    EmptyCorpusError,
    MalformedRecordError,
    MissingFieldError,
    UsageError,
)
from spacerini.progress import wanted

logger = logging.getLogger(__name__)

#: Words per n-gram (GPT-3's and WIMBD's choice).
NGRAM = 13
#: Fraction of an example's n-grams found in the corpus at which it counts as contaminated.
MIN_OVERLAP = 0.5
#: Id columns looked for when none is named (else the row number is the id).
ID_FIELDS = ("id", "_id", "docid", "doc_id", "qid", "question_id", "example_id", "idx")
#: The files of a report (``--out``).
REPORT_FILES = ("contamination.json", "overlap.png", "contamination.html")
#: Longest example text checked, in characters (the exact index accepts 1 MiB queries).
MAX_CHARS = 100_000


@dataclass(frozen=True, slots=True)
class Example:
    """One benchmark example to check.

    Attributes:
        id: Its id (the id column, else its 1-based row number).
        text: The text checked.
    """

    id: str
    text: str


@dataclass(frozen=True, slots=True)
class ExampleResult:
    """How much of one example is in the corpus.

    Attributes:
        id: The example's id.
        contaminated: ``overlap >= min_overlap``.
        overlap: Fraction of its n-grams found verbatim in the corpus (0 when it has no token).
        longest_match: Characters of its longest verbatim match (starting at a token).
        longest_match_tokens: Whole tokens inside that match.
        longest_match_text: The matched text, its PII (keys, e-mail addresses...) redacted unless
            the check was asked not to redact.
        doc: The first document (corpus order) that holds the match, or None.
        ngrams: Number of n-grams checked.
        ngrams_found: Of those, found in the corpus.
        any_ngram: Whether any n-gram was found (GPT-3's "dirty" test).
        tokens: Word tokens of the example.
        chars: Characters of the example.
    """

    id: str
    contaminated: bool
    overlap: float
    longest_match: int
    longest_match_tokens: int
    longest_match_text: str
    doc: str | None
    ngrams: int
    ngrams_found: int
    any_ngram: bool
    tokens: int
    chars: int


@dataclass(frozen=True, slots=True)
class ContaminationReport:
    """Every example's result and the summary (``spacerini contamination --json``).

    Attributes:
        examples: One result per example, in test-set order.
        summary: Counts, the contaminated fraction and the parameters used.
    """

    examples: list[ExampleResult]
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: ``{"examples": [...], "summary": {...}}``."""
        return {"examples": [asdict(e) for e in self.examples], "summary": dict(self.summary)}


# ------------------------------------------------------------------------------ test sets
def _records(source: str) -> Iterator[tuple[Any, str, int | None]]:
    """Streams the raw records of a file, a folder of files, an ``hf:`` dataset (or a folder
    written by ``save_to_disk``) or the queries of an ``irds:`` dataset."""
    from spacerini.corpus.files import check_file, file_records, format_of, list_data_files

    if source.startswith("irds:"):
        from spacerini.corpus import irds

        yield from irds.open_queries(source)()
        return
    from spacerini.corpus import hf

    if source.startswith("hf:"):
        # Records are named as the corpus loader names them: the source as given, and the row.
        spec, dataset, saved, _ = hf.open_source(source)
        yield from hf.dataset_records(dataset, source if saved is not None else str(spec))()
        return
    path = Path(source).expanduser()
    if source == "-" and not path.exists():
        raise CorpusNotFoundError(
            "a test set is not read from standard input: write it to a .jsonl, .csv or .parquet file and pass its path",
            path=source,
        )
    if not path.exists():
        raise CorpusNotFoundError(
            "no such test set file or folder (for a Hugging Face dataset use hf:NAME, for the queries of "
            "an ir_datasets dataset irds:NAME)",
            path=source,
        )
    if path.is_dir() and hf.is_saved_dataset(path):  # a folder written by Dataset.save_to_disk
        dataset, _ = hf.load_saved(path, None)
        yield from hf.dataset_records(dataset, source)()
        return
    if path.is_dir():
        files = list_data_files(path)
    else:
        fmt = format_of(path)
        if fmt is None:
            raise CorpusError(
                "unknown test set format: use .jsonl, .json, .csv, .tsv or .parquet", path=source
            )
        check_file(path)
        files = [(path, fmt)]
    yield from file_records(files)()


def load_testset(
    source: str | Path | Sequence[Mapping[str, Any]],
    *,
    field: str = "text",
    id_field: str | None = None,
    limit: int | None = None,
) -> list[Example]:
    """Reads a test set's examples.

    Args:
        source: A ``.jsonl``/``.json``/``.csv``/``.tsv``/``.parquet`` file (or a folder of them),
            ``hf:NAME[:CONFIG][@SPLIT]``, ``irds:NAME`` (the queries of an ir_datasets
            dataset, from its local cache: ``id`` and ``text``), or a list of dicts.
        field: The column holding the text to check. With the default, ``text``, records that
            have no ``text`` but a ``contents`` column (a headerless ``id<TAB>text`` TSV, such as
            MS MARCO's query files, reads so) use ``contents``.
        id_field: The id column (default: the first of :data:`ID_FIELDS` present, else the row
            number).
        limit: Read at most this many examples.

    Returns:
        The examples, in order.

    Raises:
        UsageError: ``field`` or ``id_field`` is empty, or ``limit`` is not a positive integer.
        CorpusNotFoundError: No such file, folder or dataset (or its queries are not cached).
        EmptyCorpusError: The test set is empty.
        MalformedRecordError: A record cannot be parsed (bad JSON, not an object), two
            examples share an id, or an example's text is longer than :data:`MAX_CHARS`.
        MissingFieldError: A record lacks ``field`` (or the named ``id_field``), its text is not
            text, or its id is null, empty, a float, a boolean or a container.
    """
    for option, value in (("field", field), ("id_field", id_field)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} is empty: name a column of the test set (e.g. {flag} text)")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise UsageError(f"limit must be a positive integer, not {limit!r}")
        limit = min(limit, sys.maxsize)  # more than any test set holds: all of it
    if isinstance(source, str | Path):
        name = str(source)
        records: Iterator[tuple[Any, str, int | None]] = _records(name)
    else:
        name = "the test set"
        records = ((row, name, i) for i, row in enumerate(source, start=1))
    examples: list[Example] = []
    seen: dict[str, str] = {}  # id -> where it first was
    chosen_id = id_field
    asked = field
    for row, where, line in itertools.islice(records, limit):
        if not examples and asked == "text" and isinstance(row, Mapping) and "text" not in row and "contents" in row:
            field = "contents"  # the loaders' name for the text of a headerless TSV
        if not isinstance(row, Mapping):
            raise MalformedRecordError(
                f"a test set record must be an object with a {field!r} field, not {type(row).__name__}",
                path=where,
                line=line,
            )
        if field not in row:
            present = ", ".join(sorted(map(str, row))[:12]) or "no fields"
            raise MissingFieldError(
                f"no {field!r} field (the record has {present}); choose one with --field",
                path=where,
                line=line,
            )
        text = row[field]
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise MissingFieldError(
                f"the {field!r} field holds {type(text).__name__}, not text; choose another with --field",
                path=where,
                line=line,
            )
        if len(text) > MAX_CHARS:  # checked whole or not at all: a cut example would report a part
            raise MalformedRecordError(
                f"the example is {len(text):,} characters long; contamination checks examples of up to "
                f"{MAX_CHARS:,}: split it into examples of their own, or leave it out",
                path=where,
                line=line,
            )
        if chosen_id is None and not examples:
            chosen_id = next((f for f in ID_FIELDS if f in row and f != field), "")
        if chosen_id:
            if chosen_id not in row:
                raise MissingFieldError(f"no id field {chosen_id!r} in this record", path=where, line=line)
            value = row[chosen_id]
            if value is None or isinstance(value, bool | float | Mapping | list | tuple) or value == "":
                shown = "empty" if value == "" else "null" if value is None else f"a {type(value).__name__}"
                raise MissingFieldError(
                    f"the id field {chosen_id!r} is {shown}: give each example a string or integer id, "
                    "or name another field with --id-field",
                    path=where,
                    line=line,
                )
            docid = str(value)
            first = seen.get(docid)
            if first is not None:
                raise MalformedRecordError(
                    f"duplicate example id {docid!r} (first at {first}): give each example an id of its own",
                    path=where,
                    line=line,
                )
            seen[docid] = f"{where}:{line}" if line is not None else str(where)
        else:
            docid = str(len(examples) + 1)
        examples.append(Example(docid, text))
    if not examples:
        raise EmptyCorpusError("the test set holds no examples", path=name)
    return examples


# ------------------------------------------------------------------------------ matching
def _tokens(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Byte spans ``(starts, ends)`` of the word tokens of ``raw`` (one document)."""
    from spacerini.audit.ngrams import token_bounds

    data = np.frombuffer(raw, dtype=np.uint8)
    _, starts, ends = token_bounds(data, np.array([0, data.size], dtype=np.int64))
    return starts, ends


class _Matcher:
    """Exact-substring lookups on the exact backend: one binary search per suffix-array shard
    when the searcher is in this process, else its ``count`` (a searcher in Ray actors).

    The corpus text keeps its NUL characters, so a span holding one is looked up as it is in the
    shards; the searcher's ``count`` and ``find`` refuse such a query, so through them it is
    taken as not found (an n-gram across a NUL is then not counted, never a false match)."""

    def __init__(self, searcher: Any) -> None:
        self.searcher = searcher
        self.shards = getattr(searcher, "shards", None)
        self.lookups = 0

    def contains(self, pat: bytes) -> bool:
        self.lookups += 1
        if self.shards is not None:
            return any(shard.contains(pat) for shard in self.shards)
        if b"\x00" in pat:
            return False
        return bool(self.searcher.count(pat))

    def first_doc(self, pat: bytes) -> str | None:
        first_docs = getattr(self.searcher, "_first_docs", None)
        if self.shards is not None and first_docs is not None:
            found = first_docs(pat, 1)
            return found[0] if found else None
        if b"\x00" in pat:
            return None
        hits = self.searcher.find(pat, k=1)
        return hits[0].docid if hits else None


def check_example(
    matcher: _Matcher,
    example: Example,
    *,
    ngram: int = NGRAM,
    min_overlap: float = MIN_OVERLAP,
    redact_pii: bool = True,
) -> ExampleResult:
    """Scores one example (see the module docstring for the definitions); with ``redact_pii``,
    the matched text shown has its PII redacted (a span that reaches into it, whole)."""
    text = example.text[:MAX_CHARS]
    raw = text.encode("utf-8", "replace")
    starts, ends = _tokens(raw)
    t = int(starts.size)
    if t == 0:
        return ExampleResult(example.id, False, 0.0, 0, 0, "", None, 0, 0, False, 0, len(text))
    S, E = starts.tolist(), ends.tolist()
    # k[i]: tokens matched from token i: raw[S[i]:E[i+k-1]] occurs, raw[S[i]:E[i+k]] does not.
    k = run_lengths(match_runs(t, lambda a, b: b <= a or matcher.contains(raw[S[a] : E[b - 1]])), t)
    n = min(ngram, t)
    total = t - n + 1
    found = sum(1 for i in range(total) if k[i] >= n)
    overlap = found / total
    # Longest match in characters: refine the end past the last whole token, best bound first.
    arr = np.frombuffer(raw, dtype=np.uint8)
    char_starts = np.flatnonzero((arr & 0xC0) != 0x80)  # byte offset of each character

    def chars_between(a: int, b: int) -> int:
        return int(np.searchsorted(char_starts, b) - np.searchsorted(char_starts, a))

    best = (0, 0, 0, 0)  # chars, tokens, start byte, end byte
    limits = [E[i + k[i]] if i + k[i] < t else len(raw) for i in range(t)]
    # An upper bound of each start's match (up to the token that failed), largest first.
    bounds = sorted(((chars_between(S[i], limits[i]), i) for i in range(t)), key=lambda b: (-b[0], b[1]))
    for bound, i in bounds:
        limit = limits[i]
        if bound < best[0] or bound == 0:
            break
        lo = E[i + k[i] - 1] if k[i] else S[i]  # known to occur up to here
        # Character ends strictly after lo and before limit, monotone: binary search.
        cands = char_starts[(char_starts > lo) & (char_starts < limit)].tolist()
        if i + k[i] >= t and limit == len(raw):
            cands.append(len(raw))
        a, b = 0, len(cands)
        while a < b:
            mid = (a + b) // 2
            if matcher.contains(raw[S[i] : cands[mid]]):
                a = mid + 1
            else:
                b = mid
        end = cands[a - 1] if a else lo
        length = chars_between(S[i], end)
        if length > best[0] or (length == best[0] and length and S[i] < best[2]):  # ties: the earliest
            best = (length, k[i], S[i], end)
    chars, whole, b0, b1 = best
    matched = raw[b0:b1]
    doc = matcher.first_doc(matched) if matched else None
    shown = matched.decode("utf-8", "replace")
    if redact_pii and matched:
        from spacerini.display import redacted_window

        # "replace" encoded each character that is not UTF-8 as one byte: character offsets hold.
        shown = redacted_window(text, chars_between(0, b0), chars_between(0, b1))
    return ExampleResult(
        id=example.id,
        contaminated=overlap >= min_overlap,
        overlap=round(overlap, 6),
        longest_match=chars,
        longest_match_tokens=whole,
        longest_match_text=shown,
        doc=doc,
        ngrams=total,
        ngrams_found=found,
        any_ngram=found > 0,
        tokens=t,
        chars=len(text),
    )


def _exact_searcher(bundle: Any) -> Any:
    if "exact" not in bundle.backends:
        raise BackendNotAvailableError(
            f"{bundle.path}: contamination needs the exact backend (a suffix array), which this bundle lacks: "
            f"rebuild it with --backends {','.join([*bundle.backends, 'exact'])}"
        )
    return bundle.searcher("exact")


def contamination(
    bundle: Any,
    testset: str | Path | Sequence[Mapping[str, Any]],
    *,
    field: str = "text",
    id_field: str | None = None,
    ngram: int = NGRAM,
    min_overlap: float = MIN_OVERLAP,
    limit: int | None = None,
    progress: bool = True,
    redact_pii: bool = True,
) -> ContaminationReport:
    """Checks every example of a test set against a bundle's corpus.

    Args:
        bundle: A :class:`~spacerini.bundle.Bundle` built with the exact backend, or its path.
        testset: See :func:`load_testset`.
        field: The test set column holding the text.
        id_field: The id column (default: see :func:`load_testset`).
        ngram: Words per n-gram.
        min_overlap: Overlap at which an example counts as contaminated.
        limit: Check at most this many examples.
        progress: Show a progress bar over examples.
        redact_pii: Redact the PII (keys, e-mail addresses...) of the matched texts reported:
            a match confirms the corpus holds it. False shows them as stored.

    Returns:
        The report: one result per example and the summary.

    Raises:
        BackendNotAvailableError: The bundle has no exact backend.
        UsageError: ``ngram`` or ``min_overlap`` out of range.
        CorpusNotFoundError, EmptyCorpusError, MalformedRecordError, MissingFieldError: The test
            set cannot be read (see :func:`load_testset`).
    """
    if not isinstance(ngram, int) or not 1 <= ngram <= 100:
        raise UsageError(f"the n-gram length must be an integer between 1 and 100, not {ngram!r}")
    if not 0.0 < float(min_overlap) <= 1.0:
        raise UsageError(f"the overlap threshold must be in (0, 1], not {min_overlap!r}")
    if isinstance(bundle, str | Path):
        from spacerini.bundle import open_bundle

        bundle = open_bundle(bundle)
    searcher = _exact_searcher(bundle)
    examples = load_testset(testset, field=field, id_field=id_field, limit=limit)
    matcher = _Matcher(searcher)
    started = time.perf_counter()
    results: list[ExampleResult] = []
    iterator: Any = examples
    if wanted(progress):
        from tqdm.auto import tqdm

        iterator = tqdm(examples, unit="ex", desc="contamination", dynamic_ncols=True)
    for example in iterator:
        results.append(
            check_example(matcher, example, ngram=ngram, min_overlap=min_overlap, redact_pii=redact_pii)
        )
    seconds = time.perf_counter() - started
    wordless = [r.id for r in results if r.tokens == 0]
    if wordless:  # reported clean, as nothing of them can be matched: said, not hidden in the counts
        shown = ", ".join(repr(i) for i in wordless[:5]) + (f" and {len(wordless) - 5:,} more" if len(wordless) > 5 else "")
        logger.warning(
            "%d of %d examples have no word to match (empty or only punctuation): %s; they are reported clean "
            "with overlap 0", len(wordless), len(results), shown,
        )  # fmt: skip
    dirty = sum(r.contaminated for r in results)
    summary = {
        "examples": len(results),
        "contaminated": dirty,
        "contaminated_fraction": round(dirty / len(results), 6),
        "any_ngram_fraction": round(sum(r.any_ngram for r in results) / len(results), 6),
        "mean_overlap": round(sum(r.overlap for r in results) / len(results), 6),
        "ngram": ngram,
        "min_overlap": float(min_overlap),
        "tokens": "word runs of [A-Za-z0-9_] and non-ASCII characters, case kept",
        "corpus_docs": len(bundle),
        "lookups": matcher.lookups,
        "seconds": round(seconds, 3),
        "examples_per_s": round(len(results) / seconds, 2) if seconds > 0 else None,
    }
    return ContaminationReport(results, summary)


def write_report(report: ContaminationReport, out: str | Path) -> Path:
    """Writes ``out/contamination.json``, ``out/overlap.png`` and a self-contained
    ``out/contamination.html``, renamed into place together (the page last); returns the HTML
    page's path.

    Raises:
        UsageError: ``out`` is a file or inside a bundle, or a report file's name is a folder
            there (:func:`spacerini.audit.plots.check_report_folder`).
    """
    from spacerini.audit import plots

    folder = Path(out)
    plots.check_report_folder(folder, REPORT_FILES)
    folder.mkdir(parents=True, exist_ok=True)
    files = plots.StagedFiles(folder)  # renamed into place together, the page last
    try:
        with plots.DeferredSignals() as signals:  # as in analyze.write_report: no Ctrl-C inside matplotlib
            _stage_report(report, files)
            signals.check()
            files.publish()
    finally:
        files.discard()
    return folder / "contamination.html"


def _stage_report(report: ContaminationReport, files: Any) -> None:
    import html
    import json

    from spacerini.audit import plots

    files.add("contamination.json", json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    fig = plots.histogram(
        "n-gram overlap per example", [r.overlap for r in report.examples], xlabel="overlap", log=False
    )
    try:
        png = plots.png_bytes(fig)
    finally:
        plots.close(fig)
    files.add("overlap.png", png)
    rows = "".join(
        f"<tr><td>{html.escape(r.id)}</td><td>{'yes' if r.contaminated else 'no'}</td><td>{r.overlap:.3f}</td>"
        f"<td>{r.longest_match}</td><td>{html.escape(r.doc or '')}</td><td>{html.escape(r.longest_match_text[:200])}</td></tr>"
        for r in report.examples
    )
    s = report.summary
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Contamination</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .5em;font-size:90%}</style></head><body>"
        f"<h1>Contamination</h1><p>{s['contaminated']:,} of {s['examples']:,} examples contaminated "
        f"({100 * s['contaminated_fraction']:.2f}%): overlap of {s['ngram']}-grams &ge; {s['min_overlap']}.</p>"
        f"<img alt='overlap histogram' src='{plots.data_uri(png)}'>"
        "<table><tr><th>id</th><th>contaminated</th><th>overlap</th><th>longest match (chars)</th><th>document</th>"
        f"<th>match</th></tr>{rows}</table></body></html>\n"
    )
    files.add("contamination.html", page)
