"""``python -m edgefleet.device_agents run --config agent.toml`` (same as ``edgefleet agent``)."""

import logging
import os

from ._cli import app

# An entry point, so it may configure logging (the library never does).
logging.basicConfig(
    level=os.environ.get("EDGEFLEET_LOG_LEVEL", "INFO"),
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)
app()
