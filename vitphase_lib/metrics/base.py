"""The accumulator interface every streaming metric follows, after torchmetrics' ``Metric``.

An accumulator is a sink of :func:`~vitphase_lib.capture.trace`: per batch it gets
:meth:`~Accumulator.begin_batch`, then the callbacks of the layers as the model runs
(:meth:`~Accumulator.on_tokens`, :meth:`~Accumulator.on_attention`,
:meth:`~Accumulator.on_head_attention`), then :meth:`~Accumulator.on_logits`. It keeps only its
*states*, and :meth:`~Accumulator.result` turns them into a tidy table.

The rules:

1. **States are declared up front**, in ``__init__``, with :meth:`~Accumulator.add_state`: a
   name, what the state has one value of (``per``) and how copies of it combine (``reduce``).
   ``per="layer"`` gives one value per layer, under the keys ``"{layer}/{name}"`` (``"pe/raw"``);
   ``per="layer/feature"`` the keys ``"{layer}/{feature}/{name}"``; no ``per``, the key ``name``.
   Updates name a declared state, or raise: a typo cannot create a state, and the keys follow
   from the declarations and the data.
2. **Two reductions.** ``"sum"``: a running sum (:attr:`~Accumulator.sums`), a float64 tensor on
   the model's device or, for counts, a host float (no device transfer, no synchronisation).
   ``"gather"``: one row per image at its global index in a host array
   (:attr:`~Accumulator.rows`, numpy, possibly memory-mapped), zero in the rows of images this
   instance has not seen. Both combine by addition, exactly (a gather's rows are disjoint):
   batches add to the running state, and instances that saw other images add with
   :meth:`~Accumulator.merge` (in one process) or :meth:`~Accumulator.all_reduce` (across the
   ranks of ``torch.distributed``). So any split of the images into batches and ranks gives the
   result of one batch, up to float rounding (``tests/test_accumulators.py`` checks this for
   every class in :data:`vitphase_lib.metrics.ACCUMULATORS`).
3. **The same keys on every rank.** A state is created the first time a batch updates it, and
   every batch updates the same keys (zeros where it has nothing to add, e.g. past a cap on the
   number of images), so every rank that streamed a batch holds the same keys; ``all_reduce``
   checks this before it reduces anything.
4. ``result()`` (abstract) reads the states and does not change them.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..capture import ViTLayout

REDUCTIONS = ("sum", "gather")


class NonFiniteActivationError(FloatingPointError):
    """A layer produced NaN or infinite activations."""


def check_max_images(name: str, value) -> None:
    """``value`` must be a positive int or None (every image)."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise TypeError(f"{name} must be a positive int or None, got {value!r}")


@dataclass(frozen=True)
class State:
    """A declared state: its keys are ``"{per[0]}/.../{name}"`` (``per`` names the parts, e.g.
    ``("layer", "feature")``; a part named ``layer`` or ``block`` must be one of the layout's)."""

    name: str
    per: tuple[str, ...]
    reduce: str  # "sum" or "gather"


class Accumulator(abc.ABC):
    """Base class: declared states, exact merging, and the sink callbacks (no-ops here)."""

    name: str = "accumulator"

    def __init__(self, layout: ViTLayout):
        self.layout = layout
        self.states: dict[str, State] = {}
        self.sums: dict[str, torch.Tensor | float] = {}  # the "sum" states, by key
        self.rows: dict[str, np.ndarray] = {}            # the "gather" states, by key
        self.labels: torch.Tensor | None = None
        self.batch_start = 0   # global index of the current batch's first image
        self._next_start = 0
        self._layers = set(layout.layer_names)

    # ---- declaring states
    def add_state(self, *names: str, per: str | None = None, reduce: str = "sum") -> None:
        """Declare states (in ``__init__``): ``per`` such as ``"layer"``, ``"block"`` or
        ``"layer/feature"`` (None: a single value), ``reduce`` ``"sum"`` or ``"gather"``."""
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        for name in names:
            self.states[name] = State(name, tuple(per.split("/")) if per else (), reduce)

    def _check_key(self, key: str, reduce: str) -> None:
        *where, name = key.split("/")
        state = self.states.get(name)
        valid = (state is not None and state.reduce == reduce and len(where) == len(state.per)
                 and all(self._valid_part(part, value) for part, value in zip(state.per, where)))
        if not valid:
            declared = {s.name: "/".join(s.per) or None for s in self.states.values() if s.reduce == reduce}
            raise KeyError(f"{type(self).__name__}: {key!r} is not a key of a declared {reduce!r} "
                           f"state (name: per) {declared}; declare states in __init__ with add_state")

    def _valid_part(self, part: str, value: str) -> bool:
        if part == "layer":
            return value in self._layers
        if part == "block":
            return value.isdigit() and 1 <= int(value) <= self.layout.num_blocks
        return bool(value)

    # ---- sink callbacks (see capture.trace and analysis.run_pass)
    def begin_batch(self, labels: torch.Tensor, start: int | None = None) -> None:
        """A new batch. ``start`` is the global index of its first image in the data set (given
        by ``run_pass``, which shards images across data-parallel ranks); None continues after
        the previous batch."""
        self.labels = labels
        self.batch_start = self._next_start if start is None else int(start)
        self._next_start = self.batch_start + len(labels)

    def on_tokens(self, layer: str, tokens: torch.Tensor) -> None:
        """One layer's tokens (B, T, D); ``layer`` is one of ``layout.layer_names``."""

    def on_attention(self, block: int, attention: torch.Tensor) -> None:
        """One block's head-averaged attention (B, T, T), float32, blocks numbered from 1."""

    def on_head_attention(self, block: int, weights: torch.Tensor) -> None:
        """Each head's attention (B, heads, T, T), float32; traced only for sinks that override
        this (it costs memory: :meth:`reads_head_attention`)."""

    def on_logits(self, logits: torch.Tensor) -> None:
        """The model's output (B, classes): the end of the batch."""

    @classmethod
    def reads_attention(cls) -> bool:
        return cls.on_attention is not Accumulator.on_attention or cls.reads_head_attention()

    @classmethod
    def reads_head_attention(cls) -> bool:
        return cls.on_head_attention is not Accumulator.on_head_attention

    def images_to_take(self, batch: int, max_images: int | None) -> int:
        """How many of the current batch's images have a global index below ``max_images`` (all
        with None): the first images streamed, the same ones on any number of ranks."""
        if max_images is None:
            return batch
        return max(0, min(batch, max_images - self.batch_start))

    # ---- updating states
    def add(self, key: str, value: torch.Tensor | float) -> None:
        """Add to the "sum" state ``key``: a tensor (kept in float64 on its device) or a
        host-side number such as an image count (kept as a Python float)."""
        self._check_key(key, "sum")
        if not isinstance(value, torch.Tensor):
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
            return
        value = value.detach().to(torch.float64)
        if key in self.sums:
            self.sums[key] += value
        else:
            self.sums[key] = value.clone()

    def running_sum(self, key: str, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """The "sum" state ``key`` itself, created as float64 zeros of ``shape``, to be updated
        in place (``index_add_``) where :meth:`add` would allocate a new tensor per batch."""
        self._check_key(key, "sum")
        if key not in self.sums:
            self.sums[key] = torch.zeros(shape, dtype=torch.float64, device=device)
        return self.sums[key]

    def put_rows(self, key: str, rows: np.ndarray) -> None:
        """Write the current batch's rows (one per image) of the "gather" state ``key`` at the
        images' global indices; the array is made by :meth:`new_rows` at first use."""
        self._check_key(key, "gather")
        if key not in self.rows:
            self.rows[key] = self.new_rows(key, rows.shape[1:], rows.dtype)
        self.rows[key][self.batch_start:self.batch_start + len(rows)] = rows

    def new_rows(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Zeros for every image of the data set, for the "gather" state ``key``; an accumulator
        that gathers knows how many images there are (and where to keep them)."""
        raise NotImplementedError(f"{type(self).__name__} declares no 'gather' state")

    # ---- combining instances
    def merge(self, other: "Accumulator") -> None:
        """Add the states of ``other``, an instance that streamed other images (another shard);
        what :meth:`all_reduce` does across processes."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        for key, value in other.sums.items():
            if isinstance(value, torch.Tensor) and key in self.sums:
                value = value.to(self.sums[key].device)
            self.add(key, value)
        for key, rows in other.rows.items():
            if key in self.rows:
                self.rows[key] += rows
            else:
                self._check_key(key, "gather")
                self.rows[key] = np.array(rows)  # a copy in memory

    def all_reduce(self, rows_per_chunk: int = 4096) -> None:
        """Combine every state over the ranks of the default process group (torch.distributed):
        each summed tensor in place, the host-side numbers together in one float64 tensor, the
        gathered rows in chunks of ``rows_per_chunk`` (memory stays bounded for large runs)."""
        import torch.distributed as dist

        from ..distributed import check_same_keys, collective_device
        check_same_keys([*self.sums, *(f"rows:{key}" for key in self.rows)],
                        f"accumulator {self.name!r}")
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
        device = collective_device()
        for key in sorted(self.rows):
            array = self.rows[key]
            for lo in range(0, len(array), rows_per_chunk):
                chunk = torch.from_numpy(np.ascontiguousarray(array[lo:lo + rows_per_chunk])).to(device)
                dist.all_reduce(chunk)
                array[lo:lo + rows_per_chunk] = chunk.cpu().numpy()

    # ---- the result
    @abc.abstractmethod
    def result(self) -> pd.DataFrame:
        """The tidy table of the states (one row per layer, block, ...); changes nothing."""
