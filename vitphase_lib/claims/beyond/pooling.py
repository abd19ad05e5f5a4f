"""[CLS] or average pooling: each pooled model beside its [CLS] twin (the paper's suggested
check: replace [CLS] by average pooling and train from scratch)."""
from __future__ import annotations

import pandas as pd

from .answer import NO_SPREAD, NO_VARIANTS, Answer, Question, sides
from .headline import compare, in_words, rows_of

POOLING_COLUMNS = ["model", "readout", "top1", "climb", "climb_rise", "plateau_length",
                   "nc1", "nc2", "nc3", "nc4", "isi_max", "aci_late", "aci_last", "ccc_late_x_uniform"]


def pooling_pairs(variant_names, variants) -> list[tuple[str, str]]:
    """([CLS] model, its average-pooled twin) for every pooling variant."""
    return [(variants[m].base, m) for m in variant_names if variants[m].group == "pooling"]


def pooling_table(headline: pd.DataFrame, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    models = [m for pair in pairs for m in pair]
    table = rows_of(headline, models)
    table["readout"] = table.feature.map({"cls": "[CLS]", "mean": "mean patch token"})
    return table[POOLING_COLUMNS]


EXPERIMENT = "the model retrained without [CLS], its head reading the mean patch token"
CLIMB = Question("With average pooling instead of [CLS], is there a Climb?", EXPERIMENT, "F8, T14")
TOP1 = Question("Does average pooling cost top-1?", EXPERIMENT, "F8, T14")


def _complete(table: pd.DataFrame, pairs) -> bool:
    return bool(pairs) and {m for pair in pairs for m in pair} <= set(table.model)


def check_climb_with_pooling(table: pd.DataFrame, pairs) -> Answer:
    """Yes when every pooled model has a Climb (by C1's criteria); no when none has; mixed
    pairs are inconclusive. ``found`` says whether the [CLS] twins have one."""
    if not _complete(table, pairs):
        return CLIMB.cannot_answer("the build has no pooling variants")
    climb = table.set_index("model").climb  # NA: too few blocks to segment
    rise = table.set_index("model").climb_rise
    said = {m: "n/a" if pd.isna(climb[m]) else "yes" if climb[m] else "no" for m in climb.index}
    found = "; ".join(f"{cls}: Climb {said[cls]} (rise {rise[cls]:+.4f}), {avg}: Climb {said[avg]} "
                      f"(rise {rise[avg]:+.4f})" for cls, avg in pairs)
    if any(pd.isna(climb[avg]) for _, avg in pairs):
        return CLIMB.answer(found, None, "a pooled model has too few blocks to segment its curve")
    pooled = [bool(climb[avg]) for _, avg in pairs]
    with_cls = [said[cls] == "yes" for cls, _ in pairs]
    if all(pooled):
        return CLIMB.answer(found, True, f"every average-pooled model has a Climb; {sum(with_cls)} of the "
                            f"{len(pairs)} [CLS] twins {'has' if sum(with_cls) == 1 else 'have'} one")
    if not any(pooled):
        return CLIMB.answer(found, False, "no average-pooled model has a Climb"
                            + (" (nor does any [CLS] twin)" if not any(with_cls) else ""))
    return CLIMB.answer(found, None, "one pooled model has a Climb and another has none")


def check_pooling_top1(table: pd.DataFrame, pairs, spread: pd.Series) -> Answer:
    """Yes when a pooled model's top-1 is below its [CLS] twin's by more than the seed spread (of
    the base's seeds; the wider models have none of their own); no when none is and one is above
    it by more than the spread; otherwise inconclusive."""
    if not _complete(table, pairs):
        return TOP1.cannot_answer("the build has no pooling variants")
    top1 = table.set_index("model").top1
    found = "; ".join(f"{avg} vs {cls}: {in_words(top1[avg], top1[cls], spread.top1)}" for cls, avg in pairs)
    judged = sides({avg: compare(top1[avg], top1[cls], spread.top1) for cls, avg in pairs})
    if judged is None:
        return TOP1.answer(found, None, NO_SPREAD)
    better, worse, _ = judged
    if worse:
        return TOP1.answer(found, True, f"{', '.join(worse)} is below its [CLS] twin beyond the seed spread")
    if better:
        return TOP1.answer(found, False, f"no pooled model is below its [CLS] twin beyond the seed spread, "
                           f"and {', '.join(better)} is above it")
    return TOP1.answer(found, None, "every pooled model is within the seed spread of its [CLS] twin")


def answers(ctx) -> list[Answer]:
    if not ctx.has_variants:
        return [CLIMB.cannot_answer(NO_VARIANTS), TOP1.cannot_answer(NO_VARIANTS)]
    pairs = pooling_pairs(ctx.study.variants, ctx.registry)
    table = pooling_table(ctx.headline, pairs) if pairs else pd.DataFrame()
    return [check_climb_with_pooling(table, pairs), check_pooling_top1(table, pairs, ctx.spread)]
