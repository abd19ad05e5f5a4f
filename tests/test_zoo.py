"""Zoo checkpoints: load_weights_file and its errors (vitphase_lib.zoo)."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from vitphase_lib.io import sha256_file
from vitphase_lib.models import ALL_MINI_CONFIGS, VARIANTS, MiniViTConfig, build_mini_vit
from vitphase_lib.study import Study
from vitphase_lib.zoo import (ZOO_TRAINING, CheckpointError, cache_root, load_weights_file,
                              training_dir)

CONFIG = MiniViTConfig("zoo-test", depth=1, width=8, heads=2, num_classes=3)


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(1)
    model = build_mini_vit(CONFIG)
    path = tmp_path / "zoo-test-step000010.safetensors"
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(path), metadata={"config": json.dumps(CONFIG.to_dict())})
    return path, weights


def test_loads_the_weights(checkpoint):
    path, weights = checkpoint
    model = load_weights_file(path, CONFIG, expected_sha256=sha256_file(path))
    assert not model.training
    loaded = model.state_dict()
    assert loaded.keys() == weights.keys()
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)


def test_float16_file_is_loaded_as_float32(tmp_path, checkpoint):
    _, weights = checkpoint
    path = tmp_path / "half.safetensors"
    save_file({k: v.half() for k, v in weights.items()}, str(path))
    model = load_weights_file(path, CONFIG)
    for key, value in model.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, weights[key].half().float())


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="is missing") as info:
        load_weights_file(tmp_path / "nope.safetensors", CONFIG)
    assert "vitphase zoo train --model zoo-test" in str(info.value)


def test_altered_file_fails_the_checksum(checkpoint):
    path, _ = checkpoint
    good = sha256_file(path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip one byte of tensor data: still a readable safetensors file
    path.write_bytes(bytes(data))
    load_weights_file(path, CONFIG)  # readable without a checksum ...
    with pytest.raises(CheckpointError, match="truncated or altered") as info:
        load_weights_file(path, CONFIG, expected_sha256=good)  # ... but caught with one
    assert good[:12] in str(info.value)
    assert sha256_file(path)[:12] in str(info.value)


@pytest.mark.parametrize("keep", [0.5, 0.99, 10])
def test_truncated_file_is_not_readable(checkpoint, keep):
    path, _ = checkpoint
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    with pytest.raises(CheckpointError, match="cannot be read") as info:
        load_weights_file(path, CONFIG)
    assert str(path) in str(info.value)


def test_garbage_file_is_not_readable(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"this is not a safetensors file at all" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_weights_file(path, CONFIG)


def test_truncated_file_with_checksum_reports_the_checksum(checkpoint):
    path, _ = checkpoint
    good = sha256_file(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or altered"):
        load_weights_file(path, CONFIG, expected_sha256=good)


@pytest.mark.parametrize("other", [
    replace(CONFIG, width=16, heads=4),   # wider
    replace(CONFIG, depth=2),             # deeper: missing keys
    replace(CONFIG, num_classes=10),      # another head
])
def test_wrong_architecture(checkpoint, other):
    path, _ = checkpoint
    with pytest.raises(CheckpointError, match="does not fit model zoo-test"):
        load_weights_file(path, other)


def test_missing_tensor(tmp_path, checkpoint):
    _, weights = checkpoint
    path = tmp_path / "partial.safetensors"
    save_file({k: v for k, v in weights.items() if k != "head.weight"}, str(path))
    with pytest.raises(CheckpointError, match="head.weight"):
        load_weights_file(path, CONFIG)


def test_training_state_lives_in_the_cache(isolated_cache, monkeypatch):
    monkeypatch.delenv("VITPHASE_PORTABLE_NUMERICS", raising=False)
    assert cache_root() == isolated_cache
    assert training_dir("mini-s") == isolated_cache / "zoo-training" / "mini-s"


def test_portable_numerics_keep_their_own_cache(isolated_cache, monkeypatch):
    """Training runs and results made with portable numerics (make test) are not another run's."""
    monkeypatch.setenv("VITPHASE_PORTABLE_NUMERICS", "1")
    assert training_dir("tiny-s") == isolated_cache / "portable-numerics" / "zoo-training" / "tiny-s"
    from vitphase_lib.results import results_root
    assert results_root() == isolated_cache / "portable-numerics" / "results"


def test_every_zoo_model_has_a_recipe():
    assert set(ZOO_TRAINING) == set(ALL_MINI_CONFIGS)
    for name, config in ALL_MINI_CONFIGS.items():
        assert config.width % config.heads == 0, name


def test_idle_training_time_is_epochs_times_the_fastest_complete_epoch():
    log = [{"epoch": 1, "seconds": 120.0}, {"epoch": 2, "seconds": 300.0},
           {"epoch": 3, "seconds": 50.0, "partial_epoch_resumed": True}, {"epoch": 4, "seconds": 110.0}]
    from vitphase_lib.zoo import idle_training_seconds
    assert idle_training_seconds(log, epochs=4) == 440.0
    assert idle_training_seconds([], epochs=4) is None


# --------------------------------------------------------------------------- the shipped zoo
# These read the checkpoints committed in zoo/ (the default profile's models) and zoo/tiny/ (the
# smoke profile's tiny zoo, which most other tests load).
SHIPPED_MODELS = ("mini-s", "mini-b", "mini-l", *Study.from_profile("default").variants)  # the default profile's
TINY_MODELS = ("tiny-s", "tiny-b", "tiny-l", *(n for n in VARIANTS if n.startswith("tiny-")))
MAX_SHIPPED_MB = 70.0  # everything in zoo/, both folders
MIN_TOP1 = 88.0


def _shipped(folder: str):
    from vitphase_lib.zoo import SHIPPED_ZOO_DIR, shipped_manifest
    directory = SHIPPED_ZOO_DIR / folder
    return directory, shipped_manifest(directory)


@pytest.fixture(scope="module")
def shipped():
    return _shipped(".")


@pytest.mark.parametrize("folder, models", [(".", SHIPPED_MODELS), ("tiny", TINY_MODELS)])
def test_shipped_zoo_holds_its_models(folder, models):
    from vitphase_lib.zoo import shipped_dir
    directory, manifest = _shipped(folder)
    assert sorted(manifest["models"]) == sorted(models)
    for name, entry in manifest["models"].items():
        assert shipped_dir(name).resolve() == directory.resolve(), name
        # as JSON stores them (tuples become lists)
        assert entry["config"] == json.loads(json.dumps(ALL_MINI_CONFIGS[name].to_dict())), name
        assert entry["train"] == json.loads(json.dumps(ZOO_TRAINING[name].to_dict())), name
        assert entry["seed"] == ZOO_TRAINING[name].seed, name


@pytest.mark.parametrize("folder", [".", "tiny"])
def test_shipped_files_match_the_manifest(folder):
    from vitphase_lib.zoo import verify
    directory, manifest = _shipped(folder)
    assert verify(directory) == []
    listed = {s["file"] for entry in manifest["models"].values() for s in entry["snapshots"]}
    on_disk = {path.name for path in directory.glob("*.safetensors")}
    assert on_disk == listed, "files in zoo/ that the manifest does not list, or the reverse"


def test_everything_shipped_fits_the_size_budget():
    from vitphase_lib.zoo import SHIPPED_ZOO_DIR
    total_mb = sum(p.stat().st_size for p in SHIPPED_ZOO_DIR.rglob("*") if p.is_file()) / 2**20
    assert total_mb <= MAX_SHIPPED_MB


@pytest.mark.parametrize("folder", [".", "tiny"])
def test_shipped_variants_carry_their_monitor_log(folder):
    from vitphase_lib.io import sha256_file
    from vitphase_lib.monitor import read_log
    from vitphase_lib.zoo import total_steps
    directory, manifest = _shipped(folder)
    for name, entry in manifest["models"].items():
        if name not in VARIANTS:
            continue
        assert [s["fraction"] for s in entry["snapshots"]] == pytest.approx([0.25, 1.0], abs=1e-2), name
        log = directory / entry["monitor_log"]["file"]
        assert sha256_file(log) == entry["monitor_log"]["sha256"], name
        steps = set(read_log(log).step)
        assert {0, total_steps(name)} <= steps, name  # before the first step and at the end


def test_shipped_models_finished_their_recipe_and_reach_the_target(shipped):
    from vitphase_lib.zoo import total_steps
    _, manifest = shipped
    for name, entry in manifest["models"].items():
        assert entry["steps_done"] == total_steps(name), name
        assert entry["snapshots"][-1]["step"] == total_steps(name), name
        assert entry["test_top1"] == entry["snapshots"][-1]["test_top1"], name
        assert len(entry["log"]) == entry["epochs"] == ZOO_TRAINING[name].epochs, name
        assert entry["idle_train_seconds_estimate"] > 0, name
        if name in VARIANTS:  # their snapshots: test_shipped_variants_carry_their_monitor_log
            continue
        # snapshots are taken at whole steps: 5% of 5628 steps is step 281 (fraction 0.0499)
        assert [s["fraction"] for s in entry["snapshots"]] == pytest.approx([0.05, 0.25, 1.0], abs=1e-3), name
        assert entry["test_top1"] >= MIN_TOP1, name


def test_shipped_tiny_zoo_is_the_smoke_profiles_and_loads_without_training(isolated_cache):
    """The smoke chapters load the tiny zoo from zoo/tiny/ (sha256-checked), never train it: the
    numbers nbval compares must not depend on the CPU that would have trained it."""
    from vitphase_lib.loading import load_zoo_model
    from vitphase_lib.zoo import total_steps
    _, manifest = _shipped("tiny")
    for name, entry in manifest["models"].items():
        assert entry["steps_done"] == total_steps(name) and entry["numerics"] == "portable", name
    loaded = load_zoo_model("tiny-l")
    assert loaded.source == ("shipped checkpoint zoo/tiny/tiny-l-step000141.safetensors "
                             "(100% of training)")
    assert not training_dir("tiny-l").exists()


def test_ship_sends_each_model_to_its_folder_and_verify_checks_both(monkeypatch, tmp_path):
    """`vitphase zoo ship` on a finished run: tiny models go to zoo/tiny/, with the manifest that
    loading and `vitphase zoo verify` read."""
    from vitphase_lib import zoo
    from vitphase_lib.data import synthetic_images
    from vitphase_lib.train import Trainer
    monkeypatch.setenv("VITPHASE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(zoo, "SHIPPED_ZOO_DIR", tmp_path / "zoo")
    quick = replace(ZOO_TRAINING["tiny-s"], epochs=1, n_train=64, n_test=16, batch_size=32)
    monkeypatch.setitem(ZOO_TRAINING, "tiny-s", quick)
    train = synthetic_images(n=64, num_classes=10, seed=0, size=28)
    monkeypatch.setattr("vitphase_lib.data.load_fashion_mnist", lambda split: train)
    Trainer(ALL_MINI_CONFIGS["tiny-s"], ZOO_TRAINING["tiny-s"], train, train,
            training_dir("tiny-s"), progress=False).run()
    entries = zoo.ship(["tiny-s"])["models"]
    assert (tmp_path / "zoo" / "tiny" / entries["tiny-s"]["snapshots"][-1]["file"]).is_file()
    assert entries["tiny-s"]["steps_done"] == 2
    assert entries["tiny-s"]["numerics"] in ("portable", "native")
    missing = tmp_path / "zoo" / "manifest.json"
    assert zoo.verify() == [f"{missing} does not exist: no zoo is shipped"]
    (tmp_path / "zoo" / "tiny" / entries["tiny-s"]["snapshots"][-1]["file"]).write_bytes(b"broken")
    assert "truncated or altered" in zoo.verify(tmp_path / "zoo" / "tiny")[0]


def test_ship_without_a_training_run_says_how_to_make_one(monkeypatch, tmp_path):
    from vitphase_lib import zoo
    monkeypatch.setenv("VITPHASE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError, match="tiny-b has no training run") as info:
        zoo.ship(["tiny-b"], tmp_path / "zoo")
    assert "bash scripts/portable.sh" in str(info.value)
    assert not (tmp_path / "zoo" / "manifest.json").exists()
