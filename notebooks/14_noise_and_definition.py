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
# (chap-noise)=
# # How much is noise, and how much is definition?
#
# Two things could make a difference between models look like a mechanism when it is not one. The
# first is noise: retrained with another seed, the same model lands elsewhere. The base was also
# trained with other seeds; the range of each headline number over them, the *seed spread*
# ({numref}`tab-t19`), is what every comparison of the preceding chapters is judged against. The
# second is definition: the Information Scrambling Index is a probe, ridge decoders of a chosen
# size, and the paper names validating it as its first next check. This chapter re-measures the ISI
# under other decoder budgets ({numref}`fig-f13`, {numref}`tab-t20`) and sets its reconstruction
# proxy beside an independent measure of what a layer keeps of the raw patch embeddings, linear CKA
# ({numref}`fig-f14`, {numref}`tab-t21`): is the paper's 0.004-0.009 band a property of the models
# or of the probe?

# %% tags=["parameters"]
profile = "default"  # base parameter set: smoke, default or paper (profiles/<name>.yaml)
overrides = {}  # any parameter of vitphase_lib.study.Study, e.g. {"variant_settings": {"n_images": 1000}}

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from vitphase_lib import claims, plotting
from vitphase_lib.claims import beyond
from vitphase_lib.claims.beyond import noise
from vitphase_lib.study import Study

study = Study.from_notebook(profile, overrides)
ctx = beyond.Context(study)
models = noise.noise_models(ctx) if ctx.has_variants else []
display(Markdown(ctx.describe()))

# %% [markdown]
# ## The seed spread

# %%
spread = beyond.spread_table(ctx.headline, ctx.seeds) if ctx.seeds else None
display(plotting.myst_table(spread, "Headline numbers of the base and its seed variants, their "
                            "spread (max - min) and the spread relative to their mean magnitude.",
                            "tab-t19", missing=ctx.missing("seed variants")))

# %%
# NBVAL_CHECK_OUTPUT
print(spread.round(4).to_string(index=False) if spread is not None else "no seed variants")

# %% [markdown]
# ## The ISI under other decoder budgets
#
# Each line of {numref}`fig-f13` is one decoder budget; the band is the paper's ViT-B range.

# %%
display(Markdown(noise.describe_budgets(ctx.vstudy) if models else "No variant study in this profile."))

# %%
budget = noise.retention(ctx, "isi_budget") if models else None
summary = noise.budget_summary(budget, study.isi_thresholds) if budget is not None else None

# %% mystnb={"figure": {"caption": "ISI per block under every decoder budget (colour: principal components; line style: ridge, solid = cross-validated), one panel per model; shaded: the paper's ViT-B band.", "name": "fig-f13"}}
if budget is not None:
    blocks = budget[budget.layer.str.isdigit()].assign(block=lambda f: f.layer.astype(int))
    fig, axes = plotting.model_panels(models)
    dims = sorted(blocks.infox_dims.unique())
    colours = dict(zip(dims, plt.cm.viridis([i / max(1, len(dims) - 1) for i in range(len(dims))])))
    styles = dict(zip(sorted(blocks.ridge.astype(str).unique(), key=lambda r: (r != "cv", r)), ["-", "--", ":", "-."]))
    for ax, model in zip(axes, models):
        for (k, ridge), rows in blocks[blocks.model == model].groupby(["infox_dims", "ridge"], sort=False):
            ax.plot(rows.block, rows.isi, color=colours[k], ls=styles[str(ridge)], lw=1,
                    label=f"k={k}, ridge {ridge}")
        ax.axhspan(*claims.PAPER["isi_band_vit_b"], color="grey", alpha=0.15)
        ax.set_xlabel("block")
    axes[0].set_ylabel("ISI")
    axes[-1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    plt.show()
else:
    plotting.not_drawn(ctx.missing("seed or depth variants"))

# %%
display(plotting.myst_table(summary, "The ISI under each decoder budget (principal components, "
                            "ridge): range over the blocks, the regime of its peak, and blocks in "
                            "the paper's ViT-B band.", "tab-t20",
                            missing=ctx.missing("seed or depth variants")))

# %%
# NBVAL_CHECK_OUTPUT
print(summary.round(4).to_string(index=False) if summary is not None else "no decoder-budget sweep")

# %% [markdown]
# ## The proxy beside linear CKA
#
# Linear CKA between a layer's patch tokens and the raw patch embeddings, each patch a sample, asks
# directly how much of the raw embeddings' linear structure a layer keeps; with each position's
# mean token removed from both it leaves out what the position alone explains, as InfoX_self's
# per-position intercept does. {numref}`fig-f14` plots both against the block.

# %%
cka = noise.retention(ctx, "cka") if models else None
scrambling = ctx.vstudy.collect("analysis", "scrambling") if models else None
agreement = noise.retention_agreement(cka, scrambling) if cka is not None else None

# %% mystnb={"figure": {"caption": "Per model: InfoX_self (the ISI's reconstruction proxy, solid) and linear CKA with the raw patch embeddings (dashed: pooled; dotted: position means removed) per layer.", "name": "fig-f14"}}
if cka is not None:
    fig, axes = plotting.model_panels(models)
    merged = cka.merge(scrambling, on=["model", "layer"])
    merged = merged[merged.layer != "head"]
    for ax, model in zip(axes, models):
        rows = plotting.with_depth_axes(merged[merged.model == model]).sort_values("block")
        ax.plot(rows.block, rows.infox_self, "-o", ms=3, label="InfoX_self")
        ax.plot(rows.block, rows.cka, "--", label="CKA")
        ax.plot(rows.block, rows.cka_positional, ":", label="CKA, position means removed")
        ax.set_xlabel("block (-1 = raw, 0 = + PE)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    plt.show()
else:
    plotting.not_drawn(ctx.missing("seed or depth variants"))

# %%
display(plotting.myst_table(agreement, "Spearman rank correlation across the layers (PE layer and "
                            "blocks) between the reconstruction proxy and linear CKA, per model.",
                            "tab-t21", missing=ctx.missing("seed or depth variants")))

# %%
# NBVAL_CHECK_OUTPUT
print(agreement.round(3).to_string(index=False) if agreement is not None else "no CKA")

# %% [markdown]
# ## Answers

# %%
# NBVAL_CHECK_OUTPUT
answers = noise.answers(ctx)
for answer in answers:
    print(f"{answer.question} {answer.verdict}: {answer.reason}")

# %%
display(Markdown("\n\n".join(f"{a.headline(study.profile)}\n\n{a.found}." for a in answers)))
