"""The accumulator protocol every streaming metric follows.

An accumulator keeps only running *sums* (float64 tensors on the model's device) keyed by name.
Sums merge exactly: across batches by addition, and across data-parallel ranks by an all-reduce
(:meth:`Accumulator.all_reduce`). ``result()`` turns the sums into a tidy per-layer table.
"""
from __future__ import annotations

import pandas as pd
import torch

from ..capture import ViTLayout


class NonFiniteActivationError(FloatingPointError):
    """A layer produced NaN or infinite activations."""


class Accumulator:
    """Base class: running float64 sums, exact merging, and no-op sink callbacks."""

    name: str = "accumulator"

    def __init__(self, layout: ViTLayout):
        self.layout = layout
        self.sums: dict[str, torch.Tensor] = {}
        self.labels: torch.Tensor | None = None

    # ---- sink callbacks (see capture.trace)
    def begin_batch(self, labels: torch.Tensor) -> None:
        self.labels = labels

    def on_tokens(self, layer: str, tokens: torch.Tensor) -> None:
        pass

    def on_attention(self, block: int, attention: torch.Tensor) -> None:
        pass

    def on_logits(self, logits: torch.Tensor) -> None:
        pass

    # ---- sums
    def add(self, key: str, value: torch.Tensor | float) -> None:
        """Add to a running sum: a tensor (kept in float64 on its device) or a host-side number
        such as an image count (kept as a Python float: no device transfer, no sync)."""
        if not isinstance(value, torch.Tensor):
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
            return
        value = value.detach().to(torch.float64)
        if key in self.sums:
            self.sums[key] += value
        else:
            self.sums[key] = value.clone()

    def merge(self, other: "Accumulator") -> None:
        for key, value in other.sums.items():
            if isinstance(value, torch.Tensor) and key in self.sums:
                value = value.to(self.sums[key].device)
            self.add(key, value)

    def all_reduce(self) -> None:
        """Sum every running sum over the ranks of the default process group (torch.distributed)."""
        import torch.distributed as dist
        for key in sorted(self.sums):
            value = self.sums[key]
            if isinstance(value, torch.Tensor):
                dist.all_reduce(value)
            else:
                total = torch.tensor(value, dtype=torch.float64)
                dist.all_reduce(total)
                self.sums[key] = float(total)

    @classmethod
    def reads_attention(cls) -> bool:
        return cls.on_attention is not Accumulator.on_attention

    def result(self) -> pd.DataFrame:
        raise NotImplementedError
