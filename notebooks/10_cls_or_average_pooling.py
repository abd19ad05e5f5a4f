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
# (chap-pooling)=
# # [CLS] or average pooling
#
# The paper reads the Climb as the stage where tokens re-correlate while Neural Collapse forms in
# the [CLS] readout, and suggests the check this chapter runs: replace [CLS] by average pooling and
# train from scratch. Each pooled model here is its [CLS] twin with the token removed and the head
# reading the mean patch token, trained with the same data, recipe and seed. {numref}`fig-f8` and
# {numref}`tab-t14` put the twins side by side: phases (is there a Climb with average pooling, and
# with [CLS]?), top-1, final geometry of the readout feature, ISI and ACI.

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
pairs = beyond.pooling.pooling_pairs(study.variants, ctx.registry) if ctx.has_variants else []
table = beyond.pooling.pooling_table(ctx.headline, pairs) if pairs else None
display(Markdown(ctx.describe()))

# %% [markdown]
# ## The twins side by side
#
# Solid lines are the [CLS] models, dashed their average-pooled twins; the left panel is the
# centered token similarity of the patch tokens (the curve C1 segments), the right one the
# Attention Consensus Index per block.

# %% mystnb={"figure": {"caption": "[CLS] models (solid) and their average-pooled twins (dashed): centered similarity of the patch tokens per layer against normalized depth (left) and the Attention Consensus Index per block (right).", "name": "fig-f8"}}
if pairs:
    models = [m for pair in pairs for m in pair]
    styles = {avg: {"ls": "--"} for _, avg in pairs}
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    plotting.lines_by_model(ctx.vstudy.collect("analysis", "per_layer"), "centered_similarity",
                            "centered similarity $S_l$", models, ax=axes[0], normalized=True, styles=styles)
    plotting.lines_by_model(ctx.vstudy.collect("analysis", "attention"), "aci", "ACI", models, ax=axes[1],
                            styles=styles, blocks_only=True)
    fig.tight_layout()
    plt.show()
else:
    plotting.not_drawn(ctx.missing("pooling variants"))

# %%
display(plotting.myst_table(table, "Each [CLS] model followed by its average-pooled twin: the "
                            "feature the head reads, test top-1, whether there is a Climb and its "
                            "rise, Plateau length, final NC1-NC4 of the readout feature, ISI peak, "
                            "ACI (last third of the blocks, last block) and CLS centrality in the "
                            "last third (x uniform; none without [CLS]).", "tab-t14",
                            missing=ctx.missing("pooling variants")))

# %%
# NBVAL_CHECK_OUTPUT
print(table[["model", "top1", "climb", "climb_rise", "nc2", "isi_max", "aci_late"]].round(4)
      .to_string(index=False) if table is not None else "no pooling variants")

# %% [markdown]
# ## Answers

# %%
# NBVAL_CHECK_OUTPUT
answers = beyond.pooling.answers(ctx)
for answer in answers:
    print(f"{answer.question} {answer.verdict}: {answer.reason}")

# %%
display(Markdown("\n\n".join(f"{a.headline(study.profile)}\n\n{a.found}." for a in answers)))
