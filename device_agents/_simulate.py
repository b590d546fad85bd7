"""Many agents in one process (``edgefleet agent simulate``), for scale tests and demos.

All agents share one MQTT loop thread (:class:`Mux`) and one small worker pool, so 1,000
agents cost 1,000 sockets and SQLite files, not 1,000 network threads.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ._agent import Agent
from ._fsutil import set_durable
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
    """Agents that share one MQTT loop thread (:class:`Mux`) and one worker pool. Built from
    their settings (the demo's boards), or numbered from shared settings (:meth:`numbered`).
    ``durable=False`` skips fsync in this process (see ``_fsutil.set_durable``)."""

    def __init__(
        self, settings: Sequence[AgentSettings], *, workers: int = 4, durable: bool = True
    ) -> None:
        _raise_fd_limit(len(settings) * 6 + 256)
        set_durable(durable)
        self.mux = Mux()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="edgefleet-sim")
        with ThreadPoolExecutor(8) as pool:  # SQLite/fsync set-up overlaps across agents
            self.agents = list(
                pool.map(lambda s: Agent(s, mux=self.mux, executor=self.pool), settings)
            )

    @classmethod
    def numbered(
        cls,
        count: int,
        data_root: Path,
        base: dict,
        *,
        prefix: str = "sim",
        workers: int = 4,
        durable: bool = False,
        first: int = 0,
        step: int = 1,
    ) -> Simulation:
        """``count`` agents with ids ``{prefix}-0000``..., each with its own data directory
        (store, journal, telemetry queue) under ``data_root``. ``base`` gives the shared
        settings (broker, keys, profile, intervals); device_id and data_dir are filled in.

        ``first``/``step`` number the agents ``first, first + step, ...``: several simulator
        processes with ``first=k, step=processes`` interleave their ids, so a rollout (which
        goes through devices in id order) keeps every process busy, not one after the other.
        """
        if first < 0 or step < 1:
            raise ValueError(f"expected first >= 0 and step >= 1, got first={first}, step={step}")
        # Simulated agents share one process: a child per smoke test would cost hundreds of
        # interpreters for a fleet-wide rollout, and no real runtime crash is simulated.
        base = {"local_endpoint": None, "serve_model": False, "smoke_isolated": False, **base}
        one = AgentSettings(**base, device_id=f"{prefix}-0000", data_dir=data_root / "x")
        # Validate once, then copy: pydantic-settings costs ~25 ms per instance.
        names = [f"{prefix}-{first + i * step:04d}" for i in range(count)]
        settings = [
            one.model_copy(update={"device_id": n, "data_dir": data_root / n}) for n in names
        ]
        # Simulated agents share this machine's disk: fsync per state change of 1,000 agents
        # was a third of the simulator's time. Crash safety is tested on real agent processes.
        sim = cls(settings, workers=workers, durable=durable)
        # Hundreds of agents share this machine's cores: each smoke-test session runs on one
        # intra-op thread instead of spawning (and joining, GIL held) a pool per deploy.
        from edgefleet.sdk.backends import OnnxRuntimeOptions

        smoke = OnnxRuntimeOptions(intra_op_threads=1, inter_op_threads=1)
        for a in sim.agents:
            a.deployer.hooks.smoke_onnxruntime = smoke
        return sim

    @property
    def ids(self) -> list[str]:
        return [a.device_id for a in self.agents]

    def start(self) -> Simulation:
        for a in self.agents:
            a.start()
        self.mux.start()
        return self

    def online(self) -> int:
        return sum(a.connected.is_set() for a in self.agents)

    def versions(self) -> dict[str, str | None]:
        """device id -> version of the package in its active slot (None: nothing yet)."""
        out: dict[str, str | None] = {}
        for a in self.agents:
            slot = a.store.active_slot()
            info = a.store.slot_info(slot) if slot else None
            out[a.device_id] = info.package_version if info else None
        return out

    def queued_telemetry(self) -> int:
        return sum(len(a.queue) for a in self.agents)

    def stop(self) -> None:
        """Publish every agent's offline state first, then disconnect them all."""
        infos = [a.begin_stop() for a in self.agents]
        deadline = time.monotonic() + 10.0
        for info in infos:
            if info is not None:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        for a in self.agents:
            if a.link is not None:
                a.link.closed = True
            a.client.disconnect()
        self.mux.wake()
        while any(a.client.socket() is not None for a in self.agents):
            if time.monotonic() > deadline + 5.0:
                break
            time.sleep(0.05)
        with ThreadPoolExecutor(8) as pool:  # closing SQLite checkpoints + fsyncs: overlap
            list(pool.map(lambda a: a.finish_stop(wait_disconnect=False), self.agents))
        self.mux.stop()
        self.pool.shutdown(wait=True, cancel_futures=True)
