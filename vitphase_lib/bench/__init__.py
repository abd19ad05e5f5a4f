"""``vitphase bench``: what the book's streaming analysis pass costs, in time and in memory,
and what the training-time monitor costs next to a training epoch.

One module per concern: :mod:`.plan` (what is timed: variants, models, the profiles' shares),
:mod:`.timing`, :mod:`.memory`, :mod:`.monitor`, :mod:`.run` (a plan, model by model),
:mod:`.report` (the text report) and :mod:`.results` (the JSON file and the tables of the
README and the book filled from it).

The device is read from the environment variable ``VITPHASE_DEVICE`` (default ``cpu``); the
torch thread count is left as it is.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from .memory import MemoryResult, MemoryScaling, child_environment, measure_memory, memory_scaling
from .monitor import MonitorTiming, format_monitor, time_monitor
from .plan import (CAPPED_VARIANTS, CAPTURE, CAPTURE_NO_ATTN, CAPTURE_NO_METRICS,
                   CAPTURE_PROFILE, CAPTURE_PROFILE_NO_ACI, DIAGNOSTIC_VARIANTS, GEOMETRY_PASS,
                   MEMORY_TARGET, PLAIN, PLAIN_UNFUSED, TIME_TARGET, BenchCase, BenchPlan, Caps,
                   ModelSpec, ProfileShare, RandomImages, default_plan, random_images,
                   sweep_accumulators)
from .report import format_report
from .results import latest_record, readme_table, refresh_documents, to_record, write_record
from .run import BenchReport, run_benchmark
from .timing import TimingResult, cpu_times, run_variant, steal_between, time_passes

__all__ = [
    "CAPPED_VARIANTS", "CAPTURE", "CAPTURE_NO_ATTN", "CAPTURE_NO_METRICS", "CAPTURE_PROFILE",
    "CAPTURE_PROFILE_NO_ACI", "DIAGNOSTIC_VARIANTS", "GEOMETRY_PASS", "MEMORY_TARGET", "PLAIN",
    "PLAIN_UNFUSED", "TIME_TARGET", "BenchCase", "BenchPlan", "BenchReport", "Caps",
    "MemoryResult", "MemoryScaling", "ModelSpec", "MonitorTiming", "ProfileShare",
    "RandomImages", "TimingResult", "bench_device", "child_environment", "cpu_times",
    "default_plan", "format_monitor", "format_report", "latest_record", "main",
    "measure_memory", "memory_scaling", "random_images", "readme_table", "refresh_documents",
    "run_benchmark", "run_variant", "steal_between", "sweep_accumulators", "time_monitor",
    "time_passes", "to_record", "write_record",
]


def bench_device() -> str:
    return os.environ.get("VITPHASE_DEVICE", "cpu")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> int:
    """Run the plan, time the monitor, print the report, write the JSON result and refill the
    README's and the book's tables from the latest result (``--render``: only the last step)."""
    results = Path(getattr(args, "results", None) or "benchmarks/results")
    if not getattr(args, "render", False):
        quick = bool(getattr(args, "quick", False))
        report = run_benchmark(default_plan(quick), bench_device(), log=_log)
        _log("[bench] the training-time monitor beside a training epoch ...")
        report = replace(report, monitor=time_monitor(repeats=1 if quick else 3,
                                                      steps=5 if quick else 40))
        print(format_report(report))
        path = write_record(to_record(report), results)
        print(f"\nresults: {path}")
    for path in refresh_documents(Path("."), results):
        print(f"table filled from the latest result: {path}")
    return 0
