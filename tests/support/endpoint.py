"""HTTP calls on the agent's local endpoint, with the stdlib only (as a device app makes
them): JSON, or binary tensor bodies (application/x-npy / x-npz)."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from collections.abc import Mapping

import numpy as np

__all__ = ["call", "npy_bytes", "post_inputs", "post_tensor"]


def call(url: str, body: object = None) -> tuple[int, object, dict]:
    """GET (no body) or POST (bytes as they are, anything else as JSON): status, the JSON
    answer, headers. An HTTP error status is returned, not raised."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read()), dict(e.headers)


def post_inputs(url: str, inputs: Mapping[str, np.ndarray]) -> tuple[int, dict, dict]:
    """``POST /v1/predict`` of name -> array as JSON nested lists."""
    return call(f"{url}/v1/predict", {"inputs": {k: v.tolist() for k, v in inputs.items()}})


def post_tensor(url: str, body: bytes, kind: str, accept: str = "") -> tuple[int, str, bytes]:
    """``POST /v1/predict`` of a binary body of content type ``kind``: status, the
    answer's content type, its bytes."""
    headers = {"Content-Type": kind} | ({"Accept": accept} if accept else {})
    req = urllib.request.Request(f"{url}/v1/predict", body, headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers["Content-Type"], e.read()


def npy_bytes(a: np.ndarray) -> bytes:
    """``a`` in NumPy's .npy format (object arrays too, to test that they are refused)."""
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()
