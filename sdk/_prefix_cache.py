"""A bounded prefix (KV) cache: a shared prompt prefix (system prompt, few-shot examples) is
prefilled once and its runtime state reused by later requests.

Prefixes are cut at block boundaries (``block`` tokens, as paged-KV servers do) so two
prompts that share a long head find the same entry without naming it. An entry holds a
runtime state whose KV covers exactly its prefix; a request rewinds it to that length,
appends its own tail, and hands it back. An entry serves one request at a time (a busy
entry is a miss). Bounded by bytes (KV allocated per state) with LRU eviction.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ._errors import ConfigError
from ._metrics import HitCounts

__all__ = ["PrefixCache", "PrefixCacheStats", "PrefixEntry"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrefixCacheStats(HitCounts):
    """The prefix cache's counters (besides ``hits``, ``misses`` and
    ``hit_rate``): prefixes held and their KV bytes against the bound, evictions,
    and the prompt tokens that hits spared from prefill."""

    entries: int
    bytes: int
    max_bytes: int
    evictions: int
    reused_tokens: int


@dataclass
class PrefixEntry:
    key: str
    length: int
    state: object
    nbytes: int
    busy: bool = False


def _key(tokens: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(tokens, dtype=np.int32).tobytes()).hexdigest()


class PrefixCache:
    """Thread-safe. ``max_bytes=0`` disables it."""

    def __init__(self, max_bytes: int = 256 * 1024**2, block: int = 64) -> None:
        if max_bytes < 0 or block < 1:
            raise ConfigError(f"expected max_bytes >= 0 and block >= 1, got {max_bytes}, {block}")
        self.max_bytes = max_bytes
        self.block = block
        self._entries: OrderedDict[str, PrefixEntry] = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = self._hits = self._misses = self._evictions = self._reused = 0

    def cut(self, n_tokens: int) -> int:
        """The prefix length cached for a prompt of ``n_tokens``: the last block boundary
        strictly before its end (the last token is always run to get logits)."""
        return ((n_tokens - 1) // self.block) * self.block if self.max_bytes else 0

    def acquire(self, tokens: np.ndarray) -> PrefixEntry | None:
        """The longest idle cached prefix of ``tokens`` (marked busy), or None (a miss)."""
        top = self.cut(len(tokens))
        if not top:
            return None  # nothing cacheable: neither a hit nor a miss
        with self._lock:
            for n in range(top, 0, -self.block):
                e = self._entries.get(_key(tokens[:n]))
                if e is not None and not e.busy:
                    e.busy = True
                    self._entries.move_to_end(e.key)
                    self._hits += 1
                    self._reused += n
                    return e
            self._misses += 1
            return None

    def release(self, entry: PrefixEntry) -> None:
        with self._lock:
            entry.busy = False

    def discard(self, entry: PrefixEntry) -> None:
        """Drop an entry whose state may be unusable (its request failed mid-way)."""
        with self._lock:
            if self._entries.pop(entry.key, None) is not None:
                self._bytes -= entry.nbytes

    def put(self, prefix: np.ndarray, state: object, nbytes: int) -> bool:
        """Keep ``state`` (its KV holds exactly ``prefix``); False when it cannot fit."""
        if not self.max_bytes or nbytes > self.max_bytes or len(prefix) == 0:
            return False
        key = _key(prefix)
        with self._lock:
            if key in self._entries:
                return False  # another request cached the same prefix meanwhile
            for k in list(self._entries):
                if self._bytes + nbytes <= self.max_bytes:
                    break
                if not self._entries[k].busy:
                    self._bytes -= self._entries.pop(k).nbytes
                    self._evictions += 1
            if self._bytes + nbytes > self.max_bytes:
                return False
            self._entries[key] = PrefixEntry(key, len(prefix), state, nbytes)
            self._bytes += nbytes
            return True

    def clear(self) -> None:
        with self._lock:
            for k in [k for k, e in self._entries.items() if not e.busy]:
                self._bytes -= self._entries.pop(k).nbytes

    def stats(self) -> PrefixCacheStats:
        with self._lock:
            return PrefixCacheStats(
                hits=self._hits,
                misses=self._misses,
                entries=len(self._entries),
                bytes=self._bytes,
                max_bytes=self.max_bytes,
                evictions=self._evictions,
                reused_tokens=self._reused,
            )
