"""The streaming pass: one forward sweep over a data set feeds every accumulator.

``run_pass`` is the only loop over images in the project. It is written for GPUs as well as
CPUs: batches are copied with ``non_blocking`` from pinned memory, autocast runs in the requested
dtype, accumulators keep their sums on the device, and the host reads them once, at the end.
Under ``torchrun`` each rank streams its own shard of the images and the sums are all-reduced
at the end of the pass (:mod:`vitphase_lib.distributed`), so every rank holds the totals.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from .capture import ViTLayout, patch_positional_embedding, scaled_positional_encoding, trace, vit_layout
from .distributed import broadcast_object, shard, world
from .metrics import FiniteCheck, TokenGeometry, Top1, pe_dominance_ratio
from .metrics.base import Accumulator

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class PassConfig:
    batch_size: int = 256
    device: str = "cpu"
    dtype: str = "float32"  # autocast dtype: float32 (off), bfloat16, float16
    num_workers: int = 0
    progress: bool = True

    def __post_init__(self):
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise TypeError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {self.device!r}")


def make_loader(dataset: Dataset, config: PassConfig) -> DataLoader:
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=False,
                      num_workers=config.num_workers,
                      pin_memory=torch.device(config.device).type == "cuda",
                      persistent_workers=False)


@torch.inference_mode()
def run_pass(model: torch.nn.Module, dataset: Dataset, accumulators: Sequence[Accumulator],
             config: PassConfig, attention: bool | None = None, desc: str = "pass") -> None:
    """Stream ``dataset`` through ``model`` once, feeding every accumulator. Attention weights are
    traced (fused attention off) only when an accumulator reads them (or ``attention=True``)."""
    if attention is None:
        attention = any(acc.reads_attention() for acc in accumulators)
    device = torch.device(config.device)
    model = model.to(device).eval()
    finite = FiniteCheck(vit_layout(model))
    sinks = [finite, *accumulators]
    autocast = torch.autocast(device.type, dtype=DTYPES[config.dtype],
                              enabled=config.dtype != "float32")
    current = world()
    images_here = shard(len(dataset), config.batch_size, current)  # every image on one process
    if current.size > 1:
        dataset = Subset(dataset, images_here)
    loader = make_loader(dataset, config)
    start = images_here.start                     # global index of the next batch's first image
    with trace(model, sinks, attention=attention):
        for images, labels in tqdm(loader, desc=desc, disable=not (config.progress and current.is_main),
                                   leave=False):
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            for sink in sinks:
                sink.begin_batch(labels, start)
            start += len(labels)
            with autocast:
                logits = model(images)
            for sink in sinks:
                sink.on_logits(logits)
    if current.size > 1:
        for sink in sinks:
            sink.all_reduce()
    finite.check()


def geometry_tables(model: torch.nn.Module, dataset: Dataset, config: PassConfig,
                    desc: str = "geometry") -> dict[str, pd.DataFrame]:
    """Token similarity per layer, top-1 and the PE Dominance Ratio, in one pass."""
    layout = vit_layout(model)
    geometry, top1 = TokenGeometry(layout), Top1(layout)
    run_pass(model, dataset, [geometry, top1], config, attention=False, desc=desc)
    per_layer = geometry.result()
    return {"per_layer": per_layer, "summary": _summary(model, layout, per_layer, top1)}


def _summary(model, layout: ViTLayout, per_layer: pd.DataFrame, top1: Top1) -> pd.DataFrame:
    """Top-1, the PE Dominance Ratio and the token layout of a model, one row."""
    summary = top1.result()
    raw_norm = float(per_layer.loc[per_layer.layer == "raw", "mean_token_norm"].iloc[0])
    if model.pos_embed is not None:
        pe = patch_positional_embedding(model).detach()
        summary["pe_norm"] = float(pe.float().norm(dim=-1).mean())
        summary["raw_token_norm"] = raw_norm
        summary["pe_dominance_ratio"] = pe_dominance_ratio(pe, raw_norm)
    summary["has_cls"] = layout.has_cls
    summary["num_prefix_tokens"] = layout.num_prefix_tokens
    summary["num_patches"] = layout.num_patches
    return summary


def pe_scaling_tables(model: torch.nn.Module, dataset: Dataset, alphas: Sequence[float],
                      config: PassConfig) -> dict[str, pd.DataFrame]:
    """Top-1 and the similarity curve with z + alpha * PE, one pass per alpha."""
    curves, accuracy = [], []
    for alpha in alphas:
        with scaled_positional_encoding(model, alpha):
            tables = geometry_tables(model, dataset, config, desc=f"alpha={alpha:g}")
        curves.append(tables["per_layer"].assign(alpha=float(alpha)))
        accuracy.append({"alpha": float(alpha), "top1": float(tables["summary"]["top1"].iloc[0])})
    return {"per_layer": pd.concat(curves, ignore_index=True), "top1": pd.DataFrame(accuracy)}


def network_head(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The classifier as a linear map of the [CLS] token after the final norm, when the model
    is token-pooled with nothing between that token and ``head`` (else None)."""
    if (getattr(model, "global_pool", None) == "token" and isinstance(model.fc_norm, torch.nn.Identity)
            and isinstance(model.head, torch.nn.Linear)
            and getattr(model, "head_dist", None) is None):  # DeiT-distilled averages two heads
        return model.head.weight.detach(), model.head.bias.detach()
    return None


def full_analysis_tables(model: torch.nn.Module, analysis_set: Dataset, fit_set: Dataset,
                         score_set: Dataset, num_classes: int, config: PassConfig,
                         labels_match_head: bool = True, aci_max_images: int | None = None,
                         pca_max_images: int | None = None,
                         infox_dims: int = 16, probe_max_dim: int | None = None,
                         feature_folder: str | None = None, seed: int = 0, probe_jobs: int = 1,
                         desc: str = "analysis") -> dict[str, pd.DataFrame]:
    """Every metric of a model, in three streaming sweeps over disjoint images:

    1. ``analysis_set``: token geometry, top-1, attention graph, Neural Collapse moments and the
       token moments that define the InfoX decoders' inputs;
    2. ``fit_set``: InfoX decoder normal equations, probe features;
    3. ``score_set``: InfoX R^2, NC4 (nearest class center), probe features; then the probes.
    """
    from .metrics.attention import AttentionGraph
    from .metrics.collapse import CollapseMoments, NearestClassCenter, collapse_table
    from .metrics.probes import FeatureCollector, probe_table
    from .metrics.scrambling import DecoderFit, DecoderScore, TokenMoments

    layout = vit_layout(model)
    geometry, top1 = TokenGeometry(layout), Top1(layout)
    attention = AttentionGraph(layout, aci_max_images=aci_max_images)
    moments, token_moments = CollapseMoments(layout, num_classes), TokenMoments(layout, pca_max_images)
    run_pass(model, analysis_set, [geometry, top1, attention, moments, token_moments], config,
             desc=desc)

    head = network_head(model) if labels_match_head else None
    heads = {("head", "cls"): head} if head is not None and layout.has_cls else {}
    collapse, class_geometry = collapse_table(moments, heads)
    inputs = {layer: token_moments.projection(layer, infox_dims) for layer in layout.layer_names}
    target = token_moments.projection("raw", infox_dims, standardize=True, whiten=False)
    del moments, token_moments  # their sums (about 1 GB for ViT-L/16) are no longer needed

    folder = None if feature_folder is None else f"{feature_folder}/fit"
    fit, fit_features = DecoderFit(layout, inputs, target), FeatureCollector(layout, len(fit_set), folder)
    run_pass(model, fit_set, [fit, fit_features], config, attention=False, desc=f"{desc} (fit)")

    folder = None if feature_folder is None else f"{feature_folder}/score"
    score = DecoderScore(layout, inputs, target, fit.decoders(release=True), fit.ridges)
    del fit
    ncc, score_features = NearestClassCenter(layout, class_geometry), FeatureCollector(layout, len(score_set), folder)
    run_pass(model, score_set, [score, ncc, score_features], config, attention=False,
             desc=f"{desc} (score)")

    per_layer = geometry.result()
    return {"per_layer": per_layer, "summary": _summary(model, layout, per_layer, top1),
            "attention": attention.result(),
            "collapse": collapse.merge(ncc.result(), on=["layer", "feature"]),
            "scrambling": score.result(),
            # the probes are fitted on the host once (rank 0) and shared with the other ranks
            "probes": broadcast_object(probe_table(fit_features, score_features, max_dim=probe_max_dim,
                                                   seed=seed, n_jobs=probe_jobs)
                                       if world().is_main else None)}
