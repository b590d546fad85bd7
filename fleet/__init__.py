"""edgefleet fleet service: model registry, devices, wave rollouts, telemetry, dashboard.

>>> from edgefleet.fleet import FleetService, FleetSettings, create_app
>>> service = FleetService(FleetSettings(data_dir=Path("fleet-data")))
>>> app = create_app(service, manage_lifecycle=True)   # uvicorn.run(app)
"""

from ._api import create_app
from ._broker_config import BrokerConfig, render_mosquitto_conf
from ._errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    FleetError,
    ForbiddenError,
    InvalidTransitionError,
    NotFoundError,
    PayloadTooLargeError,
)
from ._mosquitto import hash_mqtt_password, render_acl, render_password_file
from ._rollout_machine import (
    STATUSES,
    DeviceProgress,
    GateInputs,
    RolloutSnapshot,
    RolloutSpec,
    TargetSpec,
    WaveSize,
    apply_action,
    plan_waves,
    step,
)
from ._service import FleetService
from ._settings import FleetSettings
from ._tls import TlsFiles, client_context, ensure_ca, issue_certificate

__all__ = [
    "STATUSES",
    "AuthError",
    "BadRequestError",
    "BrokerConfig",
    "ConflictError",
    "DeviceProgress",
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
