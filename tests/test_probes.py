"""Linear probes: separable classes are read perfectly, random labels are not; features stream."""
import numpy as np
import torch

from vitphase_lib.capture import ViTLayout
from vitphase_lib.metrics.probes import FeatureCollector, probe_table, probe_top1


def test_separable_classes_give_about_100_percent_and_noise_gives_chance():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 10
    y_fit, y_score = rng.integers(0, 4, 400), rng.integers(0, 4, 200)
    x_fit = centres[y_fit] + rng.normal(size=(400, 8))
    x_score = centres[y_score] + rng.normal(size=(200, 8))
    assert probe_top1(x_fit, y_fit, x_score, y_score) > 99.0
    assert probe_top1(rng.normal(size=(400, 8)), y_fit, rng.normal(size=(200, 8)), y_score) < 45.0


def test_collector_streams_features_in_order_and_to_disk(tmp_path):
    layout = ViTLayout(num_blocks=1, num_prefix_tokens=1, has_cls=True, num_patches=3, width=2)
    collector = FeatureCollector(layout, n_images=5, folder=tmp_path)
    tokens = torch.arange(5 * 4 * 2, dtype=torch.float32).reshape(5, 4, 2)
    for start, stop in ((0, 2), (2, 5)):
        collector.begin_batch(torch.arange(start, stop) % 2)
        collector.on_tokens("1", tokens[start:stop])
        collector.on_logits(torch.zeros(stop - start, 2))  # end of batch: copied to the host
    np.testing.assert_array_equal(collector.features[("1", "cls")], tokens[:, 0].numpy())
    np.testing.assert_allclose(collector.features[("1", "mean")], tokens[:, 1:].mean(1).numpy())
    np.testing.assert_array_equal(collector.targets, np.arange(5) % 2)
    assert (tmp_path / "1-cls.npy").is_file()
    table = probe_table(collector, collector)
    assert set(table.feature) == {"cls", "mean"}


def _collector(n: int, seed: int) -> FeatureCollector:
    layout = ViTLayout(num_blocks=2, num_prefix_tokens=1, has_cls=True, num_patches=3, width=4)
    collector = FeatureCollector(layout, n_images=n)
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    collector.begin_batch(labels)
    for layer in layout.layer_names:
        tokens = torch.randn(n, 4, 4, generator=g) + 3 * labels[:, None, None] * (layer == "2")
        collector.on_tokens(layer, tokens if layer != "raw" else tokens[:, 1:])
    collector.on_logits(torch.zeros(n, 3))
    return collector


def test_probes_fitted_in_parallel_give_the_same_table():
    fit, score = _collector(60, 0), _collector(30, 1)
    serial, parallel = probe_table(fit, score), probe_table(fit, score, n_jobs=2)
    assert serial.equals(parallel)
    assert len(serial) == 8  # raw and pe: mean only (the [CLS] is a constant there); 1, 2, head: both
    assert serial.loc[serial.layer == "2", "probe_top1"].min() > 90  # the separable layer


def test_collector_rows_follow_the_global_image_index():
    """On a data-parallel rank, a batch starting at image 3 fills rows 3.. only."""
    layout = ViTLayout(num_blocks=1, num_prefix_tokens=1, has_cls=True, num_patches=3, width=2)
    collector = FeatureCollector(layout, n_images=6)
    collector.begin_batch(torch.tensor([1, 0]), start=3)
    collector.on_tokens("1", torch.ones(2, 4, 2))
    collector.on_logits(torch.zeros(2, 2))
    np.testing.assert_array_equal(collector.features[("1", "cls")][:, 0], [0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(collector.targets, [0, 0, 0, 1, 0, 0])
    import pytest
    with pytest.raises(ValueError, match="sized for 6 images"):
        collector.begin_batch(torch.zeros(4, dtype=torch.long), start=4)
