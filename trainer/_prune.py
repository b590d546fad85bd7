"""Structured channel pruning (tensors really shrink) and unstructured magnitude pruning.

Structured pruning shrinks channel groups found in the traced graph (``_prune_graph``):
producer Conv2d outputs, their BatchNorms and depthwise convs, and the Conv2d / Linear
inputs that read them, so skip connections and heads stay shape-correct. Models torch.fx
cannot trace fall back to chains inside ``nn.Sequential`` containers (a producer conv up to
the next regular conv; channels leaving the Sequential are kept).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from ._prune_graph import ChannelGroup, channel_groups

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


def _keep_count(channels: int, amount: float, min_channels: int = 1) -> int:
    keep = max(1, round(channels * (1.0 - amount)))
    # Multiples of 8 (4 for narrow layers) suit SIMD kernels on every runtime.
    step = 8 if channels >= 64 else 4 if channels >= 16 else 1
    keep = max(step, int(round(keep / step)) * step, min_channels)
    return min(channels, keep)


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


def _score(model: nn.Module, conv: str, bn: str | None) -> torch.Tensor:
    """|BN gamma| x L1 norm of each filter, scaled to mean 1 so producers weigh alike."""
    s = model.get_submodule(conv).weight.abs().flatten(1).sum(1)
    if bn is not None:
        s = s * model.get_submodule(bn).weight.abs()
    return s / s.mean().clamp_min(1e-12)


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def _shrink_linear(lin: nn.Linear, idx: torch.Tensor, channels: int) -> nn.Linear:
    per = lin.in_features // channels  # NCHW flatten: channel c owns columns c*per..c*per+per-1
    cols = (idx[:, None] * per + torch.arange(per)).flatten()
    new = nn.Linear(len(cols), lin.out_features, lin.bias is not None)
    new.weight.data = lin.weight.data[:, cols].clone()
    if lin.bias is not None:
        new.bias.data = lin.bias.data.clone()
    return new


def _prune_group(
    model: nn.Module, g: ChannelGroup, amount: float, min_channels: int
) -> ChannelPlan | None:
    c = model.get_submodule(g.producers[0]).out_channels
    lins = [m for m in map(model.get_submodule, g.consumers) if isinstance(m, nn.Linear)]
    if any(lin.in_features % c for lin in lins):
        return None
    keep = _keep_count(c, amount, min_channels)
    if keep >= c:
        return None
    score = sum(_score(model, p, g.paired_bn.get(p)) for p in g.producers)
    idx = torch.sort(torch.topk(score, keep).indices).values
    for name in g.producers:
        _set(model, name, _shrink_conv(model.get_submodule(name), idx, None))
    for name in g.members:
        mod = model.get_submodule(name)
        new = (
            _shrink_bn(mod, idx)
            if isinstance(mod, nn.BatchNorm2d)
            else _shrink_conv(mod, idx, None)
        )
        _set(model, name, new)
    for name in g.consumers:
        mod = model.get_submodule(name)
        new = (
            _shrink_linear(mod, idx, c)
            if isinstance(mod, nn.Linear)
            else _shrink_conv(mod, None, idx)
        )
        _set(model, name, new)
    return ChannelPlan(g.name, c, keep)


@torch.no_grad()
def prune_channels(
    model: nn.Module,
    amount: float,
    *,
    residual_amount: float = 0.0,
    head: bool = False,
    min_channels: int = 1,
) -> list[ChannelPlan]:
    """Remove ``amount`` of the channels of every prunable conv output, in place.

    Channel groups come from the traced graph (``_prune_graph``): ``residual_amount``
    applies to groups joined by skip connections (0 keeps them), ``head`` also prunes the
    channels a Linear reads through flatten; no group drops below ``min_channels``
    (narrow layers lose capacity first, wide ones have it to spare). Importance is
    |BN gamma| x L1 norm of the filter, so channels the BatchNorm already switched off go
    first. A model torch.fx cannot trace falls back to chains inside ``nn.Sequential``
    containers. Returns what changed."""
    groups = channel_groups(model)
    if groups is None:
        if residual_amount or head:
            log.warning("untraceable model: residual/head channels are kept")
        return _prune_sequential(model, amount, min_channels)
    plans = []
    for g in groups:
        a = residual_amount if g.residual else amount
        if a <= 0 or (g.head and not head):
            continue
        plan = _prune_group(model, g, a, min_channels)
        if plan is not None:
            plans.append(plan)
            log.info("pruned %s: %d -> %d channels", plan.producer, plan.before, plan.after)
    return plans


def _prune_sequential(model: nn.Module, amount: float, min_channels: int) -> list[ChannelPlan]:
    plans = []
    # Re-scan after each chain: pruning replaces modules the next chain may start from.
    for k in range(len(_chains(model))):
        name, chain, consumer = _chains(model)[k]
        producer = chain[0]
        c = producer.out_channels
        keep = _keep_count(c, amount, min_channels)
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
