"""Token geometry (Methods, 'Centered and raw token similarity'): pairwise cosine similarity,
the streaming TokenGeometry accumulator, the PE Dominance Ratio, and geometry_tables on a real
(tiny) ViT."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vitphase_lib.analysis import PassConfig, geometry_tables
from vitphase_lib.capture import ViTLayout, patch_positional_embedding, trace
from vitphase_lib.metrics import TokenGeometry, pairwise_cosine_mean, pe_dominance_ratio
from vitphase_lib.models import MiniViTConfig, build_mini_vit


# --------------------------------------------------------------------------- slow reference
def slow_pairwise_cosine_mean(tokens: torch.Tensor, center: bool) -> np.ndarray:
    """The obvious implementation: per image, the explicit N x N cosine matrix in float64,
    averaged over the off-diagonal entries (a zero vector has cosine 0 with everything)."""
    out = []
    for image in tokens.double().numpy():
        x = image - image.mean(axis=0, keepdims=True) if center else image
        n = x.shape[0]
        total, pairs = 0.0, 0
        for i in range(n):
            for j in range(n):
                if i == j:
                    continue
                ni, nj = np.linalg.norm(x[i]), np.linalg.norm(x[j])
                cos = 0.0 if ni == 0 or nj == 0 else float(x[i] @ x[j]) / (ni * nj)
                total += cos
                pairs += 1
        out.append(total / pairs)
    return np.array(out)


def random_tokens(b, n, d, seed, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, d, generator=g) + offset * torch.randn(1, 1, d, generator=g)


# --------------------------------------------------------------------------- pairwise_cosine_mean
@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("b,n,d,offset,seed", [
    (3, 7, 5, 0.0, 0),     # N > D
    (2, 10, 32, 0.0, 1),   # N < D
    (4, 16, 8, 3.0, 2),    # strongly anisotropic (shared offset): raw >> centered
    (1, 2, 3, 0.5, 3),     # the smallest N
])
def test_pairwise_cosine_matches_slow_implementation(center, b, n, d, offset, seed):
    tokens = random_tokens(b, n, d, seed, offset)
    fast = pairwise_cosine_mean(tokens, center=center)
    assert fast.shape == (b,)
    np.testing.assert_allclose(fast.double().numpy(), slow_pairwise_cosine_mean(tokens, center),
                               rtol=0, atol=2e-6)


def test_centered_and_raw_differ_on_anisotropic_tokens():
    tokens = random_tokens(2, 12, 6, seed=5, offset=4.0)
    raw = pairwise_cosine_mean(tokens, center=False)
    centered = pairwise_cosine_mean(tokens, center=True)
    assert torch.all(raw > 0.5)            # a shared offset makes raw cosines large
    assert torch.all(centered.abs() < 0.2)  # ... and centering removes it


def test_identical_tokens_have_raw_similarity_one():
    g = torch.Generator().manual_seed(0)
    one = torch.randn(3, 1, 9, generator=g)
    tokens = one.expand(3, 11, 9).contiguous()
    torch.testing.assert_close(pairwise_cosine_mean(tokens, center=False), torch.ones(3),
                               rtol=0, atol=1e-6)


def test_identical_tokens_have_zero_centered_similarity():
    g = torch.Generator().manual_seed(0)
    one = torch.randn(3, 1, 9, generator=g)
    tokens = one.expand(3, 11, 9).contiguous()
    # centering leaves only zero vectors, which contribute nothing (not NaN, not noise)
    centered = pairwise_cosine_mean(tokens, center=True)
    assert torch.isfinite(centered).all()
    torch.testing.assert_close(centered, torch.zeros(3), rtol=0, atol=1e-6)


@pytest.mark.parametrize("n,d", [(2, 2), (3, 3), (5, 9), (16, 16), (49, 64), (196, 256)])
def test_centered_simplex_reaches_the_floor(n, d):
    # the standard basis of R^N (embedded in R^D, rotated, shifted): centering gives a simplex
    basis = torch.zeros(n, d, dtype=torch.float64)
    basis[:, :n] = torch.eye(n, dtype=torch.float64)
    g = torch.Generator().manual_seed(n)
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    shift = 5.0 * torch.randn(1, d, generator=g, dtype=torch.float64)
    tokens = (basis @ rotation + shift).float().unsqueeze(0).repeat(2, 1, 1)
    expected = -1.0 / (n - 1)
    result = pairwise_cosine_mean(tokens, center=True)
    torch.testing.assert_close(result, torch.full((2,), expected), rtol=0, atol=2e-5)


def test_pairwise_cosine_is_scale_and_permutation_invariant():
    tokens = random_tokens(2, 9, 4, seed=7, offset=1.0)
    base = pairwise_cosine_mean(tokens, center=True)
    permuted = tokens[:, torch.randperm(9, generator=torch.Generator().manual_seed(1))]
    torch.testing.assert_close(pairwise_cosine_mean(permuted, center=True), base, atol=1e-6, rtol=0)
    torch.testing.assert_close(pairwise_cosine_mean(7.5 * tokens, center=True), base, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- TokenGeometry
def _layout(prefix: int, n: int, d: int, blocks: int = 2) -> ViTLayout:
    return ViTLayout(num_blocks=blocks, num_prefix_tokens=prefix, has_cls=prefix > 0,
                     num_patches=n, width=d)


def _fake_trace(layout: ViTLayout, b: int, seed: int) -> dict[str, torch.Tensor]:
    """Tokens for every layer; prefix tokens are huge so that including them would show."""
    g = torch.Generator().manual_seed(seed)
    n, d, p = layout.num_patches, layout.width, layout.num_prefix_tokens
    out = {"raw": torch.randn(b, n, d, generator=g) + 2.0}
    for layer in layout.layer_names[1:]:
        patches = torch.randn(b, n, d, generator=g) * (1 + len(out))
        prefix = 100.0 * torch.ones(b, p, d)
        out[layer] = torch.cat([prefix, patches], dim=1)
    return out


def _feed(acc, tokens, lo, hi):
    for layer, x in tokens.items():
        acc.on_tokens(layer, x[lo:hi])


@pytest.mark.parametrize("prefix", [0, 1, 5])
def test_token_geometry_matches_slow_per_layer_values(prefix):
    layout = _layout(prefix, n=8, d=6)
    tokens = _fake_trace(layout, b=5, seed=prefix)
    acc = TokenGeometry(layout)
    _feed(acc, tokens, 0, 5)
    table = acc.result()
    assert list(table.layer) == ["raw", "pe", "1", "2", "head"]
    assert list(table.depth) == [0, 1, 2, 3, 4]
    assert (table.images == 5).all()
    for row in table.itertuples():
        x = tokens[row.layer]
        patches = x if row.layer == "raw" else x[:, prefix:]
        assert row.centered_similarity == pytest.approx(
            slow_pairwise_cosine_mean(patches, True).mean(), abs=2e-6)
        assert row.raw_similarity == pytest.approx(
            slow_pairwise_cosine_mean(patches, False).mean(), abs=2e-6)
        assert row.mean_token_norm == pytest.approx(
            float(patches.double().norm(dim=-1).mean()), rel=1e-6)


def test_token_geometry_streamed_equals_all_at_once():
    layout = _layout(1, n=10, d=7, blocks=3)
    tokens = _fake_trace(layout, b=11, seed=3)
    once = TokenGeometry(layout)
    _feed(once, tokens, 0, 11)
    streamed = TokenGeometry(layout)
    for lo, hi in [(0, 3), (3, 4), (4, 9), (9, 11)]:
        _feed(streamed, tokens, lo, hi)
    a, b = once.result(), streamed.result()
    assert list(a.images) == list(b.images) == [11] * len(layout.layer_names)
    for column in ("centered_similarity", "raw_similarity", "mean_token_norm"):
        np.testing.assert_allclose(b[column], a[column], rtol=0, atol=1e-6)
    # and merging two accumulators (data-parallel ranks) is the same again
    left, right = TokenGeometry(layout), TokenGeometry(layout)
    _feed(left, tokens, 0, 6)
    _feed(right, tokens, 6, 11)
    left.merge(right)
    merged = left.result()
    for column in ("centered_similarity", "raw_similarity", "mean_token_norm", "images"):
        np.testing.assert_allclose(merged[column], a[column], rtol=0, atol=1e-6)


def test_token_geometry_weights_images_not_batches():
    # a batch of 1 and a batch of 3: the mean must be over the 4 images, not the 2 batches
    layout = _layout(0, n=6, d=4, blocks=1)
    tokens = _fake_trace(layout, b=4, seed=11)
    acc = TokenGeometry(layout)
    _feed(acc, tokens, 0, 1)
    _feed(acc, tokens, 1, 4)
    expected = slow_pairwise_cosine_mean(tokens["1"], True).mean()
    got = acc.result().set_index("layer").loc["1", "centered_similarity"]
    assert got == pytest.approx(expected, abs=2e-6)


# --------------------------------------------------------------------------- PE dominance ratio
def test_pe_dominance_ratio_hand_made():
    pe = torch.tensor([[3.0, 4.0], [0.0, 3.0], [0.0, 0.0], [8.0, 6.0]])  # norms 5, 3, 0, 10
    assert pe_dominance_ratio(pe, 2.0) == pytest.approx(4.5 / 2.0)
    assert pe_dominance_ratio(pe, 9.0) == pytest.approx(0.5)
    assert pe_dominance_ratio(torch.zeros(5, 3), 1.0) == 0.0


# --------------------------------------------------------------------------- on a real tiny ViT
TINY = MiniViTConfig("geom-test", depth=2, width=16, heads=2, num_classes=4)


class _Recorder:
    def __init__(self):
        self.tokens: dict[str, list[torch.Tensor]] = {}

    def on_tokens(self, layer, tokens):
        self.tokens.setdefault(layer, []).append(tokens.detach().clone())

    def on_attention(self, block, attention):
        pass


def test_geometry_tables_on_a_tiny_vit(synthetic):
    torch.manual_seed(0)
    model = build_mini_vit(TINY).eval()
    data = synthetic.subset(torch.arange(12)).as_dataset()
    small = geometry_tables(model, data, PassConfig(batch_size=5, progress=False))
    large = geometry_tables(model, data, PassConfig(batch_size=12, progress=False))
    per_layer = small["per_layer"]
    assert list(per_layer.layer) == ["raw", "pe", "1", "2", "head"]
    for column in ("centered_similarity", "raw_similarity", "mean_token_norm"):
        np.testing.assert_allclose(per_layer[column], large["per_layer"][column], rtol=0, atol=1e-6)

    # against the slow implementation on tokens recorded from the same model
    recorder = _Recorder()
    with torch.no_grad(), trace(model, [recorder], attention=False):
        logits = model(synthetic.images[:12])
    for row in per_layer.itertuples():
        x = torch.cat(recorder.tokens[row.layer])
        patches = x if row.layer == "raw" else x[:, 1:]
        assert row.centered_similarity == pytest.approx(
            slow_pairwise_cosine_mean(patches, True).mean(), abs=1e-5)

    summary = small["summary"].iloc[0]
    expected_top1 = 100.0 * float((logits.argmax(-1) == synthetic.labels[:12]).float().mean())
    assert summary["top1"] == pytest.approx(expected_top1)
    pe_norm = float(patch_positional_embedding(model).detach().norm(dim=-1).mean())
    raw_norm = float(torch.cat(recorder.tokens["raw"]).norm(dim=-1).mean())
    assert summary["pe_dominance_ratio"] == pytest.approx(pe_norm / raw_norm, rel=1e-5)
    assert not math.isnan(summary["pe_dominance_ratio"])
    assert summary["num_patches"] == model.patch_embed.num_patches == recorder.tokens["raw"][0].shape[1]
    assert summary["num_prefix_tokens"] == 1 and summary["has_cls"]
