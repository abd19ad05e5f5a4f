"""Peak memory of the streaming pass at n and 4n images: is it flat in the number of images?

Each measurement runs in a fresh subprocess (``python -c``) that builds the model, streams the
images through ``run_pass`` with the accumulators of the book's first sweep (every image) and
reports its peak RSS and, on CUDA, ``torch.cuda.max_memory_allocated``. Rules and reasons:

* The peak comes from ``VmHWM`` in ``/proc/self/status``, reset to the current RSS
  (``/proc/self/clear_refs``) once the model is built, just before the pass. The child's
  ``ru_maxrss`` is *not* its own peak on Linux: exec carries the parent's peak over, so a child
  of the (large) benchmark process reports at least the parent's. It is reported, not used,
  except where /proc is missing.
* The images are generated from their index (:class:`~vitphase_lib.bench.plan.RandomImages`),
  so the data set takes no memory and only the pass can make the peak grow.
* The children run with glibc's mmap threshold fixed at its default
  (:data:`CHILD_ALLOCATOR_ENV`; a value already in the environment is kept). Left dynamic, glibc
  raises the threshold each time a large block is freed, and whether the next activation buffer
  is a fresh mapping or comes from a fragmented heap depends on the order of earlier frees: the
  peak then measures the allocator rather than the pass. The fixed threshold makes the memory
  runs slower; the timing runs, in the parent, are unaffected.

Target: mem(4n) / mem(n) <= :data:`~vitphase_lib.bench.plan.MEMORY_TARGET` (CUDA peak on CUDA,
peak RSS otherwise). The peak RSS includes the interpreter, torch and the model, which dilutes
the ratio, so the report also gives the pass's own increment and the difference in MB.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

import torch

from .plan import MEMORY_TARGET, Caps, ModelSpec, RandomImages, sweep_accumulators

# glibc's default mmap threshold (128 KiB), fixed in the children (module docstring)
CHILD_ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 * 2**10)}


@dataclass
class MemoryResult:
    images: int
    peak_rss_mb: float          # the child's peak RSS during the pass (see peak_source)
    before_pass_rss_mb: float   # the child's RSS just before the pass (torch imported, model built)
    ru_maxrss_mb: float         # resource.getrusage(RUSAGE_SELF).ru_maxrss at the end, as reported
    peak_source: str            # "VmHWM" (Linux, peak reset before the pass) or "ru_maxrss"
    cuda_peak_mb: float | None  # torch.cuda.max_memory_allocated during the pass, on CUDA
    seconds: float
    mmap_threshold: str | None  # MALLOC_MMAP_THRESHOLD_ as the child saw it (None: dynamic)

    @property
    def pass_increment_mb(self) -> float:
        return self.peak_rss_mb - self.before_pass_rss_mb


@dataclass
class MemoryScaling:
    model: str
    device: str
    batch_size: int
    small: MemoryResult  # n images
    large: MemoryResult  # 4n images

    @property
    def ratio(self) -> float:
        """peak(4n) / peak(n): CUDA peak allocation on CUDA, peak RSS otherwise."""
        if self.small.cuda_peak_mb is not None and self.large.cuda_peak_mb is not None:
            return self.large.cuda_peak_mb / self.small.cuda_peak_mb
        return self.large.peak_rss_mb / self.small.peak_rss_mb

    @property
    def rss_ratio(self) -> float:
        return self.large.peak_rss_mb / self.small.peak_rss_mb

    @property
    def passed(self) -> bool:
        return self.ratio <= MEMORY_TARGET


def _maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _proc_status_mb(field_name: str) -> float | None:
    """VmRSS / VmHWM of this process from /proc/self/status (Linux), in MB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _memory_child(spec_json: str, images: int, device: str, per_head: bool = False) -> dict:
    """Runs in the fresh subprocess: one streaming pass, then the peaks.

    ``ru_maxrss`` of a child started with fork/vfork + exec starts at the *parent's* peak (Linux
    carries it over at exec in ``signal->maxrss``), so a child of a big benchmark process reports
    the parent's peak. Where /proc is available the peak is therefore read from ``VmHWM``, which
    belongs to the child's own address space and is reset to the current RSS just before the
    pass; ``ru_maxrss`` is returned too.
    """
    from ..analysis import PassConfig, run_pass
    spec = ModelSpec.from_json(spec_json)
    model = spec.build().to(device)
    accumulators = sweep_accumulators(model, Caps(), per_head)
    dataset = RandomImages(images, spec.channels, spec.img_size, num_classes=model.num_classes)
    config = PassConfig(batch_size=spec.batch_size, device=device, progress=False)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = _proc_status_mb("VmRSS")
    use_hwm = before is not None and _reset_peak_rss() and _proc_status_mb("VmHWM") is not None
    if not use_hwm:
        before = _maxrss_mb()
    start = time.perf_counter()
    run_pass(model, dataset, accumulators, config, attention=True, desc="bench-memory")
    from ..metrics.base import Accumulator
    for accumulator in accumulators:  # read the results, as a real analysis would
        if type(accumulator).result is not Accumulator.result:  # moments are read by other code
            accumulator.result()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"images": images, "peak_rss_mb": _proc_status_mb("VmHWM") if use_hwm else _maxrss_mb(),
            "before_pass_rss_mb": before, "ru_maxrss_mb": _maxrss_mb(),
            "peak_source": "VmHWM" if use_hwm else "ru_maxrss",
            "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "seconds": seconds, "mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_")}


_CHILD_CODE = ("import json, sys; from vitphase_lib.bench.memory import _memory_child; "
               "result = _memory_child(sys.argv[1], int(sys.argv[2]), sys.argv[3], "
               "sys.argv[4] == '1'); "
               "print('VITPHASE-BENCH ' + json.dumps(result))")


def child_environment() -> dict[str, str]:
    """The memory children's environment: this process's, with :data:`CHILD_ALLOCATOR_ENV` for
    each of its variables the environment does not already set."""
    return {**CHILD_ALLOCATOR_ENV, **os.environ}


def _start_child(spec: ModelSpec, images: int, device: str,
                 per_head: bool = False) -> subprocess.Popen:
    arguments = [spec.to_json(), str(images), device, "1" if per_head else "0"]
    return subprocess.Popen([sys.executable, "-c", _CHILD_CODE, *arguments],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_environment())


def _finish_child(proc: subprocess.Popen, timeout: float) -> MemoryResult:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    lines = [line for line in stdout.splitlines() if line.startswith("VITPHASE-BENCH ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"memory benchmark subprocess failed (exit {proc.returncode}):\n"
                           f"{stderr[-3000:]}")
    return MemoryResult(**json.loads(lines[-1][len("VITPHASE-BENCH "):]))


def measure_memory(spec: ModelSpec, images: int, device: str = "cpu", timeout: float = 1800,
                   per_head: bool = False) -> MemoryResult:
    """Peak memory of one streaming pass over ``images`` images, in a fresh Python process."""
    return _finish_child(_start_child(spec, images, device, per_head), timeout)


def memory_scaling(spec: ModelSpec, n: int, device: str = "cpu", parallel: bool = False,
                   timeout: float = 1800, per_head: bool = False) -> MemoryScaling:
    """Peak memory at ``n`` and ``4 n`` images, each in its own fresh subprocess.

    With ``parallel`` the two children run at the same time: the peaks are per process, so only
    their wall-clock ``seconds`` change (used by the tests to save time).
    """
    if parallel:
        procs = [_start_child(spec, n, device, per_head), _start_child(spec, 4 * n, device, per_head)]
        small, large = [_finish_child(p, timeout) for p in procs]
    else:
        small, large = (measure_memory(spec, count, device, timeout, per_head)
                        for count in (n, 4 * n))
    return MemoryScaling(model=spec.label, device=device, batch_size=spec.batch_size,
                         small=small, large=large)
