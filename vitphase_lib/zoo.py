"""The shipped mini zoo: where its checkpoints live, how they are trained, verified and loaded."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .io import sha256_file
from .models import ALL_MINI_CONFIGS, MiniViTConfig, build_mini_vit
from .train import TrainConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_ZOO_DIR = REPO_ROOT / "zoo"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, altered or does not fit its model."""


def cache_root() -> Path:
    return Path(os.environ.get("VITPHASE_CACHE", Path.home() / ".cache" / "vitphase"))


def training_dir(name: str) -> Path:
    """Where in-progress training state lives (outside the work tree)."""
    return cache_root() / "zoo-training" / name


# The recipe of each zoo model. Epoch counts fit the 4-hour CPU budget (README, "Mini zoo").
ZOO_TRAINING: dict[str, TrainConfig] = {
    "mini-s": TrainConfig(epochs=12, lr=1e-3),
    "mini-b": TrainConfig(epochs=10, lr=1e-3),
    "mini-l": TrainConfig(epochs=7, lr=6e-4),
    # the smoke profile's tiny zoo: 3 000 images, a few seconds each
    **{name: TrainConfig(epochs=3, batch_size=64, lr=2e-3, n_train=3000, n_test=1000,
                         warmup_epochs=0.3, snapshot_fractions=(1.0,), threads=1)
       for name in ("tiny-s", "tiny-b", "tiny-l")},
}


def load_weights_file(path: str | Path, config: MiniViTConfig,
                      expected_sha256: str | None = None) -> torch.nn.Module:
    """Build ``config``'s model and load a safetensors file into it (float32, eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing. Re-train it with "
                              f"`vitphase zoo train --model {config.name}` or restore it from git.")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise CheckpointError(
                f"checkpoint {path} is truncated or altered: its sha256 is {actual[:12]}..., the "
                f"manifest says {expected_sha256[:12]}.... Restore it (`git checkout -- {path.name}`) "
                f"or re-train with `vitphase zoo train --model {config.name}`.")
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} cannot be read ({error}); it is corrupt. "
                              "Restore it from git or re-train it.") from error
    model = build_mini_vit(config)
    try:
        model.load_state_dict({k: v.float() for k, v in weights.items()})
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not fit model {config.name}: {error}") from error
    return model.eval()
