"""InfoX_self, InfoX_all and ISI: the known answers of METRICS.md, the cross-validated ridge,
determinism and streaming."""
import pytest
import torch

from vitphase_lib.capture import ViTLayout
from vitphase_lib.metrics.scrambling import (DecoderFit, DecoderScore, TokenMoments, isi_regime,
                                             _block_diagonal, _self_design)

N, D = 9, 6
LAYOUT = ViTLayout(num_blocks=3, num_prefix_tokens=1, has_cls=True, num_patches=N, width=D)
PERMUTATION = torch.tensor([3, 0, 1, 2, 5, 4, 7, 8, 6])  # no fixed point


def _layers(z: torch.Tensor) -> dict[str, torch.Tensor]:
    """raw = z; block 1 permutes the tokens across positions; block 2 replaces every token by the
    image mean; block 3 returns its input (identity)."""
    cls = torch.zeros(z.shape[0], 1, D)
    return {"raw": z, "pe": torch.cat([cls, z], 1), "1": torch.cat([cls, z[:, PERMUTATION]], 1),
            "2": torch.cat([cls, z.mean(1, keepdim=True).expand_as(z)], 1),
            "3": torch.cat([cls, z], 1), "head": torch.cat([cls, z], 1)}


def _feed(accumulator, n_images: int, seed: int, batch: int = 100) -> None:
    images = torch.randn(n_images, N, D, generator=torch.Generator().manual_seed(seed))  # i.i.d.
    for z in images.split(batch):
        accumulator.begin_batch(torch.zeros(len(z), dtype=torch.long))
        for layer, tokens in _layers(z).items():
            accumulator.on_tokens(layer, tokens)


def _scores(batch: int = 100):
    moments = TokenMoments(LAYOUT)
    _feed(moments, 2000, 1, batch)
    inputs = {layer: moments.projection(layer, 16) for layer in LAYOUT.layer_names}
    target = moments.projection("raw", 16, standardize=True)
    fit = DecoderFit(LAYOUT, inputs, target)
    _feed(fit, 3000, 2, batch)
    score = DecoderScore(LAYOUT, inputs, target, fit.decoders(), fit.ridges)
    _feed(score, 2000, 3, batch)
    return score.result().set_index("layer")


@pytest.fixture(scope="module")
def scores():
    return _scores()


def test_identity_layer_keeps_everything_in_place(scores):
    for layer in ("raw", "3"):
        assert scores.loc[layer, "infox_self"] > 0.999
        assert abs(scores.loc[layer, "isi"]) < 1e-3


def test_permuting_layer_moves_everything_to_other_tokens(scores):
    assert scores.loc["1", "infox_self"] < 0.05
    assert scores.loc["1", "infox_all"] > 0.999
    assert scores.loc["1", "isi"] > 0.95


def test_mean_replacing_layer_loses_both(scores):
    # the image mean carries 1/N of each patch's variance
    assert scores.loc["2", "infox_self"] < 0.2 and scores.loc["2", "infox_all"] < 0.2
    assert abs(scores.loc["2", "isi"]) < 0.02


def test_deterministic_and_independent_of_batch_size(scores):
    again = _scores(batch=50)
    torch.testing.assert_close(torch.tensor(again[["infox_self", "infox_all"]].to_numpy()),
                               torch.tensor(scores[["infox_self", "infox_all"]].to_numpy()),
                               rtol=1e-6, atol=1e-6)


def test_cross_validation_error_matches_direct_evaluation():
    """The held-out error computed from moments equals the error of predictions on the fold."""
    moments = TokenMoments(LAYOUT)
    _feed(moments, 400, 1)
    inputs = {layer: moments.projection(layer, 4) for layer in LAYOUT.layer_names}
    target = moments.projection("raw", 4, standardize=True)
    fit = DecoderFit(LAYOUT, inputs, target)
    g = torch.Generator().manual_seed(5)
    z = torch.randn(40, N, D, generator=g)
    fit.begin_batch(torch.zeros(40, dtype=torch.long))
    for layer, tokens in _layers(z).items():
        fit.on_tokens(layer, tokens)
    _, errors = fit.choose_ridge("3", "self")
    x = inputs["3"](z)
    y = target(z)
    total = 0.0
    for train, test in ((0, 1), (1, 0)):
        w = fit._fit("3", "self", (train,), 1.0)
        rows = torch.arange(40) % 2 == test
        xs = _self_design(x[rows]).reshape(-1, x.shape[-1] + N)
        total += float((xs @ w - y[rows].reshape(-1, y.shape[-1])).square().sum())
    assert errors[1.0] == pytest.approx(total, rel=1e-8)


def test_all_decoder_contains_the_self_decoder():
    k, n, k_t = 3, 4, 2
    self_weights = torch.arange((k + n) * k_t, dtype=torch.float64).reshape(k + n, k_t)
    full = _block_diagonal(self_weights, n)
    x = torch.randn(5, n, k, dtype=torch.float64)
    per_token = _self_design(x) @ self_weights
    all_tokens = torch.cat([x.reshape(5, n * k), torch.ones(5, 1, dtype=x.dtype)], -1) @ full
    torch.testing.assert_close(all_tokens.reshape(5, n, k_t), per_token)


def test_an_additive_positional_offset_is_not_scrambling():
    """Tokens z_i + p_i with a fixed offset per position (like a positional encoding): the self
    decoder's per-position intercepts remove it, so ISI stays ~0."""
    offsets = torch.randn(N, D, generator=torch.Generator().manual_seed(9)) * 3

    def shifted(z):
        cls = torch.zeros(z.shape[0], 1, D)
        return {"raw": z, "pe": torch.cat([cls, z + offsets], 1), "1": torch.cat([cls, z + offsets], 1),
                "2": torch.cat([cls, z], 1), "3": torch.cat([cls, z], 1), "head": torch.cat([cls, z], 1)}

    def feed(acc, n_images, seed):
        images = torch.randn(n_images, N, D, generator=torch.Generator().manual_seed(seed))
        for z in images.split(100):
            acc.begin_batch(torch.zeros(len(z), dtype=torch.long))
            for layer, tokens in shifted(z).items():
                acc.on_tokens(layer, tokens)

    moments = TokenMoments(LAYOUT)
    feed(moments, 1000, 1)
    inputs = {layer: moments.projection(layer, 16) for layer in LAYOUT.layer_names}
    target = moments.projection("raw", 16, standardize=True)
    fit = DecoderFit(LAYOUT, inputs, target)
    feed(fit, 2000, 2)
    score = DecoderScore(LAYOUT, inputs, target, fit.decoders(), fit.ridges)
    feed(score, 1000, 3)
    pe = score.result().set_index("layer").loc["pe"]
    assert pe.infox_self > 0.99 and abs(pe.isi) < 0.01


@pytest.mark.parametrize("isi, regime", [(0.001, "communication collapse"), (0.006, "controlled consensus"),
                                         (0.031, "chaotic diffusion")])
def test_regimes_follow_the_paper_thresholds(isi, regime):
    assert isi_regime(isi) == regime
