"""Rollouts created and started through the fleet's HTTP API, as an operator would."""

from __future__ import annotations

__all__ = ["start_rollout"]


def start_rollout(
    c, tag: str, version: str, spec: dict, *, model: str = "tiny", name: str | None = None
) -> dict:
    """Roll ``model@version`` out to the devices tagged ``tag`` and start it (no health
    window unless ``spec`` sets one); the created rollout's JSON."""
    r = c.post(
        "/api/v1/rollouts",
        json={
            "name": name or f"{tag}-{version}",
            "model": model,
            "version": version,
            "target": {"tags": [tag]},
            "spec": {"health_window_s": 0, **spec},
            "start": True,
        },
    )
    assert r.status_code == 201, r.text
    return r.json()
