"""The dashboard in a real headless Chromium (Debian chromium driven by Playwright), against
a live fleet with protocol-speaking devices: every page and action, role-aware buttons, the
confirmation dialog, drag-and-drop upload, the device page, charts with axes and tooltips.

With ``EDGEFLEET_SCREENSHOTS=DIR`` the tests also save the README screenshots there
(``scripts/screenshots.py`` does that).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM
from tests.support.browser import CHROMIUM_ARGS as ARGS
from tests.support.packages import make_package
from tests.support.waiting import wait_until

from .fake_device import FakeDevice

pytestmark = [pytest.mark.browser, pytest.mark.broker]


SHOTS = os.environ.get("EDGEFLEET_SCREENSHOTS")


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.mouse.move(0, 0)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def devs(live, mosquitto, fleet_pub, package_pub):
    ds = [
        FakeDevice(f"ui-{i}", mosquitto.port, fleet_pub, package_pub, tags=("ui",),
                   profile=("raspberry-pi-4" if i < 2 else "jetson-orin-nano")).start()
        for i in range(3)
    ]  # fmt: skip
    with live.client(live.operator) as c:
        c.post("/api/v1/models", files={"file": ("p.efpkg", live.packages["v1"].read_bytes())})
    assert wait_until(lambda: all(_known(live, d.id) for d in ds), 20)
    yield ds
    for d in ds:
        d.stop()


def _known(live, device_id: str) -> bool:
    with live.client(live.admin) as c:
        return c.get(f"/api/v1/devices/{device_id}").status_code == 200


def open_as(browser, live, token: str, path: str = "/"):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    page.js_errors = []
    page.on("pageerror", lambda e: page.js_errors.append(str(e)))
    page.goto(live.url + path)
    page.fill("#token", token)
    page.click("#login button")
    page.wait_for_selector("#whoami:has-text('token')")
    return page


def drop_file(page, selector: str, path: Path) -> None:
    """A real drag-and-drop: a DataTransfer holding the file, dropped on the zone."""
    data = base64.b64encode(path.read_bytes()).decode()
    dt = page.evaluate_handle(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: "application/zip" }));
            return dt;
        }""",
        [data, path.name],
    )
    page.dispatch_event(selector, "dragover", {"dataTransfer": dt})
    page.dispatch_event(selector, "drop", {"dataTransfer": dt})


def create_rollout(page, name: str, **fields: str) -> None:
    """Fill the rollouts page's form for tiny@5.0.0 on the "ui" devices (plus ``fields`` by
    input name) and press create."""
    page.click("nav a[data-nav=rollouts]")
    page.fill('#create input[name="name"]', name)
    page.select_option("#model-select", "tiny@5.0.0")
    page.fill('#create input[name="tag"]', "ui")
    for field, value in fields.items():
        page.fill(f'#create input[name="{field}"]', value)
    page.click("#create-btn")


def test_fleet_page_search_filters_device_page_and_charts(browser, live, devs):
    for d in devs:
        d.telemetry("tiny@1.0.0", calls=40, errors=1, p95=3.0 + devs.index(d))
    devs[0].telemetry(None, calls=5, errors=0, p95=1.0)  # no model: must not become a series
    live.service.sync()
    page = open_as(browser, live, live.operator)
    # The session's fleet holds every fleet test module's devices (paginated by 50): search.
    page.fill("#device-search", "ui-")
    page.wait_for_selector('#devices tr[data-device="ui-2"] .online')
    assert "ui" in page.inner_text('#devices tr[data-device="ui-0"]')
    # Server-side search and filters.
    page.fill("#device-search", "ui-1")
    page.wait_for_function("document.querySelectorAll('#devices tbody tr').length === 1")
    assert page.inner_text("#devices tbody").startswith("ui-1")
    page.fill("#device-search", "ui-")
    page.wait_for_function("document.querySelectorAll('#devices tbody tr').length >= 3")
    page.select_option('select[data-filter="profile"]', "jetson-orin-nano")
    page.wait_for_function(
        "[...document.querySelectorAll('#devices tbody tr')].map((r) => r.dataset.device)"
        ".join() === 'ui-2'"
    )
    page.select_option('select[data-filter="profile"]', "")
    page.select_option('select[data-filter="tag"]', "ui")
    page.wait_for_function("document.querySelectorAll('#devices tbody tr').length === 3")
    # Charts: one series per real version (no phantom "unknown"), time axis, y labels.
    page.wait_for_selector(
        '[data-metric="p95_ms"] path[data-series="tiny@1.0.0"]', state="attached"
    )
    assert "unknown" not in page.get_attribute("#charts", "data-versions")
    assert page.locator('[data-metric="p95_ms"] text.xlabel').count() >= 2
    assert page.locator('[data-metric="p95_ms"] text.ylabel').count() == 5
    shot(page, "fleet")
    # Tooltip on hover names the series and its value.
    box = page.locator('[data-metric="p95_ms"] svg').bounding_box()
    page.mouse.move(box["x"] + box["width"] - 12, box["y"] + box["height"] / 2)
    tip = page.locator('[data-metric="p95_ms"] .tooltip')
    tip.wait_for(state="visible")
    assert "tiny@1.0.0" in tip.inner_text()
    # The time-range picker redraws with another window.
    page.select_option("#range", "900")
    page.wait_for_selector(
        '[data-metric="p95_ms"] path[data-series="tiny@1.0.0"]', state="attached"
    )
    # Device page: inventory, runtimes, tags editing, a maintenance window, history.
    page.click('#devices tr[data-device="ui-2"] a')
    page.wait_for_selector("#device-title:has-text('ui-2')")
    assert "jetson-orin-nano" in page.inner_text("#inventory")
    page.fill("#tags-input", "ui, lab")
    page.click("#tags-form button")
    page.wait_for_selector("#tags .tag:has-text('lab')")
    page.fill('#windows-form input[name="cron"]', "0 2 * * *")
    page.fill('#windows-form input[name="duration"]', "3600")
    page.click("#windows-form button[type=submit]")
    page.wait_for_selector("#windows code:has-text('0 2 * * *')")
    page.fill('#windows-form input[name="cron"]', "99 2 * * *")
    page.fill('#windows-form input[name="duration"]', "3600")
    page.click("#windows-form button[type=submit]")
    page.wait_for_selector("#error:has-text('cron minute')")
    page.click("#windows-clear")
    page.wait_for_selector("#windows:has-text('none given')")
    page.wait_for_selector('#device-charts [data-metric="p95_ms"] path', state="attached")
    shot(page, "device")
    with live.client(live.admin) as c:
        assert "lab" in c.get("/api/v1/devices/ui-2").json()["tags"]
        c.put("/api/v1/devices/ui-2/tags", json={"tags": ["ui"]})
    assert page.js_errors == []
    page.context.close()


def test_upload_rollout_page_confirmation_and_audit(browser, live, devs, signing_keys, tmp_path):
    # A version no other test uploads: the fleet refuses a second upload of a version.
    new = make_package(
        tmp_path / "tiny-5.efpkg", version="5.0.0", seed=5, signing_key=signing_keys[0]
    )
    page = open_as(browser, live, live.operator, "/#/models")
    page.wait_for_selector("#dropzone")
    drop_file(page, "#dropzone", new)
    page.wait_for_selector("#upload-status:has-text('uploaded tiny@5.0.0')")
    page.wait_for_selector('#models tr[data-model="tiny@5.0.0"]')
    drop_file(page, "#dropzone", live.packages["unsigned"])
    page.wait_for_selector("#error:has-text('not signed')")
    shot(page, "models")
    # A canary rollout created and started from the page, followed to COMPLETED.
    create_rollout(page, "ui-rollout", health="0")
    page.wait_for_selector("#rollout .status.DRAFT")
    page.click('#rollout button[data-action="start"]')
    page.wait_for_selector("#rollout .status.COMPLETED")
    assert "1/1 active" in page.inner_text("#waves") and "2/2 active" in page.inner_text("#waves")
    assert page.locator('#rollout-devices tr[data-device="ui-1"] .state-ACTIVE').count() == 1
    assert "COMPLETED" in page.inner_text("#events")
    rid = page.url.rsplit("/", 1)[1]
    # Canary vs baseline on one chart once both versions report.
    for d in devs:
        d.telemetry("tiny@5.0.0", calls=40, errors=0, p95=5.0)
    live.service.sync()
    page.wait_for_selector(
        '#cmp-p95 path[data-series="canary tiny@5.0.0"]', state="attached", timeout=30_000
    )
    with live.client(live.operator) as c:  # a second rollout whose devices ran 5.0.0
        ro = c.post("/api/v1/rollouts", json={"name": "ui-back", "model": "tiny",
                    "version": "1.0.0", "target": {"tags": ["ui"]},
                    "spec": {"strategy": "canary", "soak_s": 300, "health_window_s": 0,
                             "max_p95_regression": 0.5}, "start": True}).json()  # fmt: skip
    assert wait_until(lambda: sum(d.active == "tiny@1.0.0" for d in devs) >= 1, 20)
    for d in devs:
        d.telemetry(d.active, calls=40, errors=0, p95=4.0)
    live.service.sync()
    page.goto(f"{live.url}/#/rollouts/{ro['id']}")
    page.wait_for_selector('#cmp-p95 path[data-series="canary tiny@1.0.0"]', state="attached")
    page.wait_for_selector('#cmp-p95 path[data-series="baseline tiny@5.0.0"]', state="attached")
    assert page.locator("#cmp-p95 path[stroke-dasharray]").count() == 1  # the gate limit
    shot(page, "rollout")
    # Pause and resume from the page (no confirmation needed for those).
    page.click('#rollout button[data-action="pause"]')
    page.wait_for_selector("#rollout .status.PAUSED")
    page.click('#rollout button[data-action="resume"]')
    page.wait_for_selector("#rollout .status.RUNNING")
    # Roll back: a confirmation dialog; Cancel leaves it running, Confirm rolls back.
    page.click('#rollout button[data-action="rollback"]')
    page.wait_for_selector("#confirm[open]")
    assert "Roll back rollout" in page.inner_text("#confirm-text")
    shot(page, "confirm")
    page.click("#confirm-cancel")
    page.wait_for_timeout(500)
    assert page.get_attribute("#rollout", "data-status") == "RUNNING"
    page.click('#rollout button[data-action="rollback"]')
    page.click("#confirm-ok")
    page.wait_for_selector("#rollout .status.ROLLED_BACK")
    assert "rollback from dashboard" in page.inner_text("#events")
    # A scheduled rollout from the form: a DRAFT that says when it starts; abort it
    # (confirmation) before its time.
    create_rollout(page, "ui-tonight", start_at="2099-01-01T02:00")
    page.wait_for_selector("#rollout .status.DRAFT")
    assert "scheduled start" in page.inner_text("#rollout")
    page.click('#rollout button[data-action="abort"]')
    page.wait_for_selector("#confirm[open]")
    assert "Abort rollout" in page.inner_text("#confirm-text")
    page.click("#confirm-ok")
    page.wait_for_selector("#rollout .status.ABORTED")
    # The audit page shows who did it.
    page.click("nav a[data-nav=audit]")
    page.wait_for_selector("#audit tbody tr")
    text = page.inner_text("#audit")
    assert "rollout.rollback" in text and "model.upload" in text and f"rollout #{rid}" in text
    assert "operator" in text
    shot(page, "audit")
    assert page.js_errors == []
    page.context.close()


def test_viewer_sees_no_actions(browser, live, devs):
    with live.client(live.operator) as c:
        rid = c.post("/api/v1/rollouts", json={"name": "ui-draft", "model": "tiny",
                     "version": "1.0.0", "target": {"tags": ["ui"]}}).json()["id"]  # fmt: skip
    page = open_as(browser, live, live.viewer, "/#/rollouts")
    page.wait_for_selector(f'.rollout[data-rollout="{rid}"]')
    assert page.locator("#create").count() == 0
    assert page.locator("button[data-action]").count() == 0
    page.goto(f"{live.url}/#/rollouts/{rid}")
    page.wait_for_selector("#rollout .status.DRAFT")
    assert page.locator("#rollout button").count() == 0
    page.click("nav a[data-nav=models]")
    page.wait_for_selector("#models tbody tr")
    assert page.locator("#dropzone").count() == 0
    page.goto(f"{live.url}/#/devices/ui-0")
    page.wait_for_selector("#device-title")
    assert page.locator("#tags-form, #windows-form, #decommission").count() == 0
    assert not page.locator("nav a[data-nav=tokens]").is_visible()
    page.click("nav a[data-nav=audit]")
    page.wait_for_selector("#audit tbody tr")
    assert "(hidden)" in page.inner_text("#audit")  # other tokens' ids are not shown
    assert page.js_errors == []
    page.context.close()


def test_admin_manages_tokens(browser, live, devs):
    page = open_as(browser, live, live.admin, "/#/tokens")
    page.wait_for_selector("#tokens tbody tr")
    page.select_option('#token-create select[name="role"]', "viewer")
    page.fill('#token-create input[name="name"]', "ui-made")
    page.click("#token-create button")
    page.wait_for_selector("#new-token code.secret")
    token = page.inner_text("#new-token code.secret")
    tid = token.split("_")[1]
    with live.client(token) as c:
        assert c.get("/api/v1/models").status_code == 200
    shot(page, "tokens")
    page.click(f'button[data-revoke="{tid}"]')
    page.wait_for_selector("#confirm[open]")
    page.click("#confirm-ok")
    page.wait_for_selector(f'#tokens tr[data-token="{tid}"]:has-text("revoked")')
    with live.client(token) as c:
        assert c.get("/api/v1/models").status_code == 401
    # Decommission a device from its page (admin only, confirmed).
    with live.client(live.admin) as c:
        assert c.post("/api/v1/devices", json={"id": "ui-spare"}).status_code == 201
    page.goto(f"{live.url}/#/devices/ui-spare")
    page.click("#decommission")
    page.wait_for_selector("#confirm[open]")
    page.click("#confirm-ok")
    page.wait_for_selector("#device-title")
    page.wait_for_function("!document.querySelector('#decommission')")
    with live.client(live.admin) as c:
        assert c.get("/api/v1/devices/ui-spare").status_code == 404  # gone, as after DELETE
    assert page.js_errors == []
    page.context.close()
