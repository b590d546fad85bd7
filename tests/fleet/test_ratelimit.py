"""Failed authentications: limited per client (429 + Retry-After), priced the same whatever
the reason (no token-id probing by timing), and the optional /metrics token."""

from __future__ import annotations

import statistics
import time

import httpx
import pytest

from tests.fleet.conftest import ADMIN, UvicornThread
from tests.support.mosquitto import free_port

METRICS_TOKEN = "metrics-secret-0123456789"


@pytest.fixture
def fleet(tmp_path):
    from edgefleet.fleet import FleetService, FleetSettings, create_app

    port = free_port()
    settings = FleetSettings(
        data_dir=tmp_path / "fleet", port=port, mqtt_enabled=False, bootstrap_admin_token=ADMIN,
        metrics_token=METRICS_TOKEN, auth_max_failures=5, auth_failure_window_s=30,
        auth_lockout_s=2,
    )  # fmt: skip
    service = FleetService(settings).start()
    server = UvicornThread(create_app(service), port)
    server.start()
    yield service, f"http://127.0.0.1:{port}"
    server.stop()
    service.stop()


def _get(url: str, token: str | None, path: str = "/api/v1/devices") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url + path, headers=headers, timeout=30)


def test_failed_tokens_are_limited_per_client(fleet):
    service, url = fleet
    wrong = ADMIN[: ADMIN.rindex("_") + 1] + "not-the-secret"  # a real id, a wrong secret
    assert _get(url, ADMIN).status_code == 200
    for _ in range(5):
        assert _get(url, wrong).status_code == 401
    r = _get(url, wrong)
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 2, r.text
    assert "too many failed authentications" in r.json()["detail"]
    # Locked out means no token check at all, even for a valid token.
    assert _get(url, ADMIN).status_code == 429
    time.sleep(2.1)
    assert _get(url, ADMIN).status_code == 200


def test_metrics_token(fleet):
    _, url = fleet
    assert _get(url, None, "/metrics").status_code == 401
    assert _get(url, "nope", "/metrics").status_code == 401
    r = _get(url, METRICS_TOKEN, "/metrics")
    assert r.status_code == 200 and "edgefleet_fleet_http_requests_total" in r.text
    assert _get(url, ADMIN, "/metrics").status_code == 401  # its own token, not an API one


def test_refusal_costs_the_same_for_an_unknown_id(fleet):
    """An unknown token id used to be refused before any Argon2 check (13 vs 60 ms): a
    timing oracle for which ids exist. CPU time of this thread, so machine load does not
    blur it."""
    from edgefleet.fleet import AuthError

    service, _ = fleet
    tid = ADMIN.split("_")[1]

    def cost(token: str) -> float:
        samples = []
        for _ in range(7):
            t0 = time.thread_time()
            with pytest.raises(AuthError):
                service.tokens.authenticate(token)
            samples.append(time.thread_time() - t0)
        return statistics.median(samples)

    known = cost(f"eft_{tid}_wrong-secret-xxxxxxxxxx")
    unknown = cost("eft_ffffffffffffffff_wrong-secret-xxxxxxxxxx")
    assert unknown > 0.6 * known, (unknown, known)


def test_limiter_window_and_lockout():
    from edgefleet.fleet._ratelimit import AuthFailureLimiter, TooManyRequestsError

    lim = AuthFailureLimiter(max_failures=3, window_s=0.2, lockout_s=0.3)
    lim.failed("a")
    lim.failed("a")
    time.sleep(0.25)  # those two left the window
    lim.failed("a")
    lim.failed("a")
    lim.check("a")  # 2 in the window: not yet
    lim.failed("a")
    with pytest.raises(TooManyRequestsError) as e:
        lim.check("a")
    assert e.value.headers == {"Retry-After": "1"}
    lim.check("b")  # per client
    time.sleep(0.35)
    lim.check("a")
