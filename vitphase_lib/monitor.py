"""The training-time monitor: the book's diagnostics on a fixed probe set, logged as a model trains.

Call a :class:`Monitor` from any training loop::

    monitor = Monitor(probe_images, probe_labels, log="runs/vit/monitor.csv", every=500)
    for step, (x, y) in enumerate(loader):
        ...
        monitor(model, step=step, epoch=epoch)
    monitor.plot()

Each call runs the same streaming pass as the book (:func:`vitphase_lib.analysis.run_pass`) on
the probe images, in ``eval()`` mode without gradients, restores the model's mode, and appends
tidy rows (step, epoch, layer, block, metric, value) to the log, rewritten atomically: a training
killed mid-epoch keeps every row it had logged.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from .analysis import PassConfig, run_pass
from .capture import patch_positional_embedding, vit_layout
from .io import atomic_write_bytes
from .layers import block_number
from .metrics import TokenGeometry, Top1, pe_dominance_ratio
from .metrics.attention import AttentionGraph

DEFAULT_METRICS = ("similarity", "attention", "pe", "top1")
OPTIONAL_METRICS = ("isi", "probe")
COLUMNS = ["step", "epoch", "layer", "block", "metric", "value"]


class Monitor:
    """Diagnostics of a fixed probe set, logged during training.

    Args:
        probe_images: preprocessed images, a tensor (n, C, H, W), always the same ones.
        probe_labels: their labels (n,), or None: then ``top1`` and ``probe`` are skipped.
        log: a ``.csv`` or ``.parquet`` file the rows are written to (atomically, after every
            evaluation; rows already there are kept), or None to keep them in memory only.
        every: evaluate at steps that are multiples of ``every``; other calls return at once.
        metrics: any of ``similarity`` (centered and raw token similarity per layer),
            ``attention`` (CLS centrality and ACI per block), ``pe`` (PE Dominance Ratio),
            ``top1`` (the model's top-1 on the probe set) - the defaults - and the costlier
            ``isi`` (InfoX_self, InfoX_all, ISI per layer: decoders fitted on the first half of
            the probe set, scored on the second) and ``probe`` (linear-probe top-1 of the mean
            patch token per layer, fitted and scored the same way).
        aci_images: how many probe images enter the ACI (|lambda_2| per image and block).
        infox_dims: principal components in the InfoX decoders (``isi``).
        batch_size: images per forward pass.
    """

    def __init__(self, probe_images: torch.Tensor, probe_labels: torch.Tensor | None = None, *,
                 log: str | Path | None = None, every: int = 1,
                 metrics: Sequence[str] = DEFAULT_METRICS, aci_images: int = 32,
                 infox_dims: int = 8, batch_size: int = 256):
        unknown = sorted(set(metrics) - set(DEFAULT_METRICS) - set(OPTIONAL_METRICS))
        if unknown:
            raise ValueError(f"unknown monitor metric(s) {unknown}; choose from "
                             f"{list(DEFAULT_METRICS + OPTIONAL_METRICS)}")
        if not isinstance(probe_images, torch.Tensor) or probe_images.ndim != 4:
            raise TypeError("probe_images must be a tensor of shape (n, channels, height, width)")
        if probe_labels is not None and len(probe_labels) != len(probe_images):
            raise ValueError(f"{len(probe_labels)} probe labels for {len(probe_images)} probe images")
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        needs_halves = {"isi", "probe"} & set(metrics)
        if needs_halves and len(probe_images) < 16:
            raise ValueError(f"{sorted(needs_halves)} fit on half of the probe set and score on the "
                             f"other: give at least 16 probe images, not {len(probe_images)}")
        self.images = probe_images.detach().cpu()
        self.labels = None if probe_labels is None else torch.as_tensor(probe_labels).long().cpu()
        self.metrics = tuple(m for m in (*DEFAULT_METRICS, *OPTIONAL_METRICS) if m in metrics)
        if self.labels is None:
            self.metrics = tuple(m for m in self.metrics if m not in ("top1", "probe"))
        self.every, self.aci_images, self.infox_dims = every, aci_images, infox_dims
        self.batch_size = batch_size
        self.log = None if log is None else Path(log)
        if self.log is not None and self.log.suffix not in (".csv", ".parquet"):
            raise ValueError(f"monitor log must be a .csv or .parquet file, got {self.log}")
        self._rows = read_log(self.log) if self.log is not None and self.log.is_file() else _empty()

    # ------------------------------------------------------------------ the log
    @property
    def rows(self) -> pd.DataFrame:
        """Every row logged so far (step, epoch, layer, block, metric, value)."""
        return self._rows.copy()

    def truncate(self, step: int) -> None:
        """Forget rows logged after ``step`` (a resumed training recomputes them)."""
        self._rows = self._rows[self._rows.step <= step].reset_index(drop=True)
        self._write()

    def _write(self) -> None:
        if self.log is None:
            return
        buffer = io.BytesIO()
        if self.log.suffix == ".parquet":
            self._rows.to_parquet(buffer, index=False)
        else:
            self._rows.to_csv(buffer, index=False, float_format="%.9g")
        atomic_write_bytes(buffer.getvalue(), self.log)

    # ------------------------------------------------------------------ evaluation
    def __call__(self, model: torch.nn.Module, step: int, epoch: float | None = None,
                 force: bool = False) -> pd.DataFrame:
        """Evaluate ``model`` when ``step`` is a multiple of ``every`` (or ``force``); returns the
        new rows (none when skipped or when ``step`` is already logged)."""
        if not force and step % self.every:
            return _empty()
        if len(self._rows) and (self._rows.step == step).any():
            return _empty()
        was_training = model.training
        try:
            values = self.evaluate(model)
        finally:
            model.train(was_training)
        new = values.assign(step=int(step), epoch=math.nan if epoch is None else float(epoch))[COLUMNS]
        self._rows = new if not len(self._rows) else pd.concat([self._rows, new], ignore_index=True)
        self._write()
        return new

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module) -> pd.DataFrame:
        """The metrics of ``model`` on the probe set, as rows (layer, block, metric, value)."""
        layout = vit_layout(model)
        device = next(model.parameters()).device
        config = PassConfig(batch_size=self.batch_size, device=str(device), progress=False)
        labels = self.labels if self.labels is not None else torch.zeros(len(self.images), dtype=torch.long)
        dataset = torch.utils.data.TensorDataset(self.images, labels)
        geometry, top1 = TokenGeometry(layout), Top1(layout)
        attention = AttentionGraph(layout, aci_max_images=self.aci_images)
        wanted = set(self.metrics)
        accumulators = [geometry]
        accumulators += [top1] if "top1" in wanted else []
        accumulators += [attention] if "attention" in wanted else []
        run_pass(model, dataset, accumulators, config, desc="monitor")
        rows = []
        per_layer = geometry.result()
        if "similarity" in wanted:
            for metric in ("centered_similarity", "raw_similarity"):
                rows += [_row(layer, metric, value) for layer, value in zip(per_layer.layer, per_layer[metric])]
        if "attention" in wanted:
            table = attention.result()
            for metric in ("cls_centrality", "aci"):
                rows += [_row(str(b), metric, v) for b, v in zip(table.block, table[metric])
                         if not (metric == "cls_centrality" and not layout.has_cls)]
        if "pe" in wanted and getattr(model, "pos_embed", None) is not None:
            raw_norm = float(per_layer.loc[per_layer.layer == "raw", "mean_token_norm"].iloc[0])
            rows.append(_row("model", "pe_dominance_ratio",
                             pe_dominance_ratio(patch_positional_embedding(model).detach(), raw_norm)))
        if "top1" in wanted:
            rows.append(_row("model", "top1", float(top1.result().top1.iloc[0])))
        if wanted & {"isi", "probe"}:
            rows += self._held_out(model, dataset, config, wanted)
        return pd.DataFrame(rows, columns=["layer", "block", "metric", "value"])

    def _held_out(self, model, dataset, config, wanted) -> list[dict]:
        """ISI and linear probes, by the book's own sweeps (:func:`analysis.full_analysis_tables`):
        fitted on the first half of the probe set, scored on the second."""
        from .analysis import full_analysis_tables
        half = len(dataset) // 2
        fit_set = torch.utils.data.Subset(dataset, range(half))
        score_set = torch.utils.data.Subset(dataset, range(half, len(dataset)))
        metrics = tuple(name for key, name in (("isi", "scrambling"), ("probe", "probes")) if key in wanted)
        tables = full_analysis_tables(model, fit_set, fit_set, score_set, num_classes=1, config=config,
                                      metrics=metrics, has_labels=self.labels is not None,
                                      infox_dims=self.infox_dims, desc="monitor")
        rows = []
        if "scrambling" in tables:
            table = tables["scrambling"]
            for metric in ("infox_self", "infox_all", "isi"):
                rows += [_row(layer, metric, value) for layer, value in zip(table.layer, table[metric])]
        if "probes" in tables:
            probes = tables["probes"][tables["probes"].feature == "mean"]
            rows += [_row(layer, "probe_top1", value) for layer, value in zip(probes.layer, probes.probe_top1)]
        return rows

    # ------------------------------------------------------------------ figures
    def plot(self, metrics: Sequence[str] | None = None):
        """Every logged metric against training step (one panel per metric, a line per layer or
        block, darker for deeper ones); returns the matplotlib figure."""
        return plot_log(self._rows, metrics)


def _row(layer: str, metric: str, value: float) -> dict:
    number = block_number(layer)
    block = math.nan if number is None else number
    return {"layer": layer, "block": block, "metric": metric, "value": float(value)}


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("epoch", "block", "value") else
                                      "int64" if c == "step" else "object") for c in COLUMNS})


def read_log(path: str | Path) -> pd.DataFrame:
    """A monitor log (.csv or .parquet) as a table (step, epoch, layer, block, metric, value)."""
    path = Path(path)
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"layer": str})
    missing = set(COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{path} is not a monitor log: it lacks the column(s) {sorted(missing)}")
    return frame[COLUMNS]


def plot_log(rows: pd.DataFrame, metrics: Sequence[str] | None = None):
    """One panel per metric of a monitor log against training step."""
    import matplotlib.pyplot as plt
    metrics = list(dict.fromkeys(rows.metric)) if metrics is None else list(metrics)
    if not metrics:
        raise ValueError("the monitor log is empty: call the monitor during training first")
    columns = min(3, len(metrics))
    lines = math.ceil(len(metrics) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.2 * lines), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        table = rows[rows.metric == metric]
        layers = list(dict.fromkeys(table.layer))
        colours = plt.cm.viridis([i / max(1, len(layers) - 1) for i in range(len(layers))])
        for layer, colour in zip(layers, colours):
            curve = table[table.layer == layer].sort_values("step")
            ax.plot(curve.step, curve.value, color=colour, marker=".", lw=1,
                    label=layer if len(layers) <= 4 or layer in (layers[0], layers[-1]) else None)
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel("training step")
        if len(layers) > 1:
            ax.legend(fontsize=7, title="layer", title_fontsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.tight_layout()
    return fig
