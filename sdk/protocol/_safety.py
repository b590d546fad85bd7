"""Untrusted JSON -> Python values that every store and every sum can take.

A payload that ``json.loads`` accepts can still poison whatever handles it next: a lone
surrogate (``"\\ud800"``) is a ``str`` that no UTF-8 encoder (SQLite, PostgreSQL, a log
file) accepts, a NUL (``"\\u0000"``) one that PostgreSQL refuses; ``NaN``/``Infinity``
are not JSON and break comparisons; ``1e308`` or a 4,000-digit integer overflow the first
sum a query makes of them. They are refused here,
with the reason, before a message is validated, so one device's message never reaches a
batch shared with others.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ._errors import ProtocolError

__all__ = ["MAX_ABS_FLOAT", "MAX_ABS_INT", "MAX_COUNT", "loads_untrusted"]

# Far above any real metric (latency in ms, RSS in MB, a temperature) yet small enough that a
# sum of a million such values stays finite and exact enough for a float column.
MAX_ABS_FLOAT = 1e15
# What a signed 64-bit database INTEGER holds.
MAX_ABS_INT = 2**63 - 1

# Per-interval counters (inference calls, errors, cache lookups): a database sums them, and a
# few rows of 2**63 would overflow a 64-bit SUM (SQLite raises), breaking every rollout gate.
MAX_COUNT = 10**12

# A \uD800-\uDFFF escape: only then can a decoded string hold a surrogate (raw surrogate bytes
# are invalid UTF-8 and fail the decode). Pairs are legal, so the strings are checked then.
# Likewise \u0000 (a raw NUL byte is invalid JSON): PostgreSQL text and jsonb refuse it.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F]|0000)")


def _refuse_constant(name: str) -> float:
    raise ProtocolError(f"expected a finite JSON number, got {name}")


def _int(text: str) -> int:
    # Long digit strings are refused before int() spends time on them.
    if len(text) > 20 or abs(v := int(text)) > MAX_ABS_INT:
        raise ProtocolError(f"integer {text[:24]}... is outside the signed 64-bit range")
    return v


def _float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v) or abs(v) > MAX_ABS_FLOAT:
        raise ProtocolError(f"number {text[:32]} is outside +-{MAX_ABS_FLOAT:g}")
    return v


def _check_strings(value: Any, path: str = "") -> None:
    stack = [(value, path)]
    while stack:
        v, where = stack.pop()
        if isinstance(v, str):
            try:
                v.encode()
            except UnicodeEncodeError as e:
                raise ProtocolError(
                    f"string at {where or '<root>'} holds a lone surrogate "
                    f"(U+{ord(v[e.start]):04X}); expected valid Unicode text"
                ) from None
            if "\x00" in v:
                raise ProtocolError(f"string at {where or '<root>'} holds U+0000 (NUL)")
        elif isinstance(v, dict):
            for k, item in v.items():
                stack.append((k, f"{where}.{k!s:.40}" if where else "<key>"))
                stack.append((item, f"{where}.{k!s:.40}" if where else f"{k!s:.40}"))
        elif isinstance(v, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(v))


def loads_untrusted(payload: bytes | bytearray) -> Any:
    """``json.loads`` refusing what cannot be stored or summed: raises ProtocolError."""
    try:
        data = json.loads(
            payload, parse_constant=_refuse_constant, parse_int=_int, parse_float=_float
        )
    except ProtocolError:  # from the hooks above: already says what is wrong
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"payload is not UTF-8 JSON: {e}") from e
    except RecursionError as e:
        raise ProtocolError("payload JSON is nested too deeply") from e
    except ValueError as e:  # int() of a huge literal, any other conversion error
        raise ProtocolError(f"payload holds an unusable number: {e}") from e
    if _SUSPECT_ESCAPE.search(payload):
        _check_strings(data)
    return data
