"""Beyond the paper (vitphase_lib.claims.beyond): every answer's rule on small hand-made tables,
one case per verdict, and the variant study they run on."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vitphase_lib.claims import beyond
from vitphase_lib.claims.beyond import depth, headline, hub, noise, pooling, positional, training
from vitphase_lib.models import ALL_MINI_CONFIGS, VARIANTS
from vitphase_lib.study import Study


def spread(**values) -> pd.Series:
    base = {column: np.nan for column in beyond.LABELS}
    return pd.Series({**base, **values})


# --------------------------------------------------------------------------- shared pieces
@pytest.mark.parametrize("value, reference, width, better, expected", [
    (85.0, 84.0, 0.5, True, "better"), (83.0, 84.0, 0.5, True, "worse"), (84.2, 84.0, 0.5, True, "within"),
    (0.1, 0.2, 0.05, False, "better"), (0.3, 0.2, 0.05, None, "higher"), (1.0, 2.0, np.nan, True, "unknown"),
])
def test_compare_against_the_seed_spread(value, reference, width, better, expected):
    assert headline.compare(value, reference, width, better) == expected


def test_seed_spread_is_the_range_over_the_seed_models():
    table = pd.DataFrame({"model": ["a", "b", "c", "d"], "top1": [80.0, 81.5, 80.5, 99.0],
                          "nc2": [0.2, 0.1, 0.4, 9.0]})
    width = headline.seed_spread(table, ["a", "b", "c"])
    assert width.top1 == pytest.approx(1.5) and width.nc2 == pytest.approx(0.3)
    assert headline.seed_spread(table, ["a"]).isna().all()  # one seed: no spread


def test_group_models_puts_each_base_first():
    names = ["tiny-s-avg", "tiny-b-avg", "tiny-s-d2"]
    assert headline.group_models(names, VARIANTS, "pooling") == ["tiny-s", "tiny-s-avg", "tiny-b", "tiny-b-avg"]
    assert headline.group_models(names, VARIANTS, "hub") == []
    assert headline.seed_models(["tiny-s-seed1", "tiny-s-seed2", "tiny-s-d2"], VARIANTS) == [
        "tiny-s", "tiny-s-seed1", "tiny-s-seed2"]


def test_late_blocks_are_the_last_third():
    assert headline.late_blocks(12) == [9, 10, 11, 12]
    assert headline.late_blocks(3) == [2, 3] and headline.late_blocks(1) == [1]


# --------------------------------------------------------------------------- depth and MLP
def depth_sweep(top1: list[float], trade: list[float] | None = None) -> pd.DataFrame:
    blocks = [3, 6, 12, 24][:len(top1)]
    return pd.DataFrame({"model": [f"m{b}" for b in blocks], "blocks": blocks, "top1": top1,
                         "tradeoff_block": trade or [2, 4, 8, 16][:len(top1)]})


@pytest.mark.parametrize("top1, width, answer", [
    ([80.0, 84.0, 85.0, 83.0], 0.5, True),     # 24 blocks are worse than the base's 12 beyond the spread
    ([80.0, 84.0, 85.0, 86.0], 0.5, False),    # deeper is better beyond it
    ([80.0, 84.0, 85.0, 85.2], 0.5, None),     # deeper within the spread (shallower is worse: not asked)
    ([80.0, 84.0, 85.0, 83.0], np.nan, None),  # no seeds
    ([80.0, 84.0, 85.0, 83.0], 0.0, None),     # seeds that agree exactly give no scale
])
def test_depth_hurts(top1, width, answer):
    result = depth.check_depth_hurts(depth_sweep(top1), "m12", spread(top1=width))
    assert result.answer is answer
    assert result.verdict == beyond.VERDICTS[answer]


def test_the_offset_fit_recovers_a_line():
    fit = depth.offset_fit(depth_sweep([1, 2, 3, 4], trade=[2.5, 5.0, 10.0, 20.0]))
    assert fit["slope"] == pytest.approx(17.5 / 21) and fit["models"] == 4
    assert np.isnan(depth.offset_fit(depth_sweep([1.0]))["slope"])


def mlp(top1: list[float], nc2: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"model": ["base", "half", "shared"], "parameters": [300, 200, 200],
                         "top1": top1, "nc1": [1.0, 1.0, 1.0], "nc2": nc2})


@pytest.mark.parametrize("top1, nc2, answer", [
    ([85.0, 83.0, 85.0], [0.3, 0.3, 0.3], True),   # halved MLP loses top-1 beyond the spread
    ([85.0, 85.0, 85.0], [0.3, 0.5, 0.3], True),   # halved MLP's geometry is worse
    ([85.0, 85.2, 86.5], [0.3, 0.3, 0.2], False),  # no cost (sharing even gains)
])
def test_mlp_costs(top1, nc2, answer):
    assert depth.check_mlp_costs(mlp(top1, nc2), spread(top1=0.5, nc1=0.1, nc2=0.05)).answer is answer


# --------------------------------------------------------------------------- pooling
def pairs_table(climbs: list[bool], top1: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"model": ["s", "s-avg", "b", "b-avg"], "climb": climbs,
                         "climb_rise": [0.01] * 4, "top1": top1})


@pytest.mark.parametrize("climbs, answer", [([False, True, False, True], True), ([True, False, True, False], False),
                                            ([False, True, False, False], None)])
def test_climb_with_average_pooling(climbs, answer):
    table = pairs_table(climbs, [80.0] * 4)
    assert pooling.check_climb_with_pooling(table, [("s", "s-avg"), ("b", "b-avg")]).answer is answer


def test_a_pooled_model_too_shallow_to_segment_leaves_the_climb_open():
    table = pairs_table([False, True, False, pd.NA], [80.0] * 4)
    result = pooling.check_climb_with_pooling(table, [("s", "s-avg"), ("b", "b-avg")])
    assert result.answer is None and "too few blocks" in result.reason and "b-avg: Climb n/a" in result.found


@pytest.mark.parametrize("top1, answer", [([85, 83, 86, 86], True), ([85, 86, 86, 87], False),
                                          ([85, 85.2, 86, 85.9], None)])
def test_pooling_top1(top1, answer):
    table = pairs_table([True] * 4, [float(v) for v in top1])
    assert pooling.check_pooling_top1(table, [("s", "s-avg"), ("b", "b-avg")], spread(top1=0.5)).answer is answer


# --------------------------------------------------------------------------- PE strength
def pe_rows(top1: list[float], cliff: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"model": ["none", "weak", "matched", "strong", "base"],
                         "pe": ["none", "sin-cos", "sin-cos", "sin-cos", "learned"],
                         "pe_scale": [0, 0.08, 0.33, 1.33, np.nan], "pe_dominance_ratio": [0, .1, .3, 1.2, .3],
                         "cliff_drop_pe": cliff, "top1": top1})


@pytest.mark.parametrize("top1, cliff, answer", [
    ([80, 81, 83, 84, 84], [0, .01, .02, .03, .02], True),    # larger Cliff, higher top-1
    ([84, 84.2, 83.9, 82.0, 84], [0, .01, .02, .03, .02], False),  # no PE beats the largest Cliff
    ([84, 84.2, 83.9, 84.1, 84], [0, .01, .02, .03, .02], None),   # within the spread
    ([80, 84, 82, 80.2, 84], [0, .01, .02, .03, .02], None),  # PE helps, but the largest Cliff does not
])
def test_decorrelation_helps(top1, cliff, answer):
    table = pe_rows([float(v) for v in top1], cliff)
    assert positional.check_decorrelation_helps(table, spread(top1=0.5)).answer is answer


def test_decorrelation_without_a_usable_spread_says_so():
    table = pe_rows([80.0, 81, 83, 84, 84], [0, .01, .02, .03, .02])
    for width in (0.0, np.nan):  # seeds that agree exactly decide nothing, as no seeds
        result = positional.check_decorrelation_helps(table, spread(top1=width))
        assert result.answer is None and result.reason == beyond.answer.NO_SPREAD


def test_the_bracket_says_where_the_learned_pe_falls_in_ratio_and_norm():
    table = pd.DataFrame({"pe": ["none", "sin-cos", "sin-cos", "learned"], "pe_scale": [0, 0.08, 1.33, np.nan],
                          "pe_norm": [0.0, 0.5, 8.0, 2.0], "pe_dominance_ratio": [0, 0.1, 1.2, 0.3]})
    text = positional.describe_bracket(table)
    assert "0.300, within the range of the scaled sin-cos ones (0.100 to 1.200)" in text
    assert text.endswith("learned one's: x0.08 0.25, x1.33 4.00.")


def test_pe_table_orders_by_strength_with_the_learned_pe_last():
    names = ["tiny-s", "tiny-s-pe-strong", "tiny-s-pe-none", "tiny-s-pe-weak"]
    rows = pd.DataFrame({"model": names, **{c: [0.0] * 4 for c in ("pe_norm", "pe_dominance_ratio", "cliff_drop_pe",
                                                                   "plateau_length", "top1")},
                         "climb": [False] * 4})
    table = positional.pe_table(rows, names, ALL_MINI_CONFIGS)
    assert table.model.tolist() == ["tiny-s-pe-none", "tiny-s-pe-weak", "tiny-s-pe-strong", "tiny-s"]
    assert table.pe.tolist() == ["none", "sin-cos", "sin-cos", "learned"]


# --------------------------------------------------------------------------- the hub
def hub_rows(aci: list[float], nc2: list[float], top1: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"model": ["tiny-s", "tiny-s-hub-removed", "tiny-s-hub-forced"], "aci_late": aci,
                         "nc2": nc2, "top1": top1, "ccc_late_x_uniform": [0.5, 0.0, 6.0]})


MODELS = ["tiny-s", "tiny-s-hub-removed", "tiny-s-hub-forced"]
HUB_SPREAD = spread(aci_late=0.01, nc2=0.02, top1=0.5)


@pytest.mark.parametrize("aci, nc2, top1, removed, forced", [
    ([0.5, 0.6, 0.5], [0.3, 0.3, 0.4], [85, 85, 85], True, True),     # consensus up; forced NC2 worse
    ([0.5, 0.4, 0.5], [0.3, 0.3, 0.2], [85, 85, 85], False, False),   # consensus down; forced NC2 better
    ([0.5, 0.6, 0.5], [0.3, 0.4, 0.31], [85, 85, 85], None, None),    # mixed; within the spread
])
def test_hub_interventions(aci, nc2, top1, removed, forced):
    table = hub_rows(aci, nc2, [float(v) for v in top1])
    assert hub.check_hub_removed(table, MODELS, VARIANTS, HUB_SPREAD).answer is removed
    assert hub.check_hub_forced(table, MODELS, VARIANTS, HUB_SPREAD).answer is forced


# --------------------------------------------------------------------------- through training
def monitor_log(blocks: int, climb_from: int, steps=(0, 10, 20, 40, 100)) -> pd.DataFrame:
    """A log whose similarity curve has a Cliff and a Plateau throughout and a Climb from step
    ``climb_from`` on; the last block's CLS centrality falls below uniform at step 20."""
    rows = []
    for step in steps:
        curve = [0.3, 0.0] + [0.0] * blocks
        if step >= climb_from:  # the last two blocks rise: a Climb
            curve[-2], curve[-1] = 0.1, 0.2
        for i, value in enumerate(curve):
            layer = ["raw", "pe"][i] if i < 2 else str(i - 1)
            rows.append({"step": step, "layer": layer, "block": np.nan if i < 2 else i - 1,
                         "metric": "centered_similarity", "value": value})
        rows.append({"step": step, "layer": str(blocks), "block": blocks, "metric": "cls_centrality",
                     "value": 0.05 if step < 20 else 0.001})
        rows.append({"step": step, "layer": "model", "block": np.nan, "metric": "top1", "value": step / 2})
        for b in range(1, blocks + 1):
            rows.append({"step": step, "layer": str(b), "block": b, "metric": "isi", "value": 0.01})
    frame = pd.DataFrame(rows)
    frame["epoch"] = frame.step / 100
    return frame


def test_onsets_find_when_each_event_holds_for_good():
    stacked = training.stack_logs({"m": monitor_log(9, climb_from=40)}, {"m": 100})
    per_step = training.states(stacked, {"m": 1 / 50})
    assert per_step.cliff.all() and per_step.plateau.all()
    assert per_step.climb.tolist() == [False, False, False, True, True]
    onset = training.onsets(per_step).iloc[0]
    assert onset.cliff_from == 0 and onset.climb_from == pytest.approx(0.4)
    assert onset.hub_marginalized_from == pytest.approx(0.2)
    assert onset.final_isi_regime == "controlled consensus" and onset.isi_final_regime_from == 0


def test_an_event_that_does_not_hold_at_the_end_has_no_onset():
    assert np.isnan(training._settled_from(np.array([True, True, False]), np.array([0, 0.5, 1.0])))
    assert training._settled_from(np.array([True, False, True]), np.array([0, 0.5, 1.0])) == 1.0


def correlations(signal: list[float], validation: list[float]) -> pd.DataFrame:
    models = [f"m{i}" for i in range(len(signal))]
    early = pd.DataFrame({"model": models, "monitor_top1": validation, "ccc_last": signal,
                          "isi_max": [0.01] * len(models)})
    final = dict(zip(models, range(len(models))))
    return training.rank_correlations(early, final)


def test_a_perfect_early_signal_beats_a_noisy_validation_top1():
    table = correlations(signal=[-i for i in range(12)], validation=[3, 1, 2, 0, 5, 4, 7, 6, 11, 8, 10, 9][::-1])
    assert table.set_index("predictor").rho.iloc[1] == pytest.approx(-1.0)
    assert training.check_early_signal(table, 0.1).answer is True


def test_a_perfect_validation_top1_beats_weak_signals():
    rng = np.random.default_rng(1)
    table = correlations(signal=list(rng.permutation(12)), validation=list(range(12)))
    table.loc[table.predictor == training.PREDICTORS["isi_max"], ["gain_low", "gain_high"]] = [-1.0, -0.5]
    assert training.check_early_signal(table, 0.1).answer is False


def test_too_few_models_cannot_answer():
    assert training.check_early_signal(correlations([1, 2, 3], [1, 2, 3]), 0.1).answer is None


# --------------------------------------------------------------------------- noise and definition
def budget(isi_peaks: dict) -> pd.DataFrame:
    rows = []
    for (model, k, ridge), peak in isi_peaks.items():
        for layer, isi in (("raw", 0.0), ("1", peak / 2), ("2", peak)):
            rows.append({"model": model, "infox_dims": k, "ridge": ridge, "layer": layer, "isi": isi})
    return pd.DataFrame(rows)


def test_the_budget_check():
    same = {("a", 4, "cv"): 0.006, ("a", 16, "cv"): 0.008, ("b", 4, "cv"): 0.010, ("b", 16, "cv"): 0.015}
    assert noise.check_budget(noise.budget_summary(budget(same)), 0.001).answer is True
    moved = {**same, ("a", 16, "cv"): 0.03}
    assert noise.check_budget(noise.budget_summary(budget(moved)), 0.001).answer is False
    assert noise.check_budget(noise.budget_summary(budget(moved)), 0.05).answer is None  # within noise
    fixed = {**same, ("a", 16, 0.1): 0.03}  # a fixed ridge moves the regime: reported, not judged
    assert noise.check_budget(noise.budget_summary(budget(fixed)), 0.001).answer is True
    assert (noise.budget_summary(budget(same)).isi_raw == 0).all()
    no_seeds = noise.check_budget(noise.budget_summary(budget(moved)), np.nan)
    assert no_seeds.answer is None and no_seeds.reason.endswith("there is no seed spread to judge against")
    assert "no seed spread of the ISI peak" in no_seeds.found


def test_chance_of_exceeding_the_range_of_three_seeds():
    assert noise.chance_of_exceeding(draws=100_000) == pytest.approx(0.29, abs=0.01)
    assert noise.chance_of_exceeding(seeds=10, draws=100_000) < 0.05


def test_the_proxy_check():
    layers_ = ["raw", "pe", "1", "2", "3", "4"]
    cka = pd.DataFrame({"model": "a", "layer": layers_, "cka": [1, .9, .8, .7, .6, .5],
                        "cka_positional": [1, 1, .8, .6, .5, .4]})
    scrambling = pd.DataFrame({"model": "a", "layer": layers_, "infox_self": [1, .95, .7, .6, .5, .45],
                               "infox_all": [1, .95, .8, .7, .6, .5]})
    agreement = noise.retention_agreement(cka, scrambling)
    assert agreement[noise.KEY].iloc[0] == pytest.approx(1.0) and agreement.layers.iloc[0] == 5
    assert noise.check_proxy(agreement).answer is True
    scrambling["infox_self"] = [1, .45, .5, .6, .7, .95]
    assert noise.check_proxy(noise.retention_agreement(cka, scrambling)).answer is False


# --------------------------------------------------------------------------- the variant study
def test_the_variant_study_holds_the_bases_first_and_its_settings():
    study = Study.from_profile("smoke", variants=["tiny-s-d2", "tiny-b-avg", "tiny-s-avg"],
                               variant_settings={"n_images": 64, "per_head": False})
    variant = study.variant_study()
    assert variant.models == ("tiny-s", "tiny-b", "tiny-s-d2", "tiny-b-avg", "tiny-s-avg")
    assert variant.n_images == 64 and not variant.per_head and variant.variants == ()
    assert variant.n_probe_fit == study.n_probe_fit


def test_variant_settings_name_only_what_may_differ():
    with pytest.raises(ValueError, match="cannot differ for the variants"):
        Study.from_profile("smoke", variant_settings={"dataset": "elsewhere"})
    with pytest.raises(TypeError, match="variant_settings"):
        Study.from_profile("smoke", variant_settings=[1])


def test_without_variants_every_question_says_why():
    answers = beyond.all_answers(Study.from_profile("smoke", variants=[]))
    assert len(answers) == 10 and all(a.answer is None for a in answers)
    assert all("no variant zoo" in a.reason for a in answers)
    assert {a.verdict for a in answers} == {"inconclusive"}


def test_rho_is_spearmans():
    from scipy.stats import spearmanr
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=15), rng.normal(size=15)
    x[3] = x[4]  # a tie
    assert training.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert np.isnan(training.spearman(np.ones(5), y[:5]))


def test_curves_too_short_to_segment_get_a_row_of_nan():
    rows = []
    for model, blocks in (("deep", 6), ("shallow", 2), ("deeper", 9)):
        for i, layer in enumerate(["raw", "pe", *map(str, range(1, blocks + 1))]):
            rows.append({"model": model, "layer": layer, "centered_similarity": 0.3 if i == 0 else 0.01 * i})
    table = headline.phases_where_defined(pd.DataFrame(rows))
    assert table.model.tolist() == ["deep", "shallow", "deeper"]
    assert table.blocks.tolist() == [6, 2, 9]
    assert table.loc[1].drop(["model", "blocks", "cliff_drop_pe"]).isna().all()
    assert table.cliff_drop_pe.tolist() == pytest.approx([0.29, 0.29, 0.29])  # raw and pe suffice for it
    presence = headline.phase_presence(table)
    assert presence.cliff.tolist() == [True, True, True] and pd.isna(presence.climb[1])


def test_without_cls_the_hub_is_undefined_not_absent():
    log = monitor_log(9, climb_from=40)
    no_cls = log[log.metric != "cls_centrality"]
    stacked = training.stack_logs({"m": log, "avg": no_cls}, {"m": 100, "avg": 100})
    per_step = training.states(stacked, {"m": 1 / 50, "avg": 1 / 49})
    assert per_step[per_step.model == "avg"].hub_marginalized.isna().all()
    onset = training.onsets(per_step).set_index("model")
    assert np.isnan(onset.loc["avg", "hub_marginalized_from"]) and onset.loc["m", "hub_marginalized_from"] == 0.2


def test_a_missing_model_makes_the_answer_inconclusive_not_an_error():
    table = pooling.pooling_table(pd.DataFrame({"model": ["s", "s-avg"], "feature": ["cls", "mean"],
                                                **{c: [0.0, 0.0] for c in pooling.POOLING_COLUMNS
                                                   if c not in ("model", "readout")}}),
                                  [("s", "s-avg"), ("b", "b-avg")])
    pairs = [("s", "s-avg"), ("b", "b-avg")]
    assert table.model.tolist() == ["s", "s-avg"]
    assert pooling.check_pooling_top1(table, pairs, spread(top1=0.5)).answer is None


def test_mixing_the_tiny_and_the_mini_variant_zoo_is_refused():
    with pytest.raises(ValueError, match="mixes the tiny and the mini"):
        Study.from_profile("smoke", variants=["tiny-s-d2", "mini-s-d3"])
