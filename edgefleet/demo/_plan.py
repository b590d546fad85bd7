"""What the demo does, as data: its options, the rollout it starts, its work directory."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from edgefleet.sdk import ConfigError

from ._boards import DEMO_PROFILES

__all__ = ["DemoOptions", "prepare_out", "rollout_body"]

log = logging.getLogger(__name__)

_MARKER = ".edgefleet-demo"


@dataclass(frozen=True)
class DemoOptions:
    out: Path = Path("demo-out")
    broker: str = ""  # "" -> the fleet's embedded amqtt broker
    db: str = ""  # "" -> SQLite in the output directory
    port: int = 8700  # 0 -> any free port
    per_profile: int = 2
    profiles: tuple[str, ...] = DEMO_PROFILES
    epochs: int = 3
    formats: tuple[str, ...] = ("onnx", "tflite")
    retrain: bool = False
    package: Path | None = None  # an existing signed package (skips training) ...
    package_key: Path | None = None  # ... and the public key it is signed with
    rate: float = 20.0  # predictions per second per device app
    soak_s: float = 2.0
    traffic_s: float = 6.0  # headless: inference after the rollout, so telemetry flows
    timeout_s: float = 300.0
    quiet_training: bool = True
    # --generative: then the tiny LM, rolled out to the same boards, and one streamed answer.
    generative: bool = False
    prompt: str = "the small robot"
    answer_tokens: int = 40
    ask_rate: float = 2.0  # requests per second per board app once it runs the LM

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> DemoOptions:
        """The options named in ``values`` (the CLI's parameters, named after these fields);
        other keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def rollout_body(
    name: str, version: str, device_ids: list[str], soak_s: float, generative: bool = False
) -> dict:
    """A canary (one device) then waves of 50 % and the rest, gated on telemetry; a
    generative package also on decode tokens/s and TTFT p95 against the previous version."""
    gates = {"max_decode_tps_regression": 0.5, "max_ttft_p95_regression": 1.0}
    return {
        "name": f"{name} {version}: canary then waves",
        "model": name,
        "version": version,
        "target": {"device_ids": device_ids},
        "spec": {
            "strategy": "waves",
            "waves": [{"count": 1}, {"percent": 50}],
            "success_threshold": 1.0,
            "failure_threshold": 0.0,
            "on_failure": "pause",
            "soak_s": soak_s,
            "max_error_rate_increase": 0.05,
            "min_gate_calls": 1,
            "health_window_s": 1.0,
            **(gates if generative else {}),
        },
        "start": True,
    }


def prepare_out(out: Path, keep_fleet: bool = False) -> None:
    """Refuse to write into a non-empty directory the demo did not create; clear the state
    of a previous demo run (keys and the trained package are kept and reused). With an
    external database the fleet's files stay: its package registry points at them."""
    out.mkdir(parents=True, exist_ok=True)
    marker = out / _MARKER
    if not marker.exists():
        if any(out.iterdir()):
            raise ConfigError(
                f"--out {out} is not empty and was not made by the demo; "
                "expected a new or a previous demo directory"
            )
        marker.write_text("made by edgefleet demo; safe to delete\n")
    for stale in ("devices",) if keep_fleet else ("fleet", "devices"):
        shutil.rmtree(out / stale, ignore_errors=True)
