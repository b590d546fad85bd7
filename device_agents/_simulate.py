"""Many agents in one process (``edgefleet agent simulate``), for scale tests and demos.

All agents share one MQTT loop thread (:class:`Mux`) and one small worker pool, so 1,000
agents cost 1,000 sockets and SQLite files, not 1,000 network threads.
"""

from __future__ import annotations

import logging
import resource
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ._agent import Agent
from ._mux import Mux
from ._settings import AgentSettings

__all__ = ["Simulation"]

log = logging.getLogger(__name__)


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, needed)) if hard != resource.RLIM_INFINITY else max(soft, needed)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Simulation:
    """``count`` agents with ids ``{prefix}-0000``..., each with its own data directory
    (store, journal, telemetry queue) under ``data_root``. ``base`` gives the shared
    settings (broker, keys, profile, intervals); device_id and data_dir are filled in."""

    def __init__(
        self,
        count: int,
        data_root: Path,
        base: dict,
        *,
        prefix: str = "sim",
        workers: int = 4,
    ) -> None:
        _raise_fd_limit(count * 6 + 256)
        self.mux = Mux()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="edgefleet-sim")
        base = {"local_endpoint": None, "serve_model": False, **base}
        self.agents = [
            Agent(
                AgentSettings(
                    **{
                        **base,
                        "device_id": f"{prefix}-{i:04d}",
                        "data_dir": data_root / f"{prefix}-{i:04d}",
                    }
                ),
                mux=self.mux,
                executor=self.pool,
            )
            for i in range(count)
        ]

    def start(self) -> Simulation:
        for a in self.agents:
            a.start()
        self.mux.start()
        return self

    def online(self) -> int:
        return sum(a.connected.is_set() for a in self.agents)

    def stop(self) -> None:
        for a in self.agents:
            a.stop(graceful=True)
        self.mux.stop()
        self.pool.shutdown(wait=True, cancel_futures=True)
