"""Start a real Mosquitto broker on a free loopback port with a generated config."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import stop_process

__all__ = ["Mosquitto", "free_port", "MOSQUITTO_BIN"]

MOSQUITTO_BIN = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Mosquitto:
    """A mosquitto process. ``extra_conf`` lines are appended to the listener config
    (e.g. ``password_file`` / ``acl_file`` / ``allow_anonymous false``). ``listeners``: a
    whole generated listener section instead (e.g. ``edgefleet fleet broker-config``'s
    mosquitto.conf); ``port`` must then be one of its ports (the one waited for)."""

    port: int = 0
    extra_conf: list[str] = field(default_factory=list)
    listeners: str | None = None
    workdir: Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Mosquitto:
        if not Path(MOSQUITTO_BIN).exists():
            raise RuntimeError("mosquitto is not installed (apt-get install -y mosquitto)")
        self.port = self.port or free_port()
        self.workdir = self.workdir or Path(tempfile.mkdtemp(prefix="mosquitto-"))
        conf = self.workdir / "mosquitto.conf"
        head = (
            ["per_listener_settings false", f"listener {self.port} 127.0.0.1"]
            if self.listeners is None
            else []
        )
        lines = [
            *head,
            "persistence true",
            f"persistence_location {self.workdir}/",
            "max_queued_messages 100000",
            "max_inflight_messages 1000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        # EDGEFLEET_TEST_MOSQUITTO_LOG=all: every packet in mosquitto.log (debugging a test).
        lines += [
            f"log_type {t}" for t in os.environ.get("EDGEFLEET_TEST_MOSQUITTO_LOG", "").split()
        ]
        if self.listeners is None and not any(
            x.startswith("allow_anonymous") for x in self.extra_conf
        ):
            lines.append("allow_anonymous true")
        # As root, mosquitto drops to its own user, which cannot write persistence into our
        # 0700 temp dir: sessions would then not survive restart(). Stay the test's user.
        if os.geteuid() == 0 and not any(x.startswith("user ") for x in self.extra_conf):
            lines.append("user root")
        conf.write_text("\n".join(lines + self.extra_conf) + "\n" + (self.listeners or ""))
        # Kept and closed in stop(): a dropped handle is a ResourceWarning (an error here).
        self._log = open(self.workdir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen(
            [MOSQUITTO_BIN, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=self._log
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                self.stop()
                log = (self.workdir / "mosquitto.log").read_text(errors="replace")
                raise RuntimeError(f"mosquitto exited with {code}: {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc, 5)
        self.proc = None
        log_file = getattr(self, "_log", None)
        if log_file is not None:
            log_file.close()
            self._log = None

    def restart(self) -> Mosquitto:
        """Start again on the same port and persistence directory (sessions survive)."""
        self.stop()
        return self.start()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
