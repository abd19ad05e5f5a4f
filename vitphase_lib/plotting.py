"""Plotting and table helpers shared by the chapters (seaborn / matplotlib, MyST tables)."""
from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown

from . import layers

sns.set_theme(context="notebook", style="whitegrid")


def with_depth_axes(per_layer: pd.DataFrame) -> pd.DataFrame:
    """Add ``block`` (the x position of :func:`vitphase_lib.layers.position`: raw -1, pe 0, block
    b at b, the head at L + 0.5) and ``normalized_depth`` (block / L) to a per-layer table with
    ``model`` and ``layer`` columns; L is each model's highest block in the table."""
    frame = per_layer.copy()
    blocks = layers.depth_of_each_row(frame)
    frame["block"] = [layers.position(layer, depth) for layer, depth in zip(frame["layer"], blocks)]
    frame["normalized_depth"] = frame["block"] / blocks
    return frame


def layer_curves(per_layer: pd.DataFrame, y: str, ylabel: str, axes=None, hue: str = "model",
                 include_head: bool = False, logy: bool = False, title: str | None = None):
    """Two panels: ``y`` against block index and against normalized depth, one line per model."""
    frame = with_depth_axes(per_layer)
    if not include_head:
        frame = frame[frame.layer != layers.HEAD]
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, x, xlabel in zip(axes, ("block", "normalized_depth"),
                             ("block (-1 = raw patches, 0 = + positional encoding)",
                              "normalized depth (block / L)")):
        sns.lineplot(data=frame, x=x, y=y, hue=hue, marker="o", ax=ax, markersize=4)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
    if title:
        axes[0].figure.suptitle(title)
    axes[0].figure.tight_layout()
    return axes


# The header a reader sees for each column the chapters show through myst_table: words, not
# identifiers, with the unit where there is one (blocks, %, minutes, multiples of the uniform
# share). The tables' data keep their snake_case names; only the rendered header changes.
COLUMN_LABELS = {
    # models and training (T1, T1b)
    "model": "Model", "variant": "Variant", "group": "Group", "base": "Base", "change": "Change",
    "depth": "Depth (blocks)", "width": "Width", "heads": "Heads", "patch": "Patch (px)",
    "tokens": "Tokens", "parameters": "Parameters", "test_images": "Test images",
    "test_top1": "Test top-1 (%)", "recorded_top1": "Recorded top-1 (%)",
    "trained_fraction": "Trained fraction", "train_minutes_recorded": "Training, recorded (min)",
    "train_minutes_idle_estimate": "Training, idle estimate (min)", "top1": "Top-1 (%)",
    # phases (T2, T3)
    "blocks": "Blocks", "layer": "Layer", "source": "Source", "floor": "Centering floor",
    "plateau_start": "Plateau start (block)", "climb_start": "Climb start (block)",
    "plateau_length": "Plateau length (blocks)", "climb_length": "Climb length (blocks)",
    "plateau_fraction": "Plateau share of depth", "cliff_slope": "Cliff slope (per block)",
    "plateau_slope": "Plateau slope (per block)", "climb_slope": "Climb slope (per block)",
    "centered_similarity": "Centered similarity", "raw_similarity": "Raw similarity",
    # positional encoding (T4, T5)
    "pe_norm": "PE norm", "raw_token_norm": "Raw token norm",
    "pe_dominance_ratio": "PE Dominance Ratio", "alpha": "PE scale α",
    "cliff_drop_pe": "Cliff: drop to PE", "cliff_drop_block1": "Cliff: drop to block 1",
    # attention graph (T6)
    "paper model": "Paper model", "cls_centrality": "CLS centrality",
    "ccc_first": "CLS centrality, first block", "ccc_mid": "CLS centrality, mid-Plateau",
    "ccc_last": "CLS centrality, last block", "pagerank_first": "[CLS] PageRank share, first block",
    "pagerank_last": "[CLS] PageRank share, last block", "aci_first": "ACI, first block",
    "aci_mid": "ACI, mid-Plateau", "aci_last": "ACI, last block", "late_spike": "Late spike",
    "incomplete_marginalization": "Incomplete marginalization",
    "paper ccc first / last": "Paper: CLS centrality first / last",
    "keep_hub": "Heads keeping the hub", "marginalize": "Heads marginalizing it",
    "most_central": "Most central head (× uniform)", "least_central": "Least central head (× uniform)",
    "head_averaged": "Heads averaged (× uniform)",
    # Neural Collapse (T7)
    "feature": "Feature", "nc1": "NC1", "nc2": "NC2", "nc3": "NC3", "nc4": "NC4",
    "equinorm": "Equinorm", "ncc_margin": "NCC margin", "classifier": "Classifier",
    "plateau_start_block": "Plateau start (block)", "climb_knot_block": "Climb knot (block)",
    "nc1_plateau_start": "NC1 at Plateau start", "nc1_climb_start": "NC1 at Climb knot",
    "nc1_last_block": "NC1 at last block",
    "plateau_decades_per_block": "NC1 on Plateau (decades per block)",
    "climb_decades_per_block": "NC1 over Climb (decades per block)",
    "forms_in_climb": "Forms in Climb",
    # scrambling (T8)
    "isi": "ISI", "isi_min": "ISI min", "isi_max": "ISI max", "isi_median": "ISI median",
    "peak_block": "Peak block", "regime_at_peak": "Regime at peak",
    "blocks_collapse": "Blocks in collapse", "blocks_controlled": "Blocks controlled",
    "blocks_chaotic": "Blocks chaotic", "blocks_in_vit_b_band": "Blocks in ViT-B band",
    "failure_signature": "Failure signature", "paper": "Paper",
    # trade-off (T9, T10)
    "best_probe_top1": "Best probe top-1 (%)", "threshold": "Threshold top-1 (%)",
    "tradeoff_block": "Trade-off block", "tradeoff_depth": "Trade-off depth (block / L)",
    "blocks after B": "Blocks after B", "depth after B": "Depth after B",
    # summary (T11)
    "claim": "Claim", "paper says": "Paper says", "this build measured": "This build measured",
    "holds here?": "Holds here?", "why": "Why",
    # beyond the paper (T12-T21, C6)
    "climb": "Climb", "climb_rise": "Climb rise", "readout": "Readout",
    "ccc_late_x_uniform": "CLS centrality, last third (× uniform)",
    "ccc_last_x_uniform": "CLS centrality, last block (× uniform)", "aci_late": "ACI, last third",
    "pe": "PE", "pe_scale": "Sin-cos scale", "cliff": "Cliff",
    "cliff_from": "Cliff from", "plateau_from": "Plateau from", "climb_from": "Climb from",
    "hub_marginalized_from": "Hub marginalized from", "isi_final_regime_from": "Final ISI regime from",
    "final_isi_regime": "Final ISI regime", "predictor": "Predictor", "models": "Models",
    "rho": "Spearman ρ", "fraction": "Fraction of training", "rho_low": "ρ, 5%", "rho_high": "ρ, 95%",
    "gain_low": "Gain in directed ρ over monitor top-1, 5%",
    "gain_high": "Gain in directed ρ over monitor top-1, 95%",
    "quantity": "Quantity", "spread": "Seed spread", "relative_spread": "Spread / mean magnitude",
    "infox_dims": "Principal components", "ridge": "Ridge", "isi_raw": "ISI of the raw layer", "layers": "Layers",
    "rho(infox_self, cka)": "ρ(InfoX self, CKA)",
    "rho(infox_self, cka_positional)": "ρ(InfoX self, CKA without position means)",
    "rho(infox_all, cka)": "ρ(InfoX all, CKA)",
    "rho(infox_all, cka_positional)": "ρ(InfoX all, CKA without position means)",
    "question": "Question", "experiment": "Experiment", "what this build found": "What this build found",
    "evidence": "Evidence", "verdict": "Verdict",
}
SNAKE_CASE = re.compile(r"[a-z]+(?:_[a-z]+)+")  # no digits: timm model names stay as they are


def column_label(name) -> str:
    """The header shown for a column: its entry in ``COLUMN_LABELS``; else, for a snake_case
    identifier of letters only, its words ("plateau_start" -> "plateau start"); else the name
    unchanged (model names as columns, ready-made headers such as "S(pe)"), because a model's
    name, e.g. ``vit_base_patch16_224``, must read as the name the reader passes to timm."""
    name = str(name)
    if name in COLUMN_LABELS:
        return COLUMN_LABELS[name]
    return name.replace("_", " ") if SNAKE_CASE.fullmatch(name) else name


def myst_table(frame: pd.DataFrame | None, caption: str, name: str, floatfmt: str = ".4g",
               missing: str = "") -> Markdown:
    """A numbered, referenceable MyST table (rendered by MyST-NB from the cell's output), its
    headers in words with units (:func:`column_label`). Without a ``frame`` (the build has no data
    for it) the table holds one cell, ``missing``: why, so that its number and the references to
    it stay.

    With a fixed-point ``floatfmt`` (".1f") the values are rounded by pandas first, so the table
    shows the digits ``frame.round(n)`` prints: 68.35 is 68.4 in both (string formatting of the
    binary float would give 68.3)."""
    if frame is None:
        frame = pd.DataFrame({"Not in this build": [missing or "no data"]})
    if "`" in caption:  # CommonMark: a backtick fence's opening line may not contain backticks
        raise ValueError(f"table {name!r}: the caption sits on the opening line of a ``` fence, "
                         "where a backtick (e.g. a {numref} role) ends the table; put the "
                         f"reference in the text instead. Caption: {caption!r}")
    cells = [str(c) for c in frame.columns] + [v for v in frame.to_numpy().ravel() if isinstance(v, str)]
    if any("|" in cell for cell in cells):  # tabulate does not escape the column separator
        raise ValueError(f"table {name!r}: a column name or cell contains '|', which splits a "
                         f"Markdown table's cell; rename it. Columns: {list(frame.columns)}")
    frame = frame.rename(columns=column_label)
    fixed_point = re.fullmatch(r"\.(\d+)f", floatfmt)
    if fixed_point:
        frame = frame.round(int(fixed_point.group(1)))
    body = frame.to_markdown(index=False, floatfmt=floatfmt)
    return Markdown(f"```{{table}} {caption}\n:name: {name}\n\n{body}\n```\n")


def not_drawn(why: str) -> None:
    """Where a figure would be when the build has nothing to draw in it: the reason, in the
    figure's place (so that its number and the references to it stay)."""
    fig, ax = plt.subplots(figsize=(7, 0.7))
    ax.axis("off")
    ax.text(0.5, 0.5, f"Not in this build: {why}", ha="center", va="center", fontsize=10)
    plt.show()


def fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def by_layer(per_layer: pd.DataFrame, value: str, models) -> pd.DataFrame:
    """A layer x model table of one per-layer value, in network order."""
    table = per_layer.pivot(index="layer", columns="model", values=value)
    return table.loc[layers.layer_order(table.index), list(models)]


def analysis_figures(tables: dict[str, pd.DataFrame], model: str) -> dict:
    """The chapters' figures for one model's tables (those present): similarity (F1), attention
    (F3; per head with an ``attention_heads`` table), collapse (F4), scrambling (F5) and tradeoff
    (F6). Returns name -> matplotlib figure."""
    figures = {}
    per_layer = tables["per_layer"].assign(model=model)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    frame = with_depth_axes(per_layer)
    for ax, column, label in zip(axes, ("centered_similarity", "raw_similarity"),
                                 ("centered similarity", "raw similarity")):
        ax.plot(frame.block, frame[column], marker="o", ms=4)
        ax.set(xlabel="block (-1 = raw patches, 0 = + positional encoding)", ylabel=label)
    fig.suptitle(f"{model}: token similarity per layer")
    fig.tight_layout()
    figures["similarity"] = fig
    if "attention" in tables:
        attention = tables["attention"]
        heads = tables.get("attention_heads")
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for ax, column, label in zip(axes, ("cls_centrality", "aci"),
                                     ("CLS centrality", "Attention Consensus Index")):
            if heads is not None:
                for head, curve in heads.groupby("head"):
                    ax.plot(curve.block, curve[column], lw=0.8, alpha=0.5, color="grey",
                            label="one head" if head == 1 else None)
            ax.plot(attention.block, attention[column], marker="o", ms=4, label="heads averaged")
            if column == "cls_centrality":
                ax.plot(attention.block, attention.uniform_baseline, ls="--", color="k", lw=0.8,
                        label="uniform share")
            ax.set(xlabel="block", ylabel=label)
            ax.legend(fontsize=8)
        fig.suptitle(f"{model}: attention graph per block")
        fig.tight_layout()
        figures["attention"] = fig
    if "collapse" in tables:
        collapse = with_depth_axes(tables["collapse"].assign(model=model))
        metrics = [c for c in ("nc1", "nc2", "nc3", "nc4") if c in collapse]
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.4), squeeze=False)
        for ax, metric in zip(axes[0], metrics):
            for feature, curve in collapse.groupby("feature"):
                ax.plot(curve.block, curve[metric], marker="o", ms=3, label=feature)
            ax.set(xlabel="block", title=metric.upper())
            if metric == "nc1":
                ax.set_yscale("log")
            ax.legend(fontsize=8)
        fig.suptitle(f"{model}: Neural Collapse per layer")
        fig.tight_layout()
        figures["collapse"] = fig
    if "scrambling" in tables:
        scrambling = with_depth_axes(tables["scrambling"].assign(model=model))
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for column, label in (("infox_self", "InfoX self"), ("infox_all", "InfoX all")):
            axes[0].plot(scrambling.block, scrambling[column], marker="o", ms=4, label=label)
        axes[0].set(xlabel="block", ylabel="held-out R^2")
        axes[0].legend(fontsize=8)
        axes[1].plot(scrambling.block, scrambling.isi, marker="o", ms=4)
        axes[1].set(xlabel="block", ylabel="Information Scrambling Index")
        fig.suptitle(f"{model}: information scrambling per layer")
        fig.tight_layout()
        figures["scrambling"] = fig
    if "probes" in tables and "scrambling" in tables:
        probes = tables["probes"].merge(tables["scrambling"][["layer", "isi"]], on="layer")
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for feature, curve in probes.groupby("feature"):
            ax.plot(curve.isi, curve.probe_top1, marker="o", ms=4, label=f"{feature} token probe")
        ax.set(xlabel="Information Scrambling Index", ylabel="probe top-1 (%)",
               title=f"{model}: information-task trade-off")
        ax.legend(fontsize=8)
        fig.tight_layout()
        figures["tradeoff"] = fig
    return figures


def against(frame: pd.DataFrame, x: str, columns: list[str], labels: dict | None = None,
            error: dict | None = None, logy: tuple[str, ...] = (), xlabel: str | None = None,
            hue: str | None = None, text: str | None = "model"):
    """One small panel per column of ``frame`` against ``x``, points joined in ``x`` order (one
    line per ``hue`` group), each point named by its ``text`` column where there is no hue.
    ``error``: column -> the seed spread, drawn as error bars of +- half of it."""
    labels, error = labels or {}, error or {}
    fig, axes = plt.subplots(1, len(columns), figsize=(3.1 * len(columns), 3.1), squeeze=False)
    groups = [(None, frame)] if hue is None else list(frame.groupby(hue, sort=False))
    for ax, column in zip(axes[0], columns):
        for name, group in groups:
            group = group.sort_values(x)
            spread = error.get(column)
            ax.errorbar(group[x], group[column], yerr=None if spread is None or pd.isna(spread) else spread / 2,
                        marker="o", ms=4, lw=1, capsize=3, label=name)
        ax.set_title(labels.get(column, column_label(column)), fontsize=9)
        ax.set_xlabel(xlabel or column_label(x), fontsize=8)
        if column in logy:
            ax.set_yscale("log")
        ax.tick_params(which="both", labelsize=7)  # after the scale: a log axis labels minor ticks too
    if hue is not None:
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def lines_by_model(table: pd.DataFrame, y: str, ylabel: str, models: list[str], ax=None,
                   normalized: bool = False, styles: dict | None = None, blocks_only: bool = False,
                   logy: bool = False):
    """One curve per model, in the order of ``models``, of a per-layer table (a ``layer``
    column: drawn against block or normalized depth, the head left out; ``blocks_only`` leaves
    out raw and pe too) or of a per-block one (a ``block`` column, such as ``attention``).
    ``styles``: model -> matplotlib keyword arguments (colour, dashes)."""
    frame = table[table.model.isin(models)]
    if "layer" in frame:
        frame = with_depth_axes(frame)
        frame = frame[layers.blocks_only(frame.layer) if blocks_only else frame.layer != layers.HEAD]
    ax = ax or plt.subplots(figsize=(5, 3.4))[1]
    x = "normalized_depth" if normalized else "block"
    for model in models:
        curve = frame[frame.model == model].sort_values(x)
        ax.plot(curve[x], curve[y], marker="o", ms=3, lw=1.2, label=model, **(styles or {}).get(model, {}))
    ax.set_xlabel("normalized depth (block / L)" if normalized else
                  "block" if blocks_only or "layer" not in frame else "block (-1 = raw, 0 = + PE)")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    return ax


def model_panels(models: list[str], sharey: bool = True):
    """A row of small panels, one per model, each titled with its name: (figure, axes)."""
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.4), sharey=sharey, squeeze=False)
    for ax, model in zip(axes[0], models):
        ax.set_title(model, fontsize=9)
    return fig, list(axes[0])
