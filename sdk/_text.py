"""Raw text -> model inputs for packages that declare ``Preprocessing.text``.

Tokenizes with the ``tokenizers`` library (Rust, torch-free; the ``edgefleet[text]`` extra)
from the ``tokenizer.json`` carried in the package, which must be listed (and so hashed and
signed) in ``Manifest.files``. A batch is padded to its longest text with ``pad_token_id``
(attention mask 0 there) and truncated at ``max_length``.
"""

from __future__ import annotations

import logging

import numpy as np

from ._errors import BackendUnavailableError, ConfigError, InputError, PackageError
from ._manifest import TensorSpec, TextPreprocessing

__all__ = ["load_tokenizer", "tokenize"]

log = logging.getLogger(__name__)

# tokenizer field names (as in transformers) -> attribute of a tokenizers.Encoding
_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


def load_tokenizer(package, spec: TextPreprocessing):
    """The package's tokenizer, configured for ``spec`` (padding, truncation)."""
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        raise BackendUnavailableError(
            "predict_text needs the tokenizers library: pip install 'edgefleet[text]'"
        ) from e
    listed = {f.path for f in package.manifest.files}
    if spec.tokenizer not in listed:
        raise PackageError(
            f"{package.source}: tokenizer {spec.tokenizer} is not among the package files "
            f"{sorted(listed)}, so it is not covered by the signature; refused"
        )
    bad = sorted(set(spec.inputs) - set(_FIELDS))
    if bad:
        raise ConfigError(f"unknown tokenizer fields {bad}; expected some of {sorted(_FIELDS)}")
    try:
        tok = Tokenizer.from_file(str(package.root / spec.tokenizer))
    except Exception as e:  # the Rust library raises its own Exception type
        raise PackageError(f"{package.source}: cannot read {spec.tokenizer}: {e}") from e
    tok.enable_padding(pad_id=spec.pad_token_id)
    if spec.max_length is not None:
        tok.enable_truncation(spec.max_length)
    else:
        tok.no_truncation()
    return tok


def tokenize(
    tok, spec: TextPreprocessing, inputs: list[TensorSpec], texts: str | list[str]
) -> dict[str, np.ndarray]:
    """Model inputs (named as the manifest names them, in its dtypes) for ``texts``."""
    if isinstance(texts, str):
        texts = [texts]
    if (
        not isinstance(texts, list | tuple)
        or not texts
        or not all(isinstance(t, str) for t in texts)
    ):
        raise InputError(f"predict_text expects a non-empty list of strings, got {texts!r:.80}")
    dtypes = {s.name: np.dtype(s.dtype) for s in inputs}
    missing = sorted(set(dtypes) - set(spec.inputs.values()))
    if missing:
        raise ConfigError(
            f"the tokenizer gives {sorted(spec.inputs.values())}, the model also needs {missing}"
        )
    encodings = tok.encode_batch(list(texts))
    feed = {}
    for field, name in spec.inputs.items():
        rows = [getattr(e, _FIELDS[field]) for e in encodings]
        # token ids are integers by construction: the model's integer dtype is exact here
        feed[name] = np.asarray(rows, dtype=dtypes[name])
    return feed
