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
