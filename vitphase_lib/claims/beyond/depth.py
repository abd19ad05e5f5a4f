"""Does depth hurt? Top-1, final geometry, phases, ISI and the trade-off block against depth at
fixed width, and the two MLP-capacity variants beside their base."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .answer import NO_VARIANTS, Answer, not_answerable
from .headline import BETTER_HIGHER, LABELS, compare, group_models, in_words, present

DEPTH_COLUMNS = ["model", "blocks", "top1", "nc1", "nc2", "nc3", "nc4", "plateau_length", "climb",
                 "isi_min", "isi_max", "tradeoff_block", "tradeoff_depth"]


def depth_models(variant_names, variants) -> list[str]:
    """The depth variants among ``variant_names`` and their base, shallowest first."""
    from ...models import ALL_MINI_CONFIGS
    depth = [m for m in variant_names if variants[m].group == "depth"]
    if not depth:
        return []
    return sorted([variants[depth[0]].base, *depth], key=lambda m: ALL_MINI_CONFIGS[m].depth)


def depth_table(headline: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """The depth sweep: one row per model, shallowest first."""
    table = headline.set_index("model").loc[present(headline, models)].reset_index()
    return table[DEPTH_COLUMNS].sort_values("blocks", ignore_index=True)


def offset_fit(table: pd.DataFrame) -> dict:
    """Least-squares line of the trade-off block against depth: how many blocks later the
    trade-off comes per added block (the paper's ~10 blocks for 12 more is 0.83 per block)."""
    known = table.dropna(subset=["tradeoff_block"])
    if known.blocks.nunique() < 2:
        return {"slope": float("nan"), "intercept": float("nan"), "models": len(known)}
    slope, intercept = np.polyfit(known.blocks.astype(float), known.tradeoff_block.astype(float), 1)
    return {"slope": float(slope), "intercept": float(intercept), "models": len(known)}


QUESTION_DEPTH = "Does depth hurt at fixed width?"
EXPERIMENT_DEPTH = "depth sweep at the base's width and recipe, retrained"


def check_depth_hurts(table: pd.DataFrame, base: str, spread: pd.Series, evidence: str) -> Answer:
    """Each model deeper than the base against the base: yes when one is worse in top-1 by more
    than the seed spread; no when none is and one is better by more than it; otherwise
    inconclusive (every difference within the spread, or no spread)."""
    if len(table) < 2 or base not in set(table.model):
        return not_answerable(QUESTION_DEPTH, EXPERIMENT_DEPTH, evidence, "the build has no depth sweep")
    top1 = table.set_index("model").top1
    depth = table.set_index("model").blocks
    fit = offset_fit(table)
    found = ("top-1 by depth: " + ", ".join(f"{d} block{'s' * (d != 1)} {v:.2f}%"
                                             for d, v in zip(table.blocks, table.top1))
             + f"; seed spread {_spread_text(spread.top1)}. Trade-off block = {fit['intercept']:.1f} + "
             f"{fit['slope']:.2f} x depth (the paper: about 0.83 more per added block)")
    deeper = [m for m in table.model if depth[m] > depth[base]]
    outcome = {m: compare(top1[m], top1[base], spread.top1) for m in deeper}
    if not deeper or all(v == "unknown" for v in outcome.values()):
        why = "no model deeper than the base" if not deeper else "no seed spread to judge against"
        return Answer(QUESTION_DEPTH, EXPERIMENT_DEPTH, found, evidence, None, why)
    worse = [f"{depth[m]} blocks ({top1[m] - top1[base]:+.2f} points)" for m, v in outcome.items() if v == "worse"]
    better = [f"{depth[m]} blocks ({top1[m] - top1[base]:+.2f} points)" for m, v in outcome.items() if v == "better"]
    if worse:
        return Answer(QUESTION_DEPTH, EXPERIMENT_DEPTH, found, evidence, True,
                      f"deeper than the base's {depth[base]} blocks, top-1 falls by more than the seed "
                      f"spread at {', '.join(worse)}")
    if better:
        return Answer(QUESTION_DEPTH, EXPERIMENT_DEPTH, found, evidence, False,
                      f"no model deeper than the base is worse beyond the seed spread, and "
                      f"{', '.join(better)} is better")
    return Answer(QUESTION_DEPTH, EXPERIMENT_DEPTH, found, evidence, None,
                  f"every deeper model is within the seed spread ({_spread_text(spread.top1)}) of the base")


def _spread_text(value: float) -> str:
    return "n/a (no seeds)" if pd.isna(value) else f"{value:.2f} points"


QUESTION_MLP = "Does less MLP capacity cost top-1 or geometry?"
EXPERIMENT_MLP = "the base with its MLP hidden width halved, and with adjacent blocks sharing one MLP"
MLP_MEASURES = ("top1", "nc1", "nc2")


def mlp_table(headline: pd.DataFrame, base: str, variants: list[str], parameters: dict) -> pd.DataFrame:
    """The base and its MLP variants: parameters, top-1 and final geometry."""
    table = headline.set_index("model").loc[present(headline, [base, *variants])].reset_index()
    table.insert(1, "parameters", table.model.map(parameters))
    return table[["model", "parameters", "top1", "nc1", "nc2", "nc3", "nc4", "isi_max", "tradeoff_block"]]


def check_mlp_costs(table: pd.DataFrame, spread: pd.Series, evidence: str) -> Answer:
    """Yes when a reduced-MLP model is worse than the base beyond the seed spread in top-1, NC1 or
    NC2; no when neither is worse in any of them and one is better beyond the spread in one;
    otherwise inconclusive."""
    if len(table) < 2:
        return not_answerable(QUESTION_MLP, EXPERIMENT_MLP, evidence, "the build has no MLP variants")
    base = table.iloc[0]
    verdicts, lines = {}, []
    for row in table.iloc[1:].itertuples():
        for measure in MLP_MEASURES:
            verdicts[(row.model, measure)] = compare(getattr(row, measure), base[measure], spread[measure],
                                                     BETTER_HIGHER[measure])
        lines.append(f"{row.model} ({row.parameters / base.parameters:.0%} of the parameters): "
                     + "; ".join(f"{LABELS[m]} {in_words(getattr(row, m), base[m], spread[m], 3 if m != 'top1' else 2)}"
                                 for m in MLP_MEASURES))
    found = ". ".join(lines)
    worse = [f"{model} in {LABELS[measure]}" for (model, measure), v in verdicts.items() if v == "worse"]
    better = [f"{model} in {LABELS[measure]}" for (model, measure), v in verdicts.items() if v == "better"]
    if worse:
        return Answer(QUESTION_MLP, EXPERIMENT_MLP, found, evidence, True,
                      "worse than the base beyond the seed spread: " + ", ".join(worse))
    if all(v == "unknown" for v in verdicts.values()):
        return Answer(QUESTION_MLP, EXPERIMENT_MLP, found, evidence, None, "no seed spread to judge against")
    if better:
        return Answer(QUESTION_MLP, EXPERIMENT_MLP, found, evidence, False,
                      "neither reduction is worse than the base beyond the seed spread, and "
                      + ", ".join(better) + " is better beyond it")
    return Answer(QUESTION_MLP, EXPERIMENT_MLP, found, evidence, None,
                  "every difference from the base is within the seed spread")

EVIDENCE_DEPTH, EVIDENCE_MLP = "F7, T12", "T13"


def answers(ctx) -> list[Answer]:
    """The depth and MLP-capacity answers of a :class:`~.context.Context`."""
    if not ctx.has_variants:
        return [not_answerable(QUESTION_DEPTH, EXPERIMENT_DEPTH, EVIDENCE_DEPTH, NO_VARIANTS),
                not_answerable(QUESTION_MLP, EXPERIMENT_MLP, EVIDENCE_MLP, NO_VARIANTS)]
    models = depth_models(ctx.study.variants, ctx.registry)
    table = depth_table(ctx.headline, models) if models else pd.DataFrame()
    base = ctx.registry[next(m for m in models if m in ctx.registry)].base if models else ""
    depth = check_depth_hurts(table, base, ctx.spread, EVIDENCE_DEPTH)
    mlp = group_models(ctx.study.variants, ctx.registry, "mlp")
    table = mlp_table(ctx.headline, mlp[0], mlp[1:], ctx.parameters(mlp)) if mlp else pd.DataFrame()
    return [depth, check_mlp_costs(table, ctx.spread, EVIDENCE_MLP)]
