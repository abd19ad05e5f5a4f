"""Token geometry: centered and raw token similarity per layer, and the PE Dominance Ratio."""
from __future__ import annotations

import pandas as pd
import torch

from ..capture import ViTLayout
from .base import Accumulator


def _mean_pairwise_cosine(x: torch.Tensor, norms: torch.Tensor, floor: torch.Tensor | float) -> torch.Tensor:
    """sum_{i != j} cos(x_i, x_j) / (N (N - 1)) per image, from sum_{i != j} cos =
    ||sum_i u_i||^2 - #{i: x_i != 0} with u_i = x_i / ||x_i|| the unit vectors; vectors with
    norm <= floor count as zero. No N x N matrix is formed, nor the unit vectors: sum_i u_i is
    one batched product of the weights 1 / ||x_i|| with x (a single read of the tokens)."""
    nonzero = norms > floor
    weights = torch.where(nonzero, 1.0 / norms.clamp_min(1e-30), 0.0)      # (B, N)
    unit_sum = torch.bmm(weights.unsqueeze(1), x).squeeze(1)               # (B, D)
    n = x.shape[1]
    return (unit_sum.square().sum(dim=-1) - nonzero.sum(dim=1)) / (n * (n - 1))


def pairwise_cosine_mean(tokens: torch.Tensor, center: bool) -> torch.Tensor:
    """Mean of cos(h_i, h_j) over pairs i != j of each image's tokens, shape (B,).

    ``tokens`` is (B, N, D). With ``center``, each image's mean token is subtracted first, and a
    token equal to the mean (to float rounding: norm <= 1e-5 x the mean token norm) is a zero
    vector, contributing nothing.
    """
    x = tokens.float()
    norms = torch.linalg.vector_norm(x, dim=-1)
    return _centered_similarity(x, norms) if center else _mean_pairwise_cosine(x, norms, 0.0)


def _centered_similarity(x: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """Mean pairwise cosine of each image's tokens after subtracting their mean, shape (B,);
    ``norms`` are the norms of the uncentered tokens, which set the zero floor."""
    centered = x - x.mean(dim=1, keepdim=True)
    return _mean_pairwise_cosine(centered, torch.linalg.vector_norm(centered, dim=-1),
                                 1e-5 * norms.mean(dim=1, keepdim=True))


class TokenGeometry(Accumulator):
    """Per layer: centered and raw similarity of the patch tokens, mean token norm."""

    name = "geometry"

    def __init__(self, layout: ViTLayout):
        super().__init__(layout)
        self.add_state("centered", "raw", "norm", "images", per="layer")

    def on_tokens(self, layer: str, tokens: torch.Tensor) -> None:
        x = (tokens if layer == "raw" else tokens[:, self.layout.num_prefix_tokens:]).float()
        norms = torch.linalg.vector_norm(x, dim=-1)              # computed once, used thrice
        self.add(f"{layer}/centered", _centered_similarity(x, norms).sum())
        self.add(f"{layer}/raw", _mean_pairwise_cosine(x, norms, 0.0).sum())
        self.add(f"{layer}/norm", norms.mean(dim=1).sum())
        self.add(f"{layer}/images", x.shape[0])

    def result(self) -> pd.DataFrame:
        rows = []
        for depth, layer in enumerate(self.layout.layer_names):
            n = float(self.sums[f"{layer}/images"])
            rows.append({"layer": layer, "depth": depth,
                         "centered_similarity": float(self.sums[f"{layer}/centered"]) / n,
                         "raw_similarity": float(self.sums[f"{layer}/raw"]) / n,
                         "mean_token_norm": float(self.sums[f"{layer}/norm"]) / n,
                         "images": int(n)})
        return pd.DataFrame(rows)


def pe_dominance_ratio(patch_pos_embed: torch.Tensor, mean_raw_token_norm: float) -> float:
    """Mean over positions of ||PE_i|| divided by the mean ||z_i|| of the ``raw`` tokens."""
    return float(patch_pos_embed.float().norm(dim=-1).mean()) / mean_raw_token_norm
