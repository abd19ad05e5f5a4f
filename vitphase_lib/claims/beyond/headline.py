"""The headline numbers of every analysed model, one row each, and the seed-to-seed spread every
comparison of the "Beyond the paper" chapters is judged against (Methods, 'Beyond the paper')."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ... import layers
from ..c1_phases import phase_verdicts
from ..c4_scrambling import isi_summary
from ..c5_collapse_tradeoff import readout_rows, tradeoff_layers

# (column, label, higher is better) of the numbers compared against the seed spread; None: no
# better direction (a description of the curve, not a quality)
HEADLINE = (
    ("top1", "test top-1 (%)", True),
    ("pe_dominance_ratio", "PE Dominance Ratio", None),
    ("cliff_drop_pe", "Cliff (drop of S to the PE layer)", None),
    ("plateau_length", "Plateau length (blocks)", None),
    ("climb_rise", "Climb rise", None),
    ("ccc_late_x_uniform", "CLS centrality, last third (x uniform)", False),
    ("aci_late", "ACI, last third", True),
    ("nc1", "NC1 (readout)", False),
    ("nc2", "NC2 (readout)", False),
    ("nc3", "NC3 (readout)", False),
    ("nc4", "NC4 (readout)", False),
    ("isi_min", "ISI min", None),
    ("isi_max", "ISI max", None),
    ("tradeoff_block", "trade-off block", None),
)
LABELS = {column: label for column, label, _ in HEADLINE}
BETTER_HIGHER = {column: better for column, _, better in HEADLINE}


def late_blocks(blocks: int) -> list[int]:
    """The last third of a model's blocks (at least two): where the hub variants intervene."""
    from ...models import late_block_count
    return list(range(blocks - late_block_count(blocks) + 1, blocks + 1))


MIN_BLOCKS = 3  # the phase segmentation needs at least three blocks


def phases_where_defined(per_layer: pd.DataFrame, by: tuple[str, ...] = ("model",),
                         column: str = "centered_similarity") -> pd.DataFrame:
    """:func:`~vitphase_lib.metrics.phase_table`, with a row of NaN (but for ``blocks`` and the
    Cliff, which needs only raw and pe) for the curves too short to segment (fewer than three
    blocks: the shallowest depth variants)."""
    from ...metrics import phase_table
    counts = per_layer[layers.blocks_only(per_layer.layer)].groupby(list(by), sort=False).layer.count()
    short = counts[counts < MIN_BLOCKS]
    keys = per_layer.set_index(list(by)).index
    long_enough = per_layer[~keys.isin(short.index)]
    frames = [phase_table(long_enough, column, by=by)] if len(long_enough) else []
    if len(short):
        rows = short.rename("blocks").reset_index()
        values = per_layer.set_index([*by, "layer"])[column]
        rows["cliff_drop_pe"] = [values[(*_key(row, by), layers.RAW)] - values[(*_key(row, by), layers.PE)]
                                 for row in rows.itertuples(index=False)]
        frames.append(rows)
    table = pd.concat(frames, ignore_index=True)
    order = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    position = table[list(by)].apply(lambda row: order[row.iloc[0] if len(by) == 1 else tuple(row)], axis=1)
    return table.iloc[position.argsort(kind="stable")].reset_index(drop=True)


def _key(row, by) -> tuple:
    return tuple(getattr(row, column) for column in by)


def phase_presence(phases: pd.DataFrame) -> pd.DataFrame:
    """:func:`~vitphase_lib.claims.phase_verdicts` (Cliff, Plateau, Climb present?), left
    undefined (NA) where the curve is too short to segment; a Cliff needs only raw and pe."""
    verdicts = phase_verdicts(phases).astype(object)
    short = (phases.blocks < MIN_BLOCKS).to_numpy()
    verdicts.loc[short, ["plateau", "climb"]] = pd.NA
    return verdicts


def headline_table(per_layer: pd.DataFrame, summary: pd.DataFrame, attention: pd.DataFrame,
                   collapse: pd.DataFrame, scrambling: pd.DataFrame, probes: pd.DataFrame,
                   top1: Mapping[str, float], isi_thresholds: tuple[float, float] = (0.004, 0.02),
                   tradeoff_fraction: float = 0.95) -> pd.DataFrame:
    """One row per model of the stacked analysis tables: its test top-1 (``top1``, as trained),
    phases, PE Dominance Ratio, hub and consensus in the last third of the blocks, final Neural
    Collapse of the readout feature, ISI range and trade-off block."""
    phases = phases_where_defined(per_layer)
    frame = phases.merge(phase_presence(phases), on="model", how="left", validate="1:1")
    frame = frame.merge(summary[["model", "pe_norm", "pe_dominance_ratio"]], on="model", how="left",
                        validate="1:1")
    late = []
    for model, rows in attention.groupby("model", sort=False):
        rows = rows.set_index("block")
        last = int(rows.index.max())
        blocks = late_blocks(last)
        uniform = float(rows.uniform_baseline.iloc[0])
        late.append({"model": model,
                     "ccc_late_x_uniform": float(rows.cls_centrality.loc[blocks].mean()) / uniform,
                     "ccc_last_x_uniform": float(rows.cls_centrality.loc[last]) / uniform,
                     "aci_late": float(rows.aci.loc[blocks].mean()), "aci_last": float(rows.aci.loc[last])})
    frame = frame.merge(pd.DataFrame(late), on="model", how="left", validate="1:1")
    final = readout_rows(collapse[collapse.layer == layers.HEAD])
    frame = frame.merge(final[["model", "feature", "nc1", "nc2", "nc3", "nc4"]], on="model", how="left",
                        validate="1:1")
    frame = frame.merge(isi_summary(scrambling, *isi_thresholds)[["model", "isi_min", "isi_max",
                                                                 "regime_at_peak"]], on="model", how="left",
                        validate="1:1")
    trade = tradeoff_layers(probes, tradeoff_fraction)
    frame = frame.merge(trade[["model", "tradeoff_block", "tradeoff_depth"]], on="model", how="left",
                        validate="1:1")
    frame.insert(1, "top1", frame.model.map(top1).astype(float))
    return frame


def headline_metrics(study) -> pd.DataFrame:
    """:func:`headline_table` of every model of a study (the variant study of
    :meth:`~vitphase_lib.study.Study.variant_study`), from its cached analyses."""
    return headline_table(*(study.collect("analysis", table) for table in
                            ("per_layer", "summary", "attention", "collapse", "scrambling", "probes")),
                          {model: study.final_top1(model) for model in study.models},
                          study.isi_thresholds, study.tradeoff_fraction)


def rows_of(headline: pd.DataFrame, models) -> pd.DataFrame:
    """The headline rows of those of ``models`` it holds, in the order of ``models``."""
    held = set(headline.model)
    return headline.set_index("model").loc[[m for m in models if m in held]].reset_index()


def seed_models(models, variants: Mapping) -> list[str]:
    """The models that differ only by their training seed: the seed variants and their base."""
    seeds = [m for m in models if m in variants and variants[m].group == "seed"]
    return [variants[seeds[0]].base, *seeds] if seeds else []


def seed_spread(headline: pd.DataFrame, seeds: list[str]) -> pd.Series:
    """Per headline number, its range (max - min) over the models ``seeds`` that differ only by
    seed; NaN with fewer than two of them."""
    columns = [c for c in LABELS if c in headline]
    rows = rows_of(headline, seeds).set_index("model")[columns]
    if len(rows) < 2:
        return pd.Series(np.nan, index=columns)
    return rows.astype(float).max() - rows.astype(float).min()


def spread_table(headline: pd.DataFrame, seeds: list[str]) -> pd.DataFrame:
    """The seed models' headline numbers side by side with their spread (range) and the spread
    relative to the mean magnitude."""
    columns = [c for c in LABELS if c in headline]
    rows = rows_of(headline, seeds).set_index("model")[columns]
    seeds = list(rows.index)
    values = rows.astype(float).T
    values.insert(0, "quantity", [LABELS[c] for c in columns])
    values["spread"] = values[seeds].max(axis=1) - values[seeds].min(axis=1)
    values["relative_spread"] = values.spread / values[seeds].mean(axis=1).abs()
    return values.reset_index(drop=True)


def compare(value: float, reference: float, spread: float, higher_is_better: bool | None = True) -> str:
    """'better', 'worse' (by more than the seed spread, in the quantity's better direction;
    'higher' / 'lower' where it has none), 'within' (the spread), or 'unknown' (no spread, or a
    spread of 0)."""
    if any(pd.isna(v) for v in (value, reference, spread)) or spread == 0:
        return "unknown"  # no seeds, or seeds that agree exactly: no scale to judge a difference by
    difference = value - reference
    if abs(difference) <= spread:
        return "within"
    if higher_is_better is None:
        return "higher" if difference > 0 else "lower"
    return "better" if (difference > 0) == higher_is_better else "worse"


def points_of_spread(value: float) -> str:
    """The seed spread of top-1 in words: '0.42 points', or 'n/a (no seeds)'."""
    return "n/a (no seeds)" if pd.isna(value) else f"{value:.2f} points"


def in_words(value: float, reference: float, spread: float, digits: int = 2) -> str:
    """'84.1 vs 85.0 (-0.9; seed spread 0.4: exceeds it)'."""
    if pd.isna(value) or pd.isna(reference):
        return "n/a"
    difference = value - reference
    tail = ("no seed spread" if pd.isna(spread) or spread == 0 else
            f"seed spread {spread:.{digits}f}: {'exceeds it' if abs(difference) > spread else 'within it'}")
    return f"{value:.{digits}f} vs {reference:.{digits}f} ({difference:+.{digits}f}; {tail})"


def group_models(variant_names, variants: Mapping, group: str) -> list[str]:
    """The variants of one experiment (``group``) among ``variant_names``, each preceded by its
    base the first time the base appears (pooling has two bases)."""
    chosen = []
    for name in variant_names:
        if variants[name].group == group:
            chosen += [m for m in (variants[name].base, name) if m not in chosen]
    return chosen
