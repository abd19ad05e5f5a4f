"""What ``vitphase bench`` times: the variants of a pass, the models, the profiles' shares.

Every variant streams the *same* random images through the same loader, so the only difference
between two variants is what they compute:

* ``plain``: ``model(x)`` under ``torch.inference_mode`` with timm's fused attention.
* ``capture``: :func:`~vitphase_lib.analysis.run_pass` with the accumulators of the book's
  analysis pass (:func:`~vitphase_lib.analysis.analysis_accumulators`, the one function that
  builds them) and every capped metric on every image: the worst case.
* ``capture, profile caps``: the same pass with the Attention Consensus Index, the per-head ACI
  and the token covariance behind the InfoX decoders each on the share of images the profile
  gives them (:class:`ProfileShare`). Its ratio to ``plain`` is what the book's pass costs.
* Diagnostic variants (full run only) split the overhead: ``plain, unfused`` (timm's unfused
  attention on the whole batch), ``capture, no metrics`` (the capture engine alone: hooks,
  unfused attention in chunks, head averaging, the NaN check), ``capture, no attn`` (every
  accumulator, attention not traced), ``capture, caps, no ACI`` (the profile's pass with the ACI
  on no image: what it would cost if |lambda_2| were free) and ``geometry pass``
  (:func:`~vitphase_lib.analysis.geometry_tables`, the pass the PE-scaling sweep runs per alpha).

Only the first sweep of the analysis is timed: the fit and score sweeps need what it produces
(the InfoX decoders' inputs, the class geometry), and they read no attention.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

import torch
from torch.utils.data import Dataset, TensorDataset

TIME_TARGET = 1.3     # capture / plain
MEMORY_TARGET = 1.1   # peak(4n) / peak(n)

PLAIN, CAPTURE = "plain", "capture"
PLAIN_UNFUSED, CAPTURE_NO_ATTN = "plain, unfused", "capture, no attn"
CAPTURE_NO_METRICS = "capture, no metrics"
DIAGNOSTIC_VARIANTS = (PLAIN, PLAIN_UNFUSED, CAPTURE_NO_METRICS, CAPTURE_NO_ATTN, CAPTURE)
CAPTURE_PROFILE = "capture, profile caps"
CAPTURE_PROFILE_NO_ACI = "capture, caps, no ACI"
CAPPED_VARIANTS = (CAPTURE_PROFILE, CAPTURE_PROFILE_NO_ACI)  # both need the profile's caps
GEOMETRY_PASS = "geometry pass"


# --------------------------------------------------------------------------- caps
@dataclass(frozen=True)
class Caps:
    """Images of one timing pass entering each capped metric (None: every image)."""

    aci: int | None = None
    pca: int | None = None
    head_aci: int | None = None


@dataclass(frozen=True)
class ProfileShare:
    """A profile's caps as shares of its ``n_images`` analysis images: ``aci_max_images`` enter
    the ACI, ``pca_max_images`` the principal components, ``head_aci_max_images`` every head's
    ACI when ``per_head`` (None: every image). Read through
    :meth:`~vitphase_lib.study.Study.from_profile`, so a key the profile leaves out takes the
    Study default."""

    profile: str
    aci_max_images: int | None
    pca_max_images: int | None
    n_images: int
    per_head: bool = False
    head_aci_max_images: int | None = None

    CAPS = ("aci", "pca", "head_aci")

    @classmethod
    def read(cls, profile: str) -> "ProfileShare":
        from ..study import Study
        study = Study.from_profile(profile)
        return cls(profile, study.aci_max_images, study.pca_max_images, study.n_images,
                   study.per_head, study.head_aci_max_images)

    def images(self, timing_images: int, cap: str) -> int:
        """K, the images of a pass over ``timing_images`` that enter the ``cap`` metric with the
        profile's share: max(1, round(timing_images * cap / n_images)), at most
        ``timing_images``; every image if the profile sets no cap. At least one image, so the
        metric is always part of the pass (and defined)."""
        if cap not in self.CAPS:
            raise ValueError(f"cap must be one of {self.CAPS}, got {cap!r}")
        max_images = getattr(self, f"{cap}_max_images")
        if max_images is None:
            return timing_images
        return min(timing_images, max(1, round(timing_images * max_images / self.n_images)))

    def caps(self, timing_images: int) -> Caps:
        """The caps of ``capture, profile caps`` over ``timing_images`` images."""
        return Caps(self.images(timing_images, "aci"), self.images(timing_images, "pca"),
                    self.images(timing_images, "head_aci") if self.per_head else None)


def sweep_accumulators(model: torch.nn.Module, caps: Caps = Caps(), per_head: bool = False,
                       aci: bool = True) -> list:
    """Fresh accumulators of the book's first analysis sweep for ``model``, built by
    :func:`~vitphase_lib.analysis.analysis_accumulators` (every metric, labels, ``num_classes``
    from the model's classifier) with ``caps``. ``aci=False`` puts the ACI (and every head's)
    on no image while the rest of the attention metrics see every image: a value no profile
    allows, set after building for ``capture, caps, no ACI``."""
    from ..analysis import analysis_accumulators
    from ..capture import vit_layout
    sweep = analysis_accumulators(vit_layout(model), int(getattr(model, "num_classes", 0) or 0),
                                  aci_max_images=caps.aci, pca_max_images=caps.pca,
                                  per_head=per_head, head_aci_max_images=caps.head_aci)
    if not aci:
        for graph in (sweep.attention, sweep.heads):
            if graph is not None:
                graph.aci_max_images = 0
    return sweep.accumulators()


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
                from ..models import MiniViTConfig, build_mini_vit
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
    """``n`` random images generated from their index on access: O(1) memory in ``n``, so only
    the pass can make a memory child's peak grow."""

    def __init__(self, n: int, channels: int, size: int, seed: int = 0, num_classes: int = 10):
        self.n, self.shape, self.seed, self.num_classes = n, (channels, size, size), seed, num_classes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(index)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        image = torch.randn(self.shape, generator=g)
        return image, int(torch.randint(0, self.num_classes, (), generator=g))


# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class BenchCase:
    """One model: timed over ``timing_images``, its memory at ``memory_n`` and 4x that many
    images (None: not measured), analysed as ``profile`` analyses it (its caps and per-head
    setting; None: no capped variant, no per-head attention)."""

    spec: ModelSpec
    timing_images: int
    memory_n: int | None
    memory_batch: int | None = None  # batch size of the memory runs (default: spec.batch_size)
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
    quick: bool = False


def default_plan(quick: bool) -> BenchPlan:
    """Full: 5 interleaved repeats of every variant; mini-B over 500 images in batches of 250,
    ViT-B/16 over 32 images in batches of 8; memory at 500 / 2000 (mini-B) and 16 / 64
    (ViT-B) images. mini-B is analysed with the ``default`` profile (the mini zoo), ViT-B/16
    with ``paper``. What a pass pays once whatever its length (mostly allocating ViT-B's float64
    sums over 1 000 classes) weighs more in these short runs than in the book's, so the ratios
    are upper bounds.

    Quick (a smoke run): 2 repeats of plain, capture and the profile's caps over one batch of
    100 (mini-B) and of 4 (ViT-B); memory for mini-B only, in batches of 50, the n and 4n
    children at the same time."""
    from ..models import MINI_ZOO
    vit_b = "vit_base_patch16_224"
    if quick:
        return BenchPlan(cases=(
            BenchCase(ModelSpec.mini(MINI_ZOO["mini-b"], batch_size=100), timing_images=100,
                      memory_n=50, memory_batch=50, profile="default"),
            BenchCase(ModelSpec.timm(vit_b, batch_size=4, label="ViT-B/16"), timing_images=4,
                      memory_n=None, profile="paper"),
        ), repeats=2, variants=(PLAIN, CAPTURE, CAPTURE_PROFILE), parallel_memory=True,
            quick=True)
    return BenchPlan(cases=(
        BenchCase(ModelSpec.mini(MINI_ZOO["mini-b"], batch_size=250), timing_images=500,
                  memory_n=500, profile="default"),
        BenchCase(ModelSpec.timm(vit_b, batch_size=8, label="ViT-B/16"), timing_images=32,
                  memory_n=16, profile="paper"),
    ), repeats=5, variants=(*DIAGNOSTIC_VARIANTS, *CAPPED_VARIANTS, GEOMETRY_PASS))
