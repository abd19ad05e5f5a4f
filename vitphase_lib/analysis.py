"""The streaming pass: one forward sweep over a data set feeds every accumulator.

``run_pass`` is the only loop over images in the project. It is written for GPUs as well as
CPUs: batches are copied with ``non_blocking`` from pinned memory, autocast runs in the requested
dtype, accumulators keep their sums on the device, and the host reads them once, at the end.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .capture import ViTLayout, patch_positional_embedding, scaled_positional_encoding, trace, vit_layout
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
             config: PassConfig, attention: bool = True, desc: str = "pass") -> None:
    """Stream ``dataset`` through ``model`` once, feeding every accumulator."""
    device = torch.device(config.device)
    model = model.to(device).eval()
    finite = FiniteCheck(vit_layout(model))
    sinks = [finite, *accumulators]
    autocast = torch.autocast(device.type, dtype=DTYPES[config.dtype],
                              enabled=config.dtype != "float32")
    loader = make_loader(dataset, config)
    with trace(model, sinks, attention=attention):
        for images, labels in tqdm(loader, desc=desc, disable=not config.progress, leave=False):
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            for sink in sinks:
                sink.begin_batch(labels)
            with autocast:
                logits = model(images)
            for sink in sinks:
                sink.on_logits(logits)
    finite.check()


def geometry_tables(model: torch.nn.Module, dataset: Dataset, config: PassConfig,
                    desc: str = "geometry") -> dict[str, pd.DataFrame]:
    """Token similarity per layer, top-1 and the PE Dominance Ratio, in one pass."""
    layout = vit_layout(model)
    geometry, top1 = TokenGeometry(layout), Top1(layout)
    run_pass(model, dataset, [geometry, top1], config, attention=False, desc=desc)
    per_layer = geometry.result()
    summary = top1.result()
    raw_norm = float(per_layer.loc[per_layer.layer == "raw", "mean_token_norm"].iloc[0])
    if model.pos_embed is not None:
        summary["pe_norm"] = float(patch_positional_embedding(model).detach().float().norm(dim=-1).mean())
        summary["raw_token_norm"] = raw_norm
        summary["pe_dominance_ratio"] = pe_dominance_ratio(patch_positional_embedding(model).detach(), raw_norm)
    return {"per_layer": per_layer, "summary": summary}


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
