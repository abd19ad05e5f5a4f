"""Linear probes: logistic regression per layer on the [CLS] and mean-patch features, fitted on
the probe-fit images and scored on the disjoint probe-score images (scikit-learn).

:class:`FeatureCollector` streams each (layer, feature) into a preallocated float32 array,
memory-mapped on disk when a folder is given, so host memory stays bounded for large runs; it is
the one accumulator that copies to the host every batch (once per batch, all layers together).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..capture import ViTLayout
from .base import Accumulator
from .collapse import layer_features


class FeatureCollector(Accumulator):
    name = "features"

    def __init__(self, layout: ViTLayout, n_images: int, folder: str | Path | None = None):
        super().__init__(layout)
        self.n_images, self.folder = n_images, Path(folder) if folder else None
        self.features: dict[tuple[str, str], np.ndarray] = {}
        self.targets = np.zeros(n_images, dtype=np.int64)
        self._start = self._stop = 0

    def all_reduce(self, rows_per_chunk: int = 4096) -> None:
        """Gather every rank's rows onto every rank: each rank's arrays are zero outside its own
        rows, so a sum is an exact gather. Chunked, so memory stays bounded for large runs."""
        import torch.distributed as dist

        from ..distributed import check_same_keys, collective_device
        check_same_keys([f"{layer}/{feature}" for layer, feature in self.features], "probe features")
        device = collective_device()
        arrays = [self.targets] + [self.features[key] for key in sorted(self.features)]
        for array in arrays:
            for lo in range(0, self.n_images, rows_per_chunk):
                chunk = torch.from_numpy(np.ascontiguousarray(array[lo:lo + rows_per_chunk])).to(device)
                dist.all_reduce(chunk)
                array[lo:lo + rows_per_chunk] = chunk.cpu().numpy()

    def begin_batch(self, labels: torch.Tensor, start: int | None = None) -> None:
        super().begin_batch(labels, start)
        # rows by global image index: on several ranks each fills its own rows, zeros elsewhere
        self._start, self._stop = self.batch_start, self.batch_start + len(labels)
        if self._stop > self.n_images:
            raise ValueError(f"FeatureCollector was sized for {self.n_images} images but got image "
                             f"{self._stop - 1}; give the number of images of the whole data set.")
        self._pending: dict[tuple[str, str], torch.Tensor] = {}

    def _array(self, key: tuple[str, str], dim: int) -> np.ndarray:
        if key not in self.features:
            if self.folder is None:
                self.features[key] = np.zeros((self.n_images, dim), dtype=np.float32)
            else:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.features[key] = np.lib.format.open_memmap(
                    self.folder / f"{key[0]}-{key[1]}.npy", mode="w+", dtype=np.float32,
                    shape=(self.n_images, dim))
        return self.features[key]

    def on_tokens(self, layer: str, tokens: torch.Tensor) -> None:
        for feature, x in layer_features(self.layout, layer, tokens).items():
            self._pending[(layer, feature)] = x.float()

    def on_logits(self, logits: torch.Tensor) -> None:
        """End of the batch: every layer's features (and the labels) reach the host in one copy,
        so there is one host synchronisation per batch, not one per layer."""
        keys = list(self._pending)
        widths = [self._pending[key].shape[1] for key in keys]
        packed = torch.cat([self._pending[key] for key in keys]
                           + [self.labels.unsqueeze(1).float()], dim=1).cpu().numpy()
        self._pending = {}
        offset = 0
        for key, width in zip(keys, widths):
            self._array(key, width)[self._start:self._stop] = packed[:, offset:offset + width]
            offset += width
        self.targets[self._start:self._stop] = packed[:, -1].astype(np.int64)


def probe_top1(fit_x: np.ndarray, fit_y: np.ndarray, score_x: np.ndarray, score_y: np.ndarray,
               max_dim: int | None = None, seed: int = 0) -> float:
    """Top-1 (%) of a standardised multinomial logistic regression (PCA to ``max_dim`` first
    when the features are wider)."""
    steps = [StandardScaler()]
    if max_dim is not None and fit_x.shape[1] > max_dim:
        steps.append(PCA(n_components=max_dim, random_state=seed))
    probe = make_pipeline(*steps, LogisticRegression(max_iter=2000, C=1.0, random_state=seed))
    probe.fit(fit_x, fit_y)
    return 100.0 * float((probe.predict(score_x) == score_y).mean())


def probe_table(fit: FeatureCollector, score: FeatureCollector, max_dim: int | None = None,
                seed: int = 0, n_jobs: int = 1) -> pd.DataFrame:
    """Probe top-1 per (layer, feature); ``n_jobs`` probes are fitted at a time (joblib; -1: one
    per host core). Each fit is independent and seeded, so the table does not depend on it."""
    from joblib import Parallel, delayed
    keys = [(depth, layer, feature) for depth, layer in enumerate(fit.layout.layer_names)
            for feature in ("cls", "mean") if (layer, feature) in fit.features]
    scores = Parallel(n_jobs=n_jobs)(
        delayed(probe_top1)(fit.features[(layer, feature)], fit.targets,
                            score.features[(layer, feature)], score.targets, max_dim=max_dim, seed=seed)
        for _, layer, feature in keys)
    return pd.DataFrame([{"layer": layer, "depth": depth, "feature": feature, "probe_top1": top1}
                         for (depth, layer, feature), top1 in zip(keys, scores)])
