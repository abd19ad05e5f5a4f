"""Models by name: the project's zoo (``mini-s``...; ``tiny-s``... for the smoke profile) or any
timm ViT (``vit_base_patch16_224.augreg2_in21k_ft_in1k``...), with a fingerprint for caching."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .io import sha256_file
from .models import ALL_MINI_CONFIGS, TINY_ZOO, check_vit
from .zoo import (SHIPPED_ZOO_DIR, CheckpointError, ZOO_TRAINING, load_weights_file,
                  shipped_manifest, total_steps, training_dir)


class UnknownModelError(ValueError):
    """The name is neither a zoo model nor a timm model."""


@dataclass
class LoadedModel:
    name: str
    model: torch.nn.Module
    fingerprint: str   # what identifies the weights (checkpoint sha256 or 'random-init-seed-N')
    source: str        # human-readable: where the weights came from
    kind: str          # 'zoo' (28 px Fashion-MNIST models) or 'timm'


def load_zoo_model(name: str, snapshot: str = "final") -> LoadedModel:
    """A zoo model: the shipped checkpoint (sha256-verified) when there is one, else the newest
    checkpoint of the local training run (tiny models are trained on demand, in seconds)."""
    config = ALL_MINI_CONFIGS[name]
    shipped = shipped_manifest()["models"].get(name)
    if shipped is not None:
        entry = _pick_snapshot(shipped["snapshots"], snapshot, name)
        path = SHIPPED_ZOO_DIR / entry["file"]
        model = load_weights_file(path, config, expected_sha256=entry["sha256"])
        return LoadedModel(name, model, entry["sha256"],
                           f"shipped checkpoint zoo/{entry['file']} ({entry['fraction']:.0%} of training)", "zoo")
    run_dir = training_dir(name)
    if name in TINY_ZOO:
        _train_tiny(name)
    snapshots = sorted(run_dir.glob(f"{name}-step*.safetensors"))
    if not snapshots:
        raise CheckpointError(
            f"no checkpoint of {name}: it is not shipped in zoo/ and {run_dir} holds no training "
            f"checkpoint. Train it with `vitphase zoo train --model {name}` (README, 'Mini zoo').")
    path = snapshots[-1] if snapshot == "final" else _match_local(snapshots, snapshot, name)
    digest = sha256_file(path)
    step = int(path.stem.split("step")[-1])
    fraction = step / total_steps(name)
    model = load_weights_file(path, config)
    note = "" if fraction >= 1 else " — training in progress"
    return LoadedModel(name, model, digest,
                       f"local training checkpoint {path.name} ({fraction:.0%} of training{note})", "zoo")


def _pick_snapshot(snapshots: list[dict], which: str, name: str) -> dict:
    if which == "final":
        return max(snapshots, key=lambda s: s["step"])
    for entry in snapshots:
        if f"{entry['fraction']:.2f}" == which or str(entry["step"]) == which:
            return entry
    raise CheckpointError(f"{name} has no snapshot {which!r}; shipped: "
                          f"{[round(s['fraction'], 2) for s in snapshots]}")


def _match_local(paths: list[Path], which: str, name: str) -> Path:
    for path in paths:
        if path.stem.endswith(f"step{int(which):06d}"):
            return path
    raise CheckpointError(f"{name} has no local snapshot at step {which}")


def _train_tiny(name: str) -> None:
    from .data import load_fashion_mnist
    from .train import Trainer
    trainer = Trainer(ALL_MINI_CONFIGS[name], ZOO_TRAINING[name], load_fashion_mnist("train"),
                      load_fashion_mnist("test"), training_dir(name), progress=False,
                      restart_if_changed=True)
    trainer.run()


def load_timm_model(name: str, checkpoint: str | Path | None = None,
                    pretrained: bool = True, seed: int = 0) -> LoadedModel:
    """A timm ViT by name. ``checkpoint``: a local weights file (timm's ``pretrained_cfg_overlay``);
    ``pretrained=False`` gives a randomly initialised model (tests, benchmarks)."""
    import timm
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {name!r}")
    architecture = name.split(".")[0]
    if not timm.is_model(architecture):
        close = timm.list_models(f"*{architecture.split('_')[0]}*")[:8]
        raise UnknownModelError(f"unknown model {name!r}: neither a zoo model "
                                f"({', '.join(sorted(ALL_MINI_CONFIGS))}) nor a timm model. "
                                f"Similar timm names: {close}")
    kwargs: dict = {}
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.exists():
            raise CheckpointError(f"checkpoint {checkpoint} for {name} does not exist")
        kwargs["pretrained_cfg_overlay"] = dict(file=str(checkpoint))
        pretrained = True
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=pretrained, **kwargs)
    check_vit(model)
    fingerprint = (sha256_file(checkpoint) if checkpoint is not None and checkpoint.is_file()
                   else f"timm-{name}-pretrained" if pretrained else f"random-init-seed-{seed}")
    source = (f"local checkpoint {checkpoint}" if checkpoint is not None
              else "timm pretrained weights" if pretrained else f"random initialisation (seed {seed})")
    return LoadedModel(name, model.eval(), fingerprint, source, "timm")


def load_model(name: str, checkpoint: str | Path | None = None, pretrained: bool = True) -> LoadedModel:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {name!r}")
    if name in ALL_MINI_CONFIGS:
        return load_zoo_model(name)
    return load_timm_model(name, checkpoint=checkpoint, pretrained=pretrained)
