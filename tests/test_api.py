"""vitphase_lib.analyse: the book's analysis on a model instance and a torch data set."""
from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
import timm
import torch
from torch.utils.data import DataLoader, TensorDataset

import vitphase_lib
from vitphase_lib.analysis import PassConfig, full_analysis_tables
from vitphase_lib.data import analysis_splits, synthetic_images
from vitphase_lib.models import MiniViTConfig, build_mini_vit

matplotlib.use("Agg")
NOT_APPLICABLE = {"pe_norm", "pe_dominance_ratio", "cls_centrality", "cls_pagerank_share", "ridge_all"}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_mini_vit(MiniViTConfig("api-test", depth=2, width=16, heads=2, num_classes=4)).eval()


@pytest.fixture(scope="module")
def images():
    return synthetic_images(n=96, num_classes=4, seed=5)


@pytest.fixture(scope="module")
def result(model, images):
    return vitphase_lib.analyse(model, images.as_dataset(), per_head=True, batch_size=32,
                                infox_dims=4, progress=False, name="api-test")


def test_every_table_of_the_book_and_the_same_numbers(model, images, result):
    assert set(result.tables) == {"per_layer", "summary", "attention", "attention_heads",
                                  "collapse", "scrambling", "probes"}
    splits = analysis_splits(96, 24, 48, 24, seed=0)  # the default 1 : 2 : 1 split
    subset = [torch.utils.data.Subset(images.as_dataset(), list(part))
              for part in (splits.analysis, splits.probe_fit, splits.probe_score)]
    book = full_analysis_tables(model, *subset, num_classes=4, config=PassConfig(batch_size=32, progress=False),
                                infox_dims=4, aci_max_images=512, pca_max_images=512, desc="book")
    for name, table in book.items():
        pd.testing.assert_frame_equal(result[name], table, check_exact=False, rtol=1e-9, atol=1e-12)
    assert result.settings["images"] == {"analysis": 24, "probe_fit": 48, "probe_score": 24}
    assert not result.notes


def test_per_head_tables_average_to_the_head_averaged_graph(result):
    heads, averaged = result["attention_heads"], result["attention"]
    assert sorted(heads["head"].unique()) == [1, 2] and sorted(heads.block.unique()) == [1, 2]
    mean_ccc = heads.groupby("block").cls_centrality.mean().to_numpy()
    np.testing.assert_allclose(mean_ccc, averaged.cls_centrality.to_numpy(), rtol=1e-6)
    assert heads.aci.between(0, 1).all()


def test_without_labels_the_label_free_metrics_run(model, images):
    only_images = [image for image, _ in images.as_dataset()]
    result = vitphase_lib.analyse(model, only_images, infox_dims=4, progress=False)
    assert set(result.tables) == {"per_layer", "summary", "attention", "scrambling"}
    assert result.notes and "no labels" in result.notes[0] and "probes" in result.notes[0]
    assert np.isnan(result["summary"].top1.iloc[0])


def test_a_dataloader_brings_its_batch_size_and_label_free_metrics_use_every_image(model, images):
    loader = DataLoader(images.as_dataset(), batch_size=40)
    result = vitphase_lib.analyse(model, loader, metrics=("similarity",), progress=False)
    assert set(result.tables) == {"per_layer", "summary"}
    assert result.settings["batch_size"] == 40 and result.settings["images"] == {"analysis": 96}
    assert int(result["summary"].images.iloc[0]) == 96


@pytest.mark.parametrize("kwargs, error, match", [
    ({"metrics": ("similarity", "nc5")}, ValueError, "unknown metric"),
    ({"metrics": "similarity"}, ValueError, "unknown metric"),
    ({"n_images": 0}, ValueError, "n_images"),
    ({"n_images": 50, "n_probe_fit": 40, "n_probe_score": 20}, ValueError, "exceed"),
])
def test_bad_arguments_say_what_is_wrong(model, images, kwargs, error, match):
    with pytest.raises(error, match=match):
        vitphase_lib.analyse(model, images.as_dataset(), progress=False, **kwargs)


def test_iterable_data_is_refused(model):
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield torch.zeros(1, 28, 28), 0
    with pytest.raises(TypeError, match="map-style"):
        vitphase_lib.analyse(model, Stream(), progress=False)


@pytest.mark.parametrize("save", ["to_parquet", "to_csv"])
def test_tables_are_saved_with_their_settings(result, tmp_path, save):
    folder = getattr(result, save)(tmp_path / "out")
    suffix = ".parquet" if save == "to_parquet" else ".csv"
    for name, table in result.tables.items():
        path = folder / f"{name}{suffix}"
        back = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path, dtype={"layer": str})
        assert back.shape == table.shape, name
    saved = json.loads((folder / "analysis.json").read_text())
    assert saved["model"] == "api-test" and saved["tables"] == sorted(result.tables)


def test_plot_draws_the_chapter_figures(result):
    figures = result.plot()
    assert list(figures) == ["similarity", "attention", "collapse", "scrambling", "tradeoff"]
    attention_axes = figures["attention"].axes
    assert len(attention_axes[0].get_lines()) == 2 + 1 + 1  # two heads, the average, the uniform share
    with pytest.raises(KeyError, match="no table"):
        result["nothing"]


@pytest.mark.parametrize("name", ["eva02_tiny_patch14_224", "vit_relpos_small_patch16_224"])
def test_other_timm_vit_families_give_finite_tables(name):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    data = TensorDataset(torch.randn(4, 3, 224, 224), torch.randint(0, 1000, (4,)))
    result = vitphase_lib.analyse(model, data, metrics=("similarity", "attention"), batch_size=2,
                                  aci_max_images=2, progress=False)
    for table_name, table in result.tables.items():
        numbers = table.select_dtypes("number").drop(columns=[c for c in table if c in NOT_APPLICABLE])
        assert np.isfinite(numbers.to_numpy()).all(), table_name
    if name.startswith("vit_relpos"):  # relative position bias only, no [CLS]
        assert "relative position bias" in result.notes[0]
        assert np.isnan(result["summary"].pe_dominance_ratio.iloc[0])
    else:  # EVA-02: an additive pos_embed besides RoPE
        assert not result.notes and result["summary"].pe_dominance_ratio.iloc[0] > 0
