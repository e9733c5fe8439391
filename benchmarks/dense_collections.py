"""Test collections for dense and hybrid retrieval, assembled at run time from data on this machine.

``manpages`` (the main one): the English manual pages installed under ``/usr/share/man`` (Debian
packages: coreutils, util-linux, git, perl, llvm, openssl, ...). Each page is a document: its
text after the NAME section (SYNOPSIS, DESCRIPTION, OPTIONS, ...) converted from roff to plain
text, cut to its first ``max_chars`` characters. Its query is the one-line description from its
NAME section (``ls \\- list directory contents`` gives the query ``list directory contents``),
which the page itself does not carry once NAME is removed; the page is the one relevant document.
The labels are mechanical. Pages that are links or ``.so`` redirects are skipped, and so are
pages whose description (lower-cased) or whose text is shared with another page, so no query has
an unlabelled twin. A family of pages (the name up to its first ``_``, ``-`` or ``.``) gives at
most ``per_family`` pages, chosen at random: without the cap, 16,600 generated ``gcloud_*`` pages
would make up nine tenths of the sample. Queries are split at random into a dev part (for tuning, e.g. the fusion
weight) and a test part (for reporting).

``stdlib``: the CodeSearchNet-style collection kept from earlier runs (standard-library
functions with their docstrings removed; query = the docstring's first sentence).

Both are public, packaged data, need no network, and are rebuilt from the machine each run
(nothing large is committed). ``write_trec`` writes a collection as JSONL + queries TSV + qrels
for ``spacerini index`` / ``spacerini eval``.

Usage: ``python benchmarks/dense_collections.py manpages OUT_DIR [--docs 1000]``.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import json
import random
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from spacerini.records import Doc

MAN_ROOT = Path("/usr/share/man")
MAN_SECTIONS = ("man1", "man5", "man7", "man8")

_FONT = re.compile(r"\\f(\[[^\]]*\]|\(..|.)")
_SIZE = re.compile(r"\\s[+-]?\d+")
_NAMED = re.compile(r"\\\(([a-z]{2})|\\\[([a-z]+)\]")
_STRING = re.compile(r"\\\*(\(..|\[[^\]]*\]|.)")
_OTHER = re.compile(r"\\[&|^%:/,~0)]|\\c$")
_SPACE = re.compile(r"\s+")
_TEXT_MACROS = frozenset({
    "B", "I", "BR", "RB", "IR", "RI", "BI", "IB", "SM", "SB", "SH", "SS", "TP", "IP", "TQ",
    "Nm", "Fl", "Ar", "Op", "Oo", "Oc", "Xr", "Pa", "Cm", "Dq", "Sq", "Ql", "Em", "Sy", "Li", "Va", "Ev", "Ic",
    "Sh", "Ss", "It", "Dl", "Fn", "Fa", "Ft", "Cd", "Dv", "Er", "Tn", "Ux", "Xo", "Xc", "Pq", "Aq", "Bq", "Qq",
})
_NAMED_CHARS = {"em": "-", "en": "-", "hy": "-", "aq": "'", "dq": '"', "lq": '"', "rq": '"', "oq": "'", "cq": "'",
                "bu": "*", "co": "(c)", "rg": "(R)", "ti": "~", "ha": "^", "ga": "`", "mi": "-", "pl": "+", "mu": "x"}


@dataclass(frozen=True)
class Collection:
    """Documents, queries split into dev and test, and one relevant document per query."""

    name: str
    docs: list[Doc]
    dev: list[tuple[str, str]]
    test: list[tuple[str, str]]
    qrels: dict[str, str]


def _clean(line: str) -> str:
    line = _FONT.sub("", line)
    line = _SIZE.sub("", line)
    line = _NAMED.sub(lambda m: _NAMED_CHARS.get(m.group(1) or m.group(2), " "), line)
    line = _STRING.sub("", line)
    line = line.replace("\\-", "-").replace("\\e", "\\").replace("\\ ", " ").replace('\\"', "")
    line = _OTHER.sub("", line)
    return line.replace('"', " ").strip()


def roff_to_text(source: str) -> tuple[str, str]:
    """(NAME description, plain text of everything after NAME) of a man(7) or mdoc(7) page."""
    name_lines: list[str] = []
    body: list[str] = []
    section = ""
    for raw in source.splitlines():
        if raw.startswith(('.\\"', "'\\\"", '.\\\\"')) or raw.strip() in (".", "'"):
            continue
        if raw.startswith((".", "'")):
            parts = raw[1:].strip().split(None, 1)
            macro = parts[0] if parts else ""
            rest = parts[1] if len(parts) > 1 else ""
            if macro in ("SH", "Sh"):
                section = _clean(rest).upper()
                if section != "NAME":
                    body.append("\n" + section + "\n")
                continue
            if macro == "Nd":
                name_lines.append("\\- " + rest)
                continue
            if macro not in _TEXT_MACROS or not rest:
                continue
            text = _clean(rest)
        else:
            text = _clean(raw)
        if not text:
            continue
        (name_lines if section == "NAME" else body).append(text)
    name = " ".join(name_lines)
    description = re.split(r"\s\\?-{1,2}\s|\\-\s*", name, maxsplit=1)
    query = _SPACE.sub(" ", description[1]).strip() if len(description) == 2 else ""
    text = "\n".join(_SPACE.sub(" ", line).strip() if line.strip() else "" for line in body)
    return query, re.sub(r"\n{3,}", "\n\n", text).strip()


def manpages(
    *, docs: int = 1000, dev: int = 200, max_chars: int = 1200, per_family: int = 20, seed: int = 0, root: Path = MAN_ROOT
) -> Collection:
    """The man-page collection (see the module docstring).

    Raises:
        FileNotFoundError: No manual pages are installed here.
    """
    files = [path for section in MAN_SECTIONS for path in sorted((root / section).glob("*.gz")) if not path.is_symlink()]
    if not files:
        raise FileNotFoundError(f"no manual pages under {root}")
    pages: list[tuple[str, str, str]] = []
    for path in files:
        try:
            source = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
        except (OSError, EOFError):
            continue
        if source.lstrip().startswith(".so ") or len(source) < 200:
            continue
        query, text = roff_to_text(source)
        words = query.split()
        if not 3 <= len(words) <= 20 or len(text) < 300:
            continue
        pages.append((path.name.removesuffix(".gz"), query, text[:max_chars]))
    by_query: dict[str, int] = {}
    by_text: dict[str, int] = {}
    for _, query, text in pages:
        key = query.lower().rstrip(".")
        by_query[key] = by_query.get(key, 0) + 1
        digest = hashlib.sha1(text.encode()).hexdigest()
        by_text[digest] = by_text.get(digest, 0) + 1
    unique = [page for page in pages
              if by_query[page[1].lower().rstrip(".")] == 1 and by_text[hashlib.sha1(page[2].encode()).hexdigest()] == 1]
    random.Random(seed).shuffle(unique)
    families: dict[str, int] = {}
    chosen = []
    for page in unique:
        family = re.split(r"[_.-]", page[0], maxsplit=1)[0]
        families[family] = families.get(family, 0) + 1
        if families[family] <= per_family:
            chosen.append(page)
    chosen = chosen[:docs]
    collection_docs = [Doc(id=name, text=text) for name, _, text in chosen]
    queries = [(f"m{i}", query) for i, (_, query, _) in enumerate(chosen)]
    qrels = {f"m{i}": name for i, (name, _, _) in enumerate(chosen)}
    return Collection("manpages", collection_docs, queries[:dev], queries[dev:], qrels)


SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "ensurepip", "tkinter", "pydoc_data"}


def stdlib_functions(*, docs: int = 1200, queries: int = 200, dev: int = 0, seed: int = 0) -> Collection:
    """Standard-library functions with their docstrings removed; query = first docstring sentence."""
    root = Path(sysconfig.get_paths()["stdlib"])
    items: list[tuple[Doc, str]] = []
    seen_queries: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if SKIP_DIRS & set(rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        lines = source.splitlines(keepends=True)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
                continue
            doc = ast.get_docstring(node)
            if not doc or not node.body or not isinstance(node.body[0], ast.Expr):
                continue
            sentence = doc.strip().split("\n\n")[0].replace("\n", " ").split(". ")[0].strip().rstrip(".")
            if len(sentence.split()) < 5 or sentence in seen_queries:
                continue
            ds = node.body[0]
            start, end = node.lineno - 1, node.end_lineno or node.lineno
            body = lines[start : ds.lineno - 1] + lines[(ds.end_lineno or ds.lineno) : end]
            text = "".join(body).strip()
            if len(text.splitlines()) < 3:
                continue
            seen_queries.add(sentence)
            items.append((Doc(id=f"{rel.as_posix()}:{node.name}:{node.lineno}", text=text), sentence))
    random.Random(seed).shuffle(items)
    items = items[:docs]
    asked = [(f"q{i}", sentence) for i, (_, sentence) in enumerate(items[:queries])]
    qrels = {f"q{i}": doc.id for i, (doc, _) in enumerate(items[:queries])}
    return Collection("stdlib", [doc for doc, _ in items], asked[:dev], asked[dev:], qrels)


def write_trec(collection: Collection, out: Path) -> dict[str, str]:
    """Writes ``corpus.jsonl``, ``queries.{dev,test}.tsv`` and ``qrels.{dev,test}.txt`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for doc in collection.docs:
            fh.write(json.dumps({"id": doc.id, "text": doc.text}, ensure_ascii=False) + "\n")
    paths = {"corpus": str(out / "corpus.jsonl")}
    for part, queries in (("dev", collection.dev), ("test", collection.test)):
        (out / f"queries.{part}.tsv").write_text("".join(f"{qid}\t{text}\n" for qid, text in queries), encoding="utf-8")
        (out / f"qrels.{part}.txt").write_text(
            "".join(f"{qid} 0 {collection.qrels[qid]} 1\n" for qid, _ in queries), encoding="utf-8"
        )
        paths[f"queries.{part}"] = str(out / f"queries.{part}.tsv")
        paths[f"qrels.{part}"] = str(out / f"qrels.{part}.txt")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=["manpages", "stdlib"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--docs", type=int, default=1000)
    args = parser.parse_args()
    collection = manpages(docs=args.docs) if args.name == "manpages" else stdlib_functions(docs=args.docs)
    print(json.dumps({"docs": len(collection.docs), "dev": len(collection.dev), "test": len(collection.test),
                      **write_trec(collection, args.out)}))


if __name__ == "__main__":
    main()
