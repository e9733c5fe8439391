"""A Data-Portraits-style membership sketch: character n-grams of the corpus in a Bloom filter.

How it works (Marone & Van Durme, "Data Portraits", 2023):

* **Indexing.** Each document is cut into n-grams of ``width`` characters that start at the
  positions ``0, stride, 2*stride, ...`` of the document (an n-gram must fit in the document,
  so a document shorter than ``width`` adds nothing). Each n-gram goes into an rbloom filter
  sized for the number of n-grams and the false-positive rate asked for.
* **Querying.** Every ``width``-character window of the query (stride 1) is looked up. A
  window that is found is probably a stored n-gram, and its ``width`` characters are marked as
  covered; the covered characters merge into spans.
* **What is guaranteed.** A query span copied from a document that is at least
  ``width + stride - 1`` characters long contains a whole n-gram on the document's stride grid,
  so it is always found (a Bloom filter has no false negatives). Shorter copies may be missed.
  The characters of a copied span before its first and after its last grid-aligned n-gram are
  not covered (fewer than ``stride`` on each side), so with ``stride <= width`` the coverage of
  an exact excerpt of length ``L >= width + stride - 1`` is at least ``(L - 2 * (stride - 1)) / L``,
  not exactly 1.
* **Normalisation.** None: text is compared character by character, as the exact backend does
  (so a re-indented copy of code is not found). Both sides run the same code.
* **No secrets in the sketch.** By default (``skip_pii``) an n-gram that touches a span
  :func:`~spacerini.preprocess.pii.find_pii` reports in its document (a key, a password, an
  email or IP address) is not stored. The sketch is published with the bundle, and a membership
  answer from it could otherwise confirm a guessed secret, or a part of one (a key but its last
  characters), a window at a time: the app's redaction cuts the PII a pasted text shows, not a
  part of a secret that only the corpus knows to be one. The guarantee above holds for copied
  spans whose source n-grams are clear of PII; the n-grams left out are counted
  (``pii_skipped``).

Hashing is stable across processes (Python's own ``str`` hash is salted per process, so the
built-in hash cannot be saved): the n-gram hashes are a polynomial rolling hash of the code
points modulo 2**64, finished with the splitmix64 mixer, computed with numpy for all windows of
a text at once. The filter receives these 64-bit integers with ``hash_func=int``, which keeps
lookups at several million per second.

Folder layout: ``bloom/filter.bloom`` (rbloom's own file format) and ``bloom/meta.json``.

Shards: a filter's size depends only on the n-grams it is sized for (``capacity``) and the
false-positive rate, so shards built with the whole corpus's capacity merge by OR
(:func:`merge_shards`) into exactly the sketch of an unsharded build.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spacerini.backends import DocsFactory, read_json
from spacerini.errors import (
    BackendParameterError,
    BundleCorruptError,
    CorpusError,
    DependencyMissingError,
    QueryError,
)
from spacerini.records import BuildReport, Doc

NAME = "bloom"
FORMAT_VERSION = 1
#: Identifies the n-gram hash; a bundle built with another one cannot be queried.
HASH_NAME = "poly64-splitmix64-v1"
MAX_QUERY_CHARS = 1 << 20
#: Bytes of each shard's filter that :func:`merge_shards` reads at a time.
MERGE_CHUNK = 8 * 2**20
#: Shard files :func:`merge_shards` keeps open at once (more are ORed in further passes).
MAX_OPEN_SHARDS = 64
#: rbloom's file starts with the number of hash functions (8 bytes, little-endian); the filter's
#: bytes follow (checked in the tests against rbloom itself).
_HEADER = 8

log = logging.getLogger(__name__)

_BASE = np.uint64(0x100000001B3)  # odd, so it has an inverse modulo 2**64
_BASE_INV = np.uint64(pow(int(_BASE), -1, 2**64))
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class MembershipResult:
    """Which parts of a text are probably in the corpus.

    Attributes:
        coverage: Fraction of the text's characters covered by n-grams found in the sketch.
        spans: Merged ``(start, end)`` character spans (end exclusive) probably in the corpus.
        ngrams_checked: Windows of ``width`` characters looked up (every start position).
        ngrams_found: Windows found in the sketch.
    """

    coverage: float
    spans: tuple[tuple[int, int], ...]
    ngrams_checked: int
    ngrams_found: int


def _bloom_class() -> Any:
    try:
        from rbloom import Bloom
    except ImportError as exc:  # pragma: no cover - rbloom is a core dependency
        raise DependencyMissingError("the bloom backend needs rbloom: pip install rbloom") from exc
    return Bloom


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised (uint64 arithmetic wraps modulo 2**64)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def ngram_hashes(text: str, width: int, stride: int = 1) -> np.ndarray:
    """Returns the 64-bit hashes of the ``width``-character windows of ``text``.

    Windows start at ``0, stride, 2*stride, ...`` and must fit in the text. The hash depends
    only on the window's characters, not on where it starts.

    Args:
        text: Any text.
        width: Window length in characters.
        stride: Distance between window starts.

    Returns:
        A uint64 array with one hash per window (empty when the text is shorter than ``width``).
    """
    n = len(text)
    if n < width:
        return np.empty(0, dtype=np.uint64)
    codes = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32).astype(np.uint64)
    # Q[i] = sum_{j<i} c[j] * B**j; the window [i, i+w) hashes to (Q[i+w] - Q[i]) * B**-i.
    with np.errstate(over="ignore"):
        powers = np.empty(n, dtype=np.uint64)
        powers[0] = 1
        if n > 1:
            powers[1:] = _BASE
            np.cumprod(powers, out=powers)
        prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum((codes + np.uint64(1)) * powers, out=prefix[1:])
        starts = np.arange(0, n - width + 1, stride)
        inv = np.empty(n - width + 1, dtype=np.uint64)
        inv[0] = 1
        if len(inv) > 1:
            inv[1:] = _BASE_INV
            np.cumprod(inv, out=inv)
        raw = (prefix[starts + width] - prefix[starts]) * inv[starts]
        return _mix(raw ^ np.uint64(width))


def _items(n_chars: int, width: int, stride: int) -> int:
    return 0 if n_chars < width else (n_chars - width) // stride + 1


def build(
    docs_factory: DocsFactory,
    folder: Path,
    *,
    progress: bool = True,
    width: int = 50,
    stride: int | None = None,
    fp_rate: float = 0.001,
    capacity: int | None = None,
    skip_pii: bool = True,
) -> BuildReport:
    """Builds the n-gram Bloom sketch of the corpus into ``folder`` (two passes over the docs).

    The filter's size depends only on ``capacity`` and ``fp_rate``. The shards of a sharded
    bundle are therefore all built with ``capacity`` set to the n-grams of the whole corpus
    (:func:`count_ngrams` over all documents) and the same width, stride and rate; their
    sketches then merge (:func:`merge_shards`) into the very sketch of an unsharded build.

    Args:
        docs_factory: Returns a fresh iterator of docs (called twice: count, then insert).
        folder: An empty folder to write into.
        progress: Show progress bars.
        width: N-gram length in characters (Data Portraits used 50).
        stride: Distance between stored n-grams; ``None`` means ``width`` (non-overlapping).
        fp_rate: False-positive rate the filter is sized for.
        capacity: N-grams the filter is sized for; ``None`` means the n-grams of these docs.
            It must not be below them (the false-positive rate would exceed ``fp_rate``).
        skip_pii: Leave out the n-grams that touch PII of their document (see the module
            docstring); ``False`` stores every n-gram.

    Returns:
        The report; ``params`` holds width, stride, fp_rate, items (n-grams added), bits (filter
        size), the hash name, skip_pii and, when given, capacity; ``stats`` the n-grams left out
        for PII (``pii_skipped``).

    Raises:
        ValueError: A parameter is out of range.
        BackendParameterError: ``capacity`` is below the n-grams of the docs.
        CorpusError: ``docs_factory`` gave different docs on the second pass.
    """
    from tqdm.auto import tqdm

    from spacerini.preprocess.pii import find_pii

    stride = width if stride is None else stride
    if width < 1 or stride < 1:
        raise ValueError(f"width and stride must be positive, got width={width} stride={stride}")
    if not 0.0 < fp_rate < 1.0:
        raise ValueError(f"fp_rate must be between 0 and 1, got {fp_rate}")
    if capacity is not None and (isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0):
        raise ValueError(f"capacity must be a non-negative integer, got {capacity!r}")
    t0 = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    items = 0
    chars = 0
    n_docs = 0
    for doc in tqdm(docs_factory(), desc="bloom: counting n-grams", unit="doc", disable=not progress):
        items += _items(len(doc.text), width, stride)
        chars += len(doc.text)
        n_docs += 1

    if capacity is not None and capacity < items:
        raise BackendParameterError(
            f"bloom capacity {capacity} is below the {items} n-grams of the documents: give the n-grams "
            "of the whole corpus (spacerini.backends.bloom.count_ngrams)"
        )
    sized_for = max(items if capacity is None else capacity, 1)
    Bloom = _bloom_class()
    bloom = Bloom(sized_for, fp_rate, hash_func=int)
    added = skipped = 0
    # find_pii per document, not the RE2 prefilter of ``analyze``: the prefilter's first
    # pyarrow.compute call costs a process ~43 MB, which a shard worker under --memory-budget
    # cannot spare, and finds the same spans only ~1.4x faster (20 MB of Python: 0.7 vs 1.0 s).
    for doc in tqdm(docs_factory(), desc="bloom: adding n-grams", unit="doc", disable=not progress):
        hashes = ngram_hashes(doc.text, width, stride)
        pii = find_pii(doc.text) if skip_pii and len(hashes) else []
        if pii:
            keep = _clear_of(pii, len(hashes), width, stride)
            skipped += len(hashes) - int(keep.sum())
            hashes = hashes[keep]
        if len(hashes):
            bloom.update(hashes.tolist())
            added += len(hashes)
    if added + skipped != items:
        raise CorpusError(f"the corpus changed between the two passes ({items} then {added + skipped} n-grams)")
    _write(
        folder, bloom, width=width, stride=stride, fp_rate=fp_rate, items=added, capacity=sized_for,
        skip_pii=skip_pii, pii_skipped=skipped,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    log.info(
        "bloom: %d n-grams of %d docs in %d bits, %d touching PII left out (%.1f s)",
        added, n_docs, int(bloom.size_in_bits), skipped, seconds,
    )  # fmt: skip
    return _report(
        bits=int(bloom.size_in_bits), approx_items=float(bloom.approx_items), docs=n_docs, seconds=seconds,
        chars=chars, width=width, stride=stride, fp_rate=fp_rate, items=added, capacity=capacity,
        skip_pii=skip_pii, pii_skipped=skipped,
    )  # fmt: skip


def _clear_of(pii: Sequence[Any], n: int, width: int, stride: int) -> np.ndarray:
    """Which of the ``n`` stored windows (starts ``0, stride, ...``, ``width`` characters) touch
    none of the ``pii`` spans: a window ``[s, s + width)`` touches ``[a, b)`` when
    ``a - width < s < b``."""
    touched = np.zeros(n + 1, dtype=np.int32)
    for span in pii:
        lo = max(0, -(-(span.start - width + 1) // stride))  # first start > a - width
        hi = min(n, -(-span.end // stride))  # first start >= b
        if lo < hi:
            touched[lo] += 1
            touched[hi] -= 1
    return np.cumsum(touched[:n]) == 0


def _write(folder: Path, bloom: Any, **meta: Any) -> None:
    """Saves the filter and its ``meta.json`` (the same bytes for a merged sketch as for a built one)."""
    bloom.save(str(folder / "filter.bloom"))
    _write_meta(folder, bits=int(bloom.size_in_bits), **meta)


def _write_meta(
    folder: Path, *, width: int, stride: int, fp_rate: float, items: int, bits: int, capacity: int,
    skip_pii: bool | None, pii_skipped: int,
) -> None:  # fmt: skip
    meta = {
        "format": FORMAT_VERSION,
        "hash": HASH_NAME,
        "width": width,
        "stride": stride,
        "fp_rate": fp_rate,
        "items": items,
        "bits": bits,
        "capacity": capacity,
    }
    if skip_pii is not None:  # None: shards of a build from before the option
        meta.update(skip_pii=skip_pii, pii_skipped=pii_skipped)
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def _report(
    *,
    bits: int,
    approx_items: float,
    docs: int,
    seconds: float,
    chars: int,
    width: int,
    stride: int,
    fp_rate: float,
    items: int,
    capacity: int | None,
    skip_pii: bool | None,
    pii_skipped: int,
) -> BuildReport:
    params: dict[str, Any] = {
        "width": width, "stride": stride, "fp_rate": fp_rate, "items": items, "bits": bits, "hash": HASH_NAME,
    }
    if capacity is not None:
        params["capacity"] = capacity
    if skip_pii is not None:
        params["skip_pii"] = skip_pii
    return BuildReport(
        backend=NAME,
        docs=docs,
        seconds=seconds,
        params=params,
        stats={
            "chars": chars,
            "bytes": bits // 8,
            "bits_per_ngram": round(bits / items, 3) if items else 0.0,
            "approx_items": round(float(approx_items), 1),
            "pii_skipped": pii_skipped,
        },
    )


def count_ngrams(docs: Iterable[Doc], *, width: int = 50, stride: int | None = None) -> int:
    """Returns the n-grams :func:`build` stores for ``docs``: the ``capacity`` of a sharded build.

    Only the documents' lengths matter, so this is one cheap pass over the whole corpus.

    Args:
        docs: The documents (all shards' documents, for the capacity of a sharded build).
        width: N-gram length, as given to :func:`build`.
        stride: Distance between stored n-grams, as given to :func:`build` (``None``: ``width``).

    Returns:
        The number of n-grams.

    Raises:
        ValueError: ``width`` or ``stride`` is not positive.
    """
    stride = width if stride is None else stride
    if width < 1 or stride < 1:
        raise ValueError(f"width and stride must be positive, got width={width} stride={stride}")
    return sum(_items(len(doc.text), width, stride) for doc in docs)


def prepare_shards(docs_factory: DocsFactory, work: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings every shard of a sharded build shares: ``capacity``, the whole corpus's n-grams.

    Every shard's filter then has the size of the unsharded one, so :func:`merge_shards` ORs
    them into the very sketch an unsharded build writes. A ``capacity`` given is kept.

    Args:
        docs_factory: All documents of the corpus, in order.
        work: A scratch folder (unused).
        params: The build options given.
    """
    params = dict(params)
    if params.get("capacity") is None:
        params["capacity"] = count_ngrams(docs_factory(), width=int(params.get("width", 50)), stride=params.get("stride"))
    return params


def merge_shards(
    folders: Sequence[Path], out: Path, reports: Sequence[Mapping[str, Any] | BuildReport]
) -> BuildReport:
    """ORs the sketches of a bundle's shards into one sketch in ``out``, a chunk at a time.

    Every shard must have been built by :func:`build` with the same ``width``, ``stride``,
    ``fp_rate`` and ``capacity`` (the n-grams of the whole corpus, :func:`count_ngrams`), so
    that the filters have the same size and hashing. The merged ``filter.bloom`` and
    ``meta.json`` are then byte-identical to those of an unsharded build of the same corpus,
    and the report equals its report (but for ``seconds``; ``params`` names ``capacity`` only
    where it differs from the n-grams added, as it would for an unsharded build given it).

    No filter is loaded whole: the shards' files are read :data:`MERGE_CHUNK` bytes at a time
    and ORed into the output file (rbloom's file is its number of hash functions, then the
    filter's bytes), so the memory the merge needs does not grow with the filter, which has
    the whole corpus's size.

    Args:
        folders: The shards' backend folders.
        out: The folder to write the merged sketch into (created if missing).
        reports: The shards' build reports (or their manifest entries), in the order of
            ``folders``. An entry marked ``"empty"`` (a shard left with no documents) is skipped.

    Returns:
        The merged sketch's report.

    Raises:
        BackendParameterError: The shards were built with different parameters, filter sizes
            or numbers of hash functions.
        BundleCorruptError: ``folders`` and ``reports`` differ in length, none holds a sketch,
            or a sketch is missing, of another format, or disagrees with its ``meta.json``.
    """
    t0 = time.perf_counter()
    if len(folders) != len(reports):
        raise BundleCorruptError(f"{len(folders)} bloom shard folders but {len(reports)} shard reports")
    dicts = [r.to_dict() if isinstance(r, BuildReport) else dict(r) for r in reports]
    kept = [(Path(f), r) for f, r in zip(folders, dicts, strict=True) if not r.get("empty")]
    if not kept:
        raise BundleCorruptError("no bloom shard holds a sketch: nothing to merge")
    first: dict[str, Any] = {}
    header = b""
    items = docs = chars = skipped = 0
    for folder, report in kept:
        meta = _read_meta(folder)
        shape = {key: meta.get(key) for key in ("width", "stride", "fp_rate", "capacity", "bits", "skip_pii")}
        if not first:
            first = shape
        elif shape != first:
            raise BackendParameterError(
                f"{folder}: bloom shard built with {shape}, the first shard with {first}: build every shard "
                "with the same width, stride, fp_rate, capacity (the n-grams of the whole corpus) and skip_pii"
            )
        hashes = _check_file(folder / "filter.bloom", meta)
        if not header:
            header = hashes
        elif hashes != header:
            raise BackendParameterError(
                f"{folder}: bloom shard uses {int.from_bytes(hashes, 'little')} hash functions, the first "
                f"shard {int.from_bytes(header, 'little')}: its filter cannot be merged"
            )
        items += int(meta["items"])
        skipped += int(meta.get("pii_skipped") or 0)
        docs += int(report.get("docs") or 0)
        chars += int((report.get("stats") or {}).get("chars") or 0)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bits = int(first["bits"])
    ones = _or_files([folder / "filter.bloom" for folder, _ in kept], out / "filter.bloom", header, bits // 8)
    width, stride, fp_rate, capacity = first["width"], first["stride"], first["fp_rate"], first["capacity"]
    skip_pii = first["skip_pii"]
    if capacity is None:  # shards of an older build: the filter was sized for its own n-grams
        capacity = max(items, 1)
    _write_meta(
        out, width=width, stride=stride, fp_rate=fp_rate, items=items, bits=bits, capacity=capacity,
        skip_pii=skip_pii, pii_skipped=skipped,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    log.info("bloom: merged %d shards, %d n-grams in %d bits (%.1f s)", len(kept), items, bits, seconds)
    return _report(
        bits=bits, approx_items=_approx_items(ones, bits, int.from_bytes(header, "little")), docs=docs,
        seconds=seconds, chars=chars, width=width, stride=stride, fp_rate=fp_rate, items=items,
        capacity=None if capacity == max(items + skipped, 1) else capacity, skip_pii=skip_pii, pii_skipped=skipped,
    )  # fmt: skip


def _check_file(path: Path, meta: Mapping[str, Any]) -> bytes:
    """Returns the header (the number of hash functions) of a shard's ``filter.bloom``, once its
    size agrees with the ``bits`` of its ``meta.json``."""
    bits = meta.get("bits")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            header = fh.read(_HEADER)
    except OSError as exc:
        raise BundleCorruptError(f"{path.parent}: cannot read the bloom filter: {exc}") from exc
    if not isinstance(bits, int) or bits % 8 or size != _HEADER + bits // 8:
        raise BundleCorruptError(
            f"{path.parent}: filter.bloom has {max(size - _HEADER, 0) * 8} bits, meta.json says {bits}"
        )
    if int.from_bytes(header, "little") < 1:
        raise BundleCorruptError(f"{path.parent}: filter.bloom has no hash functions: rebuild the bundle")
    return header


def _or_files(paths: Sequence[Path], out: Path, header: bytes, size: int) -> int:
    """Writes ``header`` and the OR of the ``size`` filter bytes of ``paths`` to ``out``.

    Reads every file :data:`MERGE_CHUNK` bytes at a time; with more than :data:`MAX_OPEN_SHARDS`
    files, later groups are ORed into ``out`` in further passes (so few files are open at once).

    Returns:
        The bits set in the merged filter.
    """
    acc = np.empty(min(MERGE_CHUNK, max(size, 1)), dtype=np.uint8)
    buf = bytearray(len(acc))
    view = memoryview(buf)
    ones = 0
    groups = [paths[i : i + MAX_OPEN_SHARDS] for i in range(0, len(paths), MAX_OPEN_SHARDS)]
    with out.open("wb") as fh:
        fh.write(header)
        fh.truncate(_HEADER + size)
    for g, group in enumerate(groups):
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(path.open("rb")) for path in group]
            target = stack.enter_context(out.open("r+b"))
            for fh in files:
                fh.seek(_HEADER)
            ones = 0
            for offset in range(0, size, len(acc)):
                n = min(len(acc), size - offset)
                part = acc[:n]
                target.seek(_HEADER + offset)
                if g:  # OR into what the earlier groups wrote
                    _read_exactly(target, view[:n], out)
                    part[:] = np.frombuffer(buf, dtype=np.uint8, count=n)
                else:
                    part[:] = 0
                for src in files:
                    _read_exactly(src, view[:n], Path(src.name))
                    np.bitwise_or(part, np.frombuffer(buf, dtype=np.uint8, count=n), out=part)
                target.seek(_HEADER + offset)
                target.write(part.data)
                ones += int(_POPCOUNT[part].sum(dtype=np.int64))
    return ones


def _read_exactly(fh: Any, into: memoryview, path: Path) -> None:
    got = fh.readinto(into)
    if got != len(into):
        raise BundleCorruptError(f"{path.parent}: filter.bloom ended early (it changed while being merged)")


def _approx_items(ones: int, bits: int, hashes: int) -> float:
    """rbloom's ``approx_items`` of a filter with ``ones`` of its ``bits`` set (the same float)."""
    if ones == 0:
        return 0.0
    if ones >= bits:
        return math.inf
    return -(bits / hashes) * math.log(1 - ones / bits)


def _read_meta(folder: Path) -> dict[str, Any]:
    meta = read_json(folder, "meta.json", what="the bloom sketch's parameters")
    if meta.get("format") != FORMAT_VERSION or meta.get("hash") != HASH_NAME:
        raise BundleCorruptError(
            f"{folder}: bloom sketch format {meta.get('format')}/{meta.get('hash')} is not "
            f"{FORMAT_VERSION}/{HASH_NAME}: rebuild the bundle"
        )
    return meta


class BloomSearcher:
    """Answers "which parts of this text are probably in the corpus?".

    Args:
        folder: The backend folder written by :func:`build`.
    """

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        meta = _read_meta(folder)
        self.width: int = int(meta["width"])
        self.stride: int = int(meta["stride"])
        self.fp_rate: float = float(meta["fp_rate"])
        self.items: int = int(meta["items"])
        Bloom = _bloom_class()
        try:
            self.bloom = Bloom.load(str(folder / "filter.bloom"), int)
        except (OSError, ValueError) as exc:
            raise BundleCorruptError(f"{folder}: cannot load the bloom filter: {exc}") from exc
        self.bits = int(self.bloom.size_in_bits)

    def contains_hashes(self, hashes: np.ndarray) -> np.ndarray:
        """Looks up precomputed n-gram hashes; returns a bool array."""
        return np.fromiter(map(self.bloom.__contains__, hashes.tolist()), dtype=bool, count=len(hashes))

    def member(self, text: str) -> MembershipResult:
        """Returns which spans of ``text`` are probably in the corpus.

        Args:
            text: The text to check (for example a file or a model's output).

        Returns:
            Coverage, merged spans and n-gram counts. A text shorter than ``width`` checks no
            n-gram and has coverage 0.

        Raises:
            QueryError: The text is empty, not a string or longer than 1 Mi characters.
        """
        if not isinstance(text, str):
            raise QueryError(f"membership query must be text, not {type(text).__name__}")
        if not text:
            raise QueryError("empty text: give the text to check for membership")
        if len(text) > MAX_QUERY_CHARS:
            raise QueryError(f"text is {len(text)} characters long; at most {MAX_QUERY_CHARS} are checked")
        hashes = ngram_hashes(text, self.width)
        if not len(hashes):
            return MembershipResult(0.0, (), 0, 0)
        found = self.contains_hashes(hashes)
        starts = np.flatnonzero(found)
        spans: list[tuple[int, int]] = []
        for s in starts.tolist():
            e = s + self.width
            if spans and s <= spans[-1][1]:
                spans[-1] = (spans[-1][0], e)
            else:
                spans.append((s, e))
        covered = sum(e - s for s, e in spans)
        return MembershipResult(covered / len(text), tuple(spans), len(hashes), len(starts))

    def close(self) -> None:
        """Drops the filter."""
        self.bloom = None

    def __enter__(self) -> BloomSearcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def estimate_bits(items: int, fp_rate: float) -> int:
    """Bits an optimal Bloom filter needs for ``items`` keys at ``fp_rate`` (``-n ln p / ln² 2``)."""
    return math.ceil(-items * math.log(fp_rate) / math.log(2) ** 2)


def open(folder: Path, report: Mapping[str, Any]) -> BloomSearcher:
    """Opens the sketch in ``folder``.

    Raises:
        BundleCorruptError: The files are missing, of another format or unreadable.
    """
    return BloomSearcher(Path(folder))
