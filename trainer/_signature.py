"""Any model's signature: named, typed inputs and outputs with symbolic dimensions.

A user hands ``compress`` example inputs as a mapping of named arrays/tensors, a tuple or
a single tensor (named from ``forward``'s parameters), of any dtype the runtimes take;
nothing is cast. Outputs may be a tensor, a tuple (``output_0``...) or a dict /
``transformers`` ``ModelOutput`` (its keys). ``NamedIO`` wraps the model so every exporter
sees positional inputs in a fixed order and a flat tuple of outputs.

Symbolic dims: inputs get ``{0: "batch"}`` unless ``dynamic_dims`` says more (e.g.
``{"input_ids": {0: "batch", 1: "sequence"}}``); output dims are inferred by running the
model again with each symbol's size changed and seeing which output axes follow.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from edgefleet.sdk import ConfigError, TensorSpec
from torch import nn

__all__ = [
    "ModelIO",
    "NamedIO",
    "Dims",
    "forward_names",
    "as_feeds",
    "flatten_outputs",
    "describe_io",
    "resize_axis",
    "take_rows",
    "SUPPORTED_DTYPES",
]

log = logging.getLogger(__name__)

Dims = dict[str, dict[int, str]]  # input or output name -> {axis: symbol}
SUPPORTED_DTYPES = ("float32", "float16", "int64", "int32", "uint8", "int8", "bool")


def forward_names(model: nn.Module) -> list[str]:
    """Names of ``forward``'s positional-or-keyword parameters, in order."""
    params = inspect.signature(model.forward).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _to_numpy(name: str, v: Any) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if not isinstance(v, np.ndarray):
        raise ConfigError(f"example input {name!r}: expected a numpy array or torch tensor, "
                          f"got {type(v).__name__}")  # fmt: skip
    if v.dtype.name not in SUPPORTED_DTYPES:
        raise ConfigError(f"example input {name!r} has dtype {v.dtype.name}; the runtimes take "
                          f"{', '.join(SUPPORTED_DTYPES)} (cast it yourself: nothing is cast "
                          "silently)")  # fmt: skip
    if v.ndim == 0:
        raise ConfigError(f"example input {name!r} is a scalar; expected a batch (N, ...)")
    return np.ascontiguousarray(v)


def as_feeds(model: nn.Module, example: Any, names: Sequence[str] | None = None
             ) -> dict[str, np.ndarray]:  # fmt: skip
    """Example inputs as {name: array}, dtypes kept. A tuple/single array is named from
    ``names`` or ``forward``'s parameters."""
    if isinstance(example, Mapping):
        feeds = {str(k): _to_numpy(str(k), v) for k, v in example.items()}
        if names is not None and list(names) != list(feeds):
            raise ConfigError(f"input_names {list(names)} differ from the example's keys "
                              f"{list(feeds)}")  # fmt: skip
    else:
        values = list(example) if isinstance(example, tuple | list) else [example]
        params = list(names) if names is not None else forward_names(model)
        if len(params) < len(values):
            raise ConfigError(
                f"{len(values)} example inputs but forward() takes "
                f"{len(params)} named parameters ({params}); pass a dict"
            )
        feeds = {n: _to_numpy(n, v) for n, v in zip(params, values, strict=False)}
    if not feeds:
        raise ConfigError("no example inputs given")
    sizes = {n: a.shape[0] for n, a in feeds.items()}
    if len(set(sizes.values())) > 1:
        raise ConfigError(f"example inputs disagree on the batch size (axis 0): {sizes}")
    return feeds


def flatten_outputs(raw: Any, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """A model's outputs as {name: tensor}: tensor -> names[0] or "output"; tuple/list ->
    output_0...; dict/ModelOutput -> its keys (None values dropped)."""
    if isinstance(raw, torch.Tensor):
        items = [("output", raw)]
    elif isinstance(raw, Mapping):  # dict and transformers.ModelOutput
        items = [(str(k), v) for k, v in raw.items() if isinstance(v, torch.Tensor)]
    elif isinstance(raw, tuple | list):
        items = [(f"output_{i}", v) for i, v in enumerate(raw) if isinstance(v, torch.Tensor)]
    else:
        raise ConfigError(f"model returned {type(raw).__name__}; expected a tensor, a tuple "
                          "of tensors or a dict/ModelOutput of tensors")  # fmt: skip
    if not items:
        raise ConfigError("model returned no tensors")
    if names is not None:
        if len(names) != len(items):
            raise ConfigError(f"output_names names {len(names)} outputs, the model returns "
                              f"{len(items)} ({[k for k, _ in items]})")  # fmt: skip
        items = [(n, v) for n, (_, v) in zip(names, items, strict=True)]
    return dict(items)


class NamedIO(nn.Module):
    """Positional inputs in ``input_names`` order -> tuple of outputs in ``output_names``
    order: the one calling convention every exporter gets."""

    def __init__(self, model: nn.Module, input_names: Sequence[str],
                 output_names: Sequence[str] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.model = model
        self.input_names = list(input_names)
        self.output_names = None if output_names is None else list(output_names)
        self._by_keyword = set(self.input_names) <= set(forward_names(model))

    def named(self, *args: torch.Tensor) -> dict[str, torch.Tensor]:
        if self._by_keyword:
            raw = self.model(**dict(zip(self.input_names, args, strict=True)))
        else:
            raw = self.model(*args)
        return flatten_outputs(raw, self.output_names)

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.named(*args).values())


@dataclass
class ModelIO:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    input_dims: Dims = field(default_factory=dict)
    output_dims: Dims = field(default_factory=dict)

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def symbols(self) -> list[str]:
        return sorted({s for d in self.input_dims.values() for s in d.values()})


def take_rows(feeds: Mapping[str, np.ndarray], idx: Any) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v[idx]) for k, v in feeds.items()}


def resize_axis(a: np.ndarray, axis: int, size: int, pad: float = 0) -> np.ndarray:
    """Truncate, or pad with ``pad`` (batch axis: repeat rows), ``axis`` to ``size``."""
    n = a.shape[axis]
    if size <= n:
        return np.ascontiguousarray(np.take(a, np.arange(size), axis=axis))
    if axis == 0:
        return np.ascontiguousarray(np.take(a, np.arange(size) % n, axis=0))
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, size - n)
    return np.pad(a, widths, constant_values=np.array(pad).astype(a.dtype))


def _resize_symbol(feeds: Mapping[str, np.ndarray], dims: Dims, symbol: str, size: int,
                   pad_values: Mapping[str, float]) -> dict[str, np.ndarray]:  # fmt: skip
    out = {}
    for k, a in feeds.items():
        for axis, s in dims.get(k, {}).items():
            if s == symbol:
                a = resize_axis(a, axis, size, pad_values.get(k, 0))
        out[k] = a
    return out


@torch.no_grad()
def _run(wrapper: NamedIO, feeds: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return wrapper.named(*(torch.from_numpy(feeds[n]) for n in wrapper.input_names))


def describe_io(
    wrapper: NamedIO, feeds: Mapping[str, np.ndarray], dynamic_dims: Mapping | None = None,
    pad_values: Mapping[str, float] | None = None,
) -> ModelIO:  # fmt: skip
    """Input/output specs with symbolic dims (see the module docstring)."""
    dynamic_dims = dynamic_dims or {}
    unknown = sorted(set(dynamic_dims) - set(feeds))
    if unknown:
        raise ConfigError(f"dynamic_dims names unknown inputs {unknown}; inputs: {list(feeds)}")
    in_dims: Dims = {}
    for k, a in feeds.items():
        d = {int(ax): str(s) for ax, s in dynamic_dims.get(k, {0: "batch"}).items()}
        bad = [ax for ax in d if not 0 <= ax < a.ndim]
        if bad:
            raise ConfigError(f"dynamic_dims[{k!r}] names axes {bad}; {k} has {a.ndim} axes")
        in_dims[k] = d
    base = {k: v.numpy() for k, v in _run(wrapper, feeds).items()}
    out_dims: Dims = {k: {} for k in base}
    sizes = {s: feeds[k].shape[ax] for k, d in in_dims.items() for ax, s in d.items()}
    for symbol, n in sizes.items():
        probe = _run(wrapper, _resize_symbol(feeds, in_dims, symbol, n + 1, pad_values or {}))
        for k, t in probe.items():
            for ax in range(t.ndim):
                if ax < base[k].ndim and t.shape[ax] != base[k].shape[ax]:
                    out_dims[k][ax] = symbol
    inputs = [_spec(k, a, in_dims[k]) for k, a in feeds.items()]
    outputs = [_spec(k, a, out_dims[k]) for k, a in base.items()]
    for s in outputs:
        if s.dtype not in SUPPORTED_DTYPES:
            raise ConfigError(f"output {s.name!r} has dtype {s.dtype}; expected one of "
                              f"{', '.join(SUPPORTED_DTYPES)}")  # fmt: skip
    log.info("model signature: %s -> %s", [s.describe() for s in inputs],
             [s.describe() for s in outputs])  # fmt: skip
    return ModelIO(inputs, outputs, in_dims, out_dims)


def _spec(name: str, a: np.ndarray, dims: Mapping[int, str]) -> TensorSpec:
    shape = [dims.get(ax, int(n)) for ax, n in enumerate(a.shape)]
    return TensorSpec(name=name, dtype=a.dtype.name, shape=shape)
