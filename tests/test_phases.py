"""Cliff / Plateau / Climb segmentation on synthetic curves with known boundaries."""
from __future__ import annotations

import math

import numpy as np
import pytest

from vitphase_lib.metrics import PhaseSegmentation, segment_phases


def layer_names(num_blocks: int) -> list[str]:
    return ["raw", "pe"] + [str(i) for i in range(1, num_blocks + 1)]


def three_piece_curve(num_blocks: int, e: int, s: int, top: float = 0.8, floor: float = 0.1,
                      plateau_slope: float = 0.0, climb_slope: float = 0.06) -> np.ndarray:
    """A continuous piecewise-linear curve over positions 0..L+1: linear fall from ``top`` to
    ``floor`` over 0..e, slope ``plateau_slope`` over e..s, slope ``climb_slope`` after s."""
    k = num_blocks + 2
    x = np.arange(k, dtype=np.float64)
    cliff_slope = (floor - top) / e
    y = np.where(x <= e, top + cliff_slope * x, floor + plateau_slope * (x - e))
    y_s = floor + plateau_slope * (s - e)
    return np.where(x <= s, y, y_s + climb_slope * (x - s))


CASES = [  # (L, e, s): Plateau starts at position e, Climb at position s
    (3, 1, 3),
    (3, 2, 3),
    (6, 1, 4),
    (6, 2, 5),
    (12, 1, 8),
    (12, 3, 10),
    (12, 2, 6),
    (24, 1, 18),
    (24, 4, 12),
    (24, 2, 24),
]


@pytest.mark.parametrize("num_blocks,e,s", CASES)
def test_noise_free_curves_recover_the_boundaries(num_blocks, e, s):
    layers = layer_names(num_blocks)
    y = three_piece_curve(num_blocks, e, s)
    seg = segment_phases(y, layers)
    k = num_blocks + 2
    assert isinstance(seg, PhaseSegmentation)
    assert seg.layers == tuple(layers)
    assert seg.plateau_start == layers[e]
    assert seg.climb_start == layers[s]
    assert seg.plateau_length == s - e
    assert seg.climb_length == k - 1 - s
    assert seg.cliff_drop_pe == pytest.approx(y[0] - y[1])
    assert seg.cliff_drop_block1 == pytest.approx(y[0] - y[2])
    assert seg.climb_rise == pytest.approx(y[-1] - y[s])
    assert seg.rss == pytest.approx(0.0, abs=1e-20)
    cliff, plateau, climb = seg.slopes
    assert cliff == pytest.approx((0.1 - 0.8) / e, abs=1e-9)
    assert plateau == pytest.approx(0.0, abs=1e-9)
    if s < k - 1:
        assert climb == pytest.approx(0.06, abs=1e-9)
    # phase_of labels every layer
    for i, layer in enumerate(layers):
        expected = "cliff" if i < e else ("plateau" if i <= s else "climb")
        assert seg.phase_of(layer) == expected


def test_hand_computed_example():
    # L = 4: raw 0.9, pe 0.2, blocks 0.2 0.2 0.5 0.8  -> Plateau pe..2, Climb from block 2
    layers = ["raw", "pe", "1", "2", "3", "4"]
    seg = segment_phases([0.9, 0.2, 0.2, 0.2, 0.5, 0.8], layers)
    assert (seg.plateau_start, seg.climb_start) == ("pe", "2")
    assert (seg.plateau_length, seg.climb_length) == (2, 2)
    assert seg.cliff_drop_pe == pytest.approx(0.7)
    assert seg.cliff_drop_block1 == pytest.approx(0.7)
    assert seg.climb_rise == pytest.approx(0.6)
    np.testing.assert_allclose(seg.slopes, (-0.7, 0.0, 0.3), atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("num_blocks,e,s", [(6, 1, 4), (12, 1, 8), (12, 3, 7), (24, 2, 15), (24, 1, 20)])
def test_small_noise_keeps_the_boundaries(num_blocks, e, s, seed):
    layers = layer_names(num_blocks)
    clean = three_piece_curve(num_blocks, e, s, climb_slope=0.08)
    noisy = clean + np.random.default_rng(seed).normal(0.0, 0.003, size=clean.shape)
    seg = segment_phases(noisy, layers)
    assert (seg.plateau_start, seg.climb_start) == (layers[e], layers[s])
    assert seg.plateau_length == s - e
    assert seg.rss > 0
    assert seg.cliff_drop_pe == pytest.approx(noisy[0] - noisy[1])
    assert seg.slopes[1] == pytest.approx(0.0, abs=0.01)
    assert seg.slopes[2] == pytest.approx(0.08, abs=0.01)


def test_slightly_sloped_plateau_is_still_found():
    layers = layer_names(12)
    y = three_piece_curve(12, 2, 9, plateau_slope=0.005, climb_slope=0.07)
    seg = segment_phases(y, layers)
    assert (seg.plateau_start, seg.climb_start) == ("1", "8")
    assert seg.slopes[1] == pytest.approx(0.005, abs=1e-9)


def test_segmentation_is_deterministic_and_shift_invariant():
    layers = layer_names(12)
    y = three_piece_curve(12, 2, 8) + np.random.default_rng(5).normal(0, 0.01, 14)
    a = segment_phases(y, layers)
    b = segment_phases(list(y), layers)
    c = segment_phases(y - 0.5, layers)
    assert a == b
    assert (c.plateau_start, c.climb_start) == (a.plateau_start, a.climb_start)
    assert c.rss == pytest.approx(a.rss, rel=1e-6)


def test_a_curve_that_falls_all_the_way_is_all_cliff():
    # no layer has only 10% of the Cliff left to fall: the Cliff runs to K - 3
    layers = layer_names(8)
    seg = segment_phases(np.linspace(0.5, -0.1, 10), layers)
    assert (seg.plateau_start, seg.climb_start) == ("6", "7")
    assert seg.climb_rise < 0


def test_equal_fits_go_to_the_earliest_knot():
    # after the Cliff a straight rise: every knot fits it exactly, the earliest wins
    layers = layer_names(6)
    seg = segment_phases([0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], layers)
    assert (seg.plateau_start, seg.climb_start) == ("pe", "1")
    np.testing.assert_allclose(seg.slopes, (-0.8, 0.1, 0.1), atol=1e-9)


def test_a_nearly_flat_straight_tail_is_all_plateau():
    """mini-L's failure before this rule: after the Cliff a straight line rising by 0.0008 over
    24 blocks fits as well at every knot, and the earliest knot made it "Plateau 1 block, Climb
    22". A line that rises by at most 10% of the curve's range is Plateau up to the last block."""
    layers = layer_names(24)
    y = np.concatenate([[0.05, 0.004], -0.009 + 3.3e-5 * np.arange(24)])
    seg = segment_phases(y, layers)
    assert (seg.plateau_start, seg.climb_start) == ("1", "23")
    assert (seg.plateau_length, seg.climb_length) == (22, 1)
    assert seg.slopes[1] == pytest.approx(3.3e-5, rel=1e-6)
    assert seg.climb_rise == pytest.approx(3.3e-5, rel=1e-6)


def test_a_rise_then_slow_decline_has_no_climb():
    # mini-L's measured curve (default build, 87.12% checkpoint): up over blocks 1-8, then down
    y = [0.05008, 0.00447, -0.00899, -0.00683, -0.00748, -0.00604, -0.00498, -0.00454, -0.00368,
         -0.00319, -0.00325, -0.00324, -0.00327, -0.00335, -0.00347, -0.00358, -0.00371, -0.00392,
         -0.00402, -0.00405, -0.00408, -0.00415, -0.00473, -0.00496, -0.00531, -0.00606]
    seg = segment_phases(y, layer_names(24))
    assert (seg.plateau_start, seg.climb_start) == ("1", "23")
    assert seg.climb_rise < 0


def test_a_fall_that_continues_into_block_1_stays_in_the_cliff():
    """The mini zoo's shape: S falls at pe and again at block 1, then stays flat near the floor
    with a last block that barely moves. The Cliff is raw..block 1, the Plateau runs to the lowest
    point (block 11), and the "Climb" is the last block, with a tiny rise."""
    y = [0.0550, -0.0039, -0.0136, -0.0148, -0.0151, -0.0159, -0.0163, -0.0167, -0.0169, -0.0170,
         -0.0172, -0.0175, -0.0176, -0.0172]
    seg = segment_phases(y, layer_names(12))
    assert (seg.plateau_start, seg.climb_start) == ("1", "11")
    assert (seg.plateau_length, seg.climb_length) == (10, 1)
    assert seg.climb_rise == pytest.approx(0.0004)
    assert seg.slopes[0] == pytest.approx((-0.0136 - 0.0550) / 2)


def test_a_flat_tail_after_a_decline_is_plateau_not_climb():
    # decline, then exactly flat to the end: no Climb; the Plateau runs to the last minimum
    y = [0.5, 0.0, -0.02, -0.03, -0.035, -0.035, -0.035, -0.035, -0.035, -0.035]
    seg = segment_phases(y, layer_names(8))
    assert seg.plateau_start == "pe"
    assert seg.climb_start == "7"
    assert seg.climb_rise == 0.0


# --------------------------------------------------------------------------- bad inputs
def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="values for"):
        segment_phases([0.5, 0.1, 0.1, 0.2, 0.3], layer_names(4))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_raise(bad):
    y = list(three_piece_curve(6, 1, 4))
    y[3] = bad
    with pytest.raises(ValueError, match="non-finite"):
        segment_phases(y, layer_names(6))


@pytest.mark.parametrize("num_blocks", [0, 1, 2])
def test_too_few_layers_raise(num_blocks):
    layers = layer_names(num_blocks)
    with pytest.raises(ValueError, match="L >= 3"):
        segment_phases(np.linspace(1, 0, len(layers)), layers)


def test_minimum_depth_is_accepted():
    # positions raw=0, pe=1, 1=2, 2=3, 3=4: flat over pe..1, then a climb
    seg = segment_phases([0.9, 0.1, 0.1, 0.4, 0.7], layer_names(3))
    assert (seg.plateau_start, seg.climb_start) == ("pe", "1")
    assert (seg.plateau_length, seg.climb_length) == (1, 2)


@pytest.mark.parametrize("layers", [
    ["pe", "raw", "1", "2", "3"],
    ["1", "2", "3", "4", "5"],
    ["raw", "1", "2", "3", "4"],
])
def test_wrong_layer_names_raise(layers):
    with pytest.raises(ValueError, match="raw, pe"):
        segment_phases([0.9, 0.1, 0.1, 0.4, 0.7], layers)
