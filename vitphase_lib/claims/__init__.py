"""The paper's claims as explicit, testable criteria, and the numbers it reports.

Each ``check_*`` function takes measured tables and returns a :class:`ClaimCheck`: what was
measured, whether the claim holds in this build, and why. The chapters show these and the Summary
chapter collects them, so a verdict is computed once, from data, never typed by hand.

One module per concern:

* :mod:`.paper`: the numbers the paper reports and which paper model each of ours stands for;
* :mod:`.verdict`: :class:`ClaimCheck` and the one vocabulary of verdicts;
* one module per claim, with its check, its comparison table and the prose its chapter shows:
  :mod:`.c1_phases` (C1, C1b), :mod:`.c2_positional` (C2), :mod:`.c3_attention` (C3),
  :mod:`.c4_scrambling` (C4), :mod:`.c5_collapse_tradeoff` (C5a, C5b);
* :mod:`.summary`: every check from a study's tables, and the Summary chapter's prose;
* :mod:`.beyond`: the paper's open questions (C6), answered on the variant zoo.

The names below are re-exported so that ``claims.check_phases(...)`` and the like work directly.
"""
from . import beyond, c1_phases, c2_positional, c3_attention, c4_scrambling, c5_collapse_tradeoff, summary
from .c1_phases import (CLIMB_MIN_RISE, check_depth_lengthens_plateau, check_phases, cliff_beside_paper,
                        describe_cliff_beside_paper, phase_blocks, phase_verdicts)
from .c2_positional import (CLIFF_MEASURES, check_pe_drives_cliff, describe_stronger_pe, pe_scaling_table,
                            stronger_pe_effect)
from .c3_attention import HUB_MIN_X_UNIFORM, attention_landmarks, check_cls_marginalization
from .c4_scrambling import check_scrambling_regimes, isi_summary
from .c5_collapse_tradeoff import (check_collapse_b_vs_l, check_tradeoff_offset, collapse_through_phases,
                                   readout_label, readout_rows, tradeoff_layers)
from .paper import PAPER, PAPER_NAMES, paper_name
from .summary import all_checks
from .verdict import ClaimCheck

__all__ = [
    "beyond", "c1_phases", "c2_positional", "c3_attention", "c4_scrambling", "c5_collapse_tradeoff", "summary",
    "CLIMB_MIN_RISE", "check_depth_lengthens_plateau", "check_phases", "cliff_beside_paper",
    "describe_cliff_beside_paper", "phase_blocks", "phase_verdicts",
    "CLIFF_MEASURES", "check_pe_drives_cliff", "describe_stronger_pe", "pe_scaling_table",
    "stronger_pe_effect", "HUB_MIN_X_UNIFORM", "attention_landmarks", "check_cls_marginalization",
    "check_scrambling_regimes", "isi_summary", "check_collapse_b_vs_l", "check_tradeoff_offset",
    "collapse_through_phases", "readout_label", "readout_rows", "tradeoff_layers",
    "PAPER", "PAPER_NAMES", "paper_name", "all_checks", "ClaimCheck",
]
