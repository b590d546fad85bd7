"""Built-in models: a small CNN for the digits data set and a MobileNetV2-class network.

Both are plain ``nn.Sequential`` stacks of Conv/BN/ReLU blocks that torch.fx traces, so
structured pruning can follow the channel flow through skips and into the head (see
``_prune_graph.py``).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

__all__ = ["DigitsCNN", "MobileNetV2Like", "build_model", "MODEL_NAMES"]

log = logging.getLogger(__name__)

MODEL_NAMES = ("digits_cnn", "mobilenet_v2")


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True) if groups > 1 or k == 1 else nn.ReLU(inplace=True),
    ]


class DigitsCNN(nn.Module):
    """8x8 grey digits -> 10 logits; ~12k parameters, >0.95 held-out after a few epochs."""

    def __init__(self, width: int = 16, hidden: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(1, width),
            *_conv_bn(width, width * 2),
            nn.MaxPool2d(2),
            *_conv_bn(width * 2, width * 2),
            nn.AdaptiveAvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(width * 2 * 4, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise -> 1x1 project (+ skip)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += _conv_bn(cin, hidden, k=1)
        layers += _conv_bn(hidden, hidden, k=3, stride=stride, groups=hidden)
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_skip else y


# (expand, out channels, repeats, first stride): the MobileNetV2 paper's table.
_MBV2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
         (6, 160, 3, 2), (6, 320, 1, 1)]  # fmt: skip


class MobileNetV2Like(nn.Module):
    """MobileNetV2 (width multiplier ``width``), written out so no torchvision is needed."""

    def __init__(
        self, num_classes: int = 10, width: float = 1.0, in_channels: int = 3, last: int = 1280
    ) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return max(8, int(c * width + 4) // 8 * 8)

        cin = ch(32)
        layers: list[nn.Module] = list(_conv_bn(in_channels, cin, stride=2))
        for t, c, n, s in _MBV2:
            for i in range(n):
                layers.append(InvertedResidual(cin, ch(c), s if i == 0 else 1, t))
                cin = ch(c)
        layers += _conv_bn(cin, last, k=1)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(last, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_model(name: str, **kwargs: object) -> nn.Module:
    if name == "digits_cnn":
        return DigitsCNN(**kwargs)  # type: ignore[arg-type]
    if name == "mobilenet_v2":
        return MobileNetV2Like(**kwargs)  # type: ignore[arg-type]
    raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES}")
