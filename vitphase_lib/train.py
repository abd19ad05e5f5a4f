"""Deterministic, resumable training of the mini zoo.

Every random choice of step ``s`` (data order, augmentation, stochastic depth) is drawn from
generators seeded by ``(seed, s)``, and the learning rate is a pure function of ``s``. A run that
is interrupted and restarted from its last checkpoint therefore ends with exactly the weights of
an uninterrupted run (``tests/test_train.py``). Checkpoints are written atomically.
"""
from __future__ import annotations

import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from .data import FASHION_MEAN, FASHION_STD, ImageSet
from .io import atomic_write_bytes, atomic_torch_save, sha256_file
from .models import MiniViTConfig, build_mini_vit


@dataclass(frozen=True)
class TrainConfig:
    """The recipe: AdamW, linear warm-up then cosine decay, label smoothing, crop + flip."""

    epochs: int
    batch_size: int = 256
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    crop_padding: int = 2
    seed: int = 0
    threads: int = 2
    n_train: int | None = None  # a subset of the training set (tiny zoo), None = all
    n_test: int | None = None  # evaluate on the first n_test test images (tiny zoo), None = all
    snapshot_fractions: tuple[float, ...] = (0.05, 0.25, 1.0)
    checkpoint_every_s: float = 300.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MonitorSpec:
    """The training-time monitor of a zoo run (:class:`vitphase_lib.monitor.Monitor`): the first
    ``probe_images`` test images, evaluated before the first step, at ``fractions`` of training
    and after every epoch; its log is ``monitor.csv`` beside the checkpoints."""

    probe_images: int = 1000
    metrics: tuple[str, ...] = ("similarity", "attention", "pe", "top1", "isi")
    aci_images: int = 64
    infox_dims: int = 8
    fractions: tuple[float, ...] = (0.01, 0.02, 0.05, 0.10)


@dataclass
class TrainState:
    step: int = 0
    log: list[dict] = field(default_factory=list)        # one row per finished epoch
    snapshots: list[dict] = field(default_factory=list)  # one row per saved snapshot
    train_seconds: float = 0.0
    monitor_seconds: float = 0.0


def _generator(seed: int, *keys: int) -> torch.Generator:
    value = seed
    for key in keys:
        value = (value * 1_000_003 + key) % (2**63 - 1)
    return torch.Generator().manual_seed(value)


def augment(images: torch.Tensor, generator: torch.Generator, padding: int) -> torch.Tensor:
    """Random crop after zero-padding (in pixel space) and random horizontal flip, per image."""
    n, c, h, w = images.shape
    background = (0.0 - FASHION_MEAN) / FASHION_STD
    padded = F.pad(images, (padding,) * 4, value=background)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]
    cropped = padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], cropped.flip(-1), cropped)


def learning_rate(step: int, total_steps: int, warmup_steps: int, config: TrainConfig) -> float:
    if step < warmup_steps:
        return config.lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        skip = param.ndim <= 1 or name in ("pos_embed", "cls_token", "reg_token")
        (no_decay if skip else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate_top1(model: torch.nn.Module, data: ImageSet, batch_size: int = 1000) -> float:
    """Top-1 accuracy in percent."""
    model.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        logits = model(data.images[start:start + batch_size])
        correct += int((logits.argmax(-1) == data.labels[start:start + batch_size]).sum())
    return 100.0 * correct / len(data)


class _StopRequest:
    """Turns SIGINT / SIGTERM into a flag the loop checks between steps, so an interrupted run
    saves a consistent state (never one caught halfway through an optimizer step). Any other
    exception saves nothing: the run resumes from its last periodic checkpoint."""

    def __init__(self):
        self.requested = False
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@contextmanager
def _run_lock(run_dir: Path):
    """One process trains a run at a time: a second one is refused at once (waiting would only
    repeat the first one's work)."""
    from filelock import FileLock, Timeout
    lock = FileLock(run_dir / ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RuntimeError(f"{run_dir} is being trained by another process; wait for it to "
                           "finish (or stop it) and run the command again") from None
    try:
        yield
    finally:
        lock.release()


class Trainer:
    """Trains one model into ``run_dir``; ``run()`` resumes from ``run_dir/state.pt`` if present."""

    def __init__(self, model_config: MiniViTConfig, train_config: TrainConfig,
                 train_set: ImageSet, test_set: ImageSet, run_dir: str | Path,
                 progress: bool = True, monitor: MonitorSpec | None = None):
        self.model_config = model_config
        self.config = train_config
        self.train_set = train_set if train_config.n_train is None else train_set.subset(
            torch.arange(train_config.n_train))
        self.test_set = test_set if train_config.n_test is None else test_set.subset(
            torch.arange(train_config.n_test))
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.steps_per_epoch = math.ceil(len(self.train_set) / train_config.batch_size)
        self.total_steps = self.steps_per_epoch * train_config.epochs
        self.warmup_steps = max(1, round(train_config.warmup_epochs * self.steps_per_epoch))
        self.snapshot_steps = sorted({max(1, round(f * self.total_steps))
                                      for f in train_config.snapshot_fractions})
        self.monitor_spec = monitor
        self.monitor_steps = set() if monitor is None else {
            0, *(max(1, round(f * self.total_steps)) for f in monitor.fractions),
            *range(self.steps_per_epoch, self.total_steps + 1, self.steps_per_epoch)}

    # ----------------------------------------------------------------- state on disk
    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.pt"

    @property
    def monitor_path(self) -> Path:
        return self.run_dir / "monitor.csv"

    def _monitor(self, state: TrainState):
        """The run's monitor, its log cut back to the resumed step (later rows are recomputed,
        from the same weights: the training is deterministic)."""
        if self.monitor_spec is None:
            return None
        from .monitor import Monitor
        spec = self.monitor_spec
        probe = self.test_set.subset(torch.arange(min(spec.probe_images, len(self.test_set))))
        monitor = Monitor(probe.images, probe.labels, log=self.monitor_path, metrics=spec.metrics,
                          aci_images=spec.aci_images, infox_dims=spec.infox_dims)
        monitor.truncate(state.step)
        return monitor

    def _fingerprint(self) -> dict:
        """What determines the weights; a saved state with another fingerprint is not resumed."""
        train = {k: v for k, v in self.config.to_dict().items() if k not in ("n_test",)}
        return {"model": self.model_config.to_dict(), "train": train,
                "data": self.train_set.checksum}

    def _load_or_init(self):
        torch.manual_seed(self.config.seed)
        model = build_mini_vit(self.model_config)
        optimizer = torch.optim.AdamW(_param_groups(model, self.config.weight_decay),
                                      lr=self.config.lr, betas=(0.9, 0.999))
        state = TrainState()
        if self.state_path.exists():
            saved = torch.load(self.state_path, map_location="cpu", weights_only=False)
            if saved["fingerprint"] != self._fingerprint():
                raise RuntimeError(
                    f"{self.state_path} belongs to a different configuration; delete "
                    f"{self.run_dir} to start over, or restore the configuration it was made with.")
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            state = TrainState(**saved["state"])
        return model, optimizer, state

    def _save(self, model, optimizer, state: TrainState) -> None:
        atomic_torch_save({"fingerprint": self._fingerprint(), "model": model.state_dict(),
                           "optimizer": optimizer.state_dict(), "state": asdict(state)},
                          self.state_path)
        atomic_write_bytes(json.dumps(state.log, indent=1).encode(), self.run_dir / "log.json")

    def _snapshot(self, model, state: TrainState) -> None:
        path = self.run_dir / f"{self.model_config.name}-step{state.step:06d}.safetensors"
        weights = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
        tmp = path.with_suffix(".tmp")
        save_file(weights, str(tmp), metadata={"config": json.dumps(self.model_config.to_dict())})
        tmp.replace(path)
        # the manifest's top-1 is measured on the stored (float16) weights, as a user loads them
        from .zoo import load_weights_file
        stored = load_weights_file(path, self.model_config)
        state.snapshots.append({
            "step": state.step, "epoch": state.step / self.steps_per_epoch,
            "fraction": state.step / self.total_steps, "file": path.name,
            "test_top1": evaluate_top1(stored, self.test_set), "sha256": sha256_file(path)})
        model.train()

    # ----------------------------------------------------------------- the loop
    def run(self) -> TrainState:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with _run_lock(self.run_dir):
            return self._run()

    def _run(self) -> TrainState:
        torch.set_num_threads(self.config.threads)
        torch.use_deterministic_algorithms(True)
        model, optimizer, state = self._load_or_init()
        if state.step >= self.total_steps:
            return state
        monitor = self._monitor(state)
        if monitor is not None and state.step == 0:
            monitor(model, step=0, epoch=0.0, force=True)
        model.train()
        last_save = time.monotonic()
        bar = tqdm(total=self.total_steps, initial=state.step, desc=self.model_config.name,
                   disable=not self.progress, mininterval=1.0, unit="step")
        epoch_loss, epoch_batches, epoch_start = 0.0, 0, time.monotonic()
        stop = _StopRequest()
        try:
            while state.step < self.total_steps:
                step = state.step
                epoch, index_in_epoch = divmod(step, self.steps_per_epoch)
                order = torch.randperm(len(self.train_set), generator=_generator(self.config.seed, 1, epoch))
                batch = order[index_in_epoch * self.config.batch_size:
                              (index_in_epoch + 1) * self.config.batch_size]
                images = augment(self.train_set.images[batch],
                                 _generator(self.config.seed, 2, step), self.config.crop_padding)
                labels = self.train_set.labels[batch]
                torch.manual_seed(_generator(self.config.seed, 3, step).initial_seed())
                lr = learning_rate(step, self.total_steps, self.warmup_steps, self.config)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                t0 = time.monotonic()
                loss = F.cross_entropy(model(images), labels, label_smoothing=self.config.label_smoothing)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"training loss became {loss.item()} at step {step}; lower the learning "
                        f"rate (now {lr:.2e}) or check the data. The last good checkpoint is "
                        f"{self.state_path}.")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                state.train_seconds += time.monotonic() - t0
                state.step += 1
                epoch_loss += loss.item()
                epoch_batches += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.1e}")
                if state.step in self.snapshot_steps:
                    self._snapshot(model, state)
                if monitor is not None and state.step in self.monitor_steps:
                    t0 = time.monotonic()
                    monitor(model, step=state.step, epoch=state.step / self.steps_per_epoch, force=True)
                    state.monitor_seconds += time.monotonic() - t0
                if state.step % self.steps_per_epoch == 0:
                    state.log.append({
                        "epoch": state.step // self.steps_per_epoch,
                        "train_loss": epoch_loss / epoch_batches,
                        "test_top1": evaluate_top1(model, self.test_set),
                        "seconds": time.monotonic() - epoch_start,
                        "partial_epoch_resumed": epoch_batches < self.steps_per_epoch})
                    model.train()
                    self._save(model, optimizer, state)
                    last_save = time.monotonic()
                    epoch_loss, epoch_batches, epoch_start = 0.0, 0, time.monotonic()
                elif time.monotonic() - last_save > self.config.checkpoint_every_s:
                    self._save(model, optimizer, state)
                    last_save = time.monotonic()
                if stop.requested:  # at a step boundary, after all bookkeeping: a consistent state
                    self._save(model, optimizer, state)
                    raise KeyboardInterrupt(f"training of {self.model_config.name} stopped at step "
                                            f"{state.step}; run the same command to resume")
        finally:
            stop.restore()
            bar.close()
        self._save(model, optimizer, state)
        return state
