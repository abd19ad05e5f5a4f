"""Plotting and table helpers shared by the chapters (seaborn / matplotlib, MyST tables)."""
from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown

sns.set_theme(context="notebook", style="whitegrid")


def with_depth_axes(per_layer: pd.DataFrame) -> pd.DataFrame:
    """Add ``block`` (0 = raw, 1 = pe shown at 0.5, b = block b; the head at L + 0.5) and
    ``normalized_depth`` (block / L) to a per-layer table with ``model`` and ``layer`` columns."""
    frame = per_layer.copy()
    blocks = frame.groupby("model")["layer"].transform(
        lambda s: pd.to_numeric(s, errors="coerce").max())
    numeric = pd.to_numeric(frame["layer"], errors="coerce")
    special = {"raw": -1.0, "pe": 0.0}
    position = numeric.where(numeric.notna(), frame["layer"].map(special))
    position = position.where(frame["layer"] != "head", blocks + 0.5)
    frame["block"] = position
    frame["normalized_depth"] = position / blocks
    return frame


def layer_curves(per_layer: pd.DataFrame, y: str, ylabel: str, axes=None, hue: str = "model",
                 include_head: bool = False, logy: bool = False, title: str | None = None):
    """Two panels: ``y`` against block index and against normalized depth, one line per model."""
    frame = with_depth_axes(per_layer)
    if not include_head:
        frame = frame[frame.layer != "head"]
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


def verdict(holds: bool | None) -> str:
    return {True: "holds", False: "does not hold", None: "not testable here"}[holds]


def fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def layer_order(layers) -> list[str]:
    """Layer names in network order: raw, pe, 1..L, head."""
    rank = {"raw": -2, "pe": -1, "head": 10**9}
    return sorted(set(layers), key=lambda layer: rank[layer] if layer in rank else int(layer))


def by_layer(per_layer: pd.DataFrame, value: str, models) -> pd.DataFrame:
    """A layer x model table of one per-layer value, in network order."""
    table = per_layer.pivot(index="layer", columns="model", values=value)
    return table.loc[layer_order(table.index), list(models)]
