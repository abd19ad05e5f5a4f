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


def check_max_images(name: str, value) -> None:
    """``value`` must be a positive int or None (every image)."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise TypeError(f"{name} must be a positive int or None, got {value!r}")


class Accumulator:
    """Base class: running float64 sums, exact merging, and no-op sink callbacks."""

    name: str = "accumulator"

    def __init__(self, layout: ViTLayout):
        self.layout = layout
        self.sums: dict[str, torch.Tensor] = {}
        self.labels: torch.Tensor | None = None
        self.batch_start = 0   # global index of the current batch's first image
        self._next_start = 0

    # ---- sink callbacks (see capture.trace)
    def begin_batch(self, labels: torch.Tensor, start: int | None = None) -> None:
        """A new batch. ``start`` is the global index of its first image in the data set (given
        by ``run_pass``, which shards images across data-parallel ranks); None continues after
        the previous batch."""
        self.labels = labels
        self.batch_start = self._next_start if start is None else int(start)
        self._next_start = self.batch_start + len(labels)

    def on_tokens(self, layer: str, tokens: torch.Tensor) -> None:
        pass

    def on_attention(self, block: int, attention: torch.Tensor) -> None:
        pass

    def on_head_attention(self, block: int, weights: torch.Tensor) -> None:
        """Each head's attention (B, heads, T, T), float32; traced only for sinks that define it."""

    def on_logits(self, logits: torch.Tensor) -> None:
        pass

    def images_to_take(self, batch: int, max_images: int | None) -> int:
        """How many of the current batch's images have a global index below ``max_images`` (all
        with None): the first images streamed, the same ones on any number of ranks."""
        if max_images is None:
            return batch
        return max(0, min(batch, max_images - self.batch_start))

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
        """Sum every running sum over the ranks of the default process group (torch.distributed):
        each tensor in place, the host-side numbers together in one float64 tensor."""
        import torch.distributed as dist

        from ..distributed import check_same_keys, collective_device
        check_same_keys(list(self.sums), f"accumulator {self.name!r}")
        numbers = sorted(k for k, v in self.sums.items() if not isinstance(v, torch.Tensor))
        for key in sorted(set(self.sums) - set(numbers)):
            value = self.sums[key]
            on_device = value.to(collective_device(value.device))
            dist.all_reduce(on_device)
            self.sums[key] = on_device.to(value.device)
        if numbers:
            totals = torch.tensor([self.sums[k] for k in numbers], dtype=torch.float64,
                                  device=collective_device())
            dist.all_reduce(totals)
            self.sums.update(zip(numbers, totals.tolist()))

    @classmethod
    def reads_attention(cls) -> bool:
        return cls.on_attention is not Accumulator.on_attention or cls.reads_head_attention()

    @classmethod
    def reads_head_attention(cls) -> bool:
        return cls.on_head_attention is not Accumulator.on_head_attention

    def result(self) -> pd.DataFrame:
        raise NotImplementedError
