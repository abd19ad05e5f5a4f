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
# (chap-pe-retrained)=
# # Positional-encoding strength, retrained
#
# C2 says the Cliff is driven by the positional encoding and that early decorrelation is useful.
# Scaling the PE of a trained model ({ref}`chap-pe`) shows what the *trained* network does with a
# stronger or weaker PE, not whether training with one helps. Here the learned PE is replaced by a
# fixed 2-D sin-cos table the network cannot rescale, multiplied by a factor (zero, and three
# factors chosen when the zoo was designed to bracket the norm of mini-S's learned PE; the tiny zoo
# uses the same), and each model is trained from scratch. {numref}`fig-f9` and {numref}`tab-t15`
# give the Cliff, the PE Dominance Ratio, the Plateau and top-1 against PE strength.

# %% tags=["parameters"]
profile = "default"  # base parameter set: smoke, default or paper (profiles/<name>.yaml)
overrides = {}  # any parameter of vitphase_lib.study.Study, e.g. {"variant_settings": {"n_images": 1000}}

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from vitphase_lib import plotting
from vitphase_lib.claims import beyond
from vitphase_lib.study import Study

study = Study.from_notebook(profile, overrides)
ctx = beyond.Context(study)
models = beyond.positional.pe_models(ctx) if ctx.has_variants else []
table = beyond.positional.pe_table(ctx.headline, models, ctx.configs()) if models else None
display(Markdown(ctx.describe()))

# %% [markdown]
# ## The curves and the numbers
#
# Left: the centered similarity of the patch tokens for every PE strength (the learned PE of the
# base in black). Right: the Cliff (fall of $S$ from the raw patches to the PE layer) and test
# top-1 against the PE Dominance Ratio each model ends with.

# %% mystnb={"figure": {"caption": "Fixed sin-cos PE from none to strong, retrained, and the base's learned PE (black): centered similarity per layer (left); Cliff and test top-1 against the PE Dominance Ratio (right; error bars: +- half the seed spread).", "name": "fig-f9"}}
if table is not None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    styles = {m: {"c": "black"} for m in table.model[table.pe == "learned"]}
    plotting.lines_by_model(ctx.vstudy.collect("analysis", "per_layer"), "centered_similarity",
                            "centered similarity $S_l$", list(table.model), ax=axes[0], styles=styles)
    for ax, column in zip(axes[1:], ("cliff_drop_pe", "top1")):
        fixed = table[table.pe != "learned"]
        spread = ctx.spread.get(column)
        ax.errorbar(fixed.pe_dominance_ratio, fixed[column], yerr=None if pd.isna(spread) else spread / 2,
                    marker="o", lw=1, capsize=3)
        for row in table.itertuples():
            label = "learned" if row.pe == "learned" else row.model.split("-")[-1]
            ax.annotate(label, (row.pe_dominance_ratio, getattr(row, column)), fontsize=7)
        learned = table[table.pe == "learned"]
        ax.plot(learned.pe_dominance_ratio, learned[column], "ks")
        ax.set_xlabel("PE Dominance Ratio")
        ax.set_ylabel(beyond.LABELS[column])
    fig.tight_layout()
    plt.show()
else:
    plotting.not_drawn(ctx.missing("PE-strength variants"))

# %%
display(plotting.myst_table(table, "PE strength, retrained: the PE (none, sin-cos x scale, or the "
                            "base's learned one), its norm, the PE Dominance Ratio measured, the Cliff, the "
                            "Plateau length, whether there is a Climb, and test top-1.", "tab-t15",
                            missing=ctx.missing("PE-strength variants")))

# %%
if table is not None:
    display(Markdown(beyond.positional.describe_bracket(table)))

# %%
# NBVAL_CHECK_OUTPUT
print(table.round(4).to_string(index=False) if table is not None else "no PE-strength variants")

# %% [markdown]
# ## Answer

# %%
# NBVAL_CHECK_OUTPUT
answers = beyond.positional.answers(ctx)
for answer in answers:
    print(f"{answer.question} {answer.verdict}: {answer.reason}")

# %%
display(Markdown("\n\n".join(f"{a.headline(study.profile)}\n\n{a.found}." for a in answers)))
