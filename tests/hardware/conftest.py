"""Packages and the emulator root for the HIL tests, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.hardware._packages import make_big_package
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
def emulator(tmp_path_factory):
    """The prepared aarch64 root: downloads ~60 MB of arm64 .debs and wheels once.

    EDGEFLEET_HIL_EMULATOR_CACHE points at a directory kept between sessions (local dev)."""
    from edgefleet.hardware.hil import prepare_emulator

    cache = os.environ.get("EDGEFLEET_HIL_EMULATOR_CACHE") or tmp_path_factory.mktemp("emulator")
    return prepare_emulator(cache)
