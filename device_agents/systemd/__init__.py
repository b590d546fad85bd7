"""The systemd unit for real boards, shipped as package data.

Install it with::

    sudo cp "$(python -c 'import edgefleet.device_agents.systemd as s; print(s.UNIT)')" \\
        /etc/systemd/system/
    sudo systemctl enable --now edgefleet-agent
"""

from pathlib import Path

__all__ = ["UNIT"]

UNIT = Path(__file__).with_name("edgefleet-agent.service")
