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
# (intro)=
# # vitphase
#
# **An executable re-run of "Mechanisms of Non-Monotonic Scaling in Vision Transformers"**
# (A. P. Krishna Kumar, arXiv:2511.21635, 2025, CC BY 4.0).
#
# The paper finds that deeper Vision Transformers are not always better and explains why through
# the layer-wise geometry of their tokens. This book re-runs its analyses, chapter by chapter, with
# code that executes while the book is built: every number and figure on these pages was computed
# in this build, from the models and data named in {ref}`chap-models`. We reproduce the paper's
# *analyses*, not its exact figures, and we put its reported numbers beside ours. The code behind
# every table and figure is one click away ("Show code cell source").

# %% tags=["parameters"]
profile = "default"  # base parameter set: smoke, default or paper (profiles/<name>.yaml)
models = None  # list of model names: zoo models (mini-s, ...) or any timm ViT
dataset = None  # "fashion-mnist" or the path of an ImageNet-style folder
n_images = None  # images in the streaming analysis
device = None  # "cpu", "cuda", ...
dtype = None  # autocast dtype: "float32" or "bfloat16"
batch_size = None  # images per forward pass
overrides = {}  # any other parameter of vitphase_lib.study.Study

# %% [markdown]
# ## This build at a glance
#
# {numref}`tab-glance` gives the verdict on every claim of the paper in this build, by the
# criteria of {ref}`methods`; {ref}`chap-summary` sets each beside what the paper reports and what
# this build measured. {numref}`fig-glance` is the curve the paper's analysis starts from: the
# centered similarity of the patch tokens at every layer ({ref}`chap-cliff`).

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from vitphase_lib import claims, plotting
from vitphase_lib.study import Study

study = Study.from_notebook(profile, overrides, models=models, dataset=dataset, n_images=n_images,
                            device=device, dtype=dtype, batch_size=batch_size)
checks = claims.all_checks(study)
glance = pd.DataFrame({"claim": [c.claim for c in checks], "holds here?": [c.verdict for c in checks],
                       "why": [c.reason for c in checks]})
plotting.myst_table(glance, f"The paper's claims in this build ({study.profile} profile: "
                    f"{', '.join(study.models)}): the verdict and its reason.", "tab-glance")

# %%
held = sum(1 for c in checks if c.holds)
untested = sum(1 for c in checks if c.holds is None)
display(Markdown(f"**{held} of {len(checks)}** checks hold in this build"
                 + (f", {untested} cannot be tested with its models" if untested else "")
                 + f" (profile **{study.profile}**: {', '.join(study.models)})."))

# %%
answers = claims.beyond.all_answers(study)
counts = pd.Series([a.verdict for a in answers]).value_counts()
display(Markdown(f"**Beyond the paper**: {len(answers)} questions the paper leaves open, put to a "
                 "variant zoo ({ref}`chap-depth` to {ref}`chap-noise`): "
                 + ", ".join(f"{counts.get(v, 0)} {v}" for v in claims.beyond.VERDICTS.values()) + "."))

# %% mystnb={"figure": {"caption": "Centered token similarity per layer, every model of this build, against the block index (left) and normalized depth (right): the Cliff when the positional encoding is added (block 0), then the Plateau and the Climb of claim C1.", "name": "fig-glance"}}
per_layer = study.collect("analysis", "per_layer")
plotting.layer_curves(per_layer, "centered_similarity", "centered similarity $S_l$")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
for c in checks:
    print(f"{c.claim}: {c.verdict}")
print(counts.to_dict())
ends = per_layer[per_layer.layer != "head"].groupby("model", sort=False).centered_similarity
print(pd.DataFrame({"raw": ends.first(), "pe": per_layer[per_layer.layer == "pe"]
                    .set_index("model").centered_similarity, "last block": ends.last()}).round(4))

# %% [markdown]
# ## The claims under test
#
# | | claim (from the paper) | chapter |
# |---|---|---|
# | C1 | Layer-wise centered token similarity follows three phases in ViT-S/B/L: a **Cliff** when positional encodings are added, a long **Plateau** of low similarity that depth mostly lengthens, and a **Climb** in the last 3-4 blocks. | {ref}`chap-cliff` |
# | C2 | The Cliff is driven by the positional encodings; its size follows the **PE Dominance Ratio**; scaling PE strength changes top-1. | {ref}`chap-pe` |
# | C3 | Better models marginalize the [CLS] hub (CLS centrality 0.502 -> 0.004 across ViT-B) while patch tokens reach consensus. | {ref}`chap-attention` |
# | C4 | The Information Scrambling Index separates three regimes; ViT-B stays in 0.004-0.009, ViT-L climbs to 0.031. | {ref}`chap-scrambling` |
# | C5 | ViT-B ends with better Neural Collapse geometry than the deeper ViT-L, which needs about 10 more layers for the same information-task trade-off. | {ref}`chap-collapse`, {ref}`chap-tradeoff` |
# | C6 | The paper's open questions: does depth itself hurt; is there a Climb with average pooling; does retraining with a stronger PE help; is the [CLS] hub a cause; can its diagnostics steer training; is the ISI a property of the model or of its probe. | {ref}`chap-depth` to {ref}`chap-noise` |
#
# {ref}`chap-summary` collects the verdicts.
#
# ## Profiles: which models built this copy
#
# Every chapter is a notebook with one `parameters` cell. A *profile* is a named set of those
# parameters (`profiles/*.yaml`):
#
# - `smoke`: a tiny zoo (trained in seconds on a few thousand Fashion-MNIST images, shipped in
#   `zoo/tiny/`); CI and the notebook regression tests (nbval) run it. Its numbers only show that
#   the code works.
# - `default` (what `make book` builds): the **mini zoo**, ViTs shaped like ViT-S/B/L (12, 12 and
#   24 blocks; mini-B twice mini-S's width, mini-L 4/3 of mini-B's) trained from scratch by this
#   project on Fashion-MNIST, analysed on CPU.
# - `paper`: the real timm ViT-S/16, B/16 and L/16 on an ImageNet-1k validation folder, for a
#   machine with a GPU.
#
# ```{include} this_build.md
# ```
#
# The first chapter, {ref}`chap-models`, names the checkpoint behind every model and re-measures
# its test top-1.
#
# ## Re-running a chapter
#
# Each chapter can be re-run on its own with new parameters, for example another timm model, your
# own ImageNet copy or more images:
#
# ```bash
# make notebooks            # writes build/notebooks/*.ipynb from the jupytext sources
# .venv/bin/papermill build/notebooks/02_cliff_plateau_climb.ipynb out.ipynb \
#     -p profile default -p n_images 5000
# ```
#
# Heavy results are cached on disk (`~/.cache/vitphase/results`, keyed by weights, data and
# parameters), so chapters that share an analysis compute it once.
