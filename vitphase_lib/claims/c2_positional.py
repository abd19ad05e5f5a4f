"""C2, the positional encoding drives the Cliff: the Cliff grows with PE strength, follows the
PE Dominance Ratio across models, and removing the PE costs top-1; with the PE-scaling table and
what a PE stronger than trained does (Methods, 'PE Dominance Ratio and PE scaling')."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .verdict import ClaimCheck, all_of, claim_from_parts, count_models, part

# the two sizes of the Cliff (Methods, 'Cliff, Plateau, Climb'): to the PE layer (the PE alone)
# and to block 1
CLIFF_MEASURES = {"cliff_drop_pe": "to the PE layer", "cliff_drop_block1": "to block 1"}


def _grows_with_alpha(cliff_by_alpha: pd.DataFrame) -> dict[str, bool | None]:
    """Per model: whether the Cliff to block 1 is larger at the largest alpha than at the
    smallest; None with fewer than two alphas."""
    grows = {}
    for model, frame in cliff_by_alpha.groupby("model", sort=False):
        cliff = frame.sort_values("alpha").cliff_drop_block1
        grows[model] = bool(cliff.iloc[-1] > cliff.iloc[0]) if len(cliff) >= 2 else None
    return grows


def _removing_pe_costs(top1_by_alpha: pd.DataFrame) -> dict[str, bool | None]:
    """Per model: whether top-1 is lower at alpha = 0 than at 1; None without a run at both."""
    costs = {}
    for model, frame in top1_by_alpha.groupby("model", sort=False):
        at = frame.set_index("alpha").top1
        costs[model] = bool(at[0.0] < at[1.0]) if {0.0, 1.0} <= set(at.index) else None
    return costs


def check_pe_drives_cliff(pe_summary: pd.DataFrame, top1_by_alpha: pd.DataFrame,
                          cliff_by_alpha: pd.DataFrame) -> ClaimCheck:
    """C2: the Cliff grows with PE strength, follows the PE Dominance Ratio across models, and
    removing PE (alpha = 0) costs top-1 accuracy.

    The ordering across models is tested with both sizes of the Cliff (``CLIFF_MEASURES``): it
    holds only if the Spearman correlation with the ratio is positive for each, so the verdict
    does not depend on which of the two one picks. An undefined correlation (one side all tied)
    is not positive: a Cliff that does not change while the ratio does, does not follow it.

    ``pe_summary``: model, pe_dominance_ratio, cliff_drop_pe, cliff_drop_block1.
    ``top1_by_alpha``: model, alpha, top1. ``cliff_by_alpha``: model, alpha, cliff_drop_block1.
    """
    grows = _grows_with_alpha(cliff_by_alpha)
    costs = _removing_pe_costs(top1_by_alpha)
    measured = (f"Cliff grows with alpha {count_models(grows)}; removing PE lowers top-1 "
                f"{count_models(costs)}; ")
    follows = None
    if len(pe_summary) >= 3:
        rhos = {label: float(pe_summary[["pe_dominance_ratio", column]].corr(method="spearman").iloc[0, 1])
                for column, label in CLIFF_MEASURES.items()}
        follows = all(rho > 0 for rho in rhos.values())  # NaN (all tied) is not > 0
        shown = ", ".join(("undefined (all tied)" if np.isnan(rho) else f"{rho:+.2f}") + f" {label}"
                          for label, rho in rhos.items())
        measured += (f"across the {len(pe_summary)} models the Cliff "
                     + ("follows" if follows else "does not follow") + " the PE Dominance Ratio "
                     f"(Spearman rho {shown}"
                     + ("; with three models rho takes few values (+-0.5 or +-1 without ties), so "
                        "swapping two models can change its sign" if len(pe_summary) == 3 else "")
                     + ")")
    else:
        measured += "the Cliff cannot be ranked against the PE Dominance Ratio with fewer than 3 models"
    parts = (part("the Cliff grows with alpha", all_of(grows.values()), "fewer than two alphas"),
             part("removing PE lowers top-1", all_of(costs.values()),
                  "no run at both alpha = 0 and 1"),
             part("the Cliff (to the PE layer and to block 1) follows the PE Dominance Ratio "
                  "across models", follows, "fewer than 3 models"))
    return claim_from_parts("C2 PE drives the Cliff", "Cliff size follows the PE Dominance Ratio; "
                            "PE scaling changes top-1", measured, parts)


def pe_scaling_table(top1_by_alpha: pd.DataFrame, cliff_by_alpha: pd.DataFrame) -> pd.DataFrame:
    """Per model and PE scale alpha: the Cliff (to the PE layer and to block 1) and top-1."""
    cliff = cliff_by_alpha[["model", "alpha", *CLIFF_MEASURES]]
    return cliff.merge(top1_by_alpha[["model", "alpha", "top1"]], on=["model", "alpha"])


def stronger_pe_effect(scaling: pd.DataFrame) -> pd.DataFrame:
    """Per model (rows of :func:`pe_scaling_table`): whether top-1 is highest at the trained
    strength alpha = 1 (ties count; NaN without alpha = 1), and what the largest alpha above 1
    (a PE stronger than trained) does to the Cliff to block 1 and to top-1, against alpha = 1
    (NaN without alpha = 1 or without an alpha above 1)."""
    rows = []
    for model, frame in scaling.groupby("model", sort=False):
        frame = frame.set_index("alpha").sort_index()
        trained = frame.loc[1.0] if 1.0 in frame.index else None
        above = frame[frame.index > 1.0]
        strongest = above.iloc[-1] if len(above) and trained is not None else None
        rows.append({"model": model,
                     "trained_is_best": (bool(trained.top1 >= frame.top1.max())
                                         if trained is not None else np.nan),
                     "strongest_alpha": float(above.index[-1]) if strongest is not None else np.nan,
                     "cliff_change": (float(strongest.cliff_drop_block1 - trained.cliff_drop_block1)
                                      if strongest is not None else np.nan),
                     "top1_change": (float(strongest.top1 - trained.top1)
                                     if strongest is not None else np.nan)})
    return pd.DataFrame(rows)


def describe_stronger_pe(effect: pd.DataFrame) -> str:
    """Markdown sentences on :func:`stronger_pe_effect`: where top-1 peaks, and what a PE
    stronger than trained does, with a conclusion drawn only from what was measured."""
    with_trained = effect.dropna(subset=["trained_is_best"])
    if with_trained.empty:
        return "No model was run at $\\alpha = 1$, so the trained strength is not compared here."
    text = (f"Top-1 is highest at the trained strength ($\\alpha = 1$) in "
            f"{int(with_trained.trained_is_best.astype(bool).sum())} of {len(with_trained)} models.")
    tested = effect.dropna(subset=["strongest_alpha"])
    if tested.empty:
        return text + " No $\\alpha$ above 1 was run, so a PE stronger than trained is not tested here."
    n, larger, lower = len(tested), int((tested.cliff_change > 0).sum()), int((tested.top1_change < 0).sum())
    text += (f" At the largest $\\alpha$ above 1 the Cliff to block 1 is larger than at "
             f"$\\alpha = 1$ in {larger} of {n} models and top-1 is lower in {lower} of {n} ("
             + "; ".join(f"{r.model}: alpha {r.strongest_alpha:g}, Cliff {r.cliff_change:+.4f}, "
                         f"top-1 {r.top1_change:+.2f} points" for r in tested.itertuples()) + "). ")
    if larger == n and lower == n:
        return text + ("So in this build decorrelating more than the model was trained to costs "
                       "accuracy in every model: decorrelation helps up to the trained strength, "
                       "not beyond.")
    costs = ("costs accuracy in every model" if lower == n else
             "does not cost accuracy" if lower == 0 else f"costs accuracy in {lower} of {n} models")
    return text + f"So in this build a PE stronger than trained {costs}."
