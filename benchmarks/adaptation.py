"""Resource adaptation under a driven scenario: memory pressure, then critical heat, then calm.

The agent's serving parts run as in `edgefleet agent` with ``adapt = true``: ActiveModel +
LocalEndpoint + the Adapter's watcher thread, reading a fake board tree (cgroup v2
memory.current/max, PSI memory.pressure, thermal zones, loadavg) that this script drives.
The package holds MobileNetV2 width 1.0 (preferred, listed first) and width 0.5 (smaller).
8 closed-loop HTTP clients call the endpoint throughout.

    python benchmarks/adaptation.py --json

Figures: react_s (pressure written -> serving the smaller artifact with fewer threads, goal
<= 2), lost_requests (accepted requests that did not get their answer, goal 0; a 429 is a
refusal, not a loss), returned_to_preferred (after calm, with the policy's hysteresis
calm_s), return_s, shed (429s while critical).
"""

from __future__ import annotations

import http.client
import json
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from tests.support.fake_board import FakeBoard  # noqa: E402


def build_store(work: Path, size: int) -> tuple[Path, str, str]:
    import torch
    from edgefleet.device_agents import ModelStore
    from edgefleet.sdk import PackageBuilder, TensorSpec, TrustPolicy
    from sdk_overhead import mobilenet_v2

    x = torch.randn(2, 3, size, size)
    names = {1.0: "mobilenet-v2-1.0.onnx", 0.5: "mobilenet-v2-0.5.onnx"}
    with PackageBuilder(
        "mobilenet-v2", "1.0.0",
        inputs=[TensorSpec(name="input", dtype="float32", shape=["batch", 3, size, size])],
        outputs=[TensorSpec(name="logits", dtype="float32", shape=["batch", 1000])],
    ) as b:  # fmt: skip
        b.set_golden_inputs({"input": x.numpy()})
        for width, name in names.items():
            model = mobilenet_v2(width=width)
            path = work / name
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # exporter deprecation notes
                axes = {"input": {0: "batch"}, "logits": {0: "batch"}}
                torch.onnx.export(
                    model, (x,), str(path), input_names=["input"], output_names=["logits"],
                    dynamo=False, dynamic_axes=axes,
                )  # fmt: skip
                want = model(x).numpy()
            b.add_artifact(path, format="onnx", precision="fp32", name=name,
                           golden_outputs={"logits": want}, golden_atol=1e-3)  # fmt: skip
        pkg = b.build(work / "mobilenet-v2.efpkg")
    ModelStore(work / "store").install(pkg, TrustPolicy.workstation())
    return work / "store", names[1.0], names[0.5]


class Clients:
    """Closed-loop HTTP clients counting answers, refusals (429) and losses."""

    def __init__(self, address: str, body: bytes, n: int) -> None:
        self.host, port = address.removeprefix("http://").split(":")
        self.port = int(port)
        self.body = body
        self.ok = self.shed = self.lost = 0
        self.lost_detail: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(n)]

    def start(self) -> Clients:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                conn.request("POST", "/v1/predict", self.body)
                r = conn.getresponse()
                data = r.read()
                conn.close()
                status, why = r.status, data[:200].decode(errors="replace")
            except OSError as e:
                status, why = 0, repr(e)
            with self._lock:
                if status == 200:
                    self.ok += 1
                elif status == 429:
                    self.shed += 1
                else:
                    self.lost += 1
                    self.lost_detail.append(f"{status}: {why}")
            if status == 429:
                time.sleep(0.05)  # a polite client backs off (Retry-After is in seconds)


def _wait(adapter, level: str, timeout: float) -> float | None:
    """Seconds until the adapter reports ``level`` (its switch applied), or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if adapter.switches and adapter.switches[-1].level == level:
            return adapter.switches[-1].applied_at - t0
        time.sleep(0.005)
    return None


def main(argv: list[str] | None = None) -> int:
    from _harness import emit, parser
    from _harness import host_line as _host

    ap = parser(__doc__, size=(96, "input height and width"), clients=8,
                interval=(0.25, "adapter sampling period, s"),
                hold=(3.0, "seconds in each phase"))  # fmt: skip
    args = ap.parse_args(argv)
    from edgefleet.device_agents import ActiveModel, Adapter, AdaptOptions, LocalEndpoint
    from edgefleet.device_agents import ModelStore as Store
    from edgefleet.sdk import ResourcePolicy, TrustPolicy

    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    with tempfile.TemporaryDirectory() as tmp:
        store, preferred, smaller = build_store(Path(tmp), args.size)
        board = FakeBoard(Path(tmp) / "board")
        active = ActiveModel(Store(store), trust=TrustPolicy.workstation(), profile="x86_64-cpu")
        policy = ResourcePolicy()
        adapter = Adapter(active, AdaptOptions(policy=policy, interval_s=args.interval,
                                               root=board.root))  # fmt: skip
        ep = LocalEndpoint(active, "127.0.0.1:0", admit=adapter.admit).start()
        x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
        body = json.dumps({"inputs": {"input": x.tolist()}}).encode()
        clients = Clients(ep.address, body, args.clients).start()
        adapter.start()
        try:
            time.sleep(args.hold)
            before = active.loaded.info.artifact.name
            say("memory pressure: cgroup at 90% of memory.max, PSI some avg10 = 15")
            board.set(memory=0.90, pressure=15.0)
            react = _wait(adapter, "constrained", 30)
            constrained = adapter.switches[-1] if adapter.switches else None
            time.sleep(args.hold)
            say("critical heat: 92 C")
            board.set(temps=(92.0, 60.0))
            react_critical = _wait(adapter, "critical", 30)
            shed_before = clients.shed
            time.sleep(args.hold)
            shed = clients.shed - shed_before
            say("calm: memory 40%, no pressure, 45 C")
            board.set(memory=0.40, pressure=0.0, temps=(45.0, 45.0))
            back = _wait(adapter, "normal", 30 + policy.calm_s)
            time.sleep(args.hold)
            after = active.loaded.info.artifact.name
        finally:
            clients.stop()
            adapter.stop()
            ep.stop()
            active.close()
    out = {
        "benchmark": "adaptation",
        "model": f"MobileNetV2 width 1.0 (preferred) and 0.5, {args.size}x{args.size}, ONNX "
        "Runtime",
        "clients": args.clients,
        "sample_interval_s": args.interval,
        "calm_s": policy.calm_s,
        "preferred_artifact": before,
        "constrained_artifact": constrained.artifact if constrained else None,
        "constrained_threads": constrained.threads if constrained else None,
        "react_s": round(react, 3) if react is not None else None,
        "react_critical_s": round(react_critical, 3) if react_critical is not None else None,
        "return_s": round(back, 3) if back is not None else None,
        "returned_to_preferred": after == preferred and before == preferred,
        "answered": clients.ok,
        "shed": shed,
        "lost_requests": clients.lost,
        "lost_detail": clients.lost_detail[:5],
        "switches": [f"{s.previous}->{s.level}" for s in adapter.switches],
        "goal": "react_s <= 2, lost_requests == 0, returned_to_preferred",
        "goal_met": react is not None
        and react <= 2
        and clients.lost == 0
        and after == preferred
        and constrained is not None
        and constrained.artifact == smaller,
        "host": _host(),
    }
    return emit(out, True)


if __name__ == "__main__":
    sys.exit(main())
