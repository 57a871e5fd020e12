"""The page at /, in a real browser (Debian's chromium, headless, driven by Playwright): type, speak, hear it.

CI installs chromium (.ci/run) and sets F5_WORKER_BROWSER_TESTS=required, so there the test cannot skip.
"""

from __future__ import annotations

import os
import shutil

import pytest

from f5_worker.serving.api import build_app
from f5_worker.settings import Settings
from f5_worker.worker import Worker
from support.engine import store_voice
from support.server import serving

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        if os.environ.get("F5_WORKER_BROWSER_TESTS") == "required":
            pytest.fail("chromium is not installed, and this run requires the browser tests")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    volume = tmp_path_factory.mktemp("volume")
    store_voice(volume)
    worker = Worker(Settings(volume=volume, model="tiny-random", offline=True, legacy_model_dirs=(),
                             flash_attn="off")).load()
    with serving(build_app(worker)) as url:
        yield url
    worker.engine.close()


def test_the_page_streams_speech_and_plays_it_with_no_outside_requests(browser, base):
    page = browser.new_page()
    outside = []
    page.on("request", lambda request: None if request.url.startswith(base) else outside.append(request.url))
    page.goto(f"{base}/")
    page.fill("#text", "Hello from the page. " * 6)
    page.fill("#voice", "alice")
    page.click("#speak")
    page.wait_for_function("window.f5.done || window.f5.error", timeout=120_000)
    assert page.evaluate("window.f5.error") is None
    assert page.evaluate("window.f5.scheduledSeconds") > 1.0  # the streamed pieces were queued for playback
    page.wait_for_function("window.f5.context.currentTime > 0.5", timeout=30_000)  # and the audio clock ran
    assert "real-time factor" in page.inner_text("#status")
    assert outside == []  # no CDN, no fonts: it works offline


def test_the_page_says_what_went_wrong(browser, base):
    page = browser.new_page()
    page.goto(f"{base}/")
    page.fill("#voice", "nobody")
    page.click("#speak")
    page.wait_for_function("window.f5.done || window.f5.error", timeout=60_000)
    assert "nobody" in page.evaluate("window.f5.error") and "error:" in page.inner_text("#status")
