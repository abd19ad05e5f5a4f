"""The [CLS] hub, intervened: patches barred from [CLS] in the last third of the blocks, or made
to give it at least five times the uniform share there, beside the base (open question 4:
correlation or cause)."""
from __future__ import annotations

import pandas as pd

from .answer import NO_VARIANTS, Answer, not_answerable
from .headline import BETTER_HIGHER, LABELS, compare, group_models, in_words, present

HUB_COLUMNS = ["model", "ccc_late_x_uniform", "ccc_last_x_uniform", "aci_late", "nc1", "nc2",
               "isi_max", "top1"]
REMOVAL_MEASURES = ("aci_late", "nc2", "top1")  # consensus, geometry, accuracy
FORCED_X_UNIFORM = 5.0  # what the forced hub guarantees, averaged over the intervened blocks


def hub_table(headline: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    return headline.set_index("model").loc[present(headline, models)].reset_index()[HUB_COLUMNS]


def _by_change(models: list[str], variants, change: str) -> str | None:
    return next((m for m in models if m in variants and variants[m].config.hub == change), None)


QUESTION_REMOVED = "Does removing the late [CLS] hub improve consensus, geometry or top-1?"
EXPERIMENT_REMOVED = "patches cannot attend to [CLS] in the last third of the blocks, retrained"
QUESTION_FORCED = "Does a forced late hub degrade NC2 (the paper's failure signature)?"
EXPERIMENT_FORCED = "patches give [CLS] at least 5x the uniform share in the last third, retrained"


def check_hub_removed(table: pd.DataFrame, models: list[str], variants, spread: pd.Series,
                      evidence: str) -> Answer:
    """Compares ACI (last third), NC2 and top-1 with the base: yes when one is better beyond the
    seed spread and none worse; no when none is better and one is worse; otherwise inconclusive
    (all within the spread, or better in one and worse in another)."""
    removed = _by_change(models, variants, "removed")
    if removed is None or not {removed, variants[removed].base} <= set(table.model):
        return not_answerable(QUESTION_REMOVED, EXPERIMENT_REMOVED, evidence, "the build has no hub variants")
    rows = table.set_index("model")
    base, row = rows.loc[variants[removed].base], rows.loc[removed]
    outcome = {m: compare(row[m], base[m], spread[m], BETTER_HIGHER[m]) for m in REMOVAL_MEASURES}
    found = f"{removed} vs {variants[removed].base}: " + "; ".join(
        f"{LABELS[m]} {in_words(row[m], base[m], spread[m], 2 if m == 'top1' else 4)}" for m in REMOVAL_MEASURES)
    better = [LABELS[m] for m, v in outcome.items() if v == "better"]
    worse = [LABELS[m] for m, v in outcome.items() if v == "worse"]
    if all(v == "unknown" for v in outcome.values()):
        return Answer(QUESTION_REMOVED, EXPERIMENT_REMOVED, found, evidence, None, "no seed spread to judge against")
    if better and not worse:
        return Answer(QUESTION_REMOVED, EXPERIMENT_REMOVED, found, evidence, True,
                      f"better beyond the seed spread in {', '.join(better)}, worse in none")
    if worse and not better:
        return Answer(QUESTION_REMOVED, EXPERIMENT_REMOVED, found, evidence, False,
                      f"better in none beyond the seed spread, worse in {', '.join(worse)}")
    if better and worse:
        return Answer(QUESTION_REMOVED, EXPERIMENT_REMOVED, found, evidence, None,
                      f"better in {', '.join(better)} but worse in {', '.join(worse)}")
    return Answer(QUESTION_REMOVED, EXPERIMENT_REMOVED, found, evidence, None,
                  "every difference is within the seed spread")


def check_hub_forced(table: pd.DataFrame, models: list[str], variants, spread: pd.Series,
                     evidence: str) -> Answer:
    """Yes when the forced-hub model's NC2 is worse than the base's beyond the seed spread, no
    when it is better beyond it, inconclusive within it, or when the intervention did not hold
    (CLS centrality in the last third below 5x the uniform share)."""
    forced = _by_change(models, variants, "forced")
    if forced is None or not {forced, variants[forced].base} <= set(table.model):
        return not_answerable(QUESTION_FORCED, EXPERIMENT_FORCED, evidence, "the build has no hub variants")
    rows = table.set_index("model")
    base, row = rows.loc[variants[forced].base], rows.loc[forced]
    found = (f"{forced}: CLS centrality in the last third {row.ccc_late_x_uniform:.1f}x uniform "
             f"(base {base.ccc_late_x_uniform:.2f}x); NC2 {in_words(row.nc2, base.nc2, spread.nc2, 4)}; "
             f"top-1 {in_words(row.top1, base.top1, spread.top1)}")
    if not row.ccc_late_x_uniform >= FORCED_X_UNIFORM:
        return Answer(QUESTION_FORCED, EXPERIMENT_FORCED, found, evidence, None,
                      f"the intervention did not hold: CLS centrality is below {FORCED_X_UNIFORM}x uniform")
    outcome = compare(row.nc2, base.nc2, spread.nc2, BETTER_HIGHER["nc2"])
    if outcome == "unknown":
        return Answer(QUESTION_FORCED, EXPERIMENT_FORCED, found, evidence, None, "no seed spread to judge against")
    if outcome == "worse":
        return Answer(QUESTION_FORCED, EXPERIMENT_FORCED, found, evidence, True,
                      "NC2 is worse than the base's beyond the seed spread")
    if outcome == "better":
        return Answer(QUESTION_FORCED, EXPERIMENT_FORCED, found, evidence, False,
                      "NC2 is better than the base's beyond the seed spread")
    return Answer(QUESTION_FORCED, EXPERIMENT_FORCED, found, evidence, None,
                  "NC2 differs from the base's by less than the seed spread")


EVIDENCE = "F10, T16"


def answers(ctx) -> list[Answer]:
    if not ctx.has_variants:
        return [not_answerable(QUESTION_REMOVED, EXPERIMENT_REMOVED, EVIDENCE, NO_VARIANTS),
                not_answerable(QUESTION_FORCED, EXPERIMENT_FORCED, EVIDENCE, NO_VARIANTS)]
    models = group_models(ctx.study.variants, ctx.registry, "hub")
    table = hub_table(ctx.headline, models) if models else pd.DataFrame()
    return [check_hub_removed(table, models, ctx.registry, ctx.spread, EVIDENCE),
            check_hub_forced(table, models, ctx.registry, ctx.spread, EVIDENCE)]
