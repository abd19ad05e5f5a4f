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


def myst_table(frame: pd.DataFrame, caption: str, name: str, floatfmt: str = ".4g") -> Markdown:
    """A numbered, referenceable MyST table (rendered by MyST-NB from the cell's output).

    With a fixed-point ``floatfmt`` (".1f") the values are rounded by pandas first, so the table
    shows the digits ``frame.round(n)`` prints: 68.35 is 68.4 in both (string formatting of the
    binary float would give 68.3)."""
    if "`" in caption:  # CommonMark: a backtick fence's opening line may not contain backticks
        raise ValueError(f"table {name!r}: the caption sits on the opening line of a ``` fence, "
                         "where a backtick (e.g. a {numref} role) ends the table; put the "
                         f"reference in the text instead. Caption: {caption!r}")
    cells = [str(c) for c in frame.columns] + [v for v in frame.to_numpy().ravel() if isinstance(v, str)]
    if any("|" in cell for cell in cells):  # tabulate does not escape the column separator
        raise ValueError(f"table {name!r}: a column name or cell contains '|', which splits a "
                         f"Markdown table's cell; rename it. Columns: {list(frame.columns)}")
    fixed_point = re.fullmatch(r"\.(\d+)f", floatfmt)
    if fixed_point:
        frame = frame.round(int(fixed_point.group(1)))
    body = frame.to_markdown(index=False, floatfmt=floatfmt)
    return Markdown(f"```{{table}} {caption}\n:name: {name}\n\n{body}\n```\n")


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
