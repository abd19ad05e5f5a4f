"""C4, scrambling regimes: the B-shaped model stays in controlled consensus while the deeper
L-shaped one reaches chaotic diffusion; with T8, the ISI range and regime per model
(Methods, 'Information scrambling')."""
from __future__ import annotations

import pandas as pd

from .. import layers
from ..metrics.scrambling import ISI_THRESHOLDS, isi_regime
from .paper import PAPER
from .verdict import ClaimCheck


def isi_summary(scrambling: pd.DataFrame, collapse_below: float = ISI_THRESHOLDS[0],
                chaotic_above: float = ISI_THRESHOLDS[1]) -> pd.DataFrame:
    """T8: per model, the ISI range over the blocks, where it peaks, the regime of the peak, how
    many blocks fall in each regime and in the paper's ViT-B band (0.004-0.009)."""
    low, high = PAPER["isi_band_vit_b"]
    rows = []
    for model, frame in scrambling.groupby("model", sort=False):
        blocks = frame[layers.blocks_only(frame.layer)]
        peak = blocks.loc[blocks.isi.idxmax()]
        regimes = [isi_regime(float(v), collapse_below, chaotic_above) for v in blocks.isi]
        rows.append({"model": model, "isi_min": float(blocks.isi.min()), "isi_max": float(peak.isi),
                     "isi_median": float(blocks.isi.median()), "peak_block": layers.block_number(peak.layer),
                     "regime_at_peak": isi_regime(float(peak.isi), collapse_below, chaotic_above),
                     "blocks": len(blocks),
                     "blocks_collapse": regimes.count("communication collapse"),
                     "blocks_controlled": regimes.count("controlled consensus"),
                     "blocks_chaotic": regimes.count("chaotic diffusion"),
                     "blocks_in_vit_b_band": int(blocks.isi.between(low, high).sum()),
                     # the paper's failure signature is the chaotic regime
                     "failure_signature": bool(peak.isi > chaotic_above)})
    return pd.DataFrame(rows)


def check_scrambling_regimes(summary: pd.DataFrame, models: tuple[str, ...]) -> ClaimCheck:
    """C4: the B-shaped model stays in controlled consensus (its peak ISI over the blocks lies in
    0.004-0.02) while the deeper L-shaped model reaches chaotic diffusion (peak ISI above 0.02,
    the paper's failure signature). The reason also says whether L at least peaks higher than B,
    the weaker, relative reading of the claim."""
    measured = "; ".join(f"{r.model}: ISI {r.isi_min:.4f} to {r.isi_max:.4f} (peak at block "
                         f"{r.peak_block}, {r.regime_at_peak}; blocks collapse/controlled/chaotic "
                         f"{r.blocks_collapse}/{r.blocks_controlled}/{r.blocks_chaotic})"
                         for r in summary.itertuples())
    paper = (f"ViT-B stays in {PAPER['isi_band_vit_b'][0]}-{PAPER['isi_band_vit_b'][1]} "
             f"(controlled); ViT-L climbs to {PAPER['isi_peak_vit_l']} (chaotic)")
    if len(models) != 3:
        return ClaimCheck("C4 scrambling regimes", paper, measured, None, "needs three models (S, B, L)")
    frame = summary.set_index("model")
    b, l_ = frame.loc[models[1]], frame.loc[models[2]]
    controlled = b.regime_at_peak == "controlled consensus"
    chaotic = l_.regime_at_peak == "chaotic diffusion"
    higher = l_.isi_max > b.isi_max
    holds = bool(controlled and chaotic)
    reason = (f"{models[1]} peaks in '{b.regime_at_peak}' ({b.isi_max:.4f}); {models[2]} peaks in "
              f"'{l_.regime_at_peak}' ({l_.isi_max:.4f}), {'higher' if higher else 'not higher'} "
              f"than {models[1]}")
    return ClaimCheck("C4 scrambling regimes", paper, measured, holds, reason)
