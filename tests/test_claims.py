"""The claim criteria: each verdict flips when the data contradicts it."""
import numpy as np
import pandas as pd

from vitphase_lib import claims
from vitphase_lib.metrics import phase_table


def _curve(model, values):
    layers = ["raw", "pe"] + [str(i) for i in range(1, len(values) - 1)]
    return pd.DataFrame({"model": model, "layer": layers, "centered_similarity": values})


def three_phase(blocks=12, climb=3):
    plateau = [0.0] * (blocks - climb)
    return [0.3, 0.0] + plateau + [0.05 * (i + 1) for i in range(climb)]


def test_c1_holds_on_three_phase_curves_and_fails_without_a_climb():
    good = pd.concat([_curve("a", three_phase()), _curve("b", three_phase(24, 4))])
    assert claims.check_phases(phase_table(good)).holds is True
    flat_end = [0.3, 0.0] + [0.0] * 12
    bad = pd.concat([_curve("a", three_phase()), _curve("b", flat_end)])
    check = claims.check_phases(phase_table(bad))
    assert check.holds is False and "Climb" in check.reason


def test_c1_fails_when_pe_raises_similarity():
    no_cliff = [0.0, 0.3] + [0.3] * 9 + [0.4, 0.5, 0.6]
    assert claims.check_phases(phase_table(_curve("a", no_cliff))).holds is False


def _c2_tables(top1_at_0, cliff_grows=True):
    models = ["s", "b", "l"]
    summary = pd.DataFrame({"model": models, "pe_dominance_ratio": [0.1, 0.2, 0.3],
                            "cliff_drop_block1": [0.01, 0.02, 0.03]})
    top1 = pd.DataFrame([{"model": m, "alpha": a, "top1": top1_at_0 if a == 0 else 90.0}
                         for m in models for a in (0.0, 1.0, 2.0)])
    cliff = pd.DataFrame([{"model": m, "alpha": a,
                           "cliff_drop_block1": (a if cliff_grows else -a) * 0.01}
                          for m in models for a in (0.0, 1.0, 2.0)])
    return summary, top1, cliff


def test_c2_holds_and_each_part_can_fail():
    assert claims.check_pe_drives_cliff(*_c2_tables(50.0)).holds is True
    assert claims.check_pe_drives_cliff(*_c2_tables(95.0)).holds is False
    assert claims.check_pe_drives_cliff(*_c2_tables(50.0, cliff_grows=False)).holds is False
    summary, top1, cliff = _c2_tables(50.0)
    summary["pe_dominance_ratio"] = summary["pe_dominance_ratio"].to_numpy()[::-1]
    assert claims.check_pe_drives_cliff(summary, top1, cliff).holds is False


def test_paper_names_follow_profile_order():
    assert claims.paper_name(["x", "y", "z"], "z") == "ViT-L"
    assert claims.paper_name(["x", "y"], "x") is None
    assert np.isclose(claims.PAPER["isi_peak_vit_l"], 0.031)


def test_phase_verdicts_name_the_missing_phase_per_model():
    curves = pd.concat([_curve("three", three_phase()), _curve("flat", [0.3, 0.0] + [0.0] * 12)])
    verdicts = claims.phase_verdicts(phase_table(curves)).set_index("model")
    assert verdicts.loc["three"].tolist() == [True, True, True]
    assert verdicts.loc["flat"].tolist() == [True, True, False]
