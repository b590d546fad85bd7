"""Shape buckets: fixed-shape artifacts that together serve one logical artifact.

A format that cannot take a symbolic dimension (``.tflite``/``.pte`` exports) ships one
artifact per size the options named (e.g. ``sequence`` 32/64/128): each has
``Artifact.input_shapes`` and they share ``Artifact.bucket_group``. For a call the SDK runs
the smallest bucket that fits, pads every input along the padded symbols with
``Manifest.pad_values[name]`` (0 when unset: an attention mask pads with 0, so padded
positions are masked out), and slices every output axis that carries a padded symbol back
to the true length. A call longer than the biggest bucket is an :class:`InputError`.

The batch symbol (the leading dim shared by every input) is never padded here: a bucket
that fixes it runs the batch in chunks of that size, like ``Artifact.fixed_batch``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._errors import InputError, PackageError
from ._manifest import Artifact, Manifest, TensorSpec

__all__ = ["Bucket", "bucket_sizes", "group_of", "pad_to", "slice_outputs", "pick_bucket"]


@dataclass(frozen=True)
class Bucket:
    artifact: Artifact
    sizes: dict[str, int]  # padded symbol -> size in this bucket
    batch: int | None  # fixed batch of this bucket (chunked, not padded)


def _batch_symbol(inputs: list[TensorSpec]) -> str | None:
    firsts = {s.shape[0] if s.shape else None for s in inputs}
    first = firsts.pop() if len(firsts) == 1 else None
    return first if isinstance(first, str) else None


def bucket_sizes(artifact: Artifact, inputs: list[TensorSpec]) -> Bucket:
    """What ``artifact`` fixes: symbol -> size (consistent across inputs)."""
    sizes: dict[str, int] = {}
    batch_sym = _batch_symbol(inputs)
    for spec in inputs:
        shape = (artifact.input_shapes or {}).get(spec.name)
        if shape is None:
            continue
        if len(shape) != len(spec.shape):
            raise PackageError(
                f"artifact {artifact.name}: input_shapes[{spec.name!r}] has {len(shape)} dims, "
                f"the input is {spec.describe()}"
            )
        for want, fixed in zip(spec.shape, shape, strict=True):
            if isinstance(want, int) or not isinstance(fixed, int):
                continue
            if sizes.setdefault(want, fixed) != fixed:
                raise PackageError(
                    f"artifact {artifact.name}: symbol {want!r} is fixed to both "
                    f"{sizes[want]} and {fixed} in input_shapes"
                )
    batch = sizes.pop(batch_sym, None) if batch_sym else None
    return Bucket(artifact, sizes, batch or artifact.fixed_batch)


def group_of(manifest: Manifest, artifact: Artifact) -> list[Artifact]:
    """The buckets of ``artifact``'s group, smallest first (itself alone if ungrouped)."""
    if artifact.bucket_group is None:
        return [artifact]
    members = [a for a in manifest.artifacts if a.bucket_group == artifact.bucket_group]
    return sorted(members, key=lambda a: _volume(bucket_sizes(a, list(manifest.inputs))))


def _volume(b: Bucket) -> tuple[int, int]:
    v = 1
    for n in b.sizes.values():
        v *= n
    return (v, sum(b.sizes.values()))


def pick_bucket(buckets: list[Bucket], sizes: dict[str, int]) -> Bucket:
    """The smallest bucket (``buckets`` is sorted smallest first) that fits ``sizes``."""
    for b in buckets:
        if all(sizes.get(sym, 0) <= n for sym, n in b.sizes.items()):
            return b
    biggest = buckets[-1]
    over = {s: sizes[s] for s, n in biggest.sizes.items() if sizes.get(s, 0) > n}
    raise InputError(
        f"inputs have {', '.join(f'{s}={v}' for s, v in over.items())}, longer than the "
        f"largest shape bucket ({', '.join(f'{s}={n}' for s, n in biggest.sizes.items())}, "
        f"artifact {biggest.artifact.name}); truncate the inputs to fit"
    )


def pad_to(
    feed: dict[str, np.ndarray],
    inputs: list[TensorSpec],
    bucket: Bucket,
    sizes: dict[str, int],
    pad_values: dict[str, float],
) -> dict[str, np.ndarray]:
    """Pad each input along the bucket's symbols up to the bucket size."""
    out = {}
    for spec in inputs:
        a = feed[spec.name]
        widths = [
            (0, bucket.sizes[d] - sizes[d]) if isinstance(d, str) and d in bucket.sizes else (0, 0)
            for d in spec.shape
        ]
        if any(w for _, w in widths):
            a = np.pad(a, widths, constant_values=a.dtype.type(pad_values.get(spec.name, 0)))
        out[spec.name] = a
    return out


def slice_outputs(
    outputs: dict[str, np.ndarray],
    specs: list[TensorSpec],
    bucket: Bucket,
    sizes: dict[str, int],
) -> dict[str, np.ndarray]:
    """Cut every output axis that carries a padded symbol back to the true length."""
    for spec in specs:
        a = outputs.get(spec.name)
        if a is None or a.ndim != len(spec.shape):
            continue
        index = tuple(
            slice(0, sizes[d]) if isinstance(d, str) and d in bucket.sizes and d in sizes
            else slice(None)
            for d in spec.shape
        )  # fmt: skip
        if any(s.stop is not None for s in index):
            outputs[spec.name] = np.ascontiguousarray(a[index])
    return outputs
