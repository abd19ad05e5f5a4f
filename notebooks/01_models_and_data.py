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
# (chap-models)=
# # Models and data
#
# The paper analyses timm's ViT-S/16, ViT-B/16 and ViT-L/16 on ImageNet-1k validation images.
# Pretrained ImageNet weights cannot be downloaded where this book is built by default, so the
# **default profile** replicates the study at small scale with a *mini zoo* trained from scratch by
# this project on Fashion-MNIST (28 x 28 px, patch 4, so N = 49 patch tokens + [CLS]). The mini
# models keep the ratios of the real ones: mini-S and mini-B have 12 blocks and mini-B is twice as
# wide; mini-L has 24 blocks and 4/3 of mini-B's width; the head dimension is constant. The
# **paper profile** runs the same chapters on the real timm models and an ImageNet folder.
#
# This chapter lists the models ({numref}`tab-t1`), re-measures the test top-1 of every
# checkpoint on its stored weights (once per checkpoint, cached by their sha256; it must equal the
# number recorded when it was trained), and shows the training curves ({numref}`fig-training`).

# %% tags=["parameters"]
profile = "default"  # base parameter set: smoke, default or paper (profiles/<name>.yaml)
models = None  # list of model names: zoo models (mini-s, ...) or any timm ViT
dataset = None  # "fashion-mnist" or the path of an ImageNet-style folder
n_images = None  # images in the streaming analysis
device = None  # "cpu", "cuda", ...
dtype = None  # autocast dtype: "float32" or "bfloat16"
batch_size = None  # images per forward pass
overrides = {}  # any other parameter of vitphase_lib.study.Study, e.g. {"seed": 1}

# %%
import pandas as pd
from IPython.display import Markdown, display

from vitphase_lib import plotting
from vitphase_lib.study import Study

study = Study.from_notebook(profile, overrides, models=models, dataset=dataset, n_images=n_images,
                            device=device, dtype=dtype, batch_size=batch_size)
display(Markdown(f"Profile **{study.profile}**: models {', '.join(study.models)}; data "
                 f"{study.dataset}, {study.n_images} analysis images, device {study.device}, "
                 f"dtype {study.dtype}."))

# %% [markdown]
# ## The models

# %%
inventory = study.model_inventory()
plotting.myst_table(inventory.drop(columns=["source"]),
                    "The models of this build: depth, width, heads, parameters, and test top-1 "
                    "(re-measured on the stored weights). Zoo models: training "
                    "minutes as recorded (the wall clock of the optimizer steps, including pauses and a "
                    "CPU shared with other work) and estimated for an idle machine (epochs x the "
                    "fastest complete epoch, evaluation and monitor included).",
                    "tab-t1", floatfmt=".2f")

# %%
# NBVAL_CHECK_OUTPUT
print(inventory[["model", "depth", "width", "heads", "parameters", "test_top1"]].to_string(index=False))

# %% [markdown]
# Where the weights came from:

# %%
display(Markdown("\n".join(f"- **{row.model}**: {row.source}" for row in inventory.itertuples())))

# %% [markdown]
# ## Training curves
#
# Zoo models only: test top-1 and training loss after each epoch of the recipe (AdamW, linear
# warm-up then cosine decay, label smoothing 0.1, padded random crop and horizontal flip).

# %% mystnb={"figure": {"caption": "Training curves of the zoo models: training loss (left) and Fashion-MNIST test top-1 (right) per epoch.", "name": "fig-training"}}
import matplotlib.pyplot as plt

curves = study.training_curves()
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
if len(curves):
    import seaborn as sns
    sns.lineplot(data=curves, x="epoch", y="train_loss", hue="model", marker="o", ax=axes[0])
    sns.lineplot(data=curves, x="epoch", y="test_top1", hue="model", marker="o", ax=axes[1])
    axes[0].set_ylabel("training loss (label-smoothed)")
    axes[1].set_ylabel("test top-1 (%)")
else:
    for ax in axes:
        ax.text(0.5, 0.5, "no zoo model in this profile", ha="center", va="center")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The variant zoo
#
# To test the paper's mechanisms causally, the project also trains *variants*, each differing from
# its base (mini-S, and mini-B for pooling) by one named change, with the base's data, recipe and
# seed: depth from 3 to 24 blocks at mini-S's width; average pooling instead of [CLS]; a fixed
# 2-D sin-cos position embedding the network cannot rescale, at four strengths from none to above
# mini-S's own; the [CLS] hub removed or forced in the last third of the blocks; two more
# seeds; the MLP halved or shared between adjacent blocks. Each trained with the training-time
# monitor on. {numref}`tab-t1b` lists the variants of this profile, their test top-1
# re-measured on the stored weights (it must equal the recorded one) and the
# PE Dominance Ratio measured on the images the "Beyond the paper" chapters analyse.

# %%
variants = study.variant_inventory()
if len(variants):
    display(plotting.myst_table(
        variants, "The variant zoo: base, the one change, parameters, test top-1 (re-measured "
        "on the stored weights), PE Dominance Ratio and training minutes (estimated for an idle "
        "machine and as recorded, as in the table above).", "tab-t1b", floatfmt=".2f"))
else:
    display(Markdown("This profile lists no variants (parameter `variants`)."))

# %%
# NBVAL_CHECK_OUTPUT
print(variants[["variant", "parameters", "test_top1", "pe_dominance_ratio"]].round(3).to_string(index=False)
      if len(variants) else "no variants")
