"""Concurrency on the agent's local endpoint: dynamic micro-batching on vs off, one run.

A MobileNetV2 (no torchvision; random weights; dynamic batch dim) is exported to ONNX and
installed in a device store. Two endpoint processes serve it (the agent's LocalEndpoint +
ActiveModel, as `edgefleet agent` runs them): one with batching (``--max-batch`` rows or
``--delay-us``), one without. 16 closed-loop HTTP clients (each sends its next request when
the previous answer came back) hit one endpoint, then the other, alternating rounds so load
from other jobs on the host hits both alike.

    python benchmarks/concurrency.py --json

Figures: batched_throughput_ratio = median round throughput with batching / without (goal
>= 2.0), p95_latency_ratio = p95 request latency with / without (goal <= 1.5).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def build_store(work: Path, size: int, classes: int) -> Path:
    import torch
    from edgefleet.device_agents import ModelStore
    from edgefleet.sdk import PackageBuilder, TensorSpec, TrustPolicy
    from sdk_overhead import mobilenet_v2

    model = mobilenet_v2(num_classes=classes)
    x = torch.randn(2, 3, size, size)
    onnx_path = work / "mobilenet.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # exporter deprecation notes
        torch.onnx.export(model, (x,), str(onnx_path), input_names=["input"],
                          output_names=["logits"], dynamo=False,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})  # fmt: skip
        expected = model(x).numpy()
    with PackageBuilder(
        "mobilenet-v2", "1.0.0",
        inputs=[TensorSpec(name="input", dtype="float32", shape=["batch", 3, size, size])],
        outputs=[TensorSpec(name="logits", dtype="float32", shape=["batch", classes])],
    ) as b:  # fmt: skip
        b.set_golden_inputs({"input": x.numpy()})
        b.add_artifact(onnx_path, format="onnx", precision="fp32",
                       golden_outputs={"logits": expected}, golden_atol=1e-3)  # fmt: skip
        pkg = b.build(work / "mobilenet-v2.efpkg")
    store = ModelStore(work / "store")
    store.install(pkg, TrustPolicy.workstation())
    return work / "store"


def runtime_batch_gain(onnx_path: Path, size: int, batch: int, seconds: float = 2.0) -> float:
    """The ceiling batching has on this host: raw ONNX Runtime throughput of one thread
    running batch-``batch`` calls over ``batch`` threads running batch-1 calls at once (the
    same session), no HTTP. Near 1.0 means the runtime already fills the cores without it."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x1 = np.zeros((1, 3, size, size), np.float32)
    xb = np.zeros((batch, 3, size, size), np.float32)
    sess.run(None, {"input": xb})

    def concurrent() -> float:
        n = [0] * batch
        stop = time.perf_counter() + seconds

        def work(i: int) -> None:
            while time.perf_counter() < stop:
                sess.run(None, {"input": x1})
                n[i] += 1

        threads = [threading.Thread(target=work, args=(i,)) for i in range(batch)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(n) / seconds

    def batched() -> float:
        n, stop = 0, time.perf_counter() + seconds
        while time.perf_counter() < stop:
            sess.run(None, {"input": xb})
            n += batch
        return n / seconds

    ratios = [batched() / concurrent() for _ in range(3)]
    return statistics.median(ratios)


def serve(store: str, max_batch: int, delay_us: int) -> None:
    """Child process: one endpoint, prints its address, serves until stdin closes."""
    from edgefleet.device_agents import ActiveModel, BatchingOptions, LocalEndpoint, ModelStore
    from edgefleet.sdk import TrustPolicy

    active = ActiveModel(ModelStore(store), trust=TrustPolicy.workstation(), profile="x86_64-cpu")
    active.refresh(force=True)
    ep = LocalEndpoint(active, "127.0.0.1:0", BatchingOptions(max_batch, delay_us)).start()
    print(ep.address, flush=True)
    sys.stdin.read()
    ep.stop()
    active.close()


def _round(address: str, bodies: list[bytes], seconds: float) -> tuple[int, list[float], int]:
    """16 closed-loop clients for ``seconds``: (answers, latencies in ms, errors)."""
    host, port = address.removeprefix("http://").split(":")
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(body: bytes) -> None:
        while time.perf_counter() < stop:
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            t0 = time.perf_counter()
            conn.request("POST", "/v1/predict", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            dt = (time.perf_counter() - t0) * 1000
            conn.close()
            with lock:
                if r.status == 200 and b'"logits"' in data:
                    lat.append(dt)
                else:
                    errors[0] += 1

    threads = [threading.Thread(target=client, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(lat), lat, errors[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="only the JSON line on stdout")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--size", type=int, default=32, help="input height and width")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--delay-us", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=6, help="rounds per mode, alternating")
    ap.add_argument("--seconds", type=float, default=4.0, help="per round")
    ap.add_argument("--serve", nargs=3, metavar=("STORE", "MAX_BATCH", "DELAY_US"),
                    help=argparse.SUPPRESS)  # fmt: skip
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), int(args.serve[2]))
        return 0
    from compression import _host

    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp), args.size, args.classes)
        gain = runtime_batch_gain(Path(tmp) / "mobilenet.onnx", args.size, args.max_batch)
        procs, addr = {}, {}
        for mode, batch in (("batched", args.max_batch), ("unbatched", 0)):
            cmd = [sys.executable, __file__, "--serve", str(store), str(batch), str(args.delay_us)]
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            procs[mode], addr[mode] = p, p.stdout.readline().strip()
        rng = np.random.default_rng(0)
        bodies = [
            json.dumps({"inputs": {"input": rng.random((1, 3, args.size, args.size),
                                                       dtype=np.float32).tolist()}}).encode()
            for _ in range(args.clients)
        ]  # fmt: skip
        try:
            for mode in addr:  # warm-up: model loaded, thread pools spun up
                _round(addr[mode], bodies, 1.0)
            tput: dict[str, list[float]] = {m: [] for m in addr}
            lats: dict[str, list[float]] = {m: [] for m in addr}
            errors = dict.fromkeys(addr, 0)
            for i in range(args.rounds):
                order = list(addr) if i % 2 == 0 else list(reversed(addr))
                for mode in order:
                    n, lat, err = _round(addr[mode], bodies, args.seconds)
                    tput[mode].append(n / args.seconds)
                    lats[mode] += lat
                    errors[mode] += err
                    say(f"round {i} {mode}: {n / args.seconds:.1f} req/s")
        finally:
            for p in procs.values():
                p.stdin.close()
                p.wait(timeout=30)
    med = {m: statistics.median(v) for m, v in tput.items()}
    p95 = {m: float(np.percentile(v, 95)) for m, v in lats.items()}
    p50 = {m: float(np.percentile(v, 50)) for m, v in lats.items()}
    ratio = med["batched"] / med["unbatched"]
    lat_ratio = p95["batched"] / p95["unbatched"]
    out = {
        "benchmark": "concurrency",
        "model": f"MobileNetV2 (width 1.0, {args.size}x{args.size}, {args.classes} classes), "
        "ONNX Runtime, dynamic batch",
        "clients": args.clients,
        "max_batch": args.max_batch,
        "max_delay_us": args.delay_us,
        "rounds": args.rounds,
        "round_s": args.seconds,
        "batched_rps": round(med["batched"], 1),
        "unbatched_rps": round(med["unbatched"], 1),
        "batched_throughput_ratio": round(ratio, 3),
        "batched_p50_ms": round(p50["batched"], 2),
        "unbatched_p50_ms": round(p50["unbatched"], 2),
        "batched_p95_ms": round(p95["batched"], 2),
        "unbatched_p95_ms": round(p95["unbatched"], 2),
        "p95_latency_ratio": round(lat_ratio, 3),
        "errors": errors,
        # Raw ONNX Runtime, no HTTP: batch-N calls vs N concurrent batch-1 calls.
        "runtime_batch_gain": round(gain, 3),
        "goal": "batched_throughput_ratio >= 2.0 and p95_latency_ratio <= 1.5",
        "goal_met": ratio >= 2.0 and lat_ratio <= 1.5,
        "host": _host(),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
