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
# (chap-pe)=
# # Positional encoding
#
# **Claim C2** of arXiv:2511.21635: the Cliff ({ref}`chap-cliff`) is driven by the positional
# encodings. Its size follows the **PE Dominance Ratio** (how large the positional embeddings are
# beside the patch embeddings), and scaling the PE strength changes top-1 accuracy: early
# decorrelation is useful. We test it two ways: across models, by comparing the ratio with the
# Cliff, and within each model, by an evaluation-time intervention that replaces $z + PE$ with
# $z + \alpha\,PE$ ({ref}`methods-pe`).

# %% tags=["parameters"]
profile = "default"  # base parameter set: smoke, default or paper (profiles/<name>.yaml)
models = None  # list of model names: zoo models (mini-s, ...) or any timm ViT
dataset = None  # "fashion-mnist" or the path of an ImageNet-style folder
n_images = None  # images in the streaming analysis
device = None  # "cpu", "cuda", ...
dtype = None  # autocast dtype: "float32" or "bfloat16"
batch_size = None  # images per forward pass
overrides = {}  # any other parameter of vitphase_lib.study.Study, e.g. {"pe_alphas": [0, 1]}

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from vitphase_lib import claims, layers, plotting
from vitphase_lib.metrics import phase_table
from vitphase_lib.study import Study

study = Study.from_notebook(profile, overrides, models=models, dataset=dataset, n_images=n_images,
                            device=device, dtype=dtype, batch_size=batch_size)
summary = study.collect("analysis", "summary")
phases = phase_table(study.collect("analysis", "per_layer"))
scaled_curves = study.collect("pe_scaling", "per_layer")
scaled_top1 = study.collect("pe_scaling", "top1")

# %% [markdown]
# ## PE Dominance Ratio
#
# {numref}`tab-t4` gives, per model, the mean norm of the positional embeddings of the patch
# positions, the mean norm of the raw patch embeddings, their ratio, and the Cliff measured in
# {ref}`chap-cliff` (to the first block, which includes the first block's own mixing).

# %%
t4 = summary[["model", "pe_norm", "raw_token_norm", "pe_dominance_ratio"]].merge(
    phases[["model", "cliff_drop_pe", "cliff_drop_block1"]], on="model")
plotting.myst_table(t4, "PE Dominance Ratio per model, beside the size of the Cliff "
                    "(drop of centered similarity from the raw patches to the PE layer and to "
                    "block 1).", "tab-t4")

# %%
# NBVAL_CHECK_OUTPUT
print(t4.round(4).to_string(index=False))

# %% [markdown]
# ## Scaling the positional encoding
#
# Every model is evaluated again with its positional embeddings multiplied by $\alpha$ (weights
# untouched otherwise, no retraining). {numref}`fig-f2` shows the centered similarity curve per
# $\alpha$ (one panel per model) and the top-1 accuracy against $\alpha$; {numref}`tab-t5` gives
# the accuracies, on the analysis images (the top-1 of {numref}`tab-t1` is on the whole
# evaluation set, so the two differ slightly at $\alpha = 1$).

# %% mystnb={"figure": {"caption": "Left panels: centered token similarity per layer when the positional encoding is scaled by alpha (one panel per model). Right: top-1 against alpha.", "name": "fig-f2"}}
curves = plotting.with_depth_axes(scaled_curves[scaled_curves.layer != layers.HEAD])
fig, axes = plt.subplots(1, len(study.models) + 1, figsize=(4.2 * (len(study.models) + 1), 3.8))
for ax, model in zip(axes, study.models):
    sns.lineplot(data=curves[curves.model == model], x="block", y="centered_similarity",
                 hue="alpha", palette="viridis", marker="o", markersize=3, ax=ax)
    ax.set_title(model)
    ax.set_xlabel("block (-1 = raw, 0 = + alpha PE)")
    ax.set_ylabel("centered similarity")
sns.lineplot(data=scaled_top1, x="alpha", y="top1", hue="model", marker="o", ax=axes[-1])
axes[-1].axvline(1.0, ls="--", c="grey", lw=1)
axes[-1].set_ylabel("top-1 (%)")
axes[-1].set_title("accuracy under PE scaling")
fig.tight_layout()
plt.show()

# %%
t5 = scaled_top1.pivot(index="alpha", columns="model", values="top1")[list(study.models)].reset_index()
plotting.myst_table(t5, f"Top-1 (%) on the {study.n_images} analysis images when the positional "
                    "encoding is scaled by alpha (alpha = 1: the model as trained).", "tab-t5",
                    floatfmt=".2f")

# %%
# NBVAL_CHECK_OUTPUT
print(t5.round(2).to_string(index=False))

# %% [markdown]
# {numref}`tab-pe-cliff` reads the Cliff off every curve of {numref}`fig-f2`, in both of its
# sizes ({ref}`chap-cliff`): to the PE layer and to block 1. At $\alpha = 0$ the PE layer adds
# nothing, so the drop to it is zero by construction; the drop to block 1 is then the first
# block's own mixing.

# %%
cliff_by_alpha = phase_table(scaled_curves, by=("model", "alpha"))
scaling = claims.pe_scaling_table(scaled_top1, cliff_by_alpha)
plotting.myst_table(scaling, "The Cliff per model and PE scale alpha (drop of centered "
                    "similarity from the raw patches to the PE layer and to block 1), beside "
                    "top-1 (%).", "tab-pe-cliff", floatfmt=".4f")

# %%
# NBVAL_CHECK_OUTPUT
print(scaling.round(4).to_string(index=False))

# %% [markdown]
# ## Does C2 hold here?
#
# Three parts, each tested from the tables above: (a) within each model the Cliff to block 1
# grows from the smallest $\alpha$ run (0 in every profile) to the largest
# ({numref}`tab-pe-cliff`); (b) removing the PE ($\alpha = 0$) lowers top-1 ({numref}`tab-t5`);
# (c) across the models, the Cliff is ordered like the PE Dominance Ratio ({numref}`tab-t4`):
# the Spearman correlation is positive for both sizes of the Cliff, so that the verdict does not
# hang on which one is read. With three models this is a weak test, and the verdict gives the
# correlations. A part that this run's parameters cannot test is named as such and counts
# neither way ({ref}`methods-pe`).

# %%
check = claims.check_pe_drives_cliff(t4, scaled_top1, cliff_by_alpha)

# %%
# NBVAL_CHECK_OUTPUT
print(f"C2 holds in this build: {check.holds}")
print(check.reason)
print(check.measured)

# %%
display(Markdown(f"{check.headline(study.profile, 'C2')} — "
                 f"{check.reason}.\n\n{check.measured}."))

# %% [markdown]
# The paper reads the accuracy cost of removing the PE as "early decorrelation is useful". The
# intervention also runs the other way: a PE stronger than the model was trained with.

# %%
display(Markdown(claims.describe_stronger_pe(claims.stronger_pe_effect(scaling))))
