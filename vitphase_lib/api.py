"""The analysis as a function: :func:`analyse` runs the book's streaming pass on a model instance.

    import timm, vitphase_lib
    model = timm.create_model("vit_small_patch16_224", pretrained=False)
    result = vitphase_lib.analyse(model, my_dataset, n_images=2000)
    result.tables["per_layer"]      # tidy pandas tables
    result.plot()                   # the chapters' figures for this model
    result.to_parquet("out/")

The same accumulators and passes as the book (:func:`vitphase_lib.analysis.full_analysis_tables`),
on whichever metrics are asked for: with labels every metric runs; without them the label-free
ones (token similarity, attention graph, information scrambling) run and the others are skipped
with a note saying so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from .analysis import ALL_METRICS, LABELLED_METRICS, PassConfig, full_analysis_tables
from .data import analysis_splits

HELD_OUT_METRICS = ("collapse", "scrambling", "probes")  # fitted on some images, scored on others


@dataclass
class Analysis:
    """What :func:`analyse` returns: the tables of one model, and notes on what was skipped.

    ``tables``: ``per_layer`` (token similarity and norms per layer), ``summary`` (one row: top-1,
    PE Dominance Ratio, token layout), ``attention`` (per block), ``attention_heads`` (per block
    and head, with ``per_head=True``), ``collapse`` (NC1-NC4 per layer and feature),
    ``scrambling`` (InfoX_self, InfoX_all, ISI per layer), ``probes`` (linear-probe top-1 per
    layer and feature) - those of the metrics that ran.
    """

    model: str
    tables: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self.tables:
            raise KeyError(f"no table {name!r}; this analysis has {sorted(self.tables)}"
                           + (f" ({'; '.join(self.notes)})" if self.notes else ""))
        return self.tables[name]

    def __repr__(self) -> str:
        shapes = ", ".join(f"{name} {len(table)}x{table.shape[1]}" for name, table in self.tables.items())
        return f"Analysis({self.model}: {shapes}" + (f"; {len(self.notes)} note(s)" if self.notes else "") + ")"

    def to_parquet(self, folder: str | Path) -> Path:
        """Each table as ``<folder>/<name>.parquet``, settings and notes in ``analysis.json``."""
        return self._save(folder, lambda table, path: table.to_parquet(path, index=False), ".parquet")

    def to_csv(self, folder: str | Path) -> Path:
        """Each table as ``<folder>/<name>.csv``, settings and notes in ``analysis.json``."""
        return self._save(folder, lambda table, path: table.to_csv(path, index=False), ".csv")

    def _save(self, folder, write, suffix: str) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, table in self.tables.items():
            write(table, folder / f"{name}{suffix}")
        (folder / "analysis.json").write_text(json.dumps(
            {"model": self.model, "settings": self.settings, "notes": self.notes,
             "tables": sorted(self.tables)}, indent=2, default=str))
        return folder

    def plot(self) -> dict:
        """The chapters' figures for this model, those its tables allow: ``similarity`` (F1),
        ``attention`` (F3, per head too with ``per_head``), ``collapse`` (F4), ``scrambling``
        (F5) and ``tradeoff`` (F6, probe top-1 against ISI). Returns name -> matplotlib figure."""
        from .plotting import analysis_figures
        return analysis_figures(self.tables, self.model)


def analyse(model: torch.nn.Module, data: Dataset | DataLoader, *,
            metrics: Sequence[str] = ALL_METRICS, n_images: int | None = None,
            n_probe_fit: int | None = None, n_probe_score: int | None = None,
            per_head: bool = False, device: str = "cpu", dtype: str = "float32",
            batch_size: int = 64, num_workers: int = 0, num_classes: int | None = None,
            labels_match_head: bool = True, aci_max_images: int | None = 512,
            head_aci_max_images: int | None = 128, pca_max_images: int | None = 512,
            infox_dims: int = 16, probe_max_dim: int | None = None, seed: int = 0,
            progress: bool = True, name: str | None = None) -> Analysis:
    """Every metric of the book on ``model`` (weights as they are), streamed over ``data``.

    Args:
        model: a timm ViT instance (VisionTransformer, Eva, Beit or VisionTransformerRelPos).
        data: a map-style ``Dataset`` (or a ``DataLoader`` over one) of ``(image, label)`` pairs
            or of images alone, preprocessed for the model.
        metrics: any of ``similarity``, ``attention``, ``collapse``, ``scrambling``, ``probes``.
        n_images: images of the analysis sweep. With a held-out metric (collapse, scrambling,
            probes) the data are split into three disjoint parts, by default 1 : 2 : 1 (analysis,
            probe-fit, probe-score); otherwise every image is analysed.
        n_probe_fit, n_probe_score: images the decoders and probes are fitted and scored on.
        per_head: also CLS centrality and ACI of every head (``attention_heads``).
        device, dtype: where the pass runs, and its autocast dtype (float32, bfloat16, float16).
        batch_size, num_workers: of the data loader (a given ``DataLoader``'s own are used).
        num_classes: classes of the labels (default: the model's ``num_classes``).
        labels_match_head: the labels index the model's own classes (top-1, the head's NC4).
        aci_max_images, head_aci_max_images, pca_max_images: the first images that enter the
            ACI (averaged heads; every head) and the InfoX principal components.
        infox_dims: principal components of the InfoX decoders' inputs and targets.
        probe_max_dim: reduce probe features to this width by PCA first (None: never).
        seed: the split of the images and the probes' seed.
        progress: progress bars.
        name: the model's name in tables and figures (default: its class and width).

    Returns:
        an :class:`Analysis` holding the tables, with notes on what did not run and why.
    """
    unknown = sorted(set(metrics) - set(ALL_METRICS))
    if unknown or isinstance(metrics, str):
        raise ValueError(f"unknown metric(s) {unknown or [metrics]}; choose from {list(ALL_METRICS)}")
    dataset, batch_size, num_workers = _map_style(data, batch_size, num_workers)
    labelled = _has_labels(dataset)
    notes = []
    if not labelled:
        skipped = [m for m in metrics if m in LABELLED_METRICS]
        notes.append("the data have no labels: top-1" + (f" and {', '.join(skipped)}" if skipped else "")
                     + " need them and did not run")
        metrics = [m for m in metrics if m not in LABELLED_METRICS]
        dataset = _WithDummyLabels(dataset)
    sets = _splits(dataset, metrics, n_images, n_probe_fit, n_probe_score, seed)
    config = PassConfig(batch_size=batch_size, device=device, dtype=dtype,
                        num_workers=num_workers, progress=progress)
    name = name or f"{type(model).__name__}-{getattr(model, 'embed_dim', '')}"
    tables = full_analysis_tables(
        model, *sets, num_classes=num_classes or int(getattr(model, "num_classes", 0)) or 1,
        config=config, metrics=tuple(metrics), has_labels=labelled,
        labels_match_head=labels_match_head and labelled, aci_max_images=aci_max_images,
        pca_max_images=pca_max_images, infox_dims=infox_dims, probe_max_dim=probe_max_dim,
        per_head=per_head, head_aci_max_images=head_aci_max_images, seed=seed, desc=name)
    summary = tables.get("summary")
    if summary is not None and "pe_note" in summary and summary.pe_note.iloc[0]:
        notes.append(f"PE Dominance Ratio not applicable: {summary.pe_note.iloc[0]}")
    settings = {"metrics": list(metrics), "images": {k: len(s) for k, s in zip(
        ("analysis", "probe_fit", "probe_score"), sets) if s is not None},
        "per_head": per_head, "device": device, "dtype": dtype, "batch_size": batch_size,
        "aci_max_images": aci_max_images, "head_aci_max_images": head_aci_max_images,
        "pca_max_images": pca_max_images, "infox_dims": infox_dims, "seed": seed}
    return Analysis(name, tables, notes, settings)


def _map_style(data, batch_size: int, num_workers: int) -> tuple[Dataset, int, int]:
    if isinstance(data, DataLoader):
        batch_size = data.batch_size or batch_size
        num_workers, data = data.num_workers, data.dataset
    if isinstance(data, IterableDataset) or not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise TypeError(f"data must be a map-style torch Dataset (with __len__ and __getitem__) or "
                        f"a DataLoader over one, got {type(data).__name__}: the analysis splits "
                        "the images into disjoint parts by index")
    if len(data) == 0:
        raise ValueError("data holds no images")
    return data, batch_size, num_workers


def _has_labels(dataset: Dataset) -> bool:
    first = dataset[0]
    return isinstance(first, (tuple, list)) and len(first) >= 2


class _WithDummyLabels(Dataset):
    """Images alone, paired with label 0 (no metric that needs labels runs on them)."""

    def __init__(self, images: Dataset):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        item = self.images[index]
        return (item[0] if isinstance(item, (tuple, list)) else item), 0


def _splits(dataset: Dataset, metrics, n_images, n_fit, n_score, seed: int):
    """(analysis, probe-fit, probe-score) subsets; the latter two None without held-out metrics."""
    total = len(dataset)
    if not set(metrics) & set(HELD_OUT_METRICS):
        n = total if n_images is None else n_images
        _check_count("n_images", n, total)
        return Subset(dataset, range(n)) if n < total else dataset, None, None
    n_images = total // 4 if n_images is None else n_images
    n_fit = (total - n_images) * 2 // 3 if n_fit is None else n_fit
    n_score = total - n_images - n_fit if n_score is None else n_score
    for label, count in (("n_images", n_images), ("n_probe_fit", n_fit), ("n_probe_score", n_score)):
        _check_count(label, count, total)
    if n_images + n_fit + n_score > total:
        raise ValueError(f"n_images + n_probe_fit + n_probe_score = {n_images + n_fit + n_score} "
                         f"exceed the {total} images of the data; lower them")
    splits = analysis_splits(total, n_images, n_fit, n_score, seed=seed)
    return tuple(Subset(dataset, list(getattr(splits, part)))
                 for part in ("analysis", "probe_fit", "probe_score"))


def _check_count(label: str, count, total: int) -> None:
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= total:
        raise ValueError(f"{label} must be an int from 1 to the {total} images of the data, got {count!r}")


__all__ = ["Analysis", "analyse"]
