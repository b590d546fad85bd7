"""The demo's devices: simulated agents for several hardware profiles, and device apps.

The agents are real :class:`~edgefleet.device_agents.Agent` objects (MQTT, A/B store,
signed commands, telemetry queue) that share one MQTT loop and one worker pool, like
``edgefleet agent simulate``. Each device app classifies digit images through its agent's
active slot (the SDK with a result cache), or has a generative package write once the
board runs one, so the agent's telemetry carries real inference (or generation) figures to
the fleet.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgefleet.device_agents import Simulation

__all__ = ["DEMO_PROFILES", "AppStats", "DeviceApps", "demo_devices", "digits_frames"]

log = logging.getLogger(__name__)

DEMO_PROFILES = ("raspberry-pi-4", "jetson-orin-nano", "rockchip-rk3588")
_SHORT = {"raspberry-pi-4": "rpi4", "jetson-orin-nano": "orin", "rockchip-rk3588": "rk3588"}
# Openings of the sentences the tiny LM learnt (trainer/_llm_data.py generates its text).
_COLORS = ("red", "blue", "green", "small", "big")
_THINGS = ("robot", "drone", "camera", "sensor", "cat")


def digits_frames(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Held-out digit images (raw pixels 0..16, N x 1 x 8 x 8) and labels: a camera's frames.

    The same stratified 25 % split (seed 0) the digits recipe holds out, so the accuracy the
    devices see is on images the model never trained on."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    _, x, _, y = train_test_split(
        d.images, d.target, test_size=0.25, random_state=seed, stratify=d.target
    )
    return x.astype(np.float32)[:, None, :, :], y.astype(np.int64)


def demo_devices(
    root: Path,
    *,
    broker_url: str,
    fleet_keys: Sequence[Path],
    package_keys: Sequence[Path],
    profiles: Sequence[str] = DEMO_PROFILES,
    per_profile: int = 2,
    telemetry_interval_s: float = 1.0,
    cache_entries: int = 256,
    tags: Sequence[str] = ("demo",),
    mqtt_version: str = "5",
    local_endpoint: str | None = None,
) -> Simulation:
    """``per_profile`` agents for each profile, ids like ``rpi4-01``, serving their model
    (and on ``local_endpoint``, e.g. ``127.0.0.1:0``, over HTTP)."""
    from edgefleet.device_agents import AgentSettings, Simulation

    settings = []
    for profile in profiles:
        short = _SHORT.get(profile, profile)
        for i in range(per_profile):
            device_id = f"{short}-{i + 1:02d}"
            settings.append(
                AgentSettings(
                    device_id=device_id,
                    broker_url=broker_url,
                    mqtt_version=mqtt_version,
                    data_dir=root / device_id,
                    fleet_keys=list(fleet_keys),
                    package_keys=list(package_keys),
                    profile=profile,
                    tags=[*tags, profile],
                    telemetry_interval_s=telemetry_interval_s,
                    cache_entries=cache_entries,
                    local_endpoint=local_endpoint,
                    serve_model=True,
                )
            )
    return Simulation(settings, workers=4)


@dataclass
class AppStats:
    predictions: int = 0
    correct: int = 0
    errors: int = 0
    waiting: int = 0  # calls made before the device had an active model
    answers: int = 0  # requests a generative package answered
    tokens: int = 0  # tokens it generated for them

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.predictions if self.predictions else None


class DeviceApps:
    """One thread playing the device app on every agent: each app takes a frame, scales it
    as the package's manifest says, and calls ``predict`` on its agent's active model."""

    def __init__(
        self,
        agents: Sequence,
        rate_per_device: float = 20.0,
        seed: int = 0,
        ask_rate: float = 2.0,
        answer_tokens: int = 24,
    ) -> None:
        self.agents = list(agents)
        self.rate = rate_per_device
        # Generation costs far more than one classification: a board asks at its own pace.
        self.ask_period = 1.0 / ask_rate
        self.answer_tokens = answer_tokens
        self._next_ask = {a.device_id: 0.0 for a in self.agents}
        self.frames, self.labels = digits_frames(seed=seed)
        self.stats = {a.device_id: AppStats() for a in self.agents}
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error = ""

    def start(self) -> DeviceApps:
        self._thread = threading.Thread(target=self._run, name="demo-apps", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def totals(self) -> AppStats:
        t = AppStats()
        for s in self.stats.values():
            for k, v in vars(s).items():
                setattr(t, k, getattr(t, k) + v)
        return t

    def _frame(self) -> int:
        # Skewed like real scenes: a few digits show up far more often than the rest.
        return min(int(self._rng.expovariate(1 / 25)), len(self.frames) - 1)

    def _one(self, agent) -> None:
        from edgefleet.device_agents import NoActiveModelError
        from edgefleet.sdk import EdgefleetError

        st = self.stats[agent.device_id]
        i = self._frame()
        try:
            model = agent.active.model
        except NoActiveModelError:
            st.waiting += 1
            return
        if hasattr(model, "generate"):  # a generative package: the app is a chat client
            self._ask(agent.device_id, model, st)
            return
        pre = model.info.manifest.preprocessing
        scale = pre.scale if pre is not None and pre.scale else 1.0
        try:
            out = model.predict(self.frames[i : i + 1] * np.float32(scale))
        except EdgefleetError as e:
            st.errors += 1
            self.last_error = f"{agent.device_id}: {e}"
            return
        logits = next(iter(out.values()))
        st.predictions += 1
        st.correct += int(int(np.argmax(logits[0])) == int(self.labels[i]))

    def _ask(self, device_id: str, model, st: AppStats) -> None:
        """One sentence for the tiny LM to go on with, sampled (so each request decodes;
        a greedy repeat would be a result-cache hit)."""
        from edgefleet.sdk import EdgefleetError

        now = time.monotonic()
        if now < self._next_ask[device_id]:
            return
        self._next_ask[device_id] = now + self.ask_period
        prompt = f"the {self._rng.choice(_COLORS)} {self._rng.choice(_THINGS)}"
        try:
            stream = model.generate(prompt, max_new_tokens=self.answer_tokens, temperature=0.8)
            stream.text()
        except EdgefleetError as e:
            st.errors += 1
            self.last_error = f"{device_id}: {e}"
            return
        st.answers += 1
        st.tokens += stream.usage.generated_tokens

    def _run(self) -> None:
        period = 1.0 / (self.rate * max(1, len(self.agents)))
        nxt = time.monotonic()
        while not self._stop.is_set():
            for agent in self.agents:
                if self._stop.is_set():
                    return
                try:
                    self._one(agent)
                except Exception as e:  # the demo keeps going; the error is shown
                    self.stats[agent.device_id].errors += 1
                    self.last_error = f"{agent.device_id}: {e}"
                    log.exception("device app on %s failed", agent.device_id)
                nxt += period
                delay = nxt - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    nxt = time.monotonic()
