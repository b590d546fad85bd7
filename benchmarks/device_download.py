"""Per-device download: bytes a device downloads / bytes of the artifact it runs.

    .venv/bin/python benchmarks/device_download.py --json

A multi-format package (ONNX fp32, ONNX dynamic int8, .tflite fp32) of an MLP on the digits
input (64 -> 1024 -> 1024 -> 10, random seeded weights) is signed and registered in a real
``edgefleet fleet serve`` process; two real ``edgefleet agent run`` processes reach it
through Mosquitto: an x86 device (profile x86_64-cpu: ONNX Runtime first, so the int8 ONNX)
and a Raspberry Pi 4 profile (LiteRT first, so the .tflite). The fleet's public URL is a
TCP proxy that counts every byte sent to devices (HTTP headers included): the figure is
bytes on the wire, per device, deployed one after the other.

``device_download_ratio`` is the worst device's wire bytes / its artifact's bytes (goal
<= 1.05); ``whole_package_ratio`` is what the old whole-package download cost (the .efpkg
over the same artifact). The last stdout line is one JSON object.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DEVICES = {"dl-x86": "x86_64-cpu", "dl-pi4": "raspberry-pi-4"}


def build_package(work: Path, key: Path, hidden: int) -> Path:
    import torch
    from edgefleet.sdk import LoadOptions, PackageBuilder, load, load_private_key
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from torch import nn

    from tests.support.torch_models import _specs, digits_like_inputs, export_artifact

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, 10),
    ).eval()  # fmt: skip
    fp32 = export_artifact(model, "onnx", work / "mlp.fp32.onnx")
    int8 = work / "mlp.int8.onnx"
    quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QInt8)
    tfl = export_artifact(model, "tflite", work / "mlp.fp32.tflite")
    golden = digits_like_inputs(4)
    inputs, outputs = _specs()
    with PackageBuilder("mlp-dl", "1.0.0", inputs=inputs, outputs=outputs) as b:
        b.set_golden_inputs({"input": golden})
        arts = [(fp32, "onnx", "fp32", None), (int8, "onnx", "int8", None),
                (tfl, "tflite", "fp32", 1)]  # fmt: skip
        for path, fmt, precision, fixed in arts:
            name = path.name
            b.add_artifact(path, format=fmt, precision=precision, name=name, fixed_batch=fixed)
        probe = b.build(work / "probe")
    # Each artifact's golden outputs are its own runtime's (what the smoke test compares).
    with PackageBuilder("mlp-dl", "1.0.0", inputs=inputs, outputs=outputs) as b:
        b.set_golden_inputs({"input": golden})
        for path, fmt, precision, fixed in arts:
            with load(probe, options=LoadOptions(artifact=path.name, warmup=0)) as m:
                got = m.predict(golden)
            b.add_artifact(
                path, format=fmt, precision=precision, name=path.name, fixed_batch=fixed,
                golden_outputs=got, golden_atol=1e-3,
            )  # fmt: skip
        return b.build(work / "mlp-dl.efpkg", signing_key=load_private_key(key))


def main(argv: list[str] | None = None) -> int:
    from _harness import emit, host_line, parser

    args = parser(__doc__, hidden=(1024, "MLP width (artifact size)")).parse_args(argv)
    warnings.filterwarnings("ignore")
    from edgefleet.sdk import generate_keypair, open_package

    from tests.support.fleet_with_devices import measure_device_download

    with tempfile.TemporaryDirectory(prefix="device-download-") as tmp:
        tmp = Path(tmp)
        priv, pub = generate_keypair(tmp / "keys", "packages")
        pkg = build_package(tmp, priv, args.hidden)
        with open_package(pkg) as p:
            sizes = {a.name: a.size for a in p.manifest.artifacts}
        result = measure_device_download(pkg, priv, pub, DEVICES, tmp / "run")
    per_device = result["devices"]
    result = {
        "device_download_ratio": result["device_download_ratio"],
        "goal_met": result["device_download_ratio"] <= 1.05,
        **result,
        "artifact_sizes": sizes,
        "host": host_line(),
    }
    return emit(
        result,
        args.json,
        *(
            f"{dev} ({d['profile']}): ran {d['artifacts']} ({d['artifact_bytes']} B), "
            f"downloaded {d['wire_bytes']} B on the wire: ratio {d['ratio']:.3f}"
            for dev, d in per_device.items()
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
