"""InfoX_self, InfoX_all and ISI: the known answers of Methods, 'Information scrambling', the
cross-validated ridge, determinism and streaming."""
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


# ---------------------------------------------------------------------------------------------
# A slow, obvious reference for the whole InfoX computation (numpy, every sample materialised),
# fed to the accumulators batch by batch with odd batch sizes so the even / odd folds cross
# batch boundaries.
# ---------------------------------------------------------------------------------------------
import numpy as np

from vitphase_lib.metrics.scrambling import RIDGE_GRID

K_IN, K_TARGET = 3, 3
FIT_BATCHES = (7, 5, 1, 12, 9, 3, 11, 13)      # 61 images; starts 0, 7, 12, 13, 25, 34, 37, 48
SCORE_BATCHES = (5, 8, 3, 11, 7)               # 34 images


def _random_case(n_images: int, seed: int) -> dict[str, torch.Tensor]:
    """float64 tokens of every layer: raw = correlated, unevenly scaled patch embeddings with a
    mean per position; each later layer mixes its own token, other positions' tokens, a fixed
    offset per position and noise in its own proportions (so the chosen ridges differ)."""
    params = torch.Generator().manual_seed(1234)           # the "model": the same for every set
    data = torch.Generator().manual_seed(seed)
    dt = torch.float64
    mix_raw = torch.randn(D, D, generator=params, dtype=dt) * torch.linspace(0.5, 3, D, dtype=dt)
    position_mean = torch.randn(N, D, generator=params, dtype=dt) * 0.5
    z = torch.randn(n_images, N, D, generator=data, dtype=dt) @ mix_raw + position_mean + 2.0
    layers = {"raw": z}
    #             own  others noise
    strengths = {"pe": (1.0, 0.0, 0.1), "1": (0.5, 0.5, 0.5), "2": (0.1, 1.0, 1.0),
                 "3": (0.0, 0.0, 1.0), "head": (1.0, 0.3, 2.0)}
    for layer, (own, others, noise) in strengths.items():
        a = torch.randn(D, D, generator=params, dtype=dt)
        b = torch.randn(D, D, generator=params, dtype=dt)
        across = torch.randn(N, N, generator=params, dtype=dt) / N ** 0.5
        offset = torch.randn(N, D, generator=params, dtype=dt) * 3
        patches = (own * z @ a + others * (across @ z) @ b + offset
                   + noise * torch.randn(n_images, N, D, generator=data, dtype=dt))
        cls = torch.randn(n_images, 1, D, generator=data, dtype=dt)   # must be ignored
        layers[layer] = torch.cat([cls, patches], 1)
    return layers


def _feed_in_batches(accumulator, layers: dict[str, torch.Tensor], batch_sizes) -> None:
    start = 0
    for size in batch_sizes:
        accumulator.begin_batch(torch.zeros(size, dtype=torch.long))
        assert accumulator.batch_start == start
        for layer in LAYOUT.layer_names:                       # raw first, as the model emits
            accumulator.on_tokens(layer, layers[layer][start:start + size])
        start += size
    assert start == len(layers["raw"])


def _np_patches(layers, layer) -> np.ndarray:
    tokens = layers[layer].numpy()
    return tokens if layer == "raw" else tokens[:, LAYOUT.num_prefix_tokens:]


def _np_project(projection, tokens: np.ndarray) -> np.ndarray:
    return ((tokens - projection.mean.numpy()) / projection.scale.numpy()) @ projection.components.numpy()


def _np_self_design(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One row per (image, position): the token's k inputs, then the one-hot of its position."""
    rows, targets = [], []
    for image in range(x.shape[0]):
        for position in range(N):
            one_hot = np.zeros(N)
            one_hot[position] = 1.0
            rows.append(np.concatenate([x[image, position], one_hot]))
            targets.append(y[image, position])
    return np.array(rows), np.array(targets)


def _np_all_design(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One row per image: all N tokens' inputs concatenated, then 1; target: all N targets."""
    rows = [np.concatenate([x[image].reshape(-1), [1.0]]) for image in range(x.shape[0])]
    targets = [y[image].reshape(-1) for image in range(x.shape[0])]
    return np.array(rows), np.array(targets)


def _np_ridge(x: np.ndarray, y: np.ndarray, ridge: float, prior: np.ndarray | None = None) -> np.ndarray:
    """argmin ||Y - XW||^2 + ridge n ||W - prior||^2, n = rows of X (prior 0 if None)."""
    prior = np.zeros((x.shape[1], y.shape[1])) if prior is None else prior
    if ridge == float("inf"):
        return prior
    gram = x.T @ x
    return prior + np.linalg.solve(gram + ridge * len(x) * np.eye(len(gram)), x.T @ y - gram @ prior)


def _np_as_all_decoder(self_weights: np.ndarray) -> np.ndarray:
    k, k_t = self_weights.shape[0] - N, self_weights.shape[1]
    weights = np.zeros((N * k + 1, N * k_t))
    for position in range(N):
        weights[position * k:(position + 1) * k, position * k_t:(position + 1) * k_t] = self_weights[:k]
        weights[-1, position * k_t:(position + 1) * k_t] = self_weights[k + position]
    return weights


def _np_decoders(x: np.ndarray, y: np.ndarray, self_ridge: float, all_ridge: float):
    """Self decoder, then the all decoder shrunk towards it (both fitted on these images)."""
    xs, ys = _np_self_design(x, y)
    xa, ya = _np_all_design(x, y)
    self_weights = _np_ridge(xs, ys, self_ridge)
    prior = _np_as_all_decoder(self_weights)
    # sanity of the reference itself: the prior predicts exactly what the self decoder does
    np.testing.assert_allclose((xa @ prior).reshape(len(x), N, -1), (xs @ self_weights).reshape(len(x), N, -1),
                               rtol=1e-12, atol=1e-12)
    return self_weights, _np_ridge(xa, ya, all_ridge, prior)


def _np_cross_validate(x: np.ndarray, y: np.ndarray, kind: str, self_ridge: float | None = None):
    """Ridge -> squared error on the odd images of the fit on the even ones, plus vice versa."""
    folds = (np.arange(len(x)) % 2 == 0, np.arange(len(x)) % 2 == 1)
    grid = RIDGE_GRID + ((float("inf"),) if kind == "all" else ())
    errors = {}
    for ridge in grid:
        errors[ridge] = 0.0
        for train, test in ((0, 1), (1, 0)):
            if kind == "self":
                weights = _np_decoders(x[folds[train]], y[folds[train]], ridge, float("inf"))[0]
                design, target = _np_self_design(x[folds[test]], y[folds[test]])
            else:
                weights = _np_decoders(x[folds[train]], y[folds[train]], self_ridge, ridge)[1]
                design, target = _np_all_design(x[folds[test]], y[folds[test]])
            errors[ridge] += float(((target - design @ weights) ** 2).sum())
    best = list(errors)[int(np.argmin(list(errors.values())))]   # first of equal minima
    return best, errors


@pytest.fixture(scope="module")
def reference_case():
    moments = TokenMoments(LAYOUT)
    _feed_in_batches(moments, _random_case(300, 11), (100, 100, 100))
    inputs = {layer: moments.projection(layer, K_IN) for layer in LAYOUT.layer_names}
    target = moments.projection("raw", K_TARGET, standardize=True, whiten=False)
    fit_set, score_set = _random_case(sum(FIT_BATCHES), 12), _random_case(sum(SCORE_BATCHES), 13)
    fit = DecoderFit(LAYOUT, inputs, target)
    _feed_in_batches(fit, fit_set, FIT_BATCHES)

    reference = {}
    y_fit = _np_project(target, _np_patches(fit_set, "raw"))
    y_score = _np_project(target, _np_patches(score_set, "raw"))
    for layer in LAYOUT.layer_names:
        x_fit = _np_project(inputs[layer], _np_patches(fit_set, layer))
        x_score = _np_project(inputs[layer], _np_patches(score_set, layer))
        self_ridge, self_errors = _np_cross_validate(x_fit, y_fit, "self")
        all_ridge, all_errors = _np_cross_validate(x_fit, y_fit, "all", self_ridge)
        self_weights, all_weights = _np_decoders(x_fit, y_fit, self_ridge, all_ridge)
        # held-out R^2, pooled over positions and target components
        xs, ys = _np_self_design(x_score, y_score)
        xa, _ = _np_all_design(x_score, y_score)
        predictions = {"self": xs @ self_weights, "all": (xa @ all_weights).reshape(len(xs), -1)}
        sst = float(((ys - ys.mean(axis=0)) ** 2).sum())
        r2 = {kind: 1.0 - float(((ys - p) ** 2).sum()) / sst for kind, p in predictions.items()}
        reference[layer] = {"ridges": {"self": self_ridge, "all": all_ridge},
                            "errors": {"self": self_errors, "all": all_errors},
                            "weights": {"self": self_weights, "all": all_weights}, "r2": r2}
    return fit, inputs, target, score_set, reference


def _assert_errors_close(library: dict, expected: dict) -> None:
    assert list(library) == list(expected)
    for ridge in expected:
        assert library[ridge] == pytest.approx(expected[ridge], rel=1e-8), ridge


def test_reference_cross_validated_errors_and_ridge_choice(reference_case):
    fit, _, _, _, reference = reference_case
    for layer, ref in reference.items():
        self_ridge, self_errors = fit.choose_ridge(layer, "self")
        _assert_errors_close(self_errors, ref["errors"]["self"])
        assert self_ridge == ref["ridges"]["self"], layer
        all_ridge, all_errors = fit.choose_ridge(layer, "all", self_ridge)
        _assert_errors_close(all_errors, ref["errors"]["all"])
        assert all_ridge == ref["ridges"]["all"], layer
    # the case exercises the choice: several different ridges, and "infinite" for pure noise
    chosen = {(layer, kind): ref["ridges"][kind] for layer, ref in reference.items() for kind in ref["ridges"]}
    assert len(set(chosen.values())) >= 3, chosen
    assert chosen[("3", "all")] == float("inf"), chosen


def test_reference_refitted_decoders(reference_case):
    fit, _, _, _, reference = reference_case
    decoders = fit.decoders()
    assert set(decoders) == set(reference)
    for layer, ref in reference.items():
        for kind in ("self", "all"):
            assert fit.ridges[(layer, kind)] == ref["ridges"][kind]
            got, expected = decoders[layer][kind].numpy(), ref["weights"][kind]
            assert got.dtype == np.float64 and got.shape == expected.shape
            np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-8 * np.abs(expected).max(),
                                       err_msg=f"{layer}/{kind}")


def test_reference_held_out_r2(reference_case):
    fit, inputs, target, score_set, reference = reference_case
    score = DecoderScore(LAYOUT, inputs, target, fit.decoders(), fit.ridges)
    _feed_in_batches(score, score_set, SCORE_BATCHES)
    result = score.result().set_index("layer")
    assert list(result.index) == LAYOUT.layer_names
    for layer, ref in reference.items():
        row = result.loc[layer]
        assert row.infox_self == pytest.approx(ref["r2"]["self"], rel=1e-8, abs=1e-10), layer
        assert row.infox_all == pytest.approx(ref["r2"]["all"], rel=1e-8, abs=1e-10), layer
        assert row.isi == pytest.approx(ref["r2"]["all"] - ref["r2"]["self"], abs=1e-8), layer
        assert (row.ridge_self, row.ridge_all) == (ref["ridges"]["self"], ref["ridges"]["all"])
    # not a degenerate case: R^2 spans near-perfect to ~nothing
    assert result.infox_self.max() > 0.9 and result.infox_self.min() < 0.2


# ---------------------------------------------------------------------------------------------
# TokenMoments.projection
# ---------------------------------------------------------------------------------------------
def test_projection_is_the_top_principal_components_of_the_standardised_tokens():
    """Against a float64 numpy reference; TokenMoments takes each batch's product in float32
    (around the batch mean), hence tolerances of about 1e-6."""
    g = torch.Generator().manual_seed(21)
    mixing = torch.randn(D, D, generator=g, dtype=torch.float64) * torch.tensor([1, 2, 4, 8, 0.5, 3.0])
    z = (torch.randn(60, N, D, generator=g, dtype=torch.float64) @ mixing + 5).round()
    moments = TokenMoments(LAYOUT)
    _feed_in_batches(moments, {"raw": z, **{layer: torch.cat([torch.zeros(60, 1, D), z], 1)
                                            for layer in LAYOUT.layer_names[1:]}}, (7, 13, 40))
    data = z.numpy().reshape(-1, D)
    centred = data - data.mean(axis=0)
    cov = centred.T @ centred / len(data)
    standardised = centred / np.sqrt(np.diag(cov))
    values, vectors = np.linalg.eigh(np.corrcoef(data, rowvar=False))
    values, vectors = values[::-1], vectors[:, ::-1]
    assert np.diff(values).min() < -1e-3                       # distinct eigenvalues
    k = 4
    for layer in ("raw", "3"):
        plain = moments.projection(layer, k, standardize=True, whiten=False)
        components = plain.components.numpy()
        assert components.shape == (D, k)
        np.testing.assert_allclose(components.T @ components, np.eye(k), atol=1e-12)
        np.testing.assert_allclose(components @ components.T, vectors[:, :k] @ vectors[:, :k].T, atol=1e-5)
        np.testing.assert_allclose(np.abs(components.T @ vectors[:, :k]), np.eye(k), atol=1e-5)
        np.testing.assert_allclose(plain.mean.numpy(), data.mean(axis=0), rtol=1e-9)
        np.testing.assert_allclose(plain.scale.numpy(), np.sqrt(np.diag(cov)), rtol=1e-6)

        projected = plain(torch.from_numpy(data)).numpy()
        np.testing.assert_allclose(projected, standardised @ components, atol=1e-5)
        variance = projected.T @ projected / len(data)        # projected data have mean 0
        np.testing.assert_allclose(np.diag(variance), values[:k], rtol=1e-6)
        np.testing.assert_allclose(variance, np.diag(values[:k]), atol=1e-5)
        assert (np.diff(np.diag(variance)) < 0).all()         # descending

        whitened = moments.projection(layer, k, standardize=True)   # whiten=True is the default
        np.testing.assert_allclose(whitened.components.numpy(), components / np.sqrt(values[:k]), rtol=1e-5)
        projected = whitened(torch.from_numpy(data)).numpy()
        np.testing.assert_allclose(projected.mean(axis=0), 0, atol=1e-10)
        np.testing.assert_allclose(projected.T @ projected / len(data), np.eye(k), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# DecoderFit.decoders(release=True)
# ---------------------------------------------------------------------------------------------
def test_released_decoders_equal_the_kept_ones_and_free_the_normal_equations(reference_case):
    _, inputs, target, _, _ = reference_case
    fit_set = _random_case(sum(FIT_BATCHES), 14)
    kept, released = DecoderFit(LAYOUT, inputs, target), DecoderFit(LAYOUT, inputs, target)
    _feed_in_batches(kept, fit_set, FIT_BATCHES)
    _feed_in_batches(released, fit_set, FIT_BATCHES)
    expected, got = kept.decoders(), released.decoders(release=True)
    assert released.ridges == kept.ridges
    assert list(got) == list(expected)
    for layer in expected:
        assert set(got[layer]) == {"self", "all"}
        for kind in ("self", "all"):
            assert torch.equal(got[layer][kind], expected[layer][kind]), (layer, kind)
    leftovers = [key for key in released.sums
                 if any(key.startswith(f"{layer}/") for layer in LAYOUT.layer_names)]
    assert leftovers == []
    assert any(key.startswith("1/") for key in kept.sums)      # only the released fit lost them


# ``DecoderFit`` caches X'X, X'Y and their eigendecomposition while choosing ridges; sums added
# afterwards (more batches, ``merge``, ``all_reduce``) must invalidate that cache.
def test_choose_ridge_sees_batches_added_after_an_earlier_call(reference_case):
    _, inputs, target, _, _ = reference_case
    fit_set = _random_case(sum(FIT_BATCHES), 15)
    early, fresh = DecoderFit(LAYOUT, inputs, target), DecoderFit(LAYOUT, inputs, target)
    _feed_in_batches(fresh, fit_set, FIT_BATCHES)
    start = 0
    for i, size in enumerate(FIT_BATCHES):
        if i == 4:
            early.choose_ridge("1", "self")                   # e.g. a progress report
        early.begin_batch(torch.zeros(size, dtype=torch.long))
        for layer in LAYOUT.layer_names:
            early.on_tokens(layer, fit_set[layer][start:start + size])
        start += size
    _assert_errors_close(early.choose_ridge("1", "self")[1], fresh.choose_ridge("1", "self")[1])


def test_token_covariance_stays_exact_with_a_large_mean():
    """Activations with a mean far above their spread (massive activations of the residual
    stream): the covariance must not lose itself in m2/n - mean^2 cancellation. A float32 second
    moment gave relative errors of 2e-2 at a mean of 200 and a standard deviation of 0.5."""
    g = torch.Generator().manual_seed(7)
    moments = TokenMoments(LAYOUT)
    batches = [200.0 + 0.5 * torch.randn(64, LAYOUT.num_patches + LAYOUT.num_prefix_tokens, LAYOUT.width,
                                         generator=g) for _ in range(4)]
    for batch in batches:
        moments.begin_batch(torch.zeros(len(batch), dtype=torch.long))
        moments.on_tokens("1", batch)
    patches = torch.cat([b[:, LAYOUT.num_prefix_tokens:] for b in batches]).reshape(-1, LAYOUT.width).double()
    expected = torch.cov(patches.T, correction=0)
    n = moments.sums["1/count"]
    mean = moments.sums["1/sum"] / n
    got = moments.sums["1/m2"] / n - torch.outer(mean, mean)
    assert torch.allclose(got, expected, rtol=0, atol=1e-5 * float(expected.diagonal().mean()))


@pytest.mark.parametrize("cap, batches", [(5, (3, 4, 6)), (3, (3, 4)), (1, (2, 2)), (20, (4, 4))])
def test_token_moments_cap_takes_exactly_the_first_images(cap, batches):
    """``max_images`` (the profile's ``pca_max_images``): only images with global index < cap enter,
    across batch boundaries; batches past the cap add nothing to sums that exist."""
    g = torch.Generator().manual_seed(3)
    tokens = torch.randn(sum(batches), LAYOUT.num_patches + LAYOUT.num_prefix_tokens, LAYOUT.width, generator=g)
    capped, reference = TokenMoments(LAYOUT, max_images=cap), TokenMoments(LAYOUT)
    start = 0
    for size in batches:
        capped.begin_batch(torch.zeros(size, dtype=torch.long))
        capped.on_tokens("1", tokens[start:start + size])
        start += size
    reference.begin_batch(torch.zeros(min(cap, len(tokens)), dtype=torch.long))
    reference.on_tokens("1", tokens[:cap])
    assert float(capped.sums["1/count"]) == min(cap, len(tokens)) * LAYOUT.num_patches
    for key in ("1/sum", "1/m2"):
        assert torch.allclose(capped.sums[key], reference.sums[key], rtol=1e-5, atol=1e-5), key  # float32 products


def test_token_moments_rank_past_the_cap_holds_zero_sums():
    """A data-parallel rank whose images all lie past the cap still holds every key (as zeros),
    so the all-reduce sums the same keys on every rank."""
    moments = TokenMoments(LAYOUT, max_images=4)
    tokens = torch.randn(3, LAYOUT.num_patches + LAYOUT.num_prefix_tokens, LAYOUT.width)
    for start in (6, 9):  # this rank streams images 6-8 and 9-11
        moments.begin_batch(torch.zeros(3, dtype=torch.long), start=start)
        moments.on_tokens("1", tokens)
    assert float(moments.sums["1/count"]) == 0
    assert moments.sums["1/sum"].shape == (LAYOUT.width,) and not moments.sums["1/sum"].any()
    assert moments.sums["1/m2"].shape == (LAYOUT.width,) * 2 and not moments.sums["1/m2"].any()
    assert moments.sums["1/m2"].dtype == torch.float64


@pytest.mark.parametrize("bad", [0, -1, 2.5, "512", True])
def test_token_moments_cap_must_be_a_positive_int(bad):
    with pytest.raises(TypeError, match="pca_max_images"):
        TokenMoments(LAYOUT, max_images=bad)
