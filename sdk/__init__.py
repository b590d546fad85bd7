"""edgefleet SDK: load signed model packages and run them on the best runtime available.

>>> import edgefleet.sdk as ef
>>> model = ef.load("digits.efpkg")
>>> model.predict(x)["logits"]
"""

from ._builder import PackageBuilder, write_archive
from ._cache import CacheStats, PersistentCache, ResultCache, input_digest
from ._errors import (
    BackendError,
    BackendUnavailableError,
    ConfigError,
    EdgefleetError,
    InputError,
    PackageError,
    SignatureError,
)
from ._manifest import (
    MANIFEST_SCHEMA_VERSION,
    Artifact,
    ArtifactMetrics,
    ExportFailure,
    Manifest,
    Preprocessing,
    Signature,
    TensorSpec,
)
from ._metrics import Metrics, MetricsSnapshot
from ._model import LoadOptions, Model, ModelInfo, SmokeResult, load
from ._package import (
    Package,
    TrustPolicy,
    extract_archive,
    open_package,
    sha256_file,
    sign_manifest,
    verify_manifest,
)
from ._pool import ModelCache
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
    "MANIFEST_SCHEMA_VERSION",
    "Artifact",
    "ArtifactMetrics",
    "BackendError",
    "BackendUnavailableError",
    "ConfigError",
    "EdgefleetError",
    "CacheStats",
    "ExportFailure",
    "LoadOptions",
    "Metrics",
    "MetricsSnapshot",
    "Model",
    "ModelCache",
    "ModelInfo",
    "PersistentCache",
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
    "extract_archive",
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "load_public_keys",
    "open_package",
    "sha256_file",
    "sign_bytes",
    "sign_manifest",
    "verify_bytes",
    "verify_manifest",
    "write_archive",
]
