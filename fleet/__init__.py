"""edgefleet fleet service: model registry, devices, wave rollouts, telemetry, dashboard.

>>> from edgefleet.fleet import FleetService, FleetSettings, create_app
>>> service = FleetService(FleetSettings(data_dir=Path("fleet-data")))
>>> app = create_app(service, manage_lifecycle=True)   # uvicorn.run(app)

The API client needs only httpx (``pip install 'edgefleet[client]'`` on an operator laptop):

>>> from edgefleet.fleet import FleetClient
>>> FleetClient("http://fleet:8700", token).rollouts()

Names are imported on first use, so ``edgefleet.fleet.FleetClient`` (and the ``edgefleet
fleet`` client commands) never load FastAPI or SQLAlchemy.
"""

from importlib import import_module

# public name -> private module that defines it
_LAZY = {
    "create_app": "_api",
    **dict.fromkeys(
        (
            "STATUSES",
            "DeviceProgress",
            "GateInputs",
            "RolloutSnapshot",
            "RolloutSpec",
            "TargetSpec",
            "WaveSize",
            "apply_action",
            "plan_waves",
            "step",
        ),
        "_rollout_machine",
    ),
    **dict.fromkeys(
        (
            "AuthError",
            "BadRequestError",
            "ConflictError",
            "FleetError",
            "ForbiddenError",
            "InvalidTransitionError",
            "NotFoundError",
            "PayloadTooLargeError",
        ),
        "_errors",
    ),
    **dict.fromkeys(("hash_mqtt_password", "render_acl", "render_password_file"), "_mosquitto"),
    **dict.fromkeys(("BrokerConfig", "render_mosquitto_conf"), "_broker_config"),
    **dict.fromkeys(("TlsFiles", "client_context", "ensure_ca", "issue_certificate"), "_tls"),
    "FleetService": "_service",
    "FleetSettings": "_settings",
    **dict.fromkeys(("FleetApiError", "FleetClient", "client_config"), "_api_client"),
}

__all__ = [
    "STATUSES",
    "AuthError",
    "BadRequestError",
    "BrokerConfig",
    "ConflictError",
    "DeviceProgress",
    "FleetApiError",
    "FleetClient",
    "FleetError",
    "FleetService",
    "FleetSettings",
    "ForbiddenError",
    "GateInputs",
    "InvalidTransitionError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RolloutSnapshot",
    "RolloutSpec",
    "TargetSpec",
    "TlsFiles",
    "WaveSize",
    "apply_action",
    "client_context",
    "client_config",
    "create_app",
    "ensure_ca",
    "hash_mqtt_password",
    "issue_certificate",
    "plan_waves",
    "render_acl",
    "render_mosquitto_conf",
    "render_password_file",
    "step",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}", __name__), name)
    globals()[name] = value  # once resolved, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
