"""Running a :class:`~vitphase_lib.bench.plan.BenchPlan`: time every case, then its memory."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from .memory import MemoryScaling, memory_scaling
from .monitor import MonitorTiming
from .plan import CAPPED_VARIANTS, BenchCase, BenchPlan, ProfileShare, random_images
from .timing import TimingResult, cpu_times, steal_between, time_passes


@dataclass
class BenchReport:
    device: str
    threads: int
    timings: list[TimingResult]
    memory: list[MemoryScaling]
    seconds: float
    quick: bool = False
    monitor: MonitorTiming | None = None


def _share(case: BenchCase, plan: BenchPlan) -> ProfileShare | None:
    """The profile's share of images, when the case names a profile and a capped variant runs."""
    if case.profile is None or not set(CAPPED_VARIANTS) & set(plan.variants):
        return None
    return ProfileShare.read(case.profile)


def time_case(case: BenchCase, plan: BenchPlan, device: str, log) -> TimingResult:
    """Every variant of ``plan`` on ``case``'s model (the capped ones only with a profile)."""
    spec, share = case.spec, _share(case, plan)
    per_head = share.per_head if share is not None else False
    caps = share.caps(case.timing_images) if share is not None else None
    variants = tuple(v for v in plan.variants if v not in CAPPED_VARIANTS or share is not None)
    log(f"{spec.label}: timing {len(variants)} variants x {plan.repeats} repeats over "
        f"{case.timing_images} images, batch {spec.batch_size}"
        + (f", profile caps: ACI on {caps.aci}, PCA on {caps.pca} images" if caps else "")
        + (f", every head's ACI on {caps.head_aci}" if caps and per_head else "") + " ...")
    model = spec.build()
    dataset = random_images(case.timing_images, spec.channels, spec.img_size,
                            num_classes=model.num_classes)
    ticks_before = cpu_times()
    timing = time_passes(model, dataset, spec.batch_size, plan.repeats, device, variants,
                         label=spec.label, caps=caps, per_head=per_head)
    return replace(timing, profile_share=share, steal_share=steal_between(ticks_before, cpu_times()))


def run_benchmark(plan: BenchPlan, device: str = "cpu", log=print) -> BenchReport:
    start = time.perf_counter()

    def stamped(message: str) -> None:
        log(f"[bench {time.perf_counter() - start:4.0f} s] {message}")
    timings, memory = [], []
    for case in plan.cases:
        timings.append(time_case(case, plan, device, stamped))
        if case.memory_n is None:
            continue
        stamped(f"{case.spec.label}: peak memory at {case.memory_n} and {4 * case.memory_n} "
                f"images, batch {case.memory_spec.batch_size} (fresh subprocesses) ...")
        memory.append(memory_scaling(case.memory_spec, case.memory_n, device,
                                     parallel=plan.parallel_memory,
                                     per_head=timings[-1].per_head))
    stamped("done")
    return BenchReport(device=device, threads=torch.get_num_threads(), timings=timings,
                       memory=memory, seconds=time.perf_counter() - start, quick=plan.quick)
