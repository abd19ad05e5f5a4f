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
# (chap-own-model)=
# # Your own model
#
# The chapters run the analyses through profiles, but each one is also a function of a model
# *instance* and a torch data set: `vitphase_lib.analyse(model, data)` streams the data through
# any supported timm ViT (`VisionTransformer`, `Eva`, `Beit`, `VisionTransformerRelPos`) with its
# weights as they are, and returns the tables the chapters are built from. During training,
# `vitphase_lib.Monitor` logs the cheap ones on a fixed probe set. This page runs both during the
# build, on a model of this profile.

# %% tags=["parameters"]
profile = "default"  # base parameter set: smoke, default or paper (profiles/<name>.yaml)
model = None  # the model to analyse (default: the profile's first)
overrides = {}  # any other parameter of vitphase_lib.study.Study

# %%
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

import vitphase_lib
from vitphase_lib import plotting
from vitphase_lib.study import Study

study = Study.from_notebook(profile, overrides)
name = model or study.models[0]
vit = study.model(name).model
data = study.data(name, "probe_fit")  # any map-style Dataset of (image, label) pairs will do
display(Markdown(f"Model **{name}** ({study.model(name).source}), {len(data)} images."))

# %% [markdown]
# ## One call
#
# Every metric of the book, every head's attention too (`per_head=True`). The images are split
# 1 : 2 : 1 into the analysis sweep, the images the decoders and probes are fitted on and those
# they are scored on; without labels the label-free metrics run and the rest is skipped with a note.

# %%
result = vitphase_lib.analyse(vit, data, per_head=True, batch_size=study.batch_size,
                              device=study.device, dtype=study.dtype, name=name, progress=False,
                              aci_max_images=study.aci_max_images, pca_max_images=study.pca_max_images,
                              head_aci_max_images=study.head_aci_max_images,
                              infox_dims=study.infox_dims)  # the profile's budgets
result

# %%
per_layer = result["per_layer"].merge(result["scrambling"][["layer", "isi"]], on="layer")
plotting.myst_table(per_layer[["layer", "centered_similarity", "raw_similarity", "isi"]],
                    f"{name}: centered and raw token similarity and the Information Scrambling "
                    "Index per layer, from one call of vitphase_lib.analyse.", "tab-own-layers")

# %%
# NBVAL_CHECK_OUTPUT
print({table: frame.shape for table, frame in result.tables.items()})
print(f"top-1 {result['summary'].top1.iloc[0]:.2f}%, "
      f"head similarity {result['per_layer'].centered_similarity.iloc[-1]:.4f}")

# %% [markdown]
# `result.plot()` draws the chapters' figures for this one model; here the attention graph, with
# each head's CLS centrality and consensus (grey) beside their average:

# %% mystnb={"figure": {"caption": "CLS centrality (left) and Attention Consensus Index (right) per block: every head (grey) and the head-averaged attention (blue), from vitphase_lib.analyse(..., per_head=True).", "name": "fig-own-attention"}}
figures = result.plot()
for other in set(figures) - {"attention"}:
    plt.close(figures[other])
plt.show()

# %% [markdown]
# ## During training
#
# A `Monitor` holds a fixed probe set and, called from the training loop, evaluates the model in
# `eval()` mode without gradients every `every` steps, restores its mode and appends tidy rows
# (step, epoch, layer, block, metric, value) to its log, written atomically. Here a fresh copy
# of the model's architecture trains for a few dozen steps on Fashion-MNIST's training images.

# %%
import torch.nn.functional as F

from vitphase_lib.data import load_fashion_mnist
from vitphase_lib.models import ALL_MINI_CONFIGS, build_mini_vit

is_zoo = name in ALL_MINI_CONFIGS  # the demonstration trains on Fashion-MNIST: zoo models only
if is_zoo:
    probe = study.evaluation_set(name).subset(range(256))
    monitor = vitphase_lib.Monitor(probe.images, probe.labels, every=10)
    train = load_fashion_mnist("train", root=study.data_root)
    torch.manual_seed(study.seed)
    student = build_mini_vit(ALL_MINI_CONFIGS[name])
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    for step in range(41):
        batch = torch.randint(0, len(train), (128,), generator=torch.Generator().manual_seed(step))
        loss = F.cross_entropy(student(train.images[batch]), train.labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        monitor(student, step=step)  # evaluates at steps 0, 10, 20, ...

# %% mystnb={"figure": {"caption": "The monitor's log against training step: token similarity per layer, CLS centrality and ACI per block (darker: deeper), PE Dominance Ratio and top-1 on the probe images.", "name": "fig-own-monitor"}}
if is_zoo:
    monitor.plot()
    plt.show()
else:
    display(Markdown("The training demonstration uses a zoo model's architecture; "
                     f"{name} is not one."))

# %%
# NBVAL_CHECK_OUTPUT
if is_zoo:
    rows = monitor.rows
    print([int(step) for step in sorted(rows.step.unique())], sorted(rows.metric.unique()))
