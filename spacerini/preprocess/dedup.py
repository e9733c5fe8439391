"""Exact and near-duplicate removal. The first document of each duplicate cluster is kept.

* :class:`ExactDedup` ("dedup") hashes each text with SHA-256 (after optional whitespace or case
  normalisation) and drops any later document with a hash already seen.
* :class:`NearDedup` ("near-dedup") follows BigCode's near-deduplication of The Stack and
  StarCoder (``bigcode-dataset/near_deduplication/minhash_deduplication.py``; the blog post
  "Large-scale Near-deduplication Behind BigCode"): documents are split into word tokens
  (maximal runs of ``[A-Za-z0-9_]`` and non-ASCII characters), shingled into 5-grams, sketched
  with 256-permutation MinHash, and banded with LSH tuned for a Jaccard threshold of 0.7
  (the bands and rows that minimise the weighted false positive/negative rates, computed by
  datasketch's ``_optimal_param`` as BigCode's ``optimal_param`` does: 25 bands of 10 rows;
  the buckets live in one dict keyed by a 64-bit hash of each band, as BigCode's hash tables
  did, which is faster and smaller than ``datasketch.MinHashLSH``'s byte-string keys). The Stack
  v2 kept these parameters; a higher threshold (0.85) removes fewer, closer copies. Unlike
  BigCode's offline union-find, this step streams: each document queries the index of the
  documents kept so far, and is dropped when a candidate's estimated Jaccard similarity reaches
  the threshold (``verify=True``; ``False`` trusts the LSH bands alone, as BigCode did). A
  document kept is inserted; a dropped one is not, so clusters are anchored on kept documents.

MinHash signatures are computed with numpy, one document at a time and without a Python loop
over shingles: the text's UTF-8 bytes are tokenised with a byte mask, each token is hashed with
a randomised polynomial (tabulation) hash, each 5-gram combines its tokens' hashes with
per-position random multipliers, and the 32-bit shingle hashes go through the same affine
permutations ``a * h + b mod 2**32`` (odd ``a``) as datasketch's default "affine32" scheme.
The estimates match datasketch's on the same shingles (the tests check both against the exact
Jaccard similarity).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from typing import Any

import numpy as np

from spacerini.preprocess.base import (
    BaseStep,
    StepOptionError,
    check_bool,
    check_choice,
    check_fraction,
    check_positive_int,
    check_seed,
)
from spacerini.records import Doc

logger = logging.getLogger(__name__)

#: BigCode's near-dedup parameters (minhash_deduplication.py): 5-gram shingles, 256
#: permutations, Jaccard threshold 0.7.
DEFAULT_NGRAM = 5
DEFAULT_NUM_PERM = 256
DEFAULT_THRESHOLD = 0.7
#: Clusters listed in a report, and removed ids listed per cluster.
MAX_CLUSTERS = 100
MAX_CLUSTER_IDS = 20

_NORMALISE = ("none", "whitespace", "lower")
_SPACES = re.compile(r"\s+")
#: A word token as :class:`MinHasher` sees it (byte-level: ASCII word bytes and all non-ASCII).
WORD = re.compile(r"[A-Za-z0-9_\u0080-\U0010ffff]+")


def shingles(text: str, n: int = DEFAULT_NGRAM) -> set[str]:
    """Returns the set of word n-grams of a text, each joined with single spaces.

    This is the reference for what :class:`MinHasher` hashes (it never builds the strings).
    A text with fewer than ``n`` tokens has one shingle (all its tokens); an empty one, none.

    Args:
        text: The document text.
        n: Tokens per shingle.

    Returns:
        The distinct shingles.
    """
    tokens = WORD.findall(text)
    if not tokens:
        return set()
    if len(tokens) < n:
        return {" ".join(tokens)}
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (an avalanching bijection), element-wise, wrapping."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


_WORD_BYTE = np.zeros(256, dtype=bool)
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_":
    _WORD_BYTE[_c] = True
_WORD_BYTE[0x80:] = True


class MinHasher:
    """Computes MinHash signatures of word n-gram shingles, vectorised with numpy.

    Args:
        num_perm: Number of permutations (signature length).
        ngram: Tokens per shingle.
        seed: Seed of the random hash and permutation parameters (signatures are reproducible
            across runs and machines for one seed).
        chunk: Shingles processed per block (bounds the ``chunk x num_perm`` temporary).
    """

    def __init__(
        self, *, num_perm: int = DEFAULT_NUM_PERM, ngram: int = DEFAULT_NGRAM, seed: int = 1, chunk: int = 4096
    ) -> None:
        self.num_perm = check_positive_int(num_perm, what="num_perm")
        self.ngram = check_positive_int(ngram, what="ngram")
        self.seed = check_seed(seed, what="seed")
        self.chunk = chunk
        rng = np.random.default_rng(seed)
        self._byte_table = rng.integers(0, 2**64, size=256, dtype=np.uint64, endpoint=False)
        self._position = rng.integers(0, 2**63, size=self.ngram, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._a = (rng.integers(0, 2**31, size=self.num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1))
        self._b = rng.integers(0, 2**32, size=self.num_perm, dtype=np.uint32, endpoint=False)
        # Base of the polynomial byte hash and its inverse mod 2**64 (odd, so it has one).
        self._base = np.uint64(0x9E3779B97F4A7C15 | 1)
        self._base_inv = np.uint64(pow(int(self._base), -1, 2**64))
        self._pow = np.ones(1, dtype=np.uint64)
        self._pow_inv = np.ones(1, dtype=np.uint64)
        self.empty = np.full(self.num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
        self._buffer: np.ndarray | None = None  # scratch space (one MinHasher per thread)

    def _powers(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self._pow) < n:
            size = max(n, 2 * len(self._pow))
            with np.errstate(over="ignore"):
                self._pow = _cumulative_power(self._base, size)
                self._pow_inv = _cumulative_power(self._base_inv, size)
        return self._pow[:n], self._pow_inv[:n]

    def token_hashes(self, text: str) -> np.ndarray:
        """Returns one 64-bit hash per word token of ``text``, in order."""
        data = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
        if data.size == 0:
            return np.empty(0, dtype=np.uint64)
        mask = _WORD_BYTE[data]
        edges = np.diff(mask.view(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts = np.flatnonzero(edges == 1)
        if starts.size == 0:
            return np.empty(0, dtype=np.uint64)
        ends = np.flatnonzero(edges == -1)
        powers, inverse = self._powers(data.size)
        terms = self._byte_table[data] * powers
        terms[~mask] = 0
        prefix = np.cumsum(terms, dtype=np.uint64)
        before = np.where(starts > 0, prefix[starts - 1], np.uint64(0))
        sums = (prefix[ends - 1] - before) * inverse[starts]
        # Mix in the length so that a token is not confused with a run of zero-valued bytes.
        return _fmix64(sums ^ (ends - starts).astype(np.uint64))

    def shingle_hashes(self, text: str) -> np.ndarray:
        """Returns the 32-bit hash of every shingle (with repeats), as :func:`shingles` defines them."""
        tokens = self.token_hashes(text)
        m, n = tokens.size, self.ngram
        if m == 0:
            return np.empty(0, dtype=np.uint32)
        if m < n:
            # A short text is one shingle: all its tokens (the length keeps it apart from n-grams).
            total = np.sum(tokens * self._position[:m], keepdims=True, dtype=np.uint64) + np.uint64(m)
            return (_fmix64(total) >> np.uint64(32)).astype(np.uint32)
        count = m - n + 1
        total = tokens[:count] * self._position[0]
        for k in range(1, n):
            total = total + tokens[k : k + count] * self._position[k]
        return (_fmix64(total + np.uint64(n)) >> np.uint64(32)).astype(np.uint32)

    def signature(self, text: str) -> np.ndarray:
        """Returns the MinHash signature of ``text`` (``num_perm`` uint32 values).

        An empty text (no tokens) gets the all-max signature, like an empty datasketch MinHash.
        """
        hashes = self.shingle_hashes(text)
        if hashes.size == 0:
            return self.empty.copy()
        out = self.empty.copy()
        # Permutations along rows, shingles along columns: the min runs over contiguous memory.
        if self._buffer is None:
            self._buffer = np.empty((self.num_perm, self.chunk), dtype=np.uint32)
        a, b = self._a[:, None], self._b[:, None]
        for start in range(0, hashes.size, self.chunk):
            block = hashes[None, start : start + self.chunk]
            scratch = self._buffer[:, : block.shape[1]]
            np.multiply(a, block, out=scratch)
            np.add(scratch, b, out=scratch)
            np.minimum(out, scratch.min(axis=1), out=out)
        return out


def _cumulative_power(base: np.uint64, size: int) -> np.ndarray:
    """Returns ``[1, base, base**2, ...]`` mod 2**64 (``size`` values), by doubling blocks."""
    out = np.empty(size, dtype=np.uint64)
    out[0] = 1
    filled = 1
    while filled < size:
        take = min(filled, size - filled)
        out[filled : filled + take] = out[:take] * np.uint64(pow(int(base), filled, 2**64))
        filled += take
    return out


def estimate_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Returns the MinHash estimate of the Jaccard similarity of two signatures."""
    return float(np.count_nonzero(a == b)) / len(a)


@functools.lru_cache(maxsize=32)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """Returns datasketch's optimal (bands, rows) for a threshold and number of permutations."""
    try:
        from datasketch.lsh import _optimal_param
    except ImportError:  # pragma: no cover - older/newer datasketch: let MinHashLSH choose
        from datasketch import MinHashLSH

        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        return lsh.b, lsh.r
    bands, rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
    return int(bands), int(rows)


class _Clusters:
    """Duplicate clusters for a report: kept id -> removed ids, both capped."""

    def __init__(self) -> None:
        self.kept: dict[Any, dict[str, Any]] = {}
        self.total = 0
        self._past_cap: set[Any] = set()  # keys of the clusters not listed, each counted once

    def add(self, key: Any, kept_id: str, removed_id: str) -> None:
        cluster = self.kept.get(key)
        if cluster is None:
            if len(self.kept) >= MAX_CLUSTERS:
                if key not in self._past_cap:  # a second removal from it is not a new cluster
                    self._past_cap.add(key)
                    self.total += 1
                return
            self.total += 1
            cluster = self.kept[key] = {"kept": kept_id, "removed": [], "size": 1}
        cluster["size"] += 1
        if len(cluster["removed"]) < MAX_CLUSTER_IDS:
            cluster["removed"].append(removed_id)

    def seen(self, key: Any) -> bool:
        return key in self.kept

    def report(self) -> dict[str, Any]:
        return {"clusters": list(self.kept.values()), "clusters_total": self.total}


class ExactDedup(BaseStep):
    """Drops documents whose text is identical to an earlier document's ("dedup").

    Args:
        normalize: "none" (the text as is), "whitespace" (runs of whitespace become one space,
            ends stripped) or "lower" (whitespace, then case-folded) before hashing.

    Memory: one 16-byte digest prefix and the kept id per distinct text.
    """

    name = "dedup"

    def __init__(self, *, normalize: str = "none") -> None:
        super().__init__()
        self.normalize = check_choice(normalize, _NORMALISE, what="dedup normalize")
        self.params = {"normalize": self.normalize, "hash": "sha256"}
        self._seen: dict[bytes, str] = {}
        self._clusters = _Clusters()

    def _reset(self) -> None:
        self._seen = {}
        self._clusters = _Clusters()

    def _key(self, text: str) -> bytes:
        if self.normalize != "none":
            text = _SPACES.sub(" ", text).strip()
            if self.normalize == "lower":
                text = text.casefold()
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:16]

    def _process(self, doc: Doc) -> Doc | None:
        key = self._key(doc.text)
        kept = self._seen.get(key)
        if kept is None:
            self._seen[key] = doc.id
            return doc
        self._removed("exact_duplicate", doc)
        self._clusters.add(key, kept, doc.id)
        return None

    def _extra_report(self) -> dict[str, Any]:
        return {"distinct": len(self._seen), **self._clusters.report()}


class NearDedup(BaseStep):
    """Drops near-duplicates: MinHash LSH over word n-grams, keeping the first of a cluster ("near-dedup").

    Args:
        threshold: Jaccard similarity (of the shingle sets) at which a document counts as a
            near-duplicate of an earlier one. BigCode used 0.7.
        num_perm: MinHash permutations. BigCode used 256.
        ngram: Tokens per shingle. BigCode used 5.
        seed: Seed of the hash functions.
        verify: Drop a document only when a candidate from the LSH index has an estimated
            Jaccard similarity >= ``threshold`` (costs 4 bytes x ``num_perm`` per kept document).
            ``False`` drops on any LSH band collision.

    Memory: the LSH index (``bands`` keys per kept document) plus, with ``verify``, one
    signature per kept document.
    """

    name = "near-dedup"

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        num_perm: int = DEFAULT_NUM_PERM,
        ngram: int = DEFAULT_NGRAM,
        seed: int = 1,
        verify: bool = True,
    ) -> None:
        super().__init__()
        self.threshold = check_fraction(threshold, what="near-dedup threshold")
        if not 0.0 < self.threshold < 1.0:
            raise StepOptionError(f"near-dedup threshold must be strictly between 0 and 1, got {threshold!r}")
        seed = check_seed(seed, what="near-dedup seed")
        self.hasher = MinHasher(num_perm=num_perm, ngram=ngram, seed=seed)
        self.verify = check_bool(verify, what="near-dedup verify")
        self.bands, self.rows = lsh_params(self.threshold, self.hasher.num_perm)
        self.params = {
            "threshold": self.threshold,
            "num_perm": self.hasher.num_perm,
            "ngram": self.hasher.ngram,
            "seed": seed,
            "verify": self.verify,
            "bands": self.bands,
            "rows": self.rows,
            "tokens": "word runs [A-Za-z0-9_] + non-ASCII",
        }
        rng = np.random.default_rng([seed, 0x15A])
        self._band_multipliers = rng.integers(0, 2**63, size=(1, self.rows), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._band_salts = rng.integers(0, 2**63, size=self.bands, dtype=np.uint64)
        self._reset()

    def _reset(self) -> None:
        # One dict for all bands: band key (a 64-bit hash of the band's rows, salted per band)
        # -> the kept row, or a list of kept rows when several share the bucket.
        self._buckets: dict[int, int | list[int]] = {}
        self._ids: list[str] = []
        self._signatures = np.empty((64 if self.verify else 0, self.hasher.num_perm), dtype=np.uint32)
        self._clusters = _Clusters()
        self._empty = 0

    def band_keys(self, signature: np.ndarray) -> list[int]:
        """Returns the LSH bucket keys of a signature: one 64-bit hash per band."""
        bands = signature[: self.bands * self.rows].reshape(self.bands, self.rows).astype(np.uint64)
        mixed = _fmix64((bands * self._band_multipliers).sum(axis=1, dtype=np.uint64) + self._band_salts)
        return mixed.tolist()

    def _process(self, doc: Doc) -> Doc | None:
        signature = self.hasher.signature(doc.text)
        if signature[0] == self.hasher.empty[0] and np.array_equal(signature, self.hasher.empty):
            self._empty += 1  # no tokens: nothing to compare (exact dedup handles empty texts)
            return doc
        keys = self.band_keys(signature)
        buckets = self._buckets
        candidates: set[int] = set()
        for key in keys:
            found = buckets.get(key)
            if found is not None:
                if isinstance(found, int):
                    candidates.add(found)
                else:
                    candidates.update(found)
        match = self._best(candidates, signature) if candidates else None
        if match is not None:
            self._removed("near_duplicate", doc)
            self._clusters.add(match, self._ids[match], doc.id)
            return None
        row = len(self._ids)
        self._ids.append(doc.id)
        if self.verify:
            if row == len(self._signatures):
                grown = np.empty((2 * row, self.hasher.num_perm), dtype=np.uint32)
                grown[:row] = self._signatures
                self._signatures = grown
            self._signatures[row] = signature
        for key in keys:
            found = buckets.get(key)
            if found is None:
                buckets[key] = row
            elif isinstance(found, int):
                buckets[key] = [found, row]
            else:
                found.append(row)
        return doc

    def _best(self, candidates: set[int], signature: np.ndarray) -> int | None:
        rows = np.fromiter(candidates, dtype=np.int64, count=len(candidates))
        rows.sort()
        if not self.verify:
            return int(rows[0])
        similarity = (self._signatures[rows] == signature).mean(axis=1)
        hits = np.flatnonzero(similarity >= self.threshold)
        return int(rows[hits[0]]) if hits.size else None

    def _extra_report(self) -> dict[str, Any]:
        return {
            "kept_indexed": len(self._ids),
            "buckets": len(self._buckets),
            "no_tokens": self._empty,
            **self._clusters.report(),
        }
