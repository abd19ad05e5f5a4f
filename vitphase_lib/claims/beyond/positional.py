"""Positional-encoding strength, retrained: Cliff, PE Dominance Ratio, Plateau and top-1 from no
position embedding to a strong fixed one (C2's causal half, which scaling the PE of a trained
model at evaluation time cannot test)."""
from __future__ import annotations

import pandas as pd

from .answer import NO_SPREAD, NO_VARIANTS, Answer, Question
from .headline import compare, group_models, points_of_spread, rows_of
from .training import spearman

PE_COLUMNS = ["model", "pe", "pe_scale", "pe_norm", "pe_dominance_ratio", "cliff_drop_pe", "plateau_length",
              "climb", "top1"]


def pe_table(headline: pd.DataFrame, models: list[str], configs: dict) -> pd.DataFrame:
    """The PE-strength models, weakest first, the base's learned PE last."""
    table = rows_of(headline, models)
    table["pe"] = table.model.map(lambda m: "learned" if configs[m].pos_embed == "learned" else
                                  "none" if configs[m].pe_scale == 0 else "sin-cos")
    table["pe_scale"] = table.model.map(lambda m: float("nan") if configs[m].pos_embed == "learned"
                                        else configs[m].pe_scale)
    order = table.pe_scale.fillna(float("inf")).argsort(kind="stable")
    return table.iloc[order][PE_COLUMNS].reset_index(drop=True)


QUESTION = Question("Does early decorrelation help (a larger Cliff, a higher top-1)?",
                    "fixed sin-cos PE at four strengths, from none to strong, retrained", "F9, T15")


def check_decorrelation_helps(table: pd.DataFrame, spread: pd.Series) -> Answer:
    """Over the fixed-PE models: yes when the model with the largest Cliff beats the one without
    PE by more than the seed spread and top-1 rises with the Cliff (Spearman rho > 0); no when
    the model without PE beats the largest Cliff by more than the spread; otherwise
    inconclusive."""
    fixed = table[table.pe != "learned"]
    if len(fixed) < 2 or not (fixed.pe == "none").any() or fixed.cliff_drop_pe.isna().all():
        return QUESTION.cannot_answer("the build lacks the model without PE or a fixed PE strength")
    none = fixed[fixed.pe == "none"].iloc[0]
    largest = fixed.loc[fixed.cliff_drop_pe.idxmax()]
    rho = spearman(fixed.cliff_drop_pe.to_numpy(float), fixed.top1.to_numpy(float))
    found = ("top-1 and Cliff by PE scale: "
             + ", ".join(f"x{r.pe_scale:g} {r.top1:.2f}% (Cliff {r.cliff_drop_pe:+.4f}, PDR "
                         f"{r.pe_dominance_ratio:.3f})" for r in fixed.itertuples())
             + f"; Spearman rho(Cliff, top-1) = {rho:+.2f}; seed spread {points_of_spread(spread.top1)}")
    outcome = compare(largest.top1, none.top1, spread.top1)
    gain = largest.top1 - none.top1
    if outcome == "unknown":
        return QUESTION.answer(found, None, NO_SPREAD)
    if outcome == "worse":
        return QUESTION.answer(found, False, f"the model without PE beats the largest Cliff ({largest.model}) "
                               f"by {-gain:.2f} points, beyond the seed spread")
    if outcome == "within":
        return QUESTION.answer(found, None, f"the largest Cliff ({largest.model}) is within the seed spread "
                               f"of no PE ({gain:+.2f} points)")
    if rho > 0:
        return QUESTION.answer(found, True, f"the largest Cliff ({largest.model}) gains {gain:.2f} points over "
                               f"no PE, beyond the seed spread, and top-1 rises with the Cliff (rho {rho:+.2f})")
    return QUESTION.answer(found, None, f"the largest Cliff gains beyond the seed spread, but top-1 does not "
                           f"rise with the Cliff (rho {rho:+.2f})" if not pd.isna(rho) else
                           "the largest Cliff gains beyond the seed spread, but the Cliffs cannot be ranked")


def pe_models(ctx) -> list[str]:
    """The PE-strength variants and their base."""
    return group_models(ctx.study.variants, ctx.registry, "pe")


def answers(ctx) -> list[Answer]:
    if not ctx.has_variants:
        return [QUESTION.cannot_answer(NO_VARIANTS)]
    models = pe_models(ctx)
    table = pe_table(ctx.headline, models, ctx.configs()) if models else pd.DataFrame(columns=PE_COLUMNS)
    return [check_decorrelation_helps(table, ctx.spread)]


def describe_bracket(table: pd.DataFrame) -> str:
    """Where the base's learned PE falls among the fixed ones, by PE Dominance Ratio."""
    learned = table[table.pe == "learned"]
    fixed = table[table.pe == "sin-cos"]
    if learned.empty or fixed.empty:
        return ""
    ratio = float(learned.pe_dominance_ratio.iloc[0])
    low, high = fixed.pe_dominance_ratio.min(), fixed.pe_dominance_ratio.max()
    where = ("within the range of the scaled sin-cos ones" if low <= ratio <= high else
             "below every scaled sin-cos one" if ratio < low else "above every scaled sin-cos one")
    between = f"{low:.3f}" if f"{low:.3f}" == f"{high:.3f}" else f"{low:.3f} to {high:.3f}"
    norm = float(learned.pe_norm.iloc[0])
    norms = ", ".join(f"x{r.pe_scale:g} {r.pe_norm / norm:.2f}" for r in fixed.itertuples())
    return (f"The base's learned PE ends with a PE Dominance Ratio of {ratio:.3f}, {where} ({between}). "
            f"The norm of each scaled sin-cos PE in multiples of the learned one's: {norms}.")
