"""What the demo shows of its boards: the package in each one's active slot, as the
device's own store says, and the runtime serving it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgefleet.device_agents import Simulation

__all__ = ["backends", "local_models"]

log = logging.getLogger(__name__)


def local_models(sim: Simulation) -> dict[str, str | None]:
    """device id -> ``name@version`` in its active slot, as the device's store says."""
    out: dict[str, str | None] = {}
    for a in sim.agents:
        slot = a.store.active_slot()
        info = a.store.slot_info(slot) if slot else None
        out[a.device_id] = f"{info.package_name}@{info.package_version}" if info else None
    return out


def backends(agents: Sequence) -> dict[str, str]:
    """profile -> the runtime (and artifact) its boards serve the active model on."""
    out = {}
    for a in agents:
        loaded = a.active.loaded
        if loaded is not None:
            out[a.profile_name] = f"{loaded.info.backend} ({loaded.info.artifact.name})"
    return out
