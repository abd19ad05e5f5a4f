"""Token geometry: centered and raw token similarity per layer, and the PE Dominance Ratio."""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F

from ..capture import ViTLayout
from .base import Accumulator


def pairwise_cosine_mean(tokens: torch.Tensor, center: bool) -> torch.Tensor:
    """Mean of cos(h_i, h_j) over pairs i != j of each image's tokens, shape (B,).

    ``tokens`` is (B, N, D). With ``center``, each image's mean token is subtracted first. Uses
    sum_{i != j} cos = ||sum_i c_i||^2 - sum_i ||c_i||^2 with c_i the unit vectors (a zero
    vector contributes nothing), so no N x N matrix is formed.
    """
    x = tokens.float()
    if center:
        scale = x.norm(dim=-1).mean(dim=1, keepdim=True)  # (B, 1)
        x = x - x.mean(dim=1, keepdim=True)
        # a token equal to the image mean (to float rounding) is a zero vector, not noise
        x = x * (x.norm(dim=-1) > 1e-5 * scale).unsqueeze(-1)
    unit = F.normalize(x, dim=-1, eps=1e-12)
    total = unit.sum(dim=1).square().sum(dim=-1) - unit.square().sum(dim=(1, 2))
    n = x.shape[1]
    return total / (n * (n - 1))


class TokenGeometry(Accumulator):
    """Per layer: centered and raw similarity of the patch tokens, mean token norm."""

    name = "geometry"

    def on_tokens(self, layer: str, tokens: torch.Tensor) -> None:
        patches = tokens if layer == "raw" else tokens[:, self.layout.num_prefix_tokens:]
        self.add(f"{layer}/centered", pairwise_cosine_mean(patches, center=True).sum())
        self.add(f"{layer}/raw", pairwise_cosine_mean(patches, center=False).sum())
        self.add(f"{layer}/norm", patches.float().norm(dim=-1).mean(dim=1).sum())
        self.add(f"{layer}/images", torch.tensor(float(patches.shape[0]), device=patches.device))

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
