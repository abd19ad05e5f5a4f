"""Models by name: the project's zoo (``mini-s``...; ``tiny-s``... for the smoke profile) or any
timm ViT (``vit_base_patch16_224.augreg2_in21k_ft_in1k``...), with a fingerprint for caching."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .io import sha256_file
from .models import ALL_MINI_CONFIGS, check_vit
from .zoo import (CheckpointError, load_weights_file, shipped_dir, shipped_manifest, shown_path,
                  total_steps, training_dir)


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
    checkpoint of the local training run."""
    config = ALL_MINI_CONFIGS[name]
    folder = shipped_dir(name)
    shipped = shipped_manifest(folder)["models"].get(name)
    if shipped is not None:
        entry = _pick_snapshot(shipped["snapshots"], snapshot, name)
        path = folder / entry["file"]
        model = load_weights_file(path, config, expected_sha256=entry["sha256"])
        return LoadedModel(name, model, entry["sha256"],
                           f"shipped checkpoint {shown_path(path)} "
                           f"({entry['fraction']:.0%} of training)", "zoo")
    run_dir = training_dir(name)
    snapshots = sorted(run_dir.glob(f"{name}-step*.safetensors"))
    if not snapshots:
        raise CheckpointError(
            f"no checkpoint of {name}: it is not shipped in {shown_path(folder)}/ "
            f"and {run_dir} holds no training "
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


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".npz")


class WeightsUnavailableError(OSError):
    """Pretrained weights could be neither downloaded nor found locally."""


def weights_file(checkpoint: str | Path, name: str) -> Path:
    """The weights file a ``checkpoints`` entry names: a file, or a folder holding one (a
    Hugging Face snapshot folder with ``model.safetensors`` / ``pytorch_model.bin`` works)."""
    path = Path(checkpoint).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for preferred in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            if (path / preferred).is_file():
                return path / preferred
        candidates = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
        if len(candidates) == 1:
            return candidates[0]
        raise CheckpointError(f"checkpoint folder {path} for {name} holds "
                              f"{len(candidates) or 'no'} weights files ({[c.name for c in candidates]}); "
                              f"give the file itself ({', '.join(WEIGHT_SUFFIXES)}).")
    raise CheckpointError(f"checkpoint {path} for {name} does not exist")


def offline_message(name: str) -> str:
    """What to download, and where to put it, when timm cannot fetch ``name``'s weights."""
    from timm.models import get_pretrained_cfg
    cfg = get_pretrained_cfg(name)
    if cfg is not None and cfg.hf_hub_id:
        hub_id = cfg.hf_hub_id
        source = (f"the Hugging Face repository https://huggingface.co/{hub_id} (the file "
                  f"model.safetensors, or `huggingface-cli download {hub_id}` on a machine with access)")
    elif cfg is not None and cfg.url:
        source = cfg.url
    else:
        source = "its publisher (timm has no download address for this tag)"
    return (f"the pretrained weights of {name!r} could not be downloaded (the hub is not reachable "
            f"from this machine) and are not in the local Hugging Face cache. Download them from "
            f"{source}, put the file anywhere on this machine and name it in the 'checkpoints' "
            f"parameter, e.g. `vitphase book --profile paper --set 'checkpoints={{{name}: "
            f"/weights/{name.split('.')[0]}.safetensors}}'` or papermill "
            f"`-y 'overrides: {{checkpoints: {{{name}: /weights/file}}}}'` (a file or its folder). "
            "Copying a Hugging Face cache (~/.cache/huggingface) from a connected machine works too.")


def load_timm_model(name: str, checkpoint: str | Path | None = None,
                    pretrained: bool = True, seed: int = 0) -> LoadedModel:
    """A timm ViT by name. ``checkpoint``: a local weights file or folder (timm's
    ``pretrained_cfg_overlay``); ``pretrained=False`` gives a randomly initialised model (tests,
    benchmarks)."""
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
        checkpoint = weights_file(checkpoint, name)
        kwargs["pretrained_cfg_overlay"] = dict(file=str(checkpoint))
        pretrained = True
    torch.manual_seed(seed)
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except Exception as error:
        if checkpoint is not None:  # a truncated or foreign file, or one for another architecture
            raise CheckpointError(f"checkpoint {checkpoint} could not be loaded into {name} "
                                  f"({type(error).__name__}: {str(error)[:300]}). Is it complete, "
                                  "and the weights of this architecture?") from error
        if pretrained and isinstance(error, OSError):  # hub unreachable and nothing cached
            raise WeightsUnavailableError(offline_message(name)) from error
        raise
    check_vit(model)
    fingerprint = (sha256_file(checkpoint) if checkpoint is not None
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
