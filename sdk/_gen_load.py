"""Loading a generative (``task = "text-generation"``) package: pick the generation runtime
and artifact, open the tokenizer and chat template, return a :class:`GenerativeModel`.

Generation runtimes have their own small registry (import strings, imported on demand):
their sessions hold a KV cache and are driven token by token, unlike ``Session.run``.
"""

from __future__ import annotations

import importlib
import logging

from ._chat import TextCodec
from ._errors import (
    BackendError,
    BackendUnavailableError,
    ConfigError,
    EdgefleetError,
    PackageError,
)
from ._gen_types import GenerateOptions
from ._generate import GenerativeInfo, GenerativeModel
from ._manifest import Artifact, Manifest
from ._select import profile_runtimes, runnable

__all__ = [
    "GEN_BACKENDS",
    "GEN_FAMILY",
    "GEN_PRECISION_ORDER",
    "generation_formats",
    "load_generative",
]

log = logging.getLogger(__name__)

GEN_BACKENDS: dict[str, str] = {
    # First = preferred when no backend, artifact or profile asks otherwise: GenAI runs
    # without torch; ExecuTorch's Python runtime imports it (~6 s, ~390 MB).
    "ort-genai": "edgefleet.sdk.backends._ort_genai:OrtGenAIBackend",
    "executorch": "edgefleet.sdk.backends._executorch_gen:ExecuTorchGenBackend",
}
# A profile names runtimes (``onnxruntime``...); the generation runtime built on each.
GEN_FAMILY = {"onnxruntime": "ort-genai", "executorch": "executorch"}
# Weight-only int4 decodes fastest on CPUs; the accuracy gate already vetted each artifact.
GEN_PRECISION_ORDER = ("int4", "int8", "fp16", "fp32")


def _backend(name: str):
    target = GEN_BACKENDS.get(name)
    if target is None:
        raise BackendUnavailableError(
            f"unknown generation backend {name!r}; expected one of {sorted(GEN_BACKENDS)}"
        )
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)()


def generation_formats(runtime: str) -> tuple[str, ...]:
    """Artifact formats the generation runtime of ``runtime``'s family runs ("" if none)."""
    name = GEN_FAMILY.get(runtime)
    return tuple(_backend(name).formats) if name else ()


def _preference(profile) -> list[str]:
    """Generation runtimes in the profile's runtime order, then the remaining ones."""
    named = [GEN_FAMILY[r] for r, _ in profile_runtimes(profile) if r in GEN_FAMILY]
    return list(dict.fromkeys([*named, *GEN_BACKENDS]))


def _choose(
    m: Manifest, backend: str | None, artifact: str | None, precision: str | None, profile
) -> tuple[object, Artifact]:
    cands = list(m.artifacts)
    if artifact is not None:
        cands = [a for a in cands if a.name == artifact]
        if not cands:
            raise ConfigError(
                f"package has no artifact {artifact!r}; it has {[a.name for a in m.artifacts]}"
            )
    pname = getattr(profile, "name", None)
    if pname is not None and artifact is None:
        cands = [a for a in cands if not a.targets or pname in a.targets] or cands
    order = GEN_PRECISION_ORDER if precision is None else (precision, *GEN_PRECISION_ORDER)
    reasons = []
    for name in [GEN_FAMILY.get(backend, backend)] if backend else _preference(profile):
        b = _backend(name)
        usable = runnable(name, b, cands, reasons)
        if not usable:
            continue
        rank: dict[str, int] = {}
        for i, p in enumerate(order):
            rank.setdefault(p, i)
        return b, min(usable, key=lambda a: rank.get(a.precision, len(order)))
    formats = sorted({a.format for a in cands})
    raise BackendUnavailableError(
        f"no installed generation runtime can run {m.name} (artifact formats {formats}): "
        + "; ".join(reasons)
    )


def load_generative(pkg, backend, options, profile, owns: bool) -> GenerativeModel:
    """``options``: the :class:`LoadOptions` of :func:`load` (``generation`` holds the
    generation options)."""
    m: Manifest = pkg.manifest
    spec = m.generation
    if spec is None:
        raise PackageError(f"{m.name}: a text-generation package needs a 'generation' section")
    gopts = options.generation or GenerateOptions()
    b, art = _choose(m, backend, options.artifact, options.precision, profile)
    try:
        session = b.load(pkg.artifact_path(art), b.options_type(gopts.intra_op_threads))
    except EdgefleetError:
        raise
    except Exception as e:
        raise BackendError(f"{b.name} could not load {art.name} of {m.name}: {e}") from e
    template = None
    if spec.chat_template:
        template = (pkg.root / spec.chat_template).read_text()
    codec = TextCodec(pkg.root / spec.tokenizer, bos_token_id=spec.bos_token_id,
                      chat_template=template)  # fmt: skip
    info = GenerativeInfo(
        name=m.name,
        version=m.version,
        digest=pkg.digest,
        backend=b.name,
        artifact=art,
        manifest=m,
        generation=spec,
        signature_state=pkg.signature_state,
    )
    log.info("loaded generative %s %s (%s) on %s", m.name, m.version, art.name, b.name)
    return GenerativeModel(pkg, session, codec, info, gopts, options.cache, owns)
