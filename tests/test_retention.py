"""Retention of the raw patch embeddings: RawCKA against a direct implementation on the pooled
tokens, its invariances and known answers, and ``retention_tables`` (ISI under other decoder
budgets) against the book's scrambling table."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vitphase_lib import analysis
from vitphase_lib.analysis import PassConfig, full_analysis_tables, retention_tables, run_pass
from vitphase_lib.capture import ViTLayout
from vitphase_lib.data import DEBIAN_FASHION_DIR, load_fashion_mnist
from vitphase_lib.loading import load_model
from vitphase_lib.metrics.retention import RawCKA

N, D, P = 9, 6, 1  # patches, width, prefix tokens
LAYOUT = ViTLayout(num_blocks=3, num_prefix_tokens=P, has_cls=True, num_patches=N, width=D)
needs_fashion = pytest.mark.skipif(not (DEBIAN_FASHION_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
                                   reason="Debian package dataset-fashion-mnist not installed")


def _random(*shape: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _stream(patches: dict[str, torch.Tensor], batches: list[int], max_images: int | None = None) -> RawCKA:
    """Feed each layer's patch tokens (n, N, D) in ``batches``, a junk prefix token in front of
    every layer but ``raw`` (it must not count)."""
    cka, start = RawCKA(LAYOUT, max_images), 0
    for size in batches:
        cka.begin_batch(torch.zeros(size, dtype=torch.long))
        for layer, tokens in patches.items():
            part = tokens[start:start + size]
            if layer != "raw":
                part = torch.cat([torch.full((size, P, D), 1e3, dtype=part.dtype), part], dim=1)
            cka.on_tokens(layer, part)
        start += size
    return cka


def _direct(x: torch.Tensor, y: torch.Tensor, positional: bool) -> float:
    """Linear CKA of the pooled tokens, the obvious way: centre the (n N, D) matrices (per
    position: each position's mean over the images) and take the formula."""
    x, y = x.double().numpy(), y.double().numpy()
    x = x - x.mean(axis=0 if positional else (0, 1), keepdims=True)
    y = y - y.mean(axis=0 if positional else (0, 1), keepdims=True)
    x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    return float(np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def _layers(n: int, dtype=torch.float64) -> dict[str, torch.Tensor]:
    """raw, and layers that keep some of it: mixed with noise, through a nonlinearity, with a
    large mean and per-position offsets."""
    raw = _random(n, N, D, seed=0, dtype=dtype) * 2 + 0.5
    mix, noise = _random(D, D, seed=1, dtype=dtype), _random(n, N, D, seed=2, dtype=dtype)
    offsets = _random(N, D, seed=3, dtype=dtype) * 5
    return {"raw": raw, "pe": raw + offsets, "1": torch.tanh(raw @ mix) + noise + offsets,
            "2": (raw @ mix).square() + 100.0 + 3 * noise, "3": noise + offsets, "head": raw @ mix + noise}


@pytest.mark.parametrize("batches", [[40], [7, 13, 1, 19]])
def test_streamed_cka_equals_the_direct_formula(batches):
    patches = _layers(40)
    table = _stream(patches, batches).result().set_index("layer")
    assert list(table.index) == LAYOUT.layer_names
    assert (table.tokens == 40 * N).all()
    for layer, x in patches.items():
        for column, positional in (("cka", False), ("cka_positional", True)):
            assert table.loc[layer, column] == pytest.approx(_direct(x, patches["raw"], positional),
                                                             abs=1e-9), (layer, column)


def test_float32_tokens_stay_precise_with_a_large_mean():
    patches = {layer: (x + 1e3).float() for layer, x in _layers(40).items()}
    table = _stream(patches, [16, 24]).result().set_index("layer")
    for layer, x in patches.items():
        for column, positional in (("cka", False), ("cka_positional", True)):
            assert table.loc[layer, column] == pytest.approx(_direct(x, patches["raw"], positional),
                                                             abs=1e-6), (layer, column)


def test_cap_takes_exactly_the_first_images():
    patches = _layers(40)
    capped = _stream(patches, [7, 13, 20], max_images=15).result()
    first = _stream({layer: x[:15] for layer, x in patches.items()}, [15]).result()
    assert (capped.tokens == 15 * N).all()
    np.testing.assert_allclose(capped[["cka", "cka_positional"]], first[["cka", "cka_positional"]],
                               rtol=0, atol=1e-12)


def test_invariant_to_rotation_and_isotropic_scaling_not_to_anisotropic_scaling():
    patches = _layers(40)
    base = patches["1"]
    rotation, _ = torch.linalg.qr(_random(D, D, seed=4))
    stretch = torch.linspace(0.2, 5.0, D, dtype=torch.float64)
    table = _stream({"raw": patches["raw"], "pe": base, "1": base @ rotation * 3.7, "2": base * stretch,
                     "3": base, "head": base}, [25, 15]).result().set_index("layer")
    for column in ("cka", "cka_positional"):
        assert table.loc["1", column] == pytest.approx(table.loc["pe", column], abs=1e-12)
        assert abs(table.loc["2", column] - table.loc["pe", column]) > 1e-3


def test_raw_gives_one_and_per_position_offsets_do_not_count():
    patches = _layers(40)
    table = _stream(patches, [40]).result().set_index("layer")
    assert table.loc["raw", "cka"] == pytest.approx(1.0, abs=1e-12)
    assert table.loc["raw", "cka_positional"] == pytest.approx(1.0, abs=1e-12)
    assert table.loc["pe", "cka_positional"] == pytest.approx(1.0, abs=1e-12)  # raw + offsets
    assert table.loc["pe", "cka"] < 0.9   # with the offsets, which are not raw content


@pytest.fixture(scope="module")
def tiny():
    """tiny-s and three disjoint sets of Fashion-MNIST test images (analysis, fit, score)."""
    images = load_fashion_mnist("test", download=False)
    sets = [images.subset(np.arange(lo, hi)).as_dataset() for lo, hi in ((0, 48), (48, 112), (112, 160))]
    return load_model("tiny-s").model, sets


CONFIG = PassConfig(batch_size=32, progress=False)


@needs_fashion
def test_cka_of_a_trained_tiny_model_is_in_the_unit_interval(tiny):
    model, (images, _, _) = tiny
    cka = RawCKA(analysis.vit_layout(model))
    run_pass(model, images, [cka], CONFIG)
    table = cka.result().set_index("layer")
    values = table[["cka", "cka_positional"]].to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1 + 1e-9).all()
    assert table.loc["raw", "cka"] == pytest.approx(1.0, abs=1e-12)
    assert table.loc["pe", "cka_positional"] == pytest.approx(1.0, abs=1e-5)  # raw + the PE
    assert (table.tokens == 48 * 49).all()


@pytest.fixture(scope="module")
def budgets(tiny):
    """retention_tables on tiny-s (width 16: dims 4, 16, 64 -> 4, 16), counting the passes."""
    model, sets = tiny
    calls = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(analysis, "run_pass", lambda *args, **kwargs: calls.append(args[1]) or run_pass(*args, **kwargs))
        tables = retention_tables(model, *sets, CONFIG, dims=(4, 16, 64), ridges=("cv", 1e-3, 1e9))
    return tables, calls


@needs_fashion
def test_three_passes_whatever_the_budgets(budgets, tiny):
    tables, calls = budgets
    assert calls == tiny[1]  # analysis, fit, score: once each
    table = tables["isi_budget"]
    assert list(table.columns[:4]) == ["infox_dims", "ridge", "layer", "depth"]
    assert {"infox_self", "infox_all", "isi"} <= set(table.columns)
    assert sorted(set(table.infox_dims)) == [4, 16]
    assert len(table) == 2 * 3 * len(tables["cka"])
    assert list(tables["cka"].columns) == ["layer", "depth", "cka", "cka_positional", "tokens"]


@needs_fashion
def test_cross_validated_budget_is_the_books_scrambling_table(budgets, tiny):
    model, sets = tiny
    book = full_analysis_tables(model, *sets, num_classes=10, config=CONFIG, metrics=("scrambling",),
                                infox_dims=16)["scrambling"].reset_index(drop=True)
    table = budgets[0]["isi_budget"]
    rows = table[(table.infox_dims == 16) & (table.ridge == "cv")].reset_index(drop=True)
    for column in book.columns:
        if column == "layer":
            assert rows[column].tolist() == book[column].tolist()
        else:
            np.testing.assert_allclose(rows[column].to_numpy(float), book[column].to_numpy(float),
                                       rtol=0, atol=1e-10, err_msg=column)


@needs_fashion
def test_a_large_fixed_ridge_returns_the_self_decoder(budgets):
    table = budgets[0]["isi_budget"]
    large = table[table.ridge == 1e9]
    assert (large.ridge_self == 1e9).all() and (large.ridge_all == 1e9).all()
    assert large.isi.abs().max() < 1e-6  # both decoders vanish; the all one departs from the self one as 1 / ridge
    assert table[table.ridge == "cv"].isi.abs().max() > 1e-3


def test_budgets_are_checked():
    assert analysis._budgets((4, 32, 64, 16), ("cv", 0.1, 1e-1), width=32) == ([4, 32, 16], ["cv", 0.1])
    for dims, ridges in (((0,), ("cv",)), ((4.0,), ("cv",)), ((4,), ("CV",)), ((4,), (0.0,)), ((4,), ()),
                         ((), ("cv",))):
        with pytest.raises((TypeError, ValueError)):
            analysis._budgets(dims, ridges, width=16)
