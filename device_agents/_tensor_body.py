"""Binary tensor bodies for the local endpoint's ``/v1/predict``.

A 3x224x224 float32 image is 3 MB of JSON that takes ~60-120 ms of Python to parse (most
of a request's cost, and it holds the GIL); as NumPy's ``.npy`` format it is 602 KB read
as a view of the request buffer (no parse, no copy). Formats (``Content-Type``, and
``Accept`` for the answer):

- ``application/x-npy``: one array as ``numpy.save`` writes it, for a single-input model.
- ``application/x-npz``: ``numpy.savez`` (or ``savez_compressed``), one entry per input name;
  the answer is one entry per output name.

Object arrays (pickles) are refused: a body is data, never code.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING

from edgefleet.sdk import InputError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["NPY", "NPZ", "TENSOR_TYPES", "answer_type", "decode_tensors", "encode_tensors"]

NPY = "application/x-npy"
NPZ = "application/x-npz"
TENSOR_TYPES = (NPY, NPZ)
# numpy's own limit for a header it reads without allow_pickle
_MAX_HEADER = 10_000


def _npy_view(buf: bytearray) -> np.ndarray:
    """The array in a .npy body, as a view of ``buf`` (C order) or a copy (Fortran order)."""
    import numpy as np
    from numpy.lib import format as npy

    head = io.BytesIO(bytes(buf[: _MAX_HEADER + 16]))
    try:
        version = npy.read_magic(head)
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran, dtype = read(head, max_header_size=_MAX_HEADER)
    except ValueError as e:
        raise InputError(f"expected a .npy body (numpy.save) for {NPY}: {e}") from None
    if dtype.hasobject:
        raise InputError(f"expected a numeric .npy array, got dtype {dtype} (object arrays "
                         "are pickles and are refused)")  # fmt: skip
    count = 1
    for d in shape:
        count *= d
    offset, want = head.tell(), head.tell() + count * dtype.itemsize
    if len(buf) != want:
        raise InputError(f"a .npy body of {dtype}{list(shape)} is {want} bytes, "
                         f"got {len(buf)}")  # fmt: skip
    a = np.frombuffer(buf, dtype, count, offset)
    if fortran:
        return np.ascontiguousarray(a.reshape(shape[::-1]).T)
    return a.reshape(shape)


def decode_tensors(kind: str, body: bytearray, input_names: list[str]) -> dict[str, np.ndarray]:
    """Input name -> array from a binary body of content type ``kind``."""
    if kind == NPY:
        if len(input_names) != 1:
            raise InputError(f"{NPY} carries one array but the model takes "
                             f"{len(input_names)} inputs {input_names}: send {NPZ}")  # fmt: skip
        return {input_names[0]: _npy_view(body)}
    import numpy as np

    try:
        if not body.startswith(b"PK"):  # np.load would read a .npy or a pickle here
            raise ValueError(f"not a zip archive (starts with {bytes(body[:8])!r})")
        with np.load(io.BytesIO(body), allow_pickle=False) as z:
            feed = {name: z[name] for name in z.files}
        odd = [n for n, v in feed.items() if not isinstance(v, np.ndarray)]
        if odd:
            raise ValueError(f"entries {odd} are not .npy arrays")
        return feed
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"expected a .npz body (numpy.savez, one entry per input "
                         f"{input_names}) for {NPZ}: {e}") from None  # fmt: skip


def answer_type(accept: str, outputs: int) -> str | None:
    """The binary type an ``Accept`` header asks for (None: JSON)."""
    if NPZ in accept:
        return NPZ
    if NPY in accept:
        return NPY if outputs == 1 else NPZ
    return None


def encode_tensors(kind: str, outputs: Mapping[str, np.ndarray]) -> bytes:
    """A binary answer: .npy when ``kind`` is NPY and there is one output, else .npz
    (name -> array); :func:`answer_type` says which."""
    import numpy as np
    from numpy.lib import format as npy

    buf = io.BytesIO()
    if kind == NPY and len(outputs) == 1:
        npy.write_array(buf, np.asarray(next(iter(outputs.values()))), allow_pickle=False)
        return buf.getvalue()
    with zipfile.ZipFile(buf, "w") as zf:  # what numpy.savez writes, without its kwarg names
        for name, a in outputs.items():
            with zf.open(f"{name}.npy", "w") as f:
                npy.write_array(f, np.asarray(a), allow_pickle=False)
    return buf.getvalue()
