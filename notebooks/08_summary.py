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
display(Markdown(claims.summary.describe_outcome(checks, configs)))

# %%
# What each departure would point to, shown only for the claims that do not hold in this build
# (the readings are claims.summary.READINGS).
display(Markdown(claims.summary.describe_departures(checks)))

# %% [markdown]
# ## Beyond the paper: its open questions (C6)
#
# The paper leaves open whether its correlations are causal, whether its diagnostics could steer
# training, and whether its Scrambling Index measures what it says. The chapters of the next part
# run the experiments on a variant zoo trained for them (one change per model, same data, recipe
# and seed) and judge every difference against the seed-to-seed spread. {numref}`tab-c6` collects
# their answers.

# %%
answers = claims.beyond.all_answers(study)
c6 = pd.DataFrame([a.as_row() for a in answers])
plotting.myst_table(c6, "C6, the paper's open questions: the experiment, what this build found, "
                    "where it is shown, and the verdict (answered yes, answered no, or "
                    "inconclusive within the seed spread or the bootstrap interval).", "tab-c6")

# %%
# NBVAL_CHECK_OUTPUT
for a in answers:
    print(f"{a.question} {a.verdict}")
