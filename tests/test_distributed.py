"""Data-parallel analysis: 2 gloo processes on CPU give the tables of 1 process."""
from __future__ import annotations

import pickle
import socket

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vitphase_lib.analysis import PassConfig, full_analysis_tables
from vitphase_lib.data import synthetic_images
from vitphase_lib.distributed import World, broadcast_object, shard, world
from vitphase_lib.results import cached_tables

# odd sizes and a batch that does not divide them: shards and batches never line up
N_ANALYSIS, N_FIT, N_SCORE, BATCH = 37, 30, 21, 8
ACI_CAP = 19  # straddles the two ranks' shards (0-15 | 16-36): a cap inside a batch
PCA_CAP = 11  # inside rank 0's shard: rank 1 only adds zeros, under the same keys


def _model() -> torch.nn.Module:
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    return VisionTransformer(img_size=28, patch_size=7, in_chans=1, num_classes=4, embed_dim=32,
                             depth=3, num_heads=2).eval()


def _analysis(feature_folder: str | None = None) -> dict[str, pd.DataFrame]:
    images = synthetic_images(n=N_ANALYSIS + N_FIT + N_SCORE, num_classes=4, seed=1)
    analysis = images.subset(range(N_ANALYSIS)).as_dataset()
    fit = images.subset(range(N_ANALYSIS, N_ANALYSIS + N_FIT)).as_dataset()
    score = images.subset(range(N_ANALYSIS + N_FIT, len(images.labels))).as_dataset()
    return full_analysis_tables(_model(), analysis, fit, score, num_classes=4,
                                config=PassConfig(batch_size=BATCH, progress=False),
                                aci_max_images=ACI_CAP, pca_max_images=PCA_CAP, infox_dims=4,
                                feature_folder=feature_folder)


def _worker(rank: int, size: int, port: int, out: str, cache: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    try:
        assert world() == World(rank, size)
        tables = _analysis(feature_folder=f"{cache}/features-{rank}")
        # the cache: every rank computes, rank 0 alone writes, every rank gets the tables
        counter = {"calls": 0}

        def compute():
            counter["calls"] += 1
            return {"summary": tables["summary"]}
        first = cached_tables("dist-test", {"k": 1}, compute, root=__import__("pathlib").Path(cache))
        again = cached_tables("dist-test", {"k": 1}, compute, root=__import__("pathlib").Path(cache))
        with open(f"{out}-{rank}.pkl", "wb") as f:
            pickle.dump({"tables": tables, "first": first, "again": again, "calls": counter["calls"],
                         "broadcast": broadcast_object(rank * 10 + 7)}, f)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist")
    out = str(folder / "rank")
    mp.spawn(_worker, args=(2, _free_port(), out, str(folder)), nprocs=2, join=True)
    results = []
    for rank in range(2):
        with open(f"{out}-{rank}.pkl", "rb") as f:
            results.append(pickle.load(f))
    return results


def _assert_same_table(a: pd.DataFrame, b: pd.DataFrame, name: str) -> None:
    assert list(a.columns) == list(b.columns), name
    assert len(a) == len(b), name
    for column in a.columns:
        if pd.api.types.is_numeric_dtype(a[column]):
            np.testing.assert_allclose(a[column].to_numpy(float), b[column].to_numpy(float),
                                       rtol=1e-10, atol=1e-13, equal_nan=True, err_msg=f"{name}.{column}")
        else:
            assert a[column].tolist() == b[column].tolist(), f"{name}.{column}"


def test_two_gloo_ranks_give_the_tables_of_one_process(two_ranks):
    # one thread, like each rank: under portable numerics (make test) MKL's results depend on
    # its thread count, and this test is about the sharding (the fixture restores the threads)
    torch.set_num_threads(1)
    single = _analysis()
    for rank, result in enumerate(two_ranks):
        assert set(result["tables"]) == set(single)
        for name in single:
            _assert_same_table(result["tables"][name], single[name], f"rank {rank}: {name}")
    # the shared ACI cap counted the same images as one process
    attention = two_ranks[1]["tables"]["attention"]
    assert (attention.aci_images == ACI_CAP).all() and (attention.images == N_ANALYSIS).all()


def test_rank_zero_alone_writes_the_cache_and_every_rank_reads_the_same(two_ranks):
    for result in two_ranks:
        assert result["calls"] == 1  # computed once (all ranks), then a cache hit (broadcast)
        _assert_same_table(result["first"]["summary"], result["again"]["summary"], "summary")
    _assert_same_table(two_ranks[0]["first"]["summary"], two_ranks[1]["first"]["summary"], "summary")
    assert [r["broadcast"] for r in two_ranks] == [7, 7]


def test_shards_are_whole_batches_disjoint_and_cover_every_image():
    for n, batch, size in [(37, 8, 2), (10, 1, 3), (5, 1, 5), (1000, 64, 8), (17, 4, 5)]:
        ranges = [shard(n, batch, World(rank, size)) for rank in range(size)]
        assert [i for r in ranges for i in r] == list(range(n))
        assert all(r.start % batch == 0 for r in ranges)
        assert max(map(len, ranges)) - min(map(len, ranges)) <= batch
    assert shard(5, 2) == range(5)  # one process: every image
    with pytest.raises(ValueError, match="at least one batch"):
        shard(16, 8, World(0, 3))


def _result_tables(root) -> dict[str, pd.DataFrame]:
    return {f"{entry.name}/{csv.name}": pd.read_csv(csv) for entry in sorted(root.iterdir())
            if (entry / "manifest.json").is_file() for csv in sorted(entry.glob("*.csv"))
            if csv.stat().st_size}


@pytest.mark.slow
def test_torchrun_analyse_writes_the_cache_of_one_process(tmp_path, monkeypatch):
    """`torchrun --nproc_per_node 2 vitphase analyse` (gloo on CPU) caches the same tables,
    under the same keys, as `vitphase analyse` on one process."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "VITPHASE_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1"}
    # fewer images than the smoke profile's, in batches that leave each rank several: the test is
    # about the sharding, not the sizes
    args = ["analyse", "--profile", "smoke", "--set", "models=[tiny-s]", "--set", "pe_alphas=[0, 1]",
            "--set", "n_images=72", "--set", "n_probe_fit=96", "--set", "n_probe_score=72",
            "--set", "batch_size=16", "--set", "variants=[]"]
    bin_dir = Path(sys.executable).parent
    single = subprocess.run([str(bin_dir / "vitphase"), *args], env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]
    assert "on 1 process(es)" in single.stdout
    monkeypatch.setenv("VITPHASE_CACHE", str(tmp_path))
    from vitphase_lib.zoo import cache_root
    root = cache_root()  # tmp_path, or its portable-numerics folder under `make test`
    shutil.move(root / "results", root / "results-single")  # only the results are recomputed
    parallel = subprocess.run([str(bin_dir / "torchrun"), "--standalone", "--nproc_per_node", "2",
                               "-m", "vitphase_lib.cli", *args], env=env, capture_output=True, text=True)
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    assert parallel.stdout.count("on 2 process(es)") == 1  # rank 0 alone reports
    one, two = _result_tables(root / "results-single"), _result_tables(root / "results")
    assert sorted(one) == sorted(two) and len(one) >= 7
    for name in one:
        _assert_same_table(two[name], one[name], name)
