"""SDK test fixtures: one real reference package (ONNX, .tflite, .pte, .pt2) per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@dataclass(frozen=True)
class ReferencePackage:
    path: Path  # the package directory
    golden_inputs: dict[str, np.ndarray]
    reference: np.ndarray  # torch fp32 logits on the golden inputs


@pytest.fixture(scope="session")
def reference_package(tmp_path_factory) -> ReferencePackage:
    """The tiny conv net exported to every format we run, packaged (unsigned) once."""
    pytest.importorskip("torch")
    from tests.support.torch_models import build_reference_package

    out = tmp_path_factory.mktemp("reference")
    path = build_reference_package(out)
    with np.load(out / "reference_outputs.npz") as z:
        reference = z["logits"]
    with np.load(path / "golden" / "inputs.npz") as z:
        golden = {k: z[k] for k in z.files}
    return ReferencePackage(path=path, golden_inputs=golden, reference=reference)
