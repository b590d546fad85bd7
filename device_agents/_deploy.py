"""The deployment state machine (DESIGN.md section 5).

QUEUED -> DOWNLOADING -> VERIFYING -> STAGED -> ACTIVATING -> ACTIVE, or FAILED (the active
slot never changed), ROLLED_BACK (activated, failed its health window, previous slot active
again), REJECTED (signature / identity / hardware policy) or CANCELED.

Every transition is written to the journal before anything else happens, so a restart
resumes (download, verify, stage) or rolls back (an interrupted activation).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from edgefleet.sdk import BackendUnavailableError, PackageError, SignatureError
from edgefleet.sdk.protocol import (
    TERMINAL_STATES,
    WAITING_FOR_WINDOW,
    DeployCommand,
    DeploymentState,
    next_window_start,
    window_open,
)

from ._download import DownloadCanceled, DownloadError, DownloadSpec, download
from ._fetch_plan import FetchOptions, fetch_for_device
from ._isolation import SmokeIsolation, run_smoke, smoke_in_child
from ._journal import DeploymentRecord, Journal
from ._store import ModelStore
from ._ticket_renewal import has_ticket, renew_ticket

if TYPE_CHECKING:
    from edgefleet.sdk import TrustPolicy
    from edgefleet.sdk.backends import OnnxRuntimeOptions

    from ._settings import AgentSettings

__all__ = ["Deployer", "DeployHooks"]

log = logging.getLogger(__name__)
S = DeploymentState


class _Stop(Exception):
    def __init__(self, state: DeploymentState, reason: str) -> None:
        super().__init__(reason)
        self.state, self.reason = state, reason


@dataclass
class DeployHooks:
    """What the state machine needs from the agent around it."""

    emit: Callable[[DeploymentRecord, DeploymentState | None, float | None], None]
    policy: Callable[[], TrustPolicy]
    profile_name: Callable[[], str | None]
    # Run the golden inputs on the active model once; True when it answered correctly.
    probe: Callable[[], bool]
    # (calls, backend errors) served to apps so far, for the health window.
    traffic: Callable[[], tuple[int, int]] = lambda: (0, 0)
    canceled: set[str] = field(default_factory=set)
    # onnxruntime options for the smoke-test session; None = the profile's (what serving
    # uses). ``Simulation`` sets one intra-op thread: a default pool per session spawned and
    # joined a thread per device (the join holds the GIL; ~8 ms per deploy measured).
    smoke_onnxruntime: OnnxRuntimeOptions | None = None
    # Smoke-test in a child process (a native crash costs the package, not the agent);
    # None = in this process (the simulator: hundreds of agents share one process).
    isolation: SmokeIsolation | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    window_poll_s: float = 5.0


class Deployer:
    """Runs deployments as the ``settings`` say (backend, profile, downloads, smoke test,
    resumes, the device's own maintenance windows); ``hooks`` reach the agent around it."""

    def __init__(
        self,
        store: ModelStore,
        journal: Journal,
        downloads: Path,
        settings: AgentSettings,
        hooks: DeployHooks,
    ):
        self.store, self.journal, self.downloads = store, journal, downloads
        self.settings, self.hooks = settings, hooks
        self.ca_file = str(settings.http_ca) if settings.http_ca else None
        self.lock = threading.Lock()  # one deployment at a time

    # -- helpers
    def _fault(self, point: str) -> None:
        if self.settings.fault_point == point:
            log.warning("fault injection: exiting at %s", point)
            os._exit(137)

    def _to(self, rec: DeploymentRecord, state: DeploymentState, reason: str = ""):
        prev = rec.state if rec.state != state else None
        rec = rec.model_copy(
            update={"state": state, "reason": reason, "updated_at": datetime.now(UTC)}
        )
        self.journal.save(rec)
        self.hooks.emit(rec, prev, None)
        self._fault(f"after:{state.value}")
        return rec

    def _check_cancel(self, rec: DeploymentRecord) -> None:
        if rec.deployment_id in self.hooks.canceled:
            raise _Stop(S.CANCELED, "canceled by the fleet")

    def current(self) -> DeploymentRecord | None:
        rec = self.journal.load()
        return rec if rec is not None and rec.state not in TERMINAL_STATES else None

    # -- entry points
    def deploy(self, cmd: DeployCommand) -> DeploymentRecord:
        with self.lock:
            active = self.store.active_slot()
            rec = DeploymentRecord(
                command=cmd,
                state=S.QUEUED,
                from_slot=active,
                to_slot=self.store.other(active),
                updated_at=datetime.now(UTC),
            )
            info = self.store.slot_info(active) if active else None
            if info and (info.package_name, info.package_version) == (
                cmd.package_name,
                cmd.package_version,
            ):
                rec = rec.model_copy(update={"to_slot": active})
                self.hooks.emit(rec, None, None)
                return self._to(rec, S.ACTIVE, "already active")
            rec = self._to(rec, S.QUEUED)
            return self._drive(rec)

    def resume(self) -> DeploymentRecord | None:
        """After a restart: continue the deployment the journal says was in progress."""
        with self.lock:
            rec = self.journal.load()
            if rec is None:
                return None
            if rec.state in TERMINAL_STATES:
                # Its last event may have died with the previous process: say it again
                # (the fleet treats repeated states as idempotent).
                self.hooks.emit(rec, None, None)
                return rec
            # Counted and persisted before anything can crash again: a package that kills
            # the agent at every resume fails after ``max_resumes`` restarts.
            rec = rec.model_copy(update={"resumes": rec.resumes + 1})
            self.journal.save(rec)
            log.info("resuming deployment %s from %s (restart %d)", rec.deployment_id,
                     rec.state.value, rec.resumes)  # fmt: skip
            if rec.resumes > self.settings.max_resumes:
                return self._give_up(rec)
            return self._drive(rec)

    def _give_up(self, rec: DeploymentRecord) -> DeploymentRecord:
        reason = (
            f"agent restarted {rec.resumes} times during this deployment (last at "
            f"{rec.state.value}); giving up on it"
        )
        if rec.to_slot is not None and self.store.active_slot() == rec.to_slot:
            return self._rollback(rec, reason)
        return self._finish_failed(rec, S.FAILED, reason)

    def _drive(self, rec: DeploymentRecord) -> DeploymentRecord:
        try:
            if rec.state in (S.QUEUED, S.DOWNLOADING):
                rec = self._download(rec)
            if rec.state == S.VERIFYING:
                rec = self._verify(rec)
            if rec.state == S.STAGED:
                self._await_window(rec)
                self._check_cancel(rec)
                rec = self._to(rec, S.ACTIVATING)
                rec = self._activate(rec, resumed=False)
            elif rec.state == S.ACTIVATING:
                rec = self._activate(rec, resumed=True)
        except _Stop as stop:
            rec = self._finish_failed(rec, stop.state, stop.reason)
        except Exception as e:  # never leave a deployment hanging on an unexpected error
            log.exception("deployment %s failed unexpectedly", rec.deployment_id)
            rec = self._finish_failed(rec, S.FAILED, f"internal error: {e}")
        finally:
            self.hooks.canceled.discard(rec.deployment_id)
        return rec

    def _finish_failed(self, rec: DeploymentRecord, state: DeploymentState, reason: str):
        info = self.store.slot_info(rec.to_slot) if rec.to_slot else None
        # Clear the slot only if it holds this deployment's package: before staging it still
        # holds the previous model, which a later rollback may need.
        if info and info.deployment_id == rec.deployment_id and not info.active:
            try:
                self.store.clear(rec.to_slot)
            except (OSError, PackageError) as e:
                log.warning("could not clear slot %s: %s", rec.to_slot, e)
        self._cleanup(rec)
        log.warning("deployment %s %s: %s", rec.deployment_id, state.value, reason)
        return self._to(rec, state, reason)

    def _cleanup(self, rec: DeploymentRecord) -> None:
        for p in self.downloads.glob(f"{rec.deployment_id}.efpkg*"):
            if p.is_dir():  # a per-device (partial) download
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    # -- steps
    def _download(self, rec: DeploymentRecord) -> DeploymentRecord:
        self._check_cancel(rec)
        if rec.state != S.DOWNLOADING:
            rec = self._to(rec, S.DOWNLOADING)
        cmd = rec.command
        spec = DownloadSpec(
            url=cmd.artifact_url,
            size=cmd.size,
            token=self.settings.device_token,
            timeout_s=self.settings.http_timeout_s,
            retries=self.settings.download_retries,
            ca_file=self.ca_file,
            # Tickets live minutes: a refused one is renewed with the signed command.
            renew=(lambda: renew_ticket(cmd, self.settings.http_timeout_s))
            if has_ticket(cmd.artifact_url) else None,
        )  # fmt: skip
        half = cmd.size // 2

        def on_bytes(n: int) -> None:
            if n >= half:
                self._fault("during:DOWNLOADING")

        canceled = lambda: rec.deployment_id in self.hooks.canceled  # noqa: E731
        try:
            # Per-device download first: only the artifact(s) this device will run.
            fetched = fetch_for_device(
                cmd,
                self._parts(rec),
                FetchOptions(
                    policy=self.hooks.policy(),
                    backend=self.settings.backend,
                    profile=self.settings.profile,
                    token=self.settings.device_token,
                    timeout_s=self.settings.http_timeout_s,
                    retries=self.settings.download_retries,
                    ca_file=self.ca_file,
                    renew=spec.renew,
                ),
                on_progress=lambda done, total: (
                    done >= total // 2 and self._fault("during:DOWNLOADING")
                ),
                canceled=canceled,
            )
            if fetched is None:  # the server offers only whole packages
                download(spec, self._file(rec), on_bytes=on_bytes, canceled=canceled)
        except DownloadCanceled as e:
            raise _Stop(S.CANCELED, "canceled by the fleet while downloading") from e
        except DownloadError as e:
            raise _Stop(S.FAILED, str(e)) from e
        except SignatureError as e:
            raise _Stop(S.REJECTED, f"package signature refused: {e}") from e
        except BackendUnavailableError as e:
            raise _Stop(S.REJECTED, f"no artifact this device can run: {e}") from e
        except PackageError as e:
            raise _Stop(S.FAILED, f"package invalid: {e}") from e
        return self._to(rec, S.VERIFYING)

    def _file(self, rec: DeploymentRecord) -> Path:
        return self.downloads / f"{rec.deployment_id}.efpkg"

    def _parts(self, rec: DeploymentRecord) -> Path:
        return self.downloads / f"{rec.deployment_id}.efpkg.d"

    def _verify(self, rec: DeploymentRecord) -> DeploymentRecord:
        self._check_cancel(rec)
        cmd, path = rec.command, self._file(rec)
        from edgefleet.sdk import PARTIAL_NAME, sha256_file

        if (self._parts(rec) / PARTIAL_NAME).is_file():
            # Per-device download: each file was checked against the signed manifest as it
            # arrived; staging checks the signature and every present file again.
            path = self._parts(rec)
        elif not path.is_file():  # e.g. cleaned up; fetch again
            return self._verify(self._download(rec.model_copy(update={"state": S.DOWNLOADING})))
        elif (path.stat().st_size, sha256_file(path)) != (cmd.size, cmd.sha256):
            size, digest = path.stat().st_size, sha256_file(path)
            raise _Stop(
                S.FAILED,
                f"artifact hash mismatch: expected sha256 {cmd.sha256} ({cmd.size} bytes), "
                f"got {digest} ({size} bytes)",
            )
        try:
            info = self.store.stage(rec.to_slot, path, self.hooks.policy(), rec.deployment_id)
        except SignatureError as e:
            raise _Stop(S.REJECTED, f"package signature refused: {e}") from e
        except PackageError as e:
            raise _Stop(S.FAILED, f"package invalid: {e}") from e
        manifest = json.loads((self.store.slot_dir(rec.to_slot) / "manifest.json").read_text())
        sig = manifest.get("signature") or {}
        if (info.package_name, info.package_version) != (cmd.package_name, cmd.package_version):
            raise _Stop(
                S.REJECTED,
                f"package is {info.package_name} {info.package_version}, the command named "
                f"{cmd.package_name} {cmd.package_version}",
            )
        if (sig.get("key_id"), sig.get("value")) != (
            cmd.manifest_signature.key_id,
            cmd.manifest_signature.value,
        ):
            raise _Stop(S.REJECTED, "package manifest signature differs from the command's")
        self._check_hardware(manifest)
        self._cleanup(rec)
        return self._to(rec, S.STAGED)

    def _await_window(self, rec: DeploymentRecord) -> None:
        """Outside every maintenance window: stay STAGED (said once, with when the next
        window opens) until one opens or the fleet cancels. A restart resumes here."""
        windows = rec.command.maintenance_windows or self.settings.maintenance_windows
        if window_open(windows, self.hooks.clock()):
            return
        nxt = next_window_start(windows, self.hooks.clock())
        when = nxt.isoformat(timespec="minutes") if nxt else "not within a year"
        self._to(rec, S.STAGED, f"{WAITING_FOR_WINDOW} (next opens {when})")
        while not window_open(windows, self.hooks.clock()):
            self._check_cancel(rec)
            time.sleep(self.hooks.window_poll_s)

    def _check_hardware(self, manifest: dict) -> None:
        # ``manifest`` is the staged (just verified) manifest.json: reading its artifact
        # targets needs no second pydantic parse of the package.
        profile = self.hooks.profile_name()
        targets = [a.get("targets") or [] for a in manifest.get("artifacts") or []]
        if profile and targets and all(t and profile not in t for t in targets):
            raise _Stop(S.REJECTED, f"no artifact in the package targets {profile}")

    def _activate(self, rec: DeploymentRecord, resumed: bool) -> DeploymentRecord:
        if resumed and self.store.active_slot() == rec.to_slot:
            # Killed after the switch, inside the health window: the new model never proved
            # itself, so the safe choice is the previous one.
            return self._rollback(rec, "agent restarted during the health window")
        if self.settings.smoke_test:
            self._smoke(rec)
        self.store.activate(rec.to_slot)
        self._fault("after:SWITCH")
        if not self._healthy(rec):
            return self._rollback(rec, "post-activation health check failed")
        self._cleanup(rec)
        return self._to(rec, S.ACTIVE)

    def _smoke(self, rec: DeploymentRecord) -> None:
        slot, h, s = self.store.slot_dir(rec.to_slot), self.hooks, self.settings
        if h.isolation is not None:
            out = smoke_in_child(
                slot, backend=s.backend, profile=s.profile, isolation=h.isolation,
                onnxruntime=h.smoke_onnxruntime,
            )  # fmt: skip
        else:
            out = run_smoke(
                slot, backend=s.backend, profile=s.profile, trust=h.policy(),
                onnxruntime=h.smoke_onnxruntime,
            )  # fmt: skip
        if not out.passed:
            raise _Stop(S.FAILED, out.detail)

    def _healthy(self, rec: DeploymentRecord) -> bool:
        window = rec.command.health_window_s
        calls0, errors0 = self.hooks.traffic()
        probes = bad = 0
        deadline = time.monotonic() + window
        while True:
            probes += 1
            ok = self.hooks.probe() and self.settings.fault_point != "health:fail"
            bad += 0 if ok else 1
            if time.monotonic() >= deadline:
                break
            time.sleep(min(0.5, max(window / 4, 0.05)))
        calls1, errors1 = self.hooks.traffic()
        total = probes + (calls1 - calls0)
        rate = (bad + errors1 - errors0) / total
        log.info("health of %s: error rate %.3f over %d calls", rec.deployment_id, rate, total)
        return rate <= rec.command.max_error_rate

    def _rollback(self, rec: DeploymentRecord, reason: str) -> DeploymentRecord:
        back = rec.from_slot
        if back is None or not self.store.has_package(back):
            self._cleanup(rec)
            return self._to(rec, S.FAILED, f"{reason}; no previous model to roll back to")
        self.store.activate(back)
        self._cleanup(rec)
        return self._to(rec, S.ROLLED_BACK, reason)
