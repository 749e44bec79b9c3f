"""The project file as a person uses it, in headless Chromium: a one-click example shows its results in
view, Save project, reload the page, Open project, Classify again gives the same predictions; a file
that is refused leaves the rows as they were. Screenshots go to ``tests/artifacts/project-*.png``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import gradio as gr
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.ui import image_tab, text_tab
from fewshot_demo.ui.support import project as project_ui
from fewshot_demo.ui.support.rows import ROWS

CARD_LABELS = "cs => cs.map(c => c.dataset.label)"


def _open(browser, app_url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page.goto(app_url, wait_until="load", timeout=60_000)
    page.locator("#image-examples .thumbnail-item").first.wait_for(timeout=60_000)
    return page


def _classified(page, count: int = 6) -> list[str]:
    page.locator("#image-status", has_text="queries classified").wait_for(timeout=120_000)
    cards = page.locator("#image-results .fs-prediction")
    cards.nth(count - 1).wait_for(timeout=30_000)
    return cards.evaluate_all(CARD_LABELS)


def _open_project(page, path: Path) -> None:
    with page.expect_file_chooser() as chooser:
        page.locator(".fs-project-open").first.click()
    chooser.value.set_files(str(path))


def test_browser_a_saved_project_reopens_and_classifies_the_same(app_url, browser, artifacts, tmp_path):
    page = _open(browser, app_url)
    try:
        page.locator("#image-examples .thumbnail-item").first.click()  # animals: 3 classes of 5, 6 queries
        _classified(page)
        # The results come into view by themselves: the status line's top is in the window.
        top = "document.getElementById('image-status').getBoundingClientRect().top"
        try:
            page.wait_for_function(f"() => {top} > -2 && {top} < window.innerHeight / 2", timeout=10_000)
        except PlaywrightTimeout:
            raise AssertionError(f"the results are not in view: top {page.evaluate(top)}, "
                                 f"scrolled {page.evaluate('window.scrollY')}") from None
        page.screenshot(path=str(artifacts / "project-example-in-view.png"))
        page.locator("#image-method input").click()
        page.get_by_role("option", name="Linear probe (transfer)", exact=True).click()
        page.locator("#classify").click()
        page.locator("#image-status", has_text="with Linear probe").wait_for(timeout=120_000)
        before = _classified(page)

        page.locator(".fs-project-save").first.click()
        page.locator(".fs-project-status", has_text="Saved the project").first.wait_for(timeout=30_000)
        with page.expect_download() as download:
            page.locator(".fs-project-file a").first.click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        with zipfile.ZipFile(saved) as archive:
            assert "fewshot-project.json" in archive.namelist()

        page.reload(wait_until="load")
        page.locator("#image-examples .thumbnail-item").first.wait_for(timeout=60_000)
        assert page.locator(".fs-class-gallery").first.locator(".thumbnail-item").count() == 0
        _open_project(page, saved)
        page.locator(".fs-project-status", has_text="Opened").first.wait_for(timeout=30_000)
        gallery = page.locator(".fs-class-gallery").first
        gallery.locator("label", has_text="5 images").wait_for(timeout=10_000)
        assert page.get_by_label("Class 1", exact=True).first.input_value() == "bird"
        assert page.locator("#image-method input").input_value() == "Linear probe (transfer)"
        page.screenshot(path=str(artifacts / "project-opened.png"))
        page.locator("#classify").click()
        page.locator("#image-status", has_text="with Linear probe").wait_for(timeout=120_000)
        assert _classified(page) == before
        page.screenshot(path=str(artifacts / "project-classified-again.png"), full_page=True)

        corrupt = tmp_path / "corrupt.zip"
        corrupt.write_bytes(saved.read_bytes()[: saved.stat().st_size // 3])
        _open_project(page, corrupt)
        page.locator(".fs-project-status", has_text="corrupt.zip").first.wait_for(timeout=30_000)
        assert "not a valid zip" in page.locator(".fs-project-status").first.inner_text()
        assert gallery.locator(".thumbnail-item").count() == 5  # nothing on the page was lost
        assert page.get_by_label("Class 1", exact=True).first.input_value() == "bird"
        assert page.locator("#image-results .fs-prediction").evaluate_all(CARD_LABELS) == before
        page.screenshot(path=str(artifacts / "project-refused.png"))
    finally:
        page.close()


def test_the_text_tab_saves_and_opens_its_rows_method_settings_and_queries():
    with gr.Blocks():
        text_controls, image_controls = text_tab.build_controls(), image_tab.build_controls()
    text, image = text_tab.project_controls(text_controls), image_tab.project_controls(image_controls)
    rows = text_tab.load_example("intents")
    names, blocks, queries = rows[1:1 + ROWS], rows[1 + ROWS:1 + 2 * ROWS], rows[-1]
    saved, status = project_ui.save_project(text_tab.TEXT, text, "minilm:layers", "finetune", 7, "cross_entropy",
                                            queries, *names, *blocks)
    assert "Saved the project" in status and "5 classes, 40 examples, 8 queries" in status
    opened = project_ui.open_project(text_tab.TEXT, text, saved.value["path"])
    filled = 1 + 3 * ROWS
    assert opened[:1 + 2 * ROWS] == rows[:1 + 2 * ROWS]  # count, names, example blocks as they were
    assert opened[filled:filled + 5] == ["minilm:layers", "finetune", 7, "cross_entropy", queries]
    assert opened[-2] is None and "Opened fewshot-text-project.zip" in opened[-1]  # the old fit is gone
    with pytest.raises(UserInputError, match="holds texts; open it in the Text tab"):
        project_ui.open_project(image_tab.IMAGE, image, saved.value["path"])
    with pytest.raises(UserInputError, match="add classes with examples first"):
        project_ui.save_project(text_tab.TEXT, text, "minilm:layers", "linear", 0, "contrastive", "",
                                *[""] * (2 * ROWS))
