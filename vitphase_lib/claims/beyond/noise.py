"""How much is noise, and how much is definition? The ISI under other decoder budgets, and the
ISI's reconstruction proxy beside an independent measure of what a layer keeps of the raw patch
embeddings: linear CKA (the seed spread itself is :func:`.headline.spread_table`)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ... import layers
from ...metrics.scrambling import ISI_THRESHOLDS, isi_regime
from .answer import NO_SPREAD, NO_VARIANTS, Answer, Question

# agreement of the reconstruction proxy with CKA across layers (Spearman rho, every model):
# at least AGREES is agreement, below DISAGREES in any model is disagreement
AGREES, DISAGREES = 0.7, 0.3


def budget_summary(isi_budget: pd.DataFrame, thresholds: tuple[float, float] = ISI_THRESHOLDS) -> pd.DataFrame:
    """Per model and decoder budget (principal components, ridge): the ISI range over the blocks,
    the regime of its peak, how many blocks lie in the paper's ViT-B band, and the ISI of the raw
    layer, which scrambles nothing (what the budget alone gives)."""
    from ..paper import PAPER
    low, high = PAPER["isi_band_vit_b"]
    rows = []
    frame = isi_budget.assign(ridge=isi_budget.ridge.astype(str))
    raw = frame[frame.layer == layers.RAW].set_index(["model", "infox_dims", "ridge"]).isi
    blocks = frame[layers.blocks_only(frame.layer)]
    for (model, dims, ridge), frame in blocks.groupby(["model", "infox_dims", "ridge"], sort=False):
        rows.append({"model": model, "infox_dims": int(dims), "ridge": ridge,
                     "isi_raw": float(raw.get((model, dims, ridge), float("nan"))),
                     "isi_min": float(frame.isi.min()), "isi_max": float(frame.isi.max()),
                     "regime_at_peak": isi_regime(float(frame.isi.max()), *thresholds),
                     "blocks_in_vit_b_band": int(frame.isi.between(low, high).sum()),
                     "blocks": len(frame)})
    return pd.DataFrame(rows)


BUDGET = Question("Is the ISI regime a property of the model rather than of the decoder budget?",
                  "ISI re-measured with a quarter, half and all of the principal components, the ridge "
                  "cross-validated or fixed", "T19, F13, T20")


def check_budget(summary: pd.DataFrame, seed_spread_isi_max: float) -> Answer:
    """Over the budgets with the cross-validated ridge (the book's protocol, other numbers of
    components): yes when every model keeps its regime at the ISI peak; no when a model's regime
    changes and its ISI peak moves by more than the seed spread; otherwise inconclusive. The
    fixed ridges are reported beside it, with the ISI they give the raw layer (pure bias)."""
    if summary.empty:
        return BUDGET.cannot_answer("no decoder-budget sweep in this build")
    cv = summary[summary.ridge == "cv"]
    found = "; ".join(
        f"{model}: ISI peak {rows.isi_max.min():.4f} to {rows.isi_max.max():.4f} with the cross-validated "
        f"ridge ({', '.join(dict.fromkeys(rows.regime_at_peak))}), "
        f"{summary[summary.model == model].isi_max.min():.4f} to {summary[summary.model == model].isi_max.max():.4f} "
        "with the fixed ridges too" for model, rows in cv.groupby("model", sort=False))
    found += ("; no seed spread of the ISI peak" if pd.isna(seed_spread_isi_max) else
              f"; the seed spread of the ISI peak is {seed_spread_isi_max:.4f}")
    moved = cv.groupby("model", sort=False).isi_max.agg(lambda v: v.max() - v.min())
    changed = [m for m, rows in cv.groupby("model", sort=False) if rows.regime_at_peak.nunique() > 1]
    if not changed:
        return BUDGET.answer(found, True, "every model keeps its regime under every number of components")
    if not seed_spread_isi_max > 0:
        return BUDGET.answer(found, None, f"the regime of {', '.join(changed)} changes, and there is {NO_SPREAD}")
    beyond_noise = [m for m in changed if moved[m] > seed_spread_isi_max]
    if beyond_noise:
        return BUDGET.answer(found, False, f"the regime of {', '.join(beyond_noise)} changes with the number "
                             f"of components, its ISI peak moving by up to {moved[beyond_noise].max():.4f}, "
                             "more than the seed spread")
    return BUDGET.answer(found, None, f"the regime of {', '.join(changed)} changes, but its ISI peak moves "
                         "by no more than the seed spread")


def chance_of_exceeding(seeds: int = 3, draws: int = 200_000, seed: int = 0) -> float:
    """How often, with no true effect, a variant's difference from its base exceeds the range of
    ``seeds`` runs the base is one of (independent normal noise, simulated): the false-positive
    rate of one "exceeds the seed spread"."""
    rng = np.random.default_rng(seed)
    runs = rng.normal(size=(draws, seeds))
    variant = rng.normal(size=draws)
    return float(np.mean(np.abs(variant - runs[:, 0]) > np.ptp(runs, axis=1)))


def retention_agreement(cka: pd.DataFrame, scrambling: pd.DataFrame) -> pd.DataFrame:
    """Per model, Spearman rho across the layers after raw (pe, blocks) between the
    reconstruction proxy (InfoX_self, InfoX_all) and linear CKA with the raw patch embeddings
    (pooled, and with each position's mean removed)."""
    merged = cka.merge(scrambling, on=["model", "layer"])
    merged = merged[(merged.layer == layers.PE) | layers.blocks_only(merged.layer)]
    rows = []
    for model, frame in merged.groupby("model", sort=False):
        row = {"model": model, "layers": len(frame)}
        for proxy in ("infox_self", "infox_all"):
            for measure in ("cka", "cka_positional"):
                row[f"rho({proxy}, {measure})"] = float(spearmanr(frame[proxy], frame[measure]).statistic)
        rows.append(row)
    return pd.DataFrame(rows)


PROXY = Question("Does the ISI's reconstruction proxy agree with a direct measure of retention?",
                 "InfoX_self beside linear CKA with the raw patch embeddings, layer by layer", "F14, T21")
KEY = "rho(infox_self, cka_positional)"


def check_proxy(agreement: pd.DataFrame) -> Answer:
    """Yes when InfoX_self and the position-centred CKA rank the layers alike (rho >= AGREES) in
    every model, no when rho < DISAGREES in some model, otherwise inconclusive."""
    if agreement.empty:
        return PROXY.cannot_answer("no CKA in this build")
    found = "Spearman rho across layers of InfoX_self and CKA (position means removed): " + ", ".join(
        f"{model} {rho:+.2f}" for model, rho in zip(agreement.model, agreement[KEY]))
    rhos = agreement[KEY]
    if (rhos >= AGREES).all():
        return PROXY.answer(found, True, f"the two rank the layers alike in every model (rho >= {AGREES})")
    if (rhos < DISAGREES).any():
        return PROXY.answer(found, False, f"they disagree in {', '.join(agreement.model[rhos < DISAGREES])} "
                            f"(rho < {DISAGREES})")
    return PROXY.answer(found, None, f"partial agreement (rho between {DISAGREES} and {AGREES} in some model)")


def noise_models(ctx) -> list[str]:
    """The models the definition checks run on: the seed models, then the deepest model of the
    depth sweep (where the paper's ISI failure signature would be expected)."""
    from .depth import depth_models
    depth = depth_models(ctx.study.variants, ctx.registry)
    return list(dict.fromkeys([*ctx.seeds, *depth[-1:]]))


def retention(ctx, table: str) -> pd.DataFrame:
    """One retention table (``cka`` or ``isi_budget``) of every :func:`noise_models` model, stacked."""
    frames = [ctx.vstudy.retention(m)[table].assign(model=m) for m in noise_models(ctx)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def answers(ctx) -> list[Answer]:
    if not ctx.has_variants or not noise_models(ctx):
        why = NO_VARIANTS if not ctx.has_variants else "no seed or depth variants in this build"
        return [BUDGET.cannot_answer(why), PROXY.cannot_answer(why)]
    budget = check_budget(budget_summary(retention(ctx, "isi_budget"), ctx.study.isi_thresholds),
                          float(ctx.spread.isi_max))
    scrambling = ctx.vstudy.collect("analysis", "scrambling")
    proxy = check_proxy(retention_agreement(retention(ctx, "cka"), scrambling))
    return [budget, proxy]


def describe_budgets(study) -> str:
    """What the budget sweep varies, in the study's own numbers."""
    from ...study import RETENTION_RIDGES
    fixed = [r for r in RETENTION_RIDGES if r != "cv"]
    return (f"The book's ISI uses decoders on the top {study.infox_dims} principal components of each "
            f"layer's tokens (and of the raw target), with a cross-validated ridge. Here the number of "
            f"components is {', '.join(map(str, study.retention_dims))} (capped at the width), and the "
            f"ridge is cross-validated or fixed at {' or '.join(f'{r:g}' for r in fixed)} per sample. "
            f"The verdict rests on the cross-validated budgets; a fixed ridge shrinks the all decoder "
            f"less than the self decoder, and the ISI it gives the raw layer, which scrambles nothing, "
            f"is listed as its bias. With no true effect, a difference between two models exceeds the "
            f"range of three seeds in {chance_of_exceeding():.0%} of cases (normal noise, simulated): "
            f"the seed spread is a coarse yardstick, and a single 'exceeds it' is weak evidence.")
