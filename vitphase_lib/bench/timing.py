"""Timing the variants of :mod:`vitphase_lib.bench.plan`, interleaved.

After one warm-up pass of each variant, every repetition runs each variant once (the order
alternates between repetitions) and the median over repetitions is reported. Interleaving matters
on a shared machine: background load that comes and goes hits every variant alike.

In the ``capture`` runs (only those) each accumulator is wrapped in a thin proxy that adds up the
wall time spent in its callbacks, which the report shows as each accumulator's share of the
plain forward time. On a virtual machine the hypervisor may give the cores to other guests
(``steal`` time): :func:`cpu_times` and :func:`steal_between` measure the share taken while a
model was timed, so the report can say when its ratios are less reliable.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch.utils.data import Dataset

from ..capture import unfused_attention
from .plan import (CAPPED_VARIANTS, CAPTURE, CAPTURE_NO_ATTN, CAPTURE_NO_METRICS,
                   CAPTURE_PROFILE, CAPTURE_PROFILE_NO_ACI, GEOMETRY_PASS, PLAIN, PLAIN_UNFUSED,
                   TIME_TARGET, Caps, ProfileShare, sweep_accumulators)


@dataclass
class TimingResult:
    model: str
    images: int
    batch_size: int
    repeats: int
    device: str
    accumulators: list[str]
    seconds: dict[str, list[float]] = field(default_factory=dict)  # variant -> one per repeat
    # accumulator -> seconds inside its callbacks during each repeat of ``capture``
    callback_seconds: dict[str, list[float]] = field(default_factory=dict)
    caps: Caps | None = None          # of ``capture, profile caps`` (None: not run)
    per_head: bool = False            # every head's attention is part of the pass
    profile_share: ProfileShare | None = None  # the profile shares the caps reproduce
    # share of the CPU time taken by the hypervisor while the variants ran (None: unknown)
    steal_share: float | None = None

    def median(self, variant: str) -> float:
        return statistics.median(self.seconds[variant])

    def ratio_of(self, variant: str) -> float:
        """median(variant) / median(plain)."""
        return self.median(variant) / self.plain

    @property
    def plain(self) -> float:
        return self.median(PLAIN)

    @property
    def capture(self) -> float:
        return self.median(CAPTURE)

    @property
    def ratio(self) -> float:
        """median(capture) / median(plain)."""
        return self.capture / self.plain

    @property
    def paired_ratios(self) -> list[float]:
        """capture / plain within each repetition (shows how noisy the machine was)."""
        return [c / p for c, p in zip(self.seconds[CAPTURE], self.seconds[PLAIN])]

    @property
    def passed(self) -> bool:
        return self.ratio <= TIME_TARGET

    @property
    def profile_ratio(self) -> float | None:
        """median(capture, profile caps) / median(plain); None if that variant was not run."""
        return self.ratio_of(CAPTURE_PROFILE) if CAPTURE_PROFILE in self.seconds else None

    @property
    def profile_passed(self) -> bool | None:
        ratio = self.profile_ratio
        return None if ratio is None else ratio <= TIME_TARGET


class _Timed:
    """Forwards the sink callbacks to an accumulator and adds the wall time spent in them to
    ``clock[name]`` (on CUDA this is launch time, not kernel time)."""

    def __init__(self, accumulator, clock: dict[str, float]):
        self.accumulator, self.clock, self.key = accumulator, clock, type(accumulator).__name__
        clock.setdefault(self.key, 0.0)

    def _call(self, method: str, *args) -> None:
        start = time.perf_counter()
        getattr(self.accumulator, method)(*args)
        self.clock[self.key] += time.perf_counter() - start

    def reads_head_attention(self) -> bool:
        return self.accumulator.reads_head_attention()

    def begin_batch(self, labels, start=None):
        self._call("begin_batch", labels, start)

    def on_tokens(self, layer, tokens):
        self._call("on_tokens", layer, tokens)

    def on_attention(self, block, attention):
        self._call("on_attention", block, attention)

    def on_head_attention(self, block, weights):
        self._call("on_head_attention", block, weights)

    def on_logits(self, logits):
        self._call("on_logits", logits)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _plain_pass(model: torch.nn.Module, dataset: Dataset, config) -> None:
    """What ``run_pass`` does minus the capture: same loader, same device copies, same autocast."""
    from ..analysis import DTYPES, make_loader
    device = torch.device(config.device)
    autocast = torch.autocast(device.type, dtype=DTYPES[config.dtype],
                              enabled=config.dtype != "float32")
    with torch.inference_mode():
        for images, labels in make_loader(dataset, config):
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with autocast:
                model(images)


def variant_accumulators(variant: str, model: torch.nn.Module, caps: Caps | None,
                         per_head: bool) -> list:
    """The accumulators a capture variant feeds: the book's first sweep, every image for
    ``capture`` and ``capture, no attn``, the profile's ``caps`` for the capped variants."""
    if variant not in CAPPED_VARIANTS:
        return sweep_accumulators(model, Caps(), per_head)
    if caps is None or caps.aci is None or caps.pca is None:
        raise ValueError(f"variant {variant!r} needs the profile's caps (aci and pca), got {caps!r}")
    return sweep_accumulators(model, caps, per_head, aci=variant != CAPTURE_PROFILE_NO_ACI)


def run_variant(variant: str, model: torch.nn.Module, dataset: Dataset, config,
                clock: dict[str, float] | None = None, caps: Caps | None = None,
                per_head: bool = False) -> float:
    """Seconds for one pass of ``variant``; with ``clock``, a capture variant also adds the time
    spent in each accumulator's callbacks to it. Accumulators are built afresh every time:
    building them is part of a real pass."""
    from ..analysis import geometry_tables, run_pass
    device = torch.device(config.device)
    _sync(device)
    start = time.perf_counter()
    if variant == PLAIN:
        _plain_pass(model, dataset, config)
    elif variant == PLAIN_UNFUSED:
        with unfused_attention(model):
            _plain_pass(model, dataset, config)
    elif variant == CAPTURE_NO_METRICS:
        run_pass(model, dataset, [], config, attention=True, desc="bench")
    elif variant == GEOMETRY_PASS:
        geometry_tables(model, dataset, config, desc="bench")
    elif variant in (CAPTURE, CAPTURE_NO_ATTN, *CAPPED_VARIANTS):
        sinks = variant_accumulators(variant, model, caps, per_head)
        if clock is not None:
            sinks = [_Timed(accumulator, clock) for accumulator in sinks]
        run_pass(model, dataset, sinks, config, attention=variant != CAPTURE_NO_ATTN, desc="bench")
    else:
        raise ValueError(f"unknown variant {variant!r}")
    _sync(device)
    return time.perf_counter() - start


def _check_arguments(variants: Sequence[str], repeats: int, caps: Caps | None) -> None:
    """``plain`` and ``capture`` are always timed; caps are given exactly with a capped variant."""
    if PLAIN not in variants or CAPTURE not in variants:
        raise ValueError(f"variants must include {PLAIN!r} and {CAPTURE!r}, got {list(variants)}")
    capped = any(variant in CAPPED_VARIANTS for variant in variants)
    if capped != (caps is not None):
        raise ValueError(f"caps are given exactly when a variant of {list(CAPPED_VARIANTS)} is "
                         f"among the variants, got caps={caps!r} and {list(variants)}")
    if caps is not None:
        for name in ("aci", "pca"):
            value = getattr(caps, name)
            if value is None or value < 1:
                raise ValueError(f"caps.{name} must be >= 1, got {value!r}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")


def time_passes(model: torch.nn.Module, dataset: Dataset, batch_size: int, repeats: int,
                device: str = "cpu", variants: Sequence[str] = (PLAIN, CAPTURE),
                warmup: int = 1, label: str = "model", caps: Caps | None = None,
                per_head: bool = False) -> TimingResult:
    """Interleaved timing of ``variants`` over ``dataset`` (see the module docstring). ``caps``
    (the profile's, for ``capture, profile caps`` and ``capture, caps, no ACI``) is given exactly
    when one of those is among ``variants``; ``per_head`` adds every head's attention to the
    capture variants, as a profile with ``per_head`` does."""
    from ..analysis import PassConfig
    _check_arguments(variants, repeats, caps)
    config = PassConfig(batch_size=batch_size, device=device, progress=False)
    model = model.to(device).eval()
    for _ in range(warmup):
        for variant in variants:
            run_variant(variant, model, dataset, config, caps=caps, per_head=per_head)
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    callbacks: dict[str, list[float]] = {}
    for rep in range(repeats):
        order = list(variants) if rep % 2 == 0 else list(reversed(variants))
        for variant in order:
            clock: dict[str, float] | None = {} if variant == CAPTURE else None
            seconds[variant].append(run_variant(variant, model, dataset, config, clock, caps,
                                                per_head))
            for name, spent in (clock or {}).items():
                callbacks.setdefault(name, []).append(spent)
    names = [type(a).__name__ for a in sweep_accumulators(model, Caps(), per_head)]
    return TimingResult(model=label, images=len(dataset), batch_size=batch_size, repeats=repeats,
                        device=device, accumulators=names, seconds=seconds,
                        callback_seconds=callbacks, caps=caps, per_head=per_head)


def cpu_times(stat_path: str = "/proc/stat") -> tuple[int, int] | None:
    """(steal, total) CPU time of all cores since boot, in clock ticks, from the ``cpu`` line of
    ``/proc/stat`` (user nice system idle iowait irq softirq steal ...; guest time is already
    in user); None where the file or its steal column is missing (not Linux, an old kernel)."""
    try:
        with open(stat_path) as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    ticks = [int(value) for value in fields[1:9]]
    return ticks[7], sum(ticks)


def steal_between(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of CPU time stolen by the hypervisor between two :func:`cpu_times` readings
    (None if either is missing or no time passed)."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])
