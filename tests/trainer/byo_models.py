"""Small models unlike the demo's, built locally (nothing downloads): a BERT-like encoder
folder with its own word-level tokenizer, a two-output model, a torchvision-style CNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

WORDS = [f"w{i}" for i in range(60)]


def texts(n: int, seed: int, max_words: int = 12) -> list[str]:
    """Sentences of varying length, so the attention mask matters."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(2, max_words))) for _ in range(n)]


def tokenizer(words: list[str] | None = None):
    """A WordLevel tokenizer over ``words`` (default WORDS); the byo benchmark uses it too."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {t: i for i, t in enumerate([*specials, *(WORDS if words is None else words)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", model_input_names=["input_ids", "attention_mask"],
    )  # fmt: skip


def bert_folder(path: Path, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A local transformers model folder: config, weights and tokenizer files."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(WORDS) + 4, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64,
    )  # fmt: skip
    BertModel(cfg).eval().save_pretrained(path)
    tokenizer().save_pretrained(path)
    return path


class TwoHeads(nn.Module):
    """Features and a float mask in, (class logits, regression box) out, as a tuple."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
        self.cls = nn.Linear(64, 5)
        self.box = nn.Linear(64, 4)

    def forward(self, features: torch.Tensor, scale: torch.Tensor):
        h = self.body(features * scale)
        return self.cls(h), self.box(h)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (the definition, not the package)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class TinyResNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())  # fmt: skip
        self.layers = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 32, 2))
        self.fc = nn.Linear(32, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.stem(images)).mean((2, 3)))
