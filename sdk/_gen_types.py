"""Value types of generation: options, streamed chunks, the usage record, and the
generation metrics a device publishes (TTFT percentiles, decode tokens/s, prefix hits)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Literal

from ._metrics import LatencyHistogram, hit_rate, to_ms

__all__ = [
    "GenerateOptions",
    "Chunk",
    "Usage",
    "GenerationMetrics",
    "GenerationSnapshot",
]

FinishReason = Literal["stop", "length", "eos"]


@dataclass(frozen=True)
class GenerateOptions:
    """How :func:`load` prepares a generative model. ``prefix_cache_bytes=0`` disables the
    prefix (KV) cache; ``prefix_block`` is its granularity in tokens."""

    intra_op_threads: int | None = None
    prefix_cache_bytes: int = 256 * 1024**2
    prefix_block: int = 64


@dataclass(frozen=True)
class Chunk:
    """One generated token and the text it completed ("" while a character or a possible
    stop string is still pending)."""

    token_id: int | None  # None: text released at the end, no new token
    text: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    generated_tokens: int
    ttft_s: float
    decode_tokens_per_s: float | None
    total_s: float
    finish_reason: FinishReason
    prefix_cached_tokens: int = 0
    result_cache_hit: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GenerationSnapshot:
    requests: int
    errors: int
    tokens_generated: int
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    decode_tokens_per_s: float | None
    prefix_cache_hits: int
    prefix_cache_misses: int

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        return hit_rate(self.prefix_cache_hits, self.prefix_cache_misses)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["prefix_cache_hit_rate"] = self.prefix_cache_hit_rate
        return d


@dataclass
class GenerationMetrics:
    """Thread-safe; ``snapshot(reset=True)`` starts a new window (what the agent sends)."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._ttft = LatencyHistogram()
        self._requests = self._errors = self._tokens = self._hits = self._misses = 0
        self._decode_tokens = 0
        self._decode_s = 0.0

    def record(self, usage: Usage, prefix_hit: bool | None) -> None:
        with self._lock:
            self._requests += 1
            self._tokens += usage.generated_tokens
            if not usage.result_cache_hit:
                self._ttft.record(usage.ttft_s)
                if usage.generated_tokens > 1 and usage.decode_tokens_per_s:
                    self._decode_tokens += usage.generated_tokens - 1
                    self._decode_s += (usage.generated_tokens - 1) / usage.decode_tokens_per_s
            if prefix_hit is not None:
                self._hits += prefix_hit
                self._misses += not prefix_hit

    def record_error(self) -> None:
        with self._lock:
            self._requests += 1
            self._errors += 1

    def snapshot(self, *, reset: bool = False) -> GenerationSnapshot:
        with self._lock:
            ms = to_ms

            snap = GenerationSnapshot(
                requests=self._requests,
                errors=self._errors,
                tokens_generated=self._tokens,
                ttft_p50_ms=ms(self._ttft.percentile(50)),
                ttft_p95_ms=ms(self._ttft.percentile(95)),
                decode_tokens_per_s=(
                    round(self._decode_tokens / self._decode_s, 3) if self._decode_s else None
                ),
                prefix_cache_hits=self._hits,
                prefix_cache_misses=self._misses,
            )
            if reset:
                self._reset()
            return snap
