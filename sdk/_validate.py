"""Input validation: names, dtypes, shapes (with symbolic dims) and NaN policy."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._errors import InputError
from ._manifest import TensorSpec

__all__ = ["normalize_inputs", "batch_size"]


def _describe(a: np.ndarray) -> str:
    return f"{a.dtype}[{', '.join(str(d) for d in a.shape)}]"


def normalize_inputs(
    specs: list[TensorSpec], dtypes: list[np.dtype], inputs: object
) -> dict[str, np.ndarray]:
    """Check ``inputs`` (one array, or a mapping of name -> array) against ``specs``.

    Returns contiguous arrays of the spec dtype. Same-kind casts (float64 -> float32) are
    applied; anything else is an :class:`InputError` that says what was expected.
    """
    if isinstance(inputs, Mapping):
        given = dict(inputs)
    elif len(specs) == 1:
        given = {specs[0].name: inputs}
    else:
        raise InputError(
            "this model has several inputs; pass a dict with keys "
            f"{[s.name for s in specs]}, got a single {type(inputs).__name__}"
        )
    expected = {s.name for s in specs}
    unknown = sorted(set(given) - expected)
    missing = sorted(expected - set(given))
    if unknown or missing:
        raise InputError(
            f"expected inputs {[s.describe() for s in specs]}; "
            + (f"unknown: {unknown} " if unknown else "")
            + (f"missing: {missing}" if missing else "")
        )
    out: dict[str, np.ndarray] = {}
    symbols: dict[str, tuple[int, str]] = {}
    for spec, dtype in zip(specs, dtypes, strict=True):
        value = given[spec.name]
        try:
            a = np.asarray(value)
        except (TypeError, ValueError) as e:
            raise InputError(f"input {spec.name!r}: cannot convert to an array: {e}") from e
        if a.dtype != dtype:
            if a.dtype.kind not in "biuf" or not np.can_cast(a.dtype, dtype, "same_kind"):
                raise InputError(
                    f"input {spec.name!r}: expected dtype {spec.dtype}, got {a.dtype} "
                    f"(expected {spec.describe()}, got {_describe(a)})"
                )
            a = a.astype(dtype)
        if a.ndim != len(spec.shape):
            raise InputError(
                f"input {spec.name!r}: expected {len(spec.shape)} dimensions "
                f"{spec.describe()}, got {_describe(a)}"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, a.shape, strict=True)):
            if isinstance(want, int):
                if want != got:
                    raise InputError(
                        f"input {spec.name!r}: dimension {axis} must be {want}; "
                        f"expected {spec.describe()}, got {_describe(a)}"
                    )
            else:
                seen = symbols.setdefault(want, (got, spec.name))
                if seen[0] != got:
                    raise InputError(
                        f"input {spec.name!r}: dimension {want!r} is {got} but {seen[1]!r} "
                        f"has {want}={seen[0]}"
                    )
        if a.size == 0:
            raise InputError(f"input {spec.name!r} is empty: {_describe(a)}")
        # min() propagates NaN in one pass without allocating a mask
        if a.dtype.kind == "f" and not spec.allow_nan and np.isnan(a.min()):
            raise InputError(f"input {spec.name!r} contains NaN, which this model forbids")
        out[spec.name] = np.ascontiguousarray(a)
    return out


def batch_size(specs: list[TensorSpec], inputs: Mapping[str, np.ndarray]) -> int | None:
    """The size of the leading symbolic dimension shared by all inputs, if there is one."""
    sizes = set()
    for s in specs:
        if not s.shape or isinstance(s.shape[0], int):
            return None
        sizes.add(inputs[s.name].shape[0])
    return sizes.pop() if len(sizes) == 1 else None
