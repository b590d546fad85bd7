"""The ``/api/v1`` routes. Each depends on a role; errors are FleetErrors (-> 4xx)."""

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from edgefleet.sdk.protocol import DEVICE_ID_PATTERN
from fastapi import APIRouter, Depends, File, Header, Query, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse

from ._audit import mask_event_actor
from ._auth import Principal
from ._download_tickets import authorize_download as check_download
from ._errors import AuthError, BadRequestError, PayloadTooLargeError
from ._package_files import add_file_routes
from ._registry import model_ref
from ._schemas import (
    ERRORS,
    ActionIn,
    DeviceOut,
    ModelVersionOut,
    ProvisionIn,
    ProvisionOut,
    RolloutDetail,
    RolloutIn,
    RolloutOut,
    TagsIn,
    TelemetryPointOut,
    TokenIn,
    TokenInfo,
    TokenOut,
    VersionSummary,
    mv_out,
    time_window,
)
from ._telemetry import query_series

__all__ = ["build_router"]

log = logging.getLogger(__name__)

DeviceId = Annotated[str, PathParam(pattern=DEVICE_ID_PATTERN)]
Name = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
RolloutId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


def build_router(
    service,
    need: Callable[[str], Callable],
    device_out: Callable,
    rollout_out: Callable,
    wave_progress: Callable,
) -> APIRouter:
    r = APIRouter(prefix="/api/v1", responses=ERRORS)
    Viewer = Annotated[Principal, Depends(need("viewer"))]
    Operator = Annotated[Principal, Depends(need("operator"))]
    Admin = Annotated[Principal, Depends(need("admin"))]

    def rollout_model(ro) -> str:
        mv = service.registry.by_id(ro.model_version_id)
        return model_ref(mv.name, mv.version)

    # ------------------------------------------------------------------ models

    @r.post(
        "/models",
        tags=["models"],
        status_code=201,
        response_model=ModelVersionOut,
        max_body_size=service.settings.max_upload_bytes,  # refused while it streams (413)
    )
    def upload_model(p: Operator, file: UploadFile = File(description="a .efpkg archive")):
        """Upload a signed package; its signature and every artifact hash are checked."""
        limit = service.settings.max_upload_bytes
        with tempfile.TemporaryDirectory(prefix="fleet-upload-") as tmp:
            dest = Path(tmp) / "upload.efpkg"
            with open(dest, "wb") as out:
                shutil.copyfileobj(file.file, out, 1 << 20)
            if dest.stat().st_size > limit:
                raise PayloadTooLargeError(f"upload is over the {limit} byte limit")
            return mv_out(service.registry.upload(dest))

    @r.get("/models", tags=["models"], response_model=list[ModelVersionOut])
    def list_models(p: Viewer, name: Annotated[str | None, Query(max_length=64)] = None):
        return [mv_out(m) for m in service.registry.list(name)]

    @r.get("/models/{name}/versions/{version}", tags=["models"], response_model=ModelVersionOut)
    def get_model(p: Viewer, name: Name, version: Name):
        return mv_out(service.registry.get(name, version))

    def authorize_download(name, version, device, exp, ticket, authorization) -> None:
        """A download ticket, a device token (with ``device``) or an API token; raises."""
        ok = check_download(service, name, version, device=device, exp=exp, ticket=ticket,
                            authorization=authorization)  # fmt: skip
        if not ok:
            raise AuthError("a valid download ticket, device token or API token is required")

    add_file_routes(r, service, authorize_download)

    @r.get(
        "/artifacts/{name}/{version}",
        tags=["models"],
        response_class=FileResponse,
        responses={307: {"description": "S3 store: redirect to a presigned URL"}},
    )
    def download(
        name: Name,
        version: Name,
        device: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
        exp: Annotated[int | None, Query(ge=0, le=2**40)] = None,
        ticket: Annotated[str | None, Query(max_length=128)] = None,
        authorization: Annotated[str | None, Header()] = None,
    ):
        """Download a package (HTTP Range supported, resumable). Authorised by the per-device
        ticket in the deploy command's URL, a device token (``Bearer efd_...`` with
        ``device``), or an API token with the viewer role."""
        mv = service.registry.get(name, version)
        authorize_download(name, version, device, exp, ticket, authorization)
        filename = f"{name}-{version}.efpkg"
        local = service.registry.store.local_path(mv.path)
        if local is None:  # object store: the device fetches (and resumes) from there
            return RedirectResponse(service.registry.store.presigned_url(mv.path, filename), 307)
        return FileResponse(local, media_type="application/zip", filename=filename)

    # ------------------------------------------------------------------ devices

    @r.get("/devices", tags=["devices"], response_model=list[DeviceOut])
    def list_devices(p: Viewer, tag: Annotated[str | None, Query(max_length=64)] = None):
        return [device_out(d) for d in service.devices.list(tag=tag)]

    @r.get("/devices/{device_id}", tags=["devices"], response_model=DeviceOut)
    def get_device(p: Viewer, device_id: DeviceId):
        return device_out(service.devices.get(device_id))

    @r.post("/devices", tags=["devices"], status_code=201, response_model=ProvisionOut)
    def provision(p: Admin, body: ProvisionIn):
        """Pre-provision a device: download token and MQTT password (shown once)."""
        dev, token, password = service.devices.provision(body.id, body.tags)
        return {
            "device": device_out(dev),
            "download_token": token,
            "mqtt_username": dev.id,
            "mqtt_password": password,
        }

    @r.put("/devices/{device_id}/tags", tags=["devices"], response_model=DeviceOut)
    def set_tags(p: Operator, device_id: DeviceId, body: TagsIn):
        return device_out(service.devices.set_tags(device_id, body.tags))

    @r.delete("/devices/{device_id}", tags=["devices"], response_model=DeviceOut)
    def decommission(p: Admin, device_id: DeviceId):
        """Decommission: credentials revoked, ignored from now on."""
        return device_out(service.devices.decommission(device_id))

    # ------------------------------------------------------------------ rollouts

    def detail(rid: int) -> dict:
        ro = service.rollouts.get(rid)
        devs = service.rollouts.devices(rid)
        out = rollout_out(ro, rollout_model(ro))
        out["waves"] = wave_progress(ro, devs)
        out["devices"] = [
            {
                "device_id": d.device_id,
                "wave": d.wave,
                "state": d.state,
                "previous_model": d.previous_model,
                "detail": d.detail,
            }
            for d in devs
        ]
        out["events"] = [
            {
                "at": e.at,
                "from_status": e.from_status,
                "to_status": e.to_status,
                "reason": e.reason,
                "actor": e.actor,
            }
            for e in service.rollouts.events(rid)
        ]
        return out

    @r.post("/rollouts", tags=["rollouts"], status_code=201, response_model=RolloutDetail)
    def create_rollout(p: Operator, body: RolloutIn):
        if body.start and body.start_at is not None:
            raise BadRequestError("give either start (now) or start_at (scheduled), not both")
        ro = service.rollouts.create(
            body.name, body.model, body.version, body.target, body.spec, start_at=body.start_at
        )
        if body.start:
            service.rollouts.act(ro.id, "start", f"token:{p.id}")
        return detail(ro.id)

    @r.get("/rollouts", tags=["rollouts"], response_model=list[RolloutOut])
    def list_rollouts(p: Viewer):
        out = [rollout_out(ro, rollout_model(ro)) for ro in service.rollouts.list()]
        for ro in out:
            ro["reason"] = mask_event_actor(ro["reason"], p)  # "start by token:<id>"
        return out

    @r.get("/rollouts/{rollout_id}", tags=["rollouts"], response_model=RolloutDetail)
    def get_rollout(p: Viewer, rollout_id: RolloutId):
        """Status, gate values, progress per wave and per device, every transition (a
        viewer sees which role acted, not other tokens' ids)."""
        out = detail(rollout_id)
        out["reason"] = mask_event_actor(out["reason"], p)
        for e in out["events"]:
            e["actor"] = mask_event_actor(e["actor"], p)
            e["reason"] = mask_event_actor(e["reason"], p)
        return out

    def action_route(action: str) -> None:
        # One fixed path per action (not "/{action}"): a POST to another path under a
        # rollout, e.g. the GET-only /compare, is then a 405, not a 422 on "action".
        @r.post(
            f"/rollouts/{{rollout_id}}/{action}",
            tags=["rollouts"],
            response_model=RolloutDetail,
            name=f"rollout_{action}",
        )
        def act(p: Operator, rollout_id: RolloutId, body: ActionIn | None = None):
            """Manual action; a transition the current state does not allow is 409."""
            reason = body.reason if body else ""
            service.rollouts.act(rollout_id, action, f"token:{p.id}", reason)
            return detail(rollout_id)

    for action in ("start", "pause", "resume", "abort", "rollback"):
        action_route(action)

    # ------------------------------------------------------------------ telemetry

    @r.get("/telemetry", tags=["telemetry"], response_model=list[TelemetryPointOut])
    def telemetry(
        p: Viewer,
        model: Annotated[str | None, Query(max_length=140)] = None,
        device: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
        since: float | None = None,
        until: float | None = None,
        bucket_s: Annotated[float, Query(ge=1, le=86400)] = 60,
    ):
        """Aggregated time buckets (calls, errors, throughput, p95, cache hit rate)."""
        lo, hi = time_window(since, until, 1)
        return query_series(
            service.ctx.read_engine,
            model=model,
            device_id=device,
            since=lo,
            until=hi,
            bucket_s=bucket_s,
        )

    @r.get("/telemetry/versions", tags=["telemetry"], response_model=list[VersionSummary])
    def telemetry_versions(
        p: Viewer,
        hours: Annotated[float, Query(gt=0, le=24 * 30)] = 1,
        bucket_s: Annotated[float, Query(ge=1, le=86400)] = 10,
    ):
        """One series per model version (for the dashboard charts)."""
        lo, hi = time_window(None, None, hours)
        from sqlalchemy import select

        from ._db import Telemetry

        with service.ctx.read_engine.connect() as conn:
            models = conn.execute(select(Telemetry.model).where(Telemetry.ts >= lo).distinct())
            names = sorted(m for (m,) in models)
        window = {"device_id": None, "since": lo, "until": hi, "bucket_s": bucket_s}
        return [
            {"model": m, "series": query_series(service.ctx.read_engine, model=m, **window)}
            for m in names[:20]
        ]

    # ------------------------------------------------------------------ tokens

    @r.post("/tokens", tags=["auth"], status_code=201, response_model=TokenOut)
    def create_token(p: Admin, body: TokenIn):
        return {"token": service.tokens.create(body.role, body.name), "role": body.role}

    @r.get("/tokens", tags=["auth"], response_model=list[TokenInfo])
    def list_tokens(p: Admin):
        return [
            {
                "id": t.id,
                "name": t.name,
                "role": t.role,
                "created_at": t.created_at,
                "revoked": t.revoked,
            }
            for t in service.tokens.list()
        ]

    @r.delete("/tokens/{token_id}", tags=["auth"], status_code=204)
    def revoke_token(p: Admin, token_id: Annotated[str, PathParam(pattern=r"^[0-9a-f]{1,32}$")]):
        service.tokens.revoke(token_id)

    return r
