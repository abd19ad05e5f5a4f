"""The attention graph (Methods, 'Attention graph'): CLS centrality (CCC), the [CLS] PageRank
share and the Attention Consensus Index (ACI), per image and through the streaming AttentionGraph
accumulator; known answers, slow obvious implementations, streaming and the no-[CLS] case."""
from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

from vitphase_lib.capture import ViTLayout
from vitphase_lib.metrics.attention import (AttentionGraph, cls_centrality, consensus_index,
                                            pagerank_share)

DAMPING = 0.85
# the ACI by repeated squaring (the default) overestimates |lambda_2| by less than 1e-6
ACI_ATOL = 1e-6


# --------------------------------------------------------------------------- slow references
def slow_ccc(attention: torch.Tensor, prefix: int) -> np.ndarray:
    """Per image: mean over patch queries i of A[i, 0], with python loops."""
    a = attention.double().numpy()
    out = []
    for image in a:
        t = image.shape[0]
        total = 0.0
        for i in range(prefix, t):
            total += image[i, 0]
        out.append(total / (t - prefix))
    return np.array(out)


def slow_aci(attention: torch.Tensor, prefix: int) -> np.ndarray:
    """Per image: 1 - |lambda_2| of the row-renormalised patch block, via numpy.linalg.eigvals."""
    out = []
    for image in attention.double().numpy():
        block = image[prefix:, prefix:]
        block = block / block.sum(axis=1, keepdims=True)
        moduli = sorted(np.abs(np.linalg.eigvals(block)), reverse=True)
        out.append(1.0 - moduli[1])
    return np.array(out)


def power_iteration_pagerank(matrix: np.ndarray, damping: float = DAMPING,
                             iterations: int = 10_000) -> np.ndarray:
    """PageRank of the graph with edges i -> j weighted matrix[i, j], by the textbook power
    iteration p <- (1 - d)/T + d * p P (P = matrix with rows normalised to sum 1)."""
    t = matrix.shape[0]
    transition = matrix / matrix.sum(axis=1, keepdims=True)
    p = np.full(t, 1.0 / t)
    for _ in range(iterations):
        new = (1.0 - damping) / t + damping * (p @ transition)
        if np.abs(new - p).sum() < 1e-15:
            return new
        p = new
    return p


def random_attention(b: int, t: int, seed: int, scale: float = 2.0) -> torch.Tensor:
    """Row-stochastic attention: softmax of random logits, float32 as the trace delivers it."""
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(b, t, t, generator=g)).softmax(dim=-1)


def layout(prefix: int, n: int, blocks: int = 1, has_cls: bool | None = None) -> ViTLayout:
    return ViTLayout(num_blocks=blocks, num_prefix_tokens=prefix,
                     has_cls=prefix > 0 if has_cls is None else has_cls, num_patches=n, width=8)


def row(table: pd.DataFrame, block: int) -> pd.Series:
    return table.set_index("block").loc[block]


# --------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("prefix,n", [(1, 4), (1, 16), (5, 9)])
def test_uniform_attention_known_answers(prefix, n):
    t = prefix + n
    attention = torch.full((3, t, t), 1.0 / t)
    torch.testing.assert_close(cls_centrality(attention, prefix), torch.full((3,), 1.0 / t),
                               rtol=0, atol=1e-7)
    torch.testing.assert_close(consensus_index(attention, prefix),
                               torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-10)
    assert pagerank_share(attention[0].double().numpy()) == pytest.approx(1.0 / t, abs=1e-9)

    acc = AttentionGraph(layout(prefix, n))
    acc.on_attention(1, attention)
    r = row(acc.result(), 1)
    assert r.cls_centrality == pytest.approx(1.0 / t, abs=1e-7)
    assert r.uniform_baseline == pytest.approx(1.0 / t)
    assert r.aci == pytest.approx(1.0, abs=1e-10)
    assert r.cls_pagerank_share == pytest.approx(1.0 / t, abs=1e-9)
    assert r.uniform_pagerank_share == pytest.approx(1.0 / t)
    assert r.images == 3 and r.aci_images == 3


@pytest.mark.parametrize("prefix,n", [(1, 4), (1, 16), (4, 7), (0, 5)])
def test_identity_attention_has_zero_consensus(prefix, n):
    t = prefix + n
    attention = torch.eye(t).expand(2, t, t).contiguous()
    torch.testing.assert_close(consensus_index(attention, prefix),
                               torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)
    acc = AttentionGraph(layout(prefix, n))
    acc.on_attention(1, attention)
    assert row(acc.result(), 1).aci == pytest.approx(0.0, abs=1e-12)


def test_identity_attention_patches_ignore_prefix_columns():
    # patches attend half to [CLS], half to themselves: renormalised patch block = identity
    prefix, n = 1, 6
    t = prefix + n
    attention = 0.5 * torch.eye(t)
    attention[:, 0] += 0.5
    attention[0] = 0.0
    attention[0, 0] = 1.0
    attention = attention.unsqueeze(0)
    assert float(consensus_index(attention, prefix)[0]) == pytest.approx(0.0, abs=1e-12)
    assert float(cls_centrality(attention, prefix)[0]) == pytest.approx(0.5, abs=1e-7)


@pytest.mark.parametrize("t", [3, 10])
def test_pagerank_of_uniform_graph_is_one_over_t(t):
    uniform = np.full((t, t), 1.0 / t)
    for node in range(t):
        assert pagerank_share(uniform, node=node) == pytest.approx(1.0 / t, abs=1e-9)


@pytest.mark.parametrize("prefix,n", [(1, 5), (1, 12)])
def test_star_graph_makes_cls_the_hub(prefix, n):
    t = prefix + n
    star = torch.zeros(2, t, t)
    star[:, :, 0] = 1.0  # every row sends all its mass to token 0
    torch.testing.assert_close(cls_centrality(star, prefix), torch.ones(2), rtol=0, atol=0)
    shares = [pagerank_share(star[0].double().numpy(), node=j) for j in range(t)]
    assert int(np.argmax(shares)) == 0
    assert all(shares[0] > s for s in shares[1:])
    expected = power_iteration_pagerank(star[0].double().numpy())
    np.testing.assert_allclose(shares, expected, rtol=0, atol=1e-8)
    # and through the accumulator
    acc = AttentionGraph(layout(prefix, n))
    acc.on_attention(1, star)
    r = row(acc.result(), 1)
    assert r.cls_centrality == pytest.approx(1.0, abs=1e-12)
    assert r.cls_pagerank_share == pytest.approx(shares[0], abs=1e-9)
    assert r.cls_pagerank_share > r.uniform_pagerank_share


# --------------------------------------------------------------------------- against slow versions
CASES = [  # (B, P, N, seed)
    (1, 1, 2, 0),
    (3, 1, 9, 1),
    (4, 1, 16, 2),
    (2, 5, 8, 3),   # [CLS] + 4 registers
    (5, 2, 6, 4),
]


@pytest.mark.parametrize("b,p,n,seed", CASES)
def test_cls_centrality_matches_loops(b, p, n, seed):
    attention = random_attention(b, p + n, seed)
    fast = cls_centrality(attention, p)
    assert fast.shape == (b,)
    np.testing.assert_allclose(fast.double().numpy(), slow_ccc(attention, p), rtol=0, atol=1e-6)


@pytest.mark.parametrize("b,p,n,seed", CASES + [(3, 0, 7, 5)])
def test_consensus_index_matches_numpy_eigvals(b, p, n, seed):
    attention = random_attention(b, p + n, seed)
    fast = consensus_index(attention, p)
    assert fast.shape == (b,)
    expected = slow_aci(attention, p)
    np.testing.assert_allclose(fast.numpy(), expected, rtol=0, atol=ACI_ATOL)
    assert np.all((expected > 0) & (expected < 1))  # a non-trivial case


@pytest.mark.parametrize("t,seed", [(2, 0), (5, 1), (17, 2)])
def test_pagerank_share_matches_power_iteration(t, seed):
    matrix = random_attention(1, t, seed, scale=3.0)[0].double().numpy()
    expected = power_iteration_pagerank(matrix)
    assert expected.sum() == pytest.approx(1.0, abs=1e-12)
    for node in range(t):
        assert pagerank_share(matrix, node=node) == pytest.approx(expected[node], abs=1e-8)
    # the reference itself agrees with networkx called directly
    direct = nx.pagerank(nx.from_numpy_array(matrix, create_using=nx.DiGraph), alpha=DAMPING,
                         weight="weight", tol=1e-12, max_iter=10_000)
    np.testing.assert_allclose([direct[j] for j in range(t)], expected, rtol=0, atol=1e-9)
    # the random graph is not uniform, so this comparison has teeth
    assert np.abs(expected - 1.0 / t).max() > 1e-3


@pytest.mark.parametrize("b,p,n,seed", CASES)
def test_accumulator_matches_slow_per_block(b, p, n, seed):
    lay = layout(p, n, blocks=2)
    att = {1: random_attention(b, p + n, seed), 2: random_attention(b, p + n, seed + 100, 4.0)}
    acc = AttentionGraph(lay)
    for block, a in att.items():
        acc.on_attention(block, a)
    table = acc.result()
    assert list(table.block) == [1, 2]
    assert list(table.layer) == ["1", "2"]
    for block, a in att.items():
        r = row(table, block)
        assert r.cls_centrality == pytest.approx(slow_ccc(a, p).mean(), abs=1e-6)
        assert r.aci == pytest.approx(slow_aci(a, p).mean(), abs=ACI_ATOL)
        # PageRank of the image-averaged graph
        expected = power_iteration_pagerank(a.double().mean(dim=0).numpy())[0]
        assert r.cls_pagerank_share == pytest.approx(expected, abs=1e-6)
        assert r.images == b and r.aci_images == b


# --------------------------------------------------------------------------- streaming
def _feed(acc: AttentionGraph, attention: dict[int, torch.Tensor], bounds, offset: int | None = None) -> None:
    """Stream batches ``a[lo:hi]`` as run_pass does (``offset``: global index of image 0, as on a
    data-parallel rank; None: batches numbered by stream position)."""
    for lo, hi in bounds:
        acc.begin_batch(torch.zeros(hi - lo, dtype=torch.long), None if offset is None else offset + lo)
        for block, a in attention.items():
            acc.on_attention(block, a[lo:hi])


def _assert_tables_close(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("p,n", [(1, 9), (3, 6)])
def test_streamed_equals_all_at_once(p, n):
    lay = layout(p, n, blocks=3)
    att = {k: random_attention(13, p + n, seed=k) for k in (1, 2, 3)}
    once = AttentionGraph(lay)
    _feed(once, att, [(0, 13)])
    streamed = AttentionGraph(lay)
    _feed(streamed, att, [(0, 4), (4, 5), (5, 11), (11, 13)])
    _assert_tables_close(streamed.result(), once.result())
    assert (once.result().images == 13).all()


@pytest.mark.parametrize("k,bounds", [
    (5, [(0, 3), (3, 7), (7, 12)]),     # limit falls inside the second batch
    (3, [(0, 3), (3, 7), (7, 12)]),     # limit exactly at a batch boundary
    (1, [(0, 1), (1, 12)]),
    (2, [(0, 12)]),                      # one batch, limit inside it
    (12, [(0, 5), (5, 12)]),             # limit = number of images
    (50, [(0, 5), (5, 12)]),             # limit above the number of images
])
def test_aci_max_images_takes_exactly_the_first_k(k, bounds):
    p, n, total = 1, 8, 12
    lay = layout(p, n, blocks=2)
    att = {1: random_attention(total, p + n, seed=7), 2: random_attention(total, p + n, seed=8, scale=5.0)}
    acc = AttentionGraph(lay, aci_max_images=k)
    _feed(acc, att, bounds)
    table = acc.result()
    used = min(k, total)
    for block, a in att.items():
        r = row(table, block)
        assert r.aci_images == used
        assert r.images == total
        assert r.aci == pytest.approx(slow_aci(a[:used], p).mean(), abs=ACI_ATOL)
        # the other metrics still use every image
        assert r.cls_centrality == pytest.approx(slow_ccc(a, p).mean(), abs=1e-6)
        if used < total:  # the limit made a difference, so the comparison above has teeth
            assert abs(slow_aci(a[:used], p).mean() - slow_aci(a, p).mean()) > 1e-4
    # same k, all at once: identical table
    once = AttentionGraph(lay, aci_max_images=k)
    _feed(once, att, [(0, total)])
    _assert_tables_close(table, once.result())


def test_aci_max_images_counts_global_indices_on_a_data_parallel_rank():
    """A rank whose shard starts at image 10 takes only images 10 and 11 under a cap of 12, and
    none under a cap of 10 (the sums stay present, at zero, so ranks can all-reduce them)."""
    p, n = 1, 8
    lay = layout(p, n, blocks=1)
    att = {1: random_attention(6, p + n, seed=3)}
    for cap, used in [(12, 2), (10, 0), (100, 6)]:
        acc = AttentionGraph(lay, aci_max_images=cap)
        _feed(acc, att, [(0, 4), (4, 6)], offset=10)
        assert float(acc.sums["1/aci_images"]) == used
        expected = slow_aci(att[1][:used], p).sum() if used else 0.0
        assert float(acc.sums["1/aci"]) == pytest.approx(float(expected), abs=used * ACI_ATOL + 1e-12)


def test_merge_of_two_accumulators_equals_one():
    lay = layout(1, 7, blocks=1)
    a = random_attention(9, 8, seed=3)
    one = AttentionGraph(lay)
    one.on_attention(1, a)
    left, right = AttentionGraph(lay), AttentionGraph(lay)
    left.on_attention(1, a[:4])
    right.on_attention(1, a[4:])
    left.merge(right)
    _assert_tables_close(left.result(), one.result())


# --------------------------------------------------------------------------- no [CLS]
@pytest.mark.parametrize("prefix", [0, 3])  # no prefix at all; registers but no [CLS]
def test_without_cls_centrality_is_nan_and_aci_still_computed(prefix):
    n = 9
    lay = ViTLayout(num_blocks=2, num_prefix_tokens=prefix, has_cls=False, num_patches=n, width=8)
    att = {1: random_attention(4, prefix + n, seed=1), 2: random_attention(4, prefix + n, seed=2)}
    acc = AttentionGraph(lay)
    _feed(acc, att, [(0, 2), (2, 4)])
    table = acc.result()
    assert len(table) == 2
    for block, a in att.items():
        r = row(table, block)
        assert math.isnan(r.cls_centrality), r.cls_centrality
        assert math.isnan(r.cls_pagerank_share), r.cls_pagerank_share
        assert r.aci == pytest.approx(slow_aci(a, prefix).mean(), abs=ACI_ATOL)
        assert 0.0 < r.aci < 1.0
        assert r.uniform_baseline == pytest.approx(1.0 / (prefix + n))


# --------------------------------------------------------------------------- argument checks
@pytest.mark.parametrize("bad", [2.0, "3", 0, -1, [4]])
def test_aci_max_images_wrong_type_raises(bad):
    with pytest.raises(TypeError):
        AttentionGraph(layout(1, 4), aci_max_images=bad)


def test_aci_max_images_bool_raises():
    with pytest.raises(TypeError):
        AttentionGraph(layout(1, 4), aci_max_images=True)


def test_aci_max_images_valid_values_accepted():
    assert AttentionGraph(layout(1, 4), aci_max_images=None).aci_max_images is None
    assert AttentionGraph(layout(1, 4), aci_max_images=7).aci_max_images == 7


@pytest.mark.parametrize("scale", [0.1, 1.0, 3.0, 8.0])
@pytest.mark.parametrize("n", [9, 49, 196])
def test_aci_by_squaring_agrees_with_lapack(scale, n):
    """The default path (repeated squaring, matrix products only) against numpy's eigenvalues,
    from near-uniform (|lambda_2| ~ 0) to peaked attention (|lambda_2| ~ 1). Squaring can only
    overestimate |lambda_2| (Gelfand's limit is approached from above), so ACI <= the exact value."""
    attention = random_attention(6 if n == 196 else 24, n + 1, seed=n, scale=scale)
    squaring = consensus_index(attention, 1, method="squaring").numpy()
    exact = slow_aci(attention, 1)
    np.testing.assert_allclose(squaring, exact, atol=ACI_ATOL)
    assert np.all(squaring <= exact + 1e-12)
    np.testing.assert_array_equal(consensus_index(attention, 1).numpy(), squaring)  # auto
    np.testing.assert_allclose(consensus_index(attention, 1, method="eig").numpy(),
                               slow_aci(attention, 1), atol=1e-10)


def test_aci_by_squaring_known_answers():
    eye = torch.eye(6).expand(2, 6, 6)
    assert consensus_index(eye, 0, method="squaring").numpy() == pytest.approx([0.0, 0.0], abs=1e-6)
    uniform = torch.full((2, 6, 6), 1 / 6)
    assert consensus_index(uniform, 0, method="squaring").numpy() == pytest.approx([1.0, 1.0], abs=1e-9)
    # a rotation among 3 patches: eigenvalues are the cube roots of 1, |lambda_2| = 1, ACI = 0
    cycle = torch.roll(torch.eye(3), 1, dims=1)[None]
    assert float(consensus_index(cycle, 0, method="squaring")) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="'auto', 'eig' or 'squaring'"):
        consensus_index(uniform, 0, method="power")


def test_aci_standard_error_matches_numpy():
    p, n = 1, 8
    lay = layout(p, n, blocks=1)
    att = {1: random_attention(10, p + n, seed=11, scale=3.0)}
    acc = AttentionGraph(lay)
    _feed(acc, att, [(0, 4), (4, 10)])
    values = slow_aci(att[1], p)
    assert row(acc.result(), 1).aci_sem == pytest.approx(values.std(ddof=1) / math.sqrt(10), rel=1e-6)
    one = AttentionGraph(lay, aci_max_images=1)
    _feed(one, att, [(0, 10)])
    assert math.isnan(row(one.result(), 1).aci_sem)
