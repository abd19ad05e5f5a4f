"""The [CLS] hub, intervened: patches barred from [CLS] in the last third of the blocks, or made
to give it at least five times the uniform share there, beside the base (open question 4:
correlation or cause)."""
from __future__ import annotations

import pandas as pd

from .answer import NO_SPREAD, NO_VARIANTS, Answer, Question, sides
from .headline import BETTER_HIGHER, LABELS, compare, group_models, in_words, rows_of

HUB_COLUMNS = ["model", "ccc_late_x_uniform", "ccc_last_x_uniform", "aci_late", "nc1", "nc2",
               "isi_max", "top1"]
REMOVAL_MEASURES = ("aci_late", "nc2", "top1")  # consensus, geometry, accuracy
FORCED_X_UNIFORM = 5.0  # what the forced hub guarantees, averaged over the intervened blocks


def hub_table(headline: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    return rows_of(headline, models)[HUB_COLUMNS]


REMOVED = Question("Does removing the late [CLS] hub improve consensus, geometry or top-1?",
                   "patches cannot attend to [CLS] in the last third of the blocks, retrained", "F10, T16")
FORCED = Question("Does a forced late hub degrade NC2 (the paper's failure signature)?",
                  "patches give [CLS] at least 5x the uniform share in the last third, retrained", "F10, T16")


def _pair(table: pd.DataFrame, models: list[str], variants, change: str):
    """(variant, its base) rows of the hub variant with ``change``, or None if either is missing."""
    model = next((m for m in models if m in variants and variants[m].config.hub == change), None)
    if model is None or not {model, variants[model].base} <= set(table.model):
        return None
    rows = table.set_index("model")
    return rows.loc[model], rows.loc[variants[model].base]


def check_hub_removed(table: pd.DataFrame, models: list[str], variants, spread: pd.Series) -> Answer:
    """Compares ACI (last third), NC2 and top-1 with the base: yes when one is better beyond the
    seed spread and none worse; no when none is better and one is worse; otherwise inconclusive
    (all within the spread, or better in one and worse in another)."""
    pair = _pair(table, models, variants, "removed")
    if pair is None:
        return REMOVED.cannot_answer("the build has no hub variants")
    row, base = pair
    found = f"{row.name} vs {base.name}: " + "; ".join(
        f"{LABELS[m]} {in_words(row[m], base[m], spread[m], 2 if m == 'top1' else 4)}" for m in REMOVAL_MEASURES)
    judged = sides({LABELS[m]: compare(row[m], base[m], spread[m], BETTER_HIGHER[m]) for m in REMOVAL_MEASURES})
    if judged is None:
        return REMOVED.answer(found, None, NO_SPREAD)
    better, worse, _ = judged
    if better and not worse:
        return REMOVED.answer(found, True, f"better beyond the seed spread in {', '.join(better)}, worse in none")
    if worse and not better:
        return REMOVED.answer(found, False, f"better in none beyond the seed spread, worse in {', '.join(worse)}")
    if better and worse:
        return REMOVED.answer(found, None, f"better in {', '.join(better)} but worse in {', '.join(worse)}")
    return REMOVED.answer(found, None, judged.within())


def check_hub_forced(table: pd.DataFrame, models: list[str], variants, spread: pd.Series) -> Answer:
    """Yes when the forced-hub model's NC2 is worse than the base's beyond the seed spread, no
    when it is better beyond it, inconclusive within it, or when the intervention did not hold
    (CLS centrality in the last third below 5x the uniform share)."""
    pair = _pair(table, models, variants, "forced")
    if pair is None:
        return FORCED.cannot_answer("the build has no hub variants")
    row, base = pair
    found = (f"{row.name}: CLS centrality in the last third {row.ccc_late_x_uniform:.1f}x uniform "
             f"(base {base.ccc_late_x_uniform:.2f}x); NC2 {in_words(row.nc2, base.nc2, spread.nc2, 4)}; "
             f"top-1 {in_words(row.top1, base.top1, spread.top1)}")
    if not row.ccc_late_x_uniform >= FORCED_X_UNIFORM:
        return FORCED.answer(found, None, f"the intervention did not hold: CLS centrality is below "
                             f"{FORCED_X_UNIFORM}x uniform")
    outcome = compare(row.nc2, base.nc2, spread.nc2, BETTER_HIGHER["nc2"])
    if outcome == "unknown":
        return FORCED.answer(found, None, NO_SPREAD)
    if outcome == "within":
        return FORCED.answer(found, None, "NC2 differs from the base's by less than the seed spread")
    return FORCED.answer(found, outcome == "worse", f"NC2 is {outcome} than the base's beyond the seed spread")


def answers(ctx) -> list[Answer]:
    if not ctx.has_variants:
        return [REMOVED.cannot_answer(NO_VARIANTS), FORCED.cannot_answer(NO_VARIANTS)]
    models = group_models(ctx.study.variants, ctx.registry, "hub")
    table = hub_table(ctx.headline, models) if models else pd.DataFrame()
    return [check_hub_removed(table, models, ctx.registry, ctx.spread),
            check_hub_forced(table, models, ctx.registry, ctx.spread)]
