"""The streaming pass: one forward sweep over a data set feeds every accumulator.

``run_pass`` is the only loop over images in the project. It is written for GPUs as well as
CPUs: batches are copied with ``non_blocking`` from pinned memory, autocast runs in the requested
dtype, accumulators keep their sums on the device, and the host reads them once, at the end.
Under ``torchrun`` each rank streams its own shard of the images and the sums are all-reduced
at the end of the pass (:mod:`vitphase_lib.distributed`), so every rank holds the totals.
"""
from __future__ import annotations

import math
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


def _summary(model: torch.nn.Module, layout: ViTLayout, per_layer: pd.DataFrame,
             top1: Top1 | None) -> pd.DataFrame:
    """Top-1, the PE Dominance Ratio and the token layout of a model, one row.

    A model without an additive position embedding gets NaN for ``pe_norm`` and
    ``pe_dominance_ratio``, and the reason in ``pe_note`` ('' when they apply).
    """
    summary = top1.result() if top1 is not None else pd.DataFrame(  # no labels: no top-1
        [{"top1": math.nan, "images": int(per_layer.images.iloc[0])}])
    raw_norm = float(per_layer.loc[per_layer.layer == "raw", "mean_token_norm"].iloc[0])
    pe_norm = ratio = math.nan
    if not layout.pe_note:
        pe = patch_positional_embedding(model).detach()
        pe_norm, ratio = float(pe.float().norm(dim=-1).mean()), pe_dominance_ratio(pe, raw_norm)
    summary["pe_norm"] = pe_norm
    summary["raw_token_norm"] = raw_norm
    summary["pe_dominance_ratio"] = ratio
    summary["pe_note"] = layout.pe_note
    summary["has_cls"] = layout.has_cls
    summary["num_prefix_tokens"] = layout.num_prefix_tokens
    summary["num_patches"] = layout.num_patches
    return summary


def pe_scaling_tables(model: torch.nn.Module, dataset: Dataset, alphas: Sequence[float],
                      config: PassConfig) -> dict[str, pd.DataFrame]:
    """Top-1 and the similarity curve with z + alpha * PE, one pass per alpha. A model without an
    additive position embedding raises :class:`~vitphase_lib.models.UnsupportedModelError` with
    the reason (``vit_layout(model).pe_note``) before any pass."""
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


ALL_METRICS = ("similarity", "attention", "collapse", "scrambling", "probes")
LABELLED_METRICS = ("collapse", "probes")  # and top-1, part of "similarity" when there are labels


@dataclass
class FirstSweep:
    """The accumulators of the analysis pass's first sweep, by role (None: not computed)."""

    geometry: Accumulator
    top1: Accumulator | None
    attention: Accumulator | None
    heads: Accumulator | None
    moments: Accumulator | None
    token_moments: Accumulator | None

    def accumulators(self) -> list[Accumulator]:
        """The ones present, in the order the pass feeds them."""
        return _present(self.geometry, self.top1, self.attention, self.heads, self.moments,
                        self.token_moments)


def analysis_accumulators(layout: ViTLayout, num_classes: int,
                          metrics: Sequence[str] = ALL_METRICS, has_labels: bool = True,
                          aci_max_images: int | None = None, pca_max_images: int | None = None,
                          per_head: bool = False,
                          head_aci_max_images: int | None = None) -> FirstSweep:
    """The accumulators of :func:`full_analysis_tables`' first sweep over the analysis images.

    The one place that decides what the book's analysis pass computes: ``vitphase bench`` times
    the list this returns, so the benchmark cannot drift from the pass it measures. Token
    geometry always; top-1 with labels; the attention graph for ``"attention"`` (every head too
    with ``per_head``); the Neural Collapse moments for ``"collapse"`` (needs labels); the token
    moments behind the InfoX decoders for ``"scrambling"``. The caps bound the images entering
    the costly per-image metrics (None: every image).
    """
    from .metrics.attention import AttentionGraph, AttentionHeads
    from .metrics.collapse import CollapseMoments
    from .metrics.scrambling import TokenMoments

    wanted = set(metrics) - (set() if has_labels else set(LABELLED_METRICS))
    attention = AttentionGraph(layout, aci_max_images=aci_max_images) if "attention" in wanted else None
    return FirstSweep(
        geometry=TokenGeometry(layout),
        top1=Top1(layout) if has_labels else None,
        attention=attention,
        heads=AttentionHeads(layout, head_aci_max_images) if per_head and attention else None,
        moments=CollapseMoments(layout, num_classes) if "collapse" in wanted else None,
        token_moments=TokenMoments(layout, pca_max_images) if "scrambling" in wanted else None)


def full_analysis_tables(model: torch.nn.Module, analysis_set: Dataset, fit_set: Dataset | None,
                         score_set: Dataset | None, num_classes: int, config: PassConfig,
                         metrics: Sequence[str] = ALL_METRICS, has_labels: bool = True,
                         labels_match_head: bool = True, aci_max_images: int | None = None,
                         pca_max_images: int | None = None,
                         infox_dims: int = 16, probe_max_dim: int | None = None,
                         per_head: bool = False, head_aci_max_images: int | None = None,
                         feature_folder: str | None = None, seed: int = 0, probe_jobs: int = 1,
                         desc: str = "analysis") -> dict[str, pd.DataFrame]:
    """The metrics of a model (``metrics``: all by default), in up to three streaming sweeps over
    disjoint images:

    1. ``analysis_set``: token geometry, top-1, attention graph (per head too with ``per_head``),
       Neural Collapse moments and the token moments that define the InfoX decoders' inputs;
    2. ``fit_set``: InfoX decoder normal equations, probe features;
    3. ``score_set``: InfoX R^2, NC4 (nearest class center), probe features; then the probes.

    Sweeps 2 and 3 run only for collapse, scrambling or probes. Without labels (``has_labels``
    False) top-1, collapse and probes are left out.
    """
    from .metrics.collapse import NearestClassCenter, collapse_table
    from .metrics.probes import FeatureCollector, probe_table
    from .metrics.scrambling import DecoderFit, DecoderScore

    wanted = set(metrics) - (set() if has_labels else set(LABELLED_METRICS))
    layout = vit_layout(model)
    sweep = analysis_accumulators(layout, num_classes, metrics, has_labels=has_labels,
                                  aci_max_images=aci_max_images, pca_max_images=pca_max_images,
                                  per_head=per_head, head_aci_max_images=head_aci_max_images)
    geometry, top1, attention, heads = sweep.geometry, sweep.top1, sweep.attention, sweep.heads
    moments, token_moments = sweep.moments, sweep.token_moments
    run_pass(model, analysis_set, sweep.accumulators(), config, desc=desc)
    del sweep  # the moments' sums are released below, once read
    per_layer = geometry.result()
    tables = {"per_layer": per_layer, "summary": _summary(model, layout, per_layer, top1)}
    if attention is not None:
        tables["attention"] = attention.result()
    if heads is not None:
        tables["attention_heads"] = heads.result()
    if not wanted & {"collapse", "scrambling", "probes"}:
        return tables

    collapse = class_geometry = inputs = target = None
    if moments is not None:
        head = network_head(model) if labels_match_head else None
        head_features = {("head", "cls"): head} if head is not None and layout.has_cls else {}
        collapse, class_geometry = collapse_table(moments, head_features)
    if token_moments is not None:
        inputs = {layer: token_moments.projection(layer, infox_dims) for layer in layout.layer_names}
        target = token_moments.projection("raw", infox_dims, standardize=True, whiten=False)
    del moments, token_moments  # their sums (about 1 GB for ViT-L/16) are no longer needed

    probes = "probes" in wanted
    fit = DecoderFit(layout, inputs, target) if inputs is not None else None
    fit_features = (FeatureCollector(layout, len(fit_set), _subfolder(feature_folder, "fit"))
                    if probes else None)
    if fit or fit_features:
        run_pass(model, fit_set, _present(fit, fit_features), config, attention=False,
                 desc=f"{desc} (fit)")
    score = (DecoderScore(layout, inputs, target, fit.decoders(release=True), fit.ridges)
             if fit is not None else None)
    del fit
    ncc = NearestClassCenter(layout, class_geometry) if class_geometry is not None else None
    score_features = (FeatureCollector(layout, len(score_set), _subfolder(feature_folder, "score"))
                      if probes else None)
    run_pass(model, score_set, _present(score, ncc, score_features), config, attention=False,
             desc=f"{desc} (score)")

    if collapse is not None:
        tables["collapse"] = collapse.merge(ncc.result(), on=["layer", "feature"])
    if score is not None:
        tables["scrambling"] = score.result()
    if probes:
        # the probes are fitted on the host once (rank 0) and shared with the other ranks
        tables["probes"] = broadcast_object(
            probe_table(fit_features, score_features, max_dim=probe_max_dim, seed=seed,
                        n_jobs=probe_jobs) if world().is_main else None)
    return tables


def _present(*accumulators) -> list[Accumulator]:
    return [acc for acc in accumulators if acc is not None]


def _subfolder(folder: str | None, name: str) -> str | None:
    return None if folder is None else f"{folder}/{name}"


def retention_tables(model: torch.nn.Module, analysis_set: Dataset, fit_set: Dataset, score_set: Dataset,
                     config: PassConfig, dims: Sequence[int] = (4, 8, 16, 32),
                     ridges: Sequence[str | float] = ("cv", 1e-3, 1e-1, 10.0),
                     pca_max_images: int | None = None, cka_max_images: int | None = None,
                     desc: str = "retention") -> dict[str, pd.DataFrame]:
    """What each layer keeps of the raw patch embeddings: linear CKA with them (table ``cka``,
    :class:`~vitphase_lib.metrics.retention.RawCKA`) and InfoX / ISI under every decoder budget
    (table ``isi_budget``), in three streaming sweeps however many budgets:

    1. ``analysis_set``: RawCKA and the token moments, whose top-k components give the decoders'
       inputs and targets for every k of ``dims`` (each capped at the width, duplicates dropped);
    2. ``fit_set``: the decoders' normal equations, one :class:`DecoderFit` per k;
    3. ``score_set``: held-out InfoX, one :class:`DecoderScore` per (k, ridge).

    ``ridges``: ``"cv"``, the 2-fold cross-validated choice of :func:`full_analysis_tables` (whose
    ``scrambling`` table is the rows k = ``infox_dims``, ``"cv"``), or a fixed ridge per sample
    for both decoders, the all decoder shrunk towards the self decoder of that ridge (a huge
    ridge returns the self decoder: ISI -> 0). A fixed ridge per sample does not shrink the two
    alike: the all decoder's inputs, N tokens that share much of the image, have directions of
    up to about N times a token's variance, which the ridge barely shrinks, and each of the self
    decoder's per-position intercepts sees 1/N of its samples. So at moderate fixed ridges even
    ``raw``, which scrambles nothing, gets ISI > 0: its row is the control. Every k's normal
    equations are held at once.

    Tables: ``cka`` (layer, depth, cka, cka_positional, tokens) and ``isi_budget`` (infox_dims,
    ridge, then the scrambling table's layer, depth, infox_self, infox_all, isi, ridge_self,
    ridge_all), a row per layer and budget.
    """
    from .metrics.retention import RawCKA, fixed_ridge_decoders
    from .metrics.scrambling import DecoderFit, DecoderScore, TokenMoments

    layout = vit_layout(model)
    ks, ridges = _budgets(dims, ridges, layout.width)
    moments, cka = TokenMoments(layout, pca_max_images), RawCKA(layout, cka_max_images)
    run_pass(model, analysis_set, [moments, cka], config, desc=desc)
    projections = {k: ({layer: moments.projection(layer, k) for layer in layout.layer_names},
                       moments.projection("raw", k, standardize=True, whiten=False)) for k in ks}
    del moments
    fits = {k: DecoderFit(layout, *projections[k]) for k in ks}
    run_pass(model, fit_set, list(fits.values()), config, attention=False, desc=f"{desc} (fit)")
    scores = {}
    for k in ks:
        fit = fits.pop(k)
        decoders = fixed_ridge_decoders(fit, [ridge for ridge in ridges if ridge != "cv"])
        if "cv" in ridges:  # last: it frees the normal equations
            decoders["cv"] = fit.decoders(release=True), fit.ridges
        del fit
        scores.update({(k, ridge): DecoderScore(layout, *projections[k], *decoders[ridge]) for ridge in ridges})
    run_pass(model, score_set, list(scores.values()), config, attention=False, desc=f"{desc} (score)")
    budget = pd.concat([score.result().assign(infox_dims=k, ridge=ridge) for (k, ridge), score in scores.items()],
                       ignore_index=True)
    first = ["infox_dims", "ridge"]
    return {"cka": cka.result(), "isi_budget": budget[first + [c for c in budget.columns if c not in first]]}


def _budgets(dims: Sequence[int], ridges: Sequence[str | float], width: int
             ) -> tuple[list[int], list[str | float]]:
    """The decoder budgets, checked: dims capped at ``width`` and ridges ("cv" or a positive
    number), each without duplicates, in the order given."""
    for k in dims:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise TypeError(f"dims must be positive ints, got {k!r}")
    for ridge in ridges:
        if ridge != "cv" and (isinstance(ridge, (bool, str)) or not isinstance(ridge, (int, float))
                              or not ridge > 0):
            raise ValueError(f"ridges must be 'cv' or positive numbers, got {ridge!r}")
    if not dims or not ridges:
        raise ValueError("retention_tables needs at least one dim and one ridge")
    return (list(dict.fromkeys(min(k, width) for k in dims)),
            list(dict.fromkeys(r if r == "cv" else float(r) for r in ridges)))
