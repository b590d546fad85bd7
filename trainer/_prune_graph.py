"""Channel groups from the traced graph (torch.fx): which tensors must shrink together.

A group is one channel space: the Conv2d outputs that write it (producers), the
BatchNorms and depthwise convs that keep it (members), and the Conv2d / Linear inputs
that read it (consumers). A residual ``add`` merges the spaces of its operands, so every
block of a MobileNetV2 stage shares one group and its skip connections stay aligned. A
flatten into a Linear is followed (channel-major, the NCHW flatten order). Any other use
(model input or output, concat, reshape, an unknown op) pins the group: it is never pruned.
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["ChannelGroup", "channel_groups"]

log = logging.getLogger(__name__)

_KEEP = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.GELU, nn.Identity, nn.Dropout,
         nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)  # fmt: skip
_KEEP_FN = (torch.relu, nn.functional.relu, nn.functional.relu6, nn.functional.dropout)
_ADD = (operator.add, operator.iadd, torch.add)


@dataclass
class ChannelGroup:
    producers: list[str] = field(default_factory=list)  # Conv2d, output channels
    paired_bn: dict[str, str] = field(default_factory=dict)  # producer -> its BatchNorm
    members: list[str] = field(default_factory=list)  # BatchNorm2d / depthwise Conv2d
    consumers: list[str] = field(default_factory=list)  # Conv2d / Linear, input channels
    residual: bool = False  # joined by an add (skip connection)
    head: bool = False  # read by a Linear through flatten
    pinned: bool = False

    @property
    def name(self) -> str:
        return self.producers[0]


class _Spaces:
    """Union-find over channel spaces, each carrying a ChannelGroup."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.groups: list[ChannelGroup] = []

    def new(self, pinned: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.groups.append(ChannelGroup(pinned=pinned))
        return len(self.parent) - 1

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def group(self, s: int) -> ChannelGroup:
        return self.groups[self.find(s)]

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            ga, gb = self.groups[a], self.groups[b]
            for f in ("producers", "members", "consumers"):
                getattr(ga, f).extend(getattr(gb, f))
            ga.paired_bn.update(gb.paired_bn)
            ga.residual |= gb.residual
            ga.head |= gb.head
            ga.pinned |= gb.pinned
            self.parent[b] = a
        return a


def channel_groups(model: nn.Module) -> list[ChannelGroup] | None:
    """Prunable groups in execution order, or None when the model does not trace."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as e:  # data-dependent control flow and the like
        log.info("torch.fx cannot trace %s (%s)", type(model).__name__, e)
        return None
    sp = _Spaces()
    space: dict[torch.fx.Node, int] = {}  # 4D tensor (or pooled) -> its channel space
    flat: dict[torch.fx.Node, int] = {}  # flattened tensor -> the space it came from
    conv_out: dict[torch.fx.Node, str] = {}  # producer output node -> producer name

    def pin_args(node: torch.fx.Node) -> None:
        for a in node.all_input_nodes:
            s = space.get(a, flat.get(a))
            if s is not None:
                sp.group(s).pinned = True

    for node in graph.nodes:
        args = [a for a in node.args if isinstance(a, torch.fx.Node)]
        src = args[0] if args else None
        if node.op == "call_module":
            mod = model.get_submodule(node.target)
            if src in flat and isinstance(mod, _KEEP):
                flat[node] = flat[src]
            elif src in flat and isinstance(mod, nn.Linear):
                g = sp.group(flat[src])
                g.consumers.append(node.target)
                g.head = True
                space[node] = sp.new(pinned=True)
            elif src not in space:
                pin_args(node)
                space[node] = sp.new(pinned=True)
            elif isinstance(mod, nn.Conv2d) and mod.groups == 1:
                sp.group(space[src]).consumers.append(node.target)
                space[node] = s = sp.new()
                sp.group(s).producers.append(node.target)
                conv_out[node] = node.target
            elif isinstance(mod, nn.Conv2d) and mod.groups == mod.in_channels == mod.out_channels:
                sp.group(space[src]).members.append(node.target)
                space[node] = space[src]
            elif isinstance(mod, nn.BatchNorm2d):
                g = sp.group(space[src])
                g.members.append(node.target)
                if src in conv_out:
                    g.paired_bn[conv_out[src]] = node.target
                space[node] = space[src]
            elif isinstance(mod, _KEEP):
                space[node] = space[src]
            elif isinstance(mod, nn.Flatten) and mod.start_dim == 1 and mod.end_dim == -1:
                flat[node] = space[src]
            else:
                pin_args(node)
                space[node] = sp.new(pinned=True)
        elif node.op == "call_function" and node.target in _ADD and len(args) == 2:
            if all(a in space for a in args):
                space[node] = sp.union(space[args[0]], space[args[1]])
                sp.group(space[node]).residual = True
            else:
                pin_args(node)
                space[node] = sp.new(pinned=True)
        elif node.op == "call_function" and node.target in _KEEP_FN and src in space:
            space[node] = space[src]
        elif node.op in ("call_function", "call_method") and node.target in (
            torch.flatten,
            "flatten",
        ):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            if src in space and start == 1 and len(node.args) <= 2:
                flat[node] = space[src]
            else:
                pin_args(node)
                space[node] = sp.new(pinned=True)
        else:  # placeholder, output, get_attr and every op not understood above
            pin_args(node)
            space[node] = sp.new(pinned=True)
    roots = sorted({sp.find(s) for s in range(len(sp.parent))})
    groups = [sp.groups[r] for r in roots]
    return [g for g in groups if g.producers and not g.pinned]
