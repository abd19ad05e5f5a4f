"""C1, Cliff-Plateau-Climb: every model shows the three phases, depth mostly lengthens the
Plateau, and (T3) the Cliff beside the paper's in units of the centering floor
(Methods, 'Cliff, Plateau, Climb')."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import layers
from .paper import PAPER, paper_name
from .verdict import ClaimCheck

# a Climb must rise by more than this share of the Cliff (S(raw) - S(pe)): tokens re-correlate
# visibly, not by what the last block happens to move
CLIMB_MIN_RISE = 0.1
# a smaller fall of S at the PE layer is float rounding: what a model without position embedding shows
CLIFF_MIN_DROP = 1e-6


def phase_verdicts(phases: pd.DataFrame) -> pd.DataFrame:
    """Per model (row of :func:`~vitphase_lib.metrics.phase_table`), whether it shows each phase:
    ``cliff`` (S drops when PE is added), ``plateau`` (at least a third of the blocks, flatter over
    its length than the drop at block 1) and ``climb`` (rising by more than ``CLIMB_MIN_RISE`` of
    the Cliff, over at most max(5, L/3) blocks)."""
    cliff = phases.cliff_drop_pe > CLIFF_MIN_DROP
    plateau = (phases.plateau_fraction >= 1 / 3) & (
        phases.plateau_slope.abs() * phases.plateau_length < phases.cliff_drop_block1.abs())
    climb = (phases.climb_slope > 0) & (phases.climb_rise > CLIMB_MIN_RISE * phases.cliff_drop_pe.abs()) & (
        phases.climb_length <= np.maximum(5, np.ceil(phases.blocks / 3)))
    return pd.DataFrame({"model": phases.model, "cliff": cliff, "plateau": plateau, "climb": climb})


def phase_blocks(phases_row, blocks: int) -> tuple[list[int], list[int]]:
    """Block numbers of the Plateau and of the Climb of one model's segmentation row (the
    Plateau starts at block 1 at the earliest: a Plateau from ``pe`` counts from block 1)."""
    start = layers.blocks_passed(phases_row.plateau_start)
    climb = layers.blocks_passed(phases_row.climb_start)
    plateau = list(range(max(1, start), climb + 1))
    return plateau, list(range(climb + 1, blocks + 1))


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def check_phases(phases: pd.DataFrame) -> ClaimCheck:
    """C1: a Cliff (S drops when PE is added), a long flat Plateau, and a short Climb at the end."""
    verdicts = phase_verdicts(phases)
    cliff, plateau, climb = verdicts.cliff, verdicts.plateau, verdicts.climb
    parts = [f"{row.model}: cliff {_yes(c)} ({row.cliff_drop_pe:+.4f}), "
             f"plateau {row.plateau_start}-{row.climb_start} ({row.plateau_length} blocks, "
             f"{_yes(p)}), climb {row.climb_length} blocks ({_yes(k)}, rise {row.climb_rise:+.4f})"
             for row, c, p, k in zip(phases.itertuples(), cliff, plateau, climb)]
    holds = bool((cliff & plateau & climb).all())
    missing = [f"no {name} in {', '.join(phases.model[~ok])}"
               for name, ok in (("Cliff", cliff), ("Plateau", plateau), ("Climb", climb)) if not ok.all()]
    reason = "all three phases in every model" if holds else "; ".join(missing)
    return ClaimCheck("C1 Cliff-Plateau-Climb", "three phases in ViT-S/B/L; Climb = last 3-4 blocks",
                      "; ".join(parts), holds, reason)


def span(values: pd.Series, digits: int = 2, between: str = " to ") -> str:
    """'0.10 to 0.20' (or '9-10' with ``between='-'``); one value where both ends print alike."""
    low, high = (f"{v:.{digits}f}" for v in (values.min(), values.max()))
    return low if low == high else f"{low}{between}{high}"


def check_depth_lengthens_plateau(phases: pd.DataFrame) -> ClaimCheck:
    """C1 (second part): depth mostly lengthens the Plateau. Judged on the models that have a
    Plateau by C1's criteria (:func:`phase_verdicts`; elsewhere the segmentation's middle piece
    is not one): holds when each of them has a longer Plateau, in blocks, than every shallower
    one. ``measured`` also gives the share of each model's depth the Plateau covers, which need
    not grow with it."""
    paper = "the Plateau is a long stretch that depth mostly lengthens"
    measured = "; ".join(f"{r.model}: {r.plateau_length} of {r.blocks} blocks ({r.plateau_fraction:.2f} "
                         "of its depth)" for r in phases.itertuples())
    has_plateau = phase_verdicts(phases).plateau.to_numpy(dtype=bool)
    left_out = (f"; left out, no Plateau by C1: {', '.join(phases.model[~has_plateau])}"
                if not has_plateau.all() else "")
    judged = phases[has_plateau]
    depths = sorted(set(judged.blocks))
    if len(depths) < 2:
        why = ("only one model" if len(phases) == 1 else "no model has a Plateau by C1"
               if judged.empty else "every model with a Plateau has the same depth")
        return ClaimCheck("C1b depth lengthens the Plateau", paper, measured, None, why + left_out)
    lengths = {d: judged.plateau_length[judged.blocks == d] for d in depths}
    holds = all(lengths[deeper].min() > lengths[shallower].max()
                for shallower, deeper in zip(depths, depths[1:]))
    shares = {d: judged.plateau_fraction[judged.blocks == d] for d in depths}
    reason = "; ".join(f"{d} blocks: Plateau {span(lengths[d], 0, '-')} block"
                       f"{'' if span(lengths[d], 0) == '1' else 's'}, {span(shares[d], 2, '-')} "
                       "of the depth" for d in depths)
    return ClaimCheck("C1b depth lengthens the Plateau", paper, measured, holds,
                      ("longer in blocks in every deeper model" if holds else
                       "not longer in blocks in every deeper model") + f" ({reason}){left_out}")


def cliff_beside_paper(per_layer: pd.DataFrame, models: tuple[str, ...] | list[str],
                       num_patches: dict[str, int]) -> pd.DataFrame:
    """T3: per model, the centered similarity of the patch tokens before the PE (``raw``), after
    it (``pe``) and after block 1, followed by the paper's row for the model it stands in for
    (where the paper reports one). The floor -1/(N - 1) of per-image centering depends on the
    number of patches N, so the drop and S(pe) are also given in units of it."""
    rows = []
    for model in models:
        values = per_layer[per_layer.model == model].set_index("layer").centered_similarity
        floor = -1 / (num_patches[model] - 1)
        rows.append({"model": model, "source": "this build", "S(raw)": values[layers.RAW],
                     "S(pe)": values[layers.PE], "S(block 1)": values[layers.block_layer(1)],
                     "floor": floor})
        reference = paper_name(models, model)
        if reference in PAPER["cliff"]:
            before, after = PAPER["cliff"][reference]
            rows.append({"model": f"{reference}/16", "source": "paper", "S(raw)": before,
                         "S(pe)": after, "S(block 1)": np.nan, "floor": -1 / (PAPER["patches"] - 1)})
    table = pd.DataFrame(rows)
    table["drop / -floor"] = (table["S(raw)"] - table["S(pe)"]) / table.floor.abs()
    table["S(pe) / floor"] = table["S(pe)"] / table.floor
    return table


def describe_cliff_beside_paper(t3: pd.DataFrame) -> str:
    """One sentence on :func:`cliff_beside_paper`'s table: in how many models S falls when the PE
    is added, and how the drop and S(pe), in units of the floor, compare with the paper's."""
    ours, paper = t3[t3.source == "this build"], t3[t3.source == "paper"]
    text = (f"S falls when the PE is added in {int((ours['S(raw)'] > ours['S(pe)']).sum())} of "
            f"{len(ours)} models of this build")
    if paper.empty:
        return text + " (the paper reports no model these stand in for)."
    drop, paper_drop = ours["drop / -floor"], paper["drop / -floor"]
    size = ("smaller than the paper's" if drop.max() < paper_drop.min() else
            "larger than the paper's" if drop.min() > paper_drop.max() else
            "within the paper's range" if drop.min() >= paper_drop.min() and drop.max() <= paper_drop.max()
            else "overlapping the paper's range")
    return (text + f". In units of the floor the drop is {span(drop)} here against "
            f"{span(paper_drop)} in the paper, {size}; after the PE, S sits at "
            f"{span(ours['S(pe) / floor'])} of the floor here against "
            f"{span(paper['S(pe) / floor'])} in the paper (1 = at the floor).")
