"""``vitphase estimate``: how long a profile takes, from FLOP counts and measurements on this machine.

No GPU is needed to estimate a GPU run, and no weights (random initialisation has the same cost):

1. **Counted** (``torch.utils.flop_counter``): the FLOPs of one image's plain forward pass, and the
   FLOPs of the whole analysis (the three sweeps of :func:`~vitphase_lib.analysis.full_analysis_tables`
   over two images each) minus those forwards, i.e. the float64 metric arithmetic per image. Two
   parts are counted from their definitions instead: the InfoX decoders at the profile's size
   (:func:`infox_flops`; counting them by running them would take hours on a CPU), and the ACI
   (:func:`aci_flops`, repeated squaring of one N x N matrix per block and image, counted apart
   because the profile runs it on a share of the images only). The token covariance of the InfoX
   decoders (``pca_max_images``) is counted on every analysis image although the profile caps it
   too: a slight overestimate (one D x D product per layer and image, about 0.1x of a forward).
2. **Measured here**: the plain forward per image on this CPU (its GFLOP/s put the FLOP counts
   against a real clock), and one linear probe fitted at the profile's size
   (the probes run on the host, with scikit-learn, on any machine).
3. **Assumed** (printed with the result): the GPU's dense bf16 and float64 throughput and the share
   of it a pass reaches.

The estimate is forward FLOPs / bf16 rate + metric FLOPs / float64 rate + probes (measured fit time
times the number of probes, divided among the host cores). It is an estimate, not a measurement.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Accelerator:
    name: str
    bf16_tflops: float      # dense peak
    fp64_tflops: float      # dense peak (tensor cores where there are)
    utilisation: float      # share of peak a streaming pass reaches (assumed)


H100 = Accelerator("H100 SXM", bf16_tflops=989.0, fp64_tflops=67.0, utilisation=0.4)


@dataclass
class ModelCost:
    model: str
    forward_gflops: float        # per image, counted
    metric_gflops: float         # per image and sweep, counted (float64 on the device)
    solve_gflops: float          # per model: the InfoX decoders' eigendecompositions and ridge grid
    aci_gflops: float            # per ACI image, all blocks, repeated squaring on a GPU
    cpu_forward_seconds: float   # per image, measured here
    probe_fit_seconds: float     # one probe at the profile's size, measured here
    probes: int


def forward_flops(model: torch.nn.Module, images: torch.Tensor) -> float:
    """FLOPs of a forward pass over ``images``. Attention runs unfused (as while tracing) so its two
    matrix products are counted: the counter does not see inside the fused CPU kernel."""
    from .capture import trace
    with trace(model, [], attention=True), FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(images)
    return float(counter.get_total_flops())


def _random_images(model: torch.nn.Module, n: int, num_classes: int) -> TensorDataset:
    size = model.patch_embed.img_size
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, model.patch_embed.proj.in_channels, *size, generator=g)
    return TensorDataset(images, torch.arange(n) % num_classes)


def infox_flops(patches: int, layers: int, dims: int) -> tuple[float, float]:
    """FLOPs of the InfoX decoders at ``dims`` components (metrics.scrambling), from the code:
    per image, the all-token decoder's normal equations X'X, X'Y (fit sweep) and its prediction
    (score sweep), with n = N k + 1 inputs and m = N k outputs; per model and layer, three
    eigendecompositions of X'X (two folds and both, about 9 n^3 each) and, for each ridge of the
    grid and fold, four n x n by n x m products (solve, shrinkage, held-out error)."""
    from .metrics.scrambling import RIDGE_GRID
    n, m = patches * dims + 1, patches * dims
    per_image = layers * (2 * n * n + 2 * n * m + 2 * n * m) / 2  # fit and score sweeps, averaged
    ridges = len(RIDGE_GRID) + 1
    per_model = layers * (3 * 9 * n ** 3 + ridges * 2 * 4 * 2 * n * n * m)
    return per_image, per_model


def aci_flops(patches: int, num_prefix: int) -> float:
    """FLOPs of one image's ACI at one block (repeated squaring of the patch-to-patch attention),
    counted by running it on a random attention matrix."""
    from .metrics.attention import consensus_index
    attention = torch.rand(1, patches + num_prefix, patches + num_prefix).softmax(dim=-1)
    with FlopCounterMode(display=False) as counter:
        consensus_index(attention, num_prefix, method="squaring")
    return float(counter.get_total_flops())


def measure_model(name: str, n_probe_fit: int, n_probe_score: int, num_classes: int,
                  infox_dims: int) -> ModelCost:
    """Count one model's FLOPs (random initialisation) and time its forward pass and one probe
    fit on this machine's CPU. The metrics are counted over two images per sweep with one InfoX
    component (cheap on a CPU); the InfoX decoders at the profile's ``infox_dims`` are added
    from :func:`infox_flops`."""
    from .analysis import PassConfig, full_analysis_tables
    from .loading import load_model
    from .metrics.probes import probe_top1
    model = load_model(name, pretrained=False).model
    images = _random_images(model, 2, num_classes)  # two classes: Neural Collapse needs them
    forward = forward_flops(model, images.tensors[0]) / 2
    with FlopCounterMode(display=False) as counter:
        full_analysis_tables(model, images, images, images, num_classes,
                             PassConfig(batch_size=2, progress=False), infox_dims=1, probe_jobs=1)
    layers, patches = len(model.blocks) + 3, model.patch_embed.num_patches
    infox_image, infox_model = infox_flops(patches, layers, infox_dims)
    aci = len(model.blocks) * aci_flops(patches, model.num_prefix_tokens)
    # the counter saw the ACI of the analysis sweep's two images too: it is reported on its own
    metric = max(0.0, (counter.get_total_flops() - 2 * aci) / 6 - forward) + infox_image

    start = time.perf_counter()
    with torch.inference_mode():
        model(images.tensors[0])
    cpu_forward = (time.perf_counter() - start) / 2

    rng = np.random.default_rng(0)
    width = model.embed_dim
    fit_y, score_y = np.arange(n_probe_fit) % num_classes, np.arange(n_probe_score) % num_classes
    signal = np.eye(num_classes, width, dtype=np.float32) * 3  # separable enough to converge
    fit_x = rng.normal(size=(n_probe_fit, width)).astype(np.float32) + signal[fit_y]
    score_x = rng.normal(size=(n_probe_score, width)).astype(np.float32) + signal[score_y]
    start = time.perf_counter()
    probe_top1(fit_x, fit_y, score_x, score_y)
    probe_seconds = time.perf_counter() - start
    probes = (len(model.blocks) + 1) * (2 if model.cls_token is not None else 1) + 2  # raw, pe: mean only
    return ModelCost(name, forward / 1e9, metric / 1e9, infox_model / 1e9, aci / 1e9, cpu_forward,
                     probe_seconds, probes)


@dataclass
class Workload:
    analysis_images: int
    probe_fit_images: int
    probe_score_images: int
    pe_alphas: int
    aci_images: int

    @property
    def forward_images(self) -> int:
        sweeps = self.analysis_images + self.probe_fit_images + self.probe_score_images
        return sweeps + self.pe_alphas * self.analysis_images

    @property
    def metric_images(self) -> int:
        return self.analysis_images + self.probe_fit_images + self.probe_score_images


def gpu_minutes(cost: ModelCost, work: Workload, gpu: Accelerator = H100,
                host_cores: int = 8) -> dict[str, float]:
    """Estimated minutes per part on ``gpu`` (probes on ``host_cores`` host cores)."""
    bf16 = gpu.bf16_tflops * 1e12 * gpu.utilisation
    fp64 = gpu.fp64_tflops * 1e12 * gpu.utilisation
    parts = {"forward": work.forward_images * cost.forward_gflops * 1e9 / bf16,
             "metrics": (work.metric_images * cost.metric_gflops + cost.solve_gflops) * 1e9 / fp64,
             "aci": work.aci_images * cost.aci_gflops * 1e9 / fp64,
             "probes": cost.probes * cost.probe_fit_seconds / host_cores}
    return {k: v / 60 for k, v in parts.items()}


def estimate(profile: str = "paper", host_cores: int = 8, gpu: Accelerator = H100) -> str:
    from .study import Study
    study = Study.from_profile(profile)
    num_classes = 1000 if profile == "paper" else 10
    aci = study.n_images if study.aci_max_images is None else min(study.aci_max_images, study.n_images)
    work = Workload(study.n_images, study.n_probe_fit, study.n_probe_score, len(study.pe_alphas), aci)
    lines = [f"Estimated run time of the {profile} profile ({work.forward_images} forward images and "
             f"{work.aci_images} ACI images per model) on one {gpu.name}: bf16 {gpu.bf16_tflops:g} "
             f"and float64 {gpu.fp64_tflops:g} TFLOP/s dense peak at an assumed {gpu.utilisation:.0%}; "
             f"probes fitted on {host_cores} host cores at this CPU's measured speed.", "",
             "model | forward GFLOP/img | metric GFLOP/img + per model | CPU here: forward s/img "
             "(GFLOP/s) | probe fit s x n | GPU min: forward + metrics + ACI + probes = total"]
    total = 0.0
    for name in study.models:
        cost = measure_model(name, study.n_probe_fit, study.n_probe_score, num_classes, study.infox_dims)
        minutes = gpu_minutes(cost, work, gpu, host_cores)
        total += sum(minutes.values())
        lines.append(
            f"{name} | {cost.forward_gflops:.1f} | {cost.metric_gflops:.2f} + {cost.solve_gflops:.0f} | "
            f"{cost.cpu_forward_seconds:.3f} ({cost.forward_gflops / cost.cpu_forward_seconds:.0f}) | "
            f"{cost.probe_fit_seconds:.1f} x {cost.probes} | "
            + " + ".join(f"{v:.1f}" for v in minutes.values()) + f" = {sum(minutes.values()):.1f}")
    lines += ["", f"total: about {total:.0f} minutes (an estimate from FLOP counts and the assumptions "
                  "above, not a measurement; data loading and JPEG decoding not included)"]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    print(estimate(args.profile, host_cores=args.host_cores))
    return 0
