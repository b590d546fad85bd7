"""Download tickets between real processes (``edgefleet fleet serve``, ``edgefleet agent
run``, Mosquitto): a deploy command whose ticket has expired still completes, because the
agent renews the ticket with its signed command; tickets are bound to the device and the
TTL; and no ticket value reaches the fleet's access log."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest
from edgefleet.fleet import FleetClient
from edgefleet.sdk import load_private_key
from edgefleet.sdk import protocol as p

from edgefleet.demo._local_fleet import wait_for
from tests.device_agents.support import Collector
from tests.e2e.conftest import agent_env, fleet_connected, start_agent, start_fleet
from tests.support.packages import make_package

pytestmark = [pytest.mark.slow, pytest.mark.broker]


def _ticket_url(base: str, secret: bytes, device: str, exp: int) -> str:
    from edgefleet.fleet._download_tickets import download_ticket

    t = download_ticket(secret, device, "tiny", "2.0.0", exp)
    return f"{base}/api/v1/artifacts/tiny/2.0.0?device={device}&exp={exp}&ticket={t}"


def _command(device: str, url: str, pkg, key, **fields) -> p.DeployCommand:
    import hashlib

    from edgefleet.sdk import open_package

    with open_package(pkg) as opened:
        sig = opened.manifest.signature
    data = pkg.read_bytes()
    cmd = p.DeployCommand(
        **{**p.command_fields(device, ttl_s=600), **fields},
        deployment_id=f"t-{uuid.uuid4().hex[:8]}",
        package_name="tiny",
        package_version="2.0.0",
        artifact_url=url,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        manifest_signature=p.ManifestSignature(key_id=sig.key_id, value=sig.value),
        health_window_s=0.2,
    )
    return p.sign_command(cmd, key)


def test_expired_ticket_is_renewed_and_never_logged(tmp_path, procs, broker, signing_keys):
    priv, pub = signing_keys
    v1 = make_package(tmp_path / "v1.efpkg", version="1.0.0", seed=0, signing_key=priv)
    v2 = make_package(tmp_path / "v2.efpkg", version="2.0.0", seed=1, signing_key=priv)
    fleet = start_fleet(procs, tmp_path, broker.url, pub)
    fleet_key = load_private_key(tmp_path / "fleet-key" / "fleet.key")
    client = FleetClient(fleet.url, fleet.token)
    collector = Collector(broker.port)
    device = "ticket-e2e"
    try:
        wait_for(lambda: fleet_connected(client), 60, "the fleet process to answer")
        client.upload(v1)
        client.upload(v2)
        data_dir = tmp_path / "agent"
        from edgefleet.device_agents import ModelStore
        from edgefleet.sdk import TrustPolicy

        ModelStore(data_dir / "store").install(v1, TrustPolicy.device(pub))
        start_agent(procs, device, data_dir, broker.url, fleet.fleet_pub,
                    agent_env(pub, profile="x86_64-cpu"))  # fmt: skip
        wait_for(lambda: any(d["id"] == device and d["online"] for d in client.devices()),
                 60, "the agent online")  # fmt: skip
        secret = bytes.fromhex(
            (tmp_path / "fleet" / "keys" / "download.secret").read_text().strip()
        )

        # Bound to the device, the package and a short expiry.
        now = int(time.time())
        assert httpx.get(_ticket_url(fleet.url, secret, device, now + 300)).status_code == 200
        other = _ticket_url(fleet.url, secret, device, now + 300).replace(
            f"device={device}", "device=someone-else"
        )
        assert httpx.get(other).status_code == 401
        assert httpx.get(_ticket_url(fleet.url, secret, device, now - 1)).status_code == 401
        # A ticket for 23 h (the old command TTL) is refused: longer than the ticket TTL.
        assert httpx.get(_ticket_url(fleet.url, secret, device, now + 23 * 3600)).status_code == 401

        # Renewal needs this fleet's signature on a command for that device.
        stale = _ticket_url(fleet.url, secret, device, now - 5)
        cmd = _command(device, stale, v2, fleet_key)
        renew = f"{fleet.url}/api/v1/artifacts/tickets"
        r = httpx.post(renew, json={"command": cmd.model_dump(mode="json")})
        assert r.status_code == 200, r.text
        assert r.json()["expires_at"] <= time.time() + 600 + 5
        assert httpx.get(r.json()["url"]).status_code == 200
        forged = cmd.model_dump(mode="json") | {"device_id": "someone-else"}
        assert httpx.post(renew, json={"command": forged}).status_code == 401
        intruder = _command(device, stale, v2, load_private_key(priv))  # not the fleet's key
        assert (
            httpx.post(renew, json={"command": intruder.model_dump(mode="json")}).status_code == 401
        )
        assert httpx.post(renew, json={"command": {"type": "deploy"}}).status_code == 401

        # The agent receives a command whose ticket already expired: it renews and deploys.
        collector.publish(p.cmd_topic(device), p.encode(cmd))
        got = collector.wait_terminal(device, cmd.deployment_id, 60)
        assert got == "ACTIVE", procs.logs()
        assert "download ticket renewed" in procs.log(device)

        # No ticket value in the fleet's log, though its access log lists the downloads.
        client.close()
        procs.stop_all()
        log = (procs.root / "fleet.log").read_text()
        assert re.search(r"GET /api/v1/artifacts/tiny/2\.0\.0\?device=\S+ticket=REDACTED", log)
        assert not re.search(r"ticket=[0-9a-f]{16}", log), "a ticket value reached the log"
    finally:
        collector.close()
        client.close()
