"""Fleet -> device commands. Every command is signed (see ``_command_auth``) and carries the
device id, a nonce and a validity window."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from .._manifest_fields import Name, Sha256
from ._device_id import DeviceId
from ._message_base import SlotName, _aware, _Msg, _Part
from ._windows import MaintenanceWindow, drop_empty

__all__ = [
    "CommandSignature",
    "ManifestSignature",
    "CommandBase",
    "DeployCommand",
    "CancelCommand",
    "RollbackCommand",
    "BenchmarkCommand",
    "ConfigCommand",
    "Command",
]

_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


class CommandSignature(_Part):
    algorithm: Literal["ed25519"] = "ed25519"
    key_id: str
    value: str = Field(description="base64 Ed25519 signature over the canonical command")


class ManifestSignature(_Part):
    """The package manifest's own signature, so the device can bind download to command."""

    key_id: str
    value: str


class CommandBase(_Msg):
    """Fields every command carries. The signature covers everything but ``signature``."""

    command_id: str = Field(min_length=1, max_length=64)
    device_id: DeviceId
    nonce: str = Field(description="random, 16-128 url-safe characters; never reused")
    issued_at: datetime
    expires_at: datetime
    signature: CommandSignature | None = None

    @field_validator("nonce")
    @classmethod
    def _nonce(cls, v: str) -> str:
        if not _NONCE_RE.match(v):
            raise ValueError("expected a nonce of 16-128 characters A-Z a-z 0-9 _ -")
        return v

    @field_validator("issued_at", "expires_at")
    @classmethod
    def _ts(cls, v: datetime) -> datetime:
        return _aware(v)

    @model_validator(mode="after")
    def _window(self) -> CommandBase:
        if self.expires_at <= self.issued_at:
            raise ValueError("expires_at must be after issued_at")
        return self

    def signed_payload(self) -> dict:
        return self.model_dump(mode="json", exclude={"signature"})


class DeployCommand(CommandBase):
    type: Literal["cmd.deploy"] = "cmd.deploy"
    deployment_id: str = Field(min_length=1, max_length=64)
    package_name: Name
    package_version: str
    artifact_url: str = Field(description="http(s) URL of the .efpkg; Range requests supported")
    sha256: Sha256
    size: int = Field(gt=0)
    manifest_signature: ManifestSignature
    health_window_s: float = Field(default=10.0, ge=0, le=86400)
    max_error_rate: float = Field(default=0.05, ge=0, le=1)
    # Set by the fleet (windows given to the device through its API): outside them the
    # device stages the package and activates it when one opens. Left out when empty, so
    # the signed bytes and agents that predate the field are unchanged.
    maintenance_windows: list[MaintenanceWindow] = Field(default_factory=list, max_length=16)

    @model_serializer(mode="wrap")
    def _drop_empty_windows(self, handler):
        return drop_empty(handler(self), "maintenance_windows")

    @field_validator("artifact_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {v!r}")
        return v


class CancelCommand(CommandBase):
    type: Literal["cmd.cancel"] = "cmd.cancel"
    deployment_id: str = Field(min_length=1, max_length=64)


class RollbackCommand(CommandBase):
    """Make the previous slot active again (``deployment_id``: the one being undone)."""

    type: Literal["cmd.rollback"] = "cmd.rollback"
    deployment_id: str | None = None


class BenchmarkCommand(CommandBase):
    """Run the SDK benchmark on a slot's package; figures come back in a CommandAck."""

    type: Literal["cmd.benchmark"] = "cmd.benchmark"
    slot: SlotName | Literal["active"] = "active"
    iterations: int = Field(default=50, ge=1, le=100_000)
    warmup: int = Field(default=5, ge=0, le=10_000)
    backend: str | None = None


class ConfigCommand(CommandBase):
    """Change agent settings at run time; fields left None are unchanged."""

    type: Literal["cmd.config"] = "cmd.config"
    telemetry_interval_s: float | None = Field(default=None, gt=0, le=86400)
    cache_entries: int | None = Field(default=None, ge=0)
    cache_bytes: int | None = Field(default=None, ge=0)


Command = Annotated[
    DeployCommand | CancelCommand | RollbackCommand | BenchmarkCommand | ConfigCommand,
    Field(discriminator="type"),
]
