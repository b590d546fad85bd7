"""The rollout engine as a pure state machine: no database, no MQTT, no clock."""

from __future__ import annotations

import pytest
from edgefleet.fleet import (
    DeviceProgress,
    GateInputs,
    InvalidTransitionError,
    RolloutSnapshot,
    RolloutSpec,
    WaveSize,
    apply_action,
    plan_waves,
    step,
)
from pydantic import ValidationError

IDS = [f"d{i:02d}" for i in range(10)]


def snap(spec, waves, current=0, soak=None, status="RUNNING"):
    return RolloutSnapshot(status, spec, len(waves), current, soak)


def progress(waves, states: dict[str, str], t: float = 0.0):
    return [
        DeviceProgress(d, i, states.get(d, "PENDING"), t) for i, w in enumerate(waves) for d in w
    ]


def test_plan_waves_for_each_strategy():
    assert plan_waves(IDS, RolloutSpec(strategy="all_at_once")) == [IDS]
    canary = plan_waves(IDS, RolloutSpec(strategy="canary", canary=WaveSize(count=2)))
    assert canary == [IDS[:2], IDS[2:]]
    waves = RolloutSpec(strategy="waves", waves=[WaveSize(count=1), WaveSize(percent=30)])
    assert [len(w) for w in plan_waves(IDS, waves)] == [1, 3, 6]
    assert plan_waves([], waves) == []
    with pytest.raises(ValidationError, match="exactly one"):
        WaveSize(count=1, percent=5)
    with pytest.raises(ValidationError, match="at least one wave"):
        RolloutSpec(strategy="waves")


def test_manual_transitions_and_their_errors():
    assert apply_action("DRAFT", "start") == "RUNNING"
    assert apply_action("RUNNING", "pause") == "PAUSED"
    assert apply_action("PAUSED", "resume") == "RUNNING"
    assert apply_action("COMPLETED", "rollback") == "ROLLED_BACK"
    with pytest.raises(InvalidTransitionError, match="cannot start a rollout in state COMPLETED"):
        apply_action("COMPLETED", "start")
    with pytest.raises(InvalidTransitionError, match="unknown action"):
        apply_action("DRAFT", "explode")


def test_failing_canary_halts_before_the_next_wave():
    spec = RolloutSpec(strategy="canary", canary=WaveSize(count=1))
    waves = plan_waves(IDS, spec)
    d = step(snap(spec, waves), progress(waves, {}), GateInputs(), 1.0)
    assert d.dispatch == ["d00"] and d.status is None
    d = step(snap(spec, waves), progress(waves, {"d00": "FAILED"}), GateInputs(), 2.0)
    assert d.status == "PAUSED" and "1/1 devices failed" in d.reason
    assert d.dispatch == []
    rb = spec.model_copy(update={"on_failure": "rollback"})
    d = step(snap(rb, waves), progress(waves, {"d00": "FAILED"}), GateInputs(), 2.0)
    assert d.status == "ROLLED_BACK" and d.rollback_devices == ["d00"]


def test_success_advances_and_completes():
    spec = RolloutSpec(strategy="waves", waves=[WaveSize(count=2)], max_concurrent_downloads=3)
    waves = plan_waves(IDS, spec)
    d = step(
        snap(spec, waves), progress(waves, {"d00": "ACTIVE", "d01": "ACTIVE"}), GateInputs(), 5
    )
    assert d.current_wave == 1 and d.dispatch == ["d02", "d03", "d04"]  # download limit 3
    done = {i: "ACTIVE" for i in IDS}
    d = step(snap(spec, waves, current=1), progress(waves, done), GateInputs(), 6)
    assert d.status == "COMPLETED"


def test_concurrency_limit_counts_in_flight_downloads():
    spec = RolloutSpec(max_concurrent_downloads=4)
    waves = plan_waves(IDS, spec)
    states = {"d00": "DOWNLOADING", "d01": "SENT", "d02": "STAGED"}
    d = step(snap(spec, waves), progress(waves, states), GateInputs(), 1)
    assert d.dispatch == ["d03", "d04"]


def test_stuck_devices_time_out_and_count_as_failures():
    spec = RolloutSpec(stuck_timeout_s=10, failure_threshold=0.5)
    waves = plan_waves(IDS[:2], spec)
    states = {"d00": "DOWNLOADING", "d01": "ACTIVE"}
    d = step(snap(spec, waves), progress(waves, states, t=0), GateInputs(), 5)
    assert d.timed_out == [] and d.status is None
    d = step(snap(spec, waves), progress(waves, states, t=0), GateInputs(), 11)
    assert d.timed_out == ["d00"]
    assert d.status == "PAUSED" and "success threshold" in d.reason


def test_soak_time_and_telemetry_gates():
    spec = RolloutSpec(
        strategy="canary", soak_s=30, max_p95_regression=0.2, max_error_rate_increase=0.01
    )
    waves = plan_waves(IDS, spec)
    states = {"d00": "ACTIVE"}
    d = step(snap(spec, waves), progress(waves, states), GateInputs(), 100)
    assert d.soak_started_at == 100 and d.current_wave is None
    good = GateInputs(
        new_p95_ms=11, old_p95_ms=10, new_error_rate=0.0, old_error_rate=0.0, new_calls=50
    )
    d = step(snap(spec, waves, soak=100), progress(waves, states), good, 120)
    assert d.current_wave is None and d.gates["new_p95_ms"] == 11  # still soaking
    d = step(snap(spec, waves, soak=100), progress(waves, states), good, 131)
    assert d.current_wave == 1
    slow = GateInputs(
        new_p95_ms=13, old_p95_ms=10, new_error_rate=0.0, old_error_rate=0.0, new_calls=50
    )
    d = step(snap(spec, waves, soak=100), progress(waves, states), slow, 131)
    assert d.status == "PAUSED" and "p95 latency gate failed" in d.reason
    assert d.gates["p95_limit_ms"] == pytest.approx(12.0)
    errs = GateInputs(
        new_p95_ms=10, old_p95_ms=10, new_error_rate=0.05, old_error_rate=0.01, new_calls=50
    )
    d = step(snap(spec, waves, soak=100), progress(waves, states), errs, 131)
    assert d.status == "PAUSED" and "error rate gate failed" in d.reason
    quiet = GateInputs(new_calls=0)
    d = step(snap(spec, waves, soak=100), progress(waves, states), quiet, 131)
    assert d.status is None and d.current_wave is None  # waits for telemetry


def test_non_running_rollouts_are_left_alone():
    spec = RolloutSpec()
    waves = plan_waves(IDS, spec)
    for status in ("DRAFT", "PAUSED", "COMPLETED", "ABORTED", "ROLLED_BACK"):
        assert (
            step(snap(spec, waves, status=status), progress(waves, {}), GateInputs(), 1).dispatch
            == []
        )


def test_resume_after_a_halt_accepts_that_waves_failures():
    spec = RolloutSpec(strategy="canary")
    waves = plan_waves(IDS[:3], spec)
    states = {"d00": "FAILED"}
    halted = step(snap(spec, waves), progress(waves, states), GateInputs(), 1)
    assert halted.status == "PAUSED"
    # The operator resumed: the service records override_wave = current wave.
    resumed = RolloutSnapshot("RUNNING", spec, len(waves), 0, None, override_wave=0)
    d = step(resumed, progress(waves, states), GateInputs(), 2)
    assert d.status is None and d.current_wave == 1 and d.dispatch == ["d01", "d02"]
    # The next wave is judged normally again.
    later = RolloutSnapshot("RUNNING", spec, len(waves), 1, None, override_wave=0)
    d = step(later, progress(waves, {**states, "d01": "FAILED"}), GateInputs(), 3)
    assert d.status == "PAUSED" and "wave 2" in d.reason
