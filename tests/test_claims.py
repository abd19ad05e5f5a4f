"""The claim criteria: each verdict flips when the data contradicts it."""
import numpy as np
import pandas as pd
import pytest

from vitphase_lib import claims
from vitphase_lib.claims import c3_attention as c3
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
    assert check.holds is False and check.reason == "no Climb in b"


def test_c1_fails_when_pe_raises_similarity():
    no_cliff = [0.0, 0.3] + [0.3] * 9 + [0.4, 0.5, 0.6]
    assert claims.check_phases(phase_table(_curve("a", no_cliff))).holds is False


def _c2_tables(top1_at_0, cliff_grows=True):
    models = ["s", "b", "l"]
    summary = pd.DataFrame({"model": models, "pe_dominance_ratio": [0.1, 0.2, 0.3],
                            "cliff_drop_pe": [0.005, 0.01, 0.02], "cliff_drop_block1": [0.01, 0.02, 0.03]})
    top1 = pd.DataFrame([{"model": m, "alpha": a, "top1": top1_at_0 if a == 0 else 90.0}
                         for m in models for a in (0.0, 1.0, 2.0)])
    cliff = pd.DataFrame([{"model": m, "alpha": a,
                           "cliff_drop_block1": (a if cliff_grows else -a) * 0.01}
                          for m in models for a in (0.0, 1.0, 2.0)])
    return summary, top1, cliff


def test_c2_holds_and_each_part_can_fail():
    check = claims.check_pe_drives_cliff(*_c2_tables(50.0))
    assert check.holds is True and check.reason == "every part holds"
    check = claims.check_pe_drives_cliff(*_c2_tables(95.0))
    assert check.holds is False and check.reason.startswith("not met: removing PE lowers top-1; met: ")
    check = claims.check_pe_drives_cliff(*_c2_tables(50.0, cliff_grows=False))
    assert check.holds is False and check.reason.startswith("not met: the Cliff grows with alpha; met: ")
    summary, top1, cliff = _c2_tables(50.0)
    summary["pe_dominance_ratio"] = summary["pe_dominance_ratio"].to_numpy()[::-1]
    check = claims.check_pe_drives_cliff(summary, top1, cliff)
    assert check.holds is False
    assert check.reason == ("not met: the Cliff (to the PE layer and to block 1) follows the PE "
                            "Dominance Ratio across models; met: the Cliff grows with alpha, "
                            "removing PE lowers top-1")


@pytest.mark.parametrize("to_pe, to_block1, follows", [
    ([0.005, 0.01, 0.02], [0.01, 0.02, 0.03], True),
    ([0.01, 0.005, 0.02], [0.01, 0.02, 0.03], True),     # rho +0.5 for both
    ([0.01, 0.02, 0.005], [0.01, 0.02, 0.03], False),    # rho -0.5 to the PE layer
    ([0.005, 0.01, 0.02], [0.02, 0.03, 0.01], False),    # rho -0.5 to block 1
    ([0.01, 0.01, 0.01], [0.01, 0.02, 0.03], False),     # all tied: no ordering (rho NaN)
])
def test_c2_ordering_needs_a_positive_rank_correlation_for_both_sizes_of_the_cliff(to_pe, to_block1,
                                                                                  follows):
    summary, top1, cliff = _c2_tables(50.0)
    summary["cliff_drop_pe"], summary["cliff_drop_block1"] = to_pe, to_block1
    check = claims.check_pe_drives_cliff(summary, top1, cliff)
    assert check.holds is follows
    assert ("the Cliff follows the PE" if follows else "the Cliff does not follow the PE") in check.measured
    assert "to the PE layer" in check.measured and "to block 1" in check.measured
    assert "with three models rho takes few values" in check.measured
    assert "+nan" not in check.measured and " nan " not in check.measured
    if len(set(to_pe)) == 1:
        assert "rho undefined (all tied) to the PE layer" in check.measured


def test_c2_ordering_is_not_tested_with_two_models_and_says_so():
    summary, top1, cliff = _c2_tables(50.0)
    summary = summary[summary.model != "l"]
    summary["cliff_drop_pe"] = summary["cliff_drop_pe"].to_numpy()[::-1]
    check = claims.check_pe_drives_cliff(summary, top1, cliff)
    assert check.holds is True
    assert "cannot be ranked against the PE Dominance Ratio with fewer than 3 models" in check.measured
    assert check.partly_untested and check.as_row()["holds here?"] == "yes, where testable"
    assert check.reason == ("met: the Cliff grows with alpha, removing PE lowers top-1; not "
                            "testable: the Cliff (to the PE layer and to block 1) follows the PE "
                            "Dominance Ratio across models (fewer than 3 models)")


def test_c2_without_alpha_0_or_1_does_not_count_against_removing_pe():
    summary, top1, cliff = _c2_tables(50.0)
    top1 = top1[top1.alpha != 0.0]  # a run of pe_alphas [1, 2]: removing PE was not tried
    check = claims.check_pe_drives_cliff(summary, top1, cliff)
    assert check.holds is True
    assert "removing PE lowers top-1 (not testable in any model)" in check.measured
    assert check.reason.endswith("; not testable: removing PE lowers top-1 (no run at both "
                                 "alpha = 0 and 1)")
    summary, top1, cliff = _c2_tables(95.0)
    top1 = top1[~((top1.model == "s") & (top1.alpha == 1.0))]  # s untestable, b and l fail
    check = claims.check_pe_drives_cliff(summary, top1, cliff)
    assert check.holds is False
    assert "removing PE lowers top-1 in 0/2 models (not testable in s)" in check.measured


def test_c2_with_one_alpha_and_two_models_cannot_be_tested():
    summary, top1, cliff = _c2_tables(50.0)
    summary = summary[summary.model != "l"]
    top1, cliff = top1[top1.alpha == 1.0], cliff[cliff.alpha == 1.0]
    check = claims.check_pe_drives_cliff(summary, top1, cliff)
    assert check.holds is None
    assert check.reason.startswith("not testable: the Cliff grows with alpha (fewer than two "
                                   "alphas), ")
    assert check.as_row()["holds here?"] == "not testable"


def _scaling(curves):
    """pe_scaling_table rows from {model: {alpha: top1}}; the Cliff grows with alpha."""
    top1 = pd.DataFrame([{"model": m, "alpha": a, "top1": t} for m, curve in curves.items()
                         for a, t in curve.items()])
    cliff = pd.DataFrame([{"model": m, "alpha": a, "cliff_drop_pe": 0.01 * a, "cliff_drop_block1": 0.02 * a,
                           "blocks": 12} for m, curve in curves.items() for a in curve])
    return claims.pe_scaling_table(top1, cliff)


def test_pe_scaling_table_and_the_effect_of_a_pe_stronger_than_trained():
    scaling = _scaling({"s": {0.0: 20.0, 1.0: 90.0, 2.0: 85.0}, "b": {0.0: 20.0, 1.0: 80.0, 2.0: 88.0}})
    assert list(scaling.columns) == ["model", "alpha", "cliff_drop_pe", "cliff_drop_block1", "top1"]
    assert len(scaling) == 6
    effect = claims.stronger_pe_effect(scaling).set_index("model")
    assert effect.loc["s", "trained_is_best"] == True and effect.loc["b", "trained_is_best"] == False  # noqa: E712
    assert effect.loc["s", "strongest_alpha"] == 2.0
    assert effect.loc["s", "cliff_change"] == pytest.approx(0.02)
    assert effect.loc["s", "top1_change"] == pytest.approx(-5.0)
    assert effect.loc["b", "top1_change"] == pytest.approx(8.0)
    text = claims.describe_stronger_pe(claims.stronger_pe_effect(scaling))
    assert text.startswith("Top-1 is highest at the trained strength ($\\alpha = 1$) in 1 of 2 models.")
    assert "larger than at $\\alpha = 1$ in 2 of 2 models and top-1 is lower in 1 of 2" in text
    assert text.endswith("So in this build a PE stronger than trained costs accuracy in 1 of 2 models.")


def test_a_tie_at_the_top_counts_as_the_trained_strength_being_best():
    scaling = _scaling({"s": {0.5: 80.0, 1.0: 80.0, 2.0: 70.0}})
    assert bool(claims.stronger_pe_effect(scaling).trained_is_best.iloc[0]) is True


@pytest.mark.parametrize("top1_at_2, cliff_grows, ending", [
    (85.0, True, "decorrelation helps up to the trained strength, not beyond."),
    (85.0, False, "a PE stronger than trained costs accuracy in every model."),
    (95.0, True, "a PE stronger than trained does not cost accuracy."),
])
def test_the_stronger_pe_conclusion_follows_what_was_measured(top1_at_2, cliff_grows, ending):
    scaling = _scaling({"s": {0.0: 20.0, 1.0: 90.0, 2.0: top1_at_2}, "b": {0.0: 20.0, 1.0: 90.0, 2.0: top1_at_2}})
    if not cliff_grows:
        scaling.loc[scaling.alpha == 2.0, "cliff_drop_block1"] = 0.0
    assert claims.describe_stronger_pe(claims.stronger_pe_effect(scaling)).endswith(ending)


def test_the_stronger_pe_sentence_says_what_was_not_run():
    no_stronger = _scaling({"s": {0.0: 20.0, 1.0: 90.0}})
    effect = claims.stronger_pe_effect(no_stronger)
    assert effect.strongest_alpha.isna().all() and effect.top1_change.isna().all()
    assert claims.describe_stronger_pe(effect).endswith(
        "No $\\alpha$ above 1 was run, so a PE stronger than trained is not tested here.")
    no_trained = _scaling({"s": {0.0: 20.0, 2.0: 90.0}})
    effect = claims.stronger_pe_effect(no_trained)
    assert effect.trained_is_best.isna().all() and effect.strongest_alpha.isna().all()
    assert claims.describe_stronger_pe(effect) == ("No model was run at $\\alpha = 1$, so the "
                                                   "trained strength is not compared here.")


def _plateaus(*rows):
    """Phase rows (model, blocks, plateau_length), each with a Cliff, a flat Plateau and a Climb
    by C1's criteria unless its Plateau is under a third of its blocks."""
    frame = pd.DataFrame(rows, columns=["model", "blocks", "plateau_length"])
    frame["plateau_fraction"] = frame.plateau_length / frame.blocks
    frame = frame.assign(cliff_drop_pe=0.05, cliff_drop_block1=0.06, plateau_slope=0.0,
                         climb_slope=0.01, climb_rise=0.02, climb_length=2)
    return frame


def test_c1b_depth_lengthens_the_plateau_in_blocks_not_necessarily_in_share():
    check = claims.check_depth_lengthens_plateau(_plateaus(("s", 12, 9), ("b", 12, 10), ("l", 24, 14)))
    assert check.holds is True
    assert check.reason == ("longer in blocks in every deeper model (12 blocks: Plateau 9-10 "
                            "blocks, 0.75-0.83 of the depth; 24 blocks: Plateau 14 blocks, 0.58 "
                            "of the depth)")
    assert "l: 14 of 24 blocks (0.58 of its depth)" in check.measured


@pytest.mark.parametrize("deep_plateau, holds", [(11, True), (10, False), (9, False)])
def test_c1b_fails_when_a_deeper_model_is_not_longer_than_every_shallower_one(deep_plateau, holds):
    check = claims.check_depth_lengthens_plateau(
        _plateaus(("s", 12, 9), ("b", 12, 10), ("l", 24, deep_plateau)))
    assert check.holds is holds
    assert check.reason.startswith("longer" if holds else "not longer")


def test_c1b_leaves_out_models_without_a_plateau_by_c1_and_says_so():
    # x (24 blocks) has a 5-block middle piece, under a third of its depth: not a Plateau by C1,
    # so its length says nothing about depth; without it the two depths still compare
    check = claims.check_depth_lengthens_plateau(
        _plateaus(("s", 12, 9), ("l", 24, 14), ("x", 24, 5)))
    assert check.holds is True
    assert check.reason.endswith("; left out, no Plateau by C1: x")


@pytest.mark.parametrize("rows, why", [
    ((("s", 12, 9), ("b", 12, 10)), "every model with a Plateau has the same depth"),
    ((("s", 12, 9),), "only one model"),
    ((("s", 12, 2), ("l", 24, 3)), "no model has a Plateau by C1; left out, no Plateau by C1: s, l"),
])
def test_c1b_is_not_testable_without_two_depths_to_compare(rows, why):
    check = claims.check_depth_lengthens_plateau(_plateaus(*rows))
    assert check.holds is None and check.reason == why


def test_t3_puts_the_papers_row_after_the_model_it_stands_for_with_the_floor_units():
    per_layer = pd.concat([_curve(m, [0.05, -0.005, -0.01, -0.01]) for m in ("s", "b", "l")])
    t3 = claims.cliff_beside_paper(per_layer, ("s", "b", "l"), {"s": 49, "b": 49, "l": 49})
    assert list(t3.model) == ["s", "ViT-S/16", "b", "l", "ViT-L/16"]  # no ViT-B numbers in the paper
    assert list(t3.source) == ["this build", "paper", "this build", "this build", "paper"]
    ours = t3.iloc[0]
    assert ours.floor == pytest.approx(-1 / 48)
    assert ours["drop / -floor"] == pytest.approx(0.055 * 48)
    assert ours["S(pe) / floor"] == pytest.approx(0.005 * 48)
    paper_l = t3.iloc[4]
    assert paper_l.floor == pytest.approx(-1 / 195) and np.isnan(paper_l["S(block 1)"])
    assert paper_l["drop / -floor"] == pytest.approx((0.021 + 0.005) * 195)
    assert paper_l["S(pe) / floor"] == pytest.approx(0.005 * 195)
    # two models: no S/B/L correspondence, so no paper rows
    t3 = claims.cliff_beside_paper(per_layer, ("s", "b"), {"s": 49, "b": 49})
    assert list(t3.source) == ["this build", "this build"]
    assert claims.describe_cliff_beside_paper(t3) == (
        "S falls when the PE is added in 2 of 2 models of this build (the paper reports no model "
        "these stand in for).")


@pytest.mark.parametrize("drops, size", [
    ((2.0, 3.0), "smaller than the paper's"),
    ((6.0, 7.0), "larger than the paper's"),
    ((4.5, 5.0), "within the paper's range"),
    ((1.0, 10.0), "overlapping the paper's range"),
])
def test_t3_sentence_compares_the_drop_in_floor_units(drops, size):
    t3 = pd.DataFrame({"source": ["this build", "paper", "this build", "paper"],
                       "S(raw)": [0.1, 0.02, 0.1, 0.021], "S(pe)": [0.0, -0.002, -0.01, -0.005],
                       "drop / -floor": [drops[0], 4.29, drops[1], 5.07],
                       "S(pe) / floor": [0.1, 0.39, 0.2, 0.975]})
    text = claims.describe_cliff_beside_paper(t3)
    assert text.startswith("S falls when the PE is added in 2 of 2 models of this build.")
    assert f"the drop is {drops[0]:.2f} to {drops[1]:.2f} here against 4.29 to 5.07 in the paper, {size};" in text
    assert text.endswith("S sits at 0.10 to 0.20 of the floor here against 0.39 to 0.97 in the paper "
                         "(1 = at the floor).")


def test_paper_names_follow_profile_order():
    assert claims.paper_name(["x", "y", "z"], "z") == "ViT-L"
    assert claims.paper_name(["x", "y"], "x") is None
    assert np.isclose(claims.PAPER["isi_peak_vit_l"], 0.031)


def test_phase_verdicts_name_the_missing_phase_per_model():
    curves = pd.concat([_curve("three", three_phase()), _curve("flat", [0.3, 0.0] + [0.0] * 12)])
    verdicts = claims.phase_verdicts(phase_table(curves)).set_index("model")
    assert verdicts.loc["three"].tolist() == [True, True, True]
    assert verdicts.loc["flat"].tolist() == [True, True, False]


# --- T6 attention landmarks ----------------------------------------------------------------------

def _attention(model, ccc, aci=None, pagerank=None, tokens=13):
    """One model's attention table: block i (1-based) has ccc[i-1], aci[i-1], pagerank[i-1];
    ``tokens`` = P + N ([CLS] and 12 patches by default)."""
    blocks = len(ccc)
    aci = [0.1 * b for b in range(1, blocks + 1)] if aci is None else aci
    pagerank = [0.01 * b for b in range(1, blocks + 1)] if pagerank is None else pagerank
    return pd.DataFrame({"model": model, "block": range(1, blocks + 1), "cls_centrality": ccc,
                         "cls_pagerank_share": pagerank, "aci": aci, "uniform_baseline": 1 / tokens})


def _phases(*rows):
    """Phase segmentation rows (model, plateau_start, climb_start), layer names as in phase_table."""
    return pd.DataFrame(rows, columns=["model", "plateau_start", "climb_start"])


def _landmark(attention, phases, model):
    return claims.attention_landmarks(attention, phases).set_index("model").loc[model]


@pytest.mark.parametrize("plateau_start, climb_start, mid, plateau, climb", [
    ("pe", "9", 5, range(1, 10), range(10, 13)),    # Plateau 1..9: the 5th of 9 blocks
    ("raw", "9", 5, range(1, 10), range(10, 13)),   # raw, like pe, means "from block 1"
    ("3", "9", 6, range(3, 10), range(10, 13)),     # Plateau 3..9: the 4th of 7 blocks
    ("2", "5", 4, range(2, 6), range(6, 13)),       # Plateau 2..5 (even length): upper middle
])
def test_t6_landmarks_read_first_mid_plateau_and_last_block(plateau_start, climb_start, mid, plateau, climb):
    ccc = [0.5 / b for b in range(1, 13)]
    aci = [0.1 * b ** 2 for b in range(1, 13)]  # non-linear, so plateau/climb means tell ranges apart
    pagerank = [0.3 - 0.02 * b for b in range(1, 13)]
    row = _landmark(_attention("m", ccc, aci, pagerank), _phases(("m", plateau_start, climb_start)), "m")
    assert row.mid_block == mid
    assert np.isclose(row.ccc_first, ccc[0]) and np.isclose(row.ccc_mid, ccc[mid - 1])
    assert np.isclose(row.ccc_last, ccc[-1])
    assert np.isclose(row.pagerank_first, pagerank[0]) and np.isclose(row.pagerank_last, pagerank[-1])
    assert np.isclose(row.aci_first, aci[0]) and np.isclose(row.aci_mid, aci[mid - 1])
    assert np.isclose(row.aci_last, aci[-1])
    assert np.isclose(row.aci_plateau_mean, np.mean([aci[b - 1] for b in plateau]))
    assert np.isclose(row.aci_climb_mean, np.mean([aci[b - 1] for b in climb]))


def test_t6_landmarks_are_per_model_with_each_models_own_depth_and_phases():
    attention = pd.concat([_attention("b", [0.5] * 11 + [0.004]),
                           _attention("l", [0.4] * 23 + [0.02], aci=[1.0] * 20 + [3.0] * 4)])
    phases = _phases(("l", "pe", "20"), ("b", "pe", "9"))  # other order than the attention table
    rows = claims.attention_landmarks(attention, phases).set_index("model")
    assert rows.loc["b", "mid_block"] == 5 and rows.loc["l", "mid_block"] == 11
    assert np.isclose(rows.loc["b", "ccc_last"], 0.004) and np.isclose(rows.loc["l", "ccc_last"], 0.02)
    assert np.isclose(rows.loc["l", "aci_plateau_mean"], 1.0) and np.isclose(rows.loc["l", "aci_climb_mean"], 3.0)
    assert not rows.loc["b", "incomplete_marginalization"] and rows.loc["l", "incomplete_marginalization"]


@pytest.mark.parametrize("plateau_ccc, climb_peak, spike", [
    (0.003, 0.02, True),    # above both 2 x 0.003 and 0.01
    (0.003, 0.009, False),  # above 2 x median but not above 0.01: the absolute floor matters
    (0.003, 0.01, False),   # exactly 0.01 is not above it
    (0.02, 0.03, False),    # above 0.01 but not above 2 x median 0.04: the relative criterion matters
    (0.02, 0.05, True),     # above both
])
def test_t6_late_spike_needs_a_climb_maximum_above_twice_the_plateau_median_and_001(plateau_ccc, climb_peak, spike):
    # Plateau 1..9 flat at plateau_ccc; the peak sits in the middle of the Climb (10..12)
    ccc = [plateau_ccc] * 9 + [0.001, climb_peak, 0.001]
    row = _landmark(_attention("m", ccc), _phases(("m", "pe", "9")), "m")
    assert bool(row.late_spike) is spike


def test_t6_late_spike_uses_the_plateau_median_and_only_climb_blocks():
    # one high Plateau block does not move the median (0.003), so the Climb peak 0.02 is a spike
    ccc = [0.003] * 8 + [0.5, 0.001, 0.02, 0.001]
    assert _landmark(_attention("m", ccc), _phases(("m", "pe", "9")), "m").late_spike
    # a peak at climb_start belongs to the Plateau (the last Plateau block), not to the Climb
    ccc = [0.003] * 8 + [0.05, 0.003, 0.003, 0.003]
    assert not _landmark(_attention("m", ccc), _phases(("m", "pe", "9")), "m").late_spike
    # the same peak one block later is in the Climb
    ccc = [0.003] * 9 + [0.05, 0.003, 0.003]
    assert _landmark(_attention("m", ccc), _phases(("m", "pe", "9")), "m").late_spike


@pytest.mark.parametrize("ccc_last, incomplete", [(0.02, True), (0.0101, True), (0.01, False), (0.004, False)])
def test_t6_incomplete_marginalization_is_last_block_centrality_above_001(ccc_last, incomplete):
    ccc = [0.5] * 10 + [0.5, ccc_last]  # block 11 is high: only the last block counts
    row = _landmark(_attention("m", ccc), _phases(("m", "pe", "9")), "m")
    assert bool(row.incomplete_marginalization) is incomplete


def test_t6_a_model_without_cls_has_nan_centrality_and_no_failure_signature():
    # global-pool models have no [CLS]: the attention table carries NaN centrality and PageRank
    attention = pd.concat([_attention("vit", [0.5] * 11 + [0.004]),
                           _attention("gap", [np.nan] * 12, pagerank=[np.nan] * 12)])
    rows = claims.attention_landmarks(attention, _phases(("vit", "pe", "9"), ("gap", "pe", "9")))
    gap = rows.set_index("model").loc["gap"]
    assert np.isnan(gap.ccc_first) and np.isnan(gap.ccc_last) and np.isnan(gap.pagerank_last)
    assert not gap.late_spike and not gap.incomplete_marginalization
    assert np.isclose(gap.aci_climb_mean, 1.1)  # ACI does not need [CLS]


# --- C3 [CLS] marginalisation ---------------------------------------------------------------------

C3_MODELS = ("s", "b", "l")
C3_TOP1 = {"s": 70.0, "b": 80.0, "l": 75.0}  # b best, s worst


def _c3_inputs(first=None, last=None, plateau_aci=None, climb_aci=None, top1=None, models=C3_MODELS,
               climbs=None):
    """Landmarks of 12-block models (Plateau 1..9, Climb 10..12) whose CCC runs linearly from
    ``first`` to ``last`` and whose ACI is ``plateau_aci`` on the Plateau, ``climb_aci`` in the
    Climb; each argument maps model -> value and defaults to a case where C3 holds (the best
    model, b, ends lowest); ``climbs`` (model -> has a Climb by C1) defaults to every model."""
    first = {m: 0.5 for m in models} | (first or {})
    last = {"s": 0.008, "b": 0.002, "l": 0.005} | (last or {})
    plateau_aci = {m: 0.25 for m in models} | (plateau_aci or {})
    climb_aci = {m: 0.75 for m in models} | (climb_aci or {})
    top1 = C3_TOP1 | (top1 or {})
    cls_models = [m for m in models if not np.isnan(first[m])]
    landmarks = []
    if cls_models:
        attention = pd.concat([_attention(m, np.linspace(first[m], last[m], 12),
                                          aci=[plateau_aci[m]] * 9 + [climb_aci[m]] * 3) for m in cls_models])
        landmarks.append(claims.attention_landmarks(attention, _phases(*[(m, "pe", "9") for m in cls_models])))
    # a model without [CLS]: its landmark row as T6 gives it (NaN centrality, ACI still measured),
    # built here so these C3 tests do not depend on T6's NaN handling (tested on its own above)
    landmarks += [pd.DataFrame([{"model": m, "ccc_first": np.nan, "ccc_mid": np.nan, "ccc_last": np.nan,
                                 "aci_plateau_mean": plateau_aci[m], "aci_climb_mean": climb_aci[m],
                                 "late_spike": False, "incomplete_marginalization": False}])
                  for m in models if m not in cls_models]
    return (pd.concat(landmarks, ignore_index=True),
            pd.DataFrame({"model": list(models), "top1": [top1[m] for m in models]}),
            pd.Series(True, index=list(models)) if climbs is None else climbs)


def test_c3_ranking_is_not_testable_with_two_models_and_says_so():
    check = claims.check_cls_marginalization(*_c3_inputs(models=("s", "b")))
    assert check.holds is True
    assert check.reason == ("met: CCC falls, CCC <= 0.01 at the end, ACI rises in the Climb; not "
                            "testable: better model marginalises more (fewer than 3 models)")


def test_c3_ranking_is_not_testable_when_top1_ties():
    check = claims.check_cls_marginalization(*_c3_inputs(top1={"s": 80.0, "b": 80.0, "l": 80.0}))
    assert check.holds is True and check.as_row()["holds here?"] == "yes, where testable"
    assert check.reason.endswith("; not testable: better model marginalises more (top-1 or the "
                                 "final CCC all tied: no ranking)")
    assert "the more accurate model" not in check.measured


def test_c3_holds_when_every_part_holds():
    check = claims.check_cls_marginalization(*_c3_inputs())
    assert check.holds is True and check.reason == "every part holds"
    assert "b: CCC 0.500 -> 0.002" in check.measured
    assert "the more accurate model ends with the lower CCC" in check.measured


def test_c3_reports_centrality_in_multiples_of_the_uniform_share():
    """The uniform share 1/(P+N) depends on the token count (1/197 for ViT-B/16, 1/50 for the
    mini zoo), so T6 and C3 also state the centrality as a multiple of it."""
    landmarks, top1, climbs = _c3_inputs()
    row = landmarks.set_index("model").loc["b"]
    assert np.isclose(row.uniform_share, 1 / 13)  # _attention: 1 [CLS] + 12 patches
    assert np.isclose(row.ccc_first_x_uniform, 0.5 * 13) and np.isclose(row.ccc_last_x_uniform, 0.002 * 13)
    check = claims.check_cls_marginalization(landmarks, top1, climbs)
    assert "b: CCC 0.500 -> 0.002 (6.50x -> 0.03x uniform)" in check.measured
    assert "(99x -> 0.8x the uniform share 1/197)" in check.paper


def test_c3_final_centrality_of_exactly_001_still_counts_as_marginalised():
    check = claims.check_cls_marginalization(*_c3_inputs(last={"s": 0.01}))
    assert check.holds is True


@pytest.mark.parametrize("change, failing", [
    # b's CCC rises (0.001 -> 0.002), still small and still the lowest at the end
    ({"first": {"b": 0.001}}, "CCC falls"),
    # s and l end above 0.01 (ranking kept: worst model highest)
    ({"last": {"s": 0.03, "l": 0.02}}, "CCC <= 0.01 at the end"),
    # l's ACI is flat from Plateau to Climb (equal is not higher)
    ({"climb_aci": {"l": 0.25}}, "ACI rises in the Climb"),
    # l's ACI falls in the Climb
    ({"climb_aci": {"l": 0.125}}, "ACI rises in the Climb"),
    # the best model ends with the highest CCC
    ({"top1": {"s": 80.0, "b": 70.0}}, "better model marginalises more"),
])
def test_c3_fails_on_each_part_and_names_it(change, failing):
    check = claims.check_cls_marginalization(*_c3_inputs(**change))
    assert check.holds is False
    assert check.reason.startswith("not met: " + failing + "; met: ")
    assert failing not in check.reason.split("; met: ")[1]  # the other three parts hold
    assert check.reason.count(", ") == 2


def test_c3_judges_the_aci_only_in_models_with_a_climb():
    # l's ACI falls over its last blocks, but l has no Climb by C1: the part holds on s and b
    climbs = pd.Series({"s": True, "b": True, "l": False})
    check = claims.check_cls_marginalization(*_c3_inputs(climb_aci={"l": 0.1}, climbs=climbs))
    assert check.holds is True and check.reason == "every part holds"
    assert "l: CCC" in check.measured and "vs last blocks 0.100 (no Climb)" in check.measured
    assert "vs climb 0.750" in check.measured
    # the same fall in a model with a Climb fails the part
    check = claims.check_cls_marginalization(*_c3_inputs(climb_aci={"l": 0.1}))
    assert check.holds is False and check.reason.startswith("not met: ACI rises in the Climb")


def test_c3_needs_a_climb_verdict_for_every_model():
    landmarks, top1, _ = _c3_inputs()
    with pytest.raises(ValueError, match=r"climbs has no verdict for \['l'\]"):
        claims.check_cls_marginalization(landmarks, top1, pd.Series({"s": True, "b": True}))


def test_c3_aci_part_is_not_testable_without_any_climb_and_the_reason_says_so():
    climbs = pd.Series(False, index=list(C3_MODELS))
    check = claims.check_cls_marginalization(*_c3_inputs(climb_aci={"l": 0.1}, climbs=climbs))
    assert check.holds is True
    assert check.reason == ("met: CCC falls, CCC <= 0.01 at the end, better model marginalises "
                            "more; not testable: ACI rises in the Climb (no model has a Climb by "
                            "C1's criteria)")
    check = claims.check_cls_marginalization(*_c3_inputs(last={"s": 0.03}, climbs=climbs))
    assert check.holds is False
    assert check.reason.startswith("not met: CCC <= 0.01 at the end; met: ")
    assert check.reason.endswith("; not testable: ACI rises in the Climb (no model has a Climb by "
                                 "C1's criteria)")


def test_c3_ranking_needs_three_models():
    # with two models the anti-ranking is not testable, so the same reversed top-1 does not fail
    models = ("b", "l")
    check = claims.check_cls_marginalization(*_c3_inputs(top1={"b": 70.0, "l": 80.0}, models=models))
    assert check.holds is True
    check = claims.check_cls_marginalization(*_c3_inputs(top1={"b": 70.0, "l": 80.0, "s": 75.0}))
    assert check.holds is False and "better model marginalises more" in check.reason


def test_c3_is_not_applicable_without_cls():
    nan = {m: np.nan for m in C3_MODELS}
    check = claims.check_cls_marginalization(*_c3_inputs(first=nan, last=nan))
    assert check.holds is None and "not applicable" in check.reason


def test_c3_ignores_a_model_without_cls():
    models = C3_MODELS + ("gap",)
    # the pooled model has no [CLS] (NaN CCC) and an ACI that falls in the Climb
    inputs = dict(first={"gap": np.nan}, last={"gap": np.nan}, climb_aci={"gap": 0.1},
                  top1={"gap": 90.0}, models=models)
    check = claims.check_cls_marginalization(*_c3_inputs(**inputs))
    assert check.holds is True and "gap" not in check.measured
    # the three [CLS] models are still checked: break one of them and the claim fails
    inputs["climb_aci"] = {"gap": 0.1, "l": 0.1}
    check = claims.check_cls_marginalization(*_c3_inputs(**inputs))
    assert check.holds is False and check.reason.startswith("not met: ACI rises in the Climb; met: ")


# --- C5a final geometry B vs L ---------------------------------------------------------------------

def _final_nc(b, l_, s=(9.0, 9.0, 9.0, 9.0)):
    """Final NC1-NC4 per model; rows deliberately not in S/B/L order."""
    return pd.DataFrame([{"model": m, **dict(zip(("nc1", "nc2", "nc3", "nc4"), v))}
                         for m, v in (("l", l_), ("s", s), ("b", b))])


@pytest.mark.parametrize("b, l_, better, holds", [
    ((1, 1, 1, 1), (2, 2, 2, 2), 4, True),
    ((1, 1, 1, 3), (2, 2, 2, 2), 3, True),
    ((3, 1, 1, 3), (2, 2, 2, 2), 2, False),
    ((2, 1, 1, 3), (2, 2, 2, 2), 2, False),  # a tie is not better
    ((3, 3, 3, 3), (2, 2, 2, 2), 0, False),
])
def test_c5a_needs_b_better_on_at_least_three_nc_measures(b, l_, better, holds):
    check = claims.check_collapse_b_vs_l(_final_nc(b, l_), ("s", "b", "l"))
    assert check.holds is holds
    assert check.reason == f"b is better on {better} of 4 NC measures"


def test_c5a_compares_the_second_and_third_profile_models():
    # the same table read with B and L swapped flips the verdict
    table = _final_nc((1, 1, 1, 3), (2, 2, 2, 2))
    assert claims.check_collapse_b_vs_l(table, ("s", "b", "l")).holds is True
    assert claims.check_collapse_b_vs_l(table, ("s", "l", "b")).holds is False


def test_c5a_needs_three_models():
    check = claims.check_collapse_b_vs_l(_final_nc((1, 1, 1, 1), (2, 2, 2, 2)), ("b", "l"))
    assert check.holds is None


def test_c5a_measured_shows_four_decimals():
    check = claims.check_collapse_b_vs_l(_final_nc((1.1001, 1, 1, 1), (1.1002, 2, 2, 2)), ("s", "b", "l"))
    assert "NC1 1.1001 vs 1.1002" in check.measured
    assert "NC4 1.0000 vs 2.0000" in check.measured
    assert check.holds is True


# --- T8 ISI summary ---------------------------------------------------------------------------------

def _scrambling(model, block_isi, raw=0.5, pe=0.0001, head=0.9):
    """One model's scrambling table: raw, pe, blocks 1..n, head (raw/head high, pe low: they
    would be the extremes if they were counted)."""
    layers = ["raw", "pe"] + [str(b) for b in range(1, len(block_isi) + 1)] + ["head"]
    return pd.DataFrame({"model": model, "layer": layers, "isi": [raw, pe, *block_isi, head]})


def test_t8_isi_summary_counts_blocks_only():
    isi = [0.003, 0.004, 0.006, 0.009, 0.0095, 0.02, 0.021, 0.005]
    row = claims.isi_summary(_scrambling("m", isi)).set_index("model").loc["m"]
    assert np.isclose(row.isi_min, 0.003) and np.isclose(row.isi_max, 0.021)
    assert np.isclose(row.isi_median, 0.0075)  # median of the 8 blocks
    assert row.peak_block == 7 and row.blocks == 8
    assert row.regime_at_peak == "chaotic diffusion" and row.failure_signature
    # < 0.004 collapse; 0.004 .. 0.02 (both inclusive) controlled; > 0.02 chaotic
    assert (row.blocks_collapse, row.blocks_controlled, row.blocks_chaotic) == (1, 6, 1)
    # 0.004, 0.005, 0.006, 0.009 are in the band 0.004-0.009; 0.0095 is not
    assert row.blocks_in_vit_b_band == 4


def test_t8_isi_summary_is_per_model():
    table = pd.concat([_scrambling("b", [0.005, 0.008, 0.006]), _scrambling("l", [0.01] * 20 + [0.031, 0.02])])
    rows = claims.isi_summary(table).set_index("model")
    assert rows.loc["b", "peak_block"] == 2 and rows.loc["l", "peak_block"] == 21
    assert rows.loc["b", "blocks"] == 3 and rows.loc["l", "blocks"] == 22
    assert rows.loc["b", "blocks_in_vit_b_band"] == 3 and rows.loc["l", "blocks_in_vit_b_band"] == 0
    assert not rows.loc["b", "failure_signature"] and rows.loc["l", "failure_signature"]


@pytest.mark.parametrize("peak, regime, failure", [
    (0.0039, "communication collapse", False),
    (0.004, "controlled consensus", False),
    (0.02, "controlled consensus", False),
    (0.0201, "chaotic diffusion", True),
])
def test_t8_regime_and_failure_signature_at_the_peak(peak, regime, failure):
    row = claims.isi_summary(_scrambling("m", [0.001, peak, 0.001])).iloc[0]
    assert row.peak_block == 2 and np.isclose(row.isi_max, peak)
    assert row.regime_at_peak == regime and bool(row.failure_signature) is failure


def test_t8_regime_thresholds_are_configurable():
    isi = [0.003, 0.006, 0.015, 0.025]
    row = claims.isi_summary(_scrambling("m", isi), collapse_below=0.005, chaotic_above=0.01).iloc[0]
    assert (row.blocks_collapse, row.blocks_controlled, row.blocks_chaotic) == (1, 1, 2)
    row = claims.isi_summary(_scrambling("m", isi)).iloc[0]
    assert (row.blocks_collapse, row.blocks_controlled, row.blocks_chaotic) == (1, 2, 1)


# --- C4 scrambling regimes --------------------------------------------------------------------------

def _c4_summary(s_peak, b_peak, l_peak):
    """isi_summary of S (12 blocks), B (12) and L (24) whose block ISI rises linearly to the peak."""
    return claims.isi_summary(pd.concat([
        _scrambling(m, list(np.linspace(peak / 2, peak, n)))
        for m, peak, n in (("s", s_peak, 12), ("b", b_peak, 12), ("l", l_peak, 24))]))


@pytest.mark.parametrize("b_peak, l_peak, holds, relation", [
    (0.008, 0.031, True, "higher"),         # the paper: B controlled, L chaotic
    (0.008, 0.015, False, "higher"),        # L higher than B but not chaotic
    (0.008, 0.005, False, "not higher"),    # L lower, controlled
    (0.025, 0.031, False, "higher"),        # B chaotic (L too)
    (0.025, 0.01, False, "not higher"),     # B chaotic, L controlled
    (0.003, 0.031, False, "higher"),        # B collapse, L chaotic
    (0.003, 0.002, False, "not higher"),    # both collapse
])
def test_c4_needs_b_controlled_and_l_chaotic(b_peak, l_peak, holds, relation):
    check = claims.check_scrambling_regimes(_c4_summary(0.05, b_peak, l_peak), ("s", "b", "l"))
    assert check.holds is holds
    assert check.reason.endswith(f"{relation} than b")
    assert ("not higher" in check.reason) is (relation == "not higher")


def test_c4_reason_names_both_regimes():
    check = claims.check_scrambling_regimes(_c4_summary(0.005, 0.008, 0.015), ("s", "b", "l"))
    assert check.holds is False
    assert "b peaks in 'controlled consensus' (0.0080)" in check.reason
    assert "l peaks in 'controlled consensus' (0.0150)" in check.reason
    check = claims.check_scrambling_regimes(_c4_summary(0.005, 0.003, 0.031), ("s", "b", "l"))
    assert "b peaks in 'communication collapse'" in check.reason and "'chaotic diffusion'" in check.reason


def test_c4_reads_b_and_l_by_profile_position():
    summary = _c4_summary(0.008, 0.031, 0.005)  # the "s" row is B-like, "b" L-like
    assert claims.check_scrambling_regimes(summary, ("l", "s", "b")).holds is True
    assert claims.check_scrambling_regimes(summary, ("s", "b", "l")).holds is False


def test_c4_needs_three_models():
    check = claims.check_scrambling_regimes(_c4_summary(0.005, 0.008, 0.031), ("b", "l"))
    assert check.holds is None and "three models" in check.reason


# --- T10 trade-off layers ----------------------------------------------------------------------------

def _probes(model, cls=None, mean=None, raw=None, head=None):
    """One model's probe table: ``cls`` / ``mean`` top-1 per block (1..n), optional raw and pe
    (mean feature) and head (cls feature if the model has cls, else mean) rows."""
    rows = []
    if raw is not None:
        rows += [{"layer": "raw", "feature": "mean", "probe_top1": raw},
                 {"layer": "pe", "feature": "mean", "probe_top1": raw}]
    for feature, values in (("cls", cls), ("mean", mean)):
        rows += [{"layer": str(b), "feature": feature, "probe_top1": v}
                 for b, v in enumerate(values or [], start=1)]
    if head is not None:
        rows.append({"layer": "head", "feature": "cls" if cls else "mean", "probe_top1": head})
    return pd.DataFrame(rows).assign(model=model)


CLS_CURVE = [10, 20, 30, 40, 50, 60, 70, 74, 76, 78, 79, 80]  # best 80, 0.95 x 80 = 76 at block 9


def test_t10_first_block_reaching_095_of_best_on_cls():
    probes = _probes("m", cls=CLS_CURVE, mean=[80] * 12, raw=80)  # mean would reach at block 1
    row = claims.tradeoff_layers(probes).set_index("model").loc["m"]
    assert row.feature == "cls"
    assert np.isclose(row.best_probe_top1, 80) and np.isclose(row.threshold, 76)
    assert row.tradeoff_block == 9 and row.blocks == 12
    assert np.isclose(row.tradeoff_depth, 9 / 12)


def test_t10_block_order_is_numeric_not_row_order():
    probes = _probes("m", cls=CLS_CURVE).iloc[::-1]  # "10" < "9" as strings, 12 first in row order
    assert claims.tradeoff_layers(probes).iloc[0].tradeoff_block == 9


def test_t10_uses_mean_for_models_without_cls_and_raw_pe_are_not_blocks():
    # the pooled model's raw and pe rows reach the threshold but are not blocks
    probes = pd.concat([_probes("vit", cls=CLS_CURVE, mean=[80] * 12),
                        _probes("gap", mean=[10, 20, 30, 40, 50, 78, 80, 80], raw=79)])
    rows = claims.tradeoff_layers(probes).set_index("model")
    assert rows.loc["vit", "feature"] == "cls" and rows.loc["vit", "tradeoff_block"] == 9
    assert rows.loc["gap", "feature"] == "mean" and rows.loc["gap", "tradeoff_block"] == 6
    assert rows.loc["gap", "blocks"] == 8 and np.isclose(rows.loc["gap", "tradeoff_depth"], 6 / 8)


def test_t10_fraction_and_feature_are_arguments():
    probes = _probes("m", cls=CLS_CURVE, mean=[40] * 3 + [80] * 9)
    assert claims.tradeoff_layers(probes, fraction=0.5).iloc[0].tradeoff_block == 4  # 40 >= 0.5 x 80
    assert claims.tradeoff_layers(probes, fraction=1.0).iloc[0].tradeoff_block == 12
    row = claims.tradeoff_layers(probes, feature="mean").iloc[0]
    assert row.feature == "mean" and row.tradeoff_block == 4


def test_t10_a_model_that_never_reaches_the_threshold_in_its_blocks_has_no_tradeoff_block():
    # the head probe sets the best (100); no block reaches 95
    probes = _probes("m", cls=CLS_CURVE, head=100)
    row = claims.tradeoff_layers(probes).iloc[0]
    assert np.isclose(row.best_probe_top1, 100)
    assert row.tradeoff_block is None or pd.isna(row.tradeoff_block)
    assert np.isnan(row.tradeoff_depth)
    # next to a model that does reach it, the column stays numeric with NaN for the other
    rows = claims.tradeoff_layers(pd.concat([probes, _probes("n", cls=CLS_CURVE)])).set_index("model")
    assert pd.isna(rows.loc["m", "tradeoff_block"]) and rows.loc["n", "tradeoff_block"] == 9


# --- C5b trade-off offset ----------------------------------------------------------------------------

def _tradeoff(b_block, l_block, s_block=6):
    rows = [("s", s_block, 12), ("b", b_block, 12), ("l", l_block, 24)]
    return pd.DataFrame([{"model": m, "tradeoff_block": t, "blocks": n,
                          "tradeoff_depth": t / n if t == t else float("nan")} for m, t, n in rows])


@pytest.mark.parametrize("b_block, l_block, holds, reason", [
    (3, 13, True, "needs 10 more blocks"),
    (3, 8, True, "needs 5 more blocks"),            # exactly half the paper's 10
    (3, 7, False, "less than half"),
    (3, 4, False, "less than half"),
    (3, 3, False, "does not need more blocks"),
    (5, 3, False, "does not need more blocks"),
])
def test_c5b_offset_must_be_at_least_half_the_papers(b_block, l_block, holds, reason):
    check = claims.check_tradeoff_offset(_tradeoff(b_block, l_block), ("s", "b", "l"))
    assert check.holds is holds
    assert reason in check.reason
    assert f"offset {l_block - b_block:+d} blocks" in check.measured


def test_c5b_threshold_follows_the_papers_offset(monkeypatch):
    assert claims.check_tradeoff_offset(_tradeoff(3, 5), ("s", "b", "l")).holds is False
    monkeypatch.setitem(claims.PAPER, "tradeoff_offset_layers", 4)
    assert claims.check_tradeoff_offset(_tradeoff(3, 5), ("s", "b", "l")).holds is True


@pytest.mark.parametrize("b_block, l_block", [(np.nan, 13), (3, np.nan)])
def test_c5b_is_not_testable_when_a_model_never_reaches_the_threshold(b_block, l_block):
    check = claims.check_tradeoff_offset(_tradeoff(b_block, l_block), ("s", "b", "l"))
    assert check.holds is None


def test_c5b_ignores_s_and_needs_three_models():
    assert claims.check_tradeoff_offset(_tradeoff(3, 13, s_block=np.nan), ("s", "b", "l")).holds is True
    assert claims.check_tradeoff_offset(_tradeoff(3, 13), ("b", "l")).holds is None


def test_c5b_from_probe_tables():
    probes = pd.concat([_probes("s", cls=CLS_CURVE), _probes("b", cls=CLS_CURVE),
                        _probes("l", cls=[10] * 18 + [80] * 6)])
    check = claims.check_tradeoff_offset(claims.tradeoff_layers(probes), ("s", "b", "l"))
    assert check.holds is True and "offset +10 blocks" in check.measured  # 19 - 9
    never = pd.concat([probes[probes.model != "l"], _probes("l", cls=[10] * 24, head=80)])
    assert claims.check_tradeoff_offset(claims.tradeoff_layers(never), ("s", "b", "l")).holds is None


@pytest.mark.parametrize("values, digits, between, text", [
    ([0.1, 0.2], 2, " to ", "0.10 to 0.20"),
    ([0.301, 0.299], 2, " to ", "0.30"),      # both ends print alike: one value
    ([9, 10, 10], 0, "-", "9-10"),
    ([14], 0, "-", "14"),
])
def test_span_prints_a_range_or_one_value(values, digits, between, text):
    assert claims.c1_phases.span(pd.Series(values), digits, between) == text


# --- one verdict vocabulary ------------------------------------------------------------------------

@pytest.mark.parametrize("holds, partly, answer, words", [
    (True, False, "yes", "holds"),
    (True, True, "yes, where testable", "holds where testable"),
    (False, False, "no", "does not hold"),
    (False, True, "no", "does not hold"),
    (None, False, "not testable", "is not testable here"),
])
def test_the_summary_answer_and_the_chapter_phrase_come_from_one_verdict(holds, partly, answer, words):
    check = claims.ClaimCheck("C9 x", "paper", "measured", holds, "why", partly_untested=partly)
    assert check.verdict == check.as_row()["holds here?"] == answer
    assert check.in_words == words
    assert check.headline("smoke", "C9") == f"**Verdict (smoke profile): C9 {words}**"


# --- the Attention and Summary chapters' prose -----------------------------------------------------

def _c3_landmarks(last=None, late_spike=False):
    landmarks = _c3_inputs(last=last)[0]
    landmarks["late_spike"] = late_spike
    landmarks["late_peak_block"] = 11
    return landmarks


def test_failure_signatures_name_the_models_and_blocks():
    text = c3.describe_failure_signatures(_c3_landmarks())
    assert text == ("Failure signatures in this build: no late centrality spike; every model with "
                    "[CLS] ends with centrality at or below 0.01.")
    text = c3.describe_failure_signatures(_c3_landmarks(last={"l": 0.03}, late_spike=[False, True, False]))
    assert text == ("Failure signatures in this build: a late centrality spike in b (block 11); "
                    "centrality above 0.01 at the last block (incomplete marginalisation) in l (0.0300).")


def test_prose_for_models_without_cls():
    nan = float("nan")
    landmarks = _c3_inputs(first={"s": nan, "b": nan, "l": nan}, last={"s": nan, "b": nan, "l": nan})[0]
    assert "neither failure signature can occur" in c3.describe_failure_signatures(landmarks)
    assert c3.describe_uniform_reading(landmarks) == ""
    assert c3.describe_no_cls([]) == ""
    assert "**not applicable** to g1, g2:" in c3.describe_no_cls(["g1", "g2"])


def test_uniform_reading_compares_multiples_of_the_uniform_share_with_the_papers():
    text = c3.describe_uniform_reading(_c3_landmarks())  # 13 tokens: 0.5 is 6.5x, 0.002 is 0.026x
    assert text.startswith("On that reading the paper's ViT-B goes from 99x to 0.79x the uniform share.")
    assert "b goes from 6.50x to 0.03x (uniform share 0.0769)" in text
    assert "At the last block 3 of 3 models give [CLS] less than its even share, as the paper's" in text
    assert text.endswith("against the paper's 99x: the first block does route attention through [CLS].")


def test_t6_beside_the_paper_marks_what_a_model_without_cls_lacks():
    landmarks = _c3_landmarks()
    landmarks[["pagerank_first", "pagerank_last", "aci_first", "aci_mid", "aci_last"]] = 0.1
    landmarks["ccc_mid"] = 0.1
    t6 = c3.landmarks_beside_paper(landmarks, ("s", "b", "l"), ["l"]).set_index("model")
    assert t6.loc["b", "paper model"] == "ViT-B" and t6.loc["b", "paper ccc first / last"] == "0.502 / 0.004"
    assert t6.loc["s", "paper ccc first / last"] == "n/r"
    assert t6.loc["l", "ccc_last"] == "not applicable" and t6.loc["l", "aci_last"] == 0.1


def test_last_block_heads_count_heads_that_keep_or_give_up_the_hub():
    attention = _attention("m", [0.5, 0.02], tokens=50)  # uniform share 0.02
    heads = pd.DataFrame({"model": "m", "block": [1, 1, 2, 2], "head": [1, 2, 1, 2],
                          "cls_centrality": [0.6, 0.4, 0.03, 0.01]})
    heads = c3.heads_in_uniform_units(heads, attention, ["m"])
    row = c3.last_block_heads(heads, attention).iloc[0]
    assert (row.heads, row.keep_hub, row.marginalize) == (2, 1, 1)
    assert np.isclose(row.most_central, 1.5) and np.isclose(row.least_central, 0.5)
    assert np.isclose(row.head_averaged, 1.0)


def test_summary_prose_counts_verdicts_and_reads_only_the_departures():
    checks = [claims.ClaimCheck("C1 a", "", "", True, ""), claims.ClaimCheck("C2 b", "", "", True, "", True),
              claims.ClaimCheck("C4 c", "", "", False, "too low"), claims.ClaimCheck("C5a d", "", "", None, "")]
    assert claims.summary.describe_outcome(checks) == (
        "In this build **2 of 4** checks hold (C1 a, C2 b (where testable)); **1 do not** (C4 c); "
        "1 cannot be tested with these models (C5a d).")
    text = claims.summary.describe_departures(checks)
    assert text.startswith("Where this build departs") and text.count("\n- ") == 1
    assert f"- **C4** (too low): {claims.summary.READINGS['C4']}." in text
    assert claims.summary.describe_departures(checks[:2]) == "Every testable claim holds in this build."
