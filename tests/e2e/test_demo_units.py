"""Fast checks of the demo's pieces (no broker, no training)."""

from __future__ import annotations

import pytest
from edgefleet.sdk import ConfigError
from typer.testing import CliRunner

from edgefleet.demo._plan import prepare_out, rollout_body


def test_rollout_body_is_a_valid_canary_then_waves_rollout():
    from edgefleet.fleet import RolloutSpec, TargetSpec, plan_waves

    ids = [f"dev-{i}" for i in range(6)]
    body = rollout_body("digits", "1.0.0", ids, soak_s=2.0)
    spec = RolloutSpec.model_validate(body["spec"])
    TargetSpec.model_validate(body["target"])
    assert [len(w) for w in plan_waves(ids, spec)] == [1, 3, 2]
    assert spec.max_error_rate_increase is not None  # the waves are gated on telemetry
    assert body["start"] is True


def test_out_dir_not_made_by_the_demo_is_refused(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="not empty"):
        prepare_out(tmp_path)
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_rerun_clears_run_state_but_keeps_keys_and_package(tmp_path):
    out = tmp_path / "demo-out"
    prepare_out(out)
    for sub in ("keys", "package", "fleet", "devices"):
        (out / sub).mkdir()
        (out / sub / "f").write_text("x")
    prepare_out(out)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "keys",
        "package",
    ]
    (out / "fleet").mkdir()
    prepare_out(out, keep_fleet=True)  # an external database still points at these files
    assert (out / "fleet").is_dir()


def test_bad_formats_are_refused_with_what_is_expected(tmp_path):
    from edgefleet.demo._cli import app

    result = CliRunner().invoke(app, ["--formats", "onnx,coreml", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "onnx,tflite,pte" in result.output and "coreml" in result.output


def test_cli_options_reach_the_demo(tmp_path, monkeypatch):
    """The command's parameters map onto DemoOptions by name (``--generative`` included)."""
    from edgefleet.demo import _orchestrator
    from edgefleet.demo._cli import app

    seen = {}

    class Captured:
        def __init__(self, opts, ui) -> None:
            seen["opts"] = opts

        def run(self):
            return {"rollout_state": "COMPLETED"}

        def close(self) -> None:
            seen["closed"] = True

    monkeypatch.setattr(_orchestrator, "Demo", Captured)
    # The command installs SIGINT/SIGTERM handlers: not in the test process.
    monkeypatch.setattr("signal.signal", lambda *a: None)
    args = ["--generative", "--prompt", "the red drone", "--timeout", "42", "--headless",
            "--json", "--out", str(tmp_path / "o"), "--formats", "onnx",
            "--per-profile", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    o = seen["opts"]
    assert o.generative and o.prompt == "the red drone" and o.timeout_s == 42.0
    assert o.formats == ("onnx",) and o.per_profile == 1 and o.quiet_training
    assert o.out == (tmp_path / "o").resolve() and seen["closed"]


def test_trained_packages_are_reused_until_retrain(tmp_path):
    from edgefleet.demo._packages import TrainedPackage, cached_or_trained

    calls = []

    def train(d):
        d.mkdir(parents=True)
        (d / "m-1.0.0.efpkg").write_bytes(b"x")
        calls.append(d)
        return TrainedPackage(d / "m-1.0.0.efpkg", 1.0, 0.9, ("a",), ())

    pkg, rec = cached_or_trained(tmp_path / "p", False, train)
    assert rec is not None and pkg.name == "m-1.0.0.efpkg" and len(calls) == 1
    (tmp_path / "p" / "stale.tmp").write_text("left over")
    again, rec2 = cached_or_trained(tmp_path / "p", False, train)
    assert again == pkg and rec2 is None and len(calls) == 1  # reused, not trained
    _, rec3 = cached_or_trained(tmp_path / "p", True, train)
    assert rec3 is not None and len(calls) == 2
    assert not (tmp_path / "p" / "stale.tmp").exists()  # --retrain starts from a clean dir


def test_generative_rollout_is_gated_on_generation():
    ids = [f"dev-{i}" for i in range(6)]
    plain = rollout_body("digits", "1.0.0", ids, soak_s=2.0)["spec"]
    gen = rollout_body("tiny-llama", "1.0.0", ids, soak_s=2.0, generative=True)["spec"]
    assert "max_decode_tps_regression" not in plain
    assert gen["max_decode_tps_regression"] > 0 and gen["max_ttft_p95_regression"] > 0
    from edgefleet.fleet import RolloutSpec

    RolloutSpec.model_validate(gen)
