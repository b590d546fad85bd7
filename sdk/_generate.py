"""Generative packages: :class:`GenerativeModel` streams tokens from a causal LM with a KV
cache, a prefix (KV) cache for shared prompt heads, and the result cache for
deterministic (greedy or seeded) requests.

>>> model = edgefleet.sdk.load("tiny-llama.efpkg")
>>> stream = model.generate("q: 2+3=", max_new_tokens=8)
>>> for chunk in stream: print(chunk.text, end="")
>>> stream.usage.decode_tokens_per_s
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ._cache import Cache
from ._chat import TextCodec, TextEmitter
from ._closing import Closing
from ._errors import BackendError, EdgefleetError, InputError
from ._gen_types import Chunk, GenerateOptions, GenerationMetrics, Usage
from ._manifest import Artifact, GenerationSpec, Manifest
from ._prefix_cache import PrefixCache
from ._sampling import SamplingParams, sample

__all__ = ["GenerativeModel", "GenerationStream", "GenerativeInfo"]

log = logging.getLogger(__name__)

Prompt = str | Sequence[Mapping[str, str]] | np.ndarray


@dataclass(frozen=True)
class GenerativeInfo:
    name: str
    version: str
    digest: str
    backend: str
    artifact: Artifact
    manifest: Manifest
    generation: GenerationSpec
    signature_state: str


class GenerationStream:
    """An iterator of :class:`Chunk`; ``usage`` is set once it is exhausted. ``text()``
    drains it and returns the whole answer. Closing it early frees the runtime state."""

    def __init__(self, chunks: Iterator[Chunk], prompt_tokens: int) -> None:
        self._it = chunks
        self.prompt_tokens = prompt_tokens
        self.usage: Usage | None = None
        self.token_ids: list[int] = []
        self._text: list[str] = []

    def __iter__(self) -> GenerationStream:
        return self

    def __next__(self) -> Chunk:
        try:
            chunk = next(self._it)
        except StopIteration as stop:
            self.usage = stop.value
            raise
        if chunk.token_id is not None:
            self.token_ids.append(chunk.token_id)
        self._text.append(chunk.text)
        return chunk

    def text(self) -> str:
        for _ in self:
            pass
        return "".join(self._text)

    def close(self) -> None:
        self._it.close()


class GenerativeModel(Closing):
    """A loaded generative package. ``generate`` is safe to call from several threads
    (each request runs on its own runtime state)."""

    def __init__(
        self,
        package: object,
        session: object,
        codec: TextCodec,
        info: GenerativeInfo,
        options: GenerateOptions,
        cache: Cache | None,
        owns_package: bool,
    ) -> None:
        self.info = info
        self.codec = codec
        self.metrics = GenerationMetrics()
        self.prefix_cache = PrefixCache(options.prefix_cache_bytes, options.prefix_block)
        self._package = package
        self._session = session
        self._cache = cache
        self._owns = owns_package
        self._closed = False
        self.context_length = min(info.generation.context_length, session.context_length)
        self._eos = frozenset(info.generation.eos_token_ids)

    @property
    def package(self) -> object:
        return self._package

    def tokenize(self, prompt: Prompt) -> np.ndarray:
        """Token ids of a prompt string, of chat messages (through the chat template), or
        token ids given as a 1-D integer array (used as they are)."""
        if isinstance(prompt, np.ndarray):
            if prompt.ndim != 1 or prompt.dtype.kind not in "iu" or not prompt.size:
                raise InputError(
                    f"expected token ids as a non-empty 1-D integer array, got "
                    f"{prompt.dtype}{list(prompt.shape)}"
                )
            vocab = self._session.vocab_size
            if prompt.min() < 0 or prompt.max() >= vocab:
                raise InputError(
                    f"token ids must be in [0, {vocab}), got {prompt.min()}..{prompt.max()}"
                )
            return prompt.astype(np.int32)
        text = prompt if isinstance(prompt, str) else self.codec.render(prompt)
        return self.codec.encode(text)

    def generate(
        self,
        prompt: Prompt,
        max_new_tokens: int | None = None,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
    ) -> GenerationStream:
        """Stream the continuation of ``prompt`` (a string, or chat messages
        ``[{"role": "user", "content": ...}]``). Greedy when ``temperature`` is 0."""
        if self._closed:
            raise EdgefleetError(f"model {self.info.name} is closed")
        d = self.info.generation.defaults
        try:
            params = SamplingParams.build(
                max_new_tokens=max_new_tokens if max_new_tokens is not None else
                int(d.get("max_new_tokens", 64)),
                temperature=temperature if temperature is not None else
                float(d.get("temperature", 0.0)),
                top_p=top_p if top_p is not None else float(d.get("top_p", 1.0)),
                top_k=top_k if top_k is not None else int(d.get("top_k", 0)),
                stop=tuple(stop),
                seed=seed,
            )  # fmt: skip
            ids = self.tokenize(prompt)
            self._check_length(len(ids), params.max_new_tokens)
        except InputError:
            self.metrics.record_error()
            raise
        return GenerationStream(self._run(ids, params), len(ids))

    def _check_length(self, n_prompt: int, max_new: int) -> None:
        ctx = self.context_length
        if n_prompt >= ctx:
            raise InputError(
                f"prompt is {n_prompt} tokens; the model's context is {ctx} tokens "
                f"(expected at most {ctx - 1} to leave room for one new token)"
            )
        if n_prompt + max_new > ctx:
            raise InputError(
                f"max_new_tokens={max_new} with a {n_prompt}-token prompt exceeds the "
                f"{ctx}-token context; expected max_new_tokens <= {ctx - n_prompt}"
            )

    def _result_key(self, ids: np.ndarray, p: SamplingParams) -> str | None:
        if self._cache is None or not p.deterministic:
            return None
        h = hashlib.sha256(ids.tobytes())
        h.update(json.dumps(p.key(), sort_keys=True).encode())
        return f"{self.info.digest}:{self.info.artifact.name}:gen:{h.hexdigest()}"

    def _run(self, ids: np.ndarray, p: SamplingParams) -> Iterator[Chunk]:
        t0 = time.perf_counter()
        key = self._result_key(ids, p)
        if key is not None:
            hit = self._cache.get(key)
            if hit is not None:
                return (yield from self._replay(ids, hit, p, t0))
        emitter = TextEmitter(self.codec, p.stop)
        tokens: list[int] = []
        finish = "length"
        entry = self.prefix_cache.acquire(ids)
        cut = self.prefix_cache.cut(len(ids))
        state = None
        t_first = t_last = t0
        ok = False
        try:
            if entry is not None:
                state = entry.state
                state.rewind(entry.length)
                state.append(ids[entry.length :])
            else:
                state = self._session.new_state(self.context_length)
                if cut:
                    state.append(ids[:cut])
                state.append(ids[cut:])
            rng = None if p.greedy else np.random.default_rng(p.seed)
            for i in range(p.max_new_tokens):
                if p.greedy:
                    tok = state.greedy_step()
                else:
                    if i:
                        state.append(np.asarray([tokens[-1]], dtype=np.int32))
                    tok = sample(state.logits(), p, rng)
                t_last = time.perf_counter()
                if i == 0:
                    t_first = t_last
                if tok in self._eos:
                    finish = "eos"
                    break
                tokens.append(tok)
                text, stopped = emitter.push(tok)
                if stopped:
                    finish = "stop"
                    if text:
                        yield Chunk(tok, text)
                    break
                yield Chunk(tok, text)
            tail = emitter.flush()
            if tail and finish != "stop":
                yield Chunk(None, tail)
            ok = True
        except EdgefleetError:
            self.metrics.record_error()
            raise
        except GeneratorExit:
            ok = True  # the client stopped reading: the state is intact
            raise
        except Exception as e:
            self.metrics.record_error()
            raise BackendError(f"{self.info.backend} failed generating: {e}") from e
        finally:
            self._settle(ids, state, entry, cut, ok)
        usage = _usage(len(ids), len(tokens) + (finish == "eos"), t0, t_first, t_last, finish,
                       entry.length if entry else 0)  # fmt: skip
        self.metrics.record(usage, None if not cut else entry is not None)
        if key is not None:
            done = np.frombuffer(finish.encode(), dtype=np.uint8)
            self._cache.put(key, {"tokens": np.asarray(tokens, dtype=np.int32), "finish": done})
        return usage

    def _settle(self, ids, state, entry, cut: int, ok: bool) -> None:
        """Give the prefix state back to the cache (rewound to its prefix), or keep a new
        state as the entry for this prompt's prefix."""
        if entry is not None:
            if ok:
                entry.state.rewind(entry.length)
                self.prefix_cache.release(entry)
            else:
                self.prefix_cache.discard(entry)
        elif ok and state is not None and cut:
            state.rewind(cut)
            self.prefix_cache.put(ids[:cut], state, self._session.state_bytes(state.max_length))

    def _replay(self, ids: np.ndarray, hit: dict, p: SamplingParams, t0: float):
        emitter = TextEmitter(self.codec, p.stop)
        tokens = [int(t) for t in hit["tokens"]]
        finish = bytes(hit["finish"]).decode()
        for tok in tokens:
            text, stopped = emitter.push(tok)
            if stopped and not text:
                break
            yield Chunk(tok, text)
        tail = emitter.flush()
        if tail and finish != "stop":
            yield Chunk(None, tail)
        t = time.perf_counter()
        usage = Usage(len(ids), len(tokens) + (finish == "eos"), t - t0, None, t - t0, finish,
                      result_cache_hit=True)  # fmt: skip
        self.metrics.record(usage, None)
        return usage

    def smoke_test(self):
        """Greedy continuations of the package's golden prompts compared with the reference
        (what a device runs before activating a generative package)."""
        from ._gen_smoke import smoke_test

        return smoke_test(self)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.prefix_cache.clear()
            self._session.close()
            if self._owns:
                self._package.close()

    def __repr__(self) -> str:
        i = self.info
        return f"<GenerativeModel {i.name} {i.version} {i.artifact.name} on {i.backend}>"


def _usage(n_prompt, n_gen, t0, t_first, t_last, finish, cached) -> Usage:
    decode = (n_gen - 1) / (t_last - t_first) if n_gen > 1 and t_last > t_first else None
    return Usage(n_prompt, n_gen, t_first - t0, decode, time.perf_counter() - t0, finish, cached)
