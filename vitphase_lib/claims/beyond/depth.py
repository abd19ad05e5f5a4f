"""Does depth hurt? Top-1, final geometry, phases, ISI and the trade-off block against depth at
fixed width, and the two MLP-capacity variants beside their base."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..paper import PAPER
from .answer import NO_SPREAD, NO_VARIANTS, Answer, Question, sides
from .headline import BETTER_HIGHER, LABELS, compare, group_models, in_words, points_of_spread, rows_of

PAPER_SLOPE = PAPER["tradeoff_offset_layers"] / PAPER["blocks_added_b_to_l"]  # trade-off blocks per added block
DEPTH_COLUMNS = ["model", "blocks", "top1", "nc1", "nc2", "nc3", "nc4", "plateau_length", "climb",
                 "isi_min", "isi_max", "tradeoff_block", "tradeoff_depth"]


def depth_base(variant_names, variants) -> str | None:
    """The model the depth variants among ``variant_names`` change (None without any)."""
    return next((variants[m].base for m in variant_names if variants[m].group == "depth"), None)


def depth_models(variant_names, variants) -> list[str]:
    """The depth variants among ``variant_names`` and their base, shallowest first."""
    from ...models import ALL_MINI_CONFIGS
    base = depth_base(variant_names, variants)
    if base is None:
        return []
    depth = [m for m in variant_names if variants[m].group == "depth"]
    return sorted([base, *depth], key=lambda m: ALL_MINI_CONFIGS[m].depth)


def depth_table(headline: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """The depth sweep: one row per model, shallowest first."""
    table = rows_of(headline, models)
    return table[DEPTH_COLUMNS].sort_values("blocks", ignore_index=True)


def offset_fit(table: pd.DataFrame) -> dict:
    """Least-squares line of the trade-off block against depth: how many blocks later the
    trade-off comes per added block (the paper's ~10 blocks for 12 more: :data:`PAPER_SLOPE`)."""
    known = table.dropna(subset=["tradeoff_block"])
    if known.blocks.nunique() < 2:
        return {"slope": float("nan"), "intercept": float("nan"), "models": len(known)}
    slope, intercept = np.polyfit(known.blocks.astype(float), known.tradeoff_block.astype(float), 1)
    return {"slope": float(slope), "intercept": float(intercept), "models": len(known)}


DEPTH = Question("Does depth hurt at fixed width?", "depth sweep at the base's width and recipe, retrained",
                 "F7, T12")
MLP = Question("Does less MLP capacity cost top-1 or geometry?",
               "the base with its MLP hidden width halved, and with adjacent blocks sharing one MLP", "T13")
MLP_MEASURES = ("top1", "nc1", "nc2")


def check_depth_hurts(table: pd.DataFrame, base: str, spread: pd.Series) -> Answer:
    """Each model deeper than the base against the base: yes when one is worse in top-1 by more
    than the seed spread; no when none is and one is better by more than it; otherwise
    inconclusive (every difference within the spread, or no spread)."""
    if len(table) < 2 or base not in set(table.model):
        return DEPTH.cannot_answer("the build has no depth sweep")
    top1 = table.set_index("model").top1
    depth = table.set_index("model").blocks
    fit = offset_fit(table)
    found = ("top-1 by depth: " + ", ".join(f"{d} block{'s' * (d != 1)} {v:.2f}%"
                                             for d, v in zip(table.blocks, table.top1))
             + f"; seed spread {points_of_spread(spread.top1)}. Trade-off block = {fit['intercept']:.1f} + "
             f"{fit['slope']:.2f} x depth (the paper: about {PAPER_SLOPE:.2f} more per added block)")
    deeper = [m for m in table.model if depth[m] > depth[base]]
    if not deeper:
        return DEPTH.answer(found, None, "no model deeper than the base")
    judged = sides({f"{depth[m]} blocks ({top1[m] - top1[base]:+.2f} points)": compare(top1[m], top1[base], spread.top1)
                    for m in deeper})
    if judged is None:
        return DEPTH.answer(found, None, NO_SPREAD)
    better, worse, _ = judged
    if worse:
        return DEPTH.answer(found, True, f"deeper than the base's {depth[base]} blocks, top-1 falls by more "
                            f"than the seed spread at {', '.join(worse)}")
    if better:
        return DEPTH.answer(found, False, f"no model deeper than the base is worse beyond the seed spread, "
                            f"and {', '.join(better)} is better")
    return DEPTH.answer(found, None, f"every deeper model is within the seed spread "
                        f"({points_of_spread(spread.top1)}) of the base")


def mlp_table(headline: pd.DataFrame, base: str, variants: list[str], parameters: dict) -> pd.DataFrame:
    """The base and its MLP variants: parameters, top-1 and final geometry."""
    table = rows_of(headline, [base, *variants])
    table.insert(1, "parameters", table.model.map(parameters))
    return table[["model", "parameters", "top1", "nc1", "nc2", "nc3", "nc4", "isi_max", "tradeoff_block"]]


def check_mlp_costs(table: pd.DataFrame, spread: pd.Series) -> Answer:
    """Yes when a reduced-MLP model is worse than the base beyond the seed spread in top-1, NC1 or
    NC2; no when neither is worse in any of them and one is better beyond the spread in one;
    otherwise inconclusive."""
    if len(table) < 2:
        return MLP.cannot_answer("the build has no MLP variants")
    base = table.iloc[0]
    outcomes, lines = {}, []
    for row in table.iloc[1:].itertuples():
        for measure in MLP_MEASURES:
            outcomes[f"{row.model} in {LABELS[measure]}"] = compare(getattr(row, measure), base[measure],
                                                                    spread[measure], BETTER_HIGHER[measure])
        lines.append(f"{row.model} ({row.parameters / base.parameters:.0%} of the parameters): "
                     + "; ".join(f"{LABELS[m]} {in_words(getattr(row, m), base[m], spread[m], 3 if m != 'top1' else 2)}"
                                 for m in MLP_MEASURES))
    found = ". ".join(lines)
    judged = sides(outcomes)
    if judged is None:
        return MLP.answer(found, None, NO_SPREAD)
    better, worse, _ = judged
    if worse:
        return MLP.answer(found, True, "worse than the base beyond the seed spread: " + ", ".join(worse))
    if better:
        return MLP.answer(found, False, "neither reduction is worse than the base beyond the seed spread, and "
                          + ", ".join(better) + " is better beyond it")
    return MLP.answer(found, None, judged.within())


def answers(ctx) -> list[Answer]:
    """The depth and MLP-capacity answers of a :class:`~.context.Context`."""
    if not ctx.has_variants:
        return [DEPTH.cannot_answer(NO_VARIANTS), MLP.cannot_answer(NO_VARIANTS)]
    models = depth_models(ctx.study.variants, ctx.registry)
    table = depth_table(ctx.headline, models) if models else pd.DataFrame()
    base = depth_base(ctx.study.variants, ctx.registry) or ""
    mlp = group_models(ctx.study.variants, ctx.registry, "mlp")
    mlp_rows = mlp_table(ctx.headline, mlp[0], mlp[1:], ctx.parameters(mlp)) if mlp else pd.DataFrame()
    return [check_depth_hurts(table, base, ctx.spread), check_mlp_costs(mlp_rows, ctx.spread)]
