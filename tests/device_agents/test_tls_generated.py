"""The agent against the broker configuration the fleet generates (TLS, client id bound to
the username) and HTTPS artifact downloads verified against a configured CA."""

from __future__ import annotations

import functools
import http.server
import ssl
import threading

import pytest

from tests.support.fleet_broker import generate_broker

pytestmark = pytest.mark.broker


def test_agent_connects_to_the_generated_tls_broker_with_its_id_as_username(make_agent, tmp_path):
    g = generate_broker(tmp_path / "fleet", ["pi-7"], tls=True)
    with g:

        class Broker:
            url = g.device_url()

        agent = make_agent(
            install=None,
            broker=Broker,
            device_id="pi-7",
            username="pi-7",
            password=g.device_passwords["pi-7"],
            tls_ca=g.ca,
            local_endpoint=None,
        )
        assert agent.connected.is_set()
        assert agent.settings.broker_port == g.device_port
        agent.stop(graceful=True)


class _HttpsServer:
    def __init__(self, root, cert, key) -> None:
        handler = functools.partial(_Quiet, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


def test_https_download_verifies_against_the_configured_ca(tmp_path):
    from edgefleet.device_agents._download import DownloadError, DownloadSpec, download
    from edgefleet.fleet import ensure_ca, issue_certificate

    ca = ensure_ca(tmp_path / "ca")
    server_cert = issue_certificate(ca, tmp_path / "srv", "server", hosts=["127.0.0.1"])
    other = ensure_ca(tmp_path / "other")
    root = tmp_path / "www"
    root.mkdir()
    blob = bytes(range(256)) * 4000
    (root / "a.bin").write_bytes(blob)
    server = _HttpsServer(root, server_cert.cert, server_cert.key)
    try:
        spec = DownloadSpec(
            url=f"{server.url}/a.bin", size=len(blob), retries=0, ca_file=str(ca.ca_cert)
        )
        assert download(spec, tmp_path / "ok.bin").read_bytes() == blob
        # The system store does not know the fleet's CA; another CA is refused too.
        for ca_file in (None, str(other.ca_cert)):
            bad = DownloadSpec(url=spec.url, size=spec.size, retries=0, ca_file=ca_file)
            with pytest.raises(DownloadError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
                download(bad, tmp_path / "bad.bin")
            assert not (tmp_path / "bad.bin").exists()
    finally:
        server.close()


def test_a_real_agent_process_refuses_a_broker_its_ca_did_not_sign(tmp_path, signing_keys):
    """``edgefleet agent run`` with another CA never connects (its debug log says why); with
    the broker's CA the same agent comes online."""
    import os
    import subprocess
    import sys
    import time

    import paho.mqtt.client as mqtt
    from edgefleet.fleet import ensure_ca
    from edgefleet.sdk import protocol as p

    g = generate_broker(tmp_path / "fleet", ["pi-8"], tls=True)
    wrong = ensure_ca(tmp_path / "other-ca")
    with g:
        seen: list[bytes] = []
        watch = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watch")
        watch.username_pw_set(g.fleet_user, g.fleet_password)
        watch.tls_set(ca_certs=str(g.ca))
        watch.on_connect = lambda c, u, f, rc, pr: c.subscribe(p.state_topic("pi-8"), 1)
        watch.on_message = lambda c, u, m: seen.append(m.payload)
        watch.connect("127.0.0.1", g.fleet_port)
        watch.loop_start()

        def agent(ca, log):
            env = {
                **os.environ,
                "EDGEFLEET_LOG_LEVEL": "DEBUG",  # connect failures are logged at debug
                "EDGEFLEET_AGENT_DEVICE_ID": "pi-8",
                "EDGEFLEET_AGENT_BROKER_URL": g.device_url(),
                "EDGEFLEET_AGENT_USERNAME": "pi-8",
                "EDGEFLEET_AGENT_PASSWORD": g.device_passwords["pi-8"],
                "EDGEFLEET_AGENT_TLS_CA": str(ca),
                "EDGEFLEET_AGENT_DATA_DIR": str(tmp_path / "agent"),
                "EDGEFLEET_AGENT_FLEET_KEYS": f'["{signing_keys[1]}"]',
                "EDGEFLEET_AGENT_LOCAL_ENDPOINT": "",
            }
            with open(log, "wb") as err:
                return subprocess.Popen(
                    [sys.executable, "-m", "edgefleet.device_agents", "run"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )

        procs = []
        try:
            procs.append(agent(wrong.ca_cert, tmp_path / "wrong.log"))
            time.sleep(6)
            assert procs[0].poll() is None, (tmp_path / "wrong.log").read_text()[-2000:]
            assert not seen, "an agent trusting another CA reached the broker"
            assert "CERTIFICATE_VERIFY_FAILED" in (tmp_path / "wrong.log").read_text()
            procs[0].terminate()
            procs[0].wait(10)
            procs.append(agent(g.ca, tmp_path / "right.log"))
            deadline = time.monotonic() + 20
            while not seen and time.monotonic() < deadline:
                time.sleep(0.1)
            assert seen, (tmp_path / "right.log").read_text()[-2000:]
            assert p.decode(p.state_topic("pi-8"), seen[-1]).online
        finally:
            for pr in procs:
                if pr.poll() is None:
                    pr.terminate()
                    pr.wait(10)
            watch.disconnect()
            watch.loop_stop()
