"""Rollout at scale: the fleet, a real Mosquitto and N simulated agents on this machine.

Starts Mosquitto, the fleet (uvicorn + MQTT), ``edgefleet agent simulate`` in a separate
process, waits until every agent is registered online, uploads a signed package and rolls
it out to all of them (waves: 1 canary, then the rest). Measures the time from "start"
until every device reports ACTIVE. Last line: one JSON object.

    python benchmarks/rollout_scale.py --devices 1000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cpu(proc) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def run_agents(args: argparse.Namespace) -> None:
    """Child process: N simulated agents (edgefleet.device_agents.Simulation) until stdin
    closes."""
    from edgefleet.device_agents import Simulation

    base = {
        "broker_url": args.broker,
        "profile": "raspberry-pi-4",
        "fleet_keys": [args.fleet_key],
        "telemetry_interval_s": 60.0,
        "smoke_test": True,
    }
    sim = Simulation.numbered(
        args.devices,
        args.data_dir,
        base,
        prefix=args.prefix,
        workers=args.sim_workers,
        first=args.first,
        step=args.step,
    ).start()
    sys.stdin.read()
    sim.stop()


def main() -> None:
    from _harness import parser

    ap = parser(__doc__, devices=1000, timeout=300.0,
                sim_workers=(16, "agent simulator worker threads"),
                sim_procs=(2, "agent simulator processes"))  # fmt: skip
    # The agent simulator child process's own arguments (rollout_scale.py runs itself).
    ap.add_argument("--agents-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", default="sim", help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--step", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--broker", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--fleet-key", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.agents_child:
        run_agents(args)
        return

    import httpx
    import psutil
    import uvicorn
    from edgefleet.fleet import FleetService, FleetSettings, create_app
    from edgefleet.sdk import generate_keypair

    from tests.support.mosquitto import Mosquitto, free_port
    from tests.support.packages import make_package

    def say(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="rollout-scale-"))
    key, pub = generate_keypair(tmp / "keys", "fleet")
    pkg = make_package(tmp / "tiny.efpkg", version="1.0.0", signing_key=key)
    port = free_port()
    with Mosquitto(extra_conf=["max_connections -1"]) as broker:
        settings = FleetSettings(
            data_dir=tmp / "fleet",
            broker_url=broker.url,
            port=port,
            signing_key=key,
            trusted_package_keys=[pub],
            bootstrap_admin_token="eft_00000000000000aa_bench-admin",
            tick_interval_s=0.2,
        )
        service = FleetService(settings).start()
        server = uvicorn.Server(
            uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
        )
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        # Agents run in child processes (one GIL each), as a field of devices would. Ids are
        # interleaved (child k has sim-k, sim-(k+P), ...): the rollout dispatches in id order,
        # and contiguous blocks kept one child busy while the other idled (measured).
        procs = args.sim_procs
        per = [len(range(k, args.devices, procs)) for k in range(procs)]
        sims = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--agents-child",
                    "--devices",
                    str(n),
                    "--prefix",
                    "sim",
                    "--first",
                    str(k),
                    "--step",
                    str(procs),
                    "--broker",
                    broker.url,
                    "--data-dir",
                    str(tmp / "agents"),
                    "--fleet-key",
                    str(pub),
                    "--sim-workers",
                    str(args.sim_workers),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL if args.json else None,
                env={**os.environ, "EDGEFLEET_LOG_LEVEL": "ERROR"},
            )
            for k, n in enumerate(per)
        ]
        c = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=60,
            headers={"Authorization": "Bearer eft_00000000000000aa_bench-admin"},
        )
        result: dict = {
            "devices": args.devices,
            "broker": "mosquitto",
            "all_active_s": None,
            "sim_procs": args.sim_procs,
        }
        try:
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.timeout:
                online = sum(d["online"] for d in c.get("/api/v1/devices").json())
                if online >= args.devices:
                    break
                time.sleep(1)
            result["online_s"] = round(time.monotonic() - t0, 2)
            say(f"{online}/{args.devices} agents online after {result['online_s']} s")
            r = c.post("/api/v1/models", files={"file": ("tiny.efpkg", pkg.read_bytes())})
            r.raise_for_status()
            spec = {
                "strategy": "waves",
                "waves": [{"count": 1}],
                "health_window_s": 0,
                "max_concurrent_downloads": 64,
                "failure_threshold": 0.01,
                "stuck_timeout_s": 120,
            }
            body = {
                "name": "scale",
                "model": "tiny",
                "version": "1.0.0",
                "target": {"profile": "raspberry-pi-4"},
                "spec": spec,
                "start": True,
            }
            # CPU seconds spent by the fleet (this process: fleet + the polling client) and by
            # the simulated agents during the rollout: shows which side is the bottleneck.
            agents = [psutil.Process(sim.pid) for sim in sims]
            cpu0 = (_cpu(psutil.Process()), sum(_cpu(a) for a in agents))
            t1 = time.monotonic()
            rid = c.post("/api/v1/rollouts", json=body).json()["id"]
            status = ""
            while time.monotonic() - t1 < args.timeout:
                ro = c.get(f"/api/v1/rollouts/{rid}").json()
                status = ro["status"]
                active = sum(w["active"] for w in ro["waves"])
                if status != "RUNNING":
                    break
                say(f"  {time.monotonic() - t1:6.1f}s  {active} ACTIVE")
                time.sleep(0.5)
            elapsed = time.monotonic() - t1
            result.update(
                fleet_cpu_s=round(_cpu(psutil.Process()) - cpu0[0], 1),
                agents_cpu_s=round(sum(_cpu(a) for a in agents) - cpu0[1], 1),
            )
            result.update(
                status=status,
                active=active,
                failed=sum(w["failed"] for w in ro["waves"]),
                all_active_s=round(elapsed, 2) if active == args.devices else None,
                failures=dict(
                    Counter(
                        f"{d['state']}: {d['detail'][:120]}"
                        for d in ro["devices"]
                        if d["state"] not in ("ACTIVE", "PENDING")
                    ).most_common(3)
                ),
                goal_s=60,
            )
        finally:
            for sim in sims:
                sim.stdin.close()  # the child stops its agents when stdin closes
            for sim in sims:
                try:
                    sim.wait(60)
                except subprocess.TimeoutExpired:
                    sim.kill()
            server.should_exit = True
            service.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
