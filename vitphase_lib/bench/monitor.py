"""``vitphase bench``, the monitor's part: what a :class:`~vitphase_lib.monitor.Monitor` call costs
next to a training epoch of mini-S.

Target: one call at the default settings costs at most 5% of an epoch (the monitor called once
per epoch). Training steps and monitor calls are timed interleaved in one process: each repeat
runs a slice of training steps of the zoo's recipe (batch 128, AdamW, label smoothing, crop and
flip), one call with the Monitor's defaults and one with the zoo's own monitor (the defaults
plus the Information Scrambling Index); the medians are reported. The epoch time is the median
step time x the steps of one Fashion-MNIST epoch (60 000 images).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

TARGET = 0.05          # monitor call / training epoch
TRAIN_IMAGES = 60_000  # one Fashion-MNIST epoch


@dataclass(frozen=True)
class MonitorTiming:
    model: str
    step_seconds: float        # one training step (median)
    steps_per_epoch: int
    default_seconds: float     # one Monitor call, default metrics (median)
    zoo_seconds: float         # one call of the zoo's monitor, ISI included (median)
    probe_images: int

    @property
    def epoch_seconds(self) -> float:
        return self.step_seconds * self.steps_per_epoch

    @property
    def default_share(self) -> float:
        return self.default_seconds / self.epoch_seconds

    @property
    def zoo_share(self) -> float:
        return self.zoo_seconds / self.epoch_seconds


def time_monitor(name: str = "mini-s", repeats: int = 3, steps: int = 40, seed: int = 0,
                 probe_images: int | None = None) -> MonitorTiming:
    """Training steps of ``name``'s recipe and monitor calls, interleaved ``repeats`` times
    (``probe_images``: None for the zoo's probe set)."""
    from ..models import ALL_MINI_CONFIGS, build_mini_vit
    from ..monitor import DEFAULT_METRICS, Monitor
    from ..train import _param_groups, augment
    from ..zoo import ZOO_TRAINING, monitor_spec

    recipe, spec = ZOO_TRAINING[name], monitor_spec(name)
    if probe_images is not None:
        spec = replace(spec, probe_images=probe_images)
    config = ALL_MINI_CONFIGS[name]
    torch.manual_seed(seed)
    model = build_mini_vit(config).train()
    optimizer = torch.optim.AdamW(_param_groups(model, recipe.weight_decay), lr=recipe.lr)
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(recipe.batch_size, config.in_chans, config.img_size, config.img_size,
                         generator=generator)
    labels = torch.randint(0, config.num_classes, (recipe.batch_size,), generator=generator)
    probe = torch.randn(spec.probe_images, config.in_chans, config.img_size, config.img_size,
                        generator=generator)
    probe_labels = torch.randint(0, config.num_classes, (spec.probe_images,), generator=generator)
    default = Monitor(probe, probe_labels, metrics=DEFAULT_METRICS)
    zoo = Monitor(probe, probe_labels, metrics=spec.metrics, aci_images=spec.aci_images,
                  infox_dims=spec.infox_dims)

    def train_steps(count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            batch = augment(images, generator, recipe.crop_padding)
            loss = F.cross_entropy(model(batch), labels, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - start) / count

    def call(monitor: Monitor, step: int) -> float:
        start = time.perf_counter()
        monitor(model, step=step, force=True)
        return time.perf_counter() - start

    train_steps(3), call(default, -1), call(zoo, -1)  # warm-up
    step_times, default_times, zoo_times = [], [], []
    for repeat in range(repeats):
        step_times.append(train_steps(steps))
        default_times.append(call(default, repeat))
        zoo_times.append(call(zoo, repeat))
    return MonitorTiming(model=name, step_seconds=statistics.median(step_times),
                         steps_per_epoch=-(-TRAIN_IMAGES // recipe.batch_size),
                         default_seconds=statistics.median(default_times),
                         zoo_seconds=statistics.median(zoo_times), probe_images=spec.probe_images)


def format_monitor(timing: MonitorTiming) -> str:
    verdict = "PASS" if timing.default_share <= TARGET else "MISS"
    return "\n".join([
        f"Training-time monitor ({timing.model}, {timing.probe_images} probe images; target: one "
        f"call <= {TARGET:.0%} of an epoch):",
        f"  training epoch (batch of the recipe, {timing.steps_per_epoch} steps): "
        f"{timing.epoch_seconds:.1f} s ({timing.step_seconds * 1e3:.0f} ms a step)",
        f"  Monitor, default metrics: {timing.default_seconds:.2f} s = "
        f"{timing.default_share:.1%} of an epoch, {verdict}",
        f"  the zoo's monitor (+ ISI): {timing.zoo_seconds:.2f} s = {timing.zoo_share:.1%} of an epoch",
    ])
