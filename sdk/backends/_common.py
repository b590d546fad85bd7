"""What the runtime adapters share: the session and backend bases, name matching, option
checks, error wrapping."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import BackendError, BackendUnavailableError, ConfigError
from .._manifest import Artifact, TensorSpec
from ._base import EXTRAS, module_available

__all__ = [
    "LoadRequest",
    "RuntimeBackend",
    "RuntimeSession",
    "to_torch",
    "match_names",
    "check_options",
    "check_threads",
    "missing_runtime",
    "require_runtime",
    "quiet_imports",
    "wrap_errors",
]

log = logging.getLogger(__name__)


class RuntimeSession:
    """What every runtime's session shares: the manifest specs (handed out as copies, so
    callers cannot change the session's view), the artifact name for messages, run errors
    as BackendError and the output-count check. ``thread_safe``: the runtime call may run
    concurrently (or the session serialises it itself), so the Model layer adds no lock."""

    runtime = ""
    thread_safe = False
    # run() always returns exactly the manifest's output names (so callers need not check)
    complete_outputs = False

    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec], source: str):
        self._inputs = inputs
        self._outputs = outputs
        self._source = source
        self._in_names = [s.name for s in inputs]
        self._out_names = [s.name for s in outputs]

    def input_specs(self) -> list[TensorSpec]:
        return list(self._inputs)

    def output_specs(self) -> list[TensorSpec]:
        return list(self._outputs)

    def _run_failed(self, e: Exception) -> BackendError:
        return BackendError(f"{self.runtime} failed running {self._source}: {e}")

    def _named(self, outs: Sequence) -> list[tuple[str, object]]:
        """(manifest name, runtime output) pairs, after checking the declared count."""
        if len(outs) != len(self._out_names):
            raise BackendError(
                f"{self._source}: {self.runtime} returned {len(outs)} outputs, "
                f"the manifest declares {len(self._out_names)} {self._out_names}"
            )
        return list(zip(self._out_names, outs, strict=True))


@dataclass(frozen=True)
class LoadRequest:
    """What a backend loads: the artifact file and the manifest's specs for it."""

    path: Path
    artifact: Artifact
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class RuntimeBackend:
    """The Backend Protocol's common part. A backend names itself in its class line
    (``class X(RuntimeBackend, name=..., formats=..., options=..., ...)``): ``modules`` is
    "any one of these" (alternative runtimes), ``requires`` "all of these". ``load`` checks
    the options type, then calls ``open``."""

    name: str
    formats: tuple[str, ...]
    options_type: type
    modules: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()

    def __init_subclass__(
        cls,
        *,
        name: str,
        formats: tuple[str, ...],
        options: type,
        modules: tuple[str, ...] = (),
        requires: tuple[str, ...] = (),
    ) -> None:
        super().__init_subclass__()
        cls.name, cls.formats, cls.options_type = name, formats, options
        cls.modules, cls.requires = modules, requires

    def available(self) -> str | None:
        for module in self.requires:
            if (reason := missing_runtime(self.name, [module])) is not None:
                return reason
        return missing_runtime(self.name, self.modules) if self.modules else None

    @contextlib.contextmanager
    def runtime_import(self) -> Iterator[None]:
        """Around the runtime's import: not installed -> BackendUnavailableError naming the
        extra; any other failure -> BackendError; its import-time warnings silenced."""
        if (reason := self.available()) is not None:
            raise BackendUnavailableError(reason)
        with self.failing(f"{self.name} runtime could not be imported"):
            yield

    @staticmethod
    @contextlib.contextmanager
    def failing(action: str) -> Iterator[None]:
        """Around a runtime call: a BackendError saying what we were doing (see wrap_errors),
        and the runtime's own deprecation warnings silenced."""
        with quiet_imports(), wrap_errors(action):
            yield

    def load(self, path, artifact, inputs, outputs, options=None) -> RuntimeSession:
        """The Backend Protocol's ``load`` (see ``_base.Backend``)."""
        opts = check_options(options, self.options_type, self.name)
        return self.open(LoadRequest(path, artifact, inputs, outputs), opts)

    def open(self, req: LoadRequest, opts) -> RuntimeSession:
        raise NotImplementedError


def to_torch(torch, x: np.ndarray):
    """A torch tensor sharing ``x``'s memory; from_numpy refuses read-only arrays (it warns)
    and needs C order, so only those are copied."""
    if not x.flags.writeable or not x.flags.c_contiguous:
        x = np.array(x, order="C", copy=True)
    return torch.from_numpy(x)


def _norm(name: str) -> str:
    # Runtimes decorate tensor names: TF adds "serving_default_" and ":0".
    name = name.split(":")[0]
    return name.removeprefix("serving_default_")


def match_names(
    runtime_names: Sequence[str], specs: Sequence[TensorSpec], what: str, source: str
) -> list[int]:
    """For each manifest spec, the index of the runtime tensor that carries it: by name when
    every name matches (exactly or after undoing runtime decoration), else by position."""
    if len(runtime_names) != len(specs):
        raise BackendError(
            f"{source}: the model has {len(runtime_names)} {what}s {list(runtime_names)}, "
            f"the manifest declares {len(specs)} {[s.name for s in specs]}"
        )
    for key in (lambda n: n, _norm):
        index = {key(n): i for i, n in enumerate(runtime_names)}
        if len(index) == len(runtime_names) and all(s.name in index for s in specs):
            return [index[s.name] for s in specs]
    return list(range(len(specs)))


def check_options(options: object, expected: type, backend: str) -> object:
    """``options`` or a default instance; a wrong options type is a ConfigError."""
    if options is None:
        return expected()
    if not isinstance(options, expected):
        raise ConfigError(
            f"backend {backend!r} takes {expected.__name__}, got {type(options).__name__}"
        )
    return options


def check_threads(backend: str, **values: int | None) -> None:
    """Thread counts are None (the runtime's default) or a positive int."""
    for name, v in values.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"{backend} option {name} must be a positive int or None, got {v!r}")


def missing_runtime(backend: str, modules: Sequence[str]) -> str | None:
    """None when one of ``modules`` is importable, else a reason naming the pip extra."""
    if any(module_available(m) for m in modules):
        return None
    return (
        f"backend {backend!r} needs one of {', '.join(modules)}; "
        f"pip install '{EXTRAS.get(backend, 'edgefleet[all]')}'"
    )


def require_runtime(backend: str, modules: Sequence[str]) -> None:
    reason = missing_runtime(backend, modules)
    if reason is not None:
        raise BackendUnavailableError(reason)


@contextlib.contextmanager
def quiet_imports() -> Iterator[None]:
    """Runtime packages emit deprecation warnings about their own internals at import time;
    they are not ours to fix and would fail a warnings-as-errors run of the user's app."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


@contextlib.contextmanager
def wrap_errors(action: str) -> Iterator[None]:
    """Turn any runtime exception into a BackendError saying what we were doing."""
    try:
        yield
    except (BackendError, BackendUnavailableError, ConfigError):
        raise
    except Exception as e:
        raise BackendError(f"{action}: {type(e).__name__}: {e}") from e
