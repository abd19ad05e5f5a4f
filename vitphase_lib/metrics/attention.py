"""The attention graph of each block: [CLS] centrality and the Attention Consensus Index.

For block l, A_l is the head-averaged, row-stochastic attention (rows = queries).

- **CLS centrality** (CCC): mean over patch queries i of A_l[i, CLS], the share of patch attention
  the [CLS] hub receives (uniform baseline 1 / (P + N)). Not applicable without [CLS] (NaN, never 0).
- **PageRank share** of [CLS]: PageRank (networkx) of the graph with edges i -> j weighted by the
  image-averaged A_l[i, j]; a second view of the hub's centrality.
- **Attention Consensus Index** (ACI): take the patch-to-patch block of A_l, renormalise its rows,
  ACI = 1 - |lambda_2| (second-largest eigenvalue modulus of that stochastic matrix), averaged
  over images. 1 = consensus in one step (uniform mixing), 0 = no mixing (identity). |lambda_2| of
  an N x N matrix per image and block is the costliest part of the pass, so at most
  ``aci_max_images`` images (the first ones streamed) enter the ACI. It comes from repeated
  squaring (batched float64 matrix products: no host synchronisation on GPUs, and on this
  project's CPU three to four times as fast as LAPACK's eigenvalues), which overestimates
  |lambda_2| by less than 1e-6; LAPACK (``method="eig"``) is the reference the tests compare it
  with.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from ..capture import ViTLayout
from .base import Accumulator, check_max_images

# squarings of the deflated attention matrix (k = 2^24 in Gelfand's formula; see
# second_eigenvalue_modulus_by_squaring)
SQUARINGS = 24


def cls_centrality(attention: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """Per image: mean over patch queries of the attention paid to token 0 ([CLS]), shape (B,)."""
    return attention[:, num_prefix:, 0].mean(dim=1)


def second_eigenvalue_modulus(stochastic: torch.Tensor) -> torch.Tensor:
    """|lambda_2| of each row-stochastic matrix of a batch (B, N, N), by LAPACK's eigenvalues
    (exact up to rounding; the reference). Runs on the host and synchronises a GPU."""
    moduli = torch.linalg.eigvals(stochastic.double()).abs().sort(dim=-1, descending=True).values
    return moduli[:, 1]


def second_eigenvalue_modulus_by_squaring(stochastic: torch.Tensor, squarings: int = SQUARINGS) -> torch.Tensor:
    """|lambda_2| of each row-stochastic matrix of a batch, with batched float64 matrix products
    only: no host synchronisation, so it suits GPUs, and on CPUs it is three to four times as fast
    as LAPACK's per-matrix eigenvalues (0.12 against 0.45 ms at N = 49, 4.8 against 15.3 ms at
    N = 196, measured here).

    P's eigenvalue 1 has the right eigenvector 1, so Q = P - 1 1^T / N has the eigenvalues
    {0, lambda_2, ..., lambda_N} (Brauer's theorem) and |lambda_2| is Q's spectral radius, the
    limit of ||Q^k||^(1/k) from above (Gelfand). Q is squared ``squarings`` times (k = 2^squarings),
    rescaled to unit Frobenius norm each time with the log-scale kept; the error of the estimate
    is at most log(C) / k for a constant C of Q's eigenvectors, below 1e-6 for attention matrices
    (``tests/test_attention.py`` compares it with :func:`second_eigenvalue_modulus`). Float32
    products would be twice as fast again but are not accurate enough: an ill-conditioned
    eigenvalue moves by cond x 6e-8, and peaked attention gives errors near 1e-4."""
    q = stochastic.double() - 1.0 / stochastic.shape[-1]  # a new tensor: the input is not changed
    # every step works in place and squares into ``square`` (then the two swap): no new tensor per
    # step, which on CPUs also saves mapping and zeroing fresh pages for each one (1.6x faster)
    square = torch.empty_like(q)
    log_radius = torch.zeros(q.shape[0], dtype=q.dtype, device=q.device)
    for step in range(squarings + 1):
        norm = torch.linalg.matrix_norm(q).clamp_min_(1e-300)
        q.mul_(norm.reciprocal()[:, None, None])
        log_radius.add_(norm.log_(), alpha=1.0 / 2.0 ** step)  # log ||Q^(2^step)|| / 2^step, summed
        if step < squarings:
            torch.bmm(q, q, out=square)
            q, square = square, q
    # every eigenvalue of a stochastic matrix has modulus <= 1: the estimate's overshoot is clipped
    return log_radius.exp().clamp(max=1.0)


def consensus_index(attention: torch.Tensor, num_prefix: int, method: str = "auto") -> torch.Tensor:
    """Per image: 1 - |lambda_2| of the row-renormalised patch-to-patch attention, shape (B,).
    ``method``: 'squaring' (batched matrix products, no host sync; the default, 'auto') or 'eig'
    (LAPACK's eigenvalues, the slow reference)."""
    patches = attention[:, num_prefix:, num_prefix:].double()
    patches = patches / patches.sum(dim=-1, keepdim=True).clamp_min(1e-300)
    if method == "auto":
        method = "squaring"
    if method == "eig":
        return 1.0 - second_eigenvalue_modulus(patches)
    if method == "squaring":
        return 1.0 - second_eigenvalue_modulus_by_squaring(patches)
    raise ValueError(f"ACI method must be 'auto', 'eig' or 'squaring', got {method!r}")


def pagerank_share(mean_attention: np.ndarray, node: int = 0) -> float:
    """Share of PageRank held by ``node`` in the graph with edges i -> j weighted A[i, j]."""
    import networkx as nx  # here: only the results need it
    graph = nx.from_numpy_array(mean_attention, create_using=nx.DiGraph)
    return float(nx.pagerank(graph, weight="weight", max_iter=1000, tol=1e-10)[node])


def _standard_error(total: float, total_sq: float, n: float) -> float:
    """Standard error of a mean from the sum and the sum of squares of n values (NaN for n < 2)."""
    if n < 2:
        return math.nan
    variance = max(0.0, (total_sq - total * total / n) / (n - 1))
    return math.sqrt(variance / n)


class AttentionGraph(Accumulator):
    """Per block: CLS centrality, [CLS] PageRank share, ACI."""

    name = "attention"

    def __init__(self, layout: ViTLayout, aci_max_images: int | None = None):
        super().__init__(layout)
        check_max_images("aci_max_images", aci_max_images)
        self.aci_max_images = aci_max_images
        self.add_state("images", "attention", "ccc", "aci", "aci_sq", "aci_images", per="block")

    def on_attention(self, block: int, attention: torch.Tensor) -> None:
        prefix = self.layout.num_prefix_tokens
        batch = attention.shape[0]
        self.add(f"{block}/images", batch)
        self.add(f"{block}/attention", attention.sum(dim=0))
        if self.layout.has_cls:
            self.add(f"{block}/ccc", cls_centrality(attention, prefix).sum())
        take = self.images_to_take(batch, self.aci_max_images)
        aci = consensus_index(attention[:take], prefix) if take else attention.new_zeros((0,))
        self.add(f"{block}/aci", aci.sum())  # added even when zero: every rank holds the same sums
        self.add(f"{block}/aci_sq", aci.square().sum())  # for the standard error of the mean
        self.add(f"{block}/aci_images", take)

    def result(self) -> pd.DataFrame:
        rows = []
        tokens = self.layout.num_patches + self.layout.num_prefix_tokens
        for block in range(1, self.layout.num_blocks + 1):
            images = float(self.sums[f"{block}/images"])
            mean_attention = (self.sums[f"{block}/attention"] / images).cpu().numpy()
            rows.append({
                "block": block, "layer": str(block),
                "cls_centrality": (float(self.sums[f"{block}/ccc"]) / images
                                   if self.layout.has_cls else math.nan),
                "uniform_baseline": 1.0 / tokens,
                "cls_pagerank_share": pagerank_share(mean_attention) if self.layout.has_cls else math.nan,
                "uniform_pagerank_share": 1.0 / tokens,
                "aci": float(self.sums[f"{block}/aci"]) / float(self.sums[f"{block}/aci_images"]),
                "aci_sem": _standard_error(float(self.sums[f"{block}/aci"]), float(self.sums[f"{block}/aci_sq"]),
                                           float(self.sums[f"{block}/aci_images"])),
                "images": int(images), "aci_images": int(float(self.sums[f"{block}/aci_images"])),
            })
        return pd.DataFrame(rows)


class AttentionHeads(Accumulator):
    """Per block and head: CLS centrality and ACI of each head's own attention, which the
    head-averaged graph (:class:`AttentionGraph`) mixes: which heads keep the [CLS] hub to the end
    and which marginalize it. The ACI of every head costs ``heads`` times the averaged one, so
    it has its own cap, ``aci_max_images``."""

    name = "attention-heads"

    def __init__(self, layout: ViTLayout, aci_max_images: int | None = None):
        super().__init__(layout)
        check_max_images("head_aci_max_images", aci_max_images)
        self.aci_max_images = aci_max_images
        self.add_state("images", "ccc", "aci", "aci_sq", "aci_images", per="block")  # ccc, aci: (heads,)

    def on_head_attention(self, block: int, weights: torch.Tensor) -> None:
        prefix = self.layout.num_prefix_tokens
        batch, heads = weights.shape[:2]
        self.add(f"{block}/images", batch)
        if self.layout.has_cls:
            self.add(f"{block}/ccc", weights[:, :, prefix:, 0].mean(dim=2).sum(dim=0))  # (heads,)
        take = self.images_to_take(batch, self.aci_max_images)
        aci = (consensus_index(weights[:take].flatten(0, 1), prefix).view(take, heads) if take
               else weights.new_zeros((0, heads), dtype=torch.float64))
        self.add(f"{block}/aci", aci.sum(dim=0))
        self.add(f"{block}/aci_sq", aci.square().sum(dim=0))
        self.add(f"{block}/aci_images", take)

    def result(self) -> pd.DataFrame:
        rows = []
        for block in range(1, self.layout.num_blocks + 1):
            images = float(self.sums[f"{block}/images"])
            taken = float(self.sums[f"{block}/aci_images"])
            aci, aci_sq = self.sums[f"{block}/aci"].cpu(), self.sums[f"{block}/aci_sq"].cpu()
            ccc = self.sums[f"{block}/ccc"].cpu() / images if self.layout.has_cls else None
            for head in range(len(aci)):
                rows.append({
                    "block": block, "layer": str(block), "head": head + 1,
                    "cls_centrality": float(ccc[head]) if ccc is not None else math.nan,
                    "aci": float(aci[head]) / taken if taken else math.nan,
                    "aci_sem": _standard_error(float(aci[head]), float(aci_sq[head]), taken),
                    "images": int(images), "aci_images": int(taken)})
        return pd.DataFrame(rows)
