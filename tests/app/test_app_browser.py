"""End-to-end browser tests: headless Chromium (Debian's) driven by Playwright.

Each test saves a screenshot to tests/screenshots/. Set SPACERINI_UPDATE_SCREENSHOTS=1 to also
copy them to docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "tests" / "screenshots"
DOCS_SHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture(scope="module")
def page(app_server: str) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install chromium; `make test` does it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        pg = browser.new_page(viewport={"width": 1100, "height": 900})
        pg.set_default_timeout(20_000)
        dialogs: list[str] = []
        pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        pg.dialogs = dialogs
        pg.goto(app_server)
        pg.wait_for_selector("#sp-search")
        yield pg
        browser.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    if os.environ.get("SPACERINI_UPDATE_SCREENSHOTS"):
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SHOTS / f"{name}.png")


def fill(page: Any, elem_id: str, text: str) -> None:
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(text)


def tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def wait_results(page: Any, selector: str, query: str, number: int = 1) -> None:
    """Waits until ``selector`` shows the results of ``query`` (page ``number``), not older ones."""
    page.wait_for_function(
        "([sel, q, n]) => { const el = document.querySelector(sel + ' [data-query]');"
        " return el && el.dataset.query === q && el.dataset.page === String(n); }",
        arg=[selector, query, number],
    )


def search(page: Any, query: str) -> None:
    tab(page, "Search")
    fill(page, "sp-query", query)
    page.click("#sp-search")
    wait_results(page, "#sp-results", query)


def docids(page: Any, selector: str) -> list[str]:
    return page.locator(f"{selector} .sp-docid").all_inner_texts()


def test_search_and_paginate(page: Any, app_bundle: Any) -> None:
    search(page, "parser helper")
    first = docids(page, "#sp-results")
    assert first == [h.docid for h in app_bundle.search("parser helper", k=10)]
    assert page.locator("#sp-results mark").count() >= 10
    assert page.locator("#sp-results a[href^='https://archive.softwareheritage.org/swh:1:cnt:']").count() == 10
    shot(page, "search")
    page.click("#sp-next")
    wait_results(page, "#sp-results", "parser helper", 2)
    assert "Page 2" in page.locator("#sp-page").inner_text()
    second = docids(page, "#sp-results")
    assert second == [h.docid for h in app_bundle.search("parser helper", k=10, offset=10)]
    page.click("#sp-prev")
    wait_results(page, "#sp-results", "parser helper", 1)
    assert docids(page, "#sp-results") == first


def test_search_asks_the_page_route_not_the_queue(page: Any) -> None:
    """The Search and Exact buttons are answered by one GET of /api/ui/... each, from the page
    itself (Gradio's queue is not used); a refusal is one line in the results area."""
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    search(page, "thread pool")
    assert any("/api/ui/search?" in u and "q=thread+pool" in u for u in asked)
    assert not any("/queue/join" in u for u in asked)
    fill(page, "sp-query", "   ")
    page.click("#sp-search")
    page.wait_for_selector("#sp-results .sp-error")
    assert page.locator("#sp-results .sp-error").inner_text() == "the query is empty: type some words to search for"
    assert "Page 1" in page.locator("#sp-page").inner_text()


def test_hostile_document_is_inert(page: Any) -> None:
    search(page, "script alert onerror")
    assert page.locator("#sp-results .sp-hit[data-docid='evil']").count() == 1
    results = page.locator("#sp-results")
    assert results.locator("script").count() == 0 and results.locator("img").count() == 0
    assert results.locator("a[href^='javascript']").count() == 0
    assert "<img src=x onerror=alert(2)>" in results.inner_text()  # shown as text
    assert "<EMAIL>" in results.inner_text() and "gmail" not in results.inner_text()
    page.wait_for_timeout(300)
    assert page.dialogs == []


def test_flag_a_result(page: Any, flags_file: Path) -> None:
    search(page, "fibonacci")
    top = docids(page, "#sp-results")[0]
    page.get_by_text("Flag a result").click()
    page.click("#sp-flag")
    page.wait_for_function("document.querySelector('#sp-flag-status').innerText.includes('flagged')")
    last = json.loads(flags_file.read_text().splitlines()[-1])
    assert last["docid"] == top and last["query"] == "fibonacci" and last["reason"] == "personal information"


def test_exact_count(page: Any) -> None:
    tab(page, "Exact")
    fill(page, "sp-exact-query", "json.load")
    page.click("#sp-exact-go")
    wait_results(page, "#sp-exact-results", "json.load")
    assert page.locator("#sp-exact-results .sp-count").inner_text().startswith("9 occurrences")
    assert page.locator("#sp-exact-results .sp-hit").count() == 9
    assert set(page.locator("#sp-exact-results mark").all_inner_texts()) == {"json.load"}
    shot(page, "exact")


def test_exact_paginates(page: Any, app_bundle: Any) -> None:
    text = "return "
    total = app_bundle.searcher("exact").count(text)
    assert total > 10
    tab(page, "Exact")
    fill(page, "sp-exact-query", text)
    page.keyboard.press("Enter")  # Enter runs it like the button
    wait_results(page, "#sp-exact-results", text)
    assert page.locator("#sp-exact-results .sp-hit").count() == 10
    page.click("#sp-exact-next")
    wait_results(page, "#sp-exact-results", text, 2)
    assert "Page 2" in page.locator("#sp-exact-page").inner_text()
    assert page.locator("#sp-exact-results .sp-hit").count() == min(10, total - 10)
    page.click("#sp-exact-prev")
    wait_results(page, "#sp-exact-results", text, 1)
    page.click("#sp-exact-prev")  # never below page 1
    page.wait_for_timeout(300)
    wait_results(page, "#sp-exact-results", text, 1)


def test_membership_highlighting(page: Any) -> None:
    tab(page, "Membership")
    novel = "# my own words, nowhere in that corpus, zqx\n"
    known = "def write_json(path, data):\n    with open(path, 'w', encoding='utf-8') as fh:\n"
    fill(page, "sp-member-text", novel + known)
    page.click("#sp-member-go")
    page.wait_for_selector("#sp-member-results .sp-coverage")
    marked = "".join(page.locator("#sp-member-results .sp-member-text mark").all_inner_texts())
    assert "write_json(path, data)" in marked and "zqx" not in marked
    assert page.locator("#sp-member-results .sp-span li").count() >= 1
    assert "src/module_1.py" in page.locator("#sp-member-results").inner_text()
    shot(page, "membership")


def test_am_i_in_the_corpus(page: Any) -> None:
    tab(page, "Am I in the corpus?")
    fill(page, "sp-owner-name", "ada lovelace")
    page.click("#sp-owner-go")
    page.wait_for_selector("#sp-owner-results .sp-owner-match")
    text = page.locator("#sp-owner-results").inner_text()
    assert "Ada Lovelace" in text and "12 file(s)" in text and "Opting out" in text
    assert page.locator("#sp-owner-results a[href='https://github.com/lovelace/repo0']").count() == 1
    shot(page, "owner")


def test_ask_for_removal(page: Any, app_bundle: Any) -> None:
    from spacerini.app.requests import OptoutRequestStore, default_requests_path

    tab(page, "Am I in the corpus?")
    page.get_by_text("Ask for removal").click()
    assert "file a request" in page.locator("#sp-optout-howto").inner_text()
    fill(page, "sp-optout-name", "Ada Lovelace")
    fill(page, "sp-optout-contact", "ada@example.org")
    fill(page, "sp-optout-note", "<b>please</b> remove repo0")
    page.click("#sp-optout-go")
    page.wait_for_function("document.querySelector('#sp-optout-status').innerText.includes('pending')")
    shown = page.locator("#sp-optout-status").inner_text()
    store = OptoutRequestStore(default_requests_path(app_bundle.path), bundle_path=app_bundle.path)
    mine = [r for r in store.read() if r["contact"] == "ada@example.org"]
    assert len(mine) == 1 and mine[0]["id"] in shown and mine[0]["status"] == "pending"
    assert mine[0]["message"] == "<b>please</b> remove repo0"
    shot(page, "optout-request")
    fill(page, "sp-optout-contact", "")
    page.click("#sp-optout-go")  # a refusal is one line in Gradio's error toast, no Python text
    page.wait_for_selector("text=the contact is empty")
    assert "Traceback" not in page.content()


def test_no_upload_or_file_requests_fail_in_the_page(page: Any, app_server: str) -> None:
    """The page itself needs none of the routes that NoFilesMiddleware refuses."""
    refused: list[str] = []
    page.on("response", lambda r: refused.append(r.url) if r.status == 403 else None)
    page.goto(app_server)
    page.wait_for_selector("#sp-search")
    search(page, "parser helper")
    tab(page, "Stats")
    page.wait_for_selector("#sp-licences canvas, #sp-licences svg", timeout=20_000)
    assert refused == []


def test_stats_tab(page: Any) -> None:
    tab(page, "Stats")
    page.wait_for_selector("#sp-stats-summary")
    assert "37" in page.locator("#sp-stats-summary").inner_text()
    page.wait_for_selector("#sp-licences canvas, #sp-licences svg", timeout=20_000)
    shot(page, "stats")
