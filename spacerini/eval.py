"""Evaluation: TREC run files, query/qrels files, and metrics through ir-measures.

Example:
    The tiny test corpus, built with ``spacerini index tests/data/tiny.jsonl --out /tmp/tiny
    --fields title,contents``:

    >>> from spacerini import open_bundle
    >>> from spacerini.eval import evaluate, read_queries, read_qrels
    >>> bundle = open_bundle("/tmp/tiny")  # doctest: +SKIP
    >>> evaluate(bundle, read_queries("tests/data/tiny_queries.tsv"), read_qrels("tests/data/tiny_qrels.txt"))  # doctest: +SKIP
    {'nDCG@10': 0.9900468833579671, 'AP': 0.9666666666666666, 'R@100': 1.0}
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from spacerini.errors import CorpusNotFoundError, EvaluationError, MalformedRecordError
from spacerini.records import Hit

logger = logging.getLogger(__name__)

#: The metrics printed when none are asked for (MAP is ir-measures' "AP").
DEFAULT_METRICS: tuple[str, ...] = ("nDCG@10", "AP", "R@100")

#: Line ends, as Java's ``BufferedReader.readLine`` (Anserini's topic readers) and trec_eval see
#: them. ``str.splitlines`` also splits at U+0085, U+2028, form feeds and other separators, which
#: cut a query in two and shifted every later line number.
_LINE_END = re.compile(r"\r\n|\r|\n")


def _lines(path: str | os.PathLike[str]) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise CorpusNotFoundError("no such file; check the path", path=str(p))
    raw = p.read_bytes()
    try:
        # utf-8-sig: a BOM (Notepad writes one) would otherwise become part of the first qid
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        line = raw[:start].count(b"\n") + 1
        raise MalformedRecordError(
            f"invalid UTF-8 at byte {start}: re-encode the file as UTF-8 (e.g. with iconv)", path=str(p), line=line
        ) from exc
    lines = _LINE_END.split(text)
    if not any(line.strip() for line in lines):
        raise EvaluationError(f"{p}: the file is empty")
    return lines


def read_queries(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """Reads a query file: one ``qid<TAB>text`` per line (blank lines are ignored), or the
    queries of an ir_datasets dataset named ``irds:NAME`` (from its local cache). On a line with
    more columns the query is the second, as Anserini's ``TsvString`` topic reader takes it (a
    warning names the first such line).

    Raises:
        CorpusNotFoundError: No such file.
        MalformedRecordError: A line has no tab, an empty qid, a qid with whitespace in it (a
            TREC run could not hold it), no query text, a query text over the length limit,
            a duplicate qid, or non-UTF-8 bytes.
        EvaluationError: Empty file.
    """
    from spacerini.bundle.manifest import MAX_QUERY_CHARS

    if isinstance(path, str) and path.startswith("irds:"):
        from spacerini.corpus import irds

        return irds.read_queries(path)
    out: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    warned = False  # of a line with more than two columns
    for n, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        qid, sep, text = line.partition("\t")
        if "\t" in text:  # Anserini's TsvString topics: the query is the second column
            if not warned:
                warned = True
                logger.warning(
                    "%s:%d: more than two columns; the query is the second, as Anserini reads it "
                    "(the later columns are left out, here and on every such line)",
                    path, n,
                )  # fmt: skip
            text = text.split("\t", 1)[0]
        qid = qid.strip()
        if not sep or not qid:
            raise MalformedRecordError("expected `qid<TAB>query text`", path=str(path), line=n)
        if any(char.isspace() for char in qid):
            raise MalformedRecordError(
                f"query id {qid!r} holds whitespace, which a TREC run or qrels line cannot hold: "
                "use an id without spaces",
                path=str(path),
                line=n,
            )
        if qid in seen:
            raise MalformedRecordError(f"duplicate query id {qid!r} (first on line {seen[qid]})", path=str(path), line=n)
        seen[qid] = n
        text = text.strip()
        if not text:
            raise MalformedRecordError(
                f"query {qid!r} has no text: write it after the tab, or remove the line", path=str(path), line=n
            )
        if len(text) > MAX_QUERY_CHARS:
            raise MalformedRecordError(
                f"query {qid!r} is {len(text):,} characters long; the limit is {MAX_QUERY_CHARS:,}: shorten it",
                path=str(path),
                line=n,
            )
        if "\x00" in text:  # refused as a single query is (check_query), not searched as a blank
            raise MalformedRecordError(
                f"query {qid!r} holds a NUL byte: the file is not plain text; remove it", path=str(path), line=n
            )
        out.append((qid, text))
    return out


def query_line(path: str | os.PathLike[str], qid: str | int) -> int | None:
    """The line of ``path`` (a :func:`read_queries` file) that holds query ``qid``, or ``None``
    (an ``irds:`` name, or no such query): what an error about one query of a batch names.
    """
    if isinstance(path, str) and path.startswith("irds:"):
        return None
    try:
        lines = _lines(path)
    except (OSError, EvaluationError, MalformedRecordError):
        return None
    for n, line in enumerate(lines, start=1):
        head, sep, _ = line.partition("\t")
        if sep and head.strip() == str(qid):
            return n
    return None


def read_qrels(path: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """Reads TREC qrels: ``qid iteration docid relevance`` per line (whitespace-separated), or
    the qrels of an ir_datasets dataset named ``irds:NAME`` (from its local cache).

    Raises:
        MalformedRecordError: A line does not have 4 columns or its relevance is not an integer.
    """
    if isinstance(path, str) and path.startswith("irds:"):
        from spacerini.corpus import irds

        return irds.read_qrels(path)
    qrels: dict[str, dict[str, int]] = {}
    for n, line in enumerate(_lines(path), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 4:
            raise MalformedRecordError(
                f"expected 4 columns `qid 0 docid relevance`, found {len(parts)}", path=str(path), line=n
            )
        qid, _, docid, rel = parts
        try:
            qrels.setdefault(qid, {})[docid] = int(rel)
        except ValueError as exc:
            raise MalformedRecordError(f"relevance {rel!r} is not an integer", path=str(path), line=n) from exc
    return qrels


def trec_lines(
    results: Mapping[str, Sequence[Hit] | Sequence[tuple[str, float]]], *, tag: str = "spacerini"
) -> Iterator[str]:
    """Yields TREC run lines exactly as Anserini's ``SearchCollection`` formats them
    (``%s Q0 %s %d %f %s``: ranks from 1 in the order given, six decimals).

    Args:
        results: ``{qid: hits}`` (:class:`~spacerini.records.Hit`), or ``{qid: (docid, score)
            pairs}`` from a ``batch_search_pairs``, in rank order, or an object with its own
            ``trec_lines(tag=...)`` (bm25's ``RankedBatch``).
        tag: The run tag (last column).
    """
    own = getattr(results, "trec_lines", None)
    if own is not None:  # e.g. bm25's RankedBatch: lines straight from its arrays
        yield from own(tag=tag)
        return
    for qid, hits in results.items():
        for rank, hit in enumerate(hits, start=1):
            docid, score = (hit.docid, hit.score) if isinstance(hit, Hit) else hit
            yield f"{qid} Q0 {docid} {rank} {score:f} {tag}"


def write_trec_run(
    results: Mapping[str, Sequence[Hit] | Sequence[tuple[str, float]]],
    path: str | os.PathLike[str],
    *,
    tag: str = "spacerini",
) -> int:
    """Writes a TREC run (:func:`trec_lines`), to a temporary file renamed into place, so a
    crash leaves no half-written run; ``-`` writes it to standard output (for a pipe into
    ``trec_eval``), once every line has been checked.

    Returns:
        The number of lines written.

    Raises:
        EvaluationError: A document id, query id or the tag holds white space, which would
            break the run's space-separated columns (nothing is written). Other characters
            (a soft hyphen or a zero-width joiner in an id) are written as they are: readers
            of runs (trec_eval, ir-measures) split a line at white space only.
    """
    if not tag or any(char.isspace() for char in tag):
        raise EvaluationError(f"run tag {tag!r} must be one word: a TREC run separates its columns by spaces")
    if str(path) == "-":
        import sys

        lines = list(_checked_lines(results, tag))
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
        return len(lines)
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    n = 0
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for line in _checked_lines(results, tag):
                fh.write(line + "\n")
                n += 1
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


def _checked_lines(results: Mapping[str, Sequence[Hit] | Sequence[tuple[str, float]]], tag: str) -> Iterator[str]:
    """:func:`trec_lines`, refusing a line whose columns would hold white space."""
    for line in trec_lines(results, tag=tag):
        # White space inside a column. isprintable() is the fast test; it is also false
        # for characters that are no white space (U+00AD, U+200D), so split() decides.
        if line.count(" ") != 5 or (not line.isprintable() and len(line.split()) != 6):
            qid = line.split(" ", 1)[0]
            raise EvaluationError(
                f"cannot write a TREC run: a hit of query {qid!r} has a document id with white space "
                f"in it ({line!r}), and a run separates its columns by spaces; use --json instead"
            )
        yield line


def parse_metrics(metrics: Sequence[str] | str | None) -> list[Any]:
    """Parses metric names (``nDCG@10``, ``AP`` or ``MAP``, ``R@100``, ``P@10``, ``RR``...).

    Raises:
        EvaluationError: A name ir-measures does not know.
    """
    import ir_measures

    if metrics is None:
        metrics = DEFAULT_METRICS
    if isinstance(metrics, str):
        metrics = metrics.split(",")
    names = [name.strip() for name in metrics if name.strip()]
    if not names:
        raise EvaluationError("no metric named: give ir-measures names such as nDCG@10,AP,R@100")
    parsed = []
    for name in names:
        alias = "AP" if name.upper() == "MAP" else name
        try:
            try:
                measure = ir_measures.parse_measure(alias)
            except (ValueError, NameError, SyntaxError):
                measure = _trec_eval_measure(alias)  # trec_eval's names: ndcg_cut_10, map, P_10, recip_rank
            measure.validate_params()  # ir-measures checks them with assert: only when computing
        except AssertionError as exc:  # a known measure with a parameter it does not take
            raise EvaluationError(f"metric {name!r}: {exc}; see the ir-measures documentation of its parameters") from exc
        except (ValueError, NameError, SyntaxError) as exc:
            raise EvaluationError(
                f"unknown metric {name!r}: use ir-measures names such as nDCG@10, AP, R@100 "
                "(or trec_eval's, such as ndcg_cut_10, map, recall_100)"
            ) from exc
        # trec_eval aborts the whole process (a C assert) on a cutoff below 1, and rejects rel < 1.
        for param in ("cutoff", "rel"):
            value = measure.params.get(param)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                what = "cutoff (the number after @)" if param == "cutoff" else "relevance level rel"
                raise EvaluationError(f"metric {name!r}: its {what} must be a whole number >= 1, not {value!r}")
        parsed.append(measure)
    return parsed


def _trec_eval_measure(name: str) -> Any:
    """The one ir-measures measure a trec_eval name (``ndcg_cut_10``, ``map``, ``P_10``) stands for.

    Raises:
        ValueError: Not a trec_eval name, or one that stands for several measures (``ndcg_cut``).
    """
    import ir_measures

    try:
        found = list(ir_measures.parse_trec_measure(name))
    except Exception as exc:  # noqa: BLE001 - ir-measures raises several kinds for an unknown name
        raise ValueError(name) from exc
    if len(found) != 1:
        raise ValueError(name)
    return found[0]


def evaluate(
    bundle: Any,
    queries: Sequence[tuple[str, str]],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    metrics: Sequence[str] | str | None = None,
    k: int = 1000,
    backend: str | None = None,
    threads: int = 1,
) -> dict[str, float]:
    """Runs ``queries`` on ``bundle`` and scores the run against ``qrels``.

    Args:
        bundle: An opened :class:`~spacerini.bundle.Bundle`.
        queries: ``(qid, text)`` pairs.
        qrels: ``{qid: {docid: relevance}}``.
        metrics: ir-measures names; default nDCG@10, AP (MAP) and R@100.
        k: Depth of the run.
        backend: Backend to evaluate (default: the bundle's default).
        threads: Search threads.

    Returns:
        ``{metric name: mean value}`` in the order asked, with MAP reported as "AP".

    Raises:
        EvaluationError: No query has judgments.
    """
    import ir_measures

    measures = parse_metrics(metrics)
    judged = [(qid, text) for qid, text in queries if qid in qrels]
    if not judged:
        raise EvaluationError("no query id in the queries file has judgments in the qrels: check both files")
    results = bundle.batch_search(judged, k=k, backend=backend, threads=threads)
    # A query without hits has no line in a TREC run, so it is left out here too: ir-measures then
    # scores it 0, as it does reading the run file (an empty ranking raised ZeroDivisionError in
    # its Judged@k).
    run = {qid: {h.docid: float(h.score) for h in hits} for qid, hits in results.items() if hits}
    agg = ir_measures.calc_aggregate(measures, dict(qrels), run)
    return {str(m): float(agg.get(m, 0.0)) for m in measures}
