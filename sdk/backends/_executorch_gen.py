"""ExecuTorch generation: a ``.pte`` causal LM with a static KV cache (as the trainer's
``_llm_pte`` writes it) run step by step through ``executorch.runtime``.

The program's one method takes ``(input_ids[1, n], cache_position[n])`` and returns the
last position's logits; its KV cache lives in the program. Loading a program shares
nothing between two loads, so each :class:`PteState` (one sequence) loads its own, which
takes milliseconds and keeps sequences (and prefix-cache entries) independent; what a
state costs is measured once at load, for the prefix cache's byte bound.

ExecuTorch's Python runtime takes and returns torch tensors: torch is imported at load,
never at SDK import (``edgefleet[agent]`` has no torch; devices use ``ort-genai``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import BackendError, BackendUnavailableError
from ._base import module_available
from ._common import quiet_imports, wrap_errors

__all__ = ["ExecuTorchGenOptions", "ExecuTorchGenBackend", "PteSession", "PteState"]

log = logging.getLogger(__name__)

_NEEDS = (
    "ExecuTorch's Python runtime (executorch.runtime) needs the executorch and torch "
    "packages (pip install 'edgefleet[executorch]'); edgefleet[agent] ships no torch"
)


@dataclass(frozen=True)
class ExecuTorchGenOptions:
    # XNNPACK's thread pool is process-wide: setting it affects every loaded program.
    intra_op_threads: int | None = None


class PteState:
    """One sequence: ``append`` runs tokens at the next positions (in chunks of the
    program's ``max_seq_len``), ``greedy_step`` picks the argmax and runs it lazily on the
    next call, ``rewind`` moves the position back (later writes overwrite the cache)."""

    def __init__(self, session: PteSession, method, max_length: int) -> None:
        self._s = session
        self._method = method
        self.max_length = max_length
        self.length = 0  # counts a pending greedy token, as GenAI's length does
        self._pending: int | None = None
        self._logits: np.ndarray | None = None

    def _run(self, tokens: np.ndarray) -> None:
        torch = self._s.torch
        start = self.length  # no pending token: callers flush first
        n = len(tokens)
        if start + n > self.max_length:
            raise BackendError(
                f"sequence of {start + n} tokens exceeds this state's {self.max_length}"
            )
        step = self._s.max_seq_len
        for i in range(0, n, step):
            part = tokens[i : i + step]
            ids = torch.from_numpy(np.ascontiguousarray(part, dtype=np.int64)[None])
            pos = torch.arange(start + i, start + i + len(part), dtype=torch.int64)
            self._logits = self._method.execute([ids, pos])[0][0].numpy()
        self.length = start + n

    def _flush(self) -> None:
        if self._pending is not None:
            tok, self._pending = self._pending, None
            self.length -= 1
            self._run(np.asarray([tok]))

    def append(self, tokens: np.ndarray) -> None:
        self._flush()
        self._run(np.asarray(tokens))

    def logits(self) -> np.ndarray:
        """Logits for the token after the current sequence, shape (vocab,)."""
        self._flush()
        if self._logits is None:
            raise BackendError("no logits yet: append tokens first")
        return self._logits

    def greedy_step(self) -> int:
        tok = int(np.argmax(self.logits()))
        self._pending = tok
        self.length += 1
        return tok

    def rewind(self, length: int) -> None:
        if length > self.length - (self._pending is not None):
            raise BackendError(f"cannot rewind a {self.length}-token state to {length}")
        self._pending = None
        self._logits = None
        self.length = length


class PteSession:
    """A ``.pte`` LLM: its sizes read from the program's constant methods."""

    thread_safe = True  # each state runs its own program

    def __init__(self, path: Path, options: ExecuTorchGenOptions) -> None:
        with quiet_imports():
            try:
                # registers the llama::custom_sdpa kernel the trainer's programs call
                import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401
                import torch
                from executorch.runtime import Runtime
            except ImportError as e:
                raise BackendUnavailableError(f"{_NEEDS}: {e}") from e
        self.torch = torch
        self.path = path
        self._rt = Runtime.get()
        if options.intra_op_threads:
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(options.intra_op_threads)
        with wrap_errors(
            f"{path} is not a .pte LLM with a KV cache (expected a forward method and the "
            "get_max_context_len/get_vocab_size/... constant methods)"
        ):
            program = self._rt.load_program(path)
            meta = {
                name: program.load_method(name).execute([])[0]
                for name in ("get_max_seq_len", "get_max_context_len", "get_vocab_size",
                             "get_kv_cache_bytes")
            }  # fmt: skip
        self.max_seq_len = int(meta["get_max_seq_len"])
        self.context_length = int(meta["get_max_context_len"])
        self.vocab_size = int(meta["get_vocab_size"])
        self._spare, self._state_bytes = self._probe(int(meta["get_kv_cache_bytes"]))

    def _probe(self, kv_bytes: int) -> tuple[PteState, int]:
        """A first state, and what one costs: its program copy, XNNPACK's packed weights,
        the planned activations of a full prefill chunk and the KV cache. Measured as the
        resident memory it adds (Linux), at least the KV cache plus twice the file."""
        chunk = np.zeros(min(self.max_seq_len, self.context_length - 1), dtype=np.int64)

        def filled() -> PteState:
            state = PteState(self, self._load_method(), self.context_length)
            state.append(chunk)
            state.rewind(0)
            return state

        spare = filled()  # the first one also initialises the runtime's globals
        before = _rss()
        filled()
        grown = _rss() - before if before else 0
        return spare, max(grown, kv_bytes + 2 * self.path.stat().st_size)

    def _load_method(self):
        return self._rt.load_program(self.path).load_method("forward")

    def new_state(self, max_length: int | None = None) -> PteState:
        n = min(max_length or self.context_length, self.context_length)
        spare, self._spare = self._spare, None  # racing callers: one gets it, others load
        if spare is not None:
            spare.max_length = n
            return spare
        return PteState(self, self._load_method(), n)

    def state_bytes(self, max_length: int) -> int:
        """Memory one state holds (its own program; the KV cache is the whole context)."""
        return self._state_bytes

    def close(self) -> None:
        self._spare = None
        self._rt = None


def _rss() -> int:
    """Resident bytes of this process (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class ExecuTorchGenBackend:
    name = "executorch"
    formats = ("pte",)
    options_type = ExecuTorchGenOptions

    def available(self) -> str | None:
        missing = [m for m in ("executorch", "torch") if not module_available(m)]
        return f"{_NEEDS}; missing {missing}" if missing else None

    def load(self, path: Path, options: ExecuTorchGenOptions | None) -> PteSession:
        return PteSession(Path(path), options or ExecuTorchGenOptions())
