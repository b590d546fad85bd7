"""Test helpers for the agent: an artifact server with Range support, an MQTT collector
that decodes what devices publish, and signed-command helpers."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from edgefleet.sdk import TrustPolicy
from edgefleet.sdk import protocol as p

from tests.support.waiting import wait_until

__all__ = ["ArtifactServer", "Collector", "deploy_cmd", "installed_store"]


@dataclass
class ArtifactServer:
    """Serves ``files`` (url path -> bytes) with HTTP Range. ``cut_after`` bytes: the next
    full response is cut there (connection closed), to test resumption."""

    files: dict[str, bytes] = field(default_factory=dict)
    token: str | None = None
    cut_after: int | None = None
    delay_s: float = 0.0  # wait before sending a body (to cancel mid-download)
    requests: list[dict] = field(default_factory=list)
    bytes_sent: int = 0

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                server.requests.append(
                    {"path": self.path, "range": self.headers.get("Range"),
                     "auth": self.headers.get("Authorization")}
                )  # fmt: skip
                if server.token and self.headers.get("Authorization") != f"Bearer {server.token}":
                    self.send_error(401)
                    return
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start, status = int(rng[6:].split("-")[0]), 206
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                time.sleep(server.delay_s)
                cut = server.cut_after
                if cut is not None and cut < len(body):
                    server.cut_after = None
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    server.bytes_sent += cut
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)
                server.bytes_sent += len(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, path: Path) -> tuple[str, bytes]:
        data = Path(path).read_bytes()
        url_path = f"/artifacts/{uuid.uuid4().hex}/{Path(path).name}"
        self.files[url_path] = data
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{url_path}", data

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Collector:
    """Subscribes to every device topic and keeps decoded messages."""

    def __init__(self, port: int, client_id: str | None = None, clean: bool = True) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, object]] = []
        self.raw: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"collector-{uuid.uuid4().hex[:8]}",
            clean_session=clean,
        )
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *a: c.subscribe("edgefleet/v1/devices/#", qos=1)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.raw.append((msg.topic, msg.payload))
            try:
                self.messages.append((msg.topic, p.decode(msg.topic, msg.payload)))
            except p.ProtocolError:
                pass

    def of(self, cls, device_id: str | None = None) -> list:
        with self._lock:
            return [
                m for _, m in self.messages
                if isinstance(m, cls) and (device_id is None or m.device_id == device_id)
            ]  # fmt: skip

    def states(self, device_id: str, deployment_id: str) -> list[str]:
        return [
            e.state.value
            for e in self.of(p.DeploymentEvent, device_id)
            if e.deployment_id == deployment_id
        ]

    def wait_terminal(self, device_id: str, deployment_id: str, timeout: float = 60.0) -> str:
        terminal = {s.value for s in p.TERMINAL_STATES}

        def done():
            states = self.states(device_id, deployment_id)
            return states[-1] if states and states[-1] in terminal else None

        return wait_until(done, timeout, what=f"deployment {deployment_id} to end")

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def deploy_cmd(
    device_id: str,
    url: str,
    data: bytes,
    package_dir_or_file: Path,
    key,
    *,
    deployment_id: str | None = None,
    ttl_s: float = 300.0,
    health_window_s: float = 0.3,
    sha256: str | None = None,
):
    """A signed DeployCommand for a package file served at ``url``."""
    import hashlib

    from edgefleet.sdk import open_package

    with open_package(package_dir_or_file) as pkg:
        m = pkg.manifest
    cmd = p.DeployCommand(
        **p.command_fields(device_id, ttl_s=ttl_s),
        deployment_id=deployment_id or uuid.uuid4().hex[:12],
        package_name=m.name,
        package_version=m.version,
        artifact_url=url,
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        size=len(data),
        manifest_signature=p.ManifestSignature(key_id=m.signature.key_id, value=m.signature.value),
        health_window_s=health_window_s,
    )
    return p.sign_command(cmd, key) if key is not None else cmd


def installed_store(root: Path, package: Path):
    """A device store in ``root/store`` serving ``package`` (installed with workstation
    trust, so an unsigned test package is accepted)."""
    from edgefleet.device_agents import ModelStore

    store = ModelStore(root / "store")
    store.install(package, TrustPolicy.workstation())
    return store
