"""The dashboard in a real headless Chromium (Debian chromium driven by Playwright)."""

from __future__ import annotations

import shutil

import pytest

from tests.support.waiting import wait_until

from .fake_device import FakeDevice

pytestmark = [pytest.mark.browser, pytest.mark.broker]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def page(live):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page()
        pg.set_default_timeout(20_000)
        pg.js_errors = []
        pg.on("pageerror", lambda e: pg.js_errors.append(str(e)))
        yield pg
        browser.close()


def _create_and_start(page, name: str, model: str, **fields: str):
    """Fill the New rollout form (other inputs keep what they hold), create, press Start."""
    page.fill('#create input[name="name"]', name)
    page.select_option("#model-select", model)
    for field, value in fields.items():
        page.fill(f'#create input[name="{field}"]', value)
    page.click("#create-btn")
    card = page.locator(".rollout", has_text=name).first
    card.locator('button[data-action="start"]').click()
    return card


def test_pages_load_and_a_rollout_started_from_the_page_progresses(
    page, live, mosquitto, fleet_pub, package_pub
):
    with live.client(live.operator) as c:
        for key in ("v1", "v2"):
            c.post("/api/v1/models", files={"file": ("p.efpkg", live.packages[key].read_bytes())})
    devs = [
        FakeDevice(f"ui-{i}", mosquitto.port, fleet_pub, package_pub, tags=("ui",)).start()
        for i in range(3)
    ]
    try:
        page.goto(live.url + "/")
        page.fill("#token", live.operator)
        page.click("#login button")
        page.wait_for_selector('#devices tr[data-device="ui-2"] .online')
        assert "ui" in page.inner_text('#devices tr[data-device="ui-0"]')
        page.wait_for_selector("#models tbody tr")
        # Create a canary rollout of 1.0.0 to tag "ui" and start it from the page.
        card = _create_and_start(page, "ui-rollout", "tiny@1.0.0", tag="ui", health="0")
        card.locator(".status.COMPLETED").wait_for()
        assert "2/2 active" in card.inner_text()  # second wave after the canary
        page.wait_for_selector(
            '#devices tr[data-device="ui-1"] .active-model:has-text("tiny@1.0.0")'
        )
        # A second rollout soaks long enough to pause and roll it back from the page.
        card = _create_and_start(page, "ui-pause", "tiny@2.0.0", soak="120")
        assert wait_until(
            lambda: devs[0].active == "tiny@2.0.0" or any(d.active == "tiny@2.0.0" for d in devs),
            20,
        )
        card.locator('button[data-action="pause"]').click()
        card.locator(".status.PAUSED").wait_for()
        card.locator('button[data-action="rollback"]').click()
        card.locator(".status.ROLLED_BACK").wait_for()
        assert "rollback from dashboard" in card.inner_text()
        # Telemetry charts per version.
        for d in devs:
            d.telemetry("tiny@1.0.0", calls=50, errors=1, p95=4.0)
        live.service.sync()
        page.wait_for_selector(
            '#charts .version[data-model="tiny@1.0.0"] svg circle', state="attached"
        )
        assert page.inner_text("#error") == ""
        assert page.js_errors == []
    finally:
        for d in devs:
            d.stop()
