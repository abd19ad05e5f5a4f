"""The text report of ``vitphase bench``: one table per question (time, where the overhead goes,
time inside each accumulator, memory), each with its target and verdict."""
from __future__ import annotations

import statistics
from typing import Sequence

from .memory import MemoryScaling
from .monitor import format_monitor
from .plan import (CAPTURE, CAPTURE_PROFILE, CAPTURE_PROFILE_NO_ACI, DIAGNOSTIC_VARIANTS,
                   GEOMETRY_PASS, MEMORY_TARGET, PLAIN, TIME_TARGET, Caps)
from .run import BenchReport
from .timing import TimingResult

STEAL_WARNING = 0.05  # the report warns when the hypervisor took more of the CPU while timing


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]

    def line(cells):
        return "  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def caps_text(caps: Caps, images) -> str:
    """e.g. 'ACI 128, PCA 128 of 500 img' (a cap of None: every image; every head's ACI named
    only when it is part of the pass)."""
    def cap(value):
        return "every" if value is None else str(value)
    heads = f", heads' ACI {cap(caps.head_aci)}" if caps.head_aci is not None else ""
    return f"ACI {cap(caps.aci)}, PCA {cap(caps.pca)}{heads} of {images} img"


def _profile_columns(t: TimingResult) -> list[str]:
    """'profile caps', 'profile ratio' and its verdict of the time table ('-' if not run)."""
    if t.profile_ratio is None:
        return ["-", "-", "-"]
    return [caps_text(t.caps, t.images), f"{t.profile_ratio:.2f}x", verdict(t.profile_passed)]


def _share_note(t: TimingResult) -> str:
    """Where a timing's caps come from, e.g.
    'mini-b: default ACI 512, PCA 512 of 2000 img -> ACI 64, PCA 64 of 250 img'."""
    share = t.profile_share
    profile = Caps(share.aci_max_images, share.pca_max_images,
                   share.head_aci_max_images if share.per_head else None)
    return (f"{t.model}: {share.profile} {caps_text(profile, share.n_images)} -> "
            f"{caps_text(t.caps, t.images)}")


def _time_section(report: BenchReport) -> list[str]:
    out = [f"Time per pass, median of interleaved repeats (target capture/plain <= {TIME_TARGET}x)"]
    rows = []
    for t in report.timings:
        paired = t.paired_ratios
        rows.append([t.model, str(t.images), str(t.batch_size), str(t.repeats),
                     f"{t.plain * 1e3:.0f} ms", f"{t.capture * 1e3:.0f} ms", f"{t.ratio:.2f}x",
                     f"{min(paired):.2f}-{max(paired):.2f}x", verdict(t.passed),
                     *_profile_columns(t)])
    out.append(_table(["model", "images", "batch", "reps", "plain", "capture", "ratio, every img",
                       "paired range", f"<={TIME_TARGET}x", "profile caps", "profile ratio",
                       f"<={TIME_TARGET}x"], rows))
    profiled = [t for t in report.timings if t.profile_share is not None]
    if profiled:
        out.append("'profile ratio': capture with the ACI and the PCA each capped to the same "
                   "share of images as the profile (aci_max_images / pca_max_images / n_images; "
                   f"{'; '.join(map(_share_note, profiled))}), which is what the book's analysis "
                   "pass costs; 'capture' ('ratio, every img') runs both on every image: the "
                   "worst case.")
    return out


def _overhead_section(report: BenchReport) -> list[str]:
    extra = [t for t in report.timings if set(t.seconds) - {PLAIN, CAPTURE, CAPTURE_PROFILE}]
    if not extra:
        return []
    out = ["", "Where the overhead goes (medians; ratios to plain)"]
    variants = [v for v in (*DIAGNOSTIC_VARIANTS, CAPTURE_PROFILE_NO_ACI, GEOMETRY_PASS)
                if all(v in t.seconds for t in extra)]
    rows = [[t.model, *[f"{t.median(v) * 1e3:.0f} ms ({t.ratio_of(v):.2f}x)" for v in variants]]
            for t in extra]
    out.append(_table(["model", *variants], rows))
    if CAPTURE_PROFILE_NO_ACI in variants:
        out.append(f"'{CAPTURE_PROFILE_NO_ACI}': '{CAPTURE_PROFILE}' with the ACI on no image "
                   "(the PCA still capped): what the book's pass would cost if |lambda_2| "
                   "were free.")
    if GEOMETRY_PASS in variants:
        out.append(f"'{GEOMETRY_PASS}': the book's other pass (analysis.geometry_tables: "
                   "token similarity, PE Dominance Ratio and top-1, fused attention), run "
                   "once per alpha of the PE-scaling sweep.")
    return out


def rest_of_overhead(t: TimingResult) -> float:
    """Median of capture minus the callbacks, minus plain: hooks, unfused attention, head
    averaging, FiniteCheck."""
    return statistics.median(
        [c - sum(t.callback_seconds[n][i] for n in t.callback_seconds)
         for i, c in enumerate(t.seconds[CAPTURE])]) - t.plain


def _callback_section(report: BenchReport) -> list[str]:
    timed = [t for t in report.timings if t.callback_seconds]
    if not timed:
        return []
    out = ["", "Time inside each accumulator's callbacks during 'capture' (median per pass; "
               "share of plain)"]
    names = sorted({name for t in timed for name in t.callback_seconds})
    rows = []
    for t in timed:
        row = [t.model]
        for name in names:
            spent = t.callback_seconds.get(name)
            median = statistics.median(spent) if spent else None
            row.append(f"{median * 1e3:.0f} ms ({median / t.plain:.2f})" if spent else "-")
        rest = rest_of_overhead(t)
        rows.append(row + [f"{rest * 1e3:.0f} ms ({rest / t.plain:.2f})"])
    out.append(_table(["model", *names, "rest of overhead*"], rows))
    out.append("*capture minus plain minus the callbacks: hooks, unfused attention, head "
               "averaging, FiniteCheck")
    return out


def _memory_row(m: MemoryScaling) -> list[str]:
    row = [m.model, f"{m.small.images} / {m.large.images}", str(m.batch_size),
           f"{m.small.peak_rss_mb:.0f} / {m.large.peak_rss_mb:.0f} MB",
           f"{m.small.pass_increment_mb:.0f} / {m.large.pass_increment_mb:.0f} MB",
           f"{m.large.peak_rss_mb - m.small.peak_rss_mb:+.0f} MB",
           f"{m.small.ru_maxrss_mb:.0f} / {m.large.ru_maxrss_mb:.0f} MB"]
    if m.small.cuda_peak_mb is not None:
        row.append(f"{m.small.cuda_peak_mb:.0f} / {m.large.cuda_peak_mb:.0f} MB")
    return row + [f"{m.ratio:.3f}x", verdict(m.passed)]


def _memory_section(report: BenchReport) -> list[str]:
    out = ["", f"Peak memory of the streaming pass, fresh subprocess each (target flat in n: "
               f"mem(4n)/mem(n) <= {MEMORY_TARGET}x)"]
    headers = ["model", "n / 4n", "batch", "peak RSS", "pass increment", "4n - n", "ru_maxrss*"]
    if any(m.small.cuda_peak_mb is not None for m in report.memory):
        headers.append("CUDA peak")
    out.append(_table(headers + ["ratio", f"<={MEMORY_TARGET}x"], [_memory_row(m) for m in report.memory]))
    children = [r for m in report.memory for r in (m.small, m.large)]  # one per subprocess
    sources = sorted({r.peak_source for r in children})
    skipped = [t.model for t in report.timings if t.model not in {m.model for m in report.memory}]
    if skipped:
        out.append(f"(memory not measured for {', '.join(skipped)} in this run; the full run "
                   "measures it)")
    out += ["", f"Peak RSS from {', '.join(sources) or '-'}. *ru_maxrss of the child as the kernel "
                "reports it; on Linux it includes the parent's peak (inherited at exec), so it is "
                "not used."]
    if children:
        thresholds = sorted({r.mmap_threshold or "dynamic" for r in children})
        out.append(f"glibc's mmap threshold in the children (MALLOC_MMAP_THRESHOLD_): "
                   f"{', '.join(thresholds)} "
                   + ("(dynamic: the peak also depends on where glibc moves it as blocks are "
                      "freed)." if "dynamic" in thresholds else
                      "(fixed, so that the peak does not depend on glibc moving it as blocks are "
                      "freed)."))
    return out


def _footer(report: BenchReport) -> list[str]:
    out = [f"({report.seconds:.0f} s. Timings are wall clock on a possibly shared machine; "
           "'paired range' is capture/plain within each repetition.)"]
    stolen = [t for t in report.timings if t.steal_share is not None]
    if stolen:
        out.append("CPU time taken by the hypervisor while timing (steal, /proc/stat): "
                   + ", ".join(f"{t.model} {t.steal_share:.0%}" for t in stolen)
                   + (f". Above {STEAL_WARNING:.0%} the machine was shared and the time ratios "
                      "are less reliable than usual."
                      if any(t.steal_share > STEAL_WARNING for t in stolen) else "."))
    return out


def format_report(report: BenchReport) -> str:
    accumulators = ", ".join(report.timings[0].accumulators) if report.timings else "-"
    out = [f"vitphase bench: device {report.device}, {report.threads} torch threads",
           f"accumulators: {accumulators} (the first sweep of the book's analysis, "
           "analysis.analysis_accumulators; + FiniteCheck, which run_pass always adds)", ""]
    for section in (_time_section, _overhead_section, _callback_section, _memory_section,
                    _footer):
        out += section(report)
    if report.monitor is not None:
        out += ["", format_monitor(report.monitor)]
    return "\n".join(out)
