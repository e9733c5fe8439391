"""Browser tests of the app over several corpora: the corpus selector and the Compare tab."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from app_fixtures import app_docs, free_port
from test_app_browser import ARGS, CHROMIUM, fill, shot, tab, wait_results

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def two_corpora(app_bundle: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from spacerini.bundle import build_bundle
    from spacerini.corpora import open_bundles

    docs = app_docs()
    tmp = tmp_path_factory.mktemp("two")
    build_bundle(docs[:18], tmp / "first", backends=["bm25", "exact", "owners"], progress=False)
    build_bundle(docs[18:], tmp / "second", backends=["exact"], progress=False)
    return open_bundles([tmp / "first", tmp / "second", Path(app_bundle.path)], names={app_bundle.path.as_posix(): "Whole"})


@pytest.fixture(scope="module")
def page(two_corpora: Any) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install chromium; `make test` does it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    from spacerini.app import serve

    port = free_port()
    app = serve(two_corpora, port=port, block=False)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            pg = browser.new_page(viewport={"width": 1100, "height": 900})
            pg.set_default_timeout(20_000)
            pg.goto(f"http://127.0.0.1:{port}/")
            pg.wait_for_selector("#sp-compare-go")
            yield pg
            browser.close()
    finally:
        app.close()


def choose(page: Any, elem_id: str, value: str) -> None:
    """Picks ``value`` in the Gradio dropdown ``elem_id``."""
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=value, exact=True).click()
    page.wait_for_function(
        "([id, v]) => document.querySelector('#' + id + ' input').value === v", arg=[elem_id, value]
    )


def test_compare_tab_shows_every_corpus(page: Any, two_corpora: Any) -> None:
    tab(page, "Compare")
    fill(page, "sp-compare-query", "json.load")
    page.click("#sp-compare-go")
    page.wait_for_selector("#sp-compare-table table")
    expected = two_corpora.compare("json.load")
    heads = page.locator("#sp-compare-table thead th").all_inner_texts()[1:]
    assert heads == ["first", "second", "Whole"]
    counts = page.locator("#sp-compare-table tbody tr").first.locator("td").all_inner_texts()
    assert counts == [f"{c.count:,}" for c in expected.corpora]
    assert int(counts[0]) + int(counts[1]) == int(counts[2])
    # the corpus without an owners backend says so in its column; the others answer
    owner_row = page.locator("#sp-compare-table tbody tr").nth(3).locator("td").all_inner_texts()
    assert "not available: no owners backend" in owner_row[1] and "not available" not in owner_row[0]
    page.wait_for_selector("#sp-compare-counts canvas, #sp-compare-counts svg")
    shot(page, "compare")


def test_selector_switches_the_corpus(page: Any, two_corpora: Any) -> None:
    tab(page, "Exact")
    page.wait_for_selector("#sp-exact-corpus", state="visible")
    for name in ("second", "Whole", "first"):
        choose(page, "sp-exact-corpus", name)
        fill(page, "sp-exact-query", "json.load")
        page.click("#sp-exact-go")
        wait_results(page, "#sp-exact-results", "json.load")
        count = two_corpora.count("json.load", corpus=name).count
        page.wait_for_function(
            "(c) => document.querySelector('#sp-exact-results .sp-count').innerText.startsWith(c)",
            arg=f"{count} occurrence",
        )
    # search lists only the corpora with a ranked backend... all three here (exact ranks too)
    tab(page, "Search")
    choose(page, "sp-corpus", "first")
    fill(page, "sp-query", "parser helper")
    page.click("#sp-search")
    wait_results(page, "#sp-results", "parser helper")
    shown = page.locator("#sp-results .sp-docid").all_inner_texts()
    assert shown == [h.docid for h in two_corpora.search("parser helper", k=10, corpus="first").hits]
