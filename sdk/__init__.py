"""edgefleet SDK: load signed model packages and run them on the best runtime available.

>>> import edgefleet.sdk as ef
>>> model = ef.load("digits.efpkg")
>>> model.predict(x)["logits"]
"""

# Names resolve lazily (PEP 562): `import edgefleet.sdk.protocol` or a device app that
# only needs load() does not pay for the package builder, pydantic schemas it never uses,
# or cryptography until a signature is checked.
from typing import TYPE_CHECKING

from ._lazy import lazy_exports

_LAZY = {
    "AdaptiveModel": "._adaptive",
    "Artifact": "._manifest",
    "Backoff": "._backoff",
    "Closing": "._closing",
    "GenerationSpec": "._manifest",
    "Chunk": "._gen_types",
    "GenerateOptions": "._gen_types",
    "GenerationMetrics": "._gen_types",
    "GenerationSnapshot": "._gen_types",
    "GenerationStream": "._generate",
    "GenerativeInfo": "._generate",
    "GenerativeModel": "._generate",
    "PrefixCache": "._prefix_cache",
    "PrefixCacheStats": "._prefix_cache",
    "SamplingParams": "._sampling",
    "TextCodec": "._chat",
    "Usage": "._gen_types",
    "TextPreprocessing": "._manifest",
    "RejectedArtifact": "._manifest",
    "MetricSpec": "._manifest",
    "FileEntry": "._manifest",
    "ArtifactMetrics": "._manifest",
    "BackendError": "._errors",
    "BackendUnavailableError": "._errors",
    "CacheStats": "._cache",
    "ConfigError": "._errors",
    "EdgefleetError": "._errors",
    "EnergyMeter": "._energy",
    "EnergyReading": "._energy",
    "ExportFailure": "._manifest",
    "InputError": "._errors",
    "LoadOptions": "._load",
    "MANIFEST_SCHEMA_VERSION": "._manifest",
    "Manifest": "._manifest",
    "Metrics": "._metrics",
    "MetricsSnapshot": "._metrics",
    "Model": "._model",
    "ModelCache": "._pool",
    "ModelInfo": "._model",
    "Package": "._package",
    "PackageBuilder": "._builder",
    "PackageError": "._errors",
    "PersistentCache": "._cache",
    "Preprocessing": "._manifest",
    "RESOURCE_LEVELS": "._resources",
    "ResourcePolicy": "._resources",
    "ResourceSample": "._resources",
    "ResourceTracker": "._resources",
    "ResultCache": "._cache",
    "Signature": "._manifest",
    "SignatureError": "._errors",
    "SmokeResult": "._model",
    "TensorSpec": "._manifest",
    "TrustPolicy": "._package",
    "canonical_json": "._signing",
    "constrained_options": "._adaptive",
    "extract_archive": "._package",
    "find_power_sources": "._energy",
    "generate_keypair": "._signing",
    "input_digest": "._cache",
    "key_id": "._signing",
    "load": "._load",
    "load_private_key": "._signing",
    "load_public_key": "._signing",
    "load_public_keys": "._signing",
    "open_package": "._package",
    "read_resources": "._resources",
    "sha256_file": "._package",
    "sign_bytes": "._signing",
    "sign_manifest": "._package",
    "verify_bytes": "._signing",
    "verify_manifest": "._package",
    "write_archive": "._builder",
    "write_package": "._builder",
    "PARTIAL_NAME": "._partial",
    "PackageFile": "._partial",
    "files_for": "._partial",
    "write_partial": "._partial",
    "select_artifacts": "._select",
    "gate_status": "._select",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from ._adaptive import AdaptiveModel, constrained_options
    from ._backoff import Backoff
    from ._builder import PackageBuilder, write_archive, write_package
    from ._cache import CacheStats, PersistentCache, ResultCache, input_digest
    from ._chat import TextCodec
    from ._closing import Closing
    from ._energy import EnergyMeter, EnergyReading, find_power_sources
    from ._errors import (
        BackendError,
        BackendUnavailableError,
        ConfigError,
        EdgefleetError,
        InputError,
        PackageError,
        SignatureError,
    )
    from ._gen_types import (
        Chunk,
        GenerateOptions,
        GenerationMetrics,
        GenerationSnapshot,
        Usage,
    )
    from ._generate import GenerationStream, GenerativeInfo, GenerativeModel
    from ._load import LoadOptions, load
    from ._manifest import (
        MANIFEST_SCHEMA_VERSION,
        Artifact,
        ArtifactMetrics,
        ExportFailure,
        FileEntry,
        GenerationSpec,
        Manifest,
        MetricSpec,
        Preprocessing,
        RejectedArtifact,
        Signature,
        TensorSpec,
        TextPreprocessing,
    )
    from ._metrics import Metrics, MetricsSnapshot
    from ._model import Model, ModelInfo, SmokeResult
    from ._package import (
        Package,
        TrustPolicy,
        extract_archive,
        open_package,
        sha256_file,
        sign_manifest,
        verify_manifest,
    )
    from ._partial import PARTIAL_NAME, PackageFile, files_for, write_partial
    from ._pool import ModelCache
    from ._prefix_cache import PrefixCache, PrefixCacheStats
    from ._resources import (
        RESOURCE_LEVELS,
        ResourcePolicy,
        ResourceSample,
        ResourceTracker,
        read_resources,
    )
    from ._sampling import SamplingParams
    from ._select import gate_status, select_artifacts
    from ._signing import (
        canonical_json,
        generate_keypair,
        key_id,
        load_private_key,
        load_public_key,
        load_public_keys,
        sign_bytes,
        verify_bytes,
    )

__all__ = [
    "AdaptiveModel",
    "MANIFEST_SCHEMA_VERSION",
    "Artifact",
    "ArtifactMetrics",
    "Backoff",
    "Closing",
    "BackendError",
    "BackendUnavailableError",
    "ConfigError",
    "EdgefleetError",
    "EnergyMeter",
    "EnergyReading",
    "CacheStats",
    "ExportFailure",
    "FileEntry",
    "GenerationSpec",
    "Chunk",
    "GenerateOptions",
    "GenerationMetrics",
    "GenerationSnapshot",
    "GenerationStream",
    "GenerativeInfo",
    "GenerativeModel",
    "PrefixCache",
    "PrefixCacheStats",
    "SamplingParams",
    "TextCodec",
    "Usage",
    "MetricSpec",
    "RejectedArtifact",
    "TextPreprocessing",
    "LoadOptions",
    "Metrics",
    "MetricsSnapshot",
    "Model",
    "ModelCache",
    "ModelInfo",
    "PersistentCache",
    "RESOURCE_LEVELS",
    "ResourcePolicy",
    "ResourceSample",
    "ResourceTracker",
    "ResultCache",
    "SmokeResult",
    "input_digest",
    "load",
    "InputError",
    "Manifest",
    "Package",
    "PackageBuilder",
    "PackageError",
    "Preprocessing",
    "Signature",
    "SignatureError",
    "TensorSpec",
    "TrustPolicy",
    "canonical_json",
    "constrained_options",
    "extract_archive",
    "find_power_sources",
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "load_public_keys",
    "open_package",
    "read_resources",
    "sha256_file",
    "sign_bytes",
    "sign_manifest",
    "verify_bytes",
    "verify_manifest",
    "write_archive",
    "write_package",
    "PARTIAL_NAME",
    "PackageFile",
    "files_for",
    "write_partial",
    "select_artifacts",
    "gate_status",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
