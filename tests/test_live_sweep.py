"""Live serving under change: answers made of several calls stay on one generation."""

from __future__ import annotations

from pathlib import Path

from spacerini.bundle import build_bundle, open_bundle, optout
from spacerini.corpora import Corpora
from spacerini.records import Doc
from spacerini.service import Service


def _docs() -> list[Doc]:
    return [
        Doc(id=f"d{i:02d}", text=f"document {i} by owner{i % 5} token{i}x about search engines",
            meta={"owner": f"Owner {i % 5}", "repo": f"org{i % 5}/repo"})
        for i in range(20)
    ]  # fmt: skip


def test_a_compare_column_never_mixes_two_generations(tmp_path: Path) -> None:
    """An opt-out landing between the calls of one column gave a count of the old generation
    (the removed document still counted) beside the new one's search and owner lookup."""
    path = tmp_path / "b"
    build_bundle(_docs(), path, backends=["bm25", "exact", "bloom", "owners"], progress=False).close()
    bundle = open_bundle(path)
    svc = Service(bundle, requests_path=tmp_path / "requests.jsonl", flags_path=tmp_path / "flags.jsonl")
    corpora = Corpora({"b": svc})
    count = svc.count
    switched: list[int] = []

    def count_then_switch(text: str) -> object:
        answer = count(text)
        if not switched:  # the opt-out is published right after the column's first call
            optout(path, owners=["Owner 3"], progress=False)
            assert bundle.reload() is True
            switched.append(bundle.generation)
        return answer

    assert corpora.compare("token3x", owner="Owner 3").corpora[0].count == 1  # every searcher opened
    svc.count = count_then_switch  # type: ignore[method-assign]
    try:
        column = corpora.compare("token3x", owner="Owner 3").corpora[0]
        assert switched == [2]
        # All of the column from generation 1 (in use when it started), where d03 is there ...
        parts = (column.count, column.top_hit.docid if column.top_hit else None, "Owner 3" in column.owners)
        assert (column.generation, parts) == (1, (1, "d03", True)), column
        # ... and the next answer all from generation 2, where it is not.
        column = corpora.compare("token3x", owner="Owner 3").corpora[0]
        assert (column.generation, column.count, column.top_hit, "Owner 3" in column.owners) == (2, 0, None, False)
    finally:
        bundle.close()


def test_a_compare_column_is_asked_again_when_its_generation_goes_stale(tmp_path: Path) -> None:
    """A backend first opened after the switch cannot be read from the old generation: the
    whole column is then asked again on the new one (not reported as an error, not mixed)."""
    path = tmp_path / "b"
    build_bundle(_docs(), path, backends=["bm25", "exact", "bloom", "owners"], progress=False).close()
    bundle = open_bundle(path)
    svc = Service(bundle, requests_path=tmp_path / "requests.jsonl", flags_path=tmp_path / "flags.jsonl")
    count = svc.count

    def count_then_switch(text: str) -> object:
        answer = count(text)
        if bundle.generation == 1:
            optout(path, owners=["Owner 3"], progress=False)
            assert bundle.reload() is True
        return answer

    svc.count = count_then_switch  # type: ignore[method-assign]
    try:
        column = Corpora({"b": svc}).compare("token3x", owner="Owner 3").corpora[0]
        assert column.errors == {}
        assert (column.generation, column.count, column.top_hit, "Owner 3" in column.owners) == (2, 0, None, False)
    finally:
        bundle.close()


def test_a_stale_generation_error_names_no_folder_of_the_server(tmp_path: Path) -> None:
    """The app answers a call that lost two generation races with this error's line (400):
    it named the bundle's absolute folder."""
    from spacerini.bundle import StaleGenerationError
    from spacerini.errors import one_line

    path = tmp_path / "b"
    build_bundle(_docs(), path, backends=["bm25", "exact"], progress=False).close()
    bundle = open_bundle(path)
    try:
        with bundle.pin() as snap:
            build_bundle(_docs()[:5], path, backends=["bm25", "exact"], progress=False).close()
            try:
                snap.searcher("exact")
            except StaleGenerationError as exc:
                line = one_line(exc)
            else:
                raise AssertionError("a searcher of a replaced generation was opened")
        assert "changed while it was being read" in line and str(tmp_path) not in line, line
    finally:
        bundle.close()


def test_caches_follow_a_revision_with_the_same_generation_number(tmp_path: Path) -> None:
    """A Space following a Hub bundle can switch to a revision built elsewhere, whose generation
    number is the same: the stats, display fields and snippet texts were cached by that number
    and kept showing the old revision's."""
    import shutil

    from spacerini.bundle import build_bundle, open_bundle
    from spacerini.records import Doc
    from spacerini.service import Service

    path = tmp_path / "b"
    build_bundle([Doc(id="d1", text="old secret text", fields={"title": "Old title"})], path, backends=["bm25", "exact"], progress=False).close()
    with open_bundle(path) as bundle:
        svc = Service(bundle, flags_path=tmp_path / "flags.jsonl")
        before = svc.search("text")
        assert svc.stats()["docs"] == 1 and before.hits[0].fields["title"] == "Old title"
        shutil.rmtree(path)
        docs = [Doc(id="d1", text="new text", fields={"title": "New title"}), Doc(id="d2", text="more text")]
        build_bundle(docs, path, backends=["bm25", "exact"], progress=False).close()
        assert bundle.reload() and bundle.generation == 1  # the same number, another revision
        after = svc.search("text")
        assert svc.stats()["docs"] == 2
        assert {h.docid: h.fields.get("title") for h in after.hits} == {"d1": "New title", "d2": None}
        assert all("secret" not in h.snippet for h in after.hits)
