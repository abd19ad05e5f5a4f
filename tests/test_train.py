"""Deterministic, resumable training (vitphase_lib.train) on a tiny ViT and synthetic images."""
from __future__ import annotations

import json
import signal
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vitphase_lib.train as train_module
from vitphase_lib.data import synthetic_images
from vitphase_lib.io import sha256_file
from vitphase_lib.models import MiniViTConfig
from vitphase_lib.train import TrainConfig, Trainer, augment, learning_rate
from vitphase_lib.zoo import load_weights_file

MODEL = MiniViTConfig("train-test", depth=2, width=16, heads=2, num_classes=4)
# 96 images, batch 16: 6 steps per epoch, 4 epochs = 24 steps; snapshots at steps 6, 12, 24
CONFIG = TrainConfig(epochs=4, batch_size=16, lr=3e-3, warmup_epochs=0.5, threads=1,
                     snapshot_fractions=(0.25, 0.5, 1.0))
STEPS_PER_EPOCH, TOTAL_STEPS = 6, 24


@pytest.fixture(scope="module")
def train_set():
    return synthetic_images(n=96, num_classes=4, seed=0)


@pytest.fixture(scope="module")
def test_set():
    return synthetic_images(n=32, num_classes=4, seed=1)


def make_trainer(run_dir, train_set, test_set, config=CONFIG, model=MODEL):
    return Trainer(model, config, train_set, test_set, run_dir, progress=False)


def saved(run_dir: Path) -> dict:
    return torch.load(Path(run_dir) / "state.pt", map_location="cpu", weights_only=False)


class StepCounter:
    """Replaces AdamW.step: counts calls and raises ``exc`` before (or after) call ``at``;
    ``exc="SIGINT"`` instead delivers a real SIGINT (Ctrl-C) to the process during call ``at``."""

    def __init__(self, monkeypatch, at: int | None = None, exc=KeyboardInterrupt, after=False):
        self.calls, self.at, self.exc, self.after = 0, at, exc, after
        original = torch.optim.AdamW.step

        def step(optimizer, *args, **kwargs):
            self.calls += 1
            if self.calls == self.at and self.exc == "SIGINT":
                signal.raise_signal(signal.SIGINT)
            elif self.calls == self.at and not self.after:
                raise self.exc("simulated interruption")
            out = original(optimizer, *args, **kwargs)
            if self.calls == self.at and self.after:
                raise self.exc("simulated interruption")
            return out

        monkeypatch.setattr(torch.optim.AdamW, "step", step)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, train_set, test_set):
    """One uninterrupted run, shared by the resume tests."""
    run_dir = tmp_path_factory.mktemp("reference")
    deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    state = make_trainer(run_dir, train_set, test_set).run()
    torch.use_deterministic_algorithms(deterministic)
    torch.set_num_threads(threads)
    return run_dir, state


def assert_same_weights(dir_a, dir_b):
    a, b = saved(dir_a)["model"], saved(dir_b)["model"]
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ in {different}"


# --------------------------------------------------------------------------- uninterrupted run
def test_reference_run_log_and_snapshots(reference):
    run_dir, state = reference
    assert state.step == TOTAL_STEPS
    assert [row["epoch"] for row in state.log] == [1, 2, 3, 4]
    assert not any(row["partial_epoch_resumed"] for row in state.log)
    assert all(math.isfinite(row["train_loss"]) for row in state.log)
    assert json.loads((run_dir / "log.json").read_text()) == state.log
    # snapshots at 25%, 50%, 100% of 24 steps
    assert [s["step"] for s in state.snapshots] == [6, 12, 24]
    assert [s["fraction"] for s in state.snapshots] == [0.25, 0.5, 1.0]
    for snap in state.snapshots:
        path = run_dir / snap["file"]
        assert path.is_file()
        assert snap["sha256"] == sha256_file(path)
        assert snap["file"] == f"train-test-step{snap['step']:06d}.safetensors"
    # the final snapshot holds the final weights in float16 and loads with its checksum
    final = state.snapshots[-1]
    stored = load_file(str(run_dir / final["file"]))
    weights = saved(run_dir)["model"]
    assert stored.keys() == weights.keys()
    for key, value in weights.items():
        assert stored[key].dtype == torch.float16
        assert torch.equal(stored[key], value.to(torch.float16)), key
    model = load_weights_file(run_dir / final["file"], MODEL, expected_sha256=final["sha256"])
    assert not model.training
    # training moved the weights away from the initialisation
    torch.manual_seed(CONFIG.seed)
    from vitphase_lib.models import build_mini_vit
    init = build_mini_vit(MODEL).state_dict()
    assert not torch.equal(init["blocks.0.attn.qkv.weight"], weights["blocks.0.attn.qkv.weight"])


def test_finished_run_is_not_trained_again(reference, train_set, test_set, monkeypatch):
    run_dir, state = reference
    before = sha256_file(run_dir / "state.pt")
    counter = StepCounter(monkeypatch)
    again = make_trainer(run_dir, train_set, test_set).run()
    assert counter.calls == 0
    assert again.step == TOTAL_STEPS and again.log == state.log
    assert sha256_file(run_dir / "state.pt") == before


def test_same_configuration_twice_gives_identical_weights(reference, tmp_path, train_set, test_set):
    make_trainer(tmp_path, train_set, test_set).run()
    assert_same_weights(reference[0], tmp_path)


# --------------------------------------------------------------------------- interruption + resume
@pytest.mark.parametrize("interrupt_at", [
    9,   # mid-epoch 2 (3rd step of the epoch)
    7,   # first step of epoch 2, right after an epoch-end checkpoint and a snapshot
    24,  # the very last step
])
def test_interrupted_and_resumed_run_matches_uninterrupted(reference, tmp_path, train_set, test_set,
                                                           monkeypatch, interrupt_at):
    ref_dir, ref_state = reference
    with monkeypatch.context() as m:
        StepCounter(m, at=interrupt_at, exc="SIGINT")
        with pytest.raises(KeyboardInterrupt):
            make_trainer(tmp_path, train_set, test_set).run()
    done = interrupt_at
    assert saved(tmp_path)["state"]["step"] == done  # Ctrl-C finishes the step, then saves

    counter = StepCounter(monkeypatch)
    state = make_trainer(tmp_path, train_set, test_set).run()
    assert counter.calls == TOTAL_STEPS - done  # resumed, not restarted
    assert state.step == TOTAL_STEPS
    assert_same_weights(ref_dir, tmp_path)
    # optimizer moments are identical too
    opt_a, opt_b = saved(ref_dir)["optimizer"]["state"], saved(tmp_path)["optimizer"]["state"]
    for key in opt_a:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt_a[key][name], opt_b[key][name])

    # one log row per epoch; the epoch that was cut is flagged
    assert [row["epoch"] for row in state.log] == [1, 2, 3, 4]
    cut_epoch = (done // STEPS_PER_EPOCH) + 1 if done % STEPS_PER_EPOCH else None
    flags = [row["partial_epoch_resumed"] for row in state.log]
    assert flags == [row["epoch"] == cut_epoch for row in state.log]
    assert [r["test_top1"] for r in state.log] == [r["test_top1"] for r in ref_state.log]

    # the same snapshots, byte for byte
    assert [s["step"] for s in state.snapshots] == [6, 12, 24]
    for snap, ref_snap in zip(state.snapshots, ref_state.snapshots):
        assert snap["sha256"] == sha256_file(tmp_path / snap["file"]) == ref_snap["sha256"]


def test_killed_run_resumes_from_the_periodic_checkpoint(reference, tmp_path, train_set, test_set,
                                                         monkeypatch):
    """A crash that is not a KeyboardInterrupt saves nothing; with checkpoint_every_s=0 the
    state of the previous step is on disk and the resumed run still matches."""
    config = replace(CONFIG, checkpoint_every_s=0.0)
    with monkeypatch.context() as m:
        StepCounter(m, at=16, exc=RuntimeError)
        with pytest.raises(RuntimeError, match="simulated"):
            make_trainer(tmp_path, train_set, test_set, config).run()
    assert saved(tmp_path)["state"]["step"] == 15
    counter = StepCounter(monkeypatch)
    state = make_trainer(tmp_path, train_set, test_set, config).run()
    assert counter.calls == TOTAL_STEPS - 15
    assert_same_weights(reference[0], tmp_path)
    assert [row["epoch"] for row in state.log] == [1, 2, 3, 4]


def test_interrupt_right_after_the_optimizer_update_resumes_exactly(reference, tmp_path, train_set,
                                                                    test_set, monkeypatch):
    with monkeypatch.context() as m:
        StepCounter(m, at=9, after=True)
        with pytest.raises(KeyboardInterrupt):
            make_trainer(tmp_path, train_set, test_set).run()
    make_trainer(tmp_path, train_set, test_set).run()
    assert_same_weights(reference[0], tmp_path)


def _interrupt_evaluation_called_from(monkeypatch, caller: str):
    """KeyboardInterrupt from the first evaluate_top1 call made directly by ``caller``."""
    original = train_module.evaluate_top1
    fired = {"done": False}

    def evaluate(model, data, *args, **kwargs):
        import sys
        if not fired["done"] and sys._getframe(1).f_code.co_name == caller:
            fired["done"] = True
            raise KeyboardInterrupt("simulated interruption")
        return original(model, data, *args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate_top1", evaluate)
    return fired


def test_interrupt_during_epoch_end_evaluation_keeps_one_log_row_per_epoch(tmp_path, train_set,
                                                                          test_set, monkeypatch):
    with monkeypatch.context() as m:
        fired = _interrupt_evaluation_called_from(m, "_run")
        with pytest.raises(KeyboardInterrupt):
            make_trainer(tmp_path, train_set, test_set).run()
        assert fired["done"]
    state = make_trainer(tmp_path, train_set, test_set).run()
    assert [row["epoch"] for row in state.log] == [1, 2, 3, 4]


def test_interrupt_during_snapshot_keeps_every_snapshot(tmp_path, train_set, test_set, monkeypatch):
    with monkeypatch.context() as m:
        fired = _interrupt_evaluation_called_from(m, "_snapshot")
        with pytest.raises(KeyboardInterrupt):
            make_trainer(tmp_path, train_set, test_set).run()
        assert fired["done"]
    state = make_trainer(tmp_path, train_set, test_set).run()
    assert [s["step"] for s in state.snapshots] == [6, 12, 24]


# --------------------------------------------------------------------------- configuration guard
@pytest.mark.parametrize("change", ["train", "model", "data"])
def test_state_of_a_different_configuration_raises(tmp_path, train_set, test_set, change):
    short = replace(CONFIG, epochs=1)
    make_trainer(tmp_path, train_set, test_set, short).run()
    before = sha256_file(tmp_path / "state.pt")
    if change == "train":
        other = make_trainer(tmp_path, train_set, test_set, replace(short, lr=1e-4))
    elif change == "model":
        other = make_trainer(tmp_path, train_set, test_set, short, replace(MODEL, width=32, heads=4))
    else:
        other = make_trainer(tmp_path, synthetic_images(n=96, num_classes=4, seed=7), test_set, short)
    with pytest.raises(RuntimeError, match="different configuration"):
        other.run()
    assert sha256_file(tmp_path / "state.pt") == before


def test_non_finite_loss_raises(tmp_path, test_set):
    bad = synthetic_images(n=32, num_classes=4, seed=2)
    bad.images[:] = float("nan")
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        make_trainer(tmp_path, bad, test_set, replace(CONFIG, epochs=1)).run()


def test_n_train_uses_a_subset(tmp_path, train_set, test_set):
    trainer = make_trainer(tmp_path, train_set, test_set, replace(CONFIG, n_train=40))
    assert len(trainer.train_set) == 40
    assert torch.equal(trainer.train_set.images, train_set.images[:40])
    assert trainer.steps_per_epoch == 3 and trainer.total_steps == 12


# --------------------------------------------------------------------------- augment
def test_augment_is_deterministic_and_preserves_shape(train_set):
    images = train_set.images[:16]
    a = augment(images, torch.Generator().manual_seed(5), padding=2)
    b = augment(images, torch.Generator().manual_seed(5), padding=2)
    c = augment(images, torch.Generator().manual_seed(6), padding=2)
    assert a.shape == images.shape and a.dtype == images.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, images)


def test_augment_without_padding_only_flips(train_set):
    images = train_set.images[:32]
    out = augment(images, torch.Generator().manual_seed(0), padding=0)
    same = (out == images).flatten(1).all(1)
    flipped = (out == images.flip(-1)).flatten(1).all(1)
    assert torch.all(same | flipped)
    assert same.any() and flipped.any()


def test_augment_crop_is_a_shifted_window_with_background_fill():
    background = (0.0 - train_module.FASHION_MEAN) / train_module.FASHION_STD
    image = torch.arange(1 * 1 * 6 * 6, dtype=torch.float32).reshape(1, 1, 6, 6) + 100
    padded = torch.nn.functional.pad(image, (2,) * 4, value=background)
    seen = set()
    for seed in range(40):
        out = augment(image, torch.Generator().manual_seed(seed), padding=2)
        # the output is one of the 5 x 5 windows of the padded image, possibly flipped
        windows = [(dy, dx, flip) for dy in range(5) for dx in range(5) for flip in (False, True)
                   if torch.equal(out[0, 0], (padded[0, 0, dy:dy + 6, dx:dx + 6].flip(-1) if flip
                                              else padded[0, 0, dy:dy + 6, dx:dx + 6]))]
        assert windows, f"seed {seed}: not a crop of the padded image"
        seen.add(windows[0])
    assert len(seen) > 10  # crops really vary


# --------------------------------------------------------------------------- learning rate
def test_learning_rate_warmup_and_cosine_endpoints():
    config = TrainConfig(epochs=10, lr=1e-3, min_lr=1e-5)
    total, warmup = 100, 10
    lrs = [learning_rate(s, total, warmup, config) for s in range(total + 1)]
    assert lrs[0] == pytest.approx(1e-3 / 10)
    assert lrs[4] == pytest.approx(5e-4)
    assert lrs[9] == pytest.approx(1e-3)        # warm-up reaches the peak ...
    assert lrs[10] == pytest.approx(1e-3)       # ... where the cosine starts
    assert lrs[55] == pytest.approx((1e-3 + 1e-5) / 2)  # half-way down the cosine
    assert lrs[100] == pytest.approx(1e-5)      # the cosine ends at min_lr
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10]))        # increasing warm-up
    assert all(a > b for a, b in zip(lrs[10:100], lrs[11:101]))   # decreasing cosine
    assert min(lrs) >= 1e-5 - 1e-15 and max(lrs) <= 1e-3 + 1e-15


def test_learning_rate_warmup_as_long_as_training():
    config = TrainConfig(epochs=1, lr=2e-3, min_lr=0.0)
    lrs = [learning_rate(s, 4, 4, config) for s in range(4)]
    assert lrs == pytest.approx([5e-4, 1e-3, 1.5e-3, 2e-3])


@pytest.mark.parametrize("changes", [
    {"hub": "forced", "hub_blocks": 1, "shared_mlp": True},
    {"pos_embed": "sincos", "pe_scale": 0.5, "hub": "removed", "hub_blocks": 1},
    {"class_token": False},
])
def test_interrupted_variant_resumes_to_the_same_weights(tmp_path, train_set, test_set, monkeypatch,
                                                         changes):
    """The variant zoo's architectural changes keep training deterministic and resumable."""
    model = replace(MODEL, name="variant-test", **changes)
    make_trainer(tmp_path / "reference", train_set, test_set, model=model).run()
    with monkeypatch.context() as m:
        StepCounter(m, at=9, exc="SIGINT")
        with pytest.raises(KeyboardInterrupt):
            make_trainer(tmp_path / "resumed", train_set, test_set, model=model).run()
    make_trainer(tmp_path / "resumed", train_set, test_set, model=model).run()
    assert_same_weights(tmp_path / "reference", tmp_path / "resumed")
    weights = saved(tmp_path / "resumed")["model"]
    if changes.get("pos_embed") == "sincos":  # the fixed embedding is never trained
        torch.manual_seed(CONFIG.seed)
        from vitphase_lib.models import build_mini_vit
        assert torch.equal(weights["pos_embed"], build_mini_vit(model).state_dict()["pos_embed"])


def test_a_second_process_cannot_train_the_same_run(tmp_path, train_set, test_set):
    from filelock import FileLock
    tmp_path.mkdir(exist_ok=True)
    with FileLock(tmp_path / ".lock"):
        with pytest.raises(RuntimeError, match="another process"):
            make_trainer(tmp_path, train_set, test_set).run()
    assert not (tmp_path / "state.pt").exists()
