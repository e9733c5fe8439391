"""Code folders: one document per code file, provenance in meta, SWHIDs equal to git's blob ids."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from spacerini.corpus import load_corpus
from spacerini.corpus.code import detect_licence, language_of, swhid
from spacerini.errors import CorpusError, EmptyCorpusError

DATA = Path(__file__).resolve().parents[1] / "data"
REPO = DATA / "corpus_code_repo"


def git_blob_id(path: Path) -> str:
    done = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.parametrize(
    "content",
    [b"", b"print('hi')\n", "naïve – 東京\n".encode(), bytes(range(256)) * 3],
    ids=["empty", "ascii", "utf8", "binary"],
)
def test_swhid_equals_git_hash_object(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "blob"
    path.write_bytes(content)
    assert swhid(content) == "swh:1:cnt:" + git_blob_id(path)


def test_code_folder_pins_and_meta() -> None:
    corpus = load_corpus(REPO, format="code", owner="example-owner", progress=False)
    docs = list(corpus)
    assert [d.id for d in docs] == [
        "Makefile",
        "docs/guide.md",
        "include/util.h",
        "main.py",
        "src/lib.rs",
        "src/util.js",
    ]
    languages = {d.id: d.meta["language"] for d in docs}
    assert languages == {
        "Makefile": "Makefile",
        "docs/guide.md": "Markdown",
        "include/util.h": "C",
        "main.py": "Python",
        "src/lib.rs": "Rust",
        "src/util.js": "JavaScript",
    }
    main = docs[3]
    assert main.text == (REPO / "main.py").read_text(encoding="utf-8")
    assert main.meta == {
        "repo": "corpus_code_repo",
        "path": "main.py",
        "owner": "example-owner",
        "licence": "MIT",
        "language": "Python",
        "swhid": "swh:1:cnt:" + git_blob_id(REPO / "main.py"),
    }
    assert main.fields == {"path": "main.py", "language": "Python"}
    for doc in docs:
        assert doc.meta["swhid"] == "swh:1:cnt:" + git_blob_id(REPO / doc.id)
    description = corpus.describe()
    assert description["licence"] == "MIT" and description["licence_file"] == "LICENSE"
    assert description["repo"] == "corpus_code_repo" and description["skipped"] == {}
    assert list(corpus) == docs


def test_owner_defaults_to_none() -> None:
    first = next(iter(load_corpus(REPO, format="code", progress=False)))
    assert first.meta["owner"] is None


def test_skipped_files_are_counted_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo)
    (repo / "LICENSE").unlink()
    (repo / "blob.c").write_bytes(b"int x;\0\0\1")
    (repo / "big.py").write_text("x = 1\n" * 400)
    (repo / "legacy.py").write_bytes("# café\n".encode("latin-1"))
    corpus = load_corpus(repo, format="code", max_file_bytes=1000, progress=False)
    with caplog.at_level(logging.WARNING, logger="spacerini"):
        docs = list(corpus)
    assert len(docs) == 6
    assert corpus.skipped == {"binary": 1, "too_large": 1, "not_utf8": 1}
    assert corpus.describe()["skipped"] == {"binary": 1, "not_utf8": 1, "too_large": 1}
    assert corpus.describe()["licence"] == "unknown"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 3 file(s)" in warnings[0] and "binary: 1" in warnings[0]


def test_everything_skipped_is_an_empty_corpus(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_bytes(b"\0\0")
    with pytest.raises(EmptyCorpusError, match=r"holds no documents \(everything was skipped: binary: 1\)"):
        list(load_corpus(tmp_path, format="code", progress=False))


def test_code_source_must_be_a_folder() -> None:
    with pytest.raises(CorpusError, match="must be a folder"):
        load_corpus(REPO / "main.py", format="code")


@pytest.mark.parametrize(
    ("text", "licence"),
    [
        ((REPO / "LICENSE").read_text(), "MIT"),
        (
            "                                 Apache License\n                           Version 2.0, January 2004",
            "Apache-2.0",
        ),
        (
            "GNU GENERAL PUBLIC LICENSE\n Version 3, 29 June 2007\n ... use the GNU Lesser General Public "
            "License instead of this License.",
            "GPL-3.0",
        ),
        ("GNU GENERAL PUBLIC LICENSE\n Version 2, June 1991", "GPL-2.0"),
        (
            "GNU LESSER GENERAL PUBLIC LICENSE\n Version 2.1, February 1999 ... GNU General Public License",
            "LGPL",
        ),
        ("Mozilla Public License Version 2.0\n==================================", "MPL-2.0"),
        (
            "Permission to use, copy, modify, and/or distribute this software for any\npurpose with or "
            "without fee is hereby granted",
            "ISC",
        ),
        ("This is free and unencumbered software released into the public domain.", "Unlicense"),
        (
            "Redistribution and use in source and binary forms, with or without modification ... 3. Neither "
            "the name of the copyright holder nor",
            "BSD-3-Clause",
        ),
        ("Redistribution and use in source and binary forms, with or without modification", "BSD-2-Clause"),
        ("SPDX-License-Identifier: EPL-2.0", "EPL-2.0"),
        ("All rights reserved.", "unknown"),
    ],
    ids=[
        "mit",
        "apache",
        "gpl3",
        "gpl2",
        "lgpl",
        "mpl",
        "isc",
        "unlicense",
        "bsd3",
        "bsd2",
        "spdx",
        "unknown",
    ],
)
def test_detect_licence(text: str, licence: str) -> None:
    assert detect_licence(text) == licence


def test_language_of() -> None:
    assert language_of(Path("a/b.PY")) == "Python"
    assert language_of(Path("x.ts")) == "TypeScript"
    assert language_of(Path("Dockerfile")) == "Dockerfile"
    assert language_of(Path("notes.txt")) is None
