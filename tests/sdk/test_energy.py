"""Joules per inference from fake sysfs power trees; "not measured" where none is exposed."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from edgefleet.sdk import EnergyMeter, find_power_sources


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


class Counter(threading.Thread):
    """Advances an energy counter file at ``watts`` while running (a live sysfs counter);
    ``with counter:`` runs it for the block."""

    def __init__(self, path: Path, watts: float, start_uj: int = 0, wrap_uj: int = 0):
        super().__init__(daemon=True)
        self.path, self.watts, self.value, self.wrap = path, watts, start_uj, wrap_uj
        self.stop = threading.Event()
        _write(path, f"{start_uj}\n")

    def run(self) -> None:
        last = time.monotonic()
        while not self.stop.wait(0.002):
            now = time.monotonic()
            self.value += int(self.watts * (now - last) * 1e6)
            last = now
            if self.wrap:
                self.value %= self.wrap
            # Replace, not rewrite in place: a sysfs read never sees a half-written file.
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(f"{self.value}\n")
            os.replace(tmp, self.path)

    def __enter__(self) -> Counter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()


def _measure(meter: EnergyMeter, seconds: float = 0.3):
    with meter.measure() as m:
        time.sleep(seconds)
    return m.reading


def test_rapl_counter_packages_only_and_wraparound(tmp_path):
    rapl = tmp_path / "sys/class/powercap"
    _write(rapl / "intel-rapl:0/name", "package-0\n")
    _write(rapl / "intel-rapl:0/max_energy_range_uj", "262143328850\n")
    _write(rapl / "intel-rapl:0:0/name", "core\n")  # a sub-domain: must not be added again
    _write(rapl / "intel-rapl:0:0/energy_uj", "5\n")
    counter = Counter(rapl / "intel-rapl:0/energy_uj", watts=20.0,
                      start_uj=262143328850 - 1_000_000, wrap_uj=262143328850)  # fmt: skip
    sources, skipped = find_power_sources(tmp_path)
    assert [s.name for s in sources] == ["package-0 (RAPL counter)"] and skipped == []
    with counter:
        reading = _measure(EnergyMeter(tmp_path))
    assert reading.measured and reading.source == "package-0 (RAPL counter)"
    # 20 W for the measured interval, across the counter's wrap (1 J before it wraps).
    assert reading.joules == pytest.approx(20.0 * reading.seconds, rel=0.25)
    assert reading.per_inference(10) == pytest.approx(reading.joules / 10)


def test_jetson_ina3221_board_rail_is_integrated(tmp_path):
    hw = tmp_path / "sys/class/hwmon/hwmon1"
    _write(hw / "name", "ina3221\n")
    for ch, (label, mv, ma) in enumerate(
        [("VDD_IN", 5000, 1200), ("VDD_CPU_GPU_CV", 5000, 400), ("VDD_SOC", 5000, 300)], 1
    ):
        _write(hw / f"in{ch}_label", label + "\n")
        _write(hw / f"in{ch}_input", f"{mv}\n")
        _write(hw / f"curr{ch}_input", f"{ma}\n")
    (source,), _ = find_power_sources(tmp_path)
    assert source.name == "ina3221 VDD_IN (INA3221 V x I)" and source.read() == 6.0
    reading = _measure(EnergyMeter(tmp_path, sample_s=0.005))
    # Only the board's input rail (6 W), not the sum of rails (which counts twice).
    assert reading.joules == pytest.approx(6.0 * reading.seconds, rel=0.05)


def test_hwmon_power_and_energy(tmp_path):
    _write(tmp_path / "sys/class/hwmon/hwmon0/name", "acpi_power\n")
    _write(tmp_path / "sys/class/hwmon/hwmon0/power1_input", "3500000\n")  # µW
    reading = _measure(EnergyMeter(tmp_path, sample_s=0.005))
    assert reading.source == "acpi_power power (hwmon)"
    assert reading.joules == pytest.approx(3.5 * reading.seconds, rel=0.05)
    counter = Counter(tmp_path / "sys/class/hwmon/hwmon2/energy1_input", watts=8.0)
    _write(tmp_path / "sys/class/hwmon/hwmon2/name", "pmic\n")
    sources, _ = find_power_sources(tmp_path)
    assert sources[0].name == "pmic energy (hwmon counter)"  # counters first
    with counter:
        reading = _measure(EnergyMeter(tmp_path))
    assert reading.joules == pytest.approx(8.0 * reading.seconds, rel=0.25)


def test_nothing_exposed_is_not_measured_never_estimated(tmp_path):
    reading = _measure(EnergyMeter(tmp_path), 0.01)
    assert reading.joules is None and reading.per_inference(5) is None
    assert reading.source.startswith("not measured: this board exposes no power sensor")


def test_unreadable_rapl_says_so(tmp_path):
    # Recent kernels make energy_uj root-only; a value we cannot parse is refused the same way.
    _write(tmp_path / "sys/class/powercap/intel-rapl:0/energy_uj", "permission denied\n")
    reading = _measure(EnergyMeter(tmp_path), 0.01)
    assert reading.joules is None
    assert "present but unreadable" in reading.source and "intel-rapl:0" in reading.source


def test_this_host_reports_not_measured_or_a_real_source():
    meter = EnergyMeter("/")
    reading = _measure(meter, 0.05)
    assert reading.measured == (meter.source is not None)
    if not reading.measured:
        assert reading.source.startswith("not measured")
