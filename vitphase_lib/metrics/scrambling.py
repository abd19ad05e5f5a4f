"""Information scrambling: how much of a patch's pre-PE embedding a layer still holds in that
patch's own token (InfoX_self) versus anywhere in the image's tokens (InfoX_all).

Three streaming passes, memory independent of the number of images:

1. :class:`TokenMoments` (in the main sweep, analysis images): per layer, the mean and covariance
   of the patch tokens, pooled over positions; their top-``k`` principal components whiten each
   layer's tokens to ``k`` dimensions. The target, the ``raw`` patch embedding standardised per
   dimension, is projected onto its top-``k_target`` principal components without whitening, so
   that R^2 weighs each component by the variance it carries, as R^2 on the standardised
   embedding itself does (the reduction keeps the all decoder's normal equations, of size
   (N k + 1) x N k_target, small enough for ViT-L on one GPU).
2. :class:`DecoderFit` (probe-fit images): the normal equations of two ridge decoders per layer,
   - *self*: target of patch i from patch i's own token, one map shared by all positions, plus a
     per-position intercept (so an additive positional offset, such as the PE itself, does not
     count as information held elsewhere);
   - *all*: target of patch i from all N tokens of the image, one map per position. Its class
     contains the self decoder's (weight only on token i, the same for every i), and it is fitted
     as ridge regression shrunk *towards the fitted self decoder* S instead of towards zero:
     W = S + (X'X + lambda I)^-1 (X'Y - X'X S), so a large ridge returns exactly the self decoder
     and the all decoder only departs from it where other tokens help on held-out images.
   Both get the same fitting budget: closed-form ridge on the same images, the ridge chosen from
   the same grid (``RIDGE_GRID`` x samples, inputs whitened; the all decoder also may pick
   "infinite", i.e. S itself) by the same 2-fold cross-validation (even / odd images), computed
   exactly from per-fold normal equations, then refitted on both folds.
3. :class:`DecoderScore` (probe-score images): held-out R^2 of both decoders, pooled over
   positions and target components. ISI = InfoX_all - InfoX_self.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import pandas as pd
import torch

from ..capture import ViTLayout
from .base import Accumulator, check_max_images

RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)  # ridge per sample, on whitened inputs


def _patch_tokens(layout: ViTLayout, layer: str, tokens: torch.Tensor) -> torch.Tensor:
    return tokens if layer == "raw" else tokens[:, layout.num_prefix_tokens:]


class TokenMoments(Accumulator):
    """Per layer: count, sum and second moment of the patch tokens, pooled over positions.

    Each batch's product is taken in float32 around a centre c near the batch mean, where it
    is precise however large the mean, and moved back to the origin in float64:
    sum x x^T = sum (x - c)(x - c)^T + c s^T + s c^T - n c c^T, with s = sum x. A plain float32
    x^T x loses the covariance of dimensions whose mean dwarfs their spread (the massive
    activations of the residual stream) to rounding."""

    name = "token-moments"

    def __init__(self, layout: ViTLayout, max_images: int | None = None):
        """``max_images``: only the first images streamed enter the moments (None: all). The
        principal components need far fewer tokens than the other metrics need images."""
        super().__init__(layout)
        check_max_images("pca_max_images", max_images)
        self.max_images = max_images
        self.add_state("count", "sum", "m2", per="layer")  # tokens, (D,) sum x, (D, D) sum x x^T

    def on_tokens(self, layer: str, tokens: torch.Tensor) -> None:
        take = self.images_to_take(tokens.shape[0], self.max_images)
        if not take:  # past the cap: every rank must hold the same sums (zeros where it took none)
            if f"{layer}/m2" in self.sums:
                return  # adding zeros would only cost a D x D allocation per layer and batch
            width = tokens.shape[-1]
            self.add(f"{layer}/count", 0)
            self.add(f"{layer}/sum", tokens.new_zeros(width, dtype=torch.float64))
            self.add(f"{layer}/m2", tokens.new_zeros(width, width, dtype=torch.float64))
            return
        x = _patch_tokens(self.layout, layer, tokens[:take]).reshape(-1, tokens.shape[-1]).float()
        total = x.sum(dim=0, dtype=torch.float64)
        centre = (total / len(x)).float()  # the same float32 centre on both sides of the identity
        shifted = x - centre
        c = centre.double()
        second = ((shifted.T @ shifted).double() + torch.outer(c, total) + torch.outer(total, c)
                  - len(x) * torch.outer(c, c))
        self.add(f"{layer}/count", len(x))
        self.add(f"{layer}/sum", total)
        self.add(f"{layer}/m2", second)

    def projection(self, layer: str, k: int, standardize: bool = False,
                   whiten: bool = True) -> "Projection":
        """The top-``k`` principal components of the layer's tokens (after standardising each
        dimension, with ``standardize``), scaled to unit variance with ``whiten``; without it
        they keep the variance they carry (an orthonormal projection)."""
        n = self.sums[f"{layer}/count"]
        mean = self.sums[f"{layer}/sum"] / n
        cov = self.sums[f"{layer}/m2"] / n - torch.outer(mean, mean)
        scale = torch.ones_like(mean)
        if standardize:
            scale = cov.diagonal().clamp_min(1e-12).sqrt()
            cov = cov / torch.outer(scale, scale)
        values, vectors = torch.linalg.eigh(cov)
        k = min(k, len(values))
        values, vectors = values[-k:].flip(0), vectors[:, -k:].flip(1)
        return Projection(mean, scale, vectors / values.clamp_min(1e-12).sqrt() if whiten else vectors)

    def result(self) -> pd.DataFrame:
        """Per layer: the tokens counted and their total variance (trace of the covariance)."""
        rows = []
        for depth, layer in enumerate(self.layout.layer_names):
            n = float(self.sums[f"{layer}/count"])
            mean = self.sums[f"{layer}/sum"] / n
            variance = float(self.sums[f"{layer}/m2"].diagonal().sum() / n - mean.square().sum())
            rows.append({"layer": layer, "depth": depth, "tokens": int(n), "total_variance": variance})
        return pd.DataFrame(rows)


@dataclass
class Projection:
    """x -> ((x - mean) / scale) @ components: the top principal components."""

    mean: torch.Tensor
    scale: torch.Tensor
    components: torch.Tensor  # (D, k)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.double() - self.mean.to(x.device)) / self.scale.to(x.device)) @ self.components.to(x.device)


def _with_intercept(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)], dim=-1)


def _self_design(x: torch.Tensor) -> torch.Tensor:
    """(B, N, k) tokens -> (B, N, k + N): each token and the one-hot of its position (the
    self decoder's shared map and per-position intercepts)."""
    b, n, _ = x.shape
    positions = torch.eye(n, dtype=x.dtype, device=x.device).expand(b, n, n)
    return torch.cat([x, positions], dim=-1)


class _DecoderPass(Accumulator):
    """Shared by fit and score: the per-batch target (from ``raw``, which the model emits
    first) and the decoder inputs of every layer (:meth:`on_layer`)."""

    def __init__(self, layout: ViTLayout, inputs: dict[str, Projection], target: Projection):
        super().__init__(layout)
        self.inputs, self.target = inputs, target
        self._y: torch.Tensor | None = None

    def on_tokens(self, layer: str, tokens: torch.Tensor) -> None:
        patches = _patch_tokens(self.layout, layer, tokens)
        if layer == "raw":
            self._y = self.target(patches)               # (B, N, k_target)
        if layer in self.inputs:
            self.on_layer(layer, self.inputs[layer](patches), self._y)

    @abc.abstractmethod
    def on_layer(self, layer: str, x: torch.Tensor, y: torch.Tensor) -> None:
        """A layer's whitened decoder inputs x (B, N, k) and the targets y (B, N, k_target)."""


class DecoderFit(_DecoderPass):
    """Normal equations X^T X, X^T Y of the self and all decoders of every layer."""

    name = "decoder-fit"

    def __init__(self, layout: ViTLayout, inputs: dict[str, Projection], target: Projection):
        super().__init__(layout, inputs, target)
        # per fold of the 2-fold cross-validation: X'X, X'Y, tr Y'Y and the design's rows
        self.add_state("xx", "xy", "yy", "samples", per="layer/decoder/fold")

    def add(self, key: str, value) -> None:
        super().add(key, value)
        self.__dict__.pop("_systems", None)  # new data: cached solves of the old sums are stale

    def all_reduce(self) -> None:
        super().all_reduce()
        self.__dict__.pop("_systems", None)

    def begin_batch(self, labels: torch.Tensor, start: int | None = None) -> None:
        super().begin_batch(labels, start)
        # fold of each image: even / odd global index (the same folds on any number of ranks);
        # the images of fold f are the batch rows first_of_fold[f]::2, a slice (no GPU host sync)
        self._first_of_fold = (self.batch_start % 2, 1 - self.batch_start % 2)

    def on_layer(self, layer: str, x: torch.Tensor, y: torch.Tensor) -> None:
        b, n, k = x.shape
        designs = {"self": (_self_design(x), y), "all": (_with_intercept(x.reshape(b, 1, n * k)),
                                                         y.reshape(b, 1, -1))}
        for kind, (features, targets) in designs.items():
            for fold in (0, 1):
                rows = slice(self._first_of_fold[fold], None, 2)
                f = features[rows].reshape(-1, features.shape[-1])
                t = targets[rows].reshape(-1, targets.shape[-1])
                self.add(f"{layer}/{kind}/{fold}/xx", f.T @ f)
                self.add(f"{layer}/{kind}/{fold}/xy", f.T @ t)
                self.add(f"{layer}/{kind}/{fold}/yy", t.square().sum())
                self.add(f"{layer}/{kind}/{fold}/samples", len(f))

    def _moments(self, layer: str, kind: str, fold: int):
        key = f"{layer}/{kind}/{fold}"
        return (self.sums[f"{key}/xx"], self.sums[f"{key}/xy"], self.sums[f"{key}/yy"],
                self.sums[f"{key}/samples"])

    def _system(self, layer: str, kind: str, folds: tuple[int, ...]):
        """X'X, X'Y, sample count and the eigendecomposition of X'X over ``folds`` (cached, so
        every ridge of the grid costs two matrix products instead of a solve)."""
        cache = self.__dict__.setdefault("_systems", {})
        if (layer, kind, folds) not in cache:
            moments = [self._moments(layer, kind, f) for f in folds]
            xx, xy, samples = (sum(m[i] for m in moments) for i in (0, 1, 3))
            cache[(layer, kind, folds)] = (xx, xy, samples, torch.linalg.eigh(xx))
        return cache[(layer, kind, folds)]

    def _rotated(self, layer: str, kind: str, folds: tuple[int, ...], self_ridge: float | None):
        """The prior S (None for the self decoder; for the all decoder, the self decoder fitted
        with ``self_ridge``) and V^T (X'Y - X'X S) in the eigenbasis V of X'X: the part of every
        ridge's solution that does not depend on the ridge (cached, so a ridge costs one product)."""
        cache = self.__dict__.setdefault("_systems", {})
        key = ("rotated", layer, kind, folds, self_ridge if kind == "all" else None)
        if key not in cache:
            xx, xy, _, (_, vectors) = self._system(layer, kind, folds)
            prior = None
            if kind == "all":
                prior = _block_diagonal(self._fit(layer, "self", folds, self_ridge),
                                        self.layout.num_patches)
                xy = xy - xx @ prior
            cache[key] = (prior, vectors.T @ xy)
        return cache[key]

    def _fit(self, layer: str, kind: str, folds: tuple[int, ...], ridge: float,
             self_ridge: float | None = None) -> torch.Tensor:
        """Ridge solution (X'X + ridge n I)^-1 X'Y; for the all decoder, shrunk towards the
        self decoder S fitted on the same folds: S + (X'X + ridge n I)^-1 (X'Y - X'X S)."""
        _, _, samples, (values, vectors) = self._system(layer, kind, folds)
        prior, rotated = self._rotated(layer, kind, folds, self_ridge)
        if prior is not None and ridge == float("inf"):
            return prior
        solution = vectors @ (rotated / (values + ridge * samples)[:, None])
        return solution if prior is None else prior + solution

    def choose_ridge(self, layer: str, kind: str, self_ridge: float | None = None
                     ) -> tuple[float, dict[float, float]]:
        """2-fold cross-validated ridge: fit on one fold, exact held-out squared error on the
        other from its moments (||Y - XW||^2 = tr Y'Y - 2 tr W'X'Y + tr W'X'XW), summed."""
        grid = RIDGE_GRID + ((float("inf"),) if kind == "all" else ())
        errors = {}
        for ridge in grid:
            total = 0.0
            for train, test in ((0, 1), (1, 0)):
                w = self._fit(layer, kind, (train,), ridge, self_ridge)
                txx, txy, tyy, _ = self._moments(layer, kind, test)
                total += float(tyy - 2 * (w * txy).sum() + (w * (txx @ w)).sum())
            errors[ridge] = total
        return min(errors, key=errors.get), errors

    def result(self) -> pd.DataFrame:
        """Per layer and decoder: the cross-validated ridge and its held-out mean squared error
        per target entry (both folds)."""
        rows = []
        for depth, layer in enumerate(self.layout.layer_names):
            if layer not in self.inputs:
                continue
            self_ridge, self_errors = self.choose_ridge(layer, "self")
            all_ridge, all_errors = self.choose_ridge(layer, "all", self_ridge)
            for kind, ridge, errors in (("self", self_ridge, self_errors), ("all", all_ridge, all_errors)):
                samples = sum(float(self.sums[f"{layer}/{kind}/{fold}/samples"]) for fold in (0, 1))
                width = self.sums[f"{layer}/{kind}/0/xy"].shape[1]  # target entries per sample
                rows.append({"layer": layer, "depth": depth, "decoder": kind, "ridge": ridge,
                             "cv_mse": errors[ridge] / (samples * width)})
        return pd.DataFrame(rows)

    def decoders(self, release: bool = False) -> dict[str, dict[str, torch.Tensor]]:
        """Ridge solutions per layer, refitted on both folds with the cross-validated ridge:
        ``self`` (k + N, k_t) and ``all`` (N k + 1, N k_t); ``self.ridges`` records the choice.
        With ``release``, each layer's normal equations are dropped once its decoders exist (they
        are the largest sums of the analysis, 8.5 GB for ViT-L/16), so the fit cannot be re-run."""
        out: dict[str, dict[str, torch.Tensor]] = {}
        self.ridges: dict[tuple[str, str], float] = {}
        for layer in self.inputs:
            self_ridge, _ = self.choose_ridge(layer, "self")
            all_ridge, _ = self.choose_ridge(layer, "all", self_ridge)
            self.ridges[(layer, "self")], self.ridges[(layer, "all")] = self_ridge, all_ridge
            out[layer] = {"self": self._fit(layer, "self", (0, 1), self_ridge),
                          "all": self._fit(layer, "all", (0, 1), all_ridge, self_ridge)}
            self.__dict__.pop("_systems", None)  # free the cached eigendecompositions
            if release:
                for key in [key for key in self.sums if key.startswith(f"{layer}/")]:
                    del self.sums[key]
        return out


def _block_diagonal(self_weights: torch.Tensor, n: int) -> torch.Tensor:
    """The self decoder (k + N, k_t) written as an all decoder (N k + 1, N k_t): block i maps
    token i to target i, and the intercept row holds each position's own intercept."""
    k = self_weights.shape[0] - n
    k_t = self_weights.shape[1]
    weights = torch.zeros(n * k + 1, n * k_t, dtype=self_weights.dtype, device=self_weights.device)
    for i in range(n):
        weights[i * k:(i + 1) * k, i * k_t:(i + 1) * k_t] = self_weights[:k]
        weights[-1, i * k_t:(i + 1) * k_t] = self_weights[k + i]
    return weights


class DecoderScore(_DecoderPass):
    """Held-out R^2 of both decoders, pooled over positions and target components."""

    name = "decoder-score"

    def __init__(self, layout, inputs, target, decoders: dict[str, dict[str, torch.Tensor]],
                 ridges: dict[tuple[str, str], float] | None = None):
        super().__init__(layout, inputs, target)
        self.decoders, self.ridges = decoders, ridges or {}
        self.add_state("sse", per="layer/decoder")              # squared errors of each decoder
        self.add_state("y_sum", "y_sq", "samples", per="layer")  # for the targets' variance

    def on_layer(self, layer: str, x: torch.Tensor, y: torch.Tensor) -> None:
        b, n, k = x.shape
        w = self.decoders[layer]
        predictions = {"self": _self_design(x).reshape(b * n, -1) @ w["self"].to(x.device),
                       "all": (_with_intercept(x.reshape(b, n * k)) @ w["all"].to(x.device))}
        flat_y = y.reshape(b * n, -1)
        for kind, predicted in predictions.items():
            self.add(f"{layer}/{kind}/sse", (predicted.reshape(b * n, -1) - flat_y).square().sum())
        self.add(f"{layer}/y_sum", flat_y.sum(dim=0))
        self.add(f"{layer}/y_sq", flat_y.square().sum(dim=0))
        self.add(f"{layer}/samples", b * n)

    def result(self) -> pd.DataFrame:
        rows = []
        for depth, layer in enumerate(self.layout.layer_names):
            if layer not in self.inputs:
                continue
            n = self.sums[f"{layer}/samples"]
            sst = float((self.sums[f"{layer}/y_sq"] - self.sums[f"{layer}/y_sum"].square() / n).sum())
            r2 = {kind: 1.0 - float(self.sums[f"{layer}/{kind}/sse"]) / sst for kind in ("self", "all")}
            rows.append({"layer": layer, "depth": depth, "infox_self": r2["self"],
                         "infox_all": r2["all"], "isi": r2["all"] - r2["self"],
                         "ridge_self": self.ridges.get((layer, "self"), float("nan")),
                         "ridge_all": self.ridges.get((layer, "all"), float("nan"))})
        return pd.DataFrame(rows)


# The paper's ISI regime thresholds: communication collapse below the first, chaotic diffusion
# above the second, controlled consensus between (Methods, 'Information scrambling')
ISI_THRESHOLDS = (0.004, 0.02)


def isi_regime(isi: float, collapse_below: float = ISI_THRESHOLDS[0],
               chaotic_above: float = ISI_THRESHOLDS[1]) -> str:
    """The paper's three regimes of the Information Scrambling Index (thresholds configurable)."""
    if isi < collapse_below:
        return "communication collapse"
    return "chaotic diffusion" if isi > chaotic_above else "controlled consensus"
