"""A tiny real torch model exported to every artifact format, packaged once.

``build_reference_package(out_dir)`` trains nothing (a fixed seed is enough for parity
checks): it builds a small conv net on 1x8x8 digits-like input, exports it to ONNX,
.tflite (litert-torch), .pte (ExecuTorch + XNNPACK) and .pt2 (torch.export), and writes
one package with golden inputs and each artifact's golden outputs (its own runtime's
output on the golden inputs, so the device smoke test compares like with like; the torch
reference outputs are kept next to it as ``reference_outputs.npz``).

Exporting to .tflite and .pte takes ~10 s each here: call it once per test session.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from tests.support.packages import as_private_key

# What other test modules and benchmarks use; FORMATS and INPUT_SHAPE are this module's.
__all__ = ["build_reference_package", "digits_like_inputs", "export_artifact", "make_model"]

log = logging.getLogger(__name__)

FORMATS = ("onnx", "tflite", "pte", "pt2")
INPUT_SHAPE = (1, 8, 8)  # per sample: one 8x8 grey image, like sklearn's digits
NUM_CLASSES = 10
SEED = 0
# Artifacts whose exported graph has a static batch of 1 (the Model layer splits batches).
_FIXED_BATCH = {"tflite": 1, "pte": 1}


def make_model():
    """The reference net: conv-relu-conv-relu-linear, deterministic weights."""
    import torch
    from torch import nn

    class TinyDigitsNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
            self.fc = nn.Linear(16 * 4 * 4, NUM_CLASSES)

        def forward(self, x):
            x = torch.relu(self.conv1(x))
            x = torch.relu(self.conv2(x))
            return self.fc(x.flatten(1))

    torch.manual_seed(SEED)
    return TinyDigitsNet().eval()


def digits_like_inputs(n: int = 4, seed: int = SEED) -> np.ndarray:
    """``n`` float32 images in [0, 1] shaped (n, 1, 8, 8) with some structure, no download."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, *INPUT_SHAPE), dtype=np.float32)
    x[:, :, 2:6, 3:5] += 1.0  # a bright stroke, so activations are not pure noise
    return np.clip(x / 1.5, 0.0, 1.0).astype(np.float32)


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """The exporters warn about their own internals (deprecations inside torch/executorch
    and litert-torch progress output); none of it is actionable for us and pytest turns
    warnings into errors."""
    old = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if old is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = old


def export_artifact(model, fmt: str, out: Path) -> Path:
    """Export ``model`` (taking one (batch, 1, 8, 8) float32 input) to ``fmt`` at ``out``."""
    import torch

    sample = torch.from_numpy(digits_like_inputs(1))
    with _quiet_exporters(), torch.no_grad():
        if fmt == "onnx":
            torch.onnx.export(
                model,
                (sample,),
                str(out),
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                dynamo=False,
            )
        elif fmt == "pt2":
            # Exported with a symbolic batch (a sample of 2 avoids 0/1 specialisation).
            batch = torch.export.Dim("batch", max=4096)
            ep = torch.export.export(
                model,
                (torch.from_numpy(digits_like_inputs(2)),),
                dynamic_shapes=({0: batch},),
            )
            torch.export.save(ep, str(out))
        elif fmt == "tflite":
            import litert_torch

            litert_torch.convert(model, (sample,)).export(str(out))
        elif fmt == "pte":
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
                XnnpackPartitioner,
            )
            from executorch.exir import to_edge_transform_and_lower

            ep = torch.export.export(model, (sample,))
            prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
            out.write_bytes(prog.to_executorch().buffer)
        else:
            raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    return out


def _run_exported(fmt: str, path: Path, x: np.ndarray) -> np.ndarray:
    """The artifact's own runtime output on ``x`` (through our backend, sample by sample
    for fixed-batch artifacts)."""
    from edgefleet.sdk import Artifact
    from edgefleet.sdk.backends import get_backend

    backend = {"onnx": "onnxruntime", "tflite": "litert", "pte": "executorch", "pt2": "torch"}
    art = Artifact(
        name=path.name, path=path.name, format=fmt, precision="fp32", sha256="0" * 64, size=1
    )
    sess = get_backend(backend[fmt]).load(path, art, *_specs(), None)
    try:
        step = _FIXED_BATCH.get(fmt, len(x))
        parts = [sess.run({"input": x[i : i + step]})["logits"] for i in range(0, len(x), step)]
    finally:
        sess.close()
    return np.concatenate(parts)


def _specs() -> tuple[list, list]:
    from edgefleet.sdk import TensorSpec

    return (
        [TensorSpec(name="input", dtype="float32", shape=["batch", *INPUT_SHAPE])],
        [TensorSpec(name="logits", dtype="float32", shape=["batch", NUM_CLASSES])],
    )


def build_reference_package(
    out_dir: str | Path,
    *,
    formats: Sequence[str] = FORMATS,
    signing_key=None,
    name: str = "tiny-digits",
    version: str = "1.0.0",
    archive: bool = False,
) -> Path:
    """Build the reference package ``out_dir/<name>`` (a directory, or ``<name>.efpkg`` with
    ``archive=True``), signed when ``signing_key`` (a key or a key path) is given.

    Each artifact's golden outputs are its own runtime's outputs; ``reference_outputs.npz``
    in ``out_dir`` holds the torch fp32 outputs on the same golden inputs.
    """
    import torch
    from edgefleet.sdk import ArtifactMetrics, PackageBuilder, Preprocessing

    signing_key = as_private_key(signing_key)
    out_dir = Path(out_dir)
    work = out_dir / "exports"
    work.mkdir(parents=True, exist_ok=True)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; expected some of {FORMATS}")

    model = make_model()
    golden = digits_like_inputs(4)
    with torch.no_grad():
        reference = model(torch.from_numpy(golden)).numpy()
    np.savez(out_dir / "reference_outputs.npz", logits=reference)

    inputs, outputs = _specs()
    builder = PackageBuilder(
        name,
        version,
        inputs=inputs,
        outputs=outputs,
        labels=[str(i) for i in range(NUM_CLASSES)],
        preprocessing=Preprocessing(layout="NCHW", scale=1 / 16, notes="digits 0-16 -> 0-1"),
        description="tiny conv net for backend parity tests",
    )
    with builder:
        builder.set_golden_inputs({"input": golden})
        for fmt in formats:
            path = export_artifact(model, fmt, work / f"model{_suffix(fmt)}")
            got = _run_exported(fmt, path, golden)
            metrics = ArtifactMetrics(
                samples=len(golden),
                top1_agreement=float((got.argmax(1) == reference.argmax(1)).mean()),
                max_abs_error=float(np.abs(got - reference).max()),
            )
            builder.add_artifact(
                path,
                format=fmt,
                precision="fp32",
                fixed_batch=_FIXED_BATCH.get(fmt),
                metrics=metrics,
                golden_outputs={"logits": got},
            )
            log.info("exported %s: max |diff| vs torch %.2e", fmt, np.abs(got - reference).max())
        target = out_dir / (f"{name}.efpkg" if archive else name)
        return builder.build(target, signing_key=signing_key)


def _suffix(fmt: str) -> str:
    return {"onnx": ".onnx", "tflite": ".tflite", "pte": ".pte", "pt2": ".pt2"}[fmt]
