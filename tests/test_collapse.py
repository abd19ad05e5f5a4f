"""Neural Collapse (Methods, 'Neural Collapse'): NC1-NC4 from streamed moments, against a
simplex-ETF known answer and a slow all-in-memory numpy implementation; CollapseMoments
streaming, per-layer features, and full_analysis_tables end to end on a tiny timm ViT."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from vitphase_lib.analysis import PassConfig, full_analysis_tables, network_head
from vitphase_lib.capture import ViTLayout
from vitphase_lib.data import synthetic_images
from vitphase_lib.metrics.collapse import (RIDGE, CollapseMoments, NearestClassCenter,
                                           collapse_geometry, collapse_table, layer_features)
from vitphase_lib.models import MiniViTConfig, build_mini_vit

# Features are fed as the single "patch" token of layer "raw" of a layout without prefix tokens,
# so that layer_features(...)["mean"] is exactly the feature vector.
FLAT = ViTLayout(num_blocks=1, num_prefix_tokens=0, has_cls=False, num_patches=1, width=0)


def as_tokens(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)[:, None, :]


def moments_of(x: np.ndarray, y: np.ndarray, num_classes: int, bounds=None) -> CollapseMoments:
    acc = CollapseMoments(FLAT, num_classes)
    for lo, hi in bounds or [(0, len(y))]:
        acc.begin_batch(torch.as_tensor(y[lo:hi], dtype=torch.long))
        acc.on_tokens("raw", as_tokens(x[lo:hi]))
    return acc


def geometry_of(acc: CollapseMoments, head=None):
    return collapse_geometry(acc.sums["counts"], acc.sums["raw/mean/sums"], acc.sums["raw/mean/m2"],
                             head=head)


def ncc_of(x: np.ndarray, geo) -> pd.Series:
    ncc = NearestClassCenter(FLAT, {("raw", "mean"): geo})
    ncc.begin_batch(torch.zeros(len(x), dtype=torch.long))
    ncc.on_tokens("raw", as_tokens(x))
    return ncc.result().set_index(["layer", "feature"]).loc[("raw", "mean")]


# --------------------------------------------------------------------------- slow reference
class Slow:
    """The obvious all-in-memory numpy Neural Collapse of features x (n, D) with labels y."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x.astype(np.float64), np.asarray(y)
        self.classes = np.unique(self.y)
        self.C = len(self.classes)
        self.means = np.stack([self.x[self.y == c].mean(axis=0) for c in self.classes])  # (C, D)
        self.mu_g = self.means.mean(axis=0)
        self.M = (self.means - self.mu_g).T                                                # (D, C)

    def nc1(self) -> float:
        n, d = self.x.shape
        sw = np.zeros((d, d))
        for xi, yi in zip(self.x, self.y):
            r = xi - self.means[np.searchsorted(self.classes, yi)]
            sw += np.outer(r, r)
        sw /= n
        sb = self.M @ self.M.T / self.C
        return float(np.trace(sw @ np.linalg.pinv(sb, rcond=1e-10, hermitian=True)) / self.C)

    def nc2(self) -> float:
        unit = self.M / np.linalg.norm(self.M, axis=0, keepdims=True)
        gram = unit.T @ unit
        c = self.C
        etf = c / (c - 1) * (np.eye(c) - np.ones((c, c)) / c)
        return float(np.linalg.norm(gram / np.linalg.norm(gram) - etf / np.linalg.norm(etf)))

    def equinorm(self) -> float:
        # coefficient of variation of ||mu_c - mu_G||; sample std (ddof=1) as in Papyan et al.
        norms = np.linalg.norm(self.M, axis=0)
        return float(norms.std(ddof=1) / norms.mean())

    def nc3(self, w: np.ndarray) -> float:
        return float(np.linalg.norm(w / np.linalg.norm(w) - self.M.T / np.linalg.norm(self.M)) ** 2)

    def ridge_classifier(self) -> tuple[np.ndarray, np.ndarray]:
        """Ridge least squares of one-hot targets on centred features, with an intercept."""
        n, d = self.x.shape
        onehot = (self.y[:, None] == self.classes[None, :]).astype(np.float64)  # (n, C)
        mean = self.x.mean(axis=0)
        xc = self.x - mean
        cov = xc.T @ xc / n
        ridge = RIDGE * np.trace(cov) / d
        w = np.linalg.solve(cov + ridge * np.eye(d), xc.T @ onehot / n).T  # (C, D)
        b = onehot.mean(axis=0) - w @ mean
        return w, b

    def nc4_and_margin(self, x_eval: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        agree, margins = 0, []
        for xi in x_eval:
            dist = np.sqrt(((self.means - xi) ** 2).sum(axis=1))
            order = np.argsort(dist)
            agree += int(order[0] == np.argmax(w @ xi + b))
            margins.append(dist[order[1]] - dist[order[0]])
        return 1.0 - agree / len(x_eval), float(np.mean(margins))


def clustered(n: int, c: int, d: int, seed: int, spread: float = 1.0, separation: float = 3.0,
              labels: np.ndarray | None = None):
    rng = np.random.default_rng(seed)
    centres = separation * rng.standard_normal((c, d)) + 2.0 * rng.standard_normal(d)
    y = rng.integers(0, c, n) if labels is None else labels
    x = centres[y] + spread * rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, d)
    return x, y, centres


def simplex_etf(c: int, d: int, scale: float, seed: int) -> np.ndarray:
    """C class means forming a simplex ETF in R^D (random rotation, random global offset);
    each centred mean has norm ``scale``."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, c)))            # D x C orthonormal columns
    vertices = math.sqrt(c / (c - 1)) * (np.eye(c) - np.ones((c, c)) / c)  # rows of norm 1
    return scale * vertices @ q.T + 4.0 * rng.standard_normal(d)


# --------------------------------------------------------------------------- known answer: ETF
@pytest.mark.parametrize("c,d,per_class", [(2, 5, 3), (3, 8, 4), (5, 12, 2), (10, 16, 3)])
def test_simplex_etf_with_zero_spread_is_fully_collapsed(c, d, per_class):
    scale = 2.5
    means = simplex_etf(c, d, scale, seed=c)
    y = np.repeat(np.arange(c), per_class)
    x = means[y]
    geo = geometry_of(moments_of(x, y, c))
    assert geo.classifier == "least-squares"
    assert geo.nc1 == pytest.approx(0.0, abs=1e-9)
    assert geo.nc2 == pytest.approx(0.0, abs=1e-9)
    assert geo.equinorm == pytest.approx(0.0, abs=1e-9)
    assert geo.nc3 == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(geo.class_means.numpy(), means, rtol=0, atol=1e-9)
    row = ncc_of(x, geo)
    assert row.nc4 == 0.0
    # nearest mean at distance 0, second nearest at the ETF edge length scale * sqrt(2C/(C-1));
    # abs 1e-6: torch.cdist's matrix-product path computes a zero distance as ~sqrt(eps)*||x||
    assert row.ncc_margin == pytest.approx(scale * math.sqrt(2 * c / (c - 1)), abs=1e-6)
    assert row.nc4_images == len(y)


def test_etf_known_answer_fails_when_not_an_etf():
    # the same construction with unequal norms and angles: every NC term moves away from 0
    c, d = 4, 7
    means = simplex_etf(c, d, 2.0, seed=0)
    means[0] = means[0] + 1.5 * (means[0] - means.mean(axis=0))
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(c), 5)
    x = means[y] + 0.1 * rng.standard_normal((len(y), d))
    geo = geometry_of(moments_of(x, y, c))
    assert geo.nc1 > 1e-4 and geo.nc2 > 1e-2 and geo.equinorm > 1e-2


# --------------------------------------------------------------------------- against slow numpy
SLOW_CASES = [  # (n, C, D, seed, spread)
    (60, 3, 6, 0, 1.0),
    (120, 5, 10, 1, 2.0),
    (80, 6, 3, 2, 0.5),     # D < C - 1: Sigma_B full rank
    (40, 2, 9, 3, 1.0),     # two classes: equinorm is 0 by construction
    (200, 10, 24, 4, 3.0),
]


@pytest.mark.parametrize("n,c,d,seed,spread", SLOW_CASES)
def test_nc1_nc2_equinorm_nc3_match_slow(n, c, d, seed, spread):
    x, y, _ = clustered(n, c, d, seed, spread)
    slow = Slow(x, y)
    assert slow.C == c
    geo = geometry_of(moments_of(x, y, c))
    assert geo.classifier == "least-squares"
    assert geo.nc1 == pytest.approx(slow.nc1(), rel=1e-8)
    assert geo.nc2 == pytest.approx(slow.nc2(), rel=1e-8, abs=1e-12)
    assert geo.equinorm == pytest.approx(slow.equinorm(), rel=1e-8, abs=1e-12)
    w, b = slow.ridge_classifier()
    np.testing.assert_allclose(geo.weight.numpy(), w, rtol=1e-7, atol=1e-10 * np.abs(w).max())
    np.testing.assert_allclose(geo.bias.numpy(), b, rtol=1e-7, atol=1e-10 * np.abs(b).max())
    assert geo.nc3 == pytest.approx(slow.nc3(w), rel=1e-7)
    np.testing.assert_array_equal(geo.classes.numpy(), np.arange(c))
    # non-trivial values, so the comparisons have teeth (two centred means are always
    # antipodal and of equal norm: NC2 = equinorm = 0 for C = 2)
    assert geo.nc1 > 1e-3 and geo.nc3 > 1e-3
    if c > 2:
        assert geo.nc2 > 1e-3 and geo.equinorm > 1e-3
    else:
        assert geo.nc2 == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n,c,d,seed,spread", SLOW_CASES)
def test_least_squares_predictions_match_direct_ridge(n, c, d, seed, spread):
    x, y, _ = clustered(n, c, d, seed, spread)
    geo = geometry_of(moments_of(x, y, c))
    w, b = Slow(x, y).ridge_classifier()
    x_eval, _, _ = clustered(50, c, d, seed, spread)  # same centres (same seed), new points below
    x_eval = x_eval + 0.3 * np.random.default_rng(99).standard_normal(x_eval.shape)
    ours = (x_eval @ geo.weight.numpy().T + geo.bias.numpy()).argmax(axis=1)
    np.testing.assert_array_equal(ours, (x_eval @ w.T + b).argmax(axis=1))


@pytest.mark.parametrize("n,c,d,seed,spread", SLOW_CASES)
def test_nc4_and_margin_match_slow(n, c, d, seed, spread):
    x, y, _ = clustered(n, c, d, seed, spread)
    geo = geometry_of(moments_of(x, y, c))
    slow = Slow(x, y)
    w, b = slow.ridge_classifier()
    rng = np.random.default_rng(seed + 1000)
    x_eval = x[rng.permutation(n)[:40]] + spread * rng.standard_normal((40, d))
    nc4, margin = slow.nc4_and_margin(x_eval, w, b)
    row = ncc_of(x_eval, geo)
    assert row.nc4 == pytest.approx(nc4, abs=1e-12)
    assert row.ncc_margin == pytest.approx(margin, rel=1e-9)
    assert row.nc4_images == 40
    assert 0.0 <= row.nc4 <= 1.0


def test_nc4_counts_disagreement_with_a_given_classifier():
    # a head that always predicts class 0 disagrees with NCC on every point NCC puts elsewhere
    x, y, _ = clustered(90, 3, 5, seed=7, spread=0.3)
    d = x.shape[1]
    head = (torch.zeros(3, d), torch.tensor([1.0, 0.0, 0.0]))
    geo = geometry_of(moments_of(x, y, 3), head=head)
    slow = Slow(x, y)
    nc4, margin = slow.nc4_and_margin(x, head[0].numpy(), head[1].numpy())
    row = ncc_of(x, geo)
    assert row.nc4 == pytest.approx(nc4, abs=1e-12)
    assert row.nc4 == pytest.approx(float(np.mean(y != 0)), abs=0.05)  # well separated clusters
    assert row.ncc_margin == pytest.approx(margin, rel=1e-9)


@pytest.mark.parametrize("n,c,d,seed,spread", SLOW_CASES[:3])
def test_given_head_is_used_for_nc3(n, c, d, seed, spread):
    x, y, _ = clustered(n, c, d, seed, spread)
    g = torch.Generator().manual_seed(seed)
    head_w, head_b = torch.randn(c, d, generator=g), torch.randn(c, generator=g)
    geo = geometry_of(moments_of(x, y, c), head=(head_w, head_b))
    assert geo.classifier == "head"
    np.testing.assert_array_equal(geo.weight.numpy(), head_w.double().numpy())
    np.testing.assert_array_equal(geo.bias.numpy(), head_b.double().numpy())
    slow = Slow(x, y)
    assert geo.nc3 == pytest.approx(slow.nc3(head_w.double().numpy()), rel=1e-9)
    assert geo.nc3 != pytest.approx(slow.nc3(slow.ridge_classifier()[0]), rel=1e-3)
    # NC1, NC2 do not depend on the classifier
    assert geo.nc1 == pytest.approx(slow.nc1(), rel=1e-8)
    assert geo.nc2 == pytest.approx(slow.nc2(), rel=1e-8)


def test_head_rows_of_absent_classes_are_dropped():
    # labels 0, 2, 3 of 5: the head's rows 1 and 4 must not enter NC3
    x, y, _ = clustered(60, 3, 6, seed=5)
    y = np.array([0, 2, 3])[y]
    g = torch.Generator().manual_seed(0)
    head_w, head_b = torch.randn(5, 6, generator=g), torch.randn(5, generator=g)
    geo = geometry_of(moments_of(x, y, 5), head=(head_w, head_b))
    keep = [0, 2, 3]
    np.testing.assert_array_equal(geo.weight.numpy(), head_w[keep].double().numpy())
    np.testing.assert_array_equal(geo.bias.numpy(), head_b[keep].double().numpy())
    assert geo.nc3 == pytest.approx(Slow(x, y).nc3(head_w[keep].double().numpy()), rel=1e-9)


def test_head_with_more_outputs_than_num_classes():
    # a 10-way head, images of its first 4 classes, num_classes=4 (labels are head indices)
    x, y, _ = clustered(60, 4, 6, seed=6)
    g = torch.Generator().manual_seed(1)
    head_w, head_b = torch.randn(10, 6, generator=g), torch.randn(10, generator=g)
    geo = geometry_of(moments_of(x, y, 4), head=(head_w, head_b))
    np.testing.assert_array_equal(geo.weight.numpy(), head_w[:4].double().numpy())


# --------------------------------------------------------------------------- streaming, classes
def test_moments_streamed_equal_all_at_once():
    x, y, _ = clustered(37, 4, 5, seed=11)
    once = moments_of(x, y, 4)
    streamed = moments_of(x, y, 4, bounds=[(0, 5), (5, 6), (6, 20), (20, 37)])
    assert set(once.sums) == set(streamed.sums) == {"counts", "raw/mean/sums", "raw/mean/m2"}
    for key in once.sums:
        torch.testing.assert_close(streamed.sums[key], once.sums[key], rtol=1e-12, atol=1e-12)
    assert once.sums["counts"].dtype == torch.float64
    np.testing.assert_array_equal(once.sums["counts"].numpy(), np.bincount(y, minlength=4))
    # the sums are what they claim to be
    sums = np.stack([x[y == k].sum(axis=0) for k in range(4)])
    np.testing.assert_allclose(once.sums["raw/mean/sums"].numpy(), sums, rtol=1e-12)
    np.testing.assert_allclose(once.sums["raw/mean/m2"].numpy(), x.T @ x, rtol=1e-12)
    assert once.keys() == [("raw", "mean")]
    a, b = geometry_of(once), geometry_of(streamed)
    for name in ("nc1", "nc2", "equinorm", "nc3"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-10)


def test_absent_classes_are_excluded():
    x, y4, _ = clustered(80, 4, 6, seed=12)
    labels = np.array([0, 2, 3, 5])
    y = labels[y4]  # 4 of 6 classes present
    geo = geometry_of(moments_of(x, y, 6))
    compact = geometry_of(moments_of(x, y4, 4))
    np.testing.assert_array_equal(geo.classes.numpy(), labels)
    assert geo.class_means.shape == (4, 6)
    for name in ("nc1", "nc2", "equinorm", "nc3"):
        assert getattr(geo, name) == pytest.approx(getattr(compact, name), rel=1e-10)
    slow = Slow(x, y)
    assert geo.nc1 == pytest.approx(slow.nc1(), rel=1e-8)
    assert geo.nc2 == pytest.approx(slow.nc2(), rel=1e-8)
    table, geometry = collapse_table(moments_of(x, y, 6))
    assert list(table.classes) == [4]
    assert set(geometry) == {("raw", "mean")}


@pytest.mark.parametrize("labels", [[3, 3, 3, 3], [0]])
def test_fewer_than_two_classes_raise(labels):
    y = np.array(labels)
    x = np.random.default_rng(0).standard_normal((len(y), 3))
    acc = moments_of(x, y, 5)
    with pytest.raises(ValueError):
        geometry_of(acc)
    with pytest.raises(ValueError):
        collapse_table(acc)


@pytest.mark.parametrize("bad", [1, 0, 2.0, "4", None])
def test_num_classes_must_be_an_int_of_at_least_two(bad):
    with pytest.raises(TypeError):
        CollapseMoments(FLAT, bad)


# --------------------------------------------------------------------------- layer_features
def _tokens(b, t, d, seed=0):
    return torch.randn(b, t, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("prefix,has_cls", [(1, True), (5, True), (0, False), (4, False)])
def test_layer_features(prefix, has_cls):
    n, d = 6, 4
    lay = ViTLayout(num_blocks=2, num_prefix_tokens=prefix, has_cls=has_cls, num_patches=n, width=d)
    raw = _tokens(3, n, d, 1)
    out = layer_features(lay, "raw", raw)
    assert set(out) == {"mean"}
    torch.testing.assert_close(out["mean"], raw.mean(dim=1))
    full = _tokens(3, prefix + n, d, 2)
    full[:, :prefix] += 100.0  # including prefix tokens in the mean would show
    out = layer_features(lay, "pe", full)
    assert set(out) == {"mean"}
    torch.testing.assert_close(out["mean"], full[:, prefix:].mean(dim=1))
    for layer in ("1", "2", "head"):
        out = layer_features(lay, layer, full)
        assert set(out) == ({"cls", "mean"} if has_cls else {"mean"})
        torch.testing.assert_close(out["mean"], full[:, prefix:].mean(dim=1))
        if has_cls:
            torch.testing.assert_close(out["cls"], full[:, 0])


def test_collapse_moments_keys_follow_layer_features():
    lay = ViTLayout(num_blocks=1, num_prefix_tokens=1, has_cls=True, num_patches=4, width=3)
    acc = CollapseMoments(lay, 2)
    acc.begin_batch(torch.tensor([0, 1, 1]))
    acc.on_tokens("raw", _tokens(3, 4, 3))
    for layer in ("pe", "1", "head"):
        acc.on_tokens(layer, _tokens(3, 5, 3))
    assert sorted(acc.keys()) == sorted([("raw", "mean"), ("pe", "mean"), ("1", "cls"), ("1", "mean"),
                                         ("head", "cls"), ("head", "mean")])


# --------------------------------------------------------------------------- end to end
TINY = MiniViTConfig("t", depth=2, width=16, heads=2)
EXPECTED_ROWS = [("raw", "mean"), ("pe", "mean"), ("1", "cls"), ("1", "mean"),
                 ("2", "cls"), ("2", "mean"), ("head", "cls"), ("head", "mean")]


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_mini_vit(TINY).eval()


@pytest.fixture(scope="module")
def tiny_sets():
    """Disjoint image sets: the analysis sweep, and the held-out fit / score sweeps (NC4 is
    measured on the score set)."""
    return {name: synthetic_images(n=48, num_classes=4, seed=seed).as_dataset()
            for name, seed in (("analysis_set", 0), ("fit_set", 1), ("score_set", 2))}


def analyse(model, sets, batch_size, **kwargs):
    """num_classes = the head's label space (10); only the 4 classes present enter NC. One torch
    thread and 2 InfoX dimensions keep it fast (the machine may be shared with a training job)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return full_analysis_tables(model, **sets, num_classes=TINY.num_classes,
                                    config=PassConfig(batch_size=batch_size, progress=False),
                                    infox_dims=2, **kwargs)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_tables(tiny_model, tiny_sets):
    return {bs: analyse(tiny_model, tiny_sets, bs) for bs in (16, 48)}


def test_network_head_of_token_pooled_model(tiny_model):
    head = network_head(tiny_model)
    assert head is not None
    w, b = head
    assert w.shape == (TINY.num_classes, TINY.width) and b.shape == (TINY.num_classes,)
    torch.testing.assert_close(w, tiny_model.head.weight.detach(), rtol=0, atol=0)
    torch.testing.assert_close(b, tiny_model.head.bias.detach(), rtol=0, atol=0)


def test_network_head_is_none_for_an_avg_pooled_model():
    from timm.models.vision_transformer import VisionTransformer
    model = VisionTransformer(img_size=28, patch_size=4, in_chans=1, num_classes=4, embed_dim=16,
                              depth=1, num_heads=2, global_pool="avg")
    assert network_head(model) is None


def test_full_analysis_tables_shape_and_content(tiny_tables):
    tables = tiny_tables[16]
    assert {"per_layer", "summary", "attention", "collapse"} <= set(tables)
    attention = tables["attention"]
    assert list(attention.block) == [1, 2]
    assert (attention.images == 48).all() and (attention.aci_images == 48).all()
    assert attention.cls_centrality.between(0, 1).all()
    assert attention.aci.between(0, 1).all()
    collapse = tables["collapse"]
    assert list(zip(collapse.layer, collapse.feature)) == EXPECTED_ROWS
    assert collapse.nc4.between(0, 1).all()
    assert (collapse.nc4_images == 48).all()
    assert (collapse.classes == 4).all()
    assert (collapse.ncc_margin >= 0).all()
    assert np.isfinite(collapse[["nc1", "nc2", "equinorm", "nc3", "ncc_margin"]].to_numpy()).all()
    classifier = collapse.set_index(["layer", "feature"]).classifier
    assert classifier[("head", "cls")] == "head"
    assert (classifier.drop(("head", "cls")) == "least-squares").all()


def test_full_analysis_without_head_labels_uses_least_squares(tiny_model, tiny_sets):
    tables = analyse(tiny_model, tiny_sets, 48, labels_match_head=False, aci_max_images=5)
    assert (tables["collapse"].classifier == "least-squares").all()
    assert (tables["attention"].aci_images == 5).all()


def test_full_analysis_streaming_is_batch_size_independent(tiny_tables):
    small, large = tiny_tables[16], tiny_tables[48]
    for name in ("attention", "collapse", "per_layer"):
        a, b = small[name], large[name]
        assert list(a.columns) == list(b.columns)
        numeric = a.select_dtypes("number").columns
        np.testing.assert_allclose(a[numeric].to_numpy(float), b[numeric].to_numpy(float),
                                   rtol=1e-6, atol=1e-9, err_msg=name)
        other = [c for c in a.columns if c not in numeric]
        pd.testing.assert_frame_equal(a[other], b[other])
