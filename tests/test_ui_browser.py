"""The method settings in the page: each panel shows for the methods whose options it sets."""

from __future__ import annotations


def _choose(page, dropdown_id: str, option: str) -> None:
    page.locator(f"#{dropdown_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def test_browser_settings_panels_follow_the_method(app_url, browser):
    page = browser.new_page()
    try:
        page.goto(app_url, wait_until="load", timeout=60_000)
        adaptation, finetune = page.locator("#image-adaptation"), page.locator("#image-finetune")
        assert not adaptation.is_visible() and not finetune.is_visible()  # ProtoNet has no settings
        _choose(page, "image-method", "MAML (meta)")
        adaptation.get_by_text("Adaptation steps on the support set").wait_for(timeout=10_000)
        assert not finetune.is_visible()
        _choose(page, "image-method", "Fine-tuning (transfer)")
        finetune.get_by_text("Fine-tuning steps").wait_for(timeout=10_000)
        adaptation.wait_for(state="hidden", timeout=10_000)
        page.get_by_role("tab", name="Text").click()
        _choose(page, "text-method", "Fine-tuning (transfer)")
        page.locator("#text-finetune").get_by_text("Fine-tuning loss").wait_for(timeout=10_000)
    finally:
        page.close()
