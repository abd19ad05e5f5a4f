"""Models by name: the project's zoo (``mini-s``...; ``tiny-s``... for the smoke profile) or any
timm ViT (``vit_base_patch16_224.augreg2_in21k_ft_in1k``...), with a fingerprint for caching."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from .errors import VitphaseError
from .io import sha256_file
from .models import ALL_MINI_CONFIGS, MINI_ZOO, TINY_ZOO, check_vit
from .zoo import (CheckpointError, load_weights_file, shipped_dir, shipped_manifest, shown_path,
                  total_steps, training_dir)

# timm modules whose models are ViTs vitphase can trace (their classes pass models.check_vit),
# beside those of capture.FAMILIES' classes: the names suggested for a misspelt model come from
# these and the zoo
VIT_FAMILY_MODULES = ("vision_transformer", "deit", "vision_transformer_relpos", "eva", "beit")


class UnknownModelError(VitphaseError, ValueError):
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


class WeightsUnavailableError(VitphaseError, OSError):
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
    _check_name_type(name)
    check_timm_name(name)
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
    fingerprint = _timm_fingerprint(name, checkpoint, pretrained, seed)
    source = (f"local checkpoint {checkpoint}" if checkpoint is not None
              else "timm pretrained weights" if pretrained else f"random initialisation (seed {seed})")
    return LoadedModel(name, model.eval(), fingerprint, source, "timm")


def load_model(name: str, checkpoint: str | Path | None = None, pretrained: bool = True) -> LoadedModel:
    """A model by name, with the weights of ``checkpoint`` when one is given (zoo and timm alike).

    Args:
        name: a zoo model (``mini-s``, ``tiny-b``, ``mini-s-d24``...) or a timm ViT
            (``vit_base_patch16_224.augreg2_in21k_ft_in1k``...).
        checkpoint: a local weights file or its folder; it is loaded, never ignored.
        pretrained: timm models without a checkpoint: False gives random weights (tests).
    """
    _check_name_type(name)
    if name in ALL_MINI_CONFIGS:
        return load_zoo_model(name) if checkpoint is None else load_zoo_checkpoint(name, checkpoint)
    return load_timm_model(name, checkpoint=checkpoint, pretrained=pretrained)


def load_zoo_checkpoint(name: str, checkpoint: str | Path) -> LoadedModel:
    """A zoo model with the weights of a local file (a ``checkpoints`` entry) instead of its
    shipped or trained ones; the file's sha256 identifies them in the cache.

    Args:
        name: a zoo model name.
        checkpoint: a ``.safetensors`` file (as ``vitphase zoo train`` writes them) or its folder.
    """
    path = checkpoint_file(checkpoint, name, "zoo")
    try:
        model = load_weights_file(path, ALL_MINI_CONFIGS[name])
    except CheckpointError as error:  # its message speaks of shipped files; this one is the user's
        cause = error.__cause__ or error
        raise CheckpointError(f"checkpoint {path} could not be loaded into {name} "
                              f"({type(cause).__name__}: {str(cause)[:300]}). Is it complete, and "
                              "the weights of this architecture?") from error
    return LoadedModel(name, model, sha256_file(path), f"local checkpoint {path}", "zoo")


def checkpoint_file(checkpoint: str | Path, name: str, kind: str) -> Path:
    """The weights file a ``checkpoints`` entry names, checked to exist (and, for a zoo model, to
    be a safetensors file) without reading it.

    Args:
        checkpoint: a file, or a folder holding one.
        name: the model it is for.
        kind: ``'zoo'`` or ``'timm'``.
    """
    path = weights_file(checkpoint, name)
    if kind == "zoo" and path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoint {path} for zoo model {name} is not a .safetensors file; "
                              "zoo weights are read from safetensors files (as `vitphase zoo "
                              "train` writes them).")
    return path


def _timm_fingerprint(name: str, checkpoint: Path | None, pretrained: bool, seed: int = 0) -> str:
    return (sha256_file(checkpoint) if checkpoint is not None
            else f"timm-{name}-pretrained" if pretrained else f"random-init-seed-{seed}")


def weights_fingerprint(name: str, checkpoint: str | Path | None = None, pretrained: bool = True) -> str:
    """The fingerprint :func:`load_model` gives the same arguments, without building the model or
    reading its weights into memory (a checkpoint file is hashed; a zoo model still training is
    loaded, to find its newest checkpoint): what a cache look-up needs. Each chapter of a book
    asks for it, and a cache hit then never builds the model."""
    _check_name_type(name)
    if name not in ALL_MINI_CONFIGS:
        check_timm_name(name)
        path = None if checkpoint is None else weights_file(checkpoint, name)
        return _timm_fingerprint(name, path, pretrained or path is not None)
    if checkpoint is not None:
        return sha256_file(checkpoint_file(checkpoint, name, "zoo"))
    shipped = shipped_manifest(shipped_dir(name))["models"].get(name)
    if shipped is not None:
        return _pick_snapshot(shipped["snapshots"], "final", name)["sha256"]
    return load_zoo_model(name).fingerprint  # a local training run: its newest checkpoint


def resolve_model(name: str, checkpoint: str | Path | None = None) -> str:
    """Check a model name and its checkpoint entry without loading any weights: what a run checks
    for every model before its first forward pass.

    Args:
        name: a zoo or timm model name.
        checkpoint: its ``checkpoints`` entry, if any (the file must exist).

    Returns:
        ``'zoo'`` or ``'timm'``.

    Raises:
        UnknownModelError: no such model (the closest supported names are suggested).
        UnsupportedModelError: a timm model vitphase cannot trace (built on the meta device:
            no memory, no download).
        CheckpointError: the checkpoint file or folder is missing or ambiguous.
    """
    _check_name_type(name)
    kind = "zoo" if name in ALL_MINI_CONFIGS else "timm"
    if kind == "timm":
        check_timm_name(name)
        _check_traceable(name)
    if checkpoint is not None:
        checkpoint_file(checkpoint, name, kind)
    return kind


def _check_name_type(name) -> None:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {name!r}")


def check_timm_name(name: str) -> None:
    """Raise :class:`UnknownModelError`, with the closest names, unless timm knows ``name``'s
    architecture and its pretrained tag (the part after the dot, if any)."""
    import timm
    architecture, _, tag = name.partition(".")
    if not timm.is_model(architecture):
        raise UnknownModelError(unknown_model_message(name))
    tags = timm.list_pretrained(f"{architecture}.*") if tag else []
    if tag and name not in tags:
        close = closest_names(name, tags)
        raise UnknownModelError(f"unknown model {name!r}: timm has no pretrained tag {tag!r} for "
                                f"{architecture}. " + (f"Closest: {', '.join(close)}." if close else
                                                       f"Its tags: {', '.join(tags) or 'none'}."))


def model_kind(name: str) -> str:
    """``'zoo'`` or ``'timm'``, from the name alone."""
    return "zoo" if name in ALL_MINI_CONFIGS else "timm"


def meta_model(name: str) -> torch.nn.Module:
    """A timm model built on the meta device (no memory, no weights): its architecture and its
    tag's ``pretrained_cfg`` (input size, crop, normalisation)."""
    import timm
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False)


def _check_traceable(name: str) -> None:
    """Build the architecture on the meta device (no memory, no weights) and check that the
    capture engine can trace it."""
    import timm

    from .capture import vit_layout
    try:
        with torch.device("meta"):
            model = timm.create_model(name.split(".")[0], pretrained=False)
    except Exception:  # a model that cannot be built without data is checked once loaded
        return
    vit_layout(model)


def unknown_model_message(name: str) -> str:
    """What to say about an unknown model name: the closest supported names, and what is
    supported."""
    close = closest_names(name.split(".")[0], supported_names())
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return (f"unknown model {name!r}: neither a zoo model nor a timm ViT.{hint} Supported: the "
            f"zoo ({', '.join([*MINI_ZOO, *TINY_ZOO])} and their variants, e.g. mini-s-d24) and "
            "timm's ViT families (vit_*, deit*, eva*, beit*, vit_relpos*; "
            "`timm.list_models('vit_*')` lists them).")


@cache
def supported_names() -> tuple[str, ...]:
    """The zoo's model names and the timm architectures of the ViT families vitphase traces."""
    import timm

    from . import capture
    modules = {*VIT_FAMILY_MODULES, *(family.model_class.__module__.rsplit(".", 1)[-1]
                                      for family in getattr(capture, "FAMILIES", ()))}
    timm_names = {n for module in modules for n in timm.list_models(module=module)}
    return (*sorted(ALL_MINI_CONFIGS), *sorted(n for n in timm_names if not n.startswith("test_")))


def closest_names(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Up to ``n`` candidates nearest to ``name`` by edit distance, nearest first (ties in
    alphabetical order); none more than a third of ``name``'s length away (at least 2 edits are
    allowed), so an unrelated name gets no suggestion.

    Args:
        name: what the user typed.
        candidates: the valid names.
        n: at most this many suggestions.
    """
    limit = max(2, len(name) // 3)
    scored = sorted((edit_distance(name, c), c) for c in set(candidates))
    return [c for distance, c in scored if distance <= limit][:n]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions turning ``a`` into ``b``."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]
