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
# (chap-depth)=
# # Does depth hurt?
#
# The paper's title claim is *non-monotonic scaling*: the deeper ViT-L ends with worse geometry
# than ViT-B and reaches ViT-B's information-task trade-off about ten layers later (C5). With two
# pretrained models that differ in width as well as depth, depth cannot be isolated. The variant
# zoo can: the same width, data, recipe and seed, and only the number of blocks changed. This
# chapter measures top-1, final Neural Collapse, the phases, the ISI range and the trade-off block
# against depth ({numref}`fig-f7`, {numref}`tab-t12`), and puts the companion study's two
# MLP reductions beside their base ({numref}`tab-t13`). Every difference is judged against the
# seed-to-seed spread ({ref}`chap-noise`).

# %% tags=["parameters"]
profile = "default"  # base parameter set: smoke, default or paper (profiles/<name>.yaml)
overrides = {}  # any parameter of vitphase_lib.study.Study, e.g. {"variant_settings": {"n_images": 1000}}

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from vitphase_lib import plotting
from vitphase_lib.claims import beyond
from vitphase_lib.study import Study

study = Study.from_notebook(profile, overrides)
ctx = beyond.Context(study)
models = beyond.depth.depth_models(study.variants, ctx.registry) if ctx.has_variants else []
table = beyond.depth.depth_table(ctx.headline, models) if models else None
display(Markdown(ctx.describe()))

# %% [markdown]
# ## Top-1, geometry and the trade-off against depth
#
# {numref}`fig-f7` shows, against the number of blocks: test top-1 (error bars of plus or minus
# half the seed spread), final NC1 and NC2 of the readout feature, the Plateau length, and
# the trade-off block (the first block whose linear probe reaches 95% of the model's best) with
# the paper's offset of about ten blocks for twelve more as a dashed line of slope 0.83.

# %% mystnb={"figure": {"caption": "Against depth at fixed width: test top-1 (error bars: +- half the seed spread), final NC1 and NC2 of the readout feature, Plateau length, and trade-off block (dashed: the paper's slope of about 10 blocks per 12 added).", "name": "fig-f7"}}
if table is not None:
    fig = plotting.against(table, "blocks", ["top1", "nc1", "nc2", "plateau_length", "tradeoff_block"],
                           labels=beyond.LABELS, error={"top1": ctx.spread.top1},
                           logy=("nc1",), xlabel="depth (blocks)")
    fit = beyond.depth.offset_fit(table)
    ax = fig.axes[4]
    base_row = table.set_index("model").loc[beyond.depth.depth_base(study.variants, ctx.registry)]  # through the base
    xs = table.blocks.to_numpy(float)
    ax.plot(xs, base_row.tradeoff_block + beyond.depth.PAPER_SLOPE * (xs - base_row.blocks), "--", c="grey", lw=1)
    plt.show()
else:
    plotting.not_drawn(ctx.missing("depth variants"))

# %%
display(plotting.myst_table(table, "The depth sweep: test top-1, final NC1-NC4 of the readout "
                            "feature, Plateau length and whether there is a Climb, ISI range over "
                            "the blocks, and the trade-off block (also as a share of the depth).",
                            "tab-t12", missing=ctx.missing("depth variants")))

# %%
# NBVAL_CHECK_OUTPUT
print(table[["model", "blocks", "top1", "nc2", "plateau_length", "isi_max", "tradeoff_block"]]
      .round(4).to_string(index=False) if table is not None else "no depth variants")

# %% [markdown]
# ## Less MLP capacity
#
# The companion study (arXiv:2512.01059) found ViT-B/16's MLPs over-provisioned: halving their
# hidden width, or sharing one MLP between adjacent blocks, each removed a third of the parameters
# without costing top-1. {numref}`tab-t13` puts the two reductions of the base beside it.

# %%
mlp = beyond.headline.group_models(study.variants, ctx.registry, "mlp") if ctx.has_variants else []
mlp_table = beyond.depth.mlp_table(ctx.headline, mlp[0], mlp[1:], ctx.parameters(mlp)) if mlp else None
display(plotting.myst_table(mlp_table, "The base and its two MLP reductions: parameters, test "
                            "top-1, final NC1-NC4, ISI peak and trade-off block.", "tab-t13",
                            missing=ctx.missing("MLP variants")))

# %%
# NBVAL_CHECK_OUTPUT
print(mlp_table.round(4).to_string(index=False) if mlp_table is not None else "no MLP variants")

# %% [markdown]
# ## Answers

# %%
# NBVAL_CHECK_OUTPUT
answers = beyond.depth.answers(ctx)
for answer in answers:
    print(f"{answer.question} {answer.verdict}: {answer.reason}")

# %%
display(Markdown("\n\n".join(f"{a.headline(study.profile)}\n\n{a.found}." for a in answers)))
