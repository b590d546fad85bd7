"""Concurrency on the agent's local endpoint: dynamic micro-batching on vs off, one run.

A MobileNetV2 (no torchvision; random weights; dynamic batch dim; 224x224 and, with
``--small-size``, a smaller input) is exported to ONNX and installed in a device store.
Three endpoint processes serve it (the agent's LocalEndpoint + ActiveModel, as `edgefleet
agent` runs them):

- batched: micro-batching (``--max-batch`` rows or ``--delay-us``), ``--batch-workers``
  batches at once (default one per core), each with ``--batch-threads`` ONNX Runtime
  intra-op threads (default 1: one core per batch);
- unbatched: the same agent with batching off and the default session (the issue's
  baseline);
- unbatched_1thread: batching off, 1 intra-op thread per call (the best unbatched setting
  found here), so batching is also compared with a tuned baseline.

16 closed-loop HTTP clients (each sends its next request on its kept-alive connection
when the previous answer came back) hit one endpoint, then the next, rotating the order
each round so load from other jobs on the host hits every mode alike. Bodies are
application/x-npy by default (``--body json`` for the JSON path). Before that, raw ONNX
Runtime (no HTTP) measures the ceiling: per-image throughput of batch-16 calls over
batch-1 calls.

    python benchmarks/concurrency.py --json

Figures: batched_throughput_ratio = median round throughput with batching / without (goal
>= 2.0), p95_latency_ratio = p95 request latency with / without (goal <= 1.5);
cpu_per_request_ratio = server CPU per answer without / with batching (what batching saves,
whatever CPU share other jobs leave each mode); ``small``: the same for the smaller input.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
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
NPY = "application/x-npy"
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


def runtime_ceiling(onnx_path: Path, size: int, batch: int, seconds: float = 1.5) -> dict:
    """What batching can win on this host, raw ONNX Runtime, no HTTP: images/s of
    batch-``batch`` calls and of batch-1 calls one after the other, with the session's
    default intra-op threads (as the agent loads it) and with one thread (the compute
    ceiling alone, no thread pool), and of ``batch`` threads making batch-1 calls at once
    on the default session (what the endpoint without batching does). Interleaved,
    medians of 3."""
    import onnxruntime as ort

    one = ort.SessionOptions()
    one.intra_op_num_threads = 1
    cpu = ["CPUExecutionProvider"]
    sess = ort.InferenceSession(str(onnx_path), providers=cpu)
    sess1 = ort.InferenceSession(str(onnx_path), one, providers=cpu)
    x1 = np.zeros((1, 3, size, size), np.float32)
    xb = np.zeros((batch, 3, size, size), np.float32)
    sess.run(None, {"input": xb})
    sess1.run(None, {"input": xb})

    def sequential(s, x: np.ndarray) -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            s.run(None, {"input": x})
            n += x.shape[0]
        return n / (time.perf_counter() - t0)

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

    runs: dict[str, list[float]] = {k: [] for k in ("b", "1", "b_1t", "1_1t", "conc")}
    for _ in range(3):
        runs["b"].append(sequential(sess, xb))
        runs["1"].append(sequential(sess, x1))
        runs["b_1t"].append(sequential(sess1, xb))
        runs["1_1t"].append(sequential(sess1, x1))
        runs["conc"].append(concurrent())
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {
        f"ort_batch{batch}_ips": round(med["b"], 1),
        "ort_batch1_ips": round(med["1"], 1),
        f"ort_batch{batch}_1thread_ips": round(med["b_1t"], 1),
        "ort_batch1_1thread_ips": round(med["1_1t"], 1),
        f"ort_concurrent{batch}_ips": round(med["conc"], 1),
        # per-image gain of one batch over batch-1 calls in turn: batching's own ceiling
        "runtime_batch_ceiling": round(med["b"] / med["1"], 3),
        "runtime_batch_ceiling_1thread": round(med["b_1t"] / med["1_1t"], 3),
        # batch-N calls vs N concurrent batch-1 calls on the one (default) session
        "runtime_batch_gain": round(med["b"] / med["conc"], 3),
    }


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(store: str, max_batch: int, delay_us: int, workers: int, threads: int) -> None:
    """Child process: one endpoint, prints its address, serves until stdin closes.
    ``threads`` > 0 sets ONNX Runtime's intra-op threads (0: the session default)."""
    from edgefleet.device_agents import ActiveModel, BatchingOptions, LocalEndpoint, ModelStore
    from edgefleet.sdk import TrustPolicy
    from edgefleet.sdk.backends import OnnxRuntimeOptions

    active = ActiveModel(ModelStore(store), trust=TrustPolicy.workstation(), profile="x86_64-cpu")
    active.refresh(force=True)
    if threads:
        active.adapt(onnxruntime=OnnxRuntimeOptions(providers=("CPUExecutionProvider",),
                                                    intra_op_threads=threads))  # fmt: skip
    batching = BatchingOptions(max_batch, delay_us, workers=workers)
    ep = LocalEndpoint(active, "127.0.0.1:0", batching).start()
    print(ep.address, flush=True)
    sys.stdin.read()
    ep.stop()
    active.close()


def _exchange(sock: socket.socket, reader, request: bytes) -> tuple[int, bytes]:
    """One request on a kept-alive connection: (status, body). A lean client (pre-built
    request, no header objects) so the clients, which share the host's cores with the
    endpoint, cost little next to what is measured."""
    sock.sendall(request)
    status = int(reader.readline().split(b" ", 2)[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return status, reader.read(length)


def _round(
    address: str, bodies: list[bytes], kind: str, seconds: float
) -> tuple[int, list[float], int]:
    """Closed-loop clients, one per body, for ``seconds``: (answers, latencies in ms,
    errors). A .npy request gets a .npy answer, a JSON one JSON."""
    host, port = address.removeprefix("http://").split(":")
    want = b"\x93NUMPY" if kind == NPY else b'{"outputs": {"logits"'
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(body: bytes) -> None:
        head = (f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: {kind}\r\n"
                f"Accept: {kind}\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
        request = head.encode() + body
        with socket.create_connection((host, int(port)), timeout=120) as sock:
            reader = sock.makefile("rb")
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                status, data = _exchange(sock, reader, request)
                dt = (time.perf_counter() - t0) * 1000
                with lock:
                    if status == 200 and data.startswith(want):
                        lat.append(dt)
                    else:
                        errors[0] += 1
            reader.close()

    threads = [threading.Thread(target=client, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(lat), lat, errors[0]


# mode -> (max batch (0: off), batch workers, ONNX Runtime intra-op threads (0: default))
def _modes(args: argparse.Namespace) -> dict[str, tuple[int, int, int]]:
    return {
        "batched": (args.max_batch, args.batch_workers, args.batch_threads),
        # the baseline: the same agent with batching off, default session
        "unbatched": (0, 1, 0),
        # the best unbatched setting found here: one intra-op thread per concurrent call
        "unbatched_1thread": (0, 1, 1),
    }


def measure(args: argparse.Namespace, size: int, say) -> dict:
    """One model size: build, raw ceiling, then the endpoints side by side."""
    rounds, seconds = args.rounds, args.seconds
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp), size, args.classes)
        ceiling = runtime_ceiling(Path(tmp) / "mobilenet.onnx", size, args.max_batch)
        say(f"{size}x{size} raw ONNX Runtime: {ceiling}")
        procs, addr = {}, {}
        try:
            for mode, (batch, workers, threads) in _modes(args).items():
                cmd = [sys.executable, __file__, "--serve", str(store), str(batch),
                       str(args.delay_us), str(workers), str(threads)]  # fmt: skip
                p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                procs[mode], addr[mode] = p, p.stdout.readline().strip()
            rng = np.random.default_rng(0)
            xs = [rng.random((1, 3, size, size), dtype=np.float32) for _ in range(args.clients)]
            if args.body == "npy":
                kind, bodies = NPY, [_npy(x) for x in xs]
            else:
                kind = "application/json"
                bodies = [json.dumps({"inputs": {"input": x.tolist()}}).encode() for x in xs]
            for mode in addr:  # warm-up: model loaded, thread pools spun up
                _round(addr[mode], bodies, kind, 1.0)
            tput: dict[str, list[float]] = {m: [] for m in addr}
            lats: dict[str, list[float]] = {m: [] for m in addr}
            errors = dict.fromkeys(addr, 0)
            cpu = dict.fromkeys(addr, 0.0)
            client_cpu = dict.fromkeys(addr, 0.0)  # the 16 clients' own process
            for i in range(rounds):
                # rotate the order so load from other jobs on the host hits every mode alike
                order = list(addr)[i % len(addr) :] + list(addr)[: i % len(addr)]
                for mode in order:
                    c0, k0 = _cpu_s(procs[mode].pid), _cpu_s(os.getpid())
                    n, lat, err = _round(addr[mode], bodies, kind, seconds)
                    cpu[mode] += _cpu_s(procs[mode].pid) - c0
                    client_cpu[mode] += _cpu_s(os.getpid()) - k0
                    tput[mode].append(n / seconds)
                    lats[mode] += lat
                    errors[mode] += err
                    say(f"{size}x{size} round {i} {mode}: {n / seconds:.1f} req/s")
        finally:
            for p in procs.values():
                p.stdin.close()
                p.wait(timeout=60)
    med = {m: statistics.median(v) for m, v in tput.items()}
    p95 = {m: float(np.percentile(v, 95)) if v else float("nan") for m, v in lats.items()}
    p50 = {m: float(np.percentile(v, 50)) if v else float("nan") for m, v in lats.items()}
    ratio = med["batched"] / med["unbatched"]
    lat_ratio = p95["batched"] / p95["unbatched"]
    out = {
        "model": f"MobileNetV2 (width 1.0, {size}x{size}, {args.classes} classes), "
        "ONNX Runtime, dynamic batch",
        "body": kind,
        "batched_throughput_ratio": round(ratio, 3),
        "p95_latency_ratio": round(lat_ratio, 3),
        "goal_met": ratio >= 2.0 and lat_ratio <= 1.5,
        # batching vs the best unbatched setting found (1 intra-op thread per call)
        "vs_1thread_throughput_ratio": round(med["batched"] / med["unbatched_1thread"], 3),
        "vs_1thread_p95_latency_ratio": round(p95["batched"] / p95["unbatched_1thread"], 3),
    }
    # Server CPU per answered request: what each mode costs, whatever share of the CPUs
    # other jobs on the host leave it (a mode with more runnable threads gets more).
    cpu_ms = {m: 1000 * cpu[m] / max(1, len(lats[m])) for m in addr}
    out["cpu_per_request_ratio"] = round(cpu_ms["unbatched"] / cpu_ms["batched"], 3)
    for m in addr:
        out |= {f"{m}_rps": round(med[m], 1), f"{m}_p50_ms": round(p50[m], 2),
                f"{m}_p95_ms": round(p95[m], 2),
                f"{m}_cpu_ms_per_req": round(cpu_ms[m], 2),
                f"{m}_client_cpu_ms_per_req":
                    round(1000 * client_cpu[m] / max(1, len(lats[m])), 2)}  # fmt: skip
    return out | {"errors": errors} | ceiling


def _npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    from _harness import emit, parser
    from _harness import host_line as _host

    ap = parser(
        __doc__, clients=16, rounds=(5, "rounds per mode, rotating"),
        seconds=(4.0, "per round"), classes=1000, size=(224, "input height and width"),
        small_size=(96, "also measure this smaller input (0: skip)"),
        max_batch=16, delay_us=2000,  # the batcher
        batch_workers=(os.cpu_count() or 1, "batches running at once (default: one per core)"),
        batch_threads=(1, "ONNX Runtime intra-op threads per batched call (0: default)"),
    )  # fmt: skip
    ap.add_argument("--body", choices=("npy", "json"), default="npy",
                    help="request body: application/x-npy (default) or JSON")  # fmt: skip
    ap.add_argument("--serve", nargs=5, help=argparse.SUPPRESS,
                    metavar=("STORE", "MAX_BATCH", "DELAY_US", "WORKERS", "THREADS"))  # fmt: skip
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve[0], *(int(v) for v in args.serve[1:]))
        return 0

    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    main_fig = measure(args, args.size, say)
    out = {
        "benchmark": "concurrency",
        "clients": args.clients,
        "max_batch": args.max_batch,
        "max_delay_us": args.delay_us,
        "batch_workers": args.batch_workers,
        "batch_intra_op_threads": args.batch_threads,
        "rounds": args.rounds,
        "round_s": args.seconds,
        **main_fig,
        "goal": "batched_throughput_ratio >= 2.0 and p95_latency_ratio <= 1.5",
        "host": _host(),
        "load_avg": round(os.getloadavg()[0], 2),
    }
    if args.small_size:
        out["small"] = measure(args, args.small_size, say)
    return emit(out, True)


if __name__ == "__main__":
    sys.exit(main())
