"""Where it looked, in headless Chromium: one click on an example set draws a heat map on every query
card, laid on its picture, and on its nearest support pictures; the screen is saved to
``tests/artifacts/heatmap.png``."""

from __future__ import annotations


def test_browser_one_click_on_an_example_draws_the_heat_maps_on_the_query_cards(app_url, browser, artifacts):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(app_url, wait_until="load", timeout=60_000)
        page.locator("#image-examples .thumbnail-item").first.click(timeout=60_000)  # animals, ProtoNet
        page.locator("#image-results .fs-prediction").first.wait_for(timeout=120_000)
        page.locator("#image-status", has_text="queries classified").wait_for(timeout=30_000)
        cards = page.locator("#image-results .fs-prediction")
        looked = cards.evaluate_all("""cs => cs.map(c => {
            const column = c.querySelector('.fs-looked');
            if (!column) return null;
            const veils = [...column.querySelectorAll('img.fs-veil')];
            const query = column.querySelector('.fs-heat');
            const [picture, veil] = query.querySelectorAll('img');
            const a = picture.getBoundingClientRect(), b = veil.getBoundingClientRect();
            return {label: c.dataset.label, looked: column.dataset.class, legend: column.innerText,
                    veils: veils.length, drawn: veils.every(v => v.complete && v.naturalWidth > 0),
                    onTop: a.left === b.left && a.top === b.top && a.width === b.width && a.height === b.height};
        })""")
        assert len(looked) == 6 and all(card is not None for card in looked)
        for card in looked:
            assert card["looked"] == card["label"]  # the map is for the predicted class
            assert f"brighter = looks more like {card['label']}" in card["legend"]
            assert card["veils"] == 4 and card["drawn"] and card["onTop"]  # the query and its 3 nearest
        cards.first.scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / "heatmap.png"), full_page=False)
    finally:
        page.close()
