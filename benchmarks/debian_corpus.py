"""A real-text corpus of >= 100k documents from text that every Debian machine has.

Paragraphs of ``/usr/share/doc`` (READMEs, changelogs, copyright files, plain or gzipped) and of
the man pages in ``/usr/share/man`` (groff source, macros and font escapes stripped), in a fixed
(sorted) file order, so two machines with the same packages get the same corpus. Each document is
one paragraph of at least ``MIN_CHARS`` characters, with a ``title`` field (the package or man
page it comes from) and a ``section`` field.

Usage: python benchmarks/debian_corpus.py [--docs 100000] [--out FILE.jsonl]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
OUT.mkdir(parents=True, exist_ok=True)  # a fresh clone has no benchmarks/out
MIN_CHARS = 120
_DOC_SUFFIXES = {"", ".txt", ".md", ".rst", ".Debian", ".gz", ".NEWS", ".html"}
_ESCAPE = re.compile(r"\\f(\[[^\]]*\]|\(..|.)|\\\(..|\\\*(\(..|\[[^\]]*\]|.)|\\[&|^%/,~0:]")
_TAG = re.compile(r"<[^>]{1,200}>")


def _read(path: Path) -> str | None:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    if b"\x00" in raw[:4096]:
        return None  # binary
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _groff_paragraphs(text: str) -> Iterator[tuple[str, str]]:
    """(section, paragraph) pairs of a man page's groff source."""
    section, lines = "", []
    for line in text.splitlines():
        if line.startswith((".", "'")):
            macro = line[1:3].strip()
            if macro == "SH" or macro == "SS":
                if lines:
                    yield section, " ".join(lines)
                    lines = []
                section = _ESCAPE.sub("", line[3:]).strip().strip('"')
            elif macro in {"PP", "P", "LP", "TP", "IP", "sp", "br"} and lines and len(" ".join(lines)) >= MIN_CHARS:
                yield section, " ".join(lines)
                lines = []
            elif macro in {"B", "I", "BR", "IR", "RB", "BI", "IB", "RI"}:
                lines.append(_ESCAPE.sub("", line[3:]).replace('"', "").replace("\\-", "-").strip())
            continue
        line = _ESCAPE.sub("", line).replace("\\-", "-").replace("\\e", "\\").strip()
        if line:
            lines.append(line)
    if lines:
        yield section, " ".join(lines)


def _plain_paragraphs(text: str) -> Iterator[tuple[str, str]]:
    for para in re.split(r"\n\s*\n", _TAG.sub(" ", text)):
        para = " ".join(para.split())
        if para:
            yield "", para


def iter_docs() -> Iterator[dict[str, object]]:
    """Yields JSONL records ``{"id", "contents", "title", "section"}`` in a fixed order."""
    seen: set[str] = set()
    man = [(p, True) for p in sorted(Path("/usr/share/man").glob("**/*")) if p.is_file()]
    doc = [(p, False) for p in sorted(Path("/usr/share/doc").glob("**/*")) if p.is_file()]
    # Files alternate between the two trees, so a prefix of the corpus holds both kinds of text.
    sources = [s for pair in itertools.zip_longest(man, doc) for s in pair if s is not None]
    for path, is_man in sources:
        if not is_man and path.suffix not in _DOC_SUFFIXES:
            continue
        text = _read(path)
        if not text:
            continue
        title = path.name.split(".")[0] if is_man else path.relative_to("/usr/share/doc").parts[0]
        paras = _groff_paragraphs(text) if is_man else _plain_paragraphs(text)
        for i, (section, para) in enumerate(paras):
            if len(para) < MIN_CHARS or para in seen:
                continue
            seen.add(para)
            rel = path.relative_to("/usr/share")
            yield {"id": f"{rel}#{i}", "contents": para, "title": title, "section": section}


def build(docs: int, out: Path | None = None) -> Path:
    """Writes (once) and returns a JSONL corpus of ``docs`` documents.

    Raises:
        SystemExit: This machine has fewer paragraphs than asked for.
    """
    out = out or OUT / f"debian_{docs}.jsonl"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for record in iter_docs():
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
            if n >= docs:
                break
    if n < docs:
        tmp.unlink()
        raise SystemExit(f"only {n} paragraphs of text on this machine; ask for fewer --docs")
    tmp.rename(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    path = build(args.docs, args.out)
    print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
