"""Runtime backends behind one Protocol, chosen through a lazy registry. Generation
runtimes (KV-cache sessions, e.g. ``_ort_genai``) are listed in ``edgefleet.sdk._gen_load``."""

from ._base import (
    BACKENDS,
    EXTRAS,
    Backend,
    BackendOptions,
    ExecuTorchOptions,
    LiteRTOptions,
    MockOptions,
    OnnxRuntimeOptions,
    Session,
    TorchOptions,
    backend_names,
    get_backend,
    module_available,
    register_backend,
)

__all__ = [
    "BACKENDS",
    "EXTRAS",
    "Backend",
    "BackendOptions",
    "ExecuTorchOptions",
    "LiteRTOptions",
    "MockOptions",
    "OnnxRuntimeOptions",
    "Session",
    "TorchOptions",
    "backend_names",
    "get_backend",
    "module_available",
    "register_backend",
]
