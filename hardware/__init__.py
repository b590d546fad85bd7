"""Hardware targets (``edgefleet.hardware.profiles``, a leaf every layer may read) and the
hardware-in-loop matrix (``edgefleet.hardware.hil``, on top of the SDK).

Nothing is imported here, so reading a profile never pulls in the matrix runner.
"""

__all__: list[str] = []
