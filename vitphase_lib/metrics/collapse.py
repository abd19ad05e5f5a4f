"""Neural Collapse NC1-NC4 per layer, from streamed moments (Methods, 'Neural Collapse').

Features per layer: the [CLS] token (``cls``, models with [CLS], not at ``raw``) and the mean of
the patch tokens (``mean``). While streaming, :class:`CollapseMoments` keeps per (layer, feature)
only float64 class counts, class sums and the second-moment matrix sum_i x_i x_i^T; no feature
is kept. From these (``collapse_geometry``):

- NC1 = tr(Sigma_W Sigma_B^+) / C (Sigma_B: covariance of the class means around their average mu_G),
- NC2 = || G/||G||_F - E/||E||_F ||_F, G the Gram matrix of the normalised centered class means,
  E = C/(C-1) (I - 11^T/C) the simplex ETF; plus the equinorm term std/mean ||mu_c - mu_G||,
- NC3 = || W/||W||_F - M^T/||M||_F ||_F^2, W the classifier: the network's own head for the [CLS]
  feature after the final norm of a token-pooled model, elsewhere a closed-form ridge
  least-squares classifier fitted from the same moments (one-hot targets, with intercept).

NC4 needs each image's distance to the class means, which exist only after the pass: a second
streaming pass over held-out images (:class:`NearestClassCenter`) measures 1 - the agreement
between the nearest-class-center classifier and the classifier above, and the mean NCC margin
(distance to the second-nearest class mean minus to the nearest). Only classes present in the
streamed images count (C = number of those classes).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from ..capture import ViTLayout
from .base import Accumulator

RIDGE = 1e-3  # ridge of the least-squares classifier, relative to the mean feature variance


def layer_features(layout: ViTLayout, layer: str, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """The per-image feature vectors of one layer: ``mean`` of patch tokens, and ``cls`` (not at
    ``raw``, which has no prefix tokens, nor at ``pe``, where [CLS] is the same for every image)."""
    if layer == "raw":
        return {"mean": tokens.mean(dim=1)}
    if layer == "pe":
        return {"mean": tokens[:, layout.num_prefix_tokens:].mean(dim=1)}
    features = {"mean": tokens[:, layout.num_prefix_tokens:].mean(dim=1)}
    if layout.has_cls:
        features["cls"] = tokens[:, 0]
    return features


class CollapseMoments(Accumulator):
    """Streams class counts, class sums and second moments per (layer, feature)."""

    name = "collapse"

    def __init__(self, layout: ViTLayout, num_classes: int):
        super().__init__(layout)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise TypeError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.num_classes = num_classes
        self.add_state("counts")                          # (C,) images per class
        self.add_state("sums", "m2", per="layer/feature")  # (C, D) class sums, (D, D) sum x x^T

    def begin_batch(self, labels: torch.Tensor, start: int | None = None) -> None:
        super().begin_batch(labels, start)
        # index_add_, not bincount: bincount's output size depends on the data (a GPU host sync)
        counts = torch.zeros(self.num_classes, dtype=torch.float64, device=labels.device)
        self.add("counts", counts.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float64)))

    def on_tokens(self, layer: str, tokens: torch.Tensor) -> None:
        for feature, x in layer_features(self.layout, layer, tokens).items():
            key = f"{layer}/{feature}"
            x = x.double()  # float64 products: NC1 subtracts class-mean terms from m2 (cancellation)
            self.running_sum(f"{key}/sums", (self.num_classes, x.shape[1]), x.device).index_add_(
                0, self.labels, x)
            self.add(f"{key}/m2", x.T @ x)

    def keys(self) -> list[tuple[str, str]]:
        return [tuple(k.rsplit("/", 2)[:2]) for k in self.sums if k.endswith("/sums")]

    def result(self) -> pd.DataFrame:
        """NC1-NC3 per (layer, feature), the classifier fitted by least squares everywhere
        (:func:`collapse_table` takes the network's own head where it applies)."""
        return collapse_table(self)[0]


@dataclass
class CollapseGeometry:
    """Class means and classifier of one (layer, feature), and its NC1-NC3."""

    class_means: torch.Tensor   # (C, D), classes present only
    classes: torch.Tensor       # (C,) label of each row
    weight: torch.Tensor        # (C, D) classifier weights
    bias: torch.Tensor          # (C,)
    classifier: str             # 'head' or 'least-squares'
    nc1: float
    nc2: float
    equinorm: float
    nc3: float


def _pinv_psd(matrix: torch.Tensor, rank: int) -> torch.Tensor:
    """Pseudo-inverse of a symmetric PSD matrix, keeping at most ``rank`` eigen-directions."""
    values, vectors = torch.linalg.eigh(matrix)
    keep = values > values.max() * 1e-10
    keep &= torch.arange(len(values), device=values.device) >= len(values) - rank
    inverse = torch.where(keep, 1.0 / values.clamp_min(1e-300), torch.zeros_like(values))
    return (vectors * inverse) @ vectors.T


def collapse_geometry(counts: torch.Tensor, sums: torch.Tensor, m2: torch.Tensor,
                      head: tuple[torch.Tensor, torch.Tensor] | None = None) -> CollapseGeometry:
    """NC1-NC3 from streamed moments. ``head``: (W, b) of the network's classifier over all
    labels, used instead of the least-squares classifier when given."""
    present = counts > 0
    n_c = counts[present].double()
    c = int(present.sum())
    if c < 2:
        raise ValueError(f"Neural Collapse needs at least 2 classes among the images, found {c}")
    n = n_c.sum()
    means = sums[present] / n_c[:, None]
    global_mean = means.mean(dim=0)
    centered = means - global_mean
    sigma_w = m2 / n - (means.T * (n_c / n)) @ means
    sigma_b = centered.T @ centered / c
    nc1 = float(torch.trace(sigma_w @ _pinv_psd(sigma_b, c - 1)) / c)
    norms = centered.norm(dim=1)
    equinorm = float(norms.std() / norms.mean())
    unit = centered / norms[:, None]
    gram = unit @ unit.T
    etf = c / (c - 1) * (torch.eye(c, dtype=gram.dtype, device=gram.device) - 1.0 / c)
    nc2 = float((gram / gram.norm() - etf / etf.norm()).norm())
    if head is not None:
        if len(counts) > head[0].shape[0]:
            raise ValueError(f"the labels have {len(counts)} classes but the classifier head only "
                             f"{head[0].shape[0]} outputs; pass labels_match_head=False")
        index = torch.nonzero(present).flatten()
        weight, bias = head[0].double()[index], head[1].double()[index]
        kind = "head"
    else:
        weight, bias = _least_squares_classifier(n_c, means, m2 / n, sums[present].sum(0) / n)
        kind = "least-squares"
    nc3 = float((weight / weight.norm() - centered / centered.norm()).norm() ** 2)
    return CollapseGeometry(means, torch.nonzero(present).flatten(), weight, bias, kind,
                            nc1, nc2, equinorm, nc3)


def _least_squares_classifier(n_c, means, second_moment, mean):
    """Ridge regression of one-hot class targets on the features, with intercept."""
    covariance = second_moment - torch.outer(mean, mean)
    dim = covariance.shape[0]
    ridge = RIDGE * torch.trace(covariance) / dim
    priors = n_c / n_c.sum()
    cross = (means - mean) * priors[:, None]          # (C, D): E[(x - mean) y_c]
    eye = torch.eye(dim, dtype=covariance.dtype, device=covariance.device)
    weight = torch.linalg.solve(covariance + ridge * eye, cross.T).T
    return weight, priors - weight @ mean


class NearestClassCenter(Accumulator):
    """Second pass: NC4 = 1 - agreement(nearest class center, classifier), and the NCC margin."""

    name = "ncc"

    def __init__(self, layout: ViTLayout, geometry: dict[tuple[str, str], CollapseGeometry]):
        super().__init__(layout)
        self.geometry = geometry
        self.add_state("agree", "margin", "images", per="layer/feature")

    def on_tokens(self, layer: str, tokens: torch.Tensor) -> None:
        for feature, x in layer_features(self.layout, layer, tokens).items():
            geo = self.geometry.get((layer, feature))
            if geo is None:
                continue
            x = x.double()
            distances = torch.cdist(x, geo.class_means.to(x.device),
                                    compute_mode="donot_use_mm_for_euclid_dist")
            nearest = distances.topk(2, dim=1, largest=False).values
            ncc = distances.argmin(dim=1)
            predicted = (x @ geo.weight.to(x.device).T + geo.bias.to(x.device)).argmax(dim=1)
            key = f"{layer}/{feature}"
            self.add(f"{key}/agree", (ncc == predicted).sum())
            self.add(f"{key}/margin", (nearest[:, 1] - nearest[:, 0]).sum())
            self.add(f"{key}/images", len(x))

    def result(self) -> pd.DataFrame:
        rows = []
        for layer, feature in self.geometry:
            key = f"{layer}/{feature}"
            images = float(self.sums[f"{key}/images"])
            rows.append({"layer": layer, "feature": feature,
                         "nc4": 1.0 - float(self.sums[f"{key}/agree"]) / images,
                         "ncc_margin": float(self.sums[f"{key}/margin"]) / images,
                         "nc4_images": int(images)})
        return pd.DataFrame(rows)


def collapse_table(moments: CollapseMoments, heads: dict[tuple[str, str], tuple] | None = None
                   ) -> tuple[pd.DataFrame, dict[tuple[str, str], CollapseGeometry]]:
    """NC1-NC3 per (layer, feature) and the geometry the NC4 pass needs."""
    heads = heads or {}
    counts = moments.sums["counts"]
    geometry, rows = {}, []
    for layer in moments.layout.layer_names:
        for feature in ("cls", "mean"):
            key = f"{layer}/{feature}"
            if f"{key}/sums" not in moments.sums:
                continue
            geo = collapse_geometry(counts, moments.sums[f"{key}/sums"], moments.sums[f"{key}/m2"],
                                    heads.get((layer, feature)))
            geometry[(layer, feature)] = geo
            rows.append({"layer": layer, "feature": feature, "nc1": geo.nc1, "nc2": geo.nc2,
                         "equinorm": geo.equinorm, "nc3": geo.nc3, "classifier": geo.classifier,
                         "classes": len(geo.classes)})
    return pd.DataFrame(rows), geometry
