"""Rollout gates for generative packages: decode tokens/s and TTFT p95 against the previous
version, as a pure engine step and through a live fleet (real Mosquitto, a real generative
package whose canary device runs the SDK's greedy smoke test)."""

from __future__ import annotations

import json

import pytest
from edgefleet.fleet import GateInputs, RolloutSpec, plan_waves, step
from edgefleet.sdk import extract_archive, load_private_key, sign_manifest, write_archive
from edgefleet.sdk import protocol as p
from edgefleet.sdk._package import read_manifest

from tests.support.waiting import wait_until

from .fake_device import FakeDevice
from .rollout_api import start_rollout
from .test_rollout_machine import IDS, progress, snap


def test_decode_and_ttft_gates_in_the_engine():
    spec = RolloutSpec(strategy="canary", soak_s=10, max_decode_tps_regression=0.2,
                       max_ttft_p95_regression=0.5)  # fmt: skip
    waves = plan_waves(IDS, spec)
    states = {"d00": "ACTIVE"}

    def run(**g):
        return step(snap(spec, waves, soak=0), progress(waves, states), GateInputs(**g), 11)

    ok = run(new_calls=20, new_decode_tps=90.0, old_decode_tps=100.0, new_ttft_p95_ms=12.0,
             old_ttft_p95_ms=10.0)  # fmt: skip
    assert ok.current_wave == 1 and ok.gates["decode_tps_floor"] == pytest.approx(80.0)
    slow = run(new_calls=20, new_decode_tps=70.0, old_decode_tps=100.0)
    assert slow.status == "PAUSED" and "decode tokens/s gate failed: 70.0 < 80.0" in slow.reason
    late = run(new_calls=20, new_ttft_p95_ms=16.0, old_ttft_p95_ms=10.0)
    assert late.status == "PAUSED" and "TTFT p95 gate failed" in late.reason
    assert late.gates["ttft_p95_limit_ms"] == pytest.approx(15.0)
    waiting = run(new_calls=0, new_decode_tps=10.0, old_decode_tps=100.0)
    assert waiting.status is None and waiting.current_wave is None  # no telemetry yet
    # A classifier's telemetry has no generation figures: these gates do not hold it back.
    plain = run(new_calls=20, new_p95_ms=5.0, old_p95_ms=5.0)
    assert plain.current_wave == 1
    with pytest.raises(ValueError):
        RolloutSpec(max_decode_tps_regression=1.5)


def test_generation_telemetry_rows_fast_and_slow_paths_agree():
    from datetime import UTC, datetime

    from edgefleet.fleet._telemetry_codec import _fast_rows, batch_rows

    gen = p.GenerationTelemetry(ttft_p50_ms=2.0, ttft_p95_ms=7.5, decode_tokens_per_s=321.0,
                                tokens_generated=64)  # fmt: skip
    samples = [
        p.TelemetrySample(ts=datetime.now(UTC), model="g@1.0.0", calls=4, generation=gen),
        p.TelemetrySample(ts=datetime.now(UTC), model="c@1.0.0", calls=9, latency_p95_ms=1.0),
    ]
    batch = p.TelemetryBatch(device_id="dev-1", seq=3, samples=samples)
    fast = _fast_rows("dev-1", p.encode(batch))
    assert fast == batch_rows(batch)
    assert fast[0][-2:] == (7.5, 321.0) and fast[1][-2:] == (None, None)


def _generative_versions(tmp_path, key_path) -> dict[str, bytes]:
    """The tiny generative package as 1.0.0 and 2.0.0, signed with the fleet's package key."""
    pytest.importorskip("onnxruntime_genai")
    from tests.support.llm import tiny_llm

    out = {}
    for version in ("1.0.0", "2.0.0"):
        root = tmp_path / version
        extract_archive(tiny_llm().package, root)
        m = read_manifest((root / "manifest.json").read_bytes(), "tiny")
        m = m.model_copy(update={"name": "tiny-gen", "version": version, "signature": None})
        m = sign_manifest(m, load_private_key(key_path))
        (root / "manifest.json").write_text(json.dumps(json.loads(m.model_dump_json())))
        out[version] = write_archive(root, tmp_path / f"gen-{version}.efpkg").read_bytes()
    return out


@pytest.mark.broker
@pytest.mark.slow
def test_decode_speed_gate_pauses_a_slower_generative_version(
    live, mosquitto, fleet_pub, package_pub, signing_keys, tmp_path
):
    pkgs = _generative_versions(tmp_path, signing_keys[0])
    devs = [
        FakeDevice(f"gen-{i}", mosquitto.port, fleet_pub, package_pub, tags=("gen",)).start()
        for i in range(3)
    ]
    fast = {"ttft_p50_ms": 3.0, "ttft_p95_ms": 5.0, "decode_tokens_per_s": 400.0,
            "tokens_generated": 800, "prefix_cache_hits": 5, "prefix_cache_misses": 1}  # fmt: skip
    try:
        with live.client(live.operator) as c:
            for data in pkgs.values():
                r = c.post("/api/v1/models", files={"file": ("g.efpkg", data)})
                assert r.status_code in (201, 409), r.text
            assert wait_until(
                lambda: len(c.get("/api/v1/devices", params={"tag": "gen"}).json()) == 3
            )
            for d in devs:
                d.active = "tiny-gen@1.0.0"
                d.publish_state()
                d.telemetry("tiny-gen@1.0.0", 50, 0, p95=5.0, generation=fast)
            live.service.sync()
            assert wait_until(
                lambda: all(
                    x["active_model"] == "tiny-gen@1.0.0"
                    for x in c.get("/api/v1/devices", params={"tag": "gen"}).json()
                )
            )
            spec = {"strategy": "canary", "soak_s": 1.0, "max_decode_tps_regression": 0.25,
                    "min_gate_calls": 10}  # fmt: skip
            rid = start_rollout(c, "gen", "2.0.0", spec, model="tiny-gen", name="gen-2")["id"]
            # The canary device downloads the package and passes the real greedy smoke test.
            assert wait_until(lambda: devs[0].active == "tiny-gen@2.0.0", 60)
            slower = {**fast, "decode_tokens_per_s": 200.0}
            devs[0].telemetry("tiny-gen@2.0.0", 50, 0, p95=5.0, seq=1, generation=slower)
            assert wait_until(
                lambda: c.get(f"/api/v1/rollouts/{rid}").json()["status"] == "PAUSED", 20
            )
            detail = c.get(f"/api/v1/rollouts/{rid}").json()
            assert "decode tokens/s gate failed" in detail["reason"]
            assert detail["gates"]["new_decode_tps"] == pytest.approx(200.0)
            assert detail["gates"]["old_decode_tps"] == pytest.approx(400.0)
            assert not any(isinstance(x, p.DeployCommand) for d in devs[1:] for x in d.received)
            # Per-version series for the dashboard's decode tokens/s and TTFT charts.
            params = {"model": "tiny-gen@2.0.0", "bucket_s": 3600, "since": 0}
            [pt] = c.get("/api/v1/telemetry", params=params).json()
            assert pt["decode_tps"] == pytest.approx(200.0)
            assert pt["ttft_p95_ms"] == pytest.approx(5.0)
    finally:
        for d in devs:
            d.stop()
