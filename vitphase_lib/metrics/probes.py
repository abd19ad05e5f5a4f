"""Linear probes: logistic regression per layer on the [CLS] and mean-patch features, fitted on
the probe-fit images and scored on the disjoint probe-score images (scikit-learn).

:class:`FeatureCollector` gathers each (layer, feature) into a preallocated float32 array,
memory-mapped on disk when a folder is given, so host memory stays bounded for large runs; it is
the one accumulator that copies to the host every batch (once per batch, all layers together).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..capture import ViTLayout
from .base import Accumulator
from .collapse import layer_features


class FeatureCollector(Accumulator):
    """Every image's [CLS] and mean-patch features per layer (gathered states ``features``, one
    float32 row per image), and its label (``targets``), for :func:`probe_table`. ``n_images``:
    the images of the whole data set (every rank's); ``folder``: keep the features there in
    memory-mapped ``.npy`` files instead of host memory."""

    name = "features"

    def __init__(self, layout: ViTLayout, n_images: int, folder: str | Path | None = None):
        super().__init__(layout)
        self.n_images, self.folder = n_images, Path(folder) if folder else None
        self.add_state("features", per="layer/feature", reduce="gather")
        self.add_state("targets", reduce="gather")
        self._pending: dict[tuple[str, str], torch.Tensor] = {}

    @property
    def features(self) -> dict[tuple[str, str], np.ndarray]:
        """(layer, feature) -> the (n_images, width) rows."""
        return {tuple(key.split("/")[:2]): rows for key, rows in self.rows.items()
                if key.endswith("/features")}

    @property
    def targets(self) -> np.ndarray:
        return self.rows.get("targets", np.zeros(self.n_images, dtype=np.int64))

    def new_rows(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        if self.folder is None or key == "targets":
            return np.zeros((self.n_images, *shape), dtype=dtype)
        self.folder.mkdir(parents=True, exist_ok=True)
        layer, feature, _ = key.split("/")
        return np.lib.format.open_memmap(self.folder / f"{layer}-{feature}.npy", mode="w+",
                                         dtype=dtype, shape=(self.n_images, *shape))

    def begin_batch(self, labels: torch.Tensor, start: int | None = None) -> None:
        super().begin_batch(labels, start)
        # rows by global image index: on several ranks each fills its own rows, zeros elsewhere
        if self.batch_start + len(labels) > self.n_images:
            raise ValueError(f"FeatureCollector was sized for {self.n_images} images but got image "
                             f"{self.batch_start + len(labels) - 1}; give the number of images of "
                             "the whole data set.")
        self._pending = {}

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
        for (layer, feature), width in zip(keys, widths):
            self.put_rows(f"{layer}/{feature}/features", packed[:, offset:offset + width])
            offset += width
        self.put_rows("targets", packed[:, -1].astype(np.int64))

    def result(self) -> pd.DataFrame:
        """Per (layer, feature): the rows' width and mean norm (the probes: :func:`probe_table`)."""
        return pd.DataFrame([{"layer": layer, "feature": feature, "images": self.n_images,
                              "width": rows.shape[1],
                              "mean_norm": float(np.linalg.norm(rows, axis=1).mean())}
                             for (layer, feature), rows in self.features.items()])


def probe_top1(fit_x: np.ndarray, fit_y: np.ndarray, score_x: np.ndarray, score_y: np.ndarray,
               max_dim: int | None = None, seed: int = 0) -> float:
    """Top-1 (%) of a standardised multinomial logistic regression (PCA to ``max_dim`` first
    when the features are wider)."""
    from sklearn.decomposition import PCA  # here: importing scikit-learn takes a second
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
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
