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
# (chap-collapse)=
# # Neural Collapse
#
# **Claim C5**, first half: the shallower ViT-B ends with better *Neural Collapse* geometry than
# the deeper ViT-L. Neural Collapse describes the last-layer features of a well-trained classifier:
# within-class variability vanishes (NC1), the class means form a simplex equiangular tight frame
# (NC2), the classifier aligns with the class means (NC3), and the network decides like a
# nearest-class-center rule (NC4). The paper ties its formation to the Climb of {ref}`chap-cliff`.
# We measure NC1-NC4 at every layer, on the [CLS] token and on the mean patch token
# ({ref}`methods-collapse`).

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
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from vitphase_lib import claims, layers, plotting
from vitphase_lib.metrics import phase_table
from vitphase_lib.study import Study

study = Study.from_notebook(profile, overrides, models=models, dataset=dataset, n_images=n_images,
                            device=device, dtype=dtype, batch_size=batch_size)
collapse = study.collect("analysis", "collapse")
phases = phase_table(study.collect("analysis", "per_layer"))
main = claims.readout_rows(collapse)  # [CLS], or the mean patch token for models without [CLS]

# %% [markdown]
# ## NC1-NC4 per layer
#
# {numref}`fig-f4` shows the four measures per layer on both features: the [CLS] token (solid) and
# the mean patch token (dashed; models without [CLS] have only this one); lower is more collapsed.
# NC1 and NC3 span orders of magnitude and are on a log scale. Shaded: the last segment of each
# model's phase segmentation (its Climb, where C1 finds one). NC3 and NC4 need a classifier: at
# every layer but the last point of the [CLS] curves it is a least-squares classifier fitted from
# the streamed moments, at that last point (after the final norm) the network's own head
# ({ref}`methods-collapse`), so the step into that point is partly a change of classifier: a
# least-squares classifier aligns with the class means only as far as the features' covariance
# is isotropic, while the trained head is the classifier NC3 is about (training draws it
# towards the class means).

# %% mystnb={"figure": {"caption": "Neural Collapse per layer on the [CLS] token (solid) and the mean patch token (dashed): NC1 (within-class variability, log), NC2 (distance of the class means from a simplex ETF), NC3 (classifier vs class means, log) and NC4 (disagreement of nearest-class-center and classifier), against normalized depth; lower = more collapse.", "name": "fig-f4"}}
import seaborn as sns

frame = plotting.with_depth_axes(collapse)
frame["feature"] = frame.feature.map({"cls": "[CLS]", "mean": "mean patch token"})
fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
for ax, (nc, label, logy) in zip(axes.flat, [("nc1", "NC1", True), ("nc2", "NC2 (ETF gap)", False),
                                             ("nc3", "NC3", True), ("nc4", "NC4 (1 - agreement)", False)]):
    sns.lineplot(data=frame, x="normalized_depth", y=nc, hue="model", style="feature",
                 style_order=["[CLS]", "mean patch token"], marker="o", markersize=3, ax=ax,
                 legend=ax is axes[0, 0])
    ax.set_ylabel(label)
    ax.set_xlabel("normalized depth (block / L)")
    if logy:
        ax.set_yscale("log")
    for row in phases.itertuples():
        climb = layers.blocks_passed(row.climb_start)
        ax.axvspan(climb / row.blocks, 1.0, alpha=0.05, color="grey")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Final-layer geometry
#
# {numref}`tab-t7` gives NC1-NC4, the equinorm term and the nearest-class-center margin after the
# final norm (the features the classifier reads), with the classifier used for NC3/NC4: the
# network's own head where it reads that feature directly, else a least-squares classifier fitted
# from the streamed moments. The paper reports no NC values (n/r).

# %%
final = collapse[collapse.layer == layers.HEAD]
t7 = final[["model", "feature", "nc1", "nc2", "equinorm", "nc3", "nc4", "ncc_margin", "classifier"]]
plotting.myst_table(t7, "Final-layer (after the final norm) Neural Collapse per model and "
                    "feature; lower NC = more collapse. Paper: n/r.", "tab-t7", floatfmt=".4g")

# %%
# NBVAL_CHECK_OUTPUT
print(final[["model", "feature", "nc1", "nc2", "nc3", "nc4"]].round(4).to_string(index=False))

# %% [markdown]
# ## Does NC form in the Climb, and does C5 (geometry) hold here?

# %%
main_final = main[main.layer == layers.HEAD]
check = claims.check_collapse_b_vs_l(main_final, study.models)
through = claims.collapse_through_phases(main, phases)
has_climb = claims.phase_verdicts(phases).set_index("model").climb
plotting.myst_table(
    through[["model", "plateau_start_block", "climb_knot_block", "blocks", "nc1_plateau_start",
             "nc1_climb_start", "nc1_last_block", "plateau_decades_per_block",
             "climb_decades_per_block", "forms_in_climb"]],
    "NC1 on the readout feature at the Plateau's first block, at the knot where the Climb starts and at "
    "the last block, and its change per block (decades, log10) on the Plateau and over the Climb; "
    "forms_in_climb: NC1 falls over the Climb, faster than on the Plateau.", "tab-nc-phases",
    floatfmt=".4g")

# %%
# NBVAL_CHECK_OUTPUT
print(through[["model", "plateau_decades_per_block", "climb_decades_per_block",
               "forms_in_climb"]].round(4).to_string(index=False))

# %%
forming = []
for row in through.itertuples():
    segment = "Climb" if has_climb[row.model] else "last segment (no Climb by C1's criteria)"
    plateau = ("with no Plateau to compare" if pd.isna(row.plateau_decades_per_block) else
               f"against {row.plateau_decades_per_block:+.3f} on the Plateau")
    where = "in the Climb" if has_climb[row.model] else "in the last segment"
    forming.append(
        f"{row.model}: over its {segment}, from block {row.climb_knot_block} to {row.blocks}, NC1 changes by "
        f"{row.climb_decades_per_block:+.3f} decades per block {plateau}, so collapse "
        + (f"**forms {where}**" if row.forms_in_climb else f"**does not form {where}**"))
landmarks = claims.attention_landmarks(study.collect("analysis", "attention"), phases)
spiking = landmarks.loc[landmarks.late_spike.astype(bool), "model"].tolist()
nc2 = main_final.set_index("model").nc2
if spiking:
    worst = nc2.idxmax()
    spike_text = (f"The paper ties a late CLS-centrality spike ({{ref}}`chap-attention`) to worse "
                  f"collapse: here {', '.join(spiking)} show(s) one, and the worst final NC2 is "
                  f"{worst}'s ({nc2[worst]:.4f}), " + ("which agrees." if worst in spiking else
                                                      "which does not agree."))
else:
    spike_text = ("The paper ties a late CLS-centrality spike ({ref}`chap-attention`) to worse "
                  "collapse; no model of this build shows one, so that link cannot be checked here.")
display(Markdown("Where collapse forms ({numref}`tab-nc-phases`): " + "; ".join(forming) + ".\n\n"
                 + spike_text))

# %%
# NBVAL_CHECK_OUTPUT
print(f"C5 (geometry) holds in this build: {check.holds}")
print(check.reason)

# %%
display(Markdown(f"{check.headline(study.profile, 'C5, geometry half,')} — {check.measured}; "
                 f"{check.reason}."))
