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
    def add(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().to(torch.float64)
        if key in self.sums:
            self.sums[key] += value
        else:
            self.sums[key] = value.clone()

    def merge(self, other: "Accumulator") -> None:
        for key, value in other.sums.items():
            self.add(key, value.to(next(iter(self.sums.values())).device) if self.sums else value)

    def all_reduce(self) -> None:
        """Sum every running sum over the ranks of the default process group (torch.distributed)."""
        import torch.distributed as dist
        for key in sorted(self.sums):
            dist.all_reduce(self.sums[key])

    def result(self) -> pd.DataFrame:
        raise NotImplementedError
