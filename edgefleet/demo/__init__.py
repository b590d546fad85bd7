"""``edgefleet demo``: the whole system end to end on one machine (train, sign, fleet,
simulated boards, a rollout, device apps). Not part of any device or server install's API.

>>> from edgefleet.demo import Demo, DemoOptions
"""

# Lazy (PEP 562): `edgefleet demo --help` should not pay for numpy, httpx or the fleet.
from typing import TYPE_CHECKING

from edgefleet.sdk._lazy import lazy_exports

_LAZY = {
    "Demo": "._orchestrator",
    "DemoOptions": "._plan",
    "FleetClient": "._local_fleet",
    "LocalFleet": "._local_fleet",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from ._local_fleet import FleetClient, LocalFleet
    from ._orchestrator import Demo
    from ._plan import DemoOptions

__all__ = ["Demo", "DemoOptions", "FleetClient", "LocalFleet"]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
