"""Retention of the raw patch embeddings: how much of the pre-PE embedding each layer keeps, by a
measure that fits no decoder, and the InfoX decoders under fixed ridges.

:class:`RawCKA` is linear CKA (Kornblith et al. 2019) between a layer's patch tokens X and the
raw patch embeddings Y (layer ``raw``), one sample per patch token (image, position), pooled over
images and positions:

    CKA(X, Y) = ||Xc' Yc||_F^2 / (||Xc' Xc||_F ||Yc' Yc||_F),   Xc, Yc column-centred.

It is invariant to rotations and isotropic scalings of either side, not to anisotropic ones,
and ``raw`` gives 1. ``cka_positional`` centres each position's tokens on their own mean
instead, on both sides: what a per-position offset (the position embedding itself) adds
counts for nothing, so a layer equal to raw plus per-position offsets gives 1. Both are exact
from streamed sums: with S_p the sum of position p's tokens over the n images,
Xc' Yc = X'Y - (sum_p S_p^x)(sum_p S_p^y)' / (n N) globally and X'Y - sum_p S_p^x S_p^y' / n per
position.

:func:`fixed_ridge_decoders` gives the self and all decoders of a
:class:`~vitphase_lib.metrics.scrambling.DecoderFit` at a fixed ridge instead of the
cross-validated one (the all decoder shrunk towards the self decoder fitted with that ridge).
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch

from ..capture import ViTLayout
from .base import Accumulator, check_max_images
from .scrambling import DecoderFit, _patch_tokens


def _centred(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, N, D) tokens -> the tokens minus a centre near each position's batch mean (float32,
    float64 kept), that centre (N, D) and each position's sum (N, D), both float64."""
    x = tokens if tokens.dtype == torch.float64 else tokens.float()
    sums = x.sum(dim=0, dtype=torch.float64)
    centre = (sums / len(x)).to(x.dtype)  # the same rounded centre on both sides of the identity
    return x - centre, centre.double(), sums


def _cross(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """sum over images and positions of a b' from two :func:`_centred` triples:
    sum (a - ca)(b - cb)' + sum_p [ca_p Sb_p' + Sa_p cb_p' - B ca_p cb_p']."""
    (ac, ca, sa), (bc, cb, sb) = a, b
    product = ac.reshape(-1, ac.shape[-1]).T @ bc.reshape(-1, bc.shape[-1])
    return product.double() + ca.T @ sb + sa.T @ cb - len(ac) * ca.T @ cb


def linear_cka(xy: torch.Tensor, xx: torch.Tensor, yy: torch.Tensor) -> float:
    """||Xc'Yc||_F^2 / (||Xc'Xc||_F ||Yc'Yc||_F) from the centred cross products."""
    return float(xy.square().sum() / (xx.norm() * yy.norm()))


class RawCKA(Accumulator):
    """Per layer: linear CKA of the patch tokens with the raw patch embeddings, with the global
    mean (``cka``) and each position's mean (``cka_positional``) removed.

    Prefix tokens are left out. Each batch's products are taken in float32 around a centre near
    each position's batch mean (as :class:`~vitphase_lib.metrics.scrambling.TokenMoments`, per
    position so that the positional part, often larger than the rest, does not swamp the
    per-position covariance) and moved back to the origin in float64."""

    name = "raw-cka"

    def __init__(self, layout: ViTLayout, max_images: int | None = None):
        """``max_images``: only the first images streamed enter the sums (None: all)."""
        super().__init__(layout)
        check_max_images("cka_max_images", max_images)
        self.max_images = max_images
        # tokens, (N, D) sum per position, (D, D) X'X, (D, D_raw) X'Y with Y the raw embeddings
        self.add_state("count", "position_sum", "xx", "xy", per="layer")
        self._raw: tuple[torch.Tensor, ...] | None = None

    def on_tokens(self, layer: str, tokens: torch.Tensor) -> None:
        take = self.images_to_take(tokens.shape[0], self.max_images)
        if not take:  # past the cap: zeros under the same keys (every rank holds the same sums)
            if f"{layer}/xy" not in self.sums:
                width, n = tokens.shape[-1], self.layout.num_patches
                self.add(f"{layer}/count", 0)
                self.add(f"{layer}/position_sum", tokens.new_zeros(n, width, dtype=torch.float64))
                self.add(f"{layer}/xx", tokens.new_zeros(width, width, dtype=torch.float64))
                self.add(f"{layer}/xy", tokens.new_zeros(width, width, dtype=torch.float64))
            return
        x = _centred(_patch_tokens(self.layout, layer, tokens[:take]))
        if layer == "raw":  # emitted first in every batch
            self._raw = x
        xx = _cross(x, x)
        self.add(f"{layer}/count", x[0].shape[0] * x[0].shape[1])
        self.add(f"{layer}/position_sum", x[2])
        self.add(f"{layer}/xx", xx)
        self.add(f"{layer}/xy", xx if layer == "raw" else _cross(x, self._raw))

    def _centred_products(self, layer: str, positional: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's Xc'Xc and Xc'Yc, centred globally or per position."""
        n = self.sums[f"{layer}/count"]
        sx, sy = self.sums[f"{layer}/position_sum"], self.sums["raw/position_sum"]
        if positional:
            images = n / self.layout.num_patches
            return (self.sums[f"{layer}/xx"] - sx.T @ sx / images,
                    self.sums[f"{layer}/xy"] - sx.T @ sy / images)
        tx, ty = sx.sum(dim=0), sy.sum(dim=0)
        return self.sums[f"{layer}/xx"] - torch.outer(tx, tx) / n, self.sums[f"{layer}/xy"] - torch.outer(tx, ty) / n

    def result(self) -> pd.DataFrame:
        """Per layer: ``cka``, ``cka_positional`` and the patch tokens counted."""
        raw = {positional: self._centred_products("raw", positional)[0] for positional in (False, True)}
        rows = []
        for depth, layer in enumerate(self.layout.layer_names):
            cka = {}
            for positional in (False, True):
                xx, xy = self._centred_products(layer, positional)
                cka[positional] = linear_cka(xy, xx, raw[positional])
            rows.append({"layer": layer, "depth": depth, "cka": cka[False], "cka_positional": cka[True],
                         "tokens": int(self.sums[f"{layer}/count"])})
        return pd.DataFrame(rows)


def fixed_ridge_decoders(fit: DecoderFit, ridges: Sequence[float]
                         ) -> dict[float, tuple[dict[str, dict[str, torch.Tensor]], dict[tuple[str, str], float]]]:
    """Per ridge (per sample, as ``RIDGE_GRID``): the decoders of every layer refitted on both
    folds with that ridge, the all decoder shrunk towards the self decoder of the same ridge, and
    the ridges as :meth:`DecoderFit.decoders` records them (what :class:`DecoderScore` takes).
    Each layer's eigendecompositions serve every ridge, then are freed, as ``decoders`` does."""
    out = {ridge: ({}, {}) for ridge in ridges}
    for layer in fit.inputs:
        for ridge, (decoders, chosen) in out.items():
            decoders[layer] = {"self": fit._fit(layer, "self", (0, 1), ridge),
                               "all": fit._fit(layer, "all", (0, 1), ridge, ridge)}
            chosen[(layer, "self")] = chosen[(layer, "all")] = ridge
        fit.__dict__.pop("_systems", None)
    return out
