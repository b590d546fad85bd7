"""The dashboard at fleet scale: 10,000 registered devices in a real headless Chromium.

Starts the fleet (SQLite, uvicorn; MQTT off: devices are inserted through the store, as
provisioning would), registers N devices (profiles, tags, online state, slots), writes an
hour of telemetry for a few hundred of them on three versions, and keeps writing more (and
touching devices) while it measures, as a live fleet would. Then, in Debian's Chromium
driven by Playwright:

- ``first_render_s``: navigation until the device table (first page) and the telemetry
  charts are drawn (median over fresh browser contexts, after one warm-up navigation);
- ``poll_bytes_per_s``: response bytes (headers + bodies) the open page pulls per second in
  steady state, next to what the v1 page pulled (every device each second) in the same run;
- ``search_s``: type a device id into the search box until its row is the one shown
  (median over several ids; includes the 150 ms typing debounce).

    python benchmarks/dashboard_scale.py --json
"""

from __future__ import annotations

import json
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

PROFILES = ["raspberry-pi-4", "raspberry-pi-5", "jetson-orin-nano", "rockchip-rk3588"]
VERSIONS = ["digits@1.0.0", "digits@1.1.0", "digits@1.2.0"]
from _harness import emit, host, parser  # noqa: E402 (after sys.path)

from tests.support.browser import CHROMIUM  # noqa: E402
from tests.support.browser import CHROMIUM_ARGS as ARGS  # noqa: E402


def register_devices(service, n: int) -> None:
    from edgefleet.fleet._db import Device
    from sqlalchemy import insert

    rnd = random.Random(1)
    now = datetime.now(UTC)
    rows = []
    for i in range(n):
        slot = VERSIONS[rnd.randrange(len(VERSIONS))]
        rows.append(
            {
                "id": f"dev-{i:05d}",
                "profile": PROFILES[i % len(PROFILES)],
                "tags": sorted({f"site-{i % 40:02d}", rnd.choice(["lab", "field", "retail"])}),
                "online": rnd.random() < 0.9,
                "last_seen": now - timedelta(seconds=rnd.randrange(3600)),
                "agent_version": "0.1.0",
                "active_slot": "A",
                "slot_a": slot,
                "slot_b": None,
                "inventory": {
                    "profile": PROFILES[i % len(PROFILES)],
                    "runtimes": {"onnxruntime": "1.20"},
                },
                "decommissioned": False,
                "created_at": now - timedelta(days=1),
            }
        )
    with service.ctx.engine.begin() as conn:
        for i in range(0, n, 2000):
            conn.execute(insert(Device), rows[i : i + 2000])


def telemetry_rows(devices: list[str], t0: float, t1: float, step: float, seq0: int) -> list:
    rnd = random.Random(int(t0))
    rows = []
    seq = seq0
    for j, dev in enumerate(devices):
        model = VERSIONS[j % len(VERSIONS)]
        base = 2.0 + VERSIONS.index(model) * 0.4
        t = t0
        while t < t1:
            calls = rnd.randrange(20, 60)
            seq += 1
            rows.append(
                (
                    dev,
                    model,
                    t,
                    seq,
                    calls,
                    rnd.randrange(0, 2),
                    base * 0.6,
                    base + rnd.random(),
                    base * 1.5,
                    0.5 + rnd.random() * 0.3,
                    None,  # ttft_p95_ms, decode_tps: not a generative model
                    None,
                )
            )
            t += step
    return rows


def main() -> int:
    ap = parser(
        __doc__, devices=10_000, telemetry_devices=300, poll_window_s=30.0, renders=5, searches=5
    )
    args = ap.parse_args()
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))

    import uvicorn
    from edgefleet.fleet import FleetService, FleetSettings, create_app
    from playwright.sync_api import sync_playwright

    from tests.support.mosquitto import free_port

    tmp = Path(tempfile.mkdtemp(prefix="dash-scale-"))
    port = free_port()
    admin = f"eft_{secrets.token_hex(8)}_{secrets.token_hex(16)}"
    service = FleetService(
        FleetSettings(
            data_dir=tmp,
            port=port,
            mqtt_enabled=False,
            bootstrap_admin_token=admin,
            allow_unverified_packages=True,
        )
    )
    service.start()
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    try:
        t = time.perf_counter()
        register_devices(service, args.devices)
        log(f"registered {args.devices} devices in {time.perf_counter() - t:.1f}s")
        tdevs = [
            f"dev-{i:05d}" for i in range(0, args.devices, args.devices // args.telemetry_devices)
        ]
        tdevs = tdevs[: args.telemetry_devices]
        now = time.time()
        rows = telemetry_rows(tdevs, now - 3600, now, 60.0, 0)
        service.telemetry.put_many(rows)
        service.telemetry.flush(60)
        log(f"{len(rows)} telemetry rows for {len(tdevs)} devices")

        def live_fleet() -> None:
            """Telemetry every 10 s from the reporting devices, and device state changes."""
            from edgefleet.fleet._db import Device
            from sqlalchemy import update

            seq, rnd = 10_000_000, random.Random(2)
            while not stop.wait(10):
                t1 = time.time()
                batch = telemetry_rows(tdevs, t1 - 10, t1, 10.0, seq)
                seq += len(batch)
                service.telemetry.put_many(batch)
                ids = [f"dev-{rnd.randrange(args.devices):05d}" for _ in range(50)]
                with service.ctx.engine.begin() as conn:
                    conn.execute(
                        update(Device).where(Device.id.in_(ids)).values(last_seen=datetime.now(UTC))
                    )

        feeder = threading.Thread(target=live_fleet, daemon=True)
        feeder.start()
        import httpx

        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}) as c:
            v1 = c.get("/api/v1/devices")
            v1_bytes = len(v1.content) + sum(len(k) + len(v) + 4 for k, v in v1.headers.items())
            count = len(v1.json())
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            renders = []

            def new_page():
                ctx = browser.new_context(viewport={"width": 1280, "height": 900})
                ctx.add_init_script(f"localStorage.setItem('edgefleet-token', {json.dumps(admin)})")
                page = ctx.new_page()
                page.set_default_timeout(60_000)
                return ctx, page

            ready = (
                "document.querySelectorAll('#devices tbody tr[data-device]').length === 50 && "
                "document.querySelector('[data-metric=\"p95_ms\"] path[data-series]') !== null"
            )
            for i in range(args.renders + 1):  # the first navigation warms Chromium up
                ctx, page = new_page()
                t = time.perf_counter()
                page.goto(url + "/")
                page.wait_for_function(ready, polling="raf")
                if i:
                    renders.append(time.perf_counter() - t)
                ctx.close()
            log(f"first render: {renders}")
            ctx, page = new_page()
            page.goto(url + "/")
            page.wait_for_function(ready, polling="raf")
            page.wait_for_timeout(3000)
            sizes: list[int] = []

            def done(req) -> None:
                s = req.sizes()
                sizes.append(s["responseBodySize"] + s["responseHeadersSize"])

            page.on("requestfinished", done)
            page.wait_for_timeout(args.poll_window_s * 1000)
            page.remove_listener("requestfinished", done)
            poll_bytes = sum(sizes) / args.poll_window_s
            log(f"poll: {len(sizes)} requests, {sum(sizes)} bytes in {args.poll_window_s}s")
            searches = []
            rnd = random.Random(3)
            for _ in range(args.searches):
                dev = f"dev-{rnd.randrange(args.devices):05d}"
                t = time.perf_counter()
                page.fill("#device-search", dev)
                page.wait_for_function(
                    "(id) => { const r = document.querySelectorAll('#devices tbody tr');"
                    " return r.length === 1 && r[0].dataset.device === id; }",
                    arg=dev,
                    polling="raf",
                )
                searches.append(time.perf_counter() - t)
            log(f"search: {searches}")
            shown = page.inner_text("#total-devices")
            browser.close()
        result = {
            "devices": count,
            "devices_on_page": int(shown),
            "telemetry_devices": len(tdevs),
            "first_render_s": round(statistics.median(renders), 3),
            "first_render_all_s": [round(x, 3) for x in renders],
            "poll_bytes_per_s": round(poll_bytes),
            "poll_requests": len(sizes),
            "v1_poll_bytes_per_s": v1_bytes,  # the v1 page fetched every device each second
            "poll_bytes_ratio_v2_to_v1": round(poll_bytes / v1_bytes, 5),
            "search_s": round(statistics.median(searches), 3),
            "search_all_s": [round(x, 3) for x in searches],
            "goals": {
                "devices": ">= 10000",
                "first_render_s": "<= 1.5",
                "poll_bytes_per_s": "<= 50000",
                "search_s": "<= 0.5",
            },
            "host": host(),
            "chromium": CHROMIUM,
        }
    finally:
        stop.set()
        server.should_exit = True
        time.sleep(0.3)
        service.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return emit(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
