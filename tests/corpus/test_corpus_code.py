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


# --------------------------------------------------------------- a folder of many repositories
MIT = (REPO / "LICENSE").read_text()
APACHE = "                                 Apache License\n                           Version 2.0, January 2004\n"


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _git_repo(folder: Path, remote: str | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    if remote is not None:
        subprocess.run(["git", "-C", str(folder), "remote", "add", "origin", remote], check=True)


@pytest.fixture
def repos(tmp_path: Path) -> Path:
    root = tmp_path / "repos"
    _git_repo(root / "alpha", "https://github.com/alice/alpha.git")
    _git_repo(root / "beta", "git@gitlab.com:bob-org/tools/beta.git")
    _tree(
        root,
        {
            "alpha/LICENSE": MIT,
            "alpha/src/a.py": "def alpha():\n    return 1\n",
            # A submodule: .git is a file pointing into the parent's .git/modules.
            "alpha/vendor/sub/.git": "gitdir: ../../.git/modules/sub\n",
            "alpha/.git/modules/sub/config": '[core]\n\tbare = false\n[remote "origin"]\n\turl = https://github.com/zed/sub\n',
            "alpha/vendor/sub/s.c": "int s;\n",
            "beta/LICENSE.txt": APACHE,
            "beta/package.json": '{"author": "Bob Someone <bob@example.org>"}',
            "beta/b.js": "export const b = 2;\n",
            "gamma/COPYING": "SPDX-License-Identifier: BSD-3-Clause\n",
            "gamma/pyproject.toml": '[project]\nname = "gamma"\nauthors = [{name = "Carol", email = "c@example.org"}]\n',
            "gamma/g.py": "G = 3\n",
            "loose/setup.cfg": "[metadata]\nauthor = Dan\n",
            "loose/l.py": "L = 4\n",
            "top.py": "TOP = 5\n",
        },
    )
    return root


def test_each_repository_of_a_folder_is_its_own_repo(repos: Path) -> None:
    corpus = load_corpus(repos, format="code", progress=False)
    docs = {d.id: d for d in corpus}
    assert sorted(docs) == [
        "alpha/src/a.py", "alpha/vendor/sub/s.c", "beta/b.js", "gamma/g.py", "gamma/pyproject.toml", "loose/l.py",
        "top.py",
    ]
    provenance = {i: (d.meta["repo"], d.meta["path"], d.meta["owner"], d.meta["licence"]) for i, d in docs.items()}
    assert provenance == {
        "alpha/src/a.py": ("alpha", "src/a.py", "alice", "MIT"),
        "alpha/vendor/sub/s.c": ("alpha/vendor/sub", "s.c", "zed", "unknown"),
        "beta/b.js": ("beta", "b.js", "bob-org/tools", "Apache-2.0"),  # the git remote wins over package.json
        "gamma/g.py": ("gamma", "g.py", "Carol", "BSD-3-Clause"),  # a licence file, no git: pyproject's author
        "gamma/pyproject.toml": ("gamma", "pyproject.toml", "Carol", "BSD-3-Clause"),
        "loose/l.py": ("repos", "loose/l.py", None, "unknown"),  # neither: part of the folder itself
        "top.py": ("repos", "top.py", None, "unknown"),
    }
    assert docs["gamma/g.py"].fields == {"path": "g.py", "language": "Python"}
    repos_described = {r["repo"]: r for r in corpus.describe()["repos"]}
    assert sorted(repos_described) == ["alpha", "alpha/vendor/sub", "beta", "gamma", "repos"]
    assert repos_described["beta"] == {
        "repo": "beta", "path": "beta", "owner": "bob-org/tools", "licence": "Apache-2.0", "licence_file": "LICENSE.txt",
    }


def test_owner_option_overrides_every_repository(repos: Path) -> None:
    owners = {d.meta["owner"] for d in load_corpus(repos, format="code", owner="someone", progress=False)}
    assert owners == {"someone"}


def test_a_folder_with_a_licence_stays_one_repository(repos: Path) -> None:
    (repos / "LICENSE").write_text(MIT, encoding="utf-8")
    docs = {d.id: d.meta for d in load_corpus(repos, format="code", progress=False)}
    # Git work trees are still their own; gamma (a licence file only) is now part of the folder.
    assert docs["gamma/g.py"]["repo"] == "repos" and docs["gamma/g.py"]["licence"] == "MIT"
    assert docs["alpha/src/a.py"]["repo"] == "alpha" and docs["top.py"]["licence"] == "MIT"


def test_single_git_repository_owner_from_its_remote(tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    _git_repo(repo, "ssh://git@github.com/owner-x/proj.git")
    _tree(repo, {"main.py": "x = 1\n", "sub/LICENSE": MIT, "sub/s.py": "s = 2\n"})
    docs = {d.id: d.meta for d in load_corpus(repo, format="code", progress=False)}
    assert {i: (m["repo"], m["path"], m["owner"]) for i, m in docs.items()} == {
        "main.py": ("proj", "main.py", "owner-x"),
        "sub/s.py": ("proj", "sub/s.py", "owner-x"),
    }


@pytest.mark.parametrize(
    ("url", "owner"),
    [
        ("https://github.com/alice/alpha.git", "alice"),
        ("https://user@github.com/alice/alpha", "alice"),
        ("git@github.com:alice/alpha.git", "alice"),
        ("ssh://git@host:2222/group/sub/name.git", "group/sub"),
        ("/srv/git/alpha.git", None),
        ("../alpha", None),
        ("file:///srv/git/alpha.git", None),
        ("https://github.com/alpha", None),
    ],
)
def test_owner_from_url(url: str, owner: str | None) -> None:
    from spacerini.corpus.code import owner_from_url

    assert owner_from_url(url) == owner
