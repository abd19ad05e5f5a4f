"""The layer vocabulary (vitphase_lib.layers): names, order, block numbers and x positions."""
import pandas as pd
import pytest

from vitphase_lib import layers


def test_layer_names_are_raw_pe_blocks_head():
    assert layers.layer_names(3) == ["raw", "pe", "1", "2", "3", "head"]


def test_block_numbers_only_for_blocks():
    assert [layers.block_number(x) for x in ("raw", "pe", "7", "head")] == [None, None, 7, None]
    assert [layers.blocks_passed(x) for x in ("raw", "pe", "7")] == [0, 0, 7]
    with pytest.raises(ValueError, match="head"):
        layers.blocks_passed("head")


def test_positions_put_raw_before_pe_and_the_head_after_the_last_block():
    assert [layers.position(x, 12) for x in ("raw", "pe", "1", "12", "head")] == [-1, 0, 1, 12, 12.5]
    with pytest.raises(ValueError, match="unknown layer"):
        layers.position("cls", 12)


def test_order_sorts_blocks_by_number_and_drops_repeats():
    assert layers.layer_order(["head", "10", "2", "pe", "2", "raw"]) == ["raw", "pe", "2", "10", "head"]


def test_blocks_only_and_depth_per_row():
    frame = pd.DataFrame({"model": ["a"] * 4 + ["b"] * 3,
                          "layer": ["raw", "pe", "1", "head", "1", "2", "head"]})
    assert layers.blocks_only(frame.layer).tolist() == [False, False, True, False, True, True, False]
    assert layers.depth_of_each_row(frame).tolist() == [1, 1, 1, 1, 2, 2, 2]
