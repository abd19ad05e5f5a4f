"""Cliff / Plateau / Climb: a deterministic segmentation of a layer-wise similarity curve.

The curve S over the layers ``raw, pe, 1..L`` (positions 0..K-1, K = L + 2) is cut at two
positions, ``e`` (end of the Cliff = start of the Plateau) and ``s`` (start of the Climb):

1. **Cliff.** The Cliff is the fall of S when positional encodings are added (``raw`` -> ``pe``,
   size D = S(raw) - S(pe)), and it may go on for a few blocks. It ends at the first position
   e >= 1 (``pe``) from which S never falls by more than ``CLIFF_END_FRACTION`` x D below its
   value there: S(e) - min S[e:] <= 0.1 D. Without a fall at ``pe`` (D <= 0) the Cliff ends at
   ``pe``. The Cliff's shape is not fitted; its slope is the mean fall per layer, (S(e) - S(0)) / e.
2. **Plateau and Climb.** S over positions e..K-1 is fitted by least squares with a continuous
   two-piece linear function with a knot at s, for every e < s <= K - 2, under the shape the names
   describe: the Climb's slope is at least the Plateau's, and the Climb does not fall
   (m_climb >= m_plateau, m_climb >= 0; bounded least squares, exact and deterministic). The knot
   with the smallest residual sum of squares wins (ties go to the earliest). If the winner's Climb
   is flat (m_climb = 0: no rise fits better than none), there is no Climb to find: the Plateau
   runs to its lowest point (the last minimum of S over e+1..K-2), and the layers after it form
   the reported "Climb", whose rise is then at most what the last blocks happen to move.
   If the winner has no kink (m_climb = m_plateau: one straight line fits as well as any bend,
   and every knot ties), the data show no boundary either. A line that rises from e to the last
   block by more than ``FLAT_FRACTION`` of the curve's range (max S - min S, all layers) is all
   Climb (the earliest knot, e + 1); a flatter one is all Plateau, and the "Climb" is the last
   block (s = K - 2).

Why not one three-piece least-squares fit over all layers: such a fit spends its two knots where
the curve bends most. When the fall goes on from ``pe`` into block 1 and the rest is flat (the
mini zoo on Fashion-MNIST), both knots land in the Cliff and the long flat tail is called the
"Climb". Here the flat stretch of such a curve is its Plateau, and its "Climb" is the last
block or two, which barely move. Nothing forces the Climb to rise: its slope and rise are
reported, so a caller can say whether the "Climb" climbs and the "Plateau" is flat.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import lsq_linear

from ..layers import HEAD, INPUTS


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
    slopes: tuple[float, float, float]  # per layer: Cliff (mean fall), Plateau and Climb (fitted)
    rss: float                    # residual sum of squares of the Plateau-Climb fit

    def phase_of(self, layer: str) -> str:
        i = self.layers.index(layer)
        e, s = self.layers.index(self.plateau_start), self.layers.index(self.climb_start)
        return "cliff" if i < e else ("plateau" if i <= s else "climb")


CLIFF_END_FRACTION = 0.1  # the Cliff ends where S has at most 10% of the Cliff's size left to fall
FLAT_FRACTION = 0.1  # a straight line after the Cliff rising by at most 10% of S's range is flat


def cliff_end(y: np.ndarray) -> int:
    """The position where the Cliff ends: the first e >= 1 with y[e] - min(y[e:]) <= 0.1 D,
    D = y[0] - y[1] (1 when D <= 0), and at most len(y) - 3 (a Plateau and a Climb must follow)."""
    drop = y[0] - y[1]
    last = len(y) - 3
    if drop <= 0:
        return 1
    for e in range(1, last + 1):
        if y[e] - y[e:].min() <= CLIFF_END_FRACTION * drop:
            return e
    return last


def _hinge_fit(y: np.ndarray, e: int, s: int) -> tuple[float, tuple[float, float]]:
    """Least squares of y[e:] by a + m_p (x - e) + (m_c - m_p) (x - s)_+ under m_c >= m_p and
    m_c >= 0, in the parameters (a, m_c, m_c - m_p), the last two non-negative (scipy's BVLS).
    Returns the residual sum of squares and the slopes (m_p, m_c)."""
    x = np.arange(e, len(y), dtype=np.float64)
    # a + m_c (x - e) - (m_c - m_p) ((x - e) - (x - s)_+)
    design = np.stack([np.ones_like(x), x - e, np.maximum(x - s, 0) - (x - e)], axis=1)
    fit = lsq_linear(design, y[e:], bounds=([-np.inf, 0, 0], np.inf), method="bvls", tol=1e-14)
    residual = y[e:] - design @ fit.x
    _, climb, bend = fit.x
    return float(residual @ residual), (float(climb - bend), float(climb))


def segment_phases(similarity: Sequence[float], layers: Sequence[str]) -> PhaseSegmentation:
    """Segment ``similarity`` (one value per layer of ``layers`` = raw, pe, 1..L)."""
    y = np.asarray(similarity, dtype=np.float64)
    layers = tuple(layers)
    if len(y) != len(layers):
        raise ValueError(f"{len(y)} values for {len(layers)} layers")
    if layers[:2] != INPUTS or len(layers) < 5:
        raise ValueError("segment_phases needs the layers raw, pe, 1..L with L >= 3, "
                         f"got {list(layers)}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"the similarity curve has non-finite values: {y.tolist()}")
    k = len(y)
    e = cliff_end(y)
    best: tuple[float, int, tuple[float, float]] | None = None
    scale = max(1.0, float(np.abs(y).max()))
    for s in range(e + 1, k - 1):
        rss, slopes = _hinge_fit(y, e, s)
        # ties (to rounding) go to the earliest knot: strict improvement required
        if best is None or rss < best[0] - 1e-12 * scale:
            best = (rss, s, slopes)
    rss, s, (plateau_slope, climb_slope) = best
    if climb_slope == 0.0:
        # the bound is active: no rising Climb fits better than a flat one, so the flat tail is
        # Plateau too; the Plateau runs to its lowest point and what follows is the "Climb"
        s = e + 1 + int(np.flatnonzero(y[e + 1:k - 1] == y[e + 1:k - 1].min())[-1])
        rss, (plateau_slope, climb_slope) = _hinge_fit(y, e, s)
    elif climb_slope == plateau_slope:
        # no kink: one straight line, every knot ties; it is a Climb only if it rises materially
        line_rise = climb_slope * (k - 1 - e)
        if line_rise <= FLAT_FRACTION * float(y.max() - y.min()):
            s = k - 2
            rss, (plateau_slope, climb_slope) = _hinge_fit(y, e, s)
    return PhaseSegmentation(
        layers=layers, plateau_start=layers[e], climb_start=layers[s],
        plateau_length=s - e, climb_length=k - 1 - s,
        cliff_drop_pe=float(y[0] - y[1]), cliff_drop_block1=float(y[0] - y[2]),
        climb_rise=float(y[-1] - y[s]),
        slopes=(float(y[e] - y[0]) / e, plateau_slope, climb_slope), rss=rss)


def phase_table(per_layer: pd.DataFrame, column: str = "centered_similarity",
                by: Sequence[str] = ("model",)) -> pd.DataFrame:
    """Segment every curve of a stacked per-layer table (columns ``by``, ``layer``, ``column``),
    one row per group of ``by`` (e.g. per model, or per model and PE scale alpha)."""
    rows = []
    for keys, frame in per_layer.groupby(list(by), sort=False):
        frame = frame[frame.layer != HEAD]
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
