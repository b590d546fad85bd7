"""SIGKILL torture: kill a real agent process at random moments of a deployment.

Each trial: a fresh device (real ``python -m edgefleet.device_agents run`` process, v1
installed) on a real Mosquitto gets a signed deploy command for v2 (the test fleet's
artifact server, with a small delay so the download is a window of its own); after a random
delay drawn uniformly over a measured deployment's duration the agent gets SIGKILL. Then:

- while it is dead, the store must still serve v1 or v2 (else the trial counts as
  ``bricked``);
- the agent is restarted; the deployment must reach a terminal state and the store must
  serve what that state says (ACTIVE -> v2, else v1): ``served_after_restart``.

The last line is one JSON object: ``trials``, ``bricked`` (goal 0),
``served_after_restart_ratio`` (goal 1.0), the states the kills landed in, and the host.

    python benchmarks/kill_torture.py --json --trials 50
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _harness import parser  # noqa: E402 (after sys.path)

from tests.support.processes import stop_process  # noqa: E402 (after sys.path)

TERMINAL = {"ACTIVE", "FAILED", "ROLLED_BACK", "REJECTED", "CANCELED"}


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path, broker) -> None:
        from edgefleet.sdk import generate_keypair, load_private_key

        from tests.device_agents.support import ArtifactServer, Collector
        from tests.support.packages import make_package

        self.args, self.tmp, self.broker = args, tmp, broker
        priv, self.pub = generate_keypair(tmp / "keys", "fleet")
        self.key = load_private_key(priv)
        self.v1 = make_package(tmp / "v1.efpkg", version="1.0.0", signing_key=priv, seed=0)
        self.v2 = make_package(tmp / "v2.efpkg", version="2.0.0", signing_key=priv, seed=1)
        self.server = ArtifactServer(token="device-token-1", delay_s=args.download_delay)
        self.url, self.data = self.server.add(self.v2)
        self.collector = Collector(broker.port)
        self.lock = threading.Lock()

    def close(self) -> None:
        self.collector.close()
        self.server.close()

    # -- one device
    def device(self, name: str) -> dict:
        from edgefleet.device_agents import ModelStore
        from edgefleet.sdk import TrustPolicy

        root = self.tmp / name
        dev = {"id": f"torture-{name}-{uuid.uuid4().hex[:6]}", "root": root,
               "store": root / "agent" / "store", "log": root / "agent.log"}  # fmt: skip
        ModelStore(dev["store"]).install(self.v1, TrustPolicy.device(self.pub))
        dev["config"] = root / "agent.toml"
        dev["config"].write_text(
            f'device_id = "{dev["id"]}"\nbroker_url = "{self.broker.url}"\n'
            f'data_dir = "{root / "agent"}"\nfleet_keys = ["{self.pub}"]\n'
            'device_token = "device-token-1"\nlocal_endpoint = ""\n'
            "telemetry_interval_s = 3600\nreconnect_min_s = 0.1\n"
        )
        return dev

    def start(self, dev: dict) -> subprocess.Popen:
        env = {**os.environ, "EDGEFLEET_LOG_LEVEL": "INFO"}
        with open(dev["log"], "ab") as err:
            return subprocess.Popen(
                [sys.executable, "-m", "edgefleet.device_agents", "run", "-c", str(dev["config"])],
                env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT,
            )  # fmt: skip

    def wait_online(self, dev: dict, since: int, timeout: float = 60) -> None:
        from edgefleet.sdk import protocol as p

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.collector.of(p.State, dev["id"])
            if len(states) > since and states[-1].online:
                return
            time.sleep(0.02)
        raise TimeoutError(f"{dev['id']} not online within {timeout} s")

    def states(self, dev: dict, deployment_id: str) -> list[str]:
        return self.collector.states(dev["id"], deployment_id)

    def serving(self, dev: dict) -> int | None:
        """Which version the store serves (1 or 2), None if neither (bricked)."""
        import numpy as np
        from edgefleet.device_agents import ModelStore, load_active
        from edgefleet.sdk import EdgefleetError, TrustPolicy

        from tests.support.packages import tiny_inputs, tiny_reference

        try:
            model = load_active(ModelStore(dev["store"]), trust=TrustPolicy.device(self.pub))
            try:
                x = tiny_inputs(2, seed=5)
                out = model.predict(x)["logits"]
            finally:
                model.close()
        except EdgefleetError:
            return None
        for version, seed in ((1, 0), (2, 1)):
            if np.allclose(out, tiny_reference(x, seed), atol=1e-4):
                return version
        return None

    def deploy(self, dev: dict) -> str:
        from edgefleet.sdk import protocol as p

        from tests.device_agents.support import deploy_cmd

        cmd = deploy_cmd(dev["id"], self.url, self.data, self.v2, self.key,
                         health_window_s=self.args.health_window)  # fmt: skip
        self.collector.publish(p.cmd_topic(dev["id"]), p.encode(cmd))
        return cmd.deployment_id

    def wait_terminal(self, dev: dict, deployment_id: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.states(dev, deployment_id)
            if states and states[-1] in TERMINAL:
                return states[-1]
            time.sleep(0.02)
        return None

    @staticmethod
    def stop(proc: subprocess.Popen) -> None:
        stop_process(proc, 15)

    # -- runs
    def calibrate(self, i: int) -> float:
        """Seconds from the deploy command to ACTIVE, without a kill (the kill window)."""
        dev = self.device(f"calibration{i}")
        proc = self.start(dev)
        try:
            self.wait_online(dev, 0)
            t0 = time.monotonic()
            dep = self.deploy(dev)
            got = self.wait_terminal(dev, dep, 60)
            took = time.monotonic() - t0
            if got != "ACTIVE":
                raise RuntimeError(f"calibration deployment ended {got}: {dev['log']}")
            return took
        finally:
            self.stop(proc)

    def trial(self, i: int, window: float, rng: random.Random) -> dict:
        from edgefleet.sdk import protocol as p

        dev = self.device(f"t{i:03d}")
        delay = rng.uniform(0, window)
        out: dict = {"trial": i, "delay_s": round(delay, 3)}
        proc = self.start(dev)
        try:
            self.wait_online(dev, 0)
            dep = self.deploy(dev)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(15)
            time.sleep(0.2)  # events published just before the kill reach the collector
            seen = self.states(dev, dep)
            out["killed_in"] = seen[-1] if seen else "before QUEUED"
            out["serving_while_dead"] = self.serving(dev)
            n_states = len(self.collector.of(p.State, dev["id"]))
            proc = self.start(dev)
            self.wait_online(dev, n_states)
            final = self.wait_terminal(dev, dep, self.args.trial_timeout)
            out["final"] = final
            serving = self.serving(dev)
            want = 2 if final == "ACTIVE" else 1
            out["served_after_restart"] = final is not None and serving == want
            out["serving_after_restart"] = serving
        except (TimeoutError, subprocess.TimeoutExpired) as e:
            out.setdefault("final", None)
            out["served_after_restart"] = False
            out["error"] = str(e)
        finally:
            self.stop(proc)
        if not out["served_after_restart"] or out.get("serving_while_dead") is None:
            out["log_tail"] = dev["log"].read_text()[-3000:]
        return out


def _host() -> str:
    try:
        from _harness import host_line

        return host_line()
    except ImportError as e:  # onnxruntime missing: still name the CPU
        return f"unknown ({e})"


def main() -> int:
    ap = parser(
        __doc__, trials=50, trial_timeout=90.0, health_window=0.5,
        parallel=(4, "trials run side by side (mostly waiting: 4 fit on 2 cores)"),
        download_delay=(0.3, "seconds the artifact server waits before a body"),
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()

    from tests.support.mosquitto import Mosquitto

    def say(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    seed = args.seed if args.seed is not None else random.randrange(2**32)
    tmp = Path(tempfile.mkdtemp(prefix="kill-torture-"))
    t_start = time.monotonic()
    with Mosquitto() as broker:
        bench = Bench(args, tmp, broker)
        try:
            # The faster of two undisturbed deployments: a slow outlier would put most
            # kills after the end.
            with ThreadPoolExecutor(2) as pool:
                window = min(pool.map(bench.calibrate, range(2)))
            say(f"a deployment takes {window:.2f} s; killing at uniform [0, {window:.2f}] s")
            rngs = [random.Random(seed + i) for i in range(args.trials)]
            with ThreadPoolExecutor(args.parallel) as pool:
                results = []
                for r in pool.map(lambda i: bench.trial(i, window, rngs[i]), range(args.trials)):
                    results.append(r)
                    say(
                        f"trial {r['trial']:3d}: killed {r['delay_s']:.2f}s in at "
                        f"{r.get('killed_in')}, dead: v{r.get('serving_while_dead')}, "
                        f"then {r.get('final')} serving v{r.get('serving_after_restart')}"
                    )
        finally:
            bench.close()
    bricked = sum(1 for r in results if r.get("serving_while_dead") is None)
    served = sum(1 for r in results if r["served_after_restart"])
    result = {
        "trials": len(results),
        "bricked": bricked,
        "served_after_restart_ratio": round(served / max(len(results), 1), 4),
        "killed_in": dict(Counter(r.get("killed_in") for r in results).most_common()),
        "final_states": dict(Counter(str(r.get("final")) for r in results).most_common()),
        "deployment_s": round(window, 3),
        "median_kill_delay_s": round(statistics.median(r["delay_s"] for r in results), 3),
        "seed": seed,
        "parallel": args.parallel,
        "elapsed_s": round(time.monotonic() - t_start, 1),
        "host": _host(),
        "goal": {"bricked": 0, "served_after_restart_ratio": 1.0},
        "failures": [
            r
            for r in results
            if not r["served_after_restart"] or r.get("serving_while_dead") is None
        ][:3],  # fmt: skip
    }
    print(json.dumps(result))
    return 0 if bricked == 0 and served == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
