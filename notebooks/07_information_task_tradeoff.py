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
# (chap-tradeoff)=
# # Information-task trade-off
#
# **Claim C5**, second half: depth is used inefficiently. Layer by layer, a ViT trades the
# information of individual patches (scrambled into other tokens, {ref}`chap-scrambling`) for
# task information (what a linear probe can read). The paper finds that ViT-L reaches ViT-B's
# trade-off about **10 layers later**. We fit a logistic-regression probe per layer on the [CLS]
# token and on the mean patch token (probe-fit images) and score it on disjoint images; the
# **trade-off block** is the first block whose [CLS] probe reaches 95% (`tradeoff_fraction`) of
# the model's best probe top-1 ({ref}`methods-probes`).

# %% tags=["parameters"]
profile = "default"  # base parameter set: smoke, default or paper (profiles/<name>.yaml)
models = None  # list of model names: zoo models (mini-s, ...) or any timm ViT
dataset = None  # "fashion-mnist" or the path of an ImageNet-style folder
n_images = None  # images in the streaming analysis
device = None  # "cpu", "cuda", ...
dtype = None  # autocast dtype: "float32" or "bfloat16"
batch_size = None  # images per forward pass
overrides = {}  # any other parameter of vitphase_lib.study.Study, e.g. {"n_probe_fit": 8000}

# %%
import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import Markdown, display

from vitphase_lib import claims, layers, plotting
from vitphase_lib.study import Study

study = Study.from_notebook(profile, overrides, models=models, dataset=dataset, n_images=n_images,
                            device=device, dtype=dtype, batch_size=batch_size)
probes = study.collect("analysis", "probes")
scrambling = study.collect("analysis", "scrambling")
readout = claims.readout_rows(probes)  # [CLS], or the mean patch token for models without [CLS]
feature = claims.readout_label(probes)
joined = readout.merge(scrambling[["model", "layer", "isi"]], on=["model", "layer"])

# %% [markdown]
# ## Probe accuracy against scrambling
#
# {numref}`fig-f6` follows each model through its layers in the plane (ISI, probe top-1): left,
# the [CLS] probe against ISI, one path per model (arrows point deeper); right, probe top-1 per
# layer against normalized depth, for both features.

# %% mystnb={"figure": {"caption": "Left: linear-probe top-1 on the [CLS] token against the Information Scrambling Index, layer by layer (markers grow with depth). Right: probe top-1 per layer against normalized depth, [CLS] (solid) and mean patch token (dashed).", "name": "fig-f6"}}
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
blocks = joined[~joined.layer.isin(layers.INPUTS)].copy()
blocks["order"] = blocks.groupby("model").cumcount()
for model, frame in blocks.groupby("model", sort=False):
    axes[0].plot(frame.isi, frame.probe_top1, "-", lw=1, label=model)
    axes[0].scatter(frame.isi, frame.probe_top1, s=8 + 3 * frame.order)
axes[0].set_xlabel("ISI")
axes[0].set_ylabel(f"{feature} probe top-1 (%)")
axes[0].legend(title="model")
depth = plotting.with_depth_axes(probes[probes.layer != layers.HEAD])
sns.lineplot(data=depth, x="normalized_depth", y="probe_top1", hue="model", style="feature",
             marker="o", markersize=3, ax=axes[1])
axes[1].set_xlabel("normalized depth (block / L)")
axes[1].set_ylabel("probe top-1 (%)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Probe accuracy per layer

# %%
t9 = plotting.by_layer(readout, "probe_top1", study.models).reset_index()
plotting.myst_table(t9, f"Linear-probe top-1 (%) per layer on the {feature} feature (fit and "
                    "scored on disjoint images).", "tab-t9", floatfmt=".1f")

# %%
# NBVAL_CHECK_OUTPUT
print(t9.round(1).to_string(index=False))

# %% [markdown]
# ## Trade-off block and the L-vs-B offset

# %%
t10 = claims.tradeoff_layers(probes, study.tradeoff_fraction)
check = claims.check_tradeoff_offset(t10, study.models)
expected = claims.PAPER["tradeoff_offset_layers"]
names = [claims.paper_name(study.models, m) for m in t10.model]
if len(study.models) == 3:
    base = t10.set_index("model").loc[study.models[1]]
    t10["blocks after B"] = t10.tradeoff_block - base.tradeoff_block
    t10["depth after B"] = t10.tradeoff_depth - base.tradeoff_depth
t10["paper"] = [f"L - B ~ +{expected} layers" if name == "ViT-L" else "n/r" for name in names]
t10 = t10.round({"best_probe_top1": 1, "threshold": 1})  # the digits of the probe table above
plotting.myst_table(t10, "The trade-off block: first block whose probe reaches "
                    f"{study.tradeoff_fraction:.0%} of the model's best probe top-1; its offset from the B-shaped model's in blocks and in "
                    "normalized depth; beside the paper's L-vs-B offset.", "tab-t10",
                    floatfmt=".3g")

# %%
# NBVAL_CHECK_OUTPUT
print(f"C5 (trade-off) holds in this build: {check.holds}")
print(check.measured)

# %%
depths = sorted({int(b) for b in t10.blocks})
display(Markdown(f"{check.headline(study.profile, 'C5, trade-off half,')} — {check.measured}; "
                 f"{check.reason}. The "
                 f"paper's ~{expected}-layer offset is for ViT-B and ViT-L (12 and 24 blocks) on "
                 f"ImageNet; the models here have {', '.join(map(str, depths))} blocks."))
