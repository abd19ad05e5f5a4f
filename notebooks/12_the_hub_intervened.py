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
# (chap-hub)=
# # The [CLS] hub, intervened
#
# C3 correlates better models with a marginalized [CLS] hub and names a late hub (CLS centrality
# above 0.01 in the last blocks) as a failure signature that goes with worse NC2. Correlation is
# not cause (the paper's fourth open question). Two variants intervene in the last third of the
# base's blocks and are trained from scratch: in one, patches cannot attend to [CLS] there (the
# hub is removed); in the other, every patch gives [CLS] at least five times the uniform share
# (the hub is forced). {numref}`fig-f10` and {numref}`tab-t16` compare them with the base: does
# removing the hub improve consensus, geometry or top-1, and does a forced hub degrade NC2?
#
# Only [CLS]'s own attention row reaches the head from the last block; the interventions change
# the patches' rows. In the last block they therefore cannot change the readout or training: they
# act through the blocks before it, which is why they span the last third of the blocks and at
# least two.

# %% tags=["parameters"]
profile = "default"  # base parameter set: smoke, default or paper (profiles/<name>.yaml)
overrides = {}  # any parameter of vitphase_lib.study.Study, e.g. {"variant_settings": {"n_images": 1000}}

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from vitphase_lib import plotting
from vitphase_lib.claims import beyond
from vitphase_lib.study import Study

study = Study.from_notebook(profile, overrides)
ctx = beyond.Context(study)
models = beyond.headline.group_models(study.variants, ctx.registry, "hub") if ctx.has_variants else []
table = beyond.hub.hub_table(ctx.headline, models) if models else None
display(Markdown(ctx.describe()))

# %% [markdown]
# ## Centrality, consensus and geometry per block
#
# CLS centrality is shown in multiples of the uniform share $1/(P+N)$ (1 = [CLS] gets what every
# token would get from uniform attention); the shaded blocks are the last third, where the
# variants intervene. NC1 is that of the [CLS] feature at every block.

# %% mystnb={"figure": {"caption": "The base, hub removed and hub forced: CLS centrality in multiples of the uniform share (left, log scale), Attention Consensus Index (middle) and NC1 of the [CLS] feature (right, log scale) per block; shaded: the last third of the blocks, where the variants intervene.", "name": "fig-f10"}}
if table is not None:
    attention = ctx.vstudy.collect("analysis", "attention")
    attention = attention.assign(ccc_x_uniform=attention.cls_centrality / attention.uniform_baseline)
    collapse = ctx.vstudy.collect("analysis", "collapse").query("feature == 'cls'")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    plotting.lines_by_model(attention, "ccc_x_uniform", "CLS centrality (x uniform)", models, ax=axes[0],
                            blocks_only=True, logy=True)
    plotting.lines_by_model(attention, "aci", "ACI", models, ax=axes[1], blocks_only=True)
    plotting.lines_by_model(collapse, "nc1", "NC1 ([CLS])", models, ax=axes[2], blocks_only=True, logy=True)
    last = beyond.headline.late_blocks(ctx.configs()[models[0]].depth)  # the base's last third
    for ax in axes:
        ax.axvspan(last[0] - 0.5, last[-1] + 0.5, color="grey", alpha=0.15)
    fig.tight_layout()
    plt.show()
else:
    plotting.not_drawn(ctx.missing("hub variants"))

# %%
display(plotting.myst_table(table, "The hub interventions beside the base: CLS centrality in the "
                            "last third and at the last block (x uniform), ACI in the last third, "
                            "final NC1 and NC2 of the readout feature, ISI peak and test top-1.",
                            "tab-t16", missing=ctx.missing("hub variants")))

# %%
# NBVAL_CHECK_OUTPUT
print(table.round(4).to_string(index=False) if table is not None else "no hub variants")

# %% [markdown]
# ## Answers

# %%
# NBVAL_CHECK_OUTPUT
answers = beyond.hub.answers(ctx)
for answer in answers:
    print(f"{answer.question} {answer.verdict}: {answer.reason}")

# %%
display(Markdown("\n\n".join(f"{a.headline(study.profile)}\n\n{a.found}." for a in answers)))
