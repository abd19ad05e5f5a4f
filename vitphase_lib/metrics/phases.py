"""Cliff / Plateau / Climb: a deterministic segmentation of a layer-wise similarity curve.

The curve S over the layers ``raw, pe, 1..L`` (positions 0..K-1, K = L + 2) is fitted by a
continuous piecewise-linear function with two knots, ``e`` (end of the Cliff = start of the
Plateau) and ``s`` (start of the Climb):

    f(x) = a + b x + c (x - e)_+ + d (x - s)_+,    1 <= e < s <= K - 2,

by least squares for every admissible (e, s); the pair with the smallest residual sum of squares
wins (ties go to the earliest knots). The Cliff is positions 0..e, the Plateau e..s, the Climb
s..K-1. Nothing forces the phases to exist: the fitted slopes are reported, so a caller can say
whether the "Climb" climbs and the "Plateau" is flat.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class PhaseSegmentation:
    layers: tuple[str, ...]       # the segmented layers, raw, pe, 1..L
    plateau_start: str            # first layer of the Plateau (the bottom of the Cliff)
    climb_start: str              # last layer of the Plateau, where the Climb begins
    plateau_length: int           # Plateau length in blocks (s - e)
    climb_length: int             # Climb length in blocks (K - 1 - s)
    cliff_drop_pe: float          # S(raw) - S(pe): the drop when positional encodings are added
    cliff_drop_block1: float      # S(raw) - S(block 1)
    climb_rise: float             # S(last block) - S(climb_start)
    slopes: tuple[float, float, float]  # fitted slope per layer of Cliff, Plateau, Climb
    rss: float

    def phase_of(self, layer: str) -> str:
        i = self.layers.index(layer)
        e, s = self.layers.index(self.plateau_start), self.layers.index(self.climb_start)
        return "cliff" if i < e else ("plateau" if i <= s else "climb")


def _hinge_fit(y: np.ndarray, e: int, s: int) -> tuple[float, np.ndarray]:
    x = np.arange(len(y), dtype=np.float64)
    design = np.stack([np.ones_like(x), x, np.maximum(x - e, 0), np.maximum(x - s, 0)], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    return float(residual @ residual), coef


def segment_phases(similarity: Sequence[float], layers: Sequence[str]) -> PhaseSegmentation:
    """Segment ``similarity`` (one value per layer of ``layers`` = raw, pe, 1..L)."""
    y = np.asarray(similarity, dtype=np.float64)
    layers = tuple(layers)
    if len(y) != len(layers):
        raise ValueError(f"{len(y)} values for {len(layers)} layers")
    if layers[:2] != ("raw", "pe") or len(layers) < 5:
        raise ValueError("segment_phases needs the layers raw, pe, 1..L with L >= 3, "
                         f"got {list(layers)}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"the similarity curve has non-finite values: {y.tolist()}")
    k = len(y)
    best: tuple[float, int, int, np.ndarray] | None = None
    scale = max(1.0, float(np.abs(y).max()))
    for e in range(1, k - 2):
        for s in range(e + 1, k - 1):
            rss, coef = _hinge_fit(y, e, s)
            # ties (to rounding) go to the earliest knots: strict improvement required
            if best is None or rss < best[0] - 1e-12 * scale:
                best = (rss, e, s, coef)
    rss, e, s, (_, b, c, d) = best
    return PhaseSegmentation(
        layers=layers, plateau_start=layers[e], climb_start=layers[s],
        plateau_length=s - e, climb_length=k - 1 - s,
        cliff_drop_pe=float(y[0] - y[1]), cliff_drop_block1=float(y[0] - y[2]),
        climb_rise=float(y[-1] - y[s]), slopes=(float(b), float(b + c), float(b + c + d)),
        rss=rss)


def phase_table(per_layer: pd.DataFrame, column: str = "centered_similarity",
                by: Sequence[str] = ("model",)) -> pd.DataFrame:
    """Segment every curve of a stacked per-layer table (columns ``by``, ``layer``, ``column``),
    one row per group of ``by`` (e.g. per model, or per model and PE scale alpha)."""
    rows = []
    for keys, frame in per_layer.groupby(list(by), sort=False):
        frame = frame[frame.layer != "head"]
        seg = segment_phases(frame[column].to_numpy(), frame.layer.tolist())
        blocks = len(seg.layers) - 2
        rows.append({
            **dict(zip(by, keys)), "blocks": blocks,
            "plateau_start": seg.plateau_start, "climb_start": seg.climb_start,
            "plateau_length": seg.plateau_length, "climb_length": seg.climb_length,
            "plateau_fraction": seg.plateau_length / blocks,
            "cliff_drop_pe": seg.cliff_drop_pe, "cliff_drop_block1": seg.cliff_drop_block1,
            "climb_rise": seg.climb_rise,
            "cliff_slope": seg.slopes[0], "plateau_slope": seg.slopes[1], "climb_slope": seg.slopes[2],
        })
    return pd.DataFrame(rows)
