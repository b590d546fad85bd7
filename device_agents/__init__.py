"""The edgefleet device agent: speaks the wire protocol to the fleet, runs safe A/B
deployments, serves the active model to device apps, and forwards telemetry.

>>> from edgefleet.device_agents import load_active
>>> model = load_active("/var/lib/edgefleet/store")   # follows new activations
>>> model.predict(x)
"""

from ._active import ActiveModel, NoActiveModelError, load_active
from ._agent import Agent
from ._download import DownloadError
from ._endpoint import LocalEndpoint
from ._inventory import AGENT_VERSION, build_inventory, installed_runtimes
from ._mux import Mux
from ._settings import AgentSettings
from ._simulate import Simulation
from ._store import SLOTS, ModelStore
from ._telemetry import TelemetryQueue

__all__ = [
    "AGENT_VERSION",
    "SLOTS",
    "ActiveModel",
    "Agent",
    "AgentSettings",
    "DownloadError",
    "LocalEndpoint",
    "ModelStore",
    "Mux",
    "NoActiveModelError",
    "Simulation",
    "TelemetryQueue",
    "build_inventory",
    "installed_runtimes",
    "load_active",
]
