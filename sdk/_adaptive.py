"""The SDK's option to follow the device's resources without the agent: :class:`AdaptiveModel`.

Same reaction as the agent's (``edgefleet.device_agents.Adapter``, which also sheds load on
its endpoint): while resources are constrained or critical the package runs its smallest
artifact for the runtime with fewer intra-op threads; back to the preferred choice once calm.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any

from ._closing import Closing
from ._load import LoadOptions, load
from ._model import Model
from ._resources import RESOURCE_LEVELS, ResourcePolicy, ResourceTracker, read_resources

__all__ = ["AdaptiveModel", "constrained_options"]

log = logging.getLogger(__name__)

THREAD_OPTION = {"onnxruntime": "intra_op_threads", "litert": "num_threads", "torch": "num_threads"}


def constrained_options(model: Model, threads: int) -> dict[str, Any]:
    """LoadOptions fields for a constrained device: the package's smallest artifact the
    model's runtime runs, and the profile's options for it with ``threads`` threads."""
    from .backends import get_backend

    info = model.info
    same = [a for a in info.manifest.artifacts if a.format == info.artifact.format]
    out: dict[str, Any] = {"artifact": min(same, key=lambda a: (a.size, a.name)).name}
    backend = info.backend
    if backend in THREAD_OPTION:
        raw: dict[str, Any] = {}
        if info.profile:
            from edgefleet.hardware.profiles import get_profile

            choice = get_profile(info.profile).runtime(backend)
            raw = {k: tuple(v) if isinstance(v, list) else v for k, v in (choice.options
                   if choice else {}).items()}  # fmt: skip
        raw[THREAD_OPTION[backend]] = threads
        out[backend] = get_backend(backend).options_type(**raw)
    return out


class AdaptiveModel(Closing):
    """``predict`` on the package, reloaded smaller/leaner while resources are short.

    Call :meth:`check` periodically (or :meth:`start` a watcher thread). A swapped-out model
    is closed ``grace_s`` later, so calls running on it finish.
    """

    def __init__(
        self,
        package: str | Path,
        backend: str | None = None,
        options: LoadOptions | None = None,
        policy: ResourcePolicy | None = None,
        root: str | Path = "/",
        threads: int = 1,
        grace_s: float = 5.0,
    ) -> None:
        self.package, self.backend = package, backend
        self.options = options or LoadOptions()
        self.tracker = ResourceTracker(policy or ResourcePolicy())
        self.root, self.threads, self.grace_s = root, threads, grace_s
        self.model = load(package, backend, self.options)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def level(self) -> str:
        return RESOURCE_LEVELS[self.tracker.level]

    def predict(self, inputs: Any) -> dict:
        return self.model.predict(inputs)

    def check(self) -> str | None:
        """Sample the resources; reload if the level crossed normal. Returns the new level
        name when it changed."""
        before = self.tracker.level
        if not self.tracker.update(read_resources(self.root)):
            return None
        level = self.tracker.level
        if (level == 0) != (before == 0):
            extra = constrained_options(self.model, self.threads) if level else {}
            new = load(self.package, self.backend, dataclasses.replace(self.options, **extra))
            old, self.model = self.model, new
            timer = threading.Timer(self.grace_s, old.close)
            timer.daemon = True
            timer.start()
            log.warning("resources %s: serving %s", self.level, new.info.artifact.name)
        return self.level

    def start(self, interval_s: float = 1.0) -> AdaptiveModel:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.check()
                except Exception:
                    log.exception("resource check failed")

        self._thread = threading.Thread(target=loop, name="edgefleet-adaptive", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.model.close()
