"""Through training: from the training-time monitor logs of the variant zoo, when each phase,
the hub's marginalization and the ISI regime appear, and whether CLS centrality or ISI early in
training predicts final top-1 better than the monitor's top-1 at the same point (open question 3:
a training signal for early stopping)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ... import layers
from ...metrics.scrambling import ISI_THRESHOLDS, isi_regime
from .answer import NO_VARIANTS, Answer, Question
from .headline import phase_presence, phases_where_defined

EVENTS = {"cliff": "Cliff", "plateau": "Plateau", "climb": "Climb", "hub_marginalized": "hub marginalized",
          "isi_final_regime": "final ISI regime"}
PREDICTORS = {"monitor_top1": "monitor top-1", "ccc_last": "CLS centrality (last block)",
              "isi_max": "ISI peak"}
# the direction each predictor should point in: a higher top-1, a marginalized hub and less
# scrambling (the paper's failure signatures are a late hub and a high ISI) go with a better model
DIRECTION = {"monitor_top1": 1, "ccc_last": -1, "isi_max": -1}
BOOTSTRAP = 2000   # resamples of the models for the correlations' intervals
INTERVAL = 0.90    # central bootstrap interval


def stack_logs(logs: Mapping[str, pd.DataFrame], total_steps: Mapping[str, int]) -> pd.DataFrame:
    """Every model's monitor log in one table, with ``model`` and ``fraction`` of training."""
    frames = [log.assign(model=name, fraction=log.step / total_steps[name]) for name, log in logs.items()]
    return pd.concat(frames, ignore_index=True)


def states(stacked: pd.DataFrame, uniform: Mapping[str, float],
           thresholds: tuple[float, float] = ISI_THRESHOLDS) -> pd.DataFrame:
    """Per model and logged step: which phases the similarity curve shows (C1's criteria), whether
    the last block's CLS centrality is below the uniform share (hub marginalized), the monitor's
    top-1, the ISI peak over the blocks and its regime."""
    similarity = stacked[stacked.metric == "centered_similarity"].rename(columns={"value": "centered_similarity"})
    phases = phases_where_defined(similarity[["model", "step", "layer", "centered_similarity"]],
                                  by=("model", "step"))
    # phase_presence keys its rows by model; one row per (model, step) here, so each row gets a
    # key of its own (its position), which keeps the verdicts in the order of ``phases``
    verdicts = phase_presence(phases.assign(model=range(len(phases))))
    frame = phases[["model", "step", "blocks"]].copy()
    frame[["cliff", "plateau", "climb"]] = verdicts[["cliff", "plateau", "climb"]].to_numpy()
    keys = ["model", "step"]
    fraction = stacked.groupby(keys).fraction.first().rename("fraction")
    top1 = stacked[stacked.metric == "top1"].set_index(keys).value.rename("monitor_top1")
    centrality = stacked[stacked.metric == "cls_centrality"]
    last = centrality[centrality.block == centrality.groupby("model").block.transform("max")]
    ccc = last.set_index(keys).value.rename("ccc_last")
    isi = stacked[(stacked.metric == "isi") & layers.blocks_only(stacked.layer)]
    isi_max = isi.groupby(keys).value.max().rename("isi_max")
    frame = frame.join(fraction, on=keys).join(top1, on=keys).join(ccc, on=keys).join(isi_max, on=keys)
    frame["ccc_last_x_uniform"] = frame.ccc_last / frame.model.map(uniform)
    # below the uniform share; undefined (NA) without [CLS]
    frame["hub_marginalized"] = (frame.ccc_last_x_uniform < 1).astype(object).where(frame.ccc_last_x_uniform.notna(),
                                                                                       pd.NA)
    frame["isi_regime"] = [isi_regime(v, *thresholds) if pd.notna(v) else None for v in frame.isi_max]
    return frame.sort_values(keys, ignore_index=True)


def onsets(per_step: pd.DataFrame) -> pd.DataFrame:
    """Per model, the fraction of training from which each event holds at every later log
    (``<event>_from``; NaN: it does not hold at the end). ``isi_final_regime_from``: from when the
    ISI peak stays in the regime it ends in (``final_isi_regime``)."""
    rows = []
    for model, frame in per_step.groupby("model", sort=False):
        frame = frame.sort_values("step")
        row = {"model": model}
        final_regime = frame.isi_regime.iloc[-1]
        flags = {event: frame[event] for event in EVENTS if event != "isi_final_regime"}
        flags["isi_final_regime"] = frame.isi_regime == final_regime
        for event, held in flags.items():
            # undefined at the end (no [CLS], too few blocks to segment): no onset to give
            row[f"{event}_from"] = (float("nan") if pd.isna(held.iloc[-1])
                                    else _settled_from(held.fillna(False).astype(bool).to_numpy(),
                                                       frame.fraction.to_numpy()))
        row["final_isi_regime"] = final_regime
        rows.append(row)
    return pd.DataFrame(rows)


def _settled_from(held: np.ndarray, fraction: np.ndarray) -> float:
    if not held[-1]:
        return float("nan")
    broken = np.flatnonzero(~held)
    return float(fraction[0] if not len(broken) else fraction[broken[-1] + 1])


def at_fraction(per_step: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per model, the log closest to ``target`` of training (``fraction``: when it was taken)."""
    chosen = per_step.loc[(per_step.fraction - target).abs().groupby(per_step.model).idxmin()]
    return chosen.reset_index(drop=True)


def predicting_models(per_step: pd.DataFrame, variants) -> pd.DataFrame:
    """The logs the prediction uses: not those of the hub variants, whose CLS centrality is set by
    their intervention rather than learned."""
    return per_step[~per_step.model.map(lambda m: m in variants and variants[m].group == "hub")]


def spearman(x, y) -> float:
    """Spearman's rho (Pearson's r of the ranks, ties averaged); NaN when either side is constant."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


def _interval(draws: np.ndarray) -> tuple[float, float]:
    """The central INTERVAL of the bootstrap draws that are defined (NaN where none is)."""
    draws = draws[~np.isnan(draws)]
    if not len(draws):
        return float("nan"), float("nan")
    tail = (1 - INTERVAL) / 2 * 100
    return float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))


def rank_correlations(early: pd.DataFrame, final_top1: Mapping[str, float], seed: int = 0) -> pd.DataFrame:
    """Spearman rho of each predictor at the early point with final test top-1 across the models
    where every predictor is defined, with a bootstrap interval (models resampled), and the
    interval of the gain over monitor top-1 on the same resamples: rho in the predictor's expected
    direction (:data:`DIRECTION`) minus monitor top-1's rho in its own."""
    frame = early.dropna(subset=list(PREDICTORS)).reset_index(drop=True)
    y = frame.model.map(final_top1).to_numpy(float)
    values = {p: frame[p].to_numpy(float) for p in PREDICTORS}
    rng = np.random.default_rng(seed)
    draws = {p: [] for p in PREDICTORS}
    for _ in range(BOOTSTRAP if len(frame) >= 3 else 0):
        pick = rng.integers(0, len(frame), len(frame))
        for p in PREDICTORS:
            draws[p].append(spearman(values[p][pick], y[pick]))
    base = DIRECTION["monitor_top1"] * np.array(draws["monitor_top1"])
    rows = []
    for p, label in PREDICTORS.items():
        rhos = np.array(draws[p])
        low, high = _interval(rhos)
        gain_low, gain_high = ((float("nan"),) * 2 if p == "monitor_top1"
                               else _interval(DIRECTION[p] * rhos - base))
        rows.append({"predictor": label, "models": len(frame), "rho": spearman(values[p], y),
                     "rho_low": low, "rho_high": high, "gain_low": gain_low, "gain_high": gain_high})
    return pd.DataFrame(rows)


QUESTION = Question("Does CLS centrality or ISI early in training predict final top-1 better than early top-1 does?",
                    "rank correlation across the variant zoo, from the monitor logs", "F11, F12, T17, T18")


def check_early_signal(correlations: pd.DataFrame, fraction: float) -> Answer:
    """Yes when CLS centrality or the ISI peak, each in its expected direction, ranks the final
    top-1 better than monitor top-1 over the whole bootstrap interval of the gain; no when
    monitor top-1 does better than both over it; otherwise inconclusive (within the bootstrap
    uncertainty)."""
    if correlations.empty or correlations.models.iloc[0] < 4:
        return QUESTION.cannot_answer("fewer than four models with [CLS], a monitor log and no hub intervention")
    rows = correlations.set_index("predictor")
    found = (f"at {fraction:.0%} of training, over {int(rows.models.iloc[0])} models: " + "; ".join(
        f"{p} rho {r.rho:+.2f} [{r.rho_low:+.2f}, {r.rho_high:+.2f}]" for p, r in rows.iterrows()))
    signals = [PREDICTORS["ccc_last"], PREDICTORS["isi_max"]]
    beats = [p for p in signals if rows.loc[p, "gain_low"] > 0]
    if beats:
        return QUESTION.answer(found, True, f"{' and '.join(beats)} rank(s) the final top-1 better than "
                               f"monitor top-1 over the whole {INTERVAL:.0%} bootstrap interval")
    if all(rows.loc[p, "gain_high"] < 0 for p in signals):
        return QUESTION.answer(found, False, f"monitor top-1 ranks the final top-1 better than both, over the "
                               f"whole {INTERVAL:.0%} bootstrap interval")
    return QUESTION.answer(found, None, f"the gains over monitor top-1 are within the {INTERVAL:.0%} "
                           "bootstrap interval")


EARLY = 0.10  # the early point of the prediction: a tenth of training, logged by every zoo run


def per_step_table(ctx) -> pd.DataFrame:
    """:func:`states` of every variant that trained with a monitor."""
    from ...zoo import monitor_log, total_steps
    logs = {m: log for m in ctx.study.variants if (log := monitor_log(m)) is not None}
    if not logs:
        return pd.DataFrame()
    configs = ctx.configs()
    uniform = {m: 1 / ((configs[m].img_size // configs[m].patch_size) ** 2 + configs[m].class_token)
               for m in logs}
    return states(stack_logs(logs, {m: total_steps(m) for m in logs}), uniform, ctx.study.isi_thresholds)


def correlations_at(ctx, per_step: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """:func:`rank_correlations` at the logs closest to ``fraction``, with ``fraction`` the mean
    fraction of training those logs were taken at."""
    early = at_fraction(predicting_models(per_step, ctx.registry), fraction)
    final = {m: ctx.study.final_top1(m) for m in early.model}
    return rank_correlations(early, final, seed=ctx.study.seed).assign(fraction=float(early.fraction.mean()))


def answers(ctx) -> list[Answer]:
    if not ctx.has_variants:
        return [QUESTION.cannot_answer(NO_VARIANTS)]
    per_step = per_step_table(ctx)
    if per_step.empty:
        return [QUESTION.cannot_answer("no variant trained with a monitor")]
    early = correlations_at(ctx, per_step, EARLY)
    return [check_early_signal(early, float(early.fraction.iloc[0]))]


CURVE_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75)


def correlation_curve(ctx, per_step: pd.DataFrame, fractions=CURVE_FRACTIONS) -> pd.DataFrame:
    """:func:`correlations_at` several points of training, stacked; a point whose closest logs
    are those of an earlier point is left out (it would repeat it)."""
    curve = pd.concat([correlations_at(ctx, per_step, f) for f in fractions], ignore_index=True)
    return curve.drop_duplicates(subset=["predictor", "fraction"], ignore_index=True)
