import json
from pathlib import Path

import pandas as pd
import pytest

from vitphase_lib.layers import layer_order
from vitphase_lib.plotting import by_layer, column_label, lines_by_model, model_panels, myst_table, with_depth_axes

RECORDED_SMOKE = Path(__file__).parent / "notebooks"


def test_layer_order_is_network_order():
    assert layer_order(["head", "10", "2", "pe", "raw", "1"]) == ["raw", "pe", "1", "2", "10", "head"]


def test_depth_axes_put_raw_before_pe_and_normalize_by_blocks():
    frame = pd.DataFrame({"model": "m", "layer": ["raw", "pe", "1", "2", "head"], "v": range(5)})
    out = with_depth_axes(frame)
    assert out.block.tolist() == [-1.0, 0.0, 1.0, 2.0, 2.5]
    assert out.normalized_depth.tolist() == [-0.5, 0.0, 0.5, 1.0, 1.25]


@pytest.mark.parametrize("blocks_only, xs", [(False, [-1.0, 0.0, 1.0, 2.0]), (True, [1.0, 2.0])])
def test_lines_by_model_draws_each_model_in_order_without_the_head(blocks_only, xs):
    frame = pd.DataFrame({"model": ["b"] * 5 + ["a"] * 5, "layer": ["raw", "pe", "1", "2", "head"] * 2,
                          "v": range(10)})
    ax = lines_by_model(frame, "v", "v", ["a", "b"], blocks_only=blocks_only)
    assert [line.get_label() for line in ax.lines] == ["a", "b"]
    assert ax.lines[0].get_xdata().tolist() == xs
    assert ax.lines[1].get_ydata().tolist() == ([0, 1, 2, 3] if not blocks_only else [2, 3])


def test_lines_by_model_reads_per_block_tables_and_model_panels_are_titled():
    attention = pd.DataFrame({"model": "m", "block": [2, 1], "aci": [0.2, 0.1]})
    ax = lines_by_model(attention, "aci", "ACI", ["m"], logy=True)
    assert ax.lines[0].get_xdata().tolist() == [1, 2] and ax.get_yscale() == "log"
    fig, axes = model_panels(["x", "y"])
    assert [a.get_title() for a in axes] == ["x", "y"] and len(fig.axes) == 2


def test_by_layer_and_myst_table():
    frame = pd.DataFrame({"model": ["a", "a", "b", "b"], "layer": ["1", "raw"] * 2, "v": [1, 2, 3, 4]})
    table = by_layer(frame, "v", ["b", "a"])
    assert table.index.tolist() == ["raw", "1"] and table.columns.tolist() == ["b", "a"]
    text = myst_table(frame, "Cap", "tab-x").data
    assert text.startswith("```{table} Cap\n:name: tab-x\n") and "| Model" in text


def test_column_labels_are_words_with_units_and_model_names_stay():
    assert column_label("plateau_start") == "Plateau start (block)"
    assert column_label("test_top1") == "Test top-1 (%)"
    assert column_label("cls_centrality") == "CLS centrality"
    assert column_label("pe_dominance_ratio") == "PE Dominance Ratio"
    assert column_label("some_new_column") == "some new column"  # unknown: its words
    for name in ("tiny-s", "vit_base_patch16_224", "S(pe)", "drop / -floor", 3):
        assert column_label(name) == str(name)  # model names and ready-made headers unchanged
    text = myst_table(pd.DataFrame({"model": ["a"], "plateau_start": [3]}), "Cap", "tab-x").data
    assert "| Model" in text and "Plateau start (block)" in text and "plateau_start" not in text


def test_myst_table_fixed_point_digits_match_pandas_round():
    """1367 of 2000 images is 68.35%: the table must show what `frame.round(1)` prints (68.4)."""
    frame = pd.DataFrame({"model": ["a", "b"], "top1": [100 * 1367 / 2000, 100 * 1767 / 2000]})
    text = myst_table(frame, "Cap", "tab-x", floatfmt=".1f").data
    printed = frame.round(1).to_string(index=False)
    assert "68.4" in printed and "88.4" in printed
    assert "68.4" in text and "88.4" in text and "68.3" not in text


@pytest.mark.parametrize("caption, frame, message", [
    ("Top-1 (see {numref}`tab-t1`)", pd.DataFrame({"a": [1.0]}), "backtick"),
    ("Cap", pd.DataFrame({"drop / |floor|": [1.0]}), "contains '|'"),
    ("Cap", pd.DataFrame({"a": ["x | y"]}), "contains '|'"),
])
def test_myst_table_refuses_what_would_break_the_rendered_table(caption, frame, message):
    """A backtick in the caption ends the fence (the label then is undefined, a -W build error
    far from its cause); a '|' in a name or cell splits the Markdown cell."""
    with pytest.raises(ValueError, match=message):
        myst_table(frame, caption, "tab-x")


def _recorded_table_headers() -> dict[str, list[str]]:
    """Table label -> the header cells of every MyST table in the recorded smoke chapters."""
    headers = {}
    for path in sorted(RECORDED_SMOKE.glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            for output in cell.get("outputs", []):
                text = "".join(output.get("data", {}).get("text/markdown", ""))
                if "{table}" in text:
                    lines = text.splitlines()
                    name = next(line.split()[-1] for line in lines if line.startswith(":name:"))
                    header = next(line for line in lines if line.startswith("|"))
                    headers[name] = [cell.strip() for cell in header.strip("|").split("|")]
    return headers


def test_every_recorded_table_has_human_headers():
    """Every column a chapter shows is covered by COLUMN_LABELS (or reads as words): no
    identifier such as plateau_start reaches the page."""
    headers = _recorded_table_headers()
    assert len(headers) >= 10
    snake = {name: [h for h in cells if "_" in h] for name, cells in headers.items()}
    assert not {name: cells for name, cells in snake.items() if cells}
