"""The FastAPI application: routes, auth dependencies, error handlers, dashboard."""

import logging
from collections import Counter
from contextlib import asynccontextmanager
from datetime import UTC
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ._audit import AuditLogStore, install_audit
from ._auth import Principal, check_static_token, role_allows
from ._body_limit import DeclaredLengthLimit
from ._conformance import allowed_methods
from ._db import Device, Rollout
from ._download_tickets import build_ticket_router, redact_access_log
from ._errors import AuthError, FleetError, ForbiddenError
from ._ops_routes import build_ops_router
from ._ratelimit import AuthFailureLimiter
from ._rollout_machine import FAILED_STATES
from ._routes import build_router
from ._service import FleetService

__all__ = ["create_app", "device_out", "rollout_out"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# Every request body but a package upload (JSON of a rollout, tags, ...) is small.
_MAX_BODY_BYTES = 16 * 1024 * 1024
_bearer = HTTPBearer(auto_error=False, description="API token: eft_<id>_<secret>")


def device_out(d: Device) -> dict:
    return {
        "id": d.id,
        "online": bool(d.online),
        "profile": d.profile,
        "tags": list(d.tags or []),
        "agent_version": d.agent_version,
        "active_slot": d.active_slot,
        "slot_a": d.slot_a,
        "slot_b": d.slot_b,
        "active_model": d.active_model,
        "last_seen": d.last_seen,
        "provisioned": d.token_hash is not None,
        "decommissioned": bool(d.decommissioned),
    }


def rollout_out(r: Rollout, model: str) -> dict:
    return {
        "id": r.id,
        "name": r.name,
        "model": model,
        "status": r.status,
        "reason": r.reason,
        "current_wave": r.current_wave,
        "wave_count": len(r.waves),
        "device_count": sum(len(w) for w in r.waves),
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "spec": r.spec,
        "target": r.target,
        "gates": r.gates or {},
        "start_at": r.start_at.replace(tzinfo=UTC) if r.start_at else None,  # stored UTC
    }


def wave_progress(r: Rollout, devices: list) -> list[dict]:
    out = []
    by_wave: dict[int, Counter] = {}
    for d in devices:
        by_wave.setdefault(d.wave, Counter())[d.state] += 1
    for i, wave in enumerate(r.waves):
        states = by_wave.get(
            i, Counter({"PENDING": len(wave)}) if r.status == "DRAFT" else Counter()
        )
        out.append(
            {
                "index": i,
                "size": len(wave),
                "states": dict(states),
                "active": states.get("ACTIVE", 0),
                "failed": sum(v for k, v in states.items() if k in FAILED_STATES),
            }
        )
    return out


def is_lock_contention(exc: OperationalError) -> bool:
    """SQLite "database is locked"/"busy", PostgreSQL lock timeout or deadlock."""
    text = str(exc.orig).lower()
    code = getattr(exc.orig, "sqlstate", None)
    return "locked" in text or "busy" in text or code in ("55P03", "40P01", "40001")


def create_app(service: FleetService, *, manage_lifecycle: bool = False) -> FastAPI:
    """Build the app around ``service``; with ``manage_lifecycle`` the app starts and stops
    the service (``edgefleet fleet serve``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if manage_lifecycle:
            service.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                service.stop()

    app = FastAPI(
        title="edgefleet fleet service",
        version="1",
        description="Model registry, devices, wave rollouts with telemetry gates, telemetry. "
        "Authenticate with `Authorization: Bearer <API token>` (roles viewer < operator < admin).",
        lifespan=lifespan,
        # Bodies are limited while they stream in (a declared Content-Length at once, a
        # chunked body once it passes the limit): never spooled whole to disk first. The
        # package upload route has its own, larger limit.
        max_body_size=_MAX_BODY_BYTES,
    )
    app.state.service = service

    s = service.settings
    limiter = AuthFailureLimiter(s.auth_max_failures, s.auth_failure_window_s, s.auth_lockout_s)

    def principal(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if creds is None or not creds.credentials:
            raise AuthError("missing API token: send 'Authorization: Bearer <token>'")
        p = limited(request, lambda: service.tokens.authenticate(creds.credentials))
        request.state.principal = p  # for the audit
        return p

    def limited(request: Request, check):
        """Run the token ``check``; its failures count against the client's limit."""
        client = request.client.host if request.client else "unknown"
        limiter.check(client)
        try:
            return check()
        except AuthError:
            limiter.failed(client)
            raise

    def need(role: str):
        def dep(p: Annotated[Principal, Depends(principal)]) -> Principal:
            if not role_allows(p.role, role):
                raise ForbiddenError(f"this needs the {role} role; your token has {p.role}")
            return p

        return dep

    @app.exception_handler(FleetError)
    async def _fleet_error(request: Request, exc: FleetError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else {}
        headers |= getattr(exc, "headers", {})  # e.g. Retry-After with a 429
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(OperationalError)
    async def _db_busy(request: Request, exc: OperationalError) -> JSONResponse:
        # SQLite writers already queue for the lock (busy timeout); if it is still held the
        # client should come back, not see a server error. Anything else stays a 500.
        if not is_lock_contention(exc):
            raise exc
        service.metrics.inc("edgefleet_fleet_db_busy_total")
        log.warning("database busy on %s %s: %s", request.method, request.url.path, exc.orig)
        return JSONResponse(
            {"detail": "the database is busy; retry shortly"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail, headers = exc.detail, exc.headers
        limit = request.scope.get("starlette.max_body_size")
        if exc.status_code == 413 and limit is not None:
            detail = f"request body is over the {limit} byte limit of {request.url.path}"
        if exc.status_code == 405:  # every method of the path, not just one route's
            allow = ", ".join(allowed_methods(app, request.url.path))
            headers = {**(headers or {}), "Allow": allow}
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)

    @app.middleware("http")
    async def _count(request: Request, call_next):
        response = await call_next(request)
        service.metrics.inc("edgefleet_fleet_http_requests_total", status=str(response.status_code))
        return response

    install_audit(app, AuditLogStore(service.ctx))
    app.include_router(build_ops_router(service, need, device_out))  # first: /devices/search
    app.include_router(build_router(service, need, device_out, rollout_out, wave_progress))
    app.include_router(build_ticket_router(service))
    redact_access_log()  # download tickets never reach the access log

    def body_limit(method: str, path: str) -> int:
        if method == "POST" and path == "/api/v1/models":
            return service.settings.max_upload_bytes
        return _MAX_BODY_BYTES

    app.add_middleware(DeclaredLengthLimit, limit_for=body_limit)

    @app.get("/health", tags=["ops"])
    def health() -> dict:
        mqtt = service.mqtt is not None and service.mqtt.healthy
        return {"status": "ok", "mqtt_connected": mqtt, "database": service.ctx.engine.dialect.name}

    def render_metrics() -> PlainTextResponse:
        return PlainTextResponse(
            service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    # The OpenAPI document says what this fleet does: /metrics open, or behind its token.
    if s.metrics_token:

        @app.get(
            "/metrics",
            tags=["ops"],
            response_class=PlainTextResponse,
            responses={401: {"description": "missing or wrong metrics token"},
                       429: {"description": "too many failed authentications"}},
        )  # fmt: skip
        def metrics(
            request: Request,
            creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        ) -> PlainTextResponse:
            """Prometheus text exposition; ``Authorization: Bearer <metrics_token>``."""
            limited(request, lambda: check_static_token(s.metrics_token, creds, "metrics"))
            return render_metrics()

    else:

        @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
        def metrics_open() -> PlainTextResponse:
            """Prometheus text exposition (EDGEFLEET_FLEET_METRICS_TOKEN protects it)."""
            return render_metrics()

    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("/ui/index.html")

    app.mount("/ui", StaticFiles(directory=STATIC), name="ui")
    return app
