"""The README's picture: the image tab after its first example set was loaded and classified.

    FEWSHOT_SCREENSHOT_DIR=docs python -m pytest tests/test_screenshot.py   # rewrites docs/screenshot-image-tab.png

Without the variable the picture goes to pytest's ``tmp_path``, so a CI run checks that the page
still produces it without ever rewriting the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageStat

ROOT = Path(__file__).resolve().parents[1]
#: Set to a folder (relative to the repository, e.g. ``docs``) to write the picture there.
SCREENSHOT_DIR_ENV_VAR = "FEWSHOT_SCREENSHOT_DIR"
FILE_NAME = "screenshot-image-tab.png"
VIEWPORT = {"width": 1280, "height": 1000}
#: Space kept around the cropped region, in CSS pixels.
MARGIN = 16
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _target(tmp_path: Path) -> Path:
    folder = os.environ.get(SCREENSHOT_DIR_ENV_VAR, "").strip()
    if not folder:
        return tmp_path / FILE_NAME
    path = Path(folder) if Path(folder).is_absolute() else ROOT / folder
    path.mkdir(parents=True, exist_ok=True)
    return path / FILE_NAME


def _region(page) -> dict[str, float]:
    """Page coordinates from the status line (how many right) to the last prediction card."""
    return page.evaluate(
        """([margin]) => {
            const top = document.querySelector('#image-status').getBoundingClientRect();
            const results = document.querySelector('#image-results').getBoundingClientRect();
            const y = Math.max(0, top.top + window.scrollY - margin);
            return {x: 0, y, width: document.documentElement.clientWidth,
                    height: results.bottom + window.scrollY + margin - y};
        }""",
        [MARGIN],
    )


def test_the_readme_screenshot_shows_an_example_set_classified(app_url, browser, tmp_path):
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.goto(app_url, wait_until="load", timeout=60_000)
        first_card = page.locator("#image-examples .thumbnail-item").first
        first_card.wait_for(timeout=60_000)
        first_card.click()
        cards = page.locator("#image-results .fs-prediction")
        cards.first.wait_for(timeout=120_000)
        page.locator("#image-status", has_text="queries classified").wait_for(timeout=30_000)
        # The cards' thumbnails (the query and its most similar support images) are decoded.
        page.wait_for_function(
            "[...document.querySelectorAll('#image-results img')].every(i => i.complete && i.naturalWidth > 0)",
            timeout=30_000,
        )
        marks = cards.evaluate_all("cs => cs.map(c => c.dataset.correct)")
        assert marks and all(mark in ("true", "false") for mark in marks), marks  # each card says right or wrong
        assert page.locator("#image-results img").count() >= 2 * len(marks)  # query + nearest thumbnails
        assert page.locator("#image-results .fs-row .p", has_text="%").count() >= len(marks)  # probabilities
        region = _region(page)
        target = _target(tmp_path)
        page.screenshot(path=str(target), full_page=True, clip=region)
    finally:
        page.close()

    data = target.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert 50_000 < len(data) < 5_000_000, len(data)
    with Image.open(target) as picture:
        width, height = picture.size
        assert picture.format == "PNG"
        assert 1000 <= width <= 1400 and 600 <= height <= 2000, picture.size
        spread = ImageStat.Stat(picture.convert("L")).stddev[0]
    assert spread > 20, spread  # photos and text, not a blank or single-colour page
