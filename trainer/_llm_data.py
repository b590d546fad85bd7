"""Text the tiny-LM recipe generates (nothing downloads): templated sentences, arithmetic
and short chats, plus the character-level tokenizer and chat template that ship with it."""

from __future__ import annotations

import json
import random
from pathlib import Path

__all__ = ["CHAT_TEMPLATE", "SPECIALS", "make_corpus", "write_char_tokenizer"]

SPECIALS = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 .,+-=?:\n"
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)

_NOUNS = ["cat", "dog", "bird", "robot", "board", "drone", "sensor", "camera"]
_COLORS = ["red", "blue", "green", "black", "white", "small", "big"]
_VERBS = ["sees", "finds", "likes", "follows", "counts", "wakes"]
_PLACES = ["the mat", "the lab", "the field", "the roof", "the desk", "the door"]


def _sentence(r: random.Random) -> str:
    kind = r.randrange(4)
    if kind == 0:
        a, b = r.randrange(50), r.randrange(50)
        return f"q: {a}+{b}= a: {a + b}."
    if kind == 1:
        a, b = r.randrange(50, 99), r.randrange(50)
        return f"q: {a}-{b}= a: {a - b}."
    if kind == 2:
        n1, n2 = r.choice(_NOUNS), r.choice(_NOUNS)
        return f"the {r.choice(_COLORS)} {n1} {r.choice(_VERBS)} the {n2} on {r.choice(_PLACES)}."
    a, b = r.randrange(20), r.randrange(20)
    return f"user: what is {a} plus {b}?\nassistant: {a + b}\n"


def make_corpus(n: int, seed: int) -> list[str]:
    """``n`` deterministic samples (a seed gives the same text on every machine)."""
    r = random.Random(seed)
    return [_sentence(r) for _ in range(n)]


def write_char_tokenizer(folder: Path, vocab_size: int | None = None) -> int:
    """tokenizer.json (one token per character) + tokenizer_config.json with the chat
    template, in the layout transformers and the GenAI model builder read. ``vocab_size``
    pads the vocabulary with ``<extra_N>`` tokens (a model of a realistic vocabulary size
    for benchmarks). Returns the vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = dict(SPECIALS)
    for c in _CHARS:
        vocab.setdefault(c, len(vocab))
    while vocab_size is not None and len(vocab) < vocab_size:
        vocab[f"<extra_{len(vocab)}>"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(list(SPECIALS))
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "pad_token": "<pad>",
                "unk_token": "<unk>",
                "chat_template": CHAT_TEMPLATE,
                "model_max_length": 4096,
            },
            indent=2,
        )
    )
    return len(vocab)
