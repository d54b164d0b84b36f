"""Issue 15, item 1: the live web view ``agora up`` serves, loaded in a real headless browser
(Debian's Chromium driven by Playwright) while a job runs. ``check_web_view`` is called by
tests/deploy/test_live_cli.py on its running service (one ``agora up`` for both: the suite's
time is counted); test_web_view.py says when no browser is there to do it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("AGORA_REQUIRE_BROWSER") == "1"
"""Set by .ci/run, which installs Chromium: there a missing browser fails, never skips."""
ARTEFACT = ROOT / "out" / "artefacts" / "web-view.png"
# The flags a closed network needs (no background connections), as root (no sandbox).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOSTILE = "<b>bold&amp;<i>%{meta}x"
"""A job id (and task id) that is markup and a Plotly template (ids may hold any printable
character but '/' and white space)."""


def launch(pw):
    """Debian's Chromium, headless, with the flags this machine's closed network needs."""
    return pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)


def check_web_view(url: str, job: str, node: str, site: str, n_replicas: int,
                   n_sites: int) -> Path:
    """Load the view at ``url``: ``job`` (running) is drawn in ``node``'s row on ``site``, the
    jobs table says it runs there, the replicas (one primary) and agents are listed, and
    ``HOSTILE`` (a job, and its task, the caller submitted) is shown as the text it is. Returns the
    screenshot's path."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            said: list[str] = []          # what the page said, to show when it fails
            page.on("console", lambda m: said.append(f"console {m.type}: {m.text}"))
            page.on("pageerror", lambda e: said.append(f"page error: {e}"))
            page.goto(url)
            has = "job => (window.agoraTraceJobs || []).includes(job)"
            try:
                page.wait_for_function(has, arg=job, timeout=60_000)
            except Exception as e:
                raise AssertionError(f"{job} never drawn: {e}; the page said: {said}; its "
                                     f"status line: {page.inner_text('#status')!r}") from None
            trace = page.evaluate("job => { const t = document.getElementById('gantt').data["
                                  "window.agoraTraceJobs.indexOf(job)]; return {y: t.y, site: "
                                  "t.customdata}; }", job)
            # its bar is in its node's row (or a further row of that node), on its site
            assert trace["y"][0].split(" (")[0] == node and trace["site"] == [site], \
                (trace, node, site)
            ticks = page.locator("#gantt .ytick text").all_text_contents()
            assert trace["y"][0] in ticks, ticks                 # drawn, not only in data
            row = page.locator(f'#jobs tr[data-job="{job}"]')
            assert row.get_attribute("data-sites") == site
            assert "running" in row.inner_text()
            assert page.locator("#replicas tbody tr").count() == n_replicas
            assert page.locator("#replicas tr.primary").count() == 1
            assert page.locator("#agents tbody tr").count() == n_sites
            # a job id that is markup is shown as the text it is, in the table and the chart
            assert page.locator("#jobs tbody tr").filter(has_text=HOSTILE).count() == 1
            assert page.locator("#jobs b, #jobs i").count() == 0
            page.wait_for_function(has, arg=HOSTILE, timeout=60_000)
            assert HOSTILE in page.locator("#gantt .legend").text_content()
            assert page.locator('#gantt tspan[style*="bold"], #gantt tspan[style*="italic"]'
                                ).count() == 0
            ARTEFACT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTEFACT), full_page=True)
        finally:
            browser.close()
    return ARTEFACT
