"""Resource readings from fake sysfs/procfs trees, and the policy's hysteresis."""

from __future__ import annotations

import pytest
from edgefleet.sdk import (
    ConfigError,
    ResourcePolicy,
    ResourceSample,
    ResourceTracker,
    read_resources,
)

from tests.support.fake_board import FakeBoard


def test_reads_cgroup_v2_psi_thermal_and_load(tmp_path):
    board = FakeBoard(tmp_path).set(memory=0.9, pressure=12.5, temps=(61.5, 83.25), load=1.5)
    s = read_resources(tmp_path)
    assert (s.memory_used, s.memory_limit_mb, s.memory_source) == (0.9, 512.0, "cgroup v2")
    assert s.memory_pressure == 12.5
    assert s.temperature_c == 83.2 or s.temperature_c == 83.3  # the hottest zone
    assert s.load_per_cpu == 1.5
    board.set(memory=0.25)
    assert read_resources(tmp_path).memory_used == 0.25


def test_falls_back_to_cgroup_v1_then_meminfo(tmp_path):
    FakeBoard(tmp_path / "v1", cgroup="v1").set(memory=0.75)
    s = read_resources(tmp_path / "v1")
    assert (s.memory_used, s.memory_source) == (0.75, "cgroup v1")
    board = FakeBoard(tmp_path / "plain")
    (board.cg / "memory.max").write_text("max\n")  # no cgroup limit: the board's RAM
    s = read_resources(tmp_path / "plain")
    assert (s.memory_used, s.memory_limit_mb, s.memory_source) == (0.25, 3906.2, "meminfo")


def test_missing_files_read_as_unknown(tmp_path):
    s = read_resources(tmp_path)
    assert s.memory_used is None and s.memory_pressure is None
    assert s.temperature_c is None and s.load_per_cpu is None


def _sample(ts: float, **kw) -> ResourceSample:
    return ResourceSample(ts=ts, **kw)


def test_tracker_hysteresis_hot_cold():
    t = ResourceTracker(ResourcePolicy(calm_s=2.0))
    assert not t.update(_sample(0, memory_used=0.5, temperature_c=50))
    assert t.update(_sample(1, memory_used=0.5, temperature_c=81)) and t.level == 1
    assert "temperature 81 >= 80" in t.reasons[0]
    # Cooling to between the low (70) and high (80) marks holds the level: no flapping.
    for ts in range(2, 10):
        assert not t.update(_sample(ts, temperature_c=75)) and t.level == 1
    # Below the low mark: back to normal only after calm_s of calm samples.
    assert not t.update(_sample(10, temperature_c=60))
    assert not t.update(_sample(11, temperature_c=60)) and t.level == 1
    assert t.update(_sample(12, temperature_c=60)) and t.level == 0 and t.reasons == []


def test_tracker_pressure_critical_and_back():
    t = ResourceTracker(ResourcePolicy(calm_s=1.0))
    assert t.update(_sample(0, memory_pressure=45.0)) and t.level == 2
    # Pressure falls under critical but stays high: one step down after calm_s.
    assert not t.update(_sample(1, memory_pressure=15.0)) and t.level == 2
    assert t.update(_sample(2, memory_pressure=15.0)) and t.level == 1
    # A brief spike above low restarts the calm clock.
    assert not t.update(_sample(3, memory_pressure=0.5))
    assert not t.update(_sample(3.5, memory_pressure=5.0))
    assert not t.update(_sample(4, memory_pressure=0.5))
    assert not t.update(_sample(4.5, memory_pressure=0.5)) and t.level == 1
    assert t.update(_sample(5, memory_pressure=0.5)) and t.level == 0


def test_policy_checks_its_thresholds():
    with pytest.raises(ConfigError, match="memory: expected low < high <= critical"):
        ResourcePolicy(memory_low=0.9, memory_high=0.8)
    with pytest.raises(ConfigError, match="load_low < load_high"):
        ResourcePolicy(load_low=3.0, load_high=2.0)
