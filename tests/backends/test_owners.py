"""The owner index with planted owners: exact, case, accents, typos, surnames, no match."""

from __future__ import annotations

import json

import pytest

from spacerini.backends import owners
from spacerini.errors import BundleCorruptError, QueryError
from spacerini.records import Doc

PLANTED = [
    # (owner, repo, number of docs)
    ("Guido van Rossum", "python/cpython", 5),
    ("Guido van Rossum", "python/mypy", 2),
    ("Guido van Rosum", "someone/fork", 1),  # a near-duplicate that must rank below the exact one
    ("José García", "jg/utils", 3),
    ("Raymond Hettinger", "rh/recipes", 2),
    ("Brett Cannon", "", 1),
    ("Łukasz Langa", "ambv/black", 4),
]


def make_docs() -> list[Doc]:
    docs = []
    for owner, repo, n in PLANTED:
        for _ in range(n):
            meta = {"owner": owner, "repo": repo} if repo else {"owner": owner}
            docs.append(Doc(id=f"d{len(docs):03d}", text="x", meta=meta))
    docs.append(Doc(id="orphan-1", text="x", meta={"repo": "nobody/knows"}))
    docs.append(Doc(id="orphan-2", text="x"))
    docs.append(Doc(id="shared", text="x", meta={"owner": ["Brett Cannon", "Raymond Hettinger"], "repo": "py/pep"}))
    return docs


DOCS = make_docs()


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("owners")
    report = owners.build(lambda: iter(DOCS), folder, progress=False)
    return owners.open(folder, report.to_dict()), report, folder


def expected_ids(owner: str, repo: str) -> list[str]:
    return [d.id for d in DOCS if owner in (d.meta.get("owner") if isinstance(d.meta.get("owner"), list) else [d.meta.get("owner")]) and d.meta.get("repo", owners.NO_REPO) == repo]


def test_report(index):
    _, report, folder = index
    assert report.docs == len(DOCS) == 21
    assert report.stats == {"owners": 6, "repos": 8, "unowned_docs": 2}
    assert report.params["optout_instructions"] == owners.DEFAULT_OPTOUT
    assert "spacerini optout BUNDLE --owner NAME" in owners.DEFAULT_OPTOUT
    json.loads((folder / "owners.json").read_text(encoding="utf-8"))  # plain JSON


def test_exact_name_lists_repos_and_files(index):
    s, _, _ = index
    res = s.owner("Guido van Rossum")
    top = res.matches[0]
    assert top.owner == "Guido van Rossum" and top.score == 1.0
    assert top.repos == (("python/cpython", 5), ("python/mypy", 2))
    assert top.docs == 7
    assert list(top.files) == expected_ids("Guido van Rossum", "python/cpython") + expected_ids("Guido van Rossum", "python/mypy")
    assert res.optout_instructions == owners.DEFAULT_OPTOUT


@pytest.mark.parametrize("query", ["guido VAN rossum", "  Guido van Rossum ", "GUIDO-VAN-ROSSUM", "Gido van Rossum", "Guido van Rosssum", "guido von rossum"])
def test_case_punctuation_and_typos_find_guido(index, query):
    s, _, _ = index
    res = s.owner(query)
    assert res.matches, query
    assert {m.owner for m in res.matches[:2]} == {"Guido van Rossum", "Guido van Rosum"}
    if query.strip().casefold() == "guido van rossum":
        assert res.matches[0].owner == "Guido van Rossum" and res.matches[0].score == 1.0


def test_exact_case_insensitive_match_ranks_first_over_a_closer_spelling(index):
    s, _, _ = index
    res = s.owner("guido van rosum")
    assert res.matches[0].owner == "Guido van Rosum" and res.matches[0].score == 1.0
    assert res.matches[1].owner == "Guido van Rossum" and res.matches[1].score < 1.0
    assert res.total_docs == 1 + 7


def test_accents_and_surnames(index):
    s, _, _ = index
    res = s.owner("Jose Garcia")
    assert res.matches[0].owner == "José García" and res.matches[0].score == 0.99
    assert s.owner("lukasz langa").matches[0].owner == "Łukasz Langa"
    assert s.owner("Hettinger").matches[0].owner == "Raymond Hettinger"


def test_co_owned_doc_and_docs_without_repo(index):
    s, _, _ = index
    brett = s.owner("Brett Cannon").matches[0]
    assert dict(brett.repos) == {owners.NO_REPO: 1, "py/pep": 1}
    assert "shared" in brett.files
    assert "shared" in s.owner("Raymond Hettinger").matches[0].files


def test_no_match(index):
    s, _, _ = index
    res = s.owner("Zzyzx Qwerty")
    assert res.matches == () and res.total_docs == 0
    assert res.optout_instructions


def test_limit_and_max_matches(index):
    s, _, _ = index
    top = s.owner("Guido van Rossum", limit=3).matches[0]
    assert len(top.files) == 3 and top.docs == 7
    assert len(s.owner("Guido van Rossum", max_matches=1).matches) == 1


@pytest.mark.parametrize("bad", ["", "   ", "!!!", None])
def test_bad_names(index, bad):
    with pytest.raises(QueryError):
        index[0].owner(bad)


def test_custom_optout_and_missing_folder(tmp_path):
    report = owners.build(lambda: iter(DOCS), tmp_path, progress=False, optout_instructions="Write to x@example.org.")
    s = owners.open(tmp_path, report.to_dict())
    assert s.owner("Brett Cannon").optout_instructions == "Write to x@example.org."
    with pytest.raises(BundleCorruptError):
        owners.open(tmp_path / "nope", {})


def _union(names: set[str]) -> set[str]:
    """Brute force: the ids of the docs that any of ``names`` owns."""
    out = set()
    for d in DOCS:
        owner = d.meta.get("owner")
        if set(owner if isinstance(owner, list) else [owner]) & names:
            out.add(d.id)
    return out


def test_total_counts_a_co_owned_doc_once(index):
    s, _, _ = index
    # "shared" is co-owned by both: it is one document, not two
    names = {"Brett Cannon", "Raymond Hettinger"}
    res = s.owner("brett cannon raymond hettinger", cutoff=0.0, max_matches=100)
    matched = {m.owner for m in res.matches}
    assert names <= matched
    assert res.total_docs == len(_union(matched)) < sum(m.docs for m in res.matches)
    assert s.distinct_docs(names) == len(_union(names)) == 4
    assert s.distinct_docs(["Brett Cannon"]) == 2 and s.distinct_docs(["nobody", "Brett Cannon", "Brett Cannon"]) == 2
    assert s.distinct_docs([]) == 0


def test_canonically_equivalent_spelling_is_an_exact_match(tmp_path):
    # the stored name is decomposed (e + U+0308), the query precomposed (ë): the same name
    docs = [
        Doc(id="n1", text="x", meta={"owner": "Zoe\u0308 Mu\u0308ller"}),
        Doc(id="n2", text="x", meta={"owner": "Zoe Muller"}),
        Doc(id="n3", text="x", meta={"owner": "Zoe Muller"}),
    ]
    report = owners.build(lambda: iter(docs), tmp_path, progress=False)
    s = owners.open(tmp_path, report.to_dict())
    for query in ("Zo\u00eb M\u00fcller", "ZO\u00cb M\u00dcLLER", "Zoe\u0308 Mu\u0308ller"):
        top = s.owner(query).matches
        assert (top[0].owner, top[0].score) == ("Zoe\u0308 Mu\u0308ller", 1.0), query
        assert (top[1].owner, top[1].score) == ("Zoe Muller", 0.99), query
