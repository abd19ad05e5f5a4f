# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# (chap-training)=
# # Through training
#
# The paper analyses finished models; whether its diagnostics could steer training is its third
# open question (a regularizer, or a signal for early stopping). Every variant trained with the
# library's monitor on: token similarity, CLS centrality, ACI, ISI and top-1 of a fixed set of
# probe images (test images, never trained on), logged at 1, 2, 5 and 10% of training and after
# every epoch. From these
# logs this chapter finds when the Cliff, the Plateau, the Climb, the hub's marginalization and the
# final ISI regime appear ({numref}`fig-f11`, {numref}`tab-t17`), and asks whether CLS centrality
# or ISI early in training ranks the models' final top-1 better than the monitor's top-1 at the
# same point ({numref}`fig-f12`, {numref}`tab-t18`).

# %% tags=["parameters"]
profile = "default"  # base parameter set: smoke, default or paper (profiles/<name>.yaml)
overrides = {}  # any parameter of vitphase_lib.study.Study

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from vitphase_lib import plotting
from vitphase_lib.claims import beyond
from vitphase_lib.claims.beyond import training
from vitphase_lib.study import Study

study = Study.from_notebook(profile, overrides)
ctx = beyond.Context(study)
per_step = training.per_step_table(ctx) if ctx.has_variants else None
onsets = training.onsets(per_step) if per_step is not None and len(per_step) else None
display(Markdown(ctx.describe() if onsets is None else
                 f"Monitor logs of {len(onsets)} variants, {len(per_step)} logged points in all."))

# %% [markdown]
# ## When the phases appear
#
# A phase *appears* at the first logged point from which the similarity curve shows it (by C1's
# criteria) at every later point; the hub is *marginalized* once the last block's CLS centrality
# stays below the uniform share; the *final ISI regime* is the regime the ISI peak ends in, and it
# appears when the peak enters it for good. A missing dot: the event does not hold at the end.

# %% mystnb={"figure": {"caption": "For every variant, the fraction of training from which each event holds for good (no dot: it does not hold at the end of training).", "name": "fig-f11"}}
if onsets is not None:
    events = list(training.EVENTS)
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(onsets) + 1.5))
    for i, event in enumerate(events):
        rows = [r + (i - 2) * 0.13 for r in range(len(onsets))]  # events side by side, not on top
        ax.scatter(onsets[f"{event}_from"], rows, label=training.EVENTS[event], s=24,
                   marker="os^vD"[i], zorder=3)
    ax.set_yticks(range(len(onsets)), onsets.model, fontsize=8)
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlim(-0.001, 1.05)
    ax.set_xlabel("fraction of training")
    ax.legend(fontsize=7, ncol=len(events), loc="upper center", bbox_to_anchor=(0.5, 1.12))
    fig.tight_layout()
    plt.show()
else:
    plotting.not_drawn(ctx.missing("variants with a monitor log"))

# %%
display(plotting.myst_table(onsets, "The fraction of training from which each event holds for "
                            "good, per variant (empty: it does not hold at the end, or is undefined: "
                            "no [CLS], or too few blocks to segment), and the final ISI regime.",
                            "tab-t17", missing=ctx.missing("variants with a monitor log")))

# %%
# NBVAL_CHECK_OUTPUT
print(onsets.round(3).to_string(index=False) if onsets is not None else "no monitor logs")

# %% [markdown]
# ## An early signal of final top-1?
#
# At each point of training, the Spearman rank correlation across the variants between final test
# top-1 and three things the monitor knew then: its top-1 on the probe images, the last block's
# CLS centrality and the ISI peak, with a 90% bootstrap interval over the models. Left out: the
# models without [CLS] (no centrality) and the hub variants (their centrality is imposed, not
# learned). A signal useful for early stopping should rank the final models, in its expected
# direction (higher top-1, lower centrality, lower ISI), better than the monitor's top-1 does.

# %% mystnb={"figure": {"caption": "Spearman rank correlation with final test top-1 across the variants, of the monitor's top-1, CLS centrality (last block) and ISI peak at each point of training (the mean fraction at which the models' logs were taken); shaded: 90% bootstrap intervals over the models.", "name": "fig-f12"}}
if onsets is not None:
    curve = training.correlation_curve(ctx, per_step)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for predictor, rows in curve.groupby("predictor", sort=False):
        ax.plot(rows.fraction, rows.rho, marker="o", ms=3, label=predictor)
        ax.fill_between(rows.fraction, rows.rho_low, rows.rho_high, alpha=0.15)
    ax.axhline(0, c="grey", lw=0.8)
    ax.axvline(training.EARLY, c="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlim(0.005, 1)
    if curve.rho.isna().all():
        ax.text(0.5, 0.5, "too few models for a rank correlation", ha="center", transform=ax.transAxes)
    ax.set_xlabel("fraction of training")
    ax.set_ylabel("Spearman rho with final top-1")
    ax.legend(fontsize=7)
    fig.tight_layout()
    plt.show()
else:
    plotting.not_drawn(ctx.missing("variants with a monitor log"))

# %%
correlations = training.correlations_at(ctx, per_step, training.EARLY) if onsets is not None else None
early = training.EARLY if correlations is None else correlations.fraction.iloc[0]
display(plotting.myst_table(correlations, f"At {early:.0%} of training: "
                            "Spearman rho of each predictor with final test top-1, its 90% bootstrap "
                            "interval, and the interval of its gain over the monitor's top-1 (rho in "
                            "the expected direction, minus the monitor top-1's).", "tab-t18",
                            missing=ctx.missing("variants with a monitor log")))

# %%
# NBVAL_CHECK_OUTPUT
print(correlations.round(3).to_string(index=False) if correlations is not None else "no monitor logs")

# %% [markdown]
# ## Answer

# %%
# NBVAL_CHECK_OUTPUT
answers = training.answers(ctx)
for answer in answers:
    print(f"{answer.question} {answer.verdict}: {answer.reason}")

# %%
display(Markdown("\n\n".join(f"{a.headline(study.profile)}\n\n{a.found}." for a in answers)))
