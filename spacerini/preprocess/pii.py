"""Personal and secret information: find it, and redact it StarPII-style.

Kinds (the tags of BigCode's StarPII / StarCoder redaction):

* ``EMAIL``: email addresses. Addresses at reserved example domains (RFC 2606/6761:
  ``example.com/.org/.net``, ``*.example``, ``*.test``, ``*.invalid``, ``*.localhost``) are
  documentation, not PII, and are not reported; nor are ``git@host:path`` SSH remotes or
  ``name@2x.png`` image names.
* ``IP_ADDRESS``: IPv4 and IPv6 addresses that are globally routable. As in StarCoder's
  redaction, private, loopback, link-local, reserved and documentation addresses and the
  popular public DNS resolvers (8.8.8.8, 1.1.1.1, ...) are left alone: they identify nobody.
  Following BigScience/BigCode, four single-digit parts (``1.2.3.4``) read as a version
  number unless "ip", "dns", "server", "host" or "addr" appears nearby, and a dotted quad
  right after "version"/"v"/"==" is a version too.
* ``KEY``: secrets with a known shape (AWS access key ids, GitHub/GitLab/Slack/Stripe/Google/
  Hugging Face/OpenAI tokens, JSON Web Tokens, PEM private key blocks), 40-character AWS secret
  access keys on a line that says "aws" or "secret", the token of an ``Authorization: Bearer``
  (or ``Token``) header, and any string of at least 16 characters with high Shannon entropy
  assigned, quoted or not, to a name that says key, secret, token, auth or credential. Digests
  assigned to names like ``sha256``/``checksum`` are not secrets; unlike detect-secrets'
  context-free entropy plugin, a hash with no telling name is not reported (so lock files and
  test vectors stay intact). Known shapes filled with one repeated character
  (``ghp_XXXX...``) are placeholders.
* ``PASSWORD``: quoted values assigned to (or compared with) a name containing password,
  passwd, passphrase or pwd (or ending in ``pass``: ``SMTP_PASS``), in code, JSON and YAML;
  bare values in ``.env``/YAML/INI lines (``DB_PASSWORD=...``, ``password: ...``,
  ``password = ...``) and in ``NAME=value`` words anywhere (``PGPASSWORD=... psql``,
  ``docker run -e MYSQL_ROOT_PASSWORD=...``, ``--password=...``); the password of
  ``scheme://user:pass@host`` URLs; ``.netrc`` entries; command-line passwords (``mysql -pSECRET``,
  ``curl -u user:pass``, ``sshpass -p``, ``docker login -p``); and the credentials of an
  ``Authorization: Basic`` header (unless they decode to a placeholder, ``user:password``).
  Placeholders (``""``, ``***``, ``<password>``, ``${VAR}``, ``$VAR``, ``changeme``...) are
  skipped, and "password" in prose is not a password.
* ``NAME``: people's names, only with an optional token-classification model
  (:class:`NameDetector`, StarPII-compatible labels); full names only, as StarCoder did.
* ``PHONE``: telephone numbers, off by default (name it in ``kinds`` to turn it on):
  international numbers written with ``+`` and North American numbers written
  ``(415) 201-5550`` or ``415-201-5550``. The fictional 555-0100 to 555-0199 numbers are
  documentation and are skipped.

Redaction (:func:`redact`) replaces EMAIL, KEY, PASSWORD, NAME and PHONE spans with
``<EMAIL>``, ``<KEY>``, ``<PASSWORD>``, ``<NAME>`` and ``<PHONE>``, and an IP address with a
documentation address of the same family (RFC 5737 / RFC 3849), the same address always
getting the same stand-in within a text. StarCoder used private-range stand-ins; documentation
ranges are never reported, so redacting twice changes nothing.

The :class:`PiiStep` ("pii") redacts at index time (``mode="index"``) every string of a record:
the text, the display fields and the provenance (``meta``: owner emails, passwords in repository
URLs), keeping the ``id`` and ``swhid`` identifiers; or it only counts (``mode="display"``) and
leaves redaction to whoever shows the record (the app calls :func:`redact` on texts and
:func:`redact_record` on fields and provenance).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import itertools
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from spacerini.errors import DependencyMissingError
from spacerini.preprocess.base import BaseStep, StepOptionError, as_names, check_bool, check_choice
from spacerini.records import Doc

logger = logging.getLogger(__name__)

EMAIL = "EMAIL"
IP_ADDRESS = "IP_ADDRESS"
KEY = "KEY"
PASSWORD = "PASSWORD"
NAME = "NAME"
PHONE = "PHONE"
#: Every kind, in the order overlaps are resolved (earlier wins on a tie in length).
KINDS: tuple[str, ...] = (KEY, PASSWORD, EMAIL, IP_ADDRESS, NAME, PHONE)
#: Kinds the rule-based detectors find by default (NAME needs a model).
RULE_KINDS: tuple[str, ...] = (KEY, PASSWORD, EMAIL, IP_ADDRESS)
#: Rule-based kinds that are off unless named in ``kinds``.
OPTIONAL_KINDS: tuple[str, ...] = (PHONE,)
#: The kinds looked for when none are named (NAME only with a names model).
DEFAULT_KINDS: tuple[str, ...] = (*RULE_KINDS, NAME)
#: Keys whose values are identifiers, not personal data: :func:`redact_record` keeps them.
IDENTIFIER_KEYS: frozenset[str] = frozenset({"id", "swhid"})
#: The key of the owner names (``meta`` or ``fields``): in index mode an owner's email becomes
#: :func:`owner_pseudonym`, not ``<EMAIL>``, so that owners stay apart and can still opt out.
OWNER_KEY = "owner"

PLACEHOLDERS: dict[str, str] = {
    EMAIL: "<EMAIL>", KEY: "<KEY>", PASSWORD: "<PASSWORD>", NAME: "<NAME>", PHONE: "<PHONE>",
}  # fmt: skip
#: Stand-ins for IP addresses: documentation ranges (RFC 5737, RFC 3849), used in turn.
IPV4_STANDINS: tuple[str, ...] = ("192.0.2.1", "198.51.100.1", "203.0.113.1", "192.0.2.2", "198.51.100.2")
IPV6_STANDINS: tuple[str, ...] = ("2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8::4", "2001:db8::5")
#: Public DNS resolvers StarCoder left unredacted (bigcode-dataset pii/ner/pii_redaction/utils.py).
POPULAR_DNS_SERVERS: frozenset[str] = frozenset(
    {
        "8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "76.76.19.19", "76.223.122.150", "9.9.9.9",
        "149.112.112.112", "208.67.222.222", "208.67.220.220", "8.26.56.26", "8.20.247.20",
        "94.140.14.14", "94.140.15.15", "2001:4860:4860::8888", "2001:4860:4860::8844",
        "2606:4700:4700::1111", "2606:4700:4700::1001",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PiiSpan:
    """One piece of personal or secret information in a text.

    Attributes:
        start: Offset of the first character (Python string index).
        end: Offset one past the last character.
        kind: One of :data:`KINDS`.
        text: ``text[start:end]``.
    """

    start: int
    end: int
    kind: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        """Returns the span as a JSON-serialisable dict."""
        return {"start": self.start, "end": self.end, "kind": self.kind, "text": self.text}


class _Text:
    """A text with its lower-cased copy, for finding the lines worth running a regex on.

    Running every detector's regex over all of a file is slow (a few MB/s); cheap substring
    searches (C speed) find the lines that could hold a match, and the regexes run on those
    lines only. Matches therefore never cross a line break (values in the patterns cannot).
    The lines found for a set of needles are kept: several detectors share their needles.
    """

    __slots__ = ("text", "lowered", "_lines", "_one_line")

    def __init__(self, text: str) -> None:
        self.text = text
        lowered = text.lower()
        self.lowered = lowered if len(lowered) == len(text) else None  # some characters lower to two
        self._lines: dict[tuple[tuple[str, ...], bool], list[tuple[int, int]]] = {}
        self._one_line = "\n" not in text  # short fields (owners, paths, URLs): no line search

    def lines_with(self, needles: tuple[str, ...], *, lower: bool = True) -> list[tuple[int, int]]:
        """Returns the (start, end) of each line holding one of ``needles``, in order."""
        key = (needles, lower)
        known = self._lines.get(key)
        if known is None:
            known = self._lines[key] = self._find_lines(needles, lower=lower)
        return known

    def _find_lines(self, needles: tuple[str, ...], *, lower: bool) -> list[tuple[int, int]]:
        text = self.text
        haystack = self.lowered if lower else text
        if haystack is None:
            return [(0, len(text))]
        if self._one_line:
            return [(0, len(text))] if any(needle in haystack for needle in needles) else []
        spans: dict[int, int] = {}
        for needle in needles:
            index = haystack.find(needle)
            while index != -1:
                start = text.rfind("\n", 0, index) + 1
                end = text.find("\n", index)
                end = len(text) if end == -1 else end
                spans[start] = end
                index = haystack.find(needle, end)
        return sorted(spans.items())

    def line_of(self, index: int) -> tuple[int, int]:
        """Returns the (start, end) of the line holding ``index``."""
        start = self.text.rfind("\n", 0, index) + 1
        end = self.text.find("\n", index)
        return start, len(self.text) if end == -1 else end

    def finditer(
        self, pattern: re.Pattern[str], needles: tuple[str, ...], *, lower: bool = True
    ) -> Iterable[re.Match[str]]:
        """Yields the matches of ``pattern`` on the lines holding one of ``needles``."""
        for start, end in self.lines_with(needles, lower=lower):
            yield from pattern.finditer(self.text, start, end)


# ------------------------------------------------------------------------------------- emails
_EMAIL = re.compile(
    r"(?<![\w.%+\-])(?<!//)"  # not the user of scheme://user@host; a path's /alice@mail.org/ is an address
    r"([A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24})"
    r"(?![\w\-@]|\.[A-Za-z0-9])"
)
_RESERVED_DOMAINS = ("example.com", "example.org", "example.net", "example", "test", "invalid", "localhost")
_URL_USERINFO = re.compile(r"://[^\s/@:]*:[^\s/@]*$")
_FILE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tif", "tiff"})


def _emails(doc: _Text) -> Iterable[PiiSpan]:
    text = doc.text
    for match in doc.finditer(_EMAIL, ("@",), lower=False):
        value = match.group(1)
        domain = value.rsplit("@", 1)[1].lower()
        if any(domain == d or domain.endswith("." + d) for d in _RESERVED_DOMAINS):
            continue
        if domain.rsplit(".", 1)[1] in _FILE_SUFFIXES:
            continue
        start, end = match.span(1)
        if _URL_USERINFO.search(text, max(0, start - 200), start):
            continue  # the password and host of scheme://user:password@host
        if text[end : end + 1] == ":" and end + 1 < len(text) and not text[end + 1].isspace():
            continue  # git@github.com:owner/repo.git
        yield PiiSpan(start, end, EMAIL, value)


# ---------------------------------------------------------------------------------------- ips
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"(?<![\w.])({_OCTET}(?:\.{_OCTET}){{3}})(?![\w]|\.[0-9])")
_IPV6 = re.compile(r"(?<![\w:.])((?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4})(?![\w:])")
# Cheap pre-filters that start with a literal character (the regex engine scans for it fast).
_IPV4_CANDIDATE = re.compile(r"\.\d{1,3}\.\d{1,3}\.\d")
_IPV6_FULL = re.compile(r":[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")
_VERSION_BEFORE = re.compile(
    r"(?:\b(?:version|ver|release|v|sections?|specs?|rfc)|§|==|>=|<=|~=|[A-Za-z]/)\s*:?\s*[\"']?$", re.IGNORECASE
)
_IP_CONTEXT = re.compile(r"\b(?:ip|ips|ipv4|dns|server|host|hostname|addr|address)\b", re.IGNORECASE)


def is_public_ip(value: str) -> bool:
    """Returns True for a valid, globally routable IP address that is not a popular DNS resolver."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return address.is_global and not address.is_multicast and value not in POPULAR_DNS_SERVERS


def _line_around(text: str, start: int, end: int, *, reach: int = 80) -> str:
    """Returns the text around a match, within its own line and ``reach`` characters."""
    left = text.rfind("\n", max(0, start - reach), start) + 1 or max(0, start - reach)
    right = text.find("\n", end, end + reach)
    return text[max(left, start - reach) : right if right != -1 else end + reach]


def _ips(doc: _Text) -> Iterable[PiiSpan]:
    text = doc.text
    lines = sorted({doc.line_of(m.start()) for m in _IPV4_CANDIDATE.finditer(text)})
    for start, end in lines:
        for match in _IPV4.finditer(text, start, end):
            value = match.group(1)
            if not is_public_ip(value):
                continue
            begin, finish = match.span(1)
            if _VERSION_BEFORE.search(text[max(0, begin - 12) : begin]):
                continue
            if len(value) == 7 and not _IP_CONTEXT.search(_line_around(text, begin, finish)):
                continue
            yield PiiSpan(begin, finish, IP_ADDRESS, value)
    lines = set(doc.lines_with(("::",), lower=False))
    lines.update(doc.line_of(m.start()) for m in _IPV6_FULL.finditer(text))
    for start, end in sorted(lines):
        for match in _IPV6.finditer(text, start, end):
            value = match.group(1)
            groups = [g for g in value.split(":") if g]
            if len(groups) < 3 or not any(c.isdigit() for c in value):
                continue  # slices (a[5::-2]) and short forms: real addresses name more groups
            if is_public_ip(value):
                yield PiiSpan(match.start(1), match.end(1), IP_ADDRESS, value)


# --------------------------------------------------------------------------------------- keys
_KNOWN_KEYS = re.compile(
    r"(?<![A-Za-z0-9])("
    r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{36,255}"  # GitHub tokens
    r"|github_pat_[A-Za-z0-9_]{50,255}"  # GitHub fine-grained tokens
    r"|glpat-[A-Za-z0-9_\-]{20,}"  # GitLab personal access tokens
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"  # Slack tokens
    r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe secret/restricted keys
    r"|AIza[0-9A-Za-z_\-]{35}"  # Google API keys
    r"|hf_[A-Za-z]{30,}"  # Hugging Face tokens
    r"|sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{32,}"  # OpenAI / Anthropic keys
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"  # JSON Web Tokens
    r")(?![A-Za-z0-9])"
)
_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:RSA |DSA |EC |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY(?: BLOCK)?)-----"
    r".*?-----END \1-----",
    re.DOTALL,
)
_SECRET_NAME = (
    r"[\w.\-]*?(?:api[_\-]?key|apikey|secret|token|access[_\-]?key|private[_\-]?key|auth[_\-]?key|credentials?|"
    r"client[_\-]?key|signing[_\-]?key|encryption[_\-]?key|master[_\-]?key)"
    r"(?:[_\-]?(?:key|value|string|str|id|b64|base64|hex))?s?(?![\w])"
)
_ASSIGNED_SECRET = re.compile(
    rf"(?i)(?<![\w])({_SECRET_NAME})[\"']?[ \t]*(?::[ \t]*[\w\[\]., ]{{1,30}}?[ \t]*)?(?:=|:|=>|:=)[ \t]*"
    r"(?:(?:[rRbBuU]?(?P<q>[\"'`]))(?P<value>[A-Za-z0-9+/=_\-.~:]{16,})(?P=q)"
    # Unquoted (.env, YAML, INI, ~/.aws/credentials, prose): not a call, an index or an attribute.
    r"|(?P<bare>[A-Za-z0-9+/=_\-.~]{16,})(?![\w+/=\-.~(\[]))"
)
#: A 40-character AWS secret access key (base64 alphabet), looked for on lines saying aws/secret.
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])")
_AUTHORIZATION = re.compile(
    r"(?i)\b(?:proxy-)?authorization\b[\"'\]]*[ \t]*[:=,]?[ \t]*[\"'`]?(?P<scheme>basic|bearer|token)[ \t]+"
    r"(?P<value>[A-Za-z0-9+/=_\-.~]{8,})"
)
_NOT_SECRET_NAME = re.compile(r"(?i)(?:sha\d*|md5|hash|digest|checksum|commit|etag|uuid|nonce|id)$")


def shannon_entropy(value: str) -> float:
    """Returns the Shannon entropy of a string in bits per character."""
    if not value:
        return 0.0
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_random(value: str) -> bool:
    """Returns True when a string looks like a generated secret rather than a word or a path.

    Mixed letters and digits with high entropy: above 3.0 bits per character for hexadecimal
    strings, 3.5 otherwise (detect-secrets uses 3.0 and 4.5 with no context; a telling name
    lets this be lower).
    """
    if len(value) < 16 or not any(c.isdigit() for c in value) or not any(c.isalpha() for c in value):
        return False
    if value.startswith(("/", "./", "../", "~")) or "://" in value:
        return False  # a path or a URL
    if value.count(".") >= 2 and all(part.isidentifier() for part in value.split(".")):
        return False  # a dotted name
    hexadecimal = all(c in "0123456789abcdefABCDEF" for c in value)
    return shannon_entropy(value) >= (3.0 if hexadecimal else 3.5)


#: Case-sensitive prefixes of the known key formats (searched in the original text).
_KEY_NEEDLES = (
    "AKIA", "ASIA", "ABIA", "ACCA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xox",
    "sk_", "rk_", "AIza", "hf_", "sk-", "eyJ",
)  # fmt: skip
_SECRET_NEEDLES = ("key", "secret", "token", "credential")
_KEY_PREFIX = re.compile(r"^(?:github_pat_|[a-z]{2,5}[_\-](?:(?:live|test|proj|ant)[_\-])?|AKIA|ASIA|ABIA|ACCA|AIza)")


_NAME_PART = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def _looks_like_a_name(value: str) -> bool:
    """Returns True for an identifier made of words (``Ed25519PrivateKey``, ``load_token_v2``).

    Its letter runs average four letters or more and each run of three or more has a vowel; in
    a generated token, digits and case changes cut the runs to one or two letters, and longer
    runs of random letters soon lack a vowel.
    """
    if not value.isidentifier():
        return False
    words = [part for part in _NAME_PART.findall(value) if not part.isdigit()]
    if not words or sum(map(len, words)) < 4 * len(words):
        return False
    return all(len(word) < 3 or any(c in "aeiouyAEIOUY" for c in word) for word in words)


def _is_filler(value: str) -> bool:
    """Returns True for a known key shape filled with one or two characters (``ghp_XXXX...``)."""
    body = _KEY_PREFIX.sub("", value)
    return len(set(body.lower())) <= 2


def _is_aws_secret(value: str) -> bool:
    """Returns True when a 40-character base64 word looks like an AWS secret, not a hash or a path."""
    if all(c in "0123456789abcdefABCDEF" for c in value):
        return False  # a SHA-1
    if not (any(c.isupper() for c in value) and any(c.islower() for c in value) and any(c.isdigit() for c in value)):
        return False
    return looks_random(value) and not _looks_like_a_name(value)


def _keys(doc: _Text) -> Iterable[PiiSpan]:
    text = doc.text
    if "-----BEGIN" in text:
        for match in _PRIVATE_KEY.finditer(text):
            yield PiiSpan(match.start(), match.end(), KEY, match.group(0))
    for match in doc.finditer(_KNOWN_KEYS, _KEY_NEEDLES, lower=False):
        if not _is_filler(match.group(1)):
            yield PiiSpan(match.start(1), match.end(1), KEY, match.group(1))
    for match in doc.finditer(_ASSIGNED_SECRET, _SECRET_NEEDLES):
        name = match.group(1)
        group = "value" if match.group("value") is not None else "bare"
        value = match.group(group)
        if _NOT_SECRET_NAME.search(name) or not looks_random(value):
            continue
        if group == "bare" and _looks_like_a_name(value):
            continue  # a type or a variable (key: Ed25519PrivateKey, token = load_token_v2)
        yield PiiSpan(match.start(group), match.end(group), KEY, value)
    for match in doc.finditer(_AWS_SECRET, ("aws", "secret")):
        if _is_aws_secret(match.group(1)):
            yield PiiSpan(match.start(1), match.end(1), KEY, match.group(1))
    for match in doc.finditer(_AUTHORIZATION, ("authorization",)):
        yield from _authorization(match)


def _authorization(match: re.Match[str]) -> Iterable[PiiSpan]:
    """The secret of an ``Authorization`` header: a bearer token (KEY) or basic credentials (PASSWORD)."""
    value = match.group("value")
    if _is_placeholder(value) or _is_filler(value):
        return
    span = (match.start("value"), match.end("value"))
    if match.group("scheme").lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            decoded = None
        if decoded is not None and ":" in decoded and _is_placeholder(decoded.split(":", 1)[1]):
            return  # user:password, user:<password>
        yield PiiSpan(*span, PASSWORD, value)
    elif len(value) >= 12 and any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
        yield PiiSpan(*span, KEY, value)


# ---------------------------------------------------------------------------------- passwords
_PASSWORD_NAME = r"[\w.\-]*?(?:password|passwd|passphrase|pwd|(?<![A-Za-z0-9])pass(?![A-Za-z0-9_]))[\w.\-]*"
_QUOTED_PASSWORD = re.compile(
    rf"(?i)(?<![\w])({_PASSWORD_NAME})[\"']?\s*(?::\s*[\w\[\]., ]{{1,30}}?\s*)?(?:==|=|:|=>|:=)\s*"
    r"(?:[rRbBuUfF]?(?P<q>[\"'`]))(?P<value>[^\"'`\n\\]{1,200})(?P=q)"
)
_PASSWORD_ARGUMENT = re.compile(
    r"(?i)(?P<k>[\"'])((?:[\w\-]*[_\-])?(?:password|passwd|passphrase|pwd))(?P=k)\s*,\s*(?P<q>[\"'])(?P<value>[^\"'`\n\\]{1,200})(?P=q)"
)
_BARE_PASSWORD = re.compile(
    rf"(?im)^[ \t]*(?:export[ \t]+|set[ \t]+)?(?:-[ \t]+)?({_PASSWORD_NAME})[ \t]*[:=][ \t]*"
    r"(?P<value>[^\s\"'`#;(){}\[\],][^\s\"'`;(){}\[\],]{0,199})[ \t]*(?:[#;].*)?$"
)  # "#" starts a comment only after a space (YAML, .env): "Kx8#mQ2v" is one value
#: ``password VALUE`` in a .netrc entry (``machine HOST login USER password VALUE``, one line or several).
_NETRC_PASSWORD = re.compile(r"(?im)(?:^|[ \t])password[ \t]+(?P<value>[^\s\"'`]{1,200})[ \t]*$")
#: ``NAME=value`` anywhere in a line: shell (``PGPASSWORD=... psql``, ``-e X_PASSWORD=...``), flags, queries.
_INLINE_PASSWORD = re.compile(
    rf"(?i)(?<![\w.$])({_PASSWORD_NAME})=(?P<value>[^\s\"'`;&|<>(){{}}\[\],]{{1,200}})(?P<after>.?)"
)
#: Passwords given on a command line, each with the words that must be on its line.
_COMMAND_PASSWORDS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    # mysql -pSECRET (attached: "-p dbname" asks for the password and names a database)
    (
        re.compile(
            r"(?<![\w\-])(?i:mysql|mysqldump|mysqladmin|mysqlimport|mysqlshow|mysqlcheck|mariadb|mariadb-dump)\b"
            r"[^\n]*?[ \t]-p(?P<q>['\"]?)(?P<value>[^\s'\"]+)(?P=q)(?![^\s'\"])"
        ),
        ("mysql", "mariadb"),
    ),
    # curl -u user:pass, curl --user user:pass
    (
        re.compile(
            r"(?<![\w\-])curl\b[^\n]*?[ \t](?:-u|--user)(?:[ \t]+|=)(?P<q>['\"]?)[^\s:'\"]*:(?P<value>[^\s'\"]+)"
            r"(?P=q)(?![^\s'\"])"
        ),
        ("curl",),
    ),
    # sshpass -p SECRET, docker/podman/helm login -p SECRET
    (
        re.compile(
            r"(?<![\w\-])(?:sshpass|(?:docker|podman|helm registry|buildah|skopeo) login)\b[^\n]*?[ \t]"
            r"(?:-p|--password)(?:[ \t]+|=)(?P<q>['\"]?)(?P<value>[^\s'\"]+)(?P=q)(?![^\s'\"])"
        ),
        ("sshpass", " login"),
    ),
)
_NOT_PASSWORD_NAME = re.compile(
    r"(?i)(?:label|prompt|field|hint|message|msg|placeholder|text|help|title|error|regex|pattern|policy|hash|"
    r"hashed|length|len|min|max|reset|url|path|file|type|name|key|id|input|confirm|form|widget|column|attr|"
    r"param|flag|option|env|var|setting|chars|rules|strength|expiry|expires|age|count|attempts|state|status|"
    r"mode|enabled|pem|txt|crt|cfg|ini|json|ya?ml|log)s?$"
)
_URL_PASSWORD = re.compile(r"(?i)\b[a-z][a-z0-9+.\-]{1,20}://[^\s:/@\"']{1,64}:(?P<value>[^\s:/@\"']{1,128})@[\w\-.\[]")
_PLACEHOLDER = re.compile(
    r"(?i)^(?:\*+|x+|\.+|-+|_+|<[^>]*>|\$\{?[\w.]+\}?|\{\{.*\}\}|%\(\w+\)[sd]?|%[sd]|%\w+%|\{\w*\}|"
    r"(?:your|my|the|some|enter|example|sample|dummy|fake|test|new|old)[_\-]?[A-Za-z_\-]*|"
    r"password\d*|passwd|pass|pwd|secret|changeme|change[_\-]?me|none|null|nil|true|false|undefined|"
    r"required|optional|str|string|bytes|int|env|yes|no|on|off|os\..*|self\..*|\w+\(.*|\w+\[.*)$"
)


def _is_placeholder(value: str) -> bool:
    value = value.strip()
    return not value or bool(_PLACEHOLDER.match(value)) or bool(re.fullmatch(r"[A-Z][A-Z0-9]*_[A-Z0-9_]+", value))


_PASSWORD_NEEDLES = ("pass", "pwd")


def _passwords(doc: _Text) -> Iterable[PiiSpan]:
    quoted = itertools.chain(
        doc.finditer(_QUOTED_PASSWORD, _PASSWORD_NEEDLES), doc.finditer(_PASSWORD_ARGUMENT, _PASSWORD_NEEDLES)
    )
    for match in quoted:
        value = match.group("value")
        if _NOT_PASSWORD_NAME.search(match.group(1)) or _is_placeholder(value) or len(value.split()) > 2:
            continue
        yield PiiSpan(match.start("value"), match.end("value"), PASSWORD, value)
    for match in doc.finditer(_BARE_PASSWORD, _PASSWORD_NEEDLES):
        value = match.group("value")
        if _NOT_PASSWORD_NAME.search(match.group(1)) or _is_placeholder(value):
            continue
        if value.replace("_", "").isalpha() or re.fullmatch(r"[A-Za-z_]\w*(?:\.\w+)+", value):
            continue  # a type, a variable or an attribute (password: str, password: args.pw)
        yield PiiSpan(match.start("value"), match.end("value"), PASSWORD, value)
    for match in doc.finditer(_INLINE_PASSWORD, _PASSWORD_NEEDLES):
        value, after = match.group("value"), match.group("after")
        if _NOT_PASSWORD_NAME.search(match.group(1)) or _is_placeholder(value) or after in ("(", "["):
            continue
        if value.replace("_", "").isalpha() or (value.isidentifier() and after in (",", ")")):
            continue  # a variable passed on (login(user=user, password=pw))
        if re.fullmatch(r"[A-Za-z_]\w*(?:\.\w+)+", value):
            continue  # an attribute
        yield PiiSpan(match.start("value"), match.end("value"), PASSWORD, value)
    if "machine" in doc.text:
        for match in doc.finditer(_NETRC_PASSWORD, ("password",)):
            value = match.group("value")
            if not _is_placeholder(value) and not value.isalpha():
                yield PiiSpan(match.start("value"), match.end("value"), PASSWORD, value)
    for pattern, needles in _COMMAND_PASSWORDS:
        for match in doc.finditer(pattern, needles):
            value = match.group("value")
            if not _is_placeholder(value):
                yield PiiSpan(match.start("value"), match.end("value"), PASSWORD, value)
    for match in doc.finditer(_URL_PASSWORD, ("://",), lower=False):
        value = match.group("value")
        if not _is_placeholder(value):
            yield PiiSpan(match.start("value"), match.end("value"), PASSWORD, value)


# ------------------------------------------------------------------------------------- phones
#: Where a phone number may be: a "+" and a digit, or a group of four digits after - or . (NANP).
_PHONE_CANDIDATE = re.compile(r"\+\d|[\-.]\d{4}(?!\d)")
_PHONE = re.compile(
    r"(?<![\w+\-./=#])(?<!\d:)("
    r"\+\d{1,3}(?:[ \-.]?\(\d{1,4}\))?(?:[ \-.]?\d{1,5}){2,5}"  # +44 20 7946 0958, +1 (415) 201-5550
    r"|\(\d{3}\)[ \-.]?\d{3}[\-.]\d{4}"  # (415) 201-5550
    r"|\d{3}[\-.]\d{3}[\-.]\d{4}"  # 415-201-5550
    r")(?![\w]|[\-./]\d)"
)
_FICTIONAL_PHONE = re.compile(r"555\D?01\d\d$")


def _phones(doc: _Text) -> Iterable[PiiSpan]:
    text = doc.text
    lines = sorted({doc.line_of(m.start()) for m in _PHONE_CANDIDATE.finditer(text)})
    for match in (m for start, end in lines for m in _PHONE.finditer(text, start, end)):
        value = match.group(1)
        digits = sum(c.isdigit() for c in value)
        if not 9 <= digits <= 15 or _FICTIONAL_PHONE.search(value):
            continue
        yield PiiSpan(match.start(1), match.end(1), PHONE, value)


# ------------------------------------------------------------------------------------ merging
_RULES: dict[str, Callable[[_Text], Iterable[PiiSpan]]] = {
    KEY: _keys,
    PASSWORD: _passwords,
    EMAIL: _emails,
    IP_ADDRESS: _ips,
    PHONE: _phones,
}


def _resolve(spans: Iterable[PiiSpan]) -> list[PiiSpan]:
    """Drops overlapping spans: a longer span wins, then the kind earlier in :data:`KINDS`.

    Greedy in that order: a span is kept unless it overlaps one kept before it. Spans are first
    cut into runs that overlap one another (sorted by start, a run goes on while the next span
    starts before the furthest end so far); two spans of different runs never overlap, so the
    greedy runs within each run alone and gives what it gives over all the spans at once. A text
    with many spans (a mail archive with 100,000 addresses) costs ``n log n``, not ``n**2``.
    """
    rank = {kind: i for i, kind in enumerate(KINDS)}

    def priority(s: PiiSpan) -> tuple[int, int, int]:
        return (-(s.end - s.start), rank.get(s.kind, len(KINDS)), s.start)

    by_start = sorted(spans, key=lambda s: (s.start, s.end))
    taken: list[PiiSpan] = []
    i = 0
    while i < len(by_start):
        j = i + 1
        reach = by_start[i].end
        while j < len(by_start) and by_start[j].start < reach:
            reach = max(reach, by_start[j].end)
            j += 1
        if j == i + 1:
            taken.append(by_start[i])
        else:
            kept: list[PiiSpan] = []
            for span in sorted(by_start[i:j], key=priority):
                if all(span.end <= t.start or span.start >= t.end for t in kept):
                    kept.append(span)
            taken.extend(kept)
        i = j
    # The order of kept spans: by start, then as the greedy took them.
    return sorted(taken, key=lambda s: (s.start, *priority(s)))


def find_pii(
    text: str,
    *,
    kinds: Sequence[str] | None = None,
    names: NameDetector | Callable[[str], Iterable[PiiSpan]] | None = None,
) -> list[PiiSpan]:
    """Finds personal and secret information in a text.

    Args:
        text: The text to scan.
        kinds: The kinds to look for (default: :data:`DEFAULT_KINDS`, the rule-based kinds but
            PHONE, plus NAME when ``names`` is given; PHONE only when named).
        names: A :class:`NameDetector` (or any callable returning NAME spans) for people's names.

    Returns:
        Non-overlapping spans sorted by start offset.

    Raises:
        StepOptionError: An unknown kind was named.
    """
    wanted = _check_kinds(kinds)
    spans: list[PiiSpan] = []
    scanned = _Text(text)
    for kind in (*RULE_KINDS, *OPTIONAL_KINDS):
        if kind in wanted:
            spans.extend(_RULES[kind](scanned))
    if names is not None and NAME in wanted:
        spans.extend(names(text))
    return _resolve(spans)


def _check_kinds(kinds: Sequence[str] | str | None) -> frozenset[str]:
    if kinds is None:
        return frozenset(DEFAULT_KINDS)
    wanted = as_names(kinds, what="pii kinds") or ()
    unknown = sorted(set(wanted) - set(KINDS))
    if unknown:
        raise StepOptionError(f"unknown PII kind(s) {', '.join(unknown)}: choose from {', '.join(KINDS)}")
    return frozenset(wanted)


def redact(text: str, spans: Sequence[PiiSpan] | None = None) -> str:
    """Replaces personal and secret information with StarPII-style placeholders.

    Args:
        text: The text.
        spans: The spans to replace (default: :func:`find_pii` with the rule-based detectors).
            They must not overlap.

    Returns:
        The text with ``<EMAIL>``, ``<KEY>``, ``<PASSWORD>``, ``<NAME>`` and documentation IP
        addresses in place of what was found.
    """
    if spans is None:
        spans = find_pii(text)
    if not spans:
        return text
    parts: list[str] = []
    standins: dict[str, str] = {}
    position = 0
    for span in sorted(spans, key=lambda s: s.start):
        if span.start < position:
            continue  # overlapping input: keep the earlier span
        parts.append(text[position : span.start])
        parts.append(_replacement(span, standins))
        position = span.end
    parts.append(text[position:])
    return "".join(parts)


def _replacement(span: PiiSpan, standins: dict[str, str]) -> str:
    if span.kind != IP_ADDRESS:
        return PLACEHOLDERS.get(span.kind, f"<{span.kind}>")
    known = standins.get(span.text)
    if known is None:
        family = IPV6_STANDINS if ":" in span.text else IPV4_STANDINS
        used = sum(1 for v in standins if (":" in v) == (":" in span.text))
        known = standins[span.text] = family[used % len(family)]
    return known


def redact_record(value: Any, *, kinds: Sequence[str] | None = None) -> Any:
    """Redacts every string in a value (a text, or lists, tuples and dicts of them, nested).

    For display-time redaction of what a record holds besides its text: display fields and
    provenance (``Doc.fields``, ``Doc.meta``, an owners list, a search hit's ``meta``).

    Args:
        value: A string, a list/tuple/dict holding strings at any depth, or anything else
            (returned as is).
        kinds: The kinds to redact (default: :data:`DEFAULT_KINDS`; NAME needs a model, so the
            rule-based ones).

    Returns:
        The value with each string passed through :func:`redact`: dicts keep their keys, and
        the values under :data:`IDENTIFIER_KEYS` (``id``, ``swhid``) are kept as they are;
        lists stay lists and tuples become plain tuples. The same object comes back when
        nothing was found.

    Raises:
        StepOptionError: An unknown kind was named.
    """
    wanted = tuple(k for k in KINDS if k in _check_kinds(kinds))
    return _redact_value(value, lambda text: find_pii(text, kinds=wanted), Counter())


def owner_pseudonym(email: str) -> str:
    """The stand-in of an owner's email address in a bundle redacted at index time.

    ``<EMAIL:`` + the first 16 hex digits of the SHA-256 of the case-folded address + ``>``. It
    keeps owners apart (they would all be ``<EMAIL>`` otherwise, and could no longer be looked up
    or opt out one by one) without storing the address: the owner lookup and ``spacerini optout``
    turn an email they are given into the same stand-in. Like the owner lookup itself, it answers
    "is this address an owner here?" for an address one already knows, and reveals no others.

    Example:
        >>> owner_pseudonym("Jane@Acme.io") == owner_pseudonym("jane@acme.io ")
        True
        >>> owner_pseudonym("jane@acme.io")
        '<EMAIL:630d99ab40db3592>'
    """
    digest = hashlib.sha256(b"spacerini-owner-email\0" + email.strip().casefold().encode("utf-8", "surrogatepass"))
    return f"<EMAIL:{digest.hexdigest()[:16]}>"


def owner_aliases(name: str) -> list[str]:
    """``name`` and, when it is an email address, its :func:`owner_pseudonym` (what to look up)."""
    name = name.strip()
    spans = find_pii(name, kinds=[EMAIL]) if "@" in name else []
    if len(spans) == 1 and spans[0].start == 0 and spans[0].end == len(name):
        return [name, owner_pseudonym(name)]
    return [name]


def _redact_owner(value: Any, find: Callable[[str], list[PiiSpan]], counts: Counter[str]) -> Any:
    """:func:`_redact_value` for owner names: emails become :func:`owner_pseudonym`."""
    if isinstance(value, list | tuple):
        items = [_redact_owner(item, find, counts) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    if not isinstance(value, str) or not value:
        return _redact_value(value, find, counts)
    spans = find(value)
    if not spans:
        return value
    counts.update(span.kind for span in spans)
    parts: list[str] = []
    position = 0
    for span in spans:  # sorted, not overlapping
        parts.append(value[position : span.start])
        if span.kind == EMAIL:
            parts.append(owner_pseudonym(span.text))
        else:
            parts.append(redact(span.text, [replace(span, start=0, end=len(span.text))]))
        position = span.end
    parts.append(value[position:])
    return "".join(parts)


def _redact_record_owners(value: Any, find: Callable[[str], list[PiiSpan]], counts: Counter[str]) -> Any:
    """:func:`_redact_value` for a record's ``meta`` or ``fields``, its :data:`OWNER_KEY` by
    :func:`_redact_owner`."""
    if not isinstance(value, Mapping) or OWNER_KEY not in value:
        return _redact_value(value, find, counts)
    redacted = {
        key: item if key in IDENTIFIER_KEYS
        else _redact_owner(item, find, counts) if key == OWNER_KEY
        else _redact_value(item, find, counts)
        for key, item in value.items()
    }  # fmt: skip
    return value if all(redacted[key] is value[key] for key in redacted) else redacted


def _redact_value(value: Any, find: Callable[[str], list[PiiSpan]], counts: Counter[str]) -> Any:
    """Redacts the strings in ``value`` with the spans ``find`` returns, adding the kinds to ``counts``."""
    if isinstance(value, str):
        spans = find(value) if value else []
        if not spans:
            return value
        counts.update(span.kind for span in spans)
        return redact(value, spans)
    if isinstance(value, Mapping):
        redacted = {
            key: item if key in IDENTIFIER_KEYS else _redact_value(item, find, counts) for key, item in value.items()
        }
        return value if all(redacted[key] is value[key] for key in redacted) else redacted
    if isinstance(value, list | tuple):
        items = [_redact_value(item, find, counts) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    return value


# -------------------------------------------------------------------------------------- names
#: Entity labels that mean a person's name (StarPII's NAME; generic NER's PER/PERSON).
NAME_LABELS: frozenset[str] = frozenset({"NAME", "PER", "PERSON"})


class NameDetector:
    """Finds people's names with a local token-classification model (StarPII-compatible labels).

    The model is loaded with ``transformers`` from a local folder or the local Hugging Face
    cache only (``local_files_only``); nothing is downloaded. As in StarCoder's redaction, only
    full names (two or more words) are reported.

    Args:
        model: A model name in the local cache, or a folder.
        threshold: Minimum entity score.
        window: Characters per chunk fed to the model (chunks overlap by 10%).
        device: Torch device index (-1 for CPU).

    Raises:
        DependencyMissingError: transformers is missing or the model is not available locally.
    """

    def __init__(self, model: str | Path, *, threshold: float = 0.5, window: int = 2000, device: int = -1) -> None:
        self.model = str(model)
        self.threshold = threshold
        self.window = window
        if not _model_available(self.model):
            raise DependencyMissingError(
                f"name model {self.model!r} is not available locally: pass a folder holding a token-classification "
                "model (e.g. a downloaded bigcode/starpii) or leave names out"
            )
        try:
            from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline
        except ImportError as exc:  # pragma: no cover - transformers ships with sentence-transformers
            raise DependencyMissingError("names need the transformers package: pip install transformers") from exc
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model, local_files_only=True)
            network = AutoModelForTokenClassification.from_pretrained(self.model, local_files_only=True)
        except OSError as exc:
            raise DependencyMissingError(
                f"name model {self.model!r} is not available locally: pass a folder holding a token-classification "
                "model (e.g. a downloaded bigcode/starpii) or leave names out"
            ) from exc
        self._pipeline = pipeline(
            "token-classification", model=network, tokenizer=tokenizer, aggregation_strategy="simple", device=device
        )

    def __call__(self, text: str) -> list[PiiSpan]:
        """Returns the full-name spans the model finds in ``text``."""
        spans = []
        step = max(1, self.window - self.window // 10)
        for offset in range(0, max(len(text), 1), step):
            chunk = text[offset : offset + self.window]
            if not chunk.strip():
                continue
            for entity in self._pipeline(chunk):
                spans.extend(entities_to_spans([entity], text, offset=offset, threshold=self.threshold))
            if offset + self.window >= len(text):
                break
        return _resolve(spans)


def _model_available(model: str) -> bool:
    """Returns True when ``model`` is a local folder or is in the local Hugging Face cache."""
    if Path(model).expanduser().exists():
        return True
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        return False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        return True
    return isinstance(try_to_load_from_cache(model, "config.json"), str)


def entities_to_spans(
    entities: Iterable[Mapping[str, Any]], text: str, *, offset: int = 0, threshold: float = 0.5
) -> list[PiiSpan]:
    """Turns token-classification pipeline entities into NAME spans of full names.

    Args:
        entities: Dicts with ``entity_group`` (or ``entity``), ``score``, ``start`` and ``end``.
        text: The whole text (``start``/``end`` are relative to ``text[offset:]``).
        offset: Where the chunk the entities come from starts in ``text``.
        threshold: Minimum score.

    Returns:
        NAME spans of two or more words.
    """
    spans = []
    for entity in entities:
        label = str(entity.get("entity_group") or entity.get("entity") or "").upper()
        label = label.split("-", 1)[-1]
        if label not in NAME_LABELS or float(entity.get("score", 0.0)) < threshold:
            continue
        start, end = int(entity["start"]) + offset, int(entity["end"]) + offset
        value = text[start:end]
        stripped = value.strip()
        if len(stripped.split()) < 2:
            continue
        start += len(value) - len(value.lstrip())
        spans.append(PiiSpan(start, start + len(stripped), NAME, stripped))
    return spans


# --------------------------------------------------------------------------------------- step
#: Field and provenance values up to this many characters have their spans remembered (per pass)...
_KNOWN_CHARS = 256
#: ... up to this many distinct values, then the memory starts afresh.
_KNOWN_VALUES = 50_000

class PiiStep(BaseStep):
    """Finds PII in each document and redacts it at index time, or only counts it ("pii").

    Every string of a record is scanned: ``Doc.text``, the values of ``Doc.fields`` and of
    ``Doc.meta`` (the provenance: owner, repository URL...), nested lists and dicts included.
    Keys are kept, and so are the values under :data:`IDENTIFIER_KEYS` (``id``, ``swhid``).
    In index mode an email under :data:`OWNER_KEY` becomes its :func:`owner_pseudonym`, so
    that the owner index keeps owners apart and an owner can still be looked up and opt out by
    address. The report counts the spans of each kind across all of them.

    Args:
        mode: "index" redacts the text, the display fields and the provenance before indexing;
            "display" leaves the record as is and records the mode, so the app redacts with
            :func:`redact` and :func:`redact_record` when it shows a document.
        kinds: The kinds to handle (default: :data:`DEFAULT_KINDS`, NAME only with a names
            model; PHONE only when named).
        names_model: A local token-classification model (name in the local cache, or folder)
            for people's names; or a callable returning NAME spans.
        fields: Also scan (and in "index" mode redact) ``Doc.fields``; the text and the
            provenance are always scanned.

    Raises:
        StepOptionError: Bad mode or kinds.
        DependencyMissingError: The names model cannot be loaded locally.
    """

    name = "pii"

    def __init__(
        self,
        *,
        mode: str = "index",
        kinds: Sequence[str] | str | None = None,
        names_model: str | Path | Callable[[str], Iterable[PiiSpan]] | None = None,
        fields: bool = True,
    ) -> None:
        super().__init__()
        self.mode = check_choice(mode, ("index", "display"), what="pii mode")
        self.kinds = _check_kinds(kinds)
        if kinds is not None and not self.kinds:
            raise StepOptionError(f"pii kinds is empty: name at least one of {', '.join(KINDS)}")
        if kinds is not None and NAME in self.kinds and names_model is None:
            raise StepOptionError("the PII kind NAME needs a names model: pass pii.names_model=FOLDER, or leave NAME out")
        if names_model is None or callable(names_model):
            self.names = names_model
        else:
            self.names = NameDetector(names_model)
        if self.names is None:
            self.kinds = self.kinds - {NAME}
        self.fields = check_bool(fields, what="pii fields")
        self.params = {
            "mode": self.mode,
            "kinds": [k for k in KINDS if k in self.kinds],
            "names_model": None if names_model is None else (str(names_model) if not callable(names_model) else "callable"),
            "fields": self.fields,
            "placeholders": {**PLACEHOLDERS, IP_ADDRESS: "documentation addresses"},
        }
        self._kinds = tuple(k for k in KINDS if k in self.kinds)
        self._found: Counter[str] = Counter()
        self._docs_with_pii = 0
        self._known: dict[str, list[PiiSpan]] = {}

    def _reset(self) -> None:
        self._found = Counter()
        self._docs_with_pii = 0
        self._known: dict[str, list[PiiSpan]] = {}

    def _find(self, text: str) -> list[PiiSpan]:
        return find_pii(text, kinds=self._kinds, names=self.names)

    def _find_short(self, text: str) -> list[PiiSpan]:
        """:meth:`_find` for field and provenance values, which repeat (owners, licences, languages)."""
        if len(text) > _KNOWN_CHARS:
            return self._find(text)
        known = self._known.get(text)
        if known is None:
            if len(self._known) >= _KNOWN_VALUES:
                self._known.clear()
            known = self._known[text] = self._find(text)
        return known

    def _process(self, doc: Doc) -> Doc | None:
        counts: Counter[str] = Counter()
        spans = self._find(doc.text)
        counts.update(span.kind for span in spans)
        short = self._find_short
        redact_owners = _redact_record_owners if self.mode == "index" else _redact_value
        fields = redact_owners(doc.fields, short, counts) if self.fields and doc.fields else doc.fields
        meta = redact_owners(doc.meta, short, counts) if doc.meta else doc.meta
        if not counts:
            return doc
        self._docs_with_pii += 1
        self._found.update(counts)
        for kind in counts:
            self._example(kind, doc.id)
        if self.mode == "display":
            return doc
        self.changed.update(counts)
        changes: dict[str, Any] = {}
        if spans:
            changes["text"] = redact(doc.text, spans)
        if fields is not doc.fields:
            changes["fields"] = fields
        if meta is not doc.meta:
            changes["meta"] = meta
        return replace(doc, **changes)

    def _changed_docs(self) -> int:
        return self._docs_with_pii if self.mode == "index" else 0

    def _extra_report(self) -> dict[str, Any]:
        return {"mode": self.mode, "docs_with_pii": self._docs_with_pii, "found": dict(sorted(self._found.items()))}


# --------------------------------------------------------------------------------- evaluation
def score_labelled(
    records: Iterable[Mapping[str, Any]], *, kinds: Sequence[str] = RULE_KINDS
) -> dict[str, dict[str, float | int]]:
    """Scores :func:`find_pii` against labelled texts: precision, recall and F1 per kind.

    A found span counts as correct when a labelled span of the same kind has the same text
    (each labelled span matches at most once).

    Args:
        records: Dicts with ``text`` and ``spans`` (a list of ``{"kind", "text"}``).
        kinds: The kinds to score.

    Returns:
        ``{kind: {"tp", "fp", "fn", "precision", "recall", "f1"}}`` plus ``"all"`` (micro average).
    """
    counts = {kind: Counter() for kind in (*kinds, "all")}
    for record in records:
        expected = Counter((s["kind"], s["text"]) for s in record["spans"] if s["kind"] in kinds)
        found = Counter((s.kind, s.text) for s in find_pii(record["text"], kinds=kinds))
        for (kind, _), n in (expected & found).items():
            counts[kind]["tp"] += n
        for (kind, _), n in (found - expected).items():
            counts[kind]["fp"] += n
        for (kind, _), n in (expected - found).items():
            counts[kind]["fn"] += n
    for kind in kinds:
        counts["all"].update(counts[kind])
    scores: dict[str, dict[str, float | int]] = {}
    for kind, c in counts.items():
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[kind] = {
            "tp": tp, "fp": fp, "fn": fn,
            "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
        }  # fmt: skip
    return scores
