"""Packages and the emulator root for the HIL tests, built once per session."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.hardware._big_package import make_big_package
from tests.support.packages import make_package


@pytest.fixture(scope="session")
def hil_packages(tmp_path_factory) -> dict[str, Path]:
    """tiny (passes everywhere), broken (wrong golden outputs), big (64 MB of weights)."""
    d = tmp_path_factory.mktemp("hil-packages")
    return {
        "tiny": make_package(d / "tiny.efpkg"),
        "broken": make_package(d / "broken.efpkg", name="broken", break_golden=True),
        "big": make_big_package(d / "big"),
    }


@pytest.fixture(scope="session")
def ref_package(tmp_path_factory) -> Path:
    """The reference conv net as .tflite and .pte (10-60 s of litert-torch/executorch export)."""
    from tests.support.torch_models import build_reference_package

    return build_reference_package(tmp_path_factory.mktemp("ref"), formats=("tflite", "pte"))


class _Background(threading.Thread):
    """Prepares the emulator root while the other hardware tests run (it is mostly
    downloading); test_qemu.py sorts last and joins it."""

    def __init__(self, cache: Path) -> None:
        super().__init__(name="prepare-emulator", daemon=True)
        self.cache, self.result, self.error = cache, None, None

    def run(self) -> None:
        from edgefleet.hardware.hil import prepare_emulator

        try:
            self.result = prepare_emulator(self.cache)
        except BaseException as e:  # handed to the test that needs it
            self.error = e


@pytest.fixture(scope="session", autouse=True)
def _emulator_in_background(request, tmp_path_factory):
    """Start the ~60 MB download of arm64 .debs and wheels early, if an emulated test is
    selected. EDGEFLEET_HIL_EMULATOR_CACHE keeps the root between sessions (local dev)."""
    if not any(item.get_closest_marker("emulated") for item in request.session.items):
        return None
    cache = os.environ.get("EDGEFLEET_HIL_EMULATOR_CACHE") or tmp_path_factory.mktemp("emulator")
    job = _Background(Path(cache))
    job.start()
    return job


@pytest.fixture(scope="session")
def emulator(_emulator_in_background):
    """The prepared aarch64 root."""
    job = _emulator_in_background
    assert job is not None, "the emulator fixture is only for tests marked emulated"
    job.join(timeout=600)
    if job.error is not None:
        raise job.error
    assert job.result is not None, "preparing the emulator did not finish within 600 s"
    return job.result
