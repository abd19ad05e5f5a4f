"""The benchmark's results as JSON, and the tables of the README and the book filled from them.

``vitphase bench`` writes every number of its report, with the machine it ran on, to
``benchmarks/results/<YYYY-MM-DD>-<cpu>.json``. The README's benchmark table and the one of
``book/engineering_notes.md`` are rendered from the latest of these files (by the ``created``
time each records) between marker comments, ``<!-- bench:NAME start -->`` and
``<!-- bench:NAME end -->``; a test checks that the committed README equals what the latest
committed result renders, so the two cannot drift apart.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import statistics
from dataclasses import asdict
from pathlib import Path

import torch

from .memory import MemoryScaling
from .plan import (CAPTURE, CAPTURE_NO_METRICS, CAPTURE_PROFILE, CAPTURE_PROFILE_NO_ACI,
                   MEMORY_TARGET, TIME_TARGET)
from .report import rest_of_overhead
from .run import BenchReport
from .timing import TimingResult

RESULTS = Path("benchmarks") / "results"
SCHEMA = 1
QUICK_NOTE = ("a quick run (vitphase bench --quick): fewer images and repeats, no diagnostic "
              "variants, memory for mini-B only")


# --------------------------------------------------------------------------- the record
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` says)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def slug(text: str, length: int = 40) -> str:
    """Lower case, runs of anything but letters and digits turned into one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:length].strip("-") or "unknown"


def machine() -> dict:
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__}


def _timing_record(t: TimingResult) -> dict:
    record = asdict(t)
    record["median_seconds"] = {v: t.median(v) for v in t.seconds}
    record["ratios"] = {v: t.ratio_of(v) for v in t.seconds}
    record["callback_ratios"] = {name: statistics.median(spent) / t.plain
                                 for name, spent in t.callback_seconds.items()}
    if t.callback_seconds:
        record["rest_of_overhead_ratio"] = rest_of_overhead(t) / t.plain
    record["passed"], record["profile_passed"] = t.passed, t.profile_passed
    return record


def _memory_record(m: MemoryScaling) -> dict:
    return {**asdict(m), "ratio": m.ratio, "passed": m.passed}


def to_record(report: BenchReport, now: dt.datetime | None = None) -> dict:
    """Every number of ``report`` and the machine, as plain JSON types."""
    now = now or dt.datetime.now(dt.timezone.utc)
    monitor = report.monitor
    return {
        "schema": SCHEMA, "created": now.isoformat(timespec="seconds"),
        "date": now.date().isoformat(), "quick": report.quick,
        "note": QUICK_NOTE if report.quick else "a full run (vitphase bench)",
        "machine": {**machine(), "device": report.device, "torch_threads": report.threads},
        "targets": {"time": TIME_TARGET, "memory": MEMORY_TARGET},
        "seconds": report.seconds,
        "timings": [_timing_record(t) for t in report.timings],
        "memory": [_memory_record(m) for m in report.memory],
        "monitor": None if monitor is None else {
            **asdict(monitor), "epoch_seconds": monitor.epoch_seconds,
            "default_share": monitor.default_share, "zoo_share": monitor.zoo_share},
    }


def write_record(record: dict, folder: Path = RESULTS) -> Path:
    """``folder/<date>-<cpu>.json`` (``-2``, ``-3``... when that name is taken)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{record['date']}-{slug(record['machine']['cpu'])}"
    path, count = folder / f"{stem}.json", 1
    while path.exists():
        count += 1
        path = folder / f"{stem}-{count}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def latest_record(folder: Path = RESULTS) -> dict | None:
    """The result with the latest ``created`` time in ``folder`` (None: no result)."""
    records = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    return max(records, key=lambda r: r["created"], default=None)


# --------------------------------------------------------------------------- rendering
def _ratio(timing: dict, variant: str) -> str:
    ratio = timing["ratios"].get(variant)
    return "-" if ratio is None else f"{ratio:.2f}x"


def _profile_cell(timing: dict) -> str:
    ratio = timing["ratios"].get(CAPTURE_PROFILE)
    if ratio is None:
        return "-"
    caps = timing["caps"]
    return (f"**{ratio:.2f}x, {'pass' if timing['profile_passed'] else 'miss'}** (ACI and PCA on "
            f"{caps['aci']} and {caps['pca']} of {timing['images']} images)")


def _memory_cell(record: dict, model: str) -> str:
    for m in record["memory"]:
        if m["model"] == model:
            return (f"{m['ratio']:.3f}x, {'pass' if m['passed'] else 'miss'} "
                    f"({m['small']['images']} / {m['large']['images']} images)")
    return "not measured"


def _headline(record: dict) -> str:
    m = record["machine"]
    command = "vitphase bench --quick" if record["quick"] else "vitphase bench"
    quick = f" This is {QUICK_NOTE}." if record["quick"] else ""
    threads = f"{m['torch_threads']} torch thread{'' if m['torch_threads'] == 1 else 's'}"
    return (f"Measured {record['date']} on {m['cpu']} ({m['cores']} cores, {threads}, device "
            f"{m['device']}) by `{command}` in {record['seconds']:.0f} s."
            f"{quick}")


def readme_table(record: dict) -> str:
    """The README's table: each model's ratios to plain and its memory ratio."""
    lines = [_headline(record), "",
             "| model | plain | capture engine alone | every metric on every image | "
             "profile's caps | the same without the ACI | peak memory 4n / n |",
             "|---|---|---|---|---|---|---|"]
    for t in record["timings"]:
        lines.append(
            f"| {t['model']} ({t['images']} images, batch {t['batch_size']}) "
            f"| {t['median_seconds']['plain'] * 1e3:.0f} ms | {_ratio(t, CAPTURE_NO_METRICS)} "
            f"| {_ratio(t, CAPTURE)} | {_profile_cell(t)} | {_ratio(t, CAPTURE_PROFILE_NO_ACI)} "
            f"| {_memory_cell(record, t['model'])} |")
    return "\n".join(lines)


def appendix_tables(record: dict) -> str:
    """The book's tables: every variant's ratio, the time inside each accumulator, the monitor."""
    timings = record["timings"]
    variants = list(dict.fromkeys(v for t in timings for v in t["ratios"]))
    lines = [_headline(record), "", "Every variant, median time and ratio to plain:", "",
             "| model | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    for t in timings:
        cells = [f"{t['median_seconds'][v] * 1e3:.0f} ms ({t['ratios'][v]:.2f}x)"
                 if v in t["ratios"] else "-" for v in variants]
        lines.append(f"| {t['model']} | " + " | ".join(cells) + " |")
    names = sorted({name for t in timings for name in t["callback_ratios"]})
    if names:
        lines += ["", "Inside each accumulator's callbacks during `capture` (share of plain):", "",
                  "| model | " + " | ".join(names) + " | rest of the overhead |",
                  "|---" * (len(names) + 2) + "|"]
        for t in timings:
            cells = [f"{t['callback_ratios'][n]:.2f}x" if n in t["callback_ratios"] else "-"
                     for n in names]
            rest = t.get("rest_of_overhead_ratio")
            lines.append(f"| {t['model']} | " + " | ".join(cells)
                         + f" | {'-' if rest is None else f'{rest:.2f}x'} |")
    monitor = record.get("monitor")
    if monitor:
        lines += ["", f"Training-time monitor ({monitor['model']}): one call with the default "
                      f"metrics costs {monitor['default_share']:.1%} of a training epoch, the "
                      f"zoo's (with the ISI) {monitor['zoo_share']:.1%}."]
    return "\n".join(lines)


def fill(text: str, name: str, content: str) -> str:
    """``text`` with the lines between ``<!-- bench:NAME start -->`` and
    ``<!-- bench:NAME end -->`` replaced by ``content``."""
    start, end = f"<!-- bench:{name} start -->", f"<!-- bench:{name} end -->"
    pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"markers {start} ... {end} not found")
    return pattern.sub(lambda _: f"{start}\n{content}\n{end}", text, count=1)


DOCUMENTS = {"README.md": ("table", readme_table),
             "book/engineering_notes.md": ("latest", appendix_tables)}


def refresh_documents(root: Path = Path("."), folder: Path | None = None) -> list[Path]:
    """Fill the README's and the book's benchmark tables from the latest result under ``root``;
    returns the files that changed."""
    record = latest_record(folder or root / RESULTS)
    if record is None:
        return []
    changed = []
    for name, (marker, render) in DOCUMENTS.items():
        path = root / name
        if not path.is_file():
            continue
        text = path.read_text()
        new = fill(text, marker, render(record))
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed
