"""The web view's browser test runs inside test_live_cli.py's live service
(web_view_check.py); this says, in the test report, when no browser is there to run it
(skipped, with the reason) -- and fails instead where AGORA_REQUIRE_BROWSER=1 (CI)."""

from __future__ import annotations

import pytest

from tests.deploy.web_view_check import CHROMIUM, REQUIRED, launch


@pytest.mark.timeout(120)
def test_a_headless_browser_is_there_to_check_the_web_view():
    if CHROMIUM is None and not REQUIRED:
        pytest.skip("no Chromium: the web view's browser check in test_live_cli.py did not "
                    "run (apt-get install chromium; CI does)")
    assert CHROMIUM is not None, "AGORA_REQUIRE_BROWSER=1 but no Chromium is installed"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page()
            page.set_content("<p id=x>ok</p>")
            assert page.inner_text("#x") == "ok"
        finally:
            browser.close()
