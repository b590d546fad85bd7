"""edgefleet: edge inference SDK, trainer, device agent, fleet service and HIL matrix.

The components live in ``edgefleet.sdk``, ``edgefleet.trainer``, ``edgefleet.device_agents``,
``edgefleet.fleet`` and ``edgefleet.hardware``. This root package holds only the CLI.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
