"""How much is noise, and how much is definition? The ISI under other decoder budgets, and the
ISI's reconstruction proxy beside an independent measure of what a layer keeps of the raw patch
embeddings: linear CKA (the seed spread itself is :func:`.headline.spread_table`)."""
from __future__ import annotations

import pandas as pd
from scipy.stats import spearmanr

from ... import layers
from ...metrics.scrambling import ISI_THRESHOLDS, isi_regime
from .answer import NO_VARIANTS, Answer, not_answerable

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


QUESTION_BUDGET = "Is the ISI regime a property of the model rather than of the decoder budget?"
EXPERIMENT_BUDGET = "ISI re-measured with 4-32 principal components and fixed or cross-validated ridges"


def check_budget(summary: pd.DataFrame, seed_spread_isi_max: float, evidence: str) -> Answer:
    """Yes when every model's regime at the ISI peak is the same under every budget and the
    models keep their order by ISI peak; no when some model's regime changes with the budget;
    inconclusive when the regimes hold but the order does not."""
    if summary.empty:
        return not_answerable(QUESTION_BUDGET, EXPERIMENT_BUDGET, evidence, "no decoder-budget sweep in this build")
    regimes = summary.groupby("model", sort=False).regime_at_peak.agg(lambda r: sorted(set(r)))
    ranges = summary.groupby("model", sort=False).isi_max.agg(lambda v: v.max() - v.min())
    found = "; ".join(f"{m}: ISI peak {summary[summary.model == m].isi_max.min():.4f} to "
                      f"{summary[summary.model == m].isi_max.max():.4f} over the budgets "
                      f"(regimes: {', '.join(regimes[m])})" for m in regimes.index)
    found += f"; the seed spread of the ISI peak is {seed_spread_isi_max:.4f}"
    changed = [m for m, r in regimes.items() if len(r) > 1]
    if changed:
        cv = summary[summary.ridge == "cv"]
        with_cv = [m for m, r in cv.groupby("model", sort=False).regime_at_peak if r.nunique() > 1]
        return Answer(QUESTION_BUDGET, EXPERIMENT_BUDGET, found, evidence, False,
                      f"the regime of {', '.join(changed)} changes with the decoder budget (the budget "
                      f"moves the ISI peak by up to {ranges.max():.4f}); "
                      + (f"with the cross-validated ridge alone, that of {', '.join(with_cv)}"
                         if with_cv else "with the cross-validated ridge alone, no model's"))
    orders = {budget: tuple(frame.sort_values("isi_max").model)
              for budget, frame in summary.groupby(["infox_dims", "ridge"], sort=False)}
    if len(set(orders.values())) == 1:
        return Answer(QUESTION_BUDGET, EXPERIMENT_BUDGET, found, evidence, True,
                      "every model keeps its regime and its rank by ISI peak under every budget")
    return Answer(QUESTION_BUDGET, EXPERIMENT_BUDGET, found, evidence, None,
                  "every model keeps its regime, but the models' order by ISI peak depends on the budget")


def retention_agreement(cka: pd.DataFrame, scrambling: pd.DataFrame) -> pd.DataFrame:
    """Per model, Spearman rho across the layers after raw (pe, blocks) between the
    reconstruction proxy (InfoX_self, InfoX_all) and linear CKA with the raw patch embeddings
    (pooled, and with each position's mean removed)."""
    merged = cka.merge(scrambling, on=["model", "layer"])
    merged = merged[merged.layer != layers.RAW]
    rows = []
    for model, frame in merged.groupby("model", sort=False):
        row = {"model": model, "layers": len(frame)}
        for proxy in ("infox_self", "infox_all"):
            for measure in ("cka", "cka_positional"):
                row[f"rho({proxy}, {measure})"] = float(spearmanr(frame[proxy], frame[measure]).statistic)
        rows.append(row)
    return pd.DataFrame(rows)


QUESTION_PROXY = "Does the ISI's reconstruction proxy agree with a direct measure of retention?"
EXPERIMENT_PROXY = "InfoX_self beside linear CKA with the raw patch embeddings, layer by layer"
KEY = "rho(infox_self, cka_positional)"


def check_proxy(agreement: pd.DataFrame, evidence: str) -> Answer:
    """Yes when InfoX_self and the position-centred CKA rank the layers alike (rho >= AGREES) in
    every model, no when rho < DISAGREES in some model, otherwise inconclusive."""
    if agreement.empty:
        return not_answerable(QUESTION_PROXY, EXPERIMENT_PROXY, evidence, "no CKA in this build")
    found = "Spearman rho across layers of InfoX_self and CKA (position means removed): " + ", ".join(
        f"{model} {rho:+.2f}" for model, rho in zip(agreement.model, agreement[KEY]))
    rhos = agreement[KEY]
    if (rhos >= AGREES).all():
        return Answer(QUESTION_PROXY, EXPERIMENT_PROXY, found, evidence, True,
                      f"the two rank the layers alike in every model (rho >= {AGREES})")
    if (rhos < DISAGREES).any():
        return Answer(QUESTION_PROXY, EXPERIMENT_PROXY, found, evidence, False,
                      f"they disagree in {', '.join(agreement.model[rhos < DISAGREES])} (rho < {DISAGREES})")
    return Answer(QUESTION_PROXY, EXPERIMENT_PROXY, found, evidence, None,
                  f"partial agreement (rho between {DISAGREES} and {AGREES} in some model)")


EVIDENCE_BUDGET, EVIDENCE_PROXY = "T19, F13, T20", "F14, T21"


def noise_models(ctx) -> list[str]:
    """The models the definition checks run on: the seed models, then the deepest model of the
    depth sweep (where the paper's ISI failure signature would be expected)."""
    from .depth import depth_models
    depth = depth_models(ctx.study.variants, ctx.variants)
    return list(dict.fromkeys([*ctx.seeds, *depth[-1:]]))


def retention(ctx, table: str) -> pd.DataFrame:
    """One retention table (``cka`` or ``isi_budget``) of every :func:`noise_models` model, stacked."""
    frames = [ctx.vstudy.retention(m)[table].assign(model=m) for m in noise_models(ctx)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def answers(ctx) -> list[Answer]:
    if not ctx.has_variants or not noise_models(ctx):
        why = NO_VARIANTS if not ctx.has_variants else "no seed or depth variants in this build"
        return [not_answerable(QUESTION_BUDGET, EXPERIMENT_BUDGET, EVIDENCE_BUDGET, why),
                not_answerable(QUESTION_PROXY, EXPERIMENT_PROXY, EVIDENCE_PROXY, why)]
    budget = check_budget(budget_summary(retention(ctx, "isi_budget"), ctx.study.isi_thresholds),
                          float(ctx.spread.isi_max), EVIDENCE_BUDGET)
    scrambling = ctx.vstudy.collect("analysis", "scrambling")
    proxy = check_proxy(retention_agreement(retention(ctx, "cka"), scrambling), EVIDENCE_PROXY)
    return [budget, proxy]
