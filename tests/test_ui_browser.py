"""The page as a person uses it, in headless Chromium: each tab's main flow, the webcam (a fake camera),
right/wrong marks, the ONNX download, an error per tab, and a phone-width run where nothing overflows.

Every test saves what a person would see in ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import re

import pytest
import torch

from fewshot_demo.ui.support.rows import STALE_NOTE

STALE = STALE_NOTE.replace("**", "")


def _open(browser, app_url: str, width: int = 1400, height: int = 1000):
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    page.goto(app_url, wait_until="load", timeout=60_000)
    page.locator("#image-examples .thumbnail-item").first.wait_for(timeout=60_000)  # the page is built
    return page


def _choose(page, dropdown_id: str, option: str) -> None:
    page.locator(f"#{dropdown_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def _load_image_example(page, index: int = 0) -> None:
    """Click an example card; wait for its queries' prediction cards."""
    page.locator("#image-examples .thumbnail-item").nth(index).click()
    page.locator("#image-results .fs-prediction").first.wait_for(timeout=120_000)
    page.locator("#image-status", has_text="queries classified").wait_for(timeout=30_000)


def _gallery(page, row: int):
    return page.locator(".fs-class-gallery").nth(row)


def test_browser_settings_panels_follow_the_method(app_url, browser):
    page = _open(browser, app_url)
    try:
        adaptation, finetune = page.locator("#image-adaptation"), page.locator("#image-finetune")
        assert not adaptation.is_visible() and not finetune.is_visible()  # ProtoNet has no settings
        _choose(page, "image-method", "MAML (meta)")
        adaptation.get_by_text("Adaptation steps on the support set").wait_for(timeout=10_000)
        assert not finetune.is_visible()
        step_size = page.locator("#image-step-size input[type=range]")
        assert step_size.is_disabled()  # the meta-learned step sizes are in use
        page.get_by_text("Use the meta-learned step sizes").click()
        page.wait_for_function("!document.querySelector('#image-step-size input[type=range]').disabled",
                               timeout=10_000)
        _choose(page, "image-method", "Fine-tuning (transfer)")
        finetune.get_by_text("Fine-tuning steps").wait_for(timeout=10_000)
        adaptation.wait_for(state="hidden", timeout=10_000)
        domain = page.locator("#image-domain")
        assert not domain.is_visible()
        _choose(page, "image-method", "AdaBN (transfer, transductive)")
        domain.get_by_text("Share of your images' statistics").wait_for(timeout=10_000)
        finetune.wait_for(state="hidden", timeout=10_000)
        page.get_by_role("tab", name="Text").click()
        _choose(page, "text-method", "Fine-tuning (transfer)")
        page.locator("#text-finetune").get_by_text("Fine-tuning loss").wait_for(timeout=10_000)
        _choose(page, "text-method", "ProtoNet (transfer)")  # no checkpoint for the text encoder: transfer there
    finally:
        page.close()


def test_browser_image_tab_marks_right_and_wrong_and_clears_what_goes_stale(app_url, browser, artifacts):
    page = _open(browser, app_url)
    try:
        assert page.locator("#image-examples .thumbnail-item").count() >= 4  # one card per example set
        _load_image_example(page)  # animals: 3 classes of 5, 2 queries each
        assert _gallery(page, 0).locator(".thumbnail-item").count() == 5
        assert "5 images" in _gallery(page, 0).locator("label").first.inner_text()
        cards = page.locator("#image-results .fs-prediction")
        marks = cards.evaluate_all("cs => cs.map(c => [c.dataset.truth, c.dataset.correct, c.dataset.label])")
        assert len(marks) == 6 and all(truth in ("bird", "bovine", "fish") for truth, _, _ in marks)
        right = sum(correct == "true" for _, correct, _ in marks)
        assert right >= 4 and all((correct == "true") == (truth == label) for truth, correct, label in marks)
        status = page.locator("#image-status").inner_text()
        assert f"Right on {right} of the 6 queries whose class is known" in status
        if right < 6:
            assert page.locator("#image-results .fs-wrong .fs-hint").first.inner_text().startswith(
                next(t for t, c, _ in marks if c == "false"))
        page.get_by_role("button", name="Run self-check (leave-one-out) and map").click()
        page.locator(".fs-check-text").first.get_by_text("Self-check (leave-one-out").wait_for(timeout=60_000)
        page.locator(".fs-confusion").first.wait_for(state="visible", timeout=10_000)
        page.screenshot(path=str(artifacts / "image_tab_marks_and_self_check.png"), full_page=True)

        # Deleting one image changes the classes: the count follows, everything about the old fit goes.
        _gallery(page, 0).locator(".gallery-item").first.hover()
        _gallery(page, 0).locator('[aria-label="Delete image"]').first.click()
        _gallery(page, 0).locator("label", has_text="4 images").wait_for(timeout=10_000)
        page.locator("#image-status", has_text=STALE).wait_for(timeout=10_000)
        assert page.locator("#image-results .fs-prediction").count() == 0
        assert page.locator(".fs-check-text").first.inner_text().strip() == ""
        assert not page.locator(".fs-confusion").first.is_visible()
        page.locator("#classify").click()
        page.locator("#image-status", has_text="14 examples").wait_for(timeout=60_000)  # refitted on 4 + 5 + 5
        page.screenshot(path=str(artifacts / "image_tab_after_delete.png"), full_page=False)
    finally:
        page.close()


def test_browser_webcam_records_frames_into_a_class_then_predicts_live(app_url, browser, artifacts):
    page = _open(browser, app_url)
    try:
        _load_image_example(page)
        frames = page.locator("#burst-frames input[type=number]")
        frames.fill("3")
        frames.press("Enter")
        page.locator("#burst").click()  # into class 1, bird
        page.locator("#camera-status", has_text="Recording 3 frames into bird").wait_for(timeout=10_000)
        page.locator("#camera").get_by_text("Click to Access Webcam").click()
        page.locator('#camera button[aria-label="capture photo"]').click()  # start streaming
        page.locator("#camera-status", has_text="Recorded 3").wait_for(timeout=60_000)
        _gallery(page, 0).locator("label", has_text="8 images").wait_for(timeout=10_000)
        assert _gallery(page, 0).locator(".thumbnail-item").count() == 8  # the frames are visible
        page.locator("#image-status", has_text=STALE).wait_for(timeout=10_000)
        # The stream goes on: frames are classified with the last fit.
        page.locator("#camera-status", has_text="Live:").wait_for(timeout=30_000)
        live = page.locator("#live-label").inner_text()
        assert any(name in live for name in ("bird", "bovine", "fish"))
        assert re.search(r"\d+ ms for this frame", page.locator("#camera-status").inner_text())
        page.screenshot(path=str(artifacts / "webcam_burst_and_live.png"), full_page=False)
        page.locator('#camera button[aria-label="capture photo"]').click()  # the same button stops it
    finally:
        page.close()


def test_browser_exports_onnx_that_gives_the_apps_probabilities(app_url, browser, artifacts, backbone, tmp_path):
    from fewshot_demo.core.export import normalised_images, onnx_probabilities
    from fewshot_demo.core.image_task import build_support, fit_image_classifier
    from fewshot_demo.data.images import load_image
    from fewshot_demo.ui import image_tab

    page = _open(browser, app_url)
    try:
        _load_image_example(page)
        page.get_by_text("Take the classifier elsewhere").first.click()
        page.get_by_role("button", name="Export to ONNX (backbone + head, one file)").click()
        exported = page.locator(".fs-export-status").first
        exported.get_by_text("Checked with onnxruntime").wait_for(timeout=180_000)
        assert re.search(r"largest difference from the app's probabilities is \d\.\de-0[5-9]", exported.inner_text())
        assert "onnxruntime" in page.locator(".fs-code").first.inner_text()
        with page.expect_download() as download:
            page.locator(".fs-onnx-file a").first.click()
        path = tmp_path / download.value.suggested_filename
        download.value.save_as(path)
        page.get_by_label("Hugging Face Hub repository").first.fill("someone/animals")
        page.get_by_role("button", name="Push to the Hub").first.click()
        page.locator(".fs-hub-status", has_text="cannot be reached").first.wait_for(timeout=10_000)  # offline
        page.screenshot(path=str(artifacts / "export_panel.png"), full_page=False)
    finally:
        page.close()
    classes, queries = image_tab.example_set("animals")
    classifier = fit_image_classifier(build_support(classes), backbone, "protonet")
    images = [load_image(q) for q in queries]
    app = torch.tensor([[p.probabilities[c] for c in classifier.class_names]
                        for p in classifier.predict(backbone.embed(images))])
    assert torch.allclose(onnx_probabilities(path, normalised_images(backbone, images)), app, atol=1e-4)


def test_browser_errors_replace_the_status_in_every_tab(app_url, browser, artifacts):
    page = _open(browser, app_url)
    try:
        _load_image_example(page)
        page.locator("#image-queries").get_by_role("button", name="Clear").click()
        page.locator("#classify").click()
        page.locator("#image-status", has_text="Add at least one query image").wait_for(timeout=30_000)
        assert "queries classified" not in page.locator("#image-status").inner_text()
        assert page.locator("#image-results .fs-prediction").count() == 0
        page.screenshot(path=str(artifacts / "image_tab_error.png"), full_page=False)

        page.get_by_role("tab", name="Text").click()
        page.locator("#text-examples").get_by_text("intents:").first.click()
        page.locator("#text-status", has_text="queries classified").wait_for(timeout=120_000)
        marks = page.locator("#text-results .fs-prediction").evaluate_all("cs => cs.map(c => c.dataset.correct)")
        assert len(marks) == 8 and marks.count("true") >= 7  # the example queries end with "| class"
        page.locator("#text-queries textarea").fill("   ")
        page.locator("#text-classify").click()
        page.locator("#text-status", has_text="Type at least one query text").wait_for(timeout=30_000)
        assert page.locator("#text-results .fs-prediction").count() == 0
        page.screenshot(path=str(artifacts / "text_tab_error.png"), full_page=False)

        page.get_by_role("tab", name="Transfer vs meta").click()
        _choose(page, "compare-source", "Upload: a zip of class folders of images, or a CSV with text,label")
        page.locator("#compare-run").click()
        page.locator("#compare-status", has_text="upload a zip of class folders").wait_for(timeout=30_000)
        page.screenshot(path=str(artifacts / "compare_tab_error.png"), full_page=False)
    finally:
        page.close()


@pytest.mark.parametrize("width", [390])
def test_browser_nothing_overflows_a_phone(app_url, browser, artifacts, width):
    page = _open(browser, app_url, width=width, height=844)
    try:
        _load_image_example(page, index=1)  # 5 classes with long names: the widest cards
        page.get_by_role("button", name="Run self-check (leave-one-out) and map").click()
        page.locator(".fs-check-text").first.get_by_text("Self-check (leave-one-out").wait_for(timeout=60_000)
        overflow = page.evaluate("""() => {
            const width = window.innerWidth;
            const wide = [...document.querySelectorAll('.fs-card, .fs-row, .fs-class-gallery, .fs-confusion')]
                .filter(e => e.getBoundingClientRect().right > width + 1).map(e => e.className);
            return {scroll: document.documentElement.scrollWidth, width, wide};
        }""")
        page.screenshot(path=str(artifacts / f"phone_{width}px.png"), full_page=True)
        assert overflow["scroll"] <= overflow["width"] and overflow["wide"] == [], overflow
        page.get_by_role("tab", name="Text").click()
        page.locator("#text-examples").get_by_text("topics:").first.click()
        page.locator("#text-status", has_text="queries classified").wait_for(timeout=120_000)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(artifacts / f"phone_{width}px_text.png"), full_page=True)
    finally:
        page.close()
