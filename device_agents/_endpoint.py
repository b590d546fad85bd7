"""A small local inference endpoint for device apps in other languages (stdlib HTTP).

Binds to localhost (``host:port``) or a Unix socket (``unix:/run/edgefleet.sock``).

    GET  /v1/health    {"status": "ok", "model": "digits@1.1.0"}
    GET  /v1/model     name, version, backend, input/output specs
    GET  /v1/metrics   the SDK metrics snapshot of the served model
    POST /v1/predict   {"inputs": {"input": [[...]]}} -> {"outputs": {"logits": [[...]]}}
                       or a binary body: Content-Type application/x-npy (one input) or
                       application/x-npz (name -> array); ``Accept`` one of them for a
                       binary answer (see ``_tensor_body``)
    POST /v1/chat/completions, /v1/completions   generative packages (OpenAI-compatible
                       subset, SSE streaming; see ``_gen_routes``)

Client mistakes get a 4xx with the reason; only a runtime failure is a 5xx. A shed request
(overload or resource pressure) gets 429 with Retry-After and was not run.
"""

from __future__ import annotations

import json
import logging
import os
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from edgefleet.sdk import EdgefleetError, InputError

from ._active import ActiveModel, NoActiveModelError
from ._batcher import BatchingOptions, MicroBatcher, Overloaded
from ._gen_routes import GEN_PATHS, handle_generation, is_generative, model_description
from ._tensor_body import TENSOR_TYPES, answer_type, decode_tensors, encode_tensors

__all__ = ["LocalEndpoint", "MAX_BODY"]

log = logging.getLogger(__name__)
MAX_BODY = 16 * 1024 * 1024


def _json_values(a: np.ndarray) -> list:
    """Nested lists for a JSON answer. JSON has no NaN/Infinity (a strict parser refuses
    Python's tokens): a non-finite output value is null; .npy answers keep it."""
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        return np.where(np.isfinite(a), a, None).tolist()
    return a.tolist()


class _Handler(BaseHTTPRequestHandler):
    server_version = "edgefleet-agent"
    # HTTP/1.1 keep-alive: a client's requests reuse one connection (and one handler
    # thread) instead of a TCP handshake and a new thread each.
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle kept-alive connection is closed after this many seconds
    endpoint: LocalEndpoint

    def log_message(self, fmt: str, *args: object) -> None:
        log.debug("local endpoint: " + fmt, *args)

    def address_string(self) -> str:  # AF_UNIX peers have no (host, port)
        return str(self.client_address or "unix")

    def _send(self, code: int, body: dict, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(code, "application/json", json.dumps(body).encode(), headers)

    def _send_bytes(
        self, code: int, kind: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        if self.endpoint.stopping:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stopping(self) -> bool:
        """A request on a kept-alive connection after stop(): 503, never a model reload."""
        if self.endpoint.stopping:
            self.close_connection = True
            self._send(503, {"error": "the endpoint is stopping"})
        return self.endpoint.stopping

    def do_GET(self) -> None:
        if self._stopping():
            return
        active = self.endpoint.active
        try:
            if self.path == "/v1/health":
                m = active.refresh()
                label = f"{m.info.name}@{m.info.version}" if m else None
                self._send(200 if m else 503, {"status": "ok" if m else "no model", "model": label})
            elif self.path == "/v1/model":
                self._send(200, model_description(active.model))
            elif self.path == "/v1/metrics":
                m = active.model
                self._send(200, m.metrics.snapshot().to_dict())
            else:
                self._send(404, {"error": f"unknown path {self.path}"})
        except NoActiveModelError as e:
            self._send(503, {"error": str(e)})

    def do_POST(self) -> None:
        if self._stopping():
            return
        if self.path != "/v1/predict" and self.path not in GEN_PATHS:
            paths = ", ".join(("/v1/predict", *GEN_PATHS))
            self.close_connection = True  # its body was not read
            self._send(404, {"error": f"unknown path {self.path}; POST one of {paths}"})
            return
        kind = self.headers.get_content_type()
        if kind in TENSOR_TYPES and self.path == "/v1/predict":
            tensors = self._body(f"a {kind} body")
            if tensors is not None:
                self._predict(kind, tensors)
            return
        raw = self._body("a JSON body")
        if raw is None:
            return
        try:
            body = json.loads(raw)
        except ValueError as e:
            self._send(400, {"error": f"expected a JSON body (or {' or '.join(TENSOR_TYPES)} "
                                      f"on /v1/predict): {e}"})  # fmt: skip
            return
        if self.path in GEN_PATHS:
            self._generate(body)
            return
        try:
            inputs = body["inputs"]
            if not isinstance(inputs, dict):
                raise TypeError("inputs must be an object of name -> nested list")
        except (KeyError, TypeError) as e:
            self._send(400, {"error": f'expected {{"inputs": {{name: nested list}}}}: {e}'})
            return
        self._predict(None, inputs)

    def _body(self, what: str) -> bytearray | None:
        """The request body in a buffer of its own (a binary tensor is a view of it), or
        None after answering 400."""
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            self.close_connection = True  # where this body ends is unknown or not read
            self._send(400, {"error": f"expected {what} of 1..{MAX_BODY} bytes (Content-Length), "
                                      f"got {self.headers.get('Content-Length')}"})  # fmt: skip
            return None
        buf = bytearray(length)
        view, got = memoryview(buf), 0
        while got < length:
            n = self.rfile.readinto(view[got:])
            if not n:
                self.close_connection = True
                self._send(400, {"error": f"expected {length} bytes (Content-Length), "
                                          f"the body ended after {got}"})  # fmt: skip
                return None
            got += n
        return buf

    def _predict(self, kind: str | None, body) -> None:
        """``kind`` None: ``body`` is the JSON inputs object; else a binary body."""
        ep = self.endpoint
        try:
            model = ep.active.model
            if is_generative(model):
                raise InputError(f"{model.info.name} is generative; POST one of {GEN_PATHS}")
            specs = model.info.inputs
            if kind is None:
                feed = _feed(specs, body)
            else:
                feed = decode_tensors(kind, body, [s.name for s in specs])
            out = ep.run(model, feed)
        except NoActiveModelError as e:
            self._send(503, {"error": str(e)})
            return
        except Overloaded as e:  # shed, not queued: nothing was accepted
            retry = str(max(1, round(e.retry_after_s)))
            self._send(429, {"error": f"overloaded: {e}"}, {"Retry-After": retry})
            return
        except (InputError, ValueError, TypeError) as e:
            self._send(400, {"error": str(e)})
            return
        except EdgefleetError as e:
            ep.count(error=True)
            self._send(500, {"error": f"model failed: {e}"})
            return
        ep.count(error=False)
        answer = answer_type(self.headers.get("Accept", ""), len(out))
        if answer is None:
            self._send(200, {"outputs": {k: _json_values(v) for k, v in out.items()}})
        else:
            self._send_bytes(200, answer, encode_tensors(answer, out))

    def _generate(self, body: object) -> None:
        ep = self.endpoint
        try:
            model = ep.active.model
        except NoActiveModelError as e:
            self._send(503, {"error": str(e)})
            return
        ep.count(error=not handle_generation(self, model, self.path, body))


def _feed(specs, inputs: dict) -> dict:
    """JSON has one number type: numbers become the spec's float dtype for float inputs;
    for integer/bool inputs they stay as JSON gave them (ints), so a fractional id reaches
    the SDK's validation as a float and is refused with a clear error, never truncated."""
    import numpy as np

    kinds = {s.name: np.dtype(s.dtype) for s in specs}
    feed = {}
    for k, v in inputs.items():
        a = np.asarray(v)
        dt = kinds.get(k)
        if dt is not None and dt.kind == "f" and a.dtype.kind in "iuf":
            a = a.astype(dt)
        elif dt is not None and dt.kind == "b" and a.dtype.kind == "b":
            a = a.astype(dt)
        feed[k] = a
    return feed


# The stdlib default listen backlog (5) resets connections from a dozen concurrent clients.
_BACKLOG = 128


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = _BACKLOG


class _TCPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = _BACKLOG


class LocalEndpoint:
    """``batching``: micro-batch concurrent requests (see :mod:`._batcher`); ``admit``: called
    before each predict, raises :class:`Overloaded` to shed load (see :mod:`._adapt`)."""

    def __init__(
        self,
        active: ActiveModel,
        bind: str,
        batching: BatchingOptions | None = None,
        admit: Callable[[], None] | None = None,
    ) -> None:
        self.active = active
        self.batcher = MicroBatcher(batching) if batching and batching.max_batch > 1 else None
        self.admit = admit
        self.stopping = False
        self.calls = self.errors = 0
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"endpoint": self})
        if bind.startswith("unix:"):
            path = Path(bind[5:])
            path.unlink(missing_ok=True)
            self.server = _UnixServer(str(path), handler)
            os.chmod(path, 0o660)
            self.address = bind
        else:
            host, _, port = bind.rpartition(":")
            self.server = _TCPServer((host or "127.0.0.1", int(port or 0)), handler)
            self.address = f"http://{host or '127.0.0.1'}:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="edgefleet-endpoint", daemon=True
        )

    def run(self, model, feed: dict) -> dict:
        if self.admit is not None:
            self.admit()
        if self.batcher is not None:
            return self.batcher.submit(model, feed)
        return model.predict(feed)

    def count(self, *, error: bool) -> None:
        with self._lock:
            self.calls += 1
            self.errors += int(error)

    def traffic(self) -> tuple[int, int]:
        with self._lock:
            return self.calls, self.errors

    def start(self) -> LocalEndpoint:
        self._thread.start()
        log.info("local inference endpoint on %s", self.address)
        return self

    def stop(self) -> None:
        self.stopping = True  # kept-alive connections close after their current request
        self.server.shutdown()
        self.server.server_close()
        if self.batcher is not None:
            self.batcher.stop()
