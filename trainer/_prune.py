"""Structured channel pruning (tensors really shrink) and unstructured magnitude pruning.

Structured pruning follows channel flow inside ``nn.Sequential`` containers: a producer
Conv2d, its BatchNorm, element-wise layers and depthwise convs, up to the next regular
Conv2d (the consumer). Channels leaving a Sequential (residual sums, flatten into a
Linear) are never pruned, so skip connections and heads stay shape-correct.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ChannelPlan", "prune_channels", "magnitude_prune", "sparsity", "count_params"]

log = logging.getLogger(__name__)

_PASSTHROUGH = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.GELU, nn.Identity, nn.Dropout,
                nn.MaxPool2d, nn.AvgPool2d)  # fmt: skip


@dataclass(frozen=True)
class ChannelPlan:
    producer: str
    before: int
    after: int


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def _chains(model: nn.Module) -> list[tuple[str, list[nn.Module], nn.Conv2d]]:
    """(producer name, [producer, followers...], consumer) for every prunable chain."""
    found = []
    for seq_name, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        kids = list(seq.named_children())
        for i, (name, mod) in enumerate(kids):
            if not isinstance(mod, nn.Conv2d) or mod.groups != 1:
                continue
            chain: list[nn.Module] = [mod]
            for _, nxt in kids[i + 1 :]:
                if isinstance(nxt, nn.Conv2d) and nxt.groups == 1:
                    found.append((f"{seq_name}.{name}".lstrip("."), chain, nxt))
                    break
                if isinstance(nxt, (nn.BatchNorm2d, *_PASSTHROUGH)) or _is_depthwise(nxt):
                    chain.append(nxt)
                    continue
                break
    return found


def _keep_count(channels: int, amount: float) -> int:
    keep = max(1, round(channels * (1.0 - amount)))
    # Multiples of 8 (4 for narrow layers) suit SIMD kernels on every runtime.
    step = 8 if channels >= 64 else 4 if channels >= 16 else 1
    return min(channels, max(step, int(round(keep / step)) * step))


def _shrink_conv(conv: nn.Conv2d, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None):
    w = conv.weight.data
    if out_idx is not None:
        w = w[out_idx]
    if in_idx is not None and conv.groups == 1:
        w = w[:, in_idx]
    groups = len(out_idx) if conv.groups > 1 and out_idx is not None else conv.groups
    new = nn.Conv2d(w.shape[1] * groups, w.shape[0], conv.kernel_size, conv.stride,
                    conv.padding, conv.dilation, groups, conv.bias is not None)  # fmt: skip
    new.weight.data = w.clone()
    if conv.bias is not None:
        b = conv.bias.data
        new.bias.data = (b[out_idx] if out_idx is not None else b).clone()
    return new


def _shrink_bn(bn: nn.BatchNorm2d, idx: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(idx), bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    for attr in ("weight", "bias", "running_mean", "running_var"):
        src = getattr(bn, attr)
        if src is not None:
            getattr(new, attr).data = src.data[idx].clone()
    return new.train(bn.training)


def _replace(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is old:
                setattr(parent, name, new)
                return
    raise RuntimeError("module to replace not found")


@torch.no_grad()
def prune_channels(model: nn.Module, amount: float) -> list[ChannelPlan]:
    """Remove ``amount`` of the output channels of every prunable conv, in place.

    Importance is |BN gamma| x L1 norm of the filter, so channels the BatchNorm already
    switched off go first. Returns what changed."""
    plans = []
    # Re-scan after each chain: pruning replaces modules the next chain may start from.
    for k in range(len(_chains(model))):
        name, chain, consumer = _chains(model)[k]
        producer = chain[0]
        c = producer.out_channels
        keep = _keep_count(c, amount)
        if keep >= c:
            continue
        score = producer.weight.abs().flatten(1).sum(1)
        bn = next((m for m in chain[1:] if isinstance(m, nn.BatchNorm2d)), None)
        if bn is not None:
            score = score * bn.weight.abs()
        idx = torch.sort(torch.topk(score, keep).indices).values
        for mod in chain:
            if isinstance(mod, nn.Conv2d):
                _replace(model, mod, _shrink_conv(mod, idx, None))
            elif isinstance(mod, nn.BatchNorm2d):
                _replace(model, mod, _shrink_bn(mod, idx))
        _replace(model, consumer, _shrink_conv(consumer, None, idx))
        plans.append(ChannelPlan(name, c, keep))
        log.info("pruned %s: %d -> %d channels", name, c, keep)
    return plans


def magnitude_prune(model: nn.Module, amount: float) -> float:
    """Zero the globally smallest ``amount`` of Conv/Linear weights; returns the sparsity."""
    from torch.nn.utils import prune

    params = [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    for m, p in params:
        prune.remove(m, p)  # bake the mask in: plain tensors with zeros, exportable
    return sparsity(model)


def sparsity(model: nn.Module) -> float:
    ws = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    total = sum(w.numel() for w in ws)
    return float(sum((w == 0).sum().item() for w in ws) / max(total, 1))
