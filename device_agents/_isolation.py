"""Smoke-test a staged slot in a child process, so a runtime that crashes natively (a
segfault or abort while loading a new package) costs that package, never the agent.

The parent sends one JSON request on the child's stdin; the child answers with JSON lines
on stdout: ``{"phase": "loading", ...}`` before the runtime loads the artifact, ``{"phase":
"smoke"}`` before the golden inputs run, then ``{"result": ...}``. A child killed by a
signal is reported with the last phase it reached, e.g. ``runtime crashed: signal SIGABRT
while loading model.int8.onnx (onnxruntime)``. The child enables ``faulthandler``, so its
stderr (logged by the parent) holds the Python stack of the crash.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgefleet.sdk import TrustPolicy
    from edgefleet.sdk.backends import OnnxRuntimeOptions

__all__ = ["SmokeIsolation", "SmokeOutcome", "run_smoke", "smoke_in_child"]

log = logging.getLogger(__name__)

_STDERR_TAIL = 4000  # characters of the child's stderr kept for the log


@dataclass(frozen=True)
class SmokeIsolation:
    """How the agent runs the child: what it needs to load the slot as serving would."""

    package_keys: tuple[Path, ...] = ()
    # Extra runtime backends, name -> "module:Class" (registered in the child too).
    backends: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 300.0


@dataclass(frozen=True)
class SmokeOutcome:
    passed: bool
    # "ok", "load" (the package does not load), "smoke" (wrong golden outputs), "crash"
    # (the child died: signal or exit code), "timeout".
    kind: str
    detail: str


def _describe(phase: dict | None) -> str:
    if not phase:
        return "while starting"
    if phase.get("phase") == "loading":
        return f"while loading {phase.get('artifact')} ({phase.get('backend')})"
    if phase.get("phase") == "smoke":
        return f"while running the golden inputs on {phase.get('artifact')}"
    return f"after {phase.get('phase')}"


def _parse(stdout: str) -> tuple[dict | None, dict | None]:
    """(last phase line, result line) from the child's stdout; unparsable lines skipped."""
    phase = result = None
    for line in stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if not isinstance(msg, dict):
            continue
        if "phase" in msg:
            phase = msg
        elif "result" in msg:
            result = msg["result"]
    return phase, result


def smoke_in_child(
    slot_dir: Path,
    *,
    backend: str | None,
    profile: str | None,
    isolation: SmokeIsolation,
    onnxruntime: OnnxRuntimeOptions | None = None,
) -> SmokeOutcome:
    """Load ``slot_dir`` and run its golden inputs in a fresh interpreter."""
    request = {
        "slot_dir": str(slot_dir),
        "backend": backend,
        "profile": profile,
        "package_keys": [str(p) for p in isolation.package_keys],
        "backends": dict(isolation.backends),
        "onnxruntime": dataclasses.asdict(onnxruntime) if onnxruntime else None,
    }
    cmd = [sys.executable, "-X", "faulthandler", "-m", "edgefleet.device_agents._isolation"]
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    except OSError as e:  # e.g. qemu-user without binfmt: the interpreter cannot be exec'd
        return SmokeOutcome(False, "crash", f"cannot start the smoke-test process {cmd[0]}: "
                            f"{e} (smoke_isolated = false runs it in the agent)")  # fmt: skip
    try:
        out, err = proc.communicate(json.dumps(request), timeout=isolation.timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        phase, _ = _parse(out)
        detail = f"runtime hung: no answer within {isolation.timeout_s:g} s {_describe(phase)}"
        _log_stderr(err, detail)
        return SmokeOutcome(False, "timeout", detail)
    phase, result = _parse(out)
    rc = proc.returncode
    if result is not None and rc == 0:
        return SmokeOutcome(bool(result.get("passed")), str(result.get("kind")),
                            str(result.get("detail")))  # fmt: skip
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = str(-rc)
        detail = f"runtime crashed: signal {name} {_describe(phase)}"
    else:
        detail = f"smoke-test process exited with code {rc} {_describe(phase)}"
    _log_stderr(err, detail)
    return SmokeOutcome(False, "crash", detail)


def _log_stderr(err: str, detail: str) -> None:
    tail = err[-_STDERR_TAIL:].strip()
    log.warning("%s; child stderr:\n%s", detail, tail or "(empty)")


# -- the smoke test itself (in the child, or in this process when not isolated)


def run_smoke(
    slot_dir: Path,
    *,
    backend: str | None,
    profile: str | None,
    trust: TrustPolicy,
    onnxruntime: OnnxRuntimeOptions | None = None,
    on_phase: Callable[[dict], None] = lambda _: None,
) -> SmokeOutcome:
    """Load ``slot_dir`` as serving would and compare the golden outputs."""
    from edgefleet.sdk import EdgefleetError, LoadOptions, load, open_package
    from edgefleet.sdk._select import choose, resolve_profile

    try:
        pkg = open_package(slot_dir, trust)
    except EdgefleetError as e:
        return SmokeOutcome(False, "load", f"staged package does not load: {e}")
    try:
        # Pick the artifact as load() would, to name it before the runtime touches it; then
        # load exactly that one.
        choice = choose(
            pkg.manifest,
            backend=backend,
            artifact=None,
            precision=None,
            profile=resolve_profile(profile),
            options={"onnxruntime": onnxruntime},
        )
        where = {"artifact": choice.artifact.name, "backend": choice.backend.name}
        on_phase({"phase": "loading", **where})
        options = LoadOptions(trust=trust, warmup=0, onnxruntime=onnxruntime, profile=profile,
                              artifact=choice.artifact.name)  # fmt: skip
        model = load(pkg, choice.backend.name, options)
    except EdgefleetError as e:
        pkg.close()
        return SmokeOutcome(False, "load", f"staged package does not load: {e}")
    try:
        on_phase({"phase": "smoke", **where})
        result = model.smoke_test()
    finally:
        model.close()
        pkg.close()
    if not result.passed:
        return SmokeOutcome(False, "smoke", f"smoke test failed: {result.detail}")
    return SmokeOutcome(True, "ok", result.detail)


def _emit(msg: dict) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()  # a crash right after must not lose the phase line


def main() -> int:
    from edgefleet.sdk import TrustPolicy
    from edgefleet.sdk.backends import OnnxRuntimeOptions, register_backend

    request = json.loads(sys.stdin.read())
    for name, target in (request.get("backends") or {}).items():
        register_backend(name, target)
    keys = request.get("package_keys") or []
    raw = request.get("onnxruntime")
    if raw:
        raw["providers"] = tuple(raw["providers"]) if raw.get("providers") else None
    out = run_smoke(
        Path(request["slot_dir"]),
        backend=request.get("backend"),
        profile=request.get("profile"),
        trust=TrustPolicy.device(*keys) if keys else TrustPolicy(),
        onnxruntime=OnnxRuntimeOptions(**raw) if raw else None,
        on_phase=_emit,
    )
    _emit({"result": dataclasses.asdict(out)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
