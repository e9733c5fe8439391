"""What is in a bundle: a WIMBD-style report of its documents, with plots (``spacerini analyze``).

One streaming pass over the docstore computes every number. The compiled part of each batch
(tokens, n-grams, MinHash, character counts: numba, without the GIL) and its RE2 scans
(boilerplate lines, PII candidates: pyarrow, without the GIL) run on worker threads while the
calling thread does the Python part (``find_pii`` on the candidates, exact-duplicate digests,
provenance), so the pass uses two cores where there are two. Memory does not hold the corpus
text; it grows with the distinct n-grams (43 to 128 bytes each, plus the vocabulary:
:mod:`spacerini.audit.ngrams`) and categories,
and per document with a 16-byte digest for exact duplicates (about 100 bytes in a Python dict),
its length (8 bytes) and, for near-duplicates, one MinHash signature per distinct document (4
bytes per permutation). The sections:

* size: documents (equal to the manifest's count), UTF-8 bytes, characters and word tokens;
* lengths: the distribution of document lengths (bytes), percentiles and a histogram;
* n-grams: the ``top_k`` commonest word unigrams, bigrams and trigrams, counted exactly
  (:mod:`spacerini.audit.ngrams` defines the tokens);
* duplicates: exact duplicates (identical text) and near-duplicates (MinHash LSH over word
  5-gram shingles, :mod:`spacerini.preprocess.dedup`'s hashing at ``near_dup_threshold``
  Jaccard with ``near_dup_perm`` permutations), as clusters and as % of documents and bytes; the
  build's own dedup reports come along under ``removed_at_build``. When near-dedup ran at build
  time, the remaining corpus holds no near-duplicate above its threshold by construction, and
  MinHash is not run again;
* PII: matches per kind of :func:`spacerini.preprocess.pii.find_pii` (its default kinds: keys,
  passwords, e-mail addresses, IP addresses), and documents with any. ``find_pii`` runs only on
  the documents, and for the kinds, that one RE2 pass per batch cannot rule out
  (:mod:`spacerini.audit.pii_prefilter`); the counts are those of running it on every document;
* breakdowns: documents per licence and language (:func:`spacerini.records.licence_and_language`),
  per domain (host of a ``url`` in meta or fields), per repo and per owner;
* quality: empty documents (no token), very short ones (fewer than ``short_tokens`` tokens),
  the share of characters that are U+FFFD or lone surrogates (bytes that were not UTF-8 when
  the corpus was read) and the share of bytes on boilerplate lines (copyright and
  licence notices, cookie and navigation phrases: :data:`BOILERPLATE`).
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import itertools
import json
import logging
import re
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from spacerini.errors import UsageError
from spacerini.progress import wanted

logger = logging.getLogger(__name__)

#: Documents with fewer word tokens than this count as very short.
SHORT_TOKENS = 5
#: Categories listed per breakdown (the rest are summed as "(other)").
TOP_CATEGORIES = 20
#: Near-duplicate threshold (Jaccard of word 5-gram shingles) and MinHash permutations. 128
#: permutations halve the cost of the 256 of the dedup step; the LSH bands follow the threshold.
NEAR_DUP_THRESHOLD = 0.7
NEAR_DUP_PERM = 128
#: Sections that can be left out with ``skip`` (the costly ones).
SKIPPABLE = ("pii", "near-dup", "ngrams")
#: Phrases that mark a line as boilerplate (case-insensitive). RE2 (through pyarrow) finds the
#: lines that hold one, in linear time (they hold no line break).
BOILERPLATE_PATTERN = (
    r"copyright \(c\)|copyright \d{4}|all rights reserved|licensed under the|permission is hereby granted"
    r"|this program is free software|without warranties or conditions|spdx-license-identifier"
    r"|cookie policy|we use cookies|accept cookies|privacy policy|terms of (?:use|service)"
    r"|skip to (?:main )?content|sign up for (?:our|the) newsletter|javascript is disabled|enable javascript"
    r"|click here to|share on (?:facebook|twitter)"
)
#: The files of every report (the charts of the breakdowns come only when there are categories).
REPORT_FILES = ("report.html", "analysis.json", "lengths.png")
#: The same phrases for Python's ``re``, on lower-cased bytes (faster than ``re.IGNORECASE``).
BOILERPLATE = re.compile(BOILERPLATE_PATTERN.encode())


@dataclass(frozen=True, slots=True)
class Analysis:
    """The numbers of a report (:func:`analyze`), as ``spacerini analyze --json`` prints them.

    Attributes:
        docs: Documents (the manifest's count).
        bytes: UTF-8 bytes of text.
        chars: Characters of text.
        tokens: Word tokens (see :mod:`spacerini.audit.ngrams`).
        lengths: Document length distribution in bytes: min, mean, percentiles, max.
        ngrams: ``{"1": [{"ngram", "count"}, ...], "2": ..., "3": ...}``, plus ``distinct`` and
            ``total`` per n.
        duplicates: ``exact`` and ``near`` cluster statistics, and the build's dedup reports.
        pii: ``{"found": {kind: matches}, "docs_with_pii": n, "kinds": [...]}``.
        breakdowns: ``{"licence"|"language"|"domain"|"repo"|"owner": {category: docs}}``.
        quality: Empty and short documents, U+FFFD and boilerplate shares.
        skipped: Sections left out.
        seconds: Time the pass took.
        mb_per_s: Throughput of the pass (MB of text per second).
    """

    docs: int
    bytes: int
    chars: int
    tokens: int
    lengths: dict[str, Any]
    ngrams: dict[str, Any]
    duplicates: dict[str, Any]
    pii: dict[str, Any]
    breakdowns: dict[str, dict[str, int]]
    quality: dict[str, Any]
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    mb_per_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)


# ------------------------------------------------------------------------------ near dups
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """LSH ``(bands, rows)`` minimising the sum of the false-positive and false-negative
    probability areas around ``threshold`` (datasketch's choice with equal weights), computed
    with numpy so that datasketch's scipy is not imported."""
    grid = np.linspace(0.0, 1.0, 1001)
    best, best_cost = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            p = 1.0 - (1.0 - grid**rows) ** bands  # probability that two sets of similarity s collide
            below, above = grid <= threshold, grid >= threshold
            cost = 0.5 * np.trapezoid(p[below], grid[below]) + 0.5 * np.trapezoid(1.0 - p[above], grid[above])
            if cost < best_cost:
                best, best_cost = (bands, rows), cost
    return best


class _NearDups:
    """MinHash LSH clustering of whole batches: each document joins the first earlier kept
    document whose signature agrees on at least ``threshold`` of its positions.

    Shingles are word 5-grams (a document with fewer tokens has one shingle: all of them), as in
    :func:`spacerini.preprocess.dedup.shingles`; a token's hash is a mix of its vocabulary id, so
    two different tokens never share one. A batch's signatures, band keys and clusters are
    computed in one compiled call (:func:`spacerini.audit.neardup_kernel.cluster_batch`), which
    releases the GIL.
    """

    def __init__(self, threshold: float, num_perm: int, *, ngram: int = 5, seed: int = 1) -> None:
        self.threshold = threshold
        self.num_perm = num_perm
        self.ngram = ngram
        self.bands, self.rows = lsh_params(threshold, num_perm)
        rng = np.random.default_rng([seed, 0xA5])
        self._mix = rng.integers(1, 2**63, size=2, dtype=np.uint64) | np.uint64(1)
        self._position = rng.integers(0, 2**63, size=ngram, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        a = rng.integers(0, 2**31, size=num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        b = rng.integers(0, 2**32, size=num_perm, dtype=np.uint32, endpoint=False)
        self._a, self._b = a.astype(np.uint64), b.astype(np.uint64)
        half = rng.integers(0, 2**63, size=self.rows, dtype=np.uint64)
        self._band_mult = half * np.uint64(2) + np.uint64(1)  # odd multipliers
        self._band_salt = rng.integers(0, 2**63, size=self.bands, dtype=np.uint64)
        self.signatures = np.empty((64, num_perm), dtype=np.uint32)
        self.own_bytes = np.zeros(64, dtype=np.int64)
        self.cluster_docs = np.zeros(64, dtype=np.int64)  # kept row -> members (itself included), 0: none
        self.cluster_bytes = np.zeros(64, dtype=np.int64)
        self._keys = np.zeros(1024, dtype=np.uint64)
        self._heads = np.full(1024, -1, dtype=np.int64)
        self._lrow = np.empty(1024, dtype=np.int64)
        self._lnext = np.empty(1024, dtype=np.int64)
        self._state = np.zeros(3, dtype=np.int64)  # kept, list entries, band keys

    @property
    def kept(self) -> int:
        return int(self._state[0])

    def _room(self, docs: int) -> None:
        """Grows the state arrays so that ``docs`` more documents fit."""
        from spacerini.audit.neardup_kernel import rehash_keys

        kept, entries, used = (int(v) for v in self._state)
        if kept + docs > len(self.signatures):
            size = max(2 * len(self.signatures), kept + docs)
            for name in ("signatures", "own_bytes", "cluster_docs", "cluster_bytes"):
                old = getattr(self, name)
                new = np.zeros((size, *old.shape[1:]), dtype=old.dtype)
                new[:kept] = old[:kept]
                setattr(self, name, new)
        if entries + docs * self.bands > self._lrow.size:
            size = max(2 * self._lrow.size, entries + docs * self.bands)
            for name in ("_lrow", "_lnext"):
                new = np.empty(size, dtype=np.int64)
                new[:entries] = getattr(self, name)[:entries]
                setattr(self, name, new)
        if 2 * (used + docs * self.bands) > self._keys.size:
            size = 1 << int(2 * (used + docs * self.bands)).bit_length()
            keys, heads = np.zeros(size, dtype=np.uint64), np.full(size, -1, dtype=np.int64)
            rehash_keys(self._keys, self._heads, keys, heads)
            self._keys, self._heads = keys, heads

    def add_batch(self, gid: np.ndarray, doc: np.ndarray, nbytes: np.ndarray) -> None:
        """Clusters the documents of one batch (token ids and owners from the tokenizer)."""
        from spacerini.audit.neardup_kernel import cluster_batch

        if gid.size == 0:
            return
        self._room(len(nbytes))
        cluster_batch(
            gid, doc, np.ascontiguousarray(nbytes, dtype=np.int64),
            self._mix, self._position, self._a, self._b, self._band_mult, self._band_salt, float(self.threshold),
            self.signatures, self.own_bytes, self.cluster_docs, self.cluster_bytes,
            self._keys, self._heads, self._lrow, self._lnext, self._state,
        )  # fmt: skip

    def clusters(self) -> Iterable[tuple[int, int]]:
        """``(members, bytes)`` of each cluster of two or more documents."""
        heads = np.flatnonzero(self.cluster_docs[: self.kept])
        return zip(self.cluster_docs[heads].tolist(), self.cluster_bytes[heads].tolist(), strict=True)


def _cluster_stats(sizes: Iterable[tuple[int, int]], docs: int, nbytes: int) -> dict[str, Any]:
    """Cluster statistics from ``(members, bytes)`` of each cluster of two or more documents."""
    clusters = members = member_bytes = redundant = redundant_bytes = 0
    largest = 0
    for size, size_bytes in sizes:
        clusters += 1
        members += size
        member_bytes += size_bytes
        redundant += size - 1
        redundant_bytes += size_bytes - size_bytes // size
        largest = max(largest, size)
    return {
        "clusters": clusters,
        "docs_in_clusters": members,
        "docs_pct": round(100 * members / docs, 3) if docs else 0.0,
        "bytes_pct": round(100 * member_bytes / nbytes, 3) if nbytes else 0.0,
        "redundant_docs": redundant,
        "redundant_docs_pct": round(100 * redundant / docs, 3) if docs else 0.0,
        "redundant_bytes_pct": round(100 * redundant_bytes / nbytes, 3) if nbytes else 0.0,
        "largest_cluster": largest,
    }


# ------------------------------------------------------------------------------ helpers
def _host(value: Any) -> str | None:
    if not isinstance(value, str) or "://" not in value:
        return None
    try:
        host = urlsplit(value.strip()).hostname
    except ValueError:
        return None
    return host.removeprefix("www.") if host else None


def _percentiles(lengths: np.ndarray) -> dict[str, Any]:
    if lengths.size == 0:
        return {"min": 0, "mean": 0.0, "p10": 0, "p50": 0, "p90": 0, "p99": 0, "max": 0}
    p = np.percentile(lengths, [10, 50, 90, 99], method="lower")
    return {
        "min": int(lengths.min()),
        "mean": round(float(lengths.mean()), 1),
        "p10": int(p[0]),
        "p50": int(p[1]),
        "p90": int(p[2]),
        "p99": int(p[3]),
        "max": int(lengths.max()),
    }


def _check_skip(skip: Iterable[str] | str | None) -> list[str]:
    if skip is None:
        return []
    names = [s.strip() for s in (skip.split(",") if isinstance(skip, str) else skip) if s.strip()]
    unknown = sorted(set(names) - set(SKIPPABLE))
    if unknown:
        raise UsageError(f"cannot skip {', '.join(unknown)}: choose from {', '.join(SKIPPABLE)}")
    return [s for s in SKIPPABLE if s in names]


# ------------------------------------------------------------------------------ the pass
def analyze(
    bundle: Any,
    *,
    top_k: int = 20,
    short_tokens: int = SHORT_TOKENS,
    skip: Iterable[str] | str | None = None,
    near_dup_threshold: float = NEAR_DUP_THRESHOLD,
    near_dup_perm: int = NEAR_DUP_PERM,
    batch_size: int = 1024,
    progress: bool = True,
    keep_lengths: bool = False,
    redact_pii: bool = True,
) -> Analysis | tuple[Analysis, np.ndarray]:
    """Computes the report's numbers in one streaming pass over a bundle's docstore.

    Args:
        bundle: A :class:`~spacerini.bundle.Bundle` (or the path of one).
        top_k: N-grams listed per n.
        short_tokens: Documents with fewer tokens than this count as very short.
        skip: Sections to leave out: any of :data:`SKIPPABLE`.
        near_dup_threshold: Jaccard similarity at which two documents are near-duplicates.
        near_dup_perm: MinHash permutations.
        batch_size: Documents read per batch.
        progress: Show a progress bar over documents.
        keep_lengths: Also return every document's length in bytes (for the histogram).
        redact_pii: Redact the PII (keys, e-mail addresses...) of the corpus that the report
            shows: in its top n-grams (a key repeated across documents is one of them) and its
            breakdowns (an owner written ``Name <address>``). Categories that become equal are
            counted together. False shows them as stored.

    Returns:
        The :class:`Analysis`, or ``(analysis, lengths)`` with ``keep_lengths``.

    Raises:
        UsageError: Bad options.
        BundleNotFoundError, BundleCorruptError: The bundle cannot be opened.
    """
    from spacerini.audit.ngrams import NgramCounter
    from spacerini.records import top_counts

    if not isinstance(top_k, int) or not 0 <= top_k <= 10_000:
        raise UsageError(f"top_k must be an integer between 0 and 10000, not {top_k!r}")
    if not isinstance(short_tokens, int) or short_tokens < 0:
        raise UsageError(f"short_tokens must be a non-negative integer, not {short_tokens!r}")
    skipped = _check_skip(skip)
    if not isinstance(bundle, str | Path) and not hasattr(bundle, "pin"):
        raise UsageError(f"analyze needs a bundle or a bundle path, not {type(bundle).__name__}")
    if isinstance(bundle, str | Path):
        from spacerini.bundle import open_bundle

        bundle = open_bundle(bundle)

    started = time.perf_counter()
    with bundle.pin() as snap:
        manifest = snap.manifest
        docs_expected = len(snap)
        steps = {rep.get("name"): rep for rep in manifest.get("preprocess") or []}
        near_at_build = "near-dedup" in steps
        near = None
        if "near-dup" not in skipped and not near_at_build:
            near = _NearDups(near_dup_threshold, near_dup_perm)
        counter = None
        if "ngrams" not in skipped or near is not None:
            counter = NgramCounter(count="ngrams" not in skipped)
        find_pii = None
        if "pii" not in skipped:
            from spacerini.preprocess.pii import DEFAULT_KINDS
            from spacerini.preprocess.pii import find_pii as _find_pii

            find_pii = _find_pii
        pii_found: Counter[str] = Counter()
        pii_docs = 0
        exact: dict[bytes, list[int]] = {}
        cats: dict[str, Counter[str]] = {
            k: Counter() for k in ("licence", "language", "domain", "repo", "owner")
        }
        provenance: Counter[tuple[int, bytes]] = Counter()  # (fields bytes, fields + meta JSON) -> docs
        lengths_parts: list[np.ndarray] = []
        # Characters, tokens, empty and short documents, U+FFFD and lone surrogates, documents with any.
        totals = np.zeros(6, dtype=np.int64)
        boiler = docs_seen = 0
        bar = None
        if wanted(progress):
            from tqdm.auto import tqdm

            bar = tqdm(total=docs_expected, unit="doc", desc="analyze", dynamic_ncols=True)
        # The compiled work of a batch (tokens, n-grams, MinHash, character counts) runs on a
        # worker thread without the GIL while this thread does the Python work of the same
        # batch (find_pii, exact duplicates, provenance): two cores when there are two.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spacerini-analyze")
        # MinHash of a batch runs on a thread of its own, beside the n-gram counting of the next.
        near_pool = (
            None if near is None else ThreadPoolExecutor(max_workers=1, thread_name_prefix="spacerini-near")
        )
        # The RE2 scans of a batch (boilerplate lines, PII candidates) run on a third thread, beside
        # this thread's find_pii on the previous batch's candidates.
        scans = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spacerini-scan")
        pending: deque[Future[np.ndarray]] = deque()
        near_done: list[Future[None]] = []
        scanned: deque[tuple[_Batch, Future[tuple[int, list[tuple[int, list[str]]]]]]] = deque()
        try:
            for batch in _batches(snap, batch_size):
                n = len(batch.offsets) - 1
                data = np.frombuffer(batch.raw, dtype=np.uint8)
                pending.append(
                    pool.submit(
                        _compiled_part, counter, near, near_pool, near_done, data, batch.offsets, short_tokens
                    )
                )
                scanned.append((batch, scans.submit(_scan, batch.raw, batch.offsets, find_pii is not None)))
                lengths_parts.append(np.diff(batch.offsets))
                for text in batch.texts:
                    key = hashlib.blake2b(text, digest_size=16).digest()
                    entry = exact.get(key)
                    if entry is None:
                        exact[key] = [1, len(text)]
                    else:
                        entry[0] += 1
                if batch.provenance is not None:
                    provenance.update(batch.provenance)
                else:
                    for fields, meta in batch.records:
                        _categorize(cats, meta, fields, 1)
                while len(scanned) > 1:
                    bytes_, docs = _finish_scan(*scanned.popleft(), find_pii, pii_found)
                    boiler, pii_docs = boiler + bytes_, pii_docs + docs
                docs_seen += n
                while len(pending) > 2:
                    totals += pending.popleft().result()
                if bar is not None:
                    bar.update(n)
            while scanned:
                bytes_, docs = _finish_scan(*scanned.popleft(), find_pii, pii_found)
                boiler, pii_docs = boiler + bytes_, pii_docs + docs
            while pending:
                totals += pending.popleft().result()
            for done in near_done:
                done.result()
        finally:
            scans.shutdown(wait=True, cancel_futures=True)
            pool.shutdown(wait=True, cancel_futures=True)
            if near_pool is not None:
                near_pool.shutdown(wait=True, cancel_futures=True)
            if bar is not None:
                bar.close()
        for (split, raw_json), count in provenance.items():
            fields = json.loads(raw_json[:split].decode("utf-8", "surrogatepass")) if split else {}
            meta = (
                json.loads(raw_json[split:].decode("utf-8", "surrogatepass")) if len(raw_json) > split else {}
            )
            _categorize(cats, meta, fields, count)
    total_chars, total_tokens, empty, short, fffd, fffd_docs = totals.tolist()

    lengths = np.concatenate(lengths_parts) if lengths_parts else np.empty(0, dtype=np.int64)
    total_bytes = int(lengths.sum())
    if docs_seen != docs_expected:
        logger.warning("the docstore holds %d documents, the manifest says %d", docs_seen, docs_expected)
    shown = _redacted if redact_pii else str
    ngrams: dict[str, Any] = {}
    if counter is not None and counter.count:
        top = counter.top(top_k)
        distinct = counter.distinct()
        for n in (1, 2, 3):
            ngrams[str(n)] = [{"ngram": shown(g.ngram), "count": g.count} for g in top[n]]
        ngrams["distinct"] = {str(n): v for n, v in distinct.items()}
        ngrams["total"] = {str(n): v for n, v in counter.totals.items()}
    duplicates: dict[str, Any] = {
        "exact": {
            **_cluster_stats(((c, c * b) for c, b in exact.values() if c > 1), docs_seen, total_bytes),
            "method": "identical text (BLAKE2b-128 of the UTF-8 bytes)",
        },
    }
    if near is not None:
        duplicates["near"] = {
            **_cluster_stats(
                near.clusters(),
                docs_seen,
                total_bytes,
            ),
            "method": f"MinHash LSH, word 5-gram shingles, Jaccard >= {near_dup_threshold}, {near_dup_perm} permutations",
        }
    elif near_at_build:
        rep = steps["near-dedup"]
        duplicates["near"] = {
            "method": "near-dedup ran at build time: no near-duplicates above its threshold remain",
            "params": rep.get("params", {}),
        }
    build_reports = {
        name: {k: rep.get(k) for k in ("docs_in", "docs_out", "removed", "clusters_total") if k in rep}
        for name, rep in steps.items()
        if name in ("dedup", "near-dedup")
    }
    if build_reports:
        duplicates["removed_at_build"] = build_reports
    pii: dict[str, Any] = {}
    if find_pii is not None:
        pii = {
            "kinds": list(DEFAULT_KINDS),
            "found": dict(pii_found.most_common()),
            "docs_with_pii": pii_docs,
        }
        if "pii" in steps:
            pii["at_build"] = {
                k: steps["pii"].get(k) for k in ("mode", "docs_with_pii", "found") if k in steps["pii"]
            }
    seconds = time.perf_counter() - started
    analysis = Analysis(
        docs=docs_seen,
        bytes=total_bytes,
        chars=total_chars,
        tokens=total_tokens,
        lengths={"unit": "bytes", **_percentiles(lengths)},
        ngrams=ngrams,
        duplicates=duplicates,
        pii=pii,
        breakdowns={k: top_counts(_shown_counts(v, shown), TOP_CATEGORIES) for k, v in cats.items()},
        quality={
            "empty_docs": empty,
            "short_docs": short,
            "short_tokens": short_tokens,
            "replacement_chars": fffd,
            "replacement_share": round(fffd / total_chars, 6) if total_chars else 0.0,
            "docs_with_replacement": fffd_docs,
            "boilerplate_bytes": boiler,
            "boilerplate_share": round(boiler / total_bytes, 6) if total_bytes else 0.0,
        },
        skipped=skipped,
        seconds=round(seconds, 3),
        mb_per_s=round(total_bytes / 1e6 / seconds, 2) if seconds > 0 else 0.0,
    )
    return (analysis, lengths) if keep_lengths else analysis


def _redacted(text: str) -> str:
    from spacerini.display import redacted_text

    return redacted_text(text)


def _shown_counts(counts: Counter[str], shown: Any) -> Counter[str]:
    """``counts`` under the names as shown (redacted), summed where two names become one."""
    if shown is str:
        return counts
    out: Counter[str] = Counter()
    for name, count in counts.items():
        out[shown(name)] += count
    return out


# ------------------------------------------------------------------------------ batches
@dataclass(frozen=True, slots=True)
class _Batch:
    """Documents read from the docstore for one step of the pass.

    Attributes:
        raw: Their texts' UTF-8 bytes (``surrogatepass``), one after the other.
        offsets: ``docs + 1`` int64 offsets into ``raw``.
        texts: Each text's bytes.
        provenance: Each document's ``(bytes of its fields JSON, its fields and meta JSON)``, as
            stored (None when the docstore gives parsed records: see ``records``).
        records: Each document's ``(fields, meta)`` when ``provenance`` is None.
    """

    raw: bytes
    offsets: np.ndarray
    texts: list[bytes]
    provenance: list[tuple[int, bytes]] | None = None
    records: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = field(default_factory=list)


def _batches(snap: Any, batch_size: int) -> Iterable[_Batch]:
    """The docstore's documents in batches of about ``batch_size``, in corpus order.

    A format 2 docstore is read block by block, its records cut out of each decoded block with
    numpy: no :class:`~spacerini.records.Doc` is made, the texts are not decoded (their bytes are
    what the report counts) and each distinct fields/meta JSON is parsed once, not once a
    document. Other docstores go through :meth:`iter_docs`.
    """
    from spacerini.docstore import Docstore

    store = getattr(snap, "docstore", None)
    if type(store) is not Docstore:  # format 1 (Parquet, a subclass without blocks) and others
        stream = snap.iter_docs()
        while True:
            docs = list(itertools.islice(stream, batch_size))
            if not docs:
                return
            texts = [doc.text.encode("utf-8", "surrogatepass") for doc in docs]
            yield _Batch(
                b"".join(texts), _offsets(texts), texts, None, [(doc.fields, doc.meta) for doc in docs]
            )
        return
    texts: list[bytes] = []
    provenance: list[tuple[int, bytes]] = []
    for block_texts, block_provenance in store.iter_parts():
        texts.extend(block_texts)
        provenance.extend(block_provenance)
        if len(texts) >= batch_size:
            yield _Batch(b"".join(texts), _offsets(texts), texts, provenance)
            texts, provenance = [], []
    if texts:
        yield _Batch(b"".join(texts), _offsets(texts), texts, provenance)


def _offsets(texts: list[bytes]) -> np.ndarray:
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), out=offsets[1:])
    return offsets


def _categorize(
    cats: dict[str, Counter[str]], meta: Mapping[str, Any], fields: Mapping[str, Any], count: int
) -> None:
    """Counts ``count`` documents of this provenance in the breakdowns."""
    from spacerini.records import licence_and_language, owner_names

    licence, language = licence_and_language(meta, fields)
    cats["licence"][licence] += count
    cats["language"][language] += count
    host = _host(meta.get("url")) or _host(fields.get("url"))
    if host:
        cats["domain"][host] += count
    repo = meta.get("repo") or fields.get("repo")
    if repo:
        cats["repo"][str(repo)] += count
    for name in owner_names(meta.get("owner") or fields.get("owner")):  # co-owners each count
        cats["owner"][name] += count


def _scan(raw: bytes, offsets: np.ndarray, pii: bool) -> tuple[int, list[tuple[int, list[str]]]]:
    """The RE2 work of a batch (pyarrow releases the GIL): its boilerplate bytes and, with
    ``pii``, its PII candidates (:func:`spacerini.audit.pii_prefilter.pii_candidates`)."""
    from spacerini.audit.pii_prefilter import pii_candidates

    return _boilerplate_bytes(raw, offsets), pii_candidates(raw, offsets) if pii else []


def _finish_scan(
    batch: _Batch,
    scan: Future[tuple[int, list[tuple[int, list[str]]]]],
    find_pii: Any,
    found: Counter[str],
) -> tuple[int, int]:
    """Runs ``find_pii`` on a scanned batch's candidates, adding the spans' kinds to ``found``.

    Returns:
        The batch's boilerplate bytes and its documents with PII.
    """
    boiler, candidates = scan.result()
    docs = 0
    for i, kinds in candidates:
        spans = find_pii(batch.texts[i].decode("utf-8", "surrogatepass"), kinds=kinds)
        if spans:
            docs += 1
            found.update(s.kind for s in spans)
    return boiler, docs


def _compiled_part(
    counter: Any,
    near: _NearDups | None,
    near_pool: ThreadPoolExecutor | None,
    near_done: list[Future[None]],
    data: np.ndarray,
    offsets: np.ndarray,
    short_tokens: int,
) -> np.ndarray:
    """The GIL-free work of a batch: tokens and n-grams, characters; and near-duplicates, handed
    on to ``near_pool`` (its future appended to ``near_done``).

    Returns:
        ``[chars, tokens, empty documents, short documents, U+FFFD and lone surrogates,
        documents with any]`` of the batch.
    """
    from spacerini.audit.ngram_kernel import text_stats
    from spacerini.audit.ngrams import token_bounds

    n = len(offsets) - 1
    if counter is not None:
        tokens = counter.add(data, offsets)
        if near is not None and near_pool is not None:
            near_done.append(near_pool.submit(near.add_batch, *counter.last, np.diff(offsets)))
    else:
        _, starts, _ = token_bounds(data, offsets)
        tokens = np.bincount(np.searchsorted(offsets, starts, side="right") - 1, minlength=n)
    chars = np.empty(n, dtype=np.int64)
    bad = np.empty(n, dtype=np.int64)
    lone = np.empty(n, dtype=np.int64)
    text_stats(data, offsets, chars, bad, lone)
    return np.array(
        [
            chars.sum(),
            tokens.sum(),
            np.count_nonzero(tokens == 0),
            np.count_nonzero((tokens > 0) & (tokens < short_tokens)),
            bad.sum() + lone.sum(),
            np.count_nonzero(bad + lone),
        ],
        dtype=np.int64,
    )


def _boilerplate_bytes(raw: bytes, offsets: np.ndarray) -> int:
    """Bytes of the lines of a batch that hold a boilerplate phrase (each line counted once).

    RE2 (through pyarrow) finds the documents that hold a phrase, in one pass over the batch;
    those documents are then cut into lines (at line breaks, without copying) and a second RE2
    pass tells which lines hold one. The phrases hold no line break, so a line holds one exactly
    when it holds a match of :data:`BOILERPLATE`.
    """
    import pyarrow.compute as pc

    from spacerini.audit.pii_prefilter import binary_array

    if len(offsets) <= 1 or not raw:
        return 0
    offsets = np.asarray(offsets, dtype=np.int64)
    found = pc.match_substring_regex(binary_array(raw, offsets), BOILERPLATE_PATTERN, ignore_case=True)
    docs = np.flatnonzero(found.to_numpy(zero_copy_only=False))
    if docs.size == 0:
        return 0
    if docs.size < len(offsets) - 1:
        parts = [raw[offsets[i] : offsets[i + 1]] for i in docs.tolist()]
        raw, offsets = b"".join(parts), _offsets(parts)
    data = np.frombuffer(raw, dtype=np.uint8)
    breaks = np.flatnonzero(data == 0x0A) + 1  # a line keeps its break: the phrases hold none
    cuts = np.union1d(offsets, breaks)
    lines = pc.match_substring_regex(binary_array(raw, cuts), BOILERPLATE_PATTERN, ignore_case=True)
    hits = np.flatnonzero(lines.to_numpy(zero_copy_only=False))
    ends = cuts[hits + 1]
    return int((ends - cuts[hits]).sum() - np.count_nonzero(data[ends - 1] == 0x0A))


# ------------------------------------------------------------------------------ the report
def _charts(analysis: Analysis, lengths: np.ndarray) -> list[tuple[str, str, Any]]:
    """``(file stem, caption, figure)`` of every chart of the report."""
    from spacerini.audit import plots

    charts: list[tuple[str, str, Any]] = [
        (
            "lengths",
            "Document lengths",
            plots.histogram("Document length (bytes, log scale)", lengths, xlabel="bytes"),
        ),
    ]
    for n, name in (("1", "unigrams"), ("2", "bigrams"), ("3", "trigrams")):
        rows = analysis.ngrams.get(n)
        if rows:
            charts.append(
                (
                    f"top_{name}",
                    f"Top {name}",
                    plots.bar_chart(
                        f"Top {name}", [(r["ngram"], r["count"]) for r in rows], xlabel="occurrences"
                    ),
                )
            )
    dup = {}
    for kind in ("exact", "near"):
        if "docs_pct" in analysis.duplicates.get(kind, {}):
            dup[f"{kind}: % of documents"] = analysis.duplicates[kind]["docs_pct"]
            dup[f"{kind}: % of bytes"] = analysis.duplicates[kind]["bytes_pct"]
    charts.append(("duplicates", "Duplicates", plots.bar_chart("In duplicate clusters", dup, xlabel="%")))
    if analysis.pii:
        charts.append(
            ("pii", "PII", plots.bar_chart("PII matches per kind", analysis.pii["found"], xlabel="matches"))
        )
    for key, title in (
        ("licence", "Licences"),
        ("language", "Languages"),
        ("domain", "Domains"),
        ("repo", "Repos"),
        ("owner", "Owners"),
    ):
        if analysis.breakdowns.get(key):
            charts.append((f"by_{key}", title, plots.bar_chart(title, analysis.breakdowns[key])))
    return charts


def write_report(analysis: Analysis, lengths: np.ndarray, out: str | Path, *, title: str = "") -> Path:
    """Writes ``out/report.html`` (self-contained: charts embedded), one PNG per chart and
    ``out/analysis.json``, renamed into place together (``report.html`` last): a failure or
    Ctrl-C leaves no half-written file.

    Returns:
        The path of ``report.html``.

    Raises:
        UsageError: ``out`` is a file or inside a bundle, or a report file's name is a folder
            there (:func:`spacerini.audit.plots.check_report_folder`).
    """
    from spacerini.audit import plots

    folder = Path(out)
    plots.check_report_folder(folder, REPORT_FILES)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    files = plots.StagedFiles(folder)  # renamed into place together, the page last
    published = False
    try:
        # Ctrl-C is held while matplotlib draws (it swallowed or garbled it) and while the files
        # are renamed (all or none), and delivered between charts.
        with plots.DeferredSignals() as signals:
            sections: list[str] = []
            for stem, caption, fig in _charts(analysis, lengths):
                try:
                    png = plots.png_bytes(fig)
                finally:
                    plots.close(fig)
                signals.check()
                files.add(f"{stem}.png", png)
                sections.append(
                    f'<figure id="{stem}"><img alt="{html.escape(caption)}" src="{plots.data_uri(png)}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
            data = analysis.to_dict()
            files.add("analysis.json", json.dumps(data, indent=2, ensure_ascii=False) + "\n")
            files.add("report.html", _html(data, sections, title))
            signals.check()
            files.publish()
            published = True
    finally:
        files.discard()
        if created and not published:  # a full disk or Ctrl-C leaves no empty folder either
            with contextlib.suppress(OSError):
                folder.rmdir()
    return folder / "report.html"


def _table(rows: Iterable[tuple[str, Any]]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(f'{v:,}' if isinstance(v, int) else str(v))}</td></tr>"
        for k, v in rows
    )
    return f"<table>{body}</table>"


def _html(data: Mapping[str, Any], figures: list[str], title: str) -> str:
    q = data["quality"]
    size = _table(
        [
            ("documents", data["docs"]),
            ("bytes", data["bytes"]),
            ("characters", data["chars"]),
            ("word tokens", data["tokens"]),
            ("empty documents (no token)", q["empty_docs"]),
            (f"very short documents (< {q['short_tokens']} tokens)", q["short_docs"]),
            (
                "U+FFFD characters (not UTF-8 at load)",
                f"{q['replacement_chars']:,} ({100 * q['replacement_share']:.4f}%)",
            ),
            (
                "bytes on boilerplate lines",
                f"{q['boilerplate_bytes']:,} ({100 * q['boilerplate_share']:.3f}%)",
            ),
        ]
    )
    lengths = _table((k, v) for k, v in data["lengths"].items())
    dups = "".join(
        f"<h3>{html.escape(kind)}</h3>"
        + _table((k, json.dumps(v) if isinstance(v, dict | list) else v) for k, v in rep.items())
        for kind, rep in data["duplicates"].items()
    )
    ngram_tables = ""
    for n in ("1", "2", "3"):
        rows = data["ngrams"].get(n)
        if rows:
            ngram_tables += f"<h3>{n}-grams</h3>" + _table((r["ngram"], r["count"]) for r in rows)
    pii = _table(data["pii"].get("found", {}).items()) if data["pii"] else "<p>skipped</p>"
    skipped = f"<p>Skipped sections: {html.escape(', '.join(data['skipped']))}</p>" if data["skipped"] else ""
    heading = html.escape(title or "Corpus report")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{heading}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}}th,td{{border:1px solid #ddd;padding:.25em .6em;text-align:left;font-size:90%}}
th{{font-weight:normal;color:#444;max-width:40em;overflow-wrap:anywhere}}td{{text-align:right}}
figure{{display:inline-block;margin:.5em;vertical-align:top}}img{{max-width:100%}}figcaption{{font-size:85%;color:#555}}
.cols{{display:flex;flex-wrap:wrap;gap:2em}}
</style></head><body>
<h1>{heading}</h1>
<p>{data["docs"]:,} documents, {data["bytes"]:,} bytes, analysed in {data["seconds"]} s ({data["mb_per_s"]} MB/s).</p>
{skipped}
<h2>Size and quality</h2><div class="cols">{size}{lengths}</div>
<h2>Charts</h2>
{"".join(figures)}
<h2>Duplicates</h2>{dups}
<h2>PII (matches per kind)</h2>{pii}<p>Documents with PII: {data["pii"].get("docs_with_pii", 0):,}</p>
<h2>Top n-grams</h2><div class="cols">{ngram_tables}</div>
</body></html>
"""
