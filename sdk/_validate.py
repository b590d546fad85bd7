"""Input validation: names, dtypes, shapes (with symbolic dims) and NaN policy.

Dtype rule (never a silent cast across kinds): an input must have the spec's dtype. Two
conversions keep the value and are made: a float of another width to the spec's float
(float64 -> float32, what numpy gives by default), and an integer array to the spec's
integer type when every value fits (Python int lists arrive as int64). Anything else
(int ids to a float model, float to int, bool to int) is an :class:`InputError` naming
what was expected and what came.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter

import numpy as np

from ._errors import InputError
from ._manifest import TensorSpec

__all__ = ["InputValidator", "normalize_inputs", "batch_size"]


def _describe(a: np.ndarray) -> str:
    return f"{a.dtype}[{', '.join(str(d) for d in a.shape)}]"


def _convert(a: np.ndarray, dtype: np.dtype, spec: TensorSpec) -> np.ndarray:
    got, want = a.dtype.kind, dtype.kind
    if got == "f" and want == "f":
        return a.astype(dtype)
    if got in "iu" and want in "iu" and a.size:
        info = np.iinfo(dtype)
        lo, hi = int(a.min()), int(a.max())
        if info.min <= lo and hi <= info.max:
            return a.astype(dtype)
        raise InputError(
            f"input {spec.name!r}: expected dtype {spec.dtype}, got {a.dtype} with values "
            f"{lo}..{hi} outside {spec.dtype}'s range (expected {spec.describe()})"
        )
    raise InputError(
        f"input {spec.name!r}: expected dtype {spec.dtype}, got {a.dtype} "
        f"(expected {spec.describe()}, got {_describe(a)}); convert it explicitly, "
        "edgefleet never casts across kinds"
    )


_min = np.minimum.reduce


def _has_nan(a: np.ndarray) -> bool:
    if a.size <= 128:
        # A few dozen values (a tiny model, where the check's cost shows next to the
        # model's ~15 us): a Python sum is NaN iff a NaN is present or +inf meets -inf (the
        # exact check then decides). Read through a memoryview: no numpy call, whose ufunc
        # machinery evicts the runtime's hot code (~3 us measured next to a 15 us model).
        m = memoryview(a)
        if (m.format == "f" or m.format == "d") and m.c_contiguous:  # native byte order
            s = sum(m.cast("B").cast(m.format))
        else:
            s = sum(a.reshape(-1).tolist())
        return s != s and bool(np.isnan(a).any())
    # Otherwise min() (~25 ns per value less than the sum): it propagates NaN and
    # allocates nothing; infinities of both signs give -inf, huge values cannot overflow.
    m = _min(a.reshape(-1))
    return bool(m != m)


class _Check:
    """One input spec, precomputed for the per-call path."""

    __slots__ = ("name", "dtype", "ndim", "fixed_get", "fixed_want", "symbols", "nan", "spec")

    def __init__(self, spec: TensorSpec, check_nan: bool = True) -> None:
        self.name, self.spec = spec.name, spec
        self.dtype = np.dtype(spec.dtype)
        self.ndim = len(spec.shape)
        fixed = [(i, d) for i, d in enumerate(spec.shape) if isinstance(d, int)]
        # itemgetter compares every fixed dim in one C call (a tuple, or a scalar for one)
        self.fixed_get = itemgetter(*(i for i, _ in fixed)) if fixed else None
        want = tuple(d for _, d in fixed)
        self.fixed_want = want[0] if len(want) == 1 else want
        self.symbols = tuple((i, d) for i, d in enumerate(spec.shape) if isinstance(d, str))
        self.nan = check_nan and self.dtype.kind == "f" and not spec.allow_nan


class InputValidator:
    """Checks inputs against a model's specs. Built once per model: the per-call path is a
    loop over precomputed tuples (it is most of the SDK's overhead on tiny models)."""

    __slots__ = ("specs", "_checks", "_names", "_single", "_memo")

    def __init__(self, specs: list[TensorSpec], *, check_nan: bool = True) -> None:
        self.specs = list(specs)
        self._checks = [_Check(s, check_nan) for s in self.specs]
        self._names = frozenset(s.name for s in self.specs)
        self._single = self.specs[0].name if len(self.specs) == 1 else None
        # (shape, dtype, sizes) of the last valid single-array call: a device app calls
        # with one shape over and over, and an array of that exact shape and dtype passes
        # the same name/dtype/shape checks (the NaN check still runs on every call).
        self._memo: tuple | None = None

    def _given(self, inputs: object) -> Mapping[str, object]:
        if type(inputs) is np.ndarray and self._single is not None:
            return {self._single: inputs}
        if isinstance(inputs, Mapping):
            if inputs.keys() == self._names:
                return inputs
            given = set(inputs)
            unknown, missing = sorted(given - self._names), sorted(self._names - given)
            raise InputError(
                f"expected inputs {[s.describe() for s in self.specs]}; "
                + (f"unknown: {unknown} " if unknown else "")
                + (f"missing: {missing}" if missing else "")
            )
        if self._single is not None:
            return {self._single: inputs}
        raise InputError(
            "this model has several inputs; pass a dict with keys "
            f"{[s.name for s in self.specs]}, got a single {type(inputs).__name__}"
        )

    def __call__(self, inputs: object) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """Validated contiguous arrays of the spec dtypes, and the size bound to each
        symbolic dimension (the same symbol must have one size across all inputs)."""
        memo = self._memo
        if (
            memo is not None
            and type(inputs) is np.ndarray
            and inputs.shape == memo[0]
            and inputs.dtype is memo[1]
            and inputs.flags.c_contiguous
        ):
            c = self._checks[0]
            if c.nan and _has_nan(inputs):
                raise InputError(f"input {c.name!r} contains NaN, which this model forbids")
            return {c.name: inputs}, memo[2]
        given = self._given(inputs)
        out: dict[str, np.ndarray] = {}
        sizes: dict[str, int] = {}
        owner: dict[str, str] = {}
        for c in self._checks:
            name = c.name
            a = given[name]
            if type(a) is not np.ndarray:
                try:
                    a = np.asarray(a)
                except (TypeError, ValueError) as e:
                    raise InputError(f"input {name!r}: cannot convert to an array: {e}") from e
            if a.dtype is not c.dtype and a.dtype != c.dtype:
                a = _convert(a, c.dtype, c.spec)
            shape = a.shape
            if len(shape) != c.ndim:
                raise InputError(
                    f"input {name!r}: expected {c.ndim} dimensions "
                    f"{c.spec.describe()}, got {_describe(a)}"
                )
            if c.fixed_get is not None and c.fixed_get(shape) != c.fixed_want:
                axis, want = next(
                    (i, d)
                    for i, d in enumerate(c.spec.shape)
                    if isinstance(d, int) and d != shape[i]
                )
                raise InputError(
                    f"input {name!r}: dimension {axis} must be {want}; "
                    f"expected {c.spec.describe()}, got {_describe(a)}"
                )
            for axis, sym in c.symbols:
                got = shape[axis]
                seen = sizes.setdefault(sym, got)
                if seen != got:
                    raise InputError(
                        f"input {name!r}: dimension {sym!r} is {got} but {owner[sym]!r} "
                        f"has {sym}={seen} (expected {c.spec.describe()}, got {_describe(a)})"
                    )
                owner.setdefault(sym, name)
            if not a.size:
                raise InputError(f"input {name!r} is empty: {_describe(a)}")
            if c.nan and _has_nan(a):
                raise InputError(f"input {name!r} contains NaN, which this model forbids")
            out[name] = a if a.flags.c_contiguous else np.ascontiguousarray(a)
        if self._single is not None and type(inputs) is np.ndarray and out[self._single] is inputs:
            self._memo = (inputs.shape, inputs.dtype, sizes)
        return out, sizes


def normalize_inputs(
    specs: list[TensorSpec], dtypes: list[np.dtype], inputs: object
) -> dict[str, np.ndarray]:
    """Check ``inputs`` (one array, or a mapping of name -> array) against ``specs``
    (``dtypes`` is kept for callers of the old signature; the specs carry them)."""
    return InputValidator(specs)(inputs)[0]


def batch_size(specs: list[TensorSpec], inputs: Mapping[str, np.ndarray]) -> int | None:
    """The size of the leading symbolic dimension shared by all inputs, if there is one."""
    sizes = set()
    for s in specs:
        if not s.shape or isinstance(s.shape[0], int):
            return None
        sizes.add(inputs[s.name].shape[0])
    return sizes.pop() if len(sizes) == 1 else None
