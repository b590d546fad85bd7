"""Generation on the local endpoint: an OpenAI-compatible subset and Server-Sent Events.

    POST /v1/chat/completions  {"messages": [...], "max_tokens": 64, "stream": true}
    POST /v1/completions       {"prompt": "...", "max_tokens": 64, "stream": true}

Supported request fields: ``model`` (ignored: the active model answers), ``messages`` /
``prompt``, ``max_tokens`` (or ``max_completion_tokens``), ``temperature`` (default: the
package's default, greedy for the built-in recipe), ``top_p``, ``top_k``, ``seed``, ``stop``
(string or list), ``n`` (1 only), ``stream``, ``stream_options.include_usage``; other fields
are ignored, as OpenAI clients send many. ``usage`` adds ``ttft_ms`` and
``decode_tokens_per_s``. A stream is ``data: {chunk}`` events closed by ``data: [DONE]``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from edgefleet.sdk import EdgefleetError, InputError

__all__ = ["GEN_PATHS", "handle_generation", "is_generative", "model_description"]

log = logging.getLogger(__name__)

GEN_PATHS = ("/v1/chat/completions", "/v1/completions")
_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


def is_generative(model: Any) -> bool:
    return hasattr(model, "generate") and hasattr(model, "codec")


def model_description(model: Any) -> dict:
    """``GET /v1/model``: identity, then the input/output specs (or, for a generative
    model, its task, artifact and context)."""
    i = model.info
    about = {"name": i.name, "version": i.version, "backend": i.backend, "digest": i.digest}
    if not is_generative(model):
        return about | {
            "inputs": [s.model_dump() for s in i.inputs],
            "outputs": [s.model_dump() for s in i.outputs],
        }
    return about | {
        "task": "text-generation",
        "artifact": i.artifact.name,
        "precision": i.artifact.precision,
        "context_length": model.context_length,
        "chat_template": i.generation.chat_template is not None,
    }


class RequestError(ValueError):
    """A malformed request (400)."""


def _opt(body: dict, key: str, kind: type | tuple, default: Any = None) -> Any:
    v = body.get(key)
    if v is None:
        return default
    if (isinstance(v, bool) and kind is not bool) or not isinstance(v, kind):
        name = getattr(kind, "__name__", "number")
        raise RequestError(f"{key}: expected {name}, got {v!r}")
    return v


def _params(body: dict, chat: bool) -> tuple[Any, dict, bool, bool]:
    if not isinstance(body, dict):
        raise RequestError("expected a JSON object")
    if chat:
        prompt = body.get("messages")
        if not isinstance(prompt, list):
            raise RequestError('expected "messages": a list of {"role", "content"} objects')
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError('expected "prompt": a string')
    if _opt(body, "n", int, 1) != 1:
        raise RequestError("n: only n=1 is supported")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop or []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise RequestError("stop: expected a string or a list of strings")
    max_new = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_new is not None and (isinstance(max_new, bool) or not isinstance(max_new, int)):
        raise RequestError(f"max_tokens: expected an integer, got {max_new!r}")
    kw = {
        "max_new_tokens": max_new,
        "temperature": _opt(body, "temperature", (int, float)),
        "top_p": _opt(body, "top_p", (int, float)),
        "top_k": _opt(body, "top_k", int),
        "seed": _opt(body, "seed", int),
        "stop": stop,
    }
    opts = body.get("stream_options") or {}
    include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
    return prompt, kw, bool(_opt(body, "stream", bool, False)), include_usage


def _usage(u: Any) -> dict:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.generated_tokens,
        "total_tokens": u.prompt_tokens + u.generated_tokens,
        "ttft_ms": round(u.ttft_s * 1e3, 3),
        "decode_tokens_per_s": u.decode_tokens_per_s,
        "prefix_cached_tokens": u.prefix_cached_tokens,
    }


def handle_generation(handler: Any, model: Any, path: str, body: Any) -> bool:
    """Serve one generation request on ``handler`` (a BaseHTTPRequestHandler with
    ``_send``). Returns False when the request failed (for the endpoint's error count)."""
    chat = path == "/v1/chat/completions"
    if not is_generative(model):
        _error(handler, 400, f"the active model {model.info.name} is not generative; "
               "POST /v1/predict")  # fmt: skip
        return True
    try:
        prompt, kw, stream, include_usage = _params(body, chat)
        gen = model.generate(prompt, **kw)
    except (RequestError, InputError) as e:
        _error(handler, 400, str(e))
        return True
    except EdgefleetError as e:
        _error(handler, 500, f"model failed: {e}", "server_error")
        return False
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
    base = {
        "id": rid,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": f"{model.info.name}@{model.info.version}",
    }
    if stream:
        return _stream(handler, gen, base, chat, include_usage)
    try:
        text = gen.text()
    except EdgefleetError as e:
        _error(handler, 500, f"model failed: {e}", "server_error")
        return False
    finish = _FINISH[gen.usage.finish_reason]
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "finish_reason": finish}  # fmt: skip
        base["object"] = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
    handler._send(200, {**base, "choices": [choice], "usage": _usage(gen.usage)})
    return True


def _stream(handler: Any, gen: Any, base: dict, chat: bool, include_usage: bool) -> bool:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.close_connection = True

    def event(payload: dict | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        handler.wfile.write(f"data: {data}\n\n".encode())
        handler.wfile.flush()

    def choice(text: str | None, finish: str | None, role: bool = False) -> dict:
        if chat:
            delta = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return {**base, "choices": [{"index": 0, "text": text or "", "finish_reason": finish}]}

    try:
        if chat:
            event(choice(None, None, role=True))
        for chunk in gen:
            if chunk.text:
                event(choice(chunk.text, None))
        event(choice(None if chat else "", _FINISH[gen.usage.finish_reason]))
        if include_usage:
            event({**base, "choices": [], "usage": _usage(gen.usage)})
        event("[DONE]")
    except (BrokenPipeError, ConnectionResetError):
        log.info("client left a generation stream early")
        gen.close()
    except EdgefleetError as e:
        event({"error": {"message": f"model failed: {e}", "type": "server_error"}})
        return False
    return True


def _error(handler: Any, code: int, message: str, kind: str = "invalid_request_error") -> None:
    handler._send(code, {"error": {"message": message, "type": kind}})
