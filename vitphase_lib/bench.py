"""``vitphase bench``: what the streaming capture costs, in time and in memory.

Two questions, each with a target:

* **Time.** How much slower is :func:`vitphase_lib.analysis.run_pass` (capture hooks, the
  unfused attention path, every streaming metric) than a plain ``model(x)`` under
  ``torch.inference_mode`` with timm's default (fused) attention? Target: capture / plain
  <= 1.3x. Both run over the *same* images (a ``TensorDataset`` of random images) through the
  same ``DataLoader`` (:func:`vitphase_lib.analysis.make_loader`, same batch size), so the only
  difference is the capture. The variants are timed *interleaved*: after one warm-up pass of each,
  every repetition runs each variant once (the order alternates between repetitions), and the
  median over repetitions is reported. Interleaving matters on a shared machine: background load
  that comes and goes hits every variant alike. The full run also times three diagnostic variants
  that split the overhead: ``plain, unfused`` (plain forward with ``fused_attn = False`` on
  the whole batch, i.e. timm's way of exposing the attention weights; the capture runs the same
  path a few images at a time on a CPU, see :mod:`vitphase_lib.capture`), ``capture, no
  metrics`` (``run_pass`` with no accumulator but the attention traced: the capture engine
  alone, i.e. hooks, unfused attention in chunks, head averaging and the NaN check) and
  ``capture, no attn`` (``run_pass`` with ``attention=False``: hooks + token metrics, fused
  attention).

  ``capture`` builds every accumulator with its defaults, so two capped metrics run on every
  image: the worst case. ``AttentionGraph`` computes the Attention Consensus Index (|lambda_2| per
  image and block, the dominant cost) and ``TokenMoments`` takes every image's tokens into the
  InfoX decoders' principal components. The book's profiles cap them at ``aci_max_images`` and
  ``pca_max_images`` of their ``n_images`` images, so both runs also time ``capture, profile
  caps``: ``capture`` with each metric on the first K images of the pass, K = max(1, round(images
  * cap / n_images)) (at most ``images``; a cap of None: every image), with the numbers read from
  the profile the :class:`BenchCase` names (:class:`ProfileShare`, through
  :meth:`vitphase_lib.study.Study.from_profile`, so a profile without a cap gets the Study
  default). Its ratio to plain, with its own verdict, is what the book's analysis pass costs.
  The full run also times ``capture, caps, no ACI``: the same pass with the ACI on no image (the
  PCA still capped), i.e. the floor a free |lambda_2| would leave, and ``geometry pass``: the
  book's other kind of pass (:func:`vitphase_lib.analysis.geometry_tables`: token similarity,
  the PE Dominance Ratio and top-1, with fused attention), which the PE-scaling sweep runs once
  per alpha (six alphas per model in the default profile, each over its ``n_images``).

* **Memory.** Is the pass's peak memory flat in the number of images? Each measurement runs in a
  fresh subprocess (``python -c``) that builds the model, streams ``n`` images through
  ``run_pass`` with every accumulator and reports the child's peak RSS and, on CUDA,
  ``torch.cuda.max_memory_allocated``. The child's ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
  is reported as well, but on Linux it is *not* the child's own peak: exec carries the parent's
  peak over (``signal->maxrss``), so a child of this (large) process reports at least the
  parent's peak. The peak therefore comes from ``VmHWM`` in ``/proc/self/status``, reset to the
  current RSS (``/proc/self/clear_refs``) once the model is built, just before the pass; where
  /proc is missing, ``ru_maxrss`` is used. The images of the memory runs are generated on the fly
  from their index (:class:`RandomImages`), so the data set itself takes no memory and only the
  pass can make the peak grow. Target: mem(4n) / mem(n) <= 1.1x (CUDA peak on CUDA, peak RSS
  otherwise). The peak RSS includes the interpreter, torch (about 1 GB with a CUDA build) and
  the model, which dilutes the ratio, so the table also prints the pass's own increment (peak
  minus the RSS before the pass) and the difference between 4n and n in MB. The children run
  with glibc's mmap threshold fixed (``MALLOC_MMAP_THRESHOLD_``, :data:`CHILD_ALLOCATOR_ENV`;
  a value already in the environment is kept). Left dynamic, glibc raises the threshold each
  time a large block is freed, so whether an activation buffer of a given size is mapped afresh
  or carved out of a fragmented heap depends on the order of earlier frees, and the peak RSS of
  identical mini-B passes wandered between 124 and 318 MB above the model (500, 2 000 and 8 000
  images, three runs each, no trend in n): one full run measured 4n / n = 1.13x. With the
  threshold fixed at glibc's default the same nine runs peaked 76-77 MB above the model. The
  fixed threshold makes the memory runs slower (every large buffer is a fresh mapping) but
  leaves the timing runs, in this process, as they are.

The accumulators come from :func:`accumulator_classes`, which discovers every public
:class:`~vitphase_lib.metrics.base.Accumulator` subclass of :mod:`vitphase_lib.metrics` (exported
or defined in one of its modules) that implements a sink callback, so a new metric is benchmarked
as soon as it exists. Those that can be built from the layout (and ``num_classes``, from the
model) with default settings are run together, as one sweep; the others need something an
earlier pass produces (fitted decoders, class geometry) or keep every image's features
(``n_images``), and the report names them as not benchmarked. ``run_pass`` adds ``FiniteCheck``
itself. In the ``capture`` runs (only those) each accumulator is wrapped in a thin proxy that
adds up the wall time spent in its callbacks (a few hundred ``perf_counter`` calls per pass),
which the report shows as each accumulator's share of the plain forward time.

On a virtual machine the hypervisor may give the cores to other guests for part of the run
(``steal`` time), which slows whichever variant is running and widens the spread between
repetitions. The report gives the share of CPU time stolen while each model was timed (from
``/proc/stat``, where it exists) and warns above :data:`STEAL_WARNING`.

The device is read from the environment variable ``VITPHASE_DEVICE`` (default ``cpu``); the
``vitphase bench`` command has no ``--device`` option. The torch thread count is left as it is.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

import torch
from torch.utils.data import Dataset, TensorDataset

from .capture import unfused_attention

TIME_TARGET = 1.3     # capture / plain
MEMORY_TARGET = 1.1   # peak(4n) / peak(n)
STEAL_WARNING = 0.05  # the report warns when the hypervisor took more of the CPU while timing
# the memory children's allocator: glibc's default mmap threshold (128 KiB), fixed, so that the
# peak RSS does not depend on glibc moving the threshold as blocks are freed (module docstring)
CHILD_ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 * 2**10)}
SINK_CALLBACKS = ("on_tokens", "on_attention", "on_logits")
# added by run_pass to every pass on its own; benchmarking it again would count it twice
ALWAYS_ON = ("FiniteCheck",)

PLAIN, CAPTURE = "plain", "capture"
PLAIN_UNFUSED, CAPTURE_NO_ATTN = "plain, unfused", "capture, no attn"
# the capture engine alone: hooks, unfused attention, head averaging and the NaN check, no metric
CAPTURE_NO_METRICS = "capture, no metrics"
DIAGNOSTIC_VARIANTS = (PLAIN, PLAIN_UNFUSED, CAPTURE_NO_METRICS, CAPTURE_NO_ATTN, CAPTURE)
# capture with the ACI and the PCA capped to the profile's share of images (needs ``aci_images``
# and ``pca_images``)
CAPTURE_PROFILE = "capture, profile caps"
# the same without the ACI (on no image): what the book's pass would cost if |lambda_2| were free
CAPTURE_PROFILE_NO_ACI = "capture, caps, no ACI"
CAPPED_VARIANTS = (CAPTURE_PROFILE, CAPTURE_PROFILE_NO_ACI)  # both need aci_images and pca_images
# the other pass the book runs: analysis.geometry_tables (token similarity, PE Dominance Ratio,
# top-1; fused attention), once per alpha of the PE-scaling sweep
GEOMETRY_PASS = "geometry pass"


# --------------------------------------------------------------------------- accumulators
# constructor arguments the benchmark can supply besides the layout
CONTEXT_ARGUMENTS = ("num_classes",)


def accumulator_classes() -> list[type]:
    """Every streaming accumulator of :mod:`vitphase_lib.metrics`, sorted by name.

    Searched: the names the package exports and every public class defined in its submodules
    (imported for the purpose), so a new metric module is found even before it is exported. A
    class qualifies if it is a proper, public subclass of ``metrics.base.Accumulator``, overrides
    at least one sink callback (``on_tokens``, ``on_attention``, ``on_logits``) and is not one
    that ``run_pass`` always adds itself (``FiniteCheck``). Whether the benchmark can build it is
    :func:`missing_arguments`'s business.
    """
    import importlib
    import pkgutil

    from . import metrics
    from .metrics.base import Accumulator

    candidates = [getattr(metrics, name, None) for name in getattr(metrics, "__all__", dir(metrics))]
    for info in pkgutil.iter_modules(metrics.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{metrics.__name__}.{info.name}")
        candidates += [obj for obj in vars(module).values()
                       if inspect.isclass(obj) and obj.__module__ == module.__name__]
    found = {}
    for obj in candidates:
        if not (inspect.isclass(obj) and issubclass(obj, Accumulator) and obj is not Accumulator):
            continue
        if obj.__name__.startswith("_") or inspect.isabstract(obj) or obj.__name__ in ALWAYS_ON:
            continue
        if any(getattr(obj, cb) is not getattr(Accumulator, cb) for cb in SINK_CALLBACKS):
            found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return sorted(found.values(), key=lambda cls: (cls.__name__, cls.__module__))


def missing_arguments(cls: type) -> list[str]:
    """Required constructor arguments of ``cls`` the benchmark cannot supply: anything but the
    layout and :data:`CONTEXT_ARGUMENTS` without a default (e.g. a decoder fitted by an earlier
    pass, or ``n_images`` of an accumulator that keeps every image's features)."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[2:]  # self, layout
    return [p.name for p in parameters
            if p.default is inspect.Parameter.empty and p.name not in CONTEXT_ARGUMENTS
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]


def benchmarked_classes() -> list[type]:
    """The accumulators a single sweep can run with their default settings."""
    return [cls for cls in accumulator_classes() if not missing_arguments(cls)]


def skipped_classes() -> dict[str, list[str]]:
    """Accumulators left out, with the constructor arguments the benchmark cannot supply."""
    return {cls.__name__: missing_arguments(cls) for cls in accumulator_classes() if missing_arguments(cls)}


def make_accumulators(model: torch.nn.Module) -> list:
    """One instance of every :func:`benchmarked_classes` accumulator for ``model`` (defaults for
    every optional argument, ``num_classes`` from the model's classifier)."""
    from .capture import vit_layout
    layout = vit_layout(model)
    context = {"num_classes": int(getattr(model, "num_classes", 0) or 0)}
    built = []
    for cls in benchmarked_classes():
        names = list(inspect.signature(cls.__init__).parameters)[2:]
        built.append(cls(layout, **{k: v for k, v in context.items() if k in names}))
    return built


def cap_accumulators(accumulators: Sequence, aci_images: int, pca_images: int) -> None:
    """Cap the two capped metrics among ``accumulators`` as a profile's analysis pass does: every
    :class:`~vitphase_lib.metrics.attention.AttentionGraph` computes the ACI on the first
    ``aci_images`` images only (``aci_max_images``; 0, which no profile allows, leaves the ACI
    out and keeps the rest of the attention metrics), every
    :class:`~vitphase_lib.metrics.scrambling.TokenMoments` takes the tokens of the first
    ``pca_images`` images only (``max_images``, the profile's ``pca_max_images``)."""
    from .metrics.attention import AttentionGraph
    from .metrics.scrambling import TokenMoments
    for accumulator in accumulators:
        if isinstance(accumulator, AttentionGraph):
            accumulator.aci_max_images = aci_images
        if isinstance(accumulator, TokenMoments):
            accumulator.max_images = pca_images


@dataclass(frozen=True)
class ProfileShare:
    """The shares of a profile's ``n_images`` analysis images that enter the capped metrics:
    ``aci_max_images`` enter the ACI, ``pca_max_images`` the principal components (None: every
    image)."""

    profile: str
    aci_max_images: int | None
    pca_max_images: int | None
    n_images: int

    CAPS = ("aci", "pca")

    @classmethod
    def read(cls, profile: str) -> "ProfileShare":
        """The shares as the profile sets them, read through
        :meth:`~vitphase_lib.study.Study.from_profile` so that a key the profile leaves out
        takes the Study default."""
        from .study import Study
        study = Study.from_profile(profile)
        return cls(profile, study.aci_max_images, study.pca_max_images, study.n_images)

    def images(self, timing_images: int, cap: str) -> int:
        """K, the images of a timing pass over ``timing_images`` images that enter the ``cap``
        metric (``"aci"`` or ``"pca"``) with the profile's share: max(1, round(timing_images *
        cap / n_images)), at most ``timing_images``; every image if the profile sets no cap. At
        least one image, so the metric is always part of the pass (and defined)."""
        if cap not in self.CAPS:
            raise ValueError(f"cap must be one of {self.CAPS}, got {cap!r}")
        max_images = getattr(self, f"{cap}_max_images")
        if max_images is None:
            return timing_images
        return min(timing_images, max(1, round(timing_images * max_images / self.n_images)))


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

    def begin_batch(self, labels, start=None):
        self._call("begin_batch", labels, start)

    def on_tokens(self, layer, tokens):
        self._call("on_tokens", layer, tokens)

    def on_attention(self, block, attention):
        self._call("on_attention", block, attention)

    def on_logits(self, logits):
        self._call("on_logits", logits)


# --------------------------------------------------------------------------- models and data
@dataclass(frozen=True)
class ModelSpec:
    """A model to benchmark, serialisable so that a subprocess can rebuild it.

    ``kind`` is ``"mini"`` (``arch`` is a :class:`~vitphase_lib.models.MiniViTConfig` as a dict)
    or ``"timm"`` (``arch`` is a timm model name, built with ``pretrained=False``).
    """

    label: str
    kind: str
    arch: str | dict
    channels: int
    img_size: int
    batch_size: int

    @classmethod
    def mini(cls, config, batch_size: int, label: str | None = None) -> "ModelSpec":
        return cls(label or config.name, "mini", config.to_dict(), config.in_chans,
                   config.img_size, batch_size)

    @classmethod
    def timm(cls, name: str, batch_size: int, label: str | None = None, channels: int = 3,
             img_size: int = 224) -> "ModelSpec":
        return cls(label or name, "timm", name, channels, img_size, batch_size)

    def build(self) -> torch.nn.Module:
        """The model with seed-0 random weights (the caller's RNG state is left alone)."""
        if self.kind not in ("mini", "timm"):
            raise ValueError(f"unknown model kind {self.kind!r} (mini or timm)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            if self.kind == "mini":
                from .models import MiniViTConfig, build_mini_vit
                return build_mini_vit(MiniViTConfig(**self.arch)).eval()
            import timm
            return timm.create_model(self.arch, pretrained=False).eval()

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        return cls(**json.loads(text))


def random_images(n: int, channels: int, size: int, seed: int = 0,
                  num_classes: int = 10) -> TensorDataset:
    """``n`` standard-normal images with random labels, held in memory."""
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, channels, size, size, generator=g),
                         torch.randint(0, num_classes, (n,), generator=g))


class RandomImages(Dataset):
    """``n`` random images generated from their index on access: O(1) memory in ``n``."""

    def __init__(self, n: int, channels: int, size: int, seed: int = 0, num_classes: int = 10):
        self.n, self.shape, self.seed, self.num_classes = n, (channels, size, size), seed, num_classes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(index)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return torch.randn(self.shape, generator=g), int(torch.randint(0, self.num_classes, (), generator=g))


def bench_device() -> str:
    return os.environ.get("VITPHASE_DEVICE", "cpu")


# --------------------------------------------------------------------------- timing
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
    # ACI and PCA images of ``capture, profile caps`` (None: not run)
    aci_images: int | None = None
    pca_images: int | None = None
    profile_share: ProfileShare | None = None  # the profile shares they reproduce
    # share of the machine's CPU time taken by the hypervisor while the variants ran (Linux's
    # /proc/stat ``steal``; None where it cannot be read): high on a shared virtual machine
    steal_share: float | None = None

    def median(self, variant: str) -> float:
        return statistics.median(self.seconds[variant])

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
        if CAPTURE_PROFILE not in self.seconds:
            return None
        return self.median(CAPTURE_PROFILE) / self.plain

    @property
    def profile_passed(self) -> bool | None:
        ratio = self.profile_ratio
        return None if ratio is None else ratio <= TIME_TARGET


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _plain_pass(model: torch.nn.Module, dataset: Dataset, config) -> None:
    """What ``run_pass`` does minus the capture: same loader, same device copies, same autocast."""
    from .analysis import DTYPES, make_loader
    device = torch.device(config.device)
    autocast = torch.autocast(device.type, dtype=DTYPES[config.dtype], enabled=config.dtype != "float32")
    with torch.inference_mode():
        for images, labels in make_loader(dataset, config):
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with autocast:
                model(images)


def _run_variant(variant: str, model: torch.nn.Module, dataset: Dataset, config,
                 clock: dict[str, float] | None = None, aci_images: int | None = None,
                 pca_images: int | None = None) -> float:
    """Seconds for one pass of ``variant``; with ``clock``, the capture variants also add the time
    spent in each accumulator's callbacks to it. ``aci_images`` and ``pca_images`` are the ACI
    and PCA caps of ``capture, profile caps`` (both required there, unused elsewhere)."""
    from .analysis import geometry_tables, run_pass
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
        # fresh accumulators every time: building them is part of a real pass
        sinks = make_accumulators(model)
        if variant in CAPPED_VARIANTS:
            if aci_images is None or pca_images is None:
                raise ValueError(f"variant {variant!r} needs aci_images and pca_images, "
                                 f"got aci_images={aci_images!r}, pca_images={pca_images!r}")
            cap_accumulators(sinks, 0 if variant == CAPTURE_PROFILE_NO_ACI else aci_images,
                             pca_images)
        if clock is not None:
            sinks = [_Timed(accumulator, clock) for accumulator in sinks]
        run_pass(model, dataset, sinks, config, attention=variant != CAPTURE_NO_ATTN, desc="bench")
    else:
        raise ValueError(f"unknown variant {variant!r}")
    _sync(device)
    return time.perf_counter() - start


def time_passes(model: torch.nn.Module, dataset: Dataset, batch_size: int, repeats: int,
                device: str = "cpu", variants: Sequence[str] = (PLAIN, CAPTURE),
                warmup: int = 1, label: str = "model", aci_images: int | None = None,
                pca_images: int | None = None) -> TimingResult:
    """Interleaved timing of ``variants`` over ``dataset`` (see the module docstring).
    ``aci_images`` and ``pca_images`` (the ACI and PCA caps of ``capture, profile caps``, each
    >= 1) are both given exactly when that variant or ``capture, caps, no ACI`` is among
    ``variants``."""
    from .analysis import PassConfig
    if PLAIN not in variants or CAPTURE not in variants:
        raise ValueError(f"variants must include {PLAIN!r} and {CAPTURE!r}, got {list(variants)}")
    caps = {"aci_images": aci_images, "pca_images": pca_images}
    capped = any(variant in CAPPED_VARIANTS for variant in variants)
    for name, value in caps.items():
        if capped != (value is not None):
            raise ValueError(f"aci_images and pca_images are given exactly when a variant of "
                             f"{list(CAPPED_VARIANTS)} is among the variants, got {name}={value!r} "
                             f"and {list(variants)}")
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    config = PassConfig(batch_size=batch_size, device=device, progress=False)
    model = model.to(device).eval()
    for _ in range(warmup):
        for variant in variants:
            _run_variant(variant, model, dataset, config, aci_images=aci_images,
                         pca_images=pca_images)
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    callbacks: dict[str, list[float]] = {}
    for rep in range(repeats):
        order = list(variants) if rep % 2 == 0 else list(reversed(variants))
        for variant in order:
            clock: dict[str, float] | None = {} if variant == CAPTURE else None
            seconds[variant].append(_run_variant(variant, model, dataset, config, clock,
                                                 aci_images, pca_images))
            for name, spent in (clock or {}).items():
                callbacks.setdefault(name, []).append(spent)
    return TimingResult(model=label, images=len(dataset), batch_size=batch_size, repeats=repeats,
                        device=device, accumulators=[c.__name__ for c in benchmarked_classes()],
                        seconds=seconds, callback_seconds=callbacks, aci_images=aci_images,
                        pca_images=pca_images)


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


# --------------------------------------------------------------------------- memory
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


def _memory_child(spec_json: str, images: int, device: str) -> dict:
    """Runs in the fresh subprocess: one streaming pass, then the peaks.

    ``ru_maxrss`` of a child started with fork/vfork + exec starts at the *parent's* peak (Linux
    carries it over at exec in ``signal->maxrss``), so a child of a big benchmark process reports
    the parent's peak. Where /proc is available the peak is therefore read from ``VmHWM``, which
    belongs to the child's own address space and is reset to the current RSS just before the
    pass; ``ru_maxrss`` is returned too.
    """
    from .analysis import PassConfig, run_pass
    spec = ModelSpec.from_json(spec_json)
    model = spec.build().to(device)
    accumulators = make_accumulators(model)
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
    from .metrics.base import Accumulator
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


_CHILD_CODE = ("import json, sys; from vitphase_lib.bench import _memory_child; "
               "result = _memory_child(sys.argv[1], int(sys.argv[2]), sys.argv[3]); "
               "print('VITPHASE-BENCH ' + json.dumps(result))")


def child_environment() -> dict[str, str]:
    """The memory children's environment: this process's, with :data:`CHILD_ALLOCATOR_ENV` for
    each of its variables the environment does not already set."""
    return {**CHILD_ALLOCATOR_ENV, **os.environ}


def _start_child(spec: ModelSpec, images: int, device: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _CHILD_CODE, spec.to_json(), str(images), device],
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


def measure_memory(spec: ModelSpec, images: int, device: str = "cpu", timeout: float = 1800) -> MemoryResult:
    """Peak memory of one streaming pass over ``images`` images, in a fresh Python process."""
    return _finish_child(_start_child(spec, images, device), timeout)


def memory_scaling(spec: ModelSpec, n: int, device: str = "cpu", parallel: bool = False,
                   timeout: float = 1800) -> MemoryScaling:
    """Peak memory at ``n`` and ``4 n`` images, each in its own fresh subprocess.

    With ``parallel`` the two children run at the same time: the peaks are per process, so only
    their wall-clock ``seconds`` change (used by the tests to save time).
    """
    if parallel:
        procs = [_start_child(spec, n, device), _start_child(spec, 4 * n, device)]
        small, large = [_finish_child(p, timeout) for p in procs]
    else:
        small, large = measure_memory(spec, n, device, timeout), measure_memory(spec, 4 * n, device, timeout)
    return MemoryScaling(model=spec.label, device=device, batch_size=spec.batch_size,
                         small=small, large=large)


# --------------------------------------------------------------------------- the benchmark
@dataclass(frozen=True)
class BenchCase:
    spec: ModelSpec
    timing_images: int
    memory_n: int | None      # memory at memory_n and 4 * memory_n images (None: not measured)
    memory_batch: int | None = None  # batch size of the memory runs (default: spec.batch_size)
    # the profile the book analyses this model with: its shares of images set the ACI and PCA
    # caps of ``capture, profile caps`` (None: that variant is not run)
    profile: str | None = None

    @property
    def memory_spec(self) -> ModelSpec:
        if self.memory_batch is None:
            return self.spec
        return replace(self.spec, batch_size=self.memory_batch)


@dataclass(frozen=True)
class BenchPlan:
    cases: tuple[BenchCase, ...]
    repeats: int
    variants: tuple[str, ...]
    parallel_memory: bool = False  # run the n and 4n children at the same time


def default_plan(quick: bool) -> BenchPlan:
    """Full: 5 interleaved repeats of 8 variants (the diagnostic ones, ``capture, profile caps``,
    ``capture, caps, no ACI`` and ``geometry pass``); mini-B over 500 images in batches of 250
    (two batches), ViT-B/16 over 32 images in batches of 8 (four); memory at 500 / 2000 (mini-B)
    and 16 / 64 (ViT-B) images, at the timing batch sizes. What a capture pass pays once,
    whatever its length, weighs more in these short runs than in the book's (2 000 and 10 000
    images), so the ratios are upper bounds: for ViT-B/16 that is mostly allocating the float64
    sums of its 1 000 classes (CollapseMoments), about 0.2 s per pass here, 0.09x of a 16-image
    pass and 0.04x of a 32-image one.

    Quick (a smoke run): 2 repeats of plain, capture and capture with the profile's caps over
    one batch of 100 (mini-B) and of 4 (ViT-B; its profile shares round up to one of the four
    images); memory for mini-B only (each child re-imports torch, and ViT-B's random init
    alone takes seconds), with batches of 50 (n is still a whole number of batches, so 4n only
    adds batches) and the n and 4n children running at the same time.

    The profiles: mini-B is analysed with ``default`` (the mini zoo), ViT-B/16 with ``paper``
    (real ViTs); each sets the ACI and PCA caps of ``capture, profile caps``.

    Run time is dominated by ``AttentionGraph``'s per-image |lambda_2| (ACI, every image in
    ``capture``), and MKL's threads slow down many times over when other processes compete for
    the cores: on two busy cores the quick run takes minutes instead of under one."""
    from .models import MINI_ZOO
    vit_b = "vit_base_patch16_224"
    if quick:
        return BenchPlan(cases=(
            BenchCase(ModelSpec.mini(MINI_ZOO["mini-b"], batch_size=100), timing_images=100,
                      memory_n=50, memory_batch=50, profile="default"),
            BenchCase(ModelSpec.timm(vit_b, batch_size=4, label="ViT-B/16"), timing_images=4,
                      memory_n=None, profile="paper"),
        ), repeats=2, variants=(PLAIN, CAPTURE, CAPTURE_PROFILE), parallel_memory=True)
    return BenchPlan(cases=(
        BenchCase(ModelSpec.mini(MINI_ZOO["mini-b"], batch_size=250), timing_images=500, memory_n=500,
                  profile="default"),
        BenchCase(ModelSpec.timm(vit_b, batch_size=8, label="ViT-B/16"), timing_images=32,
                  memory_n=16, profile="paper"),
    ), repeats=5, variants=(*DIAGNOSTIC_VARIANTS, *CAPPED_VARIANTS, GEOMETRY_PASS))


@dataclass
class BenchReport:
    device: str
    threads: int
    timings: list[TimingResult]
    memory: list[MemoryScaling]
    seconds: float
    skipped: dict[str, list[str]] = field(default_factory=dict)  # accumulator -> missing arguments


def run_benchmark(plan: BenchPlan, device: str = "cpu", log=print) -> BenchReport:
    start = time.perf_counter()
    timings, memory = [], []
    for case in plan.cases:
        spec = case.spec
        # the capped variants need a profile; without one the case runs the others
        share = (ProfileShare.read(case.profile)
                 if case.profile is not None and set(CAPPED_VARIANTS) & set(plan.variants) else None)
        aci_images, pca_images = ((share.images(case.timing_images, "aci"),
                                   share.images(case.timing_images, "pca"))
                                  if share is not None else (None, None))
        variants = tuple(v for v in plan.variants if v not in CAPPED_VARIANTS or share is not None)
        log(f"[bench {time.perf_counter() - start:4.0f} s] {spec.label}: timing "
            f"{len(variants)} variants x {plan.repeats} repeats over {case.timing_images} "
            f"images, batch {spec.batch_size}"
            + (f", profile caps: ACI on {aci_images}, PCA on {pca_images} images"
               if share is not None else "") + " ...")
        model = spec.build()
        dataset = random_images(case.timing_images, spec.channels, spec.img_size,
                                num_classes=model.num_classes)
        ticks_before = cpu_times()
        timing = time_passes(model, dataset, spec.batch_size, plan.repeats, device, variants,
                             label=spec.label, aci_images=aci_images, pca_images=pca_images)
        timings.append(replace(timing, profile_share=share,
                               steal_share=steal_between(ticks_before, cpu_times())))
        del model, dataset
        if case.memory_n is None:
            continue
        log(f"[bench {time.perf_counter() - start:4.0f} s] {spec.label}: peak memory at "
            f"{case.memory_n} and {4 * case.memory_n} images, batch {case.memory_spec.batch_size} "
            "(fresh subprocesses) ...")
        memory.append(memory_scaling(case.memory_spec, case.memory_n, device,
                                     parallel=plan.parallel_memory))
    log(f"[bench {time.perf_counter() - start:4.0f} s] done")
    return BenchReport(device=device, threads=torch.get_num_threads(), timings=timings,
                       memory=memory, seconds=time.perf_counter() - start, skipped=skipped_classes())


# --------------------------------------------------------------------------- output
def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _caps(aci, pca, images) -> str:
    """e.g. 'ACI 128, PCA 128 of 500 img' (a cap of None: every image)."""
    cap = lambda value: "every" if value is None else str(value)
    return f"ACI {cap(aci)}, PCA {cap(pca)} of {images} img"


def _profile_columns(t: TimingResult) -> list[str]:
    """'profile caps', 'profile ratio' and its verdict of the time table ('-' if not run)."""
    if t.profile_ratio is None:
        return ["-", "-", "-"]
    return [_caps(t.aci_images, t.pca_images, t.images), f"{t.profile_ratio:.2f}x",
            _verdict(t.profile_passed)]


def _share_note(t: TimingResult) -> str:
    """Where a timing's profile caps come from, e.g.
    'mini-b: default ACI 512, PCA 512 of 2000 img -> ACI 64, PCA 64 of 250 img'."""
    share = t.profile_share
    return (f"{t.model}: {share.profile} "
            f"{_caps(share.aci_max_images, share.pca_max_images, share.n_images)} -> "
            f"{_caps(t.aci_images, t.pca_images, t.images)}")


def format_report(report: BenchReport) -> str:
    out = [f"vitphase bench: device {report.device}, {report.threads} torch threads",
           f"accumulators: {', '.join(report.timings[0].accumulators) if report.timings else '-'} "
           "(+ FiniteCheck, which run_pass always adds)"]
    if report.skipped:
        out.append("not benchmarked (need the output of an earlier pass or a per-image store): "
                   + ", ".join(f"{name} ({', '.join(args)})"
                               for name, args in sorted(report.skipped.items())))
    out.append("")
    out.append(f"Time per pass, median of interleaved repeats (target capture/plain <= {TIME_TARGET}x)")
    rows = []
    for t in report.timings:
        paired = t.paired_ratios
        rows.append([t.model, str(t.images), str(t.batch_size), str(t.repeats),
                     f"{t.plain * 1e3:.0f} ms", f"{t.capture * 1e3:.0f} ms",
                     f"{t.ratio:.2f}x", f"{min(paired):.2f}-{max(paired):.2f}x", _verdict(t.passed),
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
    extra = [t for t in report.timings if set(t.seconds) - {PLAIN, CAPTURE, CAPTURE_PROFILE}]
    if extra:
        out += ["", "Where the overhead goes (medians; ratios to plain)"]
        variants = [v for v in (*DIAGNOSTIC_VARIANTS, CAPTURE_PROFILE_NO_ACI, GEOMETRY_PASS)
                    if all(v in t.seconds for t in extra)]
        rows = [[t.model, *[f"{t.median(v) * 1e3:.0f} ms ({t.median(v) / t.plain:.2f}x)" for v in variants]]
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
    timed = [t for t in report.timings if t.callback_seconds]
    if timed:
        out += ["", "Time inside each accumulator's callbacks during 'capture' (median per pass; "
                    "share of plain)"]
        names = sorted({name for t in timed for name in t.callback_seconds})
        rows = []
        for t in timed:
            row = [t.model]
            for name in names:
                spent = t.callback_seconds.get(name)
                median = statistics.median(spent) if spent else None
                row.append(f"{median * 1e3:.0f} ms ({median / t.plain:.2f})" if spent else "-")
            rest = statistics.median(
                [c - sum(t.callback_seconds[n][i] for n in t.callback_seconds)
                 for i, c in enumerate(t.seconds[CAPTURE])]) - t.plain
            rows.append(row + [f"{rest * 1e3:.0f} ms ({rest / t.plain:.2f})"])
        out.append(_table(["model", *names, "rest of overhead*"], rows))
        out.append("*capture minus plain minus the callbacks: hooks, unfused attention, head "
                   "averaging, FiniteCheck")
    out += ["", f"Peak memory of the streaming pass, fresh subprocess each (target flat in n: "
                f"mem(4n)/mem(n) <= {MEMORY_TARGET}x)"]
    rows = []
    for m in report.memory:
        row = [m.model, f"{m.small.images} / {m.large.images}", str(m.batch_size),
               f"{m.small.peak_rss_mb:.0f} / {m.large.peak_rss_mb:.0f} MB",
               f"{m.small.pass_increment_mb:.0f} / {m.large.pass_increment_mb:.0f} MB",
               f"{m.large.peak_rss_mb - m.small.peak_rss_mb:+.0f} MB",
               f"{m.small.ru_maxrss_mb:.0f} / {m.large.ru_maxrss_mb:.0f} MB"]
        if m.small.cuda_peak_mb is not None:
            row.append(f"{m.small.cuda_peak_mb:.0f} / {m.large.cuda_peak_mb:.0f} MB")
        rows.append(row + [f"{m.ratio:.3f}x", _verdict(m.passed)])
    headers = ["model", "n / 4n", "batch", "peak RSS", "pass increment", "4n - n", "ru_maxrss*"]
    if any(m.small.cuda_peak_mb is not None for m in report.memory):
        headers.append("CUDA peak")
    out.append(_table(headers + ["ratio", "<=1.1x"], rows))
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
    out.append(f"({report.seconds:.0f} s. Timings are wall clock on a possibly shared machine; "
               "'paired range' is capture/plain within each repetition.)")
    stolen = [t for t in report.timings if t.steal_share is not None]
    if stolen:
        out.append("CPU time taken by the hypervisor while timing (steal, /proc/stat): "
                   + ", ".join(f"{t.model} {t.steal_share:.0%}" for t in stolen)
                   + (f". Above {STEAL_WARNING:.0%} the machine was shared and the time ratios "
                      "are less reliable than usual."
                      if any(t.steal_share > STEAL_WARNING for t in stolen) else "."))
    return "\n".join(out)


def main(args: argparse.Namespace) -> int:
    device = bench_device()
    plan = default_plan(bool(getattr(args, "quick", False)))
    report = run_benchmark(plan, device, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_report(report))
    from .bench_monitor import format_monitor, time_monitor
    print("[bench] the training-time monitor beside a training epoch ...", file=sys.stderr, flush=True)
    quick = bool(getattr(args, "quick", False))
    print(format_monitor(time_monitor(repeats=1 if quick else 3, steps=5 if quick else 40)))
    return 0
