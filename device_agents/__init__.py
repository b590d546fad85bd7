"""The edgefleet device agent: speaks the wire protocol to the fleet, runs safe A/B
deployments, serves the active model to device apps, and forwards telemetry.

>>> from edgefleet.device_agents import load_active
>>> model = load_active("/var/lib/edgefleet/store")   # follows new activations
>>> model.predict(x)
"""

# Names resolve lazily (PEP 562): `python -m edgefleet.device_agents run` imports this package
# first, and the agent should not pay for the simulator, endpoint or store it does not use yet.
from typing import TYPE_CHECKING

from edgefleet.sdk._lazy import lazy_exports

_LAZY = {
    "AGENT_VERSION": "._inventory",
    "AdaptOptions": "._adapt",
    "Adapter": "._adapt",
    "SLOTS": "._store",
    "ActiveModel": "._active",
    "Agent": "._agent",
    "AgentSettings": "._settings",
    "BatchingOptions": "._batcher",
    "DownloadError": "._download",
    "LocalEndpoint": "._endpoint",
    "MicroBatcher": "._batcher",
    "ModelStore": "._store",
    "Mux": "._mux",
    "NoActiveModelError": "._active",
    "Overloaded": "._batcher",
    "Simulation": "._simulate",
    "TelemetryQueue": "._telemetry_queue",
    "build_inventory": "._inventory",
    "installed_runtimes": "._inventory",
    "load_active": "._active",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from ._active import ActiveModel, NoActiveModelError, load_active
    from ._adapt import Adapter, AdaptOptions
    from ._agent import Agent
    from ._batcher import BatchingOptions, MicroBatcher, Overloaded
    from ._download import DownloadError
    from ._endpoint import LocalEndpoint
    from ._inventory import AGENT_VERSION, build_inventory, installed_runtimes
    from ._mux import Mux
    from ._settings import AgentSettings
    from ._simulate import Simulation
    from ._store import SLOTS, ModelStore
    from ._telemetry_queue import TelemetryQueue

__all__ = [
    "AGENT_VERSION",
    "SLOTS",
    "ActiveModel",
    "AdaptOptions",
    "Adapter",
    "Agent",
    "AgentSettings",
    "BatchingOptions",
    "DownloadError",
    "LocalEndpoint",
    "MicroBatcher",
    "ModelStore",
    "Mux",
    "NoActiveModelError",
    "Overloaded",
    "Simulation",
    "TelemetryQueue",
    "build_inventory",
    "installed_runtimes",
    "load_active",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
