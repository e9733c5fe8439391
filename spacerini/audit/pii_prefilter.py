"""Which documents of a batch could hold PII: one RE2 pass over the batch, so that
:func:`spacerini.preprocess.pii.find_pii` (Python's ``re``, one call per document) runs only on
those. The counts do not change: a document the filter leaves out has no span.

:data:`PATTERN` is a superset, on UTF-8 bytes read as Latin-1 (pyarrow runs RE2 that way on
binary arrays), of every regular expression :func:`~spacerini.preprocess.pii.find_pii` can
report a span from with its default kinds (KEY, PASSWORD, EMAIL, IP_ADDRESS; NAME needs a
model and PHONE is off): each alternative below is one of those expressions with its lookarounds,
word boundaries, back-references and trailing parts dropped, and its counted repetitions
shortened. Where Python's ``\\w`` and ``\\s`` match non-ASCII characters, any byte from 0x80 on
may stand in their place. A match never needs to cross a line break (``find_pii`` runs these
expressions on the lines that hold their needles), except when lower-casing changes the
text's length; that, and Python's case-insensitive matching of an ASCII letter to a non-ASCII
one, happen only with four characters (U+0130, U+0131, U+017F, U+212A), and a document that
holds one of them always goes to ``find_pii``. ``tests/test_analyze.py`` checks the filter
against ``find_pii`` on planted PII of every kind and form.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_W = r"(?:[A-Za-z0-9_\x80-\xff]|[.\-])"  # Python's [\w.\-]
_S = r"(?:[\t-\r \x1c-\x1f]|[\x80-\xff])"  # Python's \s
_H = "[0-9A-Fa-f]"

#: The parts of :data:`PATTERN`, each named by the detector (``spacerini.preprocess.pii``) it covers.
PARTS: dict[str, str] = {
    # The four characters that case-fold to ASCII letters (or lower to two characters).
    "case folding": r"\xc4[\xb0\xb1]|\xc5\xbf|\xe2\x84\xaa",
    "_EMAIL": r"[A-Za-z0-9._%+\-]@[A-Za-z0-9]",
    "_IPV4": r"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]",
    # A valid address of three or more groups: with "::", two groups on one side of it; else eight.
    "_IPV6": rf"::{_H}{{1,4}}:{_H}|{_H}:{_H}{{1,4}}::|{_H}:{_H}{{1,4}}:{_H}{{1,4}}:{_H}",
    "_PRIVATE_KEY, _KNOWN_KEYS": (
        r"-----BEGIN|AKIA|ASIA|ABIA|ACCA|gh[pousr]_|github_pat_|glpat-|xox[abposr]-|[sr]k_live_|[sr]k_test_"
        r"|AIza|hf_[A-Za-z]|sk-|eyJ"
    ),
    "_ASSIGNED_SECRET": (
        rf"(?i:key|secret|token|credential){_W}*[\"']?{_S}*(?::[^\n]*)?[=:][>=]?{_S}*(?:[rRbBuU]?[\"'`])?"
        r"[A-Za-z0-9+/=_\-.~:]{16}"
    ),
    # A 40-character base64 word on a line that names aws or secret (either order).
    "_AWS_SECRET": r"(?i:aws|secret)[^\n]*[A-Za-z0-9/+]{40}|[A-Za-z0-9/+]{40}[^\n]*(?i:aws|secret)",
    "_AUTHORIZATION": r"(?i:authorization)",
    "_QUOTED_PASSWORD": rf"(?i:pass|pwd){_W}*[\"']?{_S}*(?::[^\n]*)?[=:][>=]?{_S}*[rRbBuUfF]?[\"'`]",
    "_PASSWORD_ARGUMENT": rf"(?i:pass|pwd)[A-Za-z\x80-\xff]*[\"']{_S}*,",
    "_BARE_PASSWORD": (
        rf"(?im:^[ \t]*(?:export[ \t]+|set[ \t]+)?(?:-[ \t]+)?{_W}*(?:pass|pwd){_W}*[ \t]*[:=][ \t]*"
        r"[^\t-\r \"'`#;(){}\[\],])"
    ),
    "_INLINE_PASSWORD": rf"(?i:pass|pwd){_W}*=[^\t-\r \"'`;&|<>(){{}}\[\],]",
    "_NETRC_PASSWORD": r"(?im:password[ \t]+[^\t-\r \"'`]+[ \t]*$)",
    "_COMMAND_PASSWORDS": (
        r"(?i:mysql|mariadb)[^\n]*[ \t]-p|curl[^\n]*[ \t](?:-u|--user)[ \t=]"
        r"|(?:sshpass|login)[^\n]*[ \t](?:-p|--password)[ \t=]"
    ),
    "_URL_PASSWORD": r"://[^\t-\r :/@\"']+:[^\t-\r :/@\"']+@",
}
#: One RE2 expression: a document that matches nowhere holds no PII of the default kinds.
PATTERN = "|".join(f"(?:{p})" for p in PARTS.values())
#: The parts that cover each kind's detector (``find_pii`` with ``kinds=[kind]``).
KIND_PARTS: dict[str, tuple[str, ...]] = {
    "KEY": ("_PRIVATE_KEY, _KNOWN_KEYS", "_ASSIGNED_SECRET", "_AWS_SECRET", "_AUTHORIZATION"),
    "PASSWORD": (
        "_QUOTED_PASSWORD", "_PASSWORD_ARGUMENT", "_BARE_PASSWORD", "_INLINE_PASSWORD", "_NETRC_PASSWORD",
        "_COMMAND_PASSWORDS", "_URL_PASSWORD",
    ),
    "EMAIL": ("_EMAIL",),
    "IP_ADDRESS": ("_IPV4", "_IPV6"),
}  # fmt: skip
#: One RE2 expression per kind (with the case-folding characters, which every kind must see).
KIND_PATTERNS: dict[str, str] = {
    kind: "|".join(f"(?:{PARTS[p]})" for p in ("case folding", *parts)) for kind, parts in KIND_PARTS.items()
}


def binary_array(raw: bytes | np.ndarray, offsets: np.ndarray) -> Any:
    """A pyarrow binary array of the ``raw[offsets[i]:offsets[i+1]]``, without copying."""
    import pyarrow as pa

    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(),
        len(offsets) - 1,
        [None, pa.py_buffer(np.ascontiguousarray(offsets, dtype=np.int64)), pa.py_buffer(raw)],
    )


def pii_candidates(raw: bytes | np.ndarray, offsets: np.ndarray) -> list[tuple[int, list[str]]]:
    """The documents of a batch that could hold PII, each with the kinds it could hold:
    ``find_pii(text, kinds=kinds)`` finds the same spans as ``find_pii(text)`` (a kind left out
    has no span to add or to take a place from), and the expensive detectors run only where
    they could find something.

    Args:
        raw: The batch's UTF-8 bytes (``surrogatepass``).
        offsets: ``docs + 1`` int64 offsets: document ``i`` is ``raw[offsets[i]:offsets[i+1]]``.

    Returns:
        ``(document index in the batch, kinds)`` in document order; no document without a kind.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(offsets) <= 1:
        return []
    docs = binary_array(raw, offsets)
    rows = np.flatnonzero(pc.match_substring_regex(docs, PATTERN).to_numpy(zero_copy_only=False))
    if rows.size == 0:
        return []
    some = docs.take(pa.array(rows))
    hits = {
        kind: pc.match_substring_regex(some, pattern).to_numpy(zero_copy_only=False)
        for kind, pattern in KIND_PATTERNS.items()
    }
    out = []
    for j, row in enumerate(rows.tolist()):
        kinds = [kind for kind, hit in hits.items() if hit[j]]
        if kinds:
            out.append((row, kinds))
    return out
