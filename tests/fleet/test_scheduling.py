"""Scheduling in the engine: a device holding for its maintenance window is never taken for
stuck, and the fleet records the reason it reports (a second STAGED event)."""

from __future__ import annotations

from edgefleet.fleet import DeviceProgress, GateInputs, RolloutSnapshot, RolloutSpec, step


def test_a_device_waiting_for_its_window_is_not_timed_out():
    spec = RolloutSpec(stuck_timeout_s=60, failure_threshold=0.5)
    snap = RolloutSnapshot(status="RUNNING", spec=spec, wave_count=1, current_wave=0)
    devices = [
        DeviceProgress("waits", 0, "STAGED", 0.0, waiting=True),
        DeviceProgress("stuck", 0, "STAGED", 0.0),
    ]
    dec = step(snap, devices, GateInputs(), now=3600.0)
    assert dec.timed_out == ["stuck"]
    assert dec.status is None  # the wave waits for the window, it does not fail


def test_same_state_with_a_new_reason_is_recorded():
    from edgefleet.fleet._db import RolloutDevice
    from edgefleet.fleet._deployment_reports import apply_event

    rd = RolloutDevice(rollout_id=1, device_id="d", wave=0, state="STAGED", detail="")
    known = {(1, "d"): rd}
    why = "waiting for a maintenance window (next opens 2026-05-05T02:00+00:00)"
    assert apply_event(None, "d", "rollout-1", "STAGED", why, 5.0, known)
    assert rd.detail == why and rd.updated_at == 5.0
    assert not apply_event(None, "d", "rollout-1", "STAGED", why, 6.0, known)
    assert not apply_event(None, "d", "rollout-1", "STAGED", "", 7.0, known)
