"""schemathesis against the live OpenAPI document: no request, however odd, gets a 5xx."""

from __future__ import annotations

import pytest
import requests
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES_PER_OPERATION = 6  # bounded: the whole run stays within a few seconds


def test_openapi_is_documented(live):
    with live.client() as c:
        doc = c.get("/openapi.json").json()
    paths = doc["paths"]
    assert {"/api/v1/models", "/api/v1/devices", "/api/v1/rollouts", "/metrics"} <= set(paths)
    create = paths["/api/v1/rollouts"]["post"]
    assert {"401", "403", "422"} <= set(create["responses"])


def test_no_server_errors_on_generated_requests(live):
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    headers = {"Authorization": f"Bearer {live.admin}"}
    seen = 0
    # One session for every call, closed here: no connection is left for the GC to find.
    with requests.Session() as http:
        for result in schema.get_all_operations():
            op = result.ok()
            if op.method.upper() == "DELETE" and op.path.startswith("/api/v1/tokens"):
                continue  # would revoke the tokens the other tests use

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=op.as_strategy())
            def run(case) -> None:
                nonlocal seen
                response = case.call(session=http, headers=headers, timeout=30)
                seen += 1
                assert response.status_code < 500, (
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:500]}"
                )

            run()
    assert seen > 50


# The one check turned off, for one operation: an upload's body is a signed .efpkg archive,
# which no OpenAPI schema can describe, so a "schema-valid" random file is rightly a 400.
ST_CONFIG = """
[[operations]]
include-path = "/api/v1/models"
include-method = "POST"
checks.positive_data_acceptance.enabled = false

# A cron field's ranges (minute 0-59, ...) are checked by the server; the schema's pattern
# says the shape only, so "99 * * * *" is schema-valid and rightly a 422.
[[operations]]
include-path = "/api/v1/devices/{device_id}/maintenance-windows"
include-method = "PUT"
checks.positive_data_acceptance.enabled = false
"""


@pytest.mark.slow
def test_schemathesis_run_is_clean(tmp_path, signing_keys):
    """``schemathesis run`` with every check (status codes, response schemas, Allow on 405,
    use after DELETE, schema-valid data accepted, ...) on a fleet of its own (the run
    decommissions devices and revokes nothing else's tokens)."""
    import re
    import subprocess
    import sys

    from edgefleet.fleet import FleetService, FleetSettings, create_app

    from tests.fleet.conftest import ADMIN, UvicornThread
    from tests.support.mosquitto import free_port

    port = free_port()
    settings = FleetSettings(data_dir=tmp_path / "fleet", port=port, mqtt_enabled=False,
                             trusted_package_keys=[signing_keys[1]],
                             bootstrap_admin_token=ADMIN)  # fmt: skip
    service = FleetService(settings).start()
    server = UvicornThread(create_app(service), port)
    server.start()
    config = tmp_path / "schemathesis.toml"
    config.write_text(ST_CONFIG)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--no-color", "--config-file",
             str(config), "run", f"http://127.0.0.1:{port}/openapi.json",
             "-H", f"Authorization: Bearer {ADMIN}", "--max-examples", "6", "--seed", "1",
             "--exclude-path-regex", "^/api/v1/tokens/"],  # DELETE would revoke ADMIN
            capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its cache dir there
        )  # fmt: skip
    finally:
        server.stop()
        service.stop()
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "Failures:" not in out.stdout
    generated, passed = map(int, re.search(r"(\d+) generated, (\d+) passed", out.stdout).groups())
    assert generated == passed > 500, out.stdout[-3000:]
