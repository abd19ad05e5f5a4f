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
# (chap-summary)=
# # Summary
#
# {numref}`tab-t11` collects every claim: what the paper reports, what this build measured (pulled
# from the same cached results the chapters show, never retyped) and whether it holds here,
# by the criteria of {ref}`methods`.

# %% tags=["parameters"]
profile = "default"  # base parameter set: smoke, default or paper (profiles/<name>.yaml)
models = None  # list of model names: zoo models (mini-s, ...) or any timm ViT
dataset = None  # "fashion-mnist" or the path of an ImageNet-style folder
n_images = None  # images in the streaming analysis
device = None  # "cpu", "cuda", ...
dtype = None  # autocast dtype: "float32" or "bfloat16"
batch_size = None  # images per forward pass
overrides = {}  # any other parameter of vitphase_lib.study.Study

# %%
import pandas as pd
from IPython.display import Markdown, display

from vitphase_lib import claims, plotting
from vitphase_lib.models import ALL_MINI_CONFIGS
from vitphase_lib.study import Study

study = Study.from_notebook(profile, overrides, models=models, dataset=dataset, n_images=n_images,
                            device=device, dtype=dtype, batch_size=batch_size)
checks = claims.all_checks(study)
t11 = pd.DataFrame([c.as_row() for c in checks])
plotting.myst_table(t11, f"Every claim: the paper, this build ({study.profile} profile: "
                    f"{', '.join(study.models)}) and the verdict.", "tab-t11")

# %%
# NBVAL_CHECK_OUTPUT
for c in checks:
    print(f"{c.claim}: {c.as_row()['holds here?']}")

# %% [markdown]
# ## What the differences suggest

# %%
configs = ([ALL_MINI_CONFIGS[m] for m in study.models]
           if all(m in ALL_MINI_CONFIGS for m in study.models) else [])
held = [c.claim + (" (where testable)" if c.partly_untested else "") for c in checks if c.holds]
failed = [c.claim for c in checks if c.holds is False]
untested = [c.claim for c in checks if c.holds is None]
display(Markdown(
    f"In this build **{len(held)} of {len(checks)}** checks hold"
    + (f" ({', '.join(held)})" if held else "")
    + (f"; **{len(failed)} do not** ({', '.join(failed)})" if failed else "")
    + (f"; {len(untested)} cannot be tested with these models ({', '.join(untested)})" if untested else "")
    + "."
    + (f" This build's models are small ViTs trained from scratch ({{ref}}`chap-models`) on "
       f"{' or '.join(sorted({f'{c.img_size} x {c.img_size}' for c in configs}))} grey images with "
       f"{' or '.join(map(str, sorted({(c.img_size // c.patch_size) ** 2 for c in configs})))} "
       "patches, not ImageNet models with 196: a claim that fails here may depend on scale, data or "
       "training length, and one that holds here is evidence that the mechanism does not need them."
       if configs else "")))

# %%
# What each departure would point to, shown only for the claims that do not hold in this build.
READINGS = {
    "C1": "the three phases may not be a generic property of ViTs: a long flat Plateau ended by "
          "a short Climb may need what the paper's models have and these lack (more depth than "
          "the task needs, a harder task, longer training)",
    "C1b": "depth may lengthen other stretches of the curve than the Plateau at this scale",
    "C2": "the Cliff may be set by more than the positional encoding's strength at this scale",
    "C3": "these models may not need to route through a [CLS] hub: with few classes and few "
          "patches, [CLS] can read the patches without first becoming a hub and then giving it up; "
          "and the paper's 0.01 is an absolute share set with 197 tokens (uniform share 0.005), "
          "so {ref}`chap-attention` also reads centrality as a multiple of the uniform share, "
          "which carries across token counts",
    "C4": "the ISI's absolute regime thresholds may not transfer to other patch counts and "
          "decoders; the relative comparison of the models ({ref}`chap-scrambling`) is the "
          "part that can",
    "C5a": "the deeper model's extra blocks may not cost final-layer geometry at this scale",
    "C5b": "the deeper model may waste less of its extra depth than ViT-L does",
}
departures = [(c.claim.split()[0], c) for c in checks if c.holds is False]
if departures:
    display(Markdown("Where this build departs from the paper, and what it suggests:\n\n" + "\n".join(
        f"- **{claim}** ({check.reason}): {READINGS.get(claim, 'see the chapter')}." for claim, check in departures)))
else:
    display(Markdown("Every testable claim holds in this build."))

# %% [markdown]
# ## Open questions this book can address
#
# The paper lists open questions (C6). The default profile can answer some of them directly,
# because it owns its training: *do the phases generalize to other data, architectures and
# training regimes* (this build is such a test: other data, other scale); *are the correlations
# causal* (the PE-scaling intervention of {ref}`chap-pe` is one causal test; retraining with
# scaled PE, or with average pooling instead of [CLS], are the paper's suggested next ones and fit
# the zoo's training budget); *can ISI or CLS centrality serve as a training signal* (the zoo's
# intermediate checkpoints at 5% and 25% of training allow tracking both across training). A
# theory for the 0.004-0.009 band needs more than measurement.
