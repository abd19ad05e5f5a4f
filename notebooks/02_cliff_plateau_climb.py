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
# (chap-cliff)=
# # Cliff, Plateau, Climb
#
# **Claim C1** of arXiv:2511.21635: the layer-wise *centered token similarity* of ViT-S/16, B/16
# and L/16 falls sharply when positional encodings are added (the **Cliff**), stays low for a long
# stretch that depth mostly lengthens (the **Plateau**), and rises again in the last 3-4 blocks
# (the **Climb**), as Neural Collapse geometry forms. This chapter measures the curve for every
# model of the profile, segments it into the three phases ({ref}`methods-phases`) and puts the
# Cliff beside the numbers the paper reports.

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
from IPython.display import Markdown, display

from vitphase_lib import claims, plotting
from vitphase_lib.metrics import phase_table
from vitphase_lib.study import Study

study = Study.from_notebook(profile, overrides, models=models, dataset=dataset, n_images=n_images,
                            device=device, dtype=dtype, batch_size=batch_size)
per_layer = study.collect("analysis", "per_layer")
phases = phase_table(per_layer)

# %% [markdown]
# ## The similarity curve
#
# {numref}`fig-f1` shows the centered similarity $S_l$ (top) and the raw, uncentered similarity
# (bottom) of the patch tokens at every layer, against the block index (left) and against depth
# normalized by the number of blocks (right). Block $-1$ is the raw patch embedding, block $0$ the
# tokens after the positional encoding is added. The dashed line is the floor $-1/(N-1)$ of
# per-image centering.

# %% mystnb={"figure": {"caption": "Centered (top) and raw (bottom) token similarity per layer, every model, against absolute and normalized depth. Dashed: the centering floor -1/(N-1).", "name": "fig-f1"}}
import matplotlib.pyplot as plt

fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex="col")
plotting.layer_curves(per_layer, "centered_similarity", "centered similarity $S_l$", axes=axes[0])
plotting.layer_curves(per_layer, "raw_similarity", "raw similarity", axes=axes[1])
floor = -1 / (study.model(study.models[0]).model.patch_embed.num_patches - 1)
for ax in axes[0]:
    ax.axhline(floor, ls="--", c="grey", lw=1)
fig.tight_layout()
plt.show()

# %% [markdown]
# The raw similarity is dominated by the anisotropy of the residual stream (every token shares a
# large common component), which is why the analyses use the centered version.
#
# ## Phase boundaries
#
# {numref}`tab-t2` gives the boundaries the segmentation finds ({ref}`methods-phases`): where
# the Plateau starts (the Cliff ends where at most a tenth of its fall is left to go) and where
# the Climb starts (a two-piece fit of the rest whose second piece may not fall), the lengths in
# blocks, and the slope of each phase per layer (for the Cliff, its mean fall).

# %%
t2 = phases[["model", "blocks", "plateau_start", "climb_start", "plateau_length",
             "plateau_fraction", "climb_length", "cliff_slope", "plateau_slope", "climb_slope"]]
plotting.myst_table(t2, "Phase boundaries and Plateau length per model (segmentation of the "
                    "centered similarity: Cliff end, then a two-piece Plateau-Climb fit). The "
                    "climb columns describe the fit's last piece, which is a Climb only where it "
                    "rises enough (verdict below).", "tab-t2")

# %%
# NBVAL_CHECK_OUTPUT
print(plotting.by_layer(per_layer, "centered_similarity", study.models).round(4).to_string())

# %% [markdown]
# ## The Cliff beside the paper
#
# The paper reports the centered similarity before and after the positional encoding for ViT-S
# and ViT-L ({numref}`tab-t3`). The floor $-1/(N-1)$ of per-image centering depends on the number
# of patches $N$: $-1/195 \approx -0.005$ for the paper's 196. The digits therefore do not
# compare across patch counts; the direction of the drop and its size in units of the floor do.

# %%
num_patches = {m: study.model(m).model.patch_embed.num_patches for m in study.models}
t3 = claims.cliff_beside_paper(per_layer, study.models, num_patches)
plotting.myst_table(t3, "The Cliff: centered similarity before the positional encoding, after "
                    "it and after block 1, each model of this build followed by the paper's "
                    "model it stands in for (where the paper reports it), with the drop and "
                    "S(pe) in units of the centering floor.", "tab-t3")

# %%
# NBVAL_CHECK_OUTPUT
print(t3.round(4).to_string(index=False))

# %%
display(Markdown(claims.describe_cliff_beside_paper(t3)))

# %% [markdown]
# ## Does C1 hold here?

# %%
# NBVAL_CHECK_OUTPUT
check = claims.check_phases(phases)
print(f"C1 holds in this build: {check.holds}")
print(check.reason)
depth = claims.check_depth_lengthens_plateau(phases)
print(f"Depth lengthens the Plateau: {depth.holds}")
print(depth.reason)

# %%
display(Markdown(f"{check.headline(study.profile, 'C1')} — {check.reason}.\n\nPer model: "
                 f"{check.measured}.\n\n**Depth and the Plateau:** the paper's Plateau is a "
                 f"stretch that depth mostly lengthens. In this build it "
                 f"{depth.in_words} — {depth.reason}."))
