"""Text <-> token ids for generative packages: the package's tokenizer.json, BOS, streaming
decode, and chat messages rendered with the package's chat template.

Chat templates are Jinja (as in Hugging Face tokenizers); rendering one needs ``jinja2``
(``pip install jinja2``; it is not part of ``edgefleet[agent]``). A package without a
template renders messages as ``role: content`` lines followed by ``assistant:``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ._errors import BackendUnavailableError, InputError, PackageError

__all__ = ["CHAT_ROLES", "TextCodec", "TextEmitter", "TokenStream"]

log = logging.getLogger(__name__)

CHAT_ROLES = ("system", "user", "assistant")


class TokenStream:
    """Incremental detokenizer: ``step(id)`` returns the new text (or "" while a multi-token
    character is incomplete)."""

    def __init__(self, tokenizer: object, skip_special: bool = True) -> None:
        from tokenizers.decoders import DecodeStream

        self._tok = tokenizer
        self._ds = DecodeStream(skip_special_tokens=skip_special)

    def step(self, token_id: int) -> str:
        return self._ds.step(self._tok, int(token_id)) or ""


class TextCodec:
    """Tokenizer + chat template of one package."""

    def __init__(
        self,
        tokenizer_json: Path,
        *,
        bos_token_id: int | None,
        chat_template: str | None = None,
    ) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as e:  # pragma: no cover - tokenizers ships with the genai extra
            raise BackendUnavailableError(
                "generative packages need the 'tokenizers' package (pip install 'edgefleet[genai]')"
            ) from e
        try:
            self._tok = Tokenizer.from_file(str(tokenizer_json))
        except Exception as e:
            raise PackageError(f"cannot read tokenizer {tokenizer_json}: {e}") from e
        self.bos_token_id = bos_token_id
        self.chat_template = chat_template
        self._template = None

    def encode(self, text: str) -> np.ndarray:
        """Token ids (int32) with BOS prepended once when the package defines one."""
        if not isinstance(text, str):
            raise InputError(f"expected the prompt as str, got {type(text).__name__}")
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if self.bos_token_id is not None and (not ids or ids[0] != self.bos_token_id):
            ids = [self.bos_token_id, *ids]
        return np.asarray(ids, dtype=np.int32)

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def stream(self) -> TokenStream:
        return TokenStream(self._tok)

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt for a chat; raises :class:`InputError` on a malformed message."""
        if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
            raise InputError("expected messages as a list of {'role', 'content'} mappings")
        if not messages:
            raise InputError("expected at least one chat message, got none")
        clean = []
        for i, m in enumerate(messages):
            if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                raise InputError(
                    f"message {i}: expected {{'role': ..., 'content': ...}}, got {m!r}"
                )
            if m["role"] not in CHAT_ROLES:
                raise InputError(
                    f"message {i}: unknown chat role {m['role']!r}; expected one of {CHAT_ROLES}"
                )
            if not isinstance(m["content"], str):
                raise InputError(f"message {i}: content must be a str")
            clean.append({"role": m["role"], "content": m["content"]})
        if self.chat_template is None:
            return "".join(f"{m['role']}: {m['content']}\n" for m in clean) + "assistant:"
        return self._jinja().render(messages=clean, add_generation_prompt=True)

    def _jinja(self):
        if self._template is None:
            try:
                from jinja2.sandbox import ImmutableSandboxedEnvironment
            except ImportError as e:
                raise BackendUnavailableError(
                    "this package has a chat template; rendering it needs jinja2 "
                    "(pip install jinja2), or pass a prompt string instead of messages"
                ) from e
            # Sandboxed: the template comes from a package, not from us.
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            self._template = env.from_string(self.chat_template)
        return self._template


class TextEmitter:
    """Detokenizes incrementally and holds back text that could still become a stop
    string, so a stop string never reaches the client."""

    def __init__(self, codec: TextCodec, stop: tuple[str, ...]) -> None:
        self._stream = codec.stream()
        self._stop = stop
        self._hold = max((len(s) for s in stop), default=1) - 1
        self._pending = ""

    def push(self, tok: int) -> tuple[str, bool]:
        self._pending += self._stream.step(tok)
        for s in self._stop:
            at = self._pending.find(s)
            if at >= 0:
                out, self._pending = self._pending[:at], ""
                return out, True
        if self._hold and len(self._pending) > self._hold:
            out, self._pending = self._pending[: -self._hold], self._pending[-self._hold :]
            return out, False
        if self._hold:
            return "", False
        out, self._pending = self._pending, ""
        return out, False

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out
