"""The "What to add next" panel in headless Chromium: after one click on an example set it suggests
queries to label, and one click on "Add to <class>" moves the query into that class and fits again."""

from __future__ import annotations

import re

from fewshot_demo.ui.support.suggestions import SLOTS, add_suggested


def _open(browser, app_url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app_url, wait_until="load", timeout=60_000)
    page.locator("#image-examples .thumbnail-item").first.wait_for(timeout=60_000)
    return page


def test_add_suggested_moves_a_query_line_into_the_named_row():
    names = ["greeting", "weather"] + [""] * 18
    items = ["hello", "rain?"] + [""] * 18
    queries, *rows = add_suggested("text", 0, ["storm tonight?"], "Weather", "hi!\nstorm tonight? | weather\n",
                                   *names, *items)
    assert queries == "hi!" and rows[1] == "rain?\nstorm tonight?" and rows[0] == "hello"


def test_browser_suggestions_appear_and_one_click_adds_and_refits(app_url, browser, artifacts):
    page = _open(browser, app_url)
    try:
        page.locator("#image-examples .thumbnail-item").first.click()  # animals: 3 classes of 5, 6 queries
        page.locator("#image-status", has_text="15 examples").wait_for(timeout=120_000)
        suggested = page.locator(".fs-suggested-query:visible")
        suggested.first.wait_for(timeout=60_000)
        assert 1 <= suggested.count() <= SLOTS
        assert page.locator(".fs-suggestions-text:visible .fs-advice li").count() >= 1
        query = suggested.first.locator(".fs-suggested").get_attribute("data-query")
        button = suggested.first.locator("button.fs-add")
        target = re.fullmatch(r"Add to (.+)", button.inner_text().strip()).group(1)
        page.screenshot(path=str(artifacts / "suggestions.png"), full_page=True)
        cards_before = page.locator("#image-results .fs-prediction").count()
        button.click()
        page.locator("#image-status", has_text="16 examples").wait_for(timeout=120_000)  # refitted with one more
        page.locator("#image-results .fs-prediction").nth(cards_before - 2).wait_for(timeout=30_000)
        assert page.locator("#image-results .fs-prediction").count() == cards_before - 1  # it left the queries
        row = [page.locator(".fs-class-name textarea, .fs-class-name input").nth(i).input_value()
               for i in range(3)].index(target)
        page.locator(".fs-class-gallery").nth(row).locator("label", has_text="6 images").wait_for(timeout=30_000)
        names = page.locator("#image-results .fs-prediction .fs-small").all_inner_texts()
        assert query not in names
        page.locator(".fs-suggested-query:visible").first.wait_for(timeout=60_000)  # new suggestions for the new fit
        page.screenshot(path=str(artifacts / "suggestions_after_add.png"), full_page=True)
    finally:
        page.close()
